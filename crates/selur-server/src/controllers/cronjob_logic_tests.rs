use super::*;
use crate::clock::{Clock, ManualClock};
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn spec(schedule: &str, policy: &str, extra: Value) -> CronSpec {
    let mut s = json!({"schedule": schedule, "concurrencyPolicy": policy});
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    CronSpec::of(&json!({ "spec": s })).unwrap()
}

#[test]
fn a_run_is_due_at_each_minute_and_the_controller_wakes_for_the_next() {
    let created = at("2024-05-01T10:00:20Z");
    let clock = ManualClock::new(created);
    let s = spec("*/1 * * * *", "Allow", json!({}));
    let d = decide(&s, created, None, 0, clock.now());
    assert_eq!(d.run, None, "nothing due before the first minute");
    assert_eq!(d.requeue, Some(StdDuration::from_millis(40_100)));
    clock.advance(Duration::seconds(40));
    let d = decide(&s, created, None, 0, clock.now());
    assert_eq!(d.run, Some(at("2024-05-01T10:01:00Z")));
    assert_eq!(
        job_name("every", at("2024-05-01T10:01:00Z")),
        "every-28575961"
    );
    // Recorded as lastScheduleTime: not due again until the next minute.
    let last = d.run;
    clock.advance(Duration::seconds(30));
    assert_eq!(decide(&s, created, last, 1, clock.now()).run, None);
    clock.advance(Duration::seconds(30));
    assert_eq!(
        decide(&s, created, last, 1, clock.now()).run,
        Some(at("2024-05-01T10:02:00Z")),
        "Allow runs alongside the active one"
    );
}

#[test]
fn after_downtime_only_the_most_recent_missed_run_starts() {
    let s = spec("0 * * * *", "Allow", json!({}));
    let last = at("2024-05-01T10:00:00Z");
    let now = at("2024-05-01T15:30:00Z");
    let d = decide(&s, last, Some(last), 0, now);
    assert_eq!(d.run, Some(at("2024-05-01T15:00:00Z")));
    assert_eq!(d.too_many_missed, None);
    assert_eq!(most_recent(&s, last, now).1, 5);
    // Over a hundred missed: still one run, and a warning.
    let every = spec("*/1 * * * *", "Allow", json!({}));
    let d = decide(&every, last, Some(last), 0, now);
    assert_eq!(d.run, Some(at("2024-05-01T15:30:00Z")));
    assert_eq!(d.too_many_missed, Some(330));
}

#[test]
fn starting_deadline_limits_how_late_a_run_may_start() {
    let s = spec(
        "0 2 * * *",
        "Allow",
        json!({"startingDeadlineSeconds": 300}),
    );
    let last = at("2024-05-01T02:00:00Z");
    // Down over 02:00 and back 10 minutes later: too late, no run.
    let d = decide(&s, last, Some(last), 0, at("2024-05-02T02:10:00Z"));
    assert_eq!(d.run, None);
    assert_eq!(d.too_many_missed, None, "the deadline bounds the search");
    // Back within 5 minutes: it runs.
    let d = decide(&s, last, Some(last), 0, at("2024-05-02T02:04:00Z"));
    assert_eq!(d.run, Some(at("2024-05-02T02:00:00Z")));
    // Without a deadline a day late still runs once.
    let s = spec("0 2 * * *", "Allow", json!({}));
    let d = decide(&s, last, Some(last), 0, at("2024-05-03T01:00:00Z"));
    assert_eq!(d.run, Some(at("2024-05-02T02:00:00Z")));
}

#[test]
fn forbid_skips_while_a_job_runs_and_replace_replaces_it() {
    let last = at("2024-05-01T10:00:00Z");
    let now = at("2024-05-01T10:01:00Z");
    let forbid = spec("*/1 * * * *", "Forbid", json!({}));
    let d = decide(&forbid, last, Some(last), 1, now);
    assert_eq!(d.run, None);
    assert_eq!(d.skipped, Some((now, Skip::AlreadyActive)));
    assert_eq!(decide(&forbid, last, Some(last), 0, now).run, Some(now));
    let replace = spec("*/1 * * * *", "Replace", json!({}));
    let d = decide(&replace, last, Some(last), 1, now);
    assert_eq!((d.run, d.replace_active), (Some(now), true));
    let allow = spec("*/1 * * * *", "Allow", json!({}));
    let d = decide(&allow, last, Some(last), 3, now);
    assert_eq!((d.run, d.replace_active), (Some(now), false));
}

#[test]
fn suspended_cronjobs_do_nothing_and_time_zones_move_the_schedule() {
    let s = spec("0 2 * * *", "Allow", json!({"suspend": true}));
    let d = decide(
        &s,
        at("2024-01-01T00:00:00Z"),
        None,
        0,
        at("2024-01-05T00:00:00Z"),
    );
    assert_eq!(d, Decision::default());
    let s = spec(
        "0 2 * * *",
        "Allow",
        json!({"timeZone": "America/New_York"}),
    );
    let d = decide(
        &s,
        at("2024-01-01T00:00:00Z"),
        None,
        0,
        at("2024-01-01T08:00:00Z"),
    );
    assert_eq!(d.run, Some(at("2024-01-01T07:00:00Z")));
}
