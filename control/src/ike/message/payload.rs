//! IKEv2 payloads (RFC 7296 §3.3–3.16) as values, with their body encoding and strict decoding.

use super::consts::{payload_type as pt, NotifyType, ATTR_KEY_LENGTH};
use super::DecodeError;
use std::net::IpAddr;

/// One transform of a proposal (§3.3.2); only the Key Length attribute is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    /// Transform type (ENCR, PRF, INTEG, KE, ESN).
    pub ttype: u8,
    /// Transform ID.
    pub id: u16,
    /// The Key Length attribute in bits, if present.
    pub key_len: Option<u16>,
}

/// One proposal of an SA payload (§3.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number (1 for the first, consecutive).
    pub num: u8,
    /// Protocol ID (IKE, AH, ESP).
    pub protocol: u8,
    /// The sender's SPI: empty in IKE_SA_INIT, 8 octets for an IKE rekey, 4 for ESP.
    pub spi: Vec<u8>,
    /// Transforms, in the sender's order of preference within each type.
    pub transforms: Vec<Transform>,
}

/// A Notify payload (§3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// Protocol ID (0 when it concerns the IKE SA and carries no SPI).
    pub protocol: u8,
    /// SPI, if any.
    pub spi: Vec<u8>,
    /// Notify message type.
    pub ntype: NotifyType,
    /// Notification data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify about the IKE SA (no protocol, no SPI).
    pub fn new(ntype: NotifyType, data: Vec<u8>) -> Self {
        Notify {
            protocol: 0,
            spi: Vec::new(),
            ntype,
            data,
        }
    }
}

/// A Delete payload (§3.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// Protocol ID: IKE (no SPIs) or ESP/AH (4-octet SPIs).
    pub protocol: u8,
    /// SPI size in octets.
    pub spi_size: u8,
    /// SPIs to delete.
    pub spis: Vec<Vec<u8>>,
}

/// One traffic selector (§3.13.1): an address range, a protocol and a port range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// IP protocol (0 = any).
    pub protocol: u8,
    /// First port (or ICMP type/code packed).
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: IpAddr,
    /// Last address (same family as `start`).
    pub end: IpAddr,
}

/// A configuration attribute of a CP payload (§3.15.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigAttribute {
    /// Attribute type (15 bits).
    pub atype: u16,
    /// Value.
    pub value: Vec<u8>,
}

/// A payload, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// SA: proposals.
    Sa(Vec<Proposal>),
    /// KE: group and public value.
    Ke {
        /// Diffie-Hellman group number.
        group: u16,
        /// Public value.
        data: Vec<u8>,
    },
    /// IDi: type and data.
    IdI {
        /// ID type.
        id_type: u8,
        /// Identification data.
        data: Vec<u8>,
    },
    /// IDr: type and data.
    IdR {
        /// ID type.
        id_type: u8,
        /// Identification data.
        data: Vec<u8>,
    },
    /// CERT.
    Cert {
        /// Certificate encoding.
        encoding: u8,
        /// Certificate data.
        data: Vec<u8>,
    },
    /// CERTREQ.
    CertReq {
        /// Certificate encoding.
        encoding: u8,
        /// Concatenated SHA-1 hashes of trusted CAs' public keys.
        data: Vec<u8>,
    },
    /// AUTH.
    Auth {
        /// Authentication method.
        method: u8,
        /// Authentication data.
        data: Vec<u8>,
    },
    /// Nonce (16 to 256 octets).
    Nonce(Vec<u8>),
    /// Notify.
    Notify(Notify),
    /// Delete.
    Delete(Delete),
    /// Vendor ID.
    Vendor(Vec<u8>),
    /// TSi.
    TsI(Vec<TrafficSelector>),
    /// TSr.
    TsR(Vec<TrafficSelector>),
    /// CP.
    Cp {
        /// CFG type (request, reply, set, ack).
        cfg_type: u8,
        /// Attributes.
        attributes: Vec<ConfigAttribute>,
    },
    /// A payload esprit does not interpret (EAP, unknown non-critical types), kept as octets.
    Other {
        /// Payload type.
        ptype: u8,
        /// The critical bit as received.
        critical: bool,
        /// Body.
        data: Vec<u8>,
    },
}

/// Most traffic selectors accepted in one payload (bounds work on hostile input).
pub const MAX_TS: usize = 64;
/// Most proposals accepted in one SA payload.
pub const MAX_PROPOSALS: usize = 64;
/// Most transforms accepted in one proposal.
pub const MAX_TRANSFORMS: usize = 64;

