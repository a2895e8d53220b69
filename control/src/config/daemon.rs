//! The optional `[daemon]` table: sockets, ports, retransmission, DoS protection, logging.

use super::doc::Tbl;
use super::error::ConfigError;
use super::units::duration;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The dataplane's API socket when `daemon.dataplane_socket` is not set.
pub const DEFAULT_DATAPLANE_SOCKET: &str = "/run/esprit/dataplane.sock";
/// The IKE daemon's control socket (for espctl) when `daemon.socket` is not set.
pub const DEFAULT_SOCKET: &str = "/run/esprit/ike.sock";

/// How much the daemon logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also SAs coming and going (the default).
    Info,
    /// Also each exchange.
    Debug,
    /// Also each message.
    Trace,
}

impl LogLevel {
    /// The name used in the file.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl From<LogLevel> for esprit_log::LevelFilter {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Error => esprit_log::LevelFilter::ERROR,
            LogLevel::Warn => esprit_log::LevelFilter::WARN,
            LogLevel::Info => esprit_log::LevelFilter::INFO,
            LogLevel::Debug => esprit_log::LevelFilter::DEBUG,
            LogLevel::Trace => esprit_log::LevelFilter::TRACE,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of the daemon itself (what strongswan.conf's `charon` section holds for strongSwan).
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// The dataplane's API socket.
    pub dataplane_socket: PathBuf,
    /// The IKE daemon's own control socket, for espctl.
    pub socket: PathBuf,
    /// The UDP port IKE listens on (500).
    pub port: u16,
    /// The UDP port for NAT traversal (4500).
    pub port_nat_t: u16,
    /// Time before the first retransmission (4 s).
    pub retransmit_timeout: Duration,
    /// Factor by which each retransmission waits longer (1.8).
    pub retransmit_base: f64,
    /// Retransmissions before giving up (5).
    pub retransmit_tries: u32,
    /// Half-open IKE SAs before COOKIEs are demanded (10).
    pub cookie_threshold: u32,
    /// Receive buffer of the IKE sockets, bytes (4 MiB): what arrives while the loop is busy
    /// waits there instead of being dropped (a round of rekeys of many tunnels).
    pub udp_rcvbuf: u32,
    /// How long a half-open IKE SA is kept (30 s, at most 300 s).
    pub half_open_timeout: Duration,
    /// How long SAs an earlier run of esprit-ike left in the dataplane keep forwarding when
    /// nothing re-establishes their child (5 min).
    pub orphan_timeout: Duration,
    /// Half-open IKE SAs in total; IKE_SA_INIT requests beyond are dropped (1000; strongSwan's
    /// `init_limit_half_open`).
    pub half_open_limit: u32,
    /// Half-open IKE SAs from one source address; requests beyond are dropped (5; strongSwan's
    /// `block_threshold`).
    pub half_open_limit_per_source: u32,
    /// Age at which the COOKIE secret is replaced (300 s); cookies made with the previous
    /// secret are accepted for 60 s more.
    pub cookie_secret_lifetime: Duration,
    /// Log verbosity (info).
    pub log_level: LogLevel,
    /// Log lines as text or JSON (text).
    pub log_format: esprit_log::Format,
    /// A directory where esprit-ike writes every IKE and ESP key it negotiates as a Wireshark
    /// profile (`ikev2_decryption_table`, `esp_sa`, `preferences`; files mode 0600), for
    /// debugging with tshark. Off unless set: the files hold keys.
    pub wireshark_keys: Option<PathBuf>,
    /// The user esprit-ike switches to once its sockets are bound (None: it stays uid 0, with
    /// no capabilities either way).
    pub user: Option<String>,
}

/// The IKE sockets' receive buffer unless `udp_rcvbuf` says otherwise: 4 MiB.
pub const DEFAULT_UDP_RCVBUF: u32 = 4 << 20;

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            dataplane_socket: PathBuf::from(DEFAULT_DATAPLANE_SOCKET),
            socket: PathBuf::from(DEFAULT_SOCKET),
            port: 500,
            port_nat_t: 4500,
            retransmit_timeout: Duration::from_secs(4),
            retransmit_base: 1.8,
            retransmit_tries: 5,
            cookie_threshold: 10,
            udp_rcvbuf: DEFAULT_UDP_RCVBUF,
            half_open_timeout: Duration::from_secs(30),
            orphan_timeout: Duration::from_secs(300),
            half_open_limit: 1000,
            half_open_limit_per_source: 5,
            cookie_secret_lifetime: Duration::from_secs(300),
            log_level: LogLevel::Info,
            log_format: esprit_log::Format::Text,
            wireshark_keys: None,
            user: None,
        }
    }
}

const KEYS: &[&str] = &[
    "dataplane_socket",
    "socket",
    "port",
    "port_nat_t",
    "retransmit_timeout",
    "retransmit_base",
    "retransmit_tries",
    "cookie_threshold",
    "udp_rcvbuf",
    "half_open_timeout",
    "orphan_timeout",
    "half_open_limit",
    "half_open_limit_per_source",
    "cookie_secret_lifetime",
    "log_level",
    "log_format",
    "wireshark_keys",
    "user",
];

