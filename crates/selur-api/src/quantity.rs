//! Kubernetes resource quantities (`100m`, `64Mi`, `1.5`, `1e3`, `2Gi`),
//! held exactly in nano-units so comparisons and sums do not drift.

use std::fmt;

/// A parsed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

/// Text that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (e.g. 100m, 0.5, 64Mi, 2Gi), got {0:?}")]
pub struct QuantityError(pub String);

const NANO: i128 = 1_000_000_000;

fn suffix_nanos(s: &str) -> Option<i128> {
    Some(
        match s {
            "n" => 1,
            "u" => 1_000,
            "m" => 1_000_000,
            "" => NANO,
            "k" => 1_000 * NANO,
            "M" => 1_000_000 * NANO,
            "G" => 1_000_000_000 * NANO,
            "T" => 1_000_000_000_000 * NANO,
            "P" => 1_000_000_000_000_000 * NANO,
            "E" => 1_000_000_000_000_000_000 * NANO,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            "Pi" => 1 << 50,
            "Ei" => 1 << 60,
            _ => return None,
        } * if s.ends_with('i') { NANO } else { 1 },
    )
}

/// Parse a quantity.
pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
    let err = || QuantityError(text.to_string());
    let s = text.trim();
    if s.is_empty() || s != text {
        return Err(err());
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // Scale: decimal exponent (e3, E-2) or a named suffix.
    let (multiplier, exp10): (i128, i32) = if let Some(e) = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E').filter(|r| !r.is_empty()))
    {
        let exp: i32 = e.parse().map_err(|_| err())?;
        (NANO, exp)
    } else {
        (suffix_nanos(suffix).ok_or_else(err)?, 0)
    };
    // value = int.frac * multiplier * 10^exp10, computed exactly in nanos, rounding up.
    let digits: String = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = 0;
    for c in digits.chars() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(c as i128 - '0' as i128))
            .ok_or_else(err)?;
    }
    let scale = exp10 - frac_part.len() as i32;
    let mut nanos = mantissa.checked_mul(multiplier).ok_or_else(err)?;
    if scale >= 0 {
        for _ in 0..scale {
            nanos = nanos.checked_mul(10).ok_or_else(err)?;
        }
    } else {
        let mut div: i128 = 1;
        for _ in 0..(-scale) {
            div = div.checked_mul(10).ok_or_else(err)?;
        }
        nanos = (nanos + div - 1) / div;
    }
    Ok(Quantity {
        nanos: if neg { -nanos } else { nanos },
    })
}

impl Quantity {
    /// From whole milli-units.
    pub fn from_millis(m: i128) -> Self {
        Self {
            nanos: m * 1_000_000,
        }
    }
    /// Value × 1000, rounded up (Kubernetes' MilliValue).
    pub fn millis(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }
    /// Value rounded up to a whole unit (Kubernetes' Value).
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        self.nanos
            .checked_add(other.nanos)
            .map(|nanos| Quantity { nanos })
    }
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        self.nanos
            .checked_sub(other.nanos)
            .map(|nanos| Quantity { nanos })
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

impl fmt::Display for Quantity {
    /// Canonical-ish form: whole units, else milli-units, else nano-units; binary
    /// multiples of Ki when exact and ≥ 1Ki.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        if n % NANO == 0 {
            let v = n / NANO;
            for (suffix, mult) in [
                ("Ei", 1i128 << 60),
                ("Pi", 1 << 50),
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ] {
                if v != 0 && v % mult == 0 {
                    return write!(f, "{}{suffix}", v / mult);
                }
            }
            write!(f, "{v}")
        } else if n % 1_000_000 == 0 {
            write!(f, "{}m", n / 1_000_000)
        } else {
            write!(f, "{n}n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_forms() {
        assert_eq!(parse("100m").unwrap().millis(), 100);
        assert_eq!(parse("0.5").unwrap().millis(), 500);
        assert_eq!(parse("2").unwrap().millis(), 2000);
        assert_eq!(parse("64Mi").unwrap().value(), 64 * 1024 * 1024);
        assert_eq!(parse("128Gi").unwrap().value(), 128 << 30);
        assert_eq!(parse("1e3").unwrap().value(), 1000);
        assert_eq!(parse("1E").unwrap().value(), 1_000_000_000_000_000_000);
        assert_eq!(parse("1.5k").unwrap().value(), 1500);
        assert_eq!(parse("-1").unwrap().millis(), -1000);
        assert_eq!(parse("0.0001").unwrap().millis(), 1, "rounds up");
        for bad in ["", "abc", "1.2.3", "10Mb", " 1", "1 ", "."] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compares_across_units() {
        assert!(parse("300m").unwrap() > parse("200m").unwrap());
        assert!(parse("1Gi").unwrap() > parse("1G").unwrap());
        assert_eq!(parse("1000m").unwrap(), parse("1").unwrap());
        assert_eq!(parse("128Mi").unwrap().to_string(), "128Mi");
        assert_eq!(parse("200m").unwrap().to_string(), "200m");
    }
}
