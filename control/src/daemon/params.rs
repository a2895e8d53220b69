//! Turning the configuration file into the state machines' connection parameters: proposals,
//! identities, pre-shared keys, certificates and keys loaded from their files.

use crate::config::{self, AuthMethod, Config, Connection, Mode, TsAddr};
use crate::ike::crypto::auth::PrivateKey;
use crate::ike::crypto::cert::{Certificate, TrustStore};
use crate::ike::identity::Identity;
use crate::ike::message::TrafficSelector;
use crate::ike::session::{
    ChildMode, ChildParams, ConnectionParams, EspProposalSpec, IkeProposalSpec, LocalCredential,
    RemoteCredential, Retransmit, TsSpec,
};
use std::net::IpAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

fn ts_spec(t: &config::TsConfig) -> TsSpec {
    match t.addr {
        TsAddr::Dynamic => TsSpec::Dynamic,
        TsAddr::Prefix(a, len) => {
            let mut s = crate::ike::session::ts::prefix(a, len);
            s.protocol = t.protocol;
            s.start_port = t.ports.0;
            s.end_port = t.ports.1;
            TsSpec::Fixed(s)
        }
    }
}

fn local_id(c: &Connection) -> Result<Identity, String> {
    if let Some(id) = &c.local.id {
        return Ok(id.clone());
    }
    match c.local_addrs.first() {
        Some(IpAddr::V4(a)) => Ok(Identity::Ipv4(*a)),
        Some(IpAddr::V6(a)) => Ok(Identity::Ipv6(*a)),
        None => Err(format!(
            "connections.{}.local.id: needed when local_addrs is empty",
            c.name
        )),
    }
}

/// Build the parameters of every connection. Errors name the connection and the key.
pub fn connection_params(cfg: &Config) -> Result<Vec<Arc<ConnectionParams>>, String> {
    let d = &cfg.daemon;
    let retransmit = Retransmit {
        timeout: d.retransmit_timeout,
        base: d.retransmit_base,
        tries: d.retransmit_tries,
    };
    cfg.connections
        .iter()
        .map(|c| one(cfg, c, retransmit).map(Arc::new))
        .collect()
}

