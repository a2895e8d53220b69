//! IKE_AUTH (RFC 7296 §1.2): our AUTH payload and the check of the peer's, for both roles, with
//! the first child SA riding along.

use super::*;

/// Why the peer's IKE_AUTH does not authenticate it (the reason an IKE SA dies with).
#[derive(Debug, thiserror::Error)]
pub(super) enum AuthError {
    /// The message has no AUTH payload.
    #[error("no AUTH payload")]
    NoAuth,
    /// The peer's identity is not the configured one.
    #[error("peer identity {id} is not the configured {want}")]
    Identity {
        /// What the peer claimed.
        id: Identity,
        /// What the connection wants.
        want: Identity,
    },
    /// IKE_SA_INIT did not yield keys.
    #[error("no keys")]
    NoKeys,
    /// A PSK was configured but the peer used this method.
    #[error("peer used auth method {0}, PSK expected")]
    Method(u8),
    /// The PSK AUTH value is wrong.
    #[error("PSK authentication failed")]
    Psk,
    /// Public-key authentication without a certificate.
    #[error("peer sent no certificate")]
    NoCertificate,
    /// The certificate chain does not lead to a trusted CA.
    #[error("certificate not trusted: {0}")]
    Untrusted(String),
    /// The certificate is not the claimed identity's.
    #[error("certificate does not match identity {0}")]
    CertificateIdentity(Identity),
    /// The signature does not verify.
    #[error("signature check failed: {0}")]
    Signature(String),
}

impl IkeSa {
    pub(super) fn local_id_payload(&self) -> (u8, Vec<u8>) {
        (self.conn.local_id.id_type(), self.conn.local_id.data())
    }

    pub(super) fn our_auth(&self, octets: &[u8]) -> Result<(u8, Vec<u8>), String> {
        let prf = self.keys.as_ref().ok_or("no keys")?.suite.prf;
        match &self.conn.local_auth {
            LocalCredential::Psk(k) => {
                Ok((auth::method::SHARED_KEY_MIC, auth::psk_auth(prf, k, octets)))
            }
            LocalCredential::Pubkey { key, .. } => key
                .sign(octets, &self.peer_hashes)
                .map_err(|e| e.to_string()),
        }
    }

    pub(super) fn cert_payloads(&self) -> Vec<Payload> {
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

    pub(super) fn send_auth(&mut self, ctx: &mut Ctx<'_>) {
        let (id_type, id_data) = self.local_id_payload();
        let Some(k) = &self.keys else { return };
        let (keys, suite) = (&k.ike, k.suite);
        let mut octets = auth::signed_octets(
            suite.prf,
            &self.init_req,
            &self.nr,
            &keys.sk_pi,
            id_type,
            &id_data,
        );
        octets.extend(self.int_auth(self.window.next_id));
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
                Err(e) => return self.die(ctx, e.to_string()),
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
        let kind = Request::Auth(child);
        self.request(ctx, exchange::IKE_AUTH, &p, kind);
    }

    /// Check the peer's AUTH payload over `octets` against the configured credential.
    pub(super) fn verify_peer(
        &self,
        ctx: &Ctx<'_>,
        conn: &ConnectionParams,
        m: &Message,
        id: &Identity,
        octets: &[u8],
    ) -> Result<(), AuthError> {
        let (method, data) = m
            .find(|p| {
                if let Payload::Auth { method, data } = p {
                    Some((*method, data))
                } else {
                    None
                }
            })
            .ok_or(AuthError::NoAuth)?;
        if let Some(want) = &conn.remote_id {
            if !want.matches(id) {
                return Err(AuthError::Identity {
                    id: id.clone(),
                    want: want.clone(),
                });
            }
        }
        let prf = self.keys.as_ref().ok_or(AuthError::NoKeys)?.suite.prf;
        match &conn.remote_auth {
            RemoteCredential::Psk(k) => {
                if method != auth::method::SHARED_KEY_MIC {
                    return Err(AuthError::Method(method));
                }
                let expect = auth::psk_auth(prf, k, octets);
                constant_time::verify_slices_are_equal(&expect, data).map_err(|_| AuthError::Psk)
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
                let (ee, rest) = certs.split_first().ok_or(AuthError::NoCertificate)?;
                trust
                    .validate(ee, rest, ctx.unix_time)
                    .map_err(|e| AuthError::Untrusted(e.to_string()))?;
                if !ee.matches_identity(id) {
                    return Err(AuthError::CertificateIdentity(id.clone()));
                }
                auth::verify(method, data, octets, ee)
                    .map_err(|e| AuthError::Signature(e.to_string()))
            }
        }
    }

    pub(super) fn on_auth_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: Message,
        child: Option<PendingChild>,
    ) {
        let idr = m.id_r().map(|(t, d)| (t, d.clone()));
        let has_auth = m.payloads.iter().any(|p| matches!(p, Payload::Auth { .. }));
        if !has_auth {
            let reason = m
                .error_notify()
                .map_or("IKE_AUTH response without AUTH".to_string(), |e| {
                    format!("IKE_AUTH refused: {}", nt::name(e.ntype))
                });
            if let Some(c) = &child {
                ctx.spis.remove(&c.inbound_spi);
            }
            return self.die(ctx, reason);
        }
        let Some((id_type, id_data)) = idr else {
            return self.die(ctx, "IKE_AUTH response without IDr".into());
        };
        let id = match Identity::from_payload(id_type, &id_data) {
            Ok(i) => i,
            Err(e) => return self.die(ctx, format!("bad IDr: {e}")),
        };
        let Some(k) = &self.keys else {
            return;
        };
        let (keys, suite) = (&k.ike, k.suite);
        let mut octets = auth::signed_octets(
            suite.prf,
            &self.init_resp,
            &self.ni,
            &keys.sk_pr,
            id_type,
            &id_data,
        );
        octets.extend(self.int_auth(m.header.message_id));
        let conn = self.conn.clone();
        if let Err(e) = self.verify_peer(ctx, &conn, &m, &id, &octets) {
            if let Some(c) = &child {
                ctx.spis.remove(&c.inbound_spi);
            }
            return self.die(ctx, format!("authentication of the peer failed: {e}"));
        }
        self.remote_id = Some(id.clone());
        self.initial_contact = m.notify(nt::INITIAL_CONTACT).is_some();
        self.established(ctx);
        if let Some(child) = child {
            self.finish_child(ctx, &m, child, None);
        }
    }

