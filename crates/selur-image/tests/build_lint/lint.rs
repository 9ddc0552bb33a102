//! The lint on built images: static vs dynamic binaries, root user,
//! labels, size budget, whiteouts in upper layers.

use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};
use selur_image::lint::{lint, Severity};

use super::{env, WEB};

#[test]
fn lint_static_image_is_clean() {
    let e = env();
    let b = e.build(WEB, &["web"]).unwrap();
    let r = lint(&e.store, "web", None).unwrap();
    assert_eq!(r.digest, b.digest);
    assert!(!r.has_errors(), "{:#?}", r.findings);
    assert_eq!(r.with_code("dynamic-binary").count(), 0);
    assert_eq!(r.with_code("root-user").count(), 0);
    // Two of the six Lago Grey labels are there.
    let missing: Vec<&str> = r
        .with_code("missing-label")
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(missing.len(), 4, "{missing:?}");
    assert!(r
        .with_code("missing-label")
        .all(|f| f.severity == Severity::Warning));
    assert!(missing
        .iter()
        .any(|m| m.contains("io.hyperpolymath.size-mb")));
}

#[test]
fn lint_finds_dynamic_binaries_and_root() {
    let e = env();
    e.build(
        "FROM scratch\nCOPY ls /usr/bin/ls\nENTRYPOINT [\"/usr/bin/ls\"]\n",
        &["dyn"],
    )
    .unwrap();
    let r = lint(&e.store, "dyn", None).unwrap();
    assert!(r.has_errors());
    let d: Vec<_> = r.with_code("dynamic-binary").collect();
    assert_eq!(d.len(), 1, "{:#?}", r.findings);
    assert_eq!(d[0].severity, Severity::Error);
    assert_eq!(d[0].path.as_deref(), Some("/usr/bin/ls"));
    assert!(
        d[0].message.contains("/usr/bin/ls") && d[0].message.contains("ld-linux"),
        "{}",
        d[0].message
    );
    assert!(d[0].message.contains("crt-static") && d[0].message.contains("CGO_ENABLED=0"));
    let root: Vec<_> = r.with_code("root-user").collect();
    assert_eq!(root.len(), 1);
    assert!(root[0].message.contains("USER 65532"));

    e.build(
        "FROM scratch\nCOPY busybox /app\nUSER root\nENTRYPOINT [\"/app\"]\n",
        &["r"],
    )
    .unwrap();
    assert_eq!(
        lint(&e.store, "r", None)
            .unwrap()
            .with_code("root-user")
            .count(),
        1
    );
    e.build(
        "FROM scratch\nCOPY busybox /app\nUSER 0:0\nENTRYPOINT [\"/nope\"]\n",
        &["r2"],
    )
    .unwrap();
    let r = lint(&e.store, "r2", None).unwrap();
    assert_eq!(r.with_code("root-user").count(), 1);
    assert_eq!(r.with_code("entrypoint-missing").count(), 1);
}

#[test]
fn lint_size_budget_and_label() {
    let e = env();
    let cf = WEB.replace("LABEL ", "LABEL io.hyperpolymath.size-mb=\"14.6\" ");
    e.build(&cf, &["web"]).unwrap();
    let size = e.store.inspect("web").unwrap().size;
    let r = lint(&e.store, "web", Some(size - 1)).unwrap();
    assert!(r.has_errors());
    assert_eq!(r.with_code("size-budget").count(), 1);
    assert!(!lint(&e.store, "web", Some(size)).unwrap().has_errors());
    // busybox compresses to about 1 MB, far from the claimed 14.6 MB.
    assert_eq!(r.with_code("size-label-mismatch").count(), 1);
}

#[test]
fn lint_honours_whiteouts() {
    let e = env();
    let b = e
        .build(
            "FROM scratch\nCOPY ls /usr/bin/ls\nCOPY busybox /usr/bin/app\nUSER 65532\n",
            &[],
        )
        .unwrap();
    assert_eq!(
        lint(&e.store, b.digest.as_str(), None)
            .unwrap()
            .with_code("dynamic-binary")
            .count(),
        1
    );
    // An upper layer deleting /usr/bin/ls, as `docker build` would write it.
    let mut ar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    ar.append_data(&mut h, "usr/bin/.wh.ls", std::io::empty())
        .unwrap();
    let raw = ar.into_inner().unwrap();
    let layer = e.store.put_blob_bytes(&raw).unwrap();
    let m = e.store.manifest(&b.digest).unwrap();
    let (_, mut config) = e.store.config(&m).unwrap();
    config.rootfs_mut().diff_ids_mut().push(layer.to_string());
    let config_bytes = config.to_string().unwrap().into_bytes();
    let config_digest = e.store.put_blob_bytes(&config_bytes).unwrap();
    let mut layers = m.layers().clone();
    layers.push(Descriptor::new(
        MediaType::ImageLayer,
        raw.len() as u64,
        layer.as_str().parse::<oci_spec::image::Digest>().unwrap(),
    ));
    let m2 = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            config_digest
                .as_str()
                .parse::<oci_spec::image::Digest>()
                .unwrap(),
        ))
        .layers(layers)
        .build()
        .unwrap();
    let d2 = e
        .store
        .put_blob_bytes(m2.to_string().unwrap().as_bytes())
        .unwrap();
    let r = lint(&e.store, d2.as_str(), None).unwrap();
    assert_eq!(
        r.with_code("dynamic-binary").count(),
        0,
        "{:#?}",
        r.findings
    );
    assert!(e.store.blob_path(&d2).is_file());
}
