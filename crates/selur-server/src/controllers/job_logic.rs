//! What the Job controller should do, as a pure function of the Job, its
//! pods and the time: which pods to create (with which completion index),
//! which to delete, whether the Job is finished and why, when to look again.
//! `job.rs` reads the store, calls [`plan`] and carries the plan out.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::podstate::{self, parse_time};

/// Annotation (and label) holding an Indexed Job pod's completion index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// Back-off between re-creations of failed pods: `base` doubling per failed
/// pod, capped at `max` (Kubernetes: 10 s doubling to 6 min).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: StdDuration,
    pub max: StdDuration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: StdDuration::from_secs(10),
            max: StdDuration::from_secs(360),
        }
    }
}

impl Backoff {
    /// The delay after `failures` failed pods (0 when none).
    pub fn delay(&self, failures: i64) -> StdDuration {
        if failures <= 0 {
            return StdDuration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(20) as u32;
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// The parts of a Job's spec the decisions read.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub parallelism: i64,
    pub completions: Option<i64>,
    pub indexed: bool,
    pub backoff_limit: i64,
    pub active_deadline: Option<i64>,
    pub suspend: bool,
    pub on_failure: bool,
    pub ttl_after_finished: Option<i64>,
}

impl Spec {
    pub fn of(job: &Value) -> Spec {
        let s = &job["spec"];
        let i = |k: &str| s.get(k).and_then(Value::as_i64);
        Spec {
            parallelism: i("parallelism").unwrap_or(1).max(0),
            completions: i("completions").map(|c| c.max(0)),
            indexed: s["completionMode"] == "Indexed",
            backoff_limit: i("backoffLimit").unwrap_or(6).max(0),
            active_deadline: i("activeDeadlineSeconds"),
            suspend: s["suspend"] == true,
            on_failure: s.pointer("/template/spec/restartPolicy") == Some(&"OnFailure".into()),
            ttl_after_finished: i("ttlSecondsAfterFinished"),
        }
    }
}

/// What the Job's status already says.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished (Complete or Failed condition True), if it did.
    pub finished_at: Option<DateTime<Utc>>,
    pub succeeded: i64,
    pub failed: i64,
    pub completed_indexes: BTreeSet<i64>,
}

impl Previous {
    pub fn of(job: &Value) -> Previous {
        let st = &job["status"];
        let finished_at = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
            .map(|c| {
                parse_time(c.get("lastTransitionTime"))
                    .or_else(|| parse_time(st.get("completionTime")))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC)
            });
        Previous {
            start_time: parse_time(st.get("startTime")),
            finished_at,
            succeeded: st["succeeded"].as_i64().unwrap_or(0),
            failed: st["failed"].as_i64().unwrap_or(0),
            completed_indexes: parse_indexes(st["completedIndexes"].as_str().unwrap_or("")),
        }
    }
}

/// How the Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Complete,
    Failed {
        reason: &'static str,
        message: &'static str,
    },
}

/// The decisions of one reconcile.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Pods to create, each with its completion index (Indexed mode).
    pub create: Vec<Option<i64>>,
    /// Active pods to delete, by name.
    pub delete: Vec<String>,
    /// The Job finishes now.
    pub finish: Option<Finish>,
    pub start_time: Option<DateTime<Utc>>,
    pub active: i64,
    pub ready: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub completed_indexes: BTreeSet<i64>,
    /// Look again after this long (back-off, deadline, TTL).
    pub requeue: Option<StdDuration>,
    /// The finished Job's TTL ran out: delete it.
    pub delete_job: bool,
}

fn index_of(pod: &Value) -> Option<i64> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(INDEX_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn restarts(pod: &Value) -> i64 {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum()
}

/// When a finished pod finished (its last container's finishedAt).
fn finished_at(pod: &Value) -> Option<DateTime<Utc>> {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| parse_time(c.pointer("/state/terminated/finishedAt")))
        .max()
        .or_else(|| parse_time(pod.pointer("/metadata/creationTimestamp")))
}

fn to_std(d: Duration) -> StdDuration {
    // Time stamps have second precision: look again just after.
    d.to_std().unwrap_or_default() + StdDuration::from_millis(50)
}

