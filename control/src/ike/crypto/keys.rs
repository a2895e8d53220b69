//! The IKEv2 key schedule: SKEYSEED and the IKE SA keys (RFC 7296 §2.14), their rekeyed form
//! (§2.18), and child SA keying material (§2.17).
//!
//! With an AEAD no integrity keys are taken (SK_ai and SK_ar are empty) and each encryption key
//! carries its 4-octet salt (RFC 5282 §7.1, RFC 4106 §8.1, RFC 7634 §2); with AES-CBC the
//! integrity keys are as long as the HMAC's hash (RFC 4868 §2.1.1) and the encryption keys have
//! no salt.

use std::fmt;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use super::prf::{hmac_alg, prf_plus_with, prf_secret};
use super::CryptoError;
use crate::ike::algorithms::{EncrAlg, IntegAlg, PrfAlg};

/// The keys of an IKE SA.
pub struct IkeKeys {
    /// SK_d: the key child SA (and rekeyed IKE SA) keys are derived from.
    pub sk_d: Zeroizing<Vec<u8>>,
    /// SK_ai: initiator integrity key (empty with an AEAD).
    pub sk_ai: Zeroizing<Vec<u8>>,
    /// SK_ar: responder integrity key (empty with an AEAD).
    pub sk_ar: Zeroizing<Vec<u8>>,
    /// SK_ei: initiator encryption key (followed by its 4-octet salt with an AEAD).
    pub sk_ei: Zeroizing<Vec<u8>>,
    /// SK_er: responder encryption key (followed by its 4-octet salt with an AEAD).
    pub sk_er: Zeroizing<Vec<u8>>,
    /// SK_pi: the key of the initiator's AUTH computation.
    pub sk_pi: Zeroizing<Vec<u8>>,
    /// SK_pr: the key of the responder's AUTH computation.
    pub sk_pr: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeKeys")
            .field("sk_d_len", &self.sk_d.len())
            .field("sk_e_len", &self.sk_ei.len())
            .field("sk_p_len", &self.sk_pi.len())
            .finish_non_exhaustive()
    }
}

/// The keys of a child SA: per direction the encryption key (with its salt for an AEAD) and
/// the integrity key (empty for an AEAD).
pub struct ChildKeys {
    /// Initiator-to-responder encryption key (and salt).
    pub encr_i: Zeroizing<Vec<u8>>,
    /// Initiator-to-responder integrity key (empty for an AEAD).
    pub integ_i: Zeroizing<Vec<u8>>,
    /// Responder-to-initiator encryption key (and salt).
    pub encr_r: Zeroizing<Vec<u8>>,
    /// Responder-to-initiator integrity key (empty for an AEAD).
    pub integ_r: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildKeys")
            .field("len", &self.encr_i.len())
            .finish_non_exhaustive()
    }
}

