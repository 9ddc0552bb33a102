//! Test fixtures for pulls: Debian's `docker-registry` on a free 127.0.0.1
//! port (optionally with TLS from a throwaway CA and htpasswd auth), killed
//! when its guard drops, and a small two-layer image built with umoci and
//! pushed with skopeo.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use oci_spec::image::{ImageIndex, ImageManifest};
use selur_image::Digest;

pub const USER: &str = "selur";
pub const PASS: &str = "s3cret-pass";
const PACKAGES: &str = "docker-registry skopeo umoci apache2-utils openssl";
const TOOLS: &[&str] = &["docker-registry", "skopeo", "umoci", "htpasswd", "openssl"];

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Install the Debian packages the tests need, once, if any tool is missing.
pub fn ensure_tools() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if TOOLS.iter().all(|t| have(t)) {
            return;
        }
        let script = format!(
            "export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq {PACKAGES} \
             || (apt-get update -qq && apt-get install -y -qq {PACKAGES})"
        );
        let _ = Command::new("sh").args(["-c", &script]).status();
    });
    for t in TOOLS {
        assert!(
            have(t),
            "{t} is missing: install the Debian packages {PACKAGES}"
        );
    }
    assert!(Path::new("/bin/busybox").is_file(), "/bin/busybox missing");
}

/// Run a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// What kind of registry to start.
#[derive(Clone, Copy)]
pub struct Options {
    pub tls: bool,
    pub auth: bool,
}

/// A running registry; killed (and its files removed) on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub ca: Option<PathBuf>,
    pub dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub fn start(opts: Options) -> Registry {
        ensure_tools();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-only\n",
            d.join("storage").display()
        );
        let mut ca = None;
        if opts.tls {
            make_certs(d);
            config += &format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            );
            ca = Some(d.join("ca.pem"));
        }
        if opts.auth {
            let line = run(Command::new("htpasswd").args(["-Bbn", USER, PASS]));
            fs::write(d.join("htpasswd"), line.trim()).expect("htpasswd file");
            config += &format!(
                "auth:\n  htpasswd: {{realm: selur-test, path: {}}}\n",
                d.join("htpasswd").display()
            );
        }
        fs::write(d.join("config.yml"), config).expect("registry config");
        let log = fs::File::create(d.join("registry.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            port,
            ca,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port}: {}",
                fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Push the test image (built on first use, in this registry's dir) as `repo:tag`.
    pub fn push(&self, image: &TestImage, repo_tag: &str) {
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{USER}:{PASS}"),
            &format!("oci:{}:t", image.layout.display()),
            &format!("docker://{}/{repo_tag}", self.host()),
        ]));
    }

    /// PUT a manifest (or index) over plain HTTP without credentials.
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let head = format!(
            "PUT /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host(),
            body.len()
        );
        conn.write_all(head.as_bytes()).expect("write");
        conn.write_all(body).expect("write");
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 201"), "PUT manifest: {reply}");
    }

    /// Overwrite a blob's content in the registry's storage with other bytes
    /// of the same length (what a tampering mirror would serve).
    pub fn tamper_blob(&self, d: &Digest) {
        let path = self
            .dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data");
        let mut bytes = fs::read(&path).expect("registry blob");
        for b in bytes.iter_mut().skip(64).step_by(97) {
            *b ^= 0x5a;
        }
        fs::write(&path, bytes).expect("tamper");
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 (IP SAN).
fn make_certs(d: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(d)
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=selur test CA"]));
    run(Command::new("openssl")
        .current_dir(d)
        .arg("req")
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=127.0.0.1"]));
    fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    run(Command::new("openssl").current_dir(d).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]));
}

/// A two-layer image (static busybox, then /etc/motd) in an OCI layout.
pub struct TestImage {
    pub layout: PathBuf,
    /// The manifest's digest and size (skopeo pushes it unchanged).
    pub manifest: (Digest, u64),
    pub layers: Vec<Digest>,
    _dir: tempfile::TempDir,
}

impl TestImage {
    pub fn build() -> TestImage {
        ensure_tools();
        let dir = tempfile::tempdir().expect("tempdir");
        let (l, b) = (dir.path().join("layout"), dir.path().join("bundle"));
        let img = format!("{}:t", l.display());
        run(Command::new("umoci").args(["init", "--layout"]).arg(&l));
        run(Command::new("umoci").args(["new", "--image", &img]));
        run(Command::new("umoci")
            .args(["unpack", "--image", &img])
            .arg(&b));
        fs::create_dir_all(b.join("rootfs/bin")).expect("bin");
        fs::copy("/bin/busybox", b.join("rootfs/bin/busybox")).expect("busybox");
        run(Command::new("umoci")
            .args(["repack", "--refresh-bundle", "--image", &img])
            .arg(&b));
        fs::create_dir_all(b.join("rootfs/etc")).expect("etc");
        fs::write(b.join("rootfs/etc/motd"), "lago grey\n").expect("motd");
        run(Command::new("umoci")
            .args(["repack", "--image", &img])
            .arg(&b));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &img,
            "--config.label",
            "io.hyperpolymath.size-mb=2",
            "--config.user",
            "65534",
        ]));
        let index = ImageIndex::from_file(l.join("index.json")).expect("index.json");
        let m = &index.manifests()[0];
        let manifest_digest = Digest::parse(m.digest().as_ref()).expect("digest");
        let manifest = ImageManifest::from_file(l.join("blobs/sha256").join(manifest_digest.hex()))
            .expect("manifest");
        let layers = manifest
            .layers()
            .iter()
            .map(|l| Digest::parse(l.digest().as_ref()).expect("digest"))
            .collect();
        TestImage {
            layout: l,
            manifest: (
                Digest::parse(m.digest().as_ref()).expect("digest"),
                m.size(),
            ),
            layers,
            _dir: dir,
        }
    }
}
