//! The esprit-ike event loop: UDP sockets on the IKE ports (the NAT-T one with the non-ESP
//! marker), the control socket, timers and the dataplane link around the sans-IO endpoint.

use super::control::{list_json, ControlRequest, ControlResponse};
use super::dataplane::DataplaneLink;
use super::params::connection_params;
use crate::config::{Config, StartAction};
use crate::ike::rng::SystemRandom;
use crate::ike::session::drops::LogThrottle;
use crate::ike::session::{
    ConnectionParams, CookiePolicy, Endpoint, EndpointSettings, HalfOpenLimits, IkeEvent, LogLine,
    State,
};
use mio::net::{UdpSocket, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::field::{display, DisplayValue};
use tracing::{info, warn, Level};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const METRICS: Token = Token(2);
/// How soon the loop comes back to the metrics responder while it has connections open.
const METRICS_TICK: Duration = Duration::from_millis(10);
const FIRST_UDP: usize = 16;
const FIRST_CONN: usize = 1 << 20;
/// How long the inbound SA of a deleted or replaced child keeps decrypting.
const DRAIN: Duration = Duration::from_secs(2);
// The endpoint keeps a replaced child's inbound SPI from new children longer than it drains.
const _: () = assert!(DRAIN.as_secs() < crate::ike::session::SPI_REUSE_HOLD.as_secs());
/// How long the outbound SA of a child the peer lost (INITIAL_CONTACT) keeps sending after the
/// peer's new child is installed: longer than a round trip, shorter than [`DRAIN`].
const SWITCH_DELAY: Duration = Duration::from_secs(1);
/// Datagrams handled per socket before the loop looks at everything else again.
const UDP_BATCH: usize = 64;
/// Ask for a larger receive buffer (`[daemon] udp_rcvbuf`: a round of rekeys of thousands of
/// tunnels arrives faster than the kernel default, about 200 KiB, holds): above
/// net.core.rmem_max when the daemon may (CAP_NET_ADMIN, before it drops its capabilities),
/// otherwise up to it. Best effort.
fn set_rcvbuf(s: &std::net::UdpSocket, bytes: u32) {
    use std::os::fd::AsRawFd;
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

/// Largest IKE datagram read.
const MAX_DATAGRAM: usize = 65_536;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// A socket could not be set up.
    #[error("{what}: {err}")]
    Io {
        /// What failed.
        what: String,
        /// The error.
        err: io::Error,
    },
    /// The metrics listener could not be opened.
    #[error("{0}")]
    Metrics(#[from] esprit_metrics::MetricsError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
    let what = what.into();
    move |err| RunError::Io { what, err }
}

/// A bound UDP socket: its address and whether it is the NAT-T port.
struct Udp {
    sock: UdpSocket,
    bound: SocketAddr,
    nat_t: bool,
}

struct ControlConn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// `espctl monitor`: events are written to it as they happen.
    monitor: bool,
}

/// The running daemon.
pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    endpoint: Endpoint,
    dataplane: DataplaneLink,
    poll: Poll,
    udp: Vec<Udp>,
    listener: UnixListener,
    conns: HashMap<Token, ControlConn>,
    next_conn: usize,
    restart_at: Vec<(Instant, String)>,
    traps: HashMap<u32, (String, String)>,
    /// Inbound SAs of deleted children, removed from the dataplane after a grace period so
    /// packets the peer sent before switching still decrypt (make-before-break).
    draining: VecDeque<(Instant, u32, IpAddr)>,
    acquired: HashMap<String, Instant>,
    events_rx: Option<std::sync::mpsc::Receiver<esprit_api::EventLine>>,
    waker: Arc<mio::Waker>,
    keylog: Option<super::keylog::KeyLog>,
    /// UDP sockets to read again (readable, not yet drained).
    udp_more: Vec<usize>,
    /// Rate limit of "IKE SA down" warnings, per reason (a flood of half-open expiries).
    down_logs: LogThrottle<String>,
    /// Datagrams on the NAT-T port without the non-ESP marker that are not keepalives (ESP the
    /// dataplane did not take, or junk): dropped here, before the IKE endpoint.
    nat_t_not_ike: u64,
    /// The OpenMetrics endpoint (`[metrics] listen`), served from this loop.
    metrics: Option<esprit_metrics::MetricsServer>,
    /// The digest of each connection's credentials (PSK, certificate and key files) when the
    /// running configuration was loaded: a reload compares with it.
    creds: super::reload::Credentials,
    /// Set by SIGHUP: reload the configuration at the next turn of the loop.
    reload_requested: Arc<AtomicBool>,
}

/// An IKE SPI as the log writes it (16 hex digits).
fn ike_spi(spi: u64) -> DisplayValue<String> {
    display(format!("{spi:016x}"))
}

/// An ESP SPI as the log writes it (8 hex digits).
fn esp_spi(spi: u32) -> DisplayValue<String> {
    display(format!("{spi:08x}"))
}

/// Writes a line of the IKE core with its fields.
fn emit(l: &LogLine) {
    let conn = l.conn.as_deref();
    let ike_spi_i = l.ike_spis.map(|(i, _)| ike_spi(i));
    let ike_spi_r = l.ike_spis.map(|(_, r)| ike_spi(r));
    let spi_in = l.spi_in.map(esp_spi);
    let remote = l.remote.map(display);
    let reason = l.reason;
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                $level, conn, ike_spi_i, ike_spi_r, spi_in, remote, reason, "{}", l.message
            )
        };
    }
    match l.level {
        Level::ERROR => at!(Level::ERROR),
        Level::WARN => at!(Level::WARN),
        Level::INFO => at!(Level::INFO),
        Level::DEBUG => at!(Level::DEBUG),
        _ => at!(Level::TRACE),
    }
}

