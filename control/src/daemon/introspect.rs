//! What `espctl ike list-conns`, `list-certs`, `list-algs` and `monitor` show: the configured
//! connections, the certificates esprit-ike loaded, the algorithms it implements, and its events
//! as they happen, as JSON. Nothing here carries key material: PSKs, private keys and SA keys
//! never appear, only names, identities, SPIs and algorithms.

use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{AuthMethod, Config, DpdAction, Mode, StartAction};
use crate::ike::crypto::Certificate;
use crate::ike::session::ts::display;
use crate::ike::session::{Endpoint, IkeEvent, LocalCredential, RemoteCredential, State};

fn start_action(a: StartAction) -> &'static str {
    match a {
        StartAction::None => "none",
        StartAction::Start => "start",
        StartAction::Trap => "trap",
    }
}

fn dpd_action(a: DpdAction) -> &'static str {
    match a {
        DpdAction::Clear => "clear",
        DpdAction::Trap => "trap",
        DpdAction::Restart => "restart",
    }
}

fn auth(a: AuthMethod) -> &'static str {
    match a {
        AuthMethod::Psk => "psk",
        AuthMethod::Pubkey => "pubkey",
    }
}

fn secs(d: Option<std::time::Duration>) -> Value {
    d.map_or(Value::Null, |d| d.as_secs().into())
}

fn strings<T: std::fmt::Display>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// Every configured connection, in file order, with how many of its IKE SAs are established.
pub fn conns_json(cfg: &Config, ep: &Endpoint) -> Value {
    Value::Array(
        cfg.connections
            .iter()
            .map(|c| {
                let up = ep
                    .sas()
                    .filter(|s| s.conn().name == c.name && s.state() == State::Established)
                    .count();
                let children: Vec<Value> = c
                    .children
                    .iter()
                    .map(|ch| {
                        json!({
                            "name": ch.name,
                            "local_ts": strings(&ch.local_ts),
                            "remote_ts": strings(&ch.remote_ts),
                            "esp_proposals": strings(&ch.esp_proposals),
                            "mode": match ch.mode { Mode::Tunnel => "tunnel", Mode::Transport => "transport" },
                            "start_action": start_action(c.start_action_of(ch)),
                            "dpd_action": dpd_action(c.dpd_action_of(ch)),
                            "rekey_time_s": secs(ch.rekey_time),
                            "life_time_s": secs(ch.life_time),
                            "replay_window": ch.replay_window,
                        })
                    })
                    .collect();
                json!({
                    "name": c.name,
                    "local_addrs": strings(&c.local_addrs),
                    "remote_addrs": strings(&c.remote_addrs),
                    "local_port": c.local_port,
                    "remote_port": c.remote_port,
                    "proposals": strings(&c.proposals),
                    "local_auth": auth(c.local.auth),
                    "local_id": c.local.id.as_ref().map(ToString::to_string),
                    "remote_auth": auth(c.remote.auth),
                    "remote_id": c.remote.id.as_ref().map(ToString::to_string),
                    "start_action": start_action(c.start_action),
                    "dpd_delay_s": secs(c.dpd_delay),
                    "dpd_action": dpd_action(c.dpd_action),
                    "rekey_time_s": secs(c.rekey_time),
                    "reauth_time_s": secs(c.reauth_time),
                    "encap": c.encap,
                    "fragmentation": c.fragmentation,
                    "ike_sas_established": up,
                    "children": children,
                })
            })
            .collect(),
    )
}

