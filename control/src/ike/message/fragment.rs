//! IKEv2 message fragmentation (RFC 7383): splitting an encrypted message into Encrypted
//! Fragment (SKF) payloads, one per datagram, and reassembling them on the other side.
//!
//! Every fragment message carries the IKE header of the original message (with its own Length
//! and Next Payload SKF) and a single SKF payload: Fragment Number (1..=N), Total Fragments (N),
//! an IV of its own and a separately sealed piece of the inner payload chain, padded on its own.
//! Only fragment 1 names the first inner payload; the others carry Next Payload 0. The AEAD's
//! associated data is everything before the IV: the IKE header, the SKF generic header, and the
//! Fragment Number and Total Fragments fields.
//!
//! Negotiation (IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT), reassembly timeouts and the
//! choice of which message ID to reassemble belong to the caller.

use std::fmt;

use zeroize::Zeroizing;

use super::consts::exchange;
use super::consts::payload_type as pt;
use super::{
    chain, encode_encrypted, pad_plaintext, padding_len, unpad, walk, DecodeError, Header, Message,
    Payload, SkAead, HEADER_LEN, MAX_MESSAGE,
};

/// Octets of the SKF payload before its IV: the generic payload header, Fragment Number and
/// Total Fragments.
pub const SKF_HEADER_LEN: usize = 8;
/// Octets of the SK payload before its IV (the generic payload header).
const SK_HEADER_LEN: usize = 4;

/// Octets of a fragment message that are not inner content: the IKE header, the SKF header, the
/// IV, the most padding the cipher may need, the Pad Length octet and the ICV.
fn fragment_overhead(sk: &dyn SkAead) -> usize {
    HEADER_LEN + SKF_HEADER_LEN + sk.iv_len() + sk.block_len() - 1 + 1 + sk.icv_len()
}

/// Length of the message that carries `content_len` octets of inner payloads in one SK payload
/// (what [`encode_encrypted`] produces).
fn sk_message_len(content_len: usize, sk: &dyn SkAead) -> usize {
    HEADER_LEN
        + SK_HEADER_LEN
        + sk.iv_len()
        + content_len
        + padding_len(content_len, sk.block_len())
        + 1
        + sk.icv_len()
}

/// Encode `payloads` encrypted, fragmented as RFC 7383 says when one message would not fit.
///
/// `max_datagram` is the largest IKE message (header included) to send; the caller has already
/// subtracted the IP and UDP headers and any non-ESP marker. If the message fits in one SK
/// payload of at most `max_datagram` octets, the result is the single message
/// [`encode_encrypted`] would build. Otherwise the inner payload chain is split into N pieces of
/// nearly equal size, each sealed into its own SKF message of at most `max_datagram` octets.
///
/// Every sealed message takes a fresh IV: `*next_iv` is incremented before each one and the IV
/// is [`SkAead::iv`] of its big-endian octets, so the counter must never repeat under one key. When
/// `max_datagram` cannot hold even one octet of content per fragment, each fragment carries one
/// octet (and exceeds it); the number of fragments never exceeds 65535.
pub fn encode_fragments(
    header: &Header,
    payloads: &[Payload],
    sk: &dyn SkAead,
    next_iv: &mut u64,
    max_datagram: usize,
) -> Vec<Vec<u8>> {
    let mut inner = Zeroizing::new(Vec::new());
    let first = chain(payloads, &mut inner);
    let icv_len = sk.icv_len();
    if sk_message_len(inner.len(), sk) <= max_datagram {
        *next_iv += 1;
        return vec![encode_encrypted(
            header,
            payloads,
            sk,
            next_iv.to_be_bytes(),
        )];
    }
    let overhead = fragment_overhead(sk);
    let capacity = max_datagram
        .min(MAX_MESSAGE)
        .saturating_sub(overhead)
        .max(1);
    let total = inner
        .len()
        .div_ceil(capacity)
        .clamp(1, usize::from(u16::MAX));
    let (base, extra) = (inner.len() / total, inner.len() % total);

    let mut out = Vec::with_capacity(total);
    let mut start = 0;
    for i in 0..total {
        let piece = &inner[start..start + base + usize::from(i < extra)];
        start += piece.len();
        let plain = pad_plaintext(piece, sk.block_len());
        *next_iv += 1;
        let iv = sk.iv(next_iv.to_be_bytes());
        let skf_len = SKF_HEADER_LEN + iv.len() + plain.len() + icv_len;
        let mut h = *header;
        h.next_payload = pt::SKF;
        h.length = u32::try_from(HEADER_LEN + skf_len).unwrap_or(u32::MAX);
        let mut msg = Vec::with_capacity(HEADER_LEN + skf_len);
        h.write(&mut msg);
        msg.push(if i == 0 { first } else { pt::NONE });
        msg.push(0);
        msg.extend_from_slice(&u16::try_from(skf_len).unwrap_or(u16::MAX).to_be_bytes());
        // `total` is clamped to u16::MAX, so both numbers fit.
        msg.extend_from_slice(&u16::try_from(i + 1).unwrap_or(u16::MAX).to_be_bytes());
        msg.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
        let sealed = sk.seal(&iv, &msg, &plain);
        msg.extend_from_slice(&iv);
        msg.extend_from_slice(&sealed);
        out.push(msg);
    }
    out
}

