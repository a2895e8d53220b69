//! The cipher of the Encrypted (SK) payload (RFC 7296 §3.14): the AEADs AES-GCM with a 16-octet
//! ICV (RFC 5282) and ChaCha20-Poly1305 (RFC 7634), and AES-CBC (RFC 3602) with an HMAC-SHA2
//! integrity check (RFC 4868).
//!
//! With an AEAD the payload carries an 8-octet explicit IV; the nonce is the 4-octet salt taken
//! with the key from the key schedule followed by that IV, and the associated data is everything
//! before the IV. With AES-CBC the IV is a 16-octet block and the ICV is the truncated HMAC over
//! everything before the ICV: the IKE header, the SK payload header, the IV and the ciphertext
//! (encrypt-then-MAC). Padding and the Pad Length octet belong to the payload format and are the
//! codec's business; this type seals and opens, and says how the plaintext must be aligned.
//!
//! AES-CBC opens in this order: the ICV is computed and compared in constant time
//! ([`aws_lc_rs::constant_time`]) before anything is decrypted, and only a message with a good
//! ICV has its length checked against the block size ([`CryptoError::Padding`]). A forger never
//! learns anything about a decryption, so there is no padding oracle.

use std::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::{constant_time, hmac, iv::FixedLength};
use zeroize::Zeroizing;

use super::CryptoError;
use crate::ike::algorithms::{EncrAlg, IntegAlg};

/// Octets of the explicit IV of the AEADs in the SK payload.
pub const IV_LEN: usize = 8;
/// Octets of the AEADs' integrity check value appended to the ciphertext.
pub const ICV_LEN: usize = 16;
/// Octets of the AES block, which is also the AES-CBC IV.
pub const AES_BLOCK: usize = 16;

/// The label of the key the AES-CBC IVs are drawn with (see [`SkCipher::iv`]).
const CBC_IV_LABEL: &[u8] = b"esprit IKE SK AES-CBC IV";

enum Inner {
    Aead {
        key: LessSafeKey,
        salt: Zeroizing<[u8; 4]>,
    },
    Cbc(Box<Cbc>),
}

/// The AES-CBC keys: cipher schedules for both ways, the HMAC key and the IV key.
struct Cbc {
    enc: EncryptingKey,
    dec: DecryptingKey,
    mac: hmac::Key,
    integ: IntegAlg,
    iv_key: hmac::Key,
}

/// One direction's SK payload cipher (built once from SK_ei/SK_ai or SK_er/SK_ar).
pub struct SkCipher {
    alg: EncrAlg,
    inner: Inner,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkCipher")
            .field("alg", &self.alg)
            .field("integ", &self.integ())
            .finish_non_exhaustive()
    }
}

fn hmac_of(integ: IntegAlg) -> hmac::Algorithm {
    match integ {
        IntegAlg::HmacSha256_128 => hmac::HMAC_SHA256,
        IntegAlg::HmacSha384_192 => hmac::HMAC_SHA384,
        IntegAlg::HmacSha512_256 => hmac::HMAC_SHA512,
    }
}

impl SkCipher {
    /// An AEAD cipher from key material of `alg.keymat_len()` octets: the key then the salt.
    /// AES-CBC needs an integrity key too: use [`SkCipher::with_integ`].
    pub fn new(alg: EncrAlg, key_and_salt: &[u8]) -> Result<Self, CryptoError> {
        Self::with_integ(alg, None, key_and_salt, &[])
    }

