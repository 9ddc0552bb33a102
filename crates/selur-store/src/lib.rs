//! Selur's state store: a revisioned key-value store with multi-key
//! transactions and watch, shaped after etcd v3 so that an etcd backend can
//! implement the same [`Store`] trait.
//!
//! * Every committed transaction that changes something bumps one global
//!   revision; each key remembers the revision that created it and the one that
//!   last modified it (`create_revision`, `mod_revision`, as in etcd). The API
//!   server uses `mod_revision` as the object's `resourceVersion`.
//! * [`Txn`] compares keys' mod revisions and then applies all its operations
//!   or none (etcd's `Txn(If(...).Then(...))`).
//! * [`Store::watch`] streams every change under a prefix after a revision,
//!   exactly once and in revision order, from the durable history; history
//!   older than the compacted revision yields [`StoreError::Compacted`].
//!
//! This crate does not know about Kubernetes objects: values are opaque bytes.

#![forbid(unsafe_code)]

mod sqlite;

pub use sqlite::{SqliteOptions, SqliteStore};

use async_trait::async_trait;
use tokio::sync::mpsc;

/// A store revision; `0` means "before anything was written".
pub type Revision = i64;

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

/// A condition a transaction checks before writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals `revision`; `0` means the key must not exist.
    ModRevision { key: String, revision: Revision },
}

impl Compare {
    /// The key must not exist (create).
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::ModRevision {
            key: key.into(),
            revision: 0,
        }
    }
    /// The key must exist at exactly `revision` (update/delete with optimistic concurrency).
    pub fn at(key: impl Into<String>, revision: Revision) -> Self {
        Compare::ModRevision {
            key: key.into(),
            revision,
        }
    }
    fn key(&self) -> &str {
        match self {
            Compare::ModRevision { key, .. } => key,
        }
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Compare-then-write: when every compare holds, all ops are applied atomically at one new revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }
    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value,
        });
        self
    }
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// Outcome of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (and the ops were applied).
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged when it failed or wrote nothing).
    pub revision: Revision,
    /// On success: per op, the key's value after the op (`None` for a delete).
    pub results: Vec<Option<KeyValue>>,
    /// Per op, the key's value before the transaction.
    pub prev: Vec<Option<KeyValue>>,
    /// On failure: per compare, the compared key's current value, so callers can tell
    /// "already exists" from "changed since you read it".
    pub current: Vec<Option<KeyValue>>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    /// For a put: the new value. For a delete: the last value, with `mod_revision`
    /// set to the revision of the delete.
    pub kv: KeyValue,
    /// The value before this change, if there was one.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A consistent list at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResponse {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// More keys follow the last returned one.
    pub more: bool,
}

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested history is gone.
    #[error(
        "required revision {requested} has been compacted (oldest available is after {compacted})"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of changes; ends with `Err` when history is compacted away or the store closes.
pub type WatchReceiver = mpsc::Receiver<Result<Event>>;

/// The interface every state backend implements (embedded SQLite now, etcd later).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys starting with `prefix`, in key order, after `start_after` (exclusive), at most
    /// `limit` (0 = no limit), read as one consistent snapshot.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResponse>;
    /// Compare, then write all or nothing. Acknowledged only once durable.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;
    /// Every change to keys under `prefix` with revision greater than `after`, in order.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchReceiver>;
    /// The newest committed revision.
    fn revision(&self) -> Revision;
    /// History at or below this revision is gone.
    fn compacted_revision(&self) -> Revision;
    /// Drop history at or below `revision` (clamped to the current revision).
    async fn compact(&self, revision: Revision) -> Result<Revision>;
    /// The newest revision committed before `unix_ms` (for time-based retention).
    async fn revision_before(&self, unix_ms: i64) -> Result<Revision>;
}

/// The smallest string greater than every string starting with `prefix`
/// (`None` when `prefix` is empty, i.e. no upper bound).
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_last_byte() {
        assert_eq!(prefix_end("/core/pods/").as_deref(), Some("/core/pods0"));
        assert_eq!(prefix_end(""), None);
    }
}
