//! The IKE endpoint: every IKE SA of the daemon, the dispatch of datagrams to them by SPI, new
//! responders (with COOKIEs past a half-open threshold, RFC 7296 §2.6), and the commands the
//! daemon and the CLI give.

use super::cookie::{CookieJar, CookiePolicy};
use super::drops::{DropCounters, DropReason, LogThrottle};
use super::events::{IkeEvent, LogLine, Transmit};
use super::ike_sa::{Ctx, IkeSa, Role, State, HALF_OPEN_EXPIRED};
use super::limits::{HalfOpen, HalfOpenLimits, OverLimit};
use super::params::ConnectionParams;
use super::timers::Timers;
use crate::ike::identity::Identity;
use crate::ike::message::consts::{exchange, flags, notify as nt};
use crate::ike::message::{self, Header, Notify, Payload};
use crate::ike::rng::RandomSource;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Level;

/// Why [`Endpoint::initiate`] could not start an exchange.
#[derive(Debug, thiserror::Error)]
pub enum InitiateError {
    /// No connection of that name is configured.
    #[error("no connection named '{0}'")]
    NoConnection(String),
    /// The connection only responds (its remote addresses are all `%any`).
    #[error("connection '{0}' has no remote address to initiate to")]
    NoRemoteAddress(String),
    /// The connection has no child of that name.
    #[error("connection '{conn}' has no child '{child}'")]
    NoChild {
        /// The connection.
        conn: String,
        /// The child asked for.
        child: String,
    },
    /// This side could not set the IKE SA up.
    #[error(transparent)]
    Setup(#[from] super::ike_sa::SetupError),
}

/// Counters of the endpoint: every datagram it dropped or ignored, by reason (the sum of all
/// IKE SAs' and the endpoint's own), and what it did against floods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams dropped or ignored, by reason.
    pub drops: DropCounters,
    /// IKE_SA_INIT requests answered with a COOKIE demand.
    pub cookies_sent: u64,
    /// Times the COOKIE secret was replaced.
    pub cookie_rotations: u64,
    /// Half-open IKE SAs removed because IKE_AUTH did not come in time.
    pub half_open_expired: u64,
    /// Log lines about drops held back by the rate limit.
    pub logs_suppressed: u64,
    /// Requests of ours retransmitted because no answer came in time.
    pub retransmissions: u64,
}

/// Settings of the endpoint itself.
#[derive(Clone, Copy, Debug)]
pub struct EndpointSettings {
    /// Half-open IKE SAs before COOKIEs are demanded.
    pub cookie_threshold: usize,
    /// Limits on half-open IKE SAs, in total and per source address.
    pub half_open_limits: HalfOpenLimits,
    /// How long a responder keeps an IKE SA whose IKE_AUTH has not come.
    pub half_open_timeout: std::time::Duration,
    /// When the COOKIE secret is replaced.
    pub cookie_policy: CookiePolicy,
    /// The IKE port (500).
    pub port: u16,
    /// The NAT-T port (4500).
    pub port_nat_t: u16,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        EndpointSettings {
            cookie_threshold: 10,
            half_open_limits: HalfOpenLimits::default(),
            half_open_timeout: super::ike_sa::HALF_OPEN_TIMEOUT,
            cookie_policy: CookiePolicy::default(),
            port: 500,
            port_nat_t: super::ike_sa::NAT_T_PORT,
        }
    }
}

/// The reason of the `IkeDown` event of an IKE SA removed because the peer's INITIAL_CONTACT
/// said it lost it: its replacement is up, nothing is to be restarted.
pub const REPLACED_BY_INITIAL_CONTACT: &str = "replaced: the peer sent INITIAL_CONTACT";

/// How long the inbound SPI of a child that went down (deleted, or replaced by a rekey) stays
/// reserved before a new child may get it: the daemon keeps a replaced child's inbound SA in
/// the dataplane while packets sent on it drain (2 s) and then removes it by SPI, which must
/// not hit a new child that reused the SPI meanwhile.
pub const SPI_REUSE_HOLD: Duration = Duration::from_secs(10);

