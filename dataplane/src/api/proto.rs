//! Messages of the control API, version 1.
//!
//! A request is one JSON object on one line: `{"version": 1, "id": 7, "op": "sa.list"}`. The
//! answer is one line: `{"version": 1, "id": 7, "ok": true, "result": …}` or
//! `{"version": 1, "id": 7, "ok": false, "error": {"code": "…", "message": "…"}}`. After
//! `{"op": "events"}` the server writes one event object per line until the client hangs up.

use crate::esp::{DropCounters, SaCounters};
use crate::sa::{SaConfig, SaEvent};
use crate::xdp::socket::XdpStatistics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// A request, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Request {
    /// Who is there, and which version.
    #[serde(rename = "hello")]
    Hello,
    /// Install an SA; `sa` has the keys of an `[[sa]]` table of the SA file.
    #[serde(rename = "sa.add")]
    SaAdd {
        /// The SA, as in the SA file.
        sa: serde_json::Value,
    },
    /// Replace an SA (same SPI, direction and addresses); its counters restart.
    #[serde(rename = "sa.update")]
    SaUpdate {
        /// The SA, as in the SA file.
        sa: serde_json::Value,
    },
    /// Remove SAs by SPI and direction (and address, when given).
    #[serde(rename = "sa.delete")]
    SaDelete {
        /// SPI as a number or hex string.
        spi: serde_json::Value,
        /// "in" or "out".
        direction: String,
        /// For "in": the local address; for "out": the remote address. Optional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<std::net::IpAddr>,
    },
    /// Every SA with its counters (never keys).
    #[serde(rename = "sa.list")]
    SaList,
    /// Add or replace a route: `tunnel` (the peer whose outbound SA carries the prefix), or
    /// `action` "bypass" (forward in the clear) or "drop".
    #[serde(rename = "route.add")]
    RouteAdd {
        /// Destination prefix.
        prefix: String,
        /// Peer address of a route-based tunnel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tunnel: Option<std::net::IpAddr>,
        /// "bypass" or "drop" (or "tunnel" with `tunnel`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
    },
    /// Remove a route.
    #[serde(rename = "route.delete")]
    RouteDelete {
        /// Destination prefix.
        prefix: String,
    },
    /// Every route.
    #[serde(rename = "route.list")]
    RouteList,
    /// Add or replace a trap policy: traffic from `local_ts` to `remote_ts` that no SA carries
    /// is dropped and raises an `acquire` event, so the control plane negotiates its SA.
    #[serde(rename = "policy.add")]
    PolicyAdd {
        /// Identifier, echoed in acquire events (named `policy`: `id` is the envelope's).
        policy: u32,
        /// Source prefixes (this side).
        local_ts: Vec<String>,
        /// Destination prefixes (the peer's side).
        remote_ts: Vec<String>,
    },
    /// Remove a trap policy.
    #[serde(rename = "policy.delete")]
    PolicyDelete {
        /// Its identifier.
        policy: u32,
    },
    /// Every trap policy.
    #[serde(rename = "policy.list")]
    PolicyList,
    /// Counters of the whole dataplane.
    #[serde(rename = "stats")]
    Stats,
    /// Subscribe to events (expiry, sequence exhaustion); the connection becomes a stream.
    #[serde(rename = "events")]
    Events,
}

/// A request with its envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version of the sender.
    pub version: u32,
    /// Echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_request`, `unsupported_version`, `invalid_sa`,
    /// `exists`, `not_found`, `unavailable`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the server.
    pub version: u32,
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Success or not.
    pub ok: bool,
    /// The result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A success.
    pub fn ok(id: Option<u64>, result: serde_json::Value) -> Self {
        Response {
            version: VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Option<u64>, code: &str, message: impl Into<String>) -> Self {
        Response {
            version: VERSION,
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.to_string(),
                message: message.into(),
            }),
        }
    }
}

