//! What a reload changes: the running configuration against the one just read, connection by
//! connection, so that only what changed is touched.
//!
//! - a connection only in the new file is **added** (started as its `start_action` says);
//! - one only in the old file is **removed** (its IKE SAs deleted, the peer told);
//! - one whose IKE settings changed (addresses, ports, proposals, identities, authentication,
//!   its PSK or the contents of its certificate and key files, lifetimes, DPD, ...) is
//!   **re-established**: its IKE SAs deleted and the connection started anew;
//! - one whose IKE settings are the same but whose children changed keeps its IKE SA: removed
//!   children are deleted, changed ones rekeyed with their new settings (make-before-break:
//!   the new child SA is installed before the old one goes), added ones created;
//! - the rest is **unchanged** and keeps its SAs and counters.
//!
//! `[daemon]` and `[metrics]` settings are not changed by a reload: the daemon keeps the ones it
//! runs with and names those that differ, which take a restart.

use std::collections::HashMap;

use aws_lc_rs::digest;

use crate::config::{Config, Connection};

/// A digest of everything outside a connection's own table that its IKE SA depends on: the
/// pre-shared keys that may serve it and the contents of its certificate, key and CA files.
pub type Credentials = HashMap<String, Vec<u8>>;

/// What changed in one connection's children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildChanges {
    /// Children only in the new configuration.
    pub added: Vec<String>,
    /// Children only in the old one.
    pub removed: Vec<String>,
    /// Children in both, with different settings.
    pub changed: Vec<String>,
}

impl ChildChanges {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The changes a reload makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Connections to start.
    pub added: Vec<String>,
    /// Connections to delete.
    pub removed: Vec<String>,
    /// Connections whose IKE SAs are deleted and started anew.
    pub reestablished: Vec<String>,
    /// Connections that keep their IKE SA, with what changes in their children.
    pub children: Vec<(String, ChildChanges)>,
    /// Connections left as they are.
    pub unchanged: Vec<String>,
    /// Settings that differ but take a restart (`daemon.port`, `metrics.listen`, ...).
    pub restart_needed: Vec<String>,
}

/// The digest of the credentials of every connection of `cfg` (files read now; an unreadable
/// file digests as its error, so a file that appears or disappears counts as a change).
pub fn credentials(cfg: &Config) -> Credentials {
    cfg.connections
        .iter()
        .map(|c| (c.name.clone(), credentials_of(cfg, c)))
        .collect()
}

fn credentials_of(cfg: &Config, c: &Connection) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let ids = [c.local.id.as_ref(), c.remote.id.as_ref()];
    if let [Some(local), Some(remote)] = ids {
        // Both identities known: the one key the connection would use.
        if let Some(psk) = cfg.psk_for(local, remote) {
            ctx.update(&(psk.len() as u64).to_be_bytes());
            ctx.update(psk);
        }
    } else {
        digest_secrets(&mut ctx, cfg, ids);
    }
    digest_files(&mut ctx, c);
    ctx.finish().as_ref().to_vec()
}

/// Every key that might serve a connection one of whose identities is not known in advance.
fn digest_secrets(
    ctx: &mut digest::Context,
    cfg: &Config,
    ids: [Option<&crate::ike::identity::Identity>; 2],
) {
    for s in &cfg.secrets.ike {
        let serves =
            s.ids.is_empty() || ids.iter().any(|id| id.is_none_or(|id| s.ids.contains(id)));
        if serves {
            for id in &s.ids {
                ctx.update(id.to_string().as_bytes());
                ctx.update(&[0]);
            }
            ctx.update(&(s.secret().len() as u64).to_be_bytes());
            ctx.update(s.secret());
        }
    }
}

/// The names and contents of a connection's certificate, key and CA files.
fn digest_files(ctx: &mut digest::Context, c: &Connection) {
    let files = c
        .local
        .certs
        .iter()
        .chain(c.local.key.iter())
        .chain(c.remote.cacerts.iter());
    for f in files {
        ctx.update(f.to_string_lossy().as_bytes());
        match std::fs::read(f) {
            Ok(bytes) => ctx.update(&bytes),
            Err(e) => ctx.update(e.to_string().as_bytes()),
        }
    }
}

/// The connection without its children: what its IKE SA is made from.
fn ike_part(c: &Connection) -> Connection {
    Connection {
        children: Vec::new(),
        ..c.clone()
    }
}

/// Compares the running configuration (`old`, whose credentials were `old_creds` when it was
/// loaded) with the one just read.
pub fn plan(old: &Config, old_creds: &Credentials, new: &Config, new_creds: &Credentials) -> Plan {
    let mut p = Plan::default();
    for n in &new.connections {
        let Some(o) = old.connection(&n.name) else {
            p.added.push(n.name.clone());
            continue;
        };
        let same_ike =
            ike_part(o) == ike_part(n) && old_creds.get(&o.name) == new_creds.get(&n.name);
        if !same_ike {
            p.reestablished.push(n.name.clone());
            continue;
        }
        let mut ch = ChildChanges::default();
        for nc in &n.children {
            match o.children.iter().find(|oc| oc.name == nc.name) {
                None => ch.added.push(nc.name.clone()),
                Some(oc) if oc != nc => ch.changed.push(nc.name.clone()),
                Some(_) => {}
            }
        }
        for oc in &o.children {
            if !n.children.iter().any(|nc| nc.name == oc.name) {
                ch.removed.push(oc.name.clone());
            }
        }
        if ch.is_empty() {
            p.unchanged.push(n.name.clone());
        } else {
            p.children.push((n.name.clone(), ch));
        }
    }
    for o in &old.connections {
        if new.connection(&o.name).is_none() {
            p.removed.push(o.name.clone());
        }
    }
    p.restart_needed = restart_needed(old, new);
    p
}

