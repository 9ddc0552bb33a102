//! CronJob validation: a small cron syntax checker for `spec.schedule` (five
//! fields with `*`, `?`, ranges, lists, steps and month/day names, or a
//! `@macro`), a shape check for `spec.timeZone`, policies, and the job template
//! (validated as a Job under `spec.jobTemplate.spec`).

use k8s_openapi::api::batch::v1::CronJob;

use super::workloads::validate_job_spec;
use super::{non_negative, one_of, q, validate_labels};
use crate::FieldError;

/// batch/v1 CronJob: schedule, time zone, policies and the job template.
pub(super) fn validate_cron_job(c: &CronJob, errs: &mut Vec<FieldError>) {
    let Some(spec) = &c.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    let schedule = spec.schedule.trim();
    if schedule.is_empty() {
        errs.push(FieldError::required(
            "spec.schedule",
            "e.g. \"0 2 * * *\" for 2 AM daily",
        ));
    } else if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
        errs.push(FieldError::invalid(
            "spec.schedule",
            q(&spec.schedule),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead \
             (e.g. spec.timeZone: \"Europe/Berlin\")",
        ));
    } else if let Err(msg) = check_cron(schedule) {
        errs.push(FieldError::invalid("spec.schedule", q(&spec.schedule), msg));
    }
    if let Some(tz) = spec.time_zone.as_deref() {
        if let Err(msg) = check_time_zone(tz) {
            errs.push(FieldError::invalid("spec.timeZone", q(tz), msg));
        }
    }
    one_of(
        "spec.concurrencyPolicy",
        spec.concurrency_policy.as_deref(),
        &["Allow", "Forbid", "Replace"],
        errs,
    );
    non_negative(
        "spec.startingDeadlineSeconds",
        spec.starting_deadline_seconds,
        errs,
    );
    non_negative(
        "spec.successfulJobsHistoryLimit",
        spec.successful_jobs_history_limit,
        errs,
    );
    non_negative(
        "spec.failedJobsHistoryLimit",
        spec.failed_jobs_history_limit,
        errs,
    );
    if let Some(l) = spec
        .job_template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
    {
        validate_labels(l, "spec.jobTemplate.metadata.labels", errs);
    }
    match &spec.job_template.spec {
        Some(js) => validate_job_spec(js, "spec.jobTemplate.spec", errs),
        None => errs.push(FieldError::required("spec.jobTemplate.spec", "")),
    }
}

/// An IANA-looking time zone name (`UTC`, `Europe/Berlin`, `Etc/GMT+1`).
pub(super) fn check_time_zone(tz: &str) -> Result<(), String> {
    const HINT: &str = "must be a time zone name from the IANA database (e.g. \"UTC\", \"Europe/Berlin\", \"America/New_York\")";
    if tz.eq_ignore_ascii_case("local") {
        return Err(format!("{HINT}; \"Local\" is not an explicit time zone"));
    }
    let ok = !tz.is_empty()
        && tz.split('/').all(|seg| {
            seg.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        });
    if ok {
        crate::cron::time_zone(Some(tz))
            .map(|_| ())
            .map_err(|e| format!("{e}: {HINT}"))
    } else {
        Err(HINT.to_string())
    }
}

const MACROS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];
const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Check a standard 5-field cron schedule or a `@macro`; the error says what is wrong.
pub(super) fn check_cron(schedule: &str) -> Result<(), String> {
    if schedule.starts_with('@') {
        return if MACROS.contains(&schedule) {
            Ok(())
        } else {
            Err(format!(
                "unrecognized descriptor: {schedule} (use one of {})",
                MACROS.join(", ")
            ))
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, MONTHS, 1),
        ("day-of-week", 0, 7, DAYS, 0),
    ];
    for (field, (name, min, max, names, base)) in fields.iter().zip(specs) {
        for part in field.split(',') {
            check_cron_part(part, min, max, names, base)
                .map_err(|e| format!("{name} field {field:?}: {e}"))?;
        }
    }
    Ok(())
}

/// One comma-separated element: `*`, `?`, `a`, `a-b`, each optionally `/step`.
fn check_cron_part(
    part: &str,
    min: u32,
    max: u32,
    names: &[&str],
    base: u32,
) -> Result<(), String> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (part, None),
    };
    if let Some(s) = step {
        match s.parse::<u32>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("step {s:?} must be a positive number")),
        }
    }
    if range == "*" || range == "?" {
        return Ok(());
    }
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u32 + base);
        }
        match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            Ok(n) => Err(format!("value {n} out of range {min}-{max}")),
            Err(_) => Err(format!("failed to parse {v:?} as a number")),
        }
    };
    match range.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!(
                    "beginning of range ({a}) beyond end of range ({b})"
                ));
            }
        }
        None => {
            value(range)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors};
    use super::{check_cron, check_time_zone};
    use serde_json::json;

    #[test]
    fn accepts_standard_schedules() {
        for s in [
            "0 2 * * *",
            "*/15 * * * *",
            "0 0-23/2 1,15 JAN-jun MON-FRI",
            "5 4 ? * 7",
            "30 1 1 1/3 sun",
            "@hourly",
            "@annually",
        ] {
            assert_eq!(check_cron(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn refuses_bad_schedules() {
        let cases = [
            ("0 2 * *", "expected exactly 5 fields"),
            (
                "60 * * * *",
                "minute field \"60\": value 60 out of range 0-59",
            ),
            ("0 24 * * *", "hour field"),
            ("0 0 0 * *", "day-of-month field"),
            ("0 0 * 13 *", "month field"),
            ("0 0 * * 8", "day-of-week field"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1)",
            ),
            ("*/0 * * * *", "step \"0\" must be a positive number"),
            ("x * * * *", "failed to parse \"x\""),
            ("@fortnightly", "unrecognized descriptor"),
        ];
        for (s, want) in cases {
            let err = check_cron(s).expect_err(s);
            assert!(err.contains(want), "{s}: {err}");
        }
    }

    #[test]
    fn time_zones() {
        for tz in [
            "UTC",
            "Europe/Berlin",
            "Etc/GMT+1",
            "America/Argentina/Buenos_Aires",
            "America/Port-au-Prince",
        ] {
            assert_eq!(check_time_zone(tz), Ok(()), "{tz}");
        }
        for tz in [
            "",
            "Local",
            "Europe/",
            "/UTC",
            "UTC+1 ",
            "1Zone/X",
            "Mars/Olympus",
        ] {
            assert!(check_time_zone(tz).is_err(), "{tz}");
        }
    }

    #[test]
    fn cron_job_paths_and_schedule() {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "TZ=UTC 0 2 * * *", "timeZone": "Mars/Olympus Mons",
                     "concurrencyPolicy": "Sometimes", "startingDeadlineSeconds": -5,
                     "jobTemplate": {"spec": {"template": {"spec": {
                         "restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}}});
        let errs = errors(cj);
        assert_has(&errs, "spec.schedule: Invalid value: \"TZ=UTC 0 2 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead");
        assert_has(&errs, "spec.timeZone: Invalid value: \"Mars/Olympus Mons\"");
        assert_has(
            &errs,
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\"",
        );
        assert_has(&errs, "spec.startingDeadlineSeconds: Invalid value: -5");
        assert_has(
            &errs,
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value",
        );
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }
}
