//! The IKEv2 message codec (RFC 7296 §3): the header, the payload chain, and the SK payload
//! (RFC 5282 AEAD). Decoding is strict about lengths and counts and never panics: every
//! datagram from the network goes through [`decode`].

pub mod consts;
pub mod fragment;
pub mod payload;

use consts::exchange;
use consts::payload_type as pt;
pub use consts::{ExchangeType, NotifyType};
pub use payload::{ConfigAttribute, Delete, Notify, Payload, Proposal, TrafficSelector, Transform};
use zeroize::Zeroizing;

/// The IKE header length.
pub const HEADER_LEN: usize = 28;
/// The largest message esprit accepts (RFC 7296 §2: implementations need not take more than
/// about 64 KB; UDP caps it anyway).
pub const MAX_MESSAGE: usize = 65_535;
/// Most payloads accepted in one message (outer and inner together).
pub const MAX_PAYLOADS: usize = 128;

/// The IKE header (§3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI (0 in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Next payload type (filled in by the encoder).
    pub next_payload: u8,
    /// Major version (2) in the high nibble, minor in the low.
    pub version: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags (initiator, version, response).
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
    /// Total message length (filled in by the encoder).
    pub length: u32,
}

impl Header {
    /// A header for a new message of IKEv2.0.
    pub fn new(spi_i: u64, spi_r: u64, exchange: ExchangeType, flags: u8, message_id: u32) -> Self {
        Header {
            spi_i,
            spi_r,
            next_payload: 0,
            version: 0x20,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }

    /// Parse the first 28 octets of a datagram; checks the length field against the datagram.
    pub fn parse(d: &[u8]) -> Result<Header, DecodeError> {
        if d.len() < HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let h = Header {
            spi_i: u64_at(0),
            spi_r: u64_at(8),
            next_payload: d[16],
            version: d[17],
            exchange: ExchangeType(d[18]),
            flags: d[19],
            message_id: u32::from_be_bytes([d[20], d[21], d[22], d[23]]),
            length: u32::from_be_bytes([d[24], d[25], d[26], d[27]]),
        };
        if h.version >> 4 != 2 {
            return Err(DecodeError::UnsupportedVersion(h.version));
        }
        if h.length as usize != d.len() {
            return Err(DecodeError::LengthMismatch {
                header: h.length,
                datagram: d.len(),
            });
        }
        Ok(h)
    }

    /// Whether the Response flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & consts::flags::RESPONSE != 0
    }

    /// Whether the Initiator flag is set (the sender is the IKE SA's original initiator).
    pub fn from_initiator(&self) -> bool {
        self.flags & consts::flags::INITIATOR != 0
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// A decoded message: its header and all payloads (those inside SK in order, after any outside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The payloads.
    pub payloads: Vec<Payload>,
    /// Whether the payloads came from inside an SK payload (integrity-protected).
    pub encrypted: bool,
    /// For an IKE_INTERMEDIATE message (RFC 9242): the type of the first payload inside the SK
    /// payload and the decrypted payload octets as received (reassembled if fragmented), over
    /// which IntAuth is computed. None for every other exchange.
    pub sk_inner: Option<(u8, Vec<u8>)>,
}

impl Message {
    /// Notifies of a given type.
    pub fn notifies(&self, ntype: NotifyType) -> impl Iterator<Item = &Notify> {
        self.payloads.iter().filter_map(move |p| match p {
            Payload::Notify(n) if n.ntype == ntype => Some(n),
            _ => None,
        })
    }

    /// The first notify of a given type.
    pub fn notify(&self, ntype: NotifyType) -> Option<&Notify> {
        self.notifies(ntype).next()
    }