/// The keys of a new IKE SA (IKE_SA_INIT): SKEYSEED = prf(Ni | Nr, g^ir), then
/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
/// The nonces are the Nonce payload data and the SPIs are as in the IKE header (big-endian,
/// initiator's first), whichever side computes. HMAC takes the whole of Ni | Nr as its key.
pub fn derive_ike_keys(
    prf: PrfAlg,
    (encr, integ): (EncrAlg, Option<IntegAlg>),
    ni: &[u8],
    nr: &[u8],
    shared: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> Result<IkeKeys, CryptoError> {
    let skeyseed = skeyseed(hmac_alg(prf), ni, nr, shared);
    ike_keys_from_seed(prf, (encr, integ), &skeyseed, ni, nr, spi_i, spi_r)
}

/// The keys of an IKE SA that replaces another (CREATE_CHILD_SA rekey, RFC 7296 §2.18):
/// SKEYSEED = prf_old(SK_d old, g^ir new | Ni | Nr) with the old SA's PRF, then the new SA's
/// keys from prf+ of the new SA's PRF over Ni | Nr | SPIi | SPIr, with the nonces of the rekey
/// exchange and the new SA's SPIs.
#[allow(clippy::too_many_arguments)]
pub fn derive_rekeyed_ike_keys(
    prf_old: PrfAlg,
    sk_d_old: &[u8],
    prf_new: PrfAlg,
    (encr, integ): (EncrAlg, Option<IntegAlg>),
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> Result<IkeKeys, CryptoError> {
    let skeyseed = rekey_skeyseed(hmac_alg(prf_old), sk_d_old, shared, ni, nr);
    ike_keys_from_seed(prf_new, (encr, integ), &skeyseed, ni, nr, spi_i, spi_r)
}

/// The keys of an IKE SA that replaces another in a rekey with additional key exchanges (RFC
/// 9370 §2.2.4): SKEYSEED = prf_old(SK_d old, SK(0) | Ni | Nr | SK(1) | ... | SK(n)), then the
/// keys as in [`derive_rekeyed_ike_keys`], which this is without additional secrets.
#[allow(clippy::too_many_arguments)]
pub fn derive_rekeyed_ike_keys_addke(
    prf_old: PrfAlg,
    sk_d_old: &[u8],
    prf_new: PrfAlg,
    (encr, integ): (EncrAlg, Option<IntegAlg>),
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
    addke: &[&[u8]],
    spi_i: u64,
    spi_r: u64,
) -> Result<IkeKeys, CryptoError> {
    let mut parts: Vec<&[u8]> = vec![shared, ni, nr];
    parts.extend_from_slice(addke);
    let skeyseed = prf_secret(hmac_alg(prf_old), sk_d_old, &parts);
    ike_keys_from_seed(prf_new, (encr, integ), &skeyseed, ni, nr, spi_i, spi_r)
}

/// The keys of an IKE SA after additional key exchange n in IKE_INTERMEDIATE (RFC 9370 §2.2.2):
/// SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr), then {SK_d(n) | SK_ai(n) | SK_ar(n) |
/// SK_ei(n) | SK_er(n) | SK_pi(n) | SK_pr(n)} = prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr), with
/// the nonces and SPIs of IKE_SA_INIT and the same suite throughout.
#[allow(clippy::too_many_arguments)]
pub fn derive_intermediate_ike_keys(
    prf: PrfAlg,
    (encr, integ): (EncrAlg, Option<IntegAlg>),
    sk_d_prev: &[u8],
    shared_n: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> Result<IkeKeys, CryptoError> {
    derive_rekeyed_ike_keys(
        prf,
        sk_d_prev,
        prf,
        (encr, integ),
        shared_n,
        ni,
        nr,
        spi_i,
        spi_r,
    )
}

/// The keys of a child SA (RFC 7296 §2.17): KEYMAT = prf+(SK_d, Ni | Nr), or
/// prf+(SK_d, g^ir (new) | Ni | Nr) when the exchange carried KE payloads (PFS). The
/// initiator-to-responder keys come first, then the responder-to-initiator ones; in each
/// direction the encryption key (and salt) first, then the integrity key.
pub fn derive_child_keys(
    prf: PrfAlg,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    encr: EncrAlg,
    integ: Option<IntegAlg>,
) -> Result<ChildKeys, CryptoError> {
    derive_child_keys_addke(prf, sk_d, shared, ni, nr, &[], encr, integ)
}

/// The keys of a child SA made with additional key exchanges (RFC 9370 §2.2.4): KEYMAT =
/// prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)), where SK(0) is `shared` (the classical
/// exchange of CREATE_CHILD_SA) and `addke` the secrets of the IKE_FOLLOWUP_KE exchanges in
/// order. With no additional secrets this is [`derive_child_keys`].
#[allow(clippy::too_many_arguments)]
pub fn derive_child_keys_addke(
    prf: PrfAlg,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    addke: &[&[u8]],
    encr: EncrAlg,
    integ: Option<IntegAlg>,
) -> Result<ChildKeys, CryptoError> {
    let e = encr.keymat_len();
    let a = integ.map_or(0, IntegAlg::key_len);
    let len = 2 * (e + a);
    let keymat = child_keymat(hmac_alg(prf), sk_d, shared, ni, nr, addke, len).ok_or(
        CryptoError::PrfPlusTooLong {
            prf,
            requested: len,
            max: 255 * prf.output_len(),
        },
    )?;
    let part = |from: usize, n: usize| Zeroizing::new(keymat[from..from + n].to_vec());
    Ok(ChildKeys {
        encr_i: part(0, e),
        integ_i: part(e, a),
        encr_r: part(e + a, e),
        integ_r: part(2 * e + a, a),
    })
}

fn skeyseed(alg: hmac::Algorithm, ni: &[u8], nr: &[u8], shared: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = [ni, nr].concat();
    prf_secret(alg, &key, &[shared])
}

fn rekey_skeyseed(
    alg: hmac::Algorithm,
    sk_d_old: &[u8],
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> Zeroizing<Vec<u8>> {
    prf_secret(alg, sk_d_old, &[shared, ni, nr])
}

fn ike_keymat(
    alg: hmac::Algorithm,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    len: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    let seed = [ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
    prf_plus_with(alg, skeyseed, &seed, len)
}

fn child_keymat(
    alg: hmac::Algorithm,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    addke: &[&[u8]],
    len: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    let mut seed = Zeroizing::new([shared.unwrap_or_default(), ni, nr].concat());
    for s in addke {
        seed.extend_from_slice(s);
    }
    prf_plus_with(alg, sk_d, &seed, len)
}

fn ike_keys_from_seed(
    prf: PrfAlg,
    (encr, integ): (EncrAlg, Option<IntegAlg>),
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> Result<IkeKeys, CryptoError> {
    let p = prf.output_len();
    let e = encr.keymat_len();
    let a = integ.map_or(0, IntegAlg::key_len);
    let lens = [p, a, a, e, e, p, p];
    let total = lens.iter().sum();
    let keymat = ike_keymat(hmac_alg(prf), skeyseed, ni, nr, spi_i, spi_r, total).ok_or(
        CryptoError::PrfPlusTooLong {
            prf,
            requested: total,
            max: 255 * p,
        },
    )?;
    let mut rest = keymat.as_slice();
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Zeroizing::new(head.to_vec())
    };
    Ok(IkeKeys {
        sk_d: take(lens[0]),
        sk_ai: take(lens[1]),
        sk_ar: take(lens[2]),
        sk_ei: take(lens[3]),
        sk_er: take(lens[4]),
        sk_pi: take(lens[5]),
        sk_pr: take(lens[6]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::prf::tests::unhex;
    use proptest::prelude::*;

    /// An IKEv2 KDF vector in the NIST CAVS format (SP 800-135 IKEv2 component test, HMAC-SHA1),
    /// as printed by libreswan's CAVS tool: it checks SKEYSEED, prf+, the child SA KEYMAT with
    /// and without PFS and the rekey SKEYSEED through the same internal functions the public
    /// API uses.
    #[test]
    fn cavs_ikev2_vector() {
        let alg = hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY;
        let gir = unhex("4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52");
        let gir_new = unhex("863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330");
        let ni = unhex("32b50d5f4a3763f3");
        let nr = unhex("9206a04b26564cb1");
        let (spi_i, spi_r) = (0x34c9e7c188868785u64, 0x3ff77d760d2b2199u64);
        let dkm_len = 132;
        let seed = skeyseed(alg, &ni, &nr, &gir);
        assert_eq!(*seed, unhex("a9a7b222b59f8f48645f28a1db5b5f5d7479cba7"));
        let dkm = ike_keymat(alg, &seed, &ni, &nr, spi_i, spi_r, dkm_len).unwrap();
        assert_eq!(
            *dkm,
            unhex(
                "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002\
                 a2a63080e514a062768b76606f9fa5e992204fc5a670bde3f10d6b027113936a\
                 5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd1119\
                 8af1670b143d384bd275c5f594cf266b05ebadca855e4249520a441a81157435\
                 a7a56cc4"
            )
        );
        let sk_d = &dkm[..20];
        let child = child_keymat(alg, sk_d, None, &ni, &nr, &[], dkm_len).unwrap();
        assert_eq!(
            *child,
            unhex(
                "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c581\
                 1a8e7b5d1cdabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee7181\
                 4ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf\
                 285f524aea6545b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e66499\
                 4d234cb4"
            )
        );
        let child_dh = child_keymat(alg, sk_d, Some(&gir_new), &ni, &nr, &[], dkm_len).unwrap();
        assert_eq!(
            *child_dh,
            unhex(
                "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d373016\
                 28190e38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c04000\
                 52f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a\
                 05884d1b7d2f933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054\
                 d56fd74c"
            )
        );
        let rekey = rekey_skeyseed(alg, sk_d, &gir_new, &ni, &nr);
        assert_eq!(*rekey, unhex("63e81194946ebd05df7df5ebf5d8750056bf1f1d"));
    }

    fn hmac(alg: hmac::Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let key = hmac::Key::new(alg, key);
        let mut ctx = hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// prf+ written out again, block by block, straight from RFC 7296 §2.13.
    fn reference_prf_plus(alg: hmac::Algorithm, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut t = Vec::new();
        let mut n = 1u8;
        while out.len() < len {
            t = hmac(alg, key, &[&t, seed, &[n]]);
            out.extend_from_slice(&t);
            n += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn ike_keys_match_the_rfc_formulas() {
        let ni = [0x11u8; 32];
        let nr = [0x22u8; 48];
        let shared = [0x33u8; 32];
        let (spi_i, spi_r) = (0x0102030405060708u64, 0x1112131415161718u64);
        for (prf, alg) in [
            (PrfAlg::HmacSha256, hmac::HMAC_SHA256),
            (PrfAlg::HmacSha384, hmac::HMAC_SHA384),
            (PrfAlg::HmacSha512, hmac::HMAC_SHA512),
        ] {
            for encr in [EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256] {
                let keys =
                    derive_ike_keys(prf, (encr, None), &ni, &nr, &shared, spi_i, spi_r).unwrap();
                let seed = hmac(alg, &[ni.as_slice(), &nr].concat(), &[&shared]);
                let s = [
                    ni.as_slice(),
                    &nr,
                    &[1, 2, 3, 4, 5, 6, 7, 8],
                    &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18],
                ]
                .concat();
                let (p, e) = (prf.output_len(), encr.keymat_len());
                let km = reference_prf_plus(alg, &seed, &s, 3 * p + 2 * e);
                assert_eq!(*keys.sk_d, km[..p]);
                assert!(keys.sk_ai.is_empty() && keys.sk_ar.is_empty());
                assert_eq!(*keys.sk_ei, km[p..p + e]);
                assert_eq!(*keys.sk_er, km[p + e..p + 2 * e]);
                assert_eq!(*keys.sk_pi, km[p + 2 * e..2 * p + 2 * e]);
                assert_eq!(*keys.sk_pr, km[2 * p + 2 * e..]);

                // Child SA keys, with and without PFS.
                let g = [0x44u8; 32];
                for pfs in [None, Some(g.as_slice())] {
                    let child =
                        derive_child_keys(prf, &keys.sk_d, pfs, &ni, &nr, encr, None).unwrap();
                    let s = [pfs.unwrap_or_default(), &ni, &nr].concat();
                    let km = reference_prf_plus(alg, &keys.sk_d, &s, 2 * e);
                    assert_eq!(*child.encr_i, km[..e]);
                    assert_eq!(*child.encr_r, km[e..]);
                }

                // Rekeyed IKE SA: SKEYSEED with the old PRF, prf+ with the new one.
                let (new_i, new_r) = (0xa1a2a3a4a5a6a7a8u64, 0xb1b2b3b4b5b6b7b8u64);
                let prf_new = PrfAlg::HmacSha512;
                let rekeyed = derive_rekeyed_ike_keys(
                    prf,
                    &keys.sk_d,
                    prf_new,
                    (encr, None),
                    &g,
                    &ni,
                    &nr,
                    new_i,
                    new_r,
                )
                .unwrap();
                let seed = hmac(alg, &keys.sk_d, &[&g, &ni, &nr]);
                let s = [
                    ni.as_slice(),
                    &nr,
                    &new_i.to_be_bytes(),
                    &new_r.to_be_bytes(),
                ]
                .concat();
                let km = reference_prf_plus(hmac::HMAC_SHA512, &seed, &s, 3 * 64 + 2 * e);
                assert_eq!(*rekeyed.sk_d, km[..64]);
                assert_eq!(*rekeyed.sk_pr, km[64 + 2 * e + 64..]);
            }
        }
    }

    /// With AES-CBC the integrity keys are taken too: SK_d | SK_ai | SK_ar | SK_ei | SK_er |
    /// SK_pi | SK_pr for the IKE SA, and Ei | Ai | Er | Ar for a child (RFC 7296 §2.14, §2.17).
    #[test]
    fn integrity_keys_sit_where_the_rfc_puts_them() {
        let (ni, nr, shared) = ([1u8; 32], [2u8; 32], [3u8; 64]);
        let (prf, alg) = (PrfAlg::HmacSha384, hmac::HMAC_SHA384);
        for integ in IntegAlg::ALL {
            for encr in [EncrAlg::AesCbc128, EncrAlg::AesCbc256] {
                let k = derive_ike_keys(prf, (encr, Some(integ)), &ni, &nr, &shared, 7, 9).unwrap();
                let seed = hmac(alg, &[ni.as_slice(), &nr].concat(), &[&shared]);
                let s = [ni.as_slice(), &nr, &7u64.to_be_bytes(), &9u64.to_be_bytes()].concat();
                let (p, a, e) = (48, integ.key_len(), encr.key_len());
                let km = reference_prf_plus(alg, &seed, &s, 3 * p + 2 * a + 2 * e);
                assert_eq!(*k.sk_d, km[..p]);
                assert_eq!(*k.sk_ai, km[p..p + a]);
                assert_eq!(*k.sk_ar, km[p + a..p + 2 * a]);
                assert_eq!(*k.sk_ei, km[p + 2 * a..p + 2 * a + e]);
                assert_eq!(*k.sk_er, km[p + 2 * a + e..p + 2 * a + 2 * e]);
                assert_eq!(*k.sk_pr, km[2 * p + 2 * a + 2 * e..]);

                let c = derive_child_keys(prf, &k.sk_d, None, &ni, &nr, encr, Some(integ)).unwrap();
                let km = reference_prf_plus(alg, &k.sk_d, &[ni, nr].concat(), 2 * (e + a));
                assert_eq!(*c.encr_i, km[..e]);
                assert_eq!(*c.integ_i, km[e..e + a]);
                assert_eq!(*c.encr_r, km[e + a..2 * e + a]);
                assert_eq!(*c.integ_r, km[2 * e + a..]);
            }
        }
        // ChaCha20-Poly1305: key and salt, no integrity key.
        let k = derive_ike_keys(
            prf,
            (EncrAlg::ChaCha20Poly1305, None),
            &ni,
            &nr,
            &shared,
            1,
            2,
        )
        .unwrap();
        assert_eq!(k.sk_ei.len(), 36);
        assert!(k.sk_ai.is_empty());
        let c = derive_child_keys(
            prf,
            &k.sk_d,
            None,
            &ni,
            &nr,
            EncrAlg::ChaCha20Poly1305,
            None,
        )
        .unwrap();
        assert_eq!((c.encr_i.len(), c.integ_i.len()), (36, 0));
    }

    #[test]
    fn debug_output_hides_keys() {
        let keys = derive_ike_keys(
            PrfAlg::HmacSha256,
            (EncrAlg::AesGcm16_128, None),
            b"ni",
            b"nr",
            b"g",
            1,
            2,
        )
        .unwrap();
        let dbg = format!("{keys:?}");
        // Byte vectors print as [..]: none may appear.
        assert!(!dbg.contains('['), "{dbg}");
        let child = derive_child_keys(
            PrfAlg::HmacSha256,
            &keys.sk_d,
            None,
            b"a",
            b"b",
            EncrAlg::AesGcm16_256,
            None,
        )
        .unwrap();
        assert!(!format!("{child:?}").contains('['));
    }

    proptest! {
        #[test]
        fn lengths_follow_the_algorithms(
            prf in prop::sample::select(vec![PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512]),
            encr in prop::sample::select(vec![EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256]),
            ni in prop::collection::vec(any::<u8>(), 16..=256),
            nr in prop::collection::vec(any::<u8>(), 16..=256),
            shared in prop::collection::vec(any::<u8>(), 32..=256),
            spi_i in any::<u64>(),
            spi_r in any::<u64>(),
        ) {
            let k = derive_ike_keys(prf, (encr, None), &ni, &nr, &shared, spi_i, spi_r).unwrap();
            for key in [&k.sk_d, &k.sk_pi, &k.sk_pr] {
                prop_assert_eq!(key.len(), prf.output_len());
            }
            prop_assert_eq!(k.sk_ei.len(), encr.keymat_len());
            prop_assert_eq!(k.sk_er.len(), encr.keymat_len());
            prop_assert!(k.sk_ai.is_empty() && k.sk_ar.is_empty());
            prop_assert_ne!(&*k.sk_ei, &*k.sk_er);
            let c = derive_child_keys(prf, &k.sk_d, Some(&shared), &ni, &nr, encr, None).unwrap();
            prop_assert_eq!(c.encr_i.len(), encr.keymat_len());
            prop_assert_eq!(c.encr_r.len(), encr.keymat_len());
            prop_assert_ne!(&*c.encr_i, &*c.encr_r);
        }
    }
}
