//! Connections (`[connections.<name>]`, an IKE SA's configuration) and their children
//! (`[connections.<name>.children.<child>]`, CHILD SAs).

use super::doc::{Cx, Tbl, Val};
use super::error::ConfigError;
use super::proposal::{EspProposal, IkeProposal};
use super::ts::TsConfig;
use super::units::{duration, optional_duration, plus_ten_percent, plus_ten_percent_u64, size};
use crate::ike::identity::Identity;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The largest anti-replay window the dataplane keeps.
pub const MAX_REPLAY_WINDOW: u32 = 1 << 20;
/// The anti-replay window when `replay_window` is not set (the dataplane's default).
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;

/// What to do with a connection (or child) when the configuration is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartAction {
    /// Nothing: wait for the peer, or for espctl.
    #[default]
    None,
    /// Initiate at once.
    Start,
    /// Install trap policies; initiate when traffic matches them.
    Trap,
}

/// What to do with a child when DPD finds the peer dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DpdAction {
    /// Close it.
    #[default]
    Clear,
    /// Initiate it again at once.
    Restart,
    /// Install trap policies and initiate again when traffic matches.
    Trap,
}

/// What to do with a child when the peer closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CloseAction {
    /// Nothing.
    #[default]
    None,
    /// Install trap policies and initiate again when traffic matches.
    Trap,
    /// Initiate it again at once.
    Start,
}

/// How one side authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A pre-shared key from `[[secrets.ike]]`.
    Psk,
    /// A signature with a certificate's key (RFC 7427).
    Pubkey,
}

/// ESP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Tunnel mode.
    #[default]
    Tunnel,
    /// Transport mode.
    Transport,
}

/// An address the peer may be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteAddr {
    /// This address.
    Ip(IpAddr),
    /// Anyone (`%any`): the connection only responds.
    Any,
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAddr::Ip(ip) => write!(f, "{ip}"),
            RemoteAddr::Any => f.write_str("%any"),
        }
    }
}

/// How the gateway authenticates itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAuth {
    /// The identity sent in IDi/IDr; None: the address IKE runs on (set from the first of
    /// `local_addrs` when there is one).
    pub id: Option<Identity>,
    /// The method.
    pub auth: AuthMethod,
    /// Certificate files (PEM), own certificate first, then intermediates; pubkey only.
    pub certs: Vec<PathBuf>,
    /// The private key file (PEM); pubkey only.
    pub key: Option<PathBuf>,
}

/// How the peer must authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAuth {
    /// The identity the peer must prove; None: any (`%any`).
    pub id: Option<Identity>,
    /// The method.
    pub auth: AuthMethod,
    /// Trusted CA certificate files (PEM); pubkey only.
    pub cacerts: Vec<PathBuf>,
}

/// One IKE connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The name (the key under `connections`).
    pub name: String,
    /// Local addresses to use; empty: any.
    pub local_addrs: Vec<IpAddr>,
    /// Peer addresses; initiating uses the first address (`%any` only responds).
    pub remote_addrs: Vec<RemoteAddr>,
    /// Local IKE port (500).
    pub local_port: u16,
    /// Peer IKE port (500).
    pub remote_port: u16,
    /// IKE proposals in order of preference.
    pub proposals: Vec<IkeProposal>,
    /// Own authentication.
    pub local: LocalAuth,
    /// Peer authentication.
    pub remote: RemoteAuth,
    /// Action at load time for children that do not set their own.
    pub start_action: StartAction,
    /// Interval of liveness checks when no traffic comes; None: no DPD.
    pub dpd_delay: Option<Duration>,
    /// Action on a dead peer for children that do not set their own.
    pub dpd_action: DpdAction,
    /// Time until the IKE SA is rekeyed; None: never.
    pub rekey_time: Option<Duration>,
    /// Time until the IKE SA is re-authenticated (a new IKE SA); None: never.
    pub reauth_time: Option<Duration>,
    /// Hard lifetime beyond rekey/reauth time (default 10 % of the larger).
    pub over_time: Duration,
    /// Random time subtracted from rekey/reauth times (default over_time).
    pub rand_time: Duration,
    /// Force UDP encapsulation of ESP, as if a NAT were detected.
    pub encap: bool,
    /// IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
    /// Attempts to establish the connection; 0: forever.
    pub keyingtries: u32,
    /// CHILD SA configurations.
    pub children: Vec<Child>,
}

