//! Watch: every change after a resourceVersion exactly once and in order,
//! also across a server restart; 410 Gone after compaction.

mod common;

use std::time::Duration;

use common::{call, configmap, watch_events, Server, CM_PATH};
use futures::StreamExt;
use selur_client::Method;
use serde_json::{json, Value};

fn summary(evs: &[Value]) -> Vec<(String, String, u64)> {
    evs.iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                e["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )
        })
        .collect()
}

/// Apply a numbered sequence of changes; returns the expected (type, name) list.
async fn changes(url: &str, from: usize, to: usize) -> Vec<(String, String)> {
    let mut expected = Vec::new();
    for i in from..to {
        let name = format!("w{i}");
        let (c, _) = call(
            url,
            Method::POST,
            CM_PATH,
            Some(("application/json", &configmap(&name))),
        )
        .await;
        assert_eq!(c, 201);
        expected.push(("ADDED".to_string(), name.clone()));
        let patch = json!({"data": {"k": format!("v{i}")}});
        let (c, _) = call(
            url,
            Method::PATCH,
            &format!("{CM_PATH}/{name}"),
            Some(("application/merge-patch+json", &patch)),
        )
        .await;
        assert_eq!(c, 200);
        expected.push(("MODIFIED".to_string(), name.clone()));
        if i % 3 == 0 {
            let (c, _) = call(url, Method::DELETE, &format!("{CM_PATH}/{name}"), None).await;
            assert_eq!(c, 200);
            expected.push(("DELETED".to_string(), name));
        }
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_every_change_once_in_order_and_resumes_after_restart() {
    let mut s = Server::start(&[]);
    let (_, list) = call(&s.url, Method::GET, CM_PATH, None).await;
    let start_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = changes(&s.url, 0, 12).await;
    let got = summary(&watch_events(&s.url, CM_PATH, &start_rv, expected.len()).await);
    let got_pairs: Vec<(String, String)> =
        got.iter().map(|(t, n, _)| (t.clone(), n.clone())).collect();
    assert_eq!(got_pairs, expected);
    assert!(
        got.windows(2).all(|w| w[0].2 < w[1].2),
        "resourceVersions strictly increase: {got:?}"
    );

    // A live watch started before changes sees them as they happen.
    let url = s.url.clone();
    let last_rv = got.last().unwrap().2.to_string();
    let live =
        tokio::spawn(async move { summary(&watch_events(&url, CM_PATH, &last_rv, 5).await) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let more = changes(&s.url, 12, 14).await;
    let live = live.await.unwrap();
    assert_eq!(
        live.iter()
            .map(|(t, n, _)| (t.clone(), n.clone()))
            .collect::<Vec<_>>(),
        more
    );

    // Resume from the middle after a restart (kill -9), with changes on both sides of it.
    let mid_rv = got[got.len() / 2].2.to_string();
    let tail: Vec<(String, String)> = expected[expected.len() / 2 + 1..]
        .iter()
        .cloned()
        .chain(more.clone())
        .collect();
    s.kill();
    s.spawn();
    let after = changes(&s.url, 14, 16).await;
    let want: Vec<(String, String)> = tail.into_iter().chain(after).collect();
    let resumed = summary(&watch_events(&s.url, CM_PATH, &mid_rv, want.len()).await);
    assert_eq!(
        resumed
            .iter()
            .map(|(t, n, _)| (t.clone(), n.clone()))
            .collect::<Vec<_>>(),
        want
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_revision_is_gone() {
    let s = Server::start(&[
        "--history-retain-revisions",
        "5",
        "--compaction-interval",
        "1",
    ]);
    changes(&s.url, 0, 10).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = call(
            &s.url,
            Method::GET,
            &format!("{CM_PATH}?watch=true&resourceVersion=1&timeoutSeconds=1"),
            None,
        )
        .await;
        if code == 410 {
            assert_eq!(body["kind"], "Status");
            assert_eq!(body["code"], 410);
            assert_eq!(body["reason"], "Expired");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never compacted (last {code})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Recent history is still there.
    let (_, list) = call(&s.url, Method::GET, CM_PATH, None).await;
    let rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (code, _) = call(
        &s.url,
        Method::GET,
        &format!(
            "{CM_PATH}?watch=true&resourceVersion={}&timeoutSeconds=1",
            rv - 2
        ),
        None,
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_bookmarks_when_asked() {
    let s = Server::start(&["--bookmark-interval", "1"]);
    let resp = s
        .http()
        .send(
            Method::GET,
            CM_PATH,
            &[
                ("watch", "true".into()),
                ("allowWatchBookmarks", "true".into()),
                ("resourceVersion", "1".into()),
            ],
            None,
        )
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("BOOKMARK") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("no bookmark")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}