/// Why a fragment was not taken into a reassembly. A fragment that fails leaves the
/// [`Reassembly`] exactly as it was.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragmentError {
    /// The datagram is not a well-formed message, the fragment's ICV did not verify, its
    /// padding is inconsistent, or the reassembled payload chain does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message's only payload is not an SKF payload.
    #[error("not an IKE fragment")]
    NotFragment,
    /// Fragment Number is zero or above Total Fragments, or Total Fragments is zero.
    #[error("fragment {number} of {total} is out of range")]
    BadNumber {
        /// Fragment Number.
        number: u16,
        /// Total Fragments.
        total: u16,
    },
    /// Total Fragments is above the limit.
    #[error("{total} fragments exceed the limit of {max}")]
    TooManyFragments {
        /// Total Fragments.
        total: u16,
        /// The limit.
        max: u16,
    },
    /// Keeping the fragment would take the reassembled content above the limit.
    #[error("reassembly would hold {octets} octets, more than {max}")]
    TooLarge {
        /// Octets the reassembly would hold.
        octets: usize,
        /// The limit.
        max: usize,
    },
    /// The fragment's header (SPIs, version, exchange, flags or message ID) differs from the
    /// message being reassembled.
    #[error("fragment of a different message")]
    Mismatch,
    /// Total Fragments is below the one of the reassembly in progress (RFC 7383 §2.6): a
    /// leftover from before the sender fragmented the message again.
    #[error("fragment of {total} is stale, reassembling {current}")]
    StaleTotal {
        /// The fragment's Total Fragments.
        total: u16,
        /// Total Fragments of the reassembly in progress.
        current: u16,
    },
    /// The message has already been reassembled (or found undecodable).
    #[error("message already reassembled")]
    Complete,
}

/// Bounds on one reassembly, against peers that send too much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Most fragments one message may have (its Total Fragments).
    pub max_fragments: u16,
    /// Most octets of decrypted content held for one message.
    pub max_octets: usize,
}

impl Default for FragmentLimits {
    /// 64 fragments and 64 KiB.
    fn default() -> Self {
        FragmentLimits {
            max_fragments: 64,
            max_octets: 64 * 1024,
        }
    }
}

/// The parsed, still encrypted, parts of a fragment message.
struct Skf<'a> {
    header: Header,
    next: u8,
    number: u16,
    total: u16,
    aad: &'a [u8],
    /// The IV and the sealed piece (how much is IV depends on the cipher).
    body: &'a [u8],
}

/// Parse a fragment message whose only payload is SKF; checks lengths and numbering.
fn parse(d: &[u8]) -> Result<Skf<'_>, FragmentError> {
    if d.len() > MAX_MESSAGE {
        return Err(DecodeError::Malformed {
            ptype: pt::SKF,
            what: "longer than an IKE message",
        }
        .into());
    }
    let header = Header::parse(d)?;
    if header.next_payload != pt::SKF {
        return Err(FragmentError::NotFragment);
    }
    let p = &d[HEADER_LEN..];
    if p.len() < SKF_HEADER_LEN {
        return Err(DecodeError::Truncated.into());
    }
    if usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len() {
        return Err(DecodeError::Malformed {
            ptype: pt::SKF,
            what: "SKF payload length differs from the message's",
        }
        .into());
    }
    let number = u16::from_be_bytes([p[4], p[5]]);
    let total = u16::from_be_bytes([p[6], p[7]]);
    if number == 0 || total == 0 || number > total {
        return Err(FragmentError::BadNumber { number, total });
    }
    Ok(Skf {
        header,
        next: p[0],
        number,
        total,
        aad: &d[..HEADER_LEN + SKF_HEADER_LEN],
        body: &p[SKF_HEADER_LEN..],
    })
}

