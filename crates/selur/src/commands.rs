//! The client verbs other than apply: get, describe, delete, scale, wait.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use selur_api::kinds::{self, ResourceKind};

use crate::client::{status_error, Client};
use crate::print::{self, Format};

fn kind_arg(word: &str) -> anyhow::Result<&'static ResourceKind> {
    kinds::by_cli_name(word).ok_or_else(|| {
        anyhow!("the server doesn't have a resource type \"{word}\" (see `selur get --help` for the kinds Selur serves)")
    })
}

/// `KIND NAME...` or `KIND/NAME...` into (kind, names).
pub(crate) fn targets(
    args: &[String],
) -> anyhow::Result<Vec<(&'static ResourceKind, Option<String>)>> {
    let mut out = Vec::new();
    if args.iter().any(|a| a.contains('/')) {
        for a in args {
            let (k, n) = a
                .split_once('/')
                .ok_or_else(|| anyhow!("{a:?}: mix of KIND/NAME and KIND NAME; use one form"))?;
            out.push((kind_arg(k)?, Some(n.to_string())));
        }
        return Ok(out);
    }
    let (first, rest) = args
        .split_first()
        .ok_or_else(|| anyhow!("name a kind, e.g. `pods` or `deployment/web`"))?;
    if first.contains(',') {
        // `get deploy,po`: several kinds, no names.
        if !rest.is_empty() {
            bail!("names cannot follow a list of kinds ({first}); use KIND/NAME instead");
        }
        for k in first.split(',').filter(|k| !k.is_empty()) {
            out.push((kind_arg(k)?, None));
        }
        return Ok(out);
    }
    let kind = kind_arg(first)?;
    if rest.is_empty() {
        out.push((kind, None));
    }
    for n in rest {
        out.push((kind, Some(n.clone())));
    }
    Ok(out)
}

pub(crate) fn object_path(kind: &ResourceKind, ns: &str, name: &str) -> String {
    format!("{}/{name}", kind.collection_path(Some(ns)))
}

/// `selur get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// KIND [NAME...] or KIND/NAME...
    #[arg(required = true)]
    args: Vec<String>,
    /// Output format: wide, json, yaml, name.
    #[arg(short = 'o', long, default_value = "")]
    output: String,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector, e.g. app=web,tier in (a,b).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector, e.g. spec.nodeName=n1.
    #[arg(long)]
    field_selector: Option<String>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    watch: bool,
}

fn print_objects(kind: &ResourceKind, items: &[Value], fmt: Format, all_ns: bool, single: bool) {
    match fmt {
        Format::Json | Format::Yaml => {
            let v = if single && items.len() == 1 {
                items[0].clone()
            } else {
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
            };
            if fmt == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", print::to_yaml(&v));
            }
        }
        Format::Name => {
            for it in items {
                println!("{}", print::name_of(kind, it));
            }
        }
        Format::Table | Format::Wide => {
            let rows = print::table(kind, items, fmt == Format::Wide, all_ns, chrono::Utc::now());
            print!("{}", print::render(&rows));
        }
    }
}

pub async fn get(client: &Client, ns: &str, a: GetArgs) -> anyhow::Result<()> {
    let fmt: Format = a.output.parse().map_err(|e: String| anyhow!(e))?;
    let targets = targets(&a.args)?;
    for (i, (kind, name)) in targets.iter().enumerate() {
        if i > 0 && name.is_none() && matches!(fmt, Format::Table | Format::Wide) {
            println!();
        }
        let list_ns = if a.all_namespaces { None } else { Some(ns) };
        match name {
            Some(n) => {
                let v = client.get(&object_path(kind, ns, n)).await?;
                print_objects(kind, &[v], fmt, false, targets.len() == 1);
            }
            None => {
                let mut q = Vec::new();
                if let Some(s) = &a.selector {
                    q.push(("labelSelector", s.clone()));
                }
                if let Some(s) = &a.field_selector {
                    q.push(("fieldSelector", s.clone()));
                }
                let list = client
                    .request(Method::GET, &kind.collection_path(list_ns), &q, None)
                    .await?;
                let items = list["items"].as_array().cloned().unwrap_or_default();
                if items.is_empty() && matches!(fmt, Format::Table | Format::Wide) && !a.watch {
                    match list_ns {
                        Some(n) if kind.namespaced => {
                            eprintln!("No resources found in {n} namespace.")
                        }
                        _ => eprintln!("No resources found"),
                    }
                } else {
                    print_objects(kind, &items, fmt, a.all_namespaces, false);
                }
                if a.watch {
                    q.push(("watch", "true".into()));
                    q.push((
                        "resourceVersion",
                        list["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or("0")
                            .to_string(),
                    ));
                    watch_print(
                        client,
                        kind,
                        &kind.collection_path(list_ns),
                        &q,
                        fmt,
                        a.all_namespaces,
                    )
                    .await?;
                }
            }
        }
    }
    Ok(())
}

async fn watch_print(
    client: &Client,
    kind: &ResourceKind,
    path: &str,
    q: &[(&str, String)],
    fmt: Format,
    all_ns: bool,
) -> anyhow::Result<()> {
    let resp = client.send(Method::GET, path, q, None).await?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let raw = resp.bytes().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        return Err(status_error(code, &v, &raw).into());
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.context("watch stream broke")?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            match ev["type"].as_str() {
                Some("BOOKMARK") => continue,
                Some("ERROR") => bail!(
                    "watch ended: {}",
                    ev["object"]["message"].as_str().unwrap_or("error")
                ),
                _ => {}
            }
            let obj = ev["object"].clone();
            match fmt {
                Format::Table | Format::Wide => {
                    let rows = print::table(
                        kind,
                        &[obj],
                        fmt == Format::Wide,
                        all_ns,
                        chrono::Utc::now(),
                    );
                    // Only the data row: the header was printed with the list.
                    if let Some(r) = rows.get(1) {
                        println!("{}", r.join("   "));
                    }
                }
                _ => print_objects(kind, &[obj], fmt, all_ns, true),
            }
        }
    }
    Ok(())
}

