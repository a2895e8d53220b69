//! The rows `esprit-bench esp` prints as a table and writes as JSON.

use crate::esp::{Op, Samples, Size};
use dataplane::esp::{Backend, Suite};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// One (backend, suite, size, op) result. The first six fields are the issue's JSON shape
/// `{suite, size, op, esp_gbps, aead_gbps, ratio}`; the rest add detail.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Suite name ("aes128gcm16").
    pub suite: String,
    /// Plaintext packet size in bytes, or "imix".
    pub size: serde_json::Value,
    /// "encrypt" or "decrypt".
    pub op: String,
    /// Median Gbit/s of plaintext through the full ESP path.
    pub esp_gbps: f64,
    /// Median Gbit/s of plaintext through the bare AEAD (or AES-CBC + HMAC) on the same
    /// buffers.
    pub aead_gbps: f64,
    /// Median of the per-round ratios ESP / AEAD.
    pub ratio: f64,
    /// AEAD (or HMAC) library ("ring", "aws-lc-rs").
    pub backend: String,
    /// Median Mpps through the ESP path.
    pub esp_mpps: f64,
    /// Median Mpps through the bare AEAD (or cipher + MAC).
    pub aead_mpps: f64,
    /// Slowest round of the ESP path, Gbit/s.
    pub esp_gbps_min: f64,
    /// Fastest round of the ESP path, Gbit/s.
    pub esp_gbps_max: f64,
    /// Slowest round of the bare AEAD (or cipher + MAC), Gbit/s.
    pub aead_gbps_min: f64,
    /// Fastest round of the bare AEAD (or cipher + MAC), Gbit/s.
    pub aead_gbps_max: f64,
    /// Lowest per-round ratio.
    pub ratio_min: f64,
    /// Highest per-round ratio.
    pub ratio_max: f64,
    /// Median Gbit/s of the refill alone (the copy both loops include).
    pub copy_gbps: f64,
    /// Rounds measured.
    pub rounds: usize,
}

impl Row {
    /// Summarises the samples of one configuration.
    pub fn new(backend: Backend, suite: Suite, size: Size, op: Op, s: &Samples) -> Row {
        let (esp, aead, ratio) = (s.esp_gbps(), s.aead_gbps(), s.ratio());
        Row {
            suite: suite.name().into(),
            size: match size {
                Size::Fixed(n) => serde_json::json!(n),
                Size::Imix => serde_json::json!("imix"),
            },
            op: op.label().into(),
            esp_gbps: esp.median,
            aead_gbps: aead.median,
            ratio: ratio.median,
            backend: backend.name().into(),
            esp_mpps: s.esp_mpps().median,
            aead_mpps: s.aead_mpps().median,
            esp_gbps_min: esp.min,
            esp_gbps_max: esp.max,
            aead_gbps_min: aead.min,
            aead_gbps_max: aead.max,
            ratio_min: ratio.min,
            ratio_max: ratio.max,
            copy_gbps: s.copy_gbps().median,
            rounds: s.esp.len(),
        }
    }

    /// The size as printed ("64", "imix").
    fn size_label(&self) -> String {
        match &self.size {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        }
    }

    /// One line of the table (columns as in [`header`]).
    pub fn line(&self) -> String {
        format!(
            "{:<9} {:<16} {:>4} {:<7} {:>6.2} {:>11} {:>5.2} {:>6.2} {:>11} {:>5.2} {:>5.3} {:>11} {:>6.1}",
            self.backend,
            self.suite,
            self.size_label(),
            self.op,
            self.esp_gbps,
            format!("{:.1}-{:.1}", self.esp_gbps_min, self.esp_gbps_max),
            self.esp_mpps,
            self.aead_gbps,
            format!("{:.1}-{:.1}", self.aead_gbps_min, self.aead_gbps_max),
            self.aead_mpps,
            self.ratio,
            format!("{:.2}-{:.2}", self.ratio_min, self.ratio_max),
            self.copy_gbps,
        )
    }
}

