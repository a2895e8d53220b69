//! The dataplane daemon's TOML configuration. See `docs/dataplane.md`.
//!
//! Every error names the file, the line and the key, and says what was expected.

use crate::esp::Backend;
use crate::sa::file::SaFileError;
use crate::sa::{Prefix, RouteAction};
use crate::worker::neigh::parse_mac;
use crate::worker::xsk::PollMode;
use crate::xdp::socket::BindMode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One side (LAN or WAN) of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideConfig {
    /// Interface name.
    pub interface: String,
    /// Prefixes reachable directly; empty: the interface's connected prefixes.
    pub onlink: Vec<Prefix>,
    /// Next hop for destinations not on-link.
    pub gateway: Option<IpAddr>,
    /// Static neighbours, merged over the kernel's table.
    pub neighbours: Vec<(IpAddr, [u8; 6])>,
    /// Link MTU override (default: the interface's).
    pub mtu: Option<usize>,
}

/// A tunnel interface (`[[tunnel]]`): a TUN device the dataplane creates, whose traffic goes
/// through the route-based SAs towards `peer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Interface name.
    pub name: String,
    /// The remote address of the tunnel's SAs (one tunnel interface per peer).
    pub peer: IpAddr,
    /// Inner addresses set on the interface, with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Interface MTU (default: the WAN's MTU less the ESP-in-UDP overhead, [`TUNNEL_OVERHEAD`]).
    pub mtu: Option<usize>,
}

/// What a tunnel interface's default MTU leaves for ESP in UDP over IPv6 with AES-GCM
/// (40 + 8 + 8 + 8 + 16 + up to 3 bytes of padding + 2 of trailer, rounded up).
pub const TUNNEL_OVERHEAD: usize = 88;

/// Routes followed from the kernel through tunnel interfaces at most, by default.
pub const DEFAULT_MAX_ROUTES: usize = 2_000_000;

/// What the gateway does with transit traffic while no dataplane forwards it (the daemon is
/// starting, stopped or dead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// The XDP classifiers stay attached and drop what the workers would have taken: traffic
    /// between the sites never reaches the kernel, whatever routes it has.
    #[default]
    Closed,
    /// The classifiers are detached on exit and pass traffic to the kernel while no worker
    /// takes it: the kernel forwards it by its own routes, possibly in clear text.
    Open,
}

impl FailMode {
    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            FailMode::Closed => "closed",
            FailMode::Open => "open",
        }
    }
}

/// The daemon's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Manual SAs (optional: the IKE daemon installs SAs through the API later).
    pub sa_file: Option<PathBuf>,
    /// Protected side.
    pub lan: SideConfig,
    /// Unprotected side.
    pub wan: SideConfig,
    /// Number of workers (one per queue).
    pub workers: u32,
    /// Cores to pin workers to, in order.
    pub cores: Vec<usize>,
    /// Waiting strategy.
    pub poll: PollMode,
    /// AF_XDP bind mode.
    pub mode: BindMode,
    /// XDP attachment: native (driver) or generic.
    pub generic_xdp: bool,
    /// Entries per ring.
    pub ring_size: u32,
    /// UMEM frames per worker.
    pub frames: u32,
    /// AES-GCM library.
    pub backend: Backend,
    /// The control API's Unix socket.
    pub api_socket: PathBuf,
    /// Clamp the MSS of TCP SYNs to the tunnel MTU.
    pub mss_clamp: bool,
    /// ICMP errors (time exceeded, packet too big) per second; 0 sends none.
    pub icmp_rate: u32,
    /// Routes for traffic no SA's selectors claim.
    pub routes: Vec<(Prefix, RouteAction)>,
    /// Fail closed (default) or open.
    pub fail_mode: FailMode,
    /// Group given the API socket (mode 0660 then, 0600 without), so an unprivileged
    /// esprit-ike in that group can connect.
    pub api_group: Option<String>,
    /// The user the daemon switches to once set up (None: it stays uid 0, with only the
    /// capabilities it needs).
    pub user: Option<String>,
    /// Where the OpenMetrics endpoint listens (`[metrics] listen`); None: no endpoint.
    pub metrics: Option<std::net::SocketAddr>,
    /// The most verbose level logged (`log_level`, info).
    pub log_level: esprit_log::LevelFilter,
    /// Log lines as text or JSON (`log_format`, text).
    pub log_format: esprit_log::Format,
    /// Tunnel interfaces (`[[tunnel]]`).
    pub tunnels: Vec<TunnelConfig>,
    /// Most routes followed from the kernel through tunnel interfaces (`routing.max_routes`);
    /// the rest are counted and left out.
    pub max_routes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    sa_file: Option<Spanned<String>>,
    api_socket: Option<Spanned<String>>,
    fail_mode: Option<Spanned<String>>,
    api_group: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    lan: Spanned<RawSide>,
    wan: Spanned<RawSide>,
    workers: Option<Spanned<RawWorkers>>,
    forwarding: Option<Spanned<RawForwarding>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    metrics: Option<Spanned<RawMetrics>>,
    #[serde(default)]
    tunnel: Vec<Spanned<RawTunnel>>,
    routing: Option<Spanned<RawRouting>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    name: Spanned<String>,
    peer: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    max_routes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    tunnel: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForwarding {
    mss_clamp: Option<bool>,
    icmp_errors_per_second: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSide {
    interface: Spanned<String>,
    onlink: Option<Spanned<Vec<String>>>,
    gateway: Option<Spanned<String>>,
    neighbours: Option<Spanned<BTreeMap<String, String>>>,
    mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    count: Option<Spanned<i64>>,
    cores: Option<Spanned<Vec<i64>>>,
    poll: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    xdp: Option<Spanned<String>>,
    ring_size: Option<Spanned<i64>>,
    frames: Option<Spanned<i64>>,
    backend: Option<Spanned<String>>,
}

struct Cx<'a> {
    text: &'a str,
    name: &'a str,
}