/// The `[daemon]` and `[metrics]` settings that differ between `old` and `new`.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.daemon, &new.daemon);
    let mut v = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            v.push(format!("daemon.{name}"));
        }
    };
    check("dataplane_socket", o.dataplane_socket != n.dataplane_socket);
    check("socket", o.socket != n.socket);
    check("port", o.port != n.port);
    check("port_nat_t", o.port_nat_t != n.port_nat_t);
    check(
        "retransmit_timeout",
        o.retransmit_timeout != n.retransmit_timeout,
    );
    check("retransmit_base", o.retransmit_base != n.retransmit_base);
    check("retransmit_tries", o.retransmit_tries != n.retransmit_tries);
    check("cookie_threshold", o.cookie_threshold != n.cookie_threshold);
    check(
        "half_open_timeout",
        o.half_open_timeout != n.half_open_timeout,
    );
    check("orphan_timeout", o.orphan_timeout != n.orphan_timeout);
    check("half_open_limit", o.half_open_limit != n.half_open_limit);
    check(
        "half_open_limit_per_source",
        o.half_open_limit_per_source != n.half_open_limit_per_source,
    );
    check(
        "cookie_secret_lifetime",
        o.cookie_secret_lifetime != n.cookie_secret_lifetime,
    );
    check("log_level", o.log_level != n.log_level);
    check("wireshark_keys", o.wireshark_keys != n.wireshark_keys);
    check("user", o.user != n.user);
    if old.metrics != new.metrics {
        v.push("metrics.listen".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("/nonexistent")).unwrap()
    }

    const BASE: &str = r#"
[connections.a]
remote_addrs = ["192.0.2.1"]
local = { auth = "psk", id = "gw" }
remote = { auth = "psk", id = "a" }
[connections.a.children.net]
local_ts = ["10.0.0.0/24"]
remote_ts = ["10.1.0.0/24"]

[connections.b]
remote_addrs = ["192.0.2.2"]
local = { auth = "psk", id = "gw" }
remote = { auth = "psk", id = "b" }
[connections.b.children.net]
local_ts = ["10.0.0.0/24"]
remote_ts = ["10.2.0.0/24"]

[[secrets.ike]]
ids = ["gw", "a"]
secret = "secret-a"
[[secrets.ike]]
ids = ["gw", "b"]
secret = "secret-b"
"#;

    fn plan_of(old: &str, new: &str) -> Plan {
        let (o, n) = (cfg(old), cfg(new));
        plan(&o, &credentials(&o), &n, &credentials(&n))
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let p = plan_of(BASE, BASE);
        assert_eq!(p.unchanged, vec!["a", "b"]);
        assert!(p.added.is_empty() && p.removed.is_empty() && p.reestablished.is_empty());
        assert!(p.children.is_empty() && p.restart_needed.is_empty());
    }

    #[test]
    fn each_kind_of_change_is_told_apart() {
        // a: its PSK changes (re-established); b: a child's selectors change and a child is
        // added (IKE SA kept); c: new; and an old connection d is gone.
        let old = format!(
            "{BASE}\n[connections.d]\nremote_addrs = [\"192.0.2.4\"]\nlocal = {{ auth = \"psk\", id = \"gw\" }}\nremote = {{ auth = \"psk\", id = \"d\" }}\n[connections.d.children.net]\nlocal_ts = [\"10.0.0.0/24\"]\nremote_ts = [\"10.4.0.0/24\"]\n"
        );
        let new = BASE
            .replace("secret-a", "secret-a2")
            .replace("10.2.0.0/24", "10.2.0.0/16")
            + "\n[connections.b.children.voice]\nlocal_ts = [\"10.0.1.0/24\"]\nremote_ts = [\"10.2.1.0/24\"]\n"
            + "\n[connections.c]\nremote_addrs = [\"192.0.2.3\"]\nlocal = { auth = \"psk\", id = \"gw\" }\nremote = { auth = \"psk\", id = \"b\" }\n[connections.c.children.net]\nlocal_ts = [\"10.0.0.0/24\"]\nremote_ts = [\"10.3.0.0/24\"]\n";
        let p = plan_of(&old, &new);
        assert_eq!(p.reestablished, vec!["a"]);
        assert_eq!(
            p.children,
            vec![(
                "b".to_string(),
                ChildChanges {
                    added: vec!["voice".into()],
                    removed: vec![],
                    changed: vec!["net".into()],
                }
            )]
        );
        assert_eq!(p.added, vec!["c"]);
        assert_eq!(p.removed, vec!["d"]);
        assert!(p.unchanged.is_empty());
    }

    #[test]
    fn ike_settings_and_daemon_settings() {
        let p = plan_of(
            BASE,
            &BASE.replace("192.0.2.2", "192.0.2.22").replace(
                "[connections.a]",
                "[daemon]\nport = 1500\n[metrics]\nlisten = \"127.0.0.1:9000\"\n[connections.a]",
            ),
        );
        assert_eq!(p.reestablished, vec!["b"]);
        assert_eq!(p.unchanged, vec!["a"]);
        assert_eq!(p.restart_needed, vec!["daemon.port", "metrics.listen"]);
    }
}
