//! Stand-ins for the node side while the scheduler and kubelet are not in
//! play (`--disable-agent`): a fake kubelet marking pods Ready, and a watcher
//! recording every pod change.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::StreamExt;
use selur_client::Method;
use serde_json::{json, Value};

pub const PODS: &str = "/api/v1/namespaces/default/pods";

fn image(p: &Value) -> String {
    p.pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Marks every pod Running and Ready a little after it appears, except pods
/// whose image contains "bad".
pub struct Kubelet {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Kubelet {
    pub fn start(url: &str) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag) = (url.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            runtime().block_on(async move {
                let http = selur_client::Client::from_url(&url).expect("client");
                let mut seen: HashMap<String, Instant> = HashMap::new();
                let mut done: HashSet<String> = HashSet::new();
                while !flag.load(Ordering::Relaxed) {
                    let list: Value = match http.send(Method::GET, PODS, &[], None).await {
                        Ok(r) => r.json().await.unwrap_or(Value::Null),
                        Err(_) => Value::Null,
                    };
                    for p in list["items"].as_array().into_iter().flatten() {
                        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
                        let first = *seen.entry(name.clone()).or_insert_with(Instant::now);
                        if done.contains(&name)
                            || image(p).contains("bad")
                            || first.elapsed() < Duration::from_millis(100)
                        {
                            continue;
                        }
                        let now =
                            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                        let patch = json!({"status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                        let res = http
                            .builder(Method::PATCH, &format!("{PODS}/{name}/status"))
                            .header("content-type", "application/merge-patch+json")
                            .body(patch.to_string())
                            .send()
                            .await;
                        if res.is_ok_and(|r| r.status().is_success()) {
                            done.insert(name);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        });
        Kubelet {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a watcher saw, recomputed after every pod change.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub ready: usize,
    /// The fewest Ready pods seen once `armed` (after the first full set).
    pub min_ready: Option<usize>,
    pub max_pods: usize,
    /// Pods of two images existed at once.
    pub mixed: bool,
    pub events: usize,
}

/// Watches pods from now on; `arm_at` Ready pods starts the minimum count.
pub struct Watcher {
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn start(url: &str, arm_at: usize) -> Watcher {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag, out) = (url.to_string(), stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            runtime().block_on(async move {
                let http = selur_client::Client::from_url(&url).expect("client");
                let list: Value = http
                    .send(Method::GET, PODS, &[], None)
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("json");
                let mut pods: HashMap<String, Value> = HashMap::new();
                for p in list["items"].as_array().into_iter().flatten() {
                    pods.insert(
                        p["metadata"]["name"].as_str().unwrap_or("").into(),
                        p.clone(),
                    );
                }
                let rv = list["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("0")
                    .to_string();
                let resp = http
                    .send(
                        Method::GET,
                        PODS,
                        &[("watch", "true".into()), ("resourceVersion", rv)],
                        None,
                    )
                    .await
                    .expect("watch");
                let mut stream = resp.bytes_stream();
                let mut buf = Vec::new();
                let mut armed = false;
                let record = |pods: &HashMap<String, Value>, armed: &mut bool| {
                    let ready = pods.values().filter(|p| ready(p)).count();
                    let images: HashSet<String> = pods.values().map(image).collect();
                    let mut s = out.lock().expect("seen");
                    *armed |= ready >= arm_at;
                    s.ready = ready;
                    if *armed {
                        s.min_ready = Some(s.min_ready.map_or(ready, |m| m.min(ready)));
                    }
                    s.max_pods = s.max_pods.max(pods.len());
                    s.mixed |= images.len() > 1;
                    s.events += 1;
                };
                record(&pods, &mut armed);
                loop {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let chunk =
                        match tokio::time::timeout(Duration::from_millis(100), stream.next()).await
                        {
                            Ok(Some(Ok(c))) => c,
                            Ok(_) => return,
                            Err(_) => continue,
                        };
                    buf.extend_from_slice(&chunk);
                    while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=i).collect();
                        let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                            continue;
                        };
                        let name = ev["object"]["metadata"]["name"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        match ev["type"].as_str() {
                            Some("ADDED") | Some("MODIFIED") => {
                                pods.insert(name, ev["object"].clone());
                            }
                            Some("DELETED") => {
                                pods.remove(&name);
                            }
                            _ => continue,
                        }
                        record(&pods, &mut armed);
                    }
                }
            })
        });
        Watcher {
            seen,
            stop,
            handle: Some(handle),
        }
    }

    pub fn get(&self) -> Seen {
        self.seen.lock().expect("seen").clone()
    }

    pub fn stop(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.get()
    }
}

/// Wait up to `secs` for `f`; panics with `what` otherwise.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
