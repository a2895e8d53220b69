//! The AEADs behind the ESP suites: AES-GCM and ChaCha20-Poly1305 with a 16-byte ICV,
//! through a small trait with two backends.
//!
//! Both `ring` and `aws-lc-rs` ship AES-NI/VAES + PCLMULQDQ assembly for AES-GCM, and
//! vectorised ChaCha20-Poly1305. The trait
//! lets the benchmark compare them on the same buffers; `Backend::default()` is the one the
//! measurement picked (see `docs/decisions/0002-aead-backend.md`).

use super::suite::{Backend, Suite};
use super::ICV_LEN;
use std::fmt;
use zeroize::Zeroizing;

/// AEAD failures. Deliberately without detail: nothing about keys or data leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// The ICV did not verify (or the input was shorter than an ICV).
    #[error("authentication failed")]
    Auth,
    /// The key has the wrong length for the suite.
    #[error("wrong key length")]
    KeyLength,
    /// The library refused to seal (input too long for GCM).
    #[error("seal failed")]
    Seal,
    /// A CBC ciphertext that is not a whole number of blocks, or too short for the suite.
    #[error("wrong ciphertext length")]
    Length,
}

/// An AEAD with a 12-byte nonce and a 16-byte tag over in-place buffers.
pub trait Aead: Send + Sync {
    /// Encrypts `in_out[..len - 16]` in place and writes the tag into the last 16 bytes.
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError>;
    /// Verifies the tag in the last 16 bytes of `in_out` and decrypts the rest in place.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError>;
    /// Which library this is.
    fn backend(&self) -> Backend;
}

/// Builds an AEAD for `suite` (an AEAD suite) from the cipher key (without the salt).
pub fn new_aead(backend: Backend, suite: Suite, key: &[u8]) -> Result<AeadKey, AeadError> {
    if key.len() != suite.key_len() || !suite.is_aead() {
        return Err(AeadError::KeyLength);
    }
    Ok(match backend {
        Backend::Ring => AeadKey::Ring(RingAead::new(suite, key)?),
        Backend::AwsLc => AeadKey::AwsLc(AwsLcAead::new(suite, key)?),
    })
}

/// An expanded key of either backend, held by value: an SA keeps its key schedule inside
/// itself (one allocation, one place to prefetch) and calls it without a virtual call.
// The ring key schedule is inline on purpose: boxing it is the extra cache miss this avoids.
#[allow(clippy::large_enum_variant)]
pub enum AeadKey {
    /// `ring`'s AES-GCM or ChaCha20-Poly1305.
    Ring(RingAead),
    /// `aws-lc-rs`'s AES-GCM or ChaCha20-Poly1305.
    AwsLc(AwsLcAead),
}

impl Aead for AeadKey {
    #[inline]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError> {
        match self {
            AeadKey::Ring(k) => k.seal(nonce, aad, in_out),
            AeadKey::AwsLc(k) => k.seal(nonce, aad, in_out),
        }
    }

    #[inline]
    fn open(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError> {
        match self {
            AeadKey::Ring(k) => k.open(nonce, aad, in_out),
            AeadKey::AwsLc(k) => k.open(nonce, aad, in_out),
        }
    }

    fn backend(&self) -> Backend {
        match self {
            AeadKey::Ring(_) => Backend::Ring,
            AeadKey::AwsLc(_) => Backend::AwsLc,
        }
    }
}

/// AES-GCM or ChaCha20-Poly1305 from `ring`.
pub struct RingAead(ring::aead::LessSafeKey);

impl RingAead {
    /// Expands the key schedule.
    pub fn new(suite: Suite, key: &[u8]) -> Result<Self, AeadError> {
        let alg = match suite {
            Suite::Aes128Gcm16 => &ring::aead::AES_128_GCM,
            Suite::Aes256Gcm16 => &ring::aead::AES_256_GCM,
            Suite::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
            _ => return Err(AeadError::KeyLength),
        };
        let k = ring::aead::UnboundKey::new(alg, key).map_err(|_| AeadError::KeyLength)?;
        Ok(RingAead(ring::aead::LessSafeKey::new(k)))
    }
}

