//! AUTH payload data (RFC 7296 §2.15): the signed octets, shared key MICs, and signatures with
//! the classic methods (RFC 7296, RFC 4754) or RFC 7427 Digital Signature (method 14).
//!
//! Signing: ECDSA keys use method 14 when the peer announced the curve's hash, else methods
//! 9/10/11 with r | s; RSA keys always use method 14 (PKCS#1 v1.5 by default, RSASSA-PSS on
//! request), because aws-lc cannot make the SHA-1 signatures of method 1; Ed25519 keys use
//! method 14 with the Identity hash (RFC 8420). Verification accepts all of these, plus method 1
//! from peers that still send it.

use std::fmt;

use aws_lc_rs::constant_time;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RsaEncoding, RsaKeyPair,
};
use zeroize::Zeroizing;

use super::cert::Certificate;
use super::prf::{hmac_alg, prf, prf_secret};
use super::sig::{self, Hash, KeyKind, Scheme};
use super::CryptoError;
use crate::ike::algorithms::PrfAlg;

/// Auth Method values of the AUTH payload.
pub mod method {
    /// RSA Digital Signature: PKCS#1 v1.5 with SHA-1 (RFC 7296).
    pub const RSA_DIGITAL_SIGNATURE: u8 = 1;
    /// Shared Key Message Integrity Code.
    pub const SHARED_KEY_MIC: u8 = 2;
    /// ECDSA with SHA-256 on the P-256 curve, r | s (RFC 4754).
    pub const ECDSA_SHA256_P256: u8 = 9;
    /// ECDSA with SHA-384 on the P-384 curve, r | s (RFC 4754).
    pub const ECDSA_SHA384_P384: u8 = 10;
    /// ECDSA with SHA-512 on the P-521 curve, r | s (RFC 4754).
    pub const ECDSA_SHA512_P521: u8 = 11;
    /// Digital Signature with an ASN.1 AlgorithmIdentifier (RFC 7427).
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// Hash Algorithm Identifiers of the SIGNATURE_HASH_ALGORITHMS notification (RFC 7427 §4).
pub mod hash_alg {
    /// SHA2-256.
    pub const SHA2_256: u16 = 2;
    /// SHA2-384.
    pub const SHA2_384: u16 = 3;
    /// SHA2-512.
    pub const SHA2_512: u16 = 4;
    /// Identity: the message itself is signed (Ed25519, RFC 8420).
    pub const IDENTITY: u16 = 5;
}

/// The hash algorithms esprit announces in SIGNATURE_HASH_ALGORITHMS.
pub fn supported_hashes() -> &'static [u16] {
    &[
        hash_alg::SHA2_256,
        hash_alg::SHA2_384,
        hash_alg::SHA2_512,
        hash_alg::IDENTITY,
    ]
}

/// The octets an AUTH payload signs or MACs (RFC 7296 §2.15): the sender's first message
/// (IKE_SA_INIT request or response), then the peer's nonce data, then
/// prf(SK_px, IDType | RESERVED | identification data) over the sender's ID payload body.
pub fn signed_octets(
    prf_alg: PrfAlg,
    message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_type: u8,
    id_data: &[u8],
) -> Vec<u8> {
    let mac_id = prf(prf_alg, sk_p, &[&[id_type, 0, 0, 0], id_data]);
    [message, peer_nonce, &mac_id].concat()
}

/// One link of RFC 9242 §3.3.2's IntAuth chain: IntAuth_[i/r]n = prf(SK_p[i/r],
/// IntAuth_[i/r]n-1 | IntAuth_[i/r]n_A | IntAuth_[i/r]n_P), where `prev` is the previous link
/// (empty for the first), `octets` the message's authenticated octets
/// (`message::intauth_octets`) and `sk_p` the key in use for that exchange.
pub fn int_auth_step(prf_alg: PrfAlg, sk_p: &[u8], prev: &[u8], octets: &[u8]) -> Vec<u8> {
    prf(prf_alg, sk_p, &[prev, octets])
}