/// Log lines of one kind of drop written at once before the rate limit holds them back.
const LOG_BURST: u32 = 5;
/// Then one line of a kind per this interval, and a summary of those held back.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// All IKE SAs of one daemon.
pub struct Endpoint {
    conns: Vec<Arc<ConnectionParams>>,
    /// Position in `conns` of the first connection of each name.
    conn_by_name: HashMap<String, usize>,
    settings: EndpointSettings,
    sas: HashMap<u64, IkeSa>,
    /// The IKE SAs of each connection, by name (see [`Endpoint::settle`]).
    by_conn: HashMap<String, BTreeSet<u64>>,
    /// The authenticated IKE SAs by (local, remote) identity, for INITIAL_CONTACT.
    by_peer: HashMap<(Identity, Identity), BTreeSet<u64>>,
    /// What each IKE SA is filed under in `by_conn` and `by_peer`, and its children's inbound
    /// SPIs in `child_sa`.
    filed: HashMap<u64, Filed>,
    /// The IKE SA holding each child, by the child's inbound SPI.
    child_sa: HashMap<u32, u64>,
    half_open: HalfOpen,
    timers: Timers,
    rng: Box<dyn RandomSource + Send>,
    cookies: Option<CookieJar>,
    spis: HashSet<u32>,
    /// Inbound SPIs of children that went down, with when they may be reused (oldest first).
    spi_hold: VecDeque<(Instant, u32)>,
    unix_time: i64,
    out: VecDeque<Transmit>,
    events: VecDeque<IkeEvent>,
    stats: EndpointStats,
    sa_drops: HashMap<u64, DropCounters>,
    throttle: LogThrottle<DropReason>,
    /// When held-back log lines are next summarized, while some are.
    summary_at: Option<Instant>,
}

impl Endpoint {
    /// An endpoint serving these connections.
    pub fn new(
        conns: Vec<Arc<ConnectionParams>>,
        settings: EndpointSettings,
        rng: Box<dyn RandomSource + Send>,
    ) -> Self {
        Endpoint {
            conn_by_name: name_index(&conns),
            conns,
            settings,
            sas: HashMap::new(),
            by_conn: HashMap::new(),
            by_peer: HashMap::new(),
            filed: HashMap::new(),
            child_sa: HashMap::new(),
            half_open: HalfOpen::default(),
            timers: Timers::default(),
            rng,
            cookies: None,
            spis: HashSet::new(),
            spi_hold: VecDeque::new(),
            unix_time: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            sa_drops: HashMap::new(),
            throttle: LogThrottle::new(LOG_BURST, LOG_INTERVAL),
            summary_at: None,
        }
    }

    /// Replace the connections (a reload). Existing IKE SAs keep theirs.
    pub fn set_connections(&mut self, conns: Vec<Arc<ConnectionParams>>) {
        self.conn_by_name = name_index(&conns);
        self.conns = conns;
    }

    /// Gives the IKE SAs of connection `conn.name` its new parameters, after a reload that
    /// changed only its children: the IKE SAs stay, and children created or rekeyed from now on
    /// use the new settings. Returns how many IKE SAs were updated.
    pub fn update_conn(&mut self, conn: Arc<ConnectionParams>) -> usize {
        let mut n = 0;
        for sa in self.sas.values_mut() {
            if sa.conn().name == conn.name {
                sa.set_conn(conn.clone());
                n += 1;
            }
        }
        n
    }

    /// The configured connections.
    pub fn connections(&self) -> &[Arc<ConnectionParams>] {
        &self.conns
    }

    /// Set the wall clock (seconds since the epoch) used to check certificate validity.
    pub fn set_unix_time(&mut self, t: i64) {
        self.unix_time = t;
    }

    /// Drop and refusal counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// How many IKE SAs are half-open (responder, waiting for IKE_AUTH).
    pub fn half_open(&self) -> usize {
        self.half_open.len()
    }

    /// The datagrams one IKE SA dropped or ignored, by reason.
    pub fn sa_drops(&self, spi: u64) -> DropCounters {
        self.sa_drops.get(&spi).copied().unwrap_or_default()
    }

    /// The IKE SAs.
    pub fn sas(&self) -> impl Iterator<Item = &IkeSa> {
        self.sas.values()
    }

    /// One IKE SA by our SPI.
    pub fn sa(&self, spi: u64) -> Option<&IkeSa> {
        self.sas.get(&spi)
    }

    /// The IKE SAs of connection `conn` (O(its IKE SAs), not of all).
    pub fn connection_sas(&self, conn: &str) -> impl Iterator<Item = &IkeSa> {
        self.sas_of(conn).map(|(_, s)| s)
    }

