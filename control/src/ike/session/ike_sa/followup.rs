//! IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): the additional key exchanges of a CREATE_CHILD_SA that
//! makes or rekeys a child SA with PFS, or rekeys the IKE SA. The CREATE_CHILD_SA response
//! carries the responder's ADDITIONAL_KEY_EXCHANGE link; each IKE_FOLLOWUP_KE request returns
//! the link with the initiator's ML-KEM encapsulation key, each response the ciphertext (and
//! the next link while rounds remain). After the last round the child is installed with KEYMAT
//! = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)), or the new IKE SA made with SKEYSEED =
//! prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)).

use super::child::NewChild;
use super::rekey::IkeRekeyPending;
use super::*;
use crate::ike::crypto::mlkem::{MlKem, MlKemInitiator};
use zeroize::Zeroizing;

/// What the additional key exchanges are for.
pub(super) enum FollowupTarget {
    /// A negotiated child SA, installed after the last round.
    Child(Box<NewChild>),
    /// An IKE SA rekey, whose successor is made after the last round.
    Ike(Box<IkeRekeyPending>),
}

impl FollowupTarget {
    fn push_secret(&mut self, s: Zeroizing<Vec<u8>>) {
        match self {
            FollowupTarget::Child(c) => c.addke.push(s),
            FollowupTarget::Ike(r) => r.addke.push(s),
        }
    }

    /// The inbound SPI a child holds, to release when it fails.
    fn child_spi(&self) -> Option<u32> {
        match self {
            FollowupTarget::Child(c) => Some(c.inbound_spi),
            FollowupTarget::Ike(_) => None,
        }
    }
}

/// Our outstanding IKE_FOLLOWUP_KE request.
pub(super) struct FollowupRequest {
    /// The negotiated child or IKE rekey, its secrets so far.
    pub(super) target: FollowupTarget,
    /// The rounds still to run, the current one first: (ADDKE number, method).
    pub(super) rounds: Vec<(usize, MlKem)>,
    /// Our key pair of the current round.
    pub(super) kem: MlKemInitiator,
}

/// A child or IKE rekey the peer negotiated whose additional key exchanges are still to come.
pub(super) struct FollowupPending {
    /// The link the next IKE_FOLLOWUP_KE must carry.
    pub(super) link: Vec<u8>,
    /// The child or IKE rekey, its secrets so far.
    pub(super) target: FollowupTarget,
    /// The rounds still to run, the next one first.
    pub(super) rounds: Vec<(usize, MlKem)>,
}

impl IkeSa {
    /// Initiator: our additional key exchanges for `target` failed.
    fn followup_failed(&mut self, ctx: &mut Ctx<'_>, target: FollowupTarget, reason: String) {
        match target {
            FollowupTarget::Child(c) => {
                self.our_child_failed(ctx, &c.params.name, c.inbound_spi, c.replaces, reason)
            }
            FollowupTarget::Ike(_) => self.rekey_retry_later(ctx, reason),
        }
    }

    /// Initiator: every additional key exchange for `target` is done.
    fn followup_done(&mut self, ctx: &mut Ctx<'_>, target: FollowupTarget) {
        match target {
            FollowupTarget::Child(c) => {
                let ours = (c.ni.clone(), c.nr.clone(), c.inbound_spi);
                let old = c.replaces;
                self.install_child(ctx, *c);
                if let Some(old) = old {
                    self.after_our_child_rekey(ctx, old, ours);
                }
            }
            FollowupTarget::Ike(r) => self.finish_ike_rekey(ctx, r.rekeyed()),
        }
    }

    /// Initiator: send the IKE_FOLLOWUP_KE of the first of `rounds` for `target`, with `link`.
    pub(super) fn send_followup(
        &mut self,
        ctx: &mut Ctx<'_>,
        target: FollowupTarget,
        rounds: Vec<(usize, MlKem)>,
        link: Vec<u8>,
    ) {
        let Some(&(n, method)) = rounds.first() else {
            return self.followup_done(ctx, target);
        };
        let kem = match MlKemInitiator::new(method) {
            Ok(k) => k,
            Err(e) => {
                let reason = format!("additional key exchange {n}: {e}");
                return self.followup_failed(ctx, target, reason);
            }
        };
        let p = [
            Payload::Ke {
                group: method.transform_id(),
                data: kem.public_value().to_vec(),
            },
            Payload::Notify(Notify::new(nt::ADDITIONAL_KEY_EXCHANGE, link)),
        ];
        let req = FollowupRequest {
            target,
            rounds,
            kem,
        };
        self.request(
            ctx,
            exchange::IKE_FOLLOWUP_KE,
            &p,
            Request::Followup(Box::new(req)),
        );
    }

