//! The message window (RFC 7296 §2.3, a window of one): requests, responses, encryption and
//! fragmentation, the response cache, and the dispatch of inbound datagrams by exchange.

use super::*;
use crate::ike::message::ExchangeType;

/// The message window of RFC 7296 §2.3 with a window of one, both ways: the IDs of our next
/// request and of the peer's next request, our outstanding request (with what to retransmit)
/// and the cached response to the peer's last request.
#[derive(Default)]
pub(super) struct Window {
    /// The message ID of our next request.
    pub(super) next_id: u32,
    /// The message ID of the peer's next request.
    pub(super) expected_id: u32,
    /// Our request waiting for its response.
    pub(super) outstanding: Option<Outstanding>,
    /// Our last response (message ID, datagrams), resent when its request is retransmitted.
    pub(super) last_response: Option<(u32, Vec<Vec<u8>>)>,
    /// Fragments being reassembled (RFC 7383): whether they make a response, and the buffer.
    pub(super) reassembly: Option<(bool, Reassembly)>,
    /// A reassembled message, handed from [`IkeSa::handle`] to the request or response path.
    pub(super) pending_msg: Option<Message>,
    /// A reassembled request whose payloads, inside verified fragments, do not read: handed
    /// to the request path, which answers it as it answers a whole message that does not.
    pub(super) pending_err: Option<message::DecodeError>,
}

/// A request of ours waiting for its response.
pub(super) struct Outstanding {
    pub(super) id: u32,
    pub(super) data: Vec<Vec<u8>>,
    pub(super) tries: u32,
    pub(super) deadline: Instant,
    pub(super) kind: Request,
}

/// What an outstanding request was.
pub(super) enum Request {
    SaInit(SaInitOffer),
    Auth(Option<PendingChild>),
    Intermediate(Box<IntermediateRequest>),
    CreateChild(PendingChild),
    Followup(Box<FollowupRequest>),
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

impl IkeSa {
    pub(super) fn transmit_all(&self, ctx: &mut Ctx<'_>, data: &[Vec<u8>]) {
        for d in data {
            ctx.out.push_back(Transmit {
                local: self.local,
                remote: self.remote,
                data: d.clone(),
            });
        }
    }

    pub(super) fn send_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: u32,
        data: Vec<Vec<u8>>,
        kind: Request,
    ) {
        self.transmit_all(ctx, &data);
        let deadline = ctx.now + self.conn.retransmit.delay(0);
        self.window.outstanding = Some(Outstanding {
            id,
            data,
            tries: 0,
            deadline,
            kind,
        });
    }