    /// Whether a new child could not get `spi` as its inbound SPI now (a child has it, or
    /// had it less than [`SPI_REUSE_HOLD`] ago).
    pub fn inbound_spi_reserved(&self, spi: u32) -> bool {
        self.spis.contains(&spi)
    }

    /// The IKE SA (our SPI) holding the child with this inbound SPI.
    pub fn sa_of_child(&self, inbound_spi: u32) -> Option<u64> {
        self.sa_with_child(inbound_spi)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IkeEvent> {
        self.events.pop_front()
    }

    /// The earliest time [`Endpoint::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.summary_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run `f` with a context; IKE SAs it spawned are adopted. Returns `f`'s result and the
    /// reason the IKE SA gave for dropping the datagram, if it did.
    fn with_ctx<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Ctx<'_>, &mut HashMap<u64, IkeSa>) -> R,
    ) -> (R, Option<DropReason>) {
        while let Some(&(at, spi)) = self.spi_hold.front() {
            if at > now {
                break;
            }
            self.spi_hold.pop_front();
            self.spis.remove(&spi);
        }
        let mut spawned = Vec::new();
        let mut released = Vec::new();
        let mut ctx = Ctx {
            now,
            unix_time: self.unix_time,
            rng: &mut *self.rng,
            spis: &mut self.spis,
            released: &mut released,
            out: &mut self.out,
            events: &mut self.events,
            spawned: &mut spawned,
            dropped: None,
            retransmitted: 0,
        };
        let r = f(&mut ctx, &mut self.sas);
        let dropped = ctx.dropped;
        self.stats.retransmissions += ctx.retransmitted;
        let reuse = now + SPI_REUSE_HOLD;
        self.spi_hold
            .extend(released.into_iter().map(|spi| (reuse, spi)));
        for sa in spawned {
            let spi = sa.local_spi();
            self.sas.insert(spi, sa);
            self.timers.register(spi);
            self.settle(spi);
        }
        (r, dropped)
    }

    /// Bring the indexes up to date after IKE SA `spi` was called: remove it if it died,
    /// otherwise file its next deadline, whether it is still half-open, its connection, its
    /// identities once authenticated and its children. O(log n + its children).
    fn settle(&mut self, spi: u64) {
        let Some(sa) = self.sas.get(&spi) else {
            self.forget(spi);
            return;
        };
        if sa.state() == State::Dead {
            if self.half_open.remove(spi) && sa.dead_reason() == Some(HALF_OPEN_EXPIRED) {
                self.stats.half_open_expired += 1;
            }
            self.sas.remove(&spi);
            self.forget(spi);
            return;
        }
        if !(sa.role() == Role::Responder && sa.state() == State::AuthPending) {
            self.half_open.remove(spi);
        }
        self.timers.set(spi, sa.poll_timeout());
        let f = self.filed.entry(spi).or_default();
        // A responder's connection may change when IKE_AUTH names the peer.
        if f.conn.as_deref() != Some(sa.conn().name.as_str()) {
            if let Some(old) = f.conn.take() {
                if let Some(set) = self.by_conn.get_mut(&old) {
                    set.remove(&spi);
                    if set.is_empty() {
                        self.by_conn.remove(&old);
                    }
                }
            }
            let name = sa.conn().name.clone();
            self.by_conn.entry(name.clone()).or_default().insert(spi);
            f.conn = Some(name);
        }
        if f.peer.is_none() {
            if let Some(remote) = sa.remote_id() {
                let key = (sa.local_id().clone(), remote.clone());
                self.by_peer.entry(key.clone()).or_default().insert(spi);
                f.peer = Some(key);
            }
        }
        let children = sa.children();
        let same = children.len() == f.children.len()
            && children
                .iter()
                .zip(&f.children)
                .all(|(c, s)| c.inbound_spi == *s);
        if !same {
            for s in std::mem::take(&mut f.children) {
                if self.child_sa.get(&s) == Some(&spi) {
                    self.child_sa.remove(&s);
                }
            }
            f.children = children.iter().map(|c| c.inbound_spi).collect();
            for c in children {
                self.child_sa.insert(c.inbound_spi, spi);
            }
        }
    }

