//! The cryptographic primitives ESP uses, below both the SA state ([`crate::sa`]) and the ESP
//! engine ([`crate::esp`]): the suites, the AEADs with their backends, AES-CBC with HMAC-SHA2,
//! and the ESP transform that applies an SA's keys to a packet.

pub mod aead;
pub mod cbc;
pub mod suite;
pub mod transform;

pub use aead::{Aead, AeadError, AeadKey, KeyMaterial};
pub use suite::{Backend, Integ, Suite};
pub use transform::EspKey;

/// Length of the explicit IV in ESP with the AEAD suites (RFC 4106 §3.1, RFC 7634 §2).
pub const IV_LEN: usize = 8;
/// Length of the ICV of the AEAD suites.
pub const ICV_LEN: usize = 16;
/// Length of the salt at the end of the AEAD suites' key material (RFC 4106 §8.1).
pub const SALT_LEN: usize = 4;
/// ESP header plus IV of the AEAD suites: the bytes in front of their ciphertext.
pub const ESP_PREFIX_LEN: usize = crate::wire::esp::HEADER_LEN + IV_LEN;
/// The longest ICV of any suite (HMAC-SHA-512-256).
pub const MAX_ICV_LEN: usize = 32;
