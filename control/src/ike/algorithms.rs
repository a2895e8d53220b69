//! The transforms esprit negotiates, with their IANA numbers (IKEv2 Transform Type values).

use std::fmt;

/// Transform type 1 (encryption) values esprit implements: the AEADs AES-GCM with a 16-octet ICV
/// (RFC 4106 for ESP, RFC 5282 for IKE) and ChaCha20-Poly1305 (RFC 7634), which need no separate
/// integrity transform, and AES-CBC (RFC 3602), which does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// ENCR_AES_GCM_16 with a 128-bit key.
    AesGcm16_128,
    /// ENCR_AES_GCM_16 with a 256-bit key.
    AesGcm16_256,
    /// ENCR_AES_CBC with a 128-bit key.
    AesCbc128,
    /// ENCR_AES_CBC with a 256-bit key.
    AesCbc256,
    /// ENCR_CHACHA20_POLY1305 (256-bit key, no Key Length attribute).
    ChaCha20Poly1305,
}

impl EncrAlg {
    /// IANA transform ID of AES-GCM with a 16-octet ICV.
    pub const AES_GCM_16_ID: u16 = 20;
    /// IANA transform ID of AES-CBC.
    pub const AES_CBC_ID: u16 = 12;
    /// IANA transform ID of ChaCha20-Poly1305.
    pub const CHACHA20_POLY1305_ID: u16 = 28;

    /// Every encryption algorithm esprit implements.
    pub const ALL: [EncrAlg; 5] = [
        EncrAlg::AesGcm16_128,
        EncrAlg::AesGcm16_256,
        EncrAlg::AesCbc128,
        EncrAlg::AesCbc256,
        EncrAlg::ChaCha20Poly1305,
    ];

    /// The transform ID (both key sizes of an AES mode share it; the Key Length attribute
    /// tells them apart).
    pub fn transform_id(self) -> u16 {
        match self {
            EncrAlg::AesGcm16_128 | EncrAlg::AesGcm16_256 => Self::AES_GCM_16_ID,
            EncrAlg::AesCbc128 | EncrAlg::AesCbc256 => Self::AES_CBC_ID,
            EncrAlg::ChaCha20Poly1305 => Self::CHACHA20_POLY1305_ID,
        }
    }

    /// The key length in bits.
    pub fn key_bits(self) -> u16 {
        match self {
            EncrAlg::AesGcm16_128 | EncrAlg::AesCbc128 => 128,
            EncrAlg::AesGcm16_256 | EncrAlg::AesCbc256 | EncrAlg::ChaCha20Poly1305 => 256,
        }
    }

    /// The Key Length attribute sent with the transform: the AES modes have one, ChaCha20-Poly1305
    /// must not (RFC 7634 §4).
    pub fn key_attr(self) -> Option<u16> {
        match self {
            EncrAlg::ChaCha20Poly1305 => None,
            _ => Some(self.key_bits()),
        }
    }

    /// The cipher key length in octets (without any salt).
    pub fn key_len(self) -> usize {
        usize::from(self.key_bits() / 8)
    }

    /// Whether this is an AEAD (no integrity transform goes with it).
    pub fn is_aead(self) -> bool {
        !matches!(self, EncrAlg::AesCbc128 | EncrAlg::AesCbc256)
    }

    /// Octets of keying material taken from the key schedule: for the AEADs the key plus a
    /// 4-octet salt (RFC 5282 §7.1, RFC 4106 §8.1, RFC 7634 §2), for AES-CBC the key alone.
    pub fn keymat_len(self) -> usize {
        if self.is_aead() {
            self.key_len() + 4
        } else {
            self.key_len()
        }
    }

