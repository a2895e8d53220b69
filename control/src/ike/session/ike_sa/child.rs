//! CREATE_CHILD_SA for child SAs (RFC 7296 §1.3.1, §2.8): new and rekeyed children, both roles,
//! the rekey collision rule, and the installation of a negotiated pair.

use super::*;
use zeroize::Zeroizing;

/// A negotiated child SA ready to install: what [`IkeSa::install_child`] needs, from either
/// role (the responder's answer is this value, installed once the response is queued).
pub(super) struct NewChild {
    /// The child's configuration.
    pub(super) params: ChildParams,
    /// Our inbound SPI.
    pub(super) inbound_spi: u32,
    /// The peer's inbound SPI.
    pub(super) outbound_spi: u32,
    /// The negotiated ESP algorithms.
    pub(super) suite: EspSuite,
    /// The DH secret of a PFS exchange.
    pub(super) shared: Option<Zeroizing<Vec<u8>>>,
    /// The secrets of the additional key exchanges (IKE_FOLLOWUP_KE), in order.
    pub(super) addke: Vec<Zeroizing<Vec<u8>>>,
    /// The initiator's nonce of the exchange that made the child.
    pub(super) ni: Vec<u8>,
    /// The responder's nonce.
    pub(super) nr: Vec<u8>,
    /// The initiator's traffic selectors.
    pub(super) tsi: Vec<TrafficSelector>,
    /// The responder's traffic selectors.
    pub(super) tsr: Vec<TrafficSelector>,
    /// Tunnel or transport.
    pub(super) mode: ChildMode,
    /// The inbound SPI of the child this one rekeys.
    pub(super) replaces: Option<u32>,
    /// Whether we started the exchange.
    pub(super) we_initiated: bool,
}

/// A rekey of one of our children that the peer started while our own rekey of it was
/// outstanding (RFC 7296 §2.8.1): kept until ours completes, to decide which new pair goes.
pub(super) struct Collision {
    /// The inbound SPI of the child both sides rekeyed.
    pub(super) old: u32,
    /// The peer exchange's Ni.
    pub(super) their_ni: Vec<u8>,
    /// Our Nr in the peer's exchange.
    pub(super) their_nr: Vec<u8>,
}

/// Why we refuse a child the peer asked for; [`ChildError::notify`] is the notify we answer with.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChildError {
    /// The request has no SA payload.
    #[error("no SA")]
    NoSa,
    /// The request has no TSi payload.
    #[error("no TSi")]
    NoTsi,
    /// The request has no TSr payload.
    #[error("no TSr")]
    NoTsr,
    /// No configured child fits the traffic selectors.
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    /// No proposal of the named child is acceptable.
    #[error("no acceptable ESP proposal for child {0}")]
    NoProposal(String),
    /// Our key exchange could not be made.
    #[error("{0}")]
    KeyExchange(String),
    /// The peer's KE payload is not a valid public value.
    #[error("{0}")]
    BadKe(String),
}

impl ChildError {
    /// The notify type that tells the peer.
    pub(super) fn notify(&self) -> NotifyType {
        match self {
            ChildError::NoSa | ChildError::BadKe(_) => nt::INVALID_SYNTAX,
            ChildError::NoTsi | ChildError::NoTsr | ChildError::TsUnacceptable => {
                nt::TS_UNACCEPTABLE
            }
            ChildError::NoProposal(_) | ChildError::KeyExchange(_) => nt::NO_PROPOSAL_CHOSEN,
        }
    }
}

