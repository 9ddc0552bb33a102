//! The scheduler loop: list nodes, pods, the image catalog and
//! PriorityClasses once, then keep that [`Snapshot`] current from a store
//! watch. Pending pods are taken in queue order and placed one after another
//! on the in-memory snapshot (each placement is assumed at once, so a batch
//! never re-reads the store); bindings are written concurrently, so the
//! store's group commit shares fsyncs between them, and each one still
//! fails if its pod changed since it was read. A failed binding drops the
//! assumption and requeues the pod. Pods that fit nowhere get
//! PodScheduled=False and a FailedScheduling event, and wait in the
//! unschedulable set until a node changes or a placed pod goes away (or the
//! retry period passes).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use selur_api::kinds::{self, ResourceKind};
use selur_api::types::Image;
use selur_store::{Event, EventType, KeyValue, Revision};

use super::pod::PodInfo;
use super::queue::{self, Priorities};
use super::snapshot::{CatalogImage, Snapshot};
use super::writes::{bind, p_value, report_unschedulable, BindDone};
use super::{schedule, SCHEDULER_NAME};
use crate::events::Recorder;
use crate::registry::{decode_kv, meta_str, prefix, Registry, ROOT};
use crate::status::{ApiError, ApiResult};

/// Settings of the scheduler loop.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Unschedulable pods are retried at least this often (and on node/pod changes).
    pub retry_period: Duration,
    /// Binding writes in flight at once (they share the store's group commits).
    pub max_binds_in_flight: usize,
    /// Status and event writes in flight at once; kept below the bindings so
    /// that under load placements go first and events trail a little.
    pub max_reports_in_flight: usize,
    /// Told about every successful binding (benchmarks, tests).
    pub observer: Option<mpsc::UnboundedSender<BindRecord>>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            retry_period: Duration::from_secs(30),
            max_binds_in_flight: 512,
            max_reports_in_flight: 16,
            observer: None,
        }
    }
}

/// One successful binding: from taking the pod off the queue to the durable write.
#[derive(Debug, Clone)]
pub struct BindRecord {
    pub pod: String,
    pub node: String,
    pub latency: Duration,
}

struct Kinds {
    pod: &'static ResourceKind,
    nodes: String,
    pods: String,
    images: String,
    classes: String,
}

fn kinds() -> ApiResult<Kinds> {
    let get = |n: &str| {
        kinds::by_cli_name(n).ok_or_else(|| ApiError::internal(format!("kind {n} missing")))
    };
    let image = kinds::by_api_version_kind("images.selur.io/v1", "Image")
        .ok_or_else(|| ApiError::internal("Image kind missing"))?;
    Ok(Kinds {
        pod: get("pods")?,
        nodes: prefix(get("nodes")?, None),
        pods: prefix(get("pods")?, None),
        images: prefix(image, None),
        classes: prefix(get("priorityclasses")?, None),
    })
}

