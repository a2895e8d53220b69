//! The ESP transform of an SA: its keys (an AEAD held inline, or AES-CBC with HMAC boxed) and
//! the sealing and opening of a whole ESP packet in place, with the IV, nonce, AAD or MAC input
//! each suite's RFC asks for.
//!
//! - **AEADs** (AES-GCM, RFC 4106; ChaCha20-Poly1305, RFC 7634): the 8-byte IV is the sequence
//!   number, the nonce salt || IV, the AAD SPI || seq (SPI || seq-high || seq-low with ESN).
//! - **AES-CBC + HMAC-SHA2** (RFC 3602, RFC 4868): encrypt-then-MAC. The 16-byte IV is the
//!   encryption under the SA's key of a block unique to the packet (sequence number and SPI),
//!   NIST SP 800-38A Appendix C's first method: unpredictable without the key, never repeated,
//!   and free, because it is produced by the same CBC call as the ciphertext. The ICV covers
//!   SPI | seq | IV | ciphertext, followed by the high half of the sequence number with ESN
//!   (RFC 4303 §3.3.2.1), and is checked in constant time before anything is decrypted.

use super::aead::{new_aead, Aead, AeadError, AeadKey};
use super::cbc::CbcHmac;
use super::suite::{Backend, Suite, BLOCK_LEN};
use super::SALT_LEN;
use crate::wire::esp::HEADER_LEN;

/// One SA's keys, expanded.
// The AEAD key schedule is inline on purpose (decision 0020); CBC keys are boxed so that an
// AES-GCM SA keeps its size and layout.
#[allow(clippy::large_enum_variant)]
pub enum EspKey {
    /// AES-GCM or ChaCha20-Poly1305.
    Aead(AeadKey),
    /// AES-CBC with HMAC-SHA2.
    Cbc(Box<CbcHmac>),
}

/// Builds the nonce of the AEAD suites: salt || explicit IV (RFC 4106 §4, RFC 7634 §2).
#[inline]
pub fn nonce(salt: &[u8; SALT_LEN], iv: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(&iv[..8]);
    n
}

