//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One writer thread owns the write connection. It takes every transaction
//! waiting in its queue, applies them one after another inside a single SQLite
//! transaction and commits once, so concurrent writers share one fsync (group
//! commit). Nobody is answered before that commit returned, so an acknowledged
//! write survives `kill -9` and power loss. Committed events are then fanned
//! out to watchers over a broadcast channel; watchers that fall behind re-read
//! the durable `log` table, which is also what lets a watch resume after a
//! restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    prefix_end, Compare, Event, EventType, KeyValue, ListResponse, Op, Result, Revision, Store,
    StoreError, Txn, TxnResponse, WatchReceiver,
};

/// Most transactions committed together in one fsync.
const MAX_BATCH: usize = 512;
/// Rows read per page when a watcher replays history.
const HISTORY_PAGE: i64 = 2000;
/// Read connections kept open.
const READERS: usize = 4;

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Committed batches buffered for watchers before a slow one has to
    /// re-read history. The buffer holds whole objects, so it is most of
    /// the server's memory once full: 1024 batches keep a busy server's
    /// resident set a few MB larger than idle, and a watcher that falls
    /// further behind replays from the durable log instead.
    pub watch_buffer: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { watch_buffer: 1024 }
    }
}

enum WriteReq {
    Txn(Txn, oneshot::Sender<Result<TxnResponse>>),
    Compact(Revision, oneshot::Sender<Result<Revision>>),
}

struct Shared {
    revision: AtomicI64,
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicI64,
}

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<std_mpsc::Sender<WriteReq>>>,
    path: PathBuf,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// The data dir 0700 and the store's files 0600, created so or tightened
/// when an older Selur left them readable: they hold every object,
/// Secrets included. SQLite gives the WAL and shared-memory files the main
/// file's mode, so creating `state.db` 0600 first covers them.
fn private_files(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        StoreError::Backend(format!("cannot {what} {}: {e}", path.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail("create data dir", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail("restrict data dir", dir, e))?;
    let db = dir.join("state.db");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .map_err(|e| fail("create", &db, e))?;
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let p = dir.join(name);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("restrict", &p, e)),
        }
    }
    Ok(())
}

fn read_meta(conn: &Connection, name: &str) -> Result<i64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

fn row_kv(key: String, value: Vec<u8>, create: i64, modr: i64) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: create,
        mod_revision: modr,
    }
}

