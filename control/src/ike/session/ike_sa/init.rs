//! IKE_SA_INIT (RFC 7296 §1.2): our request and its retries (COOKIE, INVALID_KE_PAYLOAD), the
//! responder's answer, NAT detection and the derivation of the IKE keys.

use super::*;

/// The initiator's IKE_SA_INIT while it is outstanding: gone once the exchange is done.
pub(super) struct SaInitOffer {
    /// Our key exchange.
    pub(super) ke: KeyExchange,
    /// The responder's COOKIE to return, once it asked for one.
    pub(super) cookie: Option<Vec<u8>>,
    /// How many times the request was restarted (COOKIE, INVALID_KE_PAYLOAD).
    pub(super) retries: u32,
    /// The proposals we offered.
    pub(super) offered: Vec<Proposal>,
}

impl SaInitOffer {
    /// A first request with key exchange `ke`.
    pub(super) fn new(ke: KeyExchange) -> SaInitOffer {
        SaInitOffer {
            ke,
            cookie: None,
            retries: 0,
            offered: Vec::new(),
        }
    }
}

impl IkeSa {
    /// Our outstanding IKE_SA_INIT request.
    fn sent_init(&self) -> Option<&SaInitOffer> {
        match &self.window.outstanding {
            Some(Outstanding {
                kind: Request::SaInit(init),
                ..
            }) => Some(init),
            _ => None,
        }
    }

    /// Take our outstanding IKE_SA_INIT request, ending it.
    fn take_sent_init(&mut self) -> Option<SaInitOffer> {
        match self.window.outstanding.take() {
            Some(Outstanding {
                kind: Request::SaInit(init),
                ..
            }) => Some(init),
            other => {
                self.window.outstanding = other;
                None
            }
        }
    }

