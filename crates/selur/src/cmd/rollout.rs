//! `selur rollout status|history|undo|restart|pause|resume` for Deployments,
//! as kubectl does them: status reads the Deployment's status, history and
//! undo read its ReplicaSets' revisions, undo copies a ReplicaSet's template
//! back into the Deployment, restart stamps the template with
//! `kubectl.kubernetes.io/restartedAt`, pause and resume set `spec.paused`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::{ArgAction, Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use selur_api::kinds::ResourceKind;

use super::{object_path, parse_duration, targets};
use crate::client::Client;
use crate::print;

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

/// `selur rollout`.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    cmd: RolloutCmd,
}

#[derive(Subcommand, Debug)]
enum RolloutCmd {
    /// Wait until a rollout finishes (exits non-zero when it exceeds its progress deadline).
    #[command(
        after_help = "Examples:\n  selur rollout status deployment/web\n  selur rollout status deploy web --timeout=2m"
    )]
    Status {
        /// KIND/NAME or KIND NAME.
        #[arg(required = true)]
        args: Vec<String>,
        /// Keep watching until the rollout finishes (`--watch=false` prints once).
        #[arg(short = 'w', long, default_value_t = true, action = ArgAction::Set)]
        watch: bool,
        /// Give up after this long (`0s`: never).
        #[arg(long, default_value = "0s")]
        timeout: String,
    },
    /// List the revisions of a Deployment, or show one.
    #[command(
        after_help = "Examples:\n  selur rollout history deployment/web\n  selur rollout history deployment/web --revision=2"
    )]
    History {
        #[arg(required = true)]
        args: Vec<String>,
        /// Show the pod template of this revision.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Go back to the previous revision (or `--to-revision`).
    #[command(
        after_help = "Examples:\n  selur rollout undo deployment/web\n  selur rollout undo deployment/web --to-revision=1"
    )]
    Undo {
        #[arg(required = true)]
        args: Vec<String>,
        /// The revision to go back to (0: the previous one).
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Replace every pod, one batch at a time, by stamping the template.
    #[command(after_help = "Examples:\n  selur rollout restart deployment/web")]
    Restart {
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Stop rolling out template changes (scaling still applies).
    Pause {
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Roll out template changes again.
    Resume {
        #[arg(required = true)]
        args: Vec<String>,
    },
}

/// Deployments named by `args`.
fn deployments(args: &[String]) -> anyhow::Result<Vec<(&'static ResourceKind, String)>> {
    targets(args)?
        .into_iter()
        .map(|(kind, name)| {
            if kind.kind != "Deployment" {
                bail!(
                    "rollout works on deployments; {} are not supported",
                    kind.plural
                );
            }
            let name = name.ok_or_else(|| anyhow!("name the deployment, e.g. deployment/web"))?;
            Ok((kind, name))
        })
        .collect()
}

pub async fn run(client: &Client, ns: &str, a: RolloutArgs) -> anyhow::Result<()> {
    match a.cmd {
        RolloutCmd::Status {
            args,
            watch,
            timeout,
        } => {
            let timeout = parse_duration(&timeout)?;
            for (kind, name) in deployments(&args)? {
                status(client, &object_path(kind, ns, &name), &name, watch, timeout).await?;
            }
        }
        RolloutCmd::History { args, revision } => {
            for (kind, name) in deployments(&args)? {
                history(client, kind, ns, &name, revision).await?;
            }
        }
        RolloutCmd::Undo { args, to_revision } => {
            for (kind, name) in deployments(&args)? {
                undo(client, kind, ns, &name, to_revision).await?;
            }
        }
        RolloutCmd::Restart { args } => {
            for (kind, name) in deployments(&args)? {
                let path = object_path(kind, ns, &name);
                let d = client.get(&path).await?;
                if d.pointer("/spec/paused") == Some(&json!(true)) {
                    bail!("can't restart paused deployment (run rollout resume first)");
                }
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": now}}}}});
                merge(client, &path, &patch).await?;
                println!("{}/{name} restarted", kind.qualified_singular());
            }
        }
        RolloutCmd::Pause { args } => pause(client, ns, &args, true).await?,
        RolloutCmd::Resume { args } => pause(client, ns, &args, false).await?,
    }
    Ok(())
}

async fn merge(client: &Client, path: &str, patch: &Value) -> anyhow::Result<Value> {
    Ok(client
        .json(
            Method::PATCH,
            path,
            &[],
            patch,
            "application/merge-patch+json",
        )
        .await?)
}

async fn pause(client: &Client, ns: &str, args: &[String], on: bool) -> anyhow::Result<()> {
    for (kind, name) in deployments(args)? {
        let path = object_path(kind, ns, &name);
        let d = client.get(&path).await?;
        let paused = d
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if paused == on {
            let what = if on { "already paused" } else { "not paused" };
            bail!("{} \"{name}\" is {what}", kind.qualified_plural());
        }
        merge(client, &path, &json!({"spec": {"paused": on}})).await?;
        let done = if on { "paused" } else { "resumed" };
        println!("{}/{name} {done}", kind.qualified_singular());
    }
    Ok(())
}

/// kubectl's message for a Deployment's rollout, and whether it is done.
pub fn status_message(d: &Value, name: &str) -> anyhow::Result<(String, bool)> {
    let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    if int("/metadata/generation") > int("/status/observedGeneration") {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let timed_out = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
        });
    if timed_out {
        bail!("deployment \"{name}\" exceeded its progress deadline");
    }
    let (want, updated) = (int("/spec/replicas"), int("/status/updatedReplicas"));
    let (replicas, available) = (int("/status/replicas"), int("/status/availableReplicas"));
    let msg = if updated < want {
        format!("Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated...")
    } else if replicas > updated {
        format!("Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...", replicas - updated)
    } else if available < updated {
        format!("Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available...")
    } else {
        return Ok((
            format!("deployment \"{name}\" successfully rolled out"),
            true,
        ));
    };
    Ok((msg, false))
}

async fn status(
    client: &Client,
    path: &str,
    name: &str,
    watch: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let d = client.get(path).await?;
        let (msg, done) = status_message(&d, name)?;
        if msg != last {
            println!("{msg}");
            last = msg;
        }
        if done || !watch {
            return Ok(());
        }
        if !timeout.is_zero() && start.elapsed() >= timeout {
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Deployment and its ReplicaSets, oldest revision first.
async fn revisions(
    client: &Client,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
) -> anyhow::Result<(Value, Vec<(i64, Value)>)> {
    let d = client.get(&object_path(kind, ns, name)).await?;
    let uid = d.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let rs_kind = selur_api::kinds::by_cli_name("replicasets")
        .ok_or_else(|| anyhow!("replicasets kind missing"))?;
    let list = client.get(&rs_kind.collection_path(Some(ns))).await?;
    let mut out: Vec<(i64, Value)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|o| o.iter().any(|r| r["uid"] == uid && r["controller"] == true))
        })
        .map(|rs| {
            let rev = rs
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (rev, rs.clone())
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    Ok((d, out))
}

/// A ReplicaSet's template as the Deployment's (without pod-template-hash).
fn template_of(rs: &Value) -> Value {
    let mut t = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
    }
    t
}

async fn history(
    client: &Client,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
    revision: Option<i64>,
) -> anyhow::Result<()> {
    let (_, revs) = revisions(client, kind, ns, name).await?;
    if let Some(want) = revision {
        let (_, rs) = revs
            .iter()
            .find(|(r, _)| *r == want)
            .ok_or_else(|| anyhow!("unable to find the specified revision {want}"))?;
        println!(
            "{}/{name} with revision #{want}\nPod Template:",
            kind.qualified_singular()
        );
        print!("{}", print::to_yaml(&template_of(rs)));
        return Ok(());
    }
    println!("{}/{name}", kind.qualified_singular());
    let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for (rev, rs) in &revs {
        let cause = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get("kubernetes.io/change-cause"))
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        rows.push(vec![rev.to_string(), cause.to_string()]);
    }
    print!("{}", print::render(&rows));
    Ok(())
}

