//! Import of OCI layouts, oci-archives and docker-archives built with umoci
//! and skopeo, unpacking of the result, and hostile layers (in `hostile`).
//! Every test works inside its own temp dir; the umoci/skopeo tests are
//! skipped (loudly) when those tools are missing.

#[path = "import_unpack/hostile.rs"]
mod hostile;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use selur_image::import::{import, ImportError};
use selur_image::unpack::{unpack_image, UnpackLimits};
use selur_image::{Digest, ImageStore};

const BUSYBOX: &str = "/bin/busybox";

fn have_tools() -> bool {
    let ok = ["umoci", "skopeo"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) && Path::new(BUSYBOX).is_file();
    if !ok {
        eprintln!(
            "SKIPPED: umoci, skopeo or {BUSYBOX} missing (scripts/install-deps.sh installs them)"
        );
    }
    ok
}

fn run(tmp: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .env("TMPDIR", tmp)
        .current_dir(tmp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Fixture {
    layout: PathBuf,
    oci_archive: PathBuf,
    docker_archive: PathBuf,
}

/// The tiny busybox image in three forms, under `dir`.
fn fixture(dir: &Path) -> Fixture {
    let tmp = dir.join("tooltmp");
    fs::create_dir_all(&tmp).unwrap();
    let layout = dir.join("layout");
    let image = format!("{}:latest", layout.display());
    let bundle = dir.join("bundle");
    let (l, b) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
    run(&tmp, "umoci", &["init", "--layout", l]);
    run(&tmp, "umoci", &["new", "--image", &image]);
    run(&tmp, "umoci", &["unpack", "--image", &image, b]);
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", rootfs.join("bin/sh")).unwrap();
    run(&tmp, "umoci", &["repack", "--image", &image, b]);
    // After repack: repack starts from the manifest the bundle was unpacked from.
    run(
        &tmp,
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.user",
            "65532",
            "--config.label",
            "io.hyperpolymath.size-mb=1.2",
            "--config.entrypoint",
            "/bin/busybox",
        ],
    );
    run(&tmp, "umoci", &["gc", "--layout", l]);
    let oci_archive = dir.join("image.oci.tar");
    let docker_archive = dir.join("image.docker.tar");
    let src = format!("oci:{image}");
    let oa = format!("oci-archive:{}:latest", oci_archive.display());
    let da = format!(
        "docker-archive:{}:localhost/test:latest",
        docker_archive.display()
    );
    run(
        &tmp,
        "skopeo",
        &["--insecure-policy", "copy", "-q", &src, &oa],
    );
    run(
        &tmp,
        "skopeo",
        &["--insecure-policy", "copy", "-q", &src, &da],
    );
    Fixture {
        layout,
        oci_archive,
        docker_archive,
    }
}

/// The imported image looks right and unpacks to a working rootfs.
fn check_image(store: &ImageStore, name: &str, layer_media_type: &str) {
    let info = store.inspect(name).unwrap();
    assert_eq!(info.names, vec![name.to_string()]);
    assert_eq!(
        info.labels
            .get("io.hyperpolymath.size-mb")
            .map(String::as_str),
        Some("1.2")
    );
    assert_eq!(info.user.as_deref(), Some("65532"));
    assert_eq!(info.entrypoint, Some(vec!["/bin/busybox".to_string()]));
    assert_eq!(
        (info.os.as_str(), info.architecture.as_str()),
        ("linux", "amd64")
    );
    assert_eq!(info.layers.len(), 1);
    assert_eq!(info.layers[0].media_type, layer_media_type);

    let limits = UnpackLimits::default();
    let dirs = unpack_image(store, &info.digest, &limits).unwrap();
    assert_eq!(dirs.len(), 1);
    assert_eq!(
        dirs[0],
        store
            .root()
            .join("layers")
            .join(info.layers[0].digest.hex())
    );
    let bb = dirs[0].join("bin/busybox");
    let meta = fs::symlink_metadata(&bb).unwrap();
    assert!(
        meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        "busybox executable"
    );
    assert_eq!(meta.len(), fs::metadata(BUSYBOX).unwrap().len());
    let out = Command::new(&bb).args(["echo", "hello"]).output().unwrap();
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(
        fs::read_link(dirs[0].join("bin/sh")).unwrap(),
        Path::new("/bin/busybox"),
        "absolute symlink kept"
    );
    assert_eq!(
        fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o7777,
        0o755
    );

    // Unpacked once: a second call reuses the directory as it is.
    fs::write(dirs[0].join("reuse-marker"), "").unwrap();
    assert_eq!(unpack_image(store, &info.digest, &limits).unwrap(), dirs);
    assert!(dirs[0].join("reuse-marker").exists());
    fs::remove_file(dirs[0].join("reuse-marker")).unwrap();
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0,
        "nothing left in tmp/"
    );
}

