//! Events the control plane records (Scheduled, FailedScheduling,
//! SuccessfulCreate, ScalingReplicaSet, ...), deduplicated as client-go's
//! event correlator does: an event repeating the same object, type, reason
//! and message updates the existing Event's `count` and `lastTimestamp`
//! instead of creating another.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use selur_api::kinds;

use crate::clock::rfc3339;
use crate::registry::Registry;
use crate::status::ApiError;

/// Records events for one component (e.g. `default-scheduler`). Clones
/// share the dedup memory.
#[derive(Clone)]
pub struct Recorder {
    reg: Registry,
    component: &'static str,
    seen: std::sync::Arc<Mutex<Seen>>,
}

/// Dedup key -> (event name, namespace, count).
type Seen = HashMap<String, (String, String, u64)>;

/// Keep at most this many dedup entries (oldest forgotten first is not
/// tracked; the map is simply cleared when full, which only costs a new Event).
const MAX_SEEN: usize = 4096;

impl Recorder {
    pub fn new(reg: Registry, component: &'static str) -> Self {
        Self {
            reg,
            component,
            seen: Default::default(),
        }
    }

    /// Record `reason`/`message` of type `Normal` or `Warning` about `obj`
    /// (any object with apiVersion, kind and metadata). Failures are logged,
    /// never returned: events are informational.
    pub async fn record(&self, obj: &Value, type_: &str, reason: &str, message: &str) {
        if let Err(e) = self.try_record(obj, type_, reason, message).await {
            tracing::debug!(component = self.component, reason, error = %e, "event not recorded");
        }
    }

    /// [`Recorder::record`] without waiting for it (off a controller's path).
    pub fn record_later(
        &self,
        obj: &Value,
        type_: &'static str,
        reason: &'static str,
        message: String,
    ) {
        let (rec, obj) = (self.clone(), obj.clone());
        tokio::spawn(async move { rec.record(&obj, type_, reason, &message).await });
    }

    async fn try_record(
        &self,
        obj: &Value,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let Some(event_kind) = kinds::by_cli_name("events") else {
            return Err(ApiError::internal("kind events missing"));
        };
        let meta = &obj["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
        let name = meta["name"].as_str().unwrap_or("");
        let uid = meta["uid"].as_str().unwrap_or("");
        let key = format!("{uid}\u{0}{type_}\u{0}{reason}\u{0}{message}");
        let now = rfc3339(self.reg.clock.now());
        let known = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some((ev_name, ev_ns, count)) = known {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let res = self
                .reg
                .merge(
                    event_kind,
                    Some(&ev_ns),
                    &ev_name,
                    &patch,
                    crate::registry::Subresource::Main,
                )
                .await;
            if res.is_ok() {
                if let Ok(mut m) = self.seen.lock() {
                    m.insert(key, (ev_name, ev_ns, count + 1));
                }
                return Ok(());
            }
        }
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{name}."), "namespace": ns},
            "involvedObject": {"kind": obj["kind"], "apiVersion": obj["apiVersion"],
                "name": name, "namespace": meta["namespace"], "uid": uid,
                "resourceVersion": meta["resourceVersion"]},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let created = self.reg.create(event_kind, Some(&ns), ev, false).await?;
        if let (Some(ev_name), Ok(mut m)) = (created["metadata"]["name"].as_str(), self.seen.lock())
        {
            if m.len() >= MAX_SEEN {
                m.clear();
            }
            m.insert(key, (ev_name.to_string(), ns, 1));
        }
        Ok(())
    }
}