impl Aead for RingAead {
    #[inline]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError> {
        let split = in_out.len().checked_sub(ICV_LEN).ok_or(AeadError::Seal)?;
        let (data, tag_out) = in_out.split_at_mut(split);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(*nonce),
                ring::aead::Aad::from(aad),
                data,
            )
            .map_err(|_| AeadError::Seal)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    #[inline]
    fn open(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError> {
        self.0
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(*nonce),
                ring::aead::Aad::from(aad),
                in_out,
            )
            .map(|_| ())
            .map_err(|_| AeadError::Auth)
    }

    fn backend(&self) -> Backend {
        Backend::Ring
    }
}

/// AES-GCM or ChaCha20-Poly1305 from `aws-lc-rs`.
pub struct AwsLcAead(aws_lc_rs::aead::LessSafeKey);

impl AwsLcAead {
    /// Expands the key schedule.
    pub fn new(suite: Suite, key: &[u8]) -> Result<Self, AeadError> {
        let alg = match suite {
            Suite::Aes128Gcm16 => &aws_lc_rs::aead::AES_128_GCM,
            Suite::Aes256Gcm16 => &aws_lc_rs::aead::AES_256_GCM,
            Suite::ChaCha20Poly1305 => &aws_lc_rs::aead::CHACHA20_POLY1305,
            _ => return Err(AeadError::KeyLength),
        };
        let k = aws_lc_rs::aead::UnboundKey::new(alg, key).map_err(|_| AeadError::KeyLength)?;
        Ok(AwsLcAead(aws_lc_rs::aead::LessSafeKey::new(k)))
    }
}

impl Aead for AwsLcAead {
    #[inline]
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError> {
        let split = in_out.len().checked_sub(ICV_LEN).ok_or(AeadError::Seal)?;
        let (data, tag_out) = in_out.split_at_mut(split);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                aws_lc_rs::aead::Aad::from(aad),
                data,
            )
            .map_err(|_| AeadError::Seal)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    #[inline]
    fn open(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError> {
        self.0
            .open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                aws_lc_rs::aead::Aad::from(aad),
                in_out,
            )
            .map(|_| ())
            .map_err(|_| AeadError::Auth)
    }

    fn backend(&self) -> Backend {
        Backend::AwsLc
    }
}

/// ESP key material: the AES key followed by the 4-byte salt (RFC 4106 §8.1). Zeroized on
/// drop; `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(Zeroizing<Vec<u8>>);

impl KeyMaterial {
    /// Wraps raw key material; its length must match the suite (checked by the SA builder).
    pub fn new(bytes: Vec<u8>) -> Self {
        KeyMaterial(Zeroizing::new(bytes))
    }

