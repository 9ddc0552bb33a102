//! `selur scale`: set the replicas of a Deployment or ReplicaSet through its
//! scale subresource.

use anyhow::{anyhow, bail};
use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::{object_path, targets};
use crate::client::Client;

/// `selur scale`.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true)]
    args: Vec<String>,
    #[arg(long)]
    replicas: i64,
}

pub async fn run(client: &Client, ns: &str, a: ScaleArgs) -> anyhow::Result<()> {
    let replicas = a.replicas;
    for (kind, name) in targets(&a.args)? {
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
