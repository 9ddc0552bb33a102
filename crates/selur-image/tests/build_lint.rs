//! Builds of distroless Containerfiles and the lint, end to end, with
//! /bin/busybox (Debian busybox-static) as the static binary and /bin/ls
//! as a dynamically linked one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use selur_image::build::{build, BuildError, BuildOptions, BuiltImage};
use selur_image::{Digest, ImageStore};
use tempfile::TempDir;

#[path = "build_lint/lint.rs"]
mod lint_tests;

const WEB: &str = "FROM scratch\nCOPY busybox /usr/bin/web-server\nUSER 65532\nLABEL io.hyperpolymath.pq-crypto=\"true\" org.opencontainers.image.title=\"t\"\nENTRYPOINT [\"/usr/bin/web-server\"]\n";

struct Env {
    _dir: TempDir,
    store: ImageStore,
    ctx: std::path::PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    fs::copy("/bin/ls", ctx.join("ls")).unwrap();
    Env {
        _dir: dir,
        store,
        ctx,
    }
}

impl Env {
    fn build_with(
        &self,
        containerfile: &str,
        tags: &[&str],
        opts: &BuildOptions,
    ) -> Result<BuiltImage, BuildError> {
        let cf = self.ctx.join("Containerfile");
        fs::write(&cf, containerfile).unwrap();
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        build(&self.store, &cf, &self.ctx, &tags, opts)
    }
    fn build(&self, containerfile: &str, tags: &[&str]) -> Result<BuiltImage, BuildError> {
        self.build_with(containerfile, tags, &BuildOptions::default())
    }
    /// (path, uid, gid, mode, mtime, size) of every entry of a layer blob.
    fn layer_entries(&self, d: &Digest) -> Vec<(String, u64, u64, u32, u64, u64)> {
        let gz = self.store.read_blob(d).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let p = String::from_utf8(e.path_bytes().to_vec()).unwrap();
                (
                    p,
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect()
    }
    fn only_layer(&self, b: &BuiltImage) -> Digest {
        let info = self.store.inspect(b.digest.as_str()).unwrap();
        assert_eq!(info.layers.len(), 1);
        info.layers[0].digest.clone()
    }
}

#[test]
fn builds_are_reproducible() {
    let e = env();
    let a = e.build(WEB, &["web:1"]).unwrap();
    let b = e.build(WEB, &["web:2"]).unwrap();
    assert_eq!(a.digest, b.digest, "same inputs, same manifest digest");
    assert_eq!(a.names, ["docker.io/library/web:1"]);
    // Another store and another context directory holding the same files.
    let e2 = env();
    assert_eq!(
        e2.build(WEB, &[]).unwrap().digest,
        a.digest,
        "paths of the context do not leak"
    );
    // One byte more in the binary changes the digest.
    let mut bytes = fs::read(e.ctx.join("busybox")).unwrap();
    bytes.push(0);
    fs::write(e.ctx.join("busybox"), &bytes).unwrap();
    assert_ne!(e.build(WEB, &[]).unwrap().digest, a.digest);
    // So does SOURCE_DATE_EPOCH, which also sets the mtimes.
    let opts = BuildOptions {
        source_date_epoch: Some(1_700_000_000),
        ..Default::default()
    };
    let c = e2.build_with(WEB, &[], &opts).unwrap();
    assert_ne!(c.digest, a.digest);
    assert!(e2
        .layer_entries(&e2.only_layer(&c))
        .iter()
        .all(|x| x.4 == 1_700_000_000));
    let info = e2.store.inspect(c.digest.as_str()).unwrap();
    assert_eq!(info.created.as_deref(), Some("2023-11-14T22:13:20Z"));
}

#[test]
fn inspect_shows_what_was_built() {
    let e = env();
    let b = e.build(WEB, &["web"]).unwrap();
    let info = e.store.inspect("web").unwrap();
    assert_eq!(info.digest, b.digest);
    assert_eq!(info.user.as_deref(), Some("65532"));
    assert_eq!(
        info.labels
            .get("io.hyperpolymath.pq-crypto")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        info.labels
            .get("org.opencontainers.image.title")
            .map(String::as_str),
        Some("t")
    );
    assert_eq!(
        info.entrypoint,
        Some(vec!["/usr/bin/web-server".to_string()])
    );
    assert_eq!(info.cmd, None);
    assert_eq!(info.env, None, "FROM scratch sets no environment");
    assert_eq!(
        (info.architecture.as_str(), info.os.as_str()),
        ("amd64", "linux")
    );
    assert_eq!(info.created.as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(info.layers.len(), 1);
    assert_eq!(
        info.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // The layer: parents first, sorted, root-owned, mtime 0, modes from the source.
    let layer = &info.layers[0].digest;
    let entries = e.layer_entries(layer);
    let paths: Vec<&str> = entries.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(paths, ["usr/", "usr/bin/", "usr/bin/web-server"]);
    let bin = &entries[2];
    assert_eq!((bin.1, bin.2, bin.3, bin.4), (0, 0, 0o755, 0));
    assert_eq!(bin.5, fs::metadata("/bin/busybox").unwrap().len());
    // gzip header: no mtime, no file name, OS "unknown".
    let gz = e.store.read_blob(layer).unwrap();
    assert_eq!(&gz[3..10], &[0, 0, 0, 0, 0, 0, 255]);
    // diff_id is the digest of the uncompressed tar.
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let m = e.store.manifest(&b.digest).unwrap();
    let (_, config) = e.store.config(&m).unwrap();
    assert_eq!(
        config.rootfs().diff_ids(),
        &vec![Digest::of(&raw).to_string()]
    );
    assert_eq!(m.schema_version(), 2);
    assert_eq!(
        m.media_type().as_ref().map(|t| t.to_string()).as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
}

#[test]
fn run_and_shell_forms_are_refused_with_their_line() {
    let e = env();
    let err = e
        .build(
            "FROM scratch\n# comment\n\nCOPY busybox /b\nRUN make\n",
            &[],
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Containerfile:5: RUN is not supported"),
        "{msg}"
    );
    assert!(
        msg.contains("no shell") && msg.contains("COPY it in"),
        "{msg}"
    );

    let msg = e
        .build("FROM scratch\nENTRYPOINT /app --port 80\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Containerfile:2:") && msg.contains(r#"ENTRYPOINT ["/app","--port","80"]"#),
        "{msg}"
    );
    let msg = e
        .build("FROM scratch\nFROB x\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Containerfile:2: unknown instruction FROB"),
        "{msg}"
    );
    let msg = e
        .build("FROM scratch\nADD https://example.com/x /x\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(":2:") && msg.contains("remote sources are not supported"),
        "{msg}"
    );
    fs::write(e.ctx.join("bundle.tgz"), [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    let msg = e
        .build("FROM scratch\nADD bundle.tgz /opt/\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(":2:") && msg.contains("archive") && msg.contains("COPY"),
        "{msg}"
    );
    let added = e.build("FROM scratch\nADD busybox /b\n", &[]).unwrap();
    let copied = e.build("FROM scratch\nCOPY busybox /b\n", &[]).unwrap();
    assert_eq!(
        e.layer_entries(&e.only_layer(&added)),
        e.layer_entries(&e.only_layer(&copied))
    );
    let msg = e
        .build("FROM nosuch/image:1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(":1:") && msg.contains("not in the node's image store"),
        "{msg}"
    );
    let msg = e
        .build("FROM scratch\nCOPY missing /x\n", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains(":2:") && msg.contains("missing"), "{msg}");
    let msg = e
        .build("FROM scratch\nCOPY busybox ls /bin\n", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("must be a directory ending in /"), "{msg}");
    let msg = e.build("COPY busybox /x\n", &[]).unwrap_err().to_string();
    assert!(
        msg.contains("no FROM") || msg.contains("before the first FROM"),
        "{msg}"
    );
}

#[test]
fn multi_stage_copy_from() {
    let e = env();
    fs::write(e.ctx.join("x"), b"hello").unwrap();
    let b = e
        .build(
            "FROM scratch AS a\nCOPY x /x\nFROM scratch\nCOPY --from=a /x /y\n",
            &["ms"],
        )
        .unwrap();
    let entries = e.layer_entries(&e.only_layer(&b));
    assert_eq!(
        entries.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["y"]
    );
    assert_eq!(entries[0].5, 5);
    // By index, into a directory, and from a stored image.
    let b2 = e
        .build(
            "FROM scratch\nCOPY x /x\nFROM scratch\nCOPY --from=0 /x /opt/\n",
            &[],
        )
        .unwrap();
    let paths: Vec<String> = e
        .layer_entries(&e.only_layer(&b2))
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(paths, ["opt/", "opt/x"]);
    let b3 = e
        .build("FROM scratch\nCOPY --from=ms /y /z\n", &[])
        .unwrap();
    assert_eq!(e.layer_entries(&e.only_layer(&b3))[0].0, "z");
    let msg = e
        .build("FROM scratch\nCOPY --from=nope /y /z\n", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains(":2:") && msg.contains("--from=nope"), "{msg}");
}

#[test]
fn chown_chmod_and_directories() {
    let e = env();
    fs::create_dir_all(e.ctx.join("site/css")).unwrap();
    fs::write(e.ctx.join("site/index.html"), b"<p>").unwrap();
    fs::write(e.ctx.join("site/css/a.css"), b"p{}").unwrap();
    std::os::unix::fs::symlink("index.html", e.ctx.join("site/home.html")).unwrap();
    let b = e
        .build(
            "FROM scratch\nWORKDIR /srv\nCOPY --chown=65532:65532 --chmod=0640 site www/\n",
            &[],
        )
        .unwrap();
    let entries = e.layer_entries(&e.only_layer(&b));
    let by: BTreeMap<&str, _> = entries.iter().map(|x| (x.0.as_str(), x)).collect();
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        [
            "srv/",
            "srv/www/",
            "srv/www/css/",
            "srv/www/css/a.css",
            "srv/www/home.html",
            "srv/www/index.html"
        ]
    );
    assert_eq!(
        (by["srv/"].1, by["srv/"].3),
        (0, 0o755),
        "created parents are root's"
    );
    let html = by["srv/www/index.html"];
    assert_eq!((html.1, html.2, html.3), (65532, 65532, 0o640));
    assert_eq!(by["srv/www/home.html"].1, 65532);
    let info = e.store.inspect(b.digest.as_str()).unwrap();
    assert_eq!(info.working_dir.as_deref(), Some("/srv"));

    let b = e
        .build("FROM scratch\nCOPY --chown=1000 busybox /app\n", &[])
        .unwrap();
    let x = &e.layer_entries(&e.only_layer(&b))[0];
    assert_eq!((x.0.as_str(), x.1, x.2), ("app", 1000, 1000));
    let msg = e
        .build("FROM scratch\nCOPY --chown=nobody busybox /app\n", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("--chown=65532:65532"), "{msg}");
}

#[test]
fn metadata_instructions_and_base_images() {
    let e = env();
    let cf = "# syntax=docker/dockerfile:1\nARG VERSION=0.1\nFROM scratch\nARG VERSION\nENV A=1 B=\"two words\"\nENV LEGACY value with spaces\n\
              LABEL org.opencontainers.image.version=$VERSION \\\n      io.hyperpolymath.classification=\"Small Iceberg\"\n\
              EXPOSE 8080 9090/udp\nCOPY busybox /usr/bin/app\nCMD [\"--help\"]\n";
    let base = e.build(cf, &["base:1"]).unwrap();
    let info = e.store.inspect("base:1").unwrap();
    assert_eq!(info.labels["org.opencontainers.image.version"], "0.1");
    assert_eq!(
        info.labels["io.hyperpolymath.classification"],
        "Small Iceberg"
    );
    assert_eq!(
        info.env,
        Some(vec![
            "A=1".to_string(),
            "B=two words".to_string(),
            "LEGACY=value with spaces".to_string()
        ])
    );
    assert_eq!(info.exposed_ports.len(), 2);
    assert!(info.exposed_ports.contains(&"9090/udp".to_string()));
    // Build args override ARG defaults.
    let opts = BuildOptions {
        build_args: [("VERSION".to_string(), "2.0".to_string())].into(),
        ..Default::default()
    };
    let other = e.build_with(cf, &[], &opts).unwrap();
    assert_ne!(other.digest, base.digest);
    let info = e.store.inspect(other.digest.as_str()).unwrap();
    assert_eq!(info.labels["org.opencontainers.image.version"], "2.0");

    // FROM a stored image: its layers, config and CMD carry over; ENTRYPOINT resets the inherited CMD.
    let child = e
        .build("FROM base:1\nCOPY ls /usr/bin/ls\nUSER 65532\n", &[])
        .unwrap();
    let info = e.store.inspect(child.digest.as_str()).unwrap();
    assert_eq!(info.layers.len(), 2);
    assert_eq!(info.cmd, Some(vec!["--help".to_string()]));
    assert_eq!(info.labels["org.opencontainers.image.version"], "0.1");
    let m = e.store.manifest(&child.digest).unwrap();
    let (_, config) = e.store.config(&m).unwrap();
    assert_eq!(config.rootfs().diff_ids().len(), 2);
    // The parents of the new layer copy the base's directory metadata.
    let paths: Vec<String> = e
        .layer_entries(&info.layers[1].digest)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(paths, ["usr/", "usr/bin/", "usr/bin/ls"]);
    let child = e
        .build("FROM base:1\nENTRYPOINT [\"/usr/bin/app\"]\n", &[])
        .unwrap();
    assert_eq!(e.store.inspect(child.digest.as_str()).unwrap().cmd, None);
}
