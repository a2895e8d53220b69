//! IKE identities (RFC 7296 §3.5): what the ID payloads carry and what the configuration names,
//! parsed from strings the way strongSwan users write them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ID Type values of the IDi/IDr payloads.
pub mod id_type {
    /// A single IPv4 address.
    pub const IPV4_ADDR: u8 = 1;
    /// A fully qualified domain name (no terminator).
    pub const FQDN: u8 = 2;
    /// An RFC 822 e-mail address.
    pub const RFC822_ADDR: u8 = 3;
    /// A single IPv6 address.
    pub const IPV6_ADDR: u8 = 5;
    /// The DER encoding of an X.500 distinguished name.
    pub const DER_ASN1_DN: u8 = 9;
    /// An opaque octet string.
    pub const KEY_ID: u8 = 11;
}

/// An IKE identity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_IPV6_ADDR.
    Ipv6(Ipv6Addr),
    /// ID_FQDN (any octets a peer sends; esprit writes ASCII).
    Fqdn(String),
    /// ID_RFC822_ADDR.
    Rfc822(String),
    /// ID_DER_ASN1_DN: the DER of an RDNSequence, as sent on the wire.
    Dn(Vec<u8>),
    /// ID_KEY_ID: opaque octets.
    KeyId(Vec<u8>),
}

/// Why a string or payload is not an identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The string is empty.
    #[error("an identity cannot be empty")]
    Empty,
    /// A distinguished name that does not parse.
    #[error("bad distinguished name: {0}")]
    BadDn(String),
    /// A key id that is not `@#` followed by hex.
    #[error("bad key id (expected @# followed by hex digits)")]
    BadKeyId,
    /// An ID type esprit does not know.
    #[error("unsupported ID type {0}")]
    UnsupportedType(u8),
    /// Payload data that does not fit its type.
    #[error("ID data of {len} octets does not fit type {id_type}")]
    BadData {
        /// The ID type.
        id_type: u8,
        /// The data length.
        len: usize,
    },
}