fn get_kv(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    Ok(conn
        .query_row(
            "SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1",
            [key],
            |r| Ok(row_kv(key.to_string(), r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

impl SqliteStore {
    /// Open (or create) the store in `dir/state.db`.
    pub fn open(dir: &Path, opts: SqliteOptions) -> Result<Self> {
        private_files(dir)?;
        let path = dir.join("state.db");
        let conn = open_conn(&path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL,
                 create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS log (rev INTEGER NOT NULL, idx INTEGER NOT NULL,
                 key TEXT NOT NULL, deleted INTEGER NOT NULL, value BLOB NOT NULL,
                 create_rev INTEGER NOT NULL, prev_value BLOB, prev_mod_rev INTEGER,
                 ts INTEGER NOT NULL, PRIMARY KEY (rev, idx)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        let revision = read_meta(&conn, "revision")?;
        let compacted = read_meta(&conn, "compacted")?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(open_conn(&path)?));
        }
        let (events, _) = broadcast::channel(opts.watch_buffer.max(16));
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events,
            readers,
            next_reader: AtomicI64::new(0),
        });
        let (tx, rx) = std_mpsc::channel();
        let wshared = shared.clone();
        std::thread::Builder::new()
            .name("selur-store-writer".into())
            .spawn(move || writer_loop(conn, rx, wshared))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(tx)),
            path,
        })
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting writes; the writer thread exits once its queue is drained.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
    }

    fn send(&self, req: WriteReq) -> Result<()> {
        let guard = self.writer.lock().map_err(|_| StoreError::Closed)?;
        let tx = guard.as_ref().ok_or(StoreError::Closed)?;
        tx.send(req).map_err(|_| StoreError::Closed)
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || with_reader(&shared, f))
            .await
            .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn with_reader<T>(shared: &Shared, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
    let n = shared.next_reader.fetch_add(1, Ordering::Relaxed) as usize % shared.readers.len();
    let mut conn = shared.readers[n]
        .lock()
        .map_err(|_| StoreError::Backend("reader connection poisoned".into()))?;
    f(&mut conn)
}

/// Apply one transaction inside the open batch transaction. Returns the response and its events.
fn apply_txn(
    tx: &rusqlite::Transaction<'_>,
    txn: &Txn,
    next_rev: Revision,
    ts: i64,
) -> Result<(TxnResponse, Vec<Event>)> {
    let mut current = Vec::with_capacity(txn.compares.len());
    let mut ok = true;
    for c in &txn.compares {
        let kv = get_kv(tx, c.key())?;
        let Compare::ModRevision { revision, .. } = c;
        let actual = kv.as_ref().map(|k| k.mod_revision).unwrap_or(0);
        if actual != *revision {
            ok = false;
        }
        current.push(kv);
    }
    let mut prev = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        prev.push(get_kv(tx, op.key())?);
    }
    if !ok {
        return Ok((
            TxnResponse {
                succeeded: false,
                revision: next_rev - 1,
                results: vec![],
                prev,
                current,
            },
            vec![],
        ));
    }
    // A transaction that writes nothing does not create a revision (as in etcd).
    let changes = txn
        .ops
        .iter()
        .zip(&prev)
        .any(|(op, p)| matches!(op, Op::Put { .. }) || p.is_some());
    if !changes {
        return Ok((
            TxnResponse {
                succeeded: true,
                revision: next_rev - 1,
                results: txn.ops.iter().map(|_| None).collect(),
                prev,
                current,
            },
            vec![],
        ));
    }
    let mut results = Vec::with_capacity(txn.ops.len());
    let mut events = Vec::new();
    // Later ops on the same key see earlier ones' effects.
    for (idx, op) in txn.ops.iter().enumerate() {
        let before = get_kv(tx, op.key())?;
        match op {
            Op::Put { key, value } => {
                let create = before
                    .as_ref()
                    .map(|b| b.create_revision)
                    .unwrap_or(next_rev);
                tx.execute(
                    "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value,
                         create_rev = excluded.create_rev, mod_rev = excluded.mod_rev",
                    params![key, value, create, next_rev],
                )?;
                tx.execute(
                    "INSERT INTO log (rev, idx, key, deleted, value, create_rev, prev_value, prev_mod_rev, ts)
                     VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        next_rev,
                        idx as i64,
                        key,
                        value,
                        create,
                        before.as_ref().map(|b| &b.value),
                        before.as_ref().map(|b| b.mod_revision),
                        ts
                    ],
                )?;
                let kv = row_kv(key.clone(), value.clone(), create, next_rev);
                events.push(Event {
                    event_type: EventType::Put,
                    kv: kv.clone(),
                    prev: before,
                });
                results.push(Some(kv));
            }
            Op::Delete { key } => {
                if let Some(b) = before {
                    tx.execute("DELETE FROM kv WHERE key = ?1", [key])?;
                    tx.execute(
                        "INSERT INTO log (rev, idx, key, deleted, value, create_rev, prev_value, prev_mod_rev, ts)
                         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?4, ?6, ?7)",
                        params![
                            next_rev,
                            idx as i64,
                            key,
                            &b.value,
                            b.create_revision,
                            b.mod_revision,
                            ts
                        ],
                    )?;
                    events.push(Event {
                        event_type: EventType::Delete,
                        kv: row_kv(key.clone(), b.value.clone(), b.create_revision, next_rev),
                        prev: Some(b),
                    });
                }
                results.push(None);
            }
        }
    }
    Ok((
        TxnResponse {
            succeeded: true,
            revision: next_rev,
            results,
            prev,
            current,
        },
        events,
    ))
}

type Pending = Vec<(Result<TxnResponse>, oneshot::Sender<Result<TxnResponse>>)>;