fn one(cfg: &Config, c: &Connection, retransmit: Retransmit) -> Result<ConnectionParams, String> {
    let name = &c.name;
    let lid = local_id(c)?;
    let remote_id = c.remote.id.clone();
    let psk = |what: &str| -> Result<Arc<Zeroizing<Vec<u8>>>, String> {
        let any = Identity::KeyId(Vec::new());
        let rid = remote_id.as_ref().unwrap_or(&any);
        cfg.psk_for(&lid, rid)
            .map(|k| Arc::new(Zeroizing::new(k.to_vec())))
            .ok_or_else(|| {
                format!("connections.{name}.{what}: no [[secrets.ike]] entry for {lid} and {rid}")
            })
    };
    let local_auth = match c.local.auth {
        AuthMethod::Psk => LocalCredential::Psk(psk("local.auth")?),
        AuthMethod::Pubkey => {
            let key_path = c
                .local
                .key
                .as_ref()
                .ok_or_else(|| format!("connections.{name}.local.key: required for pubkey"))?;
            let pem = Zeroizing::new(std::fs::read_to_string(key_path).map_err(|e| {
                format!("connections.{name}.local.key: {}: {e}", key_path.display())
            })?);
            let key = PrivateKey::from_pem(&pem).map_err(|e| {
                format!("connections.{name}.local.key: {}: {e}", key_path.display())
            })?;
            let mut certs = Vec::new();
            for p in &c.local.certs {
                let loaded = Certificate::load_pem_file(p)
                    .map_err(|e| format!("connections.{name}.local.certs: {}: {e}", p.display()))?;
                certs.extend(loaded.into_iter().map(Arc::new));
            }
            if certs.is_empty() {
                return Err(format!(
                    "connections.{name}.local.certs: no certificate found"
                ));
            }
            LocalCredential::Pubkey {
                key: Arc::new(key),
                certs,
            }
        }
    };
    let remote_auth = match c.remote.auth {
        AuthMethod::Psk => RemoteCredential::Psk(psk("remote.auth")?),
        AuthMethod::Pubkey => {
            let mut cas = Vec::new();
            for p in &c.remote.cacerts {
                cas.extend(Certificate::load_pem_file(p).map_err(|e| {
                    format!("connections.{name}.remote.cacerts: {}: {e}", p.display())
                })?);
            }
            if cas.is_empty() {
                return Err(format!(
                    "connections.{name}.remote.cacerts: no CA certificate found"
                ));
            }
            let ca_hashes = cas.iter().map(Certificate::spki_sha1).collect();
            RemoteCredential::Pubkey {
                trust: Arc::new(
                    TrustStore::new(cas)
                        .map_err(|e| format!("connections.{name}.remote.cacerts: {e}"))?,
                ),
                ca_hashes,
            }
        }
    };
    let children = c
        .children
        .iter()
        .map(|ch| ChildParams {
            name: ch.name.clone(),
            local_ts: ch.local_ts.iter().map(ts_spec).collect(),
            remote_ts: ch.remote_ts.iter().map(ts_spec).collect(),
            proposals: ch
                .esp_proposals
                .iter()
                .map(|p| EspProposalSpec {
                    encr: p.encr.clone(),
                    integ: p.integ.clone(),
                    dh: p.dh.clone(),
                    addke: p.addke.clone(),
                    esn: p.esn.clone(),
                })
                .collect(),
            mode: match ch.mode {
                Mode::Tunnel => ChildMode::Tunnel,
                Mode::Transport => ChildMode::Transport,
            },
            rekey_time: ch.rekey_time,
            rekey_bytes: ch.rekey_bytes,
            rekey_packets: ch.rekey_packets,
            life_bytes: ch.life_bytes,
            life_packets: ch.life_packets,
            replay_window: ch.replay_window,
        })
        .collect();
    Ok(ConnectionParams {
        name: name.clone(),
        local_addrs: c.local_addrs.clone(),
        remote_addrs: c
            .remote_addrs
            .iter()
            .filter_map(|a| match a {
                config::RemoteAddr::Ip(ip) => Some(*ip),
                config::RemoteAddr::Any => None,
            })
            .collect(),
        remote_port: c.remote_port,
        proposals: c
            .proposals
            .iter()
            .map(|p| IkeProposalSpec {
                encr: p.encr.clone(),
                integ: p.integ.clone(),
                prf: p.prf.clone(),
                dh: p.dh.clone(),
                addke: p.addke.clone(),
            })
            .collect(),
        local_id: lid,
        remote_id,
        local_auth,
        remote_auth,
        children,
        force_encap: c.encap,
        retransmit,
        dpd_delay: c.dpd_delay,
        rekey_time: c.rekey_time,
        fragmentation: c.fragmentation,
    })
}

/// The CIDR prefixes covering an address range exactly (for the dataplane's selectors).
pub fn range_to_prefixes(t: &TrafficSelector) -> Vec<String> {
    let (fam, mut s, e) = match (t.start, t.end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            (32u32, u128::from(u32::from(a)), u128::from(u32::from(b)))
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => (128u32, u128::from(a), u128::from(b)),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    while s <= e && out.len() < 256 {
        let mut size = if s == 0 {
            fam
        } else {
            s.trailing_zeros().min(fam)
        };
        let last = loop {
            let last = if size >= 128 {
                u128::MAX
            } else {
                s + ((1u128 << size) - 1)
            };
            if last <= e || size == 0 {
                break last;
            }
            size -= 1;
        };
        let addr = if fam == 32 {
            IpAddr::from(std::net::Ipv4Addr::from(s as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(s))
        };
        out.push(format!("{addr}/{}", fam - size));
        if last >= e {
            break;
        }
        s = last + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::session::ts;

    #[test]
    fn ranges_become_prefixes() {
        let p = ts::prefix("10.201.1.0".parse().unwrap(), 24);
        assert_eq!(range_to_prefixes(&p), vec!["10.201.1.0/24"]);
        let h = ts::host("10.0.0.1".parse().unwrap());
        assert_eq!(range_to_prefixes(&h), vec!["10.0.0.1/32"]);
        let all = ts::prefix("0.0.0.0".parse().unwrap(), 0);
        assert_eq!(range_to_prefixes(&all), vec!["0.0.0.0/0"]);
        let all6 = ts::prefix("::".parse().unwrap(), 0);
        assert_eq!(range_to_prefixes(&all6), vec!["::/0"]);
        let mut r = ts::host("10.0.0.1".parse().unwrap());
        r.end = "10.0.0.6".parse().unwrap();
        assert_eq!(
            range_to_prefixes(&r),
            vec!["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
    }
}
