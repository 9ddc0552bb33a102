//! `selur delete`: by name, by selection (`--all`, `-l`) or from files, with
//! kubectl's grace period rules, then (by default) waiting until the objects
//! are gone.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

use selur_api::kinds::ResourceKind;

use super::{object_path, parse_duration, targets};
use crate::client::Client;

/// `selur delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// KIND NAME... or KIND/NAME... (only KIND with --all or -l).
    args: Vec<String>,
    /// Delete the objects in these files instead.
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// What happens to dependents: background, foreground or orphan.
    #[arg(long, default_value = "background", value_parser = ["background", "foreground", "orphan"])]
    cascade: String,
    /// Do not fail when an object is already gone (the default with --all and -l).
    #[arg(long)]
    ignore_not_found: bool,
    /// Seconds a pod gets to stop; -1 is the pod's own terminationGracePeriodSeconds.
    /// 0 needs --force (without it, 0 becomes 1, as in kubectl).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i64,
    /// Delete with a grace period of 1 second.
    #[arg(long)]
    now: bool,
    /// With --grace-period=0: remove the objects at once, without waiting for their
    /// node to confirm that the containers stopped.
    #[arg(long)]
    force: bool,
    /// Delete every object of the kind in the namespace.
    #[arg(long)]
    all: bool,
    /// Delete the objects of the kind matching this label selector, e.g. app=web.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Wait until the objects are gone (--wait=false returns at once).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
        default_missing_value = "true", require_equals = true)]
    wait: bool,
    /// How long --wait waits (`30s`, `5m`); 0 waits as long as it takes.
    #[arg(long, default_value = "0s")]
    timeout: String,
}

/// The grace period a delete sends (`None`: the object's own) and whether to
/// print kubectl's immediate-deletion warning, from --grace-period, --now and
/// --force, as kubectl decides them.
pub(crate) fn delete_grace(
    grace: i64,
    now: bool,
    force: bool,
) -> anyhow::Result<(Option<i64>, bool)> {
    let mut g = grace;
    if now {
        if g != -1 {
            bail!("--now and --grace-period cannot be specified together");
        }
        g = 1;
    }
    if g == 0 && !force {
        // kubectl: --grace-period=0 alone becomes 1, to prevent accidental data loss.
        g = 1;
    }
    if force && g < 0 {
        g = 0;
    }
    if force && g > 0 {
        bail!("--force and --grace-period greater than 0 cannot be specified together");
    }
    Ok(((g >= 0).then_some(g), force && g == 0))
}

