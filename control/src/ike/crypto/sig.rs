//! Signature schemes shared by AUTH payloads and certificates: public key types from a
//! SubjectPublicKeyInfo, AlgorithmIdentifiers (RFC 7427, RFC 4055, RFC 5758, RFC 8410) in both
//! directions, and verification through aws-lc.

use aws_lc_rs::signature::{self, RsaParameters, RsaPssSaltLength, VerificationAlgorithm};
use x509_parser::prelude::FromDer;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use super::CryptoError;

/// DER content octets of the object identifiers esprit knows.
pub(crate) mod oid {
    /// ecdsa-with-SHA256 (RFC 5758).
    pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// ecdsa-with-SHA384.
    pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// ecdsa-with-SHA512.
    pub const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
    /// sha256WithRSAEncryption (RFC 4055).
    pub const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    /// sha384WithRSAEncryption.
    pub const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    /// sha512WithRSAEncryption.
    pub const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    /// id-RSASSA-PSS.
    pub const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    /// id-mgf1.
    pub const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    /// rsaEncryption.
    pub const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-sha256.
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// id-sha384.
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    /// id-sha512.
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    /// id-Ed25519 (RFC 8410).
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// id-ecPublicKey.
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// secp256r1 (prime256v1).
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// secp384r1.
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// secp521r1.
    pub const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
}

/// The hash of a signature scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    /// SHA-1: only for the classic RSA method 1 from a peer.
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// Digest length in octets.
    pub(crate) fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Hash::Sha1 => &[0x2b, 0x0e, 0x03, 0x02, 0x1a],
            Hash::Sha256 => oid::SHA256,
            Hash::Sha384 => oid::SHA384,
            Hash::Sha512 => oid::SHA512,
        }
    }

    fn from_oid(o: &[u8]) -> Option<Self> {
        [Hash::Sha256, Hash::Sha384, Hash::Sha512]
            .into_iter()
            .find(|h| h.oid() == o)
    }
}

/// How a signature is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// ECDSA with a DER-encoded (r, s).
    Ecdsa(Hash),
    /// ECDSA with r | s of fixed length (RFC 4754, AUTH methods 9-11).
    EcdsaFixed(Hash),
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(Hash),
    /// RSASSA-PSS with MGF1 over the same hash and a trailer field of 1.
    RsaPss {
        /// The hash (and MGF1 hash).
        hash: Hash,
        /// The salt length in octets.
        salt: u32,
    },
    /// Ed25519 (pure, the "Identity" hash of RFC 8420).
    Ed25519,
}

/// The kind of a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    EcP256,
    EcP384,
    EcP521,
    Rsa,
    Ed25519,
}

impl KeyKind {
    /// A short name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyKind::EcP256 => "ECDSA P-256",
            KeyKind::EcP384 => "ECDSA P-384",
            KeyKind::EcP521 => "ECDSA P-521",
            KeyKind::Rsa => "RSA",
            KeyKind::Ed25519 => "Ed25519",
        }
    }
}

/// A public key ready for aws-lc: its kind and the subjectPublicKey bits (an uncompressed
/// point, an RSAPublicKey, or 32 Ed25519 octets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub(crate) kind: KeyKind,
    pub(crate) raw: Vec<u8>,
}

impl PublicKey {
    /// The key of a SubjectPublicKeyInfo, or why esprit cannot use it.
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, String> {
        let alg = spki.algorithm.algorithm.as_bytes();
        let kind = if alg == oid::EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or_else(|| "EC key without a named curve".to_string())?;
            match curve.as_bytes() {
                c if c == oid::P256 => KeyKind::EcP256,
                c if c == oid::P384 => KeyKind::EcP384,
                c if c == oid::P521 => KeyKind::EcP521,
                _ => return Err(format!("EC key on unsupported curve {curve}")),
            }
        } else if alg == oid::RSA || alg == oid::RSA_PSS {
            KeyKind::Rsa
        } else if alg == oid::ED25519 {
            KeyKind::Ed25519
        } else {
            return Err(format!(
                "unsupported public key algorithm {}",
                spki.algorithm.algorithm
            ));
        };
        Ok(PublicKey {
            kind,
            raw: spki.subject_public_key.data.to_vec(),
        })
    }
}

