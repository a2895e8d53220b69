//! One IKE SA, initiator or responder: IKE_SA_INIT, IKE_AUTH with the first child,
//! CREATE_CHILD_SA (new and rekeyed children), INFORMATIONAL (delete, liveness), message IDs
//! with a window of one, retransmission, and a cache of the last response.
//!
//! This module holds the state, the public commands and the timers; each exchange lives in a
//! child module (as strongSwan keeps one task per exchange): `init` IKE_SA_INIT, `ike_auth`
//! IKE_AUTH, `intermediate` IKE_INTERMEDIATE with the additional key exchanges of RFC 9370,
//! `child` CREATE_CHILD_SA (`followup` its IKE_FOLLOWUP_KE exchanges) for children (with the rekey collision rule), `rekey`
//! the IKE SA rekey, `info` INFORMATIONAL, `tasks` the queue of work behind the outstanding
//! request, `window` message IDs, retransmission, the response cache and inbound dispatch.

use super::drops::DropReason;
use super::events::{ChildLimits, ChildSaInstall, IkeEvent, LogLine, Transmit};
use super::params::{ChildMode, ChildParams, ConnectionParams, LocalCredential, RemoteCredential};
use super::proposal::{self, EspSuite, IkeSuite};
use super::ts;
use crate::ike::algorithms::DhGroup;
use crate::ike::crypto::auth;
use crate::ike::crypto::cert::Certificate;
use crate::ike::crypto::dh::KeyExchange;
use crate::ike::crypto::keys::{self, IkeKeys};
use crate::ike::crypto::sk::SkCipher;
use crate::ike::crypto::CryptoError;
use crate::ike::identity::Identity;
use crate::ike::message::consts::{cert_encoding, exchange, flags, notify as nt, protocol};
use crate::ike::message::fragment::{self, FragmentLimits, Reassembly};
use crate::ike::message::{
    self, Delete, Header, Message, Notify, NotifyType, Payload, Proposal, TrafficSelector,
};
use crate::ike::rng::RandomSource;
use aws_lc_rs::constant_time;
use aws_lc_rs::digest;
use child::Collision;
use followup::{FollowupPending, FollowupRequest, FollowupTarget};
use init::SaInitOffer;
use intermediate::{Intermediate, IntermediateRequest};
use rekey::IkeRekey;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasks::Task;
use tracing::Level;
use window::{Outstanding, Request, Window};

mod child;
mod followup;
mod ike_auth;
mod info;
mod init;
mod intermediate;
mod rekey;
mod tasks;
mod window;

/// The NAT-T port of RFC 3948 (the default).
pub const NAT_T_PORT: u16 = 4500;

/// Which end of the IKE SA we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We sent the first IKE_SA_INIT.
    Initiator,
    /// We answered it.
    Responder,
}

/// Where the IKE SA stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_INTERMEDIATE or IKE_AUTH sent. Responder: IKE_SA_INIT answered, waiting
    /// for IKE_INTERMEDIATE or IKE_AUTH.
    AuthPending,
    /// Authenticated; children may come and go.
    Established,
    /// A Delete of the IKE SA is outstanding.
    Deleting,
    /// Finished: the endpoint removes it.
    Dead,
}

/// Shared context of one call into a state machine.
pub struct Ctx<'a> {
    /// Monotonic time.
    pub now: Instant,
    /// Wall-clock seconds since the epoch (certificate validity).
    pub unix_time: i64,
    /// Randomness.
    pub rng: &'a mut dyn RandomSource,
    /// Inbound ESP SPIs in use, so new ones are unique.
    pub spis: &'a mut HashSet<u32>,
    /// Inbound SPIs of children that went down: they stay in `spis` until the endpoint frees
    /// them [`SPI_REUSE_HOLD`](super::endpoint::SPI_REUSE_HOLD) later, since the daemon keeps
    /// a replaced child's inbound SA installed while it drains.
    pub released: &'a mut Vec<u32>,
    /// Output datagrams.
    pub out: &'a mut VecDeque<Transmit>,
    /// Output events.
    pub events: &'a mut VecDeque<IkeEvent>,
    /// IKE SAs created by rekeying, for the endpoint to adopt.
    pub spawned: &'a mut Vec<IkeSa>,
    /// Why the datagram of this call was dropped or ignored, if it was (the first reason).
    pub dropped: Option<DropReason>,
    /// Requests retransmitted during this call (each message once, however many fragments).
    pub retransmitted: u64,
}

