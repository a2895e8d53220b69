//! IKE_INTERMEDIATE (RFC 9242) carrying the additional key exchanges of RFC 9370: one exchange
//! per negotiated ADDKE type, in ascending order, after IKE_SA_INIT and before IKE_AUTH. The
//! initiator sends an ML-KEM encapsulation key, the responder answers with the ciphertext, and
//! both update every IKE key from the new secret (SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)).
//! Each exchange extends the IntAuth chain that IKE_AUTH's AUTH payloads cover.

use super::*;
use crate::ike::crypto::mlkem::{MlKem, MlKemInitiator};

/// Where the IKE_INTERMEDIATE exchanges of an IKE SA stand.
#[derive(Default)]
pub(super) struct Intermediate {
    /// Both ends sent INTERMEDIATE_EXCHANGE_SUPPORTED in IKE_SA_INIT.
    pub(super) supported: bool,
    /// Additional key exchanges completed (an index into the suite's rounds).
    pub(super) done: usize,
    /// IKE_INTERMEDIATE exchanges completed.
    pub(super) exchanges: u32,
    /// IntAuth_iN so far (empty before the first exchange).
    pub(super) int_auth_i: Vec<u8>,
    /// IntAuth_rN so far.
    pub(super) int_auth_r: Vec<u8>,
}

/// Our outstanding IKE_INTERMEDIATE request.
pub(super) struct IntermediateRequest {
    /// The ADDKE number (1 to 7) and its method.
    pub(super) round: (usize, MlKem),
    /// Our key pair of this round.
    pub(super) kem: MlKemInitiator,
    /// IntAuth_i including our request, taken once the response is good.
    pub(super) int_auth_i: Vec<u8>,
}

impl IkeSa {
    /// Whether any of our proposals carries an additional key exchange (we then announce
    /// IKE_INTERMEDIATE support).
    pub(super) fn offers_addke(&self) -> bool {
        self.conn
            .proposals
            .iter()
            .any(|p| p.addke.iter().any(|s| !s.is_empty()))
    }

    /// The next additional key exchange to run, if any remain.
    pub(super) fn next_round(&self) -> Option<(usize, MlKem)> {
        let suite = self.keys.as_ref()?.suite;
        suite.rounds().get(self.inter.done).copied()
    }

    /// IntAuth of RFC 9242 §3.3.2 for an IKE_AUTH with message ID `auth_mid`: IntAuth_iN |
    /// IntAuth_rN | IKE_AUTH_MID, or nothing when no IKE_INTERMEDIATE exchange took place.
    pub(super) fn int_auth(&self, auth_mid: u32) -> Vec<u8> {
        if self.inter.exchanges == 0 {
            return Vec::new();
        }
        [
            &self.inter.int_auth_i[..],
            &self.inter.int_auth_r[..],
            &auth_mid.to_be_bytes()[..],
        ]
        .concat()
    }

    /// The next link of the IntAuth chain of `from_initiator`'s messages over a message with
    /// `header` carrying `inner` (first payload type `first`), under the SK_p in use now.
    fn int_auth_link(
        &self,
        from_initiator: bool,
        header: &Header,
        first: u8,
        inner: &[u8],
    ) -> Vec<u8> {
        let Some(k) = &self.keys else {
            return Vec::new();
        };
        let (sk_p, prev) = if from_initiator {
            (&k.ike.sk_pi, &self.inter.int_auth_i)
        } else {
            (&k.ike.sk_pr, &self.inter.int_auth_r)
        };
        let octets = message::intauth_octets(header, first, inner);
        auth::int_auth_step(k.suite.prf, sk_p, prev, &octets)
    }

    /// Replace every IKE key with those derived from the secret of the additional key exchange
    /// just completed (RFC 9370 §2.2.2).
    fn update_keys(&mut self, shared: &[u8]) -> Result<(), SetupError> {
        let k = self.keys.as_ref().ok_or(SetupError::NoKeys)?;
        let suite = k.suite;
        let ike = keys::derive_intermediate_ike_keys(
            suite.prf,
            (suite.encr, suite.integ),
            &k.ike.sk_d,
            shared,
            &self.ni,
            &self.nr,
            self.spi_i,
            self.spi_r,
        )
        .map_err(SetupError::Keys)?;
        self.keys = Some(Keys::new(self.role, suite, ike)?);
        Ok(())
    }

    /// Initiator, after IKE_SA_INIT or an IKE_INTERMEDIATE exchange: the next additional key
    /// exchange, or IKE_AUTH once all are done.
    pub(super) fn continue_setup(&mut self, ctx: &mut Ctx<'_>) {
        let Some((n, method)) = self.next_round() else {
            return self.send_auth(ctx);
        };
        let kem = match MlKemInitiator::new(method) {
            Ok(k) => k,
            Err(e) => return self.die(ctx, format!("additional key exchange {n}: {e}")),
        };
        let p = [Payload::Ke {
            group: method.transform_id(),
            data: kem.public_value().to_vec(),
        }];
        let h = Header::new(
            self.spi_i,
            self.spi_r,
            exchange::IKE_INTERMEDIATE,
            self.flags(false),
            self.window.next_id,
        );
        let (first, inner) = message::inner_octets(&p);
        let int_auth_i = self.int_auth_link(true, &h, first, &inner);
        let req = IntermediateRequest {
            round: (n, method),
            kem,
            int_auth_i,
        };
        self.request(
            ctx,
            exchange::IKE_INTERMEDIATE,
            &p,
            Request::Intermediate(Box::new(req)),
        );
    }