/// The fields that tell a binding coming back from a change that needs a full read.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct LightPod {
    spec: LightSpec,
    status: LightStatus,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LightSpec {
    node_name: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct LightStatus {
    phase: Option<String>,
}

/// A pod waiting for a node, as last read.
pub(super) struct Pending {
    pub pod: Value,
    pub rev: Revision,
    pub info: Arc<PodInfo>,
}

struct State {
    reg: Registry,
    k: Kinds,
    cfg: SchedulerConfig,
    recorder: Arc<Recorder>,
    writes: Arc<Semaphore>,
    snap: Snapshot,
    prio: Priorities,
    pending: HashMap<String, Pending>,
    active: HashSet<String>,
    unschedulable: HashSet<String>,
    in_flight: HashSet<String>,
}

/// Run the scheduler until the task is dropped.
pub async fn run(reg: Registry, cfg: SchedulerConfig) {
    let recorder = Arc::new(Recorder::new(reg.clone(), SCHEDULER_NAME));
    loop {
        if let Err(e) = run_once(reg.clone(), cfg.clone(), recorder.clone()).await {
            tracing::warn!(error = %e, "scheduler: restarting after an error");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// List, then follow the watch until it breaks (compaction, store closed).
async fn run_once(reg: Registry, cfg: SchedulerConfig, recorder: Arc<Recorder>) -> ApiResult<()> {
    let from = reg.store.revision();
    let writes = Arc::new(Semaphore::new(cfg.max_reports_in_flight.max(1)));
    let mut st = State {
        k: kinds()?,
        reg: reg.clone(),
        cfg,
        recorder,
        writes,
        snap: Snapshot::default(),
        prio: Priorities::default(),
        pending: HashMap::new(),
        active: HashSet::new(),
        unschedulable: HashSet::new(),
        in_flight: HashSet::new(),
    };
    for pfx in [&st.k.classes, &st.k.images, &st.k.nodes, &st.k.pods].map(|s| s.clone()) {
        let (items, _) = reg.list_all(&pfx).await?;
        for kv in &items {
            st.apply(EventType::Put, kv);
        }
    }
    let mut watch = reg.store.watch(ROOT, from).await?;
    let mut ticker = tokio::time::interval(st.cfg.retry_period);
    ticker.tick().await;
    let mut binds: JoinSet<BindDone> = JoinSet::new();
    loop {
        if !st.active.is_empty() {
            st.schedule_active(&mut binds).await;
        }
        let mut retry = false;
        tokio::select! {
            ev = watch.recv() => {
                let Some(Ok(ev)) = ev else { return Ok(()) };
                retry |= st.apply_event(&ev);
                loop {
                    match watch.try_recv() {
                        Ok(Ok(ev)) => retry |= st.apply_event(&ev),
                        Ok(Err(_)) => return Ok(()),
                        Err(_) => break,
                    }
                }
            }
            Some(done) = binds.join_next(), if !binds.is_empty() => {
                if let Ok(done) = done {
                    st.bind_done(done);
                }
            }
            _ = ticker.tick() => retry = true,
        }
        if retry {
            let waiting: Vec<String> = st.unschedulable.drain().collect();
            st.active.extend(waiting);
        }
    }
}

impl State {
    fn apply_event(&mut self, ev: &Event) -> bool {
        self.apply(ev.event_type, &ev.kv)
    }

    /// Take one change into the snapshot; true when it may let waiting pods fit.
    fn apply(&mut self, t: EventType, kv: &KeyValue) -> bool {
        let key = kv.key.as_str();
        if let Some(name) = key.strip_prefix(self.k.nodes.as_str()) {
            match (t, serde_json::from_slice::<Node>(&kv.value)) {
                (EventType::Put, Ok(node)) => self.snap.upsert_node(&node),
                _ => self.snap.remove_node(name),
            }
            return t == EventType::Put;
        }
        if key.starts_with(self.k.pods.as_str()) {
            return match t {
                EventType::Put => self.pod_put(kv),
                EventType::Delete => self.pod_gone(key),
            };
        }
        if key.starts_with(self.k.images.as_str()) {
            if let Ok(img) = serde_json::from_slice::<Image>(&kv.value) {
                match t {
                    EventType::Put => self.snap.upsert_image(CatalogImage::from_image(&img)),
                    EventType::Delete => self.snap.remove_image(&img.spec.digest),
                }
            }
        } else if let Some(name) = key.strip_prefix(self.k.classes.as_str()) {
            match (t, serde_json::from_slice::<PriorityClass>(&kv.value)) {
                (EventType::Put, Ok(pc)) => self.prio.upsert(&pc),
                _ => self.prio.remove(name),
            }
        }
        false
    }

    fn pod_gone(&mut self, key: &str) -> bool {
        self.pending.remove(key);
        self.active.remove(key);
        self.unschedulable.remove(key);
        self.snap.unplace(key)
    }

    fn pod_put(&mut self, kv: &KeyValue) -> bool {
        let key = kv.key.as_str();
        // Most pod changes a busy scheduler sees are its own bindings coming
        // back: confirm those from three fields instead of decoding the pod.
        if let Ok(light) = serde_json::from_slice::<LightPod>(&kv.value) {
            let node = light.spec.node_name.as_deref().unwrap_or("");
            let terminal = matches!(light.status.phase.as_deref(), Some("Succeeded" | "Failed"));
            if !node.is_empty() && !terminal && self.snap.confirm(key, node) {
                self.pending.remove(key);
                return false;
            }
        }
        let Ok(pod) = serde_json::from_slice::<Pod>(&kv.value) else {
            return false;
        };
        let info = Arc::new(PodInfo::from_pod(&pod));
        if let Some(node) = info.node_name.clone() {
            self.pending.remove(key);
            self.active.remove(key);
            self.unschedulable.remove(key);
            if info.terminal {
                return self.snap.unplace(key);
            }
            self.snap.place(key, &node, info, false);
            return false;
        }
        if info.terminal || info.deleting || info.scheduler_name != SCHEDULER_NAME {
            return self.pod_gone(key);
        }
        let Ok(value) = decode_kv(kv) else {
            return false;
        };
        let changed = self.pending.get(key).is_none_or(|p| {
            p.pod.get("spec") != value.get("spec")
                || p.pod.pointer("/metadata/labels") != value.pointer("/metadata/labels")
        });
        self.pending.insert(
            key.to_string(),
            Pending {
                pod: value,
                rev: kv.mod_revision,
                info,
            },
        );
        if changed && !self.in_flight.contains(key) {
            self.unschedulable.remove(key);
            self.active.insert(key.to_string());
        }
        false
    }

    /// Place every active pod, in queue order.
    async fn schedule_active(&mut self, binds: &mut JoinSet<BindDone>) {
        let keys = {
            let active: Vec<String> = self.active.drain().collect();
            let pods = active
                .iter()
                .filter_map(|k| self.pending.get(k).map(|p| (k.as_str(), p.info.as_ref())));
            queue::order(pods, &self.prio, &self.snap.catalog)
        };
        for key in keys {
            if self.in_flight.contains(&key) || self.snap.is_placed(&key) {
                continue;
            }
            let Some(p) = self.pending.get(&key) else {
                continue;
            };
            let started = Instant::now();
            let info = p.info.clone();
            let n = self.snap.nodes.len().max(1);
            match schedule(&self.snap, &info) {
                Ok(placement) => {
                    // The binding takes the pod as read; a failure re-reads it.
                    let Some(Pending { pod, rev, .. }) = self.pending.remove(&key) else {
                        continue;
                    };
                    self.snap.next_start = (self.snap.next_start + placement.evaluated) % n;
                    let node = placement.node.to_string();
                    self.snap.place(&key, &node, info, true);
                    self.in_flight.insert(key.clone());
                    while binds.len() >= self.cfg.max_binds_in_flight.max(1) {
                        if let Some(Ok(done)) = binds.join_next().await {
                            self.bind_done(done);
                        }
                    }
                    binds.spawn(bind(
                        self.reg.clone(),
                        self.k.pod,
                        key,
                        pod,
                        rev,
                        node,
                        started,
                    ));
                }
                Err(why) => {
                    let pod = p_value(&self.pending, &key);
                    self.unschedulable.insert(key);
                    let (reg, rec, kind) = (self.reg.clone(), self.recorder.clone(), self.k.pod);
                    let permits = self.writes.clone();
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        report_unschedulable(&reg, &rec, kind, &pod, &why.to_string()).await;
                    });
                }
            }
        }
    }

    fn bind_done(&mut self, done: BindDone) {
        self.in_flight.remove(&done.key);
        match done.result {
            Ok(bound) => {
                self.pending.remove(&done.key);
                if let Some(obs) = &self.cfg.observer {
                    let _ = obs.send(BindRecord {
                        pod: done.key.clone(),
                        node: done.node.clone(),
                        latency: done.started.elapsed(),
                    });
                }
                let msg = format!(
                    "Successfully assigned {}/{} to {}",
                    meta_str(&bound, "namespace").unwrap_or("default"),
                    meta_str(&bound, "name").unwrap_or(""),
                    done.node
                );
                let (rec, permits) = (self.recorder.clone(), self.writes.clone());
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    rec.record(&bound, "Normal", "Scheduled", &msg).await;
                });
            }
            Err(e) => {
                tracing::debug!(pod = %done.key, error = %e, "binding failed; requeueing");
                self.snap.forget_assumed(&done.key);
                match done.fresh {
                    Some(kv) => {
                        self.pending.remove(&done.key);
                        self.pod_put(&kv);
                    }
                    None if e.code == 404 => {
                        self.pod_gone(&done.key);
                    }
                    // Not re-read (store trouble): its next change or the next relist brings it back.
                    None => {
                        if self.pending.contains_key(&done.key) {
                            self.active.insert(done.key);
                        }
                    }
                }
            }
        }
    }
}
