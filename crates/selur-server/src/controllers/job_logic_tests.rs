use super::*;
use crate::clock::{Clock, ManualClock};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    parse_time(Some(&json!("2024-01-01T00:00:00Z"))).unwrap_or_default()
}

fn pod(name: &str, phase: &str, index: Option<i64>, finished: &str) -> Value {
    let mut p = json!({"metadata": {"name": name, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "status": {"phase": phase, "containerStatuses": [{"restartCount": 0,
            "state": if finished.is_empty() { json!({"running": {}}) }
                     else { json!({"terminated": {"finishedAt": finished}}) }}]}});
    if let Some(i) = index {
        p["metadata"]["annotations"] = json!({INDEX_ANNOTATION: i.to_string()});
    }
    p
}

fn spec(parallelism: i64, completions: Option<i64>) -> Spec {
    Spec {
        parallelism,
        completions,
        backoff_limit: 6,
        ..Spec::default()
    }
}

#[test]
fn work_queue_starts_parallelism_pods_and_completes_when_one_succeeded_and_none_runs() {
    let s = spec(10, None);
    let p = plan(&s, &Previous::default(), &[], t0(), Backoff::default());
    assert_eq!(p.create.len(), 10);
    assert_eq!(p.start_time, Some(t0()));
    let mut pods: Vec<Value> = (0..10)
        .map(|i| pod(&format!("p{i}"), "Running", None, ""))
        .collect();
    pods[0] = pod("p0", "Succeeded", None, "2024-01-01T00:00:05Z");
    let p = plan(&s, &Previous::default(), &pods, t0(), Backoff::default());
    assert!(p.create.is_empty(), "no new pods once one succeeded");
    assert_eq!((p.active, p.succeeded, p.finish.clone()), (9, 1, None));
    for x in pods.iter_mut() {
        x["status"]["phase"] = json!("Succeeded");
    }
    let p = plan(&s, &Previous::default(), &pods, t0(), Backoff::default());
    assert_eq!((p.succeeded, p.finish), (10, Some(Finish::Complete)));
}

#[test]
fn completions_cap_active_at_parallelism_and_remaining() {
    let s = spec(2, Some(5));
    let p = plan(&s, &Previous::default(), &[], t0(), Backoff::default());
    assert_eq!(p.create.len(), 2);
    let mut pods: Vec<Value> = (0..4)
        .map(|i| pod(&format!("s{i}"), "Succeeded", None, "2024-01-01T00:00:01Z"))
        .collect();
    pods.push(pod("r", "Running", None, ""));
    let p = plan(&s, &Previous::default(), &pods, t0(), Backoff::default());
    assert!(
        p.create.is_empty() && p.delete.is_empty(),
        "one left, one running"
    );
    pods.pop();
    let p = plan(&s, &Previous::default(), &pods, t0(), Backoff::default());
    assert_eq!(p.create.len(), 1);
    pods.push(pod("s4", "Succeeded", None, "2024-01-01T00:00:02Z"));
    assert_eq!(
        plan(&s, &Previous::default(), &pods, t0(), Backoff::default()).finish,
        Some(Finish::Complete)
    );
}

#[test]
fn failed_pods_are_recreated_after_a_doubling_back_off_then_the_limit_fails_the_job() {
    let clock = ManualClock::new(t0());
    let b = Backoff {
        base: StdDuration::from_secs(10),
        max: StdDuration::from_secs(360),
    };
    let mut s = spec(1, Some(1));
    s.backoff_limit = 2;
    let mut pods = vec![pod("f1", "Failed", None, "2024-01-01T00:00:00Z")];
    let p = plan(&s, &Previous::default(), &pods, clock.now(), b);
    assert!(p.create.is_empty(), "back-off after the first failure");
    assert_eq!(p.requeue, Some(StdDuration::from_millis(10_050)));
    clock.advance(Duration::seconds(10));
    assert_eq!(
        plan(&s, &Previous::default(), &pods, clock.now(), b)
            .create
            .len(),
        1
    );
    pods.push(pod("f2", "Failed", None, "2024-01-01T00:00:10Z"));
    clock.advance(Duration::seconds(15));
    let p = plan(&s, &Previous::default(), &pods, clock.now(), b);
    assert!(p.create.is_empty(), "second failure: 20 s");
    clock.advance(Duration::seconds(5));
    assert_eq!(
        plan(&s, &Previous::default(), &pods, clock.now(), b)
            .create
            .len(),
        1
    );
    pods.push(pod("f3", "Failed", None, "2024-01-01T00:00:30Z"));
    let p = plan(&s, &Previous::default(), &pods, clock.now(), b);
    assert_eq!(
        p.finish,
        Some(Finish::Failed {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit"
        })
    );
    assert_eq!(b.delay(30), StdDuration::from_secs(360));
}

#[test]
fn on_failure_restarts_count_toward_the_backoff_limit() {
    let mut s = spec(1, Some(1));
    s.on_failure = true;
    s.backoff_limit = 1;
    let mut p0 = pod("a", "Running", None, "");
    p0["status"]["containerStatuses"][0]["restartCount"] = json!(2);
    let p = plan(&s, &Previous::default(), &[p0], t0(), Backoff::default());
    assert!(matches!(
        p.finish,
        Some(Finish::Failed {
            reason: "BackoffLimitExceeded",
            ..
        })
    ));
    assert_eq!(p.delete, vec!["a".to_string()]);
}

#[test]
fn active_deadline_fails_the_job_and_kills_active_pods() {
    let clock = ManualClock::new(t0());
    let mut s = spec(1, Some(1));
    s.active_deadline = Some(30);
    let prev = Previous {
        start_time: Some(t0()),
        ..Previous::default()
    };
    let pods = [pod("a", "Running", None, "")];
    let p = plan(&s, &prev, &pods, clock.now(), Backoff::default());
    assert_eq!(p.requeue, Some(StdDuration::from_millis(30_050)));
    clock.advance(Duration::seconds(30));
    let p = plan(&s, &prev, &pods, clock.now(), Backoff::default());
    assert!(matches!(
        p.finish,
        Some(Finish::Failed {
            reason: "DeadlineExceeded",
            ..
        })
    ));
    assert_eq!(p.delete, vec!["a".to_string()]);
}

#[test]
fn indexed_jobs_create_the_missing_indexes_lowest_first() {
    let mut s = spec(2, Some(4));
    s.indexed = true;
    let p = plan(&s, &Previous::default(), &[], t0(), Backoff::default());
    assert_eq!(p.create, vec![Some(0), Some(1)]);
    let pods = [
        pod("a", "Succeeded", Some(0), "2024-01-01T00:00:01Z"),
        pod("b", "Running", Some(2), ""),
    ];
    let p = plan(&s, &Previous::default(), &pods, t0(), Backoff::default());
    assert_eq!(p.create, vec![Some(1)]);
    assert_eq!(format_indexes(&p.completed_indexes), "0");
    let prev = Previous {
        completed_indexes: parse_indexes("1-3"),
        ..Previous::default()
    };
    let p = plan(&s, &prev, &pods[..1], t0(), Backoff::default());
    assert_eq!(p.finish, Some(Finish::Complete));
    assert_eq!(format_indexes(&p.completed_indexes), "0-3");
    assert_eq!(format_indexes(&parse_indexes("1,3-5,7")), "1,3-5,7");
}

#[test]
fn suspend_deletes_active_pods_and_ttl_deletes_the_finished_job() {
    let mut s = spec(2, Some(2));
    s.suspend = true;
    let pods = [pod("a", "Running", None, "")];
    let p = plan(&s, &Previous::default(), &pods, t0(), Backoff::default());
    assert_eq!(p.delete, vec!["a".to_string()]);
    assert!(p.create.is_empty() && p.start_time.is_none());
    s.suspend = false;
    s.ttl_after_finished = Some(60);
    let prev = Previous {
        finished_at: Some(t0()),
        ..Previous::default()
    };
    let p = plan(
        &s,
        &prev,
        &[],
        t0() + Duration::seconds(10),
        Backoff::default(),
    );
    assert_eq!(p.requeue, Some(StdDuration::from_millis(50_050)));
    assert!(!p.delete_job);
    assert!(
        plan(
            &s,
            &prev,
            &[],
            t0() + Duration::seconds(60),
            Backoff::default()
        )
        .delete_job
    );
}