impl Ctx<'_> {
    /// Note that the datagram being handled is dropped or ignored for `r`.
    pub fn drop_for(&mut self, r: DropReason) {
        self.dropped.get_or_insert(r);
    }

    fn new_spi(&mut self) -> u32 {
        loop {
            let s = (self.rng.next_u64() as u32) | 0x100;
            if s != u32::MAX && self.spis.insert(s) {
                return s;
            }
        }
    }

    fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; 32];
        self.rng.fill(&mut n);
        n
    }
}

/// A child SA pair as the IKE SA keeps it.
#[derive(Clone, Debug)]
pub struct ChildSa {
    /// Child name.
    pub name: String,
    /// Our inbound SPI.
    pub inbound_spi: u32,
    /// The peer's inbound SPI (our outbound).
    pub outbound_spi: u32,
    /// Algorithms.
    pub suite: EspSuite,
    /// Our selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Mode.
    pub mode: ChildMode,
    /// When it was installed.
    pub installed: Instant,
    /// When to rekey it, if ever.
    pub rekey_at: Option<Instant>,
    /// A rekey of it is under way or done (do not rekey again).
    pub rekeying: bool,
}

/// A child being negotiated by us.
struct PendingChild {
    params: ChildParams,
    inbound_spi: u32,
    offered: Vec<Proposal>,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    nonce: Vec<u8>,
    ke: Option<KeyExchange>,
    rekey_of: Option<u32>,
}

/// What IKE_SA_INIT (or an IKE rekey) yields: the negotiated algorithms, the derived SK_*
/// values and the two ciphers made from them. One value, so a suite never exists without keys.
struct Keys {
    /// The negotiated algorithms.
    suite: IkeSuite,
    /// SK_d, SK_ai/ar, SK_ei/er, SK_pi/pr (never logged).
    ike: IkeKeys,
    /// Encrypts what we send.
    sk_out: SkCipher,
    /// Decrypts what we receive.
    sk_in: SkCipher,
    /// The IV counter of `sk_out` (each message uses the next value).
    iv: u64,
}

/// Why this side could not set up an IKE SA or a child (a local failure, not the peer's
/// refusal, which comes as a notify).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The connection has no IKE proposal to offer.
    #[error("the connection has no IKE proposal")]
    NoProposal,
    /// A key exchange could not be made.
    #[error("key exchange: {0}")]
    KeyExchange(CryptoError),
    /// The key schedule or the SK cipher could not be built.
    #[error("IKE keys: {0}")]
    Keys(CryptoError),
    /// An IKE SA rekey completed on an SA that has no keys.
    #[error("the IKE SA being rekeyed has no keys")]
    NoKeys,
}

impl Keys {
    /// The keys of `role` from the derived `ike` keys of `suite`.
    fn new(role: Role, suite: IkeSuite, ike: IkeKeys) -> Result<Keys, SetupError> {
        let (out, out_a, inn, inn_a) = match role {
            Role::Initiator => (&ike.sk_ei, &ike.sk_ai, &ike.sk_er, &ike.sk_ar),
            Role::Responder => (&ike.sk_er, &ike.sk_ar, &ike.sk_ei, &ike.sk_ai),
        };
        let sk_out =
            SkCipher::with_integ(suite.encr, suite.integ, out, out_a).map_err(SetupError::Keys)?;
        let sk_in =
            SkCipher::with_integ(suite.encr, suite.integ, inn, inn_a).map_err(SetupError::Keys)?;
        Ok(Keys {
            suite,
            ike,
            sk_out,
            sk_in,
            iv: 0,
        })
    }
}