    /// Initiator: the answer to our IKE_FOLLOWUP_KE.
    pub(super) fn on_followup_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: Message,
        req: FollowupRequest,
    ) {
        let FollowupRequest {
            mut target,
            mut rounds,
            kem,
        } = req;
        let Some(&(n, method)) = rounds.first() else {
            return;
        };
        if let Some(e) = m.error_notify() {
            let reason = format!(
                "IKE_FOLLOWUP_KE (additional key exchange {n}, {method}) refused: {}",
                nt::name(e.ntype)
            );
            return self.followup_failed(ctx, target, reason);
        }
        let ct = m
            .ke()
            .filter(|(g, _)| *g == method.transform_id())
            .map(|(_, d)| d);
        let secret = match ct.map(|c| kem.decapsulate(c)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let reason = format!("IKE_FOLLOWUP_KE: bad KE payload: {e}");
                return self.followup_failed(ctx, target, reason);
            }
            None => {
                let reason = format!("IKE_FOLLOWUP_KE answer lacks the {method} KE payload");
                return self.followup_failed(ctx, target, reason);
            }
        };
        target.push_secret(secret);
        rounds.remove(0);
        if rounds.is_empty() {
            return self.followup_done(ctx, target);
        }
        match m.notify(nt::ADDITIONAL_KEY_EXCHANGE) {
            Some(l) => {
                let link = l.data.clone();
                self.send_followup(ctx, target, rounds, link);
            }
            None => self.followup_failed(
                ctx,
                target,
                "IKE_FOLLOWUP_KE answer lacks the next ADDITIONAL_KEY_EXCHANGE link".into(),
            ),
        }
    }

    /// Responder: keep a negotiated child or IKE rekey until its additional key exchanges are
    /// done; returns the link for the ADDITIONAL_KEY_EXCHANGE notify. One still waiting is
    /// dropped.
    pub(super) fn await_followup(
        &mut self,
        ctx: &mut Ctx<'_>,
        target: FollowupTarget,
        rounds: Vec<(usize, MlKem)>,
    ) -> Vec<u8> {
        if let Some(spi) = self.followup.take().and_then(|f| f.target.child_spi()) {
            ctx.spis.remove(&spi);
        }
        let link = ctx.rng.next_u64().to_be_bytes().to_vec();
        self.followup = Some(FollowupPending {
            link: link.clone(),
            target,
            rounds,
        });
        link
    }

    /// Responder: an IKE_FOLLOWUP_KE request.
    pub(super) fn on_followup_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
        let id = m.header.message_id;
        let answer = |this: &mut IkeSa, ctx: &mut Ctx<'_>, n: NotifyType| {
            this.respond(
                ctx,
                exchange::IKE_FOLLOWUP_KE,
                id,
                &[Payload::Notify(Notify::new(n, Vec::new()))],
            );
        };
        let link = m
            .notify(nt::ADDITIONAL_KEY_EXCHANGE)
            .map(|n| n.data.clone());
        let known = matches!((&self.followup, &link), (Some(f), Some(l)) if f.link == *l);
        if !known {
            self.log(ctx, "IKE_FOLLOWUP_KE with an unknown link: STATE_NOT_FOUND");
            return answer(self, ctx, nt::STATE_NOT_FOUND);
        }
        let Some(FollowupPending {
            target: mut pending,
            mut rounds,
            ..
        }) = self.followup.take()
        else {
            return;
        };
        let Some(&(n, method)) = rounds.first() else {
            return;
        };
        let made = match m.ke() {
            Some((g, d)) if g == method.transform_id() => method
                .encapsulate(d)
                .map_err(|e| format!("bad KE payload: {e}")),
            Some((g, _)) => Err(format!(
                "KE payload for method {g}, additional key exchange {n} is {method} (ID {})",
                method.transform_id()
            )),
            None => Err("no KE payload".into()),
        };
        let (ct, secret) = match made {
            Ok(x) => x,
            Err(e) => {
                if let Some(spi) = pending.child_spi() {
                    ctx.spis.remove(&spi);
                }
                self.log(ctx, format!("refused IKE_FOLLOWUP_KE: {e}"));
                return answer(self, ctx, nt::INVALID_SYNTAX);
            }
        };
        pending.push_secret(secret);
        rounds.remove(0);
        let mut p = vec![Payload::Ke {
            group: method.transform_id(),
            data: ct,
        }];
        if !rounds.is_empty() {
            let link = self.await_followup(ctx, pending, rounds);
            p.push(Payload::Notify(Notify::new(
                nt::ADDITIONAL_KEY_EXCHANGE,
                link,
            )));
            return self.respond(ctx, exchange::IKE_FOLLOWUP_KE, id, &p);
        }
        self.respond(ctx, exchange::IKE_FOLLOWUP_KE, id, &p);
        match pending {
            FollowupTarget::Child(c) => self.install_child(ctx, *c),
            FollowupTarget::Ike(r) => match self.successor(ctx, r.rekeyed()) {
                Ok(n) => ctx.spawned.push(n),
                Err(e) => self.log(ctx, format!("IKE rekey failed: {e}")),
            },
        }
    }
}
