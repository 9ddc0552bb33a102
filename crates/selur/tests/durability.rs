//! `kill -9` of the server during a burst of concurrent writes loses no
//! acknowledged write.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{call, configmap, Server, CM_PATH};
use selur_client::{Client, Method};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_write_burst_loses_no_acknowledged_write() {
    let mut s = Server::start(&[]);
    let url = s.url.clone();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let url = url.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let c = Client::from_url(&url).unwrap();
            for i in 0.. {
                let name = format!("burst-{t}-{i}");
                let body = serde_json::to_vec(&configmap(&name)).unwrap();
                let r = c
                    .send(Method::POST, CM_PATH, &[], Some(("application/json", body)))
                    .await;
                match r {
                    Ok(resp) if resp.status().as_u16() == 201 => acked.lock().unwrap().push(name),
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.kill();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "burst too small to mean anything: {}",
        acked.len()
    );
    s.spawn();
    let (code, list) = call(&s.url, Method::GET, CM_PATH, None).await;
    assert_eq!(code, 200);
    let present: std::collections::HashSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = acked.iter().filter(|n| !present.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
