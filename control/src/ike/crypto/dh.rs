//! Key exchange (the KE payload): X25519 (RFC 8031), ECP-256/384/521 (RFC 5903) and
//! MODP-2048/3072/4096 (RFC 3526 groups 14, 15 and 16).
//!
//! The private value always comes from the caller's [`RandomSource`], so a seeded source replays
//! an exchange byte for byte. Elliptic curves run in aws-lc, which checks that a peer's point is
//! on the curve; the MODP groups run in crypto-bigint with a constant-time Montgomery
//! exponentiation over a 512-bit private exponent, after checking 1 < y < p-1.

use std::fmt;

use aws_lc_rs::agreement;
use crypto_bigint::modular::{ConstMontyForm, ConstMontyParams};
use crypto_bigint::{impl_modulus, Encoding, Uint, U2048, U3072, U4096, U512};
use zeroize::{Zeroize, Zeroizing};

use super::CryptoError;
use crate::ike::algorithms::DhGroup;
use crate::ike::rng::RandomSource;

impl_modulus!(
    Modp2048,
    U2048,
    concat!(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    ),
    "The RFC 3526 2048-bit MODP prime (IKE group 14), a safe prime with generator 2."
);

impl_modulus!(
    Modp3072,
    U3072,
    concat!(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    ),
    "The RFC 3526 3072-bit MODP prime (IKE group 15), a safe prime with generator 2."
);

impl_modulus!(
    Modp4096,
    U4096,
    concat!(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
    ),
    "The RFC 3526 4096-bit MODP prime (IKE group 16), a safe prime with generator 2."
);

/// Octets of randomness behind a MODP private exponent. 512 bits is more than twice the
/// strength of every MODP group here (about 112, 128 and 150 bits; NIST SP 800-56A asks for at
/// least twice the strength) and keeps the exponentiation short.
const MODP_EXPONENT_LEN: usize = 64;

/// How many candidate ECP scalars to draw before giving up (each is out of range with
/// probability below 2^-32 for P-256 and P-384, about 2^-1 for the masked P-521 scalar, so
/// only a broken random source ever exhausts this).
const ECP_ATTEMPTS: usize = 64;

/// A MODP private exponent, wiped when dropped.
struct ModpExponent(U512);

impl Drop for ModpExponent {
    fn drop(&mut self) {
        self.0.as_words_mut().zeroize();
    }
}

enum Secret {
    Ecdh(agreement::PrivateKey),
    Modp(ModpExponent),
}

/// 2^e mod p, big-endian, as long as p.
fn modp_public<P: ConstMontyParams<L>, const L: usize>(e: &U512) -> Vec<u8>
where
    Uint<L>: Encoding,
{
    let public = ConstMontyForm::<P, L>::new(&Uint::<L>::from_u8(2))
        .pow(e)
        .retrieve();
    public.to_be_bytes().as_ref().to_vec()
}

/// y^e mod p for a peer value `y` (big-endian, as long as p), after checking 1 < y < p-1; None
/// when y is out of range. The result is wiped from the stack copy once encoded.
fn modp_shared<P: ConstMontyParams<L>, const L: usize>(
    y: &[u8],
    e: &U512,
) -> Option<Zeroizing<Vec<u8>>>
where
    Uint<L>: Encoding,
{
    let y = Uint::<L>::from_be_slice(y);
    let p_minus_1 = P::MODULUS.as_ref().wrapping_sub(&Uint::<L>::ONE);
    if y <= Uint::<L>::ONE || y >= p_minus_1 {
        return None;
    }
    let mut s = ConstMontyForm::<P, L>::new(&y).pow(e).retrieve();
    let out = Zeroizing::new(s.to_be_bytes().as_ref().to_vec());
    s.as_words_mut().zeroize();
    Some(out)
}

/// One side of a key exchange: the private value and the public value sent in the KE payload.
pub struct KeyExchange {
    group: DhGroup,
    public: Vec<u8>,
    secret: Secret,
}