/// One CHILD SA configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The name (the key under `children`).
    pub name: String,
    /// Local traffic selectors.
    pub local_ts: Vec<TsConfig>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<TsConfig>,
    /// ESP proposals in order of preference.
    pub esp_proposals: Vec<EspProposal>,
    /// ESP mode.
    pub mode: Mode,
    /// Time until the CHILD SA is rekeyed; None: never.
    pub rekey_time: Option<Duration>,
    /// Time until the CHILD SA expires; None: never.
    pub life_time: Option<Duration>,
    /// Random time subtracted from rekey_time (default life_time - rekey_time).
    pub rand_time: Duration,
    /// Bytes before a rekey; 0: no limit.
    pub rekey_bytes: u64,
    /// Bytes before the SA expires; 0: no limit.
    pub life_bytes: u64,
    /// Random bytes subtracted from rekey_bytes.
    pub rand_bytes: u64,
    /// Packets before a rekey; 0: no limit.
    pub rekey_packets: u64,
    /// Packets before the SA expires; 0: no limit.
    pub life_packets: u64,
    /// Random packets subtracted from rekey_packets.
    pub rand_packets: u64,
    /// Action at load time; None: the connection's.
    pub start_action: Option<StartAction>,
    /// Action on a dead peer; None: the connection's.
    pub dpd_action: Option<DpdAction>,
    /// Action when the peer closes the CHILD SA.
    pub close_action: CloseAction,
    /// Anti-replay window in packets; 0: no replay protection.
    pub replay_window: u32,
}

impl Connection {
    /// The child of that name.
    pub fn child(&self, name: &str) -> Option<&Child> {
        self.children.iter().find(|c| c.name == name)
    }

    /// A child's start action: its own, or the connection's.
    pub fn start_action_of(&self, child: &Child) -> StartAction {
        child.start_action.unwrap_or(self.start_action)
    }

    /// A child's DPD action: its own, or the connection's.
    pub fn dpd_action_of(&self, child: &Child) -> DpdAction {
        child.dpd_action.unwrap_or(self.dpd_action)
    }

    /// The first concrete peer address (where to initiate to), if any.
    pub fn initiate_to(&self) -> Option<IpAddr> {
        self.remote_addrs.iter().find_map(|a| match a {
            RemoteAddr::Ip(ip) => Some(*ip),
            RemoteAddr::Any => None,
        })
    }
}

const CONN_KEYS: &[&str] = &[
    "local_addrs",
    "remote_addrs",
    "local_port",
    "remote_port",
    "proposals",
    "local",
    "remote",
    "start_action",
    "dpd_delay",
    "dpd_action",
    "rekey_time",
    "reauth_time",
    "over_time",
    "rand_time",
    "encap",
    "fragmentation",
    "keyingtries",
    "children",
];

const CHILD_KEYS: &[&str] = &[
    "local_ts",
    "remote_ts",
    "esp_proposals",
    "mode",
    "rekey_time",
    "life_time",
    "rand_time",
    "rekey_bytes",
    "life_bytes",
    "rand_bytes",
    "rekey_packets",
    "life_packets",
    "rand_packets",
    "start_action",
    "dpd_action",
    "close_action",
    "replay_window",
];

/// A name of a connection or child: printable, no spaces (espctl takes it as an argument).
fn check_name(
    cx: &Cx<'_>,
    span: &std::ops::Range<usize>,
    path: &str,
    name: &str,
    what: &str,
) -> Result<(), ConfigError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.error(
            span,
            path,
            format!("a {what} name must be non-empty, without spaces or control characters"),
        ));
    }
    Ok(())
}

