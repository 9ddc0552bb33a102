//! Cron schedules as CronJobs use them: the standard five fields (minute,
//! hour, day of month, month, day of week) with `*`, `?`, ranges, lists,
//! steps and month/day names, or a macro (`@hourly`, `@daily`, ...), read
//! the way Kubernetes' cron library (robfig/cron v3) reads them, and the next
//! time a schedule fires after a given instant in a time zone.
//!
//! Day of month and day of week: when both are restricted (neither is `*` or
//! `?`), a day matches if either matches, as in classic cron.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    dom: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6 (Sunday is 0; 7 is read as 0).
    dow: u8,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The five-field form of a macro.
fn expand_macro(s: &str) -> Option<&'static str> {
    Some(match s {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

/// Bits of one field and whether it was an unrestricted `*`/`?`.
fn field(text: &str, min: u32, max: u32, names: &[&str], base: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(n) if n > 0 => (r, Some(n)),
                _ => return Err(format!("step {s:?} must be a positive number")),
            },
            None => (part, None),
        };
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
        let (lo, hi) = if range == "*" || range == "?" {
            star |= step.unwrap_or(1) == 1;
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // "N/step" means "N-max/step".
            (a, if step.is_some() { max } else { a })
        };
        if lo > hi {
            return Err(format!(
                "beginning of range ({lo}) beyond end of range ({hi})"
            ));
        }
        let step = step.unwrap_or(1) as usize;
        for v in (lo..=hi).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parse a five-field schedule or a macro; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let expanded = if text.starts_with('@') {
            expand_macro(text).ok_or_else(|| format!("unrecognized descriptor: {text}"))?
        } else {
            text
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}", f.len()));
        }
        let (minutes, _) = field(f[0], 0, 59, &[], 0).map_err(|e| format!("minute: {e}"))?;
        let (hours, _) = field(f[1], 0, 23, &[], 0).map_err(|e| format!("hour: {e}"))?;
        let (dom, dom_star) =
            field(f[2], 1, 31, &[], 0).map_err(|e| format!("day-of-month: {e}"))?;
        let (months, _) = field(f[3], 1, 12, MONTHS, 1).map_err(|e| format!("month: {e}"))?;
        let (dow, dow_star) =
            field(f[4], 0, 7, DAYS, 0).map_err(|e| format!("day-of-week: {e}"))?;
        // Sunday is both 0 and 7.
        let dow = (dow | (dow >> 7)) & 0x7f;
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            dom: dom as u32,
            months: months as u16,
            dow: dow as u8,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time strictly after `after` at which the schedule fires, in
    /// time zone `tz`; `None` when it never does within five years (`0 0 30 2 *`).
    /// Local times skipped by a daylight-saving change do not fire; repeated
    /// ones fire once, at their first occurrence.
    pub fn next_after(&self, tz: &Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_timezone(tz).naive_local();
        let mut t = start.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = start + Duration::days(5 * 366);
        while t <= limit {
            if self.months & (1 << t.month()) == 0 {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            if let Some(x) = local_to_utc(tz, t).filter(|x| *x > after) {
                return Some(x);
            }
            t += Duration::minutes(1);
        }
        None
    }
}

fn local_to_utc(tz: &Tz, t: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&t)
        .earliest()
        .map(|x| x.with_timezone(&Utc))
}

/// A CronJob's `spec.timeZone`: an IANA name, UTC when unset.
pub fn time_zone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => n
            .parse::<Tz>()
            .map_err(|_| format!("unknown time zone {n:?}")),
    }
}