/// Signature AlgorithmIdentifier → scheme.
pub(crate) fn scheme_from_alg_id(alg: &AlgorithmIdentifier<'_>) -> Result<Scheme, CryptoError> {
    let o = alg.algorithm.as_bytes();
    let params = alg.parameters.as_ref();
    let no_params = params.is_none();
    let null_or_none = params.is_none_or(|p| p.header.tag().0 == 5 && p.data.is_empty());
    let unsupported = || CryptoError::Unsupported(format!("signature algorithm {}", alg.algorithm));
    let bad_params = || CryptoError::AuthData("unexpected AlgorithmIdentifier parameters");
    let scheme = match o {
        _ if o == oid::ECDSA_SHA256 && no_params => Scheme::Ecdsa(Hash::Sha256),
        _ if o == oid::ECDSA_SHA384 && no_params => Scheme::Ecdsa(Hash::Sha384),
        _ if o == oid::ECDSA_SHA512 && no_params => Scheme::Ecdsa(Hash::Sha512),
        _ if o == oid::RSA_SHA256 && null_or_none => Scheme::RsaPkcs1(Hash::Sha256),
        _ if o == oid::RSA_SHA384 && null_or_none => Scheme::RsaPkcs1(Hash::Sha384),
        _ if o == oid::RSA_SHA512 && null_or_none => Scheme::RsaPkcs1(Hash::Sha512),
        _ if o == oid::ED25519 && no_params => Scheme::Ed25519,
        _ if o == oid::RSA_PSS => pss_scheme(params.ok_or_else(bad_params)?)?,
        _ if [
            oid::ECDSA_SHA256,
            oid::ECDSA_SHA384,
            oid::ECDSA_SHA512,
            oid::RSA_SHA256,
            oid::RSA_SHA384,
            oid::RSA_SHA512,
            oid::ED25519,
        ]
        .contains(&o) =>
        {
            return Err(bad_params())
        }
        _ => return Err(unsupported()),
    };
    Ok(scheme)
}

fn pss_scheme(params: &x509_parser::asn1_rs::Any<'_>) -> Result<Scheme, CryptoError> {
    let bad = |what: &str| CryptoError::Unsupported(format!("RSASSA-PSS with {what}"));
    let p = RsaSsaPssParams::try_from(params)
        .map_err(|_| CryptoError::AuthData("malformed RSASSA-PSS parameters"))?;
    let hash_oid = p.hash_algorithm_oid();
    let hash =
        Hash::from_oid(hash_oid.as_bytes()).ok_or_else(|| bad(&format!("hash {hash_oid}")))?;
    let mgf = p
        .mask_gen_algorithm()
        .map_err(|_| CryptoError::AuthData("malformed RSASSA-PSS mask generation function"))?;
    if mgf.mgf.as_bytes() != oid::MGF1 || mgf.hash.as_bytes() != hash.oid() {
        return Err(bad(
            "a mask generation function other than MGF1 over the same hash",
        ));
    }
    if p.trailer_field() != 1 {
        return Err(bad("a trailer field other than 1"));
    }
    Ok(Scheme::RsaPss {
        hash,
        salt: p.salt_length(),
    })
}