/// Reads `[connections.*]`.
pub(crate) fn parse_connections(
    cx: &Cx<'_>,
    root: &Tbl<'_>,
) -> Result<Vec<Connection>, ConfigError> {
    let Some(v) = root.get("connections") else {
        return Ok(Vec::new());
    };
    let t = v.table()?;
    let mut out = Vec::new();
    for (name, span, val) in t.entries() {
        check_name(cx, &span, &val.path, name, "connection")?;
        out.push(parse_connection(cx, name, &val.table()?)?);
    }
    Ok(out)
}

fn start_action(v: &Val<'_>) -> Result<StartAction, ConfigError> {
    match v.str()? {
        "none" => Ok(StartAction::None),
        "start" => Ok(StartAction::Start),
        "trap" | "route" => Ok(StartAction::Trap),
        other => Err(v.err(format!(
            "unknown start action '{other}' (expected one of none, start, trap)"
        ))),
    }
}

fn dpd_action(v: &Val<'_>) -> Result<DpdAction, ConfigError> {
    match v.str()? {
        "clear" => Ok(DpdAction::Clear),
        "restart" | "start" => Ok(DpdAction::Restart),
        "trap" | "hold" => Ok(DpdAction::Trap),
        other => Err(v.err(format!(
            "unknown DPD action '{other}' (expected one of clear, restart, trap)"
        ))),
    }
}

fn close_action(v: &Val<'_>) -> Result<CloseAction, ConfigError> {
    match v.str()? {
        "none" | "clear" => Ok(CloseAction::None),
        "trap" | "hold" => Ok(CloseAction::Trap),
        "start" | "restart" => Ok(CloseAction::Start),
        other => Err(v.err(format!(
            "unknown close action '{other}' (expected one of none, trap, start)"
        ))),
    }
}

fn auth_method(v: &Val<'_>) -> Result<AuthMethod, ConfigError> {
    let s = v.str()?;
    match s {
        "psk" => Ok(AuthMethod::Psk),
        "pubkey" => Ok(AuthMethod::Pubkey),
        "rsa" | "ecdsa" | "ed25519" | "ed448" => Err(v.err(format!(
            "'{s}': write auth = \"pubkey\" (the key type comes from the certificate)"
        ))),
        _ if s.starts_with("pubkey-") || s.starts_with("rsa-") || s.starts_with("ecdsa-") => Err(v
            .err(format!(
                "'{s}': signature scheme constraints are not supported; write auth = \"pubkey\""
            ))),
        _ if s.starts_with("eap") || s.starts_with("xauth") => Err(v.err(format!(
            "'{s}': EAP and XAuth are not supported (expected one of psk, pubkey)"
        ))),
        _ => Err(v.err(format!(
            "unknown authentication method '{s}' (expected one of psk, pubkey)"
        ))),
    }
}

/// An identity, `%any` giving None.
fn identity(v: &Val<'_>) -> Result<Option<Identity>, ConfigError> {
    let s = v.str_for("an identity string")?;
    if s.trim() == "%any" {
        return Ok(None);
    }
    Identity::parse(s)
        .map(Some)
        .map_err(|e| v.err(e.to_string()))
}

/// A list of files that must exist and be readable.
fn files(cx: &Cx<'_>, v: &Val<'_>) -> Result<Vec<PathBuf>, ConfigError> {
    v.strings("file name", false)?
        .into_iter()
        .map(|(s, item)| file(cx, s, &item))
        .collect()
}

fn file(cx: &Cx<'_>, s: &str, v: &Val<'_>) -> Result<PathBuf, ConfigError> {
    if s.trim().is_empty() {
        return Err(v.err("expected a file name, got an empty string"));
    }
    let p = cx.resolve(s);
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => return Err(v.err(format!("{} is a directory", p.display()))),
        Ok(_) => {}
        Err(e) => return Err(v.err(format!("cannot read {}: {e}", p.display()))),
    }
    std::fs::File::open(&p).map_err(|e| v.err(format!("cannot read {}: {e}", p.display())))?;
    Ok(p)
}

