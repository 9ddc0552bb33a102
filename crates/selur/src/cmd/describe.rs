//! `selur describe`: objects in detail, with their events.

use anyhow::anyhow;
use clap::Args;
use reqwest::Method;

use selur_api::kinds;

use super::{object_path, targets};
use crate::client::Client;
use crate::print;

/// `selur describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true)]
    args: Vec<String>,
}

pub async fn run(client: &Client, ns: &str, a: DescribeArgs) -> anyhow::Result<()> {
    let mut first = true;
    for (kind, name) in targets(&a.args)? {
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