/// The header, Fragment Number and Total Fragments of a fragment message, without decrypting
/// it, for dispatch (which IKE SA, which message ID, request or response). None if the datagram
/// is not a well-formed message whose only payload is an SKF payload with a valid numbering.
/// Nothing here is authenticated yet.
pub fn fragment_info(datagram: &[u8]) -> Option<(Header, u16, u16)> {
    parse(datagram).ok().map(|f| (f.header, f.number, f.total))
}

/// The header fields that all fragments of one message share.
fn identity(h: &Header) -> Header {
    Header {
        next_payload: 0,
        length: 0,
        ..*h
    }
}

/// Reassembly of one fragmented message (one message ID, one direction).
///
/// Each fragment is verified and decrypted when it arrives and only then stored, so forged
/// fragments change nothing. A fragment with a higher Total Fragments than the reassembly in
/// progress restarts it; one with a lower total is refused; duplicates are ignored. After the
/// message is returned (or turns out not to decode), the reassembly is finished and refuses
/// further fragments with [`FragmentError::Complete`].
pub struct Reassembly {
    limits: FragmentLimits,
    /// The shared header fields, fixed by the first fragment accepted.
    ident: Option<Header>,
    /// Total Fragments of the reassembly in progress (0 before the first fragment).
    total: u16,
    /// Decrypted content by Fragment Number - 1.
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
    received: u16,
    octets: usize,
    /// Next Payload of fragment 1: the first inner payload.
    first_next: u8,
    complete: bool,
}