    /// From a transform ID and its Key Length attribute, if esprit implements it.
    pub fn from_transform(id: u16, key_bits: Option<u16>) -> Option<Self> {
        match (id, key_bits) {
            (Self::AES_GCM_16_ID, Some(128)) => Some(EncrAlg::AesGcm16_128),
            (Self::AES_GCM_16_ID, Some(256)) => Some(EncrAlg::AesGcm16_256),
            (Self::AES_CBC_ID, Some(128)) => Some(EncrAlg::AesCbc128),
            (Self::AES_CBC_ID, Some(256)) => Some(EncrAlg::AesCbc256),
            (Self::CHACHA20_POLY1305_ID, None) => Some(EncrAlg::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The name used in proposal strings (`aes128gcm16`, `aes256`, `chacha20poly1305`).
    pub fn name(self) -> &'static str {
        match self {
            EncrAlg::AesGcm16_128 => "aes128gcm16",
            EncrAlg::AesGcm16_256 => "aes256gcm16",
            EncrAlg::AesCbc128 => "aes128",
            EncrAlg::AesCbc256 => "aes256",
            EncrAlg::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }
}

/// Transform type 3 (integrity) values esprit implements, for AES-CBC: HMAC-SHA2 truncated to
/// half the hash (RFC 4868).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntegAlg {
    /// AUTH_HMAC_SHA2_256_128 (12).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl IntegAlg {
    /// Every integrity algorithm esprit implements.
    pub const ALL: [IntegAlg; 3] = [
        IntegAlg::HmacSha256_128,
        IntegAlg::HmacSha384_192,
        IntegAlg::HmacSha512_256,
    ];

    /// The IANA transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            IntegAlg::HmacSha256_128 => 12,
            IntegAlg::HmacSha384_192 => 13,
            IntegAlg::HmacSha512_256 => 14,
        }
    }

    /// From an IANA transform ID, if esprit implements it.
    pub fn from_transform(id: u16) -> Option<Self> {
        match id {
            12 => Some(IntegAlg::HmacSha256_128),
            13 => Some(IntegAlg::HmacSha384_192),
            14 => Some(IntegAlg::HmacSha512_256),
            _ => None,
        }
    }

    /// Key length in octets: the hash's output length (RFC 4868 §2.1.1).
    pub fn key_len(self) -> usize {
        match self {
            IntegAlg::HmacSha256_128 => 32,
            IntegAlg::HmacSha384_192 => 48,
            IntegAlg::HmacSha512_256 => 64,
        }
    }

    /// Octets of the truncated ICV: half the hash.
    pub fn icv_len(self) -> usize {
        self.key_len() / 2
    }

    /// The name used in proposal strings (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            IntegAlg::HmacSha256_128 => "sha256",
            IntegAlg::HmacSha384_192 => "sha384",
            IntegAlg::HmacSha512_256 => "sha512",
        }
    }

    /// The PRF over the same hash (what an integrity keyword also names in an IKE proposal
    /// without an explicit PRF, as in strongSwan).
    pub fn prf(self) -> PrfAlg {
        match self {
            IntegAlg::HmacSha256_128 => PrfAlg::HmacSha256,
            IntegAlg::HmacSha384_192 => PrfAlg::HmacSha384,
            IntegAlg::HmacSha512_256 => PrfAlg::HmacSha512,
        }
    }
}

/// The dataplane's name of an ESP suite (`sa.add`'s `suite`), if the dataplane implements the
/// combination: the AEADs alone, AES-128-CBC with HMAC-SHA-256-128 only, AES-256-CBC with any of
/// the three.
pub fn esp_suite_name(encr: EncrAlg, integ: Option<IntegAlg>) -> Option<&'static str> {
    use EncrAlg as E;
    use IntegAlg as I;
    match (encr, integ) {
        (E::AesGcm16_128, None) => Some("aes128gcm16"),
        (E::AesGcm16_256, None) => Some("aes256gcm16"),
        (E::ChaCha20Poly1305, None) => Some("chacha20poly1305"),
        (E::AesCbc128, Some(I::HmacSha256_128)) => Some("aes128cbc-sha256"),
        (E::AesCbc256, Some(I::HmacSha256_128)) => Some("aes256cbc-sha256"),
        (E::AesCbc256, Some(I::HmacSha384_192)) => Some("aes256cbc-sha384"),
        (E::AesCbc256, Some(I::HmacSha512_256)) => Some("aes256cbc-sha512"),
        _ => None,
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
    /// 3072-bit MODP group (15, RFC 3526).
    Modp3072,
    /// 4096-bit MODP group (16, RFC 3526).
    Modp4096,
    /// 256-bit random ECP group (19, RFC 5903).
    Ecp256,
    /// 384-bit random ECP group (20, RFC 5903).
    Ecp384,
    /// 521-bit random ECP group (21, RFC 5903).
    Ecp521,
    /// Curve25519 (31, RFC 8031).
    X25519,
}