impl Payload {
    /// The payload type number.
    pub fn ptype(&self) -> u8 {
        match self {
            Payload::Sa(_) => pt::SA,
            Payload::Ke { .. } => pt::KE,
            Payload::IdI { .. } => pt::IDI,
            Payload::IdR { .. } => pt::IDR,
            Payload::Cert { .. } => pt::CERT,
            Payload::CertReq { .. } => pt::CERTREQ,
            Payload::Auth { .. } => pt::AUTH,
            Payload::Nonce(_) => pt::NONCE,
            Payload::Notify(_) => pt::NOTIFY,
            Payload::Delete(_) => pt::DELETE,
            Payload::Vendor(_) => pt::VENDOR,
            Payload::TsI(_) => pt::TSI,
            Payload::TsR(_) => pt::TSR,
            Payload::Cp { .. } => pt::CP,
            Payload::Other { ptype, .. } => *ptype,
        }
    }

    /// Append the body (everything after the generic payload header).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(props) => {
                for (i, p) in props.iter().enumerate() {
                    let start = out.len();
                    out.push(if i + 1 == props.len() { 0 } else { 2 });
                    out.push(0);
                    out.extend_from_slice(&[0, 0]);
                    out.push(p.num);
                    out.push(p.protocol);
                    out.push(p.spi.len() as u8);
                    out.push(p.transforms.len() as u8);
                    out.extend_from_slice(&p.spi);
                    for (j, t) in p.transforms.iter().enumerate() {
                        out.push(if j + 1 == p.transforms.len() { 0 } else { 3 });
                        out.push(0);
                        let len: u16 = if t.key_len.is_some() { 12 } else { 8 };
                        out.extend_from_slice(&len.to_be_bytes());
                        out.push(t.ttype);
                        out.push(0);
                        out.extend_from_slice(&t.id.to_be_bytes());
                        if let Some(k) = t.key_len {
                            out.extend_from_slice(&(0x8000 | ATTR_KEY_LENGTH).to_be_bytes());
                            out.extend_from_slice(&k.to_be_bytes());
                        }
                    }
                    let plen = (out.len() - start) as u16;
                    out[start + 2..start + 4].copy_from_slice(&plen.to_be_bytes());
                }
            }
            Payload::Ke { group, data } => {
                out.extend_from_slice(&group.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(data);
            }
            Payload::IdI { id_type, data } | Payload::IdR { id_type, data } => {
                out.extend_from_slice(&[*id_type, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
                out.push(*encoding);
                out.extend_from_slice(data);
            }
            Payload::Auth { method, data } => {
                out.extend_from_slice(&[*method, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Nonce(d) | Payload::Vendor(d) | Payload::Other { data: d, .. } => {
                out.extend_from_slice(d)
            }
            Payload::Notify(n) => {
                out.push(n.protocol);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.ntype.0.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => {
                out.push(d.protocol);
                out.push(d.spi_size);
                out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
                for s in &d.spis {
                    out.extend_from_slice(s);
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                out.push(ts.len() as u8);
                out.extend_from_slice(&[0, 0, 0]);
                for t in ts {
                    let (ty, len): (u8, u16) = match t.start {
                        IpAddr::V4(_) => (super::consts::ts_type::IPV4_ADDR_RANGE, 16),
                        IpAddr::V6(_) => (super::consts::ts_type::IPV6_ADDR_RANGE, 40),
                    };
                    out.push(ty);
                    out.push(t.protocol);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&t.start_port.to_be_bytes());
                    out.extend_from_slice(&t.end_port.to_be_bytes());
                    for a in [t.start, t.end] {
                        match a {
                            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                        }
                    }
                }
            }
            Payload::Cp {
                cfg_type,
                attributes,
            } => {
                out.extend_from_slice(&[*cfg_type, 0, 0, 0]);
                for a in attributes {
                    out.extend_from_slice(&(a.atype & 0x7fff).to_be_bytes());
                    out.extend_from_slice(&(a.value.len() as u16).to_be_bytes());
                    out.extend_from_slice(&a.value);
                }
            }
        }
    }

    /// Decode the body of a payload of type `ptype`. Unknown types come back as `Other`; the
    /// caller decides about the critical bit.
    pub fn decode_body(ptype: u8, critical: bool, b: &[u8]) -> Result<Payload, DecodeError> {
        let short = |min: usize| {
            if b.len() < min {
                Err(DecodeError::Malformed {
                    ptype,
                    what: "body too short",
                })
            } else {
                Ok(())
            }
        };
        Ok(match ptype {
            pt::SA => Payload::Sa(decode_proposals(b)?),
            pt::KE => {
                short(4)?;
                Payload::Ke {
                    group: u16::from_be_bytes([b[0], b[1]]),
                    data: b[4..].to_vec(),
                }
            }
            pt::IDI | pt::IDR => {
                short(5)?;
                let (id_type, data) = (b[0], b[4..].to_vec());
                if ptype == pt::IDI {
                    Payload::IdI { id_type, data }
                } else {
                    Payload::IdR { id_type, data }
                }
            }
            pt::CERT | pt::CERTREQ => {
                short(1)?;
                let (encoding, data) = (b[0], b[1..].to_vec());
                if ptype == pt::CERT {
                    Payload::Cert { encoding, data }
                } else {
                    Payload::CertReq { encoding, data }
                }
            }
            pt::AUTH => {
                short(5)?;
                Payload::Auth {
                    method: b[0],
                    data: b[4..].to_vec(),
                }
            }
            pt::NONCE => {
                if !(16..=256).contains(&b.len()) {
                    return Err(DecodeError::Malformed {
                        ptype,
                        what: "nonce must be 16 to 256 octets",
                    });
                }
                Payload::Nonce(b.to_vec())
            }
            pt::NOTIFY => {
                short(4)?;
                let spi_len = usize::from(b[1]);
                if b.len() < 4 + spi_len {
                    return Err(DecodeError::Malformed {
                        ptype,
                        what: "SPI beyond the payload",
                    });
                }
                Payload::Notify(Notify {
                    protocol: b[0],
                    spi: b[4..4 + spi_len].to_vec(),
                    ntype: NotifyType(u16::from_be_bytes([b[2], b[3]])),
                    data: b[4 + spi_len..].to_vec(),
                })
            }
            pt::DELETE => {
                short(4)?;
                let (protocol, spi_size) = (b[0], b[1]);
                let n = usize::from(u16::from_be_bytes([b[2], b[3]]));
                let body = &b[4..];
                if body.len() != n * usize::from(spi_size) || (spi_size == 0 && n != 0) {
                    return Err(DecodeError::Malformed {
                        ptype,
                        what: "SPI count does not match the length",
                    });
                }
                let spis = if spi_size == 0 {
                    Vec::new()
                } else {
                    body.chunks(usize::from(spi_size))
                        .map(<[u8]>::to_vec)
                        .collect()
                };
                Payload::Delete(Delete {
                    protocol,
                    spi_size,
                    spis,
                })
            }
            pt::VENDOR => Payload::Vendor(b.to_vec()),
            pt::TSI | pt::TSR => {
                let ts = decode_ts(b)?;
                if ptype == pt::TSI {
                    Payload::TsI(ts)
                } else {
                    Payload::TsR(ts)
                }
            }
            pt::CP => {
                short(4)?;
                let mut attributes = Vec::new();
                let mut r = &b[4..];
                while !r.is_empty() {
                    if r.len() < 4 {
                        return Err(DecodeError::Malformed {
                            ptype,
                            what: "truncated attribute",
                        });
                    }
                    let atype = u16::from_be_bytes([r[0], r[1]]) & 0x7fff;
                    let len = usize::from(u16::from_be_bytes([r[2], r[3]]));
                    if r.len() < 4 + len || attributes.len() >= 64 {
                        return Err(DecodeError::Malformed {
                            ptype,
                            what: "attribute beyond the payload",
                        });
                    }
                    attributes.push(ConfigAttribute {
                        atype,
                        value: r[4..4 + len].to_vec(),
                    });
                    r = &r[4 + len..];
                }
                Payload::Cp {
                    cfg_type: b[0],
                    attributes,
                }
            }
            _ => Payload::Other {
                ptype,
                critical,
                data: b.to_vec(),
            },
        })
    }
}

fn decode_proposals(mut b: &[u8]) -> Result<Vec<Proposal>, DecodeError> {
    let bad = |what| DecodeError::Malformed {
        ptype: pt::SA,
        what,
    };
    let mut out = Vec::new();
    loop {
        if b.len() < 8 {
            return Err(bad("truncated proposal"));
        }
        let last = b[0];
        let plen = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if plen < 8 || plen > b.len() {
            return Err(bad("proposal length out of bounds"));
        }
        let (num, protocol, spi_size, ntrans) = (b[4], b[5], usize::from(b[6]), usize::from(b[7]));
        let p = &b[..plen];
        if 8 + spi_size > plen {
            return Err(bad("proposal SPI beyond the proposal"));
        }
        let spi = p[8..8 + spi_size].to_vec();
        let mut t = &p[8 + spi_size..];
        let mut transforms = Vec::with_capacity(ntrans.min(MAX_TRANSFORMS));
        for i in 0..ntrans {
            if t.len() < 8 {
                return Err(bad("truncated transform"));
            }
            let tlast = t[0];
            let tlen = usize::from(u16::from_be_bytes([t[2], t[3]]));
            if tlen < 8 || tlen > t.len() {
                return Err(bad("transform length out of bounds"));
            }
            if (tlast == 0) != (i + 1 == ntrans) || (tlast != 0 && tlast != 3) {
                return Err(bad(
                    "transform count does not match the last-transform marks",
                ));
            }
            let mut key_len = None;
            let mut attrs = &t[8..tlen];
            while !attrs.is_empty() {
                if attrs.len() < 4 {
                    return Err(bad("truncated transform attribute"));
                }
                let af = u16::from_be_bytes([attrs[0], attrs[1]]);
                if af & 0x8000 != 0 {
                    let v = u16::from_be_bytes([attrs[2], attrs[3]]);
                    if af & 0x7fff == ATTR_KEY_LENGTH {
                        key_len = Some(v);
                    } else {
                        // RFC 7296 §3.3.6: a transform with an unknown attribute is unusable.
                        key_len = Some(0);
                    }
                    attrs = &attrs[4..];
                } else {
                    let len = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
                    if attrs.len() < 4 + len {
                        return Err(bad("transform attribute beyond the transform"));
                    }
                    key_len = Some(0);
                    attrs = &attrs[4 + len..];
                }
            }
            if transforms.len() < MAX_TRANSFORMS {
                transforms.push(Transform {
                    ttype: t[4],
                    id: u16::from_be_bytes([t[6], t[7]]),
                    key_len,
                });
            }
            t = &t[tlen..];
        }
        if !t.is_empty() {
            return Err(bad("octets after the last transform"));
        }
        if out.len() < MAX_PROPOSALS {
            out.push(Proposal {
                num,
                protocol,
                spi,
                transforms,
            });
        }
        b = &b[plen..];
        match (last, b.is_empty()) {
            (0, true) => return Ok(out),
            (2, false) => continue,
            _ => return Err(bad("proposal count does not match the last-proposal marks")),
        }
    }
}

fn decode_ts(b: &[u8]) -> Result<Vec<TrafficSelector>, DecodeError> {
    let bad = |what| DecodeError::Malformed {
        ptype: pt::TSI,
        what,
    };
    if b.len() < 4 {
        return Err(bad("truncated traffic selector payload"));
    }
    let n = usize::from(b[0]);
    if n == 0 || n > MAX_TS {
        return Err(bad("traffic selector count out of range"));
    }
    let mut r = &b[4..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if r.len() < 8 {
            return Err(bad("truncated traffic selector"));
        }
        let (ty, protocol) = (r[0], r[1]);
        let len = usize::from(u16::from_be_bytes([r[2], r[3]]));
        let (start, end) = match (ty, len) {
            (super::consts::ts_type::IPV4_ADDR_RANGE, 16) if r.len() >= 16 => {
                let s: [u8; 4] = r[8..12].try_into().map_err(|_| bad("address"))?;
                let e: [u8; 4] = r[12..16].try_into().map_err(|_| bad("address"))?;
                (IpAddr::from(s), IpAddr::from(e))
            }
            (super::consts::ts_type::IPV6_ADDR_RANGE, 40) if r.len() >= 40 => {
                let s: [u8; 16] = r[8..24].try_into().map_err(|_| bad("address"))?;
                let e: [u8; 16] = r[24..40].try_into().map_err(|_| bad("address"))?;
                (IpAddr::from(s), IpAddr::from(e))
            }
            _ => return Err(bad("unknown traffic selector type or wrong length")),
        };
        out.push(TrafficSelector {
            protocol,
            start_port: u16::from_be_bytes([r[4], r[5]]),
            end_port: u16::from_be_bytes([r[6], r[7]]),
            start,
            end,
        });
        r = &r[len..];
    }
    if !r.is_empty() {
        return Err(bad("octets after the last traffic selector"));
    }
    Ok(out)
}