impl IkeSa {
    pub(super) fn pending_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        params: ChildParams,
        with_ke: bool,
        rekey_of: Option<u32>,
    ) -> Result<PendingChild, SetupError> {
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
            (true, Some(g)) => Some(KeyExchange::new(g, ctx.rng).map_err(SetupError::KeyExchange)?),
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

    /// Initiator side of a child negotiation: check the answer and install.
    pub(super) fn finish_child(
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
                ike_spis: this.spis(),
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
        let rounds = suite.rounds();
        let link = m
            .notify(nt::ADDITIONAL_KEY_EXCHANGE)
            .map(|n| n.data.clone());
        if !rounds.is_empty() && link.is_none() {
            return fail(
                self,
                ctx,
                "responder chose additional key exchanges without an ADDITIONAL_KEY_EXCHANGE \
                 notify"
                    .into(),
            );
        }
        let new = NewChild {
            params: child.params,
            inbound_spi: child.inbound_spi,
            outbound_spi: out_spi,
            suite,
            shared,
            addke: Vec::new(),
            ni,
            nr,
            tsi: tsi.clone(),
            tsr: tsr.clone(),
            mode,
            replaces: child.rekey_of,
            we_initiated: true,
        };
        match link {
            Some(link) if !rounds.is_empty() => {
                self.send_followup(ctx, FollowupTarget::Child(Box::new(new)), rounds, link)
            }
            _ => self.install_child(ctx, new),
        }
    }

    /// A child of ours failed after its inbound SPI was reserved: release it, let its
    /// predecessor be rekeyed again, and report.
    pub(super) fn our_child_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        inbound_spi: u32,
        rekey_of: Option<u32>,
        reason: String,
    ) {
        ctx.spis.remove(&inbound_spi);
        if let Some(old) = rekey_of {
            if let Some(c) = self.children.iter_mut().find(|c| c.inbound_spi == old) {
                c.rekeying = false;
            }
        }
        ctx.events.push_back(IkeEvent::ChildFailed {
            ike_spis: self.spis(),
            conn: self.conn.name.clone(),
            child: name.to_string(),
            reason,
        });
    }

    /// After our rekey of child `old` installed the new pair `ours` (Ni, Nr, inbound SPI):
    /// delete the old one, and ours too if a collision made it the redundant pair.
    pub(super) fn after_our_child_rekey(
        &mut self,
        ctx: &mut Ctx<'_>,
        old: u32,
        ours: (Vec<u8>, Vec<u8>, u32),
    ) {
        // Make-before-break: the new pair is installed; now delete the old one.
        let mut delete = vec![old];
        if let Some(pos) = self.collisions.iter().position(|c| c.old == old) {
            // Both sides rekeyed the child at once: the pair made with the lowest of the four
            // nonces is redundant and its creator deletes it (RFC 7296 §2.8.1). If that is
            // ours, delete it too; otherwise the peer deletes the one it made.
            let Collision {
                their_ni, their_nr, ..
            } = self.collisions.remove(pos);
            let lowest_theirs = their_ni.as_slice().min(their_nr.as_slice());
            let lowest_ours = ours.0.as_slice().min(ours.1.as_slice());
            if lowest_ours < lowest_theirs {
                let line = LogLine {
                    spi_in: Some(ours.2),
                    ..self.log_line(format!(
                        "rekey collision: deleting our redundant child SA {:08x}",
                        ours.2
                    ))
                };
                ctx.events.push_back(IkeEvent::Log(line));
                delete.push(ours.2);
            }
        }
        self.tasks.push_back(Task::DeleteChildren(delete));
    }

    /// Derive the keys of a negotiated child, keep it and report it ([`IkeEvent::ChildUp`]).
    pub(super) fn install_child(&mut self, ctx: &mut Ctx<'_>, new: NewChild) {
        let NewChild {
            params,
            inbound_spi,
            outbound_spi,
            suite,
            shared,
            addke,
            ni,
            nr,
            tsi,
            tsr,
            mode,
            replaces,
            we_initiated,
        } = new;
        let shared = shared.as_ref().map(|s| s.as_slice());
        let addke: Vec<&[u8]> = addke.iter().map(|s| s.as_slice()).collect();
        let (ni, nr) = (ni.as_slice(), nr.as_slice());
        let Some(k) = &self.keys else {
            return;
        };
        let (keys, ike) = (&k.ike, k.suite);
        let ck = match keys::derive_child_keys_addke(
            ike.prf,
            &keys.sk_d,
            shared,
            ni,
            nr,
            &addke,
            suite.encr,
            suite.integ,
        ) {
            Ok(k) => k,
            Err(e) => return self.log(ctx, format!("child key derivation failed: {e}")),
        };
        let (inbound_key, inbound_integ_key, outbound_key, outbound_integ_key) = match we_initiated
        {
            true => (ck.encr_r, ck.integ_r, ck.encr_i, ck.integ_i),
            false => (ck.encr_i, ck.integ_i, ck.encr_r, ck.integ_r),
        };
        let (local_ts, remote_ts) = match we_initiated {
            true => (tsi, tsr),
            false => (tsr, tsi),
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
                ike_spis: self.spis(),
                conn: self.conn.name.clone(),
                child: params.name.clone(),
                inbound_spi,
                outbound_spi,
                suite,
                inbound_key,
                inbound_integ_key,
                outbound_key,
                outbound_integ_key,
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

    /// Responder side of a child negotiation (IKE_AUTH or CREATE_CHILD_SA): choose the child
    /// config, proposal and narrowed selectors. Returns the answer's payloads and the child to
    /// install once the response is queued.
    pub(super) fn answer_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: &Message,
        ke: Option<Option<(DhGroup, Vec<u8>)>>,
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<u32>,
    ) -> Result<(Vec<Payload>, NewChild), ChildError> {
        let sa = m
            .find(|p| {
                if let Payload::Sa(s) = p {
                    Some(s)
                } else {
                    None
                }
            })
            .ok_or(ChildError::NoSa)?;
        let tsi = m
            .find(|p| {
                if let Payload::TsI(t) = p {
                    Some(t)
                } else {
                    None
                }
            })
            .ok_or(ChildError::NoTsi)?;
        let tsr = m
            .find(|p| {
                if let Payload::TsR(t) = p {
                    Some(t)
                } else {
                    None
                }
            })
            .ok_or(ChildError::NoTsr)?;
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
        let (params, local_ts, remote_ts) = ts_ok.ok_or(ChildError::TsUnacceptable)?;
        let ke_group = ke.as_ref().map(|k| k.as_ref().map(|(g, _)| *g));
        let (num, peer_spi, suite) = proposal::choose_esp(&params.proposals, sa, ke_group)
            .ok_or_else(|| ChildError::NoProposal(params.name.clone()))?;
        let mut p = Vec::new();
        let mut shared = None;
        let mut ke_payload = None;
        if let (Some(g), Some(Some((_, kedata)))) = (suite.dh, &ke) {
            let k =
                KeyExchange::new(g, ctx.rng).map_err(|e| ChildError::KeyExchange(e.to_string()))?;
            shared = Some(
                k.shared_secret(kedata)
                    .map_err(|e| ChildError::BadKe(e.to_string()))?,
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
            sa.iter().find(|x| x.num == num),
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
        let install = NewChild {
            params,
            inbound_spi,
            outbound_spi: peer_spi,
            suite,
            shared,
            addke: Vec::new(),
            ni,
            nr,
            tsi: remote_ts,
            tsr: local_ts,
            mode,
            replaces: rekey_of,
            we_initiated: false,
        };
        Ok((p, install))
    }

    pub(super) fn on_create_child_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
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
            Ok((mut p, install)) => {
                let rounds = install.suite.rounds();
                if rounds.is_empty() {
                    self.respond(ctx, exchange::CREATE_CHILD_SA, id, &p);
                    self.install_child(ctx, install);
                } else {
                    let link =
                        self.await_followup(ctx, FollowupTarget::Child(Box::new(install)), rounds);
                    p.push(Payload::Notify(Notify::new(
                        nt::ADDITIONAL_KEY_EXCHANGE,
                        link,
                    )));
                    self.respond(ctx, exchange::CREATE_CHILD_SA, id, &p);
                }
                if let Some(old) = rekey_of {
                    // A rekey collision (RFC 7296 §2.8.1): our own rekey of this child is under
                    // way. Remember the peer's nonces to decide, when ours completes, which of
                    // the two new pairs is redundant; a rekey of ours still queued is dropped.
                    let ours_outstanding = matches!(&self.window.outstanding, Some(Outstanding { kind: Request::CreateChild(pc), .. }) if pc.rekey_of == Some(old));
                    if ours_outstanding {
                        self.collisions.push(Collision {
                            old,
                            their_ni: ni.clone(),
                            their_nr: nr.clone(),
                        });
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
            Err(err) => {
                let (n, reason) = (err.notify(), err.to_string());
                // A KE of a group the chosen proposal does not use: say which one we want.
                let payload = if n == nt::NO_PROPOSAL_CHOSEN && matches!(ke, Some(Some(_))) {
                    let sent = match &ke {
                        Some(Some((g, _))) => Some(*g),
                        _ => None,
                    };
                    // Not the group they sent: asking for it again would loop (the proposals,
                    // such as their additional key exchanges, are what failed).
                    let want = self
                        .conn
                        .children
                        .iter()
                        .flat_map(|c| c.proposals.iter())
                        .find_map(|p| p.dh.first().copied())
                        .filter(|w| Some(*w) != sent);
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

    pub(super) fn on_create_child_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: Message,
        child: PendingChild,
    ) {
        if let Some(n) = m.notify(nt::INVALID_KE_PAYLOAD) {
            let g = n
                .data
                .get(..2)
                .map(|d| u16::from_be_bytes([d[0], d[1]]))
                .and_then(DhGroup::from_transform);
            let sent = child.ke.as_ref().map(KeyExchange::group);
            if let Some(g) = g.filter(|g| {
                Some(*g) != sent && child.params.proposals.iter().any(|p| p.dh.contains(g))
            }) {
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
                    self.after_our_child_rekey(ctx, old, ours);
                }
            }
            None => {
                let reason = m.error_notify().map_or("answer without nonce".into(), |e| {
                    format!("refused: {}", nt::name(e.ntype))
                });
                ctx.spis.remove(&child.inbound_spi);
                ctx.events.push_back(IkeEvent::ChildFailed {
                    ike_spis: self.spis(),
                    conn: self.conn.name.clone(),
                    child: child.params.name.clone(),
                    reason,
                });
            }
        }
    }

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
        let Some(params) = self.conn.child(&c.name).cloned() else {
            // No longer configured (a reload removed it): nothing to rekey it with.
            return false;
        };
        c.rekeying = true;
        self.tasks.push_back(Task::Child {
            params,
            rekey_of: Some(inbound_spi),
        });
        self.next_task(ctx);
        true
    }
}
