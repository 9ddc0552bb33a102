//! `?watch=true`: a stream of newline-delimited `{"type": ..., "object": ...}`
//! events for one collection, translated from store events with label and field
//! selectors applied the Kubernetes way (an object that stops matching is
//! reported DELETED, one that starts matching ADDED), plus BOOKMARK events.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use selur_api::selector::{FieldSelector, LabelSelector};
use selur_api::ResourceKind;
use selur_store::{Event, EventType, Revision};

use crate::registry::{decode_kv, field_selector_fields, prefix, Registry};
use crate::status::{ApiError, ApiResult};

/// What a watch asks for.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub resource_version: Option<String>,
    pub allow_bookmarks: bool,
    pub timeout: Option<Duration>,
}

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": event_type, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Translate one store event; `None` when the watcher should not see it.
fn translate(ev: &Event, filter: &Filter) -> ApiResult<Option<Bytes>> {
    let obj = decode_kv(&ev.kv)?;
    let prev = match &ev.prev {
        Some(p) => Some(decode_kv(p)?),
        None => None,
    };
    let now = filter.matches(&obj);
    let before = prev.as_ref().is_some_and(|p| filter.matches(p));
    Ok(match ev.event_type {
        EventType::Delete => now.then(|| line("DELETED", &obj)),
        EventType::Put => match (prev.is_some() && before, now) {
            (true, true) => Some(line("MODIFIED", &obj)),
            (false, true) => Some(line("ADDED", &obj)),
            (true, false) => Some(line("DELETED", &obj)),
            (false, false) => None,
        },
    })
}

/// Start a watch; errors that can be known up front (bad selector, compacted
/// revision → 410) come back before any byte is streamed.
pub async fn start(
    registry: &Registry,
    kind: &'static ResourceKind,
    namespace: Option<&str>,
    params: WatchParams,
    bookmark_interval: Duration,
) -> ApiResult<mpsc::Receiver<Bytes>> {
    let filter = Filter {
        labels: LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        fields: FieldSelector::parse(
            params.field_selector.as_deref().unwrap_or(""),
            field_selector_fields(kind),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let pfx = prefix(kind, namespace);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial = Vec::new();
    let from: Revision = match params.resource_version.as_deref() {
        None | Some("") | Some("0") => {
            let list = registry.store.list(&pfx, None, 0).await?;
            for kv in &list.items {
                let obj = decode_kv(kv)?;
                if filter.matches(&obj) {
                    initial.push(line("ADDED", &obj));
                }
            }
            list.revision
        }
        Some(s) => s.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion {s:?} is not valid: it must be a number from an earlier response"
            ))
        })?,
    };
    let mut events = registry.store.watch(&pfx, from).await?;
    let api_version = kind.api_version();
    let kind_name = kind.kind;
    tokio::spawn(async move {
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let mut last = from;
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let sleep_until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Ok(ev)) => {
                        last = last.max(ev.revision());
                        match translate(&ev, &filter) {
                            Ok(Some(l)) => if tx.send(l).await.is_err() { return },
                            Ok(None) => {}
                            Err(e) => {
                                let _ = tx.send(line("ERROR", &e.to_status())).await;
                                return;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(line("ERROR", &ApiError::from(e).to_status())).await;
                        return;
                    }
                    None => return,
                },
                _ = ticker.tick(), if params.allow_bookmarks => {
                    let bm = json!({"kind": kind_name, "apiVersion": api_version,
                        "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(line("BOOKMARK", &bm)).await.is_err() { return }
                }
                _ = tx.closed() => return,
                _ = sleep_until => return,
            }
        }
    });
    Ok(rx)
}
