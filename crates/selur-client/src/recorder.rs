//! The event recorder of the agent and the server's controllers: an event
//! repeating the same object (by uid), field path, type, reason and message
//! bumps the existing Event's `count` and `lastTimestamp` instead of
//! creating another, as client-go's event correlator does; new Events get
//! names that never collide (`<object>.<time in ns, hex><sequence>`, a new
//! name on a 409). Where Events are written is a [`Sink`]: the API over
//! HTTP ([`ApiSink`]) for agents, the registry for the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::{Client, ClientError};

/// A failure of a sink (events are informational: logged, not returned).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where Events are written.
pub trait Sink: Send + Sync + 'static {
    /// Create `event` in `namespace`; Err(true) when its name was taken.
    fn create<'a>(
        &'a self,
        namespace: &'a str,
        event: Value,
    ) -> BoxFuture<'a, Result<(), (bool, SinkError)>>;
    /// Set `count` and `lastTimestamp` of an existing Event; false when it is gone.
    fn bump<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        count: u64,
        last: &'a str,
    ) -> BoxFuture<'a, Result<bool, SinkError>>;
    /// The time stamped on events (a sink may follow a test clock).
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// The object an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// e.g. `spec.containers{web}`.
    pub field_path: String,
}

impl ObjectRef {
    /// From an object with apiVersion, kind and metadata.
    pub fn of(obj: &Value) -> Self {
        let s = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Self {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name"),
            uid: s("/metadata/uid"),
            field_path: String::new(),
        }
    }

    /// The same object, about one of its parts.
    pub fn field(mut self, path: &str) -> Self {
        self.field_path = path.to_string();
        self
    }

    fn json(&self) -> Value {
        let mut v = json!({"apiVersion": self.api_version, "kind": self.kind,
            "name": self.name, "uid": self.uid});
        if !self.namespace.is_empty() {
            v["namespace"] = json!(self.namespace);
        }
        if !self.field_path.is_empty() {
            v["fieldPath"] = json!(self.field_path);
        }
        v
    }
}

/// Dedup key -> (event name, namespace, count).
type Seen = HashMap<String, (String, String, u64)>;

/// Keep at most this many dedup entries (the map is cleared when full,
/// which only costs a new Event).
const MAX_SEEN: usize = 4096;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A name for a new Event about `object` that no other recorder picks.
pub fn event_name(object: &str, nanos: i128) -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut base: String = object.chars().take(200).collect();
    while base.ends_with('.') || base.ends_with('-') {
        base.pop();
    }
    if base.is_empty() {
        base.push_str("event");
    }
    format!("{base}.{:x}{seq:x}", nanos.max(0))
}

/// Records events for one component; clones share the dedup memory.
pub struct Recorder<S> {
    sink: Arc<S>,
    component: String,
    host: Option<String>,
    seen: Arc<Mutex<Seen>>,
}

impl<S> Clone for Recorder<S> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            component: self.component.clone(),
            host: self.host.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl<S: Sink> Recorder<S> {
    /// For `component` (e.g. `selur-agent`), on `host` (a node) if any.
    pub fn new(sink: S, component: &str, host: Option<&str>) -> Self {
        Self {
            sink: Arc::new(sink),
            component: component.to_string(),
            host: host.map(String::from),
            seen: Default::default(),
        }
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Record an event of type `Normal` or `Warning`. Failures are logged.
    pub async fn record(&self, obj: &ObjectRef, type_: &str, reason: &str, message: &str) {
        if let Err(e) = self.try_record(obj, type_, reason, message).await {
            tracing::debug!(component = %self.component, reason, error = %e, "event not recorded");
        }
    }

    /// [`Recorder::record`] without waiting (off a hot path).
    pub fn record_later(&self, obj: ObjectRef, type_: &str, reason: &str, message: String) {
        let rec = self.clone();
        let (t, r) = (type_.to_string(), reason.to_string());
        tokio::spawn(async move { rec.record(&obj, &t, &r, &message).await });
    }

    async fn try_record(
        &self,
        obj: &ObjectRef,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), SinkError> {
        let ns = if obj.namespace.is_empty() {
            "default".to_string()
        } else {
            obj.namespace.clone()
        };
        let id = if obj.uid.is_empty() {
            &obj.name
        } else {
            &obj.uid
        };
        let key = format!(
            "{id}\u{0}{}\u{0}{type_}\u{0}{reason}\u{0}{message}",
            obj.field_path
        );
        let now = self.sink.now();
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let known = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some((name, ens, count)) = known {
            if self.sink.bump(&ens, &name, count + 1, &stamp).await? {
                if let Ok(mut m) = self.seen.lock() {
                    m.insert(key, (name, ens, count + 1));
                }
                return Ok(());
            }
        }
        let mut source = json!({"component": self.component});
        if let Some(h) = &self.host {
            source["host"] = json!(h);
        }
        for _ in 0..3 {
            let nanos = now.timestamp_nanos_opt().map(i128::from).unwrap_or(0);
            let name = event_name(&obj.name, nanos);
            let ev = json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": obj.json(),
                "reason": reason, "message": message, "type": type_,
                "source": source,
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                "reportingComponent": self.component,
                "reportingInstance": self.host.clone().unwrap_or_default(),
            });
            match self.sink.create(&ns, ev).await {
                Ok(()) => {
                    if let Ok(mut m) = self.seen.lock() {
                        if m.len() >= MAX_SEEN {
                            m.clear();
                        }
                        m.insert(key, (name, ns, 1));
                    }
                    return Ok(());
                }
                Err((true, _)) => continue,
                Err((false, e)) => return Err(e),
            }
        }
        Err("three event names in a row were taken".into())
    }
}