/// Run one batch of transactions in one SQLite transaction; on commit failure every caller gets the error.
fn run_batch(
    conn: &mut Connection,
    batch: Vec<(Txn, oneshot::Sender<Result<TxnResponse>>)>,
    shared: &Shared,
) {
    let start_rev = shared.revision.load(Ordering::SeqCst);
    let ts = now_ms();
    let mut rev = start_rev;
    let mut pending: Pending = Vec::with_capacity(batch.len());
    let mut all_events = Vec::new();
    let outcome: Result<()> = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (txn, reply) in batch {
            // A savepoint per transaction keeps one failing statement from spoiling the others.
            let sp = tx.unchecked_transaction_savepoint();
            let res = match sp {
                Ok(()) => match apply_txn(&tx, &txn, rev + 1, ts) {
                    Ok((resp, events)) => {
                        if !events.is_empty() {
                            rev += 1;
                        }
                        all_events.extend(events);
                        release_savepoint(&tx).map(|_| resp)
                    }
                    Err(e) => {
                        let _ = rollback_savepoint(&tx);
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            pending.push((res, reply));
        }
        if rev != start_rev {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('revision', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [rev],
            )?;
        }
        tx.commit()?;
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            shared.revision.store(rev, Ordering::SeqCst);
            if !all_events.is_empty() {
                // No receivers is fine: nobody is watching.
                let _ = shared.events.send(Arc::new(all_events));
            }
            for (res, reply) in pending {
                let _ = reply.send(res);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store batch commit failed");
            for (_, reply) in pending {
                let _ = reply.send(Err(StoreError::Backend(format!("commit failed: {e}"))));
            }
        }
    }
}

trait SavepointExt {
    fn unchecked_transaction_savepoint(&self) -> Result<()>;
}

impl SavepointExt for rusqlite::Transaction<'_> {
    fn unchecked_transaction_savepoint(&self) -> Result<()> {
        self.execute_batch("SAVEPOINT txn")?;
        Ok(())
    }
}

fn release_savepoint(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    tx.execute_batch("RELEASE SAVEPOINT txn")?;
    Ok(())
}

fn rollback_savepoint(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    tx.execute_batch("ROLLBACK TO SAVEPOINT txn; RELEASE SAVEPOINT txn")?;
    Ok(())
}

fn compact(conn: &mut Connection, shared: &Shared, revision: Revision) -> Result<Revision> {
    let target = revision.min(shared.revision.load(Ordering::SeqCst));
    let old = shared.compacted.load(Ordering::SeqCst);
    if target <= old {
        return Ok(old);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM log WHERE rev <= ?1", [target])?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        [target],
    )?;
    tx.commit()?;
    shared.compacted.store(target, Ordering::SeqCst);
    Ok(target)
}

fn writer_loop(mut conn: Connection, rx: std_mpsc::Receiver<WriteReq>, shared: Arc<Shared>) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            match req {
                WriteReq::Txn(t, reply) => batch.push((t, reply)),
                WriteReq::Compact(rev, reply) => {
                    if !batch.is_empty() {
                        run_batch(&mut conn, std::mem::take(&mut batch), &shared);
                    }
                    let _ = reply.send(compact(&mut conn, &shared, rev));
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            run_batch(&mut conn, batch, &shared);
        }
    }
}

fn read_history(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
) -> Result<(Vec<Event>, Revision, bool)> {
    let tx = conn.transaction()?;
    let compacted = read_meta(&tx, "compacted")?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let end = prefix_end(prefix);
    let mut stmt = tx.prepare_cached(
        "SELECT rev, idx, key, deleted, value, create_rev, prev_value, prev_mod_rev FROM log
         WHERE rev > ?1 AND rev <= ?2 ORDER BY rev, idx",
    )?;
    let upto = after + HISTORY_PAGE;
    let mut rows = stmt.query(params![after, upto])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let key: String = r.get(2)?;
        if !key.starts_with(prefix) || end.as_deref().is_some_and(|e| key.as_str() >= e) {
            continue;
        }
        let rev: i64 = r.get(0)?;
        let deleted: i64 = r.get(3)?;
        let value: Vec<u8> = r.get(4)?;
        let create: i64 = r.get(5)?;
        let prev_value: Option<Vec<u8>> = r.get(6)?;
        let prev_mod: Option<i64> = r.get(7)?;
        let prev = match (prev_value, prev_mod) {
            (Some(v), Some(m)) => Some(row_kv(key.clone(), v, create, m)),
            _ => None,
        };
        out.push(Event {
            event_type: if deleted != 0 {
                EventType::Delete
            } else {
                EventType::Put
            },
            kv: row_kv(key, value, create, rev),
            prev,
        });
    }
    drop(rows);
    drop(stmt);
    let current = read_meta(&tx, "revision")?;
    tx.commit()?;
    Ok((out, upto.min(current), upto >= current))
}

/// Replay history after `after` until caught up; returns the last revision delivered.
async fn replay(
    shared: &Arc<Shared>,
    prefix: &str,
    mut after: Revision,
    out: &mpsc::Sender<Result<Event>>,
) -> std::result::Result<Revision, ()> {
    loop {
        let s = shared.clone();
        let p = prefix.to_string();
        let page =
            tokio::task::spawn_blocking(move || with_reader(&s, |c| read_history(c, &p, after)))
                .await;
        let (events, upto, done) = match page {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let _ = out.send(Err(e)).await;
                return Err(());
            }
            Err(e) => {
                let _ = out
                    .send(Err(StoreError::Backend(format!(
                        "history read failed: {e}"
                    ))))
                    .await;
                return Err(());
            }
        };
        for ev in events {
            out.send(Ok(ev)).await.map_err(|_| ())?;
        }
        after = after.max(upto);
        if done {
            return Ok(after);
        }
    }
}