    /// Initiator: the responder's IKE_INTERMEDIATE response.
    pub(super) fn on_intermediate_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: Message,
        req: IntermediateRequest,
    ) {
        let (n, method) = req.round;
        if let Some(e) = m.error_notify() {
            let reason = format!(
                "IKE_INTERMEDIATE (additional key exchange {n}, {method}) refused: {}",
                nt::name(e.ntype)
            );
            return self.die(ctx, reason);
        }
        let Some((first, inner)) = &m.sk_inner else {
            return self.die(
                ctx,
                "IKE_INTERMEDIATE response with unencrypted payloads".into(),
            );
        };
        let kes: Vec<(u16, &Vec<u8>)> = m
            .payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Ke { group, data } => Some((*group, data)),
                _ => None,
            })
            .collect();
        let ct = match kes[..] {
            [(g, d)] if g == method.transform_id() => d,
            [(g, _)] => {
                return self.die(
                    ctx,
                    format!(
                        "IKE_INTERMEDIATE response: KE payload for method {g}, additional key \
                         exchange {n} is {method}"
                    ),
                )
            }
            _ => {
                return self.die(
                    ctx,
                    format!(
                        "IKE_INTERMEDIATE response: {} KE payloads, one expected",
                        kes.len()
                    ),
                )
            }
        };
        let shared = match req.kem.decapsulate(ct) {
            Ok(s) => s,
            Err(e) => return self.die(ctx, format!("bad KE payload: {e}")),
        };
        let int_auth_r = self.int_auth_link(false, &m.header, *first, inner);
        self.inter.int_auth_i = req.int_auth_i;
        self.inter.int_auth_r = int_auth_r;
        self.inter.exchanges += 1;
        self.inter.done += 1;
        if let Err(e) = self.update_keys(&shared) {
            return self.die(ctx, e.to_string());
        }
        self.continue_setup(ctx);
    }

    /// Responder: an IKE_INTERMEDIATE request (the message ID is already accepted).
    pub(super) fn on_intermediate_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
        let id = m.header.message_id;
        let refuse = |this: &mut IkeSa, ctx: &mut Ctx<'_>, reason: String| {
            this.respond(
                ctx,
                exchange::IKE_INTERMEDIATE,
                id,
                &[Payload::Notify(Notify::new(nt::INVALID_SYNTAX, Vec::new()))],
            );
            this.die(ctx, reason);
        };
        let Some((first, inner)) = &m.sk_inner else {
            return refuse(
                self,
                ctx,
                "IKE_INTERMEDIATE request with unencrypted payloads".into(),
            );
        };
        let kes: Vec<(u16, &Vec<u8>)> = m
            .payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Ke { group, data } => Some((*group, data)),
                _ => None,
            })
            .collect();
        let (reply, shared) = match (self.next_round(), &kes[..]) {
            (None, []) => (Vec::new(), None),
            (None, [(g, _), ..]) => {
                return refuse(
                    self,
                    ctx,
                    format!(
                        "IKE_INTERMEDIATE KE payload for method {g} after every negotiated \
                         additional key exchange (RFC 9370: INVALID_SYNTAX)"
                    ),
                )
            }
            (Some((n, method)), [(g, data)]) if *g == method.transform_id() => {
                match method.encapsulate(data) {
                    Ok((ct, ss)) => (
                        vec![Payload::Ke {
                            group: method.transform_id(),
                            data: ct,
                        }],
                        Some(ss),
                    ),
                    Err(e) => {
                        return refuse(
                            self,
                            ctx,
                            format!("additional key exchange {n}: bad KE payload: {e}"),
                        )
                    }
                }
            }
            (Some((n, method)), _) => {
                let got = kes
                    .iter()
                    .map(|(g, _)| g.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return refuse(
                    self,
                    ctx,
                    format!(
                        "IKE_INTERMEDIATE for additional key exchange {n} ({method}, ID {}) \
                         carried KE payloads for [{got}] (RFC 9370: INVALID_SYNTAX)",
                        method.transform_id()
                    ),
                );
            }
        };
        let int_auth_i = self.int_auth_link(true, &m.header, *first, inner);
        let h = Header::new(
            self.spi_i,
            self.spi_r,
            exchange::IKE_INTERMEDIATE,
            self.flags(true),
            id,
        );
        let (rfirst, rinner) = message::inner_octets(&reply);
        let int_auth_r = self.int_auth_link(false, &h, rfirst, &rinner);
        self.respond(ctx, exchange::IKE_INTERMEDIATE, id, &reply);
        self.inter.int_auth_i = int_auth_i;
        self.inter.int_auth_r = int_auth_r;
        self.inter.exchanges += 1;
        if let Some(ss) = shared {
            self.inter.done += 1;
            if let Err(e) = self.update_keys(&ss) {
                self.die(ctx, e.to_string());
            }
        }
    }
}