async fn undo(
    client: &Client,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
    to: i64,
) -> anyhow::Result<()> {
    let (d, revs) = revisions(client, kind, ns, name).await?;
    if d.pointer("/spec/paused") == Some(&json!(true)) {
        bail!("you cannot rollback a paused deployment; resume it first with 'selur rollout resume' and try again");
    }
    let target = if to == 0 {
        // The newest revision before the newest one.
        revs.iter()
            .rev()
            .nth(1)
            .ok_or_else(|| anyhow!("no rollout history found for deployment \"{name}\""))?
    } else {
        revs.iter()
            .find(|(r, _)| *r == to)
            .ok_or_else(|| anyhow!("unable to find specified revision {to} in history"))?
    };
    let template = template_of(&target.1);
    if d.pointer("/spec/template") == Some(&template) {
        println!(
            "{}/{name} skipped rollback (current template already matches revision {})",
            kind.qualified_singular(),
            target.0
        );
        return Ok(());
    }
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    client
        .json(
            Method::PATCH,
            &object_path(kind, ns, name),
            &[],
            &patch,
            "application/json-patch+json",
        )
        .await?;
    println!("{}/{name} rolled back", kind.qualified_singular());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_follow_kubectl() {
        let d = |gen: i64, obs: i64, want: i64, upd: i64, reps: i64, avail: i64| {
            json!({"metadata": {"generation": gen}, "spec": {"replicas": want},
                "status": {"observedGeneration": obs, "updatedReplicas": upd, "replicas": reps, "availableReplicas": avail}})
        };
        let m = |v: Value| {
            status_message(&v, "web")
                .map(|(m, _)| m)
                .unwrap_or_default()
        };
        assert!(m(d(2, 1, 3, 3, 3, 3)).contains("spec update to be observed"));
        assert!(m(d(1, 1, 3, 1, 4, 1)).contains("1 out of 3 new replicas have been updated"));
        assert!(m(d(1, 1, 3, 3, 5, 3)).contains("2 old replicas are pending termination"));
        assert!(m(d(1, 1, 3, 3, 3, 1)).contains("1 of 3 updated replicas are available"));
        assert_eq!(
            status_message(&d(1, 1, 3, 3, 3, 3), "web").ok(),
            Some(("deployment \"web\" successfully rolled out".into(), true))
        );
        let mut stuck = d(1, 1, 3, 1, 3, 1);
        stuck["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert!(status_message(&stuck, "web").is_err());
    }
}
