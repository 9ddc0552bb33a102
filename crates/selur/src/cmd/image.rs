//! `selur image ...`: image commands, sent through the API server to a
//! node's agent over its tunnel (`/api/v1/nodes/{node}/proxy/images...`);
//! local files (archives, build contexts) are streamed up.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The node whose image store to use (default: the only node).
    #[arg(long, global = true)]
    node: Option<String>,
    #[command(subcommand)]
    cmd: ImageCmd,
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// List the node's images.
    Ls,
    /// Show an image's digest, labels, user, entrypoint, layers and sizes.
    Inspect { name: String },
    /// Remove an image name (its blobs go at the next prune).
    Rm { name: String },
    /// Delete blobs and layers no image refers to.
    Prune,
    /// Import an OCI layout directory, oci-archive or docker-archive tar.
    #[command(
        after_help = "Examples:\n  selur image import busybox.oci.tar --tag localhost/busybox:1\n  selur image import app.docker.tar"
    )]
    Import {
        file: PathBuf,
        /// Name to give the image (needed when the archive has no full name).
        #[arg(long, short = 't')]
        tag: Option<String>,
    },
    /// Write an image as an oci-archive (an OCI layout in a tar), for
    /// `skopeo copy oci-archive:FILE docker://...`, `podman load` or
    /// `selur image import` on another node.
    #[command(
        after_help = "Examples:\n  selur image save ghcr.io/hyperpolymath/vordr:latest -o vordr.tar\n  skopeo copy --dest-tls-verify=false oci-archive:vordr.tar docker://127.0.0.1:5000/hyperpolymath/vordr:latest"
    )]
    Save {
        name: String,
        /// The file to write (default: standard output, if it is not a terminal).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Build an image from a distroless Containerfile (no RUN).
    #[command(after_help = "Examples:\n  selur image build -f Containerfile -t localhost/web:1 .")]
    Build {
        /// The Containerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Name(s) to tag the result with (repeatable).
        #[arg(short = 't', long = "tag", required = true)]
        tags: Vec<String>,
        /// The build context directory.
        context: PathBuf,
    },
    /// Resolve a reference through the server's registry settings into the cluster image catalog (no layers are fetched).
    Resolve { name: String },
    /// Pull an image through the node's registry settings (mirrors, credentials).
    #[command(
        after_help = "Examples:\n  selur image pull ghcr.io/hyperpolymath/lago-grey:minimal\n  selur image pull busybox --node n2"
    )]
    Pull { name: String },
    /// Check an image: dynamic executables, root user, Lago Grey labels, size budget.
    Lint {
        name: String,
        /// Size budget in MB (compressed).
        #[arg(long)]
        budget_mb: Option<f64>,
    },
}

async fn pick_node(client: &Client, node: Option<String>) -> anyhow::Result<String> {
    if let Some(n) = node {
        return Ok(n);
    }
    // Right after `selur server` starts, its node may still be registering.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let names = loop {
        let nodes = client.get("/api/v1/nodes").await?;
        let names: Vec<String> = nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect();
        if !names.is_empty() || std::time::Instant::now() >= deadline {
            break names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no nodes have joined yet: start `selur server` (with its agent) or `selur agent`"
        ),
        many => bail!(
            "there are {} nodes ({}); pick one with --node NAME",
            many.len(),
            many.join(", ")
        ),
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1}GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1}MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1}kB", b / 1e3)
    } else {
        format!("{bytes}B")
    }
}

async fn send(
    client: &Client,
    path: &str,
    method: Method,
    query: &[(&str, String)],
    body: Option<reqwest::Body>,
    ct: &str,
) -> anyhow::Result<Value> {
    let mut req = client.builder(method, path).query(query);
    if let Some(b) = body {
        req = req.header(reqwest::header::CONTENT_TYPE, ct).body(b);
    }
    let resp = client.execute(req).await?;
    let raw = resp.bytes().await.unwrap_or_default();
    Ok(serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

/// Stream `name` as an oci-archive into `output` (written to a temp file
/// next to it and renamed, so a failed save leaves no partial archive).
async fn save(
    client: &Client,
    base: &str,
    name: String,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write an image archive to a terminal: give -o FILE or redirect stdout");
    }
    let req = client
        .builder(Method::GET, &format!("{base}/save"))
        .query(&[("name", name.as_str())]);
    let resp = client.execute(req).await?;
    match output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            copy_body(resp, tmp.as_file_mut(), &name, &path.display().to_string()).await?;
            tmp.persist(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("Saved {name} to {}", path.display());
        }
        None => {
            copy_body(
                resp,
                &mut std::io::stdout().lock(),
                &name,
                "to standard output",
            )
            .await?
        }
    }
    Ok(())
}