/// An SA as the API shows it: configuration without the key, and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaInfo {
    /// `0x… in a->b`.
    pub label: String,
    /// SPI, hex.
    pub spi: String,
    /// "in" or "out".
    pub direction: String,
    /// "tunnel" or "transport".
    pub mode: String,
    /// Suite name.
    pub suite: String,
    /// Local outer address.
    pub local: String,
    /// Remote outer address.
    pub remote: String,
    /// `[src, dst]` UDP ports when encapsulated.
    pub encap: Option<[u16; 2]>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Out: last sequence number sent. In: highest received.
    pub seq: u64,
    /// Replay window (inbound).
    pub replay_window: u32,
    /// Packets processed.
    pub packets: u64,
    /// Plaintext bytes processed.
    pub bytes: u64,
    /// Drops by reason (non-zero only).
    pub drops: BTreeMap<String, u64>,
    /// A hard lifetime limit was reached.
    pub expired: bool,
    /// The owner tag the control plane gave the SA (absent for manual SAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Non-zero drop counters by reason name.
pub fn drops_map(d: &DropCounters) -> BTreeMap<String, u64> {
    d.nonzero()
        .map(|(r, n)| (r.name().to_string(), n))
        .collect()
}

impl SaInfo {
    /// Builds the view of an SA.
    pub fn new(cfg: &SaConfig, c: &SaCounters, seq: u64, expired: bool) -> Self {
        SaInfo {
            label: cfg.label(),
            spi: format!("0x{:08x}", cfg.spi),
            direction: cfg.direction.to_string(),
            mode: cfg.mode.to_string(),
            suite: cfg.suite.to_string(),
            local: cfg.local.to_string(),
            remote: cfg.remote.to_string(),
            encap: cfg.encap.map(|e| [e.src_port, e.dst_port]),
            esn: cfg.esn,
            seq,
            replay_window: cfg.replay_window,
            packets: c.packets,
            bytes: c.bytes,
            drops: drops_map(&c.drops),
            expired,
            owner: cfg.owner.clone(),
        }
    }
}

/// Kernel counters of one AF_XDP socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketStats {
    /// Dropped by the kernel.
    pub rx_dropped: u64,
    /// RX ring was full.
    pub rx_ring_full: u64,
    /// Fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty: u64,
    /// Invalid TX descriptors.
    pub tx_invalid: u64,
}

impl From<XdpStatistics> for SocketStats {
    fn from(s: XdpStatistics) -> Self {
        SocketStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_invalid: s.tx_invalid_descs,
        }
    }
}

/// The state of a worker at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every SA.
    pub sas: Vec<SaInfo>,
    /// Drops not charged to an SA.
    pub sadb_drops: BTreeMap<String, u64>,
    /// Forwarding drops.
    pub forwarding_drops: BTreeMap<String, u64>,
    /// Frames forwarded LAN→WAN.
    pub lan_to_wan: u64,
    /// Frames forwarded WAN→LAN.
    pub wan_to_lan: u64,
    /// ICMP errors sent (time exceeded, packet too big).
    #[serde(default)]
    pub icmp_sent: u64,
    /// TCP SYNs whose MSS was clamped.
    #[serde(default)]
    pub mss_clamped: u64,
    /// Packets handed to the worker owning their SA.
    #[serde(default)]
    pub handoff_sent: u64,
    /// Packets received from other workers.
    #[serde(default)]
    pub handoff_received: u64,
    /// Packets dropped because a handoff ring was full.
    #[serde(default)]
    pub handoff_dropped: u64,
    /// Workers reporting.
    #[serde(default)]
    pub workers: u64,
    /// Packets forwarded in the clear by bypass routes.
    #[serde(default)]
    pub bypassed: u64,
    /// LAN packets whose partial (offloaded) transport checksum was completed.
    #[serde(default)]
    pub checksums_completed: u64,
    /// IPv4 packets without DF fragmented to fit the tunnel.
    #[serde(default)]
    pub fragmented: u64,
    /// Fragments those packets became.
    #[serde(default)]
    pub fragments: u64,
    /// Kernel counters of the LAN socket.
    pub lan_socket: SocketStats,
    /// Kernel counters of the WAN socket.
    pub wan_socket: SocketStats,
    /// Events lost because nobody collected them in time.
    pub events_lost: u64,
    /// Frames that waited for their next hop's link-layer address.
    #[serde(default)]
    pub neigh_queued: u64,
    /// Waiting frames sent once their next hop resolved.
    #[serde(default)]
    pub neigh_released: u64,
}

