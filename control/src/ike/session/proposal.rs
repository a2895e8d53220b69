//! Building SA payloads from proposal specs, choosing among a peer's proposals (responder), and
//! checking a responder's choice (initiator), per RFC 7296 §2.7 and §3.3.
//!
//! A proposal never mixes an AEAD with an integrity algorithm (RFC 7296 §3.3): a spec with both
//! AEAD and AES-CBC ciphers is offered as two proposals, the AEADs without an integrity
//! transform and AES-CBC with its integrity algorithms. ESP offers and choices keep to the
//! combinations the dataplane implements ([`esp_suite_name`]).

use super::params::{EspProposalSpec, IkeProposalSpec};
use crate::ike::algorithms::{esp_suite_name, DhGroup, EncrAlg, IntegAlg, PrfAlg};
use crate::ike::crypto::mlkem::{addke_name, AddKeChoice, AddKeSlots, MlKem};
use crate::ike::message::consts::{protocol, transform_type as tt};
use crate::ike::message::{Proposal, Transform};

/// The algorithms agreed for an IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeSuite {
    /// Encryption.
    pub encr: EncrAlg,
    /// Integrity (AES-CBC only; None with an AEAD).
    pub integ: Option<IntegAlg>,
    /// PRF.
    pub prf: PrfAlg,
    /// Key exchange method.
    pub dh: DhGroup,
    /// Additional key exchanges (RFC 9370), ADDKE1 to ADDKE7; all None for a classical suite.
    pub addke: AddKeChoice,
}

/// The algorithms agreed for a child SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspSuite {
    /// Encryption.
    pub encr: EncrAlg,
    /// Integrity (AES-CBC only; None with an AEAD).
    pub integ: Option<IntegAlg>,
    /// PFS group, if a key exchange is part of this exchange.
    pub dh: Option<DhGroup>,
    /// Additional key exchanges after the PFS group (RFC 9370, IKE_FOLLOWUP_KE), ADDKE1 to
    /// ADDKE7; all None without.
    pub addke: AddKeChoice,
    /// Extended sequence numbers.
    pub esn: bool,
}

impl EspSuite {
    /// The dataplane's suite name (`aes128gcm16`, `aes256cbc-sha512`, `chacha20poly1305`).
    /// Negotiation only ever agrees on suites the dataplane has, so this is always Some for a
    /// negotiated suite.
    pub fn dataplane_name(&self) -> Option<&'static str> {
        esp_suite_name(self.encr, self.integ)
    }

    /// The suite as a proposal keyword string (`aes256-sha512`, `aes128gcm16`).
    pub fn name(&self) -> String {
        match self.integ {
            Some(i) => format!("{}-{}", self.encr.name(), i.name()),
            None => self.encr.name().to_string(),
        }
    }

    /// The additional key exchanges to run in IKE_FOLLOWUP_KE, in order: (ADDKE number 1 to
    /// 7, method).
    pub fn rounds(&self) -> Vec<(usize, MlKem)> {
        self.addke
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.map(|m| (i + 1, m)))
            .collect()
    }
}

impl IkeSuite {
    /// The suite as a proposal keyword string (`aes128gcm16-prfsha256-x25519`,
    /// `aes256-sha256-prfsha256-modp2048`).
    pub fn name(&self) -> String {
        let classical = self.classical_name();
        let add = addke_name(&self.addke);
        if add.is_empty() {
            classical
        } else {
            format!("{classical}-{add}")
        }
    }

    /// The additional key exchanges to run in IKE_INTERMEDIATE, in order: (ADDKE number 1 to
    /// 7, method).
    pub fn rounds(&self) -> Vec<(usize, MlKem)> {
        self.addke
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.map(|m| (i + 1, m)))
            .collect()
    }

    fn classical_name(&self) -> String {
        match self.integ {
            Some(i) => format!(
                "{}-{}-{}-{}",
                self.encr.name(),
                i.name(),
                self.prf.name(),
                self.dh.name()
            ),
            None => format!(
                "{}-{}-{}",
                self.encr.name(),
                self.prf.name(),
                self.dh.name()
            ),
        }
    }
}

fn encr_transform(e: EncrAlg) -> Transform {
    Transform {
        ttype: tt::ENCR,
        id: e.transform_id(),
        key_len: e.key_attr(),
    }
}

fn plain(ttype: u8, id: u16) -> Transform {
    Transform {
        ttype,
        id,
        key_len: None,
    }
}

/// `dh` with `first` moved to the front, if it is there.
fn dh_first(dh: &[DhGroup], first: Option<DhGroup>) -> Vec<DhGroup> {
    let mut dh = dh.to_vec();
    if let Some(g) = first {
        if let Some(pos) = dh.iter().position(|d| *d == g) {
            dh.remove(pos);
            dh.insert(0, g);
        }
    }
    dh
}

