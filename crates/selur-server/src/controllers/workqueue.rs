//! Per-object controllers over a work queue of object keys (`namespace/name`),
//! shaped like client-go's workqueue:
//!
//! * a key waiting in the queue is there once, however often it is added, so a
//!   burst of changes to one object costs one reconcile;
//! * a key being reconciled is never handed to a second worker; if it is added
//!   meanwhile it is queued again when the first reconcile ends, so the latest
//!   state is always seen;
//! * a failed reconcile is retried with exponential back-off per key, and a
//!   reconcile may ask to be run again after a delay (deadlines, minReadySeconds);
//! * a key has at most one pending delayed add (the earliest wins), and a key
//!   backing off after a failure is not run again by a plain add (a watch
//!   event, often caused by the failing reconcile's own event or status
//!   write, or a resync) before its back-off ends, so a persistent refusal
//!   costs one reconcile, one event and one log line per back-off step.
//!
//! Keys come from a store watch (a controller maps each event to the keys it
//! affects) and from a full resync at start, after a broken watch and
//! periodically as a safety net.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use selur_store::Event;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::registry::{Registry, ROOT};
use crate::status::ApiResult;

/// First retry delay after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    processing: HashSet<String>,
    /// Added while being processed: queue again when done.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
    /// Keys with a pending delayed add, and when it fires.
    delayed: HashMap<String, Instant>,
}

/// A deduplicating queue of keys.
#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl WorkQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `key` unless it is already waiting, or backing off after a
    /// failure (its retry is already scheduled and will see the latest state).
    pub fn add(&self, key: String) {
        {
            let s = self.lock();
            if s.failures.contains_key(&key) && s.delayed.contains_key(&key) {
                return;
            }
        }
        self.enqueue(key);
    }

    fn enqueue(&self, key: String) {
        let mut s = self.lock();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queue `key` after `delay`, unless an earlier delayed add of it is
    /// already pending.
    pub fn add_after(self: &Arc<Self>, key: String, delay: Duration) {
        let at = Instant::now() + delay;
        {
            let mut s = self.lock();
            match s.delayed.get(&key) {
                Some(pending) if *pending <= at => return,
                _ => {
                    s.delayed.insert(key.clone(), at);
                }
            }
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            {
                let mut s = q.lock();
                // Superseded by an earlier add_after: that one queued it.
                if s.delayed.get(&key) != Some(&at) {
                    return;
                }
                s.delayed.remove(&key);
            }
            q.enqueue(key);
        });
    }

    /// Wait for the next key and mark it as being processed.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if let Some(k) = s.queue.pop_front() {
                    s.queued.remove(&k);
                    s.processing.insert(k.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Another worker may take the next one.
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    /// Processing of `key` ended; queue it again if it was added meanwhile.
    pub fn done(&self, key: &str) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.remove(key) && s.queued.insert(key.to_string()) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// The delay before retrying `key` after one more failure.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut s = self.lock();
        let n = s.failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32 << (*n - 1).min(16);
        (BACKOFF_BASE * factor).min(BACKOFF_MAX)
    }

    /// `key` succeeded: its next failure starts the back-off afresh.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// Keys with a pending delayed add (tests).
    pub fn delayed_len(&self) -> usize {
        self.lock().delayed.len()
    }

    /// Keys waiting (tests).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `namespace/name` of a namespaced object's store key under `prefix`.
pub fn key_under(prefix: &str, store_key: &str) -> Option<String> {
    let rest = store_key.strip_prefix(prefix)?;
    rest.contains('/').then(|| rest.to_string())
}

/// The keys a change concerns for a controller of `kind` whose objects are
/// stored under `prefix`: the object itself, or the controller of a
/// dependent stored under `dependent_prefix` (a ReplicaSet's pods, a
/// CronJob's Jobs), found through its controlling owner reference.
pub fn owner_keys(
    ev: &selur_store::Event,
    prefix: &str,
    dependent_prefix: &str,
    kind: &str,
) -> Vec<String> {
    let k = &ev.kv.key;
    if let Some(key) = key_under(prefix, k) {
        return vec![key];
    }
    let quoted = format!("\"{kind}\"");
    if k.starts_with(dependent_prefix) && super::contains(&ev.kv.value, quoted.as_bytes()) {
        if let Ok(obj) = serde_json::from_slice::<serde_json::Value>(&ev.kv.value) {
            if let (Some((owner_kind, name, _)), Some(ns)) = (
                super::podstate::controller_ref(&obj),
                obj.pointer("/metadata/namespace")
                    .and_then(serde_json::Value::as_str),
            ) {
                if owner_kind == kind {
                    return vec![format!("{ns}/{name}")];
                }
            }
        }
    }
    Vec::new()
}

/// Split a queue key into namespace and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