impl Snapshot {
    /// A human-readable table (what `esprit-dataplane` prints on exit and `espctl stats` shows).
    pub fn render(&self) -> String {
        let s = self;
        let mut out = String::new();
        out.push_str(&format!(
            "{:<44} {:<12} {:>10} {:>14}  drops\n",
            "SA", "suite", "packets", "bytes"
        ));
        for sa in &s.sas {
            let d: Vec<_> = sa.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(
                "{:<44} {:<12} {:>10} {:>14}  {}{}\n",
                sa.label,
                sa.suite,
                sa.packets,
                sa.bytes,
                if d.is_empty() {
                    "-".into()
                } else {
                    d.join(" ")
                },
                if sa.expired { "  (expired)" } else { "" }
            ));
        }
        for (what, m) in [
            ("no SA", &s.sadb_drops),
            ("forwarding", &s.forwarding_drops),
        ] {
            let d: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(
                "drops ({what}): {}\n",
                if d.is_empty() {
                    "-".into()
                } else {
                    d.join(" ")
                }
            ));
        }
        out.push_str(&format!(
            "forwarded: lan->wan {}  wan->lan {}  bypassed {}  icmp errors sent {}  mss clamped {}\n",
            s.lan_to_wan, s.wan_to_lan, s.bypassed, s.icmp_sent, s.mss_clamped
        ));
        out.push_str(&format!(
            "next hops: frames queued while resolving {}  released {}\n",
            s.neigh_queued, s.neigh_released
        ));
        out.push_str(&format!(
            "checksums completed {}  fragmented {} into {} fragments\n",
            s.checksums_completed, s.fragmented, s.fragments
        ));
        if s.workers > 1 {
            out.push_str(&format!(
                "workers: {}  handoff sent {} received {} dropped {}\n",
                s.workers, s.handoff_sent, s.handoff_received, s.handoff_dropped
            ));
        }
        out
    }
}

/// An event line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// Protocol version.
    pub version: u32,
    /// `soft_expire`, `hard_expire`, `seq_exhausted`.
    pub event: String,
    /// SPI, hex.
    pub spi: String,
    /// "in" or "out".
    pub direction: String,
    /// Local outer address.
    pub local: String,
    /// Remote outer address.
    pub remote: String,
    /// For `acquire`: the trap policy's id (`local`/`remote` are then the packet's source and
    /// destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<u32>,
}

impl From<&SaEvent> for EventLine {
    fn from(e: &SaEvent) -> Self {
        EventLine {
            version: VERSION,
            event: e.kind.name().to_string(),
            spi: format!("0x{:08x}", e.spi),
            direction: e.direction.to_string(),
            local: e.local.to_string(),
            remote: e.remote.to_string(),
            policy: e.policy,
        }
    }
}

/// Reads an SPI given as a number or a hex/decimal string.
pub fn parse_spi(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|x| u32::try_from(x).ok()),
        serde_json::Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        }
        _ => None,
    }
    .filter(|&x| x != 0)
}

