//! What the CronJob controller should do, as a pure function of the
//! CronJob, its active Jobs and the time (Kubernetes' `syncCronJob`): which
//! scheduled time is due (the most recent one missed since the last schedule
//! or the CronJob's creation: after downtime at most one catch-up run), whether
//! it is too late for it (`startingDeadlineSeconds`), what the concurrency
//! policy does with running Jobs, and when to look again (the next schedule).

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use selur_api::cron::{time_zone, Schedule};

/// More missed start times than this are reported as a warning.
pub const TOO_MANY_MISSED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Allow,
    Forbid,
    Replace,
}

/// The parts of a CronJob's spec the decisions read.
#[derive(Debug, Clone)]
pub struct CronSpec {
    pub schedule: Schedule,
    pub tz: Tz,
    pub suspend: bool,
    pub policy: Policy,
    pub starting_deadline: Option<i64>,
}

impl CronSpec {
    pub fn of(cj: &Value) -> Result<CronSpec, String> {
        let s = &cj["spec"];
        Ok(CronSpec {
            schedule: Schedule::parse(s["schedule"].as_str().unwrap_or(""))?,
            tz: time_zone(s["timeZone"].as_str())?,
            suspend: s["suspend"] == true,
            policy: match s["concurrencyPolicy"].as_str() {
                Some("Forbid") => Policy::Forbid,
                Some("Replace") => Policy::Replace,
                _ => Policy::Allow,
            },
            starting_deadline: s["startingDeadlineSeconds"].as_i64(),
        })
    }
}

/// Why a due run did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Past `startingDeadlineSeconds` (event MissSchedule).
    TooLate,
    /// Forbid and a Job still running (event JobAlreadyActive).
    AlreadyActive,
}

/// The decisions of one reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Create the Job for this scheduled time.
    pub run: Option<DateTime<Utc>>,
    /// Replace: delete the running Jobs first.
    pub replace_active: bool,
    /// The due run that did not start, and why.
    pub skipped: Option<(DateTime<Utc>, Skip)>,
    /// How many start times were missed, when more than [`TOO_MANY_MISSED`].
    pub too_many_missed: Option<usize>,
    /// Look again after this long (the next schedule).
    pub requeue: Option<StdDuration>,
}

/// The most recent start time in (`earliest`, `now`] and how many there were.
pub fn most_recent(
    spec: &CronSpec,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, usize) {
    let mut last = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(next) = spec.schedule.next_after(&spec.tz, t).filter(|n| *n <= now) {
        last = Some(next);
        count += 1;
        t = next;
    }
    (last, count)
}

/// The Job name for a run scheduled at `t`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, t: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", t.timestamp().div_euclid(60))
}

/// Decide for a CronJob with `spec`, created at `created`, last scheduled at
/// `last_schedule`, with `active` Jobs running, at `now`.
pub fn decide(
    spec: &CronSpec,
    created: DateTime<Utc>,
    last_schedule: Option<DateTime<Utc>>,
    active: usize,
    now: DateTime<Utc>,
) -> Decision {
    let mut d = Decision::default();
    if spec.suspend {
        return d;
    }
    d.requeue = spec
        .schedule
        .next_after(&spec.tz, now)
        // Wake just after the minute starts.
        .map(|n| (n - now).to_std().unwrap_or_default() + StdDuration::from_millis(100));
    let mut earliest = last_schedule.unwrap_or(created);
    if let Some(sd) = spec.starting_deadline {
        earliest = earliest.max(now - Duration::seconds(sd));
    }
    let (due, missed) = most_recent(spec, earliest, now);
    if missed > TOO_MANY_MISSED {
        d.too_many_missed = Some(missed);
    }
    let Some(due) = due else { return d };
    if spec
        .starting_deadline
        .is_some_and(|sd| due + Duration::seconds(sd) < now)
    {
        d.skipped = Some((due, Skip::TooLate));
        return d;
    }
    if active > 0 {
        match spec.policy {
            Policy::Forbid => {
                d.skipped = Some((due, Skip::AlreadyActive));
                return d;
            }
            Policy::Replace => d.replace_active = true,
            Policy::Allow => {}
        }
    }
    d.run = Some(due);
    d
}

#[cfg(test)]
#[path = "cronjob_logic_tests.rs"]
mod tests;