    pub(super) fn nat_notifies(&self, spi_r: u64) -> [Payload; 2] {
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

    pub(super) fn common_notifies(&self) -> Vec<Payload> {
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

    /// Send our IKE_SA_INIT request (kept in the outstanding request until the answer comes).
    pub(super) fn send_sa_init(&mut self, ctx: &mut Ctx<'_>, mut init: SaInitOffer) {
        let ke = &init.ke;
        init.offered = proposal::ike_offer(&self.conn.proposals, &[], Some(ke.group()));
        let mut p = Vec::new();
        if let Some(c) = &init.cookie {
            p.push(Payload::Notify(Notify::new(nt::COOKIE, c.clone())));
        }
        p.push(Payload::Sa(init.offered.clone()));
        p.push(Payload::Ke {
            group: ke.group().transform_id(),
            data: ke.public_value().to_vec(),
        });
        p.push(Payload::Nonce(self.ni.clone()));
        p.extend(self.nat_notifies(0));
        p.extend(self.common_notifies());
        if self.offers_addke() {
            p.push(Payload::Notify(Notify::new(
                nt::INTERMEDIATE_EXCHANGE_SUPPORTED,
                Vec::new(),
            )));
        }
        let h = Header::new(self.spi_i, 0, exchange::IKE_SA_INIT, flags::INITIATOR, 0);
        let data = message::encode_plain(&h, &p);
        self.init_req = data.clone();
        self.window.next_id = 1;
        self.send_request(ctx, 0, vec![data], Request::SaInit(init));
    }

    pub(super) fn check_nat(&mut self, m: &Message, spi_r: u64) {
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

    /// Derive the IKE keys of the negotiated `suite` from the DH `shared` secret and the nonces.
    pub(super) fn set_keys(&mut self, suite: IkeSuite, shared: &[u8]) -> Result<(), SetupError> {
        let k = keys::derive_ike_keys(
            suite.prf,
            (suite.encr, suite.integ),
            &self.ni,
            &self.nr,
            shared,
            self.spi_i,
            self.spi_r,
        )
        .map_err(SetupError::Keys)?;
        self.keys = Some(Keys::new(self.role, suite, k)?);
        Ok(())
    }

    /// Answer an IKE_SA_INIT request (the endpoint has checked cookies and chosen candidate
    /// connections). Returns the new SA, or None if the answer was an error notify.
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
        // Without INTERMEDIATE_EXCHANGE_SUPPORTED no additional key exchange can run: only
        // our proposals that allow NONE for every ADDKE type remain, NONE chosen.
        let intermediate = m.notify(nt::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some();
        let all = if intermediate {
            all
        } else {
            let optional: Vec<_> = all.into_iter().filter(|p| !p.requires_addke()).collect();
            proposal::classical_only(&optional)
        };
        let ke_group = DhGroup::from_transform(group);
        let with_ke: Vec<_> = all
            .iter()
            .filter(|p| ke_group.is_some_and(|g| p.dh.contains(&g)))
            .map(|p| crate::ike::session::params::IkeProposalSpec {
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
        sa_state.ni = ni.clone();
        sa_state.nr = ctx.nonce();
        sa_state.init_req = raw.to_vec();
        sa_state.check_nat(m, 0);
        sa_state.peer_frag = m.notify(nt::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        sa_state.inter.supported = intermediate;
        sa_state.peer_hashes = m
            .notify(nt::SIGNATURE_HASH_ALGORITHMS)
            .map(|n| {
                n.data
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default();
        if sa_state.set_keys(suite, &shared).is_err() {
            return None;
        }
        let mut p = vec![
            Payload::Sa(vec![proposal::ike_answer(
                num,
                suite,
                &[],
                sa.iter().find(|p| p.num == num),
            )]),
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
        if intermediate {
            p.push(Payload::Notify(Notify::new(
                nt::INTERMEDIATE_EXCHANGE_SUPPORTED,
                Vec::new(),
            )));
        }
        let hh = Header::new(h.spi_i, spi_r, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
        let data = message::encode_plain(&hh, &p);
        sa_state.init_resp = data.clone();
        sa_state.window.last_response = Some((0, vec![data.clone()]));
        sa_state.window.expected_id = 1;
        sa_state.state = State::AuthPending;
        ctx.out.push_back(Transmit {
            local,
            remote,
            data,
        });
        Some(sa_state)
    }

    /// Resend our cached IKE_SA_INIT response (a retransmitted request).
    pub fn resend_init_response(&self, ctx: &mut Ctx<'_>) {
        if let Some((0, d)) = &self.window.last_response {
            ctx.out.push_back(Transmit {
                local: self.local,
                remote: self.remote,
                data: d.concat(),
            });
        }
    }

    pub(super) fn on_sa_init_response(&mut self, ctx: &mut Ctx<'_>, m: Message, raw: &[u8]) {
        if self.state != State::InitSent {
            return ctx.drop_for(DropReason::Unexpected);
        }
        if let Some(c) = m.notify(nt::COOKIE) {
            if self
                .sent_init()
                .is_some_and(|i| i.cookie.is_some() && i.retries > 4)
            {
                return ctx.drop_for(DropReason::Unexpected);
            }
            let Some(mut init) = self.take_sent_init() else {
                return;
            };
            init.retries += 1;
            init.cookie = Some(c.data.clone());
            self.log(ctx, "responder asked for a cookie; retrying");
            self.send_sa_init(ctx, init);
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
                    if self
                        .sent_init()
                        .is_some_and(|i| i.retries < 4 && g != i.ke.group()) =>
                {
                    let Some(mut init) = self.take_sent_init() else {
                        return;
                    };
                    init.retries += 1;
                    init.ke = match KeyExchange::new(g, ctx.rng) {
                        Ok(ke) => ke,
                        Err(e) => return self.die(ctx, e.to_string()),
                    };
                    self.log(ctx, format!("responder wants key exchange {g}; retrying"));
                    self.send_sa_init(ctx, init);
                }
                _ => self.die(
                    ctx,
                    "INVALID_KE_PAYLOAD with a group we do not offer".into(),
                ),
            }
            return;
        }
        if let Some(e) = m.error_notify() {
            let mut reason = format!("IKE_SA_INIT refused: {}", nt::name(e.ntype));
            if e.ntype == nt::NO_PROPOSAL_CHOSEN
                && self.conn.proposals.iter().all(|p| p.requires_addke())
            {
                reason.push_str(
                    " (every proposal we offer requires an additional key exchange, RFC 9370: \
                     the peer may not support it; add a classical-only proposal to fall back)",
                );
            }
            return self.die(ctx, reason);
        }
        let sa = m.sa();
        let ke = m.ke();
        let nonce = m.nonce();
        let (Some(sa), Some((group, kedata)), Some(nr)) = (sa, ke, nonce) else {
            return self.die(ctx, "IKE_SA_INIT response lacks SA, KE or Nonce".into());
        };
        let suite = self
            .sent_init()
            .and_then(|i| proposal::accept_ike_answer(&i.offered, sa));
        let Some(suite) = suite else {
            return self.die(ctx, "responder chose a proposal we did not offer".into());
        };
        let Some(SaInitOffer { ke: ke_state, .. }) = self.take_sent_init() else {
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
        self.window.outstanding = None;
        self.spi_r = m.header.spi_r;
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
        self.inter.supported = m.notify(nt::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some();
        if !suite.rounds().is_empty() && !self.inter.supported {
            return self.die(
                ctx,
                format!(
                    "responder chose additional key exchanges ({}) without announcing \
                     IKE_INTERMEDIATE support (INTERMEDIATE_EXCHANGE_SUPPORTED, RFC 9242)",
                    suite.name()
                ),
            );
        }
        if let Err(e) = self.set_keys(suite, &shared) {
            return self.die(ctx, e.to_string());
        }
        if self.nat_local || self.nat_remote {
            self.local.set_port(self.ports.1);
            if self.remote.port() == self.ports.0 {
                self.remote.set_port(self.ports.1);
            }
            self.log(ctx, "NAT detected; moving to port 4500");
        }
        self.state = State::AuthPending;
        self.continue_setup(ctx);
    }
}

pub(super) fn nat_hash(spi_i: u64, spi_r: u64, a: SocketAddr) -> Vec<u8> {
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
