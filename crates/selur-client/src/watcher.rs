//! A watcher that never misses a delete, as kube-runtime's does: it lists,
//! watches from the list's resourceVersion, resumes an ordinary reconnect
//! from the last resourceVersion it saw (no re-list), and after a `410
//! Gone` (or a watch that cannot be resumed) re-lists and emits the
//! difference: objects that vanished during the gap come out as
//! [`Event::Deleted`], new or changed ones as [`Event::Applied`].
//!
//! The state machine is explicit ([`State`]); the API is behind [`Source`]
//! so tests drive it with a fake.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::{Client, ClientError, ListParams, ResourcePath};

/// One change the watcher reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The object exists in this state (added or modified).
    Applied(Value),
    /// The object is gone (last known state).
    Deleted(Value),
}

/// One event of a raw watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum RawEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Carries only a resourceVersion.
    Bookmark(String),
}

/// Where the watcher reads from: the API, or a fake in tests.
pub trait Source: Send + Sync {
    /// The current objects and the list's resourceVersion.
    fn list(&self) -> BoxFuture<'_, Result<(Vec<Value>, String), ClientError>>;
    /// Events after `resource_version`. An `Err` with code 410 (as the
    /// open's status or as an item) means the version is too old.
    fn watch(
        &self,
        resource_version: &str,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<RawEvent, ClientError>>, ClientError>>;
}

/// Where the watcher is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Must (re-)list before watching.
    Empty,
    /// Watching (or about to re-watch) from this resourceVersion.
    At(String),
}

/// The watcher: call [`Watcher::next`] for each change, forever.
pub struct Watcher<S> {
    source: S,
    state: State,
    /// Known objects by uid (or namespace/name when there is no uid).
    known: HashMap<String, Value>,
    pending: VecDeque<Event>,
    stream: Option<BoxStream<'static, Result<RawEvent, ClientError>>>,
    delay: Duration,
    /// First retry delay after a failure; doubles to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
}

/// The watcher's identity of an object.
pub fn object_key(obj: &Value) -> String {
    match obj.pointer("/metadata/uid").and_then(Value::as_str) {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}",
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(""),
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
    }
}

fn rv_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

impl<S: Source> Watcher<S> {
    pub fn new(source: S) -> Self {
        Self {
            source,
            state: State::Empty,
            known: HashMap::new(),
            pending: VecDeque::new(),
            stream: None,
            delay: Duration::from_millis(100),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }

    /// Start from objects known before (e.g. what a restarted agent still
    /// runs): the first list applies those still there and deletes the
    /// rest, as after a 410.
    pub fn with_known(mut self, objects: Vec<Value>) -> Self {
        for mut obj in objects {
            // Never equal to a listed version: the list re-applies it.
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            self.known.insert(object_key(&obj), obj);
        }
        self
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The objects known now (possibly stale).
    pub fn known(&self) -> impl Iterator<Item = &Value> {
        self.known.values()
    }

    /// The next change. Errors are retried with back-off inside (logged);
    /// this only returns events.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return ev;
            }
            if let Err(e) = self.step().await {
                if e.is_gone() {
                    tracing::debug!("watch: resourceVersion too old; re-listing");
                    self.state = State::Empty;
                    self.stream = None;
                    continue;
                }
                tracing::warn!(error = %e, "watch failed; retrying");
                self.stream = None;
                tokio::time::sleep(self.delay).await;
                self.delay = (self.delay * 2).min(self.max_delay);
            }
        }
    }

    /// One transition: list, open a watch, or read one event.
    async fn step(&mut self) -> Result<(), ClientError> {
        let at = match &self.state {
            State::Empty => {
                let (items, rv) = self.source.list().await?;
                self.relisted(items);
                self.state = State::At(rv);
                self.delay = self.min_delay;
                return Ok(());
            }
            State::At(rv) => rv.clone(),
        };
        let Some(stream) = self.stream.as_mut() else {
            self.stream = Some(self.source.watch(&at).await?);
            return Ok(());
        };
        match stream.next().await {
            // An ordinary end (timeout, server restart): resume from `at`.
            None => {
                self.stream = None;
                Ok(())
            }
            Some(Err(e)) => Err(e),
            Some(Ok(ev)) => {
                self.delay = self.min_delay;
                self.apply(ev);
                Ok(())
            }
        }
    }

    fn apply(&mut self, ev: RawEvent) {
        let (obj, deleted) = match ev {
            RawEvent::Bookmark(rv) => {
                if !rv.is_empty() {
                    self.state = State::At(rv);
                }
                return;
            }
            RawEvent::Added(o) | RawEvent::Modified(o) => (o, false),
            RawEvent::Deleted(o) => (o, true),
        };
        if let Some(rv) = rv_of(&obj) {
            self.state = State::At(rv.to_string());
        }
        let key = object_key(&obj);
        if deleted {
            self.known.remove(&key);
            self.pending.push_back(Event::Deleted(obj));
        } else {
            self.known.insert(key, obj.clone());
            self.pending.push_back(Event::Applied(obj));
        }
    }

    /// After a (re-)list: what vanished is deleted, what is new or changed applied.
    fn relisted(&mut self, items: Vec<Value>) {
        let mut now: HashMap<String, Value> = HashMap::with_capacity(items.len());
        for obj in items {
            now.insert(object_key(&obj), obj);
        }
        let mut gone: Vec<(String, Value)> = self
            .known
            .iter()
            .filter(|(k, _)| !now.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in gone {
            self.known.remove(&k);
            self.pending.push_back(Event::Deleted(v));
        }
        let mut fresh: Vec<(&String, &Value)> = now
            .iter()
            .filter(|(k, v)| {
                self.known
                    .get(*k)
                    .is_none_or(|old| rv_of(old) != rv_of(v) || rv_of(v).is_none())
            })
            .collect();
        fresh.sort_by(|a, b| a.0.cmp(b.0));
        for (_, v) in fresh {
            self.pending.push_back(Event::Applied(v.clone()));
        }
        self.known = now;
    }
}

