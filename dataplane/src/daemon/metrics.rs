//! The dataplane's metrics (`[metrics] listen`): the workers' counters, read the way the API's
//! `stats` reads them (each worker answers between batches), written as OpenMetrics text. The
//! per-SA byte and packet counters of IKE-keyed SAs are exposed here only, named as the IPsec
//! exporters name them (`ipsec_child_sa_bytes_in`, …) with the connection and child from the
//! SA's owner tag; esprit-ike exposes the IKE and child SA state (decision 0018).

use super::tunnels::{RouteCounters, TunnelCounters};
use crate::esp::DropReason;
use esprit_api::owner::parse_owner;
use esprit_api::{SaInfo, Snapshot, SocketStats};
use esprit_metrics::{counter, gauge, server_series, Collector, DescriptorEncoder, ServerStats};
use std::fmt;

/// What one scrape shows: every worker's snapshot (in worker order) and the responder's own
/// counters.
#[derive(Debug)]
pub struct DataplaneMetrics {
    /// One snapshot per worker, index = worker id.
    pub workers: Vec<Snapshot>,
    /// The metrics responder's counters.
    pub server: ServerStats,
    /// The tunnel interfaces' counters, if any are configured.
    pub tunnels: Option<TunnelCounters>,
    /// The route thread's counters, when there are tunnel interfaces.
    pub routes: Option<RouteCounters>,
}

/// The OpenMetrics text of `workers`' counters (and the tunnel interfaces' and the route
/// thread's, if given).
pub fn exposition(
    workers: Vec<Snapshot>,
    server: ServerStats,
    tunnels: Option<TunnelCounters>,
    routes: Option<RouteCounters>,
) -> String {
    esprit_metrics::render(DataplaneMetrics {
        workers,
        server,
        tunnels,
        routes,
    })
}

const NO_LABELS: [(&str, &str); 0] = [];

/// An SA's labels: connection and child (from its owner tag; empty for manual SAs), SPI and
/// addresses.
struct SaLabels<'a> {
    name: String,
    child: String,
    sa: &'a SaInfo,
}

impl<'a> SaLabels<'a> {
    fn new(sa: &'a SaInfo) -> Self {
        let (name, child) = match sa.owner.as_deref().and_then(parse_owner) {
            Some(o) => (o.conn, o.child),
            None => (String::new(), String::new()),
        };
        SaLabels { name, child, sa }
    }

    fn labels(&self) -> [(&str, &str); 5] {
        [
            ("name", &self.name),
            ("child", &self.child),
            ("spi", &self.sa.spi),
            ("local", &self.sa.local),
            ("remote", &self.sa.remote),
        ]
    }
}

impl DataplaneMetrics {
    /// `(labels, value)` per worker, with `extra` labels after `worker`.
    fn per_worker<'s>(
        &'s self,
        ids: &'s [String],
        extra: &'s [(&'static str, &'static str)],
        f: impl Fn(&Snapshot) -> u64 + 's,
    ) -> impl Iterator<Item = (Vec<(&'s str, &'s str)>, u64)> + 's {
        self.workers.iter().zip(ids).map(move |(s, id)| {
            let mut l = vec![("worker", id.as_str())];
            l.extend(extra.iter().copied());
            (l, f(s))
        })
    }
}

/// A worker's drops by reason: those charged to its SAs, to its SA database (no SA) and to
/// forwarding, added up; every reason, zero or not.
fn drops_by_reason(s: &Snapshot) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    DropReason::ALL.iter().map(move |r| {
        let name = r.name();
        let get = |m: &std::collections::BTreeMap<String, u64>| m.get(name).copied().unwrap_or(0);
        let on_sas: u64 = s.sas.iter().map(|sa| get(&sa.drops)).sum();
        (name, get(&s.sadb_drops) + get(&s.forwarding_drops) + on_sas)
    })
}

type SocketField = fn(&SocketStats) -> u64;
type WorkerField = fn(&Snapshot) -> u64;