/// The (cipher, integrity) groups a spec is offered as: the AEADs together without integrity,
/// then the AES-CBC ciphers with `integ_for` of each (one group per distinct integrity list).
fn cipher_groups(
    encr: &[EncrAlg],
    integ: &[IntegAlg],
    integ_for: impl Fn(EncrAlg, &[IntegAlg]) -> Vec<IntegAlg>,
) -> Vec<(Vec<EncrAlg>, Vec<IntegAlg>)> {
    let mut groups: Vec<(Vec<EncrAlg>, Vec<IntegAlg>)> = Vec::new();
    let aead: Vec<EncrAlg> = encr.iter().copied().filter(|e| e.is_aead()).collect();
    if !aead.is_empty() {
        groups.push((aead, Vec::new()));
    }
    for e in encr.iter().copied().filter(|e| !e.is_aead()) {
        let i = integ_for(e, integ);
        if i.is_empty() {
            continue;
        }
        match groups
            .iter_mut()
            .find(|(g, gi)| !g[0].is_aead() && *gi == i)
        {
            Some((g, _)) => g.push(e),
            None => groups.push((vec![e], i)),
        }
    }
    groups
}

/// The SA payload's proposals for IKE (`spi` empty in IKE_SA_INIT, 8 octets when rekeying).
/// `first_dh` moves a group to the front of every proposal that has it (after INVALID_KE).
pub fn ike_offer(
    specs: &[IkeProposalSpec],
    spi: &[u8],
    first_dh: Option<DhGroup>,
) -> Vec<Proposal> {
    let mut out = Vec::new();
    for s in specs {
        for (encr, integ) in cipher_groups(&s.encr, &s.integ, |_, i| i.to_vec()) {
            let mut t: Vec<Transform> = encr.iter().map(|e| encr_transform(*e)).collect();
            t.extend(integ.iter().map(|i| plain(tt::INTEG, i.transform_id())));
            t.extend(s.prf.iter().map(|p| plain(tt::PRF, p.transform_id())));
            let dh = dh_first(&s.dh, first_dh);
            t.extend(dh.iter().map(|d| plain(tt::KE, d.transform_id())));
            for (i, slot) in s.addke.iter().enumerate() {
                t.extend(
                    slot.iter()
                        .map(|m| plain(tt::addke(i + 1), m.map_or(0, MlKem::transform_id))),
                );
            }
            out.push(Proposal {
                num: u8::try_from(out.len() + 1).unwrap_or(u8::MAX),
                protocol: protocol::IKE,
                spi: spi.to_vec(),
                transforms: t,
            });
        }
    }
    out
}

/// The integrity algorithms of `integ` the dataplane pairs with the AES-CBC cipher `e`.
fn esp_integ_for(e: EncrAlg, integ: &[IntegAlg]) -> Vec<IntegAlg> {
    integ
        .iter()
        .copied()
        .filter(|i| esp_suite_name(e, Some(*i)).is_some())
        .collect()
}

/// The SA payload's proposals for ESP with our inbound `spi`. `with_ke` adds the PFS groups
/// (CREATE_CHILD_SA); IKE_AUTH children carry none. `first_dh` as for [`ike_offer`].
pub fn esp_offer(
    specs: &[EspProposalSpec],
    spi: u32,
    with_ke: bool,
    first_dh: Option<DhGroup>,
) -> Vec<Proposal> {
    let mut out = Vec::new();
    for s in specs {
        for (encr, integ) in cipher_groups(&s.encr, &s.integ, esp_integ_for) {
            let mut t: Vec<Transform> = encr.iter().map(|e| encr_transform(*e)).collect();
            t.extend(integ.iter().map(|i| plain(tt::INTEG, i.transform_id())));
            if with_ke {
                let dh = dh_first(&s.dh, first_dh);
                t.extend(dh.iter().map(|d| plain(tt::KE, d.transform_id())));
                for (i, slot) in s.addke.iter().enumerate() {
                    t.extend(
                        slot.iter()
                            .map(|m| plain(tt::addke(i + 1), m.map_or(0, MlKem::transform_id))),
                    );
                }
            }
            let esn: &[bool] = if s.esn.is_empty() { &[false] } else { &s.esn };
            t.extend(esn.iter().map(|e| plain(tt::ESN, u16::from(*e))));
            out.push(Proposal {
                num: u8::try_from(out.len() + 1).unwrap_or(u8::MAX),
                protocol: protocol::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms: t,
            });
        }
    }
    out
}

