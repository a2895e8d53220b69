//! The cipher of the Encrypted (SK) payload: AES-GCM with a 16-octet ICV (RFC 5282).
//!
//! The payload carries an 8-octet explicit IV; the GCM nonce is the 4-octet salt taken with the
//! key from the key schedule followed by that IV. Padding and the Pad Length octet belong to the
//! payload format and are the codec's business; this type only seals and opens.

use std::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::CryptoError;
use crate::ike::algorithms::EncrAlg;

/// Octets of the explicit IV in the SK payload.
pub const IV_LEN: usize = 8;
/// Octets of the integrity check value appended to the ciphertext.
pub const ICV_LEN: usize = 16;

/// One direction's SK payload cipher (built once from SK_ei or SK_er).
pub struct SkCipher {
    alg: EncrAlg,
    key: LessSafeKey,
    salt: Zeroizing<[u8; 4]>,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkCipher")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SkCipher {
    /// A cipher from key material of `alg.keymat_len()` octets: the AES key then the salt.
    pub fn new(alg: EncrAlg, key_and_salt: &[u8]) -> Result<Self, CryptoError> {
        let expected = alg.keymat_len();
        if key_and_salt.len() != expected {
            return Err(CryptoError::KeyLength {
                alg,
                len: key_and_salt.len(),
                expected,
            });
        }
        let (key, salt) = key_and_salt.split_at(alg.key_len());
        let aead_alg = match alg {
            EncrAlg::AesGcm16_128 => &aead::AES_128_GCM,
            EncrAlg::AesGcm16_256 => &aead::AES_256_GCM,
        };
        let key = UnboundKey::new(aead_alg, key).map_err(|_| CryptoError::KeyLength {
            alg,
            len: key_and_salt.len(),
            expected,
        })?;
        let mut s = Zeroizing::new([0u8; 4]);
        s.copy_from_slice(salt);
        Ok(SkCipher {
            alg,
            key: LessSafeKey::new(key),
            salt: s,
        })
    }

    /// The cipher's algorithm.
    pub fn alg(&self) -> EncrAlg {
        self.alg
    }

    fn nonce(&self, iv: [u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..4].copy_from_slice(self.salt.as_ref());
        n[4..].copy_from_slice(&iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypt `plaintext` (already padded, with its Pad Length octet) and authenticate it with
    /// `aad` (the IKE header and the SK payload header); returns ciphertext | ICV. An IV must
    /// never repeat under one key: use a counter such as the message ID.
    pub fn seal(&self, iv: [u8; IV_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + ICV_LEN);
        buf.extend_from_slice(plaintext);
        // aws-lc only refuses inputs beyond GCM's 2^36-octet limit, far above any datagram.
        self.key
            .seal_in_place_append_tag(self.nonce(iv), Aad::from(aad), &mut buf)
            .expect("AES-GCM seal of an IKE message cannot exceed the GCM length limit");
        buf
    }

    /// Check and decrypt ciphertext | ICV; the plaintext comes back in a zeroized buffer.
    pub fn open(
        &self,
        iv: [u8; IV_LEN],
        aad: &[u8],
        ciphertext_and_icv: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if ciphertext_and_icv.len() < ICV_LEN {
            return Err(CryptoError::Truncated(ciphertext_and_icv.len()));
        }
        let mut buf = Zeroizing::new(ciphertext_and_icv.to_vec());
        let len = self
            .key
            .open_in_place(self.nonce(iv), Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::IntegrityCheck)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::prf::tests::unhex;
    use proptest::prelude::*;

    // The GCM specification's test cases 4 (AES-128) and 16 (AES-256): 96-bit IV
    // cafebabe facedbaddecaf888, split here as salt | explicit IV.
    const IV: [u8; 8] = [0xfa, 0xce, 0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88];
    const P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                     1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    #[test]
    fn gcm_known_answers() {
        let cases = [
            (
                EncrAlg::AesGcm16_128,
                "feffe9928665731c6d6a8f9467308308",
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                 21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                "5bc94fbc3221a5db94fae95ae7121a47",
            ),
            (
                EncrAlg::AesGcm16_256,
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "76fc6ece0f4e1768cddf8853bb2d551b",
            ),
        ];
        for (alg, key, c, t) in cases {
            let mut keymat = unhex(key);
            keymat.extend_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
            let sk = SkCipher::new(alg, &keymat).unwrap();
            assert_eq!(sk.alg(), alg);
            let sealed = sk.seal(IV, &unhex(A), &unhex(P));
            let mut want = unhex(c);
            want.extend(unhex(t));
            assert_eq!(sealed, want, "{alg}");
            assert_eq!(*sk.open(IV, &unhex(A), &sealed).unwrap(), unhex(P));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let sk = SkCipher::new(EncrAlg::AesGcm16_256, &[7; 36]).unwrap();
        let aad = b"header";
        let sealed = sk.seal([1; 8], aad, b"secret payload");
        assert_eq!(sealed.len(), 14 + ICV_LEN);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(sk.open([1; 8], aad, &bad), Err(CryptoError::IntegrityCheck));
        }
        assert_eq!(
            sk.open([2; 8], aad, &sealed),
            Err(CryptoError::IntegrityCheck)
        );
        assert_eq!(
            sk.open([1; 8], b"Header", &sealed),
            Err(CryptoError::IntegrityCheck)
        );
        let other = SkCipher::new(EncrAlg::AesGcm16_256, &[8; 36]).unwrap();
        assert_eq!(
            other.open([1; 8], aad, &sealed),
            Err(CryptoError::IntegrityCheck)
        );
        // Another salt with the same key is another key.
        let mut km = [7u8; 36];
        km[35] = 0;
        let salted = SkCipher::new(EncrAlg::AesGcm16_256, &km).unwrap();
        assert_eq!(
            salted.open([1; 8], aad, &sealed),
            Err(CryptoError::IntegrityCheck)
        );
        for n in 0..ICV_LEN {
            assert_eq!(
                sk.open([1; 8], aad, &sealed[..n]),
                Err(CryptoError::Truncated(n))
            );
        }
        assert_eq!(
            sk.open([1; 8], aad, &sealed[1..]),
            Err(CryptoError::IntegrityCheck)
        );
    }

    #[test]
    fn key_length_is_checked() {
        for (alg, good) in [(EncrAlg::AesGcm16_128, 20), (EncrAlg::AesGcm16_256, 36)] {
            for len in [0, 16, good - 1, good + 1, 32] {
                assert_eq!(
                    SkCipher::new(alg, &vec![0; len]).unwrap_err(),
                    CryptoError::KeyLength {
                        alg,
                        len,
                        expected: good
                    }
                );
            }
            let sk = SkCipher::new(alg, &vec![0; good]).unwrap();
            assert!(!format!("{sk:?}").contains('['));
        }
    }

    proptest! {
        #[test]
        fn round_trip(pt in prop::collection::vec(any::<u8>(), 0..300),
                      aad in prop::collection::vec(any::<u8>(), 0..40),
                      iv in any::<[u8; 8]>()) {
            let sk = SkCipher::new(EncrAlg::AesGcm16_128, &[3; 20]).unwrap();
            let sealed = sk.seal(iv, &aad, &pt);
            prop_assert_eq!(sealed.len(), pt.len() + ICV_LEN);
            prop_assert_eq!(&*sk.open(iv, &aad, &sealed).unwrap(), &pt);
        }
    }
}