impl Cx<'_> {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> SaFileError {
        SaFileError {
            file: self.name.to_string(),
            line: Some(
                self.text[..span.start.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1,
            ),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn side(&self, r: &RawSide, key: &str) -> Result<SideConfig, SaFileError> {
        let interface = r.interface.get_ref().clone();
        if interface.is_empty() || interface.len() > 15 || interface.contains('/') {
            return Err(self.err(
                r.interface.span(),
                &format!("{key}.interface"),
                "expected an interface name (1–15 characters, no '/')",
            ));
        }
        let mut onlink = Vec::new();
        if let Some(o) = &r.onlink {
            for s in o.get_ref() {
                onlink.push(
                    s.parse::<Prefix>()
                        .map_err(|e| self.err(o.span(), &format!("{key}.onlink"), e))?,
                );
            }
        }
        let gateway = match &r.gateway {
            None => None,
            Some(g) => Some(g.get_ref().parse::<IpAddr>().map_err(|_| {
                self.err(
                    g.span(),
                    &format!("{key}.gateway"),
                    format!("expected an IP address, got {:?}", g.get_ref()),
                )
            })?),
        };
        let mut neighbours = Vec::new();
        if let Some(n) = &r.neighbours {
            for (ip, mac) in n.get_ref() {
                let k = format!("{key}.neighbours");
                let ip: IpAddr = ip.parse().map_err(|_| {
                    self.err(
                        n.span(),
                        &k,
                        format!("expected IP address keys, got {ip:?}"),
                    )
                })?;
                let mac = parse_mac(mac).ok_or_else(|| {
                    self.err(
                        n.span(),
                        &k,
                        format!("expected a MAC like \"02:00:00:00:00:01\", got {mac:?}"),
                    )
                })?;
                neighbours.push((ip, mac));
            }
        }
        let mtu = match &r.mtu {
            None => None,
            Some(m) => Some(
                usize::try_from(*m.get_ref())
                    .ok()
                    .filter(|n| (576..=9216).contains(n))
                    .ok_or_else(|| {
                        self.err(
                            m.span(),
                            &format!("{key}.mtu"),
                            "expected an MTU in 576..=9216",
                        )
                    })?,
            ),
        };
        Ok(SideConfig {
            interface,
            onlink,
            gateway,
            neighbours,
            mtu,
        })
    }
}

impl Cx<'_> {
    fn tunnel(
        &self,
        t: &RawTunnel,
        i: usize,
        c: &DataplaneConfig,
    ) -> Result<TunnelConfig, SaFileError> {
        let key = |k: &str| format!("tunnel[{i}].{k}");
        let name = t.name.get_ref().clone();
        if name.is_empty()
            || name.len() > 15
            || name.contains('/')
            || name.contains(char::is_whitespace)
        {
            return Err(self.err(
                t.name.span(),
                &key("name"),
                "expected an interface name (1–15 characters, no '/' or spaces)",
            ));
        }
        if name == c.lan.interface
            || name == c.wan.interface
            || c.tunnels.iter().any(|o| o.name == name)
        {
            return Err(self.err(
                t.name.span(),
                &key("name"),
                format!("interface {name:?} is already in use"),
            ));
        }
        let peer: IpAddr = t.peer.get_ref().parse().map_err(|_| {
            self.err(
                t.peer.span(),
                &key("peer"),
                format!(
                    "expected the peer's WAN address, got {:?}",
                    t.peer.get_ref()
                ),
            )
        })?;
        if c.tunnels.iter().any(|o| o.peer == peer) {
            return Err(self.err(
                t.peer.span(),
                &key("peer"),
                format!("{peer} already has a tunnel interface (one per peer)"),
            ));
        }
        let mut addresses = Vec::new();
        for a in &t.addresses {
            let (ip, len) = a
                .get_ref()
                .split_once('/')
                .and_then(|(ip, len)| Some((ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?)))
                .filter(|(ip, len)| *len <= if ip.is_ipv4() { 32 } else { 128 })
                .ok_or_else(|| {
                    self.err(a.span(), &key("addresses"), format!("expected an address with its prefix length like \"169.254.21.1/30\", got {:?}", a.get_ref()))
                })?;
            addresses.push((ip, len));
        }
        let mtu = match &t.mtu {
            None => None,
            Some(m) => Some(
                usize::try_from(*m.get_ref())
                    .ok()
                    .filter(|n| (576..=9000).contains(n))
                    .ok_or_else(|| {
                        self.err(m.span(), &key("mtu"), "expected an MTU in 576..=9000")
                    })?,
            ),
        };
        Ok(TunnelConfig {
            name,
            peer,
            addresses,
            mtu,
        })
    }
}

