//! `selur node reset`: after the server (and its in-process agent) is
//! SIGKILLed with pods running, the reset leaves no process, mount, cgroup,
//! namespace bind mount, runtime state or log link of that node, and a
//! second run is a no-op. It is refused while the node's agent runs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{node_with_busybox_image, write_file};

/// Pids of processes whose command line names `needle` (this test's own
/// data dir).
fn processes_naming(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmd).replace('\0', " ");
            text.contains(needle).then_some(text)
        })
        .collect()
}

fn mounts_under(dir: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(dir))
        .map(String::from)
        .collect()
}

fn pod_cgroups(uids: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for root in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for qos in ["", "burstable", "besteffort"] {
            for uid in uids {
                let p = root
                    .path()
                    .join("selur-main")
                    .join(qos)
                    .join(format!("pod{uid}"));
                if p.is_dir() {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

fn log_links(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir("/var/log/containers")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(data_dir)))
        .map(|e| e.path().display().to_string())
        .collect()
}

fn reset(dir: &Path) -> std::process::Output {
    common::selur_cmd()
        .args(["node", "reset", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn reset_after_a_sigkill_leaves_nothing_of_the_node_and_a_second_run_is_a_no_op() {
    let mut s = node_with_busybox_image();
    let mut yaml = String::new();
    for i in 0..10 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\nspec:\n  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"echo up; exec sleep 3600\"]\n"
        ));
    }
    let f = write_file(&s, "pods.yaml", &yaml);
    s.ok(&["apply", "-f", &f]);
    let start = Instant::now();
    loop {
        let pods = s.get_json(&["pods"]);
        let running = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        if running == 10 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never 10 running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let data = std::fs::canonicalize(s.data_dir()).unwrap();
    let dir = data.display().to_string();
    let uids: Vec<String> = std::fs::read_dir(data.join("agent/pods"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(uids.len(), 10);

    // Refused while the node's agent (in the server) runs.
    let out = reset(&data);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!processes_naming(&dir).is_empty());

    s.kill();
    // Everything is still there after the SIGKILL.
    assert!(!processes_naming(&format!("{dir}/agent/runc")).is_empty());
    assert!(!mounts_under(&dir).is_empty());
    assert!(!pod_cgroups(&uids).is_empty());
    assert!(!log_links(&data).is_empty());

    let out = reset(&data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("node main"), "{said}");
    // Containers (and their shims) are gone: no process names the data dir.
    assert_eq!(processes_naming(&dir), Vec::<String>::new());
    assert_eq!(
        mounts_under(&dir),
        Vec::<String>::new(),
        "mounts (namespace files, root file systems)"
    );
    assert_eq!(pod_cgroups(&uids), Vec::<String>::new(), "cgroups");
    assert_eq!(log_links(&data), Vec::<String>::new(), "log links");
    assert!(!data.join("agent/runc").exists(), "runtime state");
    assert!(!data.join("agent/pods").exists(), "pod dirs");
    assert!(data.join("agent/images").exists(), "the images stay");

    let again = reset(&data);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to reset"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}