/// Logs a notification to systemd that could not be sent.
fn notified(r: Result<bool, esprit_harden::notify::NotifyError>) {
    if let Err(e) = r {
        warn!("{e}");
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The local address the kernel would use to reach `remote` (for wildcard sockets).
fn source_for(remote: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = match remote {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((remote, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

impl Daemon {
    /// Load the configuration, bind the sockets and connect to the dataplane.
    pub fn new(config_path: &Path) -> Result<Daemon, RunError> {
        let config = Config::load(config_path).map_err(|e| RunError::Config(e.to_string()))?;
        config
            .check_secret_files(config_path)
            .map_err(RunError::Config)?;
        let params = connection_params(&config)
            .map_err(|e| RunError::Config(format!("{}: {e}", config_path.display())))?;
        let settings = EndpointSettings {
            cookie_threshold: config.daemon.cookie_threshold as usize,
            half_open_timeout: config.daemon.half_open_timeout,
            half_open_limits: HalfOpenLimits {
                total: config.daemon.half_open_limit as usize,
                per_source: config.daemon.half_open_limit_per_source as usize,
            },
            cookie_policy: CookiePolicy {
                lifetime: config.daemon.cookie_secret_lifetime,
                ..CookiePolicy::default()
            },
            port: config.daemon.port,
            port_nat_t: config.daemon.port_nat_t,
        };
        let mut endpoint = Endpoint::new(params, settings, Box::new(SystemRandom::new()));
        endpoint.set_unix_time(unix_now());
        let poll = Poll::new().map_err(io_err("epoll"))?;
        // One socket per configured local address and port; a wildcard when some connection
        // has no local address.
        let mut addrs: Vec<IpAddr> = config
            .connections
            .iter()
            .flat_map(|c| c.local_addrs.iter().copied())
            .collect();
        if config.connections.iter().any(|c| c.local_addrs.is_empty()) || addrs.is_empty() {
            addrs = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
        }
        addrs.sort();
        addrs.dedup();
        let mut udp = Vec::new();
        for a in addrs {
            for (port, nat_t) in [
                (config.daemon.port, false),
                (config.daemon.port_nat_t, true),
            ] {
                let bound = SocketAddr::new(a, port);
                let std_sock = std::net::UdpSocket::bind(bound)
                    .map_err(io_err(format!("bind UDP {bound}")))?;
                std_sock
                    .set_nonblocking(true)
                    .map_err(io_err("nonblocking"))?;
                set_rcvbuf(&std_sock, config.daemon.udp_rcvbuf);
                let mut sock = UdpSocket::from_std(std_sock);
                let token = Token(FIRST_UDP + udp.len());
                poll.registry()
                    .register(&mut sock, token, Interest::READABLE)
                    .map_err(io_err("register"))?;
                udp.push(Udp { sock, bound, nat_t });
            }
        }
        let sock_path = &config.daemon.socket;
        if let Some(dir) = sock_path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        let _ = std::fs::remove_file(sock_path);
        // Created with mode 0600 (no window with a wider one).
        let std_listener = esprit_harden::bind_unix(sock_path, 0o600, None)
            .map_err(io_err(format!("bind {}", sock_path.display())))?;
        std_listener
            .set_nonblocking(true)
            .map_err(io_err("nonblocking"))?;
        let mut listener = UnixListener::from_std(std_listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("register"))?;
        let mut dataplane = DataplaneLink::new(
            config.daemon.dataplane_socket.clone(),
            config.daemon.orphan_timeout,
        );
        dataplane.set_configured(configured_children(&config));
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER).map_err(io_err("waker"))?);
        let metrics = match config.metrics {
            Some(addr) => {
                let m = esprit_metrics::MetricsServer::bind(addr)?;
                poll.registry()
                    .register(
                        &mut mio::unix::SourceFd(&m.as_raw_fd()),
                        METRICS,
                        Interest::READABLE,
                    )
                    .map_err(io_err("register"))?;
                Some(m)
            }
            None => None,
        };
        let keylog = config
            .daemon
            .wireshark_keys
            .as_deref()
            .map(super::keylog::KeyLog::new);
        Ok(Daemon {
            creds: super::reload::credentials(&config),
            reload_requested: Arc::new(AtomicBool::new(false)),
            config_path: config_path.to_path_buf(),
            config,
            endpoint,
            dataplane,
            poll,
            udp,
            listener,
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            restart_at: Vec::new(),
            traps: HashMap::new(),
            draining: VecDeque::new(),
            acquired: HashMap::new(),
            events_rx: None,
            keylog,
            udp_more: Vec::new(),
            waker,
            down_logs: LogThrottle::new(5, Duration::from_secs(10)),
            nat_t_not_ike: 0,
            metrics,
        })
    }

    /// Gives up privileges once the sockets are bound, before anything untrusted is read:
    /// switches to `daemon.user` when set (its control socket chowned to it first), and in
    /// every case ends with no capability at all (bounding set cleared), no_new_privs, memory
    /// locked and the process not dumpable. Call it before [`Daemon::run`], from the thread
    /// that runs the daemon, in a process of its own (it changes the whole process).
    pub fn drop_privileges(&self) -> Result<(), RunError> {
        let user = match &self.config.daemon.user {
            None => None,
            Some(name) => {
                let u = esprit_harden::lookup_user(name)
                    .map_err(io_err(format!("daemon.user {name:?}")))?;
                let sock = &self.config.daemon.socket;
                std::os::unix::fs::chown(sock, Some(u.uid), Some(u.gid))
                    .map_err(io_err(format!("chown {} to {name}", sock.display())))?;
                Some(u)
            }
        };
        let kept = esprit_harden::lock_down(&esprit_harden::LockDown {
            user,
            keep: super::privileges::RUNTIME_CAPABILITIES.to_vec(),
        })
        .map_err(io_err("dropping privileges"))?;
        info!(
            "privileges dropped: uid {}, capabilities kept {kept:?}",
            // SAFETY: getuid cannot fail.
            unsafe { libc::getuid() }
        );
        Ok(())
    }

    fn local_for(&self, conn: &str) -> Result<SocketAddr, String> {
        let c = self
            .config
            .connection(conn)
            .ok_or_else(|| format!("no connection named '{conn}'"))?;
        let remote = c
            .initiate_to()
            .ok_or_else(|| format!("connection '{conn}' has no remote address"))?;
        let ip = match c
            .local_addrs
            .iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
        {
            Some(a) => *a,
            None => source_for(remote).ok_or_else(|| format!("no route to {remote}"))?,
        };
        Ok(SocketAddr::new(ip, self.config.daemon.port))
    }

    fn initiate(&mut self, conn: &str, child: Option<&str>) -> Result<u64, String> {
        let local = self.local_for(conn)?;
        let r = self
            .endpoint
            .initiate(Instant::now(), conn, child, local)
            .map_err(|e| e.to_string());
        match &r {
            Ok(spi) => info!(
                conn,
                ike_spi_i = ike_spi(*spi),
                "{conn}: initiating (IKE SA {spi:016x})"
            ),
            Err(e) => warn!(conn, "{conn}: cannot initiate: {e}"),
        }
        r
    }

    /// Re-establish the children an earlier run left in the dataplane (whatever their
    /// `start_action`: they were up, and the peer may still have them), with INITIAL_CONTACT.
    fn reestablish(&mut self) {
        let endpoint = &self.endpoint;
        let wanted = self.dataplane.wanted(
            |conn| {
                endpoint
                    .connection_sas(conn)
                    .any(|s| s.state() == crate::ike::session::State::Established)
            },
            |conn| endpoint.connection_sas(conn).next().is_some(),
        );
        for (conn, child) in wanted {
            info!(
                conn,
                child,
                "{conn}: re-establishing child {child}, which an earlier run left in the dataplane"
            );
            let _ = self.initiate(&conn, Some(&child));
        }
    }

    fn start_connections(&mut self) {
        let start: Vec<String> = self
            .config
            .connections
            .iter()
            .filter(|c| c.start_action == StartAction::Start && c.initiate_to().is_some())
            .filter(|c| self.endpoint.connection_sas(&c.name).next().is_none())
            .map(|c| c.name.clone())
            .collect();
        for c in start {
            let _ = self.initiate(&c, None);
        }
    }

    /// Trap policies for connections started on demand (`start_action` or `dpd_action` trap):
    /// the dataplane drops their traffic until an SA exists and raises an acquire event.
    fn install_traps(&mut self) {
        use crate::config::{DpdAction, TsAddr};
        let mut id = 0u32;
        let mut traps = Vec::new();
        for c in &self.config.connections {
            for ch in &c.children {
                id += 1;
                let on_demand = c.start_action_of(ch) == StartAction::Trap
                    || c.dpd_action_of(ch) == DpdAction::Trap;
                let (Some(remote), true) = (c.initiate_to(), on_demand) else {
                    continue;
                };
                let local = c
                    .local_addrs
                    .iter()
                    .find(|a| a.is_ipv4() == remote.is_ipv4())
                    .copied()
                    .or_else(|| source_for(remote));
                let prefixes =
                    |ts: &[crate::config::TsConfig], own: Option<IpAddr>| -> Vec<String> {
                        ts.iter()
                            .filter_map(|t| match t.addr {
                                TsAddr::Prefix(a, l) => Some(format!("{a}/{l}")),
                                TsAddr::Dynamic => own
                                    .map(|a| format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 })),
                            })
                            .collect()
                    };
                traps.push((
                    id,
                    c.name.clone(),
                    ch.name.clone(),
                    prefixes(&ch.local_ts, local),
                    prefixes(&ch.remote_ts, Some(remote)),
                ));
            }
        }
        for (id, conn, child, l, r) in traps {
            match self.dataplane.add_policy(id, l, r) {
                Ok(()) => info!(
                    conn,
                    child,
                    policy = id,
                    "{conn}: child {child} trapped (policy {id}): the first packet brings it up"
                ),
                Err(e) => warn!(
                    conn,
                    child,
                    policy = id,
                    "{conn}: trap policy for child {child}: {e}"
                ),
            }
            self.traps.insert(id, (conn, child));
        }
    }

    fn on_dataplane_event(&mut self, e: esprit_api::EventLine) {
        let spi = u32::from_str_radix(e.spi.trim_start_matches("0x"), 16).unwrap_or(0);
        let now = Instant::now();
        match e.event.as_str() {
            "acquire" => {
                let Some((conn, child)) = e.policy.and_then(|p| self.traps.get(&p)).cloned() else {
                    return;
                };
                if self
                    .acquired
                    .get(&conn)
                    .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(5))
                {
                    return;
                }
                self.acquired.insert(conn.clone(), now);
                info!(
                    conn,
                    child, "{conn}: acquire for child {child} ({} -> {})", e.local, e.remote
                );
                let _ = self.initiate(&conn, Some(&child));
            }
            "soft_expire" | "hard_expire" | "seq_exhausted" => {
                // Find the child by its inbound SPI (indexed), or by the outbound one (a scan:
                // the peer picks outbound SPIs, and the event does not say which peer).
                let inbound = if e.direction == "in" {
                    self.endpoint.sa_of_child(spi).map(|_| spi)
                } else {
                    self.endpoint
                        .sas()
                        .flat_map(|s| s.children())
                        .find(|c| e.direction == "out" && c.outbound_spi == spi)
                        .map(|c| c.inbound_spi)
                };
                let Some(inbound) = inbound else { return };
                if e.event == "hard_expire" {
                    info!(
                        spi_in = esp_spi(inbound),
                        "child SA {inbound:08x}: hard limit reached, deleting"
                    );
                    self.endpoint.delete_child(now, inbound);
                } else {
                    info!(
                        spi_in = esp_spi(inbound),
                        "child SA {inbound:08x}: {} ({}), rekeying", e.event, e.direction
                    );
                    self.endpoint.rekey_child(now, inbound);
                }
            }
            _ => {}
        }
    }

    fn socket_for(&self, local: SocketAddr) -> Option<&Udp> {
        let nat_t = local.port() == self.config.daemon.port_nat_t;
        self.udp
            .iter()
            .find(|u| u.nat_t == nat_t && u.bound.ip() == local.ip())
            .or_else(|| {
                self.udp
                    .iter()
                    .find(|u| u.nat_t == nat_t && u.bound.ip().is_unspecified())
            })
    }

    /// Act on events, then send. Events first: a responder installs a new child's SAs in the
    /// dataplane before its answer leaves, so the initiator may use them at once.
    fn flush(&mut self) {
        while let Some(e) = self.endpoint.poll_event() {
            self.on_event(e);
        }
        while let Some(t) = self.endpoint.poll_transmit() {
            let Some(u) = self.socket_for(t.local) else {
                warn!("no socket for {}", t.local);
                continue;
            };
            let r = if u.nat_t && t.data != [0xff] {
                let mut d = Vec::with_capacity(t.data.len() + 4);
                d.extend_from_slice(&[0, 0, 0, 0]);
                d.extend_from_slice(&t.data);
                u.sock.send_to(&d, t.remote)
            } else {
                u.sock.send_to(&t.data, t.remote)
            };
            if let Err(e) = r {
                warn!(remote = %t.remote, "send to {} failed: {e}", t.remote);
            }
        }
        while let Some(e) = self.endpoint.poll_event() {
            self.on_event(e);
        }
    }

    /// Export an IKE SA's keys when `daemon.wireshark_keys` asks for it.
    fn log_ike_keys(&mut self, spi: u64) {
        let Some(kl) = self.keylog.as_mut() else {
            return;
        };
        let Some(sa) = self.endpoint.sa(spi) else {
            return;
        };
        let (Some(k), Some(suite)) = (sa.keys(), sa.suite()) else {
            return;
        };
        let (i, r) = sa.spis();
        if let Err(e) = kl.add_ike(super::keylog::KeyLog::ike_line(
            i,
            r,
            suite.encr,
            suite.integ,
            k,
        )) {
            warn!("wireshark_keys: {e}");
        }
    }

    /// Writes an event line to every `espctl monitor`. One that cannot take it at once (its
    /// socket buffer full: it does not keep up) is disconnected rather than waited for.
    fn broadcast(&mut self, e: &IkeEvent) {
        if !self.conns.values().any(|c| c.monitor) {
            return;
        }
        let Some(v) = super::introspect::event_json(e) else {
            return;
        };
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        let mut gone = Vec::new();
        for (t, c) in self.conns.iter_mut().filter(|(_, c)| c.monitor) {
            if !matches!(c.stream.write(&line), Ok(n) if n == line.len()) {
                gone.push(*t);
            }
        }
        for t in gone {
            if let Some(mut c) = self.conns.remove(&t) {
                let _ = self.poll.registry().deregister(&mut c.stream);
                warn!("espctl monitor disconnected: it did not keep up with the events");
            }
        }
    }

    fn on_event(&mut self, e: IkeEvent) {
        self.broadcast(&e);
        match &e {
            IkeEvent::IkeUp { ike_sa, .. } => self.log_ike_keys(*ike_sa),
            IkeEvent::IkeRekeyed { new, .. } => self.log_ike_keys(*new),
            IkeEvent::ChildUp(c) => {
                if let Some(kl) = self.keylog.as_mut() {
                    if let Err(e) = kl.add_child(c) {
                        warn!("wireshark_keys: {e}");
                    }
                }
            }
            _ => {}
        }
        match e {
            IkeEvent::IkeUp {
                ike_sa,
                ike_spis,
                conn,
                remote_id,
                suite,
            } => info!(
                conn,
                ike_spi_i = ike_spi(ike_spis.0),
                ike_spi_r = ike_spi(ike_spis.1),
                remote_id = %remote_id,
                "{conn}: IKE SA {ike_sa:016x} established with {remote_id} ({})",
                suite.name()
            ),
            IkeEvent::IkeDown {
                ike_sa,
                ike_spis,
                conn,
                reason,
            } => {
                let replaced = reason == crate::ike::session::endpoint::REPLACED_BY_INITIAL_CONTACT;
                let level = if reason.starts_with("deleted") || reason == "terminated" || replaced {
                    Level::INFO
                } else {
                    Level::WARN
                };
                // Limited per kind of reason: the text before the first colon (what follows
                // may come from the peer).
                let kind = reason.split(':').next().unwrap_or_default().to_string();
                if let Some(held) = self.down_logs.admit(kind, Instant::now()) {
                    let more = if held > 0 {
                        format!(" ({held} more IKE SAs down for this reason, not logged)")
                    } else {
                        String::new()
                    };
                    emit(&LogLine {
                        conn: Some(conn.clone()),
                        ike_spis: Some(ike_spis),
                        ..LogLine::new(
                            level,
                            format!("{conn}: IKE SA {ike_sa:016x} down: {reason}{more}"),
                        )
                    });
                }
                let restart = self.config.connection(&conn).is_some_and(|c| {
                    c.start_action == StartAction::Start
                        && c.dpd_action == crate::config::DpdAction::Restart
                        && reason != "deleted"
                        && reason != "terminated"
                        && !replaced
                });
                if restart {
                    self.restart_at
                        .push((Instant::now() + Duration::from_secs(1), conn));
                }
            }
            IkeEvent::ChildUp(c) => {
                info!(
                    conn = c.conn,
                    child = c.child,
                    ike_spi_i = ike_spi(c.ike_spis.0),
                    ike_spi_r = ike_spi(c.ike_spis.1),
                    spi_in = esp_spi(c.inbound_spi),
                    spi_out = esp_spi(c.outbound_spi),
                    "{}: child {} up: SPIs in {:08x} out {:08x}, {}{}",
                    c.conn,
                    c.child,
                    c.inbound_spi,
                    c.outbound_spi,
                    c.suite.name(),
                    if c.encap { ", UDP-encapsulated" } else { "" }
                );
                if let Err(e) = self.dataplane.install(&c) {
                    warn!(
                        conn = c.conn,
                        child = c.child,
                        spi_in = esp_spi(c.inbound_spi),
                        spi_out = esp_spi(c.outbound_spi),
                        "{}: dataplane refused child {}: {e}",
                        c.conn,
                        c.child
                    );
                }
                self.dataplane.child_up(&c.conn, &c.child, DRAIN);
                // Make-before-break: the rekey's initiator switches to the new outbound SA at
                // once, since the responder installed the new inbound SA before answering.
                if let (Some(old_out), true) = (c.replaces_outbound, c.we_initiated) {
                    if let Err(e) = self.dataplane.remove_one(old_out, "out", c.remote.ip()) {
                        info!(
                            conn = c.conn,
                            child = c.child,
                            spi_out = esp_spi(old_out),
                            "{}: removing the replaced outbound SA {old_out:08x}: {e}",
                            c.conn
                        );
                    }
                }
            }
            IkeEvent::ChildDown {
                ike_spis,
                conn,
                child,
                inbound_spi,
                outbound_spi,
                peer_lost,
                local,
                remote,
                ..
            } => {
                info!(
                    conn,
                    child,
                    ike_spi_i = ike_spi(ike_spis.0),
                    ike_spi_r = ike_spi(ike_spis.1),
                    spi_in = esp_spi(inbound_spi),
                    spi_out = esp_spi(outbound_spi),
                    "{conn}: child {child} down: SPIs in {inbound_spi:08x} out {outbound_spi:08x}"
                );
                if peer_lost {
                    // The peer's new child replaces it, but the peer installs that child's
                    // inbound SA only when our answer arrives: keep sending on the old SA (the
                    // first installed wins) a little longer; a peer that kept its old inbound
                    // SA (an esprit whose dataplane survived) still decrypts it.
                    self.dataplane.remove_later(
                        outbound_spi,
                        "out",
                        remote.ip(),
                        Instant::now() + SWITCH_DELAY,
                    );
                } else if let Err(e) = self.dataplane.remove_one(outbound_spi, "out", remote.ip()) {
                    info!(
                        conn,
                        child,
                        spi_out = esp_spi(outbound_spi),
                        "{conn}: removing child {child} from the dataplane: {e}"
                    );
                }
                self.draining
                    .push_back((Instant::now() + DRAIN, inbound_spi, local.ip()));
            }
            IkeEvent::ChildFailed {
                ike_spis,
                conn,
                child,
                reason,
            } => warn!(
                conn,
                child,
                ike_spi_i = ike_spi(ike_spis.0),
                ike_spi_r = ike_spi(ike_spis.1),
                "{conn}: child {child} failed: {reason}"
            ),
            IkeEvent::IkeRekeyed {
                old,
                new,
                new_spis,
                conn,
            } => info!(
                conn,
                ike_spi_i = ike_spi(new_spis.0),
                ike_spi_r = ike_spi(new_spis.1),
                "{conn}: IKE SA {old:016x} rekeyed, now {new:016x}"
            ),
            IkeEvent::Log(l) => emit(&l),
        }
    }

    /// Handle up to [`UDP_BATCH`] datagrams from one socket; returns true if it may hold more
    /// (the loop comes back to it before sleeping, so the control socket and timers are served
    /// between batches even under a flood).
    fn read_udp(&mut self, idx: usize) -> bool {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        for _ in 0..UDP_BATCH {
            let Some(u) = self.udp.get(idx) else {
                return false;
            };
            let (n, from) = match u.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    warn!("receive on {}: {e}", u.bound);
                    return false;
                }
            };
            let core_port = u.bound.port();
            let local_ip = if u.bound.ip().is_unspecified() {
                source_for(from.ip()).unwrap_or(u.bound.ip())
            } else {
                u.bound.ip()
            };
            let local = SocketAddr::new(local_ip, core_port);
            let data = &buf[..n];
            let data = if u.nat_t {
                // RFC 3948: IKE behind the four-octet non-ESP marker; a lone 0xff is a keepalive;
                // anything else is ESP the XDP program did not take.
                if n < 4 || data[..4] != [0, 0, 0, 0] {
                    if data != [0xff] {
                        self.nat_t_not_ike += 1;
                    }
                    continue;
                }
                &data[4..]
            } else {
                data
            };
            self.endpoint.set_unix_time(unix_now());
            self.endpoint
                .handle_datagram(Instant::now(), local, from, data);
            self.flush();
        }
        true
    }

    fn control(&mut self, req: ControlRequest) -> ControlResponse {
        match req {
            ControlRequest::IkeList => {
                ControlResponse::ok(list_json(&self.endpoint, Instant::now()))
            }
            ControlRequest::Initiate { conn, child } => {
                match self.initiate(&conn, child.as_deref()) {
                    Ok(spi) => {
                        ControlResponse::ok(json!({ "ike_sa": super::control::ike_id(spi) }))
                    }
                    Err(e) => ControlResponse::err(e),
                }
            }
            ControlRequest::Rekey { conn, ike, child } => {
                if let Some(name) = &child {
                    let known = self
                        .config
                        .connection(&conn)
                        .is_some_and(|c| c.children.iter().any(|ch| ch.name == *name));
                    if !known {
                        return ControlResponse::err(format!(
                            "connection '{conn}' has no child named '{name}'"
                        ));
                    }
                }
                let now = Instant::now();
                let sas: Vec<(u64, Vec<u32>)> = self
                    .endpoint
                    .sas()
                    .filter(|s| {
                        s.conn().name == conn
                            && s.state() == crate::ike::session::State::Established
                    })
                    .map(|s| {
                        (
                            s.local_spi(),
                            s.children()
                                .iter()
                                .filter(|c| !c.rekeying)
                                .filter(|c| child.as_ref().is_none_or(|n| *n == c.name))
                                .map(|c| c.inbound_spi)
                                .collect(),
                        )
                    })
                    .collect();
                if sas.is_empty() {
                    return ControlResponse::err(format!("no established IKE SA for '{conn}'"));
                }
                let mut started = 0;
                for (spi, children) in sas {
                    if ike {
                        started += usize::from(self.endpoint.rekey_ike(now, spi));
                    } else {
                        for c in children {
                            started += usize::from(self.endpoint.rekey_child(now, c));
                        }
                    }
                }
                ControlResponse::ok(json!({ "rekeying": started }))
            }
            ControlRequest::Terminate { conn } => {
                if self.config.connection(&conn).is_none() {
                    return ControlResponse::err(format!("no connection named '{conn}'"));
                }
                let n = self.endpoint.terminate(Instant::now(), &conn);
                ControlResponse::ok(json!({ "terminated": n }))
            }
            ControlRequest::ConnsList => {
                ControlResponse::ok(super::introspect::conns_json(&self.config, &self.endpoint))
            }
            ControlRequest::CertsList => {
                ControlResponse::ok(super::introspect::certs_json(&self.endpoint))
            }
            ControlRequest::AlgsList => ControlResponse::ok(super::introspect::algs_json()),
            // Marked as a monitor by `serve`, which knows the connection.
            ControlRequest::Monitor => ControlResponse::ok(json!({ "monitoring": true })),
            ControlRequest::Reload => match self.reload_notified() {
                Ok(v) => ControlResponse::ok(v),
                Err(e) => ControlResponse::err(e),
            },
            ControlRequest::Stats => {
                let s = self.endpoint.stats();
                ControlResponse::ok(json!({
                    "ike_sas": self.endpoint.sas().count(),
                    "half_open": self.endpoint.half_open(),
                    "half_open_expired": s.half_open_expired,
                    "cookies_sent": s.cookies_sent,
                    "cookie_rotations": s.cookie_rotations,
                    "dropped": super::control::drops_json(&s.drops),
                    "logs_suppressed": s.logs_suppressed,
                    "nat_t_not_ike": self.nat_t_not_ike,
                    "dataplane_connected": self.dataplane.connected(),
                    "dataplane_workers": self.dataplane.workers(),
                    "sas_installed": self.dataplane.installed(),
                }))
            }
        }
    }

    /// Re-reads the configuration file and applies what changed (see [`super::reload`]). A
    /// file that does not load, or whose connections cannot be built (a missing key file, an
    /// unreadable certificate), changes nothing and says why.
    fn reload(&mut self) -> Result<serde_json::Value, String> {
        use super::reload::{credentials, plan};
        let mut cfg = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        cfg.check_secret_files(&self.config_path)?;
        // Settings that take a restart stay as the daemon runs with them.
        let new_daemon = std::mem::replace(&mut cfg.daemon, self.config.daemon.clone());
        let new_metrics = std::mem::replace(&mut cfg.metrics, self.config.metrics);
        let params = connection_params(&cfg)?;
        let creds = credentials(&cfg);
        let p = {
            let wanted = Config {
                daemon: new_daemon,
                metrics: new_metrics,
                ..cfg.clone()
            };
            plan(&self.config, &self.creds, &wanted, &creds)
        };
        let now = Instant::now();
        // Gone, or re-established: their IKE SAs are deleted (the peer is told) while the old
        // parameters are still in place.
        for name in p.removed.iter().chain(&p.reestablished) {
            let n = self.endpoint.terminate(now, name);
            info!(conn = %name, "{name}: reload deletes its {n} IKE SAs");
        }
        let by_name: HashMap<String, Arc<ConnectionParams>> =
            params.iter().map(|c| (c.name.clone(), c.clone())).collect();
        self.endpoint.set_connections(params);
        // Kept IKE SAs see the new children's settings (a child rekey or a new child uses them).
        for (name, _) in &p.children {
            if let Some(c) = by_name.get(name) {
                self.endpoint.update_conn(c.clone());
            }
        }
        self.dataplane.set_configured(configured_children(&cfg));
        for id in std::mem::take(&mut self.traps).into_keys() {
            if let Err(e) = self.dataplane.remove_policy(id) {
                warn!("reload: removing trap policy {id}: {e}");
            }
        }
        self.config = cfg;
        self.creds = creds;
        self.install_traps();
        for (name, ch) in &p.children {
            let installed: Vec<(String, u32)> = self
                .endpoint
                .sas()
                .filter(|s| s.conn().name == *name && s.state() == State::Established)
                .flat_map(|s| s.children().iter())
                .filter(|c| !c.rekeying)
                .map(|c| (c.name.clone(), c.inbound_spi))
                .collect();
            for (child, spi) in &installed {
                if ch.removed.contains(child) {
                    self.endpoint.delete_child(now, *spi);
                    info!(conn = %name, child = %child, "{name}: reload deletes child {child}");
                } else if ch.changed.contains(child) {
                    self.endpoint.rekey_child(now, *spi);
                    info!(
                        conn = %name,
                        child = %child,
                        "{name}: reload rekeys child {child} with its new settings"
                    );
                }
            }
            // Added children start as their own start_action says (trap ones were trapped by
            // install_traps above, none ones wait for the peer).
            let start: Vec<String> = self
                .config
                .connection(name)
                .map(|c| {
                    c.children
                        .iter()
                        .filter(|x| ch.added.contains(&x.name))
                        .filter(|x| c.start_action_of(x) == StartAction::Start)
                        .map(|x| x.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            for child in start {
                let _ = self.initiate(name, Some(&child));
            }
        }
        let start: Vec<String> = p
            .added
            .iter()
            .chain(&p.reestablished)
            .filter(|n| {
                self.config.connection(n).is_some_and(|c| {
                    c.start_action == StartAction::Start && c.initiate_to().is_some()
                })
            })
            .cloned()
            .collect();
        for name in start {
            let _ = self.initiate(&name, None);
        }
        self.flush();
        if !p.restart_needed.is_empty() {
            warn!(
                "reload: {} changed; restart esprit-ike to apply (the running values stay)",
                p.restart_needed.join(", ")
            );
        }
        info!(
            "configuration reloaded: {} connections ({} added, {} removed, {} re-established, \
             {} with changed children, {} unchanged)",
            self.config.connections.len(),
            p.added.len(),
            p.removed.len(),
            p.reestablished.len(),
            p.children.len(),
            p.unchanged.len()
        );
        Ok(json!({
            "connections": self.config.connections.len(),
            "added": p.added,
            "removed": p.removed,
            "reestablished": p.reestablished,
            "children_changed": p.children.iter().map(|(n, c)| json!({
                "conn": n,
                "added": c.added,
                "removed": c.removed,
                "changed": c.changed,
            })).collect::<Vec<_>>(),
            "unchanged": p.unchanged,
            "restart_needed": p.restart_needed,
        }))
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let token = Token(self.next_conn);
                    self.next_conn += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        self.conns.insert(
                            token,
                            ControlConn {
                                stream,
                                buf: Vec::new(),
                                monitor: false,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("control socket: {e}");
                    return;
                }
            }
        }
    }

    /// [`Self::reload`], telling systemd about it (`RELOADING=1`, then `READY=1`).
    fn reload_notified(&mut self) -> Result<serde_json::Value, String> {
        notified(esprit_harden::notify::reloading());
        let r = self.reload();
        let n = self.config.connections.len();
        notified(esprit_harden::notify::ready(&format!("{n} connections")));
        r
    }

    fn serve(&mut self, token: Token) {
        let mut closed = false;
        let mut lines = Vec::new();
        if let Some(c) = self.conns.get_mut(&token) {
            let mut tmp = [0u8; 4096];
            loop {
                match c.stream.read(&mut tmp) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => c.buf.extend_from_slice(&tmp[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
                if c.buf.len() > 1 << 20 {
                    closed = true;
                    break;
                }
            }
            while let Some(pos) = c.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = c.buf.drain(..=pos).collect();
                lines.push(line);
            }
        }
        for line in lines {
            let resp = match serde_json::from_slice::<ControlRequest>(&line) {
                Ok(ControlRequest::Monitor) => {
                    if let Some(c) = self.conns.get_mut(&token) {
                        c.monitor = true;
                    }
                    self.control(ControlRequest::Monitor)
                }
                Ok(r) => self.control(r),
                Err(e) => ControlResponse::err(format!("bad request: {e}")),
            };
            self.flush();
            let mut out = serde_json::to_vec(&resp).unwrap_or_default();
            out.push(b'\n');
            if let Some(c) = self.conns.get_mut(&token) {
                let _ = c.stream.set_nonblocking_write_all(&out);
            }
        }
        if closed {
            if let Some(mut c) = self.conns.remove(&token) {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }

    /// Serves the metrics listener: new connections, requests, answers.
    fn serve_metrics(&mut self) {
        let Some(mut m) = self.metrics.take() else {
            return;
        };
        m.service(
            Instant::now(),
            |server| {
                let mut v = super::metrics::IkeMetrics::of(&self.endpoint, Instant::now());
                v.nat_t_not_ike = self.nat_t_not_ike;
                v.dataplane_connected = self.dataplane.connected();
                v.sas_installed = self.dataplane.installed();
                v.server = *server;
                Some(v.exposition())
            },
            |line| warn!("{line}"),
        );
        self.metrics = Some(m);
    }

    /// Run until SIGTERM or SIGINT. SAs stay in the dataplane (it keeps forwarding) when the
    /// daemon stops; `espctl terminate` deletes them.
    pub fn run(self) -> Result<(), RunError> {
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, stop.clone()).map_err(io_err("signal handler"))?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, self.reload_requested.clone())
            .map_err(io_err("signal handler"))?;
        self.run_until(stop)
    }

    /// Run until `stop` is set (for running the daemon inside another program, as the lab does).
    pub fn run_until(mut self, stop: Arc<AtomicBool>) -> Result<(), RunError> {
        info!(
            "started: {} connections, sockets {}, control {}{}",
            self.config.connections.len(),
            self.udp
                .iter()
                .map(|u| u.bound.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            self.config.daemon.socket.display(),
            match &self.metrics {
                Some(m) => format!(", metrics http://{}/metrics", m.local_addr()),
                None => String::new(),
            }
        );
        self.dataplane.tick();
        let (tx, rx) = std::sync::mpsc::channel();
        self.events_rx = Some(rx);
        let waker = self.waker.clone();
        let events_thread = super::dataplane::follow_events(
            self.config.daemon.dataplane_socket.clone(),
            stop.clone(),
            tx,
            move || {
                let _ = waker.wake();
            },
        );
        self.install_traps();
        self.reestablish();
        self.start_connections();
        self.flush();
        let mut events = Events::with_capacity(64);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut timeout = Duration::from_millis(500);
            if !self.udp_more.is_empty() {
                timeout = Duration::ZERO;
            }
            if let Some(t) = self.endpoint.poll_timeout() {
                timeout = timeout.min(t.saturating_duration_since(now));
            }
            if self.metrics.as_ref().is_some_and(|m| m.busy()) {
                timeout = timeout.min(METRICS_TICK);
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(RunError::Io {
                        what: "poll".into(),
                        err: e,
                    })
                }
            }
            if self.reload_requested.swap(false, Ordering::Relaxed) {
                match self.reload_notified() {
                    Ok(_) => {}
                    Err(e) => {
                        warn!("reload (SIGHUP) refused, the running configuration stays: {e}")
                    }
                }
            }
            let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
            for t in tokens {
                match t {
                    LISTENER => self.accept(),
                    METRICS => self.serve_metrics(),
                    WAKER => {
                        let pending: Vec<_> = self
                            .events_rx
                            .as_ref()
                            .map(|r| r.try_iter().collect())
                            .unwrap_or_default();
                        for e in pending {
                            self.on_dataplane_event(e);
                        }
                    }
                    Token(i) if (FIRST_UDP..FIRST_CONN).contains(&i) => {
                        if !self.udp_more.contains(&(i - FIRST_UDP)) {
                            self.udp_more.push(i - FIRST_UDP);
                        }
                    }
                    t => self.serve(t),
                }
            }
            // Readable sockets, and those with datagrams left from the last round (mio is
            // edge-triggered: each is read until it would block, a batch per round).
            for idx in std::mem::take(&mut self.udp_more) {
                if self.read_udp(idx) {
                    self.udp_more.push(idx);
                }
            }
            self.endpoint.set_unix_time(unix_now());
            self.endpoint.handle_timeout(Instant::now());
            let now = Instant::now();
            let due: Vec<String> = self
                .restart_at
                .iter()
                .filter(|(t, _)| *t <= now)
                .map(|(_, c)| c.clone())
                .collect();
            self.restart_at.retain(|(t, _)| *t > now);
            for c in due {
                let _ = self.initiate(&c, None);
            }
            let now = Instant::now();
            // Oldest first: every entry drains for the same DRAIN.
            while let Some(&(t, spi, addr)) = self.draining.front() {
                if t > now {
                    break;
                }
                self.draining.pop_front();
                let _ = self.dataplane.remove_one(spi, "in", addr);
            }
            if self.metrics.as_ref().is_some_and(|m| m.busy()) {
                self.serve_metrics();
            }
            self.dataplane.tick();
            self.reestablish();
            if std::mem::take(&mut self.dataplane.restored) {
                // The restarted dataplane sends from sequence number 1 again, which the peers'
                // replay windows would drop: replace every child SA (make-before-break).
                let children: Vec<u32> = self
                    .endpoint
                    .sas()
                    .flat_map(|s| s.children())
                    .map(|c| c.inbound_spi)
                    .collect();
                info!("dataplane restarted: rekeying {} child SAs", children.len());
                for c in children {
                    self.endpoint.rekey_child(Instant::now(), c);
                }
            }
            self.flush();
        }
        for (_, spi, addr) in std::mem::take(&mut self.draining) {
            let _ = self.dataplane.remove_one(spi, "in", addr);
        }
        info!("stopping; SAs stay in the dataplane");
        drop(events_thread);
        let _ = std::fs::remove_file(&self.config.daemon.socket);
        Ok(())
    }
}

/// Every configured (connection, child) pair.
fn configured_children(config: &Config) -> Vec<(String, String)> {
    config
        .connections
        .iter()
        .flat_map(|c| {
            c.children
                .iter()
                .map(|ch| (c.name.clone(), ch.name.clone()))
        })
        .collect()
}

/// Writing a short answer to a non-blocking stream: retry briefly on WouldBlock.
trait WriteAllNonBlocking {
    fn set_nonblocking_write_all(&mut self, data: &[u8]) -> io::Result<()>;
}

impl WriteAllNonBlocking for UnixStream {
    fn set_nonblocking_write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !data.is_empty() {
            match self.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
