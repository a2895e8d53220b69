//! The IKE daemon's own control socket (JSON lines, root-only), which `espctl ike list`,
//! `espctl initiate`, `espctl terminate` and `espctl reload` speak.
//!
//! Request: `{"op": "ike.list"}`, `{"op": "initiate", "conn": "site-b", "child": "net"}`
//! (`child` optional), `{"op": "terminate", "conn": "site-b"}`, `{"op": "reload"}`,
//! `{"op": "stats"}`. Answer: `{"ok": true, "result": …}` or `{"ok": false, "error": "…"}`.

use crate::ike::session::ts::display;
use crate::ike::session::{ChildMode, DropCounters, Endpoint, IkeSa, Role, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Instant;

/// The default path of the IKE daemon's control socket.
pub const DEFAULT_SOCKET: &str = "/run/esprit/ike.sock";

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum ControlRequest {
    /// IKE SAs with their children.
    #[serde(rename = "ike.list")]
    IkeList,
    /// Bring a connection (or one of its children) up.
    #[serde(rename = "initiate")]
    Initiate {
        /// Connection name.
        conn: String,
        /// Child name (default: the first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<String>,
    },
    /// Delete a connection's IKE SAs (and children), telling the peer.
    #[serde(rename = "terminate")]
    Terminate {
        /// Connection name.
        conn: String,
    },
    /// Rekey a connection's children (or, with `ike`, its IKE SAs) now.
    #[serde(rename = "rekey")]
    Rekey {
        /// Connection name.
        conn: String,
        /// Rekey the IKE SA instead of the children.
        #[serde(default)]
        ike: bool,
        /// Rekey only the children of this name (all of the connection's by default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<String>,
    },
    /// Re-read the configuration file.
    #[serde(rename = "reload")]
    Reload,
    /// The configured connections.
    #[serde(rename = "conns.list")]
    ConnsList,
    /// The certificates loaded for the connections.
    #[serde(rename = "certs.list")]
    CertsList,
    /// The algorithms esprit-ike implements.
    #[serde(rename = "algs.list")]
    AlgsList,
    /// Turn this connection into an event stream: after the answer, one JSON object per line
    /// for each IKE and child SA event (see `daemon::introspect::event_json`).
    #[serde(rename = "monitor")]
    Monitor,
    /// Counters.
    #[serde(rename = "stats")]
    Stats,
}

/// An answer on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result, when ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ControlResponse {
    /// A success.
    pub fn ok(v: Value) -> Self {
        ControlResponse {
            ok: true,
            result: Some(v),
            error: None,
        }
    }
    /// A failure.
    pub fn err(e: impl Into<String>) -> Self {
        ControlResponse {
            ok: false,
            result: None,
            error: Some(e.into()),
        }
    }
}

/// Send one request to esprit-ike's control socket at `path` and return its result.
pub fn call(path: &std::path::Path, req: &ControlRequest) -> Result<Value, String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("esprit-ike control socket {}: {e}", path.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    let r: ControlResponse = serde_json::from_str(answer.trim())
        .map_err(|e| format!("esprit-ike answered {answer:?}: {e}"))?;
    if r.ok {
        Ok(r.result.unwrap_or(Value::Null))
    } else {
        Err(r.error.unwrap_or_else(|| "refused".into()))
    }
}