fn min_requeue(a: Option<StdDuration>, b: StdDuration) -> Option<StdDuration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Decide what to do for a Job with `spec`, `prev` status and its `pods`
/// (controlled by it, including finished ones) at `now`.
pub fn plan(
    spec: &Spec,
    prev: &Previous,
    pods: &[Value],
    now: DateTime<Utc>,
    backoff: Backoff,
) -> Plan {
    let active: Vec<&Value> = pods.iter().filter(|p| podstate::is_active(p)).collect();
    let failed_pods: Vec<&Value> = pods
        .iter()
        .filter(|p| podstate::phase(p) == "Failed")
        .collect();
    let succeeded_pods: Vec<&Value> = pods
        .iter()
        .filter(|p| podstate::phase(p) == "Succeeded")
        .collect();
    let mut p = Plan {
        active: active.len() as i64,
        ready: active.iter().filter(|x| podstate::is_ready(x)).count() as i64,
        failed: prev.failed.max(failed_pods.len() as i64),
        start_time: prev.start_time,
        ..Plan::default()
    };
    if spec.indexed {
        let c = spec.completions.unwrap_or(0);
        p.completed_indexes = prev.completed_indexes.clone();
        p.completed_indexes.extend(
            succeeded_pods
                .iter()
                .filter_map(|x| index_of(x))
                .filter(|i| (0..c).contains(i)),
        );
        p.succeeded = p.completed_indexes.len() as i64;
    } else {
        p.succeeded = prev.succeeded.max(succeeded_pods.len() as i64);
    }
    let all_active = || {
        active
            .iter()
            .filter_map(|x| x["metadata"]["name"].as_str().map(String::from))
            .collect()
    };

    if let Some(at) = prev.finished_at {
        // Finished: only stragglers to remove and the TTL.
        p.delete = all_active();
        if let Some(ttl) = spec.ttl_after_finished {
            let due = at + Duration::seconds(ttl);
            if due <= now {
                p.delete_job = true;
            } else {
                p.requeue = Some(to_std(due - now));
            }
        }
        return p;
    }
    if spec.suspend {
        p.delete = all_active();
        p.start_time = None;
        return p;
    }
    let start = *p.start_time.get_or_insert(now);

    if let Some(ads) = spec.active_deadline {
        let due = start + Duration::seconds(ads);
        if due <= now {
            p.finish = Some(Finish::Failed {
                reason: "DeadlineExceeded",
                message: "Job was active longer than specified deadline",
            });
            p.delete = all_active();
            return p;
        }
        p.requeue = Some(to_std(due - now));
    }
    let retries = p.failed
        + if spec.on_failure {
            active.iter().map(|x| restarts(x)).sum()
        } else {
            0
        };
    if retries > spec.backoff_limit {
        p.finish = Some(Finish::Failed {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit",
        });
        p.delete = all_active();
        return p;
    }
    let done = match spec.completions {
        Some(c) => p.succeeded >= c,
        None => p.succeeded > 0 && active.is_empty(),
    };
    if done {
        p.finish = Some(Finish::Complete);
        p.delete = all_active();
        return p;
    }
    let want = match spec.completions {
        Some(c) => spec.parallelism.min(c - p.succeeded).max(0),
        // Work queue: once one pod succeeded, start no more and let the rest finish.
        None if p.succeeded > 0 => p.active,
        None => spec.parallelism,
    };
    if p.active > want {
        // Pending and not-ready pods go first, then the newest.
        let mut extra = active.clone();
        extra.sort_by_key(|x| {
            (
                podstate::phase(x) != "Pending",
                podstate::is_ready(x),
                std::cmp::Reverse(
                    x["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        });
        p.delete = extra
            .iter()
            .take((p.active - want) as usize)
            .filter_map(|x| x["metadata"]["name"].as_str().map(String::from))
            .collect();
        return p;
    }
    if p.active < want {
        let delay = backoff.delay(failed_pods.len() as i64);
        let last_failure = failed_pods.iter().filter_map(|x| finished_at(x)).max();
        if let Some(last) = last_failure {
            let ready_at = last + Duration::from_std(delay).unwrap_or_default();
            if ready_at > now {
                p.requeue = min_requeue(p.requeue, to_std(ready_at - now));
                return p;
            }
        }
        let n = (want - p.active) as usize;
        p.create = if spec.indexed {
            let running: BTreeSet<i64> = active.iter().filter_map(|x| index_of(x)).collect();
            (0..spec.completions.unwrap_or(0))
                .filter(|i| !p.completed_indexes.contains(i) && !running.contains(i))
                .take(n)
                .map(Some)
                .collect()
        } else {
            vec![None; n]
        };
    }
    p
}

/// `1,3-5` → {1,3,4,5}, as in `status.completedIndexes`.
pub fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i64>().ok()),
        }
    }
    out
}

/// {1,3,4,5} → `1,3-5`.
pub fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut parts = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(a) = it.next() {
        let mut b = a;
        while it.peek() == Some(&(b + 1)) {
            b += 1;
            it.next();
        }
        parts.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
#[path = "job_logic_tests.rs"]
mod tests;