fn cert_json(c: &Certificate, conn: &str, role: &str) -> Value {
    let when = |t: i64| {
        x509_parser::time::ASN1Time::from_timestamp(t)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| format!("@{t}"))
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    json!({
        "conn": conn,
        "role": role,
        "subject": c.subject().to_string(),
        "issuer": c.issuer().to_string(),
        "alt_names": strings(c.alt_names()),
        "not_before": when(c.not_before()),
        "not_after": when(c.not_after()),
        "valid_now": c.not_before() <= now && now <= c.not_after(),
        "ca": c.is_ca(),
        "spki_sha1": c.spki_sha1().iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
}

/// The certificates esprit-ike loaded for its connections: each connection's own
/// certificate and intermediates (`local`), and the CAs its peer must chain to (`ca`).
pub fn certs_json(ep: &Endpoint) -> Value {
    let mut out = Vec::new();
    for c in ep.connections() {
        if let LocalCredential::Pubkey { certs, .. } = &c.local_auth {
            for (i, cert) in certs.iter().enumerate() {
                let role = if i == 0 { "local" } else { "intermediate" };
                out.push(cert_json(cert, &c.name, role));
            }
        }
        if let RemoteCredential::Pubkey { trust, .. } = &c.remote_auth {
            for cert in trust.cas() {
                out.push(cert_json(cert, &c.name, "ca"));
            }
        }
    }
    Value::Array(out)
}

/// The algorithms esprit-ike implements, by transform type, with the keywords a proposal
/// may use for each.
pub fn algs_json() -> Value {
    let kinds = crate::config::proposal_keywords();
    Value::Array(
        kinds
            .into_iter()
            .map(|k| {
                json!({
                    "type": k.kind,
                    "name": k.name,
                    "iana_id": k.iana_id,
                    "keywords": k.keywords,
                    "ike": k.ike,
                    "esp": k.esp,
                })
            })
            .collect(),
    )
}

fn ike_sa(spi: u64) -> String {
    super::control::ike_id(spi)
}

/// An event for `espctl monitor`, or None for what is not one (log lines go to the log).
pub fn event_json(e: &IkeEvent) -> Option<Value> {
    let time = esprit_log::rfc3339_millis(SystemTime::now());
    let v = match e {
        IkeEvent::IkeUp {
            ike_sa: spi,
            conn,
            remote_id,
            suite,
            ..
        } => json!({
            "event": "ike_up", "conn": conn, "ike_sa": ike_sa(*spi),
            "remote_id": remote_id.to_string(),
            "suite": suite.name(),
        }),
        IkeEvent::IkeDown {
            ike_sa: spi,
            conn,
            reason,
            ..
        } => json!({
            "event": "ike_down", "conn": conn, "ike_sa": ike_sa(*spi), "reason": reason,
        }),
        IkeEvent::IkeRekeyed { old, new, conn, .. } => json!({
            "event": "ike_rekeyed", "conn": conn, "old": ike_sa(*old), "new": ike_sa(*new),
        }),
        IkeEvent::ChildUp(c) => json!({
            "event": if c.replaces.is_some() { "child_rekeyed" } else { "child_up" },
            "conn": c.conn, "child": c.child, "ike_sa": ike_sa(c.ike_sa),
            "id": super::control::child_id(&c.conn, &c.child, c.inbound_spi),
            "inbound_spi": format!("{:08x}", c.inbound_spi),
            "outbound_spi": format!("{:08x}", c.outbound_spi),
            "replaces": c.replaces.map(|s| format!("{s:08x}")),
            "encr": c.suite.encr.name(),
            "integ": c.suite.integ.map(|i| i.name()),
            "local_ts": c.local_ts.iter().map(display).collect::<Vec<_>>(),
            "remote_ts": c.remote_ts.iter().map(display).collect::<Vec<_>>(),
        }),
        IkeEvent::ChildDown {
            ike_sa: spi,
            conn,
            child,
            inbound_spi,
            outbound_spi,
            ..
        } => json!({
            "event": "child_down", "conn": conn, "child": child, "ike_sa": ike_sa(*spi),
            "id": super::control::child_id(conn, child, *inbound_spi),
            "inbound_spi": format!("{inbound_spi:08x}"),
            "outbound_spi": format!("{outbound_spi:08x}"),
        }),
        IkeEvent::ChildFailed {
            conn,
            child,
            reason,
            ..
        } => json!({
            "event": "child_failed", "conn": conn, "child": child, "reason": reason,
        }),
        IkeEvent::Log(_) => return None,
    };
    let mut v = v;
    v["time"] = time.into();
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::cert::TrustStore;
    use crate::ike::rng::SeededRandom;
    use crate::ike::session::tests::{certs::chain_pki, conn_a};
    use crate::ike::session::EndpointSettings;
    use std::sync::Arc;

    #[test]
    fn certificates_of_a_pubkey_connection_are_listed_by_role() {
        let (ca, mut ends) = chain_pki(&["gwA.example"]);
        let (key, certs) = ends.pop().unwrap();
        let mut c = conn_a();
        c.local_auth = LocalCredential::Pubkey {
            key: Arc::new(key),
            certs: certs.into_iter().map(Arc::new).collect(),
        };
        c.remote_auth = RemoteCredential::Pubkey {
            trust: Arc::new(TrustStore::new(vec![ca.clone()]).unwrap()),
            ca_hashes: vec![ca.spki_sha1()],
        };
        let ep = Endpoint::new(
            vec![Arc::new(c)],
            EndpointSettings::default(),
            Box::new(SeededRandom::new(1)),
        );
        let listed = certs_json(&ep);
        let roles: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["local", "intermediate", "intermediate", "ca"]);
        assert!(listed[0]["subject"]
            .as_str()
            .unwrap()
            .contains("gwA.example"));
        assert_eq!(listed[0]["alt_names"][0], "gwA.example");
        assert_eq!(listed[3]["ca"], true);
    }
}