impl Collector for DataplaneMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let ids: Vec<String> = (0..self.workers.len()).map(|i| i.to_string()).collect();
        gauge(
            &mut enc,
            "esprit_dataplane_workers",
            "Forwarding workers (one per queue)",
            [(NO_LABELS, self.workers.len() as i64)],
        )?;
        let lw = [("direction", "lan_to_wan")];
        let wl = [("direction", "wan_to_lan")];
        counter(
            &mut enc,
            "esprit_dataplane_packets",
            "Frames forwarded, by worker and direction (fragments one by one)",
            self.per_worker(&ids, &lw, |s| s.lan_to_wan)
                .chain(self.per_worker(&ids, &wl, |s| s.wan_to_lan)),
        )?;
        let mut drops = Vec::with_capacity(self.workers.len() * DropReason::COUNT);
        for (s, id) in self.workers.iter().zip(&ids) {
            for (reason, n) in drops_by_reason(s) {
                drops.push(([("worker", id.as_str()), ("reason", reason)], n));
            }
        }
        counter(
            &mut enc,
            "esprit_dataplane_drops",
            "Frames dropped, by worker and reason (each drop once: against its SA, the SA database or forwarding)",
            drops,
        )?;
        let (sent, received, dropped) = (
            [("outcome", "sent")],
            [("outcome", "received")],
            [("outcome", "dropped")],
        );
        counter(
            &mut enc,
            "esprit_dataplane_handoffs",
            "Packets handed to the worker that owns their SA, by worker and outcome (dropped: the ring was full)",
            self.per_worker(&ids, &sent, |s| s.handoff_sent)
                .chain(self.per_worker(&ids, &received, |s| s.handoff_received))
                .chain(self.per_worker(&ids, &dropped, |s| s.handoff_dropped)),
        )?;
        let simple: [(&str, &str, WorkerField); 9] = [
            (
                "esprit_dataplane_bypassed",
                "Packets forwarded in the clear by a bypass route",
                |s| s.bypassed,
            ),
            (
                "esprit_dataplane_icmp_errors_sent",
                "ICMP errors sent (time exceeded, packet too big)",
                |s| s.icmp_sent,
            ),
            (
                "esprit_dataplane_mss_clamped",
                "TCP SYNs whose MSS was lowered",
                |s| s.mss_clamped,
            ),
            (
                "esprit_dataplane_checksums_completed",
                "LAN packets whose offloaded checksum the gateway completed",
                |s| s.checksums_completed,
            ),
            (
                "esprit_dataplane_fragmented",
                "Packets fragmented to fit the tunnel",
                |s| s.fragmented,
            ),
            (
                "esprit_dataplane_fragments",
                "Fragments those packets became",
                |s| s.fragments,
            ),
            (
                "esprit_dataplane_neigh_queued",
                "Frames that waited for a next hop to resolve",
                |s| s.neigh_queued,
            ),
            (
                "esprit_dataplane_neigh_released",
                "Waiting frames sent once their next hop resolved",
                |s| s.neigh_released,
            ),
            (
                "esprit_dataplane_events_lost",
                "SA events (expiry, acquire) lost because the event channel was full",
                |s| s.events_lost,
            ),
        ];
        for (name, help, f) in simple {
            counter(&mut enc, name, help, self.per_worker(&ids, &[], f))?;
        }
        let sockets: [(&str, &str, SocketField); 4] = [
            (
                "esprit_dataplane_xsk_rx_dropped",
                "AF_XDP: frames the kernel dropped on receive, by worker and interface",
                |s| s.rx_dropped,
            ),
            (
                "esprit_dataplane_xsk_rx_ring_full",
                "AF_XDP: frames dropped because the RX ring was full",
                |s| s.rx_ring_full,
            ),
            (
                "esprit_dataplane_xsk_fill_ring_empty",
                "AF_XDP: times the fill ring was empty",
                |s| s.rx_fill_ring_empty,
            ),
            (
                "esprit_dataplane_xsk_tx_invalid",
                "AF_XDP: invalid TX descriptors",
                |s| s.tx_invalid,
            ),
        ];
        let (lan, wan) = ([("interface", "lan")], [("interface", "wan")]);
        for (name, help, f) in sockets {
            counter(
                &mut enc,
                name,
                help,
                self.per_worker(&ids, &lan, move |s| f(&s.lan_socket))
                    .chain(self.per_worker(&ids, &wan, move |s| f(&s.wan_socket))),
            )?;
        }
        let all: Vec<&SaInfo> = self.workers.iter().flat_map(|s| &s.sas).collect();
        let inbound = all.iter().filter(|s| s.direction == "in").count() as i64;
        gauge(
            &mut enc,
            "esprit_dataplane_sas",
            "SAs installed, by direction",
            [
                ([("direction", "in")], inbound),
                ([("direction", "out")], all.len() as i64 - inbound),
            ],
        )?;
        let labelled: Vec<SaLabels> = all.iter().map(|s| SaLabels::new(s)).collect();
        for (dir, bytes, packets) in [
            ("in", "ipsec_child_sa_bytes_in", "ipsec_child_sa_packets_in"),
            (
                "out",
                "ipsec_child_sa_bytes_out",
                "ipsec_child_sa_packets_out",
            ),
        ] {
            let of_dir = || labelled.iter().filter(move |l| l.sa.direction == dir);
            counter(
                &mut enc,
                bytes,
                "Plaintext bytes through the SA (name and child: its IKE connection and child; empty for manual SAs)",
                of_dir().map(|l| (l.labels(), l.sa.bytes)),
            )?;
            counter(
                &mut enc,
                packets,
                "Packets through the SA",
                of_dir().map(|l| (l.labels(), l.sa.packets)),
            )?;
        }
        if let Some(t) = &self.tunnels {
            counter(
                &mut enc,
                "esprit_dataplane_tunnel_interface_packets",
                "Packets between the gateway's own stack and the tunnels, through tunnel interfaces, by direction",
                [
                    ([("direction", "from_stack")], t.read),
                    ([("direction", "to_stack")], t.written),
                ],
            )?;
            counter(
                &mut enc,
                "esprit_dataplane_tunnel_interface_drops",
                "Packets between the stack and the tunnels dropped, by reason (no_sa: no SA towards the interface's peer)",
                [
                    ([("reason", "no_sa")], t.no_sa),
                    ([("reason", "ring_full")], t.ring_full),
                    ([("reason", "write_error")], t.write_errors),
                ],
            )?;
        }
        if let Some(r) = &self.routes {
            let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            gauge(
                &mut enc,
                "esprit_dataplane_kernel_routes",
                "Kernel routes through tunnel interfaces in the workers' table",
                [(NO_LABELS, g(r.routes))],
            )?;
            gauge(
                &mut enc,
                "esprit_dataplane_kernel_routes_over_limit",
                "Kernel routes through tunnel interfaces left out (routing.max_routes)",
                [(NO_LABELS, g(r.over_limit))],
            )?;
            counter(
                &mut enc,
                "esprit_dataplane_route_messages",
                "Kernel route notifications, by outcome (read, or malformed and skipped)",
                [
                    ([("outcome", "read")], r.messages),
                    ([("outcome", "malformed")], r.malformed),
                ],
            )?;
            counter(
                &mut enc,
                "esprit_dataplane_route_table_reads",
                "Full reads of the kernel's route table, by cause (all, and after lost notifications)",
                [([("cause", "any")], r.dumps), ([("cause", "lost")], r.lost)],
            )?;
        }
        server_series(&mut enc, &self.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(spi: u32, dir: &str, owner: Option<&str>, bytes: u64) -> SaInfo {
        let mut s = esprit_testkit::sa_info(spi, dir, owner.map(Into::into));
        s.bytes = bytes;
        s.packets = 3;
        s.drops.insert("replayed".into(), 2);
        s
    }

    fn worker(sas: Vec<SaInfo>) -> Snapshot {
        let mut s = crate::daemon::router::merge(vec![]);
        s.sas = sas;
        s.workers = 1;
        s.lan_to_wan = 7;
        s.forwarding_drops.insert("ttl_exceeded".into(), 1);
        s.sadb_drops.insert("replayed".into(), 5);
        s.wan_socket.rx_ring_full = 4;
        s
    }

    #[test]
    fn every_series_is_there_with_its_labels() {
        let text = exposition(
            vec![
                worker(vec![
                    sa(0xc001, "in", Some("esprit-ike/00ff/site%20b/net"), 1500),
                    sa(0xc002, "out", None, 99),
                ]),
                worker(vec![]),
            ],
            ServerStats::default(),
            Some(TunnelCounters {
                read: 12,
                ..TunnelCounters::default()
            }),
            Some(RouteCounters {
                routes: 7,
                over_limit: 2,
                ..Default::default()
            }),
        );
        assert!(
            text.contains("esprit_dataplane_kernel_routes 7\n"),
            "{text}"
        );
        assert!(
            text.contains("esprit_dataplane_kernel_routes_over_limit 2\n"),
            "{text}"
        );
        for want in [
            "esprit_dataplane_workers 2\n",
            "esprit_dataplane_packets_total{worker=\"0\",direction=\"lan_to_wan\"} 7\n",
            "esprit_dataplane_packets_total{worker=\"1\",direction=\"wan_to_lan\"} 0\n",
            // Worker 0: 5 without an SA, 2 on the SA that has them (the other SA has 2 too).
            "esprit_dataplane_drops_total{worker=\"0\",reason=\"replayed\"} 9\n",
            "esprit_dataplane_drops_total{worker=\"0\",reason=\"ttl_exceeded\"} 1\n",
            "esprit_dataplane_drops_total{worker=\"1\",reason=\"frag_limit\"} 0\n",
            "esprit_dataplane_handoffs_total{worker=\"1\",outcome=\"dropped\"} 0\n",
            "esprit_dataplane_xsk_rx_ring_full_total{worker=\"0\",interface=\"wan\"} 4\n",
            "esprit_dataplane_events_lost_total{worker=\"0\"} 0\n",
            "esprit_dataplane_sas{direction=\"in\"} 1\n",
            "esprit_dataplane_tunnel_interface_packets_total{direction=\"from_stack\"} 12\n",
            "esprit_dataplane_tunnel_interface_drops_total{reason=\"no_sa\"} 0\n",
            "ipsec_child_sa_bytes_in_total{name=\"site b\",child=\"net\",spi=\"0x0000c001\",local=\"10.200.0.1\",remote=\"10.200.0.2\"} 1500\n",
            "ipsec_child_sa_packets_in_total{name=\"site b\",child=\"net\",spi=\"0x0000c001\",local=\"10.200.0.1\",remote=\"10.200.0.2\"} 3\n",
            "ipsec_child_sa_bytes_out_total{name=\"\",child=\"\",spi=\"0x0000c002\",local=\"10.200.0.1\",remote=\"10.200.0.2\"} 99\n",
            "esprit_metrics_requests_total{outcome=\"ok\"} 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(
            text.matches("esprit_dataplane_drops_total{").count(),
            2 * DropReason::COUNT
        );
        assert!(!text.contains("key"), "no key material, not even the word");
        let doc = include_str!("../../../docs/operations.md");
        assert_eq!(
            esprit_metrics::undocumented(&text, doc),
            Vec::<String>::new()
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
