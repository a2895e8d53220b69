//! Durations (`"10s"`, `"5m"`, `"4h"`, `"1d"`, plain seconds) and sizes (`"1G"`, `"500M"`) as
//! swanctl.conf writes them.

use super::doc::Val;
use super::error::ConfigError;
use std::time::Duration;

/// The longest duration accepted: 2^32 - 1 seconds (about 136 years), like strongSwan's 32-bit
/// lifetimes.
pub(crate) const MAX_SECONDS: u64 = u32::MAX as u64;

const DURATION_FORMS: &str = "a duration such as \"30s\", \"10m\", \"4h\", \"1d\" or seconds";

/// Parses a duration: a decimal number (fractions allowed) followed by `s`, `m`, `h`, `d` or
/// nothing (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_secs: u128 = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("expected {DURATION_FORMS}, got '{t}'")),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.contains('.')
        || frac.len() > 9
        || (number.contains('.') && frac.is_empty())
    {
        return Err(format!("expected {DURATION_FORMS}, got '{t}'"));
    }
    let too_long = || format!("duration '{t}' is too long (at most {MAX_SECONDS} seconds)");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    let frac_nanos: u128 = if frac.is_empty() {
        0
    } else {
        let digits: u128 = frac.parse().map_err(|_| too_long())?;
        let scale = 10u128.pow(9 - u32::try_from(frac.len()).unwrap_or(9));
        digits * scale
    };
    let nanos = whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_nanos))
        .and_then(|n| n.checked_mul(unit_secs))
        .ok_or_else(too_long)?;
    if nanos > u128::from(MAX_SECONDS) * 1_000_000_000 {
        return Err(too_long());
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, sub))
}

/// Parses a size: a decimal integer with an optional `K`, `M` or `G` suffix (powers of 1024, as
/// swanctl reads them).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: u64 = match unit.trim() {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => {
            return Err(format!(
                "expected a number with an optional K, M or G suffix (such as \"500M\"), got '{t}'"
            ))
        }
    };
    if number.is_empty() {
        return Err(format!(
            "expected a number with an optional K, M or G suffix (such as \"500M\"), got '{t}'"
        ));
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("'{t}' is too large (at most {})", u64::MAX))
}

/// A duration from a TOML string, integer (seconds) or float (seconds).
pub(crate) fn duration(v: &Val<'_>) -> Result<Duration, ConfigError> {
    if let Some(n) = v.integer()? {
        return u64::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_SECONDS)
            .map(Duration::from_secs)
            .ok_or_else(|| v.err(format!("expected 0..={MAX_SECONDS} seconds, got {n}")));
    }
    if let Some(f) = v.float() {
        return if f.is_finite() && (0.0..=MAX_SECONDS as f64).contains(&f) {
            Duration::try_from_secs_f64(f).map_err(|_| v.err("duration out of range"))
        } else {
            Err(v.err(format!("expected 0..={MAX_SECONDS} seconds")))
        };
    }
    let s = v.str_for(DURATION_FORMS)?;
    parse_duration(s).map_err(|e| v.err(e))
}

/// A duration where zero means "not at all".
pub(crate) fn optional_duration(v: &Val<'_>) -> Result<Option<Duration>, ConfigError> {
    duration(v).map(|d| (!d.is_zero()).then_some(d))
}

/// A size from a TOML integer or a string with a K/M/G suffix.
pub(crate) fn size(v: &Val<'_>) -> Result<u64, ConfigError> {
    if let Some(n) = v.integer()? {
        return u64::try_from(n)
            .map_err(|_| v.err(format!("expected a non-negative number, got {n}")));
    }
    let s = v.str_for("a number or a string such as \"500M\"")?;
    parse_size(s).map_err(|e| v.err(e))
}

/// 110 % of a duration (swanctl's default hard lifetime).
pub(crate) fn plus_ten_percent(d: Duration) -> Duration {
    d.saturating_add(d / 10)
}

/// 110 % of a count (swanctl's default hard byte and packet limits).
pub(crate) fn plus_ten_percent_u64(n: u64) -> u64 {
    n.saturating_add(n / 10)
}
