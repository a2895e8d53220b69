//! AES-CBC (RFC 3602) with HMAC-SHA2 (RFC 4868), encrypt-then-MAC, for the `*cbc-sha*` ESP
//! suites.
//!
//! AES-CBC comes from `aws-lc-rs` (`ring` has none); the HMAC from either library, as the
//! [`Backend`] says (see `docs/decisions/0024-esp-suites.md`). The ICV is the HMAC truncated
//! to half the hash length (RFC 4868 §2.3) and is always checked in constant time.

use super::aead::AeadError;
use super::suite::{Backend, Integ, BLOCK_LEN};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::iv::FixedLength;

/// The longest HMAC output (SHA-512).
pub const MAX_TAG_LEN: usize = 64;

/// An HMAC key of either backend, with its inner and outer pads already hashed.
// Inline in the (boxed) CbcHmac: one allocation per SA, read in one pass.
#[allow(clippy::large_enum_variant)]
enum HmacKey {
    Ring(ring::hmac::Key),
    AwsLc(aws_lc_rs::hmac::Key),
}

impl HmacKey {
    fn new(backend: Backend, integ: Integ, key: &[u8]) -> Self {
        match backend {
            Backend::Ring => HmacKey::Ring(ring::hmac::Key::new(
                match integ {
                    Integ::Sha256 => ring::hmac::HMAC_SHA256,
                    Integ::Sha384 => ring::hmac::HMAC_SHA384,
                    Integ::Sha512 => ring::hmac::HMAC_SHA512,
                },
                key,
            )),
            Backend::AwsLc => HmacKey::AwsLc(aws_lc_rs::hmac::Key::new(
                match integ {
                    Integ::Sha256 => aws_lc_rs::hmac::HMAC_SHA256,
                    Integ::Sha384 => aws_lc_rs::hmac::HMAC_SHA384,
                    Integ::Sha512 => aws_lc_rs::hmac::HMAC_SHA512,
                },
                key,
            )),
        }
    }

    /// The full HMAC of the concatenation of `parts`, into `out`; returns its length.
    #[inline]
    fn sign(&self, parts: &[&[u8]], out: &mut [u8; MAX_TAG_LEN]) -> usize {
        match self {
            HmacKey::Ring(k) => {
                let mut c = ring::hmac::Context::with_key(k);
                for p in parts {
                    c.update(p);
                }
                let t = c.sign();
                out[..t.as_ref().len()].copy_from_slice(t.as_ref());
                t.as_ref().len()
            }
            HmacKey::AwsLc(k) => {
                let mut c = aws_lc_rs::hmac::Context::with_key(k);
                for p in parts {
                    c.update(p);
                }
                let t = c.sign();
                out[..t.as_ref().len()].copy_from_slice(t.as_ref());
                t.as_ref().len()
            }
        }
    }
}

/// An AES-CBC key (both directions expanded) and an HMAC key: one SA's keys for a
/// `*cbc-sha*` suite. Held boxed by the SA, so the GCM SA's layout stays as it was.
pub struct CbcHmac {
    enc: EncryptingKey,
    dec: DecryptingKey,
    mac: HmacKey,
    integ: Integ,
    backend: Backend,
}

