//! RSASSA-PSS certificate signatures with a salt longer than the hash, for rustls-webpki.
//!
//! rustls-webpki matches a certificate's signatureAlgorithm byte for byte against the
//! algorithms it is given, and its own PSS algorithms are those of RFC 4055 with the salt as
//! long as the hash. OpenSSL signs with the longest salt the key allows when asked for PSS
//! without a salt length, so a CA made that way has certificates webpki would call unsupported.
//! This module gives webpki one more algorithm per such identifier met in a chain, verified by
//! the same aws-lc code as IKE's own PSS signatures (`sig::verify`).

use std::sync::Mutex;

use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm,
};

use super::sig::{self, KeyKind, PublicKey, Scheme};

/// Distinct PSS identifiers remembered for the life of the process. Each is a few dozen
/// octets; the bound keeps a peer that sends certificates with ever new salt lengths from
/// growing the table (beyond it, such certificates fail as unsupported).
const MAX_IDENTIFIERS: usize = 32;

/// RSASSA-PSS with one hash and salt length, under the exact AlgorithmIdentifier contents a
/// certificate carries.
#[derive(Debug)]
pub(crate) struct PssAlgorithm {
    alg_id: &'static [u8],
    scheme: Scheme,
}

impl SignatureVerificationAlgorithm for PssAlgorithm {
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        AlgorithmIdentifier::from_slice(self.alg_id)
    }

    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = PublicKey {
            kind: KeyKind::Rsa,
            raw: public_key.to_vec(),
        };
        sig::verify(&key, self.scheme, message, signature).map_err(|_| InvalidSignature)
    }
}

static KNOWN: Mutex<Vec<&'static PssAlgorithm>> = Mutex::new(Vec::new());

/// The algorithm for a certificate signed with `scheme` under the signatureAlgorithm whose
/// contents are `alg_id`, if it is PSS with a salt other than the hash length (webpki's own
/// algorithms cover that one) and the table has room.
pub(crate) fn algorithm_for(alg_id: &[u8], scheme: Scheme) -> Option<&'static PssAlgorithm> {
    let Scheme::RsaPss { hash, salt } = scheme else {
        return None;
    };
    if usize::try_from(salt).ok() == Some(hash.len()) {
        return None;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(a) = known.iter().find(|a| a.alg_id == alg_id) {
        return Some(a);
    }
    if known.len() >= MAX_IDENTIFIERS {
        return None;
    }
    let a: &'static PssAlgorithm = Box::leak(Box::new(PssAlgorithm {
        alg_id: Box::leak(alg_id.to_vec().into_boxed_slice()),
        scheme,
    }));
    known.push(a);
    Some(a)
}

/// One DER element at the start of `input`: (tag, contents, the rest after it).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The contents of a DER certificate's outer signatureAlgorithm (the OID and parameters,
/// without the SEQUENCE header): what webpki compares with an algorithm's identifier.
pub(crate) fn signature_alg_contents(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, body, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_tbs) = element(body)?;
    let (tag, alg, _) = element(after_tbs)?;
    (tag == SEQUENCE).then_some(alg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_elements_and_bounds() {
        assert_eq!(
            element(&[0x02, 0x01, 0x05, 0xff]),
            Some((2, &[5u8][..], &[0xffu8][..]))
        );
        let long = [0x04, 0x81, 0x02, 0xaa, 0xbb];
        assert_eq!(element(&long), Some((4, &[0xaa, 0xbb][..], &[][..])));
        assert_eq!(element(&[0x04, 0x05, 0x00]), None);
        assert_eq!(element(&[0x04, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(element(&[0x04]), None);
        assert_eq!(signature_alg_contents(&[0x31, 0x00]), None);
        assert_eq!(signature_alg_contents(&[]), None);
    }

    #[test]
    fn hash_length_salts_are_left_to_webpki_and_the_table_is_bounded() {
        use super::sig::Hash;
        assert!(algorithm_for(
            b"x",
            Scheme::RsaPss {
                hash: Hash::Sha256,
                salt: 32
            }
        )
        .is_none());
        assert!(algorithm_for(b"x", Scheme::Ed25519).is_none());
        let a = algorithm_for(
            b"id-a",
            Scheme::RsaPss {
                hash: Hash::Sha256,
                salt: 222,
            },
        );
        let b = algorithm_for(
            b"id-a",
            Scheme::RsaPss {
                hash: Hash::Sha256,
                salt: 222,
            },
        );
        assert!(std::ptr::eq(a.unwrap(), b.unwrap()));
        for i in 0..2 * MAX_IDENTIFIERS {
            let id = format!("id-{i}");
            let _ = algorithm_for(
                id.as_bytes(),
                Scheme::RsaPss {
                    hash: Hash::Sha384,
                    salt: 7,
                },
            );
        }
        assert!(KNOWN.lock().unwrap().len() <= MAX_IDENTIFIERS);
    }
}