/// Events written through the API.
#[derive(Debug, Clone)]
pub struct ApiSink {
    pub client: Client,
}

impl Sink for ApiSink {
    fn create<'a>(
        &'a self,
        namespace: &'a str,
        event: Value,
    ) -> BoxFuture<'a, Result<(), (bool, SinkError)>> {
        Box::pin(async move {
            let path = format!("/api/v1/namespaces/{namespace}/events");
            match self.client.post(&path, &event).await {
                Ok(_) => Ok(()),
                Err(e) => Err((e.is_conflict(), Box::new(e) as SinkError)),
            }
        })
    }

    fn bump<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        count: u64,
        last: &'a str,
    ) -> BoxFuture<'a, Result<bool, SinkError>> {
        Box::pin(async move {
            let path = format!("/api/v1/namespaces/{namespace}/events/{name}");
            match self
                .client
                .merge_patch(&path, &json!({"count": count, "lastTimestamp": last}))
                .await
            {
                Ok(_) => Ok(true),
                Err(ClientError::Api { code: 404, .. }) => Ok(false),
                Err(e) => Err(Box::new(e) as SinkError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Memory {
        events: Mutex<HashMap<String, Value>>,
        taken: Mutex<u32>,
    }

    impl Sink for Memory {
        fn create<'a>(
            &'a self,
            _ns: &'a str,
            event: Value,
        ) -> BoxFuture<'a, Result<(), (bool, SinkError)>> {
            Box::pin(async move {
                let mut t = self.taken.lock().unwrap();
                if *t > 0 {
                    *t -= 1;
                    return Err((true, "taken".into()));
                }
                let name = event["metadata"]["name"].as_str().unwrap().to_string();
                let mut m = self.events.lock().unwrap();
                assert!(!m.contains_key(&name), "name collision");
                m.insert(name, event);
                Ok(())
            })
        }

        fn bump<'a>(
            &'a self,
            _ns: &'a str,
            name: &'a str,
            count: u64,
            last: &'a str,
        ) -> BoxFuture<'a, Result<bool, SinkError>> {
            Box::pin(async move {
                let mut m = self.events.lock().unwrap();
                Ok(match m.get_mut(name) {
                    Some(e) => {
                        e["count"] = json!(count);
                        e["lastTimestamp"] = json!(last);
                        true
                    }
                    None => false,
                })
            })
        }
    }

    fn pod(uid: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: uid.into(),
            field_path: String::new(),
        }
    }

    #[tokio::test]
    async fn repeats_bump_the_count_and_new_objects_get_their_own_event() {
        let rec = Recorder::new(Memory::default(), "selur-agent", Some("n1"));
        for _ in 0..3 {
            rec.record(&pod("u1"), "Warning", "BackOff", "back-off")
                .await;
        }
        // Same name, other uid (a re-created pod): a separate Event.
        rec.record(&pod("u2"), "Warning", "BackOff", "back-off")
            .await;
        // Another part of the same pod: separate too.
        rec.record(
            &pod("u1").field("spec.containers{a}"),
            "Warning",
            "BackOff",
            "back-off",
        )
        .await;
        let m = rec.sink().events.lock().unwrap();
        assert_eq!(m.len(), 3);
        let counts: Vec<u64> = {
            let mut c: Vec<u64> = m.values().map(|e| e["count"].as_u64().unwrap()).collect();
            c.sort();
            c
        };
        assert_eq!(counts, vec![1, 1, 3]);
        let first = m.values().find(|e| e["count"] == 3).unwrap();
        assert_eq!(first["involvedObject"]["uid"], "u1");
        assert_eq!(first["source"]["host"], "n1");
    }

    #[tokio::test]
    async fn a_taken_name_gets_another_and_a_vanished_event_is_recreated() {
        let rec = Recorder::new(Memory::default(), "c", None);
        *rec.sink().taken.lock().unwrap() = 1;
        rec.record(&pod("u1"), "Normal", "Started", "s").await;
        assert_eq!(rec.sink().events.lock().unwrap().len(), 1);
        rec.sink().events.lock().unwrap().clear();
        rec.record(&pod("u1"), "Normal", "Started", "s").await;
        let m = rec.sink().events.lock().unwrap();
        assert_eq!(m.values().next().unwrap()["count"], 1);
    }

    #[test]
    fn names_differ_at_the_same_instant_and_stay_valid() {
        let a = event_name("web", 5);
        let b = event_name("web", 5);
        assert_ne!(a, b);
        let long = event_name(&"x".repeat(300), 1);
        assert!(long.len() < 253);
    }
}
