//! Pulls from a real registry: each test starts Debian's `docker-registry`
//! on a free 127.0.0.1 port in its own temp dir (TLS from a throwaway CA,
//! htpasswd auth, or plain HTTP), pushes a small umoci-built image with
//! skopeo, and pulls it with `selur_image::pull`. Registries are killed and
//! temp dirs removed by guards, also when a test fails.

#[path = "pull/support.rs"]
mod support;

use std::fs;
use std::sync::Mutex;

use selur_image::pull::{pull, resolve_remote, PullError, PullProgress, RemoteError};
use selur_image::registries::RegistrySettings;
use selur_image::ImageStore;
use support::{free_port, Options, Registry, TestImage, PASS, USER};

const REPO: &str = "hyperpolymath/lago-grey:minimal";

fn settings(yaml: &str) -> RegistrySettings {
    RegistrySettings::parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Settings for a TLS registry with the test CA and the given password.
fn tls_settings(reg: &Registry, password: &str) -> RegistrySettings {
    settings(&format!(
        "configs:\n  \"{}\":\n    tls: {{ca_file: {}}}\n    auth: {{username: {USER}, password: {password}}}\n",
        reg.host(),
        reg.ca.as_ref().expect("tls registry").display()
    ))
}

fn no_progress(_: PullProgress) {}

/// Compile-time check: a pull can run in a spawned task.
#[allow(dead_code)]
fn pull_future_is_send(store: &ImageStore, s: &RegistrySettings) {
    fn send<T: Send>(_: T) {}
    send(pull(store, s, "busybox", &no_progress));
    send(resolve_remote(s, "busybox"));
}

fn secure_registry() -> (Registry, TestImage) {
    let reg = Registry::start(Options {
        tls: true,
        auth: true,
    });
    let img = TestImage::build();
    reg.push(&img, REPO);
    (reg, img)
}

#[tokio::test]
async fn pulls_over_tls_with_credentials_and_resumes() {
    let (reg, img) = secure_registry();
    let s = tls_settings(&reg, PASS);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let name = format!("{}/{REPO}", reg.host());

    let seen = Mutex::new(Vec::new());
    let progress = |p: PullProgress| seen.lock().unwrap().push(p);
    let r = pull(&store, &s, &name, &progress).await.unwrap();
    assert_eq!(r.name, name);
    assert_eq!((r.layers_fetched, r.layers_reused), (2, 0));
    for l in &img.layers {
        assert!(store.has_blob(l), "layer {l} stored");
        let seen = seen.lock().unwrap();
        let last = seen.iter().rfind(|p| p.layer == *l).expect("progress");
        assert_eq!(last.done, last.total);
    }
    let info = store.inspect(&name).unwrap();
    assert_eq!(info.digest, r.digest);
    assert_eq!(info.size, r.size);
    assert_eq!(info.user.as_deref(), Some("65534"));
    assert_eq!(info.labels["io.hyperpolymath.size-mb"], "2");
    assert_eq!(info.layers.len(), 2);

    // The catalog's view: manifest and config only.
    let (d, m, c) = resolve_remote(&s, &name).await.unwrap();
    assert_eq!(d, r.digest);
    assert_eq!(m.layers().len(), 2);
    assert_eq!(
        c.config().as_ref().unwrap().user().as_deref(),
        Some("65534")
    );

    // Everything present: nothing fetched.
    let again = pull(&store, &s, &name, &no_progress).await.unwrap();
    assert_eq!((again.layers_fetched, again.layers_reused), (0, 2));
    assert_eq!(again.digest, r.digest);

    // An interrupted pull (one finished layer, one partial temp file) resumes
    // by fetching only the missing layer.
    fs::remove_file(store.blob_path(&img.layers[1])).unwrap();
    fs::write(dir.path().join("tmp/partial-download"), b"half a layer").unwrap();
    let resumed = pull(&store, &s, &name, &no_progress).await.unwrap();
    assert_eq!((resumed.layers_fetched, resumed.layers_reused), (1, 1));
    assert!(store.has_blob(&img.layers[1]));

    // By digest: resolvable under name@digest.
    let by_digest = format!("{}/hyperpolymath/lago-grey@{}", reg.host(), r.digest);
    let p = pull(&store, &s, &by_digest, &no_progress).await.unwrap();
    assert_eq!(p.digest, r.digest);
    assert_eq!(store.resolve(&by_digest).unwrap(), r.digest);
    assert_eq!(store.inspect(&by_digest).unwrap().digest, r.digest);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_reported() {
    let (reg, img) = secure_registry();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let name = format!("{}/{REPO}", reg.host());

    let err = pull(&store, &tls_settings(&reg, "wrong"), &name, &no_progress)
        .await
        .unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(err, PullError::Remote(RemoteError::Unauthorized { .. })),
        "{msg}"
    );
    assert_eq!(
        msg,
        format!(
            "unauthorized: check the credentials for {} in the registry settings",
            reg.host()
        )
    );

    let anonymous = settings(&format!(
        "configs: {{\"{}\": {{tls: {{ca_file: {}}}}}}}",
        reg.host(),
        reg.ca.as_ref().unwrap().display()
    ));
    let msg = pull(&store, &anonymous, &name, &no_progress)
        .await
        .unwrap_err()
        .to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("unauthorized") && msg.contains("credentials"),
        "{msg}"
    );

    // Without the CA the certificate is not trusted.
    let no_ca = settings(&format!(
        "configs: {{\"{}\": {{auth: {{username: {USER}, password: {PASS}}}}}}}",
        reg.host()
    ));
    let msg = pull(&store, &no_ca, &name, &no_progress)
        .await
        .unwrap_err()
        .to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("cannot pull") && msg.contains("certificate"),
        "{msg}"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(img.layers.iter().all(|l| !store.has_blob(l)));
}