/// The body of `resp` (the archive of image `name`) into `out` (`what`
/// names it in errors); a cut-off stream is an error.
async fn copy_body(
    resp: reqwest::Response,
    out: &mut dyn std::io::Write,
    name: &str,
    what: &str,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("saving {name} was cut off"))?;
        out.write_all(&chunk)
            .with_context(|| format!("cannot write {what}"))?;
    }
    out.flush().with_context(|| format!("cannot write {what}"))
}

/// Tar the build context (and the Containerfile as `.selur/Containerfile`).
fn context_tar(context: &Path, file: &Path) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", context)
        .with_context(|| format!("cannot read build context {}", context.display()))?;
    b.append_path_with_name(file, ".selur/Containerfile")
        .with_context(|| format!("cannot read {}", file.display()))?;
    b.into_inner().context("cannot finish the context archive")
}

pub async fn run(client: &Client, a: ImageArgs) -> anyhow::Result<()> {
    if let ImageCmd::Resolve { name } = &a.cmd {
        let v = send(
            client,
            "/apis/images.selur.io/v1/resolve",
            Method::POST,
            &[("ref", name.clone())],
            None,
            "",
        )
        .await?;
        println!("{}", v["metadata"]["name"].as_str().unwrap_or(""));
        println!("{}", crate::print::to_yaml(&v["spec"]));
        return Ok(());
    }
    let node = pick_node(client, a.node).await?;
    let base = format!("/api/v1/nodes/{node}/proxy/images");
    match a.cmd {
        ImageCmd::Ls => {
            let v = send(client, &base, Method::GET, &[], None, "").await?;
            let mut rows = vec![vec![
                "NAME".to_string(),
                "DIGEST".into(),
                "SIZE".into(),
                "USER".into(),
            ]];
            for i in v["images"].as_array().into_iter().flatten() {
                let digest = i["digest"].as_str().unwrap_or("");
                let short = digest
                    .strip_prefix("sha256:")
                    .unwrap_or(digest)
                    .chars()
                    .take(12)
                    .collect::<String>();
                for n in i["names"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        n.as_str().unwrap_or("").to_string(),
                        short.clone(),
                        human(i["size"].as_u64().unwrap_or(0)),
                        i["user"].as_str().unwrap_or("<root>").to_string(),
                    ]);
                }
            }
            print!("{}", crate::print::render(&rows));
        }
        ImageCmd::Inspect { name } => {
            let v = send(
                client,
                &format!("{base}/inspect"),
                Method::GET,
                &[("name", name)],
                None,
                "",
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        ImageCmd::Rm { name } => {
            let v = send(
                client,
                &format!("{base}/remove"),
                Method::POST,
                &[("name", name.clone())],
                None,
                "",
            )
            .await?;
            for n in v["untagged"].as_array().into_iter().flatten() {
                println!("Untagged: {}", n.as_str().unwrap_or(""));
            }
        }
        ImageCmd::Prune => {
            let v = send(
                client,
                &format!("{base}/prune"),
                Method::POST,
                &[],
                None,
                "",
            )
            .await?;
            println!(
                "Total reclaimed space: {}",
                human(v["freedBytes"].as_u64().unwrap_or(0))
            );
        }
        ImageCmd::Import { file, tag } => {
            // An OCI layout directory goes up as a tar; archives are streamed as they are.
            let body = if file.is_dir() {
                let mut b = tar::Builder::new(Vec::new());
                b.follow_symlinks(false);
                b.append_dir_all(".", &file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                reqwest::Body::from(b.into_inner().context("cannot finish the layout archive")?)
            } else {
                let f = tokio::fs::File::open(&file)
                    .await
                    .with_context(|| format!("cannot open {}", file.display()))?;
                reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20))
            };
            let mut q = Vec::new();
            if let Some(t) = tag {
                q.push(("tag", t));
            }
            let v = send(
                client,
                &format!("{base}/import"),
                Method::POST,
                &q,
                Some(body),
                "application/octet-stream",
            )
            .await?;
            for i in v["images"].as_array().into_iter().flatten() {
                println!(
                    "Imported {} ({}, {})",
                    i["name"].as_str().unwrap_or(""),
                    i["digest"].as_str().unwrap_or(""),
                    human(i["size"].as_u64().unwrap_or(0))
                );
            }
        }
        ImageCmd::Save { name, output } => save(client, &base, name, output).await?,
        ImageCmd::Build {
            file,
            tags,
            context,
        } => {
            let file = match file {
                Some(f) => f,
                None => {
                    let c = context.join("Containerfile");
                    if c.is_file() {
                        c
                    } else {
                        context.join("Dockerfile")
                    }
                }
            };
            if !context.is_dir() {
                bail!("build context {} is not a directory", context.display());
            }
            let body = context_tar(&context, &file)?;
            let q: Vec<(&str, String)> = tags.iter().map(|t| ("tag", t.clone())).collect();
            let v = send(
                client,
                &format!("{base}/build"),
                Method::POST,
                &q,
                Some(reqwest::Body::from(body)),
                "application/x-tar",
            )
            .await?;
            println!("{}", v["digest"].as_str().unwrap_or(""));
            for n in v["names"].as_array().into_iter().flatten() {
                println!("Tagged {}", n.as_str().unwrap_or(""));
            }
        }
        ImageCmd::Pull { name } => pull(client, &base, &name).await?,
        ImageCmd::Resolve { .. } => {}
        ImageCmd::Lint { name, budget_mb } => {
            let mut q = vec![("name", name.clone())];
            if let Some(b) = budget_mb {
                q.push(("budgetBytes", ((b * 1e6) as u64).to_string()));
            }
            let v = send(client, &format!("{base}/lint"), Method::GET, &q, None, "").await?;
            let mut errors = 0;
            for f in v["findings"].as_array().into_iter().flatten() {
                let sev = f["severity"].as_str().unwrap_or("");
                if sev.eq_ignore_ascii_case("error") {
                    errors += 1;
                }
                let path = f["path"]
                    .as_str()
                    .map(|p| format!(" {p}:"))
                    .unwrap_or_default();
                println!(
                    "{}{path} [{}] {}",
                    sev.to_ascii_uppercase(),
                    f["code"].as_str().unwrap_or(""),
                    f["message"].as_str().unwrap_or("")
                );
            }
            if errors > 0 {
                return Err(anyhow!("{name}: {errors} lint error(s)"));
            }
            println!("{name}: no lint errors");
        }
    }
    Ok(())
}

