//! The IKE endpoint: every IKE SA of the daemon, the dispatch of datagrams to them by SPI, new
//! responders (with COOKIEs past a half-open threshold, RFC 7296 §2.6), and the commands the
//! daemon and the CLI give.

use super::events::{IkeEvent, Transmit};
use super::ike_sa::{Ctx, IkeSa, Role, State};
use super::params::ConnectionParams;
use crate::ike::message::consts::{exchange, flags, notify as nt};
use crate::ike::message::{self, Header, Notify, Payload};
use crate::ike::rng::RandomSource;
use aws_lc_rs::constant_time;
use aws_lc_rs::digest;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Counters of what the endpoint dropped or refused, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams that did not decode.
    pub malformed: u64,
    /// Datagrams for an IKE SA we do not have.
    pub unknown_spi: u64,
    /// IKE_SA_INIT requests answered with a COOKIE demand.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests with a wrong cookie.
    pub bad_cookies: u64,
    /// IKE_SA_INIT requests no connection matched.
    pub no_connection: u64,
}

/// Settings of the endpoint itself.
#[derive(Clone, Copy, Debug)]
pub struct EndpointSettings {
    /// Half-open IKE SAs before COOKIEs are demanded.
    pub cookie_threshold: usize,
    /// How long a responder keeps an IKE SA whose IKE_AUTH has not come.
    pub half_open_timeout: std::time::Duration,
    /// The IKE port (500).
    pub port: u16,
    /// The NAT-T port (4500).
    pub port_nat_t: u16,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        EndpointSettings {
            cookie_threshold: 10,
            half_open_timeout: super::ike_sa::HALF_OPEN_TIMEOUT,
            port: 500,
            port_nat_t: super::ike_sa::NAT_T_PORT,
        }
    }
}

/// The reason of the `IkeDown` event of an IKE SA removed because the peer's INITIAL_CONTACT
/// said it lost it: its replacement is up, nothing is to be restarted.
pub const REPLACED_BY_INITIAL_CONTACT: &str = "replaced: the peer sent INITIAL_CONTACT";

/// All IKE SAs of one daemon.
pub struct Endpoint {
    conns: Vec<Arc<ConnectionParams>>,
    settings: EndpointSettings,
    sas: HashMap<u64, IkeSa>,
    half_open: HashMap<(u64, SocketAddr), u64>,
    rng: Box<dyn RandomSource + Send>,
    cookie_secret: [u8; 32],
    spis: HashSet<u32>,
    unix_time: i64,
    out: VecDeque<Transmit>,
    events: VecDeque<IkeEvent>,
    stats: EndpointStats,
}