    fn forget(&mut self, spi: u64) {
        self.timers.remove(spi);
        self.half_open.remove(spi);
        self.sa_drops.remove(&spi);
        let Some(f) = self.filed.remove(&spi) else {
            return;
        };
        if let Some(name) = f.conn {
            if let Some(set) = self.by_conn.get_mut(&name) {
                set.remove(&spi);
                if set.is_empty() {
                    self.by_conn.remove(&name);
                }
            }
        }
        if let Some(key) = f.peer {
            if let Some(set) = self.by_peer.get_mut(&key) {
                set.remove(&spi);
                if set.is_empty() {
                    self.by_peer.remove(&key);
                }
            }
        }
        for s in f.children {
            if self.child_sa.get(&s) == Some(&spi) {
                self.child_sa.remove(&s);
            }
        }
    }

    /// The IKE SAs of connection `conn`, by SPI.
    fn sas_of(&self, conn: &str) -> impl Iterator<Item = (u64, &IkeSa)> {
        self.by_conn
            .get(conn)
            .into_iter()
            .flatten()
            .filter_map(|k| self.sas.get(k).map(|s| (*k, s)))
    }

    fn adopt(&mut self, sa: IkeSa) {
        let spi = sa.local_spi();
        self.sas.insert(spi, sa);
        self.timers.register(spi);
        self.settle(spi);
    }

    /// Count a dropped datagram (for IKE SA `spi` if it has one) and log it, rate-limited.
    fn count_drop(&mut self, now: Instant, r: DropReason, remote: SocketAddr, spi: Option<u64>) {
        self.stats.drops.add(r);
        if let Some(spi) = spi.filter(|s| self.sas.contains_key(s)) {
            self.sa_drops.entry(spi).or_default().add(r);
        }
        if r == DropReason::Retransmit {
            return;
        }
        match self.throttle.admit(r, now) {
            None => {
                self.stats.logs_suppressed += 1;
                self.summary_at.get_or_insert(now + LOG_INTERVAL);
            }
            Some(held) => {
                let sa = spi
                    .map(|s| format!(" for IKE SA {s:016x}"))
                    .unwrap_or_default();
                let more = if held > 0 {
                    format!(" ({held} more like it suppressed)")
                } else {
                    String::new()
                };
                let (level, message) = match r {
                    DropReason::HalfOpenLimit
                    | DropReason::HalfOpenLimitSource
                    | DropReason::InvalidCookie => (Level::WARN, format!(
                        "refused IKE_SA_INIT from {remote}: {r} (half-open IKE SAs: {} in total, {} from {}){more}",
                        self.half_open.len(),
                        self.half_open.from_source(remote.ip()),
                        remote.ip()
                    )),
                    _ => (
                        Level::DEBUG,
                        format!("dropped a datagram from {remote}{sa}: {r}{more}"),
                    ),
                };
                let known = spi.and_then(|s| self.sas.get(&s));
                self.events.push_back(IkeEvent::Log(LogLine {
                    conn: known.map(|sa| sa.conn().name.clone()),
                    ike_spis: known.map(|sa| sa.spis()),
                    remote: Some(remote),
                    reason: Some(r.name()),
                    ..LogLine::new(level, message)
                }));
            }
        }
    }

    /// Summarize the log lines held back, once per [`LOG_INTERVAL`] while there are some.
    fn summarize(&mut self, now: Instant) {
        if self.summary_at.is_none_or(|t| now < t) {
            return;
        }
        self.summary_at = None;
        let mut held: Vec<(DropReason, u64)> = self
            .throttle
            .take_suppressed()
            .into_iter()
            .map(|(r, n)| (*r, n))
            .collect();
        held.sort_unstable();
        for (r, n) in held {
            self.events.push_back(IkeEvent::Log(LogLine {
                reason: Some(r.name()),
                ..LogLine::new(
                    Level::WARN,
                    format!(
                        "dropped datagrams: {n} more {r} suppressed in the last {}s",
                        LOG_INTERVAL.as_secs()
                    ),
                )
            }));
        }
    }

    /// Rekey the IKE SA with our SPI `spi`. Returns whether it started.
    pub fn rekey_ike(&mut self, now: Instant, spi: u64) -> bool {
        let (r, _) = self.with_ctx(now, |ctx, sas| {
            sas.get_mut(&spi).is_some_and(|sa| sa.rekey_ike(ctx))
        });
        self.settle(spi);
        r
    }

