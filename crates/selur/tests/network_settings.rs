//! `selur server`'s cluster network settings: flags and `--config FILE` in
//! both forms the seed shows (Selur's `networking:` and kubeadm's
//! ClusterConfiguration). Unusable settings stop the server before it
//! touches its data dir, with a message naming the setting.

mod common;

use common::stderr;

fn server(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    common::selur_cmd()
        .arg("server")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--disable-agent"])
        .args(args)
        .output()
        .expect("selur server")
}

#[test]
fn unusable_network_settings_are_refused_at_start_naming_the_setting() {
    let t = tempfile::tempdir().unwrap();
    let kubeadm = t.path().join("kubeadm.yaml");
    std::fs::write(
        &kubeadm,
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  serviceSubnet: \"fd01::/112\"\n  podSubnet: \"10.244.0.0/16\"\n",
    )
    .unwrap();
    let k = kubeadm.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--cluster-cidr", "10.42.0.0/16"],
            "--cluster-cidr: 10.42.0.0/16 is an IPv4 range".into(),
        ),
        (
            vec!["--service-cidr", "fd00:0:0:7::/112"],
            "--service-cidr: fd00:0:0:7::/112 overlaps the pod range fd00::/48".into(),
        ),
        (
            vec!["--cluster-cidr", "fd00::/64"],
            "--cluster-cidr: fd00::/64 is too small to hand out /64 node ranges".into(),
        ),
        (
            vec!["--config", k],
            format!("networking.podSubnet in {k}: 10.244.0.0/16 is an IPv4 range"),
        ),
    ];
    for (args, want) in cases {
        let out = server(t.path(), &args);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr(&out).contains(&want), "{args:?}: {}", stderr(&out));
        assert!(
            !t.path().join("data").exists(),
            "{args:?}: the data dir was created"
        );
    }
}

#[test]
fn the_seeds_config_forms_are_accepted_and_flags_win() {
    let t = tempfile::tempdir().unwrap();
    let selur = t.path().join("selur.yaml");
    std::fs::write(
        &selur,
        "networking:\n  ipFamily: IPv6\n  podCIDR: \"fd00::/48\"\n  serviceCIDR: \"fd01::/112\"\n",
    )
    .unwrap();
    // A flag that makes the file's ranges overlap shows the flag won.
    let out = server(
        t.path(),
        &[
            "--config",
            selur.to_str().unwrap(),
            "--service-cidr",
            "fd00::/112",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "--service-cidr: fd00::/112 overlaps the pod range fd00::/48 (networking.podCIDR in"
        ),
        "{}",
        stderr(&out)
    );
    // The seed's Selur form, as written, starts a server.
    let mut child = common::selur_cmd()
        .arg("server")
        .arg("--data-dir")
        .arg(t.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--disable-agent", "--config"])
        .arg(&selur)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let kubeconfig = t.path().join("data/kubeconfig");
    let start = std::time::Instant::now();
    while !kubeconfig.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("server exited: {st}");
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("cluster network"), "{log}");
    assert!(log.contains("fd01::/112"), "{log}");
}

/// Each node gets its own /64 of the cluster range as spec.podCIDR(s); a
/// deleted node's range goes to the next node that joins.
#[test]
fn every_node_gets_its_own_pod_range_and_a_deleted_nodes_range_is_reused() {
    use std::time::{Duration, Instant};
    let s = common::Server::start(&["--node-name", "ipam-main"]);
    let a = common::ExtraAgent::start(&s, "ipam-a", &[]);
    let ranges = |want: usize| -> std::collections::BTreeMap<String, String> {
        let start = Instant::now();
        loop {
            let v = s.get_json(&["nodes"]);
            let m: std::collections::BTreeMap<String, String> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| {
                    let cidr = n["spec"]["podCIDR"].as_str()?;
                    assert_eq!(n["spec"]["podCIDRs"], serde_json::json!([cidr]), "{n}");
                    Some((
                        n["metadata"]["name"].as_str()?.to_string(),
                        cidr.to_string(),
                    ))
                })
                .collect();
            if m.len() == want {
                return m;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "ranges: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let m = ranges(2);
    let mut got: Vec<&String> = m.values().collect();
    got.sort();
    assert_eq!(got, ["fd00:0:0:1::/64", "fd00::/64"], "{m:?}");
    let freed = m["ipam-a"].clone();
    drop(a);
    s.ok(&["delete", "node", "ipam-a"]);
    let _b = common::ExtraAgent::start(&s, "ipam-b", &[]);
    let m = ranges(2);
    assert_eq!(m.get("ipam-b"), Some(&freed), "{m:?}");
}
