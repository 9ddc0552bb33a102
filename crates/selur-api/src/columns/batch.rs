//! Jobs and CronJobs.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{age, condition, created_age, n, next_schedule, or_none, s, Column, KindColumns};

pub(super) const JOB: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("STATUS", "Complete, Failed, Suspended or Running."),
        Column::string(
            "COMPLETIONS",
            "Succeeded pods of the completions asked for.",
        ),
        Column::age(),
    ],
    row: job_row,
};

fn job_row(j: &Value, now: DateTime<Utc>) -> Vec<String> {
    let status = if condition(j, "Complete").as_deref() == Some("True") {
        "Complete"
    } else if condition(j, "Failed").as_deref() == Some("True") {
        "Failed"
    } else if j.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        "Suspended"
    } else {
        "Running"
    };
    let completions = j
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .map(|c| c.to_string())
        .unwrap_or_else(|| "1".into());
    vec![
        s(j, "/metadata/name").into(),
        status.into(),
        format!("{}/{}", n(j, "/status/succeeded"), completions),
        created_age(j, now),
    ]
}

pub(super) const CRON_JOB: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("SCHEDULE", "The cron schedule."),
        Column::string("TIMEZONE", "Time zone of the schedule."),
        Column::boolean("SUSPEND", "Whether new runs are suspended."),
        Column::integer("ACTIVE", "Jobs running."),
        Column::string("LAST SCHEDULE", "Time since the last run was scheduled."),
        Column::string("NEXT SCHEDULE", "When the next run is due (UTC)."),
        Column::age(),
    ],
    row: cron_job_row,
};

fn cron_job_row(c: &Value, now: DateTime<Utc>) -> Vec<String> {
    let active = c
        .pointer("/status/active")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    let last = s(c, "/status/lastScheduleTime");
    vec![
        s(c, "/metadata/name").into(),
        s(c, "/spec/schedule").into(),
        or_none(s(c, "/spec/timeZone").into()),
        c.pointer("/spec/suspend")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string()
            .replace("false", "False")
            .replace("true", "True"),
        active.to_string(),
        if last.is_empty() {
            "<none>".into()
        } else {
            age(last, now)
        },
        next_schedule(c, now),
        created_age(c, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{at, for_kind};

    #[test]
    fn job_rows() {
        let now = at("2026-01-01T01:00:00Z");
        let def = for_kind("Job");
        let done = json!({"metadata": {"name": "pi"}, "spec": {"completions": 2},
            "status": {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(def.cells(&done, now, false)[..3], ["pi", "Complete", "2/2"]);
        let suspended = json!({"metadata": {"name": "pi"}, "spec": {"suspend": true}});
        assert_eq!(
            def.cells(&suspended, now, false)[..3],
            ["pi", "Suspended", "0/1"]
        );
    }

    #[test]
    fn cron_job_row() {
        let now = at("2026-01-01T01:00:00Z");
        let c = json!({"metadata": {"name": "tick", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"schedule": "*/5 * * * *"},
            "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": "2026-01-01T00:59:50Z"}});
        assert_eq!(
            for_kind("CronJob").cells(&c, now, false),
            [
                "tick",
                "*/5 * * * *",
                "<none>",
                "False",
                "1",
                "10s",
                "2026-01-01T01:05:00Z",
                "60m"
            ]
        );
        let mut off = c.clone();
        off["spec"]["suspend"] = json!(true);
        let cells = for_kind("CronJob").cells(&off, now, false);
        assert_eq!((cells[3].as_str(), cells[6].as_str()), ("True", "<none>"));
    }
}
