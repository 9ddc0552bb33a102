use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;

fn pod(name: &str, uid: &str, rv: u64) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "uid": uid,
        "resourceVersion": rv.to_string()}})
}

/// A scripted API: the list answers with `objects`, each watch pops the
/// next script (events, or an error code when opening).
#[derive(Default, Clone)]
struct Fake {
    inner: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    objects: Vec<Value>,
    list_rv: String,
    watches: VecDeque<Result<Vec<Result<RawEvent, u16>>, u16>>,
    lists: usize,
    watched_from: Vec<String>,
}

fn api_error(code: u16) -> ClientError {
    ClientError::Api {
        code,
        reason: String::new(),
        message: format!("HTTP {code}"),
        details_kind: None,
        details_name: None,
    }
}

impl Source for Fake {
    fn list(&self) -> BoxFuture<'_, Result<(Vec<Value>, String), ClientError>> {
        Box::pin(async move {
            let mut s = self.inner.lock().unwrap();
            s.lists += 1;
            Ok((s.objects.clone(), s.list_rv.clone()))
        })
    }

    fn watch(
        &self,
        rv: &str,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<RawEvent, ClientError>>, ClientError>> {
        let rv = rv.to_string();
        Box::pin(async move {
            let next = {
                let mut s = self.inner.lock().unwrap();
                s.watched_from.push(rv);
                s.watches.pop_front()
            };
            match next {
                // Nothing scripted: a watch that never yields.
                None => Ok(futures::stream::pending().boxed()),
                Some(Err(code)) => Err(api_error(code)),
                Some(Ok(events)) => Ok(futures::stream::iter(
                    events.into_iter().map(|e| e.map_err(api_error)),
                )
                .boxed()),
            }
        })
    }
}

fn name(ev: &Event) -> (&'static str, String) {
    match ev {
        Event::Applied(o) => ("applied", o["metadata"]["name"].as_str().unwrap().into()),
        Event::Deleted(o) => ("deleted", o["metadata"]["name"].as_str().unwrap().into()),
    }
}

#[tokio::test(start_paused = true)]
async fn lists_then_watches_from_the_lists_version() {
    let fake = Fake::default();
    {
        let mut s = fake.inner.lock().unwrap();
        s.objects = vec![pod("a", "ua", 5)];
        s.list_rv = "7".into();
        s.watches
            .push_back(Ok(vec![Ok(RawEvent::Added(pod("b", "ub", 8)))]));
    }
    let mut w = Watcher::new(fake.clone());
    assert_eq!(name(&w.next().await), ("applied", "a".into()));
    assert_eq!(name(&w.next().await), ("applied", "b".into()));
    let s = fake.inner.lock().unwrap();
    assert_eq!(s.lists, 1);
    assert_eq!(s.watched_from, vec!["7".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn ordinary_reconnect_resumes_from_the_last_version_without_a_relist() {
    let fake = Fake::default();
    {
        let mut s = fake.inner.lock().unwrap();
        s.list_rv = "10".into();
        // First stream: one event, then an ordinary end.
        s.watches
            .push_back(Ok(vec![Ok(RawEvent::Added(pod("a", "ua", 11)))]));
        // Second: a bookmark moves the version on; then an end.
        s.watches
            .push_back(Ok(vec![Ok(RawEvent::Bookmark("15".into()))]));
        // Opening the third fails once (server restarting), then works.
        s.watches.push_back(Err(503));
        s.watches
            .push_back(Ok(vec![Ok(RawEvent::Modified(pod("a", "ua", 16)))]));
    }
    let mut w = Watcher::new(fake.clone());
    assert_eq!(name(&w.next().await), ("applied", "a".into()));
    assert_eq!(name(&w.next().await), ("applied", "a".into()));
    let s = fake.inner.lock().unwrap();
    assert_eq!(s.lists, 1, "no re-list on an ordinary reconnect");
    assert_eq!(s.watched_from, vec!["10", "11", "15", "15"]);
}

#[tokio::test(start_paused = true)]
async fn gone_relists_and_synthesizes_deletions_for_what_vanished() {
    let fake = Fake::default();
    {
        let mut s = fake.inner.lock().unwrap();
        s.objects = vec![pod("a", "ua", 1), pod("b", "ub", 2), pod("c", "uc", 3)];
        s.list_rv = "3".into();
        // The stream breaks; resuming from 3 is refused as too old.
        s.watches.push_back(Ok(vec![Err(500)]));
        s.watches.push_back(Err(410));
    }
    let mut w = Watcher::new(fake.clone());
    for _ in 0..3 {
        w.next().await;
    }
    {
        // While the watch was down: b deleted, c changed, d created, and
        // a deleted and re-created under the same name (new uid).
        let mut s = fake.inner.lock().unwrap();
        s.objects = vec![pod("a", "ua2", 20), pod("c", "uc", 21), pod("d", "ud", 22)];
        s.list_rv = "22".into();
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(name(&w.next().await));
    }
    got[..2].sort();
    got[2..].sort();
    assert_eq!(
        got,
        vec![
            ("deleted", "a".to_string()),
            ("deleted", "b".to_string()),
            ("applied", "a".to_string()),
            ("applied", "c".to_string()),
            ("applied", "d".to_string()),
        ]
    );
    let s = fake.inner.lock().unwrap();
    assert_eq!(s.lists, 2);
    assert_eq!(
        s.watched_from,
        vec!["3", "3"],
        "the watch resumes after the re-list's events"
    );
    assert_eq!(w.known().count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_410_inside_the_stream_relists_too() {
    let fake = Fake::default();
    {
        let mut s = fake.inner.lock().unwrap();
        s.objects = vec![pod("a", "ua", 1)];
        s.list_rv = "1".into();
        s.watches.push_back(Ok(vec![Err(410)]));
    }
    let mut w = Watcher::new(fake.clone());
    w.next().await;
    fake.inner.lock().unwrap().objects.clear();
    assert_eq!(name(&w.next().await), ("deleted", "a".into()));
    assert_eq!(fake.inner.lock().unwrap().lists, 2);
}

#[test]
fn parses_watch_lines() {
    let l = br#"{"type":"DELETED","object":{"metadata":{"name":"x","resourceVersion":"4"}}}"#;
    assert!(matches!(parse_line(l), Some(Ok(RawEvent::Deleted(_)))));
    let b = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
    assert_eq!(
        parse_line(b).unwrap().unwrap(),
        RawEvent::Bookmark("9".into())
    );
    let e = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#;
    assert!(parse_line(e).unwrap().unwrap_err().is_gone());
    assert!(parse_line(b"not json").is_none());
}

#[tokio::test(start_paused = true)]
async fn known_objects_missing_from_the_first_list_come_out_deleted() {
    let fake = Fake::default();
    {
        let mut s = fake.inner.lock().unwrap();
        s.objects = vec![pod("a", "ua", 9)];
        s.list_rv = "9".into();
    }
    let mut w =
        Watcher::new(fake.clone()).with_known(vec![pod("a", "ua", 9), pod("gone", "ug", 3)]);
    let mut got = vec![name(&w.next().await), name(&w.next().await)];
    got.sort();
    assert_eq!(
        got,
        vec![
            ("applied", "a".to_string()),
            ("deleted", "gone".to_string())
        ]
    );
}