/// Run `workers` workers taking keys from `queue` and calling `reconcile`.
/// `Ok(Some(d))` asks to run the key again after `d`; an error retries it with back-off.
pub async fn run_workers<R, F>(
    name: &'static str,
    queue: Arc<WorkQueue>,
    workers: usize,
    reconcile: R,
) where
    R: Fn(String) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ApiResult<Option<Duration>>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let q = queue.clone();
        let r = reconcile.clone();
        set.spawn(async move {
            loop {
                let key = q.next().await;
                match r(key.clone()).await {
                    Ok(after) => {
                        q.forget(&key);
                        if let Some(d) = after {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        let d = q.backoff(&key);
                        tracing::warn!(controller = name, key, error = %e, retry_in = ?d, "reconcile failed");
                        q.add_after(key.clone(), d);
                    }
                }
                q.done(&key);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Feed `queue` from the store: every key listed under `resync_prefix` at
/// start, after a broken watch, every `period` and when the registry's
/// clock jumps (tests' manual clock); and `keys_of(event)` for every change.
pub async fn feed(
    name: &'static str,
    reg: Registry,
    queue: Arc<WorkQueue>,
    resync_prefix: String,
    period: Duration,
    keys_of: fn(&Event) -> Vec<String>,
) {
    let mut jumps = reg.clock.jumps();
    loop {
        let from = reg.store.revision();
        match reg.list_all(&resync_prefix).await {
            Ok((items, _)) => {
                for kv in items {
                    if let Some(k) = key_under(&resync_prefix, &kv.key) {
                        queue.add(k);
                    }
                }
            }
            Err(e) => tracing::warn!(controller = name, error = %e, "resync list failed"),
        }
        let mut events = match reg.store.watch(ROOT, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(controller = name, error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut ticker = tokio::time::interval(period);
        ticker.tick().await;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Ok(ev)) => {
                        for k in keys_of(&ev) {
                            queue.add(k);
                        }
                    }
                    // Compacted or closed: resync and watch again.
                    _ => break,
                },
                _ = ticker.tick() => break,
                _ = crate::clock::next_jump(&mut jumps) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_handed_out_twice_at_once() {
        let q = WorkQueue::new();
        q.add("ns/a".into());
        q.add("ns/a".into());
        q.add("ns/b".into());
        assert_eq!(q.len(), 2);
        let k = q.next().await;
        assert_eq!(k, "ns/a");
        // Added while processing: not queued now, queued again when done.
        q.add("ns/a".into());
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "ns/b");
        q.done("ns/a");
        assert_eq!(q.next().await, "ns/a");
        q.done("ns/a");
        q.done("ns/b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_backing_off_is_not_run_again_by_plain_adds_before_its_retry() {
        let q = WorkQueue::new();
        q.add("ns/job".into());
        let k = q.next().await;
        // The reconcile failed: back off, as run_workers does.
        let d = q.backoff(&k);
        q.add_after(k.clone(), d);
        q.done(&k);
        // Watch events and resyncs during the back-off change nothing, and
        // a second failure path asking again does not start a second timer.
        for _ in 0..5 {
            q.add("ns/job".into());
            q.add_after("ns/job".into(), Duration::from_secs(30));
        }
        assert!(q.is_empty());
        assert_eq!(q.delayed_len(), 1);
        tokio::time::sleep(d + Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        assert_eq!(q.len(), 1);
        assert_eq!(q.delayed_len(), 0);
        assert_eq!(q.next().await, "ns/job");
        q.done("ns/job");
        assert!(q.is_empty());
        // Once it succeeds, plain adds run it at once again.
        q.forget("ns/job");
        q.add("ns/job".into());
        assert_eq!(q.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_delayed_add_supersedes_a_later_one() {
        let q = WorkQueue::new();
        q.add_after("ns/a".into(), Duration::from_secs(60));
        q.add_after("ns/a".into(), Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1001)).await;
        tokio::task::yield_now().await;
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "ns/a");
        q.done("ns/a");
        tokio::time::sleep(Duration::from_secs(61)).await;
        tokio::task::yield_now().await;
        assert!(q.is_empty(), "the superseded timer queued the key again");
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let q = WorkQueue::default();
        assert_eq!(q.backoff("k"), Duration::from_millis(10));
        assert_eq!(q.backoff("k"), Duration::from_millis(20));
        assert_eq!(q.backoff("k"), Duration::from_millis(40));
        for _ in 0..30 {
            q.backoff("k");
        }
        assert_eq!(q.backoff("k"), BACKOFF_MAX);
        q.forget("k");
        assert_eq!(q.backoff("k"), Duration::from_millis(10));
    }

    #[test]
    fn keys_from_store_keys() {
        let p = "/registry/apps/deployments/";
        assert_eq!(
            key_under(p, "/registry/apps/deployments/ns/web").as_deref(),
            Some("ns/web")
        );
        assert_eq!(key_under(p, "/registry/core/pods/ns/web"), None);
        assert_eq!(split_key("ns/web"), ("ns", "web"));
    }
}