impl fmt::Debug for Reassembly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembly")
            .field("message_id", &self.message_id())
            .field("total", &self.total)
            .field("received", &self.received)
            .field("octets", &self.octets)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl Reassembly {
    /// An empty reassembly bounded by `limits`.
    pub fn new(limits: FragmentLimits) -> Self {
        Reassembly {
            limits,
            ident: None,
            total: 0,
            parts: Vec::new(),
            received: 0,
            octets: 0,
            first_next: pt::NONE,
            complete: false,
        }
    }

    /// The message ID being reassembled: None until a fragment has been accepted.
    pub fn message_id(&self) -> Option<u32> {
        self.ident.map(|h| h.message_id)
    }

    /// Whether the message has been returned (or found undecodable).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Take one fragment message: verify and decrypt it with the peer's cipher `sk` and store
    /// its content. Returns the reassembled message once all fragments are in: the header of
    /// the fragments with Next Payload SK and the Length of the same message sent unfragmented,
    /// the payloads decoded from the concatenated content, `encrypted` set. Returns `Ok(None)`
    /// while fragments are missing, and for a duplicate.
    pub fn add(
        &mut self,
        datagram: &[u8],
        sk: &dyn SkAead,
    ) -> Result<Option<Message>, FragmentError> {
        if self.complete {
            return Err(FragmentError::Complete);
        }
        let f = parse(datagram)?;
        if f.total > self.limits.max_fragments {
            return Err(FragmentError::TooManyFragments {
                total: f.total,
                max: self.limits.max_fragments,
            });
        }
        let ident = identity(&f.header);
        if self.ident.is_some_and(|known| known != ident) {
            return Err(FragmentError::Mismatch);
        }
        if f.total < self.total {
            return Err(FragmentError::StaleTotal {
                total: f.total,
                current: self.total,
            });
        }
        let index = usize::from(f.number - 1);
        let restart = f.total > self.total;
        if !restart && self.parts.get(index).is_some_and(Option::is_some) {
            return Ok(None);
        }

        let iv_len = sk.iv_len();
        if f.body.len() < iv_len + sk.icv_len() + 1 {
            return Err(DecodeError::Malformed {
                ptype: pt::SKF,
                what: "shorter than IV, padding length and ICV",
            }
            .into());
        }
        let mut content = sk.open(&f.body[..iv_len], f.aad, &f.body[iv_len..])?;
        let content_len = unpad(&content)?.len();
        let octets = if restart { 0 } else { self.octets }.saturating_add(content_len);
        if octets > self.limits.max_octets {
            return Err(FragmentError::TooLarge {
                octets,
                max: self.limits.max_octets,
            });
        }

        if restart {
            self.parts = (0..f.total).map(|_| None).collect();
            self.total = f.total;
            self.received = 0;
            self.first_next = pt::NONE;
        }
        self.ident = Some(ident);
        if f.number == 1 {
            self.first_next = f.next;
        }
        content.truncate(content_len);
        if let Some(slot) = self.parts.get_mut(index) {
            *slot = Some(content);
        }
        self.received += 1;
        self.octets = octets;
        if self.received < self.total {
            return Ok(None);
        }
        self.complete = true;
        self.assemble(ident, sk).map(Some)
    }

    /// Decode the concatenated content once every fragment is in, releasing the pieces.
    fn assemble(&mut self, ident: Header, sk: &dyn SkAead) -> Result<Message, FragmentError> {
        let mut inner = Zeroizing::new(Vec::with_capacity(self.octets));
        for part in self.parts.drain(..).flatten() {
            inner.extend_from_slice(&part);
        }
        let mut payloads = Vec::new();
        // As for a whole SK payload: the fragments verified, so a chain that does not read is
        // the peer's (INVALID_SYNTAX), unless a critical payload is unknown.
        let rest = walk(self.first_next, &inner, 0, &mut payloads).map_err(|e| match e {
            DecodeError::UnsupportedCritical(_) => e,
            e => DecodeError::InvalidInSk(Box::new(e)),
        })?;
        if rest.is_some() {
            return Err(DecodeError::Malformed {
                ptype: pt::SKF,
                what: "SK inside SKF",
            }
            .into());
        }
        let header = Header {
            next_payload: pt::SK,
            length: u32::try_from(sk_message_len(inner.len(), sk)).unwrap_or(u32::MAX),
            ..ident
        };
        let sk_inner = (header.exchange == exchange::IKE_INTERMEDIATE)
            .then(|| (self.first_next, inner.to_vec()));
        Ok(Message {
            header,
            payloads,
            encrypted: true,
            sk_inner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::consts::{exchange, flags, notify, protocol, transform_type as tt};
    use super::super::{decode, Notify, Proposal, TrafficSelector, Transform};
    use super::*;
    use crate::ike::algorithms::EncrAlg;
    use crate::ike::crypto::sk::SkCipher;
    use proptest::prelude::*;

    fn sk() -> SkCipher {
        SkCipher::new(EncrAlg::AesGcm16_128, &[0x42; 20]).unwrap()
    }

    fn header(message_id: u32) -> Header {
        Header::new(
            0x1122_3344_5566_7788,
            0x99aa_bbcc_ddee_ff00,
            exchange::IKE_AUTH,
            flags::INITIATOR,
            message_id,
        )
    }

    /// An IKE_AUTH request whose certificate payloads carry `cert_octets` octets each.
    fn auth_request(certs: usize, cert_octets: usize) -> Vec<Payload> {
        let mut p = vec![Payload::IdI {
            id_type: 9,
            data: b"CN=gwA.esprit.test".to_vec(),
        }];
        for i in 0..certs {
            p.push(Payload::Cert {
                encoding: 4,
                data: (0..cert_octets).map(|j| (i * 31 + j) as u8).collect(),
            });
        }
        p.extend([
            Payload::Notify(Notify::new(notify::INITIAL_CONTACT, vec![])),
            Payload::Auth {
                method: 14,
                data: vec![0xab; 80],
            },
            Payload::Sa(vec![Proposal {
                num: 1,
                protocol: protocol::ESP,
                spi: vec![1, 2, 3, 4],
                transforms: vec![
                    Transform {
                        ttype: tt::ENCR,
                        id: 20,
                        key_len: Some(256),
                    },
                    Transform {
                        ttype: tt::ESN,
                        id: 0,
                        key_len: None,
                    },
                ],
            }]),
            Payload::TsI(vec![TrafficSelector {
                protocol: 0,
                start_port: 0,
                end_port: 65535,
                start: "10.201.1.0".parse().unwrap(),
                end: "10.201.1.255".parse().unwrap(),
            }]),
            Payload::TsR(vec![TrafficSelector {
                protocol: 0,
                start_port: 0,
                end_port: 65535,
                start: "10.201.2.0".parse().unwrap(),
                end: "10.201.2.255".parse().unwrap(),
            }]),
        ]);
        p
    }

    /// What `decode` makes of the same message sent unfragmented.
    fn unfragmented(h: &Header, payloads: &[Payload]) -> Message {
        let s = sk();
        decode(&encode_encrypted(h, payloads, &s, [9; 8]), Some(&s)).unwrap()
    }

    /// Feed `frags` in order, expecting the message only after the last one.
    fn feed(r: &mut Reassembly, frags: &[Vec<u8>]) -> Message {
        let s = sk();
        let (last, rest) = frags.split_last().unwrap();
        for f in rest {
            assert_eq!(r.add(f, &s).unwrap(), None);
        }
        r.add(last, &s).unwrap().expect("complete")
    }

    /// Check the wire shape of a set of fragments of message 1.
    fn check_shape(frags: &[Vec<u8>], max: usize, first_inner: u8) {
        let n = frags.len();
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= max, "fragment {} is {} > {max}", i + 1, f.len());
            let (h, number, total) = fragment_info(f).expect("a fragment");
            assert_eq!((number, usize::from(total)), (i as u16 + 1, n));
            assert_eq!(h.next_payload, pt::SKF);
            assert_eq!(h.length as usize, f.len());
            assert_eq!(h.message_id, 1);
            let expected_next = if i == 0 { first_inner } else { pt::NONE };
            assert_eq!(f[HEADER_LEN], expected_next);
            // The AAD is the IKE header, the SKF generic header and the numbering (RFC 7383).
            let s = sk();
            let aad = &f[..HEADER_LEN + SKF_HEADER_LEN];
            let iv: [u8; 8] = f[36..44].try_into().unwrap();
            assert!(s.open(&iv, aad, &f[44..]).is_ok());
            assert!(s.open(&iv, &f[..HEADER_LEN + 4], &f[44..]).is_err());
        }
    }

    #[test]
    fn small_message_is_one_sk_message() {
        let h = header(1);
        let p = auth_request(1, 200);
        let mut iv = 6;
        let out = encode_fragments(&h, &p, &sk(), &mut iv, 1280);
        assert_eq!(iv, 7);
        assert_eq!(
            out,
            vec![encode_encrypted(&h, &p, &sk(), 7u64.to_be_bytes())]
        );
        assert_eq!(fragment_info(&out[0]), None);
        assert_eq!(decode(&out[0], Some(&sk())).unwrap(), unfragmented(&h, &p));
    }

    #[test]
    fn fragments_only_above_the_limit() {
        let h = header(1);
        let p = auth_request(2, 700);
        let whole = encode_encrypted(&h, &p, &sk(), [0; 8]).len();
        let mut iv = 0;
        assert_eq!(encode_fragments(&h, &p, &sk(), &mut iv, whole).len(), 1);
        let frags = encode_fragments(&h, &p, &sk(), &mut iv, whole - 1);
        assert_eq!(frags.len(), 2);
        assert_eq!(iv, 3);
        check_shape(&frags, whole - 1, pt::IDI);
    }

    /// Every SK suite fragments and reassembles: each fragment within the size, each SKF
    /// plaintext padded to the cipher's block, a flipped octet in any fragment refused as an
    /// integrity failure, and the message the same as sent unfragmented.
    #[test]
    fn every_suite_fragments_and_reassembles() {
        use crate::ike::crypto::sk::tests::every_suite;
        let h = header(1);
        let p = auth_request(4, 700);
        for s in every_suite() {
            let mut iv = 0;
            let frags = encode_fragments(&h, &p, &s, &mut iv, 1280);
            assert!(frags.len() >= 3, "{s:?}");
            for f in &frags {
                assert!(f.len() <= 1280, "{s:?}: {}", f.len());
                let ct = f.len() - HEADER_LEN - SKF_HEADER_LEN - s.iv_len() - s.icv_len();
                assert_eq!(ct % s.block_len(), 0, "{s:?}");
            }
            let mut bad = frags[1].clone();
            let n = bad.len();
            bad[n - 20] ^= 1;
            let mut r = Reassembly::new(FragmentLimits::default());
            assert_eq!(
                r.add(&bad, &s),
                Err(FragmentError::Decode(DecodeError::Integrity))
            );
            let (last, rest) = frags.split_last().unwrap();
            for f in rest {
                assert_eq!(r.add(f, &s).unwrap(), None);
            }
            let m = r.add(last, &s).unwrap().expect("complete");
            let whole = decode(&encode_encrypted(&h, &p, &s, [9; 8]), Some(&s)).unwrap();
            assert_eq!(m, whole, "{s:?}");
        }
    }

    #[test]
    fn round_trip_one_two_five() {
        for (certs, want) in [(1, 1), (2, 2), (7, 5)] {
            let h = header(1);
            let p = auth_request(certs, 700);
            let mut iv = 100;
            let frags = encode_fragments(&h, &p, &sk(), &mut iv, 1280);
            assert_eq!(frags.len(), want, "{certs} certificates");
            assert_eq!(iv, 100 + want as u64);
            let m = if want == 1 {
                decode(&frags[0], Some(&sk())).unwrap()
            } else {
                check_shape(&frags, 1280, pt::IDI);
                let mut r = Reassembly::new(FragmentLimits::default());
                let m = feed(&mut r, &frags);
                assert_eq!(r.message_id(), Some(1));
                assert!(r.is_complete());
                m
            };
            assert_eq!(m, unfragmented(&h, &p));
        }
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let h = header(1);
        let p = auth_request(7, 700);
        let frags = encode_fragments(&h, &p, &sk(), &mut 0, 1280);
        assert_eq!(frags.len(), 5);
        let order = [4, 2, 4, 0, 2, 2, 3, 0, 1];
        let mut r = Reassembly::new(FragmentLimits::default());
        let s = sk();
        for &i in &order[..order.len() - 1] {
            assert_eq!(r.add(&frags[i], &s).unwrap(), None);
        }
        let m = r.add(&frags[1], &s).unwrap().unwrap();
        assert_eq!(m, unfragmented(&h, &p));
        assert_eq!(r.add(&frags[1], &s), Err(FragmentError::Complete));
    }

    #[test]
    fn tampered_fragment_changes_nothing() {
        let h = header(1);
        let p = auth_request(7, 700);
        let frags = encode_fragments(&h, &p, &sk(), &mut 0, 1280);
        let s = sk();
        let mut r = Reassembly::new(FragmentLimits::default());
        // Before anything is stored, a forgery fixes nothing (not even the message ID).
        let mut forged = frags[2].clone();
        forged[100] ^= 1;
        assert_eq!(
            r.add(&forged, &s),
            Err(FragmentError::Decode(DecodeError::Integrity))
        );
        assert_eq!(r.message_id(), None);
        for f in &frags[..2] {
            assert_eq!(r.add(f, &s).unwrap(), None);
        }
        // Tampered ciphertext, tampered numbering (AAD), tampered header (AAD).
        let mut numbering = frags[2].clone();
        numbering[HEADER_LEN + 7] = 9;
        // The forged numbering claims a higher total: it must not restart the reassembly.
        let mut flags_changed = frags[3].clone();
        flags_changed[19] ^= flags::VERSION;
        for bad in [&forged, &numbering] {
            assert_eq!(
                r.add(bad, &s),
                Err(FragmentError::Decode(DecodeError::Integrity))
            );
        }
        // Header fields outside the AAD check are refused before decryption.
        assert_eq!(r.add(&flags_changed, &s), Err(FragmentError::Mismatch));
        // The wrong key fails too.
        let other = SkCipher::new(EncrAlg::AesGcm16_128, &[0x43; 20]).unwrap();
        assert_eq!(
            r.add(&frags[2], &other),
            Err(FragmentError::Decode(DecodeError::Integrity))
        );
        assert_eq!(r.add(&frags[2], &s).unwrap(), None);
        assert_eq!(r.add(&frags[3], &s).unwrap(), None);
        let m = r.add(&frags[4], &s).unwrap().unwrap();
        assert_eq!(m, unfragmented(&h, &p));
    }

    #[test]
    fn other_messages_refused() {
        let s = sk();
        let p = auth_request(3, 700);
        let mine = encode_fragments(&header(1), &p, &s, &mut 0, 1280);
        let theirs = encode_fragments(&header(2), &p, &s, &mut 10, 1280);
        let mut r = Reassembly::new(FragmentLimits::default());
        assert_eq!(r.add(&mine[0], &s).unwrap(), None);
        assert_eq!(r.message_id(), Some(1));
        assert_eq!(r.add(&theirs[1], &s), Err(FragmentError::Mismatch));
        let whole = encode_encrypted(&header(1), &p, &s, [1; 8]);
        assert_eq!(r.add(&whole, &s), Err(FragmentError::NotFragment));
        assert_eq!(
            r.add(&whole[..20], &s),
            Err(FragmentError::Decode(DecodeError::Truncated))
        );
        assert!(feed(&mut r, &mine[1..]).encrypted);
    }

    #[test]
    fn limits() {
        let s = sk();
        let h = header(1);
        let p = auth_request(7, 700);
        let frags = encode_fragments(&h, &p, &s, &mut 0, 1280);
        assert_eq!(frags.len(), 5);

        let mut few = Reassembly::new(FragmentLimits {
            max_fragments: 4,
            max_octets: 64 * 1024,
        });
        assert_eq!(
            few.add(&frags[0], &s),
            Err(FragmentError::TooManyFragments { total: 5, max: 4 })
        );
        assert_eq!(few.message_id(), None);

        let content = |n: usize| -> usize {
            frags[..n]
                .iter()
                .map(|f| f.len() - fragment_overhead(&s))
                .sum()
        };
        let mut small = Reassembly::new(FragmentLimits {
            max_fragments: 64,
            max_octets: content(3),
        });
        for f in &frags[..3] {
            assert_eq!(small.add(f, &s).unwrap(), None);
        }
        assert_eq!(
            small.add(&frags[3], &s),
            Err(FragmentError::TooLarge {
                octets: content(4),
                max: content(3)
            })
        );
        // Duplicates of stored fragments still do not count twice.
        assert_eq!(small.add(&frags[1], &s).unwrap(), None);
        assert!(!small.is_complete());

        // 65535 tiny fragments would be within u16 but far beyond the default limit.
        let tiny = encode_fragments(&h, &p, &s, &mut 0, fragment_overhead(&s) + 1);
        assert!(tiny.len() > 64);
        assert!(tiny.iter().all(|f| f.len() == fragment_overhead(&s) + 1));
        let mut r = Reassembly::new(FragmentLimits::default());
        assert!(matches!(
            r.add(&tiny[0], &s),
            Err(FragmentError::TooManyFragments { max: 64, .. })
        ));
        let mut unbounded = Reassembly::new(FragmentLimits {
            max_fragments: u16::MAX,
            max_octets: MAX_MESSAGE,
        });
        assert_eq!(feed(&mut unbounded, &tiny), unfragmented(&h, &p));
    }

    #[test]
    fn total_fragments_restart_rule() {
        let s = sk();
        let h = header(1);
        let p = auth_request(3, 700);
        let coarse = encode_fragments(&h, &p, &s, &mut 0, 1280);
        let fine = encode_fragments(&h, &p, &s, &mut 100, 576);
        assert_eq!(coarse.len(), 2);
        assert!(fine.len() > coarse.len());
        check_shape(&fine, 576, pt::IDI);

        let mut r = Reassembly::new(FragmentLimits::default());
        assert_eq!(r.add(&coarse[1], &s).unwrap(), None);
        // A higher total restarts: coarse fragment 2 is forgotten.
        assert_eq!(r.add(&fine[1], &s).unwrap(), None);
        // A lower total is dropped.
        assert_eq!(
            r.add(&coarse[0], &s),
            Err(FragmentError::StaleTotal {
                total: 2,
                current: fine.len() as u16
            })
        );
        let m = feed(
            &mut r,
            &fine[2..]
                .iter()
                .chain(&fine[..1])
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(m, unfragmented(&h, &p));
    }

    #[test]
    fn fragment_info_rejects_non_fragments() {
        let s = sk();
        let p = auth_request(3, 700);
        let frags = encode_fragments(&header(7), &p, &s, &mut 0, 1280);
        let (h, n, t) = fragment_info(&frags[1]).unwrap();
        assert_eq!(
            (h.message_id, h.exchange, n, t),
            (7, exchange::IKE_AUTH, 2, 2)
        );
        assert!(h.from_initiator() && !h.is_response());
        let mut zero = frags[1].clone();
        zero[HEADER_LEN + 5] = 0;
        let mut beyond = frags[1].clone();
        beyond[HEADER_LEN + 5] = 3;
        let mut short = frags[1].clone();
        short[HEADER_LEN + 3] ^= 1;
        for bad in [&zero, &beyond, &short, &frags[1][..40].to_vec()] {
            assert_eq!(fragment_info(bad), None);
        }
        let mut r = Reassembly::new(FragmentLimits::default());
        assert_eq!(
            r.add(&zero, &s),
            Err(FragmentError::BadNumber {
                number: 0,
                total: 2
            })
        );
    }

    #[test]
    fn undecodable_content_finishes_the_reassembly() {
        let s = sk();
        // A single "fragment" whose content is not a payload chain.
        let mut h = header(1);
        h.next_payload = pt::SKF;
        let body = [0xffu8; 10];
        h.length = (fragment_overhead(&s) + body.len()) as u32;
        let mut msg = Vec::new();
        h.write(&mut msg);
        msg.extend_from_slice(&[pt::NOTIFY, 0]);
        msg.extend_from_slice(&((h.length as usize - HEADER_LEN) as u16).to_be_bytes());
        msg.extend_from_slice(&[0, 1, 0, 1]);
        let mut plain = body.to_vec();
        plain.push(0);
        let sealed = s.seal(&[5; 8], &msg, &plain);
        msg.extend_from_slice(&[5; 8]);
        msg.extend_from_slice(&sealed);
        let mut r = Reassembly::new(FragmentLimits::default());
        assert!(matches!(r.add(&msg, &s), Err(FragmentError::Decode(_))));
        assert!(r.is_complete());
        assert_eq!(r.add(&msg, &s), Err(FragmentError::Complete));
    }

    /// Three RSA-sized certificates (about 4 KB of CERT payloads) over an IPv6 minimum MTU path.
    #[test]
    fn three_certificate_ike_auth_at_1280() {
        let h = header(1);
        let p = auth_request(3, 1350);
        let cert_octets: usize = p
            .iter()
            .filter_map(|p| match p {
                Payload::Cert { data, .. } => Some(data.len() + 5),
                _ => None,
            })
            .sum();
        assert!(cert_octets >= 4000);
        let mut iv = 0;
        let frags = encode_fragments(&h, &p, &sk(), &mut iv, 1280);
        assert!(frags.len() >= 4, "{} fragments", frags.len());
        check_shape(&frags, 1280, pt::IDI);
        let ivs: std::collections::BTreeSet<&[u8]> = frags.iter().map(|f| &f[36..44]).collect();
        assert_eq!(ivs.len(), frags.len());
        let mut r = Reassembly::new(FragmentLimits::default());
        let mut reversed = frags.clone();
        reversed.reverse();
        assert_eq!(feed(&mut r, &reversed), unfragmented(&h, &p));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn add_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut r = Reassembly::new(FragmentLimits::default());
            let _ = r.add(&data, &sk());
            let _ = fragment_info(&data);
        }

        #[test]
        fn add_never_panics_on_fragment_headers(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            number in any::<u16>(),
            total in any::<u16>(),
            next in any::<u8>(),
        ) {
            let mut h = header(1);
            h.next_payload = pt::SKF;
            h.length = (HEADER_LEN + SKF_HEADER_LEN + body.len()) as u32;
            let mut d = Vec::new();
            h.write(&mut d);
            d.extend_from_slice(&[next, 0]);
            d.extend_from_slice(&((SKF_HEADER_LEN + body.len()) as u16).to_be_bytes());
            d.extend_from_slice(&number.to_be_bytes());
            d.extend_from_slice(&total.to_be_bytes());
            d.extend_from_slice(&body);
            let mut r = Reassembly::new(FragmentLimits::default());
            prop_assert!(r.add(&d, &sk()).is_err());
            prop_assert_eq!(r.message_id(), None);
        }

        #[test]
        fn corrupted_fragments_are_refused(
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            which in any::<prop::sample::Index>(),
        ) {
            let s = sk();
            let frags = encode_fragments(&header(1), &auth_request(3, 700), &s, &mut 0, 900);
            let mut bad = which.get(&frags).clone();
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
            let mut r = Reassembly::new(FragmentLimits::default());
            prop_assert!(r.add(&bad, &s).is_err());
            prop_assert_eq!(r.message_id(), None);
        }

        #[test]
        fn round_trip_any_size(
            certs in 0usize..5,
            cert_octets in 0usize..1500,
            max in 100usize..1500,
        ) {
            let s = sk();
            let h = header(1);
            let p = auth_request(certs, cert_octets);
            let mut iv = 0;
            let frags = encode_fragments(&h, &p, &s, &mut iv, max);
            prop_assert_eq!(iv, frags.len() as u64);
            prop_assert!(frags.iter().all(|f| f.len() <= max));
            let m = if frags.len() == 1 {
                decode(&frags[0], Some(&s)).unwrap()
            } else {
                let mut r = Reassembly::new(FragmentLimits { max_fragments: 1024, max_octets: MAX_MESSAGE });
                feed(&mut r, &frags)
            };
            prop_assert_eq!(m, unfragmented(&h, &p));
        }
    }
}