impl DataplaneConfig {
    /// Reads and validates a configuration file; a relative `sa_file` is resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, SaFileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SaFileError {
            file: name.clone(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        let mut c = Self::parse(&text, &name)?;
        if let Some(f) = &c.sa_file {
            if f.is_relative() {
                c.sa_file = Some(path.parent().unwrap_or(Path::new(".")).join(f));
            }
        }
        Ok(c)
    }

    /// Parses configuration text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self, SaFileError> {
        let cx = Cx { text, name };
        let raw: Raw = toml::from_str(text).map_err(|e| SaFileError {
            file: name.to_string(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            key: None,
            message: e.message().trim_end().to_string(),
        })?;
        let lan = cx.side(raw.lan.get_ref(), "lan")?;
        let wan = cx.side(raw.wan.get_ref(), "wan")?;
        if lan.interface == wan.interface {
            return Err(cx.err(
                raw.wan.get_ref().interface.span(),
                "wan.interface",
                "LAN and WAN must be different interfaces",
            ));
        }
        let mut c = DataplaneConfig {
            sa_file: raw.sa_file.map(|s| PathBuf::from(s.into_inner())),
            lan,
            wan,
            workers: 1,
            cores: Vec::new(),
            poll: PollMode::Adaptive,
            mode: BindMode::Copy,
            generic_xdp: false,
            ring_size: 2048,
            frames: 8192,
            backend: Backend::default(),
            api_socket: raw
                .api_socket
                .map(|s| PathBuf::from(s.into_inner()))
                .unwrap_or_else(|| PathBuf::from(crate::api::client::DEFAULT_SOCKET)),
            mss_clamp: true,
            icmp_rate: 100,
            routes: Vec::new(),
            fail_mode: FailMode::Closed,
            api_group: None,
            user: None,
            metrics: None,
            log_level: esprit_log::LevelFilter::INFO,
            log_format: esprit_log::Format::Text,
            tunnels: Vec::new(),
            max_routes: DEFAULT_MAX_ROUTES,
        };
        if let Some(l) = &raw.log_level {
            c.log_level = esprit_log::parse_level(l.get_ref())
                .map_err(|e| cx.err(l.span(), "log_level", e.to_string()))?;
        }
        if let Some(f) = &raw.log_format {
            c.log_format = f
                .get_ref()
                .parse()
                .map_err(|e: esprit_log::LogError| cx.err(f.span(), "log_format", e.to_string()))?;
        }
        if let Some(m) = raw
            .metrics
            .as_ref()
            .and_then(|m| m.get_ref().listen.as_ref())
        {
            c.metrics = Some(m.get_ref().parse().map_err(|_| {
                cx.err(
                    m.span(),
                    "metrics.listen",
                    format!(
                        "expected an address and port like \"127.0.0.1:9661\" or \"[::1]:9661\", got {:?}",
                        m.get_ref()
                    ),
                )
            })?);
        }
        for (v, key, what) in [
            (&raw.api_group, "api_group", "a group name"),
            (&raw.user, "user", "a user name"),
        ] {
            let Some(v) = v else { continue };
            let name = v.get_ref();
            if name.is_empty() || name.contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
            {
                return Err(cx.err(v.span(), key, format!("expected {what}, got {name:?}")));
            }
            if key == "user" {
                c.user = Some(name.clone());
            } else {
                c.api_group = Some(name.clone());
            }
        }
        if let Some(f) = &raw.fail_mode {
            c.fail_mode = match f.get_ref().as_str() {
                "closed" => FailMode::Closed,
                "open" => FailMode::Open,
                o => {
                    return Err(cx.err(
                        f.span(),
                        "fail_mode",
                        format!("expected \"closed\" or \"open\", got {o:?}"),
                    ))
                }
            };
        }
        for (i, r) in raw.route.iter().enumerate() {
            let r = r.get_ref();
            let key = |k: &str| format!("route[{i}].{k}");
            let prefix: Prefix = r
                .prefix
                .get_ref()
                .parse()
                .map_err(|e: String| cx.err(r.prefix.span(), &key("prefix"), e))?;
            let action = match (&r.tunnel, r.action.as_ref().map(|a| (a.get_ref().as_str(), a.span()))) {
                (Some(t), None | Some(("tunnel", _))) => {
                    let peer: std::net::IpAddr = t.get_ref().parse().map_err(|_| {
                        cx.err(t.span(), &key("tunnel"), format!("expected the peer's address, got {:?}", t.get_ref()))
                    })?;
                    RouteAction::Tunnel(peer)
                }
                (None, Some(("bypass", _))) => RouteAction::Bypass,
                (None, Some(("drop", _))) => RouteAction::Drop,
                (_, Some((other, sp))) => {
                    return Err(cx.err(
                        sp,
                        &key("action"),
                        format!("expected \"bypass\" or \"drop\" (or tunnel = \"<peer address>\"), got {other:?}"),
                    ))
                }
                (None, None) => {
                    return Err(cx.err(
                        r.prefix.span(),
                        &key("tunnel"),
                        "a route needs tunnel = \"<peer address>\" or action = \"bypass\" | \"drop\"",
                    ))
                }
            };
            if c.routes.iter().any(|(p, _)| *p == prefix) {
                return Err(cx.err(
                    r.prefix.span(),
                    &key("prefix"),
                    format!("{prefix} is routed twice"),
                ));
            }
            c.routes.push((prefix, action));
        }
        for (i, t) in raw.tunnel.iter().enumerate() {
            c.tunnels.push(cx.tunnel(t.get_ref(), i, &c)?);
        }
        if let Some(r) = raw.routing {
            if let Some(m) = r.into_inner().max_routes {
                c.max_routes = usize::try_from(*m.get_ref())
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        cx.err(m.span(), "routing.max_routes", "expected a count ≥ 1")
                    })?;
            }
        }
        if let Some(f) = raw.forwarding {
            let f = f.into_inner();
            if let Some(m) = f.mss_clamp {
                c.mss_clamp = m;
            }
            if let Some(r) = f.icmp_errors_per_second {
                c.icmp_rate = u32::try_from(*r.get_ref())
                    .ok()
                    .filter(|&n| n <= 100_000)
                    .ok_or_else(|| {
                        cx.err(
                            r.span(),
                            "forwarding.icmp_errors_per_second",
                            "expected 0..=100000",
                        )
                    })?;
            }
        }
        if let Some(w) = raw.workers {
            let w = w.into_inner();
            if let Some(n) = w.count {
                c.workers = u32::try_from(*n.get_ref())
                    .ok()
                    .filter(|v| (1..=64).contains(v))
                    .ok_or_else(|| {
                        cx.err(
                            n.span(),
                            "workers.count",
                            "expected 1..=64 workers (one per queue of both interfaces)",
                        )
                    })?;
            }
            if let Some(cs) = w.cores {
                for &core in cs.get_ref() {
                    let core = usize::try_from(core).map_err(|_| {
                        cx.err(cs.span(), "workers.cores", "expected core numbers ≥ 0")
                    })?;
                    c.cores.push(core);
                }
            }
            if let Some(p) = w.poll {
                c.poll = match p.get_ref().as_str() {
                    "adaptive" => PollMode::Adaptive,
                    "busy" => PollMode::Busy,
                    o => {
                        return Err(cx.err(
                            p.span(),
                            "workers.poll",
                            format!("expected \"adaptive\" or \"busy\", got {o:?}"),
                        ))
                    }
                };
            }
            if let Some(m) = w.mode {
                c.mode = match m.get_ref().as_str() {
                    "copy" => BindMode::Copy,
                    "zerocopy" => BindMode::ZeroCopy,
                    o => {
                        return Err(cx.err(
                            m.span(),
                            "workers.mode",
                            format!("expected \"copy\" or \"zerocopy\", got {o:?}"),
                        ))
                    }
                };
            }
            if let Some(x) = w.xdp {
                c.generic_xdp = match x.get_ref().as_str() {
                    "native" => false,
                    "generic" => true,
                    o => {
                        return Err(cx.err(
                            x.span(),
                            "workers.xdp",
                            format!("expected \"native\" or \"generic\", got {o:?}"),
                        ))
                    }
                };
            }
            if let Some(r) = w.ring_size {
                let v = *r.get_ref();
                c.ring_size = u32::try_from(v)
                    .ok()
                    .filter(|n| n.is_power_of_two() && (64..=16384).contains(n))
                    .ok_or_else(|| {
                        cx.err(
                            r.span(),
                            "workers.ring_size",
                            "expected a power of two in 64..=16384",
                        )
                    })?;
            }
            if let Some(f) = w.frames {
                let v = *f.get_ref();
                c.frames = u32::try_from(v)
                    .ok()
                    .filter(|&n| n >= 2 * c.ring_size && n <= 1 << 20)
                    .ok_or_else(|| {
                        cx.err(
                            f.span(),
                            "workers.frames",
                            format!(
                                "expected at least twice ring_size ({}) and at most 1048576",
                                2 * c.ring_size
                            ),
                        )
                    })?;
            }
            if let Some(b) = w.backend {
                c.backend = b
                    .get_ref()
                    .parse()
                    .map_err(|e: String| cx.err(b.span(), "workers.backend", e))?;
            }
        }
        if c.frames < 2 * c.ring_size {
            c.frames = 4 * c.ring_size;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
sa_file = "sa.toml"

[lan]
interface = "lan0"
neighbours = { "10.201.1.2" = "02:00:00:00:1a:02" }

[wan]
interface = "wan0"
gateway = "10.200.0.254"
onlink = ["10.200.0.0/24"]

[forwarding]
mss_clamp = false
icmp_errors_per_second = 10

[[route]]
prefix = "10.202.0.0/16"
tunnel = "10.200.0.2"

[[route]]
prefix = "0.0.0.0/0"
action = "bypass"

[workers]
count = 1
cores = [1]
poll = "busy"
ring_size = 1024
frames = 4096
backend = "aws-lc-rs"
"#;

    #[test]
    fn example_parses() {
        let c = DataplaneConfig::parse(EXAMPLE, "dp.toml").unwrap();
        assert_eq!(c.lan.interface, "lan0");
        assert_eq!(c.lan.neighbours[0].1, [2, 0, 0, 0, 0x1a, 2]);
        assert_eq!(c.wan.gateway, Some("10.200.0.254".parse().unwrap()));
        assert_eq!(
            (c.poll, c.ring_size, c.frames),
            (PollMode::Busy, 1024, 4096)
        );
        assert_eq!(c.backend, Backend::AwsLc);
        assert_eq!(c.cores, vec![1]);
        assert!(!c.mss_clamp);
        assert_eq!(c.icmp_rate, 10);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(
            c.routes[0].1,
            RouteAction::Tunnel("10.200.0.2".parse().unwrap())
        );
        assert_eq!(c.routes[1].1, RouteAction::Bypass);
        assert_eq!(c.fail_mode, FailMode::Closed);
        let c =
            DataplaneConfig::parse(&format!("fail_mode = \"open\"\n{EXAMPLE}"), "dp.toml").unwrap();
        assert_eq!(c.fail_mode, FailMode::Open);
        let c = DataplaneConfig::parse(&format!("api_group = \"esprit\"\n{EXAMPLE}"), "dp.toml")
            .unwrap();
        assert_eq!(c.api_group.as_deref(), Some("esprit"));
        let c =
            DataplaneConfig::parse(&format!("user = \"esprit\"\n{EXAMPLE}"), "dp.toml").unwrap();
        assert_eq!(c.user.as_deref(), Some("esprit"));
        assert_eq!(c.metrics, None);
        let c = DataplaneConfig::parse(
            &format!("{EXAMPLE}\n[metrics]\nlisten = \"[::1]:9661\"\n"),
            "dp.toml",
        )
        .unwrap();
        assert_eq!(c.metrics, Some("[::1]:9661".parse().unwrap()));
        assert_eq!(
            (c.log_level, c.log_format),
            (esprit_log::LevelFilter::INFO, esprit_log::Format::Text)
        );
        let c = DataplaneConfig::parse(
            &format!("log_level = \"debug\"\nlog_format = \"json\"\n{EXAMPLE}"),
            "dp.toml",
        )
        .unwrap();
        assert_eq!(
            (c.log_level, c.log_format),
            (esprit_log::LevelFilter::DEBUG, esprit_log::Format::Json)
        );
    }

    #[test]
    fn a_metrics_address_without_a_port_is_refused_at_load() {
        let e = DataplaneConfig::parse(
            &format!("{EXAMPLE}\n[metrics]\nlisten = \"127.0.0.1\"\n"),
            "dp.toml",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("metrics.listen"));
        assert!(
            e.to_string().contains("expected an address and port"),
            "{e}"
        );
        let e = DataplaneConfig::parse(&format!("{EXAMPLE}\n[metrics]\nport = 1\n"), "dp.toml")
            .unwrap_err();
        assert!(e.message.contains("port"), "{e}");
    }

    #[test]
    fn errors_point_at_the_key() {
        let e = DataplaneConfig::parse(&EXAMPLE.replace("\"busy\"", "\"lazy\""), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("workers.poll"));
        assert!(
            e.to_string()
                .starts_with("dp.toml:28: workers.poll: expected"),
            "{e}"
        );
        let e = DataplaneConfig::parse(&EXAMPLE.replace("count = 1", "count = 0"), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("workers.count"));
        let e = DataplaneConfig::parse(&EXAMPLE.replace("\"bypass\"", "\"teleport\""), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("route[1].action"));
        let e = DataplaneConfig::parse(&EXAMPLE.replace("tunnel = \"10.200.0.2\"", ""), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("route[0].tunnel"));
        let e = DataplaneConfig::parse(
            &EXAMPLE.replace("\"0.0.0.0/0\"", "\"10.202.0.0/16\""),
            "dp.toml",
        )
        .unwrap_err();
        assert!(e.message.contains("routed twice"), "{e}");
        let e = DataplaneConfig::parse(&EXAMPLE.replace("02:00:00:00:1a:02", "nope"), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("lan.neighbours"));
        let e = DataplaneConfig::parse(
            &EXAMPLE.replace("interface = \"wan0\"", "interface = \"lan0\""),
            "dp.toml",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("wan.interface"));
        let e = DataplaneConfig::parse(
            &EXAMPLE.replace("ring_size = 1024", "ring_size = 1000"),
            "dp.toml",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("workers.ring_size"));
        let e = DataplaneConfig::parse(
            &EXAMPLE.replace("[workers]", "[workers]\ncolour = 1"),
            "dp.toml",
        )
        .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        let e = DataplaneConfig::parse(&format!("fail_mode = \"ajar\"\n{EXAMPLE}"), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("fail_mode"));
        let e = DataplaneConfig::parse(&format!("api_group = \"a b\"\n{EXAMPLE}"), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("api_group"));
        let e = DataplaneConfig::parse(&format!("log_level = \"loud\"\n{EXAMPLE}"), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("log_level"));
        let e = DataplaneConfig::parse(&format!("log_format = \"xml\"\n{EXAMPLE}"), "dp.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("log_format"));
    }
}