    /// A cipher from the encryption key material (`alg.keymat_len()` octets) and, for AES-CBC,
    /// the integrity algorithm and its key (`integ.key_len()` octets). An AEAD takes no
    /// integrity algorithm and AES-CBC requires one.
    pub fn with_integ(
        alg: EncrAlg,
        integ: Option<IntegAlg>,
        encr_key: &[u8],
        integ_key: &[u8],
    ) -> Result<Self, CryptoError> {
        let expected = alg.keymat_len();
        let key_err = CryptoError::KeyLength {
            alg,
            len: encr_key.len(),
            expected,
        };
        if encr_key.len() != expected {
            return Err(key_err);
        }
        let inner = match (alg.is_aead(), integ) {
            (true, None) => {
                let (key, salt) = encr_key.split_at(alg.key_len());
                let aead_alg = match alg {
                    EncrAlg::AesGcm16_128 => &aead::AES_128_GCM,
                    EncrAlg::AesGcm16_256 => &aead::AES_256_GCM,
                    _ => &aead::CHACHA20_POLY1305,
                };
                let key = UnboundKey::new(aead_alg, key).map_err(|_| key_err)?;
                let mut s = Zeroizing::new([0u8; 4]);
                s.copy_from_slice(salt);
                Inner::Aead {
                    key: LessSafeKey::new(key),
                    salt: s,
                }
            }
            (false, Some(integ)) => {
                if integ_key.len() != integ.key_len() {
                    return Err(CryptoError::IntegKeyLength {
                        alg: integ,
                        len: integ_key.len(),
                        expected: integ.key_len(),
                    });
                }
                let cipher = if alg == EncrAlg::AesCbc128 {
                    &AES_128
                } else {
                    &AES_256
                };
                let unbound = || UnboundCipherKey::new(cipher, encr_key);
                let enc = unbound()
                    .and_then(EncryptingKey::cbc)
                    .map_err(|_| key_err.clone())?;
                let dec = unbound()
                    .and_then(DecryptingKey::cbc)
                    .map_err(|_| key_err)?;
                // The IV key is a PRF of the encryption key under a fixed label: separate
                // from both keys that protect the messages.
                let iv_seed = Zeroizing::new(
                    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, encr_key), CBC_IV_LABEL)
                        .as_ref()
                        .to_vec(),
                );
                Inner::Cbc(Box::new(Cbc {
                    enc,
                    dec,
                    mac: hmac::Key::new(hmac_of(integ), integ_key),
                    integ,
                    iv_key: hmac::Key::new(hmac::HMAC_SHA256, &iv_seed),
                }))
            }
            (aead, integ) => return Err(CryptoError::IntegMismatch { alg, aead, integ }),
        };
        Ok(SkCipher { alg, inner })
    }

    /// The cipher's algorithm.
    pub fn alg(&self) -> EncrAlg {
        self.alg
    }

    /// The integrity algorithm (None for an AEAD).
    pub fn integ(&self) -> Option<IntegAlg> {
        match &self.inner {
            Inner::Aead { .. } => None,
            Inner::Cbc(c) => Some(c.integ),
        }
    }

    /// Octets of the IV carried in the payload: 8 for the AEADs, 16 for AES-CBC.
    pub fn iv_len(&self) -> usize {
        match self.inner {
            Inner::Aead { .. } => IV_LEN,
            Inner::Cbc(_) => AES_BLOCK,
        }
    }

    /// Octets of the ICV: 16 for the AEADs, half the hash for HMAC-SHA2.
    pub fn icv_len(&self) -> usize {
        match &self.inner {
            Inner::Aead { .. } => ICV_LEN,
            Inner::Cbc(c) => c.integ.icv_len(),
        }
    }

    /// What the plaintext (padding and Pad Length included) must be a multiple of: 1 for the
    /// AEADs, the AES block for AES-CBC.
    pub fn block_len(&self) -> usize {
        match self.inner {
            Inner::Aead { .. } => 1,
            Inner::Cbc(_) => AES_BLOCK,
        }
    }

    /// The IV of the message numbered `counter` (a per-SA counter that never repeats). The AEADs
    /// need only uniqueness, so the counter is the IV. AES-CBC needs an IV the peer (or anyone
    /// choosing plaintext) cannot predict (RFC 7296 §3.14): HMAC-SHA-256 of the counter under a
    /// key derived from the encryption key, truncated to a block, which is unpredictable without
    /// the key and deterministic for tests.
    pub fn iv(&self, counter: [u8; 8]) -> Vec<u8> {
        match &self.inner {
            Inner::Aead { .. } => counter.to_vec(),
            Inner::Cbc(c) => hmac::sign(&c.iv_key, &counter).as_ref()[..AES_BLOCK].to_vec(),
        }
    }

    fn nonce(salt: &[u8; 4], iv: &[u8]) -> Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..4].copy_from_slice(salt);
        n[4..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }

    /// The truncated HMAC over `aad | iv | ciphertext`.
    fn icv(mac: &hmac::Key, integ: IntegAlg, aad: &[u8], iv: &[u8], ct: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(mac);
        ctx.update(aad);
        ctx.update(iv);
        ctx.update(ct);
        ctx.sign().as_ref()[..integ.icv_len()].to_vec()
    }

    /// Encrypt `plaintext` (already padded to [`SkCipher::block_len`], with its Pad Length
    /// octet) and authenticate it with `aad` (the IKE header and the SK payload header);
    /// returns ciphertext | ICV. `iv` is [`SkCipher::iv`] of a counter that never repeats under
    /// one key.
    ///
    /// # Panics
    /// If `iv` is not [`SkCipher::iv_len`] octets or an AES-CBC plaintext is not block aligned
    /// (both are the caller's bugs).
    pub fn seal(&self, iv: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        assert_eq!(iv.len(), self.iv_len(), "SK IV length");
        match &self.inner {
            Inner::Aead { key, salt } => {
                let mut buf = Vec::with_capacity(plaintext.len() + ICV_LEN);
                buf.extend_from_slice(plaintext);
                // aws-lc only refuses inputs beyond the AEAD's length limit, far above any
                // datagram.
                key.seal_in_place_append_tag(Self::nonce(salt, iv), Aad::from(aad), &mut buf)
                    .expect("AEAD seal of an IKE message cannot exceed the length limit");
                buf
            }
            Inner::Cbc(c) => {
                let Cbc {
                    enc, mac, integ, ..
                } = &**c;
                assert_eq!(
                    plaintext.len() % AES_BLOCK,
                    0,
                    "AES-CBC plaintext alignment"
                );
                let mut buf = plaintext.to_vec();
                let mut block = [0u8; AES_BLOCK];
                block.copy_from_slice(iv);
                enc.less_safe_encrypt(&mut buf, EncryptionContext::Iv128(FixedLength::from(block)))
                    .expect("aligned AES-CBC encryption cannot fail");
                let icv = Self::icv(mac, *integ, aad, iv, &buf);
                buf.extend_from_slice(&icv);
                buf
            }
        }
    }

    /// Check and decrypt ciphertext | ICV; the plaintext (with its padding) comes back in a
    /// zeroized buffer. A bad ICV is [`CryptoError::IntegrityCheck`]; an AES-CBC ciphertext
    /// with a good ICV that is not a whole number of blocks is [`CryptoError::Padding`].
    pub fn open(
        &self,
        iv: &[u8],
        aad: &[u8],
        ciphertext_and_icv: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let icv_len = self.icv_len();
        if ciphertext_and_icv.len() < icv_len {
            return Err(CryptoError::Truncated(ciphertext_and_icv.len()));
        }
        if iv.len() != self.iv_len() {
            return Err(CryptoError::IntegrityCheck);
        }
        match &self.inner {
            Inner::Aead { key, salt } => {
                let mut buf = Zeroizing::new(ciphertext_and_icv.to_vec());
                let len = key
                    .open_in_place(Self::nonce(salt, iv), Aad::from(aad), &mut buf)
                    .map_err(|_| CryptoError::IntegrityCheck)?
                    .len();
                buf.truncate(len);
                Ok(buf)
            }
            Inner::Cbc(c) => {
                let Cbc {
                    dec, mac, integ, ..
                } = &**c;
                let (ct, icv) = ciphertext_and_icv.split_at(ciphertext_and_icv.len() - icv_len);
                let want = Self::icv(mac, *integ, aad, iv, ct);
                constant_time::verify_slices_are_equal(&want, icv)
                    .map_err(|_| CryptoError::IntegrityCheck)?;
                if ct.is_empty() || ct.len() % AES_BLOCK != 0 {
                    return Err(CryptoError::Padding);
                }
                let mut block = [0u8; AES_BLOCK];
                block.copy_from_slice(iv);
                let mut buf = Zeroizing::new(ct.to_vec());
                dec.decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(block)))
                    .map_err(|_| CryptoError::Padding)?;
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ike::crypto::prf::tests::unhex;
    use proptest::prelude::*;

    // The GCM specification's test cases 4 (AES-128) and 16 (AES-256): 96-bit IV
    // cafebabe facedbaddecaf888, split here as salt | explicit IV.
    const IV: [u8; 8] = [0xfa, 0xce, 0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88];
    const P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                     1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    /// Every (cipher, integrity) pair the SK payload can use, with keys of the right lengths.
    pub(crate) fn every_suite() -> Vec<SkCipher> {
        let mut v = Vec::new();
        for alg in EncrAlg::ALL {
            let ek: Vec<u8> = (0..alg.keymat_len()).map(|i| i as u8 ^ 0x5a).collect();
            if alg.is_aead() {
                v.push(SkCipher::new(alg, &ek).unwrap());
            } else {
                for integ in IntegAlg::ALL {
                    let ak: Vec<u8> = (0..integ.key_len()).map(|i| i as u8 ^ 0xa5).collect();
                    v.push(SkCipher::with_integ(alg, Some(integ), &ek, &ak).unwrap());
                }
            }
        }
        v
    }

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
            let sealed = sk.seal(&IV, &unhex(A), &unhex(P));
            let mut want = unhex(c);
            want.extend(unhex(t));
            assert_eq!(sealed, want, "{alg}");
            assert_eq!(*sk.open(&IV, &unhex(A), &sealed).unwrap(), unhex(P));
        }
    }

    /// RFC 8439 §2.8.2, the AEAD of RFC 7634: constant 07000000 as the salt, 4041424344454647
    /// as the explicit IV (the nonce is salt | IV, RFC 7634 §2).
    #[test]
    fn chacha20_poly1305_rfc8439_vector() {
        let mut keymat: Vec<u8> = (0x80..0xa0).collect();
        keymat.extend_from_slice(&[0x07, 0, 0, 0]);
        let sk = SkCipher::new(EncrAlg::ChaCha20Poly1305, &keymat).unwrap();
        let iv = unhex("4041424344454647");
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let want = unhex(concat!(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb",
            "69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad6",
            "75945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116",
            "1ae10b594f09e26a7e902ecbd0600691"
        ));
        assert_eq!(sk.seal(&iv, &aad, pt), want);
        assert_eq!(&*sk.open(&iv, &aad, &want).unwrap(), pt.as_slice());
        assert_eq!(sk.iv_len(), 8);
        assert_eq!(sk.icv_len(), 16);
    }

    /// RFC 3602 §4 case 2 (AES-128-CBC, two blocks) and NIST SP 800-38A F.2.5 (AES-256-CBC),
    /// with the ICV checked against HMAC-SHA2 computed separately over header | IV | ciphertext
    /// and truncated as RFC 4868 says.
    #[test]
    fn cbc_known_answers_and_icv() {
        let cases = [
            (
                EncrAlg::AesCbc128,
                "c286696d887c9aa0611bbb3e2025a45a",
                "562e17996d093d28ddb3ba695a2e6f58",
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
            ),
            (
                EncrAlg::AesCbc256,
                "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                "000102030405060708090a0b0c0d0e0f",
                "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
                "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
            ),
        ];
        let aad = b"IKE header and SK header";
        for (alg, key, iv, pt, ct) in cases {
            for integ in IntegAlg::ALL {
                let ak = vec![0x0b; integ.key_len()];
                let sk = SkCipher::with_integ(alg, Some(integ), &unhex(key), &ak).unwrap();
                assert_eq!((sk.iv_len(), sk.block_len()), (16, 16));
                assert_eq!(sk.icv_len(), integ.icv_len());
                let iv = unhex(iv);
                let sealed = sk.seal(&iv, aad, &unhex(pt));
                let (c, icv) = sealed.split_at(sealed.len() - integ.icv_len());
                assert_eq!(c, unhex(ct).as_slice(), "{alg}");
                let full = hmac::sign(
                    &hmac::Key::new(hmac_of(integ), &ak),
                    &[aad.as_slice(), &iv, c].concat(),
                );
                assert_eq!(icv, &full.as_ref()[..integ.icv_len()], "{integ}");
                assert_eq!(*sk.open(&iv, aad, &sealed).unwrap(), unhex(pt));
            }
        }
    }

    /// Test case 2 ("Jefe", key repeated to the hash length) of RFC 4868 §2.7.2: the truncated
    /// HMACs, which are the integrity check values the SK payload carries. The SHA-256 and
    /// SHA-384 values are RFC 4868's; the SHA-512 one was computed independently with Python's
    /// `hmac` module (no copy of the RFC was at hand to check it against).
    #[test]
    fn rfc4868_truncated_icvs() {
        let data = b"what do ya want for nothing?";
        for (integ, key_len, want) in [
            (
                IntegAlg::HmacSha256_128,
                32,
                "167f928588c5cc2eef8e3093caa0e87c",
            ),
            (
                IntegAlg::HmacSha384_192,
                48,
                "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d",
            ),
            (
                IntegAlg::HmacSha512_256,
                64,
                "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454",
            ),
        ] {
            // "Jefe" repeated to the hash length.
            let key: Vec<u8> = b"Jefe".iter().copied().cycle().take(key_len).collect();
            let tag = hmac::sign(&hmac::Key::new(hmac_of(integ), &key), data);
            assert_eq!(
                &tag.as_ref()[..integ.icv_len()],
                unhex(want).as_slice(),
                "{integ}"
            );
        }
    }

    #[test]
    fn cbc_iv_is_unpredictable_and_distinct() {
        let a = SkCipher::with_integ(
            EncrAlg::AesCbc256,
            Some(IntegAlg::HmacSha256_128),
            &[1; 32],
            &[2; 32],
        )
        .unwrap();
        let b = SkCipher::with_integ(
            EncrAlg::AesCbc256,
            Some(IntegAlg::HmacSha256_128),
            &[3; 32],
            &[2; 32],
        )
        .unwrap();
        let ivs: Vec<Vec<u8>> = (1u64..=64).map(|n| a.iv(n.to_be_bytes())).collect();
        for (i, iv) in ivs.iter().enumerate() {
            assert_eq!(iv.len(), 16);
            // Not the counter, not shared with another key, and never repeated.
            assert_ne!(&iv[8..], &(i as u64 + 1).to_be_bytes());
            assert_ne!(*iv, b.iv((i as u64 + 1).to_be_bytes()));
            assert!(ivs[..i].iter().all(|o| o != iv));
        }
        // The AEADs use the counter as it is.
        let g = SkCipher::new(EncrAlg::AesGcm16_128, &[0; 20]).unwrap();
        assert_eq!(g.iv([9; 8]), vec![9; 8]);
    }

    #[test]
    fn tampering_is_detected_for_every_suite() {
        let aad = b"header";
        for sk in every_suite() {
            let iv = sk.iv(1u64.to_be_bytes());
            let pt = vec![0x42u8; 2 * sk.block_len().max(7)];
            let sealed = sk.seal(&iv, aad, &pt);
            assert_eq!(sealed.len(), pt.len() + sk.icv_len());
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 0x01;
                assert_eq!(
                    sk.open(&iv, aad, &bad),
                    Err(CryptoError::IntegrityCheck),
                    "{sk:?} byte {i}"
                );
            }
            let mut other_iv = iv.clone();
            other_iv[0] ^= 1;
            assert_eq!(
                sk.open(&other_iv, aad, &sealed),
                Err(CryptoError::IntegrityCheck)
            );
            assert_eq!(
                sk.open(&iv, b"Header", &sealed),
                Err(CryptoError::IntegrityCheck)
            );
            for n in 0..sk.icv_len() {
                assert_eq!(
                    sk.open(&iv, aad, &sealed[..n]),
                    Err(CryptoError::Truncated(n))
                );
            }
            assert_eq!(
                sk.open(&iv, aad, &sealed[1..]),
                Err(CryptoError::IntegrityCheck)
            );
        }
        // Another salt with the same key is another key.
        let sk = SkCipher::new(EncrAlg::AesGcm16_256, &[7; 36]).unwrap();
        let sealed = sk.seal(&[1; 8], aad, b"secret payload");
        let mut km = [7u8; 36];
        km[35] = 0;
        let salted = SkCipher::new(EncrAlg::AesGcm16_256, &km).unwrap();
        assert_eq!(
            salted.open(&[1; 8], aad, &sealed),
            Err(CryptoError::IntegrityCheck)
        );
    }

    /// A CBC ciphertext that is not a whole number of blocks is refused as a padding error only
    /// when its ICV is good (a peer holding the keys sent it); with a bad ICV it is an
    /// integrity failure like any forgery, so the two cannot be told apart without the key.
    #[test]
    fn cbc_misaligned_ciphertext_after_a_good_icv_is_a_padding_error() {
        let (ek, ak) = ([4u8; 16], [5u8; 32]);
        let integ = IntegAlg::HmacSha256_128;
        let sk = SkCipher::with_integ(EncrAlg::AesCbc128, Some(integ), &ek, &ak).unwrap();
        let iv = [6u8; 16];
        let aad = b"hdr";
        for len in [0usize, 1, 15, 17, 31] {
            let ct = vec![0x77u8; len];
            let icv = SkCipher::icv(
                &hmac::Key::new(hmac::HMAC_SHA256, &ak),
                integ,
                aad,
                &iv,
                &ct,
            );
            let msg = [ct.as_slice(), &icv].concat();
            assert_eq!(sk.open(&iv, aad, &msg), Err(CryptoError::Padding), "{len}");
            let mut forged = msg.clone();
            *forged.last_mut().unwrap() ^= 1;
            assert_eq!(
                sk.open(&iv, aad, &forged),
                Err(CryptoError::IntegrityCheck),
                "{len}"
            );
        }
    }

    #[test]
    fn key_lengths_and_integrity_pairing_are_checked() {
        for alg in EncrAlg::ALL {
            let good = alg.keymat_len();
            for len in [0, good - 1, good + 1] {
                let r = if alg.is_aead() {
                    SkCipher::new(alg, &vec![0; len])
                } else {
                    SkCipher::with_integ(
                        alg,
                        Some(IntegAlg::HmacSha256_128),
                        &vec![0; len],
                        &[0; 32],
                    )
                };
                assert_eq!(
                    r.unwrap_err(),
                    CryptoError::KeyLength {
                        alg,
                        len,
                        expected: good
                    }
                );
            }
            let integ = Some(IntegAlg::HmacSha384_192);
            let wrong = SkCipher::with_integ(
                alg,
                if alg.is_aead() { integ } else { None },
                &vec![0; good],
                &[0; 48],
            );
            assert!(
                matches!(wrong, Err(CryptoError::IntegMismatch { .. })),
                "{alg}"
            );
        }
        assert_eq!(
            SkCipher::with_integ(
                EncrAlg::AesCbc256,
                Some(IntegAlg::HmacSha512_256),
                &[0; 32],
                &[0; 32]
            )
            .unwrap_err(),
            CryptoError::IntegKeyLength {
                alg: IntegAlg::HmacSha512_256,
                len: 32,
                expected: 64
            }
        );
        for sk in every_suite() {
            let dbg = format!("{sk:?}");
            assert!(!dbg.contains('['), "{dbg}");
        }
    }

    proptest! {
        #[test]
        fn round_trip_every_suite(pt in prop::collection::vec(any::<u8>(), 0..300),
                                  aad in prop::collection::vec(any::<u8>(), 0..40),
                                  counter in any::<u64>()) {
            for sk in every_suite() {
                let block = sk.block_len();
                let mut pt = pt.clone();
                // The SK plaintext always has its Pad Length octet: at least one block.
                pt.resize((pt.len() / block).max(1) * block, 0);
                let iv = sk.iv(counter.to_be_bytes());
                prop_assert_eq!(iv.len(), sk.iv_len());
                let sealed = sk.seal(&iv, &aad, &pt);
                prop_assert_eq!(sealed.len(), pt.len() + sk.icv_len());
                let opened = sk.open(&iv, &aad, &sealed);
                prop_assert_eq!(opened.as_deref().map(|v| v.as_slice()), Ok(pt.as_slice()));
            }
        }
    }
}
