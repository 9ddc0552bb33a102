//! Jobs and CronJobs end to end: real pods run by the in-process agent.
//! (CronJob minute boundaries, Forbid, Job deadlines and TTLs run on a
//! manual clock in `crates/selur-server/tests/clock.rs`.)

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{examples, standin_images, write_file, Server};
use serde_json::Value;

/// An all-in-one server with `localhost/rt:1` (static busybox as entrypoint)
/// and a short Job back-off.
fn busybox_node(name: &str) -> Server {
    let s = Server::start(&["--node-name", name, "--job-backoff", "200ms"]);
    common::build_busybox_image(&s, None);
    s
}

fn job_yaml(name: &str, spec: &str, restart: &str, args: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: {restart}\n      containers:\n      - name: c\n        image: localhost/rt:1\n        args: {args}\n"
    )
}

fn condition<'a>(o: &'a Value, type_: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

/// Poll `get KIND NAME` until `f` holds (up to `secs`), calling `each` on every look.
fn wait_for(
    s: &Server,
    what: &[&str],
    secs: u64,
    mut each: impl FnMut(&Value),
    f: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v = s.get_json(what);
        each(&v);
        if f(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what:?}: not there in {secs} s: {}",
            v["status"]
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn job_pods(s: &Server, job: &str) -> Vec<Value> {
    let v = s.get_json(&["pods", "-l", &format!("job-name={job}")]);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn active(p: &Value) -> bool {
    !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        && p["metadata"].get("deletionTimestamp").is_none()
}

#[test]
fn seed_job_runs_ten_pods_in_parallel_to_completion() {
    let s = Server::start(&[
        "--node-name",
        "batch-seed",
        "--capacity",
        "cpu=8,memory=8Gi,pods=110",
    ]);
    standin_images(&s);
    let manifest = examples().join("seed/job-data-processing.yaml");
    s.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let mut most = 0;
    let job = wait_for(
        &s,
        &["job", "data-processing"],
        120,
        |j| most = most.max(j["status"]["active"].as_i64().unwrap_or(0)),
        |j| condition(j, "Complete").is_some(),
    );
    assert_eq!(job["status"]["succeeded"], 10, "{}", job["status"]);
    assert_eq!(job["status"]["active"], 0);
    assert!(most <= 10, "at most parallelism active: {most}");
    assert!(job["status"]["completionTime"].is_string());
    let pods = job_pods(&s, "data-processing");
    assert_eq!(pods.len(), 10);
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded"));
    let out = s.ok(&["get", "jobs"]);
    assert!(out.contains("Complete") && out.contains("10/1"), "{out}");
    let ev = s.ok(&["get", "events", "-o", "json"]);
    assert!(ev.contains("SuccessfulCreate") && ev.contains("Completed"));
}

#[test]
fn completions_five_parallelism_two_never_runs_more_than_two() {
    let s = busybox_node("batch-c5");
    let y = job_yaml(
        "five",
        "  completions: 5\n  parallelism: 2\n",
        "Never",
        "[sleep, \"1\"]",
    );
    s.ok(&["apply", "-f", &write_file(&s, "five.yaml", &y)]);
    let start = Instant::now();
    let mut most = 0;
    loop {
        let pods = job_pods(&s, "five");
        most = most.max(pods.iter().filter(|p| active(p)).count());
        let j = s.get_json(&["job", "five"]);
        if condition(&j, "Complete").is_some() {
            assert_eq!(j["status"]["succeeded"], 5);
            assert_eq!(pods.len(), 5, "exactly five pods");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{}", j["status"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(most <= 2, "at most 2 active at once, saw {most}");
    assert_eq!(most, 2, "ran two at a time");
}

#[test]
fn failing_job_stops_at_the_backoff_limit() {
    let s = busybox_node("batch-fail");
    let y = job_yaml("fails", "  backoffLimit: 2\n", "Never", "[\"false\"]");
    s.ok(&["apply", "-f", &write_file(&s, "fails.yaml", &y)]);
    let j = wait_for(
        &s,
        &["job", "fails"],
        60,
        |_| {},
        |j| condition(j, "Failed").is_some(),
    );
    let c = condition(&j, "Failed").unwrap();
    assert_eq!(c["reason"], "BackoffLimitExceeded");
    assert_eq!(j["status"]["failed"], 3, "{}", j["status"]);
    assert!(condition(&j, "Complete").is_none());
    // No more pods after the limit.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(job_pods(&s, "fails").len(), 3);
    let ev = s.ok(&["get", "events", "-o", "json"]);
    assert!(ev.contains("BackoffLimitExceeded"));
}

#[test]
fn indexed_job_pods_see_their_completion_index() {
    let s = busybox_node("batch-idx");
    let y = job_yaml(
        "idx",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        "Never",
        "[sh, -c, \"echo index=$JOB_COMPLETION_INDEX\"]",
    );
    s.ok(&["apply", "-f", &write_file(&s, "idx.yaml", &y)]);
    let j = wait_for(
        &s,
        &["job", "idx"],
        60,
        |_| {},
        |j| condition(j, "Complete").is_some(),
    );
    assert_eq!(j["status"]["completedIndexes"], "0-2");
    let mut seen = BTreeSet::new();
    for p in job_pods(&s, "idx") {
        let name = p["metadata"]["name"].as_str().unwrap();
        let ann = &p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"];
        let logs = s.ok(&["logs", name]);
        assert_eq!(logs.trim(), format!("index={}", ann.as_str().unwrap()));
        seen.insert(logs.trim().to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn seed_cronjob_shows_its_next_schedule() {
    let s = Server::start(&["--node-name", "batch-cj-seed"]);
    let manifest = examples().join("seed/cronjob-nightly-backup.yaml");
    s.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let now = chrono::Utc::now();
    let out = s.ok(&["get", "cronjobs"]);
    let header = out.lines().next().unwrap();
    assert!(header.contains("NEXT SCHEDULE"), "{out}");
    // The next 02:00 UTC after now (the seed sets no timeZone: UTC).
    let today = now.date_naive().and_hms_opt(2, 0, 0).unwrap().and_utc();
    let want = if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    };
    let want = want.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let row = out
        .lines()
        .find(|l| l.starts_with("nightly-backup"))
        .unwrap();
    assert!(row.contains(&want), "want {want}: {out}");
    // Nothing runs before then.
    let cj = s.get_json(&["cronjob", "nightly-backup"]);
    assert!(
        cj["status"].get("lastScheduleTime").is_none(),
        "{}",
        cj["status"]
    );
}

#[test]
fn job_pod_with_a_sidecar_init_container_completes() {
    let s = busybox_node("batch-side");
    let y = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: side\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      initContainers:\n      - name: sidecar\n        image: localhost/rt:1\n        restartPolicy: Always\n        args: [sleep, \"600\"]\n      containers:\n      - name: c\n        image: localhost/rt:1\n        args: [\"true\"]\n";
    s.ok(&["apply", "-f", &write_file(&s, "side.yaml", y)]);
    let j = wait_for(
        &s,
        &["job", "side"],
        60,
        |_| {},
        |j| condition(j, "Complete").is_some(),
    );
    assert_eq!(j["status"]["succeeded"], 1);
}
