//! Image commands end to end: through the API server and the node's tunnel
//! to the agent's store. Import (oci-archive, docker-archive made by umoci +
//! skopeo), build (reproducible, RUN refused), lint, ls/inspect/rm, the
//! cluster image catalog, and node selection with several nodes.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{sh, stderr, stdout, umoci_busybox, Server};
use serde_json::Value;

/// A busybox image made with umoci, exported by skopeo in both archive forms.
fn archives(dir: &Path) -> (String, String) {
    let img = umoci_busybox(
        dir,
        &[
            "--config.user",
            "65532",
            "--config.label",
            "io.hyperpolymath.size-mb=1.2",
            "--config.entrypoint",
            "/bin/busybox",
        ],
    );
    let oci = dir.join("img.oci.tar").display().to_string();
    let docker = dir.join("img.docker.tar").display().to_string();
    sh(
        "skopeo",
        &[
            "copy",
            &format!("oci:{img}"),
            &format!("oci-archive:{oci}:t"),
        ],
    );
    sh(
        "skopeo",
        &[
            "copy",
            &format!("oci:{img}"),
            &format!("docker-archive:{docker}:localhost/docker-import:latest"),
        ],
    );
    (oci, docker)
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn import_build_lint_and_catalog_through_the_tunnel() {
    let s = Server::start(&["--node-name", "main"]);
    let work = s.data_dir().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (oci, docker) = archives(&work);

    // Import both archive forms.
    let out = s.ok(&["image", "import", &oci, "--tag", "localhost/oci-import:1"]);
    assert!(out.contains("Imported localhost/oci-import:1"), "{out}");
    let layout = work.join("layout").display().to_string();
    let out = s.ok(&[
        "image",
        "import",
        &layout,
        "--tag",
        "localhost/layout-import:1",
    ]);
    assert!(out.contains("Imported localhost/layout-import:1"), "{out}");
    let out = s.ok(&["image", "import", &docker]);
    assert!(out.contains("localhost/docker-import:latest"), "{out}");
    for name in ["localhost/oci-import:1", "localhost/docker-import:latest"] {
        let i = json(&s.selur(&["image", "inspect", name]));
        assert_eq!(i["user"], "65532", "{name}");
        assert_eq!(i["labels"]["io.hyperpolymath.size-mb"], "1.2", "{name}");
        assert_eq!(i["layers"].as_array().unwrap().len(), 1, "{name}");
        assert!(i["layers"][0]["size"].as_u64().unwrap() > 500_000, "{name}");
    }

    // Build: reproducible digest, RUN refused naming the line.
    let ctx = work.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("server")).unwrap();
    std::fs::write(ctx.join("Containerfile"), "FROM scratch\nCOPY server /usr/bin/web-server\nUSER 65532\nLABEL io.hyperpolymath.pq-crypto=\"true\"\nENTRYPOINT [\"/usr/bin/web-server\"]\n").unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let d1 = s.ok(&["image", "build", "-t", "localhost/web:1", ctx_s]);
    let d2 = s.ok(&["image", "build", "-t", "localhost/web:2", ctx_s]);
    assert_eq!(
        d1.lines().next(),
        d2.lines().next(),
        "same inputs, same digest"
    );
    std::fs::write(ctx.join("Bad"), "FROM scratch\nRUN echo hi\n").unwrap();
    let out = s.selur(&[
        "image",
        "build",
        "-f",
        ctx.join("Bad").to_str().unwrap(),
        "-t",
        "localhost/bad:1",
        ctx_s,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(":2") && stderr(&out).contains("RUN"),
        "{}",
        stderr(&out)
    );

    // Lint: static busybox passes; a dynamic binary is an error (non-zero exit).
    let out = s.selur(&["image", "lint", "localhost/web:1"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    std::fs::copy("/bin/ls", ctx.join("server")).unwrap();
    s.ok(&["image", "build", "-t", "localhost/dynamic:1", ctx_s]);
    let out = s.selur(&["image", "lint", "localhost/dynamic:1"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("dynamic-binary"), "{}", stdout(&out));

    // ls, the catalog, rm.
    let ls = s.ok(&["image", "ls"]);
    for n in [
        "localhost/web:1",
        "localhost/web:2",
        "localhost/oci-import:1",
    ] {
        assert!(ls.contains(n), "{ls}");
    }
    let digest = d1.lines().next().unwrap().trim().to_string();
    let catalog_name = digest.replacen(':', "-", 1);
    let start = Instant::now();
    loop {
        let out = s.selur(&["get", "images", &catalog_name, "-o", "json"]);
        if out.status.success() {
            let img: Value = serde_json::from_slice(&out.stdout).unwrap();
            if img["status"]["nodes"] == serde_json::json!(["main"])
                && img["spec"]["layers"]
                    .as_array()
                    .is_some_and(|l| l.len() == 1)
            {
                assert_eq!(img["spec"]["user"], "65532");
                assert_eq!(img["spec"]["labels"]["io.hyperpolymath.pq-crypto"], "true");
                let names = img["spec"]["names"].as_array().unwrap();
                assert!(
                    names.contains(&Value::from("localhost/web:1"))
                        && names.contains(&Value::from("localhost/web:2"))
                );
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "catalog entry never appeared: {}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(s
        .ok(&["image", "rm", "localhost/dynamic:1"])
        .contains("Untagged: localhost/dynamic:1"));
    assert!(!s
        .selur(&["image", "inspect", "localhost/dynamic:1"])
        .status
        .success());

    // With a second node, image commands need --node.
    let log = std::fs::File::create(s.data_dir().join("agent2.log")).unwrap();
    let mut agent = common::selur_cmd()
        .args([
            "agent",
            "--server",
            &s.url,
            "--node-name",
            "second",
            "--data-dir",
        ])
        .arg(s.data_dir().join("agent2"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ls = loop {
        let out = s.selur(&["image", "ls", "--node", "second"]);
        if out.status.success() {
            break stdout(&out);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "second node never answered: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!ls.contains("localhost/web:1"), "stores are per node: {ls}");
    let out = s.selur(&["image", "ls"]);
    assert!(
        !out.status.success() && stderr(&out).contains("--node"),
        "{}",
        stderr(&out)
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
