//! What workload controllers read from pods and owners: activity, readiness,
//! availability (ready for `minReadySeconds`), controller references.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// The controller owner reference of an object: (kind, name, uid).
pub fn controller_ref(obj: &Value) -> Option<(&str, &str, &str)> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| Some((r["kind"].as_str()?, r["name"].as_str()?, r["uid"].as_str()?)))
}

/// Whether the object is owned (as controller) by the object with `uid`.
pub fn controlled_by(obj: &Value, uid: &str) -> bool {
    controller_ref(obj).is_some_and(|(_, _, u)| u == uid)
}

pub fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

pub fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

/// Not finished (Succeeded/Failed) and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !deleting(pod)
}

pub fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

/// When a ready pod counts as available (Ready since + minReadySeconds);
/// `None` when not ready. A ready pod without a transition time is available
/// only when `min_ready` is 0.
pub fn available_at(pod: &Value, min_ready: i64) -> Option<DateTime<Utc>> {
    let c = ready_condition(pod).filter(|c| c["status"] == "True")?;
    match parse_time(c.get("lastTransitionTime")) {
        Some(t) => Some(t + Duration::seconds(min_ready)),
        None if min_ready == 0 => Some(DateTime::<Utc>::MIN_UTC),
        None => None,
    }
}

/// Ready for at least `min_ready` seconds at `now`.
pub fn is_available(pod: &Value, min_ready: i64, now: DateTime<Utc>) -> bool {
    available_at(pod, min_ready).is_some_and(|t| t <= now)
}

/// How long until the first ready-but-not-yet-available pod becomes available.
pub fn next_available_in<'a>(
    pods: impl Iterator<Item = &'a Value>,
    min_ready: i64,
    now: DateTime<Utc>,
) -> Option<std::time::Duration> {
    pods.filter_map(|p| available_at(p, min_ready))
        .filter(|t| *t > now)
        .min()
        .and_then(|t| (t - now).to_std().ok())
        // Time stamps have second precision: look again just after.
        .map(|d| d + std::time::Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ready: &str, since: &str) -> Value {
        json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "r", "uid": "u", "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": since}]}})
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = parse_time(Some(&json!("2024-01-01T00:00:10Z"))).unwrap_or_default();
        let p = pod("True", "2024-01-01T00:00:05Z");
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 6, now));
        assert_eq!(
            next_available_in([&p].into_iter(), 6, now),
            Some(std::time::Duration::from_millis(1050))
        );
        assert!(!is_available(&pod("False", "2024-01-01T00:00:00Z"), 0, now));
        assert_eq!(controller_ref(&p), Some(("ReplicaSet", "r", "u")));
        assert!(controlled_by(&p, "u"));
    }
}