    pub(super) fn established(&mut self, ctx: &mut Ctx<'_>) {
        self.state = State::Established;
        self.established_at = Some(ctx.now);
        self.schedule(ctx);
        let Some(suite) = self.suite() else { return };
        ctx.events.push_back(IkeEvent::IkeUp {
            ike_sa: self.local_spi(),
            ike_spis: self.spis(),
            conn: self.conn.name.clone(),
            remote_id: self
                .remote_id
                .clone()
                .unwrap_or(Identity::KeyId(Vec::new())),
            suite,
        });
    }

    pub(super) fn on_auth_request(&mut self, ctx: &mut Ctx<'_>, m: Message) {
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
        if let Some((n, method)) = self.next_round() {
            self.respond(
                ctx,
                exchange::IKE_AUTH,
                id,
                &[Payload::Notify(Notify::new(nt::INVALID_SYNTAX, Vec::new()))],
            );
            return self.die(
                ctx,
                format!(
                    "IKE_AUTH before additional key exchange {n} ({method}) was done in \
                     IKE_INTERMEDIATE (RFC 9370)"
                ),
            );
        }
        let Some((id_type, id_data)) = idi else {
            return auth_failed(self, ctx, "IKE_AUTH without IDi".into());
        };
        let peer = match Identity::from_payload(id_type, &id_data) {
            Ok(p) => p,
            Err(e) => return auth_failed(self, ctx, format!("bad IDi: {e}")),
        };
        let wanted_local = idr.and_then(|(t, d)| Identity::from_payload(t, &d).ok());
        let Some(k) = &self.keys else {
            return;
        };
        let (keys, suite) = (&k.ike, k.suite);
        let mut octets = auth::signed_octets(
            suite.prf,
            &self.init_req,
            &self.nr,
            &keys.sk_pi,
            id_type,
            &id_data,
        );
        octets.extend(self.int_auth(id));
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
                Err(e) => last_err = e.to_string(),
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
        let Some(keys) = self.keys.as_ref().map(|k| &k.ike) else {
            return;
        };
        let mut my_octets =
            auth::signed_octets(suite.prf, &self.init_resp, &self.ni, &keys.sk_pr, lt, &ld);
        my_octets.extend(self.int_auth(id));
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
                Err(err) => {
                    let (n, reason) = (err.notify(), err.to_string());
                    p.push(Payload::Notify(Notify::new(n, Vec::new())));
                    ctx.events.push_back(IkeEvent::ChildFailed {
                        ike_spis: self.spis(),
                        conn: self.conn.name.clone(),
                        child: String::new(),
                        reason,
                    });
                }
            }
        }
        self.respond(ctx, exchange::IKE_AUTH, id, &p);
        for c in child_events {
            self.install_child(ctx, c);
        }
    }
}
