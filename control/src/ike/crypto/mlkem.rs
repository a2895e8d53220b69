//! ML-KEM (FIPS 203) as an IKEv2 key exchange method: ML-KEM-512, -768 and -1024 (IANA
//! Transform Type 4 IDs 35, 36 and 37), run as an additional key exchange (RFC 9370) after a
//! classical one.
//!
//! The exchange is a key encapsulation, not a Diffie-Hellman: the initiator sends its
//! encapsulation key in the KE payload, the responder answers with a ciphertext that
//! encapsulates a fresh 32-octet secret to it, and the initiator decapsulates. Both ends then
//! hold the same secret, used as SK(n) in the RFC 9370 key update.
//!
//! aws-lc draws the randomness of key generation and encapsulation itself (it exposes no
//! seeded form), so this is the one exchange that does not take its randomness from
//! [`crate::ike::rng::RandomSource`]; the known-answer tests therefore start from key pairs
//! and ciphertexts made by an independent implementation (`testdata/mlkem_kat.py`).
//!
//! Every length is checked before aws-lc sees the data: an encapsulation key or ciphertext of
//! the wrong length is an error the caller answers with INVALID_SYNTAX. An encapsulation key
//! that fails FIPS 203's modulus check is refused the same way. A ciphertext of the right
//! length never fails: a forged one decapsulates, in constant time, to an unrelated secret
//! (implicit rejection), and the exchange then fails at AUTH.

use std::fmt;

use aws_lc_rs::kem;
use zeroize::Zeroizing;

/// The Additional Key Exchange transforms of one proposal (RFC 9370 §2.2.1): for ADDKE1 to
/// ADDKE7, the acceptable methods in order of preference, `None` standing for NONE (no exchange
/// in that round). An empty list means the type is not offered, which accepts only NONE.
pub type AddKeSlots = [Vec<Option<MlKem>>; 7];

/// The Additional Key Exchange methods agreed for an IKE SA, ADDKE1 to ADDKE7 (None: no exchange
/// in that round).
pub type AddKeChoice = [Option<MlKem>; 7];

/// The agreed additional key exchanges as proposal keywords (`ke1_mlkem768-ke2_mlkem1024`),
/// empty when there are none.
pub fn addke_name(choice: &AddKeChoice) -> String {
    choice
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.map(|m| format!("ke{}_{}", i + 1, m.name())))
        .collect::<Vec<_>>()
        .join("-")
}

/// One ML-KEM parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MlKem {
    /// ML-KEM-512 (NIST category 1).
    MlKem512,
    /// ML-KEM-768 (NIST category 3).
    MlKem768,
    /// ML-KEM-1024 (NIST category 5).
    MlKem1024,
}

/// Why an ML-KEM exchange step failed. Names lengths and methods, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlKemError {
    /// An encapsulation key of the wrong length.
    #[error("{method} encapsulation key has {len} octets, expected {expected}")]
    EncapsulationKeyLength {
        /// The method.
        method: MlKem,
        /// The length received.
        len: usize,
        /// The length the method requires.
        expected: usize,
    },
    /// A ciphertext of the wrong length.
    #[error("{method} ciphertext has {len} octets, expected {expected}")]
    CiphertextLength {
        /// The method.
        method: MlKem,
        /// The length received.
        len: usize,
        /// The length the method requires.
        expected: usize,
    },
    /// An encapsulation key of the right length that is not a valid one (a coefficient not
    /// below q: FIPS 203 §7.2's modulus check).
    #[error("{0} encapsulation key fails the modulus check")]
    InvalidEncapsulationKey(MlKem),
    /// aws-lc failed to make a key pair, encapsulate or decapsulate.
    #[error("{0} operation failed")]
    Operation(MlKem),
}

impl MlKem {
    /// Every parameter set, weakest first.
    pub const ALL: [MlKem; 3] = [MlKem::MlKem512, MlKem::MlKem768, MlKem::MlKem1024];

    /// The IANA Transform Type 4 (key exchange method) ID.
    pub fn transform_id(self) -> u16 {
        match self {
            MlKem::MlKem512 => 35,
            MlKem::MlKem768 => 36,
            MlKem::MlKem1024 => 37,
        }
    }

