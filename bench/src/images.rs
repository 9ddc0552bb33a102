//! Image import throughput: a 15 MB image (umoci-made, exported by skopeo as
//! an oci-archive) imported by `selur image import`'s path (HTTP upload to the
//! API server, through the node tunnel, into the agent's store), by the
//! store library directly, and copied by `skopeo copy oci-archive: oci:` in
//! the same run. Needs umoci and skopeo. Run:
//! `cargo run --release -p selur-bench --bin image-bench`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use selur_client::{Body, Client, Method};

const RUNS: usize = 5;

fn sh(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(cmd).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A ~15 MB image: static busybox plus incompressible data, as an oci-archive.
fn make_archive(dir: &Path) -> anyhow::Result<String> {
    let l = dir.join("layout").display().to_string();
    let b = dir.join("bundle").display().to_string();
    let img = format!("{l}:t");
    sh("umoci", &["init", "--layout", &l])?;
    sh("umoci", &["new", "--image", &img])?;
    sh("umoci", &["unpack", "--image", &img, &b])?;
    std::fs::create_dir_all(format!("{b}/rootfs/usr/bin"))?;
    std::fs::copy("/bin/busybox", format!("{b}/rootfs/usr/bin/web-server"))?;
    // Pseudo-random bytes (xorshift) so gzip cannot shrink them.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut data = vec![0u8; 14 * 1024 * 1024];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = (x >> (i * 8)) as u8;
        }
    }
    std::fs::write(format!("{b}/rootfs/usr/share.bin"), &data)?;
    sh("umoci", &["repack", "--image", &img, &b])?;
    let archive = dir.join("img.oci.tar").display().to_string();
    sh(
        "skopeo",
        &[
            "copy",
            &format!("oci:{img}"),
            &format!("oci-archive:{archive}:t"),
        ],
    )?;
    Ok(archive)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Node {
    client: Client,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), selur_server::ServerError>>,
    _dir: tempfile::TempDir,
}

