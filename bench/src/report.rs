//! The rows `esprit-bench esp` prints and writes as JSON.

use serde::Serialize;

/// One (backend, suite, size, op) result. The first six fields are the issue's JSON shape.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Suite name.
    pub suite: String,
    /// Packet size in bytes, or "imix".
    pub size: serde_json::Value,
    /// "encrypt" or "decrypt".
    pub op: String,
    /// Median Gbit/s of plaintext through the full ESP path.
    pub esp_gbps: f64,
    /// Median Gbit/s through bare AES-GCM on the same buffers.
    pub aead_gbps: f64,
    /// Median of the per-round ratios ESP / AEAD.
    pub ratio: f64,
    /// AES-GCM library.
    pub backend: String,
    /// Median Mpps through the ESP path.
    pub esp_mpps: f64,
    /// Slowest and fastest round of the ESP path.
    pub esp_gbps_min: f64,
    /// Fastest round of the ESP path.
    pub esp_gbps_max: f64,
    /// Slowest round of bare AES-GCM.
    pub aead_gbps_min: f64,
    /// Fastest round of bare AES-GCM.
    pub aead_gbps_max: f64,
    /// Rounds measured.
    pub rounds: usize,
}

/// The table header.
pub fn header() -> String {
    format!(
        "{:<10} {:<12} {:>5} {:<8} {:>9} {:>15} {:>9} {:>9} {:>15} {:>6}",
        "backend",
        "suite",
        "size",
        "op",
        "esp Gbps",
        "(min-max)",
        "esp Mpps",
        "aead Gbps",
        "(min-max)",
        "ratio"
    )
}

impl Row {
    /// One line of the table.
    pub fn line(&self) -> String {
        let size = match &self.size {
            serde_json::Value::Number(n) => n.to_string(),
            v => v.as_str().unwrap_or("?").to_string(),
        };
        format!(
            "{:<10} {:<12} {:>5} {:<8} {:>9.2} {:>15} {:>9.2} {:>9.2} {:>15} {:>6.3}",
            self.backend,
            self.suite,
            size,
            self.op,
            self.esp_gbps,
            format!("({:.1}-{:.1})", self.esp_gbps_min, self.esp_gbps_max),
            self.esp_mpps,
            self.aead_gbps,
            format!("({:.1}-{:.1})", self.aead_gbps_min, self.aead_gbps_max),
            self.ratio
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_issue_fields_first() {
        let r = Row {
            suite: "aes128gcm16".into(),
            size: serde_json::json!(1420),
            op: "encrypt".into(),
            esp_gbps: 30.0,
            aead_gbps: 32.0,
            ratio: 0.94,
            backend: "ring".into(),
            esp_mpps: 2.6,
            esp_gbps_min: 29.0,
            esp_gbps_max: 31.0,
            aead_gbps_min: 31.0,
            aead_gbps_max: 33.0,
            rounds: 5,
        };
        let j = serde_json::to_value(&r).unwrap();
        for k in ["suite", "size", "op", "esp_gbps", "aead_gbps", "ratio"] {
            assert!(j.get(k).is_some(), "{k}");
        }
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.starts_with(r#"{"suite":"aes128gcm16","size":1420,"op":"encrypt","esp_gbps":30.0,"aead_gbps":32.0,"ratio":0.94"#), "{s}");
        assert!(r.line().contains("1420") && r.line().contains("0.940"));
    }
}