/// Reads `[daemon]`; `resolve` makes relative socket paths relative to the file's directory.
pub(crate) fn parse_daemon(
    root: &Tbl<'_>,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<DaemonSettings, ConfigError> {
    let mut d = DaemonSettings::default();
    let Some(v) = root.get("daemon") else {
        return Ok(d);
    };
    let t = v.table()?;
    t.check_keys(KEYS)?;
    for key in ["dataplane_socket", "socket"] {
        if let Some(v) = t.get(key) {
            let s = v.str_for("a socket path")?;
            if s.trim().is_empty() {
                return Err(v.err("expected a socket path, got an empty string"));
            }
            let p = resolve(s);
            if key == "socket" {
                d.socket = p;
            } else {
                d.dataplane_socket = p;
            }
        }
    }
    if let Some(v) = t.get("wireshark_keys") {
        let s = v.str_for("a directory path")?;
        if s.trim().is_empty() {
            return Err(v.err("expected a directory path, got an empty string"));
        }
        d.wireshark_keys = Some(resolve(s));
    }
    if let Some(v) = t.get("user") {
        let s = v.str_for("a user name")?;
        if s.is_empty() || s.contains(|c: char| c == ':' || c == '/' || c.is_whitespace()) {
            return Err(v.err(format!("expected a user name, got {s:?}")));
        }
        d.user = Some(s.to_string());
    }
    if let Some(v) = t.get("port") {
        d.port = v.u16_in(1, 65535)?;
    }
    if let Some(v) = t.get("port_nat_t") {
        d.port_nat_t = v.u16_in(1, 65535)?;
        if d.port_nat_t == d.port {
            return Err(v.err(format!("port_nat_t must differ from port ({})", d.port)));
        }
    } else if d.port == d.port_nat_t {
        if let Some(v) = t.get("port") {
            return Err(v.err(format!(
                "port must differ from port_nat_t ({})",
                d.port_nat_t
            )));
        }
    }
    if let Some(v) = t.get("retransmit_timeout") {
        d.retransmit_timeout = duration(&v)?;
        if d.retransmit_timeout < Duration::from_millis(100) {
            return Err(v.err("expected at least 0.1s"));
        }
    }
    if let Some(v) = t.get("retransmit_base") {
        let base = match v.integer()? {
            Some(n) => Some(n as f64),
            None => v.float(),
        };
        d.retransmit_base = base
            .filter(|b| b.is_finite() && (1.0..=10.0).contains(b))
            .ok_or_else(|| v.err("expected a number in 1.0..=10.0"))?;
    }
    if let Some(v) = t.get("retransmit_tries") {
        d.retransmit_tries = v.u32_in(0, 100)?;
    }
    if let Some(v) = t.get("cookie_threshold") {
        d.cookie_threshold = v.u32_in(0, u32::MAX)?;
    }
    if let Some(v) = t.get("udp_rcvbuf") {
        d.udp_rcvbuf = v.u32_in(64 << 10, 1 << 30)?;
    }
    if let Some(v) = t.get("half_open_timeout") {
        d.half_open_timeout = duration(&v)?;
        if d.half_open_timeout.is_zero() || d.half_open_timeout > Duration::from_secs(300) {
            return Err(v.err("expected a duration greater than zero and at most 300s"));
        }
    }
    if let Some(v) = t.get("half_open_limit") {
        d.half_open_limit = v.u32_in(1, 1_000_000)?;
    }
    if let Some(v) = t.get("half_open_limit_per_source") {
        d.half_open_limit_per_source = v.u32_in(1, 1_000_000)?;
    }
    if let Some(v) = t.get("cookie_secret_lifetime") {
        d.cookie_secret_lifetime = duration(&v)?;
        if d.cookie_secret_lifetime < Duration::from_secs(1)
            || d.cookie_secret_lifetime > Duration::from_secs(3600)
        {
            return Err(v.err("expected a duration from 1s to 3600s"));
        }
    }
    if let Some(v) = t.get("orphan_timeout") {
        d.orphan_timeout = duration(&v)?;
        if d.orphan_timeout.is_zero() {
            return Err(v.err("expected a duration greater than zero"));
        }
    }
    if let Some(v) = t.get("log_level") {
        let s = v.str()?;
        d.log_level = match s.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => {
                return Err(v.err(format!(
                    "unknown log level '{s}' (expected one of error, warn, info, debug, trace)"
                )))
            }
        };
    }
    if let Some(v) = t.get("log_format") {
        let s = v.str()?;
        d.log_format = s
            .parse()
            .map_err(|_| v.err(format!("unknown log format '{s}' (expected text or json)")))?;
    }
    Ok(d)
}

/// Reads `[metrics]`: `listen`, the address and port of the OpenMetrics endpoint.
pub(crate) fn parse_metrics(root: &Tbl<'_>) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let Some(v) = root.get("metrics") else {
        return Ok(None);
    };
    let t = v.table()?;
    t.check_keys(&["listen"])?;
    let Some(v) = t.get("listen") else {
        return Ok(None);
    };
    let s = v.str_for("an address and port")?;
    s.parse().map(Some).map_err(|_| {
        v.err(format!(
            "expected an address and port like \"127.0.0.1:9662\" or \"[::1]:9662\", got {s:?}"
        ))
    })
}