/// Parse a DER AlgorithmIdentifier that must span all of `der`.
pub(crate) fn parse_alg_id(der: &[u8]) -> Result<Scheme, CryptoError> {
    let (rest, alg) = AlgorithmIdentifier::from_der(der)
        .map_err(|_| CryptoError::AuthData("malformed AlgorithmIdentifier"))?;
    if !rest.is_empty() {
        return Err(CryptoError::AuthData(
            "trailing octets after the AlgorithmIdentifier",
        ));
    }
    scheme_from_alg_id(&alg)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// AlgorithmIdentifier { oid, NULL }, as RFC 4055 writes hash identifiers inside PSS params.
fn alg_null(o: &[u8]) -> Vec<u8> {
    tlv(0x30, &[tlv(0x06, o), vec![0x05, 0x00]].concat())
}

/// The DER AlgorithmIdentifier of a scheme esprit signs with (RFC 7427 §3 and Appendix A).
pub(crate) fn alg_id_der(scheme: Scheme) -> Vec<u8> {
    match scheme {
        Scheme::Ecdsa(h) | Scheme::EcdsaFixed(h) => {
            let o = match h {
                Hash::Sha384 => oid::ECDSA_SHA384,
                Hash::Sha512 => oid::ECDSA_SHA512,
                _ => oid::ECDSA_SHA256,
            };
            tlv(0x30, &tlv(0x06, o))
        }
        Scheme::RsaPkcs1(h) => alg_null(match h {
            Hash::Sha384 => oid::RSA_SHA384,
            Hash::Sha512 => oid::RSA_SHA512,
            _ => oid::RSA_SHA256,
        }),
        Scheme::RsaPss { hash, salt } => {
            let params = [
                tlv(0xa0, &alg_null(hash.oid())),
                tlv(
                    0xa1,
                    &tlv(0x30, &[tlv(0x06, oid::MGF1), alg_null(hash.oid())].concat()),
                ),
                tlv(0xa2, &tlv(0x02, &der_uint(salt))),
            ]
            .concat();
            tlv(
                0x30,
                &[tlv(0x06, oid::RSA_PSS), tlv(0x30, &params)].concat(),
            )
        }
        Scheme::Ed25519 => tlv(0x30, &tlv(0x06, oid::ED25519)),
    }
}

/// The content octets of a non-negative INTEGER: minimal, with a leading zero when the top
/// bit is set.
fn der_uint(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    let mut out = bytes[skip..].to_vec();
    if out[0] & 0x80 != 0 {
        out.insert(0, 0);
    }
    out
}

static PSS_SHA256_MAX: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
static PSS_SHA384_MAX: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(RsaPssSaltLength::Max);
static PSS_SHA512_MAX: RsaParameters =
    signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(RsaPssSaltLength::Max);

/// The aws-lc verification algorithm for a key and a scheme.
fn verification_alg(
    key: &PublicKey,
    scheme: Scheme,
) -> Result<&'static dyn VerificationAlgorithm, CryptoError> {
    use Hash::*;
    use KeyKind::*;
    let alg: &'static dyn VerificationAlgorithm = match (key.kind, scheme) {
        (EcP256, Scheme::Ecdsa(Sha256)) => &signature::ECDSA_P256_SHA256_ASN1,
        (EcP256, Scheme::Ecdsa(Sha384)) => &signature::ECDSA_P256_SHA384_ASN1,
        (EcP256, Scheme::Ecdsa(Sha512)) => &signature::ECDSA_P256_SHA512_ASN1,
        (EcP384, Scheme::Ecdsa(Sha256)) => &signature::ECDSA_P384_SHA256_ASN1,
        (EcP384, Scheme::Ecdsa(Sha384)) => &signature::ECDSA_P384_SHA384_ASN1,
        (EcP384, Scheme::Ecdsa(Sha512)) => &signature::ECDSA_P384_SHA512_ASN1,
        (EcP521, Scheme::Ecdsa(Sha256)) => &signature::ECDSA_P521_SHA256_ASN1,
        (EcP521, Scheme::Ecdsa(Sha384)) => &signature::ECDSA_P521_SHA384_ASN1,
        (EcP521, Scheme::Ecdsa(Sha512)) => &signature::ECDSA_P521_SHA512_ASN1,
        (EcP256, Scheme::EcdsaFixed(Sha256)) => &signature::ECDSA_P256_SHA256_FIXED,
        (EcP384, Scheme::EcdsaFixed(Sha384)) => &signature::ECDSA_P384_SHA384_FIXED,
        (EcP521, Scheme::EcdsaFixed(Sha512)) => &signature::ECDSA_P521_SHA512_FIXED,
        (Rsa, Scheme::RsaPkcs1(Sha1)) => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (Rsa, Scheme::RsaPkcs1(Sha256)) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (Rsa, Scheme::RsaPkcs1(Sha384)) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (Rsa, Scheme::RsaPkcs1(Sha512)) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (Rsa, Scheme::RsaPss { hash, salt }) => pss_alg(key, hash, salt)?,
        (Ed25519, Scheme::Ed25519) => &signature::ED25519,
        _ => {
            return Err(CryptoError::KeyMismatch {
                what: format!("signature scheme {scheme:?}"),
                key: key.kind.name(),
            })
        }
    };
    Ok(alg)
}

/// PSS with the salt length the parameters name: the hash length (what strongSwan and most
/// signers use) or the largest the key allows.
fn pss_alg(
    key: &PublicKey,
    hash: Hash,
    salt: u32,
) -> Result<&'static dyn VerificationAlgorithm, CryptoError> {
    let salt = usize::try_from(salt).unwrap_or(usize::MAX);
    if salt == hash.len() {
        return match hash {
            Hash::Sha256 => Ok(&signature::RSA_PSS_2048_8192_SHA256),
            Hash::Sha384 => Ok(&signature::RSA_PSS_2048_8192_SHA384),
            Hash::Sha512 => Ok(&signature::RSA_PSS_2048_8192_SHA512),
            Hash::Sha1 => Err(CryptoError::Unsupported("RSASSA-PSS with SHA-1".into())),
        };
    }
    let bits =
        RsaParameters::public_modulus_len(&key.raw).map_err(|_| CryptoError::BadSignature)?;
    let em_len = (usize::try_from(bits).unwrap_or(0).saturating_sub(1)).div_ceil(8);
    if salt + hash.len() + 2 == em_len {
        return match hash {
            Hash::Sha256 => Ok(&PSS_SHA256_MAX),
            Hash::Sha384 => Ok(&PSS_SHA384_MAX),
            Hash::Sha512 => Ok(&PSS_SHA512_MAX),
            Hash::Sha1 => Err(CryptoError::Unsupported("RSASSA-PSS with SHA-1".into())),
        };
    }
    Err(CryptoError::Unsupported(format!(
        "RSASSA-PSS salt length {salt} (only the hash length or the maximum)"
    )))
}