impl fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KeyExchange {
    /// A fresh private value for `group`, drawn from `rng`, and its public value.
    pub fn new(group: DhGroup, rng: &mut dyn RandomSource) -> Result<Self, CryptoError> {
        match group {
            DhGroup::X25519 => {
                let mut scalar = Zeroizing::new([0u8; 32]);
                rng.fill(scalar.as_mut());
                let key = agreement::PrivateKey::from_private_key(&agreement::X25519, &*scalar)
                    .map_err(|_| CryptoError::KeyGeneration(group))?;
                Self::from_ecdh(group, key, 0)
            }
            DhGroup::Ecp256 | DhGroup::Ecp384 | DhGroup::Ecp521 => {
                let (alg, len) = match group {
                    DhGroup::Ecp256 => (&agreement::ECDH_P256, 32),
                    DhGroup::Ecp384 => (&agreement::ECDH_P384, 48),
                    _ => (&agreement::ECDH_P521, 66),
                };
                let mut scalar = Zeroizing::new(vec![0u8; len]);
                for _ in 0..ECP_ATTEMPTS {
                    rng.fill(&mut scalar);
                    if group == DhGroup::Ecp521 {
                        // The P-521 order has 521 bits: the top octet carries one of them.
                        scalar[0] &= 0x01;
                    }
                    // aws-lc rejects zero and scalars not below the group order.
                    if let Ok(key) = agreement::PrivateKey::from_private_key(alg, &scalar) {
                        return Self::from_ecdh(group, key, 1);
                    }
                }
                Err(CryptoError::KeyGeneration(group))
            }
            DhGroup::Modp2048 | DhGroup::Modp3072 | DhGroup::Modp4096 => {
                let mut bytes = Zeroizing::new([0u8; MODP_EXPONENT_LEN]);
                rng.fill(bytes.as_mut());
                // Setting the top bit keeps the exponent far from the trivial values 0 and 1
                // and makes every exponentiation take the same number of steps.
                bytes[0] |= 0x80;
                let exponent = ModpExponent(U512::from_be_slice(bytes.as_ref()));
                let public = match group {
                    DhGroup::Modp2048 => modp_public::<Modp2048, { U2048::LIMBS }>(&exponent.0),
                    DhGroup::Modp3072 => modp_public::<Modp3072, { U3072::LIMBS }>(&exponent.0),
                    _ => modp_public::<Modp4096, { U4096::LIMBS }>(&exponent.0),
                };
                Ok(KeyExchange {
                    group,
                    public,
                    secret: Secret::Modp(exponent),
                })
            }
        }
    }
    /// Wrap an aws-lc private key; `skip` drops the 0x04 (uncompressed point) prefix for ECP.
    fn from_ecdh(
        group: DhGroup,
        key: agreement::PrivateKey,
        skip: usize,
    ) -> Result<Self, CryptoError> {
        let public = key
            .compute_public_key()
            .map_err(|_| CryptoError::KeyGeneration(group))?;
        let public = public.as_ref();
        if public.len() != group.public_len() + skip || (skip == 1 && public[0] != 0x04) {
            return Err(CryptoError::KeyGeneration(group));
        }
        Ok(KeyExchange {
            group,
            public: public[skip..].to_vec(),
            secret: Secret::Ecdh(key),
        })
    }

    /// The group of this exchange.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The Key Exchange Data of the KE payload: 32 octets for X25519, x | y for ECP (RFC 5903
    /// §7, no point-format octet), the prime's length of big-endian octets for MODP.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret g^ir with the peer's public value, after checking it: its length,
    /// that an ECP point is on the curve, that a MODP value lies in 1 < y < p-1, and that the
    /// result is not degenerate. ECP yields the x coordinate (RFC 5903 §7), MODP a value as long
    /// as the prime, padded with leading zeros, X25519 32 octets.
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let group = self.group;
        let expected = group.public_len();
        if peer_public.len() != expected {
            return Err(CryptoError::PublicValueLength {
                group,
                len: peer_public.len(),
                expected,
            });
        }
        let invalid = CryptoError::InvalidPublicValue(group);
        let secret = match &self.secret {
            Secret::Ecdh(key) => {
                let (alg, peer) = match group {
                    DhGroup::X25519 => (&agreement::X25519, peer_public.to_vec()),
                    DhGroup::Ecp256 => (&agreement::ECDH_P256, uncompressed(peer_public)),
                    DhGroup::Ecp384 => (&agreement::ECDH_P384, uncompressed(peer_public)),
                    DhGroup::Ecp521 => (&agreement::ECDH_P521, uncompressed(peer_public)),
                    DhGroup::Modp2048 | DhGroup::Modp3072 | DhGroup::Modp4096 => {
                        return Err(invalid)
                    }
                };
                agreement::agree(
                    key,
                    agreement::UnparsedPublicKey::new(alg, peer),
                    invalid.clone(),
                    |s| Ok(Zeroizing::new(s.to_vec())),
                )?
            }
            Secret::Modp(exponent) => {
                let e = &exponent.0;
                match group {
                    DhGroup::Modp2048 => modp_shared::<Modp2048, { U2048::LIMBS }>(peer_public, e),
                    DhGroup::Modp3072 => modp_shared::<Modp3072, { U3072::LIMBS }>(peer_public, e),
                    _ => modp_shared::<Modp4096, { U4096::LIMBS }>(peer_public, e),
                }
                .ok_or(invalid.clone())?
            }
        };
        // A small-order X25519 point gives all zeros; a MODP value of small order gives 1.
        let degenerate = match group {
            DhGroup::Modp2048 | DhGroup::Modp3072 | DhGroup::Modp4096 => {
                secret[..expected - 1].iter().all(|b| *b == 0) && secret[expected - 1] <= 1
            }
            _ => secret.iter().all(|b| *b == 0),
        };
        if degenerate {
            return Err(invalid);
        }
        Ok(secret)
    }
}