#[test]
fn imports_layout_oci_archive_and_docker_archive() {
    if !have_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fx = fixture(t.path());
    let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";

    // (a) layout directory: its ref.name is only "latest", so a tag is needed.
    let store = ImageStore::open(&t.path().join("s1")).unwrap();
    let err = import(&store, &fx.layout, None).unwrap_err();
    assert!(matches!(err, ImportError::NeedTag { .. }), "{err}");
    assert!(err.to_string().contains("--tag"), "{err}");
    assert!(store.list().unwrap().is_empty());
    let got = import(&store, &fx.layout, Some("localhost/layout:1")).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "localhost/layout:1");
    assert_eq!(
        got[0].size,
        store.inspect("localhost/layout:1").unwrap().size
    );
    check_image(&store, "localhost/layout:1", gzip);

    // (b) oci-archive, same manifest.
    let store2 = ImageStore::open(&t.path().join("s2")).unwrap();
    let got2 = import(&store2, &fx.oci_archive, Some("localhost/oa")).unwrap();
    assert_eq!(got2[0].name, "localhost/oa:latest");
    assert_eq!(got2[0].digest, got[0].digest);
    check_image(&store2, "localhost/oa:latest", gzip);

    // (c) docker-archive, named by its RepoTags, converted to an OCI manifest.
    let store3 = ImageStore::open(&t.path().join("s3")).unwrap();
    let got3 = import(&store3, &fx.docker_archive, None).unwrap();
    assert_eq!(got3.len(), 1);
    assert_eq!(got3[0].name, "localhost/test:latest");
    check_image(
        &store3,
        "localhost/test:latest",
        "application/vnd.oci.image.layer.v1.tar",
    );
    let m: serde_json::Value =
        serde_json::from_slice(&store3.read_blob(&got3[0].digest).unwrap()).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["schemaVersion"], 2);
    // An explicit tag wins over RepoTags.
    let got3b = import(&store3, &fx.docker_archive, Some("localhost/other:2")).unwrap();
    assert_eq!(
        (got3b[0].name.as_str(), &got3b[0].digest),
        ("localhost/other:2", &got3[0].digest)
    );

    // Compressed archives are detected by content.
    let gz = t.path().join("image.docker.tar.gz");
    let mut enc =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&fs::read(&fx.docker_archive).unwrap())
        .unwrap();
    enc.finish().unwrap();
    let store4 = ImageStore::open(&t.path().join("s4")).unwrap();
    assert_eq!(
        import(&store4, &gz, None).unwrap()[0].digest,
        got3[0].digest
    );

    // Not an image at all.
    let junk = t.path().join("junk");
    fs::write(
        &junk,
        b"definitely not a tar archive, just some text.......",
    )
    .unwrap();
    assert!(matches!(
        import(&store4, &junk, None),
        Err(ImportError::NotAnImage { .. })
    ));
    assert!(matches!(
        import(&store4, t.path(), None),
        Err(ImportError::NotAnImage { .. })
    ));
}

/// Copy a layout directory.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn index_json(layout: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap()
}

#[test]
fn tampered_blobs_are_refused_and_nothing_is_tagged() {
    if !have_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fx = fixture(t.path());
    let bad = t.path().join("bad");
    copy_dir(&fx.layout, &bad);
    let manifest = index_json(&bad)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(bad.join("blobs/sha256").join(&manifest[7..])).unwrap())
            .unwrap();
    let config = m["config"]["digest"].as_str().unwrap();
    let config_file = bad.join("blobs/sha256").join(&config[7..]);
    let tampered = fs::read_to_string(&config_file)
        .unwrap()
        .replace("65532", "00000");
    fs::write(&config_file, tampered).unwrap();

    let store = ImageStore::open(&t.path().join("s")).unwrap();
    let err = import(&store, &bad, Some("localhost/bad")).unwrap_err();
    assert!(matches!(err, ImportError::BlobRefused { .. }), "{err}");
    assert!(
        err.to_string().contains(&config[7..]),
        "names the blob: {err}"
    );
    assert!(store.list().unwrap().is_empty(), "nothing tagged");
    assert!(!store.has_blob(&Digest::parse(config).unwrap()));

    // The same tampering inside an oci-archive.
    let archive = t.path().join("bad.tar");
    let mut b = tar::Builder::new(fs::File::create(&archive).unwrap());
    b.append_dir_all(".", &bad).unwrap();
    b.into_inner().unwrap().flush().unwrap();
    let err = import(&store, &archive, Some("localhost/bad")).unwrap_err();
    assert!(matches!(err, ImportError::BlobRefused { .. }), "{err}");
    assert!(store.list().unwrap().is_empty(), "nothing tagged");
}

#[test]
fn image_indexes_resolve_to_linux_amd64() {
    if !have_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let fx = fixture(t.path());
    let multi = t.path().join("multi");
    copy_dir(&fx.layout, &multi);
    let desc = index_json(&multi)["manifests"][0].clone();
    let platform = |arch: &str, digest: &str, size: &serde_json::Value| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch}
        })
    };
    // arm64's manifest is not in the layout: only the picked platform is needed.
    let absent = format!("sha256:{}", "0".repeat(64));
    let inner = serde_json::json!({"schemaVersion": 2, "manifests": [
        platform("arm64", &absent, &serde_json::json!(100)),
        platform("amd64", desc["digest"].as_str().unwrap(), &desc["size"]),
    ]});
    let inner_bytes = serde_json::to_vec(&inner).unwrap();
    let inner_digest = Digest::of(&inner_bytes);
    fs::write(
        multi.join("blobs/sha256").join(inner_digest.hex()),
        &inner_bytes,
    )
    .unwrap();
    // Nested: an index pointing at an index.
    let outer = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": inner_digest.as_str(), "size": inner_bytes.len()
    }]});
    let outer_bytes = serde_json::to_vec(&outer).unwrap();
    let outer_digest = Digest::of(&outer_bytes);
    fs::write(
        multi.join("blobs/sha256").join(outer_digest.hex()),
        &outer_bytes,
    )
    .unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": outer_digest.as_str(), "size": outer_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "localhost/multi:1"}
    }]});
    fs::write(multi.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();

    let store = ImageStore::open(&t.path().join("s")).unwrap();
    let got = import(&store, &multi, None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "localhost/multi:1");
    assert_eq!(got[0].digest.as_str(), desc["digest"].as_str().unwrap());
    assert!(
        store.has_blob(&inner_digest) && store.has_blob(&outer_digest),
        "index blobs kept"
    );
    check_image(
        &store,
        "localhost/multi:1",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
}