/// What kubectl prints for `--grace-period=0 --force`.
pub const IMMEDIATE_DELETION_WARNING: &str = "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.";
pub async fn run(client: &Client, ns: &str, a: DeleteArgs) -> anyhow::Result<()> {
    let (grace, warn) = delete_grace(a.grace_period, a.now, a.force)?;
    if a.all && a.selector.is_some() {
        bail!("cannot set --all and --selector at the same time");
    }
    let timeout = parse_duration(&a.timeout).context("--timeout")?;
    let by_selection = a.all || a.selector.is_some();
    let ignore_not_found = a.ignore_not_found || by_selection || !a.files.is_empty();
    let mut objs: Vec<(&'static ResourceKind, String, String)> = Vec::new();
    if !a.files.is_empty() {
        if !a.args.is_empty() || by_selection {
            bail!("-f FILE cannot be combined with names, --all or -l: use one way to say what to delete");
        }
        let docs = crate::manifest::read_all(&a.files).map_err(|e| anyhow!("error: {e}"))?;
        for d in docs {
            let kind = selur_api::decode::kind_of(&d.value)
                .map_err(|e| anyhow!("{}: {e}", d.location()))?;
            let name = d.value["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let obj_ns = d.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or(ns)
                .to_string();
            objs.push((kind, obj_ns, name));
        }
    } else {
        for (kind, name) in targets(&a.args)? {
            match (name, by_selection) {
                (Some(n), false) => objs.push((kind, ns.to_string(), n)),
                (None, false) => bail!(
                    "name the {} to delete, or use --all, -l SELECTOR or -f FILE",
                    kind.plural
                ),
                (Some(n), true) => bail!(
                    "a name ({n}) cannot be given with --all or -l: they delete every matching {}",
                    kind.singular()
                ),
                (None, true) => {
                    let mut q = Vec::new();
                    if let Some(sel) = &a.selector {
                        q.push(("labelSelector", sel.clone()));
                    }
                    let list = client
                        .request(Method::GET, &kind.collection_path(Some(ns)), &q, None)
                        .await?;
                    for it in list["items"].as_array().into_iter().flatten() {
                        let item_ns = it["metadata"]["namespace"].as_str().unwrap_or(ns);
                        if let Some(n) = it["metadata"]["name"].as_str() {
                            objs.push((kind, item_ns.to_string(), n.to_string()));
                        }
                    }
                }
            }
        }
        if by_selection && objs.is_empty() {
            println!("No resources found");
            return Ok(());
        }
    }
    if warn {
        eprintln!("{IMMEDIATE_DELETION_WARNING}");
    }
    let policy = match a.cascade.as_str() {
        "foreground" => "Foreground",
        "orphan" => "Orphan",
        _ => "Background",
    };
    let mut failed = None;
    let mut deleted = Vec::new();
    for (kind, obj_ns, name) in objs {
        let mut q = vec![("propagationPolicy", policy.to_string())];
        if let Some(g) = grace {
            q.push(("gracePeriodSeconds", g.to_string()));
        }
        match client
            .request(Method::DELETE, &object_path(kind, &obj_ns, &name), &q, None)
            .await
        {
            Ok(resp) => {
                let what = if grace == Some(0) {
                    "force deleted"
                } else {
                    "deleted"
                };
                println!("{} \"{name}\" {what}", kind.qualified_singular());
                let uid = resp
                    .pointer("/details/uid")
                    .or_else(|| resp.pointer("/metadata/uid"))
                    .and_then(Value::as_str)
                    .map(String::from);
                deleted.push((kind, obj_ns, name, uid));
            }
            Err(e) if e.code() == Some(404) && ignore_not_found => {}
            Err(e) => {
                eprintln!(
                    "Error from server ({}): {e}",
                    e.code().map(|c| c.to_string()).unwrap_or_default()
                );
                failed = Some(e);
            }
        }
    }
    if a.wait {
        wait_deleted(client, &deleted, timeout).await?;
    }
    match failed {
        Some(_) => bail!("some objects were not deleted"),
        None => Ok(()),
    }
}

/// Wait until each object is gone (or replaced by a new one with another uid);
/// `timeout` zero waits as long as it takes.
async fn wait_deleted(
    client: &Client,
    objs: &[(&'static ResourceKind, String, String, Option<String>)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    for (kind, obj_ns, name, uid) in objs {
        loop {
            let gone = match client.get(&object_path(kind, obj_ns, name)).await {
                Err(e) if e.code() == Some(404) => true,
                Err(e) => {
                    return Err(anyhow!(
                        "waiting for {} \"{name}\" to be deleted: {e}",
                        kind.qualified_singular()
                    ))
                }
                Ok(v) => uid
                    .as_deref()
                    .is_some_and(|u| v.pointer("/metadata/uid").and_then(Value::as_str) != Some(u)),
            };
            if gone {
                break;
            }
            if !timeout.is_zero() && start.elapsed() >= timeout {
                bail!(
                    "timed out after {:?} waiting for {} \"{name}\" in namespace {obj_ns} to be deleted: it is still there (a pod stays Terminating until its node confirms its containers stopped). \
                     Check it with `selur get {} {name} -n {obj_ns}`, wait longer with --timeout, or remove it without confirmation with --grace-period=0 --force",
                    timeout,
                    kind.qualified_singular(),
                    kind.plural
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_grace_follows_kubectl() {
        assert_eq!(delete_grace(-1, false, false).unwrap(), (None, false));
        assert_eq!(delete_grace(7, false, false).unwrap(), (Some(7), false));
        assert_eq!(delete_grace(-1, true, false).unwrap(), (Some(1), false));
        // 0 without --force becomes 1.
        assert_eq!(delete_grace(0, false, false).unwrap(), (Some(1), false));
        assert_eq!(delete_grace(0, false, true).unwrap(), (Some(0), true));
        assert_eq!(delete_grace(-1, false, true).unwrap(), (Some(0), true));
        assert!(delete_grace(5, false, true).is_err());
        assert!(delete_grace(5, true, false).is_err());
    }
}