    /// The parameter set of a Transform Type 4 ID, if it is one.
    pub fn from_transform_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.transform_id() == id)
    }

    /// The name in proposal strings, as strongSwan writes it (`mlkem768`).
    pub fn name(self) -> &'static str {
        match self {
            MlKem::MlKem512 => "mlkem512",
            MlKem::MlKem768 => "mlkem768",
            MlKem::MlKem1024 => "mlkem1024",
        }
    }

    /// The parameter set of a proposal-string name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Octets of the encapsulation key (the initiator's KE payload data).
    pub fn encapsulation_key_len(self) -> usize {
        match self {
            MlKem::MlKem512 => 800,
            MlKem::MlKem768 => 1184,
            MlKem::MlKem1024 => 1568,
        }
    }

    /// Octets of the ciphertext (the responder's KE payload data).
    pub fn ciphertext_len(self) -> usize {
        match self {
            MlKem::MlKem512 => 768,
            MlKem::MlKem768 => 1088,
            MlKem::MlKem1024 => 1568,
        }
    }

    /// Octets of the shared secret (all parameter sets).
    pub const SHARED_SECRET_LEN: usize = 32;

    fn algorithm(self) -> &'static kem::Algorithm<kem::AlgorithmId> {
        match self {
            MlKem::MlKem512 => &kem::ML_KEM_512,
            MlKem::MlKem768 => &kem::ML_KEM_768,
            MlKem::MlKem1024 => &kem::ML_KEM_1024,
        }
    }

    /// The responder's step: encapsulates a fresh secret to the initiator's encapsulation
    /// key. Returns the ciphertext for the KE payload and the shared secret.
    pub fn encapsulate(
        self,
        encapsulation_key: &[u8],
    ) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), MlKemError> {
        let expected = self.encapsulation_key_len();
        if encapsulation_key.len() != expected {
            return Err(MlKemError::EncapsulationKeyLength {
                method: self,
                len: encapsulation_key.len(),
                expected,
            });
        }
        if !modulus_check(encapsulation_key) {
            return Err(MlKemError::InvalidEncapsulationKey(self));
        }
        let ek = kem::EncapsulationKey::new(self.algorithm(), encapsulation_key)
            .map_err(|_| MlKemError::InvalidEncapsulationKey(self))?;
        let (ct, ss) = ek.encapsulate().map_err(|_| MlKemError::Operation(self))?;
        Ok((ct.as_ref().to_vec(), Zeroizing::new(ss.as_ref().to_vec())))
    }
}

impl fmt::Display for MlKem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MlKem::MlKem512 => "ML-KEM-512",
            MlKem::MlKem768 => "ML-KEM-768",
            MlKem::MlKem1024 => "ML-KEM-1024",
        })
    }
}

/// The initiator's side of an ML-KEM exchange: the decapsulation key, kept until the
/// responder's ciphertext arrives, and the encapsulation key sent in the KE payload.
pub struct MlKemInitiator {
    method: MlKem,
    decapsulation_key: kem::DecapsulationKey<kem::AlgorithmId>,
    encapsulation_key: Vec<u8>,
}

impl fmt::Debug for MlKemInitiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlKemInitiator")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl MlKemInitiator {
    /// A fresh key pair.
    pub fn new(method: MlKem) -> Result<Self, MlKemError> {
        let dk = kem::DecapsulationKey::generate(method.algorithm())
            .map_err(|_| MlKemError::Operation(method))?;
        let ek = dk
            .encapsulation_key()
            .and_then(|ek| ek.key_bytes().map(|b| b.as_ref().to_vec()))
            .map_err(|_| MlKemError::Operation(method))?;
        if ek.len() != method.encapsulation_key_len() {
            return Err(MlKemError::Operation(method));
        }
        Ok(MlKemInitiator {
            method,
            decapsulation_key: dk,
            encapsulation_key: ek,
        })
    }

    /// The parameter set.
    pub fn method(&self) -> MlKem {
        self.method
    }

    /// The encapsulation key: the Key Exchange Data of the initiator's KE payload.
    pub fn public_value(&self) -> &[u8] {
        &self.encapsulation_key
    }

    /// The shared secret from the responder's ciphertext. Only the length can make this
    /// fail: a ciphertext that was tampered with yields an unrelated secret.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, MlKemError> {
        decapsulate(self.method, &self.decapsulation_key, ciphertext)
    }
}

/// FIPS 203 §7.2's modulus check of an encapsulation key of the right length: the key is
/// ByteEncode12 of k·256 coefficients (384 octets per 256) followed by the 32-octet seed ρ,
/// and every coefficient must be below q = 3329 (so that decoding and encoding again gives
/// the same octets).
fn modulus_check(ek: &[u8]) -> bool {
    const Q: u16 = 3329;
    let coefficients = &ek[..ek.len() - 32];
    coefficients.chunks_exact(3).all(|c| {
        let (b0, b1, b2) = (u16::from(c[0]), u16::from(c[1]), u16::from(c[2]));
        (b0 | (b1 & 0x0f) << 8) < Q && (b1 >> 4 | b2 << 4) < Q
    })
}

