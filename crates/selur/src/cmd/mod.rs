//! The client verbs, one module each (`selur get` is [`get`], `selur
//! port-forward` is [`port_forward`]): each has its arguments and a `run`
//! that main.rs calls after parsing. Shared here: naming objects on the
//! command line (`KIND NAME...`, `KIND/NAME...`) and durations.

pub mod apply;
pub mod delete;
pub mod describe;
pub mod exec;
pub mod get;
pub mod health;
pub mod image;
pub mod logs;
pub mod node;
pub mod port_forward;
pub mod rollout;
pub mod scale;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;

use selur_api::kinds::{self, ResourceKind};

use crate::client::Client;

/// Where the API server is, and the namespace: options of every client verb
/// (and of its subcommands, as `selur rollout status`), not of `selur server`
/// or `selur agent`.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Kubeconfig to read the API address from (default:
    /// /var/lib/selur/kubeconfig). KUBECONFIG is not read: it usually names
    /// another cluster.
    #[arg(long, global = true, env = "SELUR_CONFIG")]
    kubeconfig: Option<PathBuf>,
    /// API server URL; overrides the kubeconfig.
    #[arg(long, global = true, env = "SELUR_SERVER")]
    server: Option<String>,
    /// Namespace for namespaced objects.
    #[arg(short = 'n', long, global = true, default_value = "default")]
    pub namespace: String,
}

impl ClientArgs {
    /// The API client these options point at.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(
            self.server.as_deref(),
            self.kubeconfig.as_deref(),
        )?)
    }
}

/// A client verb's command line: its own arguments, then the [`ClientArgs`].
#[derive(Args, Debug)]
pub struct Verb<A: Args> {
    #[command(flatten)]
    pub args: A,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(crate) fn kind_arg(word: &str) -> anyhow::Result<&'static ResourceKind> {
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
