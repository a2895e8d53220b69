//! One IKE SA, initiator or responder: IKE_SA_INIT, IKE_AUTH with the first child,
//! CREATE_CHILD_SA (new and rekeyed children), INFORMATIONAL (delete, liveness), message IDs
//! with a window of one, retransmission, and a cache of the last response.

use super::drops::DropReason;
use super::events::{ChildLimits, ChildSaInstall, IkeEvent, Transmit};
use super::params::{ChildMode, ChildParams, ConnectionParams, LocalCredential, RemoteCredential};
use super::proposal::{self, EspSuite, IkeSuite};
use super::ts;
use crate::ike::algorithms::DhGroup;
use crate::ike::crypto::auth;
use crate::ike::crypto::cert::Certificate;
use crate::ike::crypto::dh::KeyExchange;
use crate::ike::crypto::keys::{self, IkeKeys};
use crate::ike::crypto::sk::SkCipher;
use crate::ike::identity::Identity;
use crate::ike::message::consts::{cert_encoding, exchange, flags, notify as nt, protocol};
use crate::ike::message::fragment::{self, FragmentLimits, Reassembly};
use crate::ike::message::{
    self, Delete, Header, Message, Notify, Payload, Proposal, TrafficSelector,
};
use crate::ike::rng::RandomSource;
use aws_lc_rs::constant_time;
use aws_lc_rs::digest;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Initiator: IKE_AUTH sent. Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
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
    /// Output datagrams.
    pub out: &'a mut VecDeque<Transmit>,
    /// Output events.
    pub events: &'a mut VecDeque<IkeEvent>,
    /// IKE SAs created by rekeying, for the endpoint to adopt.
    pub spawned: &'a mut Vec<IkeSa>,
    /// Why the datagram of this call was dropped or ignored, if it was (the first reason).
    pub dropped: Option<DropReason>,
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

/// A request of ours waiting for its response.
struct Outstanding {
    id: u32,
    data: Vec<Vec<u8>>,
    tries: u32,
    deadline: Instant,
    kind: Request,
}