/// Attribute types of distinguished names esprit reads and writes: (short name, OID DER content).
const DN_ATTRS: &[(&str, &[u8])] = &[
    ("CN", &[0x55, 0x04, 0x03]),
    ("SN", &[0x55, 0x04, 0x04]),
    ("serialNumber", &[0x55, 0x04, 0x05]),
    ("C", &[0x55, 0x04, 0x06]),
    ("L", &[0x55, 0x04, 0x07]),
    ("ST", &[0x55, 0x04, 0x08]),
    ("street", &[0x55, 0x04, 0x09]),
    ("O", &[0x55, 0x04, 0x0a]),
    ("OU", &[0x55, 0x04, 0x0b]),
    ("title", &[0x55, 0x04, 0x0c]),
    (
        "DC",
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
    ),
    ("E", &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
    (
        "UID",
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
    ),
];

impl Identity {
    /// Parse an identity the way strongSwan does: an IPv4 or IPv6 address, `@#hex` (key id),
    /// `@fqdn` or `@@user@host` (forced types), a string with `=` (a DN such as
    /// `C=CH, O=esprit, CN=gw`), one with `@` (RFC 822), else an FQDN.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(IdentityError::Empty);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(match ip {
                IpAddr::V4(a) => Identity::Ipv4(a),
                IpAddr::V6(a) => Identity::Ipv6(a),
            });
        }
        if let Some(hex) = s.strip_prefix("@#") {
            return parse_hex(hex)
                .map(Identity::KeyId)
                .ok_or(IdentityError::BadKeyId);
        }
        if let Some(rest) = s.strip_prefix("@@") {
            return Ok(Identity::Rfc822(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix('@') {
            return Ok(Identity::Fqdn(rest.to_string()));
        }
        if s.contains('=') {
            return encode_dn(s).map(Identity::Dn);
        }
        if s.contains('@') {
            return Ok(Identity::Rfc822(s.to_string()));
        }
        Ok(Identity::Fqdn(s.to_string()))
    }

    /// The ID Type of the payload.
    pub fn id_type(&self) -> u8 {
        match self {
            Identity::Ipv4(_) => id_type::IPV4_ADDR,
            Identity::Ipv6(_) => id_type::IPV6_ADDR,
            Identity::Fqdn(_) => id_type::FQDN,
            Identity::Rfc822(_) => id_type::RFC822_ADDR,
            Identity::Dn(_) => id_type::DER_ASN1_DN,
            Identity::KeyId(_) => id_type::KEY_ID,
        }
    }

    /// The Identification Data of the payload.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.octets().to_vec(),
            Identity::Ipv6(a) => a.octets().to_vec(),
            Identity::Fqdn(s) | Identity::Rfc822(s) => s.as_bytes().to_vec(),
            Identity::Dn(d) | Identity::KeyId(d) => d.clone(),
        }
    }

    /// The identity an ID payload carries.
    pub fn from_payload(id_type: u8, data: &[u8]) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadData {
            id_type,
            len: data.len(),
        };
        match id_type {
            id_type::IPV4_ADDR => {
                let o: [u8; 4] = data.try_into().map_err(|_| bad())?;
                Ok(Identity::Ipv4(Ipv4Addr::from(o)))
            }
            id_type::IPV6_ADDR => {
                let o: [u8; 16] = data.try_into().map_err(|_| bad())?;
                Ok(Identity::Ipv6(Ipv6Addr::from(o)))
            }
            id_type::FQDN => Ok(Identity::Fqdn(String::from_utf8_lossy(data).into_owned())),
            id_type::RFC822_ADDR => {
                Ok(Identity::Rfc822(String::from_utf8_lossy(data).into_owned()))
            }
            id_type::DER_ASN1_DN => {
                dn_attributes(data).ok_or_else(bad)?;
                Ok(Identity::Dn(data.to_vec()))
            }
            id_type::KEY_ID => Ok(Identity::KeyId(data.to_vec())),
            t => Err(IdentityError::UnsupportedType(t)),
        }
    }

    /// Whether two identities name the same peer. DNs compare attribute by attribute (type and
    /// value, whatever string type encodes them), everything else by type and octets.
    pub fn matches(&self, other: &Identity) -> bool {
        match (self, other) {
            (Identity::Dn(a), Identity::Dn(b)) => {
                a == b
                    || matches!((dn_attributes(a), dn_attributes(b)), (Some(x), Some(y)) if x == y)
            }
            (Identity::Fqdn(a), Identity::Fqdn(b)) | (Identity::Rfc822(a), Identity::Rfc822(b)) => {
                a.eq_ignore_ascii_case(b)
            }
            _ => self == other,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(a) => write!(f, "{a}"),
            Identity::Ipv6(a) => write!(f, "{a}"),
            Identity::Fqdn(s) | Identity::Rfc822(s) => f.write_str(s),
            Identity::Dn(d) => match dn_attributes(d) {
                Some(attrs) => {
                    for (i, (oid, value)) in attrs.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        match DN_ATTRS.iter().find(|(_, o)| o == &oid.as_slice()) {
                            Some((name, _)) => write!(f, "{name}={value}")?,
                            None => write!(f, "{}={value}", hex(oid))?,
                        }
                    }
                    Ok(())
                }
                None => write!(f, "DN:{}", hex(d)),
            },
            Identity::KeyId(d) => write!(f, "@#{}", hex(d)),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_start_matches("0x");
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// Encode `C=CH, O=esprit, CN=gw` (separators `,` or `/`) as the DER of an RDNSequence, one
/// attribute per RDN, in the order written. C is a PrintableString, the rest UTF8String.
pub fn encode_dn(s: &str) -> Result<Vec<u8>, IdentityError> {
    let mut rdns = Vec::new();
    let sep = if s.starts_with('/') { '/' } else { ',' };
    for part in s.split(sep).map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| IdentityError::BadDn(format!("'{part}' is not TYPE=value")))?;
        let (name, value) = (name.trim(), value.trim());
        let oid = DN_ATTRS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, o)| *o)
            .ok_or_else(|| IdentityError::BadDn(format!("unknown attribute type '{name}'")))?;
        let string_tag = if name.eq_ignore_ascii_case("C") {
            0x13
        } else {
            0x0c
        };
        let mut atv = der_tlv(0x06, oid);
        atv.extend(der_tlv(string_tag, value.as_bytes()));
        rdns.extend(der_tlv(0x31, &der_tlv(0x30, &atv)));
    }
    if rdns.is_empty() {
        return Err(IdentityError::BadDn("no attributes".into()));
    }
    Ok(der_tlv(0x30, &rdns))
}

