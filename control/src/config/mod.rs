//! The esprit-ike configuration: a TOML file shaped like swanctl.conf.
//!
//! ```toml
//! [connections.site-b]
//! local_addrs = ["10.200.0.1"]
//! remote_addrs = ["10.200.0.2"]
//! proposals = ["aes128gcm16-prfsha256-x25519"]
//! local = { auth = "psk", id = "gwA" }
//! remote = { auth = "psk", id = "gwB" }
//! start_action = "start"
//! [connections.site-b.children.net]
//! local_ts = ["10.201.1.0/24"]
//! remote_ts = ["10.201.2.0/24"]
//! [[secrets.ike]]
//! ids = ["gwA", "gwB"]
//! secret = "..."
//! ```
//!
//! [`Config::load`] reads and validates a file into typed structs: proposals, traffic
//! selectors, identities, durations and sizes are parsed; certificate and key files are checked
//! to be readable (not parsed); every connection using a PSK has a secret. Every error names the
//! file, the line and the key, and says what was expected ([`ConfigError`]). Unknown keys are
//! errors. The reference is `docs/configuration.md`.

mod connection;
mod daemon;
mod doc;
mod error;
mod proposal;
mod secrets;
mod ts;
mod units;

#[cfg(test)]
mod tests;

pub use connection::{
    AuthMethod, Child, CloseAction, Connection, DpdAction, LocalAuth, Mode, RemoteAddr, RemoteAuth,
    StartAction, DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW,
};
pub use daemon::{
    DaemonSettings, LogLevel, DEFAULT_DATAPLANE_SOCKET, DEFAULT_SOCKET, DEFAULT_UDP_RCVBUF,
};
pub use error::ConfigError;
pub use proposal::{proposal_keywords, AlgorithmKeywords, EspProposal, IkeProposal};
pub use secrets::{decode_secret, IkeSecret, Secrets};
pub use ts::{TsAddr, TsConfig, ANY_PORTS};
pub use units::{parse_duration, parse_size};

use crate::ike::identity::Identity;
use doc::{Cx, Tbl};
use std::path::Path;
use toml::de::{DeTable, DeValue};
use zeroize::{Zeroize, Zeroizing};

/// A validated esprit-ike configuration (the default is an empty one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// The `[daemon]` table (all defaults when absent).
    pub daemon: DaemonSettings,
    /// The connections, in file order.
    pub connections: Vec<Connection>,
    /// The `[secrets]` section.
    pub secrets: Secrets,
    /// Where the OpenMetrics endpoint listens (`[metrics] listen`); None: no endpoint.
    pub metrics: Option<std::net::SocketAddr>,
}

const TOP_KEYS: &[&str] = &["daemon", "connections", "secrets", "metrics"];

impl Config {
    /// Reads and validates a configuration file. Relative paths in it are taken from the file's
    /// directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?);
        let text = std::str::from_utf8(&bytes).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!(
                "not UTF-8 text (first bad octet at offset {})",
                e.valid_up_to()
            ),
        })?;
        Self::parse(text, path)
    }

    /// Validates configuration text; `origin` names it in errors and gives the directory that
    /// relative paths are taken from.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let cx = Cx::new(text, origin);
        let mut root = DeTable::parse(text).map_err(|e| cx.syntax_error(&e))?;
        let config = build(&cx, &root);
        wipe_secrets(&mut root);
        config
    }

    /// Refuses secrets that others could read: the configuration file itself when it holds
    /// pre-shared keys (`config_path`), and every private key file it names. Each must be
    /// accessible by its owner only (mode 0600 or 0400); the message names the file and the fix.
    pub fn check_secret_files(&self, config_path: &Path) -> Result<(), String> {
        if !self.secrets.ike.is_empty() {
            esprit_harden::check_private(config_path).map_err(|e| e.to_string())?;
        }
        for key in self.connections.iter().filter_map(|c| c.local.key.as_ref()) {
            esprit_harden::check_private(key).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The connection of that name.
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// The pre-shared key for a pair of identities (see [`Secrets::psk_for`]).
    pub fn psk_for(&self, local: &Identity, remote: &Identity) -> Option<&[u8]> {
        self.secrets.psk_for(local, remote)
    }
}

fn build(cx: &Cx<'_>, root: &toml::Spanned<DeTable<'_>>) -> Result<Config, ConfigError> {
    let root = Tbl::root(cx, root);
    root.check_keys(TOP_KEYS)?;
    let daemon = daemon::parse_daemon(&root, |p| cx.resolve(p))?;
    let metrics = daemon::parse_metrics(&root)?;
    let secrets = secrets::parse_secrets(&root)?;
    let connections = connection::parse_connections(cx, &root)?;
    check_psk(&root, &connections, &secrets)?;
    Ok(Config {
        daemon,
        connections,
        secrets,
        metrics,
    })
}

/// Every connection that uses a PSK on either side has a secret that can serve it.
fn check_psk(
    root: &Tbl<'_>,
    connections: &[Connection],
    secrets: &Secrets,
) -> Result<(), ConfigError> {
    for c in connections {
        let side = if c.local.auth == AuthMethod::Psk {
            "local"
        } else if c.remote.auth == AuthMethod::Psk {
            "remote"
        } else {
            continue;
        };
        if secrets.could_serve(c.local.id.as_ref(), c.remote.id.as_ref()) {
            continue;
        }
        let show = |id: Option<&Identity>| id.map_or("%any".to_string(), |i| i.to_string());
        let local = show(c.local.id.as_ref());
        let remote = show(c.remote.id.as_ref());
        let message = format!(
            "connection '{}' authenticates with a PSK but no [[secrets.ike]] entry matches \
             its identities (local {local}, remote {remote}): add one with \
             ids = [\"{local}\", \"{remote}\"]",
            c.name
        );
        let at = root
            .get("connections")
            .and_then(|v| v.table().ok())
            .and_then(|t| t.get(&c.name))
            .and_then(|v| v.table().ok())
            .and_then(|t| t.get(side))
            .and_then(|v| v.table().ok())
            .and_then(|t| t.get("auth"));
        return Err(match at {
            Some(v) => v.err(message),
            None => root.err(message),
        });
    }
    Ok(())
}

/// Overwrites the copies of secrets the TOML parser made (escaped strings are copied out of the
/// text; the text itself is the caller's).
fn wipe_secrets(root: &mut toml::Spanned<DeTable<'_>>) {
    let Some(secrets) = root.get_mut().get_mut("secrets") else {
        return;
    };
    let DeValue::Table(secrets) = secrets.get_mut() else {
        return;
    };
    let Some(ike) = secrets.get_mut("ike") else {
        return;
    };
    let DeValue::Array(entries) = ike.get_mut() else {
        return;
    };
    for entry in entries.iter_mut() {
        if let DeValue::Table(t) = entry.get_mut() {
            if let Some(s) = t.get_mut("secret") {
                if let DeValue::String(std::borrow::Cow::Owned(s)) = s.get_mut() {
                    s.zeroize();
                }
            }
        }
    }
}
