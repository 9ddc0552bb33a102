//! The container start path: the shim runs `runc run --detach` and is the
//! container's subreaper, so no `runc` process stays per
//! container; a `tty: true` container gets its terminal through runc's
//! console socket, and exec still works.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{node_with_busybox_image, wait_pod, write_file};

/// The command lines of this machine's processes that run `runc` on the
/// runtime root `root` (this test's own: the root lies in its data dir).
fn runc_processes(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|b| {
            b.split(|&c| c == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
        })
        .filter(|args| args.first().is_some_and(|a| a.ends_with("runc")) && args.contains(&root))
        .map(|args| args.join(" "))
        .collect()
}

/// `(ppid, comm)` of process `pid`.
fn parent_of(pid: u32) -> (u32, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap();
    (ppid, comm.trim().to_string())
}

#[test]
fn running_containers_keep_no_runc_process_and_a_tty_container_gets_its_terminal() {
    let s = node_with_busybox_image();
    let f = write_file(
        &s,
        "p.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: a\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"echo out-line; echo err-line >&2; exec sleep 3600\"]\n  - name: b\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sleep\", \"3600\"]\n  - name: t\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    tty: true\n    stdin: true\n    args: [\"sh\", \"-c\", \"tty; test -t 0 && echo stdin-is-a-terminal; exec sleep 3600\"]\n",
    );
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, "p", "running", |p| p["status"]["phase"] == "Running");
    let root = s.data_dir().join("agent/runc");
    let logs = |c: &str, want: &str| {
        let start = Instant::now();
        loop {
            let out = s.ok(&["logs", "p", "-c", c]);
            if out.contains(want) {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{c}: no {want:?} in {out:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    logs("a", "out-line");
    logs("a", "err-line");
    let tty = logs("t", "stdin-is-a-terminal");
    assert!(tty.contains("/dev/pts/"), "{tty:?}");

    // No runc process stays: each container's init is the child of its shim.
    assert!(
        runc_processes(&root).is_empty(),
        "{:?}",
        runc_processes(&root)
    );
    let pod = s.get_json(&["pod", "p"]);
    let statuses = pod["status"]["containerStatuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 3);
    let dir = s
        .data_dir()
        .join("agent/pods")
        .join(pod["metadata"]["uid"].as_str().unwrap());
    for c in ["a", "b", "t"] {
        let pid: u32 = std::fs::read_to_string(dir.join("c").join(c).join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let (_, parent) = parent_of(pid);
        assert!(parent.starts_with("selur"), "{c}: parent {parent}");
    }

    // exec (an attached, short-lived `runc exec`) still works.
    assert_eq!(
        s.ok(&["exec", "p", "-c", "b", "--", "busybox", "echo", "hi"])
            .trim(),
        "hi"
    );

    s.ok(&["delete", "pod", "p", "--now"]);
    let start = Instant::now();
    while s.selur(&["get", "pod", "p"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(60), "pod never gone");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(runc_processes(&root).is_empty());
}
