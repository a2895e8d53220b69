//! The transforms esprit negotiates, with their IANA numbers (IKEv2 Transform Type values).

use std::fmt;

/// Transform type 1 (encryption) values esprit implements: AES-GCM with a 16-octet ICV (RFC 4106
/// for ESP, RFC 5282 for IKE), which needs no separate integrity transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// ENCR_AES_GCM_16 with a 128-bit key.
    AesGcm16_128,
    /// ENCR_AES_GCM_16 with a 256-bit key.
    AesGcm16_256,
}

impl EncrAlg {
    /// IANA transform ID of AES-GCM with a 16-octet ICV.
    pub const AES_GCM_16_ID: u16 = 20;

    /// The transform ID (both key sizes share it; the Key Length attribute tells them apart).
    pub fn transform_id(self) -> u16 {
        Self::AES_GCM_16_ID
    }

    /// The Key Length attribute in bits.
    pub fn key_bits(self) -> u16 {
        match self {
            EncrAlg::AesGcm16_128 => 128,
            EncrAlg::AesGcm16_256 => 256,
        }
    }

    /// The AES key length in octets (without the salt).
    pub fn key_len(self) -> usize {
        usize::from(self.key_bits() / 8)
    }

    /// Octets of keying material taken from the key schedule: the key plus a 4-octet salt.
    pub fn keymat_len(self) -> usize {
        self.key_len() + 4
    }

    /// From a transform ID and its Key Length attribute, if esprit implements it.
    pub fn from_transform(id: u16, key_bits: Option<u16>) -> Option<Self> {
        match (id, key_bits) {
            (Self::AES_GCM_16_ID, Some(128)) => Some(EncrAlg::AesGcm16_128),
            (Self::AES_GCM_16_ID, Some(256)) => Some(EncrAlg::AesGcm16_256),
            _ => None,
        }
    }

    /// The name used in proposal strings (`aes128gcm16`).
    pub fn name(self) -> &'static str {
        match self {
            EncrAlg::AesGcm16_128 => "aes128gcm16",
            EncrAlg::AesGcm16_256 => "aes256gcm16",
        }
    }
}

/// Transform type 2 (pseudo-random function) values esprit implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl PrfAlg {
    /// The IANA transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            PrfAlg::HmacSha256 => 5,
            PrfAlg::HmacSha384 => 6,
            PrfAlg::HmacSha512 => 7,
        }
    }

    /// From an IANA transform ID, if esprit implements it.
    pub fn from_transform(id: u16) -> Option<Self> {
        match id {
            5 => Some(PrfAlg::HmacSha256),
            6 => Some(PrfAlg::HmacSha384),
            7 => Some(PrfAlg::HmacSha512),
            _ => None,
        }
    }

    /// Output (and preferred key) length in octets.
    pub fn output_len(self) -> usize {
        match self {
            PrfAlg::HmacSha256 => 32,
            PrfAlg::HmacSha384 => 48,
            PrfAlg::HmacSha512 => 64,
        }
    }

    /// The name used in proposal strings (`prfsha256`).
    pub fn name(self) -> &'static str {
        match self {
            PrfAlg::HmacSha256 => "prfsha256",
            PrfAlg::HmacSha384 => "prfsha384",
            PrfAlg::HmacSha512 => "prfsha512",
        }
    }
}

/// Transform type 4 (key exchange method) values esprit implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP group (14, RFC 3526).
    Modp2048,
    /// 256-bit random ECP group (19, RFC 5903).
    Ecp256,
    /// 384-bit random ECP group (20, RFC 5903).
    Ecp384,
    /// Curve25519 (31, RFC 8031).
    X25519,
}

impl DhGroup {
    /// The IANA transform ID (the DH Group # of the KE payload).
    pub fn transform_id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => 14,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::X25519 => 31,
        }
    }

    /// From an IANA transform ID, if esprit implements it.
    pub fn from_transform(id: u16) -> Option<Self> {
        match id {
            14 => Some(DhGroup::Modp2048),
            19 => Some(DhGroup::Ecp256),
            20 => Some(DhGroup::Ecp384),
            31 => Some(DhGroup::X25519),
            _ => None,
        }
    }

    /// Length in octets of the public value carried in a KE payload.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::X25519 => 32,
        }
    }

    /// The name used in proposal strings (`x25519`).
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::X25519 => "x25519",
        }
    }
}

impl fmt::Display for EncrAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for PrfAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for g in [
            DhGroup::Modp2048,
            DhGroup::Ecp256,
            DhGroup::Ecp384,
            DhGroup::X25519,
        ] {
            assert_eq!(DhGroup::from_transform(g.transform_id()), Some(g));
        }
        for p in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512] {
            assert_eq!(PrfAlg::from_transform(p.transform_id()), Some(p));
        }
        for e in [EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256] {
            assert_eq!(
                EncrAlg::from_transform(e.transform_id(), Some(e.key_bits())),
                Some(e)
            );
        }
        assert_eq!(EncrAlg::from_transform(20, Some(192)), None);
        assert_eq!(EncrAlg::from_transform(20, None), None);
        assert_eq!(DhGroup::from_transform(2), None);
    }
}