/// Verify `sig` over `msg` with `key` under `scheme`.
pub(crate) fn verify(
    key: &PublicKey,
    scheme: Scheme,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), CryptoError> {
    let alg = verification_alg(key, scheme)?;
    signature::UnparsedPublicKey::new(alg, &key.raw)
        .verify(msg, sig)
        .map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::prf::tests::unhex;

    #[test]
    fn rfc7427_algorithm_identifiers() {
        // RFC 7427 Appendix A.
        let cases = [
            (
                Scheme::RsaPkcs1(Hash::Sha256),
                "300d06092a864886f70d01010b0500",
            ),
            (
                Scheme::RsaPkcs1(Hash::Sha384),
                "300d06092a864886f70d01010c0500",
            ),
            (
                Scheme::RsaPkcs1(Hash::Sha512),
                "300d06092a864886f70d01010d0500",
            ),
            (Scheme::Ecdsa(Hash::Sha256), "300a06082a8648ce3d040302"),
            (Scheme::Ecdsa(Hash::Sha384), "300a06082a8648ce3d040303"),
            (Scheme::Ecdsa(Hash::Sha512), "300a06082a8648ce3d040304"),
            (
                Scheme::RsaPss {
                    hash: Hash::Sha256,
                    salt: 32,
                },
                "3041 06092a864886f70d01010a 3034 a00f300d0609608648016503040201 0500 \
                 a11c301a06092a864886f70d010108300d0609608648016503040201 0500 a203020120",
            ),
            (Scheme::Ed25519, "300506032b6570"),
        ];
        for (scheme, der) in cases {
            let der = unhex(der);
            assert_eq!(alg_id_der(scheme), der, "{scheme:?}");
            assert_eq!(parse_alg_id(&der).unwrap(), scheme);
        }
        // PKCS#1 without the NULL is accepted too; ECDSA with a NULL is not.
        assert_eq!(
            parse_alg_id(&unhex("300b06092a864886f70d01010b")).unwrap(),
            Scheme::RsaPkcs1(Hash::Sha256)
        );
        assert!(parse_alg_id(&unhex("300c06082a8648ce3d0403020500")).is_err());
        // SHA-1 with RSA, trailing octets, garbage.
        assert!(matches!(
            parse_alg_id(&unhex("300d06092a864886f70d0101050500")),
            Err(CryptoError::Unsupported(_))
        ));
        assert!(parse_alg_id(&unhex("300a06082a8648ce3d04030200")).is_err());
        assert!(parse_alg_id(&[0x30, 0x80]).is_err());
        assert!(parse_alg_id(&[]).is_err());
    }

    #[test]
    fn pss_parameters_are_checked() {
        // MGF1 over SHA-384 with a SHA-256 hash.
        let mixed = "3041 06092a864886f70d01010a 3034 a00f300d0609608648016503040201 0500 \
                     a11c301a06092a864886f70d010108300d0609608648016503040202 0500 a203020120";
        assert!(matches!(
            parse_alg_id(&unhex(mixed)),
            Err(CryptoError::Unsupported(_))
        ));
        // Default parameters (SHA-1).
        assert!(matches!(
            parse_alg_id(&unhex("300d06092a864886f70d01010a3000")),
            Err(CryptoError::Unsupported(_))
        ));
        // No parameters at all.
        assert!(parse_alg_id(&unhex("300b06092a864886f70d01010a")).is_err());
        // Larger salts are encoded as unsigned INTEGERs.
        let big = alg_id_der(Scheme::RsaPss {
            hash: Hash::Sha512,
            salt: 200,
        });
        assert_eq!(
            parse_alg_id(&big).unwrap(),
            Scheme::RsaPss {
                hash: Hash::Sha512,
                salt: 200
            }
        );
        assert_eq!(der_uint(0), [0]);
        assert_eq!(der_uint(0x7f), [0x7f]);
        assert_eq!(der_uint(0x80), [0, 0x80]);
        assert_eq!(der_uint(478), [0x01, 0xde]);
    }
}