/// Shared key AUTH data: prf(prf(PSK, "Key Pad for IKEv2"), octets).
pub fn psk_auth(prf_alg: PrfAlg, psk: &[u8], octets: &[u8]) -> Vec<u8> {
    let pad = prf_secret(hmac_alg(prf_alg), psk, &[b"Key Pad for IKEv2"]);
    prf(prf_alg, &pad, &[octets])
}

/// Check a peer's shared key AUTH data in constant time.
pub fn psk_verify(
    prf_alg: PrfAlg,
    psk: &[u8],
    octets: &[u8],
    auth_data: &[u8],
) -> Result<(), CryptoError> {
    let want = psk_auth(prf_alg, psk, octets);
    constant_time::verify_slices_are_equal(&want, auth_data).map_err(|_| CryptoError::PskMismatch)
}

/// Verify a peer's signature AUTH payload (`method` and its data) over `octets` with the public
/// key of `cert` (already validated against the trust store). The key type must fit the method
/// or AlgorithmIdentifier: P-256/384/521 for methods 9/10/11, RSA for method 1.
pub fn verify(
    auth_method: u8,
    auth_data: &[u8],
    octets: &[u8],
    cert: &Certificate,
) -> Result<(), CryptoError> {
    let key = cert.public_key()?;
    cert.check_signing_usage()?;
    let classic = |kind: KeyKind, scheme: Scheme| {
        if key.kind == kind {
            Ok((scheme, auth_data))
        } else {
            Err(CryptoError::KeyMismatch {
                what: format!("authentication method {auth_method}"),
                key: key.kind.name(),
            })
        }
    };
    let (scheme, sig) = match auth_method {
        method::RSA_DIGITAL_SIGNATURE => classic(KeyKind::Rsa, Scheme::RsaPkcs1(Hash::Sha1))?,
        method::ECDSA_SHA256_P256 => classic(KeyKind::EcP256, Scheme::EcdsaFixed(Hash::Sha256))?,
        method::ECDSA_SHA384_P384 => classic(KeyKind::EcP384, Scheme::EcdsaFixed(Hash::Sha384))?,
        method::ECDSA_SHA512_P521 => classic(KeyKind::EcP521, Scheme::EcdsaFixed(Hash::Sha512))?,
        method::DIGITAL_SIGNATURE => {
            let (&len, rest) = auth_data
                .split_first()
                .ok_or(CryptoError::AuthData("empty"))?;
            let len = usize::from(len);
            if rest.len() < len {
                return Err(CryptoError::AuthData(
                    "AlgorithmIdentifier longer than the payload",
                ));
            }
            let (alg_id, sig) = rest.split_at(len);
            (sig::parse_alg_id(alg_id)?, sig)
        }
        method::SHARED_KEY_MIC => {
            return Err(CryptoError::Unsupported(
                "a shared key MIC is not a signature (use psk_verify)".into(),
            ))
        }
        m => {
            return Err(CryptoError::Unsupported(format!(
                "authentication method {m}"
            )))
        }
    };
    if sig.is_empty() {
        return Err(CryptoError::AuthData("no signature"));
    }
    sig::verify(key, scheme, octets, sig)
}