fn parse_local(cx: &Cx<'_>, v: &Val<'_>, local_addrs: &[IpAddr]) -> Result<LocalAuth, ConfigError> {
    let t = v.table()?;
    t.check_keys(&["auth", "id", "certs", "key"])?;
    let auth = match t.get("auth") {
        Some(v) => auth_method(&v)?,
        None => AuthMethod::Pubkey,
    };
    let id = match t.get("id") {
        Some(v) => {
            let id = identity(&v)?;
            if id.is_none() {
                return Err(v.err(
                    "the local identity cannot be %any (leave id out to use the local address)",
                ));
            }
            id
        }
        None => local_addrs.first().map(|ip| match ip {
            IpAddr::V4(a) => Identity::Ipv4(*a),
            IpAddr::V6(a) => Identity::Ipv6(*a),
        }),
    };
    let mut local = LocalAuth {
        id,
        auth,
        certs: Vec::new(),
        key: None,
    };
    match auth {
        AuthMethod::Pubkey => {
            let certs = t.get("certs").ok_or_else(|| {
                t.missing(
                    "certs",
                    "pubkey authentication needs certs = [\"<own certificate>.pem\", ...]",
                )
            })?;
            local.certs = files(cx, &certs)?;
            if local.certs.is_empty() {
                return Err(certs.err("pubkey authentication needs at least one certificate"));
            }
            let key = t.get("key").ok_or_else(|| {
                t.missing(
                    "key",
                    "pubkey authentication needs key = \"<private key>.pem\"",
                )
            })?;
            let s = key.str_for("a file name")?;
            local.key = Some(file(cx, s, &key)?);
        }
        AuthMethod::Psk => {
            for k in ["certs", "key"] {
                if let Some(v) = t.get(k) {
                    return Err(v.err(format!(
                        "'{k}' applies only to auth = \"pubkey\" (this side uses a PSK)"
                    )));
                }
            }
        }
    }
    Ok(local)
}

fn parse_remote(cx: &Cx<'_>, v: &Val<'_>) -> Result<RemoteAuth, ConfigError> {
    let t = v.table()?;
    t.check_keys(&["auth", "id", "cacerts"])?;
    let auth = match t.get("auth") {
        Some(v) => auth_method(&v)?,
        None => AuthMethod::Pubkey,
    };
    let id = match t.get("id") {
        Some(v) => identity(&v)?,
        None => None,
    };
    let mut remote = RemoteAuth {
        id,
        auth,
        cacerts: Vec::new(),
    };
    match auth {
        AuthMethod::Pubkey => {
            let ca = t.get("cacerts").ok_or_else(|| {
                t.missing(
                    "cacerts",
                    "pubkey authentication of the peer needs cacerts = [\"<CA>.pem\", ...]",
                )
            })?;
            remote.cacerts = files(cx, &ca)?;
            if remote.cacerts.is_empty() {
                return Err(ca.err("pubkey authentication needs at least one CA certificate"));
            }
        }
        AuthMethod::Psk => {
            if let Some(v) = t.get("cacerts") {
                return Err(
                    v.err("'cacerts' applies only to auth = \"pubkey\" (this side uses a PSK)")
                );
            }
        }
    }
    Ok(remote)
}