pub async fn describe(client: &Client, ns: &str, args: &[String]) -> anyhow::Result<()> {
    let mut first = true;
    for (kind, name) in targets(args)? {
        let items = match name {
            Some(n) => vec![client.get(&object_path(kind, ns, &n)).await?],
            None => client.get(&kind.collection_path(Some(ns))).await?["items"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        };
        for it in items {
            let name = it["metadata"]["name"].as_str().unwrap_or("").to_string();
            let ev_ns = it["metadata"]["namespace"]
                .as_str()
                .unwrap_or(ns)
                .to_string();
            let ev_kind =
                kinds::by_cli_name("events").ok_or_else(|| anyhow!("events kind missing"))?;
            let q = [(
                "fieldSelector",
                format!(
                    "involvedObject.name={name},involvedObject.kind={}",
                    kind.kind
                ),
            )];
            let events = client
                .request(
                    Method::GET,
                    &ev_kind.collection_path(Some(&ev_ns)),
                    &q,
                    None,
                )
                .await
                .map(|l| l["items"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default();
            let events = print::events_about(&it, &events);
            if !first {
                println!("\n");
            }
            first = false;
            print!(
                "{}",
                print::describe(kind, &it, &events, chrono::Utc::now())
            );
        }
    }
    Ok(())
}

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

pub async fn delete(client: &Client, ns: &str, a: DeleteArgs) -> anyhow::Result<()> {
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

pub async fn scale(
    client: &Client,
    ns: &str,
    args: &[String],
    replicas: i64,
) -> anyhow::Result<()> {
    for (kind, name) in targets(args)? {
        let name = name.ok_or_else(|| anyhow!("name the {} to scale", kind.singular()))?;
        if !kind.scale {
            bail!(
                "{} cannot be scaled: only deployments and replicasets have a scale subresource",
                kind.plural
            );
        }
        let path = format!("{}/scale", object_path(kind, ns, &name));
        client
            .json(
                Method::PATCH,
                &path,
                &[],
                &json!({"spec": {"replicas": replicas}}),
                "application/merge-patch+json",
            )
            .await?;
        println!("{}/{name} scaled", kind.qualified_singular());
    }
    Ok(())
}

/// Parse `30s`, `5m`, `1h`, `500ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 30s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => bail!("unknown duration unit {other:?} in {s:?}: use ms, s, m or h"),
    };
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

fn condition_met(obj: &Value, name: &str, want: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(name))
                    && c["status"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(want))
            })
        })
}