/// Stream a pull's progress lines, drawing a bar on a terminal.
async fn pull(client: &Client, base: &str, name: &str) -> anyhow::Result<()> {
    use futures::StreamExt;
    use std::collections::BTreeMap;
    use std::io::{IsTerminal, Write};
    let req = client
        .builder(Method::POST, &format!("{base}/pull"))
        .query(&[("name", name)]);
    let resp = client.execute(req).await?;
    let tty = std::io::stderr().is_terminal();
    let mut layers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.context("pull stream broke")?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(p) = v.get("progress") {
                let layer = p["layer"].as_str().unwrap_or("").to_string();
                layers.insert(
                    layer,
                    (
                        p["done"].as_u64().unwrap_or(0),
                        p["total"].as_u64().unwrap_or(0),
                    ),
                );
                if tty {
                    let (done, total) = layers
                        .values()
                        .fold((0, 0), |(d, t), (a, b)| (d + a, t + b));
                    let pct = (done * 100).checked_div(total).unwrap_or(0);
                    let filled = (pct / 5) as usize;
                    eprint!(
                        "\rPulling {name} [{}{}] {pct:>3}% {} / {}",
                        "=".repeat(filled),
                        " ".repeat(20 - filled.min(20)),
                        human(done),
                        human(total)
                    );
                    let _ = std::io::stderr().flush();
                }
            } else if let Some(r) = v.get("result") {
                if tty {
                    eprintln!();
                }
                println!(
                    "Pulled {} ({}, {}; {} layer(s) fetched, {} already present)",
                    r["name"].as_str().unwrap_or(name),
                    r["digest"].as_str().unwrap_or(""),
                    human(r["size"].as_u64().unwrap_or(0)),
                    r["layersFetched"].as_u64().unwrap_or(0),
                    r["layersReused"].as_u64().unwrap_or(0)
                );
                return Ok(());
            } else if let Some(e) = v.get("error") {
                if tty {
                    eprintln!();
                }
                bail!("{}", e.as_str().unwrap_or("pull failed"));
            }
        }
    }
    bail!("the pull ended without a result (the node's agent went away?)")
}