fn decapsulate(
    method: MlKem,
    dk: &kem::DecapsulationKey<kem::AlgorithmId>,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, MlKemError> {
    let expected = method.ciphertext_len();
    if ciphertext.len() != expected {
        return Err(MlKemError::CiphertextLength {
            method,
            len: ciphertext.len(),
            expected,
        });
    }
    let ss = dk
        .decapsulate(kem::Ciphertext::from(ciphertext))
        .map_err(|_| MlKemError::Operation(method))?;
    Ok(Zeroizing::new(ss.as_ref().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The known answers of testdata/mlkem_kat.txt (made by kyber-py, see mlkem_kat.py).
    fn kat() -> HashMap<String, Vec<u8>> {
        include_str!("testdata/mlkem_kat.txt")
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| {
                let bytes = (0..v.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                    .collect();
                (k.to_string(), bytes)
            })
            .collect()
    }

    #[test]
    fn an_independent_implementations_keys_and_ciphertexts_give_its_secrets() {
        let kat = kat();
        for m in MlKem::ALL {
            let get = |k: &str| kat[&format!("mlkem{}.{k}", &m.name()[5..])].clone();
            let (ek, dk, ct) = (get("ek"), get("dk"), get("ct"));
            assert_eq!(ek.len(), m.encapsulation_key_len(), "{m}");
            assert_eq!(ct.len(), m.ciphertext_len(), "{m}");
            let dk = kem::DecapsulationKey::new(m.algorithm(), &dk).unwrap();
            let ss = decapsulate(m, &dk, &ct).unwrap();
            assert_eq!(ss.as_slice(), get("ss").as_slice(), "{m}");
            // Implicit rejection: a ciphertext with one bit flipped gives the secret FIPS 203
            // derives from z and the ciphertext, not an error.
            let mut bad = ct.clone();
            bad[0] ^= 1;
            let rejected = decapsulate(m, &dk, &bad).unwrap();
            assert_eq!(rejected.as_slice(), get("rejected_ss").as_slice(), "{m}");
            // aws-lc takes the other implementation's encapsulation key, and a secret
            // encapsulated to it decapsulates to the same value there.
            let (ct2, ss2) = m.encapsulate(&ek).unwrap();
            assert_eq!(decapsulate(m, &dk, &ct2).unwrap(), ss2, "{m}");
        }
    }

    #[test]
    fn initiator_and_responder_agree() {
        for m in MlKem::ALL {
            let i = MlKemInitiator::new(m).unwrap();
            assert_eq!(i.public_value().len(), m.encapsulation_key_len());
            let (ct, ss_r) = m.encapsulate(i.public_value()).unwrap();
            assert_eq!(ct.len(), m.ciphertext_len());
            let ss_i = i.decapsulate(&ct).unwrap();
            assert_eq!(ss_i, ss_r);
            assert_eq!(ss_i.len(), MlKem::SHARED_SECRET_LEN);
            // Two key pairs are not the same.
            assert_ne!(
                MlKemInitiator::new(m).unwrap().public_value(),
                i.public_value()
            );
        }
    }

    #[test]
    fn wrong_lengths_and_keys_out_of_range_are_refused() {
        for m in MlKem::ALL {
            let i = MlKemInitiator::new(m).unwrap();
            let ek = i.public_value();
            for len in [0, ek.len() - 1, ek.len() + 1] {
                let mut v = ek.to_vec();
                v.resize(len, 0);
                assert_eq!(
                    m.encapsulate(&v).unwrap_err(),
                    MlKemError::EncapsulationKeyLength {
                        method: m,
                        len,
                        expected: ek.len()
                    }
                );
            }
            // A 12-bit coefficient set to q = 3329 (0xd01), or to 4095: not a valid key.
            // The first of a pair sits in octet 0 and the low half of octet 1, the second in
            // the high half of octet 1 and octet 2; the seed at the end is any 32 octets.
            let last = ek.len() - 32 - 3;
            for (at, bytes) in [
                (0, [0x01, 0x0d, 0x00]),
                (last, [0x00, 0x10, 0xd0]),
                (last, [0x00, 0xf0, 0xff]),
            ] {
                let mut bad = ek.to_vec();
                bad[at..at + 3].copy_from_slice(&bytes);
                assert_eq!(
                    m.encapsulate(&bad).unwrap_err(),
                    MlKemError::InvalidEncapsulationKey(m)
                );
            }
            let mut seed_changed = ek.to_vec();
            *seed_changed.last_mut().unwrap() ^= 0xff;
            assert!(m.encapsulate(&seed_changed).is_ok());
            for len in [0, 32, m.ciphertext_len() - 1, m.ciphertext_len() + 1] {
                assert!(matches!(
                    i.decapsulate(&vec![0u8; len]),
                    Err(MlKemError::CiphertextLength { .. })
                ));
            }
        }
    }

    #[test]
    fn ids_and_names_round_trip() {
        for m in MlKem::ALL {
            assert_eq!(MlKem::from_transform_id(m.transform_id()), Some(m));
            assert_eq!(MlKem::from_name(m.name()), Some(m));
        }
        assert_eq!(MlKem::from_transform_id(31), None);
        assert_eq!(MlKem::from_name("kyber768"), None);
    }
}