fn parse_connection(cx: &Cx<'_>, name: &str, t: &Tbl<'_>) -> Result<Connection, ConfigError> {
    if let Some(v) = t.get("esp_proposals") {
        return Err(
            v.err("esp_proposals belongs in a child ([connections.<name>.children.<child>])")
        );
    }
    t.check_keys(CONN_KEYS)?;
    let mut local_addrs = Vec::new();
    if let Some(v) = t.get("local_addrs") {
        let items = v.strings("address", true)?;
        let n = items.len();
        for (s, item) in items {
            if s == "%any" && n == 1 {
                continue;
            }
            let ip: IpAddr = s.parse().map_err(|_| {
                item.err(format!(
                    "expected an IP address (or \"%any\" alone), got '{s}'"
                ))
            })?;
            local_addrs.push(ip);
        }
    }
    let mut remote_addrs = Vec::new();
    if let Some(v) = t.get("remote_addrs") {
        for (s, item) in v.strings("address", true)? {
            if s == "%any" {
                remote_addrs.push(RemoteAddr::Any);
                continue;
            }
            let ip: IpAddr = s
                .parse()
                .map_err(|_| item.err(format!("expected an IP address or \"%any\", got '{s}'")))?;
            remote_addrs.push(RemoteAddr::Ip(ip));
        }
        if remote_addrs.is_empty() {
            return Err(v.err("expected at least one address (or \"%any\")"));
        }
    } else {
        remote_addrs.push(RemoteAddr::Any);
    }
    let port = |key: &str| -> Result<u16, ConfigError> {
        t.get(key).map_or(Ok(500), |v| v.u16_in(1, 65535))
    };
    let local_port = port("local_port")?;
    let remote_port = port("remote_port")?;

    let proposals = match t.get("proposals") {
        None => vec![IkeProposal::defaults()],
        Some(v) => {
            let mut out = Vec::new();
            for (s, item) in v.strings("proposal", true)? {
                out.push(IkeProposal::parse(s).map_err(|e| item.err(e))?);
            }
            if out.is_empty() {
                return Err(v.err(
                    "expected at least one proposal (or leave proposals out for \"default\")",
                ));
            }
            out
        }
    };

    let local = match t.get("local") {
        Some(v) => parse_local(cx, &v, &local_addrs)?,
        None => {
            return Err(t.missing(
                "local",
                "missing (expected local = { auth = \"psk\" | \"pubkey\", id = \"...\" })",
            ))
        }
    };
    let remote = match t.get("remote") {
        Some(v) => parse_remote(cx, &v)?,
        None => {
            return Err(t.missing(
                "remote",
                "missing (expected remote = { auth = \"psk\" | \"pubkey\", id = \"...\" })",
            ))
        }
    };

    let start = match t.get("start_action") {
        Some(v) => start_action(&v)?,
        None => StartAction::None,
    };
    let dpd_delay = match t.get("dpd_delay") {
        Some(v) => optional_duration(&v)?,
        None => None,
    };
    let dpd = match t.get("dpd_action") {
        Some(v) => dpd_action(&v)?,
        None => DpdAction::Clear,
    };
    let rekey_time = match t.get("rekey_time") {
        Some(v) => optional_duration(&v)?,
        None => Some(Duration::from_secs(4 * 3600)),
    };
    let reauth_time = match t.get("reauth_time") {
        Some(v) => optional_duration(&v)?,
        None => None,
    };
    let longest = rekey_time.max(reauth_time).unwrap_or(Duration::ZERO);
    let over_time = match t.get("over_time") {
        Some(v) => duration(&v)?,
        None => longest / 10,
    };
    let shortest = [rekey_time, reauth_time].into_iter().flatten().min();
    let rand_time = match t.get("rand_time") {
        Some(v) => {
            let r = duration(&v)?;
            if let Some(s) = shortest.filter(|s| r >= *s) {
                return Err(v.err(format!(
                    "rand_time ({}s) must be less than the rekey/reauth time ({}s)",
                    r.as_secs(),
                    s.as_secs()
                )));
            }
            r
        }
        // swanctl's default, kept below the rekey/reauth time it is subtracted from.
        None => match shortest {
            Some(s) if over_time >= s => s / 10,
            _ => over_time,
        },
    };
    let encap = t.get("encap").map_or(Ok(false), |v| v.bool())?;
    let fragmentation = match t.get("fragmentation") {
        None => true,
        Some(v) => match v.str() {
            Ok("accept") | Ok("force") => true,
            _ => v.bool()?,
        },
    };
    let keyingtries = match t.get("keyingtries") {
        None => 1,
        Some(v) => match v.str() {
            Ok("%forever") => 0,
            _ => v.u32_in(0, u32::MAX)?,
        },
    };

    let mut conn = Connection {
        name: name.to_string(),
        local_addrs,
        remote_addrs,
        local_port,
        remote_port,
        proposals,
        local,
        remote,
        start_action: start,
        dpd_delay,
        dpd_action: dpd,
        rekey_time,
        reauth_time,
        over_time,
        rand_time,
        encap,
        fragmentation,
        keyingtries,
        children: Vec::new(),
    };

    // Initiating needs somewhere to initiate to.
    let initiates = |a: StartAction| a != StartAction::None;
    let nowhere = conn.initiate_to().is_none();
    let nowhere_error = |v: &Val<'_>, a: StartAction| {
        v.err(format!(
            "start_action '{}' needs a peer address in remote_addrs (%any can only respond)",
            action_name(a)
        ))
    };
    if nowhere && initiates(conn.start_action) {
        if let Some(v) = t.get("start_action") {
            return Err(nowhere_error(&v, conn.start_action));
        }
    }
    if let Some(v) = t.get("children") {
        let ct = v.table()?;
        for (child_name, span, val) in ct.entries() {
            check_name(cx, &span, &val.path, child_name, "child")?;
            let child_table = val.table()?;
            let child = parse_child(child_name, &child_table)?;
            if let (true, Some(a)) = (nowhere, child.start_action.filter(|a| initiates(*a))) {
                if let Some(v) = child_table.get("start_action") {
                    return Err(nowhere_error(&v, a));
                }
            }
            conn.children.push(child);
        }
    }
    Ok(conn)
}