    /// Parses hex (an optional `0x` prefix, and `:` or whitespace separators are allowed).
    /// The error never echoes the input.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
            s.bytes()
                .filter(|b| !b.is_ascii_whitespace() && *b != b':')
                .collect(),
        );
        if digits.len() % 2 != 0 {
            return Err(format!("odd number of hex digits ({})", digits.len()));
        }
        let mut out = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks_exact(2) {
            let hi = hex_val(pair[0]);
            let lo = hex_val(pair[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push((h << 4) | l),
                _ => {
                    let mut out = Zeroizing::new(out);
                    out.clear();
                    return Err("not a hex string".into());
                }
            }
        }
        Ok(KeyMaterial::new(out))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw bytes. Named so that every use is visible in review: callers must not log them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex of the key material, for the opt-in Wireshark key export only.
    pub fn expose_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(self.0.len() * 2));
        for b in self.0.iter() {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        s
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial(<{} bytes redacted>)", self.0.len())
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        KeyMaterial::from_hex(s).unwrap().expose_secret().to_vec()
    }

    /// (key, iv, plaintext, aad, ciphertext, tag) from the GCM specification's test cases
    /// (McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 2–4, 14–16),
    /// which are the NIST GCM validation vectors for 96-bit IVs.
    const VECTORS: &[(&str, &str, &str, &str, &str, &str)] = &[
        (
            "00000000000000000000000000000000",
            "000000000000000000000000",
            "00000000000000000000000000000000",
            "",
            "0388dace60b6a392f328c2b971b2fe78",
            "ab6e47d42cec13bdf53a67b21257bddf",
        ),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            "",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        ),
        (
            "feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            "5bc94fbc3221a5db94fae95ae7121a47",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "000000000000000000000000",
            "00000000000000000000000000000000",
            "",
            "cea7403d4d606b6e074ec5d3baf39d18",
            "d0d1c8a799996bf0265b98b5d48ab919",
        ),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            "",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            "b094dac5d93471bdec1a502270e3cc6c",
        ),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ];

    #[test]
    fn gcm_known_answers_both_backends() {
        for backend in Backend::ALL {
            for (key, iv, pt, aad, ct, tag) in VECTORS {
                let key = unhex(key);
                let suite = if key.len() == 16 {
                    Suite::Aes128Gcm16
                } else {
                    Suite::Aes256Gcm16
                };
                let a = new_aead(backend, suite, &key).unwrap();
                let nonce: [u8; 12] = unhex(iv).try_into().unwrap();
                let aad = unhex(aad);
                let mut buf = unhex(pt);
                buf.extend_from_slice(&[0; 16]);
                a.seal(&nonce, &aad, &mut buf).unwrap();
                let mut expect = unhex(ct);
                expect.extend_from_slice(&unhex(tag));
                assert_eq!(buf, expect, "{backend:?} seal");
                a.open(&nonce, &aad, &mut buf).unwrap();
                assert_eq!(&buf[..buf.len() - 16], &unhex(pt)[..], "{backend:?} open");
                let mut bad = expect.clone();
                *bad.last_mut().unwrap() ^= 1;
                assert_eq!(a.open(&nonce, &aad, &mut bad), Err(AeadError::Auth));
            }
        }
    }

    /// RFC 8439 §2.8.2: ChaCha20-Poly1305 (the AEAD of RFC 7634) with a 4-byte constant and an
    /// 8-byte IV in the nonce, the shape ESP uses (salt || IV).
    #[test]
    fn chacha20_poly1305_rfc8439_both_backends() {
        let key: Vec<u8> = (0x80..0xa0).collect();
        let nonce: [u8; 12] = unhex("070000004041424344454647").try_into().unwrap();
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = unhex(concat!(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb",
            "69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad6",
            "75945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116",
            "1ae10b594f09e26a7e902ecbd0600691"
        ));
        for backend in Backend::ALL {
            let a = new_aead(backend, Suite::ChaCha20Poly1305, &key).unwrap();
            let mut buf = pt.to_vec();
            buf.extend_from_slice(&[0; 16]);
            a.seal(&nonce, &aad, &mut buf).unwrap();
            assert_eq!(buf, ct, "{backend:?} seal");
            a.open(&nonce, &aad, &mut buf).unwrap();
            assert_eq!(&buf[..pt.len()], &pt[..], "{backend:?} open");
            let mut bad = ct.clone();
            bad[3] ^= 1;
            assert_eq!(a.open(&nonce, &aad, &mut bad), Err(AeadError::Auth));
        }
    }

    #[test]
    fn suite_names_round_trip() {
        for s in Suite::ALL {
            assert_eq!(s.name().parse::<Suite>(), Ok(s));
            assert_eq!(s.keymat_len(), s.key_len() + s.salt_len());
            assert_eq!(s.is_aead(), s.integ_key_len() == 0);
        }
        let e = "aes128cbc".parse::<Suite>().unwrap_err();
        assert!(
            e.contains("aes256cbc-sha512") && e.contains("chacha20poly1305"),
            "{e}"
        );
        assert!(new_aead(Backend::Ring, Suite::Aes128CbcSha256, &[0; 16]).is_err());
    }

    #[test]
    fn short_input_and_wrong_key_length() {
        let a = new_aead(Backend::Ring, Suite::Aes128Gcm16, &[0; 16]).unwrap();
        assert!(a.open(&[0; 12], &[], &mut [0; 15]).is_err());
        assert!(a.seal(&[0; 12], &[], &mut [0; 15]).is_err());
        assert!(new_aead(Backend::AwsLc, Suite::Aes256Gcm16, &[0; 16]).is_err());
    }

    #[test]
    fn key_material_hex_and_redaction() {
        let k = KeyMaterial::from_hex("0x00:01 ff").unwrap();
        assert_eq!(k.expose_secret(), &[0, 1, 0xff]);
        assert_eq!(&*k.expose_hex(), "0001ff");
        assert_eq!(format!("{k:?}"), "KeyMaterial(<3 bytes redacted>)");
        let e = KeyMaterial::from_hex("zz11").unwrap_err();
        assert!(!e.contains("zz"), "errors never echo key material");
        assert!(KeyMaterial::from_hex("abc").is_err());
    }
}
