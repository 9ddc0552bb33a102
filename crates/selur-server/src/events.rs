//! Events the control plane records (Scheduled, FailedScheduling,
//! SuccessfulCreate, ScalingReplicaSet, ...) through the shared recorder of
//! `selur-client` (the agent uses the same one over HTTP): an event
//! repeating the same object, type, reason and message updates the
//! existing Event's `count` and `lastTimestamp` instead of creating
//! another. Here the sink is the registry itself, stamped by the server's
//! clock.

use futures::future::BoxFuture;
use serde_json::{json, Value};

use selur_api::kinds;
use selur_client::recorder::{ObjectRef, Recorder as Shared, Sink, SinkError};

use crate::registry::Registry;
use crate::status::ApiError;

/// Events written straight into the registry.
pub struct RegistrySink {
    reg: Registry,
}

fn event_kind() -> Result<&'static selur_api::kinds::ResourceKind, ApiError> {
    kinds::by_cli_name("events").ok_or_else(|| ApiError::internal("kind events missing"))
}

impl Sink for RegistrySink {
    fn create<'a>(
        &'a self,
        namespace: &'a str,
        event: Value,
    ) -> BoxFuture<'a, Result<(), (bool, SinkError)>> {
        Box::pin(async move {
            let kind = event_kind().map_err(|e| (false, Box::new(e) as SinkError))?;
            match self.reg.create(kind, Some(namespace), event, false).await {
                Ok(_) => Ok(()),
                Err(e) => Err((e.code == 409, Box::new(e) as SinkError)),
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
            let kind = event_kind().map_err(|e| Box::new(e) as SinkError)?;
            let patch = json!({"count": count, "lastTimestamp": last});
            match self
                .reg
                .merge(
                    kind,
                    Some(namespace),
                    name,
                    &patch,
                    crate::registry::Subresource::Main,
                )
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.code == 404 => Ok(false),
                Err(e) => Err(Box::new(e) as SinkError),
            }
        })
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.reg.clock.now()
    }
}

/// Records events for one component (e.g. `default-scheduler`). Clones
/// share the dedup memory.
#[derive(Clone)]
pub struct Recorder {
    inner: Shared<RegistrySink>,
}

impl Recorder {
    pub fn new(reg: Registry, component: &'static str) -> Self {
        Self {
            inner: Shared::new(RegistrySink { reg }, component, None),
        }
    }

    /// Record `reason`/`message` of type `Normal` or `Warning` about `obj`
    /// (any object with apiVersion, kind and metadata). Failures are logged,
    /// never returned: events are informational.
    pub async fn record(&self, obj: &Value, type_: &str, reason: &str, message: &str) {
        self.inner
            .record(&ObjectRef::of(obj), type_, reason, message)
            .await;
    }

    /// [`Recorder::record`] without waiting for it (off a controller's path).
    pub fn record_later(
        &self,
        obj: &Value,
        type_: &'static str,
        reason: &'static str,
        message: String,
    ) {
        self.inner
            .record_later(ObjectRef::of(obj), type_, reason, message);
    }
}