    fn new_ike_spi(&mut self) -> u64 {
        loop {
            let s = self.rng.next_u64();
            if s != 0 && !self.sas.contains_key(&s) {
                return s;
            }
        }
    }

    /// Start a connection as initiator from `local` (the daemon resolves the source address).
    /// `child` names the child to negotiate in IKE_AUTH (default: the first).
    pub fn initiate(
        &mut self,
        now: Instant,
        conn: &str,
        child: Option<&str>,
        local: SocketAddr,
    ) -> Result<u64, InitiateError> {
        let c = self
            .conn_by_name
            .get(conn)
            .and_then(|&i| self.conns.get(i))
            .cloned()
            .ok_or_else(|| InitiateError::NoConnection(conn.to_string()))?;
        let remote_ip = *c
            .remote_addrs
            .first()
            .ok_or_else(|| InitiateError::NoRemoteAddress(conn.to_string()))?;
        let remote = SocketAddr::new(remote_ip, c.remote_port);
        let child_params = match child {
            Some(n) => Some(c.child(n).cloned().ok_or_else(|| InitiateError::NoChild {
                conn: conn.to_string(),
                child: n.to_string(),
            })?),
            None => c.children.first().cloned(),
        };
        // An established IKE SA of this connection takes the child instead of a new IKE SA.
        if child.is_some() {
            let existing = self
                .sas_of(conn)
                .filter(|(_, s)| s.state() == State::Established)
                .map(|(k, _)| k)
                .min();
            if let (Some(spi), Some(p)) = (existing, child_params.clone()) {
                self.with_ctx(now, |ctx, sas| {
                    if let Some(sa) = sas.get_mut(&spi) {
                        sa.create_child(ctx, p);
                    }
                });
                self.settle(spi);
                return Ok(spi);
            }
        }
        let spi = self.new_ike_spi();
        // INITIAL_CONTACT says this is the only IKE SA between the two identities (RFC 7296
        // §2.4): not when another exists, of this connection or of another one between the
        // same identities (two tunnels to one peer).
        let same_peer = |s: &IkeSa| {
            s.conn().name == c.name
                || (s.local_id() == &c.local_id
                    && c.remote_id.is_some()
                    && s.remote_id().or(s.conn().remote_id.as_ref()) == c.remote_id.as_ref())
        };
        let alone = !self
            .sas
            .values()
            .any(|s| s.state() != State::Dead && same_peer(s));
        let (sa, _) = self.with_ctx(now, |ctx, _| {
            IkeSa::initiate(ctx, c, child_params, spi, local, remote)
        });
        let mut sa = sa?;
        sa.set_initial_contact(alone);
        sa.set_ports(self.settings.port, self.settings.port_nat_t);
        self.adopt(sa);
        Ok(spi)
    }

    /// Delete every IKE SA of a connection (telling the peers). Returns how many.
    pub fn terminate(&mut self, now: Instant, conn: &str) -> usize {
        let spis: Vec<u64> = self.sas_of(conn).map(|(k, _)| k).collect();
        self.with_ctx(now, |ctx, sas| {
            for s in &spis {
                if let Some(sa) = sas.get_mut(s) {
                    sa.delete(ctx);
                }
            }
        });
        for s in &spis {
            self.settle(*s);
        }
        spis.len()
    }

    fn sa_with_child(&self, inbound_spi: u32) -> Option<u64> {
        self.child_sa
            .get(&inbound_spi)
            .copied()
            .filter(|k| self.sas.contains_key(k))
    }

    /// Rekey a child SA by its inbound SPI. Returns whether one was found.
    pub fn rekey_child(&mut self, now: Instant, inbound_spi: u32) -> bool {
        let Some(k) = self.sa_with_child(inbound_spi) else {
            return false;
        };
        let (r, _) = self.with_ctx(now, |ctx, sas| {
            sas.get_mut(&k)
                .is_some_and(|sa| sa.rekey_child(ctx, inbound_spi))
        });
        self.settle(k);
        r
    }

    /// Delete one child SA by its inbound SPI.
    pub fn delete_child(&mut self, now: Instant, inbound_spi: u32) -> bool {
        let Some(k) = self.sa_with_child(inbound_spi) else {
            return false;
        };
        self.with_ctx(now, |ctx, sas| {
            if let Some(sa) = sas.get_mut(&k) {
                sa.delete_children(ctx, vec![inbound_spi]);
            }
        });
        self.settle(k);
        true
    }