enum Key {
    Ecdsa {
        kind: KeyKind,
        asn1: EcdsaKeyPair,
        fixed: EcdsaKeyPair,
    },
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// The ECDSA curves: key kind, DER-signature and fixed-signature signing algorithms.
const CURVES: [(KeyKind, &EcdsaSigningAlgorithm, &EcdsaSigningAlgorithm); 3] = [
    (
        KeyKind::EcP256,
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    ),
    (
        KeyKind::EcP384,
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
    ),
    (
        KeyKind::EcP521,
        &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    ),
];

/// A private key that signs AUTH payloads: ECDSA P-256/P-384/P-521, RSA (2048 to 8192 bits) or
/// Ed25519. The key material stays inside aws-lc, which wipes it when the key is dropped.
pub struct PrivateKey {
    key: Key,
    rsa_pss: bool,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("type", &self.key_type())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Load the first private key of PEM text: PKCS#8 `PRIVATE KEY` (ECDSA, RSA, Ed25519), SEC1
    /// `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, as OpenSSL and strongSwan users have them.
    /// Encrypted keys are not supported.
    pub fn from_pem(pem_text: &str) -> Result<Self, CryptoError> {
        let bad = |what: String| CryptoError::PrivateKey(what);
        let blocks = pem::parse_many(pem_text).map_err(|e| bad(format!("malformed PEM ({e})")))?;
        for block in blocks {
            let tag = block.tag().to_string();
            let der = Zeroizing::new(block.into_contents());
            match tag.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&der),
                "EC PRIVATE KEY" => return Self::from_sec1_der(&der),
                "RSA PRIVATE KEY" => {
                    return RsaKeyPair::from_der(&der)
                        .map(|k| Self::new(Key::Rsa(k)))
                        .map_err(|e| bad(format!("unusable PKCS#1 RSA key ({e})")))
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(bad(
                        "encrypted private keys are not supported; decrypt it with openssl pkey"
                            .into(),
                    ))
                }
                _ => {}
            }
        }
        Err(bad(
            "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block".into(),
        ))
    }

    /// Load an unencrypted PKCS#8 private key (DER).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        for (kind, asn1, fixed) in CURVES {
            if let (Ok(a), Ok(f)) = (
                EcdsaKeyPair::from_pkcs8(asn1, der),
                EcdsaKeyPair::from_pkcs8(fixed, der),
            ) {
                return Ok(Self::new(Key::Ecdsa {
                    kind,
                    asn1: a,
                    fixed: f,
                }));
            }
        }
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(Self::new(Key::Rsa(k)));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self::new(Key::Ed25519(k)));
        }
        Err(CryptoError::PrivateKey(
            "PKCS#8 key is not ECDSA P-256/P-384/P-521, RSA 2048-8192 or Ed25519".into(),
        ))
    }

    /// Load a SEC1 `ECPrivateKey` (DER) on P-256, P-384 or P-521.
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, CryptoError> {
        for (kind, asn1, fixed) in CURVES {
            if let (Ok(a), Ok(f)) = (
                EcdsaKeyPair::from_private_key_der(asn1, der),
                EcdsaKeyPair::from_private_key_der(fixed, der),
            ) {
                return Ok(Self::new(Key::Ecdsa {
                    kind,
                    asn1: a,
                    fixed: f,
                }));
            }
        }
        Err(CryptoError::PrivateKey(
            "EC key is not on P-256, P-384 or P-521, or is malformed".into(),
        ))
    }

    fn new(key: Key) -> Self {
        PrivateKey {
            key,
            rsa_pss: false,
        }
    }

    /// Sign RSA AUTH data with RSASSA-PSS (salt as long as the hash) instead of PKCS#1 v1.5.
    pub fn with_rsa_pss(mut self, pss: bool) -> Self {
        self.rsa_pss = pss;
        self
    }

    /// The key type, for messages ("ECDSA P-256", "RSA", "Ed25519", ...).
    pub fn key_type(&self) -> &'static str {
        self.kind().name()
    }

    fn kind(&self) -> KeyKind {
        match &self.key {
            Key::Ecdsa { kind, .. } => *kind,
            Key::Rsa(_) => KeyKind::Rsa,
            Key::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// Whether `cert` carries this key's public half.
    pub fn matches_certificate(&self, cert: &Certificate) -> bool {
        let public: &[u8] = match &self.key {
            Key::Ecdsa { asn1, .. } => asn1.public_key().as_ref(),
            Key::Rsa(k) => k.public_key().as_ref(),
            Key::Ed25519(k) => k.public_key().as_ref(),
        };
        cert.public_key()
            .is_ok_and(|k| k.kind == self.kind() && k.raw == public)
    }

    /// Sign `octets` (see [`signed_octets`]) for an AUTH payload, given the hash algorithms the
    /// peer announced in SIGNATURE_HASH_ALGORITHMS (empty if it sent none). Returns the Auth
    /// Method and the Authentication Data.
    pub fn sign(&self, octets: &[u8], peer_hashes: &[u16]) -> Result<(u8, Vec<u8>), CryptoError> {
        let rng = SystemRandom::new();
        let failed = |_| CryptoError::PrivateKey(format!("{} signing failed", self.key_type()));
        let offered = |h: u16| peer_hashes.contains(&h);
        match &self.key {
            Key::Ecdsa { kind, asn1, fixed } => {
                let (id, hash, classic) = match kind {
                    KeyKind::EcP384 => {
                        (hash_alg::SHA2_384, Hash::Sha384, method::ECDSA_SHA384_P384)
                    }
                    KeyKind::EcP521 => {
                        (hash_alg::SHA2_512, Hash::Sha512, method::ECDSA_SHA512_P521)
                    }
                    _ => (hash_alg::SHA2_256, Hash::Sha256, method::ECDSA_SHA256_P256),
                };
                if offered(id) {
                    let sig = asn1.sign(&rng, octets).map_err(failed)?;
                    Ok((
                        method::DIGITAL_SIGNATURE,
                        with_alg_id(Scheme::Ecdsa(hash), sig.as_ref()),
                    ))
                } else {
                    let sig = fixed.sign(&rng, octets).map_err(failed)?;
                    Ok((classic, sig.as_ref().to_vec()))
                }
            }
            Key::Rsa(k) => {
                let hash = if peer_hashes.is_empty() {
                    Some(Hash::Sha256)
                } else {
                    [
                        (hash_alg::SHA2_256, Hash::Sha256),
                        (hash_alg::SHA2_384, Hash::Sha384),
                        (hash_alg::SHA2_512, Hash::Sha512),
                    ]
                    .into_iter()
                    .find(|(id, _)| offered(*id))
                    .map(|(_, h)| h)
                };
                let hash = hash.ok_or_else(|| CryptoError::NoCommonHash(peer_hashes.to_vec()))?;
                let (scheme, encoding): (Scheme, &'static dyn RsaEncoding) =
                    match (self.rsa_pss, hash) {
                        (false, Hash::Sha384) => {
                            (Scheme::RsaPkcs1(hash), &signature::RSA_PKCS1_SHA384)
                        }
                        (false, Hash::Sha512) => {
                            (Scheme::RsaPkcs1(hash), &signature::RSA_PKCS1_SHA512)
                        }
                        (false, _) => (Scheme::RsaPkcs1(hash), &signature::RSA_PKCS1_SHA256),
                        (true, Hash::Sha384) => (pss(hash), &signature::RSA_PSS_SHA384),
                        (true, Hash::Sha512) => (pss(hash), &signature::RSA_PSS_SHA512),
                        (true, _) => (pss(hash), &signature::RSA_PSS_SHA256),
                    };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(encoding, &rng, octets, &mut sig).map_err(failed)?;
                Ok((method::DIGITAL_SIGNATURE, with_alg_id(scheme, &sig)))
            }
            Key::Ed25519(k) => {
                if !peer_hashes.is_empty() && !offered(hash_alg::IDENTITY) {
                    return Err(CryptoError::NoCommonHash(peer_hashes.to_vec()));
                }
                let sig = k.sign(octets);
                Ok((
                    method::DIGITAL_SIGNATURE,
                    with_alg_id(Scheme::Ed25519, sig.as_ref()),
                ))
            }
        }
    }
}

fn pss(hash: Hash) -> Scheme {
    Scheme::RsaPss {
        hash,
        salt: hash.len() as u32,
    }
}

/// Method 14 Authentication Data: AlgorithmIdentifier length, AlgorithmIdentifier, signature.
fn with_alg_id(scheme: Scheme, sig: &[u8]) -> Vec<u8> {
    let alg = sig::alg_id_der(scheme);
    let mut out = Vec::with_capacity(1 + alg.len() + sig.len());
    // Every AlgorithmIdentifier esprit writes is well under 255 octets.
    out.push(alg.len() as u8);
    out.extend_from_slice(&alg);
    out.extend_from_slice(sig);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::cert::tests::{chain, ALGS};
    use crate::ike::crypto::prf::tests::unhex;
    use aws_lc_rs::hmac;

    const OCTETS: &[u8] = b"IKE_SA_INIT message | peer nonce | prf(SK_p, ID')";

    fn leaf(alg: &'static rcgen::SignatureAlgorithm) -> (PrivateKey, Certificate) {
        let (_, _, leaf) = chain(alg);
        let key = PrivateKey::from_pem(&leaf.key.serialize_pem()).unwrap();
        (key, leaf.cert)
    }

    #[test]
    fn signed_octets_and_psk_follow_rfc7296() {
        let prf_alg = PrfAlg::HmacSha256;
        let octets = signed_octets(prf_alg, b"msg", b"nonce", b"skp", 2, b"gw.example");
        let k = hmac::Key::new(hmac::HMAC_SHA256, b"skp");
        let id = hmac::sign(&k, b"\x02\x00\x00\x00gw.example");
        assert_eq!(octets, [b"msgnonce".as_slice(), id.as_ref()].concat());

        let k = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let pad = hmac::sign(&k, b"Key Pad for IKEv2");
        let k = hmac::Key::new(hmac::HMAC_SHA256, pad.as_ref());
        let want = hmac::sign(&k, &octets);
        let auth = psk_auth(prf_alg, b"secret", &octets);
        assert_eq!(auth, want.as_ref());
        psk_verify(prf_alg, b"secret", &octets, &auth).unwrap();
        assert_eq!(
            psk_verify(prf_alg, b"Secret", &octets, &auth),
            Err(CryptoError::PskMismatch)
        );
        assert_eq!(
            psk_verify(prf_alg, b"secret", &octets, &auth[..31]),
            Err(CryptoError::PskMismatch)
        );
        assert_eq!(psk_auth(PrfAlg::HmacSha512, b"x", b"y").len(), 64);
    }

    #[test]
    fn sign_and_verify_every_key_type() {
        for alg in ALGS {
            let (key, cert) = leaf(alg);
            assert!(key.matches_certificate(&cert), "{alg:?}");
            for hashes in [&[][..], supported_hashes(), &[hash_alg::SHA2_256][..]] {
                let signed = key.sign(OCTETS, hashes);
                if key.kind() == KeyKind::Ed25519 && hashes == [hash_alg::SHA2_256] {
                    assert_eq!(
                        signed.unwrap_err(),
                        CryptoError::NoCommonHash(hashes.to_vec())
                    );
                    continue;
                }
                let (m, data) = signed.unwrap();
                let want = match (key.kind(), hashes.is_empty(), hashes.len()) {
                    (KeyKind::EcP256, true, _) => method::ECDSA_SHA256_P256,
                    (KeyKind::EcP384, false, 1) => method::ECDSA_SHA384_P384,
                    (KeyKind::EcP384, true, _) => method::ECDSA_SHA384_P384,
                    (KeyKind::EcP521, false, 1) => method::ECDSA_SHA512_P521,
                    (KeyKind::EcP521, true, _) => method::ECDSA_SHA512_P521,
                    _ => method::DIGITAL_SIGNATURE,
                };
                assert_eq!(m, want, "{alg:?} {hashes:?}");
                verify(m, &data, OCTETS, &cert).unwrap_or_else(|e| panic!("{alg:?} {m}: {e}"));
                assert_eq!(
                    verify(m, &data, b"other octets", &cert),
                    Err(CryptoError::BadSignature)
                );
                let mut bad = data.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert!(verify(m, &bad, OCTETS, &cert).is_err());
            }
        }
    }

    #[test]
    fn rsa_pss_and_hash_choice() {
        let (key, cert) = leaf(&rcgen::PKCS_RSA_SHA256);
        let key = key.with_rsa_pss(true);
        for (hash, id) in [(Hash::Sha256, 2), (Hash::Sha384, 3), (Hash::Sha512, 4)] {
            let (m, data) = key.sign(OCTETS, &[1, id]).unwrap();
            assert_eq!(m, method::DIGITAL_SIGNATURE);
            let alg = sig::alg_id_der(pss(hash));
            assert_eq!(usize::from(data[0]), alg.len());
            assert_eq!(&data[1..=alg.len()], alg.as_slice());
            verify(m, &data, OCTETS, &cert).unwrap();
        }
        let key = key.with_rsa_pss(false);
        let (_, data) = key.sign(OCTETS, &[4, 3]).unwrap();
        assert_eq!(
            &data[1..=data[0] as usize],
            sig::alg_id_der(Scheme::RsaPkcs1(Hash::Sha384)).as_slice()
        );
        // Only SHA-1 offered: nothing in common.
        assert_eq!(
            key.sign(OCTETS, &[1]).unwrap_err(),
            CryptoError::NoCommonHash(vec![1])
        );
    }

    #[test]
    fn wrong_key_and_wrong_type_are_rejected() {
        let (key, _) = leaf(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other) = leaf(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(!key.matches_certificate(&other));
        let (m, data) = key.sign(OCTETS, &[]).unwrap();
        assert_eq!(
            verify(m, &data, OCTETS, &other),
            Err(CryptoError::BadSignature)
        );
        let (m14, data14) = key.sign(OCTETS, supported_hashes()).unwrap();
        assert_eq!(
            verify(m14, &data14, OCTETS, &other),
            Err(CryptoError::BadSignature)
        );

        let (_, rsa) = leaf(&rcgen::PKCS_RSA_SHA256);
        assert!(!key.matches_certificate(&rsa));
        assert!(matches!(
            verify(m, &data, OCTETS, &rsa),
            Err(CryptoError::KeyMismatch { .. })
        ));
        assert!(matches!(
            verify(m14, &data14, OCTETS, &rsa),
            Err(CryptoError::KeyMismatch { .. })
        ));
        let (_, p384) = leaf(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert!(matches!(
            verify(method::ECDSA_SHA256_P256, &data, OCTETS, &p384),
            Err(CryptoError::KeyMismatch { .. })
        ));
        assert!(matches!(
            verify(method::RSA_DIGITAL_SIGNATURE, &data, OCTETS, &p384),
            Err(CryptoError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn malformed_auth_data() {
        let (key, cert) = leaf(&rcgen::PKCS_ED25519);
        let (m, data) = key.sign(OCTETS, &[]).unwrap();
        assert_eq!(m, method::DIGITAL_SIGNATURE);
        assert_eq!(
            verify(m, &[], OCTETS, &cert),
            Err(CryptoError::AuthData("empty"))
        );
        assert!(matches!(
            verify(m, &[200, 1, 2], OCTETS, &cert),
            Err(CryptoError::AuthData(_))
        ));
        assert_eq!(
            verify(m, &data[..=usize::from(data[0])], OCTETS, &cert),
            Err(CryptoError::AuthData("no signature"))
        );
        // A length octet that cuts the AlgorithmIdentifier short or runs into the signature.
        for delta in [-1i16, 1] {
            let mut bad = data.clone();
            bad[0] = (i16::from(bad[0]) + delta) as u8;
            assert!(verify(m, &bad, OCTETS, &cert).is_err());
        }
        assert!(verify(method::ECDSA_SHA256_P256, &[], OCTETS, &cert).is_err());
        assert!(matches!(
            verify(method::SHARED_KEY_MIC, &data, OCTETS, &cert),
            Err(CryptoError::Unsupported(_))
        ));
        assert!(matches!(
            verify(3, &data, OCTETS, &cert),
            Err(CryptoError::Unsupported(_))
        ));
        // Truncated and overlong raw ECDSA signatures.
        let (key, cert) = leaf(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (m, data) = key.sign(OCTETS, &[]).unwrap();
        assert_eq!(data.len(), 64);
        assert!(verify(m, &data[..63], OCTETS, &cert).is_err());
        assert!(verify(m, &[data.as_slice(), &[0]].concat(), OCTETS, &cert).is_err());
    }

    #[test]
    fn openssl_keys_and_method_1() {
        let cases = [
            (
                include_str!("testdata/rsa_pkcs1.pem"),
                include_str!("testdata/rsa_pkcs1_cert.pem"),
                "RSA",
            ),
            (
                include_str!("testdata/ec_sec1.pem"),
                include_str!("testdata/ec_sec1_cert.pem"),
                "ECDSA P-256",
            ),
            (
                include_str!("testdata/ed25519.pem"),
                include_str!("testdata/ed25519_cert.pem"),
                "Ed25519",
            ),
        ];
        for (key_pem, cert_pem, kind) in cases {
            let key = PrivateKey::from_pem(key_pem).unwrap();
            assert_eq!(key.key_type(), kind);
            let cert = &Certificate::from_pem(cert_pem).unwrap()[0];
            assert!(key.matches_certificate(cert), "{kind}");
            for hashes in [&[][..], supported_hashes()] {
                let (m, data) = key.sign(OCTETS, hashes).unwrap();
                verify(m, &data, OCTETS, cert).unwrap();
            }
            assert!(!format!("{key:?}").contains("BEGIN"));
        }
        // A SHA-1 RSA signature (classic method 1) made by OpenSSL.
        let cert = &Certificate::from_pem(include_str!("testdata/rsa_pkcs1_cert.pem")).unwrap()[0];
        let sig = unhex(include_str!("testdata/rsa_pkcs1_sha1.sig.hex"));
        let octets = b"esprit RSA method 1 test octets";
        verify(method::RSA_DIGITAL_SIGNATURE, &sig, octets, cert).unwrap();
        assert_eq!(
            verify(method::RSA_DIGITAL_SIGNATURE, &sig, b"other", cert),
            Err(CryptoError::BadSignature)
        );
        // The SEC1 DER on its own.
        let sec1 = pem::parse_many(include_str!("testdata/ec_sec1.pem")).unwrap();
        let der = sec1
            .iter()
            .find(|p| p.tag() == "EC PRIVATE KEY")
            .unwrap()
            .contents();
        assert_eq!(
            PrivateKey::from_sec1_der(der).unwrap().key_type(),
            "ECDSA P-256"
        );
    }

    #[test]
    fn private_key_errors() {
        let cert_only = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        for text in [
            "",
            "not pem",
            cert_only.as_str(),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ] {
            assert!(
                matches!(PrivateKey::from_pem(text), Err(CryptoError::PrivateKey(_))),
                "{text}"
            );
        }
        let err = PrivateKey::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }

    #[test]
    fn announced_hashes() {
        assert_eq!(supported_hashes(), &[2, 3, 4, 5]);
        // A P-256 key whose curve hash the peer did not announce falls back to method 9.
        let (key, cert) = leaf(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (m, data) = key.sign(OCTETS, &[hash_alg::SHA2_384]).unwrap();
        assert_eq!(m, method::ECDSA_SHA256_P256);
        verify(m, &data, OCTETS, &cert).unwrap();
    }
}