/// The API as a [`Source`]: one collection with selectors.
#[derive(Debug, Clone)]
pub struct ApiSource {
    client: Client,
    collection: String,
    params: ListParams,
    /// How long the server keeps one watch open before an ordinary end.
    pub timeout_seconds: u64,
}

impl ApiSource {
    pub fn new(
        client: Client,
        path: &ResourcePath,
        namespace: Option<&str>,
        params: ListParams,
    ) -> Self {
        Self {
            client,
            collection: path.collection(namespace),
            params,
            timeout_seconds: 300,
        }
    }
}

/// Parse one line of a watch stream.
pub fn parse_line(line: &[u8]) -> Option<Result<RawEvent, ClientError>> {
    let ev: Value = serde_json::from_slice(line).ok()?;
    let obj = ev.get("object").cloned().unwrap_or(Value::Null);
    Some(Ok(match ev.get("type").and_then(Value::as_str)? {
        "ADDED" => RawEvent::Added(obj),
        "MODIFIED" => RawEvent::Modified(obj),
        "DELETED" => RawEvent::Deleted(obj),
        "BOOKMARK" => RawEvent::Bookmark(rv_of(&obj).unwrap_or("").to_string()),
        "ERROR" => {
            let code = obj
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            return Some(Err(crate::status_error(code, &obj, line)));
        }
        _ => return None,
    }))
}

impl Source for ApiSource {
    fn list(&self) -> BoxFuture<'_, Result<(Vec<Value>, String), ClientError>> {
        Box::pin(async move {
            let v = self
                .client
                .request(Method::GET, &self.collection, &self.params.query(), None)
                .await?;
            Ok(crate::resource::list_parts(v))
        })
    }

    fn watch(
        &self,
        resource_version: &str,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<RawEvent, ClientError>>, ClientError>> {
        let rv = resource_version.to_string();
        Box::pin(async move {
            let mut q = self.params.query();
            q.push(("watch", "true".into()));
            q.push(("allowWatchBookmarks", "true".into()));
            q.push(("timeoutSeconds", self.timeout_seconds.to_string()));
            if !rv.is_empty() {
                q.push(("resourceVersion", rv));
            }
            let resp = self
                .client
                .execute(self.client.builder(Method::GET, &self.collection).query(&q))
                .await?;
            let base = self.client.base.clone();
            let bytes = resp.bytes_stream();
            let lines = futures::stream::unfold(
                (bytes, Vec::<u8>::new(), base),
                |(mut bytes, mut buf, base)| async move {
                    loop {
                        if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=pos).collect();
                            match parse_line(&line) {
                                Some(item) => return Some((item, (bytes, buf, base))),
                                None => continue,
                            }
                        }
                        match bytes.next().await {
                            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                            Some(Err(e)) => {
                                let err = ClientError::Transport {
                                    url: base.clone(),
                                    reason: format!("watch stream: {e}"),
                                };
                                return Some((Err(err), (bytes, Vec::new(), base)));
                            }
                            None => return None,
                        }
                    }
                },
            );
            Ok(lines.boxed())
        })
    }
}

#[cfg(test)]
mod tests;
