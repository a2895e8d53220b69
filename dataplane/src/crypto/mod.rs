//! The cryptographic primitives ESP uses, below both the SA state ([`crate::sa`]) and the ESP
//! engine ([`crate::esp`]): the AEAD suites with their backends and key schedules, and the
//! sizes that follow from them.

pub mod aead;

pub use aead::{Aead, AeadError, AeadKey, Backend, KeyMaterial, Suite};

/// Length of the explicit IV in ESP with AES-GCM (RFC 4106 §3.1).
pub const IV_LEN: usize = 8;
/// Length of the ICV of the `*gcm16` suites.
pub const ICV_LEN: usize = 16;
/// Length of the salt at the end of the key material (RFC 4106 §8.1).
pub const SALT_LEN: usize = 4;
/// ESP header plus IV: the bytes in front of the ciphertext.
pub const ESP_PREFIX_LEN: usize = crate::wire::esp::HEADER_LEN + IV_LEN;
