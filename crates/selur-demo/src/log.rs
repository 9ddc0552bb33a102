//! One-line JSON logs on stdout (what the seed's Fluentd config parses out
//! of each json-file record's `log` field), RFC 3339 times and JSON string
//! escaping, without a JSON or time library.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A field value of a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// A JSON string.
    Str(&'a str),
    /// A JSON integer.
    Int(i64),
    /// A JSON number.
    Num(f64),
}

/// `s` as a JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON object of `fields`, in order.
pub fn object(fields: &[(&str, Val<'_>)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(k));
        out.push(':');
        match v {
            Val::Str(s) => out.push_str(&quote(s)),
            Val::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Val::Num(x) if x.is_finite() => {
                let _ = write!(out, "{x:.3}");
            }
            Val::Num(_) => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

/// Print one log line: `{"time":..,"level":..,"msg":..,<fields>}`.
pub fn log(level: &str, msg: &str, fields: &[(&str, Val<'_>)]) {
    let now = rfc3339(SystemTime::now(), true);
    let mut all = vec![
        ("time", Val::Str(&now)),
        ("level", Val::Str(level)),
        ("msg", Val::Str(msg)),
    ];
    all.extend_from_slice(fields);
    let mut line = object(&all);
    line.push('\n');
    // One write per line so concurrent threads never interleave; a closed
    // stdout is not a reason to stop serving.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// `t` as `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (UTC).
pub fn rfc3339(t: SystemTime, millis: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if millis {
        let _ = write!(s, ".{:03}", d.subsec_millis());
    }
    s.push('Z');
    s
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_770_287_415_042);
        assert_eq!(rfc3339(t, false), "2026-02-05T10:30:15Z");
        assert_eq!(rfc3339(t, true), "2026-02-05T10:30:15.042Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t, false), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        let o = object(&[
            ("a", Val::Int(-3)),
            ("b", Val::Str("x")),
            ("c", Val::Num(1.5)),
        ]);
        assert_eq!(o, r#"{"a":-3,"b":"x","c":1.500}"#);
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        assert_eq!(v["b"], "x");
    }
}