    /// Run the timers that are due: only the IKE SAs whose deadline passed are called,
    /// earliest first, same instants in the order the IKE SAs were created.
    pub fn handle_timeout(&mut self, now: Instant) {
        for spi in self.timers.due(now) {
            self.with_ctx(now, |ctx, sas| {
                if let Some(sa) = sas.get_mut(&spi) {
                    sa.handle_timeout(ctx);
                }
            });
            self.settle(spi);
        }
        self.summarize(now);
    }

    fn candidates(&self, local: SocketAddr, remote: SocketAddr) -> Vec<Arc<ConnectionParams>> {
        self.conns
            .iter()
            .filter(|c| c.local_addrs.is_empty() || c.local_addrs.contains(&local.ip()))
            .filter(|c| c.remote_addrs.is_empty() || c.remote_addrs.contains(&remote.ip()))
            .cloned()
            .collect()
    }

    /// Handle a datagram received on `local` from `remote` (non-ESP marker already removed).
    /// A datagram that is not acted on raises exactly one drop counter.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.summarize(now);
        let h = match Header::parse(data) {
            Ok(h) => h,
            Err(_) => return self.count_drop(now, DropReason::Malformed, remote, None),
        };
        if h.exchange == exchange::IKE_SA_INIT
            && !h.is_response()
            && h.spi_r == 0
            && h.message_id == 0
        {
            if let Some((r, spi)) = self.new_responder(now, local, remote, data, h) {
                self.count_drop(now, r, remote, spi);
            }
            return;
        }
        // The original initiator sets the I flag: then we are the responder and our SPI is SPIr.
        let ours = if h.from_initiator() { h.spi_r } else { h.spi_i };
        let Some(sa) = self.sas.get(&ours) else {
            return self.count_drop(now, DropReason::UnknownSpi, remote, None);
        };
        let mine = match sa.role() {
            Role::Initiator => !h.from_initiator(),
            Role::Responder => h.from_initiator(),
        };
        if !mine {
            return self.count_drop(now, DropReason::Unexpected, remote, Some(ours));
        }
        let (_, dropped) = self.with_ctx(now, |ctx, sas| {
            if let Some(sa) = sas.get_mut(&ours) {
                sa.handle(ctx, local, remote, data);
            }
        });
        if let Some(r) = dropped {
            self.count_drop(now, r, remote, Some(ours));
        }
        self.honour_initial_contact(now, ours);
        self.settle(ours);
    }

    /// RFC 7296 §2.4: an IKE SA that just authenticated with INITIAL_CONTACT is the only one
    /// the peer has with us, so every other established IKE SA between the same identities is
    /// stale (the peer restarted). They and their children go without a Delete; the children's
    /// child-down events follow the new SA's child-up, so the daemon installs before it removes.
    /// Only the IKE SA `spi` that just handled a datagram is looked at, so a datagram's cost
    /// does not grow with the number of IKE SAs; the scan for stale ones runs once per
    /// authenticated INITIAL_CONTACT.
    fn honour_initial_contact(&mut self, now: Instant, spi: u64) {
        let Some(sa) = self.sas.get_mut(&spi) else {
            return;
        };
        if !sa.take_initial_contact() {
            return;
        }
        let (local_id, Some(remote_id)) = (sa.local_id().clone(), sa.remote_id().cloned()) else {
            return;
        };
        {
            let stale: Vec<u64> = self
                .by_peer
                .get(&(local_id, remote_id))
                .into_iter()
                .flatten()
                .filter(|k| {
                    **k != spi
                        && self.sas.get(k).is_some_and(|s| {
                            matches!(s.state(), State::Established | State::Deleting)
                        })
                })
                .copied()
                .collect();
            self.with_ctx(now, |ctx, sas| {
                for k in &stale {
                    if let Some(s) = sas.get_mut(k) {
                        s.forget(ctx, REPLACED_BY_INITIAL_CONTACT);
                    }
                }
            });
            for k in stale {
                self.settle(k);
            }
        }
    }

    fn plain_reply(&mut self, local: SocketAddr, remote: SocketAddr, spi_i: u64, n: Notify) {
        let hh = Header::new(spi_i, 0, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
        self.out.push_back(Transmit {
            local,
            remote,
            data: message::encode_plain(&hh, &[Payload::Notify(n)]),
        });
    }

    /// An IKE_SA_INIT request: a retransmission, a COOKIE demand, a refusal, or a new
    /// half-open IKE SA. Returns the drop reason (and the IKE SA it concerns) if it is dropped.
    fn new_responder(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        h: Header,
    ) -> Option<(DropReason, Option<u64>)> {
        if let Some(spi) = self.half_open.lookup(h.spi_i, remote) {
            // A retransmission of a request we answered: same answer.
            self.with_ctx(now, |ctx, sas| {
                if let Some(sa) = sas.get(&spi) {
                    sa.resend_init_response(ctx);
                }
            });
            return Some((DropReason::Retransmit, Some(spi)));
        }
        let m = match message::decode(data, None) {
            Ok(m) => m,
            Err(message::DecodeError::UnsupportedCritical(t)) => {
                let n = Notify::new(nt::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t]);
                self.plain_reply(local, remote, h.spi_i, n);
                return Some((DropReason::InitRefused, None));
            }
            Err(_) => return Some((DropReason::Malformed, None)),
        };
        let candidates = self.candidates(local, remote);
        if candidates.is_empty() {
            let n = Notify::new(nt::NO_PROPOSAL_CHOSEN, Vec::new());
            self.plain_reply(local, remote, h.spi_i, n);
            return Some((DropReason::NoConnection, None));
        }
        if self.half_open.len() >= self.settings.cookie_threshold {
            let ni = m.nonce().cloned().unwrap_or_default();
            // RFC 7296 §2.6: the COOKIE must be the first payload.
            let got = match m.payloads.first() {
                Some(Payload::Notify(n)) if n.ntype == nt::COOKIE => Some(n.data.clone()),
                _ => None,
            };
            let policy = self.settings.cookie_policy;
            let rng = &mut *self.rng;
            let jar = self
                .cookies
                .get_or_insert_with(|| CookieJar::new(policy, &mut *rng, now));
            let ok = got
                .as_ref()
                .is_some_and(|g| jar.check(&mut *rng, now, g, &ni, remote.ip(), h.spi_i));
            let want = (!ok).then(|| jar.make(&mut *rng, now, &ni, remote.ip(), h.spi_i));
            self.stats.cookie_rotations = jar.rotations();
            if let Some(want) = want {
                self.plain_reply(local, remote, h.spi_i, Notify::new(nt::COOKIE, want));
                if got.is_some() {
                    return Some((DropReason::InvalidCookie, None));
                }
                self.stats.cookies_sent += 1;
                return None;
            }
        }
        // Limits after the cookie: a source that does not answer COOKIEs cannot use up the
        // limits of others by spoofing their addresses.
        match self
            .half_open
            .check(&self.settings.half_open_limits, remote.ip())
        {
            Ok(()) => {}
            Err(OverLimit::Total) => return Some((DropReason::HalfOpenLimit, None)),
            Err(OverLimit::Source) => return Some((DropReason::HalfOpenLimitSource, None)),
        }
        let spi_r = self.new_ike_spi();
        let (sa, _) = self.with_ctx(now, |ctx, _| {
            IkeSa::respond_init(ctx, candidates, &m, data, spi_r, local, remote)
        });
        let Some(mut sa) = sa else {
            return Some((DropReason::InitRefused, None));
        };
        sa.set_half_open_timeout(self.settings.half_open_timeout);
        sa.set_ports(self.settings.port, self.settings.port_nat_t);
        self.half_open.insert(h.spi_i, remote, spi_r);
        self.adopt(sa);
        None
    }
}

/// Where an IKE SA is filed in the endpoint's indexes.
#[derive(Default)]
struct Filed {
    /// Its connection's name (in `by_conn`).
    conn: Option<String>,
    /// Its (local, remote) identities, once authenticated (in `by_peer`).
    peer: Option<(Identity, Identity)>,
    /// Its children's inbound SPIs (in `child_sa`), in its order.
    children: Vec<u32>,
}

/// Position of the first connection of each name.
fn name_index(conns: &[Arc<ConnectionParams>]) -> HashMap<String, usize> {
    let mut m = HashMap::with_capacity(conns.len());
    for (i, c) in conns.iter().enumerate() {
        m.entry(c.name.clone()).or_insert(i);
    }
    m
}
