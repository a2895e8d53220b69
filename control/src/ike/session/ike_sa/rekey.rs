//! Rekeying the IKE SA (RFC 7296 §1.3.2, §2.18): the successor SA takes over the children.

use super::*;
use zeroize::Zeroizing;

/// Where a rekey of the IKE SA stands (was two flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IkeRekey {
    /// None under way: the rekey timer may start one.
    Idle,
    /// Ours is queued or outstanding.
    Running,
    /// Done: a successor took the children; this SA only waits to be deleted.
    Superseded,
}

/// What an IKE rekey exchange yields, from which the successor SA is made.
pub(super) struct Rekeyed<'a> {
    /// Our role in the rekey exchange (and so in the new SA).
    pub(super) role: Role,
    /// The new SA's initiator SPI.
    pub(super) spi_i: u64,
    /// The new SA's responder SPI.
    pub(super) spi_r: u64,
    /// The negotiated algorithms.
    pub(super) suite: IkeSuite,
    /// The rekey exchange's Ni.
    pub(super) ni: Vec<u8>,
    /// Its Nr.
    pub(super) nr: Vec<u8>,
    /// Its DH shared secret.
    pub(super) shared: &'a [u8],
    /// The secrets of its additional key exchanges (IKE_FOLLOWUP_KE), in order.
    pub(super) addke: Vec<&'a [u8]>,
}

/// An IKE rekey whose additional key exchanges (IKE_FOLLOWUP_KE, RFC 9370 §2.2.4) are still
/// to run: what [`Rekeyed`] will be made of.
pub(super) struct IkeRekeyPending {
    /// Our role in the rekey exchange.
    pub(super) role: Role,
    /// The new SA's initiator SPI.
    pub(super) spi_i: u64,
    /// The new SA's responder SPI.
    pub(super) spi_r: u64,
    /// The negotiated algorithms.
    pub(super) suite: IkeSuite,
    /// The rekey exchange's Ni.
    pub(super) ni: Vec<u8>,
    /// Its Nr.
    pub(super) nr: Vec<u8>,
    /// Its DH shared secret, SK(0).
    pub(super) shared: Zeroizing<Vec<u8>>,
    /// The secrets of the additional key exchanges done so far.
    pub(super) addke: Vec<Zeroizing<Vec<u8>>>,
}

impl IkeRekeyPending {
    /// The exchange's results, once every additional key exchange is done.
    pub(super) fn rekeyed(&self) -> Rekeyed<'_> {
        Rekeyed {
            role: self.role,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            suite: self.suite,
            ni: self.ni.clone(),
            nr: self.nr.clone(),
            shared: &self.shared,
            addke: self.addke.iter().map(|s| s.as_slice()).collect(),
        }
    }
}

