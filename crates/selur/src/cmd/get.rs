//! `selur get`: list objects or show some, as a table or `-o
//! json|yaml|name|wide`, and with `-w` keep printing changes.

use anyhow::{anyhow, bail, Context};
use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use selur_api::kinds::ResourceKind;

use super::{object_path, targets};
use crate::client::{status_error, Client};
use crate::print::{self, Format};

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

pub async fn run(client: &Client, ns: &str, a: GetArgs) -> anyhow::Result<()> {
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
