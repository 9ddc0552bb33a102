//! `selur health`: each container's last Lago Grey health (`obli-pkg
//! status`) as the node's probe parsed it.

use reqwest::Method;
use serde_json::Value;

use super::{kind_arg, object_path};
use crate::client::{status_error, Client};

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
pub async fn run(client: &Client, ns: &str, a: HealthArgs) -> anyhow::Result<()> {
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