/// Read one DER TLV: (tag, content, rest).
fn read_tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = d.split_first()?;
    let (&l0, mut rest) = rest.split_first()?;
    let len = if l0 < 0x80 {
        usize::from(l0)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let v = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        rest = &rest[n..];
        v
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The (attribute OID, value) pairs of a DER RDNSequence in order, or None if it is not one.
pub fn dn_attributes(der: &[u8]) -> Option<Vec<(Vec<u8>, String)>> {
    let (tag, mut rdns, rest) = read_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (tag, mut set, next) = read_tlv(rdns)?;
        if tag != 0x31 {
            return None;
        }
        rdns = next;
        while !set.is_empty() {
            let (tag, atv, next) = read_tlv(set)?;
            if tag != 0x30 {
                return None;
            }
            set = next;
            let (otag, oid, v) = read_tlv(atv)?;
            let (_stag, value, end) = read_tlv(v)?;
            if otag != 0x06 || !end.is_empty() {
                return None;
            }
            out.push((oid.to_vec(), String::from_utf8_lossy(value).into_owned()));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_strongswan() {
        assert_eq!(
            Identity::parse("10.0.0.1").unwrap(),
            Identity::Ipv4("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Identity::parse("fd00::1").unwrap(),
            Identity::Ipv6("fd00::1".parse().unwrap())
        );
        assert_eq!(
            Identity::parse("gwA").unwrap(),
            Identity::Fqdn("gwA".into())
        );
        assert_eq!(
            Identity::parse("@gw.example").unwrap(),
            Identity::Fqdn("gw.example".into())
        );
        assert_eq!(
            Identity::parse("a@b.example").unwrap(),
            Identity::Rfc822("a@b.example".into())
        );
        assert_eq!(
            Identity::parse("@#0a0B").unwrap(),
            Identity::KeyId(vec![0x0a, 0x0b])
        );
        assert_eq!(Identity::parse("@#0"), Err(IdentityError::BadKeyId));
        assert_eq!(Identity::parse(" "), Err(IdentityError::Empty));
        assert!(matches!(
            Identity::parse("XX=1"),
            Err(IdentityError::BadDn(_))
        ));
    }

    #[test]
    fn dn_encodes_and_reads_back() {
        let id = Identity::parse("C=CH, O=esprit, CN=gw.example").unwrap();
        assert_eq!(id.id_type(), id_type::DER_ASN1_DN);
        assert_eq!(id.to_string(), "C=CH, O=esprit, CN=gw.example");
        let back = Identity::from_payload(id.id_type(), &id.data()).unwrap();
        assert_eq!(back, id);
        // A CN carried as PrintableString still matches the UTF8String we encode.
        let mut other = id.data();
        let pos = other
            .windows(3)
            .position(|w| w == [0x55, 0x04, 0x03])
            .unwrap();
        other[pos + 3] = 0x13;
        let other = Identity::from_payload(id_type::DER_ASN1_DN, &other).unwrap();
        assert_ne!(other, id);
        assert!(other.matches(&id));
        assert!(!Identity::parse("C=CH, O=esprit, CN=other")
            .unwrap()
            .matches(&id));
    }

    #[test]
    fn payload_errors() {
        assert!(Identity::from_payload(id_type::IPV4_ADDR, &[1, 2, 3]).is_err());
        assert!(Identity::from_payload(id_type::DER_ASN1_DN, &[0x30, 5]).is_err());
        assert!(Identity::from_payload(42, b"x").is_err());
        assert!(Identity::Fqdn("GW".into()).matches(&Identity::Fqdn("gw".into())));
        assert!(!Identity::Fqdn("gw".into()).matches(&Identity::Rfc822("gw".into())));
    }
}