impl IkeSa {
    /// Rekey this IKE SA (CREATE_CHILD_SA with an IKE proposal, RFC 7296 §2.18): the new SA
    /// takes over the children, then the old one is deleted.
    pub fn rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.state != State::Established || self.ike_rekey != IkeRekey::Idle {
            return false;
        }
        self.ike_rekey = IkeRekey::Running;
        self.tasks.push_back(Task::RekeyIke);
        self.next_task(ctx);
        true
    }

    /// The IKE SA that replaces this one, built from a rekey exchange's results.
    pub(super) fn successor(
        &mut self,
        ctx: &mut Ctx<'_>,
        rekeyed: Rekeyed<'_>,
    ) -> Result<IkeSa, SetupError> {
        let Rekeyed {
            role,
            spi_i,
            spi_r,
            suite,
            ni,
            nr,
            shared,
            addke,
        } = rekeyed;
        let old_keys = self.keys.as_ref().ok_or(SetupError::NoKeys)?;
        let (old, sk_d) = (old_keys.suite, &old_keys.ike.sk_d);
        let k = keys::derive_rekeyed_ike_keys_addke(
            old.prf,
            sk_d,
            suite.prf,
            (suite.encr, suite.integ),
            shared,
            &ni,
            &nr,
            &addke,
            spi_i,
            spi_r,
        )
        .map_err(SetupError::Keys)?;
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
        n.ni = ni;
        n.nr = nr;
        n.keys = Some(Keys::new(role, suite, k)?);
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
        self.ike_rekey = IkeRekey::Superseded;
        ctx.events.push_back(IkeEvent::IkeRekeyed {
            old: self.local_spi(),
            new: n.local_spi(),
            new_spis: n.spis(),
            conn: self.conn.name.clone(),
        });
        Ok(n)
    }

    pub(super) fn on_rekey_ike_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
        let id = m.header.message_id;
        let refuse = |this: &mut IkeSa, ctx: &mut Ctx<'_>, n: Notify| {
            this.respond(ctx, exchange::CREATE_CHILD_SA, id, &[Payload::Notify(n)]);
        };
        if self.ike_rekey != IkeRekey::Idle {
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
        let mut p = vec![
            Payload::Sa(vec![proposal::ike_answer(
                num,
                suite,
                &our_spi.to_be_bytes(),
                sa.iter().find(|p| p.num == num),
            )]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: suite.dh.transform_id(),
                data: ke_state.public_value().to_vec(),
            },
        ];
        let rounds = suite.rounds();
        if !rounds.is_empty() {
            // The successor is made once the IKE_FOLLOWUP_KE exchanges are done.
            let pending = IkeRekeyPending {
                role: Role::Responder,
                spi_i: peer_spi,
                spi_r: our_spi,
                suite,
                ni,
                nr,
                shared,
                addke: Vec::new(),
            };
            let link = self.await_followup(ctx, FollowupTarget::Ike(Box::new(pending)), rounds);
            p.push(Payload::Notify(Notify::new(
                nt::ADDITIONAL_KEY_EXCHANGE,
                link,
            )));
            return self.respond(ctx, exchange::CREATE_CHILD_SA, id, &p);
        }
        let rekeyed = Rekeyed {
            role: Role::Responder,
            spi_i: peer_spi,
            spi_r: our_spi,
            suite,
            ni,
            nr,
            shared: &shared,
            addke: Vec::new(),
        };
        match self.successor(ctx, rekeyed) {
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

    pub(super) fn on_rekey_ike_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: Message,
        ke: KeyExchange,
        ni: Vec<u8>,
        spi: u64,
        offered: Vec<Proposal>,
    ) {
        let retry_later = |this: &mut IkeSa, ctx: &mut Ctx<'_>, why: String| {
            this.rekey_retry_later(ctx, why);
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
        let rounds = suite.rounds();
        if !rounds.is_empty() {
            let Some(link) = m
                .notify(nt::ADDITIONAL_KEY_EXCHANGE)
                .map(|n| n.data.clone())
            else {
                return retry_later(
                    self,
                    ctx,
                    "additional key exchanges without an ADDITIONAL_KEY_EXCHANGE notify".into(),
                );
            };
            let pending = IkeRekeyPending {
                role: Role::Initiator,
                spi_i: spi,
                spi_r: peer_spi,
                suite,
                ni,
                nr,
                shared,
                addke: Vec::new(),
            };
            return self.send_followup(ctx, FollowupTarget::Ike(Box::new(pending)), rounds, link);
        }
        let rekeyed = Rekeyed {
            role: Role::Initiator,
            spi_i: spi,
            spi_r: peer_spi,
            suite,
            ni,
            nr,
            shared: &shared,
            addke: Vec::new(),
        };
        self.finish_ike_rekey(ctx, rekeyed);
    }

    /// Our IKE rekey is done: make the successor, hand it over, delete this SA.
    pub(super) fn finish_ike_rekey(&mut self, ctx: &mut Ctx<'_>, rekeyed: Rekeyed<'_>) {
        match self.successor(ctx, rekeyed) {
            Ok(n) => {
                ctx.spawned.push(n);
                // The old IKE SA has handed over its children: delete it.
                self.tasks.push_front(Task::DeleteIke);
            }
            Err(e) => self.rekey_retry_later(ctx, e.to_string()),
        }
    }

    /// Our IKE rekey failed: try again in 10 to 15 s.
    pub(super) fn rekey_retry_later(&mut self, ctx: &mut Ctx<'_>, why: String) {
        if self.ike_rekey == IkeRekey::Running {
            self.ike_rekey = IkeRekey::Idle;
        }
        self.rekey_at = Some(
            ctx.now + Duration::from_secs(10) + Duration::from_millis(ctx.rng.next_u64() % 5000),
        );
        self.log(ctx, format!("IKE rekey not done ({why}); retrying later"));
    }
}