    pub(super) fn flags(&self, response: bool) -> u8 {
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
    pub(super) fn encrypt(
        &mut self,
        exch: ExchangeType,
        id: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Vec<Vec<u8>> {
        let h = Header::new(self.spi_i, self.spi_r, exch, self.flags(response), id);
        let k = self
            .keys
            .as_mut()
            .expect("keys exist once IKE_SA_INIT is done");
        if self.peer_frag {
            return fragment::encode_fragments(&h, payloads, &k.sk_out, &mut k.iv, FRAGMENT_SIZE);
        }
        k.iv += 1;
        vec![message::encode_encrypted(
            &h,
            payloads,
            &k.sk_out,
            k.iv.to_be_bytes(),
        )]
    }

    pub(super) fn respond(
        &mut self,
        ctx: &mut Ctx<'_>,
        exch: ExchangeType,
        id: u32,
        payloads: &[Payload],
    ) {
        let data = self.encrypt(exch, id, true, payloads);
        self.transmit_all(ctx, &data);
        self.window.last_response = Some((id, data));
    }

    pub(super) fn request(
        &mut self,
        ctx: &mut Ctx<'_>,
        exch: ExchangeType,
        payloads: &[Payload],
        kind: Request,
    ) {
        let id = self.window.next_id;
        self.window.next_id += 1;
        let data = self.encrypt(exch, id, false, payloads);
        self.send_request(ctx, id, data, kind);
    }

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
                self.window
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| o.id == fh.message_id)
            } else {
                fh.message_id == self.window.expected_id
            };
            let Some(sk) = self.keys.as_ref().map(|k| &k.sk_in) else {
                return ctx.drop_for(DropReason::Fragment);
            };
            if !wanted || !self.peer_frag {
                if !fh.is_response() && fh.message_id.wrapping_add(1) == self.window.expected_id {
                    return self.handle_request(ctx, local, remote, raw, h);
                }
                return ctx.drop_for(DropReason::Fragment);
            }
            let same = matches!(&self.window.reassembly, Some((resp, r)) if *resp == fh.is_response() && r.message_id() == Some(fh.message_id));
            if !same {
                self.window.reassembly =
                    Some((fh.is_response(), Reassembly::new(FragmentLimits::default())));
            }
            let Some((_, r)) = self.window.reassembly.as_mut() else {
                return ctx.drop_for(DropReason::Fragment);
            };
            match r.add(raw, sk) {
                Ok(Some(m)) => {
                    self.window.reassembly = None;
                    self.window.pending_msg = Some(m);
                }
                Ok(None) => return,
                Err(fragment::FragmentError::Decode(message::DecodeError::Integrity)) => {
                    return ctx.drop_for(DropReason::Integrity)
                }
                Err(fragment::FragmentError::Decode(message::DecodeError::BadPadding)) => {
                    return ctx.drop_for(DropReason::BadPadding)
                }
                Err(fragment::FragmentError::Decode(
                    e @ (message::DecodeError::InvalidInSk(_)
                    | message::DecodeError::UnsupportedCritical(_)),
                )) if !fh.is_response() => {
                    self.window.reassembly = None;
                    self.window.pending_err = Some(e);
                }
                Err(_) => return ctx.drop_for(DropReason::Fragment),
            }
        }
        if h.is_response() {
            self.handle_response(ctx, local, remote, raw, h);
        } else {
            self.handle_request(ctx, local, remote, raw, h);
        }
        self.window.pending_msg = None;
        self.window.pending_err = None;
    }

    pub(super) fn decode(&mut self, ctx: &mut Ctx<'_>, raw: &[u8]) -> Option<Message> {
        if let Some(m) = self.window.pending_msg.take() {
            return Some(m);
        }
        let sk = self
            .keys
            .as_ref()
            .map(|k| &k.sk_in)
            .map(|s| s as &dyn message::SkAead);
        match message::decode(raw, sk) {
            Ok(m) => Some(m),
            Err(e) => {
                ctx.drop_for(DropReason::of_decode(&e));
                None
            }
        }
    }

    pub(super) fn handle_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        h: Header,
    ) {
        let Some(o) = &self.window.outstanding else {
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
        let Some(o) = self.window.outstanding.take() else {
            return;
        };
        match o.kind {
            Request::SaInit(_) => {}
            Request::Auth(child) => self.on_auth_response(ctx, m, child),
            Request::Intermediate(req) => self.on_intermediate_response(ctx, m, *req),
            Request::CreateChild(child) => self.on_create_child_response(ctx, m, child),
            Request::Followup(f) => self.on_followup_response(ctx, m, *f),
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

    pub(super) fn handle_request(
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
        if h.message_id.wrapping_add(1) == self.window.expected_id {
            ctx.drop_for(DropReason::Retransmit);
            // A retransmitted request: answer from the cache, without processing it again.
            // For a fragmented request, only its first fragment triggers the resend (RFC 7383
            // §2.6.1).
            let first = fragment::fragment_info(raw).is_none_or(|(_, n, _)| n == 1);
            if let (Some((id, data)), true) = (&self.window.last_response, first) {
                if *id == h.message_id {
                    self.transmit_all(ctx, data);
                }
            }
            return;
        }
        if h.message_id != self.window.expected_id {
            return ctx.drop_for(DropReason::MessageId);
        }
        let decoded = match (
            self.window.pending_msg.take(),
            self.window.pending_err.take(),
        ) {
            (Some(m), _) => Ok(m),
            (None, Some(e)) => Err(e),
            (None, None) => message::decode(
                raw,
                self.keys
                    .as_ref()
                    .map(|k| &k.sk_in)
                    .map(|s| s as &dyn message::SkAead),
            ),
        };
        let m = match decoded {
            Ok(m) if m.encrypted => m,
            Ok(_) => return ctx.drop_for(DropReason::Unexpected),
            Err(message::DecodeError::UnsupportedCritical(t)) => {
                // Only answer if the message authenticates: decode again skipping nothing is not
                // possible, so the SK payload was intact (criticality is checked after the ICV).
                self.window.expected_id += 1;
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
            Err(message::DecodeError::InvalidInSk(e)) => {
                // RFC 7296 §3.10.1: the ICV verified, so the peer sent it: INVALID_SYNTAX. An
                // IKE_AUTH request that cannot be read cannot authenticate: no IKE SA (§2.21.2).
                ctx.drop_for(DropReason::Malformed);
                self.window.expected_id += 1;
                self.last_inbound = ctx.now;
                self.respond(
                    ctx,
                    h.exchange,
                    h.message_id,
                    &[Payload::Notify(Notify::new(nt::INVALID_SYNTAX, Vec::new()))],
                );
                if h.exchange == exchange::IKE_AUTH
                    && self.role == Role::Responder
                    && self.state == State::AuthPending
                {
                    self.die(ctx, format!("IKE_AUTH request: {e}"));
                }
                return;
            }
            Err(e) => return ctx.drop_for(DropReason::of_decode(&e)),
        };
        self.window.expected_id += 1;
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
            exchange::IKE_INTERMEDIATE
                if self.role == Role::Responder
                    && self.state == State::AuthPending
                    && self.inter.supported =>
            {
                self.on_intermediate_request(ctx, m)
            }
            exchange::IKE_FOLLOWUP_KE if self.state == State::Established => {
                self.on_followup_request(ctx, m)
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
}