/// The AAD of the AEAD suites from the ESP header `hdr` (SPI, low sequence number) and the
/// 64-bit sequence number: SPI || seq-low, or SPI || seq-high || seq-low with ESN.
#[inline]
pub fn aad(hdr: &[u8], seq: u64, esn: bool) -> ([u8; 12], usize) {
    let mut a = [0u8; 12];
    a[..4].copy_from_slice(&hdr[..4]);
    if esn {
        a[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
        a[8..].copy_from_slice(&hdr[4..8]);
        (a, 12)
    } else {
        a[4..8].copy_from_slice(&hdr[4..8]);
        (a, 8)
    }
}

/// The block whose encryption is the CBC IV of packet `seq` of SPI `spi`: seq || SPI || 0.
#[inline]
pub fn cbc_iv_block(seq: u64, spi: &[u8]) -> [u8; BLOCK_LEN] {
    let mut b = [0u8; BLOCK_LEN];
    b[..8].copy_from_slice(&seq.to_be_bytes());
    b[8..12].copy_from_slice(&spi[..4]);
    b
}

/// What the MAC of a CBC suite covers after the packet's bytes: the high half of the sequence
/// number with ESN, nothing without.
#[inline]
fn esn_tail(seq: u64, esn: bool) -> ([u8; 4], usize) {
    (((seq >> 32) as u32).to_be_bytes(), if esn { 4 } else { 0 })
}

impl EspKey {
    /// Expands the keys of `suite`: `key` is the cipher key without the salt, `integ_key` the
    /// HMAC key of a CBC suite (`None` for the AEADs).
    pub fn new(
        backend: Backend,
        suite: Suite,
        key: &[u8],
        integ_key: Option<&[u8]>,
    ) -> Result<Self, AeadError> {
        if key.len() != suite.key_len() {
            return Err(AeadError::KeyLength);
        }
        match (suite.integ(), integ_key) {
            (None, None) => Ok(EspKey::Aead(new_aead(backend, suite, key)?)),
            (Some(integ), Some(ik)) => Ok(EspKey::Cbc(Box::new(CbcHmac::new(
                backend, integ, key, ik,
            )?))),
            _ => Err(AeadError::KeyLength),
        }
    }

    /// Which library computes the AEAD or the HMAC.
    pub fn backend(&self) -> Backend {
        match self {
            EspKey::Aead(k) => k.backend(),
            EspKey::Cbc(c) => c.backend(),
        }
    }

    /// Starts loading what the key points at (the boxed CBC keys; the AEAD keys are inline).
    #[inline]
    pub fn prefetch(&self) {
        if let EspKey::Cbc(c) = self {
            crate::prefetch::value(&**c);
        }
    }

    /// Seals an ESP packet in place. `esp` runs from the ESP header, whose SPI and low
    /// sequence number are already written, to the end of the ICV; between them the IV
    /// (`suite.iv_len()` bytes, written here), the payload with padding and trailer, and
    /// room for the ICV (`suite.icv_len()` bytes).
    #[inline(always)]
    pub fn seal(
        &self,
        salt: &[u8; SALT_LEN],
        esp: &mut [u8],
        seq: u64,
        esn: bool,
    ) -> Result<(), AeadError> {
        match self {
            EspKey::Aead(k) => {
                let iv = seq.to_be_bytes();
                if esp.len() < HEADER_LEN + iv.len() {
                    return Err(AeadError::Seal);
                }
                esp[HEADER_LEN..HEADER_LEN + iv.len()].copy_from_slice(&iv);
                let (a, n) = aad(esp, seq, esn);
                k.seal(
                    &nonce(salt, &iv),
                    &a[..n],
                    &mut esp[HEADER_LEN + iv.len()..],
                )
            }
            EspKey::Cbc(c) => seal_cbc(c, esp, seq, esn),
        }
    }

    /// Opens an ESP packet in place: `esp` runs from the ESP header to the end of the ICV, and
    /// `seq` is the full (inferred) sequence number. On success the plaintext (payload,
    /// padding, trailer) lies between the IV and the ICV. For CBC the ICV is verified before
    /// anything is decrypted; a ciphertext that is not a whole number of blocks is `Length`.
    #[inline(always)]
    pub fn open(
        &self,
        salt: &[u8; SALT_LEN],
        esp: &mut [u8],
        seq: u64,
        esn: bool,
    ) -> Result<(), AeadError> {
        match self {
            EspKey::Aead(k) => {
                let body_at = HEADER_LEN + super::IV_LEN;
                if esp.len() < body_at {
                    return Err(AeadError::Auth);
                }
                let n = nonce(salt, &esp[HEADER_LEN..body_at]);
                let (a, len) = aad(esp, seq, esn);
                k.open(&n, &a[..len], &mut esp[body_at..])
            }
            EspKey::Cbc(c) => open_cbc(c, esp, seq, esn),
        }
    }
}

/// [`EspKey::seal`] for CBC: out of line, so that the AEAD path inlines into the packet loop.
#[inline(never)]
fn seal_cbc(c: &CbcHmac, esp: &mut [u8], seq: u64, esn: bool) -> Result<(), AeadError> {
    let ct_end = esp
        .len()
        .checked_sub(c.icv_len())
        .filter(|&e| e >= HEADER_LEN + BLOCK_LEN)
        .ok_or(AeadError::Length)?;
    let block = cbc_iv_block(seq, &esp[..4]);
    esp[HEADER_LEN..HEADER_LEN + BLOCK_LEN].copy_from_slice(&block);
    // Chained from a zero IV, the IV block encrypts to E_K(block): the IV, in front of the
    // payload it then chains into.
    c.encrypt([0; BLOCK_LEN], &mut esp[HEADER_LEN..ct_end])?;
    let (signed, icv) = esp.split_at_mut(ct_end);
    let (tail, n) = esn_tail(seq, esn);
    c.sign(&[signed, &tail[..n]], icv);
    Ok(())
}

/// [`EspKey::open`] for CBC: the length, then the ICV in constant time, then decryption.
#[inline(never)]
fn open_cbc(c: &CbcHmac, esp: &mut [u8], seq: u64, esn: bool) -> Result<(), AeadError> {
    let body_at = HEADER_LEN + BLOCK_LEN;
    let ct_end = esp
        .len()
        .checked_sub(c.icv_len())
        .filter(|&e| e >= body_at + BLOCK_LEN && (e - body_at) % BLOCK_LEN == 0)
        .ok_or(AeadError::Length)?;
    let (signed, icv) = esp.split_at_mut(ct_end);
    let (tail, n) = esn_tail(seq, esn);
    c.verify(&[signed, &tail[..n]], icv)?;
    let mut iv = [0u8; BLOCK_LEN];
    iv.copy_from_slice(&signed[HEADER_LEN..body_at]);
    c.decrypt(iv, &mut signed[body_at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(suite: Suite, backend: Backend) -> EspKey {
        let k: Vec<u8> = (1..=suite.key_len() as u8).collect();
        let ik: Vec<u8> = (0x40..0x40 + suite.integ_key_len() as u8).collect();
        EspKey::new(backend, suite, &k, (!suite.is_aead()).then_some(&ik[..])).unwrap()
    }

    /// An ESP packet of `payload` bytes (a whole number of blocks) with room for IV and ICV.
    fn packet(suite: Suite, payload: usize, seq: u64) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + suite.iv_len() + payload + suite.icv_len()];
        p[..4].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        p[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        for (i, b) in p[HEADER_LEN + suite.iv_len()..][..payload]
            .iter_mut()
            .enumerate()
        {
            *b = i as u8;
        }
        p
    }

    #[test]
    fn every_suite_round_trips_and_esn_is_authenticated() {
        let salt = [9, 8, 7, 6];
        for suite in Suite::ALL {
            for backend in Backend::ALL {
                let k = key(suite, backend);
                for esn in [false, true] {
                    let seq = 0x1_0000_0005;
                    let plain = packet(suite, 48, seq);
                    let mut p = plain.clone();
                    k.seal(&salt, &mut p, seq, esn).unwrap();
                    let body = HEADER_LEN + suite.iv_len();
                    assert_ne!(p[body..body + 48], plain[body..body + 48], "{suite}");
                    let mut q = p.clone();
                    k.open(&salt, &mut q, seq, esn).unwrap();
                    assert_eq!(q[body..body + 48], plain[body..body + 48], "{suite}");
                    // The high half of the sequence number is covered only with ESN.
                    let mut other = p.clone();
                    let r = k.open(&salt, &mut other, seq + (1 << 32), esn);
                    assert_eq!(r.is_err(), esn, "{suite} esn={esn}");
                    for at in [0, 5, body - 1, body, p.len() - 1] {
                        let mut bad = p.clone();
                        bad[at] ^= 0x80;
                        assert_eq!(
                            k.open(&salt, &mut bad, seq, esn),
                            Err(AeadError::Auth),
                            "{suite} byte {at}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn cbc_iv_is_the_encrypted_counter_block_and_differs_per_packet() {
        for suite in [Suite::Aes128CbcSha256, Suite::Aes256CbcSha512] {
            let k = key(suite, Backend::Ring);
            let EspKey::Cbc(c) = &k else {
                panic!("{suite} is a CBC suite")
            };
            let mut a = packet(suite, 32, 1);
            let mut b = packet(suite, 32, 2);
            k.seal(&[0; 4], &mut a, 1, false).unwrap();
            k.seal(&[0; 4], &mut b, 2, false).unwrap();
            let mut block = cbc_iv_block(1, &a[..4]);
            c.encrypt([0; BLOCK_LEN], &mut block).unwrap();
            assert_eq!(a[HEADER_LEN..HEADER_LEN + BLOCK_LEN], block);
            assert_ne!(a[8..24], b[8..24], "a fresh IV per packet");
            // Decrypting with the IV found in the packet gives the plaintext back: the wire
            // format is plain RFC 3602 CBC.
            let mut ct = a[24..56].to_vec();
            c.decrypt(a[8..24].try_into().unwrap(), &mut ct).unwrap();
            assert_eq!(ct, packet(suite, 32, 1)[24..56]);
        }
    }

    #[test]
    fn cbc_length_is_checked_and_the_icv_before_decryption() {
        let suite = Suite::Aes256CbcSha384;
        let k = key(suite, Backend::AwsLc);
        let mut p = packet(suite, 32, 3);
        k.seal(&[0; 4], &mut p, 3, true).unwrap();
        for cut in [1, 15, 17] {
            let mut short = p[..p.len() - cut].to_vec();
            assert_eq!(k.open(&[0; 4], &mut short, 3, true), Err(AeadError::Length));
        }
        // A packet cut by a whole block is the right shape but its ICV fails, and the
        // ciphertext is left as it was: nothing was decrypted.
        let mut short = p[..p.len() - 16].to_vec();
        let before = short.clone();
        assert_eq!(k.open(&[0; 4], &mut short, 3, true), Err(AeadError::Auth));
        assert_eq!(short, before);
        let mut tiny = p[..HEADER_LEN + BLOCK_LEN + suite.icv_len()].to_vec();
        assert_eq!(k.open(&[0; 4], &mut tiny, 3, true), Err(AeadError::Length));
    }

    #[test]
    fn keys_must_match_the_suite() {
        assert!(EspKey::new(Backend::Ring, Suite::Aes128CbcSha256, &[0; 16], None).is_err());
        assert!(EspKey::new(Backend::Ring, Suite::Aes128Gcm16, &[0; 16], Some(&[0; 32])).is_err());
        assert!(EspKey::new(Backend::Ring, Suite::ChaCha20Poly1305, &[0; 16], None).is_err());
        assert!(EspKey::new(
            Backend::AwsLc,
            Suite::Aes256CbcSha512,
            &[0; 32],
            Some(&[0; 48])
        )
        .is_err());
    }

    #[test]
    fn a_gcm_key_is_no_larger_than_before() {
        // The CBC keys are boxed: the enum of the SA's keys is the AEAD key plus at most a tag.
        assert!(std::mem::size_of::<EspKey>() <= std::mem::size_of::<AeadKey>() + 8);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Any suite, payload length, sequence number and ESN setting: what one side seals the
        /// other opens; any one flipped bit or any other byte string is refused, never a panic.
        #[test]
        fn seal_open_and_tamper(
            s in 0usize..Suite::ALL.len(),
            blocks in 1usize..40,
            seq in proptest::prelude::any::<u64>(),
            esn in proptest::prelude::any::<bool>(),
            flip in proptest::prelude::any::<(usize, u8)>(),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let suite = Suite::ALL[s];
            let k = key(suite, Backend::ALL[s % 2]);
            let plain = packet(suite, blocks * 16, seq);
            let mut p = plain.clone();
            k.seal(&[1, 2, 3, 4], &mut p, seq, esn).unwrap();
            let mut q = p.clone();
            proptest::prop_assert!(k.open(&[1, 2, 3, 4], &mut q, seq, esn).is_ok());
            let body = HEADER_LEN + suite.iv_len();
            proptest::prop_assert_eq!(&q[body..q.len() - suite.icv_len()], &plain[body..plain.len() - suite.icv_len()]);
            let mut bad = p.clone();
            let at = flip.0 % bad.len();
            bad[at] ^= flip.1.max(1);
            proptest::prop_assert!(k.open(&[1, 2, 3, 4], &mut bad, seq, esn).is_err());
            let mut junk = junk;
            proptest::prop_assert!(k.open(&[1, 2, 3, 4], &mut junk, seq, esn).is_err());
        }
    }
}
