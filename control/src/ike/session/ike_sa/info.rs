//! INFORMATIONAL (RFC 7296 §1.4): deletes of children and of the IKE SA, from either side.

use super::*;

impl IkeSa {
    pub(super) fn on_informational(&mut self, ctx: &mut Ctx<'_>, m: Message) {
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

    pub(super) fn deleting_child(&self, inbound: u32) -> bool {
        matches!(&self.window.outstanding, Some(Outstanding { kind: Request::DeleteChildren(s), .. }) if s.contains(&inbound))
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
        if self.window.outstanding.is_some() {
            self.tasks.push_back(Task::DeleteIke);
        } else {
            self.tasks.push_front(Task::DeleteIke);
            self.next_task(ctx);
        }
    }
}