/// The next time `schedule` fires after `after` in time zone `tz` (UTC when unset).
pub fn next_schedule(
    schedule: &str,
    tz: Option<&str>,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    let s = Schedule::parse(schedule)?;
    Ok(s.next_after(&time_zone(tz)?, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap()
    }

    fn next(s: &str, tz: Option<&str>, after: &str) -> String {
        next_schedule(s, tz, t(after))
            .unwrap()
            .map(|x| x.to_rfc3339())
            .unwrap_or_default()
    }

    #[test]
    fn fields_ranges_lists_steps_and_names() {
        assert_eq!(
            next("0 2 * * *", None, "2024-03-10T01:00:00Z"),
            "2024-03-10T02:00:00+00:00"
        );
        assert_eq!(
            next("0 2 * * *", None, "2024-03-10T02:00:00Z"),
            "2024-03-11T02:00:00+00:00"
        );
        assert_eq!(
            next("*/1 * * * *", None, "2024-03-10T02:00:30Z"),
            "2024-03-10T02:01:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", None, "2024-03-10T02:16:00Z"),
            "2024-03-10T02:30:00+00:00"
        );
        assert_eq!(
            next("5/20 * * * *", None, "2024-03-10T02:26:00Z"),
            "2024-03-10T02:45:00+00:00"
        );
        assert_eq!(
            next("0 9-17/4 * * MON-FRI", None, "2024-03-08T17:30:00Z"),
            "2024-03-11T09:00:00+00:00"
        );
        assert_eq!(
            next("30 1 1,15 * *", None, "2024-01-02T00:00:00Z"),
            "2024-01-15T01:30:00+00:00"
        );
        assert_eq!(
            next("0 0 * jan-mar 7", None, "2024-03-31T00:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", None, "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
        assert_eq!(next("0 0 30 2 *", None, "2024-03-01T00:00:00Z"), "");
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // The 13th, or any Friday.
        assert_eq!(
            next("0 0 13 * 5", None, "2024-09-01T00:00:00Z"),
            "2024-09-06T00:00:00+00:00"
        );
        // With a star in one of them, both must match: Fridays only.
        assert_eq!(
            next("0 0 * * 5", None, "2024-09-01T00:00:00Z"),
            "2024-09-06T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 */1 * 5", None, "2024-09-01T00:00:00Z"),
            "2024-09-06T00:00:00+00:00"
        );
    }

    #[test]
    fn macros() {
        assert_eq!(
            next("@hourly", None, "2024-03-10T02:00:00Z"),
            "2024-03-10T03:00:00+00:00"
        );
        assert_eq!(
            next("@daily", None, "2024-03-10T02:00:00Z"),
            "2024-03-11T00:00:00+00:00"
        );
        assert_eq!(
            next("@weekly", None, "2024-03-10T02:00:00Z"),
            "2024-03-17T00:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", None, "2024-03-10T02:00:00Z"),
            "2024-04-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@yearly", None, "2024-03-10T02:00:00Z"),
            "2025-01-01T00:00:00+00:00"
        );
        assert!(Schedule::parse("@every 5m").is_err());
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 02:00 in Berlin is 01:00 UTC in winter, 00:00 UTC in summer.
        assert_eq!(
            next("0 2 * * *", Some("Europe/Berlin"), "2024-01-10T12:00:00Z"),
            "2024-01-11T01:00:00+00:00"
        );
        assert_eq!(
            next("0 2 * * *", Some("Europe/Berlin"), "2024-07-10T12:00:00Z"),
            "2024-07-11T00:00:00+00:00"
        );
        // 2024-03-31 02:30 does not exist in Berlin: skipped.
        assert_eq!(
            next("30 2 * * *", Some("Europe/Berlin"), "2024-03-30T12:00:00Z"),
            "2024-04-01T00:30:00+00:00"
        );
        // 2024-10-27 02:30 happens twice: runs once.
        assert_eq!(
            next("30 2 * * *", Some("Europe/Berlin"), "2024-10-26T12:00:00Z"),
            "2024-10-27T00:30:00+00:00"
        );
        assert_eq!(
            next("30 2 * * *", Some("Europe/Berlin"), "2024-10-27T00:30:00Z"),
            "2024-10-28T01:30:00+00:00"
        );
        assert!(next_schedule("0 2 * * *", Some("Mars/Olympus"), Utc::now()).is_err());
    }
}
