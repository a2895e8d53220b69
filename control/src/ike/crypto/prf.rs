//! The pseudo-random functions (HMAC-SHA2, RFC 4868) and prf+ (RFC 7296 §2.13).

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use super::CryptoError;
use crate::ike::algorithms::PrfAlg;

/// The aws-lc HMAC algorithm behind a PRF transform.
pub(crate) fn hmac_alg(alg: PrfAlg) -> hmac::Algorithm {
    match alg {
        PrfAlg::HmacSha256 => hmac::HMAC_SHA256,
        PrfAlg::HmacSha384 => hmac::HMAC_SHA384,
        PrfAlg::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// prf(key, data[0] | data[1] | ...). HMAC takes keys of any length, so `key` is used whole
/// (RFC 7296 §2.14 truncation rules only apply to fixed-key-size PRFs).
pub fn prf(alg: PrfAlg, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    hmac_parts(hmac_alg(alg), key, data).as_ref().to_vec()
}

/// prf() whose output is secret (SKEYSEED, the PSK pad): kept in a zeroized buffer.
pub(crate) fn prf_secret(alg: hmac::Algorithm, key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(hmac_parts(alg, key, data).as_ref().to_vec())
}

fn hmac_parts(alg: hmac::Algorithm, key: &[u8], data: &[&[u8]]) -> hmac::Tag {
    let key = hmac::Key::new(alg, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in data {
        ctx.update(part);
    }
    ctx.sign()
}

/// prf+(K, S) = T1 | T2 | ... truncated to `len` octets, where T1 = prf(K, S | 0x01) and
/// Tn = prf(K, Tn-1 | S | n). The counter is one octet, so at most 255 blocks can be produced;
/// asking for more is an error.
pub fn prf_plus(
    alg: PrfAlg,
    key: &[u8],
    seed: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    prf_plus_with(hmac_alg(alg), key, seed, len).ok_or(CryptoError::PrfPlusTooLong {
        prf: alg,
        requested: len,
        max: 255 * alg.output_len(),
    })
}

/// prf+ over any HMAC; None when `len` needs more than 255 blocks.
pub(crate) fn prf_plus_with(
    alg: hmac::Algorithm,
    key: &[u8],
    seed: &[u8],
    len: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    let block = alg.digest_algorithm().output_len();
    let blocks = u8::try_from(len.div_ceil(block)).ok()?;
    let key = hmac::Key::new(alg, key);
    // Capacity for every block up front: the buffer never reallocates, so no unzeroized copy
    // of keying material is left behind.
    let mut out = Zeroizing::new(Vec::with_capacity(usize::from(blocks) * block));
    for counter in 1..=blocks {
        let mut ctx = hmac::Context::with_key(&key);
        if counter > 1 {
            ctx.update(&out[out.len() - block..]);
        }
        ctx.update(seed);
        ctx.update(&[counter]);
        out.extend_from_slice(ctx.sign().as_ref());
    }
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(s.len() % 2 == 0, "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 is a truncated output).
    #[test]
    fn rfc4231_vectors() {
        let data3 = [0xddu8; 50];
        let data4 = [0xcdu8; 50];
        let key4 = unhex("0102030405060708090a0b0c0d0e0f10111213141516171819");
        let key67 = [0xaau8; 131];
        let cases: Vec<(Vec<u8>, Vec<u8>, [&str; 3])> = vec![
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                [
                    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                    "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                     faea9ea9076ede7f4af152e8b2fa9cb6",
                    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                     daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
                ],
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                [
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                     8e2240ca5e69e2c78b3239ecfab21649",
                    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                     9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                ],
            ),
            (
                vec![0xaa; 20],
                data3.to_vec(),
                [
                    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                    "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b\
                     2a5ab39dc13814b94e3ab6e101a34f27",
                    "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
                     bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
                ],
            ),
            (
                key4,
                data4.to_vec(),
                [
                    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                    "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e\
                     6801dd23c4a7d679ccf8a386c674cffb",
                    "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
                     a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
                ],
            ),
            (
                key67.to_vec(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                [
                    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                    "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
                     0c2ef6ab4030fe8296248df163f44952",
                    "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                     6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
                ],
            ),
            (
                key67.to_vec(),
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm."
                    .to_vec(),
                [
                    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                    "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5\
                     a678cc31e799176d3860e6110c46523e",
                    "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944\
                     b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
                ],
            ),
        ];
        for (key, data, want) in cases {
            for (alg, want) in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512]
                .into_iter()
                .zip(want)
            {
                assert_eq!(prf(alg, &key, &[&data]), unhex(want), "{alg}");
                // Splitting the data does not change the result.
                let (a, b) = data.split_at(data.len() / 2);
                assert_eq!(prf(alg, &key, &[a, b]), unhex(want), "{alg} split");
            }
        }
    }

    #[test]
    fn prf_plus_blocks_chain_as_specified() {
        let (key, seed) = (b"key".as_slice(), b"seed".as_slice());
        let alg = PrfAlg::HmacSha256;
        let t1 = prf(alg, key, &[seed, &[1]]);
        let t2 = prf(alg, key, &[&t1, seed, &[2]]);
        let t3 = prf(alg, key, &[&t2, seed, &[3]]);
        let out = prf_plus(alg, key, seed, 80).unwrap();
        assert_eq!(&out[..32], t1.as_slice());
        assert_eq!(&out[32..64], t2.as_slice());
        assert_eq!(&out[64..], &t3[..16]);
    }

    #[test]
    fn prf_plus_limit() {
        for alg in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512] {
            let max = 255 * alg.output_len();
            assert_eq!(prf_plus(alg, b"k", b"s", max).unwrap().len(), max);
            assert_eq!(
                prf_plus(alg, b"k", b"s", max + 1),
                Err(CryptoError::PrfPlusTooLong {
                    prf: alg,
                    requested: max + 1,
                    max
                })
            );
        }
        assert!(prf_plus(PrfAlg::HmacSha256, b"k", b"s", 0)
            .unwrap()
            .is_empty());
    }

    proptest! {
        #[test]
        fn prf_plus_is_a_prefix_of_longer_output(len in 0usize..600, extra in 0usize..100) {
            let short = prf_plus(PrfAlg::HmacSha384, b"k", b"seed", len).unwrap();
            let long = prf_plus(PrfAlg::HmacSha384, b"k", b"seed", len + extra).unwrap();
            prop_assert_eq!(short.len(), len);
            prop_assert_eq!(&long[..len], &short[..]);
        }
    }
}
