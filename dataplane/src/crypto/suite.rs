//! The ESP suites esprit speaks, the HMAC-SHA2 integrity algorithms of the CBC suites, and
//! which crypto library computes them: the names and lengths every other module reads, with no
//! cipher code of their own.

use super::{ICV_LEN, IV_LEN, SALT_LEN};
use std::fmt;
use std::str::FromStr;

/// AES block length, and the length of the CBC IV in ESP (RFC 3602 §3).
pub const BLOCK_LEN: usize = 16;

/// Which HMAC-SHA2 of RFC 4868.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// HMAC-SHA-256-128: 32-byte key, 16-byte ICV.
    Sha256,
    /// HMAC-SHA-384-192: 48-byte key, 24-byte ICV.
    Sha384,
    /// HMAC-SHA-512-256: 64-byte key, 32-byte ICV.
    Sha512,
}

impl Integ {
    /// Key length in bytes: the hash's output length (RFC 4868 §2.1.1).
    pub const fn key_len(self) -> usize {
        match self {
            Integ::Sha256 => 32,
            Integ::Sha384 => 48,
            Integ::Sha512 => 64,
        }
    }

    /// ICV length in bytes: half the hash's output (RFC 4868 §2.3).
    pub const fn icv_len(self) -> usize {
        self.key_len() / 2
    }

    /// The algorithm's name, as in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Integ::Sha256 => "HMAC-SHA-256-128",
            Integ::Sha384 => "HMAC-SHA-384-192",
            Integ::Sha512 => "HMAC-SHA-512-256",
        }
    }
}

/// An ESP suite (IKEv2 transform names as strongSwan spells them): an AEAD, or AES-CBC with an
/// HMAC-SHA2 integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-128-GCM with a 16-byte ICV (`aes128gcm16`, ENCR_AES_GCM_16 with 128-bit key).
    Aes128Gcm16,
    /// AES-256-GCM with a 16-byte ICV (`aes256gcm16`).
    Aes256Gcm16,
    /// AES-128-CBC with HMAC-SHA-256-128 (`aes128cbc-sha256`, RFC 3602 and RFC 4868).
    Aes128CbcSha256,
    /// AES-256-CBC with HMAC-SHA-256-128 (`aes256cbc-sha256`).
    Aes256CbcSha256,
    /// AES-256-CBC with HMAC-SHA-384-192 (`aes256cbc-sha384`).
    Aes256CbcSha384,
    /// AES-256-CBC with HMAC-SHA-512-256 (`aes256cbc-sha512`).
    Aes256CbcSha512,
    /// ChaCha20-Poly1305 (`chacha20poly1305`, RFC 7634).
    ChaCha20Poly1305,
}

impl Suite {
    /// Cipher key length in bytes (without the salt).
    pub const fn key_len(self) -> usize {
        match self {
            Suite::Aes128Gcm16 | Suite::Aes128CbcSha256 => 16,
            Suite::Aes256Gcm16
            | Suite::Aes256CbcSha256
            | Suite::Aes256CbcSha384
            | Suite::Aes256CbcSha512
            | Suite::ChaCha20Poly1305 => 32,
        }
    }

    /// The HMAC of a CBC suite; `None` for the AEADs.
    pub const fn integ(self) -> Option<Integ> {
        match self {
            Suite::Aes128CbcSha256 | Suite::Aes256CbcSha256 => Some(Integ::Sha256),
            Suite::Aes256CbcSha384 => Some(Integ::Sha384),
            Suite::Aes256CbcSha512 => Some(Integ::Sha512),
            Suite::Aes128Gcm16 | Suite::Aes256Gcm16 | Suite::ChaCha20Poly1305 => None,
        }
    }

    /// True for the AEADs (AES-GCM, ChaCha20-Poly1305): salt, 8-byte IV, AAD.
    pub const fn is_aead(self) -> bool {
        self.integ().is_none()
    }

    /// Salt length at the end of the key material: 4 for the AEADs (RFC 4106 §8.1, RFC 7634
    /// §4), none for CBC.
    pub const fn salt_len(self) -> usize {
        if self.is_aead() {
            SALT_LEN
        } else {
            0
        }
    }

    /// Key material length: cipher key followed by the salt, if any.
    pub const fn keymat_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// Length of the HMAC key (`integ_key`), 0 for the AEADs.
    pub const fn integ_key_len(self) -> usize {
        match self.integ() {
            Some(i) => i.key_len(),
            None => 0,
        }
    }

    /// Length of the explicit IV in the ESP packet: 8 for the AEADs, one AES block for CBC.
    #[inline]
    pub const fn iv_len(self) -> usize {
        if self.is_aead() {
            IV_LEN
        } else {
            BLOCK_LEN
        }
    }

    /// Length of the ICV.
    #[inline]
    pub const fn icv_len(self) -> usize {
        match self.integ() {
            Some(i) => i.icv_len(),
            None => ICV_LEN,
        }
    }

    /// What the ESP payload, padding and trailer must be a multiple of for the cipher: one
    /// AES block for CBC (RFC 3602 §2.4), 4 bytes (RFC 4303's minimum) for the AEADs.
    pub const fn block_len(self) -> usize {
        if self.is_aead() {
            4
        } else {
            BLOCK_LEN
        }
    }

    /// What `key` holds, for messages: "AES key || 4-byte salt" and the like.
    pub const fn key_layout(self) -> &'static str {
        match self {
            Suite::Aes128Gcm16 | Suite::Aes256Gcm16 => "AES key || 4-byte salt",
            Suite::ChaCha20Poly1305 => "ChaCha20 key || 4-byte salt",
            _ => "AES key",
        }
    }

    /// The configuration name.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::Aes128Gcm16 => "aes128gcm16",
            Suite::Aes256Gcm16 => "aes256gcm16",
            Suite::Aes128CbcSha256 => "aes128cbc-sha256",
            Suite::Aes256CbcSha256 => "aes256cbc-sha256",
            Suite::Aes256CbcSha384 => "aes256cbc-sha384",
            Suite::Aes256CbcSha512 => "aes256cbc-sha512",
            Suite::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }

    /// The AES-GCM suites.
    pub const GCM: [Suite; 2] = [Suite::Aes128Gcm16, Suite::Aes256Gcm16];

    /// Every suite, for benchmarks and tests.
    pub const ALL: [Suite; 7] = [
        Suite::Aes128Gcm16,
        Suite::Aes256Gcm16,
        Suite::Aes128CbcSha256,
        Suite::Aes256CbcSha256,
        Suite::Aes256CbcSha384,
        Suite::Aes256CbcSha512,
        Suite::ChaCha20Poly1305,
    ];
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Suite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Suite::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Suite::ALL
                    .iter()
                    .map(|x| format!("{:?}", x.name()))
                    .collect();
                format!("unknown suite {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Which crypto library implements the AEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `ring` 0.17.
    Ring,
    /// `aws-lc-rs` 1.x (AWS-LC).
    AwsLc,
}

impl Default for Backend {
    /// The backend chosen by `esprit-bench esp` on the reference machine.
    fn default() -> Self {
        Backend::Ring
    }
}

impl Backend {
    /// Both backends, for benchmarks and cross-checks.
    pub const ALL: [Backend; 2] = [Backend::Ring, Backend::AwsLc];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::AwsLc => "aws-lc-rs",
        }
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ring" => Ok(Backend::Ring),
            "aws-lc-rs" | "aws-lc" | "awslc" => Ok(Backend::AwsLc),
            _ => Err(format!(
                "unknown AEAD backend {s:?}: expected \"ring\" or \"aws-lc-rs\""
            )),
        }
    }
}
