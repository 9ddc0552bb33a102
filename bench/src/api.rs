//! API latency benchmark: an in-process `selur server` on the embedded store,
//! driven over HTTP on loopback. Prints p50/p99 of create, get, update and
//! list with 1,000 objects, watch delivery latency, and concurrent write
//! throughput (group commit). Run: `cargo run --release -p selur-bench --bin api-bench`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use selur_client::{Client, Method, Response};
use serde_json::{json, Value};

const N: usize = 1000;
const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "web", "image": "ghcr.io/hyperpolymath/lago-grey:minimal",
            "command": ["/usr/bin/web-server"], "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}]}})
}

struct Stats(Vec<Duration>);

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1000.0
    }
    fn row(&self, name: &str) {
        println!(
            "| {name:<34} | {:>6} | {:>8.2} | {:>8.2} | {:>8.2} |",
            self.0.len(),
            self.pct(0.5),
            self.pct(0.99),
            self.pct(1.0)
        );
    }
}

async fn timed<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        out.push(t.elapsed());
    }
    Ok(Stats(out))
}

/// `method path` with an optional JSON body; the raw answer, for [`check`].
async fn send(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Response> {
    let body = match body {
        Some(b) => Some(("application/json", serde_json::to_vec(b)?)),
        None => None,
    };
    Ok(c.send(method, path, &[], body).await?)
}

async fn check(resp: Response, want: u16) -> anyhow::Result<Value> {
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(code == want, "HTTP {code}: {body}");
    Ok(body)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config =
        selur_server::ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse()?);
    // API latency only: no scheduler writing pod status and events beside the requests.
    config.scheduler = None;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(selur_server::serve(config, async {
        let _ = stop_rx.await;
    }));
    let kc = dir.path().join("kubeconfig");
    let start = Instant::now();
    let url = loop {
        if let Ok(t) = std::fs::read_to_string(&kc) {
            if let Some(l) = t.lines().find(|l| l.trim_start().starts_with("server:")) {
                break l
                    .trim_start()
                    .trim_start_matches("server:")
                    .trim()
                    .to_string();
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let c = Client::from_url(&url)?;

    let create = timed(N, |i| {
        let c = c.clone();
        async move {
            check(
                send(&c, Method::POST, PODS, Some(&pod(&format!("p{i:04}")))).await?,
                201,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let get = timed(N, |i| {
        let c = c.clone();
        async move {
            check(
                send(&c, Method::GET, &format!("{PODS}/p{i:04}"), None).await?,
                200,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let update = timed(N, |i| {
        let c = c.clone();
        async move {
            let mut p = check(
                send(&c, Method::GET, &format!("{PODS}/p{i:04}"), None).await?,
                200,
            )
            .await?;
            p["metadata"]["labels"]["round"] = json!("2");
            let t = Instant::now();
            check(
                send(&c, Method::PUT, &format!("{PODS}/p{i:04}"), Some(&p)).await?,
                200,
            )
            .await?;
            let _ = t;
            Ok(())
        }
    })
    .await?;
    // Update timing above includes the GET; measure PUT alone too.
    let mut put_only = Vec::with_capacity(N);
    for i in 0..N {
        let mut p = check(
            send(&c, Method::GET, &format!("{PODS}/p{i:04}"), None).await?,
            200,
        )
        .await?;
        p["metadata"]["labels"]["round"] = json!("3");
        let t = Instant::now();
        check(
            send(&c, Method::PUT, &format!("{PODS}/p{i:04}"), Some(&p)).await?,
            200,
        )
        .await?;
        put_only.push(t.elapsed());
    }
    let put_only = Stats(put_only);
    let list_all = timed(50, |_| {
        let c = c.clone();
        async move {
            let l = check(send(&c, Method::GET, PODS, None).await?, 200).await?;
            anyhow::ensure!(l["items"].as_array().map(Vec::len) == Some(N), "list size");
            Ok(())
        }
    })
    .await?;
    let list_page = timed(200, |_| {
        let c = c.clone();
        async move {
            check(
                send(&c, Method::GET, &format!("{PODS}?limit=100"), None).await?,
                200,
            )
            .await?;
            Ok(())
        }
    })
    .await?;

    // Watch delivery: time from issuing a write to seeing its event, and from the write's ack.
    let rv = check(
        send(&c, Method::GET, &format!("{PODS}?limit=1"), None).await?,
        200,
    )
    .await?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let resp = send(
        &c,
        Method::GET,
        &format!("{PODS}?watch=true&resourceVersion={rv}"),
        None,
    )
    .await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut from_write = Vec::new();
    let mut from_ack = Vec::new();
    for i in 0..300 {
        let name = format!("w{i:04}");
        let t0 = Instant::now();
        check(send(&c, Method::POST, PODS, Some(&pod(&name))).await?, 201).await?;
        let acked = Instant::now();
        'wait: loop {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let ev: Value = serde_json::from_slice(&line)?;
                if ev["object"]["metadata"]["name"] == name.as_str() {
                    break 'wait;
                }
            }
            let chunk = stream
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("watch ended"))??;
            buf.extend_from_slice(&chunk);
        }
        from_write.push(t0.elapsed());
        from_ack.push(acked.elapsed());
    }

    // Concurrent writers share fsyncs (group commit).
    let writers = 32;
    let per = 100;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                check(
                    send(&c, Method::POST, PODS, Some(&pod(&format!("c{w}-{i}")))).await?,
                    201,
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let conc = t.elapsed();

    println!("Selur API benchmark: embedded SQLite store, HTTP/1.1 on loopback, {N} Pod objects, one client unless noted");
    println!();
    println!("| operation                          | count  | p50 ms   | p99 ms   | max ms   |");
    println!("|------------------------------------|--------|----------|----------|----------|");
    create.row("create (POST, fsynced)");
    get.row("get (GET one)");
    put_only.row("update (PUT, fsynced)");
    update.row("read-modify-write (GET+PUT)");
    list_all.row("list all 1000 pods");
    list_page.row("list limit=100");
    Stats(from_write).row("watch: write issued -> event");
    Stats(from_ack).row("watch: write acked -> event");
    println!();
    println!(
        "concurrent creates: {writers} clients x {per} = {} objects in {:.2} s = {:.0} writes/s",
        writers * per,
        conc.as_secs_f64(),
        (writers * per) as f64 / conc.as_secs_f64()
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(())
}
