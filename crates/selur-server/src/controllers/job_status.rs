//! The Job's `status` after a plan: counts, start and completion times,
//! conditions (Complete and SuccessCriteriaMet with CompletionsReached, Failed
//! with BackoffLimitExceeded / DeadlineExceeded, Suspended).

use serde_json::{json, Value};

use super::job_logic::{format_indexes, Finish, Plan, Spec};
use crate::clock::rfc3339;

pub(crate) fn condition_status<'a>(job: &'a Value, type_: &str) -> Option<&'a str> {
    job.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .get("status")?
        .as_str()
}

/// Insert or update a condition, keeping its transition time when its status did not change.
fn set_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let since = conds
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    conds.retain(|c| c["type"] != type_);
    conds.push(
        json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": since}),
    );
}

/// The Job's status after `plan`.
pub fn status_of(
    job: &Value,
    spec: &Spec,
    plan: &Plan,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let old = &job["status"];
    let now_s = rfc3339(now);
    let mut conds: Vec<Value> = old["conditions"].as_array().cloned().unwrap_or_default();
    let suspended = condition_status(job, "Suspended") == Some("True");
    if spec.suspend && !suspended {
        set_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &now_s,
        );
    } else if !spec.suspend && suspended {
        set_condition(
            &mut conds,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            &now_s,
        );
    }
    let mut completion_time = old.get("completionTime").cloned().unwrap_or(Value::Null);
    match &plan.finish {
        Some(Finish::Complete) => {
            let msg = "Reached expected number of succeeded pods";
            set_condition(
                &mut conds,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                msg,
                &now_s,
            );
            set_condition(
                &mut conds,
                "Complete",
                "True",
                "CompletionsReached",
                msg,
                &now_s,
            );
            completion_time = json!(now_s);
        }
        Some(Finish::Failed { reason, message }) => {
            set_condition(&mut conds, "Failed", "True", reason, message, &now_s);
        }
        None => {}
    }
    let mut s = json!({
        "active": plan.active.max(0),
        "ready": plan.ready,
        "succeeded": plan.succeeded,
        "failed": plan.failed,
        "startTime": plan.start_time.map(rfc3339),
        "completionTime": completion_time,
        "conditions": conds,
    });
    if spec.indexed {
        s["completedIndexes"] = json!(format_indexes(&plan.completed_indexes));
    }
    s
}

/// Whether `new` says anything `old` does not (missing, null and 0 alike).
pub(crate) fn changed(old: &Value, new: &Value) -> bool {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    new.as_object().into_iter().flatten().any(|(k, v)| {
        let o = old.get(k);
        !(o == Some(v) || (empty(o) && empty(Some(v))))
    })
}
