//! Layers crafted with the `tar` crate (raw header names, so nothing is
//! sanitised on the way): hostile ones must be refused with the entry named,
//! leaving nothing outside the store and nothing in `layers/` or `tmp/`;
//! benign ones must unpack faithfully.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use selur_image::unpack::{
    unpack_layer, Hostile, UnpackError, UnpackLimits, WhiteoutRecord, WHITEOUT_RECORD,
};
use selur_image::ImageStore;
use tar::{EntryType, Header};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A store deep inside a temp dir, with a sentinel directory next to it.
struct Sandbox {
    _t: tempfile::TempDir,
    top: PathBuf,
    store: ImageStore,
}

impl Sandbox {
    fn new() -> Self {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().to_path_buf();
        fs::create_dir_all(top.join("outside")).unwrap();
        fs::write(top.join("outside/file"), "host file").unwrap();
        let store = ImageStore::open(&top.join("a/b/store")).unwrap();
        Sandbox { _t: t, top, store }
    }

    /// Nothing appeared outside the store, nothing is left in layers/ or tmp/.
    fn assert_clean(&self) {
        let names = |p: &Path| {
            let mut v: Vec<String> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&self.top), ["a", "outside"]);
        assert_eq!(names(&self.top.join("outside")), ["file"]);
        assert_eq!(
            fs::read_to_string(self.top.join("outside/file")).unwrap(),
            "host file"
        );
        assert_eq!(names(&self.top.join("a")), ["b"]);
        assert_eq!(names(&self.top.join("a/b")), ["store"]);
        assert!(
            names(&self.store.root().join("layers")).is_empty(),
            "layers/ is empty"
        );
        assert!(
            names(&self.store.root().join("tmp")).is_empty(),
            "tmp/ is empty"
        );
    }

    fn unpack(&self, layer: &[u8], limits: &UnpackLimits) -> Result<PathBuf, UnpackError> {
        let d = self.store.put_blob_bytes(layer).unwrap();
        unpack_layer(&self.store, &d, TAR, limits)
    }
}