    /// The first error notify (type below 16384), if any.
    pub fn error_notify(&self) -> Option<&Notify> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if n.ntype.is_error() => Some(n),
            _ => None,
        })
    }

    /// The SA payload's proposals.
    pub fn sa(&self) -> Option<&Vec<Proposal>> {
        self.find(|p| {
            if let Payload::Sa(s) = p {
                Some(s)
            } else {
                None
            }
        })
    }

    /// The KE payload: group and public value.
    pub fn ke(&self) -> Option<(u16, &Vec<u8>)> {
        self.find(|p| {
            if let Payload::Ke { group, data } = p {
                Some((*group, data))
            } else {
                None
            }
        })
    }

    /// The Nonce payload.
    pub fn nonce(&self) -> Option<&Vec<u8>> {
        self.find(|p| {
            if let Payload::Nonce(n) = p {
                Some(n)
            } else {
                None
            }
        })
    }

    /// The IDi payload: ID type and data.
    pub fn id_i(&self) -> Option<(u8, &Vec<u8>)> {
        self.find(|p| {
            if let Payload::IdI { id_type, data } = p {
                Some((*id_type, data))
            } else {
                None
            }
        })
    }

    /// The IDr payload: ID type and data.
    pub fn id_r(&self) -> Option<(u8, &Vec<u8>)> {
        self.find(|p| {
            if let Payload::IdR { id_type, data } = p {
                Some((*id_type, data))
            } else {
                None
            }
        })
    }

    /// The TSi payload's selectors.
    pub fn ts_i(&self) -> Option<&Vec<TrafficSelector>> {
        self.find(|p| {
            if let Payload::TsI(t) = p {
                Some(t)
            } else {
                None
            }
        })
    }

    /// The TSr payload's selectors.
    pub fn ts_r(&self) -> Option<&Vec<TrafficSelector>> {
        self.find(|p| {
            if let Payload::TsR(t) = p {
                Some(t)
            } else {
                None
            }
        })
    }

    /// The first payload of a type, by a selector closure.
    pub fn find<'a, T>(&'a self, f: impl FnMut(&'a Payload) -> Option<T>) -> Option<T> {
        self.payloads.iter().find_map(f)
    }
}

/// Why a datagram is not an acceptable IKEv2 message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header, or a payload runs past the end.
    #[error("truncated message")]
    Truncated,
    /// Major version other than 2.
    #[error("unsupported IKE version {0:#04x}")]
    UnsupportedVersion(u8),
    /// Header length differs from the datagram's.
    #[error("header says {header} octets, datagram has {datagram}")]
    LengthMismatch {
        /// Length field.
        header: u32,
        /// Datagram length.
        datagram: usize,
    },
    /// A payload's body breaks its format.
    #[error("malformed payload {ptype}: {what}")]
    Malformed {
        /// Payload type.
        ptype: u8,
        /// What is wrong.
        what: &'static str,
    },
    /// A payload with the critical bit set whose type esprit does not know (§2.5).
    #[error("unsupported critical payload {0}")]
    UnsupportedCritical(u8),
    /// More payloads than esprit accepts in one message.
    #[error("too many payloads")]
    TooManyPayloads,
    /// An SK payload that is not the last payload.
    #[error("SK payload is not the last payload")]
    SkNotLast,
    /// An SK payload arrived but no keys exist yet (or fragments arrived where not negotiated).
    #[error("encrypted payload without keys")]
    NoKeys,
    /// The SK payload's ICV did not verify.
    #[error("integrity check failed")]
    Integrity,
    /// The decrypted padding is inconsistent.
    #[error("bad padding in SK payload")]
    BadPadding,
    /// An SKF (fragment) payload: the caller reassembles.
    #[error("IKE fragment")]
    Fragment,
    /// The payloads inside an SK payload whose ICV verified break their format (the error
    /// inside; e.g. an SA payload without proposals, RFC 7296 §3.3): the peer sent them, so a
    /// request is answered with INVALID_SYNTAX (§3.10.1).
    #[error("inside the SK payload: {0}")]
    InvalidInSk(Box<DecodeError>),
}