#[tokio::test]
async fn ghcr_mirror_with_rewrite_and_fallback() {
    let reg = Registry::start(Options {
        tls: true,
        auth: true,
    });
    let img = TestImage::build();
    reg.push(&img, "mirror/lago-grey:minimal");
    // The first endpoint refuses connections; the registry itself is never
    // contacted (upstream: false keeps the test off the internet).
    let s = settings(&format!(
        r#"
mirrors:
  ghcr.io:
    endpoint: ["https://127.0.0.1:{closed}", "https://{host}"]
    rewrite:
      "^hyperpolymath/(.*)": "mirror/$1"
    upstream: false
configs:
  "{host}":
    tls: {{ca_file: {ca}}}
    auth: {{username: {USER}, password: {PASS}}}
"#,
        closed = free_port(),
        host = reg.host(),
        ca = reg.ca.as_ref().unwrap().display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let name = "ghcr.io/hyperpolymath/lago-grey:minimal";
    let r = pull(&store, &s, name, &no_progress).await.unwrap();
    assert_eq!(r.name, name);
    assert_eq!(r.layers_fetched, 2);
    let info = store.inspect(name).unwrap();
    assert_eq!(info.names, vec![name.to_string()]);
    let (d, _, _) = resolve_remote(&s, name).await.unwrap();
    assert_eq!(d, r.digest);

    // Nothing mirrors a missing repository: every endpoint is named.
    let msg = pull(&store, &s, "ghcr.io/hyperpolymath/absent:1", &no_progress)
        .await
        .unwrap_err()
        .to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("cannot pull ghcr.io/hyperpolymath/absent:1"),
        "{msg}"
    );
    assert!(
        msg.contains(&reg.host()) && msg.contains("refused"),
        "{msg}"
    );
}

#[tokio::test]
async fn concurrent_pulls_fetch_each_layer_once() {
    let (reg, img) = secure_registry();
    let s = tls_settings(&reg, PASS);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let name = format!("{}/{REPO}", reg.host());
    let (a, b) = tokio::join!(
        pull(&store, &s, &name, &no_progress),
        pull(&store, &s, &name, &no_progress)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.layers_fetched + b.layers_fetched, img.layers.len());
    assert_eq!(a.layers_reused + b.layers_reused, img.layers.len());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn plain_http_registry_marked_insecure() {
    let reg = Registry::start(Options {
        tls: false,
        auth: false,
    });
    let img = TestImage::build();
    reg.push(&img, "lago/plain:1");
    let s = settings(&format!(
        "configs: {{\"{}\": {{insecure: true}}}}",
        reg.host()
    ));
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let name = format!("{}/lago/plain:1", reg.host());
    let r = pull(&store, &s, &name, &no_progress).await.unwrap();
    assert_eq!(r.layers_fetched, 2);
    assert!(store.inspect(&name).is_ok());
}

#[tokio::test]
async fn tampered_layer_is_refused_and_not_stored() {
    let reg = Registry::start(Options {
        tls: false,
        auth: false,
    });
    let img = TestImage::build();
    reg.push(&img, "lago/tampered:1");
    let bad = &img.layers[0];
    reg.tamper_blob(bad);
    let s = settings(&format!(
        "configs: {{\"{}\": {{insecure: true}}}}",
        reg.host()
    ));
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let name = format!("{}/lago/tampered:1", reg.host());
    let err = pull(&store, &s, &name, &no_progress).await.unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(err, PullError::Remote(RemoteError::DigestMismatch { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("digest mismatch") && msg.contains(bad.as_str()),
        "{msg}"
    );
    assert!(!store.has_blob(bad), "the tampered layer is not stored");
    assert!(store.resolve(&name).is_err(), "the image is not tagged");
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn image_index_resolves_to_linux_amd64() {
    let reg = Registry::start(Options {
        tls: false,
        auth: false,
    });
    let (amd64, arm64) = (TestImage::build(), TestImage::build());
    reg.push(&amd64, "lago/multi:amd64");
    reg.push(&arm64, "lago/multi:arm64");
    let entry = |img: &TestImage, arch: &str| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            img.manifest.0, img.manifest.1
        )
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
        entry(&arm64, "arm64"),
        entry(&amd64, "amd64")
    );
    let index_type = "application/vnd.oci.image.index.v1+json";
    reg.put_manifest("lago/multi", "1", index_type, index.as_bytes());
    let s = settings(&format!(
        "configs: {{\"{}\": {{insecure: true}}}}",
        reg.host()
    ));
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let name = format!("{}/lago/multi:1", reg.host());
    let r = pull(&store, &s, &name, &no_progress).await.unwrap();
    assert_eq!(r.digest, amd64.manifest.0);
    assert_eq!(r.layers_fetched, amd64.layers.len());
    assert_ne!(amd64.manifest.0, arm64.manifest.0);
    // The two builds may share a layer (same content, same mtimes).
    let mut arm64_only = arm64.layers.iter().filter(|l| !amd64.layers.contains(l));
    assert!(arm64_only.all(|l| !store.has_blob(l)));
    assert!(
        store.has_blob(&selur_image::Digest::of(index.as_bytes())),
        "index kept"
    );
    assert_eq!(store.inspect(&name).unwrap().digest, amd64.manifest.0);
    let (d, _, _) = resolve_remote(&s, &name).await.unwrap();
    assert_eq!(d, amd64.manifest.0);
}