fn action_name(a: StartAction) -> &'static str {
    match a {
        StartAction::None => "none",
        StartAction::Start => "start",
        StartAction::Trap => "trap",
    }
}

fn ts_list(v: Option<Val<'_>>) -> Result<Vec<TsConfig>, ConfigError> {
    let Some(v) = v else {
        return Ok(vec![TsConfig::dynamic()]);
    };
    let mut out = Vec::new();
    for (s, item) in v.strings("traffic selector", true)? {
        out.push(TsConfig::parse(s).map_err(|e| item.err(e))?);
    }
    if out.is_empty() {
        return Err(v.err("expected at least one traffic selector (or leave it out for dynamic)"));
    }
    Ok(out)
}

/// Hard and random limits from a soft one: (soft, hard, random) with swanctl's defaults.
fn counts(t: &Tbl<'_>, prefix: &str) -> Result<(u64, u64, u64), ConfigError> {
    let get = |k: &str| -> Result<Option<(u64, Val<'_>)>, ConfigError> {
        match t.get(&format!("{k}_{prefix}")) {
            Some(v) => Ok(Some((size(&v)?, v))),
            None => Ok(None),
        }
    };
    let rekey = get("rekey")?.map_or(0, |(n, _)| n);
    let life = match get("life")? {
        Some((n, v)) => {
            if n != 0 && rekey != 0 && n <= rekey {
                return Err(v.err(format!(
                    "life_{prefix} ({n}) must be greater than rekey_{prefix} ({rekey})"
                )));
            }
            n
        }
        None => plus_ten_percent_u64(rekey),
    };
    let rand = match get("rand")? {
        Some((n, v)) => {
            if rekey != 0 && n >= rekey {
                return Err(v.err(format!(
                    "rand_{prefix} ({n}) must be less than rekey_{prefix} ({rekey})"
                )));
            }
            n
        }
        None if rekey != 0 && life > rekey => below(life - rekey, rekey, rekey / 10),
        None => 0,
    };
    Ok((rekey, life, rand))
}

/// swanctl's default random part (hard minus soft limit), or `fallback` when that would not be
/// below the soft limit it is subtracted from.
fn below<T: PartialOrd>(rand: T, soft: T, fallback: T) -> T {
    if rand < soft {
        rand
    } else {
        fallback
    }
}