/// One IKE SA.
pub struct IkeSa {
    role: Role,
    state: State,
    conn: Arc<ConnectionParams>,
    candidates: Vec<Arc<ConnectionParams>>,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    /// The negotiated suite and the keys, once IKE_SA_INIT is done.
    keys: Option<Keys>,
    nat_local: bool,
    nat_remote: bool,
    peer_hashes: Vec<u16>,
    peer_frag: bool,
    /// IKE_INTERMEDIATE and the additional key exchanges (RFC 9242, RFC 9370).
    inter: Intermediate,
    /// A child the peer negotiated that waits for its IKE_FOLLOWUP_KE exchanges (RFC 9370).
    followup: Option<FollowupPending>,
    window: Window,
    tasks: VecDeque<Task>,
    children: Vec<ChildSa>,
    first_child: Option<ChildParams>,
    remote_id: Option<Identity>,
    created: Instant,
    established_at: Option<Instant>,
    last_inbound: Instant,
    dead_reason: Option<String>,
    rekey_at: Option<Instant>,
    /// Where a rekey of this IKE SA stands.
    ike_rekey: IkeRekey,
    keepalive_at: Option<Instant>,
    half_open_timeout: Duration,
    /// The IKE port and the NAT-T port (500 and 4500 unless configured otherwise).
    ports: (u16, u16),
    /// Rekeys of our children that the peer started while our own rekey of the same child was
    /// outstanding.
    collisions: Vec<Collision>,
    /// Whether our IKE_AUTH request carries INITIAL_CONTACT (RFC 7296 §2.4): only when this is
    /// the only IKE SA with the peer.
    send_initial_contact: bool,
    /// The peer's IKE_AUTH carried INITIAL_CONTACT and authenticated: the endpoint removes the
    /// other IKE SAs between the same identities ([`IkeSa::take_initial_contact`]).
    initial_contact: bool,
    /// Removed because the peer's INITIAL_CONTACT said it lost this IKE SA.
    forgotten: bool,
}

impl IkeSa {
    /// Our SPI of this IKE SA (the endpoint's key).
    pub fn local_spi(&self) -> u64 {
        match self.role {
            Role::Initiator => self.spi_i,
            Role::Responder => self.spi_r,
        }
    }

    /// Both SPIs (initiator's, responder's).
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The connection (for a responder, the one chosen at IKE_AUTH; before, the first candidate).
    pub fn conn(&self) -> &Arc<ConnectionParams> {
        &self.conn
    }

    /// Replaces the connection's parameters (a reload that kept its IKE settings: the name,
    /// identities, authentication and proposals must be those this SA was made with). Children
    /// created or rekeyed afterwards use the new child settings.
    pub fn set_conn(&mut self, conn: Arc<ConnectionParams>) {
        self.conn = conn;
    }

    /// Negotiated algorithms.
    pub fn suite(&self) -> Option<IkeSuite> {
        self.keys.as_ref().map(|k| k.suite)
    }

    /// Our and the peer's address.
    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// Whether a NAT was detected (either side) or encapsulation forced.
    pub fn nat(&self) -> (bool, bool) {
        (self.nat_local, self.nat_remote)
    }

    /// The peer's authenticated identity.
    pub fn remote_id(&self) -> Option<&Identity> {
        self.remote_id.as_ref()
    }

    /// The children.
    pub fn children(&self) -> &[ChildSa] {
        &self.children
    }

    /// When it was created and established.
    pub fn times(&self) -> (Instant, Option<Instant>) {
        (self.created, self.established_at)
    }

    /// The IKE keys, for debugging exports (never logged).
    pub fn keys(&self) -> Option<&IkeKeys> {
        self.keys.as_ref().map(|k| &k.ike)
    }

    /// Why it died, once dead.
    pub fn dead_reason(&self) -> Option<&str> {
        self.dead_reason.as_deref()
    }

