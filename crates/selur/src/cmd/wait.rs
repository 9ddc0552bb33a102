//! `selur wait`: until an object has a condition, or is gone.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use serde_json::Value;

use super::{object_path, parse_duration, targets};
use crate::client::Client;

/// `selur wait`.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// KIND/NAME or KIND NAME.
    #[arg(required = true)]
    args: Vec<String>,
    /// `condition=NAME[=VALUE]` or `delete`.
    #[arg(long = "for")]
    for_: String,
    /// How long to wait (`30s`, `5m`).
    #[arg(long, default_value = "30s")]
    timeout: String,
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

pub async fn run(client: &Client, ns: &str, a: WaitArgs) -> anyhow::Result<()> {
    let for_ = a.for_.as_str();
    let timeout = parse_duration(&a.timeout)?;
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
    for (kind, name) in targets(&a.args)? {
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
