//! IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): the additional key exchanges of a CREATE_CHILD_SA that
//! makes or rekeys a child SA with PFS. The CREATE_CHILD_SA response carries the responder's
//! ADDITIONAL_KEY_EXCHANGE link; each IKE_FOLLOWUP_KE request returns the link with the
//! initiator's ML-KEM encapsulation key, each response the ciphertext (and the next link while
//! rounds remain). The child is installed after the last round, its KEYMAT = prf+(SK_d, SK(0) |
//! Ni | Nr | SK(1) | ... | SK(n)).

use super::child::NewChild;
use super::*;
use crate::ike::crypto::mlkem::{MlKem, MlKemInitiator};

/// Our outstanding IKE_FOLLOWUP_KE request.
pub(super) struct FollowupRequest {
    /// The negotiated child, its secrets so far.
    pub(super) child: NewChild,
    /// The rounds still to run, the current one first: (ADDKE number, method).
    pub(super) rounds: Vec<(usize, MlKem)>,
    /// Our key pair of the current round.
    pub(super) kem: MlKemInitiator,
}

/// A child the peer negotiated whose additional key exchanges are still to come.
pub(super) struct FollowupPending {
    /// The link the next IKE_FOLLOWUP_KE must carry.
    pub(super) link: Vec<u8>,
    /// The child, its secrets so far.
    pub(super) child: NewChild,
    /// The rounds still to run, the next one first.
    pub(super) rounds: Vec<(usize, MlKem)>,
}

impl IkeSa {
    /// Initiator: send the IKE_FOLLOWUP_KE of the first of `rounds` for `child`, with `link`.
    pub(super) fn send_followup(
        &mut self,
        ctx: &mut Ctx<'_>,
        child: NewChild,
        rounds: Vec<(usize, MlKem)>,
        link: Vec<u8>,
    ) {
        let Some(&(n, method)) = rounds.first() else {
            return self.install_child(ctx, child);
        };
        let kem = match MlKemInitiator::new(method) {
            Ok(k) => k,
            Err(e) => {
                let reason = format!("additional key exchange {n}: {e}");
                let (name, spi, old) =
                    (child.params.name.clone(), child.inbound_spi, child.replaces);
                return self.our_child_failed(ctx, &name, spi, old, reason);
            }
        };
        let p = [
            Payload::Ke {
                group: method.transform_id(),
                data: kem.public_value().to_vec(),
            },
            Payload::Notify(Notify::new(nt::ADDITIONAL_KEY_EXCHANGE, link)),
        ];
        let req = FollowupRequest { child, rounds, kem };
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
            mut child,
            mut rounds,
            kem,
        } = req;
        let (name, spi, old) = (child.params.name.clone(), child.inbound_spi, child.replaces);
        let Some(&(n, method)) = rounds.first() else {
            return;
        };
        if let Some(e) = m.error_notify() {
            let reason = format!(
                "IKE_FOLLOWUP_KE (additional key exchange {n}, {method}) refused: {}",
                nt::name(e.ntype)
            );
            return self.our_child_failed(ctx, &name, spi, old, reason);
        }
        let ct = m
            .ke()
            .filter(|(g, _)| *g == method.transform_id())
            .map(|(_, d)| d);
        let secret = match ct.map(|c| kem.decapsulate(c)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let reason = format!("IKE_FOLLOWUP_KE: bad KE payload: {e}");
                return self.our_child_failed(ctx, &name, spi, old, reason);
            }
            None => {
                let reason = format!("IKE_FOLLOWUP_KE answer lacks the {method} KE payload");
                return self.our_child_failed(ctx, &name, spi, old, reason);
            }
        };
        child.addke.push(secret);
        rounds.remove(0);
        if rounds.is_empty() {
            let ours = (child.ni.clone(), child.nr.clone(), child.inbound_spi);
            self.install_child(ctx, child);
            if let Some(old) = old {
                self.after_our_child_rekey(ctx, old, ours);
            }
            return;
        }
        match m.notify(nt::ADDITIONAL_KEY_EXCHANGE) {
            Some(l) => {
                let link = l.data.clone();
                self.send_followup(ctx, child, rounds, link);
            }
            None => self.our_child_failed(
                ctx,
                &name,
                spi,
                old,
                "IKE_FOLLOWUP_KE answer lacks the next ADDITIONAL_KEY_EXCHANGE link".into(),
            ),
        }
    }

    /// Responder: keep a negotiated child until its additional key exchanges are done; returns
    /// the link for the ADDITIONAL_KEY_EXCHANGE notify. A child still waiting is dropped.
    pub(super) fn await_followup(
        &mut self,
        ctx: &mut Ctx<'_>,
        child: NewChild,
        rounds: Vec<(usize, MlKem)>,
    ) -> Vec<u8> {
        if let Some(old) = self.followup.take() {
            ctx.spis.remove(&old.child.inbound_spi);
        }
        let link = ctx.rng.next_u64().to_be_bytes().to_vec();
        self.followup = Some(FollowupPending {
            link: link.clone(),
            child,
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
            child: mut pending,
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
                ctx.spis.remove(&pending.inbound_spi);
                self.log(
                    ctx,
                    format!(
                        "refused IKE_FOLLOWUP_KE of child {}: {e}",
                        pending.params.name
                    ),
                );
                return answer(self, ctx, nt::INVALID_SYNTAX);
            }
        };
        pending.addke.push(secret);
        rounds.remove(0);
        let mut p = vec![Payload::Ke {
            group: method.transform_id(),
            data: ct,
        }];
        if rounds.is_empty() {
            self.respond(ctx, exchange::IKE_FOLLOWUP_KE, id, &p);
            self.install_child(ctx, pending);
        } else {
            let link = self.await_followup(ctx, pending, rounds);
            p.push(Payload::Notify(Notify::new(
                nt::ADDITIONAL_KEY_EXCHANGE,
                link,
            )));
            self.respond(ctx, exchange::IKE_FOLLOWUP_KE, id, &p);
        }
    }
}