/// One entry with the name and link name written raw into the header.
fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: EntryType,
    link: &str,
    data: &[u8],
    mode: u32,
) {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    let old = h.as_old_mut();
    old.name[..path.len()].copy_from_slice(path.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    entry(b, path, EntryType::Regular, "", data, 0o644);
}

fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

/// The layer is refused naming `entry`, for the expected reason, leaving nothing behind.
fn refused(
    sb: &Sandbox,
    bytes: &[u8],
    limits: &UnpackLimits,
    want_entry: &str,
    want: impl Fn(&Hostile) -> bool,
) {
    match sb.unpack(bytes, limits) {
        Err(e @ UnpackError::Refused { .. }) => {
            let UnpackError::Refused { entry, kind, .. } = &e else {
                unreachable!()
            };
            assert_eq!(entry, want_entry, "{e}");
            assert!(want(kind), "unexpected reason: {e}");
            assert!(
                e.to_string().contains(&format!("{want_entry:?}")),
                "message names the entry: {e}"
            );
        }
        other => panic!("expected a refusal of {want_entry:?}, got {other:?}"),
    }
    sb.assert_clean();
}

#[test]
fn hostile_paths_are_refused() {
    let sb = Sandbox::new();
    let lim = UnpackLimits::default();
    let ok = |b: &mut tar::Builder<Vec<u8>>| file(b, "fine", b"fine");
    let l = layer(|b| {
        ok(b);
        file(b, "../evil", b"x");
    });
    refused(&sb, &l, &lim, "../evil", |k| *k == Hostile::ParentDir);
    let l = layer(|b| file(b, "a/../../../evil", b"x"));
    refused(&sb, &l, &lim, "a/../../../evil", |k| {
        *k == Hostile::ParentDir
    });
    let abs = format!("{}/outside/abs", sb.top.display());
    let l = layer(|b| {
        ok(b);
        file(b, &abs, b"x");
    });
    refused(&sb, &l, &lim, &abs, |k| *k == Hostile::Absolute);
}

#[test]
fn writes_through_escaping_symlinks_are_refused() {
    let sb = Sandbox::new();
    let lim = UnpackLimits::default();
    let escape = |k: &Hostile| matches!(k, Hostile::SymlinkEscape { .. });
    // An absolute symlink (think `a -> /etc`, here the sentinel dir), then a write through it.
    let outside = format!("{}/outside", sb.top.display());
    let l = layer(|b| {
        entry(b, "a", EntryType::Symlink, &outside, b"", 0o777);
        file(b, "a/passwd", b"root::0:0::/:/bin/sh");
    });
    refused(&sb, &l, &lim, "a/passwd", escape);
    // A relative one climbing out: store/layers/x -> ../../../.. is the sandbox top.
    let l = layer(|b| {
        entry(b, "up", EntryType::Symlink, "../../../..", b"", 0o777);
        file(b, "up/outside/file", b"pwned");
    });
    refused(&sb, &l, &lim, "up/outside/file", escape);
    // Chained: a link to a link that escapes, and a directory entry through it.
    let l = layer(|b| {
        entry(b, "d/in", EntryType::Symlink, "../out", b"", 0o777);
        entry(b, "out", EntryType::Symlink, "../x", b"", 0o777);
        entry(b, "d/in/sub/", EntryType::Directory, "", b"", 0o755);
    });
    refused(&sb, &l, &lim, "d/in/sub/", escape);
}

#[test]
fn bad_links_devices_and_fifos_are_refused() {
    let sb = Sandbox::new();
    let lim = UnpackLimits::default();
    let outside_file = format!("{}/outside/file", sb.top.display());
    let l = layer(|b| entry(b, "h", EntryType::Link, &outside_file, b"", 0o644));
    refused(&sb, &l, &lim, "h", |k| {
        matches!(k, Hostile::HardlinkOutside { .. })
    });
    let l = layer(|b| {
        entry(
            b,
            "h",
            EntryType::Link,
            "../../../../outside/file",
            b"",
            0o644,
        )
    });
    refused(&sb, &l, &lim, "h", |k| {
        matches!(k, Hostile::HardlinkOutside { .. })
    });
    let l = layer(|b| {
        entry(b, "esc", EntryType::Symlink, "/", b"", 0o777);
        entry(b, "h", EntryType::Link, "esc/etc/passwd", b"", 0o644);
    });
    refused(&sb, &l, &lim, "h", |k| {
        matches!(k, Hostile::HardlinkOutside { .. })
    });
    let l = layer(|b| {
        entry(b, "h", EntryType::Link, "later", b"", 0o644);
        file(b, "later", b"x");
    });
    refused(&sb, &l, &lim, "h", |k| {
        matches!(k, Hostile::HardlinkMissing { .. })
    });
    let dev = |kind: EntryType, major: u32, minor: u32| {
        layer(|b| {
            let mut h = Header::new_gnu();
            h.set_path("dev/thing").unwrap();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(0o666);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
        })
    };
    refused(&sb, &dev(EntryType::Char, 1, 3), &lim, "dev/thing", |k| {
        *k == Hostile::Device
    });
    refused(&sb, &dev(EntryType::Block, 8, 0), &lim, "dev/thing", |k| {
        *k == Hostile::Device
    });
    refused(&sb, &dev(EntryType::Fifo, 0, 0), &lim, "dev/thing", |k| {
        *k == Hostile::Fifo
    });
    let l = layer(|b| file(b, WHITEOUT_RECORD, b"{}"));
    refused(&sb, &l, &lim, WHITEOUT_RECORD, |k| *k == Hostile::Reserved);
}

#[test]
fn tar_bombs_are_refused_mid_stream() {
    let sb = Sandbox::new();
    let chunk = vec![7u8; 16 << 10];
    let l = layer(|b| {
        for i in 0..10 {
            file(b, &format!("f{i}"), &chunk);
        }
    });
    let small = UnpackLimits {
        max_bytes: 64 << 10,
        max_entries: 1000,
    };
    refused(&sb, &l, &small, "f3", |k| {
        *k == Hostile::TooLarge { max: 64 << 10 }
    });
    let few = UnpackLimits {
        max_bytes: 1 << 30,
        max_entries: 5,
    };
    refused(&sb, &l, &few, "f5", |k| {
        *k == Hostile::TooManyEntries { max: 5 }
    });
    // Metadata bombs (a huge GNU long name) hit the stream limit.
    let l = layer(|b| {
        file(b, "first", b"1");
        let mut h = Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let long = vec!["d".repeat(200); 40].join("/");
        b.append_data(&mut h, &long, &b"x"[..]).unwrap();
    });
    let tiny = UnpackLimits {
        max_bytes: 4096,
        max_entries: 1000,
    };
    refused(&sb, &l, &tiny, "(entry after \"first\")", |k| {
        *k == Hostile::TooLarge { max: 4096 }
    });
    // A gzip bomb: 8 MiB of zeros in a few KiB.
    let l = layer(|b| file(b, "zeros", &vec![0u8; 8 << 20]));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&l).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1 << 20);
    let d = sb.store.put_blob_bytes(&gz).unwrap();
    let lim = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 1000,
    };
    let err = unpack_layer(
        &sb.store,
        &d,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &lim,
    )
    .unwrap_err();
    assert!(
        matches!(&err, UnpackError::Refused { entry, kind: Hostile::TooLarge { .. }, .. } if entry == "zeros"),
        "{err}"
    );
    sb.assert_clean();
}