/// Converts an SA given as JSON (the keys of an SA file's `[[sa]]` table) through the SA file
/// loader, so both paths share one set of rules and messages.
pub fn sa_from_json(v: &serde_json::Value) -> Result<SaConfig, String> {
    if !v.is_object() {
        return Err("sa must be an object with the keys of an SA file's [[sa]] table".into());
    }
    let table: toml::Value = toml::Value::try_from(v).map_err(|e| format!("sa: {e}"))?;
    let mut root = toml::map::Map::new();
    root.insert("sa".into(), toml::Value::Array(vec![table]));
    // The text holds the key: wipe it when done.
    let text = zeroize::Zeroizing::new(
        toml::to_string(&toml::Value::Table(root)).map_err(|e| format!("sa: {e}"))?,
    );
    let mut sas = crate::sa::file::parse(&text, "request").map_err(|e| {
        let key = e
            .key
            .map(|k| k.replace("sa[0].", "sa."))
            .unwrap_or_default();
        if key.is_empty() {
            e.message
        } else {
            format!("{key}: {}", e.message)
        }
    })?;
    Ok(sas.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_roundtrip_through_json() {
        let e: Envelope = serde_json::from_str(r#"{"version":1,"id":3,"op":"sa.list"}"#).unwrap();
        assert_eq!(
            (e.version, e.id, e.request.clone()),
            (1, Some(3), Request::SaList)
        );
        let line = serde_json::to_string(&Envelope {
            version: 1,
            id: None,
            request: Request::SaDelete {
                spi: json!("0x10"),
                direction: "in".into(),
                address: None,
            },
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"version":1,"op":"sa.delete","spi":"0x10","direction":"in"}"#
        );
        assert!(serde_json::from_str::<Envelope>(r#"{"version":1,"op":"reboot"}"#).is_err());
        // No request field may shadow the envelope's `id`.
        let e = Envelope {
            version: 1,
            id: Some(42),
            request: Request::PolicyAdd {
                policy: 7,
                local_ts: vec!["10.0.0.0/8".into()],
                remote_ts: vec![],
            },
        };
        let back: Envelope = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn sa_json_goes_through_the_sa_file_rules() {
        let ok = json!({
            "spi": "0x1000", "direction": "in", "suite": "aes128gcm16",
            "key": "000102030405060708090a0b0c0d0e0f10111213",
            "local": "10.0.0.1", "remote": "10.0.0.2", "esn": true, "seq": 5,
            "local_ts": ["10.1.0.0/16"], "hard_bytes": 1000
        });
        let c = sa_from_json(&ok).unwrap();
        assert_eq!(
            (c.spi, c.seq, c.lifetime.hard_bytes),
            (0x1000, 5, Some(1000))
        );
        let mut bad = ok.clone();
        bad["suite"] = json!("des");
        let e = sa_from_json(&bad).unwrap_err();
        assert!(e.starts_with("sa.suite: unknown suite"), "{e}");
        let mut short = ok.clone();
        short["key"] = json!("0011");
        let e = sa_from_json(&short).unwrap_err();
        assert!(e.contains("sa.key") && !e.contains("0011"), "{e}");
        assert!(sa_from_json(&json!([1, 2])).is_err());
        let mut owned = ok.clone();
        owned["owner"] = json!("esprit-ike/00ff/site/net");
        let c = sa_from_json(&owned).unwrap();
        assert_eq!(c.owner.as_deref(), Some("esprit-ike/00ff/site/net"));
        let info = SaInfo::new(&c, &SaCounters::default(), 0, false);
        assert_eq!(info.owner, c.owner);
        owned["owner"] = json!("with space");
        let e = sa_from_json(&owned).unwrap_err();
        assert!(e.contains("owner"), "{e}");
    }

    #[test]
    fn spis() {
        assert_eq!(parse_spi(&json!(5)), Some(5));
        assert_eq!(parse_spi(&json!("0x8c77274a")), Some(0x8c77274a));
        assert_eq!(parse_spi(&json!("12")), Some(12));
        assert_eq!(parse_spi(&json!(0)), None);
        assert_eq!(parse_spi(&json!(-1)), None);
        assert_eq!(parse_spi(&json!(1u64 << 33)), None);
    }
}
