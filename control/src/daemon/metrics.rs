//! esprit-ike's metrics (`[metrics] listen`): IKE SAs and their state, child SAs and their
//! age, and the endpoint's counters, as OpenMetrics text. Series are named as the IPsec
//! exporters name them (`ipsec_ike_sas`, `ipsec_ike_sa_state`, …). The child SAs' byte and
//! packet counters are the dataplane's (it counts them) and are exposed there only
//! (decision 0018); the `spi` labels written here (`0x…`, eight digits) are the ones the
//! dataplane's series carry, so the two join.

use crate::ike::session::endpoint::EndpointStats;
use crate::ike::session::{Endpoint, Role, State};
use esprit_metrics::{counter, gauge, server_series, Collector, DescriptorEncoder, ServerStats};
use std::fmt;
use std::time::Instant;

/// One IKE SA as the metrics show it.
#[derive(Debug, Clone)]
struct IkeRow {
    name: String,
    spi: String,
    local: String,
    remote: String,
    role: &'static str,
    state: &'static str,
    established_s: Option<u64>,
}

/// One child SA as the metrics show it.
#[derive(Debug, Clone)]
struct ChildRow {
    name: String,
    child: String,
    spi_in: String,
    spi_out: String,
    state: &'static str,
    installed_s: u64,
}

/// What one scrape shows, copied out of the daemon (the encoder needs owned data).
#[derive(Debug, Clone)]
pub struct IkeMetrics {
    ike: Vec<IkeRow>,
    children: Vec<ChildRow>,
    stats: EndpointStats,
    half_open: usize,
    /// Datagrams on the NAT-T port that were neither IKE nor keepalives.
    pub nat_t_not_ike: u64,
    /// Whether the dataplane link is up.
    pub dataplane_connected: bool,
    /// SAs esprit-ike has installed in the dataplane.
    pub sas_installed: usize,
    /// The metrics responder's counters.
    pub server: ServerStats,
}

/// The name of an IKE SA state in `ipsec_ike_sa_state{state}`.
fn state_name(s: State) -> &'static str {
    match s {
        State::InitSent => "connecting",
        State::AuthPending => "authenticating",
        State::Established => "established",
        State::Deleting => "deleting",
        State::Dead => "dead",
    }
}

impl IkeMetrics {
    /// Copies what the metrics show out of `ep` at `now`; the daemon's own figures start at
    /// zero and are set by the caller.
    pub fn of(ep: &Endpoint, now: Instant) -> Self {
        let mut ike = Vec::new();
        let mut children = Vec::new();
        for sa in ep.sas() {
            let name = sa.conn().name.clone();
            let (local, remote) = sa.addrs();
            let (_, established) = sa.times();
            ike.push(IkeRow {
                name: name.clone(),
                spi: format!("{:016x}", sa.local_spi()),
                local: local.ip().to_string(),
                remote: remote.ip().to_string(),
                role: match sa.role() {
                    Role::Initiator => "initiator",
                    Role::Responder => "responder",
                },
                state: state_name(sa.state()),
                established_s: established.map(|t| now.saturating_duration_since(t).as_secs()),
            });
            for c in sa.children() {
                children.push(ChildRow {
                    name: name.clone(),
                    child: c.name.clone(),
                    spi_in: format!("0x{:08x}", c.inbound_spi),
                    spi_out: format!("0x{:08x}", c.outbound_spi),
                    state: if c.rekeying { "rekeying" } else { "installed" },
                    installed_s: now.saturating_duration_since(c.installed).as_secs(),
                });
            }
        }
        ike.sort_by(|a, b| (&a.name, &a.spi).cmp(&(&b.name, &b.spi)));
        children
            .sort_by(|a, b| (&a.name, &a.child, &a.spi_in).cmp(&(&b.name, &b.child, &b.spi_in)));
        IkeMetrics {
            ike,
            children,
            stats: ep.stats().clone(),
            half_open: ep.half_open(),
            nat_t_not_ike: 0,
            dataplane_connected: false,
            sas_installed: 0,
            server: ServerStats::default(),
        }
    }

    /// The OpenMetrics text.
    pub fn exposition(self) -> String {
        esprit_metrics::render(self)
    }
}

const NO_LABELS: [(&str, &str); 0] = [];

impl ChildRow {
    fn labels(&self) -> [(&str, &str); 4] {
        [
            ("name", &self.name),
            ("child", &self.child),
            ("spi_in", &self.spi_in),
            ("spi_out", &self.spi_out),
        ]
    }
}

