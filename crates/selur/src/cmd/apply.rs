//! `selur apply`: kubectl's client-side apply.
//!
//! Each object carries its last applied manifest in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation; a re-apply
//! sends the three-way strategic merge patch between that, the new manifest
//! and the live object, so fields others set (replicas from an autoscaler, a
//! field inside a container) survive.
//!
//! A file is applied all or nothing: every document is first dry-run in order
//! (a Namespace created earlier in the same run counts as existing), and if
//! the real apply still fails part-way, what this command created is deleted
//! again.

use std::collections::HashSet;

use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};

use selur_api::decode;
use selur_api::kinds::ResourceKind;
use selur_api::patch::three_way_merge;

use super::ClientArgs;
use crate::client::{Client, ClientError};
use crate::manifest::{self, Doc};

/// `selur apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// File, directory or - for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Only check with the server (`All`); nothing is written.
    #[arg(long, value_name = "All")]
    dry_run: Option<String>,
}

/// `selur apply -f ...`: read every file first (before looking for the
/// server), then apply all or nothing.
pub async fn run(g: &ClientArgs, a: ApplyArgs) -> anyhow::Result<()> {
    let dry = match a.dry_run.as_deref() {
        None => false,
        Some("All") | Some("server") => true,
        Some(other) => {
            anyhow::bail!("--dry-run={other} is not supported: use --dry-run=All")
        }
    };
    let docs = manifest::read_all(&a.files)
        .map_err(|e| anyhow::anyhow!("error: {e}\nnothing was applied"))?;
    apply(&g.client()?, &docs, &g.namespace, dry).await?;
    Ok(())
}

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// An apply failure, already worded for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(pub String);

struct Target {
    kind: &'static ResourceKind,
    namespace: Option<String>,
    name: String,
}

impl Target {
    fn path(&self) -> String {
        format!(
            "{}/{}",
            self.kind.collection_path(self.namespace.as_deref()),
            self.name
        )
    }
    fn display(&self) -> String {
        format!("{}/{}", self.kind.qualified_singular(), self.name)
    }
}

fn target_of(doc: &Doc, default_ns: &str) -> Result<Target, ApplyError> {
    let kind = decode::kind_of(&doc.value)
        .map_err(|e| ApplyError(format!("error: {}: {e}", doc.location())))?;
    let name = doc
        .value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApplyError(format!(
                "error: {}: metadata.name: Required value: apply needs a name for every object (generateName is not enough)",
                doc.location()
            ))
        })?
        .to_string();
    let namespace = if kind.namespaced {
        Some(
            doc.value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(default_ns)
                .to_string(),
        )
    } else {
        None
    };
    Ok(Target {
        kind,
        namespace,
        name,
    })
}

/// The manifest as it will be stored: with its namespace and the last-applied annotation.
fn modified_of(doc: &Doc, t: &Target) -> Value {
    let mut m = doc.value.clone();
    if let Some(ns) = &t.namespace {
        m["metadata"]["namespace"] = json!(ns);
    }
    if let Some(a) = m
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    let last = serde_json::to_string(&m).unwrap_or_default();
    if !m["metadata"]
        .get("annotations")
        .is_some_and(Value::is_object)
    {
        m["metadata"]["annotations"] = json!({});
    }
    m["metadata"]["annotations"][LAST_APPLIED] = json!(last);
    m
}

fn dry(dry_run: bool) -> Vec<(&'static str, String)> {
    if dry_run {
        vec![("dryRun", "All".to_string())]
    } else {
        vec![]
    }
}

/// Apply one document; `dry_run` asks the server to check without writing.
async fn apply_one(
    client: &Client,
    t: &Target,
    modified: &Value,
    dry_run: bool,
) -> Result<Outcome, ClientError> {
    match client.get(&t.path()).await {
        Err(e) if e.code() == Some(404) => {
            client
                .json(
                    Method::POST,
                    &t.kind.collection_path(t.namespace.as_deref()),
                    &dry(dry_run),
                    modified,
                    "application/json",
                )
                .await?;
            Ok(Outcome::Created)
        }
        Err(e) => Err(e),
        Ok(live) => {
            let original: Option<Value> = live
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    LAST_APPLIED.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str(s).ok());
            let patch = three_way_merge(original.as_ref(), modified, &live).map_err(|e| {
                ClientError::Api {
                    code: 422,
                    reason: "Invalid".into(),
                    message: e.to_string(),
                    details_kind: None,
                    details_name: None,
                }
            })?;
            if patch.as_object().is_none_or(|m| m.is_empty()) {
                return Ok(Outcome::Unchanged);
            }
            let out = client
                .json(
                    Method::PATCH,
                    &t.path(),
                    &dry(dry_run),
                    &patch,
                    "application/strategic-merge-patch+json",
                )
                .await?;
            let before = live.pointer("/metadata/resourceVersion");
            if !dry_run && out.pointer("/metadata/resourceVersion") == before {
                Ok(Outcome::Unchanged)
            } else {
                Ok(Outcome::Configured)
            }
        }
    }
}

/// Apply all documents, all or nothing. Prints one line per object.
pub async fn apply(
    client: &Client,
    docs: &[Doc],
    default_ns: &str,
    dry_run_only: bool,
) -> Result<(), ApplyError> {
    let mut targets = Vec::with_capacity(docs.len());
    for d in docs {
        let t = target_of(d, default_ns)?;
        let m = modified_of(d, &t);
        targets.push((d, t, m));
    }
    // Phase 1: dry-run everything, in order.
    let mut new_namespaces: HashSet<String> = HashSet::new();
    for (doc, t, m) in &targets {
        match apply_one(client, t, m, true).await {
            Ok(o) => {
                if t.kind.kind == "Namespace" && o == Outcome::Created {
                    new_namespaces.insert(t.name.clone());
                }
            }
            // Admission passed; only the namespace, created by an earlier document, is missing yet.
            Err(ClientError::Api {
                code: 404,
                details_kind: Some(k),
                details_name: Some(n),
                ..
            }) if k == "namespaces" && new_namespaces.contains(&n) => {}
            Err(e) => {
                return Err(ApplyError(format!(
                    "error: {}: {e}\nnothing was applied",
                    doc.location()
                )))
            }
        }
    }
    if dry_run_only {
        for (_, t, _) in &targets {
            println!("{} (server dry run)", t.display());
        }
        return Ok(());
    }
    // Phase 2: apply for real; undo creations on failure.
    let mut created: Vec<&Target> = Vec::new();
    for (doc, t, m) in &targets {
        match apply_one(client, t, m, false).await {
            Ok(o) => {
                println!("{} {}", t.display(), o.word());
                if o == Outcome::Created {
                    created.push(t);
                }
            }
            Err(e) => {
                let mut msg = format!("error: {}: {e}", doc.location());
                let mut undone = Vec::new();
                for c in created.iter().rev() {
                    match client.request(Method::DELETE, &c.path(), &[], None).await {
                        Ok(_) => undone.push(c.display()),
                        Err(de) => {
                            msg.push_str(&format!("\nrollback of {} failed: {de}", c.display()))
                        }
                    }
                }
                if !undone.is_empty() {
                    msg.push_str(&format!(
                        "\nrolled back (deleted what this command created): {}",
                        undone.join(", ")
                    ));
                }
                return Err(ApplyError(msg));
            }
        }
    }
    Ok(())
}