/// The SK payload's cipher (RFC 7296 §3.14): an AEAD (RFC 5282, RFC 7634) or AES-CBC with
/// HMAC-SHA2 (RFC 3602, RFC 4868). The crypto module's cipher implements it.
pub trait SkAead {
    /// Octets of the IV at the start of the payload.
    fn iv_len(&self) -> usize {
        8
    }
    /// Octets of the integrity check value.
    fn icv_len(&self) -> usize {
        16
    }
    /// What the plaintext with its padding and Pad Length octet must be a multiple of.
    fn block_len(&self) -> usize {
        1
    }
    /// The IV ([`SkAead::iv_len`] octets) of the message numbered `counter`, a per-SA counter
    /// that never repeats under one key.
    fn iv(&self, counter: [u8; 8]) -> Vec<u8> {
        counter.to_vec()
    }
    /// Encrypt `plaintext` (padded to [`SkAead::block_len`]), returning ciphertext and ICV.
    fn seal(&self, iv: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8>;
    /// Verify the ICV, then decrypt: [`DecodeError::Integrity`] if the ICV does not verify,
    /// [`DecodeError::BadPadding`] if a good ICV covers a ciphertext that cannot be decrypted
    /// (not a whole number of blocks).
    fn open(
        &self,
        iv: &[u8],
        aad: &[u8],
        ciphertext_and_icv: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecodeError>;
}

impl SkAead for crate::ike::crypto::sk::SkCipher {
    fn iv_len(&self) -> usize {
        crate::ike::crypto::sk::SkCipher::iv_len(self)
    }
    fn icv_len(&self) -> usize {
        crate::ike::crypto::sk::SkCipher::icv_len(self)
    }
    fn block_len(&self) -> usize {
        crate::ike::crypto::sk::SkCipher::block_len(self)
    }
    fn iv(&self, counter: [u8; 8]) -> Vec<u8> {
        crate::ike::crypto::sk::SkCipher::iv(self, counter)
    }
    fn seal(&self, iv: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        crate::ike::crypto::sk::SkCipher::seal(self, iv, aad, plaintext)
    }
    fn open(&self, iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
        use crate::ike::crypto::CryptoError;
        crate::ike::crypto::sk::SkCipher::open(self, iv, aad, ct).map_err(|e| match e {
            CryptoError::Padding => DecodeError::BadPadding,
            _ => DecodeError::Integrity,
        })
    }
}

/// The padded plaintext of an SK or SKF payload: `content`, zero padding to make the whole a
/// multiple of `block`, and the Pad Length octet.
pub(crate) fn pad_plaintext(content: &[u8], block: usize) -> Zeroizing<Vec<u8>> {
    let pad = padding_len(content.len(), block);
    let mut plain = Zeroizing::new(Vec::with_capacity(content.len() + pad + 1));
    plain.extend_from_slice(content);
    plain.resize(content.len() + pad, 0);
    // `block` is at most 16, so the padding fits one octet.
    plain.push(u8::try_from(pad).unwrap_or(0));
    plain
}

/// Octets of padding after `content_len` octets so that content, padding and Pad Length fill
/// whole blocks.
pub(crate) fn padding_len(content_len: usize, block: usize) -> usize {
    let block = block.max(1);
    (block - (content_len + 1) % block) % block
}

/// Split decrypted SK content from its padding: the Pad Length octet must leave room for itself
/// and the padding it announces.
pub(crate) fn unpad(plain: &[u8]) -> Result<&[u8], DecodeError> {
    let pad = usize::from(*plain.last().ok_or(DecodeError::BadPadding)?);
    if pad + 1 > plain.len() {
        return Err(DecodeError::BadPadding);
    }
    Ok(&plain[..plain.len() - 1 - pad])
}

/// Walk a payload chain starting with type `next` over `d`, appending decoded payloads.
/// Returns the offset of an SK/SKF payload if the chain reaches one (it must be last).
fn walk(
    mut next: u8,
    d: &[u8],
    base: usize,
    out: &mut Vec<Payload>,
) -> Result<Option<(u8, usize)>, DecodeError> {
    let mut off = base;
    while next != pt::NONE {
        if out.len() >= MAX_PAYLOADS {
            return Err(DecodeError::TooManyPayloads);
        }
        if d.len() < off + 4 {
            return Err(DecodeError::Truncated);
        }
        let this = next;
        next = d[off];
        let critical = d[off + 1] & 0x80 != 0;
        let len = usize::from(u16::from_be_bytes([d[off + 2], d[off + 3]]));
        if len < 4 || off + len > d.len() {
            return Err(DecodeError::Truncated);
        }
        if this == pt::SK || this == pt::SKF {
            if off + len != d.len() {
                return Err(DecodeError::SkNotLast);
            }
            return Ok(Some((this, off)));
        }
        let p = Payload::decode_body(this, critical, &d[off + 4..off + len])?;
        if let Payload::Other {
            critical: true,
            ptype,
            ..
        } = p
        {
            return Err(DecodeError::UnsupportedCritical(ptype));
        }
        out.push(p);
        off += len;
    }
    if off != d.len() {
        return Err(DecodeError::Malformed {
            ptype: 0,
            what: "octets after the last payload",
        });
    }
    Ok(None)
}

/// Decode a datagram. `sk` is the peer's SK cipher if the IKE SA has keys; a message with an SK
/// payload and no cipher is [`DecodeError::NoKeys`]; an SKF payload is [`DecodeError::Fragment`].
pub fn decode(d: &[u8], sk: Option<&dyn SkAead>) -> Result<Message, DecodeError> {
    if d.len() > MAX_MESSAGE {
        return Err(DecodeError::Truncated);
    }
    let header = Header::parse(d)?;
    let mut payloads = Vec::new();
    let Some((kind, off)) = walk(header.next_payload, d, HEADER_LEN, &mut payloads)? else {
        return Ok(Message {
            header,
            payloads,
            encrypted: false,
            sk_inner: None,
        });
    };
    if kind == pt::SKF {
        return Err(DecodeError::Fragment);
    }
    let sk = sk.ok_or(DecodeError::NoKeys)?;
    let inner_next = d[off];
    let body = &d[off + 4..];
    let iv_len = sk.iv_len();
    if body.len() < iv_len + sk.icv_len() + 1 {
        return Err(DecodeError::Malformed {
            ptype: pt::SK,
            what: "shorter than IV, padding length and ICV",
        });
    }
    let plain = sk.open(&body[..iv_len], &d[..off + 4], &body[iv_len..])?;
    let inner = unpad(&plain)?;
    walk(inner_next, inner, 0, &mut payloads)
        .and_then(|r| match r {
            None => Ok(()),
            Some(_) => Err(DecodeError::Malformed {
                ptype: pt::SK,
                what: "SK inside SK",
            }),
        })
        .map_err(|e| match e {
            DecodeError::UnsupportedCritical(_) => e,
            e => DecodeError::InvalidInSk(Box::new(e)),
        })?;
    let sk_inner = (header.exchange == exchange::IKE_INTERMEDIATE && off == HEADER_LEN)
        .then(|| (inner_next, inner.to_vec()));
    Ok(Message {
        header,
        payloads,
        encrypted: true,
        sk_inner,
    })
}

/// The payload chain of `payloads` as it travels inside an SK payload: the first payload's
/// type and the octets.
pub fn inner_octets(payloads: &[Payload]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    let first = chain(payloads, &mut out);
    (first, out)
}

/// The octets RFC 9242 §3.3.2 authenticates of an IKE_INTERMEDIATE message whose SK payload
/// (the only payload) holds the chain `inner` starting with type `first`: the header and the
/// Encrypted payload's generic header with the lengths as if the message were neither encrypted
/// nor fragmented (no IV, padding or ICV), then the inner payloads (IntAuth_A | IntAuth_P).
pub fn intauth_octets(header: &Header, first: u8, inner: &[u8]) -> Vec<u8> {
    let sk_len = 4 + inner.len();
    let mut h = *header;
    h.next_payload = pt::SK;
    h.length = u32::try_from(HEADER_LEN + sk_len).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + sk_len);
    h.write(&mut out);
    out.push(first);
    out.push(0);
    out.extend_from_slice(&u16::try_from(sk_len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(inner);
    out
}

/// Append a payload chain (generic headers linked) to `out`; returns the first payload's type.
fn chain(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let start = out.len();
        out.push(payloads.get(i + 1).map_or(pt::NONE, Payload::ptype));
        out.push(match p {
            Payload::Other { critical: true, .. } => 0x80,
            _ => 0,
        });
        out.extend_from_slice(&[0, 0]);
        p.encode_body(out);
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    payloads.first().map_or(pt::NONE, Payload::ptype)
}

/// Encode an unencrypted message (IKE_SA_INIT, or a notify outside an IKE SA).
pub fn encode_plain(header: &Header, payloads: &[Payload]) -> Vec<u8> {
    let mut body = Vec::new();
    let first = chain(payloads, &mut body);
    let mut h = *header;
    h.next_payload = first;
    h.length = (HEADER_LEN + body.len()) as u32;
    let mut out = Vec::with_capacity(h.length as usize);
    h.write(&mut out);
    out.extend_from_slice(&body);
    out
}

/// Encode a message whose payloads all travel inside one SK payload. `counter` must never
/// repeat under the same key (the caller uses a per-SA counter); the IV is [`SkAead::iv`] of it.
pub fn encode_encrypted(
    header: &Header,
    payloads: &[Payload],
    sk: &dyn SkAead,
    counter: [u8; 8],
) -> Vec<u8> {
    let mut content = Zeroizing::new(Vec::new());
    let first = chain(payloads, &mut content);
    let plain = pad_plaintext(&content, sk.block_len());
    let iv = sk.iv(counter);
    let sk_len = 4 + iv.len() + plain.len() + sk.icv_len();
    let mut h = *header;
    h.next_payload = pt::SK;
    h.length = (HEADER_LEN + sk_len) as u32;
    let mut out = Vec::with_capacity(h.length as usize);
    h.write(&mut out);
    out.push(first);
    out.push(0);
    out.extend_from_slice(&(sk_len as u16).to_be_bytes());
    let sealed = sk.seal(&iv, &out, &plain);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&sealed);
    out
}

#[cfg(test)]
mod tests;