impl CbcHmac {
    /// Expands an AES-128 or AES-256 key (16 or 32 bytes) and an HMAC key of
    /// `integ.key_len()` bytes.
    pub fn new(
        backend: Backend,
        integ: Integ,
        enc_key: &[u8],
        integ_key: &[u8],
    ) -> Result<Self, AeadError> {
        let alg = match enc_key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return Err(AeadError::KeyLength),
        };
        if integ_key.len() != integ.key_len() {
            return Err(AeadError::KeyLength);
        }
        let unbound = || UnboundCipherKey::new(alg, enc_key).map_err(|_| AeadError::KeyLength);
        Ok(CbcHmac {
            enc: EncryptingKey::cbc(unbound()?).map_err(|_| AeadError::KeyLength)?,
            dec: DecryptingKey::cbc(unbound()?).map_err(|_| AeadError::KeyLength)?,
            mac: HmacKey::new(backend, integ, integ_key),
            integ,
            backend,
        })
    }

    /// The ICV length of this SA's HMAC.
    #[inline]
    pub fn icv_len(&self) -> usize {
        self.integ.icv_len()
    }

    /// Which library computes the HMAC.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Encrypts `data` (a whole number of blocks) in place, chained from `iv`.
    #[inline]
    pub fn encrypt(&self, iv: [u8; BLOCK_LEN], data: &mut [u8]) -> Result<(), AeadError> {
        self.enc
            .less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map(drop)
            .map_err(|_| AeadError::Length)
    }

    /// Decrypts `data` (a whole number of blocks) in place, chained from `iv`.
    #[inline]
    pub fn decrypt(&self, iv: [u8; BLOCK_LEN], data: &mut [u8]) -> Result<(), AeadError> {
        self.dec
            .decrypt(data, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map(drop)
            .map_err(|_| AeadError::Length)
    }

    /// Writes the truncated HMAC of the concatenation of `parts` into `icv`
    /// (`self.icv_len()` bytes).
    #[inline]
    pub fn sign(&self, parts: &[&[u8]], icv: &mut [u8]) {
        let mut full = [0u8; MAX_TAG_LEN];
        self.mac.sign(parts, &mut full);
        let n = icv.len().min(self.icv_len());
        icv[..n].copy_from_slice(&full[..n]);
    }

    /// Checks `icv` against the truncated HMAC of `parts`, in constant time.
    #[inline]
    pub fn verify(&self, parts: &[&[u8]], icv: &[u8]) -> Result<(), AeadError> {
        let mut full = [0u8; MAX_TAG_LEN];
        self.mac.sign(parts, &mut full);
        aws_lc_rs::constant_time::verify_slices_are_equal(&full[..self.icv_len()], icv)
            .map_err(|_| AeadError::Auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::aead::KeyMaterial;

    fn unhex(s: &str) -> Vec<u8> {
        KeyMaterial::from_hex(s).unwrap().expose_secret().to_vec()
    }

    /// RFC 3602 §4, cases 1–4 (key, IV, plaintext, ciphertext).
    const CBC: &[(&str, &str, &str, &str)] = &[
        (
            "06a9214036b8a15b512e03d534120006",
            "3dafba429d9eb430b422da802c9fac41",
            "53696e676c6520626c6f636b206d7367",
            "e353779c1079aeb82708942dbe77181a",
        ),
        (
            "c286696d887c9aa0611bbb3e2025a45a",
            "562e17996d093d28ddb3ba695a2e6f58",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
        ),
        (
            "6c3ea0477630ce21a2ce334aa746c2cd",
            "c782dc4c098c66cbd9cd27d825682c81",
            "5468697320697320612034382d62797465206d657373616765202865786163746c7920332041455320626c6f636b7329",
            "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5021c19216bad525c8579695d83ba2684",
        ),
        (
            "56e47a38c5598974bc46903dba290349",
            "8ce82eefbea0da3c44699ed7db51b7d9",
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
            "c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55",
        ),
    ];

    /// AES-256-CBC: NIST SP 800-38A F.2.5, the first two blocks.
    const CBC256: (&str, &str, &str, &str) = (
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        "000102030405060708090a0b0c0d0e0f",
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
        "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
    );

    #[test]
    fn aes_cbc_known_answers() {
        for (key, iv, pt, ct) in CBC.iter().chain([&CBC256]) {
            let c = CbcHmac::new(Backend::Ring, Integ::Sha256, &unhex(key), &[0; 32]).unwrap();
            let iv: [u8; 16] = unhex(iv).try_into().unwrap();
            let mut buf = unhex(pt);
            c.encrypt(iv, &mut buf).unwrap();
            assert_eq!(buf, unhex(ct));
            c.decrypt(iv, &mut buf).unwrap();
            assert_eq!(buf, unhex(pt));
            let mut odd = unhex(pt);
            odd.pop();
            assert_eq!(c.encrypt(iv, &mut odd), Err(AeadError::Length));
            assert_eq!(c.decrypt(iv, &mut odd), Err(AeadError::Length));
        }
    }

    /// RFC 4231 test cases 1, 2 and 6 (key, data, HMAC-SHA-256, -384, -512), and the
    /// truncated ICVs of RFC 4868 §2.7.1 that follow from them.
    const HMAC: &[(&str, &str, &str, &str, &str)] = &[
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "4869205468657265",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ),
        (
            "4a656665",
            "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        ),
    ];

    #[test]
    fn hmac_sha2_known_answers_both_backends() {
        for backend in Backend::ALL {
            for (key, data, h256, h384, h512) in HMAC {
                for (integ, full) in [
                    (Integ::Sha256, h256),
                    (Integ::Sha384, h384),
                    (Integ::Sha512, h512),
                ] {
                    // The HMAC key of an SA has the hash's length; RFC 4231's keys do not, so
                    // these go through the backend key directly.
                    let k = HmacKey::new(backend, integ, &unhex(key));
                    let mut out = [0u8; MAX_TAG_LEN];
                    let n = k.sign(&[&unhex(data)[..3], &unhex(data)[3..]], &mut out);
                    assert_eq!(&out[..n], &unhex(full)[..], "{backend:?} {integ:?}");
                    let c = CbcHmac {
                        mac: k,
                        ..CbcHmac::new(backend, integ, &[0; 16], &vec![0; integ.key_len()]).unwrap()
                    };
                    let icv = &unhex(full)[..integ.icv_len()];
                    let mut got = vec![0u8; integ.icv_len()];
                    c.sign(&[&unhex(data)], &mut got);
                    assert_eq!(got, icv);
                    c.verify(&[&unhex(data)], icv).unwrap();
                    let mut bad = icv.to_vec();
                    bad[integ.icv_len() - 1] ^= 1;
                    assert_eq!(c.verify(&[&unhex(data)], &bad), Err(AeadError::Auth));
                    assert_eq!(
                        c.verify(&[&unhex(data)], &icv[1..]),
                        Err(AeadError::Auth),
                        "a short ICV never verifies"
                    );
                }
            }
        }
    }

    /// RFC 4868 §2.7.2.1 (authentication test case 1 with its 32/48/64-byte keys): the PRF
    /// vectors' keys are the hash length, as an SA's HMAC key is.
    #[test]
    fn rfc4868_keys_of_the_hash_length() {
        let data = unhex("4869205468657265");
        for (integ, key, icv) in [
            (
                Integ::Sha256,
                "0b".repeat(32),
                "198a607eb44bfbc69903a0f1cf2bbdc5",
            ),
            (
                Integ::Sha384,
                "0b".repeat(48),
                "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
            ),
            (
                Integ::Sha512,
                "0b".repeat(64),
                "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
            ),
        ] {
            for backend in Backend::ALL {
                let c = CbcHmac::new(backend, integ, &[0; 32], &unhex(&key)).unwrap();
                let mut got = vec![0u8; integ.icv_len()];
                c.sign(&[&data], &mut got);
                assert_eq!(got, unhex(icv), "{backend:?} {integ:?}");
            }
        }
    }

    #[test]
    fn wrong_key_lengths_are_refused() {
        assert!(CbcHmac::new(Backend::Ring, Integ::Sha256, &[0; 24], &[0; 32]).is_err());
        assert!(CbcHmac::new(Backend::AwsLc, Integ::Sha384, &[0; 32], &[0; 32]).is_err());
        assert!(CbcHmac::new(Backend::Ring, Integ::Sha512, &[0; 32], &[0; 64]).is_ok());
    }
}