fn parse_child(name: &str, t: &Tbl<'_>) -> Result<Child, ConfigError> {
    if let Some(v) = t.get("updown") {
        return Err(v.err(
            "updown scripts are not supported (esprit installs SAs and policies in its dataplane itself)",
        ));
    }
    t.check_keys(CHILD_KEYS)?;
    let local_ts = ts_list(t.get("local_ts"))?;
    let remote_ts = ts_list(t.get("remote_ts"))?;
    let esp_proposals = match t.get("esp_proposals") {
        None => vec![EspProposal::defaults()],
        Some(v) => {
            let mut out = Vec::new();
            for (s, item) in v.strings("proposal", true)? {
                out.push(EspProposal::parse(s).map_err(|e| item.err(e))?);
            }
            if out.is_empty() {
                return Err(v.err(
                    "expected at least one proposal (or leave esp_proposals out for \"default\")",
                ));
            }
            out
        }
    };
    let mode = match t.get("mode") {
        None => Mode::Tunnel,
        Some(v) => match v.str()? {
            "tunnel" => Mode::Tunnel,
            "transport" => Mode::Transport,
            other => {
                return Err(v.err(format!(
                    "unsupported mode '{other}' (expected tunnel or transport)"
                )))
            }
        },
    };
    let rekey_time = match t.get("rekey_time") {
        Some(v) => optional_duration(&v)?,
        None => Some(Duration::from_secs(3600)),
    };
    let life_time = match t.get("life_time") {
        Some(v) => {
            let life = optional_duration(&v)?;
            if let (Some(l), Some(r)) = (life, rekey_time) {
                if l <= r {
                    return Err(v.err(format!(
                        "life_time ({}s) must be greater than rekey_time ({}s)",
                        l.as_secs(),
                        r.as_secs()
                    )));
                }
            }
            life
        }
        None => rekey_time.map(plus_ten_percent),
    };
    let rand_time = match t.get("rand_time") {
        Some(v) => {
            let r = duration(&v)?;
            if let Some(k) = rekey_time.filter(|k| r >= *k) {
                return Err(v.err(format!(
                    "rand_time ({}s) must be less than rekey_time ({}s)",
                    r.as_secs(),
                    k.as_secs()
                )));
            }
            r
        }
        None => match (life_time, rekey_time) {
            (Some(l), Some(r)) => below(l.saturating_sub(r), r, r / 10),
            _ => Duration::ZERO,
        },
    };
    let (rekey_bytes, life_bytes, rand_bytes) = counts(t, "bytes")?;
    let (rekey_packets, life_packets, rand_packets) = counts(t, "packets")?;
    let start_action = t
        .get("start_action")
        .map(|v| start_action(&v))
        .transpose()?;
    let dpd_action = t.get("dpd_action").map(|v| dpd_action(&v)).transpose()?;
    let close_action = t
        .get("close_action")
        .map_or(Ok(CloseAction::None), |v| close_action(&v))?;
    let replay_window = match t.get("replay_window") {
        None => DEFAULT_REPLAY_WINDOW,
        Some(v) => v.u32_in(0, MAX_REPLAY_WINDOW)?,
    };
    if replay_window == 0 && esp_proposals.iter().any(|p| p.esn.contains(&true)) {
        let v = t.get("replay_window");
        return Err(match v {
            Some(v) => v.err("esn needs a replay window (RFC 4303 §3.3.3): set replay_window > 0"),
            None => t.err("esn needs a replay window"),
        });
    }
    Ok(Child {
        name: name.to_string(),
        local_ts,
        remote_ts,
        esp_proposals,
        mode,
        rekey_time,
        life_time,
        rand_time,
        rekey_bytes,
        life_bytes,
        rand_bytes,
        rekey_packets,
        life_packets,
        rand_packets,
        start_action,
        dpd_action,
        close_action,
        replay_window,
    })
}