pub async fn wait(
    client: &Client,
    ns: &str,
    args: &[String],
    for_: &str,
    timeout: &str,
) -> anyhow::Result<()> {
    let timeout = parse_duration(timeout)?;
    let cond = if for_ == "delete" {
        None
    } else {
        let c = for_.strip_prefix("condition=").ok_or_else(|| {
            anyhow!(
                "--for={for_} is not supported: use --for=condition=NAME[=VALUE] or --for=delete"
            )
        })?;
        let (name, want) = c.split_once('=').unwrap_or((c, "True"));
        Some((name.to_string(), want.to_string()))
    };
    for (kind, name) in targets(args)? {
        let name = name.ok_or_else(|| anyhow!("name the {} to wait for", kind.singular()))?;
        let path = object_path(kind, ns, &name);
        let start = Instant::now();
        loop {
            let done = match (client.get(&path).await, &cond) {
                (Err(e), None) if e.code() == Some(404) => true,
                (Err(e), _) => return Err(e.into()),
                (Ok(_), None) => false,
                (Ok(obj), Some((c, want))) => condition_met(&obj, c, want),
            };
            if done {
                match &cond {
                    Some((c, _)) => {
                        println!("{}/{name} condition met ({c})", kind.qualified_singular())
                    }
                    None => println!("{}/{name} deleted", kind.qualified_singular()),
                }
                break;
            }
            if start.elapsed() >= timeout {
                bail!(
                    "timed out waiting for the condition on {}/{name}",
                    kind.plural
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_targets() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        let t = targets(&["deploy/web".into(), "po/p".into()]).unwrap();
        assert_eq!(t[0].0.kind, "Deployment");
        assert_eq!(targets(&["deploy,po".into()]).unwrap().len(), 2);
        let t = targets(&["pods".into()]).unwrap();
        assert!(t[0].1.is_none());
        assert!(targets(&["nope".into()]).is_err());
    }
}

/// `selur logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pod: String,
    /// Container (needed when the pod has several).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<usize>,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    timestamps: bool,
    /// Only lines newer than this (`30s`, `5m`, `1h`).
    #[arg(long)]
    since: Option<String>,
    /// The previous run of the container (before its last restart).
    #[arg(short = 'p', long)]
    previous: bool,
}

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// The pod (or pod/NAME).
    pod: String,
    /// Output: a table, or the parsed JSON per container.
    #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

/// `selur health POD`: the `selur.io/obli-pkg-<container>` conditions the
/// node's probes keep (the last parsed `obli-pkg status` per container).
pub async fn health(client: &Client, ns: &str, a: HealthArgs) -> anyhow::Result<()> {
    let name = a
        .pod
        .strip_prefix("pod/")
        .or_else(|| a.pod.strip_prefix("po/"))
        .unwrap_or(&a.pod);
    let kind = kind_arg("pods")?;
    let resp = client
        .send(Method::GET, &object_path(kind, ns, name), &[], None)
        .await?;
    let code = resp.status().as_u16();
    let raw = resp.bytes().await.unwrap_or_default();
    let pod: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if !(200..300).contains(&code) {
        return Err(status_error(code, &pod, &raw).into());
    }
    let mut rows = Vec::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let cname = c["name"].as_str().unwrap_or("");
        let t = format!("selur.io/obli-pkg-{cname}");
        let cond = pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["type"] == t.as_str()));
        let parsed: Option<Value> = cond
            .and_then(|x| x["message"].as_str())
            .and_then(|m| serde_json::from_str(m).ok());
        rows.push((
            cname.to_string(),
            cond.map(|x| x["status"] == "True"),
            parsed,
            cond.and_then(|x| x["lastTransitionTime"].as_str().map(String::from)),
        ));
    }
    if a.output == "json" {
        let out: serde_json::Map<String, Value> = rows
            .iter()
            .map(|(n, _, p, _)| (n.clone(), p.clone().unwrap_or(Value::Null)))
            .collect();
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<10} {:<10} {:<9} LAST-OPERATION",
        "CONTAINER", "HEALTHY", "STATUS", "INTEGRITY", "PACKAGES"
    );
    for (n, healthy, parsed, _) in rows {
        match parsed {
            Some(p) => println!(
                "{:<20} {:<10} {:<10} {:<10} {:<9} {}",
                n,
                if healthy == Some(true) { "yes" } else { "no" },
                p["status"].as_str().unwrap_or("-"),
                p["integrity"].as_str().unwrap_or("-"),
                p["packages"].as_u64().map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                p["last_operation"].as_str().unwrap_or("-"),
            ),
            None => println!("{n:<20} -          (no obli-pkg status reported: no /usr/bin/obli-pkg check runs in this container)"),
        }
    }
    Ok(())
}

pub async fn logs(client: &Client, ns: &str, a: LogsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let name = a
        .pod
        .strip_prefix("pod/")
        .or_else(|| a.pod.strip_prefix("po/"))
        .unwrap_or(&a.pod);
    let kind = kind_arg("pods")?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(c) = a.container {
        q.push(("container", c));
    }
    if a.follow {
        q.push(("follow", "true".into()));
    }
    if let Some(t) = a.tail {
        q.push(("tailLines", t.to_string()));
    }
    if a.timestamps {
        q.push(("timestamps", "true".into()));
    }
    if a.previous {
        q.push(("previous", "true".into()));
    }
    if let Some(s) = a.since {
        q.push(("sinceSeconds", parse_duration(&s)?.as_secs().to_string()));
    }
    let resp = client
        .send(
            Method::GET,
            &format!("{}/log", object_path(kind, ns, name)),
            &q,
            None,
        )
        .await?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let raw = resp.bytes().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        return Err(status_error(code, &v, &raw).into());
    }
    let mut stream = resp.bytes_stream();
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk.context("log stream broke")?)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod delete_tests {
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
