//! The task queue: work waiting behind the outstanding request, started one at a time.

use super::*;

/// Work queued behind the outstanding request (window of one).
pub(super) enum Task {
    Child {
        params: ChildParams,
        rekey_of: Option<u32>,
    },
    DeleteChildren(Vec<u32>),
    DeleteIke,
    Liveness,
    RekeyIke,
}

impl IkeSa {
    /// Start the next queued task unless a request is outstanding or the SA is not established.
    pub(super) fn next_task(&mut self, ctx: &mut Ctx<'_>) {
        if self.window.outstanding.is_some() || self.state != State::Established {
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
                            ike_spis: self.spis(),
                            conn: self.conn.name.clone(),
                            child: name,
                            reason: e.to_string(),
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
                let group = self.suite().map(|s| s.dh).or_else(|| {
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
}