impl DhGroup {
    /// Every key exchange method esprit implements.
    pub const ALL: [DhGroup; 7] = [
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Ecp521,
        DhGroup::X25519,
    ];

    /// The IANA transform ID (the DH Group # of the KE payload).
    pub fn transform_id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => 14,
            DhGroup::Modp3072 => 15,
            DhGroup::Modp4096 => 16,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Ecp521 => 21,
            DhGroup::X25519 => 31,
        }
    }

    /// From an IANA transform ID, if esprit implements it.
    pub fn from_transform(id: u16) -> Option<Self> {
        match id {
            14 => Some(DhGroup::Modp2048),
            15 => Some(DhGroup::Modp3072),
            16 => Some(DhGroup::Modp4096),
            19 => Some(DhGroup::Ecp256),
            20 => Some(DhGroup::Ecp384),
            21 => Some(DhGroup::Ecp521),
            31 => Some(DhGroup::X25519),
            _ => None,
        }
    }

    /// Length in octets of the public value carried in a KE payload.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Modp3072 => 384,
            DhGroup::Modp4096 => 512,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Ecp521 => 132,
            DhGroup::X25519 => 32,
        }
    }

    /// The name used in proposal strings (`x25519`).
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Modp3072 => "modp3072",
            DhGroup::Modp4096 => "modp4096",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Ecp521 => "ecp521",
            DhGroup::X25519 => "x25519",
        }
    }
}

impl fmt::Display for EncrAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for IntegAlg {
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
        for g in DhGroup::ALL {
            assert_eq!(DhGroup::from_transform(g.transform_id()), Some(g));
        }
        for p in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512] {
            assert_eq!(PrfAlg::from_transform(p.transform_id()), Some(p));
        }
        for e in EncrAlg::ALL {
            assert_eq!(
                EncrAlg::from_transform(e.transform_id(), e.key_attr()),
                Some(e)
            );
        }
        for i in IntegAlg::ALL {
            assert_eq!(IntegAlg::from_transform(i.transform_id()), Some(i));
            assert_eq!(i.icv_len() * 2, i.key_len());
            assert_eq!(i.prf().output_len(), i.key_len());
        }
        assert_eq!(IntegAlg::from_transform(2), None);
        // ChaCha20-Poly1305 takes no Key Length attribute (RFC 7634 §4); AES-CBC needs one.
        assert_eq!(EncrAlg::from_transform(28, Some(256)), None);
        assert_eq!(EncrAlg::from_transform(12, None), None);
        assert_eq!(EncrAlg::from_transform(12, Some(192)), None);
        assert_eq!(EncrAlg::from_transform(20, Some(192)), None);
        assert_eq!(EncrAlg::from_transform(20, None), None);
        assert_eq!(DhGroup::from_transform(2), None);
    }

    #[test]
    fn keymat_lengths() {
        assert_eq!(EncrAlg::AesGcm16_128.keymat_len(), 20);
        assert_eq!(EncrAlg::AesGcm16_256.keymat_len(), 36);
        assert_eq!(EncrAlg::ChaCha20Poly1305.keymat_len(), 36);
        assert_eq!(EncrAlg::AesCbc128.keymat_len(), 16);
        assert_eq!(EncrAlg::AesCbc256.keymat_len(), 32);
    }

    #[test]
    fn dataplane_suite_names() {
        use IntegAlg as I;
        assert_eq!(
            esp_suite_name(EncrAlg::AesCbc256, Some(I::HmacSha512_256)),
            Some("aes256cbc-sha512")
        );
        assert_eq!(
            esp_suite_name(EncrAlg::AesCbc128, Some(I::HmacSha384_192)),
            None
        );
        assert_eq!(esp_suite_name(EncrAlg::AesCbc128, None), None);
        assert_eq!(
            esp_suite_name(EncrAlg::AesGcm16_128, Some(I::HmacSha256_128)),
            None
        );
        assert_eq!(
            esp_suite_name(EncrAlg::ChaCha20Poly1305, None),
            Some("chacha20poly1305")
        );
    }
}
