//! IKEv2 cryptography: PRF and prf+, key exchange, the key schedule, the SK payload cipher, authentication and certificates.
//!
//! Everything here is a plain function or a small struct over aws-lc-rs (HMAC, AES-GCM, AES-CBC,
//! ChaCha20-Poly1305, ECDH, X25519, signatures) and crypto-bigint (MODP-2048): no I/O, no clock, and randomness only
//! through [`crate::ike::rng::RandomSource`], so the sans-IO core stays deterministic in tests.
//! Secrets live in [`zeroize::Zeroizing`] buffers and never appear in `Debug` output or errors.

pub mod auth;
pub mod cert;
mod cert_pss;
pub mod dh;
pub mod keys;
pub mod mlkem;
pub mod prf;
mod sig;
pub mod sk;

pub use auth::{
    hash_alg, method, psk_auth, psk_verify, signed_octets, supported_hashes, verify, PrivateKey,
};
pub use cert::{Certificate, TrustStore};
pub use dh::KeyExchange;
pub use keys::{derive_child_keys, derive_ike_keys, derive_rekeyed_ike_keys, ChildKeys, IkeKeys};
pub use prf::{prf, prf_plus};
pub use sk::SkCipher;

use crate::ike::algorithms::{DhGroup, EncrAlg, IntegAlg, PrfAlg};

/// Why a cryptographic operation failed. Messages name algorithms, lengths and certificate
/// subjects, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// prf+ was asked for more than 255 blocks of output (RFC 7296 §2.13).
    #[error("prf+ with {prf} yields at most {max} octets, {requested} were asked for")]
    PrfPlusTooLong {
        /// The PRF.
        prf: PrfAlg,
        /// Octets asked for.
        requested: usize,
        /// 255 times the PRF output length.
        max: usize,
    },
    /// A KE payload whose length does not fit its group.
    #[error("{group} public value has {len} octets, expected {expected}")]
    PublicValueLength {
        /// The group.
        group: DhGroup,
        /// The length received.
        len: usize,
        /// The length the group requires.
        expected: usize,
    },
    /// A peer public value that is not an acceptable group element (off the curve, out of range,
    /// or one that yields a degenerate shared secret).
    #[error("invalid {0} public value from the peer")]
    InvalidPublicValue(DhGroup),
    /// A key pair could not be made (the random source kept producing unusable values).
    #[error("could not generate a {0} key pair")]
    KeyGeneration(DhGroup),
    /// Keying material of the wrong length for a cipher.
    #[error("{alg} needs {expected} octets of key and salt, got {len}")]
    KeyLength {
        /// The cipher.
        alg: EncrAlg,
        /// The length given.
        len: usize,
        /// key length plus the 4-octet salt.
        expected: usize,
    },
    /// Integrity key material of the wrong length.
    #[error("{alg} needs a {expected}-octet key, got {len}")]
    IntegKeyLength {
        /// The integrity algorithm.
        alg: IntegAlg,
        /// The length given.
        len: usize,
        /// The hash length.
        expected: usize,
    },
    /// An AEAD given an integrity algorithm, or AES-CBC without one.
    #[error("{alg} {}", if *.aead { "takes no integrity algorithm" } else { "needs an integrity algorithm" })]
    IntegMismatch {
        /// The cipher.
        alg: EncrAlg,
        /// Whether it is an AEAD.
        aead: bool,
        /// The integrity algorithm given.
        integ: Option<IntegAlg>,
    },
    /// Encrypted data too short to hold the integrity check value.
    #[error("encrypted data of {0} octets is shorter than the ICV")]
    Truncated(usize),
    /// AES-CBC ciphertext with a good ICV that is not a whole number of blocks.
    #[error("encrypted data with a valid ICV is not a whole number of cipher blocks")]
    Padding,
    /// The AEAD integrity check failed: wrong key, or the message was altered.
    #[error("integrity check of the encrypted payload failed")]
    IntegrityCheck,
    /// A private key that cannot be loaded.
    #[error("private key: {0}")]
    PrivateKey(String),
    /// A certificate that cannot be parsed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A file that cannot be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An algorithm, key type or encoding esprit does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// AUTH payload data that does not parse.
    #[error("malformed AUTH data: {0}")]
    AuthData(&'static str),
    /// An authentication method or signature algorithm that does not fit the key.
    #[error("{what} does not fit a {key} key")]
    KeyMismatch {
        /// The method or algorithm.
        what: String,
        /// The key type.
        key: &'static str,
    },
    /// A signature that does not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A shared key MIC that does not match.
    #[error("shared key authentication data does not match")]
    PskMismatch,
    /// The peer announced signature hash algorithms, none of which this key can sign with.
    #[error("no signature hash algorithm in common with the peer (it announced {0:?})")]
    NoCommonHash(Vec<u16>),
    /// A certificate outside its validity period.
    #[error(
        "certificate '{subject}' is not valid at {now} (valid from {not_before} to {not_after})"
    )]
    CertValidity {
        /// The certificate's subject.
        subject: String,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
        /// The time of the check.
        now: String,
    },
    /// No configured CA or supplied intermediate issued a certificate.
    #[error("no trusted CA or intermediate issued '{subject}' (its issuer is '{issuer}')")]
    UnknownIssuer {
        /// The certificate's subject.
        subject: String,
        /// The issuer it names.
        issuer: String,
    },
    /// A configured CA certificate that is not a CA.
    #[error("'{0}' is not a CA certificate (it needs basicConstraints cA, and keyCertSign if it has keyUsage)")]
    NotCa(String),
    /// A certificate chain that does not validate to a configured CA.
    #[error("certificate '{subject}' does not validate: {reason}")]
    CertPath {
        /// The end entity's subject.
        subject: String,
        /// Why the path failed.
        reason: String,
    },
    /// A critical extension esprit does not process.
    #[error("certificate '{subject}' has a critical extension esprit does not process ({oid})")]
    CriticalExtension {
        /// The certificate's subject.
        subject: String,
        /// The extension's OID.
        oid: String,
    },
    /// A key not allowed to sign (keyUsage without digitalSignature or nonRepudiation).
    #[error("certificate '{0}' does not allow digital signatures (keyUsage)")]
    KeyUsage(String),
}