/// One IKE SA as `ike.list` shows it.
pub fn sa_json(sa: &IkeSa, now: Instant) -> Value {
    let (spi_i, spi_r) = sa.spis();
    let (local, remote) = sa.addrs();
    let (created, est) = sa.times();
    let (nat_l, nat_r) = sa.nat();
    let suite = sa.suite();
    let children: Vec<Value> = sa
        .children()
        .iter()
        .map(|c| {
            json!({
                "id": child_id(&sa.conn().name, &c.name, c.inbound_spi),
                "name": c.name,
                "state": if c.rekeying { "rekeying" } else { "installed" },
                "inbound_spi": format!("{:08x}", c.inbound_spi),
                "outbound_spi": format!("{:08x}", c.outbound_spi),
                "encr": c.suite.encr.name(),
                "integ": c.suite.integ.map(|i| i.name()),
                "esn": c.suite.esn,
                "pfs": c.suite.dh.map(|d| d.name()),
                "addke": crate::ike::crypto::mlkem::addke_name(&c.suite.addke),
                "mode": match c.mode { ChildMode::Tunnel => "tunnel", ChildMode::Transport => "transport" },
                "local_ts": c.local_ts.iter().map(display).collect::<Vec<_>>(),
                "remote_ts": c.remote_ts.iter().map(display).collect::<Vec<_>>(),
                "age_s": now.saturating_duration_since(c.installed).as_secs(),
                "rekeying": c.rekeying,
            })
        })
        .collect();
    json!({
        "id": ike_id(sa.local_spi()),
        "conn": sa.conn().name,
        "state": match sa.state() {
            State::InitSent => "connecting",
            State::AuthPending => "authenticating",
            State::Established => "established",
            State::Deleting => "deleting",
            State::Dead => "dead",
        },
        "role": match sa.role() { Role::Initiator => "initiator", Role::Responder => "responder" },
        "local": local.to_string(),
        "remote": remote.to_string(),
        "spi_i": format!("{spi_i:016x}"),
        "spi_r": format!("{spi_r:016x}"),
        "local_id": sa.conn().local_id.to_string(),
        "remote_id": sa.remote_id().map(|i| i.to_string()),
        "encr": suite.map(|s| s.encr.name()),
        "integ": suite.and_then(|s| s.integ).map(|i| i.name()),
        "prf": suite.map(|s| s.prf.name()),
        "dh": suite.map(|s| s.dh.name()),
        "addke": suite.map(|s| crate::ike::crypto::mlkem::addke_name(&s.addke)),
        "nat_local": nat_l,
        "nat_remote": nat_r,
        "encap": sa.encap(),
        "age_s": now.saturating_duration_since(created).as_secs(),
        "established_s": est.map(|t| now.saturating_duration_since(t).as_secs()),
        "children": children,
    })
}

/// The stable id of an IKE SA in `ike.list`: our SPI, which it keeps for its whole life (an
/// IKE SA rekey makes a new SA with a new id). `initiate` answers with it.
pub fn ike_id(local_spi: u64) -> String {
    format!("{local_spi:016x}")
}

/// The stable id of a child SA in `ike.list`: connection, child name and our inbound SPI,
/// which a rekey replaces (the new child has a new id).
pub fn child_id(conn: &str, child: &str, inbound_spi: u32) -> String {
    format!("{conn}/{child}/{inbound_spi:08x}")
}

/// Every IKE SA, sorted by connection name then SPI, each with its drop counters.
pub fn list_json(ep: &Endpoint, now: Instant) -> Value {
    let mut sas: Vec<&IkeSa> = ep.sas().collect();
    sas.sort_by_key(|s| (s.conn().name.clone(), s.spis()));
    Value::Array(
        sas.iter()
            .map(|s| {
                let mut v = sa_json(s, now);
                v["dropped"] = drops_json(&ep.sa_drops(s.local_spi()));
                v
            })
            .collect(),
    )
}

/// Drop counters as a JSON object: every reason with its count, and the total.
pub fn drops_json(d: &DropCounters) -> Value {
    let mut m = serde_json::Map::new();
    for (r, n) in d.iter() {
        m.insert(r.name().into(), n.into());
    }
    m.insert("total".into(), d.total().into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let r: ControlRequest = serde_json::from_str(r#"{"op":"initiate","conn":"a"}"#).unwrap();
        assert_eq!(
            r,
            ControlRequest::Initiate {
                conn: "a".into(),
                child: None
            }
        );
        let r: ControlRequest = serde_json::from_str(r#"{"op":"ike.list"}"#).unwrap();
        assert_eq!(r, ControlRequest::IkeList);
        assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"nope"}"#).is_err());
    }
}
