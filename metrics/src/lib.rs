//! Metrics for both esprit daemons: OpenMetrics text built from counters the daemon already
//! keeps ([`render`], [`counter`], [`gauge`]), and a minimal non-blocking HTTP/1.1 responder for
//! `GET /metrics` ([`MetricsServer`]) that the daemon drives from its own event loop.
//!
//! Nothing here keeps metric state: on each scrape the daemon hands a [`Collector`] that owns a
//! copy of its counters, and the text is written from it (decision 0018).

mod http;

pub use http::{MetricsError, MetricsServer, ServerStats, MAX_CONNECTIONS, MAX_REQUEST, TIMEOUT};
pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};

use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

/// The `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics text of everything `collector` writes, ending with `# EOF`.
pub fn render(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    // Writing into a String cannot fail; a collector that fails leaves what it wrote.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Writes a counter family `name` (samples get the `_total` suffix OpenMetrics requires) with
/// one sample per item of `samples`.
pub fn counter<S: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (S, u64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        MetricType::Counter,
        samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
    )
}

/// Writes a gauge family `name` with one sample per item of `samples`.
pub fn gauge<S: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (S, i64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        MetricType::Gauge,
        samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v))),
    )
}

fn family<S: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (S, M)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The responder's own counters as series (`esprit_metrics_*`), for a daemon's collector.
pub fn server_series(enc: &mut DescriptorEncoder, s: &ServerStats) -> fmt::Result {
    counter(
        enc,
        "esprit_metrics_requests",
        "HTTP requests to the metrics listener, by outcome",
        [
            ([("outcome", "ok")], s.ok),
            ([("outcome", "unavailable")], s.unavailable),
            ([("outcome", "bad_request")], s.bad_requests),
            ([("outcome", "not_found")], s.not_found),
            ([("outcome", "timeout")], s.timeouts),
            ([("outcome", "refused")], s.refused),
        ],
    )
}

/// Every family of an exposition is in `doc` (docs/operations.md), as its sample name in
/// backquotes (`_total` for counters); returns the families missing.
pub fn undocumented(exposition: &str, doc: &str) -> Vec<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| match kind {
            "counter" => format!("{name}_total"),
            _ => name.to_string(),
        })
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            gauge(
                &mut enc,
                "ipsec_ike_sas",
                "IKE SAs",
                [(Vec::<(&str, &str)>::new(), 2)],
            )?;
            counter(
                &mut enc,
                "ipsec_child_sa_bytes_in",
                "Bytes",
                [([("name", "site-\"b\"\n"), ("child", "net\\")], 1500)],
            )?;
            server_series(&mut enc, &ServerStats::default())
        }
    }

    #[test]
    fn exposition_is_openmetrics_text() {
        let text = render(Fixed);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE ipsec_ike_sas gauge\nipsec_ike_sas 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ipsec_child_sa_bytes_in counter\n"),
            "{text}"
        );
        // Label values are escaped: quote, newline and backslash.
        assert!(
            text.contains(
                "ipsec_child_sa_bytes_in_total{name=\"site-\\\"b\\\"\\n\",child=\"net\\\\\"} 1500\n"
            ),
            "{text}"
        );
        assert!(text.contains("esprit_metrics_requests_total{outcome=\"timeout\"} 0\n"));
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "a sample is a name with labels and one value: {line}"
            );
        }
    }

    #[test]
    fn undocumented_families_are_found() {
        let text = "# TYPE a counter\na_total 1\n# TYPE b gauge\nb 2\n# EOF\n";
        assert_eq!(
            undocumented(text, "| `a_total` | `b` |"),
            Vec::<String>::new()
        );
        assert_eq!(undocumented(text, "| `a` | `b2` |"), vec!["a_total", "b"]);
    }
}