/// The table header: ESP Gbit/s (min–max) and Mpps, bare AEAD or cipher + MAC Gbit/s
/// (min–max) and Mpps,
/// median ratio (min–max), and the refill-alone Gbit/s.
pub fn header() -> String {
    format!(
        "{:<9} {:<16} {:>4} {:<7} {:>6} {:>11} {:>5} {:>6} {:>11} {:>5} {:>5} {:>11} {:>6}",
        "backend",
        "suite",
        "size",
        "op",
        "ESP",
        "Gbps range",
        "Mpps",
        "bare",
        "Gbps range",
        "Mpps",
        "ratio",
        "range",
        "copy"
    )
}

/// The rows as pretty-printed JSON (an array of objects).
pub fn to_json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|e| format!("\"unserialisable: {e}\""))
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch (proleptic Gregorian calendar).
pub fn utc_datetime(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The current date and time, as [`utc_datetime`].
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_datetime(secs)
}

/// The 1, 5 and 15-minute load averages from `/proc/loadavg` ("?" if unreadable): a busy
/// machine shifts the ratios too, so every run says how busy it was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The CPU model from `/proc/cpuinfo`, or "unknown CPU".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::Rate;

    fn samples() -> Samples {
        let r = |gbps, mpps| Rate { gbps, mpps };
        Samples {
            esp: vec![r(30.0, 2.6), r(28.0, 2.4), r(31.0, 2.7)],
            aead: vec![r(32.0, 2.8), r(30.0, 2.6), r(35.0, 3.0)],
            copy: vec![r(100.0, 9.0)],
        }
    }

    #[test]
    fn json_rows_start_with_the_issue_fields() {
        let row = Row::new(
            Backend::Ring,
            Suite::Aes128Gcm16,
            Size::Fixed(1420),
            Op::Encrypt,
            &samples(),
        );
        let s = serde_json::to_string(&row).unwrap();
        assert!(
            s.starts_with(r#"{"suite":"aes128gcm16","size":1420,"op":"encrypt","esp_gbps":30.0,"aead_gbps":32.0,"ratio":0.9333333333333333,"#),
            "{s}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&to_json(std::slice::from_ref(&row))).unwrap();
        let o = v.as_array().unwrap()[0].as_object().unwrap();
        for k in ["suite", "size", "op", "esp_gbps", "aead_gbps", "ratio"] {
            assert!(o.contains_key(k), "{k}");
        }
        assert_eq!(o["backend"], "ring");
        assert_eq!(o["rounds"], 3);
        // Ratios are per round (30/32, 28/30, 31/35), then the median: 28/30, not the ratio
        // of the medians (30/32).
        assert_eq!(row.ratio, 28.0 / 30.0);
        assert_eq!(row.ratio_min, 31.0 / 35.0);
        let imix = Row::new(
            Backend::AwsLc,
            Suite::Aes256Gcm16,
            Size::Imix,
            Op::Decrypt,
            &samples(),
        );
        assert!(serde_json::to_string(&imix)
            .unwrap()
            .starts_with(r#"{"suite":"aes256gcm16","size":"imix","op":"decrypt""#));
    }

    #[test]
    fn table_line_lines_up_with_the_header() {
        let row = Row::new(
            Backend::AwsLc,
            Suite::Aes128Gcm16,
            Size::Imix,
            Op::Decrypt,
            &samples(),
        );
        let line = row.line();
        assert!(line.contains("imix") && line.contains("0.933") && line.contains("aws-lc-rs"));
        assert_eq!(line.len(), header().len(), "{line}\n{}", header());
    }

    #[test]
    fn dates() {
        assert_eq!(utc_datetime(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_datetime(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
        assert_eq!(utc_datetime(1_795_409_760), "2026-11-23 04:56 UTC");
    }
}