impl Endpoint {
    /// An endpoint serving these connections.
    pub fn new(
        conns: Vec<Arc<ConnectionParams>>,
        settings: EndpointSettings,
        mut rng: Box<dyn RandomSource + Send>,
    ) -> Self {
        let mut cookie_secret = [0u8; 32];
        rng.fill(&mut cookie_secret);
        Endpoint {
            conns,
            settings,
            sas: HashMap::new(),
            half_open: HashMap::new(),
            rng,
            cookie_secret,
            spis: HashSet::new(),
            unix_time: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    /// Replace the connections (a reload). Existing IKE SAs keep theirs.
    pub fn set_connections(&mut self, conns: Vec<Arc<ConnectionParams>>) {
        self.conns = conns;
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

    /// The IKE SAs.
    pub fn sas(&self) -> impl Iterator<Item = &IkeSa> {
        self.sas.values()
    }

    /// One IKE SA by our SPI.
    pub fn sa(&self, spi: u64) -> Option<&IkeSa> {
        self.sas.get(&spi)
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
        self.sas.values().filter_map(IkeSa::poll_timeout).min()
    }

    fn with_ctx<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Ctx<'_>, &mut HashMap<u64, IkeSa>) -> R,
    ) -> R {
        let mut spawned = Vec::new();
        let mut ctx = Ctx {
            now,
            unix_time: self.unix_time,
            rng: &mut *self.rng,
            spis: &mut self.spis,
            out: &mut self.out,
            events: &mut self.events,
            spawned: &mut spawned,
        };
        let r = f(&mut ctx, &mut self.sas);
        for sa in spawned {
            self.sas.insert(sa.local_spi(), sa);
        }
        r
    }

    /// Rekey the IKE SA with our SPI `spi`. Returns whether it started.
    pub fn rekey_ike(&mut self, now: Instant, spi: u64) -> bool {
        self.with_ctx(now, |ctx, sas| {
            sas.get_mut(&spi).is_some_and(|sa| sa.rekey_ike(ctx))
        })
    }

    fn reap(&mut self) {
        let dead: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, s)| s.state() == State::Dead)
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            self.sas.remove(&k);
        }
        let sas = &self.sas;
        self.half_open.retain(|_, spi| {
            sas.get(spi)
                .is_some_and(|s| s.state() == State::AuthPending && s.role() == Role::Responder)
        });
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
    ) -> Result<u64, String> {
        let c = self
            .conns
            .iter()
            .find(|c| c.name == conn)
            .cloned()
            .ok_or_else(|| format!("no connection named '{conn}'"))?;
        let remote_ip = *c
            .remote_addrs
            .first()
            .ok_or_else(|| format!("connection '{conn}' has no remote address to initiate to"))?;
        let remote = SocketAddr::new(remote_ip, c.remote_port);
        let child_params = match child {
            Some(n) => Some(
                c.child(n)
                    .cloned()
                    .ok_or_else(|| format!("connection '{conn}' has no child '{n}'"))?,
            ),
            None => c.children.first().cloned(),
        };
        // An established IKE SA of this connection takes the child instead of a new IKE SA.
        if let Some(n) = child {
            let existing = self
                .sas
                .iter()
                .find(|(_, s)| s.conn().name == conn && s.state() == State::Established)
                .map(|(k, _)| *k);
            if let (Some(spi), Some(p)) = (existing, child_params.clone()) {
                self.with_ctx(now, |ctx, sas| {
                    if let Some(sa) = sas.get_mut(&spi) {
                        sa.create_child(ctx, p);
                    }
                });
                let _ = n;
                return Ok(spi);
            }
        }
        let spi = self.new_ike_spi();
        // INITIAL_CONTACT says this is the only IKE SA with the peer: not when another exists.
        let alone = !self
            .sas
            .values()
            .any(|s| s.conn().name == conn && s.state() != State::Dead);
        let sa = self.with_ctx(now, |ctx, _| {
            IkeSa::initiate(ctx, c, child_params, spi, local, remote)
        })?;
        let mut sa = sa;
        sa.set_initial_contact(alone);
        sa.set_ports(self.settings.port, self.settings.port_nat_t);
        self.sas.insert(spi, sa);
        Ok(spi)
    }

    /// Delete every IKE SA of a connection (telling the peers). Returns how many.
    pub fn terminate(&mut self, now: Instant, conn: &str) -> usize {
        let spis: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, s)| s.conn().name == conn)
            .map(|(k, _)| *k)
            .collect();
        self.with_ctx(now, |ctx, sas| {
            for s in &spis {
                if let Some(sa) = sas.get_mut(s) {
                    sa.delete(ctx);
                }
            }
        });
        self.reap();
        spis.len()
    }

    /// Rekey a child SA by its inbound SPI. Returns whether one was found.
    pub fn rekey_child(&mut self, now: Instant, inbound_spi: u32) -> bool {
        let found = self
            .sas
            .iter()
            .find(|(_, s)| s.children().iter().any(|c| c.inbound_spi == inbound_spi))
            .map(|(k, _)| *k);
        let Some(k) = found else { return false };
        self.with_ctx(now, |ctx, sas| {
            sas.get_mut(&k)
                .is_some_and(|sa| sa.rekey_child(ctx, inbound_spi))
        })
    }

    /// Delete one child SA by its inbound SPI.
    pub fn delete_child(&mut self, now: Instant, inbound_spi: u32) -> bool {
        let found = self
            .sas
            .iter()
            .find(|(_, s)| s.children().iter().any(|c| c.inbound_spi == inbound_spi))
            .map(|(k, _)| *k);
        let Some(k) = found else { return false };
        self.with_ctx(now, |ctx, sas| {
            if let Some(sa) = sas.get_mut(&k) {
                sa.delete_children(ctx, vec![inbound_spi]);
            }
        });
        true
    }

    /// Run timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.with_ctx(now, |ctx, sas| {
            for sa in sas.values_mut() {
                if sa.poll_timeout().is_some_and(|t| t <= now) {
                    sa.handle_timeout(ctx);
                }
            }
        });
        self.reap();
    }

    fn cookie_for(&self, ni: &[u8], remote: SocketAddr, spi_i: u64) -> Vec<u8> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(ni);
        match remote.ip() {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        ctx.update(&self.cookie_secret);
        let mut c = vec![1u8];
        c.extend_from_slice(&ctx.finish().as_ref()[..16]);
        c
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
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let h = match Header::parse(data) {
            Ok(h) => h,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if h.exchange == exchange::IKE_SA_INIT
            && !h.is_response()
            && h.spi_r == 0
            && h.message_id == 0
        {
            self.new_responder(now, local, remote, data, h);
            self.reap();
            return;
        }
        // The original initiator sets the I flag: then we are the responder and our SPI is SPIr.
        let ours = if h.from_initiator() { h.spi_r } else { h.spi_i };
        if !self.sas.contains_key(&ours) {
            self.stats.unknown_spi += 1;
            return;
        }
        self.with_ctx(now, |ctx, sas| {
            if let Some(sa) = sas.get_mut(&ours) {
                let mine = match sa.role() {
                    Role::Initiator => !h.from_initiator(),
                    Role::Responder => h.from_initiator(),
                };
                if mine {
                    sa.handle(ctx, local, remote, data);
                }
            }
        });
        self.honour_initial_contact(now);
        self.reap();
    }

    /// RFC 7296 §2.4: an IKE SA that just authenticated with INITIAL_CONTACT is the only one
    /// the peer has with us, so every other established IKE SA between the same identities is
    /// stale (the peer restarted). They and their children go without a Delete; the children's
    /// child-down events follow the new SA's child-up, so the daemon installs before it removes.
    fn honour_initial_contact(&mut self, now: Instant) {
        let fresh: Vec<u64> = self
            .sas
            .iter_mut()
            .filter_map(|(k, s)| s.take_initial_contact().then_some(*k))
            .collect();
        for spi in fresh {
            let Some(sa) = self.sas.get(&spi) else {
                continue;
            };
            let (local_id, Some(remote_id)) = (sa.local_id().clone(), sa.remote_id().cloned())
            else {
                continue;
            };
            let stale: Vec<u64> = self
                .sas
                .iter()
                .filter(|(k, s)| {
                    **k != spi
                        && matches!(s.state(), State::Established | State::Deleting)
                        && s.remote_id() == Some(&remote_id)
                        && *s.local_id() == local_id
                })
                .map(|(k, _)| *k)
                .collect();
            self.with_ctx(now, |ctx, sas| {
                for k in &stale {
                    if let Some(s) = sas.get_mut(k) {
                        s.forget(ctx, REPLACED_BY_INITIAL_CONTACT);
                    }
                }
            });
        }
    }

    fn new_responder(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        h: Header,
    ) {
        if let Some(spi) = self.half_open.get(&(h.spi_i, remote)).copied() {
            // A retransmission of a request we answered: same answer.
            self.with_ctx(now, |ctx, sas| {
                if let Some(sa) = sas.get(&spi) {
                    sa.resend_init_response(ctx);
                }
            });
            return;
        }
        let m = match message::decode(data, None) {
            Ok(m) => m,
            Err(message::DecodeError::UnsupportedCritical(t)) => {
                let hh = Header::new(h.spi_i, 0, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
                let p = [Payload::Notify(Notify::new(
                    nt::UNSUPPORTED_CRITICAL_PAYLOAD,
                    vec![t],
                ))];
                self.out.push_back(Transmit {
                    local,
                    remote,
                    data: message::encode_plain(&hh, &p),
                });
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let candidates = self.candidates(local, remote);
        if candidates.is_empty() {
            self.stats.no_connection += 1;
            let hh = Header::new(h.spi_i, 0, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
            let p = [Payload::Notify(Notify::new(
                nt::NO_PROPOSAL_CHOSEN,
                Vec::new(),
            ))];
            self.out.push_back(Transmit {
                local,
                remote,
                data: message::encode_plain(&hh, &p),
            });
            return;
        }
        if self.half_open.len() >= self.settings.cookie_threshold {
            let ni = m
                .find(|p| {
                    if let Payload::Nonce(n) = p {
                        Some(n.clone())
                    } else {
                        None
                    }
                })
                .unwrap_or_default();
            let want = self.cookie_for(&ni, remote, h.spi_i);
            // RFC 7296 §2.6: the COOKIE must be the first payload.
            let got = match m.payloads.first() {
                Some(Payload::Notify(n)) if n.ntype == nt::COOKIE => Some(n.data.clone()),
                _ => None,
            };
            let ok = got
                .as_ref()
                .is_some_and(|g| constant_time::verify_slices_are_equal(g, &want).is_ok());
            if !ok {
                if got.is_some() {
                    self.stats.bad_cookies += 1;
                }
                self.stats.cookies_sent += 1;
                let hh = Header::new(h.spi_i, 0, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
                let p = [Payload::Notify(Notify::new(nt::COOKIE, want))];
                self.out.push_back(Transmit {
                    local,
                    remote,
                    data: message::encode_plain(&hh, &p),
                });
                return;
            }
        }
        let spi_r = self.new_ike_spi();
        let sa = self.with_ctx(now, |ctx, _| {
            IkeSa::respond_init(ctx, candidates, &m, data, spi_r, local, remote)
        });
        if let Some(mut sa) = sa {
            sa.set_half_open_timeout(self.settings.half_open_timeout);
            sa.set_ports(self.settings.port, self.settings.port_nat_t);
            self.half_open.insert((h.spi_i, remote), spi_r);
            self.sas.insert(spi_r, sa);
        }
    }
}