#[test]
fn corrupt_blob_on_disk_is_refused() {
    let sb = Sandbox::new();
    let l = layer(|b| file(b, "x", b"x"));
    let d = sb.store.put_blob_bytes(&l).unwrap();
    let mut evil = l.clone();
    evil[512] = b'y';
    fs::write(sb.store.blob_path(&d), evil).unwrap();
    let err = unpack_layer(&sb.store, &d, TAR, &UnpackLimits::default()).unwrap_err();
    assert!(matches!(err, UnpackError::DigestMismatch { .. }), "{err}");
    sb.assert_clean();
    let err = unpack_layer(
        &sb.store,
        &d,
        "application/vnd.oci.image.layer.v1.tar+encrypted",
        &UnpackLimits::default(),
    );
    assert!(matches!(err, Err(UnpackError::UnsupportedMediaType { .. })));
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn benign_layers_unpack_faithfully() {
    let sb = Sandbox::new();
    let l = layer(|b| {
        entry(b, "./", EntryType::Directory, "", b"", 0o755);
        entry(b, "usr/lib/", EntryType::Directory, "", b"", 0o755);
        entry(b, "lib", EntryType::Symlink, "usr/lib", b"", 0o777);
        // Written through an in-layer relative symlink: lands in usr/lib.
        file(b, "lib/libc.so", b"elf");
        entry(b, "bin/sh", EntryType::Symlink, "/bin/busybox", b"", 0o777);
        entry(b, "bin/su", EntryType::Regular, "", b"su", 0o4755);
        entry(b, "bin/su2", EntryType::Link, "bin/su", b"", 0o4755);
        entry(b, "secret/", EntryType::Directory, "", b"", 0o700);
        file(b, "secret/key", b"k");
        entry(b, "ro/", EntryType::Directory, "", b"", 0o555);
        file(b, "ro/file", b"r");
        file(b, "gone/.wh.old", b"");
        file(b, "opaque/.wh..wh..opq", b"");
        file(b, "replaced", b"first");
        file(b, "replaced", b"second");
    });
    let mut owned = l.clone();
    // One file owned by 1234:5678.
    let extra = layer(|b| {
        let mut h = Header::new_gnu();
        h.set_path("owned").unwrap();
        h.set_size(1);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_cksum();
        b.append(&h, &b"o"[..]).unwrap();
    });
    owned.truncate(owned.len() - 1024); // drop the end-of-archive blocks
    owned.extend_from_slice(&extra);
    let dir = sb.unpack(&owned, &UnpackLimits::default()).unwrap();
    assert_eq!(fs::read(dir.join("usr/lib/libc.so")).unwrap(), b"elf");
    assert!(fs::symlink_metadata(dir.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_link(dir.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let mode = |p: &str| {
        fs::symlink_metadata(dir.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin"), 0o755, "implicit directory");
    assert_eq!(mode("bin/su"), 0o4755, "setuid kept");
    assert_eq!(mode("secret"), 0o700);
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(
        fs::metadata(dir.join("bin/su")).unwrap().ino(),
        fs::metadata(dir.join("bin/su2")).unwrap().ino()
    );
    assert_eq!(fs::read(dir.join("replaced")).unwrap(), b"second");
    let owned_meta = fs::metadata(dir.join("owned")).unwrap();
    if is_root() {
        assert_eq!((owned_meta.uid(), owned_meta.gid()), (1234, 5678));
    }
    assert_eq!(owned_meta.mtime(), 0);
    assert_eq!(
        fs::metadata(dir.join("secret/key")).unwrap().mtime(),
        1_700_000_000
    );
    // Whiteouts: overlayfs-native when possible, else listed for the runtime.
    let record: WhiteoutRecord = fs::read(dir.join(WHITEOUT_RECORD))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_default();
    let old = fs::symlink_metadata(dir.join("gone/old"));
    if is_root() && Path::new("/usr/bin/mknod").exists() {
        assert!(old.is_ok(), "as root with mknod, whiteouts are devices");
    }
    match old {
        Ok(m) => assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "0/0 whiteout device"
        ),
        Err(_) => assert_eq!(record.whiteouts, ["gone/old"]),
    }
    assert!(!dir.join("gone/.wh.old").exists());
    assert!(dir.join("opaque").is_dir() && !dir.join("opaque/.wh..wh..opq").exists());
    assert!(record.opaque.is_empty() || record.opaque == ["opaque"]);
    assert_eq!(
        fs::read_dir(sb.store.root().join("tmp")).unwrap().count(),
        0
    );
}