/// x | y as an uncompressed SEC1 point.
fn uncompressed(xy: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(xy.len() + 1);
    point.push(0x04);
    point.extend_from_slice(xy);
    point
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::prf::tests::unhex;
    use crate::ike::rng::SeededRandom;

    /// A random source that replays fixed octets (for known-answer tests).
    struct Fixed(Vec<u8>);

    impl RandomSource for Fixed {
        fn fill(&mut self, buf: &mut [u8]) {
            let n = buf.len();
            buf.copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
        }
    }

    const GROUPS: [DhGroup; 7] = DhGroup::ALL;

    /// 2^((p-1)/2) = 1 mod p: Fermat and Euler both pass for base 2, which a mistyped constant
    /// would fail; and p has the RFC 3526 shape (64 one bits at each end).
    fn check_safe_prime<P: ConstMontyParams<L>, const L: usize>(bits: u32) {
        let p = P::MODULUS.get();
        let q = p.wrapping_sub(&Uint::<L>::ONE).shr_vartime(1);
        assert_eq!(
            ConstMontyForm::<P, L>::new(&Uint::<L>::from_u8(2))
                .pow(&q)
                .retrieve(),
            Uint::<L>::ONE
        );
        assert_eq!(p.bits(), bits);
        let low = Uint::<L>::from_u64(u64::MAX);
        assert_eq!(p.bitand(&low), low);
        assert_eq!(p.shr_vartime(bits - 64), low);
    }

    /// The three primes share the digits of pi that RFC 3526 builds them from: the one of
    /// group 14 was checked against the RFC, those of groups 15 and 16 (computed from the RFC's
    /// formula p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k)) against OpenSSL's
    /// built-in `modp_3072` and `modp_4096`.
    #[test]
    fn moduli_are_the_rfc3526_safe_primes() {
        check_safe_prime::<Modp2048, { U2048::LIMBS }>(2048);
        check_safe_prime::<Modp3072, { U3072::LIMBS }>(3072);
        check_safe_prime::<Modp4096, { U4096::LIMBS }>(4096);
        // Below the 64 leading ones, the next 64 bits are pi's (C90FDAA2 2168C234) in all three.
        for top in [
            Modp2048::MODULUS.get().shr_vartime(2048 - 128).as_words()[0],
            Modp3072::MODULUS.get().shr_vartime(3072 - 128).as_words()[0],
            Modp4096::MODULUS.get().shr_vartime(4096 - 128).as_words()[0],
        ] {
            assert_eq!(top, 0xC90F_DAA2_2168_C234);
        }
    }

    #[test]
    fn both_sides_agree_for_every_group() {
        let mut rng = SeededRandom::new(7);
        for group in GROUPS {
            let a = KeyExchange::new(group, &mut rng).unwrap();
            let b = KeyExchange::new(group, &mut rng).unwrap();
            assert_eq!(a.group(), group);
            assert_eq!(a.public_value().len(), group.public_len());
            assert_ne!(a.public_value(), b.public_value());
            let s1 = a.shared_secret(b.public_value()).unwrap();
            let s2 = b.shared_secret(a.public_value()).unwrap();
            assert_eq!(*s1, *s2, "{group}");
            let want = match group {
                DhGroup::Ecp256 => 32,
                DhGroup::Ecp384 => 48,
                DhGroup::Ecp521 => 66,
                _ => group.public_len(),
            };
            assert_eq!(s1.len(), want, "{group}");
        }
    }

    #[test]
    fn seeded_randomness_replays() {
        for group in GROUPS {
            let a = KeyExchange::new(group, &mut SeededRandom::new(3)).unwrap();
            let b = KeyExchange::new(group, &mut SeededRandom::new(3)).unwrap();
            assert_eq!(a.public_value(), b.public_value());
            assert!(!format!("{a:?}").is_empty());
        }
    }

    #[test]
    fn rfc5903_ecp256_known_answer() {
        let i = unhex("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433");
        let gi = unhex(
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180\
             5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
        );
        let r = unhex("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53");
        let gr = unhex(
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
             56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        );
        let girx = unhex("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE");
        let a = KeyExchange::new(DhGroup::Ecp256, &mut Fixed(i)).unwrap();
        let b = KeyExchange::new(DhGroup::Ecp256, &mut Fixed(r)).unwrap();
        assert_eq!(a.public_value(), gi.as_slice());
        assert_eq!(b.public_value(), gr.as_slice());
        assert_eq!(*a.shared_secret(&gr).unwrap(), girx);
        assert_eq!(*b.shared_secret(&gi).unwrap(), girx);
    }

    #[test]
    fn rfc7748_x25519_known_answer() {
        let a_priv = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let a_pub = unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let b_priv = unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let b_pub = unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let k = unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let a = KeyExchange::new(DhGroup::X25519, &mut Fixed(a_priv)).unwrap();
        let b = KeyExchange::new(DhGroup::X25519, &mut Fixed(b_priv)).unwrap();
        assert_eq!(a.public_value(), a_pub.as_slice());
        assert_eq!(b.public_value(), b_pub.as_slice());
        assert_eq!(*a.shared_secret(&b_pub).unwrap(), k);
        assert_eq!(*b.shared_secret(&a_pub).unwrap(), k);
    }

    #[test]
    fn bad_peer_values_are_rejected() {
        let mut rng = SeededRandom::new(11);
        for group in GROUPS {
            let kx = KeyExchange::new(group, &mut rng).unwrap();
            let n = group.public_len();
            for len in [0, 1, n - 1, n + 1] {
                assert_eq!(
                    kx.shared_secret(&vec![1; len]),
                    Err(CryptoError::PublicValueLength {
                        group,
                        len,
                        expected: n
                    })
                );
            }
            assert_eq!(
                kx.shared_secret(&vec![0; n]),
                Err(CryptoError::InvalidPublicValue(group)),
                "{group} zero"
            );
        }
        // ECP: a point off the curve (the generator's x with y + 1).
        let kx = KeyExchange::new(DhGroup::Ecp256, &mut rng).unwrap();
        let mut off = kx.public_value().to_vec();
        off[63] ^= 1;
        assert_eq!(
            kx.shared_secret(&off),
            Err(CryptoError::InvalidPublicValue(DhGroup::Ecp256))
        );
        for group in [DhGroup::Ecp384, DhGroup::Ecp521] {
            let kx = KeyExchange::new(group, &mut rng).unwrap();
            let mut off = kx.public_value().to_vec();
            *off.last_mut().unwrap() ^= 1;
            assert_eq!(
                kx.shared_secret(&off),
                Err(CryptoError::InvalidPublicValue(group))
            );
            // x beyond the field (all ones) is no point either.
            assert_eq!(
                kx.shared_secret(&vec![0xff; group.public_len()]),
                Err(CryptoError::InvalidPublicValue(group))
            );
        }
        // X25519: a point of small order (here, order 1) yields an all-zero secret.
        let kx = KeyExchange::new(DhGroup::X25519, &mut rng).unwrap();
        let mut one = vec![0u8; 32];
        one[0] = 1;
        assert_eq!(
            kx.shared_secret(&one),
            Err(CryptoError::InvalidPublicValue(DhGroup::X25519))
        );
        // MODP: 1, p-1, p and values above p are refused; 2 and p-2 are acceptable.
        modp_range::<Modp2048, { U2048::LIMBS }>(DhGroup::Modp2048, &mut rng);
        modp_range::<Modp3072, { U3072::LIMBS }>(DhGroup::Modp3072, &mut rng);
        modp_range::<Modp4096, { U4096::LIMBS }>(DhGroup::Modp4096, &mut rng);
    }

    fn modp_range<P: ConstMontyParams<L>, const L: usize>(group: DhGroup, rng: &mut SeededRandom)
    where
        Uint<L>: Encoding,
    {
        let kx = KeyExchange::new(group, rng).unwrap();
        let p = P::MODULUS.get();
        let be = |y: Uint<L>| y.to_be_bytes().as_ref().to_vec();
        for y in [
            Uint::<L>::ONE,
            p.wrapping_sub(&Uint::<L>::ONE),
            p,
            p.wrapping_add(&Uint::<L>::ONE),
            Uint::<L>::MAX,
        ] {
            assert_eq!(
                kx.shared_secret(&be(y)),
                Err(CryptoError::InvalidPublicValue(group)),
                "{group}"
            );
        }
        assert!(kx.shared_secret(&be(Uint::<L>::from_u8(2))).is_ok());
        assert!(kx
            .shared_secret(&be(p.wrapping_sub(&Uint::<L>::from_u8(2))))
            .is_ok());
    }

    #[test]
    fn broken_random_source_fails_cleanly() {
        // All-ones scalars are above both curve orders.
        struct Ones;
        impl RandomSource for Ones {
            fn fill(&mut self, buf: &mut [u8]) {
                buf.fill(0xff);
            }
        }
        for group in [DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Ecp521] {
            assert_eq!(
                KeyExchange::new(group, &mut Ones).unwrap_err(),
                CryptoError::KeyGeneration(group)
            );
        }
        // X25519 clamps, MODP sets the top bit: both still work.
        assert!(KeyExchange::new(DhGroup::X25519, &mut Ones).is_ok());
        assert!(KeyExchange::new(DhGroup::Modp2048, &mut Ones).is_ok());
    }

    #[test]
    fn modp_public_value_is_padded() {
        let kx = KeyExchange::new(DhGroup::Modp2048, &mut SeededRandom::new(5)).unwrap();
        assert_eq!(kx.public_value().len(), 256);
        let y = U2048::from_be_slice(kx.public_value());
        assert!(y > U2048::ONE && y < Modp2048::MODULUS.get());
        for (group, len) in [(DhGroup::Modp3072, 384), (DhGroup::Modp4096, 512)] {
            let kx = KeyExchange::new(group, &mut SeededRandom::new(5)).unwrap();
            assert_eq!(kx.public_value().len(), len);
        }
    }

    /// ECP-521 against an independent implementation: fixed scalars, their public values and
    /// the shared x coordinate as Python's `cryptography` (OpenSSL) computes them. RFC 5903
    /// §8.3's vector was not at hand; this pins the encoding (x | y of 66 octets each, the
    /// secret as 66 octets) and the arithmetic to another library's.
    #[test]
    fn ecp521_matches_an_independent_implementation() {
        let d1 = unhex(
            "01030a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d14\
             1b222930373e454c535a61686f767d848b9299a0a7aeb5bcc3",
        );
        let d2 = unhex(
            "0005121f2c394653606d7a8794a1aebbc8d5e2effc091623303d4a5764717e8b98a5b2bfccd9e6f300\
             0d1a2734414e5b6875828f9ca9b6c3d0ddeaf704111e2b3845",
        );
        let g1 = unhex(
            "01522bb8c669d036963bdae18a64b9ba5acccee70b9bda84fb9a3b16e597e32eba46e1a9c2f9d8e031\
             12a617e2bd19723d60ad07cf83ffbb030c78b925d065865984019d2e78b880db785cd54805b419f007\
             64f19c8bfd9d3b71edfc9c54e31ebce834fab57998ecddba2198f201d3df46a164b2a53d2a8abe17d3\
             a59e1f52791659e60c",
        );
        let g2 = unhex(
            "01bba8729f63ca0fedafb53aa77ce7365efb91d15600efabedb09f4ef620dabd309ee9b12166b31c5d\
             b5aed33d3a26e0f7513f12e53fe42b3778e411e27f46decde100c76eadaa1aab9a976b16ac16f935eb\
             3706e9bde5262e4ee9d732b85c23a6c73fb14d87c653c5b2c7041626eed5ff9216f1fe48eb13c60e8f\
             640e80d6b2e94481cc",
        );
        let shared = unhex(
            "00c2b17e7d7f78ac27a0c945f73a91f6080953aeb286dae1e0538ea0173c4f40927709467d841c9505\
             fa7b8c75999ebdff47cd9d154caec4a78bbb1d0981446d3102",
        );
        let a = KeyExchange::new(DhGroup::Ecp521, &mut Fixed(d1)).unwrap();
        let b = KeyExchange::new(DhGroup::Ecp521, &mut Fixed(d2)).unwrap();
        assert_eq!(a.public_value(), g1.as_slice());
        assert_eq!(b.public_value(), g2.as_slice());
        assert_eq!(*a.shared_secret(&g2).unwrap(), shared);
        assert_eq!(*b.shared_secret(&g1).unwrap(), shared);
    }

    /// The P-521 scalar's top octet is masked to the order's one bit, so a source of random
    /// octets gives a key at once almost always (and a scalar of all ones never).
    #[test]
    fn ecp521_keys_from_random_octets() {
        let mut rng = SeededRandom::new(21);
        for _ in 0..8 {
            let kx = KeyExchange::new(DhGroup::Ecp521, &mut rng).unwrap();
            assert_eq!(kx.public_value().len(), 132);
        }
    }
}