    /// Start an IKE SA as initiator: sends IKE_SA_INIT. `child` is negotiated in IKE_AUTH.
    pub fn initiate(
        ctx: &mut Ctx<'_>,
        conn: Arc<ConnectionParams>,
        child: Option<ChildParams>,
        spi_i: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSa, SetupError> {
        let group = conn
            .proposals
            .first()
            .and_then(|p| p.dh.first().copied())
            .ok_or(SetupError::NoProposal)?;
        let ke = KeyExchange::new(group, ctx.rng).map_err(SetupError::KeyExchange)?;
        let ni = ctx.nonce();
        let mut sa = IkeSa::blank(Role::Initiator, conn, ctx.now, spi_i, 0, local, remote);
        sa.ni = ni;
        sa.first_child = child;
        sa.state = State::InitSent;
        sa.send_sa_init(ctx, SaInitOffer::new(ke));
        Ok(sa)
    }

    fn blank(
        role: Role,
        conn: Arc<ConnectionParams>,
        now: Instant,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IkeSa {
        IkeSa {
            role,
            state: State::InitSent,
            candidates: vec![conn.clone()],
            conn,
            spi_i,
            spi_r,
            local,
            remote,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            keys: None,
            nat_local: false,
            nat_remote: false,
            peer_hashes: Vec::new(),
            peer_frag: false,
            inter: Intermediate::default(),
            followup: None,
            window: Window::default(),
            tasks: VecDeque::new(),
            children: Vec::new(),
            first_child: None,
            remote_id: None,
            created: now,
            established_at: None,
            last_inbound: now,
            dead_reason: None,
            rekey_at: None,
            ike_rekey: IkeRekey::Idle,
            keepalive_at: None,
            half_open_timeout: HALF_OPEN_TIMEOUT,
            ports: (500, NAT_T_PORT),
            collisions: Vec::new(),
            send_initial_contact: true,
            initial_contact: false,
            forgotten: false,
        }
    }

    fn die(&mut self, ctx: &mut Ctx<'_>, reason: String) {
        if self.state == State::Dead {
            return;
        }
        for c in std::mem::take(&mut self.children) {
            self.child_down_event(ctx, &c);
        }
        self.state = State::Dead;
        self.window.outstanding = None;
        self.tasks.clear();
        if self.ike_rekey == IkeRekey::Superseded {
            self.dead_reason = Some(reason);
            return;
        }
        ctx.events.push_back(IkeEvent::IkeDown {
            ike_sa: self.local_spi(),
            ike_spis: self.spis(),
            conn: self.conn.name.clone(),
            reason: reason.clone(),
        });
        self.dead_reason = Some(reason);
    }

    fn child_down_event(&self, ctx: &mut Ctx<'_>, c: &ChildSa) {
        ctx.released.push(c.inbound_spi);
        ctx.events.push_back(IkeEvent::ChildDown {
            ike_sa: self.local_spi(),
            ike_spis: self.spis(),
            conn: self.conn.name.clone(),
            child: c.name.clone(),
            inbound_spi: c.inbound_spi,
            outbound_spi: c.outbound_spi,
            local: self.local,
            remote: self.remote,
            peer_lost: self.forgotten,
        });
    }

    /// An info line about this IKE SA, with its connection, SPIs and peer as fields.
    fn log(&self, ctx: &mut Ctx<'_>, msg: impl Into<String>) {
        ctx.events.push_back(IkeEvent::Log(self.log_line(msg)));
    }

    /// An info line about this IKE SA (the caller may add fields).
    fn log_line(&self, msg: impl Into<String>) -> LogLine {
        LogLine {
            conn: Some(self.conn.name.clone()),
            ike_spis: Some((self.spi_i, self.spi_r)),
            remote: Some(self.remote),
            ..LogLine::new(Level::INFO, format!("{}: {}", self.conn.name, msg.into()))
        }
    }

    /// Arm the IKE rekey timer (with up to 10% jitter so both ends rarely collide) and, behind
    /// a NAT, the keepalive timer.
    fn schedule(&mut self, ctx: &mut Ctx<'_>) {
        self.rekey_at = self.conn.rekey_time.filter(|t| !t.is_zero()).map(|t| {
            let span = (t.as_millis() as u64 / 10).max(1);
            ctx.now + t - Duration::from_millis(ctx.rng.next_u64() % span)
        });
        if self.nat_local {
            self.keepalive_at = Some(ctx.now + KEEPALIVE);
        }
    }

    /// Whether ESP must be UDP-encapsulated.
    pub fn encap(&self) -> bool {
        self.nat_local || self.nat_remote || self.local.port() == self.ports.1
    }

    /// The IKE and NAT-T ports this end uses (the NAT-T port is where IKE moves after NAT
    /// detection; the peer is assumed to use the same pair).
    pub fn set_ports(&mut self, ike: u16, nat_t: u16) {
        self.ports = (ike, nat_t);
    }

    /// Whether our IKE_AUTH request carries INITIAL_CONTACT (by default it does; the endpoint
    /// turns it off when another IKE SA of the connection exists).
    pub fn set_initial_contact(&mut self, send: bool) {
        self.send_initial_contact = send;
    }

    /// True once after the peer's INITIAL_CONTACT arrived in an IKE_AUTH that authenticated: the
    /// caller removes every other IKE SA between the same identities (RFC 7296 §2.4).
    pub fn take_initial_contact(&mut self) -> bool {
        std::mem::take(&mut self.initial_contact) && self.state == State::Established
    }

    /// Our identity on this IKE SA (the connection's).
    pub fn local_id(&self) -> &Identity {
        &self.conn.local_id
    }

    /// Forget this IKE SA and its children without a word to the peer (the peer said with
    /// INITIAL_CONTACT that it lost them): child-down events for every child, then IKE down.
    pub fn forget(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        self.forgotten = true;
        self.die(ctx, reason.to_string());
    }

    /// How long this SA may stay half-open (responder) before it is dropped.
    pub fn set_half_open_timeout(&mut self, t: Duration) {
        self.half_open_timeout = t;
    }

    /// When [`IkeSa::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = self.window.outstanding.as_ref().map(|o| o.deadline);
        let mut min = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        match self.state {
            State::Established => {
                if let (Some(d), None) = (self.conn.dpd_delay, &self.window.outstanding) {
                    min(self.last_inbound + d);
                }
                for c in &self.children {
                    if let (Some(r), false) = (c.rekey_at, c.rekeying) {
                        min(r);
                    }
                }
                if let (Some(r), IkeRekey::Idle) = (self.rekey_at, self.ike_rekey) {
                    min(r);
                }
                if let Some(k) = self.keepalive_at {
                    min(k);
                }
            }
            State::AuthPending if self.role == Role::Responder => {
                min(self.created + self.half_open_timeout)
            }
            _ => {}
        }
        t
    }

    /// Retransmit, give up, start liveness checks and rekeys that are due.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == State::Dead {
            return;
        }
        if self.role == Role::Responder
            && self.state == State::AuthPending
            && ctx.now >= self.created + self.half_open_timeout
        {
            return self.die(ctx, HALF_OPEN_EXPIRED.into());
        }
        if let Some(o) = &mut self.window.outstanding {
            if ctx.now >= o.deadline {
                if o.tries >= self.conn.retransmit.tries {
                    let what = match o.kind {
                        Request::Liveness => "the peer stopped answering liveness checks",
                        _ => "the peer did not answer (retransmissions exhausted)",
                    };
                    return self.die(ctx, what.into());
                }
                o.tries += 1;
                o.deadline = ctx.now + self.conn.retransmit.delay(o.tries);
                ctx.retransmitted += 1;
                for d in &o.data {
                    ctx.out.push_back(Transmit {
                        local: self.local,
                        remote: self.remote,
                        data: d.clone(),
                    });
                }
            }
        }
        if self.state != State::Established {
            return;
        }
        let due: Vec<u32> = self
            .children
            .iter()
            .filter(|c| !c.rekeying && c.rekey_at.is_some_and(|r| ctx.now >= r))
            .map(|c| c.inbound_spi)
            .collect();
        for spi in due {
            self.rekey_child(ctx, spi);
        }
        if self.ike_rekey == IkeRekey::Idle && self.rekey_at.is_some_and(|r| ctx.now >= r) {
            self.rekey_ike(ctx);
        }
        if self.keepalive_at.is_some_and(|k| ctx.now >= k) {
            // RFC 3948 §2.3: a one-octet 0xFF datagram keeps the NAT mapping alive.
            ctx.out.push_back(Transmit {
                local: self.local,
                remote: self.remote,
                data: vec![0xff],
            });
            self.keepalive_at = Some(ctx.now + KEEPALIVE);
        }
        if let Some(d) = self.conn.dpd_delay {
            if self.window.outstanding.is_none()
                && self.tasks.is_empty()
                && ctx.now >= self.last_inbound + d
            {
                self.last_inbound = ctx.now;
                self.tasks.push_back(Task::Liveness);
                self.next_task(ctx);
            }
        }
    }
}

/// The largest IKE message sent whole once fragmentation is negotiated: 1280 octets of IPv6
/// minimum MTU less the IPv6 and UDP headers and the non-ESP marker (strongSwan's default
/// fragment_size is 1280 for the whole datagram).
pub const FRAGMENT_SIZE: usize = 1280 - 40 - 8 - 4;

/// Interval of NAT keepalives when this end is behind a NAT (RFC 3948 suggests 20 s).
pub const KEEPALIVE: Duration = Duration::from_secs(20);

/// How long a responder keeps an IKE SA whose IKE_AUTH never came, unless the endpoint's
/// settings say otherwise.
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The reason a half-open IKE SA dies with when its IKE_AUTH did not come in time.
pub const HALF_OPEN_EXPIRED: &str = "half-open IKE SA timed out";
