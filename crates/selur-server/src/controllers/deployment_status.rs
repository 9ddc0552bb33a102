//! A Deployment's status conditions, as the Kubernetes deployment controller
//! sets them: `Available` (MinimumReplicasAvailable / Unavailable) and
//! `Progressing` (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//! NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused,
//! DeploymentResumed), plus `ReplicaFailure` copied from its ReplicaSets.
//! Pure: the caller passes the time.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::podstate::parse_time;
use crate::clock::rfc3339;

/// The counts of a status, before and after this pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i64,
    pub updated: i64,
    pub ready: i64,
    pub available: i64,
}

impl Counts {
    pub fn of(status: &Value) -> Self {
        let g = |f: &str| status.get(f).and_then(Value::as_i64).unwrap_or(0);
        Counts {
            replicas: g("replicas"),
            updated: g("updatedReplicas"),
            ready: g("readyReplicas"),
            available: g("availableReplicas"),
        }
    }
}

/// What the conditions are computed from.
pub struct Input<'a> {
    pub replicas: i64,
    pub max_unavailable: i64,
    pub paused: bool,
    pub progress_deadline: Option<i64>,
    pub new_rs: Option<&'a str>,
    /// The new ReplicaSet was created by this pass.
    pub created_new_rs: bool,
    pub before: Counts,
    pub after: Counts,
    /// A ReplicaFailure condition of one of the ReplicaSets.
    pub replica_failure: Option<Value>,
    pub now: DateTime<Utc>,
}

fn find<'a>(conds: &'a [Value], t: &str) -> Option<&'a Value> {
    conds.iter().find(|c| c["type"] == t)
}