/// What an outstanding request was.
enum Request {
    SaInit,
    Auth(PendingChild),
    CreateChild(PendingChild),
    DeleteChildren(Vec<u32>),
    DeleteIke,
    Liveness,
    RekeyIke {
        ke: KeyExchange,
        ni: Vec<u8>,
        spi: u64,
        offered: Vec<Proposal>,
    },
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

/// Work queued behind the outstanding request (window of one).
enum Task {
    Child {
        params: ChildParams,
        rekey_of: Option<u32>,
    },
    DeleteChildren(Vec<u32>),
    DeleteIke,
    Liveness,
    RekeyIke,
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
    suite: Option<IkeSuite>,
    ke: Option<KeyExchange>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    offered: Vec<Proposal>,
    keys: Option<IkeKeys>,
    sk_out: Option<SkCipher>,
    sk_in: Option<SkCipher>,
    iv: u64,
    nat_local: bool,
    nat_remote: bool,
    peer_hashes: Vec<u16>,
    peer_frag: bool,
    cookie: Option<Vec<u8>>,
    ke_retries: u32,
    next_id: u32,
    expected_id: u32,
    outstanding: Option<Outstanding>,
    last_response: Option<(u32, Vec<Vec<u8>>)>,
    reassembly: Option<(bool, Reassembly)>,
    pending_msg: Option<Message>,
    tasks: VecDeque<Task>,
    children: Vec<ChildSa>,
    first_child: Option<ChildParams>,
    remote_id: Option<Identity>,
    created: Instant,
    established_at: Option<Instant>,
    last_inbound: Instant,
    dead_reason: Option<String>,
    rekey_at: Option<Instant>,
    rekeying_ike: bool,
    superseded: bool,
    keepalive_at: Option<Instant>,
    half_open_timeout: Duration,
    /// The IKE port and the NAT-T port (500 and 4500 unless configured otherwise).
    ports: (u16, u16),
    /// Rekeys of our children that the peer started while our own rekey of the same child was
    /// outstanding: (old inbound SPI, the peer exchange's Ni, its Nr).
    collisions: Vec<(u32, Vec<u8>, Vec<u8>)>,
    /// Whether our IKE_AUTH request carries INITIAL_CONTACT (RFC 7296 §2.4): only when this is
    /// the only IKE SA with the peer.
    send_initial_contact: bool,
    /// The peer's IKE_AUTH carried INITIAL_CONTACT and authenticated: the endpoint removes the
    /// other IKE SAs between the same identities ([`IkeSa::take_initial_contact`]).
    initial_contact: bool,
    /// Removed because the peer's INITIAL_CONTACT said it lost this IKE SA.
    forgotten: bool,
}

fn nat_hash(spi_i: u64, spi_r: u64, a: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match a.ip() {
        IpAddr::V4(v) => ctx.update(&v.octets()),
        IpAddr::V6(v) => ctx.update(&v.octets()),
    }
    ctx.update(&a.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
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

    /// Negotiated algorithms.
    pub fn suite(&self) -> Option<IkeSuite> {
        self.suite
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
        self.keys.as_ref()
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
    ) -> Result<IkeSa, String> {
        let group = conn
            .proposals
            .first()
            .and_then(|p| p.dh.first().copied())
            .ok_or("the connection has no IKE proposal")?;
        let ke = KeyExchange::new(group, ctx.rng).map_err(|e| e.to_string())?;
        let ni = ctx.nonce();
        let mut sa = IkeSa::blank(Role::Initiator, conn, ctx.now, spi_i, 0, local, remote);
        sa.ke = Some(ke);
        sa.ni = ni;
        sa.first_child = child;
        sa.state = State::InitSent;
        sa.send_sa_init(ctx);
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
            suite: None,
            ke: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            offered: Vec::new(),
            keys: None,
            sk_out: None,
            sk_in: None,
            iv: 0,
            nat_local: false,
            nat_remote: false,
            peer_hashes: Vec::new(),
            peer_frag: false,
            cookie: None,
            ke_retries: 0,
            next_id: 0,
            expected_id: 0,
            outstanding: None,
            last_response: None,
            reassembly: None,
            pending_msg: None,
            tasks: VecDeque::new(),
            children: Vec::new(),
            first_child: None,
            remote_id: None,
            created: now,
            established_at: None,
            last_inbound: now,
            dead_reason: None,
            rekey_at: None,
            rekeying_ike: false,
            superseded: false,
            keepalive_at: None,
            half_open_timeout: HALF_OPEN_TIMEOUT,
            ports: (500, NAT_T_PORT),
            collisions: Vec::new(),
            send_initial_contact: true,
            initial_contact: false,
            forgotten: false,
        }
    }

    fn nat_notifies(&self, spi_r: u64) -> [Payload; 2] {
        let mut src = nat_hash(self.spi_i, spi_r, self.local);
        if self.conn.force_encap {
            // Like strongSwan's `encap = yes`: a source hash nobody can match makes the peer
            // see a NAT, so both ends encapsulate.
            src.iter_mut().for_each(|b| *b ^= 0xa5);
        }
        [
            Payload::Notify(Notify::new(nt::NAT_DETECTION_SOURCE_IP, src)),
            Payload::Notify(Notify::new(
                nt::NAT_DETECTION_DESTINATION_IP,
                nat_hash(self.spi_i, spi_r, self.remote),
            )),
        ]
    }

    fn common_notifies(&self) -> Vec<Payload> {
        let mut v = Vec::new();
        if self.conn.fragmentation {
            v.push(Payload::Notify(Notify::new(
                nt::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            )));
        }
        let hashes: Vec<u8> = auth::supported_hashes()
            .iter()
            .flat_map(|h| h.to_be_bytes())
            .collect();
        v.push(Payload::Notify(Notify::new(
            nt::SIGNATURE_HASH_ALGORITHMS,
            hashes,
        )));
        v
    }

    fn send_sa_init(&mut self, ctx: &mut Ctx<'_>) {
        let ke = self.ke.as_ref().expect("initiator has a key exchange");
        self.offered = proposal::ike_offer(&self.conn.proposals, &[], Some(ke.group()));
        let mut p = Vec::new();
        if let Some(c) = &self.cookie {
            p.push(Payload::Notify(Notify::new(nt::COOKIE, c.clone())));
        }
        p.push(Payload::Sa(self.offered.clone()));
        p.push(Payload::Ke {
            group: ke.group().transform_id(),
            data: ke.public_value().to_vec(),
        });
        p.push(Payload::Nonce(self.ni.clone()));
        p.extend(self.nat_notifies(0));
        p.extend(self.common_notifies());
        let h = Header::new(self.spi_i, 0, exchange::IKE_SA_INIT, flags::INITIATOR, 0);
        let data = message::encode_plain(&h, &p);
        self.init_req = data.clone();
        self.next_id = 1;
        self.send_request(ctx, 0, vec![data], Request::SaInit);
    }

    fn transmit_all(&self, ctx: &mut Ctx<'_>, data: &[Vec<u8>]) {
        for d in data {
            ctx.out.push_back(Transmit {
                local: self.local,
                remote: self.remote,
                data: d.clone(),
            });
        }
    }

    fn send_request(&mut self, ctx: &mut Ctx<'_>, id: u32, data: Vec<Vec<u8>>, kind: Request) {
        self.transmit_all(ctx, &data);
        let deadline = ctx.now + self.conn.retransmit.delay(0);
        self.outstanding = Some(Outstanding {
            id,
            data,
            tries: 0,
            deadline,
            kind,
        });
    }

    fn flags(&self, response: bool) -> u8 {
        let mut f = if self.role == Role::Initiator {
            flags::INITIATOR
        } else {
            0
        };
        if response {
            f |= flags::RESPONSE;
        }
        f
    }

    /// Encrypt a message: one datagram, or RFC 7383 fragments when both ends support them
    /// and it would not fit [`FRAGMENT_SIZE`].
    fn encrypt(&mut self, exch: u8, id: u32, response: bool, payloads: &[Payload]) -> Vec<Vec<u8>> {
        let h = Header::new(self.spi_i, self.spi_r, exch, self.flags(response), id);
        let sk = self
            .sk_out
            .as_ref()
            .expect("keys exist once IKE_SA_INIT is done");
        if self.peer_frag {
            return fragment::encode_fragments(&h, payloads, sk, &mut self.iv, FRAGMENT_SIZE);
        }
        self.iv += 1;
        vec![message::encode_encrypted(
            &h,
            payloads,
            sk,
            self.iv.to_be_bytes(),
        )]
    }

    fn respond(&mut self, ctx: &mut Ctx<'_>, exch: u8, id: u32, payloads: &[Payload]) {
        let data = self.encrypt(exch, id, true, payloads);
        self.transmit_all(ctx, &data);
        self.last_response = Some((id, data));
    }

    fn request(&mut self, ctx: &mut Ctx<'_>, exch: u8, payloads: &[Payload], kind: Request) {
        let id = self.next_id;
        self.next_id += 1;
        let data = self.encrypt(exch, id, false, payloads);
        self.send_request(ctx, id, data, kind);
    }

    fn die(&mut self, ctx: &mut Ctx<'_>, reason: String) {
        if self.state == State::Dead {
            return;
        }
        for c in std::mem::take(&mut self.children) {
            self.child_down_event(ctx, &c);
        }
        self.state = State::Dead;
        self.outstanding = None;
        self.tasks.clear();
        if self.superseded {
            self.dead_reason = Some(reason);
            return;
        }
        ctx.events.push_back(IkeEvent::IkeDown {
            ike_sa: self.local_spi(),
            conn: self.conn.name.clone(),
            reason: reason.clone(),
        });
        self.dead_reason = Some(reason);
    }

    fn child_down_event(&self, ctx: &mut Ctx<'_>, c: &ChildSa) {
        ctx.spis.remove(&c.inbound_spi);
        ctx.events.push_back(IkeEvent::ChildDown {
            ike_sa: self.local_spi(),
            conn: self.conn.name.clone(),
            child: c.name.clone(),
            inbound_spi: c.inbound_spi,
            outbound_spi: c.outbound_spi,
            local: self.local,
            remote: self.remote,
            peer_lost: self.forgotten,
        });
    }

    fn log(&self, ctx: &mut Ctx<'_>, msg: impl Into<String>) {
        ctx.events.push_back(IkeEvent::Log(format!(
            "{}[{:016x}_{:016x}]: {}",
            self.conn.name,
            self.spi_i,
            self.spi_r,
            msg.into()
        )));
    }

    fn check_nat(&mut self, m: &Message, spi_r: u64) {
        let src: Vec<&Notify> = m.notifies(nt::NAT_DETECTION_SOURCE_IP).collect();
        if let Some(dst) = m.notify(nt::NAT_DETECTION_DESTINATION_IP) {
            self.nat_local = dst.data != nat_hash(self.spi_i, spi_r, self.local);
        }
        if !src.is_empty() {
            let expect = nat_hash(self.spi_i, spi_r, self.remote);
            self.nat_remote = !src.iter().any(|n| n.data == expect);
        }
        if self.conn.force_encap {
            self.nat_local = true;
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

    fn set_keys(&mut self, shared: &[u8]) -> Result<(), String> {
        let suite = self.suite.ok_or("no suite")?;
        let k = keys::derive_ike_keys(
            suite.prf, suite.encr, &self.ni, &self.nr, shared, self.spi_i, self.spi_r,
        )
        .map_err(|e| e.to_string())?;
        let (out, inn) = match self.role {
            Role::Initiator => (&k.sk_ei, &k.sk_er),
            Role::Responder => (&k.sk_er, &k.sk_ei),
        };
        self.sk_out = Some(SkCipher::new(suite.encr, out).map_err(|e| e.to_string())?);
        self.sk_in = Some(SkCipher::new(suite.encr, inn).map_err(|e| e.to_string())?);
        self.keys = Some(k);
        Ok(())
    }

    // ----- responder: IKE_SA_INIT -----

    /// Answer an IKE_SA_INIT request (the endpoint has checked cookies and chosen candidate
    /// connections). Returns the new SA, or None if the answer was an error notify.
    #[allow(clippy::too_many_arguments)]
    pub fn respond_init(
        ctx: &mut Ctx<'_>,
        candidates: Vec<Arc<ConnectionParams>>,
        m: &Message,
        raw: &[u8],
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<IkeSa> {
        let h = m.header;
        let plain_reply = |ctx: &mut Ctx<'_>, p: Vec<Payload>| {
            let hh = Header::new(h.spi_i, 0, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
            ctx.out.push_back(Transmit {
                local,
                remote,
                data: message::encode_plain(&hh, &p),
            });
        };
        let sa = m.sa();
        let ke = m.ke();
        let nonce = m.nonce();
        let (Some(sa), Some((group, kedata)), Some(ni)) = (sa, ke, nonce) else {
            plain_reply(
                ctx,
                vec![Payload::Notify(Notify::new(nt::INVALID_SYNTAX, Vec::new()))],
            );
            return None;
        };
        let all: Vec<_> = candidates
            .iter()
            .flat_map(|c| c.proposals.iter().cloned())
            .collect();
        let ke_group = DhGroup::from_transform(group);
        let with_ke: Vec<_> = all
            .iter()
            .filter(|p| ke_group.is_some_and(|g| p.dh.contains(&g)))
            .map(|p| super::params::IkeProposalSpec {
                dh: vec![ke_group.unwrap_or(DhGroup::X25519)],
                ..p.clone()
            })
            .collect();
        let chosen = proposal::choose_ike(&with_ke, sa);
        let (num, suite) = match chosen {
            Some(c) => c,
            None => {
                match proposal::choose_ike(&all, sa) {
                    Some((_, s)) => plain_reply(
                        ctx,
                        vec![Payload::Notify(Notify::new(
                            nt::INVALID_KE_PAYLOAD,
                            s.dh.transform_id().to_be_bytes().to_vec(),
                        ))],
                    ),
                    None => plain_reply(
                        ctx,
                        vec![Payload::Notify(Notify::new(
                            nt::NO_PROPOSAL_CHOSEN,
                            Vec::new(),
                        ))],
                    ),
                }
                return None;
            }
        };
        let Ok(ke) = KeyExchange::new(suite.dh, ctx.rng) else {
            plain_reply(
                ctx,
                vec![Payload::Notify(Notify::new(
                    nt::NO_PROPOSAL_CHOSEN,
                    Vec::new(),
                ))],
            );
            return None;
        };
        let shared = match ke.shared_secret(kedata) {
            Ok(s) => s,
            Err(_) => {
                plain_reply(
                    ctx,
                    vec![Payload::Notify(Notify::new(nt::INVALID_SYNTAX, Vec::new()))],
                );
                return None;
            }
        };
        let conn = candidates[0].clone();
        let mut sa_state = IkeSa::blank(
            Role::Responder,
            conn,
            ctx.now,
            h.spi_i,
            spi_r,
            local,
            remote,
        );
        sa_state.candidates = candidates;
        sa_state.suite = Some(suite);
        sa_state.ni = ni.clone();
        sa_state.nr = ctx.nonce();
        sa_state.init_req = raw.to_vec();
        sa_state.check_nat(m, 0);
        sa_state.peer_frag = m.notify(nt::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        sa_state.peer_hashes = m
            .notify(nt::SIGNATURE_HASH_ALGORITHMS)
            .map(|n| {
                n.data
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default();
        if sa_state.set_keys(&shared).is_err() {
            return None;
        }
        let mut p = vec![
            Payload::Sa(vec![proposal::ike_answer(num, suite, &[])]),
            Payload::Ke {
                group: suite.dh.transform_id(),
                data: ke.public_value().to_vec(),
            },
            Payload::Nonce(sa_state.nr.clone()),
        ];
        p.extend(sa_state.nat_notifies(spi_r));
        let mut hashes = Vec::new();
        for c in &sa_state.candidates {
            if let RemoteCredential::Pubkey { ca_hashes, .. } = &c.remote_auth {
                for hsh in ca_hashes {
                    if !hashes.contains(hsh) {
                        hashes.push(*hsh);
                    }
                }
            }
        }
        if !hashes.is_empty() {
            p.push(Payload::CertReq {
                encoding: cert_encoding::X509_SIGNATURE,
                data: hashes.concat(),
            });
        }
        if sa_state.peer_frag && !sa_state.conn.fragmentation {
            sa_state.peer_frag = false;
        }
        p.extend(sa_state.common_notifies().into_iter().filter(|n| {
            !matches!(n, Payload::Notify(x) if x.ntype == nt::IKEV2_FRAGMENTATION_SUPPORTED && !sa_state.peer_frag)
        }));
        let hh = Header::new(h.spi_i, spi_r, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
        let data = message::encode_plain(&hh, &p);
        sa_state.init_resp = data.clone();
        sa_state.last_response = Some((0, vec![data.clone()]));
        sa_state.expected_id = 1;
        sa_state.state = State::AuthPending;
        ctx.out.push_back(Transmit {
            local,
            remote,
            data,
        });
        Some(sa_state)
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

    /// Resend our cached IKE_SA_INIT response (a retransmitted request).
    pub fn resend_init_response(&self, ctx: &mut Ctx<'_>) {
        if let Some((0, d)) = &self.last_response {
            ctx.out.push_back(Transmit {
                local: self.local,
                remote: self.remote,
                data: d.concat(),
            });
        }
    }

    // ----- datagrams -----

    /// Handle a datagram for this SA (header already matched to it by SPI).
    pub fn handle(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr, remote: SocketAddr, raw: &[u8]) {
        if self.state == State::Dead {
            return ctx.drop_for(DropReason::DeadSa);
        }
        let h = match Header::parse(raw) {
            Ok(h) => h,
            Err(_) => return ctx.drop_for(DropReason::Malformed),
        };
        if let Some((fh, _, _)) = fragment::fragment_info(raw) {
            // RFC 7383: reassemble, then handle the whole message. Only the request we expect
            // next or the response to our outstanding request are worth the memory.
            let wanted = if fh.is_response() {
                self.outstanding
                    .as_ref()
                    .is_some_and(|o| o.id == fh.message_id)
            } else {
                fh.message_id == self.expected_id
            };
            let Some(sk) = self.sk_in.as_ref() else {
                return ctx.drop_for(DropReason::Fragment);
            };
            if !wanted || !self.peer_frag {
                if !fh.is_response() && fh.message_id.wrapping_add(1) == self.expected_id {
                    return self.handle_request(ctx, local, remote, raw, h);
                }
                return ctx.drop_for(DropReason::Fragment);
            }
            let same = matches!(&self.reassembly, Some((resp, r)) if *resp == fh.is_response() && r.message_id() == Some(fh.message_id));
            if !same {
                self.reassembly =
                    Some((fh.is_response(), Reassembly::new(FragmentLimits::default())));
            }
            let Some((_, r)) = self.reassembly.as_mut() else {
                return ctx.drop_for(DropReason::Fragment);
            };
            match r.add(raw, sk) {
                Ok(Some(m)) => {
                    self.reassembly = None;
                    self.pending_msg = Some(m);
                }
                Ok(None) => return,
                Err(fragment::FragmentError::Decode(message::DecodeError::Integrity)) => {
                    return ctx.drop_for(DropReason::Integrity)
                }
                Err(_) => return ctx.drop_for(DropReason::Fragment),
            }
        }
        if h.is_response() {
            self.handle_response(ctx, local, remote, raw, h);
        } else {
            self.handle_request(ctx, local, remote, raw, h);
        }
        self.pending_msg = None;
    }

    fn decode(&mut self, ctx: &mut Ctx<'_>, raw: &[u8]) -> Option<Message> {
        if let Some(m) = self.pending_msg.take() {
            return Some(m);
        }
        let sk = self.sk_in.as_ref().map(|s| s as &dyn message::SkAead);
        match message::decode(raw, sk) {
            Ok(m) => Some(m),
            Err(e) => {
                ctx.drop_for(DropReason::of_decode(&e));
                None
            }
        }
    }

    fn handle_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        h: Header,
    ) {
        let Some(o) = &self.outstanding else {
            return ctx.drop_for(DropReason::MessageId);
        };
        if o.id != h.message_id {
            return ctx.drop_for(DropReason::MessageId);
        }
        if h.exchange == exchange::IKE_SA_INIT {
            let m = match message::decode(raw, None) {
                Ok(m) => m,
                Err(e) => return ctx.drop_for(DropReason::of_decode(&e)),
            };
            self.on_sa_init_response(ctx, m, raw);
            return;
        }
        let Some(m) = self.decode(ctx, raw) else {
            return;
        };
        if !m.encrypted {
            return ctx.drop_for(DropReason::Unexpected);
        }
        self.last_inbound = ctx.now;
        if (local, remote) != (self.local, self.remote) && self.local.port() == self.ports.1 {
            // The peer's NAT mapping changed: follow it (RFC 7296 §2.23).
            self.remote = remote;
        }
        let Some(o) = self.outstanding.take() else {
            return;
        };
        match o.kind {
            Request::SaInit => {}
            Request::Auth(child) => self.on_auth_response(ctx, m, child),
            Request::CreateChild(child) => self.on_create_child_response(ctx, m, child),
            Request::DeleteChildren(spis) => {
                for spi in spis {
                    if let Some(pos) = self.children.iter().position(|c| c.inbound_spi == spi) {
                        let c = self.children.remove(pos);
                        self.child_down_event(ctx, &c);
                    }
                }
            }
            Request::DeleteIke => {
                self.die(ctx, "deleted".into());
                return;
            }
            Request::Liveness => {}
            Request::RekeyIke {
                ke,
                ni,
                spi,
                offered,
            } => {
                self.on_rekey_ike_response(ctx, m, ke, ni, spi, offered);
            }
        }
        self.next_task(ctx);
    }

    fn on_sa_init_response(&mut self, ctx: &mut Ctx<'_>, m: Message, raw: &[u8]) {
        if self.state != State::InitSent {
            return ctx.drop_for(DropReason::Unexpected);
        }
        if let Some(c) = m.notify(nt::COOKIE) {
            if self.cookie.is_some() && self.ke_retries > 4 {
                return ctx.drop_for(DropReason::Unexpected);
            }
            self.ke_retries += 1;
            self.cookie = Some(c.data.clone());
            self.log(ctx, "responder asked for a cookie; retrying");
            self.send_sa_init(ctx);
            return;
        }
        if let Some(n) = m.notify(nt::INVALID_KE_PAYLOAD) {
            let g = n
                .data
                .get(..2)
                .map(|d| u16::from_be_bytes([d[0], d[1]]))
                .and_then(DhGroup::from_transform);
            let acceptable = g.filter(|g| self.conn.proposals.iter().any(|p| p.dh.contains(g)));
            match acceptable {
                Some(g)
                    if self.ke_retries < 4
                        && Some(g) != self.ke.as_ref().map(KeyExchange::group) =>
                {
                    self.ke_retries += 1;
                    match KeyExchange::new(g, ctx.rng) {
                        Ok(ke) => self.ke = Some(ke),
                        Err(e) => return self.die(ctx, e.to_string()),
                    }
                    self.log(ctx, format!("responder wants key exchange {g}; retrying"));
                    self.send_sa_init(ctx);
                }
                _ => self.die(
                    ctx,
                    "INVALID_KE_PAYLOAD with a group we do not offer".into(),
                ),
            }
            return;
        }
        if let Some(e) = m.error_notify() {
            let reason = format!("IKE_SA_INIT refused: {}", nt::name(e.ntype));
            return self.die(ctx, reason);
        }
        let sa = m.sa();
        let ke = m.ke();
        let nonce = m.nonce();
        let (Some(sa), Some((group, kedata)), Some(nr)) = (sa, ke, nonce) else {
            return self.die(ctx, "IKE_SA_INIT response lacks SA, KE or Nonce".into());
        };
        let Some(suite) = proposal::accept_ike_answer(&self.offered, sa) else {
            return self.die(ctx, "responder chose a proposal we did not offer".into());
        };
        let Some(ke_state) = self.ke.take() else {
            return;
        };
        if suite.dh != ke_state.group() || group != suite.dh.transform_id() || m.header.spi_r == 0 {
            return self.die(
                ctx,
                "responder's key exchange does not match its proposal".into(),
            );
        }
        let shared = match ke_state.shared_secret(kedata) {
            Ok(s) => s,
            Err(e) => return self.die(ctx, format!("bad KE payload: {e}")),
        };
        self.outstanding = None;
        self.spi_r = m.header.spi_r;
        self.suite = Some(suite);
        self.nr = nr.clone();
        self.init_resp = raw.to_vec();
        self.check_nat(&m, self.spi_r);
        self.peer_frag =
            m.notify(nt::IKEV2_FRAGMENTATION_SUPPORTED).is_some() && self.conn.fragmentation;
        self.peer_hashes = m
            .notify(nt::SIGNATURE_HASH_ALGORITHMS)
            .map(|n| {
                n.data
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default();
        if let Err(e) = self.set_keys(&shared) {
            return self.die(ctx, e);
        }
        if self.nat_local || self.nat_remote {
            self.local.set_port(self.ports.1);
            if self.remote.port() == self.ports.0 {
                self.remote.set_port(self.ports.1);
            }
            self.log(ctx, "NAT detected; moving to port 4500");
        }
        self.state = State::AuthPending;
        self.send_auth(ctx);
    }

    fn local_id_payload(&self) -> (u8, Vec<u8>) {
        (self.conn.local_id.id_type(), self.conn.local_id.data())
    }

    fn our_auth(&self, octets: &[u8]) -> Result<(u8, Vec<u8>), String> {
        let prf = self.suite.ok_or("no suite")?.prf;
        match &self.conn.local_auth {
            LocalCredential::Psk(k) => {
                Ok((auth::method::SHARED_KEY_MIC, auth::psk_auth(prf, k, octets)))
            }
            LocalCredential::Pubkey { key, .. } => key
                .sign(octets, &self.peer_hashes)
                .map_err(|e| e.to_string()),
        }
    }

    fn cert_payloads(&self) -> Vec<Payload> {
        match &self.conn.local_auth {
            LocalCredential::Pubkey { certs, .. } => certs
                .iter()
                .map(|c| Payload::Cert {
                    encoding: cert_encoding::X509_SIGNATURE,
                    data: c.der().to_vec(),
                })
                .collect(),
            LocalCredential::Psk(_) => Vec::new(),
        }
    }

    fn pending_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        params: ChildParams,
        with_ke: bool,
        rekey_of: Option<u32>,
    ) -> Result<PendingChild, String> {
        let inbound_spi = ctx.new_spi();
        let (lt, rt) =
            match rekey_of.and_then(|s| self.children.iter().find(|c| c.inbound_spi == s)) {
                Some(old) => (old.local_ts.clone(), old.remote_ts.clone()),
                None => (
                    ts::resolve(&params.local_ts, self.local.ip()),
                    ts::resolve(&params.remote_ts, self.remote.ip()),
                ),
            };
        let group = params.proposals.first().and_then(|p| p.dh.first().copied());
        let ke = match (with_ke, group) {
            (true, Some(g)) => Some(KeyExchange::new(g, ctx.rng).map_err(|e| e.to_string())?),
            _ => None,
        };
        let offered = proposal::esp_offer(
            &params.proposals,
            inbound_spi,
            with_ke,
            ke.as_ref().map(KeyExchange::group),
        );
        let nonce = if with_ke || rekey_of.is_some() || self.state == State::Established {
            ctx.nonce()
        } else {
            Vec::new()
        };
        Ok(PendingChild {
            params,
            inbound_spi,
            offered,
            local_ts: lt,
            remote_ts: rt,
            nonce,
            ke,
            rekey_of,
        })
    }

    fn send_auth(&mut self, ctx: &mut Ctx<'_>) {
        let (id_type, id_data) = self.local_id_payload();
        let Some(keys) = &self.keys else { return };
        let Some(suite) = self.suite else { return };
        let octets = auth::signed_octets(
            suite.prf,
            &self.init_req,
            &self.nr,
            &keys.sk_pi,
            id_type,
            &id_data,
        );
        let (method, data) = match self.our_auth(&octets) {
            Ok(a) => a,
            Err(e) => return self.die(ctx, format!("cannot sign: {e}")),
        };
        let mut p = vec![Payload::IdI {
            id_type,
            data: id_data,
        }];
        p.extend(self.cert_payloads());
        if let RemoteCredential::Pubkey { ca_hashes, .. } = &self.conn.remote_auth {
            p.push(Payload::CertReq {
                encoding: cert_encoding::X509_SIGNATURE,
                data: ca_hashes.concat(),
            });
        }
        if let Some(r) = &self.conn.remote_id {
            p.push(Payload::IdR {
                id_type: r.id_type(),
                data: r.data(),
            });
        }
        p.push(Payload::Auth { method, data });
        if self.send_initial_contact {
            p.push(Payload::Notify(Notify::new(
                nt::INITIAL_CONTACT,
                Vec::new(),
            )));
        }
        let child = match self.first_child.take() {
            Some(c) => match self.pending_child(ctx, c, false, None) {
                Ok(c) => Some(c),
                Err(e) => return self.die(ctx, e),
            },
            None => None,
        };
        if let Some(c) = &child {
            if c.params.mode == ChildMode::Transport {
                p.push(Payload::Notify(Notify::new(
                    nt::USE_TRANSPORT_MODE,
                    Vec::new(),
                )));
            }
            p.push(Payload::Notify(Notify::new(
                nt::ESP_TFC_PADDING_NOT_SUPPORTED,
                Vec::new(),
            )));
            p.push(Payload::Sa(c.offered.clone()));
            p.push(Payload::TsI(c.local_ts.clone()));
            p.push(Payload::TsR(c.remote_ts.clone()));
        }
        let kind = Request::Auth(child.unwrap_or(PendingChild {
            params: placeholder_child(),
            inbound_spi: 0,
            offered: Vec::new(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            nonce: Vec::new(),
            ke: None,
            rekey_of: None,
        }));
        self.request(ctx, exchange::IKE_AUTH, &p, kind);
    }

    /// Check the peer's AUTH payload over `octets` against the configured credential.
    fn verify_peer(
        &self,
        ctx: &Ctx<'_>,
        conn: &ConnectionParams,
        m: &Message,
        id: &Identity,
        octets: &[u8],
    ) -> Result<(), String> {
        let (method, data) = m
            .find(|p| {
                if let Payload::Auth { method, data } = p {
                    Some((*method, data))
                } else {
                    None
                }
            })
            .ok_or("no AUTH payload")?;
        if let Some(want) = &conn.remote_id {
            if !want.matches(id) {
                return Err(format!("peer identity {id} is not the configured {want}"));
            }
        }
        let prf = self.suite.ok_or("no suite")?.prf;
        match &conn.remote_auth {
            RemoteCredential::Psk(k) => {
                if method != auth::method::SHARED_KEY_MIC {
                    return Err(format!("peer used auth method {method}, PSK expected"));
                }
                let expect = auth::psk_auth(prf, k, octets);
                constant_time::verify_slices_are_equal(&expect, data)
                    .map_err(|_| "PSK authentication failed".to_string())
            }
            RemoteCredential::Pubkey { trust, .. } => {
                let certs: Vec<Certificate> = m
                    .payloads
                    .iter()
                    .filter_map(|p| match p {
                        Payload::Cert {
                            encoding: cert_encoding::X509_SIGNATURE,
                            data,
                        } => Certificate::from_der(data.clone()).ok(),
                        _ => None,
                    })
                    .collect();
                let (ee, rest) = certs.split_first().ok_or("peer sent no certificate")?;
                trust
                    .validate(ee, rest, ctx.unix_time)
                    .map_err(|e| format!("certificate not trusted: {e}"))?;
                if !ee.matches_identity(id) {
                    return Err(format!("certificate does not match identity {id}"));
                }
                auth::verify(method, data, octets, ee)
                    .map_err(|e| format!("signature check failed: {e}"))
            }
        }
    }

    fn on_auth_response(&mut self, ctx: &mut Ctx<'_>, m: Message, child: PendingChild) {
        let idr = m.id_r().map(|(t, d)| (t, d.clone()));
        let has_auth = m.payloads.iter().any(|p| matches!(p, Payload::Auth { .. }));
        if !has_auth {
            let reason = m
                .error_notify()
                .map_or("IKE_AUTH response without AUTH".to_string(), |e| {
                    format!("IKE_AUTH refused: {}", nt::name(e.ntype))
                });
            ctx.spis.remove(&child.inbound_spi);
            return self.die(ctx, reason);
        }
        let Some((id_type, id_data)) = idr else {
            return self.die(ctx, "IKE_AUTH response without IDr".into());
        };
        let id = match Identity::from_payload(id_type, &id_data) {
            Ok(i) => i,
            Err(e) => return self.die(ctx, format!("bad IDr: {e}")),
        };
        let (Some(keys), Some(suite)) = (&self.keys, self.suite) else {
            return;
        };
        let octets = auth::signed_octets(
            suite.prf,
            &self.init_resp,
            &self.ni,
            &keys.sk_pr,
            id_type,
            &id_data,
        );
        let conn = self.conn.clone();
        if let Err(e) = self.verify_peer(ctx, &conn, &m, &id, &octets) {
            ctx.spis.remove(&child.inbound_spi);
            return self.die(ctx, format!("authentication of the peer failed: {e}"));
        }
        self.remote_id = Some(id.clone());
        self.initial_contact = m.notify(nt::INITIAL_CONTACT).is_some();
        self.established(ctx);
        if child.inbound_spi != 0 {
            self.finish_child(ctx, &m, child, None);
        }
    }

    fn established(&mut self, ctx: &mut Ctx<'_>) {
        self.state = State::Established;
        self.established_at = Some(ctx.now);
        self.schedule(ctx);
        let Some(suite) = self.suite else { return };
        ctx.events.push_back(IkeEvent::IkeUp {
            ike_sa: self.local_spi(),
            conn: self.conn.name.clone(),
            remote_id: self
                .remote_id
                .clone()
                .unwrap_or(Identity::KeyId(Vec::new())),
            suite,
        });
    }

    /// Initiator side of a child negotiation: check the answer and install.
    fn finish_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: &Message,
        child: PendingChild,
        nr: Option<&[u8]>,
    ) {
        let fail = |this: &mut IkeSa, ctx: &mut Ctx<'_>, reason: String| {
            ctx.spis.remove(&child.inbound_spi);
            if let Some(old) = child.rekey_of {
                if let Some(c) = this.children.iter_mut().find(|c| c.inbound_spi == old) {
                    c.rekeying = false;
                }
            }
            ctx.events.push_back(IkeEvent::ChildFailed {
                conn: this.conn.name.clone(),
                child: child.params.name.clone(),
                reason,
            });
        };
        if let Some(e) = m.error_notify() {
            return fail(self, ctx, format!("refused: {}", nt::name(e.ntype)));
        }
        let sa = m.sa();
        let tsi = m.ts_i();
        let tsr = m.ts_r();
        let (Some(sa), Some(tsi), Some(tsr)) = (sa, tsi, tsr) else {
            return fail(self, ctx, "answer lacks SA or traffic selectors".into());
        };
        let Some((out_spi, suite)) = proposal::accept_esp_answer(&child.offered, sa) else {
            return fail(
                self,
                ctx,
                "responder chose an ESP proposal we did not offer".into(),
            );
        };
        if !ts::is_narrowing(&child.local_ts, tsi) || !ts::is_narrowing(&child.remote_ts, tsr) {
            return fail(
                self,
                ctx,
                "responder's traffic selectors are not a narrowing of ours".into(),
            );
        }
        let transport = m.notify(nt::USE_TRANSPORT_MODE).is_some();
        if transport && child.params.mode != ChildMode::Transport {
            return fail(
                self,
                ctx,
                "responder chose transport mode we did not ask for".into(),
            );
        }
        let shared = match (&child.ke, suite.dh) {
            (Some(ke), Some(g)) if g == ke.group() => {
                let Some(kedata) = m
                    .ke()
                    .filter(|(group, _)| *group == g.transform_id())
                    .map(|(_, d)| d)
                else {
                    return fail(self, ctx, "answer lacks the KE payload".into());
                };
                match ke.shared_secret(kedata) {
                    Ok(s) => Some(s),
                    Err(e) => return fail(self, ctx, format!("bad KE payload: {e}")),
                }
            }
            (None, None) => None,
            (Some(_), None) => None,
            _ => return fail(self, ctx, "key exchange mismatch".into()),
        };
        let (ni, nr) = match nr {
            Some(nr) => (child.nonce.clone(), nr.to_vec()),
            None => (self.ni.clone(), self.nr.clone()),
        };
        let mode = if transport {
            ChildMode::Transport
        } else {
            ChildMode::Tunnel
        };
        self.install_child(
            ctx,
            &child.params,
            child.inbound_spi,
            out_spi,
            suite,
            shared.as_ref().map(|s| s.as_slice()),
            &ni,
            &nr,
            tsi.clone(),
            tsr.clone(),
            mode,
            child.rekey_of,
            true,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn install_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        params: &ChildParams,
        inbound_spi: u32,
        outbound_spi: u32,
        suite: EspSuite,
        shared: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        tsi: Vec<TrafficSelector>,
        tsr: Vec<TrafficSelector>,
        mode: ChildMode,
        replaces: Option<u32>,
        we_initiated: bool,
    ) {
        let (Some(keys), Some(ike)) = (&self.keys, self.suite) else {
            return;
        };
        let ck = match keys::derive_child_keys(ike.prf, &keys.sk_d, shared, ni, nr, suite.encr) {
            Ok(k) => k,
            Err(e) => return self.log(ctx, format!("child key derivation failed: {e}")),
        };
        let (inbound_key, outbound_key, local_ts, remote_ts) = match we_initiated {
            true => (ck.encr_r.clone(), ck.encr_i.clone(), tsi, tsr),
            false => (ck.encr_i.clone(), ck.encr_r.clone(), tsr, tsi),
        };
        let jitter = params.rekey_time.map(|t| {
            let span = (t.as_millis() as u64 / 10).max(1);
            t - Duration::from_millis(ctx.rng.next_u64() % span)
        });
        let child = ChildSa {
            name: params.name.clone(),
            inbound_spi,
            outbound_spi,
            suite,
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
            mode,
            installed: ctx.now,
            rekey_at: jitter.map(|j| ctx.now + j),
            rekeying: false,
        };
        self.children.push(child);
        ctx.events
            .push_back(IkeEvent::ChildUp(Box::new(ChildSaInstall {
                ike_sa: self.local_spi(),
                conn: self.conn.name.clone(),
                child: params.name.clone(),
                inbound_spi,
                outbound_spi,
                suite,
                inbound_key,
                outbound_key,
                local_ts,
                remote_ts,
                local: self.local,
                remote: self.remote,
                encap: self.encap(),
                mode,
                limits: ChildLimits {
                    soft_bytes: params.rekey_bytes,
                    soft_packets: params.rekey_packets,
                    hard_bytes: params.life_bytes,
                    hard_packets: params.life_packets,
                    replay_window: params.replay_window,
                },
                replaces,
                replaces_outbound: replaces
                    .and_then(|r| self.children.iter().find(|c| c.inbound_spi == r))
                    .map(|c| c.outbound_spi),
                we_initiated,
            })));
    }
}

fn placeholder_child() -> ChildParams {
    ChildParams {
        name: String::new(),
        local_ts: Vec::new(),
        remote_ts: Vec::new(),
        proposals: Vec::new(),
        mode: ChildMode::Tunnel,
        rekey_time: None,
        rekey_bytes: 0,
        rekey_packets: 0,
        life_bytes: 0,
        life_packets: 0,
        replay_window: 0,
    }
}

impl IkeSa {
    fn handle_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        h: Header,
    ) {
        if self.role == Role::Responder && h.exchange == exchange::IKE_SA_INIT && h.message_id == 0
        {
            ctx.drop_for(DropReason::Retransmit);
            return self.resend_init_response(ctx);
        }
        if h.message_id.wrapping_add(1) == self.expected_id {
            ctx.drop_for(DropReason::Retransmit);
            // A retransmitted request: answer from the cache, without processing it again.
            // For a fragmented request, only its first fragment triggers the resend (RFC 7383
            // §2.6.1).
            let first = fragment::fragment_info(raw).is_none_or(|(_, n, _)| n == 1);
            if let (Some((id, data)), true) = (&self.last_response, first) {
                if *id == h.message_id {
                    self.transmit_all(ctx, data);
                }
            }
            return;
        }
        if h.message_id != self.expected_id {
            return ctx.drop_for(DropReason::MessageId);
        }
        let decoded = match self.pending_msg.take() {
            Some(m) => Ok(m),
            None => message::decode(raw, self.sk_in.as_ref().map(|s| s as &dyn message::SkAead)),
        };
        let m = match decoded {
            Ok(m) if m.encrypted => m,
            Ok(_) => return ctx.drop_for(DropReason::Unexpected),
            Err(message::DecodeError::UnsupportedCritical(t)) => {
                // Only answer if the message authenticates: decode again skipping nothing is not
                // possible, so the SK payload was intact (criticality is checked after the ICV).
                self.expected_id += 1;
                self.last_inbound = ctx.now;
                self.respond(
                    ctx,
                    h.exchange,
                    h.message_id,
                    &[Payload::Notify(Notify::new(
                        nt::UNSUPPORTED_CRITICAL_PAYLOAD,
                        vec![t],
                    ))],
                );
                return;
            }
            Err(e) => return ctx.drop_for(DropReason::of_decode(&e)),
        };
        self.expected_id += 1;
        self.last_inbound = ctx.now;
        if (local, remote) != (self.local, self.remote)
            && (local.port() == self.ports.1 || self.local.port() == self.ports.1)
        {
            // The initiator moved to port 4500 after NAT detection, or its NAT mapping changed.
            self.local = local;
            self.remote = remote;
        }
        match h.exchange {
            exchange::IKE_AUTH
                if self.role == Role::Responder && self.state == State::AuthPending =>
            {
                self.on_auth_request(ctx, m)
            }
            exchange::CREATE_CHILD_SA if self.state == State::Established => {
                self.on_create_child_request(ctx, m)
            }
            exchange::INFORMATIONAL if self.keys.is_some() => self.on_informational(ctx, m),
            _ => {
                ctx.drop_for(DropReason::Unexpected);
                self.respond(
                    ctx,
                    h.exchange,
                    h.message_id,
                    &[Payload::Notify(Notify::new(nt::INVALID_SYNTAX, Vec::new()))],
                );
            }
        }
    }

    fn on_auth_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
        let id = m.header.message_id;
        let idi = m.id_i().map(|(t, d)| (t, d.clone()));
        let idr = m.id_r().map(|(t, d)| (t, d.clone()));
        let auth_failed = |this: &mut IkeSa, ctx: &mut Ctx<'_>, reason: String| {
            this.respond(
                ctx,
                exchange::IKE_AUTH,
                id,
                &[Payload::Notify(Notify::new(
                    nt::AUTHENTICATION_FAILED,
                    Vec::new(),
                ))],
            );
            this.die(ctx, reason);
        };
        let Some((id_type, id_data)) = idi else {
            return auth_failed(self, ctx, "IKE_AUTH without IDi".into());
        };
        let peer = match Identity::from_payload(id_type, &id_data) {
            Ok(p) => p,
            Err(e) => return auth_failed(self, ctx, format!("bad IDi: {e}")),
        };
        let wanted_local = idr.and_then(|(t, d)| Identity::from_payload(t, &d).ok());
        let (Some(keys), Some(suite)) = (&self.keys, self.suite) else {
            return;
        };
        let octets = auth::signed_octets(
            suite.prf,
            &self.init_req,
            &self.nr,
            &keys.sk_pi,
            id_type,
            &id_data,
        );
        // Candidates whose remote identity fits, those naming the IDr we were asked for first.
        let mut cands: Vec<Arc<ConnectionParams>> = self
            .candidates
            .iter()
            .filter(|c| c.remote_id.as_ref().is_none_or(|r| r.matches(&peer)))
            .cloned()
            .collect();
        if let Some(w) = &wanted_local {
            cands.sort_by_key(|c| !c.local_id.matches(w));
        }
        let mut last_err = format!("no connection accepts identity {peer}");
        let mut chosen = None;
        for c in cands {
            match self.verify_peer(ctx, &c, &m, &peer, &octets) {
                Ok(()) => {
                    chosen = Some(c);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let Some(conn) = chosen else {
            return auth_failed(
                self,
                ctx,
                format!("authentication of {peer} failed: {last_err}"),
            );
        };
        self.conn = conn;
        self.remote_id = Some(peer);
        self.initial_contact = m.notify(nt::INITIAL_CONTACT).is_some();
        let (lt, ld) = self.local_id_payload();
        let Some(keys) = &self.keys else { return };
        let my_octets =
            auth::signed_octets(suite.prf, &self.init_resp, &self.ni, &keys.sk_pr, lt, &ld);
        let (method, adata) = match self.our_auth(&my_octets) {
            Ok(a) => a,
            Err(e) => return auth_failed(self, ctx, format!("cannot sign: {e}")),
        };
        let mut p = vec![Payload::IdR {
            id_type: lt,
            data: ld,
        }];
        let asked_for_cert = m
            .payloads
            .iter()
            .any(|p| matches!(p, Payload::CertReq { .. }));
        if asked_for_cert || matches!(self.conn.local_auth, LocalCredential::Pubkey { .. }) {
            p.extend(self.cert_payloads());
        }
        p.push(Payload::Auth {
            method,
            data: adata,
        });
        self.established(ctx);
        let mut child_events = Vec::new();
        if m.payloads.iter().any(|p| matches!(p, Payload::Sa(_))) {
            let (ni, nr) = (self.ni.clone(), self.nr.clone());
            match self.answer_child(ctx, &m, None, &ni, &nr, None) {
                Ok((payloads, install)) => {
                    p.extend(payloads);
                    child_events.push(install);
                }
                Err((n, reason)) => {
                    p.push(Payload::Notify(Notify::new(n, Vec::new())));
                    ctx.events.push_back(IkeEvent::ChildFailed {
                        conn: self.conn.name.clone(),
                        child: String::new(),
                        reason,
                    });
                }
            }
        }
        self.respond(ctx, exchange::IKE_AUTH, id, &p);
        for f in child_events {
            f(self, ctx);
        }
    }

    /// Responder side of a child negotiation (IKE_AUTH or CREATE_CHILD_SA): choose the child
    /// config, proposal and narrowed selectors. Returns the answer's payloads and a closure that
    /// installs the child once the response is queued.
    #[allow(clippy::type_complexity)]
    fn answer_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: &Message,
        ke: Option<Option<(DhGroup, Vec<u8>)>>,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<u32>,
    ) -> Result<(Vec<Payload>, Box<dyn FnOnce(&mut IkeSa, &mut Ctx<'_>)>), (u16, String)> {
        let sa = m
            .find(|p| {
                if let Payload::Sa(s) = p {
                    Some(s)
                } else {
                    None
                }
            })
            .ok_or((nt::INVALID_SYNTAX, "no SA".to_string()))?;
        let tsi = m
            .find(|p| {
                if let Payload::TsI(t) = p {
                    Some(t)
                } else {
                    None
                }
            })
            .ok_or((nt::TS_UNACCEPTABLE, "no TSi".to_string()))?;
        let tsr = m
            .find(|p| {
                if let Payload::TsR(t) = p {
                    Some(t)
                } else {
                    None
                }
            })
            .ok_or((nt::TS_UNACCEPTABLE, "no TSr".to_string()))?;
        let old = rekey_of.and_then(|s| self.children.iter().find(|c| c.inbound_spi == s).cloned());
        let mut ts_ok = None;
        for c in &self.conn.children {
            if let Some(o) = &old {
                if o.name != c.name {
                    continue;
                }
            }
            let nl = ts::narrow(tsr, &ts::resolve(&c.local_ts, self.local.ip()));
            let nrm = ts::narrow(tsi, &ts::resolve(&c.remote_ts, self.remote.ip()));
            if !nl.is_empty() && !nrm.is_empty() {
                ts_ok = Some((c.clone(), nl, nrm));
                break;
            }
        }
        let (params, local_ts, remote_ts) = ts_ok.ok_or((
            nt::TS_UNACCEPTABLE,
            "traffic selectors unacceptable".to_string(),
        ))?;
        let ke_group = ke.as_ref().map(|k| k.as_ref().map(|(g, _)| *g));
        let (num, peer_spi, suite) =
            proposal::choose_esp(&params.proposals, sa, ke_group).ok_or((
                nt::NO_PROPOSAL_CHOSEN,
                format!("no acceptable ESP proposal for child {}", params.name),
            ))?;
        let mut p = Vec::new();
        let mut shared = None;
        let mut ke_payload = None;
        if let (Some(g), Some(Some((_, kedata)))) = (suite.dh, &ke) {
            let k = KeyExchange::new(g, ctx.rng)
                .map_err(|e| (nt::NO_PROPOSAL_CHOSEN, e.to_string()))?;
            shared = Some(
                k.shared_secret(kedata)
                    .map_err(|e| (nt::INVALID_SYNTAX, e.to_string()))?,
            );
            ke_payload = Some(Payload::Ke {
                group: g.transform_id(),
                data: k.public_value().to_vec(),
            });
        }
        let transport =
            m.notify(nt::USE_TRANSPORT_MODE).is_some() && params.mode == ChildMode::Transport;
        let inbound_spi = ctx.new_spi();
        if transport {
            p.push(Payload::Notify(Notify::new(
                nt::USE_TRANSPORT_MODE,
                Vec::new(),
            )));
        }
        p.push(Payload::Sa(vec![proposal::esp_answer(
            num,
            suite,
            inbound_spi,
        )]));
        if rekey_of.is_some() || ke.is_some() {
            p.push(Payload::Nonce(nr.to_vec()));
        }
        if let Some(k) = ke_payload {
            p.push(k);
        }
        p.push(Payload::TsI(remote_ts.clone()));
        p.push(Payload::TsR(local_ts.clone()));
        let (ni, nr) = (ni.to_vec(), nr.to_vec());
        let mode = if transport {
            ChildMode::Transport
        } else {
            ChildMode::Tunnel
        };
        let install = Box::new(move |this: &mut IkeSa, ctx: &mut Ctx<'_>| {
            this.install_child(
                ctx,
                &params,
                inbound_spi,
                peer_spi,
                suite,
                shared.as_ref().map(|s| s.as_slice()),
                &ni,
                &nr,
                remote_ts,
                local_ts,
                mode,
                rekey_of,
                false,
            );
        });
        Ok((p, install))
    }

    fn on_create_child_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
        let id = m.header.message_id;
        let sa_is_ike = m
            .sa()
            .and_then(|s| s.first().map(|x| x.protocol == protocol::IKE));
        if sa_is_ike == Some(true) {
            return self.on_rekey_ike_request(ctx, m);
        }
        let Some(ni) = m.nonce().cloned() else {
            return self.respond(
                ctx,
                exchange::CREATE_CHILD_SA,
                id,
                &[Payload::Notify(Notify::new(nt::INVALID_SYNTAX, Vec::new()))],
            );
        };
        let rekey_of = m.notify(nt::REKEY_SA).and_then(|n| {
            let spi = u32::from_be_bytes(n.spi.clone().try_into().ok()?);
            self.children
                .iter()
                .find(|c| c.outbound_spi == spi)
                .map(|c| c.inbound_spi)
        });
        if m.notify(nt::REKEY_SA).is_some() && rekey_of.is_none() {
            return self.respond(
                ctx,
                exchange::CREATE_CHILD_SA,
                id,
                &[Payload::Notify(Notify::new(
                    nt::CHILD_SA_NOT_FOUND,
                    Vec::new(),
                ))],
            );
        }
        let ke = m.ke().map(|(g, d)| (g, d.clone()));
        let ke = match ke {
            None => Some(None),
            Some((g, d)) => match DhGroup::from_transform(g) {
                Some(g) => Some(Some((g, d))),
                None => {
                    let want = self
                        .conn
                        .children
                        .iter()
                        .flat_map(|c| c.proposals.iter())
                        .find_map(|p| p.dh.first().copied());
                    let p = match want {
                        Some(w) => Payload::Notify(Notify::new(
                            nt::INVALID_KE_PAYLOAD,
                            w.transform_id().to_be_bytes().to_vec(),
                        )),
                        None => Payload::Notify(Notify::new(nt::NO_PROPOSAL_CHOSEN, Vec::new())),
                    };
                    return self.respond(ctx, exchange::CREATE_CHILD_SA, id, &[p]);
                }
            },
        };
        let nr = ctx.nonce();
        match self.answer_child(ctx, &m, ke.clone(), &ni, &nr, rekey_of) {
            Ok((p, install)) => {
                self.respond(ctx, exchange::CREATE_CHILD_SA, id, &p);
                install(self, ctx);
                if let Some(old) = rekey_of {
                    // A rekey collision (RFC 7296 §2.8.1): our own rekey of this child is under
                    // way. Remember the peer's nonces to decide, when ours completes, which of
                    // the two new pairs is redundant; a rekey of ours still queued is dropped.
                    let ours_outstanding = matches!(&self.outstanding, Some(Outstanding { kind: Request::CreateChild(pc), .. }) if pc.rekey_of == Some(old));
                    if ours_outstanding {
                        self.collisions.push((old, ni.clone(), nr.clone()));
                    }
                    self.tasks.retain(
                        |t| !matches!(t, Task::Child { rekey_of: Some(o), .. } if *o == old),
                    );
                }
                if let Some(old) = rekey_of {
                    if let Some(c) = self.children.iter_mut().find(|c| c.inbound_spi == old) {
                        c.rekeying = true;
                    }
                }
            }
            Err((n, reason)) => {
                // A KE of a group the chosen proposal does not use: say which one we want.
                let payload = if n == nt::NO_PROPOSAL_CHOSEN && matches!(ke, Some(Some(_))) {
                    let want = self
                        .conn
                        .children
                        .iter()
                        .flat_map(|c| c.proposals.iter())
                        .find_map(|p| p.dh.first().copied());
                    match want {
                        Some(w) => Notify::new(
                            nt::INVALID_KE_PAYLOAD,
                            w.transform_id().to_be_bytes().to_vec(),
                        ),
                        None => Notify::new(n, Vec::new()),
                    }
                } else {
                    Notify::new(n, Vec::new())
                };
                self.log(ctx, format!("refused a child: {reason}"));
                self.respond(
                    ctx,
                    exchange::CREATE_CHILD_SA,
                    id,
                    &[Payload::Notify(payload)],
                );
            }
        }
    }

    fn on_create_child_response(&mut self, ctx: &mut Ctx<'_>, m: Message, child: PendingChild) {
        if let Some(n) = m.notify(nt::INVALID_KE_PAYLOAD) {
            let g = n
                .data
                .get(..2)
                .map(|d| u16::from_be_bytes([d[0], d[1]]))
                .and_then(DhGroup::from_transform);
            if let Some(g) = g.filter(|g| child.params.proposals.iter().any(|p| p.dh.contains(g))) {
                ctx.spis.remove(&child.inbound_spi);
                let mut params = child.params.clone();
                for p in &mut params.proposals {
                    if let Some(pos) = p.dh.iter().position(|d| *d == g) {
                        p.dh.remove(pos);
                        p.dh.insert(0, g);
                    }
                }
                self.tasks.push_front(Task::Child {
                    params,
                    rekey_of: child.rekey_of,
                });
                return;
            }
        }
        let nr = m.nonce().cloned();
        match nr {
            Some(nr) => {
                let old = child.rekey_of;
                let ours = (child.nonce.clone(), nr.clone(), child.inbound_spi);
                let installed_before = self.children.len();
                self.finish_child(ctx, &m, child, Some(&nr));
                if let (Some(old), true) = (old, self.children.len() > installed_before) {
                    // Make-before-break: the new pair is installed; now delete the old one.
                    let mut delete = vec![old];
                    if let Some(pos) = self.collisions.iter().position(|c| c.0 == old) {
                        // Both sides rekeyed the child at once: the pair made with the lowest
                        // of the four nonces is redundant and its creator deletes it
                        // (RFC 7296 §2.8.1). If that is ours, delete it too; otherwise the
                        // peer deletes the one it made.
                        let (_, their_ni, their_nr) = self.collisions.remove(pos);
                        let lowest_theirs = their_ni.as_slice().min(their_nr.as_slice());
                        let lowest_ours = ours.0.as_slice().min(ours.1.as_slice());
                        if lowest_ours < lowest_theirs {
                            self.log(
                                ctx,
                                format!(
                                    "rekey collision: deleting our redundant child SA {:08x}",
                                    ours.2
                                ),
                            );
                            delete.push(ours.2);
                        }
                    }
                    self.tasks.push_back(Task::DeleteChildren(delete));
                }
            }
            None => {
                let reason = m.error_notify().map_or("answer without nonce".into(), |e| {
                    format!("refused: {}", nt::name(e.ntype))
                });
                ctx.spis.remove(&child.inbound_spi);
                ctx.events.push_back(IkeEvent::ChildFailed {
                    conn: self.conn.name.clone(),
                    child: child.params.name.clone(),
                    reason,
                });
            }
        }
    }

    fn on_informational(&mut self, ctx: &mut Ctx<'_>, m: Message) {
        let id = m.header.message_id;
        let mut answer = Vec::new();
        let mut ike_deleted = false;
        let mut ours = Vec::new();
        for p in &m.payloads {
            if let Payload::Delete(d) = p {
                match d.protocol {
                    protocol::IKE => ike_deleted = true,
                    protocol::ESP => {
                        for spi in &d.spis {
                            let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                                continue;
                            };
                            let spi = u32::from_be_bytes(b);
                            if let Some(pos) =
                                self.children.iter().position(|c| c.outbound_spi == spi)
                            {
                                let c = self.children.remove(pos);
                                // In a delete collision we already asked for ours: no need to list it.
                                if !self.deleting_child(c.inbound_spi) {
                                    ours.push(c.inbound_spi.to_be_bytes().to_vec());
                                }
                                self.child_down_event(ctx, &c);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if ike_deleted {
            self.respond(ctx, exchange::INFORMATIONAL, id, &[]);
            return self.die(ctx, "deleted by the peer".into());
        }
        if !ours.is_empty() {
            answer.push(Payload::Delete(Delete {
                protocol: protocol::ESP,
                spi_size: 4,
                spis: ours,
            }));
        }
        self.respond(ctx, exchange::INFORMATIONAL, id, &answer);
    }

    fn deleting_child(&self, inbound: u32) -> bool {
        matches!(&self.outstanding, Some(Outstanding { kind: Request::DeleteChildren(s), .. }) if s.contains(&inbound))
    }

    // ----- commands and timers -----

    /// Queue a new child SA (CREATE_CHILD_SA) on an established IKE SA.
    pub fn create_child(&mut self, ctx: &mut Ctx<'_>, params: ChildParams) {
        self.tasks.push_back(Task::Child {
            params,
            rekey_of: None,
        });
        self.next_task(ctx);
    }

    /// Rekey a child by its inbound SPI (make-before-break).
    pub fn rekey_child(&mut self, ctx: &mut Ctx<'_>, inbound_spi: u32) -> bool {
        let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.inbound_spi == inbound_spi && !c.rekeying)
        else {
            return false;
        };
        c.rekeying = true;
        let name = c.name.clone();
        let Some(params) = self.conn.child(&name).cloned() else {
            return false;
        };
        self.tasks.push_back(Task::Child {
            params,
            rekey_of: Some(inbound_spi),
        });
        self.next_task(ctx);
        true
    }

    /// Delete children by inbound SPI.
    pub fn delete_children(&mut self, ctx: &mut Ctx<'_>, spis: Vec<u32>) {
        self.tasks.push_back(Task::DeleteChildren(spis));
        self.next_task(ctx);
    }

    /// Delete the IKE SA (and with it every child) by telling the peer.
    pub fn delete(&mut self, ctx: &mut Ctx<'_>) {
        if self.state != State::Established {
            return self.die(ctx, "terminated".into());
        }
        self.tasks.clear();
        if self.outstanding.is_some() {
            self.tasks.push_back(Task::DeleteIke);
        } else {
            self.tasks.push_front(Task::DeleteIke);
            self.next_task(ctx);
        }
    }

    fn next_task(&mut self, ctx: &mut Ctx<'_>) {
        if self.outstanding.is_some() || self.state != State::Established {
            return;
        }
        let Some(task) = self.tasks.pop_front() else {
            return;
        };
        match task {
            Task::Child { params, rekey_of } => {
                let with_ke = params.proposals.iter().any(|p| !p.dh.is_empty());
                let name = params.name.clone();
                let child = match self.pending_child(ctx, params, with_ke, rekey_of) {
                    Ok(c) => c,
                    Err(e) => {
                        ctx.events.push_back(IkeEvent::ChildFailed {
                            conn: self.conn.name.clone(),
                            child: name,
                            reason: e,
                        });
                        return self.next_task(ctx);
                    }
                };
                let mut p = Vec::new();
                if let Some(old) = rekey_of {
                    let spi = self
                        .children
                        .iter()
                        .find(|c| c.inbound_spi == old)
                        .map(|c| c.inbound_spi)
                        .unwrap_or(old);
                    p.push(Payload::Notify(Notify {
                        protocol: protocol::ESP,
                        spi: spi.to_be_bytes().to_vec(),
                        ntype: nt::REKEY_SA,
                        data: Vec::new(),
                    }));
                }
                if child.params.mode == ChildMode::Transport {
                    p.push(Payload::Notify(Notify::new(
                        nt::USE_TRANSPORT_MODE,
                        Vec::new(),
                    )));
                }
                p.push(Payload::Sa(child.offered.clone()));
                p.push(Payload::Nonce(child.nonce.clone()));
                if let Some(ke) = &child.ke {
                    p.push(Payload::Ke {
                        group: ke.group().transform_id(),
                        data: ke.public_value().to_vec(),
                    });
                }
                p.push(Payload::TsI(child.local_ts.clone()));
                p.push(Payload::TsR(child.remote_ts.clone()));
                self.request(
                    ctx,
                    exchange::CREATE_CHILD_SA,
                    &p,
                    Request::CreateChild(child),
                );
            }
            Task::DeleteChildren(spis) => {
                let spis: Vec<u32> = spis
                    .into_iter()
                    .filter(|s| self.children.iter().any(|c| c.inbound_spi == *s))
                    .collect();
                if spis.is_empty() {
                    return self.next_task(ctx);
                }
                let d = Delete {
                    protocol: protocol::ESP,
                    spi_size: 4,
                    spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
                };
                self.request(
                    ctx,
                    exchange::INFORMATIONAL,
                    &[Payload::Delete(d)],
                    Request::DeleteChildren(spis),
                );
            }
            Task::DeleteIke => {
                self.state = State::Established;
                let d = Delete {
                    protocol: protocol::IKE,
                    spi_size: 0,
                    spis: Vec::new(),
                };
                self.request(
                    ctx,
                    exchange::INFORMATIONAL,
                    &[Payload::Delete(d)],
                    Request::DeleteIke,
                );
                self.state = State::Deleting;
            }
            Task::Liveness => self.request(ctx, exchange::INFORMATIONAL, &[], Request::Liveness),
            Task::RekeyIke => {
                let group = self.suite.map(|s| s.dh).or_else(|| {
                    self.conn
                        .proposals
                        .first()
                        .and_then(|p| p.dh.first().copied())
                });
                let Some(group) = group else { return };
                let ke = match KeyExchange::new(group, ctx.rng) {
                    Ok(k) => k,
                    Err(e) => return self.log(ctx, format!("IKE rekey: {e}")),
                };
                let spi = ctx.rng.next_u64() | 1;
                let ni = ctx.nonce();
                let offered =
                    proposal::ike_offer(&self.conn.proposals, &spi.to_be_bytes(), Some(group));
                let p = vec![
                    Payload::Sa(offered.clone()),
                    Payload::Nonce(ni.clone()),
                    Payload::Ke {
                        group: group.transform_id(),
                        data: ke.public_value().to_vec(),
                    },
                ];
                self.request(
                    ctx,
                    exchange::CREATE_CHILD_SA,
                    &p,
                    Request::RekeyIke {
                        ke,
                        ni,
                        spi,
                        offered,
                    },
                );
            }
        }
    }

    /// When [`IkeSa::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = self.outstanding.as_ref().map(|o| o.deadline);
        let mut min = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        match self.state {
            State::Established => {
                if let (Some(d), None) = (self.conn.dpd_delay, &self.outstanding) {
                    min(self.last_inbound + d);
                }
                for c in &self.children {
                    if let (Some(r), false) = (c.rekey_at, c.rekeying) {
                        min(r);
                    }
                }
                if let (Some(r), false) = (self.rekey_at, self.rekeying_ike || self.superseded) {
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
        if let Some(o) = &mut self.outstanding {
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
        if !self.rekeying_ike && !self.superseded && self.rekey_at.is_some_and(|r| ctx.now >= r) {
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
            if self.outstanding.is_none()
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

impl IkeSa {
    /// Rekey this IKE SA (CREATE_CHILD_SA with an IKE proposal, RFC 7296 §2.18): the new SA
    /// takes over the children, then the old one is deleted.
    pub fn rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.state != State::Established || self.rekeying_ike || self.superseded {
            return false;
        }
        self.rekeying_ike = true;
        self.tasks.push_back(Task::RekeyIke);
        self.next_task(ctx);
        true
    }

    /// The IKE SA that replaces this one, built from a rekey exchange's results.
    #[allow(clippy::too_many_arguments)]
    fn successor(
        &mut self,
        ctx: &mut Ctx<'_>,
        role: Role,
        spi_i: u64,
        spi_r: u64,
        suite: IkeSuite,
        ni: Vec<u8>,
        nr: Vec<u8>,
        shared: &[u8],
    ) -> Result<IkeSa, String> {
        let old = self.suite.ok_or("no suite")?;
        let sk_d = &self.keys.as_ref().ok_or("no keys")?.sk_d;
        let k = keys::derive_rekeyed_ike_keys(
            old.prf, sk_d, suite.prf, suite.encr, shared, &ni, &nr, spi_i, spi_r,
        )
        .map_err(|e| e.to_string())?;
        let mut n = IkeSa::blank(
            role,
            self.conn.clone(),
            ctx.now,
            spi_i,
            spi_r,
            self.local,
            self.remote,
        );
        n.candidates = self.candidates.clone();
        n.suite = Some(suite);
        n.ni = ni;
        n.nr = nr;
        let (out, inn) = match role {
            Role::Initiator => (&k.sk_ei, &k.sk_er),
            Role::Responder => (&k.sk_er, &k.sk_ei),
        };
        n.sk_out = Some(SkCipher::new(suite.encr, out).map_err(|e| e.to_string())?);
        n.sk_in = Some(SkCipher::new(suite.encr, inn).map_err(|e| e.to_string())?);
        n.keys = Some(k);
        n.ports = self.ports;
        n.nat_local = self.nat_local;
        n.nat_remote = self.nat_remote;
        n.peer_hashes = self.peer_hashes.clone();
        n.peer_frag = self.peer_frag;
        n.remote_id = self.remote_id.clone();
        n.children = std::mem::take(&mut self.children);
        n.state = State::Established;
        n.established_at = Some(ctx.now);
        n.last_inbound = ctx.now;
        n.schedule(ctx);
        self.superseded = true;
        ctx.events.push_back(IkeEvent::IkeRekeyed {
            old: self.local_spi(),
            new: n.local_spi(),
            conn: self.conn.name.clone(),
        });
        Ok(n)
    }

    fn on_rekey_ike_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
        let id = m.header.message_id;
        let refuse = |this: &mut IkeSa, ctx: &mut Ctx<'_>, n: Notify| {
            this.respond(ctx, exchange::CREATE_CHILD_SA, id, &[Payload::Notify(n)]);
        };
        if self.superseded || self.rekeying_ike {
            // A collision with our own rekey: ask the peer to try again later (RFC 7296 §2.25
            // TEMPORARY_FAILURE); our own exchange goes on.
            return refuse(self, ctx, Notify::new(nt::TEMPORARY_FAILURE, Vec::new()));
        }
        let sa = m.sa();
        let ni = m.nonce().cloned();
        let ke = m.ke().map(|(g, d)| (g, d.clone()));
        let (Some(sa), Some(ni), Some((group, kedata))) = (sa, ni, ke) else {
            return refuse(self, ctx, Notify::new(nt::INVALID_SYNTAX, Vec::new()));
        };
        let Some((num, suite, peer_spi)) = proposal::choose_ike_rekey(&self.conn.proposals, sa)
        else {
            return refuse(self, ctx, Notify::new(nt::NO_PROPOSAL_CHOSEN, Vec::new()));
        };
        if group != suite.dh.transform_id() {
            return refuse(
                self,
                ctx,
                Notify::new(
                    nt::INVALID_KE_PAYLOAD,
                    suite.dh.transform_id().to_be_bytes().to_vec(),
                ),
            );
        }
        let made = KeyExchange::new(suite.dh, ctx.rng)
            .map_err(|e| e.to_string())
            .and_then(|k| {
                k.shared_secret(&kedata)
                    .map(|s| (k, s))
                    .map_err(|e| e.to_string())
            });
        let (ke_state, shared) = match made {
            Ok(x) => x,
            Err(e) => {
                self.log(ctx, format!("IKE rekey refused: {e}"));
                return refuse(self, ctx, Notify::new(nt::INVALID_SYNTAX, Vec::new()));
            }
        };
        let our_spi = ctx.rng.next_u64() | 1;
        let nr = ctx.nonce();
        let p = vec![
            Payload::Sa(vec![proposal::ike_answer(
                num,
                suite,
                &our_spi.to_be_bytes(),
            )]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: suite.dh.transform_id(),
                data: ke_state.public_value().to_vec(),
            },
        ];
        match self.successor(
            ctx,
            Role::Responder,
            peer_spi,
            our_spi,
            suite,
            ni,
            nr,
            &shared,
        ) {
            Ok(n) => {
                self.respond(ctx, exchange::CREATE_CHILD_SA, id, &p);
                ctx.spawned.push(n);
            }
            Err(e) => {
                self.log(ctx, format!("IKE rekey failed: {e}"));
                refuse(self, ctx, Notify::new(nt::NO_PROPOSAL_CHOSEN, Vec::new()));
            }
        }
    }

    fn on_rekey_ike_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: Message,
        ke: KeyExchange,
        ni: Vec<u8>,
        spi: u64,
        offered: Vec<Proposal>,
    ) {
        let retry_later = |this: &mut IkeSa, ctx: &mut Ctx<'_>, why: String| {
            this.rekeying_ike = false;
            this.rekey_at = Some(
                ctx.now
                    + Duration::from_secs(10)
                    + Duration::from_millis(ctx.rng.next_u64() % 5000),
            );
            this.log(ctx, format!("IKE rekey not done ({why}); retrying later"));
        };
        if let Some(e) = m.error_notify() {
            return retry_later(self, ctx, nt::name(e.ntype).to_string());
        }
        let sa = m.sa().cloned();
        let nr = m.nonce().cloned();
        let kedata = m.ke().map(|(_, d)| d.clone());
        let (Some(sa), Some(nr), Some(kedata)) = (sa, nr, kedata) else {
            return retry_later(self, ctx, "answer lacks SA, nonce or KE".into());
        };
        let Some(first) = sa.first() else {
            return retry_later(self, ctx, "empty SA".into());
        };
        let Ok(peer_spi) = <[u8; 8]>::try_from(first.spi.as_slice()).map(u64::from_be_bytes) else {
            return retry_later(self, ctx, "answer without an 8-octet SPI".into());
        };
        // Compare the answer with what we offered, whatever SPI each side put in.
        let ours: Vec<Proposal> = offered
            .iter()
            .map(|p| Proposal {
                spi: first.spi.clone(),
                ..p.clone()
            })
            .collect();
        let Some(suite) = proposal::accept_ike_answer(&ours, &sa) else {
            return retry_later(self, ctx, "answer is not one of our proposals".into());
        };
        if suite.dh != ke.group() {
            return retry_later(self, ctx, "key exchange mismatch".into());
        }
        let shared = match ke.shared_secret(&kedata) {
            Ok(s) => s,
            Err(e) => return retry_later(self, ctx, e.to_string()),
        };
        match self.successor(ctx, Role::Initiator, spi, peer_spi, suite, ni, nr, &shared) {
            Ok(n) => {
                ctx.spawned.push(n);
                // The old IKE SA has handed over its children: delete it.
                self.tasks.push_front(Task::DeleteIke);
            }
            Err(e) => retry_later(self, ctx, e),
        }
    }
}