impl Collector for IkeMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        gauge(
            &mut enc,
            "ipsec_ike_sas",
            "IKE SAs, in every state",
            [(NO_LABELS, self.ike.len() as i64)],
        )?;
        gauge(
            &mut enc,
            "ipsec_ike_sa_state",
            "1 per IKE SA, labelled with its connection, SPI, addresses, role and state",
            self.ike.iter().map(|r| {
                (
                    [
                        ("name", r.name.as_str()),
                        ("spi", &r.spi),
                        ("local", &r.local),
                        ("remote", &r.remote),
                        ("role", r.role),
                        ("state", r.state),
                    ],
                    1,
                )
            }),
        )?;
        gauge(
            &mut enc,
            "ipsec_ike_sa_established_seconds",
            "Seconds since the IKE SA was established",
            self.ike.iter().filter_map(|r| {
                let s = r.established_s?;
                Some(([("name", r.name.as_str()), ("spi", &r.spi)], s as i64))
            }),
        )?;
        gauge(
            &mut enc,
            "ipsec_child_sas",
            "Child SAs (each a pair of SAs in the dataplane)",
            [(NO_LABELS, self.children.len() as i64)],
        )?;
        gauge(
            &mut enc,
            "ipsec_child_sa_state",
            "1 per child SA: installed, or rekeying (replaced or being replaced)",
            self.children.iter().map(|c| {
                let [a, b, d, e] = c.labels();
                ([a, b, d, e, ("state", c.state)], 1)
            }),
        )?;
        gauge(
            &mut enc,
            "ipsec_child_sa_installed_seconds",
            "Seconds since the child SA was installed",
            self.children
                .iter()
                .map(|c| (c.labels(), c.installed_s as i64)),
        )?;
        counter(
            &mut enc,
            "esprit_ike_dropped",
            "IKE datagrams dropped or ignored, by reason (malformed, integrity, retransmit, …)",
            self.stats
                .drops
                .iter()
                .map(|(r, n)| ([("reason", r.name())], n)),
        )?;
        let counters: [(&str, &str, u64); 6] = [
            (
                "esprit_ike_cookies_sent",
                "IKE_SA_INIT requests answered with a COOKIE demand",
                self.stats.cookies_sent,
            ),
            (
                "esprit_ike_cookie_rotations",
                "Times the COOKIE secret was replaced",
                self.stats.cookie_rotations,
            ),
            (
                "esprit_ike_half_open_expired",
                "Half-open IKE SAs removed because IKE_AUTH did not come in time",
                self.stats.half_open_expired,
            ),
            (
                "esprit_ike_retransmissions",
                "Requests of ours retransmitted because no answer came in time",
                self.stats.retransmissions,
            ),
            (
                "esprit_ike_logs_suppressed",
                "Log lines about drops held back by the rate limit",
                self.stats.logs_suppressed,
            ),
            (
                "esprit_ike_nat_t_not_ike",
                "Datagrams on the NAT-T port that are neither IKE nor keepalives",
                self.nat_t_not_ike,
            ),
        ];
        for (name, help, v) in counters {
            counter(&mut enc, name, help, [(NO_LABELS, v)])?;
        }
        let gauges: [(&str, &str, i64); 3] = [
            (
                "esprit_ike_half_open",
                "Half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH awaited)",
                self.half_open as i64,
            ),
            (
                "esprit_ike_dataplane_connected",
                "1 when the dataplane's API answers",
                i64::from(self.dataplane_connected),
            ),
            (
                "esprit_ike_dataplane_sas_installed",
                "SAs esprit-ike has installed in the dataplane",
                self.sas_installed as i64,
            ),
        ];
        for (name, help, v) in gauges {
            gauge(&mut enc, name, help, [(NO_LABELS, v)])?;
        }
        server_series(&mut enc, &self.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::session::tests::{conn_a, conn_b, Pair};

    #[test]
    fn series_of_an_idle_daemon() {
        let ep = Endpoint::new(
            vec![],
            crate::ike::session::EndpointSettings::default(),
            Box::new(crate::ike::rng::SeededRandom::new(1)),
        );
        let mut m = IkeMetrics::of(&ep, Instant::now());
        m.dataplane_connected = true;
        m.sas_installed = 2;
        let text = m.exposition();
        for want in [
            "# TYPE ipsec_ike_sas gauge\nipsec_ike_sas 0\n",
            "# TYPE ipsec_ike_sa_state gauge\n",
            "# TYPE ipsec_child_sa_installed_seconds gauge\n",
            "esprit_ike_dropped_total{reason=\"malformed\"} 0\n",
            "esprit_ike_dropped_total{reason=\"init_refused\"} 0\n",
            "esprit_ike_dropped_total{reason=\"bad_padding\"} 0\n",
            "esprit_ike_retransmissions_total 0\n",
            "esprit_ike_cookies_sent_total 0\n",
            "esprit_ike_dataplane_connected 1\n",
            "esprit_ike_dataplane_sas_installed 2\n",
            "esprit_metrics_requests_total{outcome=\"bad_request\"} 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        let doc = include_str!("../../../docs/operations.md");
        assert_eq!(
            esprit_metrics::undocumented(&text, doc),
            Vec::<String>::new()
        );
    }

    #[test]
    fn metrics_show_the_established_ike_sa_and_its_child() {
        let mut p = Pair::new(conn_a(), conn_b());
        p.up();
        p.now += std::time::Duration::from_secs(3);
        let c = &p.a.sas().next().unwrap().children()[0];
        let (spi_in, spi_out) = (c.inbound_spi, c.outbound_spi);
        let text = IkeMetrics::of(&p.a, p.now).exposition();
        let child = format!(
            "name=\"site-b\",child=\"net\",spi_in=\"0x{spi_in:08x}\",spi_out=\"0x{spi_out:08x}\""
        );
        for want in [
            "ipsec_ike_sas 1\n".to_string(),
            "ipsec_child_sas 1\n".into(),
            format!("ipsec_child_sa_state{{{child},state=\"installed\"}} 1\n"),
            format!("ipsec_child_sa_installed_seconds{{{child}}} 3\n"),
            "role=\"initiator\",state=\"established\"} 1\n".into(),
            "local=\"10.200.0.1\",remote=\"10.200.0.2\"".into(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(text.contains("ipsec_ike_sa_established_seconds{name=\"site-b\",spi=\""));
    }
}
