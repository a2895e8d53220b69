//! Conversions between the API's typed messages (`esprit_api`) and the dataplane's own types:
//! the SA of `sa.add` becomes an [`SaConfig`] directly, with the SA file's rules; SAs, counters
//! and events become their API views.

use crate::esp::{DropCounters, SaCounters, Suite};
use crate::sa::config::{
    parse_keys, Direction, Lifetime, Mode, SaConfig, UdpEncap, DEFAULT_PAD_ALIGN,
    DEFAULT_REPLAY_WINDOW,
};
use crate::sa::{Prefix, SaEvent, Selectors};
use crate::xdp::socket::XdpStatistics;
use esprit_api::{Encap, EventLine, SaInfo, SaSpec, SocketStats, VERSION};
use std::collections::BTreeMap;

/// Why an SA of `sa.add`/`sa.update` was refused. The message never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sa.{field}: {message}")]
pub struct SaSpecError {
    /// The offending key of the SA object (`suite`, `key`, …; empty for the SA as a whole).
    pub field: &'static str,
    /// What was expected.
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> SaSpecError {
    SaSpecError {
        field,
        message: message.into(),
    }
}

fn selectors(v: &Option<Vec<String>>, field: &'static str) -> Result<Selectors, SaSpecError> {
    let Some(v) = v else {
        return Ok(Selectors::default());
    };
    let prefixes = v
        .iter()
        .map(|s| {
            s.parse::<Prefix>().map_err(|e| {
                bad(
                    field,
                    format!("expected prefixes like \"10.0.1.0/24\": {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Selectors::new(prefixes))
}

fn positive(v: Option<u64>, field: &'static str) -> Result<Option<u64>, SaSpecError> {
    match v {
        Some(0) => Err(bad(field, "expected a positive count")),
        v => Ok(v),
    }
}

/// Builds the dataplane's SA from the typed request, with the rules of the SA file.
pub fn sa_config(s: &SaSpec) -> Result<SaConfig, SaSpecError> {
    let direction = match s.direction {
        esprit_api::Direction::In => Direction::In,
        esprit_api::Direction::Out => Direction::Out,
    };
    let mode = match s.mode.unwrap_or_default() {
        esprit_api::Mode::Tunnel => Mode::Tunnel,
        esprit_api::Mode::Transport => Mode::Transport,
    };
    let suite: Suite = s.suite.parse().map_err(|e: String| bad("suite", e))?;
    let (key, integ_key) = parse_keys(
        suite,
        s.key.expose_hex(),
        s.integ_key.as_ref().map(|k| k.expose_hex()),
    )
    .map_err(|e| bad(e.field, e.message))?;
    if s.local.is_ipv4() != s.remote.is_ipv4() {
        return Err(bad("remote", "expected the same address family as local"));
    }
    let encap = match (s.encap.unwrap_or_default(), s.encap_ports) {
        (Encap::None, None) => None,
        (Encap::None, Some(_)) => {
            return Err(bad("encap_ports", "encap_ports needs encap = \"udp\""))
        }
        (Encap::Udp, None) => Some(UdpEncap::default()),
        (Encap::Udp, Some([src_port, dst_port])) => {
            if src_port == 0 || dst_port == 0 {
                return Err(bad(
                    "encap_ports",
                    "expected two ports in 1..=65535: [source, destination]",
                ));
            }
            Some(UdpEncap { src_port, dst_port })
        }
    };
    let esn = s.esn.unwrap_or(false);
    let replay_window = match s.replay_window {
        None => DEFAULT_REPLAY_WINDOW,
        Some(w) if w <= crate::sa::replay::MAX_WINDOW => w,
        Some(_) => {
            return Err(bad(
                "replay_window",
                format!(
                    "expected a window size in packets, 0..={} (0 disables anti-replay)",
                    crate::sa::replay::MAX_WINDOW
                ),
            ))
        }
    };
    let seq = s.seq.map_or(0, |n| n.0);
    if !esn && seq > u64::from(u32::MAX) {
        return Err(bad("seq", "expected at most 4294967295 without esn = true"));
    }
    if esn && direction == Direction::In && replay_window == 0 {
        return Err(bad(
            "replay_window",
            "esn needs a replay window to infer the high sequence bits: set replay_window > 0",
        ));
    }
    let lifetime = Lifetime {
        soft_bytes: positive(s.soft_bytes, "soft_bytes")?,
        hard_bytes: positive(s.hard_bytes, "hard_bytes")?,
        soft_packets: positive(s.soft_packets, "soft_packets")?,
        hard_packets: positive(s.hard_packets, "hard_packets")?,
    };
    let pad_align = match s.pad_align {
        None => DEFAULT_PAD_ALIGN,
        Some(4) => 4,
        Some(16) => 16,
        Some(_) => {
            return Err(bad(
                "pad_align",
                "expected 4 (RFC 4303 minimum) or 16 (whole AES blocks)",
            ))
        }
    };
    let cfg = SaConfig {
        spi: s.spi.0,
        direction,
        mode,
        suite,
        key,
        integ_key,
        local: s.local,
        remote: s.remote,
        encap,
        esn,
        replay_window,
        seq,
        local_ts: selectors(&s.local_ts, "local_ts")?,
        remote_ts: selectors(&s.remote_ts, "remote_ts")?,
        lifetime,
        pad_align,
        owner: s.owner.clone(),
    };
    cfg.validate().map_err(|m| bad("", m))?;
    Ok(cfg)
}

/// Non-zero drop counters by reason name.
pub fn drops_map(d: &DropCounters) -> BTreeMap<String, u64> {
    d.nonzero()
        .map(|(r, n)| (r.name().to_string(), n))
        .collect()
}

/// The API's view of an SA: configuration without the key, and counters.
pub fn sa_info(cfg: &SaConfig, c: &SaCounters, seq: u64, expired: bool) -> SaInfo {
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

/// Every SA of `db` as the API shows it (what a worker answers for `sa.list`, `stats` and a
/// metrics scrape), in no particular order: the worker answers between two batches, so the
/// sorting is left to whoever merges the answers ([`crate::daemon::router::merge`]).
pub fn sa_infos(db: &crate::sa::SaDb) -> Vec<SaInfo> {
    db.outbound()
        .iter()
        .map(|s| sa_info(&s.cfg, &s.counters, s.seq(), s.is_expired()))
        .chain(
            db.inbound()
                .map(|s| sa_info(&s.cfg, &s.counters, s.replay.top(), s.is_expired())),
        )
        .collect()
}

/// The API's view of an AF_XDP socket's kernel counters.
pub fn socket_stats(s: XdpStatistics) -> SocketStats {
    SocketStats {
        rx_dropped: s.rx_dropped,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
        tx_invalid: s.tx_invalid_descs,
    }
}

/// The API's event line for an SA event.
pub fn event_line(e: &SaEvent) -> EventLine {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> SaSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn typed_sa_follows_the_sa_file_rules() {
        let ok = json!({
            "spi": "0x1000", "direction": "in", "suite": "aes128gcm16",
            "key": "000102030405060708090a0b0c0d0e0f10111213",
            "local": "10.0.0.1", "remote": "10.0.0.2", "esn": true, "seq": 5,
            "local_ts": ["10.1.0.0/16"], "hard_bytes": 1000
        });
        let c = sa_config(&spec(ok.clone())).unwrap();
        assert_eq!(
            (c.spi, c.seq, c.lifetime.hard_bytes),
            (0x1000, 5, Some(1000))
        );
        let mut bad = ok.clone();
        bad["suite"] = json!("des");
        let e = sa_config(&spec(bad)).unwrap_err();
        assert_eq!(e.field, "suite");
        assert!(e.to_string().starts_with("sa.suite: unknown suite"), "{e}");
        let mut short = ok.clone();
        short["key"] = json!("0011");
        let e = sa_config(&spec(short)).unwrap_err().to_string();
        assert!(e.contains("sa.key") && !e.contains("0011"), "{e}");
        let mut owned = ok.clone();
        owned["owner"] = json!("esprit-ike/00ff/site/net");
        let c = sa_config(&spec(owned.clone())).unwrap();
        assert_eq!(c.owner.as_deref(), Some("esprit-ike/00ff/site/net"));
        assert_eq!(sa_info(&c, &SaCounters::default(), 0, false).owner, c.owner);
        owned["owner"] = json!("with space");
        let e = sa_config(&spec(owned)).unwrap_err().to_string();
        assert!(e.contains("owner"), "{e}");
        let mut ports = ok.clone();
        ports["encap_ports"] = json!([4500, 4500]);
        assert_eq!(sa_config(&spec(ports)).unwrap_err().field, "encap_ports");
        let mut window = ok;
        window["replay_window"] = json!(0);
        assert_eq!(sa_config(&spec(window)).unwrap_err().field, "replay_window");
    }

    #[test]
    fn typed_sa_matches_the_sa_file_loader() {
        let text = r#"
[[sa]]
spi = "0x8c77274a"
direction = "out"
mode = "transport"
suite = "aes256gcm16"
key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff01020304"
local = "10.200.0.2"
remote = "10.200.0.1"
encap = "udp"
encap_ports = [4501, 4502]
replay_window = 64
seq = "0x10"
remote_ts = ["10.201.1.0/24"]
soft_packets = 10
pad_align = 16
"#;
        let from_file = crate::sa::file::parse(text, "t").unwrap().remove(0);
        let from_api = sa_config(&spec(json!({
            "spi": "0x8c77274a", "direction": "out", "mode": "transport",
            "suite": "aes256gcm16",
            "key": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff01020304",
            "local": "10.200.0.2", "remote": "10.200.0.1", "encap": "udp",
            "encap_ports": [4501, 4502], "replay_window": 64, "seq": "0x10",
            "remote_ts": ["10.201.1.0/24"], "soft_packets": 10, "pad_align": 16
        })))
        .unwrap();
        assert_eq!(from_file, from_api);
    }

    #[test]
    fn typed_sa_carries_the_cbc_integ_key() {
        let ok = json!({
            "spi": "0x2000", "direction": "out", "suite": "aes128cbc-sha256",
            "key": "000102030405060708090a0b0c0d0e0f",
            "integ_key": "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
            "local": "10.0.0.1", "remote": "10.0.0.2"
        });
        let c = sa_config(&spec(ok.clone())).unwrap();
        assert_eq!(c.suite, Suite::Aes128CbcSha256);
        assert_eq!(
            c.integ_key.as_ref().map(|k| k.expose_secret()[0]),
            Some(0x20)
        );
        let text = "[[sa]]\nspi = \"0x2000\"\ndirection = \"out\"\nsuite = \"aes128cbc-sha256\"\n\
            key = \"000102030405060708090a0b0c0d0e0f\"\n\
            integ_key = \"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\"\n\
            local = \"10.0.0.1\"\nremote = \"10.0.0.2\"\n";
        assert_eq!(crate::sa::file::parse(text, "t").unwrap().remove(0), c);
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("integ_key");
        let e = sa_config(&spec(missing)).unwrap_err();
        assert_eq!(e.field, "integ_key");
        let mut short = ok.clone();
        short["integ_key"] = json!("2021");
        let e = sa_config(&spec(short)).unwrap_err();
        assert!(e.field == "integ_key" && !e.message.contains("2021"), "{e}");
        let mut aead = ok;
        aead["suite"] = json!("chacha20poly1305");
        aead["key"] = json!("00".repeat(36));
        let e = sa_config(&spec(aead.clone())).unwrap_err();
        assert_eq!(e.field, "integ_key", "superfluous for an AEAD");
        aead.as_object_mut().unwrap().remove("integ_key");
        assert_eq!(
            sa_config(&spec(aead)).unwrap().suite,
            Suite::ChaCha20Poly1305
        );
    }
}