/// Set a condition; an unchanged status and reason leave it alone, an
/// unchanged status keeps its lastTransitionTime (Kubernetes' SetDeploymentCondition).
fn set(conds: &mut Vec<Value>, t: &str, status: &str, reason: &str, message: String, now: &str) {
    let cur = find(conds, t).cloned();
    if let Some(c) = &cur {
        if c["status"] == status && c["reason"] == reason {
            return;
        }
    }
    let since = match &cur {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    conds.retain(|c| c["type"] != t);
    conds.push(json!({"type": t, "status": status, "lastUpdateTime": now,
        "lastTransitionTime": since, "reason": reason, "message": message}));
}

/// A rollout is complete when every replica is updated and available and no old one is left.
pub fn complete(i: &Input) -> bool {
    i.after.updated == i.replicas
        && i.after.replicas == i.replicas
        && i.after.available == i.replicas
}

fn progressed(before: &Counts, after: &Counts) -> bool {
    after.updated > before.updated
        || after.replicas - after.updated < before.replicas - before.updated
        || after.ready > before.ready
        || after.available > before.available
}

/// The new conditions, and when to look again for a progress deadline.
pub fn conditions(existing: &[Value], i: &Input) -> (Vec<Value>, Option<std::time::Duration>) {
    let now = rfc3339(i.now);
    let mut conds = existing.to_vec();
    if i.after.available >= i.replicas - i.max_unavailable {
        set(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            &now,
        );
    } else {
        set(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            &now,
        );
    }
    match &i.replica_failure {
        Some(f) => set(
            &mut conds,
            "ReplicaFailure",
            "True",
            f["reason"].as_str().unwrap_or("FailedCreate"),
            f["message"].as_str().unwrap_or("").to_string(),
            &now,
        ),
        None => conds.retain(|c| c["type"] != "ReplicaFailure"),
    }
    let Some(deadline) = i.progress_deadline else {
        return (conds, None);
    };
    let reason_of = |c: &Vec<Value>| {
        find(c, "Progressing")
            .and_then(|c| c["reason"].as_str())
            .map(String::from)
    };
    if i.paused {
        if reason_of(&conds).as_deref() != Some("DeploymentPaused") {
            set(
                &mut conds,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                &now,
            );
        }
        return (conds, None);
    }
    if reason_of(&conds).as_deref() == Some("DeploymentPaused") {
        set(
            &mut conds,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            &now,
        );
    }
    let rs = i.new_rs.unwrap_or("");
    if i.created_new_rs {
        set(
            &mut conds,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs}\""),
            &now,
        );
    } else if i.new_rs.is_some() && find(&conds, "Progressing").is_none() {
        set(
            &mut conds,
            "Progressing",
            "True",
            "FoundNewReplicaSet",
            format!("Found new replica set \"{rs}\""),
            &now,
        );
    }
    if complete(i) && i.new_rs.is_some() {
        set(
            &mut conds,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed."),
            &now,
        );
        return (conds, None);
    }
    if progressed(&i.before, &i.after) {
        // Progress moves lastUpdateTime, which the deadline counts from.
        let keep_since = find(&conds, "Progressing")
            .filter(|c| c["status"] == "True")
            .map(|c| c["lastTransitionTime"].clone());
        conds.retain(|c| c["type"] != "Progressing");
        set(
            &mut conds,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs}\" is progressing."),
            &now,
        );
        if let (Some(since), Some(c)) = (
            keep_since,
            conds.iter_mut().find(|c| c["type"] == "Progressing"),
        ) {
            c["lastTransitionTime"] = since;
        }
    }
    let Some(cur) = find(&conds, "Progressing") else {
        return (conds, None);
    };
    match cur["reason"].as_str() {
        Some("ProgressDeadlineExceeded") | Some("NewReplicaSetAvailable") => return (conds, None),
        _ => {}
    }
    let from = parse_time(cur.get("lastUpdateTime")).unwrap_or(i.now);
    let due = from + Duration::seconds(deadline);
    if due < i.now {
        set(
            &mut conds,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs}\" has timed out progressing."),
            &now,
        );
        return (conds, None);
    }
    // Time stamps have second precision and the deadline is "strictly after".
    let wait = (due - i.now).to_std().unwrap_or_default() + std::time::Duration::from_millis(1050);
    (conds, Some(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn input(before: Counts, after: Counts, now: DateTime<Utc>) -> Input<'static> {
        Input {
            replicas: 3,
            max_unavailable: 0,
            paused: false,
            progress_deadline: Some(10),
            new_rs: Some("web-abc"),
            created_new_rs: false,
            before,
            after,
            replica_failure: None,
            now,
        }
    }

    fn get<'a>(c: &'a [Value], t: &str) -> (&'a str, &'a str) {
        let c = find(c, t).unwrap_or(&Value::Null);
        (
            c["status"].as_str().unwrap_or(""),
            c["reason"].as_str().unwrap_or(""),
        )
    }

    #[test]
    fn complete_rollout_is_available_and_progressed() {
        let done = Counts {
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
        };
        let (c, again) = conditions(&[], &input(Counts::default(), done, t(0)));
        assert_eq!(get(&c, "Available"), ("True", "MinimumReplicasAvailable"));
        assert_eq!(get(&c, "Progressing"), ("True", "NewReplicaSetAvailable"));
        assert_eq!(again, None);
    }

    #[test]
    fn a_stuck_rollout_exceeds_its_deadline() {
        let stuck = Counts {
            replicas: 3,
            updated: 1,
            ready: 2,
            available: 2,
        };
        let mut i = input(Counts::default(), stuck, t(0));
        i.created_new_rs = true;
        let (c, again) = conditions(&[], &i);
        assert_eq!(
            get(&c, "Available"),
            ("False", "MinimumReplicasUnavailable")
        );
        assert_eq!(get(&c, "Progressing"), ("True", "ReplicaSetUpdated"));
        assert!(again.is_some_and(|d| d.as_secs() >= 10));
        // No progress for longer than the deadline.
        let (c, again) = conditions(&c, &input(stuck, stuck, t(11)));
        assert_eq!(
            get(&c, "Progressing"),
            ("False", "ProgressDeadlineExceeded")
        );
        assert_eq!(again, None);
        // Progress after that counts again.
        let better = Counts { ready: 3, ..stuck };
        let (c, _) = conditions(&c, &input(stuck, better, t(12)));
        assert_eq!(get(&c, "Progressing"), ("True", "ReplicaSetUpdated"));
    }

    #[test]
    fn paused_and_resumed() {
        let n = Counts {
            replicas: 3,
            updated: 1,
            ready: 3,
            available: 3,
        };
        let mut i = input(n, n, t(0));
        i.paused = true;
        let (c, _) = conditions(&[], &i);
        assert_eq!(get(&c, "Progressing"), ("Unknown", "DeploymentPaused"));
        let (c, _) = conditions(&c, &input(n, n, t(100)));
        assert_eq!(get(&c, "Progressing"), ("Unknown", "DeploymentResumed"));
    }

    #[test]
    fn replica_failures_are_copied() {
        let n = Counts::default();
        let mut i = input(n, n, t(0));
        i.replica_failure = Some(json!({"reason": "FailedCreate", "message": "quota"}));
        let (c, _) = conditions(&[], &i);
        assert_eq!(get(&c, "ReplicaFailure"), ("True", "FailedCreate"));
        let (c, _) = conditions(&c, &input(n, n, t(1)));
        assert!(find(&c, "ReplicaFailure").is_none());
    }
}