/// Our specs without additional key exchanges (for a peer that cannot run them, as one
/// without IKE_INTERMEDIATE), duplicates removed.
pub fn classical_only(specs: &[IkeProposalSpec]) -> Vec<IkeProposalSpec> {
    let mut out: Vec<IkeProposalSpec> = Vec::new();
    for s in specs {
        let c = IkeProposalSpec {
            addke: Default::default(),
            ..s.clone()
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The responder's choice of additional key exchanges in proposal `p` for our `spec`: for each
/// ADDKE type, the first of our methods they offer, where a type they do not offer counts as
/// NONE and a type we do not list accepts only NONE (RFC 9370 §2.2.1). None if some type has no
/// common value, or two rounds would use the same method.
fn choose_addke(slots: &AddKeSlots, p: &Proposal) -> Option<AddKeChoice> {
    let mut out: AddKeChoice = [None; 7];
    for (i, ours) in slots.iter().enumerate() {
        let t = tt::addke(i + 1);
        let mut theirs: Vec<u16> = their_ids(p, t).collect();
        if theirs.is_empty() {
            theirs.push(0);
        }
        let ours: &[Option<MlKem>] = if ours.is_empty() { &[None] } else { ours };
        let pick = ours
            .iter()
            .find(|m| theirs.contains(&m.map_or(0, MlKem::transform_id)))?;
        if pick.is_some() && out.contains(pick) {
            return None;
        }
        out[i] = *pick;
    }
    Some(out)
}

/// Whether every transform type in a peer's proposal is one esprit understands.
fn known_types(p: &Proposal, allowed: &[u8]) -> bool {
    p.transforms
        .iter()
        .all(|t| allowed.contains(&t.ttype) || (t.ttype == tt::INTEG && t.id == 0))
}

fn their_encr(p: &Proposal) -> impl Iterator<Item = EncrAlg> + '_ {
    p.transforms
        .iter()
        .filter(|t| t.ttype == tt::ENCR)
        .filter_map(|t| EncrAlg::from_transform(t.id, t.key_len))
}

fn their_ids(p: &Proposal, ttype: u8) -> impl Iterator<Item = u16> + '_ {
    p.transforms
        .iter()
        .filter(move |t| t.ttype == ttype)
        .map(|t| t.id)
}

/// The first of our ciphers (with an integrity algorithm for AES-CBC) that proposal `p` offers
/// too and `usable` accepts. An AEAD is only taken from a proposal without a real integrity
/// transform (NONE is allowed), AES-CBC only with one of ours.
fn choose_cipher(
    encr: &[EncrAlg],
    integ: &[IntegAlg],
    p: &Proposal,
    usable: impl Fn(EncrAlg, Option<IntegAlg>) -> bool,
) -> Option<(EncrAlg, Option<IntegAlg>)> {
    let their_integ: Vec<u16> = their_ids(p, tt::INTEG).filter(|i| *i != 0).collect();
    for e in encr
        .iter()
        .copied()
        .filter(|e| their_encr(p).any(|x| x == *e))
    {
        if e.is_aead() {
            if their_integ.is_empty() && usable(e, None) {
                return Some((e, None));
            }
            continue;
        }
        if let Some(i) = integ
            .iter()
            .copied()
            .find(|i| their_integ.contains(&i.transform_id()) && usable(e, Some(*i)))
        {
            return Some((e, Some(i)));
        }
    }
    None
}

/// The responder's choice among IKE proposals: our order of preference first (like strongSwan's
/// default), then theirs. Returns their proposal number and the suite.
pub fn choose_ike(ours: &[IkeProposalSpec], theirs: &[Proposal]) -> Option<(u8, IkeSuite)> {
    for o in ours {
        for p in theirs
            .iter()
            .filter(|p| p.protocol == protocol::IKE && p.spi.is_empty())
        {
            if !known_types(
                p,
                &[tt::ENCR, tt::INTEG, tt::PRF, tt::KE, 6, 7, 8, 9, 10, 11, 12],
            ) {
                continue;
            }
            let cipher = choose_cipher(&o.encr, &o.integ, p, |_, _| true);
            let prf = o
                .prf
                .iter()
                .copied()
                .find(|f| their_ids(p, tt::PRF).any(|x| x == f.transform_id()));
            let dh =
                o.dh.iter()
                    .copied()
                    .find(|d| their_ids(p, tt::KE).any(|x| x == d.transform_id()));
            let addke = choose_addke(&o.addke, p);
            if let (Some((encr, integ)), Some(prf), Some(dh), Some(addke)) =
                (cipher, prf, dh, addke)
            {
                return Some((
                    p.num,
                    IkeSuite {
                        encr,
                        integ,
                        prf,
                        dh,
                        addke,
                    },
                ));
            }
        }
    }
    None
}

/// Like [`choose_ike`] for an IKE rekey, where proposals carry an 8-octet SPI; returns the SPI.
pub fn choose_ike_rekey(
    ours: &[IkeProposalSpec],
    theirs: &[Proposal],
) -> Option<(u8, IkeSuite, u64)> {
    let stripped: Vec<Proposal> = theirs
        .iter()
        .filter(|p| p.spi.len() == 8)
        .map(|p| Proposal {
            spi: Vec::new(),
            ..p.clone()
        })
        .collect();
    let (num, suite) = choose_ike(ours, &stripped)?;
    let spi = theirs
        .iter()
        .find(|p| p.num == num && p.spi.len() == 8)?
        .spi
        .clone();
    Some((num, suite, u64::from_be_bytes(spi.try_into().ok()?)))
}

/// The responder's choice among ESP proposals. `ke` is None in IKE_AUTH (key exchange
/// transforms are ignored there), and in CREATE_CHILD_SA Some(the group of the KE payload, or
/// None if none was sent). Returns their number, their SPI and the suite.
pub fn choose_esp(
    ours: &[EspProposalSpec],
    theirs: &[Proposal],
    ke: Option<Option<DhGroup>>,
) -> Option<(u8, u32, EspSuite)> {
    for o in ours {
        for p in theirs
            .iter()
            .filter(|p| p.protocol == protocol::ESP && p.spi.len() == 4)
        {
            if !known_types(
                p,
                &[tt::ENCR, tt::INTEG, tt::KE, tt::ESN, 6, 7, 8, 9, 10, 11, 12],
            ) {
                continue;
            }
            let Some((encr, integ)) =
                choose_cipher(&o.encr, &o.integ, p, |e, i| esp_suite_name(e, i).is_some())
            else {
                continue;
            };
            let our_esn: &[bool] = if o.esn.is_empty() { &[false] } else { &o.esn };
            let their_esn: Vec<bool> = their_ids(p, tt::ESN).map(|i| i == 1).collect();
            let their_esn = if their_esn.is_empty() {
                vec![false]
            } else {
                their_esn
            };
            let Some(esn) = our_esn.iter().copied().find(|e| their_esn.contains(e)) else {
                continue;
            };
            let their_dh: Vec<u16> = their_ids(p, tt::KE).filter(|i| *i != 0).collect();
            let dh = match ke {
                None => None,
                Some(None) => {
                    // No KE payload: acceptable if we need no PFS and they offer "none".
                    if !o.dh.is_empty() {
                        continue;
                    }
                    None
                }
                Some(Some(g)) => {
                    if !o.dh.contains(&g) || !their_dh.contains(&g.transform_id()) {
                        continue;
                    }
                    Some(g)
                }
            };
            // Additional key exchanges go with a KE payload only (IKE_AUTH ignores both).
            let addke = match dh {
                Some(_) => match choose_addke(&o.addke, p) {
                    Some(a) => a,
                    None => continue,
                },
                None if o.addke.iter().all(|s| s.is_empty() || s.contains(&None)) => [None; 7],
                None if ke.is_none() => [None; 7],
                None => continue,
            };
            let spi = u32::from_be_bytes(p.spi.clone().try_into().ok()?);
            return Some((
                p.num,
                spi,
                EspSuite {
                    encr,
                    integ,
                    dh,
                    addke,
                    esn,
                },
            ));
        }
    }
    None
}

/// The single proposal a responder returns for an IKE suite, chosen from their proposal
/// `theirs`: one transform for each ADDKE type it offered (NONE where none was agreed).
pub fn ike_answer(num: u8, s: IkeSuite, spi: &[u8], theirs: Option<&Proposal>) -> Proposal {
    let mut transforms = vec![encr_transform(s.encr)];
    if let Some(i) = s.integ {
        transforms.push(plain(tt::INTEG, i.transform_id()));
    }
    transforms.push(plain(tt::PRF, s.prf.transform_id()));
    transforms.push(plain(tt::KE, s.dh.transform_id()));
    for (i, m) in s.addke.iter().enumerate() {
        let t = tt::addke(i + 1);
        let offered = theirs.is_some_and(|p| p.transforms.iter().any(|x| x.ttype == t));
        if m.is_some() || offered {
            transforms.push(plain(t, m.map_or(0, MlKem::transform_id)));
        }
    }
    Proposal {
        num,
        protocol: protocol::IKE,
        spi: spi.to_vec(),
        transforms,
    }
}

/// The single proposal a responder returns for an ESP suite with its inbound SPI, chosen from
/// their proposal `theirs`: with a PFS group, one transform for each ADDKE type it offered.
pub fn esp_answer(num: u8, s: EspSuite, spi: u32, theirs: Option<&Proposal>) -> Proposal {
    let mut transforms = vec![encr_transform(s.encr)];
    if let Some(i) = s.integ {
        transforms.push(plain(tt::INTEG, i.transform_id()));
    }
    if let Some(g) = s.dh {
        transforms.push(plain(tt::KE, g.transform_id()));
        for (i, m) in s.addke.iter().enumerate() {
            let t = tt::addke(i + 1);
            let offered = theirs.is_some_and(|p| p.transforms.iter().any(|x| x.ttype == t));
            if m.is_some() || offered {
                transforms.push(plain(t, m.map_or(0, MlKem::transform_id)));
            }
        }
    }
    transforms.push(plain(tt::ESN, u16::from(s.esn)));
    Proposal {
        num,
        protocol: protocol::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms,
    }
}

/// The cipher and integrity algorithm of an answer: one encryption transform, and one real
/// integrity transform exactly when the cipher is not an AEAD (NONE is tolerated with an AEAD).
fn answer_cipher(a: &Proposal) -> Option<(EncrAlg, Option<IntegAlg>)> {
    let count = |ty| a.transforms.iter().filter(|t| t.ttype == ty).count();
    if count(tt::ENCR) != 1 || count(tt::INTEG) > 1 {
        return None;
    }
    let encr = their_encr(a).next()?;
    let integ = match their_ids(a, tt::INTEG).next() {
        None | Some(0) => None,
        Some(id) => Some(IntegAlg::from_transform(id)?),
    };
    (encr.is_aead() == integ.is_none()).then_some((encr, integ))
}

/// Check a responder's IKE answer against what we offered: exactly one proposal, one transform
/// of each type, all from the offered proposal of that number.
pub fn accept_ike_answer(offered: &[Proposal], answer: &[Proposal]) -> Option<IkeSuite> {
    let [a] = answer else { return None };
    let o = offered
        .iter()
        .find(|o| o.num == a.num && o.protocol == a.protocol)?;
    if !a.transforms.iter().all(|t| o.transforms.contains(t)) {
        return None;
    }
    let (encr, integ) = answer_cipher(a)?;
    let addke_count = a
        .transforms
        .iter()
        .filter(|t| tt::is_addke(t.ttype))
        .count();
    if a.transforms.len() != 3 + usize::from(integ.is_some()) + addke_count {
        return None;
    }
    let prf = PrfAlg::from_transform(their_ids(a, tt::PRF).next()?)?;
    let dh = DhGroup::from_transform(their_ids(a, tt::KE).next()?)?;
    let mut addke: AddKeChoice = [None; 7];
    for (i, slot) in addke.iter_mut().enumerate() {
        let t = tt::addke(i + 1);
        let chosen: Vec<u16> = their_ids(a, t).collect();
        let offered: Vec<u16> = their_ids(o, t).collect();
        *slot = match chosen[..] {
            // A type we offered must be answered, unless NONE was acceptable.
            [] if offered.is_empty() || offered.contains(&0) => None,
            [0] => None,
            [id] => Some(MlKem::from_transform_id(id)?),
            _ => return None,
        };
    }
    let methods: Vec<MlKem> = addke.iter().flatten().copied().collect();
    if (1..methods.len()).any(|i| methods[..i].contains(&methods[i])) {
        return None;
    }
    Some(IkeSuite {
        encr,
        integ,
        prf,
        dh,
        addke,
    })
}

/// Check a responder's ESP answer; returns the responder's SPI and the suite.
pub fn accept_esp_answer(offered: &[Proposal], answer: &[Proposal]) -> Option<(u32, EspSuite)> {
    let [a] = answer else { return None };
    let o = offered
        .iter()
        .find(|o| o.num == a.num && o.protocol == a.protocol)?;
    if !a.transforms.iter().all(|t| {
        o.transforms.contains(t)
            || ((t.ttype == tt::KE || t.ttype == tt::INTEG || tt::is_addke(t.ttype)) && t.id == 0)
    }) {
        return None;
    }
    let count = |ty| a.transforms.iter().filter(|t| t.ttype == ty).count();
    if count(tt::ESN) > 1 || count(tt::KE) > 1 {
        return None;
    }
    let (encr, integ) = answer_cipher(a)?;
    esp_suite_name(encr, integ)?;
    let esn = their_ids(a, tt::ESN).next().unwrap_or(0) == 1;
    let dh = match their_ids(a, tt::KE).next() {
        Some(0) | None => None,
        Some(id) => Some(DhGroup::from_transform(id)?),
    };
    let mut addke: AddKeChoice = [None; 7];
    for (i, slot) in addke.iter_mut().enumerate() {
        let t = tt::addke(i + 1);
        let chosen: Vec<u16> = their_ids(a, t).collect();
        let offered: Vec<u16> = their_ids(o, t).collect();
        *slot = match chosen[..] {
            [] if dh.is_none() || offered.is_empty() || offered.contains(&0) => None,
            [0] => None,
            [id] if dh.is_some() => Some(MlKem::from_transform_id(id)?),
            _ => return None,
        };
    }
    let methods: Vec<MlKem> = addke.iter().flatten().copied().collect();
    if (1..methods.len()).any(|i| methods[..i].contains(&methods[i])) {
        return None;
    }
    let spi = u32::from_be_bytes(a.spi.clone().try_into().ok()?);
    Some((
        spi,
        EspSuite {
            encr,
            integ,
            dh,
            addke,
            esn,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<IkeProposalSpec> {
        vec![
            IkeProposalSpec {
                encr: vec![EncrAlg::AesGcm16_128],
                integ: vec![],
                prf: vec![PrfAlg::HmacSha256],
                dh: vec![DhGroup::X25519],
                addke: Default::default(),
            },
            IkeProposalSpec {
                encr: vec![EncrAlg::AesGcm16_256],
                integ: vec![],
                prf: vec![PrfAlg::HmacSha384],
                dh: vec![DhGroup::Ecp384, DhGroup::Ecp256],
                addke: Default::default(),
            },
        ]
    }

    #[test]
    fn ike_choice_and_answer() {
        let offer = ike_offer(&specs(), &[], None);
        let ours = vec![IkeProposalSpec {
            encr: vec![EncrAlg::AesGcm16_256],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha384],
            dh: vec![DhGroup::Ecp256],
            addke: Default::default(),
        }];
        let (num, suite) = choose_ike(&ours, &offer).unwrap();
        assert_eq!(num, 2);
        assert_eq!(
            suite,
            IkeSuite {
                encr: EncrAlg::AesGcm16_256,
                integ: None,
                prf: PrfAlg::HmacSha384,
                dh: DhGroup::Ecp256,
                addke: Default::default(),
            }
        );
        let answer = ike_answer(num, suite, &[], None);
        assert_eq!(
            accept_ike_answer(&offer, std::slice::from_ref(&answer)),
            Some(suite)
        );
        // An answer with a transform we did not offer in that proposal is refused.
        let mut forged = answer;
        forged.num = 1;
        assert_eq!(accept_ike_answer(&offer, &[forged]), None);
        let none = vec![IkeProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha512],
            dh: vec![DhGroup::X25519],
            addke: Default::default(),
        }];
        assert_eq!(choose_ike(&none, &offer), None);
        // INVALID_KE retry moves the group to the front.
        let again = ike_offer(&specs(), &[], Some(DhGroup::Ecp256));
        assert_eq!(again[1].transforms[2].id, 19);
    }

    #[test]
    fn unknown_transform_type_makes_a_proposal_unusable() {
        let mut offer = ike_offer(&specs(), &[], None);
        offer[0].transforms.push(Transform {
            ttype: 9,
            id: 1,
            key_len: None,
        });
        let (num, _) = choose_ike(&specs(), &offer).unwrap();
        assert_eq!(num, 2);
    }

    #[test]
    fn esp_choice() {
        let ours = vec![EspProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128],
            integ: vec![],
            dh: vec![],
            esn: vec![false],
            addke: Default::default(),
        }];
        let theirs = esp_offer(
            &[EspProposalSpec {
                encr: vec![EncrAlg::AesGcm16_256, EncrAlg::AesGcm16_128],
                integ: vec![],
                dh: vec![DhGroup::X25519],
                esn: vec![true, false],
                addke: Default::default(),
            }],
            0xc0ffee,
            true,
            None,
        );
        // In IKE_AUTH the KE transforms are ignored.
        let (num, spi, suite) = choose_esp(&ours, &theirs, None).unwrap();
        assert_eq!((num, spi), (1, 0xc0ffee));
        assert_eq!(
            suite,
            EspSuite {
                encr: EncrAlg::AesGcm16_128,
                integ: None,
                dh: None,
                esn: false,
                addke: Default::default(),
            }
        );
        // In CREATE_CHILD_SA without KE we cannot accept a PFS-only peer group... but may if we need none.
        assert!(choose_esp(&ours, &theirs, Some(None)).is_some());
        let pfs = vec![EspProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128],
            integ: vec![],
            dh: vec![DhGroup::X25519],
            esn: vec![],
            addke: Default::default(),
        }];
        assert_eq!(
            choose_esp(&pfs, &theirs, Some(Some(DhGroup::X25519)))
                .unwrap()
                .2
                .dh,
            Some(DhGroup::X25519)
        );
        assert!(choose_esp(&pfs, &theirs, Some(None)).is_none());
        let ans = esp_answer(num, suite, 0x1234, None);
        let offered = esp_offer(&ours, 1, false, None);
        assert_eq!(accept_esp_answer(&offered, &[ans]), Some((0x1234, suite)));
    }

    fn t(ttype: u8, id: u16, key_len: Option<u16>) -> Transform {
        Transform { ttype, id, key_len }
    }

    /// A spec with AEADs and AES-CBC becomes two proposals, the AEAD one without integrity;
    /// ESP keeps to the dataplane's pairs (aes128 only with sha256).
    #[test]
    fn mixed_specs_are_split() {
        use IntegAlg as I;
        let spec = IkeProposalSpec {
            encr: vec![
                EncrAlg::AesCbc128,
                EncrAlg::ChaCha20Poly1305,
                EncrAlg::AesCbc256,
            ],
            integ: vec![I::HmacSha512_256],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Ecp521],
            addke: Default::default(),
        };
        let offer = ike_offer(&[spec], &[], None);
        assert_eq!(offer.len(), 2);
        assert_eq!(
            offer[0].transforms,
            vec![
                t(tt::ENCR, 28, None),
                t(tt::PRF, 5, None),
                t(tt::KE, 21, None)
            ]
        );
        assert_eq!(
            offer[1].transforms,
            vec![
                t(tt::ENCR, 12, Some(128)),
                t(tt::ENCR, 12, Some(256)),
                t(tt::INTEG, 14, None),
                t(tt::PRF, 5, None),
                t(tt::KE, 21, None)
            ]
        );
        assert_eq!((offer[0].num, offer[1].num), (1, 2));

        let esp = EspProposalSpec {
            encr: vec![
                EncrAlg::AesCbc128,
                EncrAlg::AesCbc256,
                EncrAlg::AesGcm16_128,
            ],
            integ: vec![I::HmacSha512_256, I::HmacSha256_128],
            dh: vec![],
            esn: vec![],
            addke: Default::default(),
        };
        let offer = esp_offer(std::slice::from_ref(&esp), 7, false, None);
        assert_eq!(offer.len(), 3);
        // aes128 goes only with sha256; aes256 with both.
        assert_eq!(
            offer[1].transforms[..2],
            [t(tt::ENCR, 12, Some(128)), t(tt::INTEG, 12, None)]
        );
        assert_eq!(
            offer[2].transforms[..3],
            [
                t(tt::ENCR, 12, Some(256)),
                t(tt::INTEG, 14, None),
                t(tt::INTEG, 12, None)
            ]
        );
        // Chosen by a responder with the same spec: the first proposal, AES-GCM.
        let (num, _, suite) = choose_esp(std::slice::from_ref(&esp), &offer, None).unwrap();
        assert_eq!(
            (num, suite.encr, suite.integ),
            (1, EncrAlg::AesGcm16_128, None)
        );
        // By one that takes AES-CBC only: the AES-128-CBC proposal with SHA-256, answered and
        // accepted.
        let cbc_only = EspProposalSpec {
            encr: vec![EncrAlg::AesCbc128, EncrAlg::AesCbc256],
            ..esp.clone()
        };
        let (num, spi, suite) = choose_esp(&[cbc_only], &offer, None).unwrap();
        assert_eq!((num, spi), (2, 7));
        assert_eq!(
            (suite.encr, suite.integ),
            (EncrAlg::AesCbc128, Some(I::HmacSha256_128))
        );
        assert_eq!(suite.dataplane_name(), Some("aes128cbc-sha256"));
        let ans = esp_answer(num, suite, 9, None);
        assert_eq!(accept_esp_answer(&offer, &[ans]), Some((9, suite)));
    }

    #[test]
    fn integrity_pairing_is_enforced_both_ways() {
        use IntegAlg as I;
        let ours = vec![IkeProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128, EncrAlg::AesCbc256],
            integ: vec![I::HmacSha256_128],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::X25519],
            addke: Default::default(),
        }];
        // A peer proposal mixing GCM with a real integrity transform: GCM is not taken from
        // it, AES-CBC with the integrity algorithm is.
        let theirs = vec![Proposal {
            num: 1,
            protocol: protocol::IKE,
            spi: vec![],
            transforms: vec![
                t(tt::ENCR, 20, Some(128)),
                t(tt::ENCR, 12, Some(256)),
                t(tt::INTEG, 12, None),
                t(tt::PRF, 5, None),
                t(tt::KE, 31, None),
            ],
        }];
        let (_, s) = choose_ike(&ours, &theirs).unwrap();
        assert_eq!(
            (s.encr, s.integ),
            (EncrAlg::AesCbc256, Some(I::HmacSha256_128))
        );
        // AES-CBC without an integrity transform is not acceptable.
        let mut no_integ = theirs.clone();
        no_integ[0].transforms.remove(2);
        no_integ[0].transforms.remove(0);
        assert_eq!(choose_ike(&ours, &no_integ), None);
        // INTEG NONE next to an AEAD is tolerated.
        let mut none = theirs.clone();
        none[0].transforms[2] = t(tt::INTEG, 0, None);
        let (_, s) = choose_ike(&ours, &none).unwrap();
        assert_eq!((s.encr, s.integ), (EncrAlg::AesGcm16_128, None));

        // Answers: AES-CBC must come with exactly one integrity transform, an AEAD with none.
        let offer = ike_offer(&ours, &[], None);
        let good = ike_answer(2, s_cbc(), &[], None);
        assert_eq!(
            accept_ike_answer(&offer, std::slice::from_ref(&good)),
            Some(s_cbc())
        );
        let mut bare = good.clone();
        bare.transforms.retain(|x| x.ttype != tt::INTEG);
        assert_eq!(accept_ike_answer(&offer, &[bare]), None);
        let mut aead_integ = ike_answer(1, s_gcm(), &[], None);
        aead_integ.transforms.insert(1, t(tt::INTEG, 12, None));
        assert_eq!(accept_ike_answer(&offer, &[aead_integ]), None);
        let mut two = good;
        two.transforms.insert(1, t(tt::INTEG, 12, None));
        assert_eq!(accept_ike_answer(&offer, &[two]), None);
        assert_eq!(
            accept_ike_answer(&offer, &[ike_answer(1, s_gcm(), &[], None)]),
            Some(s_gcm())
        );
        assert_eq!(s_cbc().name(), "aes256-sha256-prfsha256-x25519");
        assert_eq!(s_gcm().name(), "aes128gcm16-prfsha256-x25519");
    }

    fn s_cbc() -> IkeSuite {
        IkeSuite {
            encr: EncrAlg::AesCbc256,
            integ: Some(IntegAlg::HmacSha256_128),
            prf: PrfAlg::HmacSha256,
            dh: DhGroup::X25519,
            addke: Default::default(),
        }
    }

    fn s_gcm() -> IkeSuite {
        IkeSuite {
            encr: EncrAlg::AesGcm16_128,
            integ: None,
            prf: PrfAlg::HmacSha256,
            dh: DhGroup::X25519,
            addke: Default::default(),
        }
    }

    /// An ESP answer with a pair the dataplane lacks (AES-128-CBC with SHA-512) is refused even
    /// if it was offered.
    #[test]
    fn esp_answer_outside_the_dataplane_is_refused() {
        let offered = vec![Proposal {
            num: 1,
            protocol: protocol::ESP,
            spi: vec![0, 0, 0, 1],
            transforms: vec![
                t(tt::ENCR, 12, Some(128)),
                t(tt::INTEG, 14, None),
                t(tt::ESN, 0, None),
            ],
        }];
        let mut ans = offered[0].clone();
        ans.spi = vec![0, 0, 0, 2];
        assert_eq!(accept_esp_answer(&offered, &[ans]), None);
    }

    fn pq(addke0: Vec<Option<MlKem>>) -> IkeProposalSpec {
        let mut addke: crate::ike::crypto::mlkem::AddKeSlots = Default::default();
        addke[0] = addke0;
        IkeProposalSpec {
            encr: vec![EncrAlg::AesGcm16_256],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha384],
            dh: vec![DhGroup::X25519],
            addke,
        }
    }

    #[test]
    fn additional_key_exchanges_offered_chosen_and_checked() {
        let m768 = Some(MlKem::MlKem768);
        let offer = ike_offer(&[pq(vec![m768])], &[], None);
        assert!(offer[0].transforms.contains(&plain(tt::ADDKE1, 36)));
        // Both want ML-KEM-768 in ADDKE1.
        let (num, suite) = choose_ike(&[pq(vec![m768])], &offer).unwrap();
        assert_eq!(suite.addke[0], m768);
        assert_eq!(suite.rounds(), vec![(1, MlKem::MlKem768)]);
        assert_eq!(suite.name(), "aes256gcm16-prfsha384-x25519-ke1_mlkem768");
        let answer = ike_answer(num, suite, &[], offer.first());
        assert_eq!(
            accept_ike_answer(&offer, std::slice::from_ref(&answer)),
            Some(suite)
        );
        // A classical-only responder accepts only NONE, which this offer lacks.
        assert_eq!(choose_ike(&[pq(vec![])], &offer), None);
        // A responder that requires ML-KEM refuses a classical-only offer.
        let classical = ike_offer(&[pq(vec![])], &[], None);
        assert_eq!(choose_ike(&[pq(vec![m768])], &classical), None);
        // NONE offered: a classical responder chooses it and says so in its answer.
        let optional = ike_offer(&[pq(vec![m768, None])], &[], None);
        let (num, s) = choose_ike(&[pq(vec![])], &optional).unwrap();
        assert_eq!(s.addke, [None; 7]);
        let a = ike_answer(num, s, &[], optional.first());
        assert!(a.transforms.contains(&plain(tt::ADDKE1, 0)));
        assert_eq!(accept_ike_answer(&optional, &[a]), Some(s));
        // A method we do not know in an ADDKE type is passed over for NONE.
        let mut unknown = optional.clone();
        unknown[0].transforms.retain(|t| t.ttype != tt::ADDKE1);
        unknown[0].transforms.push(plain(tt::ADDKE1, 99));
        unknown[0].transforms.push(plain(tt::ADDKE1, 0));
        let (_, s) = choose_ike(&[pq(vec![m768, None])], &unknown).unwrap();
        assert_eq!(s.addke[0], None);
    }

    #[test]
    fn additional_key_exchange_answers_refused() {
        let m768 = Some(MlKem::MlKem768);
        let offer = ike_offer(&[pq(vec![m768])], &[], None);
        let (num, suite) = choose_ike(&[pq(vec![m768])], &offer).unwrap();
        let good = ike_answer(num, suite, &[], offer.first());
        // ADDKE1 left out although we offered no NONE.
        let mut missing = good.clone();
        missing.transforms.retain(|t| t.ttype != tt::ADDKE1);
        assert_eq!(accept_ike_answer(&offer, &[missing]), None);
        // A method we did not offer.
        let mut other = good.clone();
        other.transforms.retain(|t| t.ttype != tt::ADDKE1);
        other.transforms.push(plain(tt::ADDKE1, 37));
        assert_eq!(accept_ike_answer(&offer, &[other]), None);
        // Two values of one type.
        let offer2 = ike_offer(&[pq(vec![m768, Some(MlKem::MlKem1024)])], &[], None);
        let mut two = ike_answer(num, suite, &[], offer2.first());
        two.transforms.push(plain(tt::ADDKE1, 37));
        assert_eq!(accept_ike_answer(&offer2, &[two]), None);
        // NONE in an answer to an offer without NONE.
        let mut none = good.clone();
        none.transforms.retain(|t| t.ttype != tt::ADDKE1);
        none.transforms.push(plain(tt::ADDKE1, 0));
        assert_eq!(accept_ike_answer(&offer, &[none]), None);
        // Without IKE_INTERMEDIATE no additional key exchange is offered or accepted.
        let specs = classical_only(&[pq(vec![m768]), pq(vec![])]);
        assert_eq!(specs, vec![pq(vec![])]);
    }
}
