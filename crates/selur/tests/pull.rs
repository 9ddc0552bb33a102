//! `selur image pull` through the API server and the node's tunnel, with a
//! registry settings file that mirrors ghcr.io to a local Debian
//! `docker-registry` on 127.0.0.1 (plain HTTP, marked insecure).

mod common;

use std::time::{Duration, Instant};

use common::{sh, stderr, stdout, umoci_busybox, LocalRegistry, Server};

#[test]
fn pull_resolves_ghcr_through_a_local_mirror() {
    let work = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start(work.path());
    let port = registry.port;
    // A busybox image pushed as mirror/lago-grey:minimal.
    let img = umoci_busybox(
        work.path(),
        &[
            "--config.label",
            "io.hyperpolymath.pq-crypto=true",
            "--config.user",
            "65532",
        ],
    );
    sh(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{img}"),
            &format!("docker://127.0.0.1:{port}/mirror/lago-grey:minimal"),
        ],
    );

    let settings = work.path().join("registries.yaml");
    std::fs::write(
        &settings,
        format!(
            "mirrors:\n  ghcr.io:\n    endpoint: [\"http://127.0.0.1:{port}\"]\n    rewrite:\n      \"^hyperpolymath/(.*)\": \"mirror/$1\"\n    upstream: false\nconfigs:\n  \"127.0.0.1:{port}\":\n    insecure: true\n"
        ),
    )
    .unwrap();
    let s = Server::start(&[
        "--node-name",
        "main",
        "--registry-config",
        settings.to_str().unwrap(),
    ]);
    let start = Instant::now();
    let out = loop {
        let out = s.selur(&["image", "pull", "ghcr.io/hyperpolymath/lago-grey:minimal"]);
        if out.status.success()
            || !stderr(&out).contains("no agent connected") && !stderr(&out).contains("no nodes")
        {
            break out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Pulled ghcr.io/hyperpolymath/lago-grey:minimal"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("1 layer(s) fetched"),
        "{}",
        stdout(&out)
    );
    let again = s.ok(&["image", "pull", "ghcr.io/hyperpolymath/lago-grey:minimal"]);
    assert!(
        again.contains("0 layer(s) fetched, 1 already present"),
        "{again}"
    );
    let info = s.ok(&[
        "image",
        "inspect",
        "ghcr.io/hyperpolymath/lago-grey:minimal",
    ]);
    assert!(
        info.contains("\"io.hyperpolymath.pq-crypto\": \"true\""),
        "{info}"
    );
    // Pods bound to the node get their images per imagePullPolicy, with events.
    let pods = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: always\nspec:\n  nodeName: main\n  containers:\n  - name: web\n    image: ghcr.io/hyperpolymath/lago-grey:minimal\n    imagePullPolicy: Always\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: present\nspec:\n  nodeName: main\n  containers:\n  - name: web\n    image: ghcr.io/hyperpolymath/lago-grey:minimal\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: never\nspec:\n  nodeName: main\n  containers:\n  - name: web\n    image: ghcr.io/hyperpolymath/absent:1\n    imagePullPolicy: Never\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  nodeName: main\n  containers:\n  - name: web\n    image: ghcr.io/hyperpolymath/absent:1\n";
    let f = common::write_file(&s, "pods.yaml", pods);
    s.ok(&["apply", "-f", &f]);
    let want = [
        ("always", "Pulling"),
        ("always", "Pulled"),
        ("present", "Pulled"),
        ("never", "ErrImageNeverPull"),
        ("missing", "Pulling"),
        ("missing", "Failed"),
    ];
    let start = Instant::now();
    loop {
        let evs = s.get_json(&["events"]);
        let got: Vec<(String, String, String)> = evs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["involvedObject"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        if want
            .iter()
            .all(|(p, r)| got.iter().any(|(gp, gr, _)| gp == p && gr == r))
        {
            let present = got
                .iter()
                .find(|(p, r, _)| p == "present" && r == "Pulled")
                .unwrap();
            assert!(
                present.2.contains("already present on machine"),
                "{present:?}"
            );
            let failed = got
                .iter()
                .find(|(p, r, _)| p == "missing" && r == "Failed")
                .unwrap();
            assert!(
                failed.2.contains("ghcr.io/hyperpolymath/absent:1"),
                "{failed:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "missing events; got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let described = s.ok(&["describe", "pod", "always"]);
    assert!(
        described.contains("Pulling") && described.contains("Successfully pulled"),
        "{described}"
    );

    // An image the mirror does not have: a clear failure, non-zero exit.
    let out = s.selur(&["image", "pull", "ghcr.io/hyperpolymath/missing:1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

/// `selur image save` writes an oci-archive that skopeo pushes to a registry
/// unchanged (same manifest digest), and that the node pulls back; an
/// unknown name fails with a clear message and writes no file.
#[test]
fn save_writes_an_oci_archive_that_skopeo_pushes_and_the_node_pulls_back() {
    let work = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start(work.path());
    let port = registry.port;
    let settings = common::insecure_registry_settings(work.path(), port);
    let s = Server::start(&[
        "--node-name",
        "main",
        "--registry-config",
        settings.to_str().unwrap(),
    ]);
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("server")).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY server /usr/bin/web-server\nUSER 65532\nENTRYPOINT [\"/usr/bin/web-server\"]\n",
    )
    .unwrap();
    let built = s.ok(&[
        "image",
        "build",
        "-t",
        "localhost/saved:1",
        ctx.to_str().unwrap(),
    ]);
    let digest = built.lines().next().unwrap().trim().to_string();
    assert!(digest.starts_with("sha256:"), "{built}");

    let archive = work.path().join("saved.tar");
    let a = archive.to_str().unwrap();
    s.ok(&["image", "save", "localhost/saved:1", "-o", a]);
    let pushed = format!("127.0.0.1:{port}/t/saved:1");
    sh(
        "skopeo",
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci-archive:{a}"),
            &format!("docker://{pushed}"),
        ],
    );
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{pushed}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        digest,
        "skopeo kept the manifest digest"
    );

    let out = s.selur(&["image", "pull", &pushed]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let i: serde_json::Value = serde_json::from_str(&s.ok(&["image", "inspect", &pushed])).unwrap();
    assert_eq!(i["digest"], digest.as_str(), "{i}");

    let missing = work.path().join("missing.tar");
    let out = s.selur(&[
        "image",
        "save",
        "localhost/nope:1",
        "-o",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("localhost/nope:1"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists(), "a failed save left a file");
}
