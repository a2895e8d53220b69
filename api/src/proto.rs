//! Messages of the control API, version 1.
//!
//! A request is one JSON object on one line: `{"version": 1, "id": 7, "op": "sa.list"}`. The
//! answer is one line: `{"version": 1, "id": 7, "ok": true, "result": …}` or
//! `{"version": 1, "id": 7, "ok": false, "error": {"code": "…", "message": "…"}}`. After
//! `{"op": "events"}` the server writes one event object per line until the client hangs up.

use crate::sa::{Direction, SaSpec, Spi};
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
        sa: Box<SaSpec>,
    },
    /// Replace an SA (same SPI, direction and addresses); its counters restart.
    #[serde(rename = "sa.update")]
    SaUpdate {
        /// The SA, as in the SA file.
        sa: Box<SaSpec>,
    },
    /// Remove SAs by SPI and direction (and address, when given).
    #[serde(rename = "sa.delete")]
    SaDelete {
        /// SPI (a number or hex string on the wire).
        spi: Spi,
        /// "in" or "out".
        direction: Direction,
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
    /// What the dataplane runs with: interfaces (XDP and AF_XDP modes, queues) and workers
    /// (queue, pinning, affinity); see [`crate::Runtime`]. Added in version 1 without a
    /// version change: an older daemon refuses it with `bad_request`.
    #[serde(rename = "runtime")]
    Runtime,
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

/// The result of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// `esprit-dataplane`.
    pub daemon: String,
    /// The protocol version the server speaks.
    pub version: u32,
    /// Workers; an inbound SA belongs to worker `SPI mod workers`.
    pub workers: u32,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::{Encap, Mode, SaKey};
    use serde_json::{json, Value};

    fn roundtrip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        line: &str,
    ) -> T {
        let v: T = serde_json::from_str(line).unwrap();
        let again: Value = serde_json::to_value(&v).unwrap();
        let original: Value = serde_json::from_str(line).unwrap();
        assert_eq!(again, original, "{line}");
        assert_eq!(serde_json::from_value::<T>(again).unwrap(), v);
        v
    }

    #[test]
    fn examples_of_docs_api_md() {
        let e: Envelope = roundtrip(r#"{"version": 1, "id": 7, "op": "sa.list"}"#);
        assert_eq!((e.version, e.id, e.request), (1, Some(7), Request::SaList));
        let ok: Response = roundtrip(r#"{"version": 1, "id": 7, "ok": true, "result": []}"#);
        assert!(ok.ok);
        let err: Response = roundtrip(
            r#"{"version": 1, "id": 7, "ok": false, "error": {"code": "not_found", "message": "no in SA with SPI 0x0000c001"}}"#,
        );
        assert_eq!(err.error.unwrap().code, "not_found");
        let ev: EventLine = roundtrip(
            r#"{"version": 1, "event": "soft_expire", "spi": "0xa0000001", "direction": "out", "local": "10.200.0.1", "remote": "10.200.0.2"}"#,
        );
        assert_eq!((ev.event.as_str(), ev.policy), ("soft_expire", None));
    }

    #[test]
    fn every_request_roundtrips() {
        for line in [
            r#"{"version":1,"op":"hello"}"#,
            r#"{"version":1,"id":2,"op":"sa.delete","spi":"0x00000010","direction":"in"}"#,
            r#"{"version":1,"op":"sa.delete","spi":"0x00000010","direction":"out","address":"10.0.0.2"}"#,
            r#"{"version":1,"op":"route.add","prefix":"10.9.0.0/16","tunnel":"192.0.2.1"}"#,
            r#"{"version":1,"op":"route.add","prefix":"10.9.0.0/16","action":"bypass"}"#,
            r#"{"version":1,"op":"route.delete","prefix":"10.9.0.0/16"}"#,
            r#"{"version":1,"op":"route.list"}"#,
            r#"{"version":1,"id":42,"op":"policy.add","policy":7,"local_ts":["10.0.0.0/8"],"remote_ts":[]}"#,
            r#"{"version":1,"op":"policy.delete","policy":7}"#,
            r#"{"version":1,"op":"policy.list"}"#,
            r#"{"version":1,"op":"stats"}"#,
            r#"{"version":1,"op":"events"}"#,
            r#"{"version":1,"op":"runtime"}"#,
        ] {
            roundtrip::<Envelope>(line);
        }
        assert!(serde_json::from_str::<Envelope>(r#"{"version":1,"op":"reboot"}"#).is_err());
    }

    #[test]
    fn sa_add_is_typed_and_accepts_what_the_sa_file_does() {
        let line = r#"{"version":1,"id":1,"op":"sa.add","sa":{"spi":"0x8c77274a","direction":"in","mode":"tunnel","suite":"aes128gcm16","key":"00112233445566778899aabbccddeeff01020304","local":"10.200.0.2","remote":"10.200.0.1","encap":"udp","encap_ports":[4500,4500],"esn":false,"replay_window":1024,"seq":0,"local_ts":["10.201.2.0/24"],"remote_ts":["10.201.1.0/24"],"soft_bytes":1000,"hard_packets":5,"pad_align":16,"owner":"esprit-ike/00ff/site/net"}}"#;
        let e: Envelope = roundtrip(line);
        let Request::SaAdd { sa } = e.request else {
            panic!("not an sa.add")
        };
        assert_eq!(sa.spi, Spi(0x8c77274a));
        assert_eq!(sa.direction, Direction::In);
        assert_eq!((sa.mode, sa.encap), (Some(Mode::Tunnel), Some(Encap::Udp)));
        assert_eq!(sa.owner.as_deref(), Some("esprit-ike/00ff/site/net"));
        // SPIs and sequence numbers as numbers or strings, as in the SA file.
        let sa: SaSpec = serde_json::from_value(json!({
            "spi": 4098, "direction": "out", "suite": "aes256gcm16", "key": "00",
            "local": "::1", "remote": "::2", "seq": "0x10"
        }))
        .unwrap();
        assert_eq!((sa.spi, sa.seq.map(|s| s.0)), (Spi(4098), Some(16)));
        for bad in [
            json!({"spi": 0, "direction": "in", "suite": "x", "key": "", "local": "::1", "remote": "::2"}),
            json!({"spi": 1, "direction": "sideways", "suite": "x", "key": "", "local": "::1", "remote": "::2"}),
            json!({"spi": 1, "direction": "in", "suite": "x", "key": "", "local": "::1", "remote": "::2", "colour": 1}),
            json!({"spi": 1, "direction": "in", "suite": "x", "local": "::1", "remote": "::2"}),
        ] {
            assert!(
                serde_json::from_value::<SaSpec>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_never_show_in_debug() {
        let sa = SaSpec::new(
            Spi(1),
            Direction::Out,
            "aes128gcm16",
            SaKey::from_bytes(&[0xab; 20]),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        );
        assert_eq!(sa.key.expose_hex(), "ab".repeat(20));
        let req = Request::SaAdd { sa: Box::new(sa) };
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("abab") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn spis() {
        assert_eq!(Spi::parse("0x8c77274a"), Some(Spi(0x8c77274a)));
        assert_eq!(Spi::parse("12"), Some(Spi(12)));
        assert_eq!(Spi::parse("0"), None);
        assert_eq!(Spi::parse("0x100000000"), None);
        assert_eq!(Spi(0x10).to_string(), "0x00000010");
        assert!(serde_json::from_value::<Spi>(json!(-1)).is_err());
        assert!(serde_json::from_value::<Spi>(json!(1u64 << 33)).is_err());
    }
}