async fn watch_task(
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
    out: mpsc::Sender<Result<Event>>,
) {
    // Subscribe before reading history: everything committed later arrives on the channel,
    // everything earlier is in the log; `last` drops the overlap.
    let mut rx = shared.events.subscribe();
    let Ok(mut last) = replay(&shared, &prefix, after, &out).await else {
        return;
    };
    let end = prefix_end(&prefix);
    loop {
        match rx.recv().await {
            Ok(batch) => {
                let mut batch_last = last;
                for ev in batch.iter() {
                    let rev = ev.revision();
                    batch_last = batch_last.max(rev);
                    if rev <= last
                        || !ev.kv.key.starts_with(&prefix)
                        || end.as_deref().is_some_and(|e| ev.kv.key.as_str() >= e)
                    {
                        continue;
                    }
                    if out.send(Ok(ev.clone())).await.is_err() {
                        return;
                    }
                }
                last = batch_last;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                rx = shared.events.subscribe();
                match replay(&shared, &prefix, last, &out).await {
                    Ok(l) => last = l,
                    Err(()) => return,
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = out.send(Err(StoreError::Closed)).await;
                return;
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |c| get_kv(c, &key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResponse> {
        let prefix = prefix.to_string();
        let start = start_after.map(str::to_string);
        self.read(move |c| {
            let tx = c.transaction()?;
            let revision = read_meta(&tx, "revision")?;
            let lower = match &start {
                Some(s) if s.as_str() >= prefix.as_str() => s.clone(),
                _ => prefix.clone(),
            };
            let strict = start.as_deref().is_some_and(|s| s >= prefix.as_str());
            let upper = prefix_end(&prefix).unwrap_or_else(|| "\u{7f}".repeat(8));
            let fetch = if limit == 0 { -1 } else { limit as i64 + 1 };
            let sql = if strict {
                "SELECT key, value, create_rev, mod_rev FROM kv WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3"
            } else {
                "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3"
            };
            let mut items = {
                let mut stmt = tx.prepare_cached(sql)?;
                let rows = stmt.query_map(params![lower, upper, fetch], |r| {
                    Ok(row_kv(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                rows.collect::<std::result::Result<Vec<_>, _>>()?
            };
            tx.commit()?;
            let more = limit > 0 && items.len() > limit;
            if more {
                items.truncate(limit);
            }
            Ok(ListResponse {
                items,
                revision,
                more,
            })
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteReq::Txn(txn, tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchReceiver> {
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(watch_task(
            self.shared.clone(),
            prefix.to_string(),
            after,
            tx,
        ));
        Ok(rx)
    }

    fn revision(&self) -> Revision {
        self.shared.revision.load(Ordering::SeqCst)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::SeqCst)
    }

    async fn compact(&self, revision: Revision) -> Result<Revision> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteReq::Compact(revision, tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn revision_before(&self, unix_ms: i64) -> Result<Revision> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT COALESCE(MAX(rev), 0) FROM log WHERE ts < ?1",
                [unix_ms],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_and_store_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = SqliteStore::open(&dir, SqliteOptions::default()).unwrap();
        drop(s);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let p = dir.join(f);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{f}");
            }
        }
        // An older, readable store is tightened at the next open.
        std::fs::set_permissions(dir.join("state.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        drop(SqliteStore::open(&dir, SqliteOptions::default()).unwrap());
        assert_eq!(mode(&dir.join("state.db")), 0o600);
    }

    fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(dir, SqliteOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn create_update_delete_with_revisions() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        let r = s
            .txn(
                Txn::new()
                    .when(Compare::absent("/a"))
                    .put("/a", b"1".to_vec()),
            )
            .await
            .unwrap();
        assert!(r.succeeded);
        assert_eq!(r.revision, 1);
        // Second create fails and reports the existing value.
        let r2 = s
            .txn(
                Txn::new()
                    .when(Compare::absent("/a"))
                    .put("/a", b"2".to_vec()),
            )
            .await
            .unwrap();
        assert!(!r2.succeeded);
        assert_eq!(r2.current[0].as_ref().unwrap().value, b"1");
        // Stale update fails.
        let stale = s
            .txn(
                Txn::new()
                    .when(Compare::at("/a", 7))
                    .put("/a", b"x".to_vec()),
            )
            .await
            .unwrap();
        assert!(!stale.succeeded);
        let up = s
            .txn(
                Txn::new()
                    .when(Compare::at("/a", 1))
                    .put("/a", b"3".to_vec()),
            )
            .await
            .unwrap();
        assert!(up.succeeded);
        let kv = s.get("/a").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (1, 2));
        s.txn(Txn::new().delete("/a")).await.unwrap();
        assert!(s.get("/a").await.unwrap().is_none());
        assert_eq!(s.revision(), 3);
    }

    #[tokio::test]
    async fn multi_key_txn_is_all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        s.txn(Txn::new().put("/q", b"0".to_vec())).await.unwrap();
        let r = s
            .txn(
                Txn::new()
                    .when(Compare::at("/q", 99))
                    .put("/q", b"1".to_vec())
                    .put("/p", b"1".to_vec()),
            )
            .await
            .unwrap();
        assert!(!r.succeeded);
        assert!(s.get("/p").await.unwrap().is_none());
        let r = s
            .txn(
                Txn::new()
                    .when(Compare::at("/q", 1))
                    .put("/q", b"1".to_vec())
                    .put("/p", b"1".to_vec()),
            )
            .await
            .unwrap();
        assert!(r.succeeded);
        assert_eq!(r.revision, 2);
        assert_eq!(s.get("/p").await.unwrap().unwrap().mod_revision, 2);
    }

    #[tokio::test]
    async fn concurrent_writers_share_commits_and_get_distinct_revisions() {
        let d = tempfile::tempdir().unwrap();
        let s = Arc::new(open(d.path()));
        let mut hs = Vec::new();
        for i in 0..200 {
            let s = s.clone();
            hs.push(tokio::spawn(async move {
                s.txn(Txn::new().put(format!("/k/{i:03}"), vec![1]))
                    .await
                    .unwrap()
                    .revision
            }));
        }
        let mut revs = Vec::new();
        for h in hs {
            revs.push(h.await.unwrap());
        }
        revs.sort();
        revs.dedup();
        assert_eq!(revs.len(), 200);
        let l = s.list("/k/", None, 0).await.unwrap();
        assert_eq!(l.items.len(), 200);
        assert_eq!(l.revision, 200);
    }

    #[tokio::test]
    async fn list_paginates() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        for i in 0..5 {
            s.txn(Txn::new().put(format!("/l/{i}"), vec![]))
                .await
                .unwrap();
        }
        s.txn(Txn::new().put("/m/0", vec![])).await.unwrap();
        let p1 = s.list("/l/", None, 2).await.unwrap();
        assert_eq!(p1.items.len(), 2);
        assert!(p1.more);
        let p2 = s.list("/l/", Some(&p1.items[1].key), 2).await.unwrap();
        assert_eq!(p2.items[0].key, "/l/2");
        let p3 = s.list("/l/", Some(&p2.items[1].key), 2).await.unwrap();
        assert_eq!(p3.items.len(), 1);
        assert!(!p3.more);
    }

    #[tokio::test]
    async fn watch_replays_then_follows_and_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = open(d.path());
            for i in 0..3 {
                s.txn(Txn::new().put(format!("/w/{i}"), vec![i]))
                    .await
                    .unwrap();
            }
            s.txn(Txn::new().put("/other", vec![])).await.unwrap();
            let mut w = s.watch("/w/", 1).await.unwrap();
            let a = w.recv().await.unwrap().unwrap();
            let b = w.recv().await.unwrap().unwrap();
            assert_eq!((a.revision(), b.revision()), (2, 3));
            s.txn(Txn::new().delete("/w/0")).await.unwrap();
            let c = w.recv().await.unwrap().unwrap();
            assert_eq!(c.event_type, EventType::Delete);
            assert_eq!(c.revision(), 5);
            assert_eq!(c.prev.unwrap().value, vec![0]);
            s.close();
        }
        let s = open(d.path());
        assert_eq!(s.revision(), 5);
        let mut w = s.watch("/w/", 3).await.unwrap();
        assert_eq!(w.recv().await.unwrap().unwrap().revision(), 5);
    }

    #[tokio::test]
    async fn compaction_makes_old_watches_fail() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path());
        for i in 0..10 {
            s.txn(Txn::new().put("/c", vec![i])).await.unwrap();
        }
        assert_eq!(s.compact(6).await.unwrap(), 6);
        assert!(matches!(
            s.watch("/c", 2).await,
            Err(StoreError::Compacted { .. })
        ));
        let mut w = s.watch("/c", 6).await.unwrap();
        assert_eq!(w.recv().await.unwrap().unwrap().revision(), 7);
        assert!(s.revision_before(now_ms() + 1000).await.unwrap() >= 10);
    }
}