/// An in-process server with its agent (node "bench"), tunnel up.
async fn start_node(registries: selur_image::registries::RegistrySettings) -> anyhow::Result<Node> {
    let dir = tempfile::tempdir()?;
    let config = selur_server::ServerConfig::new(dir.path().join("server"), "127.0.0.1:0".parse()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent_dir = dir.path().join("agent");
    let mut agent_rx = stop_rx.clone();
    let on_listen = move |addr: std::net::SocketAddr| {
        let mut cfg =
            selur_agent::AgentConfig::new(format!("http://{addr}"), "bench".into(), agent_dir);
        cfg.registries = registries;
        tokio::spawn(async move {
            let _ = selur_agent::run(cfg, async move {
                let _ = agent_rx.wait_for(|s| *s).await;
            })
            .await;
        });
    };
    let mut server_rx = stop_rx;
    let server = tokio::spawn(selur_server::serve_with(
        config,
        async move {
            let _ = server_rx.wait_for(|s| *s).await;
        },
        on_listen,
    ));
    let kc = dir.path().join("server/kubeconfig");
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let client = Client::from_url(&url)?;
    // Wait for the node's tunnel.
    loop {
        let r = client
            .send(Method::GET, "/api/v1/nodes/bench/proxy/healthz", &[], None)
            .await?;
        if r.status().is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Node {
        client,
        stop: stop_tx,
        server,
        _dir: dir,
    })
}

impl Node {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

async fn selur_import(archive: &str, run: usize) -> anyhow::Result<Duration> {
    let node = start_node(Default::default()).await?;
    // A fresh connection, as `selur image import` makes.
    let c = Client::from_url(&node.client.base)?;
    let t = Instant::now();
    let f = tokio::fs::File::open(archive).await?;
    let req = c
        .builder(
            Method::POST,
            &format!("/api/v1/nodes/bench/proxy/images/import?tag=localhost/bench:{run}"),
        )
        .body(Body::wrap_stream(
            tokio_util::io::ReaderStream::with_capacity(f, 1 << 20),
        ));
    let r = c.execute_raw(req).await?;
    anyhow::ensure!(
        r.status().is_success(),
        "import failed: {}",
        r.text().await.unwrap_or_default()
    );
    let took = t.elapsed();
    node.stop().await;
    Ok(took)
}

async fn selur_pull(port: u16) -> anyhow::Result<Duration> {
    let settings = selur_image::registries::RegistrySettings::parse(&format!(
        "configs:\n  \"127.0.0.1:{port}\":\n    insecure: true\n"
    ))?;
    let node = start_node(settings).await?;
    let t = Instant::now();
    let r = Client::from_url(&node.client.base)?
        .send(
            Method::POST,
            "/api/v1/nodes/bench/proxy/images/pull",
            &[("name", format!("127.0.0.1:{port}/bench:t"))],
            None,
        )
        .await?;
    let body = r.text().await?;
    anyhow::ensure!(body.contains("\"result\""), "pull failed: {body}");
    let took = t.elapsed();
    node.stop().await;
    Ok(took)
}

struct Registry(std::process::Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(dir: &Path) -> anyhow::Result<(Registry, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let reg = Registry(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((reg, port))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let archive = make_archive(work.path())?;
    let size = std::fs::metadata(&archive)?.len();
    let mb = size as f64 / 1e6;

    let mut via_api = Vec::new();
    for run in 0..RUNS {
        via_api.push(selur_import(&archive, run).await?);
    }
    let mut library = Vec::new();
    for _ in 0..RUNS {
        let d = tempfile::tempdir()?;
        let store = selur_image::ImageStore::open(d.path())?;
        let t = Instant::now();
        selur_image::import::import(&store, Path::new(&archive), Some("localhost/bench:1"))?;
        library.push(t.elapsed());
    }
    let mut skopeo = Vec::new();
    for _ in 0..RUNS {
        let d = tempfile::tempdir()?;
        let dest = format!("oci:{}:t", d.path().join("out").display());
        let t = Instant::now();
        sh(
            "skopeo",
            &["copy", "-q", &format!("oci-archive:{archive}:t"), &dest],
        )?;
        skopeo.push(t.elapsed());
    }
    let (_registry, port) = start_registry(work.path())?;
    sh(
        "skopeo",
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci-archive:{archive}:t"),
            &format!("docker://127.0.0.1:{port}/bench:t"),
        ],
    )?;
    let mut pull_api = Vec::new();
    for _ in 0..RUNS {
        pull_api.push(selur_pull(port).await?);
    }
    let mut pull_skopeo = Vec::new();
    for _ in 0..RUNS {
        let d = tempfile::tempdir()?;
        let dest = format!("oci:{}:t", d.path().join("out").display());
        let t = Instant::now();
        sh(
            "skopeo",
            &[
                "copy",
                "-q",
                "--src-tls-verify=false",
                &format!("docker://127.0.0.1:{port}/bench:t"),
                &dest,
            ],
        )?;
        pull_skopeo.push(t.elapsed());
    }
    println!("Image import and pull: {mb:.1} MB image (one ~15 MB layer), median of {RUNS} runs, fresh store each run");
    println!();
    println!("| path                                                    | median s | MB/s   |");
    println!("|---------------------------------------------------------|----------|--------|");
    for (name, v) in [
        (
            "selur image import (HTTP -> server -> tunnel -> agent)",
            via_api,
        ),
        ("selur-image library import (no network)", library),
        ("skopeo copy oci-archive: -> oci:", skopeo),
        (
            "selur pull, local docker-registry (HTTP, via API)",
            pull_api,
        ),
        ("skopeo copy docker:// -> oci: (same registry)", pull_skopeo),
    ] {
        let m = median(v);
        println!(
            "| {name:<47} | {:>8.3} | {:>6.1} |",
            m.as_secs_f64(),
            mb / m.as_secs_f64()
        );
    }
    Ok(())
}
