use super::consts::{exchange, flags, notify, payload_type as pt, protocol, transform_type as tt};
use super::*;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use proptest::prelude::*;

/// A test-only AES-128-GCM SK cipher built straight on aws-lc-rs.
struct TestSk(LessSafeKey, [u8; 4]);

impl TestSk {
    fn new(seed: u8) -> Self {
        TestSk(
            LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[seed; 16]).unwrap()),
            [seed ^ 0x55; 4],
        )
    }
    fn nonce(&self, iv: &[u8]) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.1);
        n[4..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }
}

impl SkAead for TestSk {
    fn seal(&self, iv: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut v = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(self.nonce(iv), Aad::from(aad), &mut v)
            .unwrap();
        v
    }
    fn open(&self, iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
        let mut v = ct.to_vec();
        let n = self
            .0
            .open_in_place(self.nonce(iv), Aad::from(aad), &mut v)
            .map_err(|_| DecodeError::Integrity)?
            .len();
        v.truncate(n);
        Ok(Zeroizing::new(v))
    }
}

fn sa_init_payloads() -> Vec<Payload> {
    vec![
        Payload::Sa(vec![
            Proposal {
                num: 1,
                protocol: protocol::IKE,
                spi: vec![],
                transforms: vec![
                    Transform {
                        ttype: tt::ENCR,
                        id: 20,
                        key_len: Some(128),
                    },
                    Transform {
                        ttype: tt::PRF,
                        id: 5,
                        key_len: None,
                    },
                    Transform {
                        ttype: tt::KE,
                        id: 31,
                        key_len: None,
                    },
                ],
            },
            Proposal {
                num: 2,
                protocol: protocol::IKE,
                spi: vec![],
                transforms: vec![
                    Transform {
                        ttype: tt::ENCR,
                        id: 20,
                        key_len: Some(256),
                    },
                    Transform {
                        ttype: tt::PRF,
                        id: 6,
                        key_len: None,
                    },
                    Transform {
                        ttype: tt::KE,
                        id: 20,
                        key_len: None,
                    },
                ],
            },
        ]),
        Payload::Ke {
            group: 31,
            data: vec![7; 32],
        },
        Payload::Nonce(vec![9; 32]),
        Payload::Notify(Notify::new(notify::NAT_DETECTION_SOURCE_IP, vec![1; 20])),
        Payload::Notify(Notify::new(
            notify::SIGNATURE_HASH_ALGORITHMS,
            vec![0, 2, 0, 3],
        )),
        Payload::Vendor(b"esprit".to_vec()),
    ]
}

fn auth_payloads() -> Vec<Payload> {
    vec![
        Payload::IdI {
            id_type: 2,
            data: b"gwA".to_vec(),
        },
        Payload::Auth {
            method: 2,
            data: vec![3; 32],
        },
        Payload::Sa(vec![Proposal {
            num: 1,
            protocol: protocol::ESP,
            spi: vec![1, 2, 3, 4],
            transforms: vec![
                Transform {
                    ttype: tt::ENCR,
                    id: 20,
                    key_len: Some(128),
                },
                Transform {
                    ttype: tt::ESN,
                    id: 0,
                    key_len: None,
                },
            ],
        }]),
        Payload::TsI(vec![TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: "10.201.1.0".parse().unwrap(),
            end: "10.201.1.255".parse().unwrap(),
        }]),
        Payload::TsR(vec![
            TrafficSelector {
                protocol: 6,
                start_port: 443,
                end_port: 443,
                start: "fd00::".parse().unwrap(),
                end: "fd00::ffff".parse().unwrap(),
            },
            TrafficSelector {
                protocol: 0,
                start_port: 0,
                end_port: 65535,
                start: "10.201.2.0".parse().unwrap(),
                end: "10.201.2.255".parse().unwrap(),
            },
        ]),
        Payload::Delete(Delete {
            protocol: protocol::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        }),
        Payload::Cp {
            cfg_type: 1,
            attributes: vec![ConfigAttribute {
                atype: 1,
                value: vec![],
            }],
        },
        Payload::Cert {
            encoding: 4,
            data: vec![0x30, 0],
        },
        Payload::CertReq {
            encoding: 4,
            data: vec![0xaa; 20],
        },
    ]
}

#[test]
fn plain_round_trip() {
    let h = Header::new(
        0x1122334455667788,
        0,
        exchange::IKE_SA_INIT,
        flags::INITIATOR,
        0,
    );
    let wire = encode_plain(&h, &sa_init_payloads());
    assert_eq!(
        wire.len(),
        u32::from_be_bytes(wire[24..28].try_into().unwrap()) as usize
    );
    assert_eq!(wire[16], pt::SA);
    let m = decode(&wire, None).unwrap();
    assert_eq!(m.payloads, sa_init_payloads());
    assert!(!m.encrypted);
    assert_eq!(m.header.spi_i, 0x1122334455667788);
    assert!(m.header.from_initiator() && !m.header.is_response());
    assert_eq!(
        m.notify(notify::SIGNATURE_HASH_ALGORITHMS).unwrap().data,
        vec![0, 2, 0, 3]
    );
}

#[test]
fn encrypted_round_trip_and_tamper() {
    let sk = TestSk::new(1);
    let h = Header::new(1, 2, exchange::IKE_AUTH, flags::INITIATOR, 1);
    let wire = encode_encrypted(&h, &auth_payloads(), &sk, [0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(wire[16], pt::SK);
    let m = decode(&wire, Some(&sk)).unwrap();
    assert!(m.encrypted);
    assert_eq!(m.payloads, auth_payloads());
    assert_eq!(decode(&wire, None), Err(DecodeError::NoKeys));
    assert_eq!(
        decode(&wire, Some(&TestSk::new(2))),
        Err(DecodeError::Integrity)
    );
    // Every single-bit flip is caught: in the header (AAD), the IV or the ciphertext.
    for i in [0, 17, 19, 23, 28, 29, 33, 40, wire.len() - 1] {
        let mut bad = wire.clone();
        bad[i] ^= 0x01;
        assert!(decode(&bad, Some(&sk)).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn strict_checks() {
    let h = Header::new(1, 0, exchange::IKE_SA_INIT, flags::INITIATOR, 0);
    let wire = encode_plain(&h, &sa_init_payloads());
    // Length field disagrees with the datagram.
    assert!(matches!(
        decode(&wire[..wire.len() - 1], None),
        Err(DecodeError::LengthMismatch { .. })
    ));
    // Version 1.
    let mut v1 = wire.clone();
    v1[17] = 0x10;
    assert_eq!(
        decode(&v1, None),
        Err(DecodeError::UnsupportedVersion(0x10))
    );
    // Short nonce.
    let short = encode_plain(&h, &[Payload::Nonce(vec![0; 15])]);
    assert!(matches!(
        decode(&short, None),
        Err(DecodeError::Malformed {
            ptype: pt::NONCE,
            ..
        })
    ));
    // A proposal claiming two transforms but carrying one.
    let mut sa = encode_plain(
        &h,
        &[Payload::Sa(vec![Proposal {
            num: 1,
            protocol: protocol::IKE,
            spi: vec![],
            transforms: vec![Transform {
                ttype: tt::PRF,
                id: 5,
                key_len: None,
            }],
        }])],
    );
    sa[HEADER_LEN + 4 + 7] = 2;
    assert!(matches!(
        decode(&sa, None),
        Err(DecodeError::Malformed { ptype: pt::SA, .. })
    ));
    // Delete whose count disagrees with its length.
    let mut del = encode_plain(
        &h,
        &[Payload::Delete(Delete {
            protocol: 3,
            spi_size: 4,
            spis: vec![vec![0; 4]],
        })],
    );
    del[HEADER_LEN + 4 + 3] = 2;
    assert!(decode(&del, None).is_err());
}

#[test]
fn unknown_payloads() {
    let h = Header::new(1, 0, exchange::IKE_SA_INIT, flags::INITIATOR, 0);
    let skip = encode_plain(
        &h,
        &[
            Payload::Other {
                ptype: 200,
                critical: false,
                data: vec![1, 2],
            },
            Payload::Nonce(vec![0; 16]),
        ],
    );
    let m = decode(&skip, None).unwrap();
    assert_eq!(m.payloads.len(), 2);
    let crit = encode_plain(
        &h,
        &[Payload::Other {
            ptype: 200,
            critical: true,
            data: vec![],
        }],
    );
    assert_eq!(
        decode(&crit, None),
        Err(DecodeError::UnsupportedCritical(200))
    );
}

#[test]
fn sk_must_be_last() {
    let sk = TestSk::new(3);
    let h = Header::new(1, 2, exchange::INFORMATIONAL, flags::INITIATOR, 2);
    let mut wire = encode_encrypted(&h, &[], &sk, [0; 8]);
    // An empty INFORMATIONAL (liveness check) decodes to no payloads.
    assert_eq!(decode(&wire, Some(&sk)).unwrap().payloads, vec![]);
    wire.extend_from_slice(&[0, 0, 0, 4]);
    let n = wire.len() as u32;
    wire[24..28].copy_from_slice(&n.to_be_bytes());
    assert_eq!(decode(&wire, Some(&sk)), Err(DecodeError::SkNotLast));
}

proptest! {
    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&data, None);
        let _ = decode(&data, Some(&TestSk::new(4)));
    }

    #[test]
    fn decode_never_panics_on_valid_headers(body in proptest::collection::vec(any::<u8>(), 0..400), next in 0u8..60) {
        let mut d = Header::new(1, 2, exchange::IKE_SA_INIT, 8, 0).spi_i.to_be_bytes().to_vec();
        d.extend_from_slice(&2u64.to_be_bytes());
        d.extend_from_slice(&[next, 0x20, 34, 8, 0, 0, 0, 0]);
        d.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_be_bytes());
        d.extend_from_slice(&body);
        let _ = decode(&d, None);
    }
}

/// Every SK cipher esprit negotiates (the AEADs and AES-CBC with each HMAC-SHA2): encode and
/// decode the same message, padded to the cipher's block, for payload chains of many lengths.
#[test]
fn sk_round_trip_every_suite() {
    use crate::ike::crypto::sk::tests::every_suite;
    let h = Header::new(1, 2, exchange::IKE_AUTH, flags::INITIATOR, 1);
    for sk in every_suite() {
        for extra in 0..20usize {
            let mut payloads = auth_payloads();
            payloads.push(Payload::Nonce(vec![0x33; 16 + extra]));
            let wire = encode_encrypted(&h, &payloads, &sk, (extra as u64 + 1).to_be_bytes());
            let ct_len = wire.len() - HEADER_LEN - 4 - sk.iv_len() - sk.icv_len();
            assert_eq!(ct_len % sk.block_len(), 0, "{sk:?}");
            let m = decode(&wire, Some(&sk)).unwrap();
            assert_eq!(m.payloads, payloads, "{sk:?}");
            // The IV on the wire is the cipher's IV of the counter.
            let iv = &wire[HEADER_LEN + 4..HEADER_LEN + 4 + sk.iv_len()];
            assert_eq!(iv, sk.iv((extra as u64 + 1).to_be_bytes()).as_slice());
        }
    }
}

/// Any bit flipped in the IKE header, the SK header, the IV, the ciphertext or the ICV is
/// refused, and refused as an integrity failure (or a length mismatch for the length fields)
/// with every suite: CBC is not decrypted before its ICV is checked.
#[test]
fn sk_tampering_is_refused_every_suite() {
    use crate::ike::crypto::sk::tests::every_suite;
    let h = Header::new(1, 2, exchange::INFORMATIONAL, flags::INITIATOR, 3);
    for sk in every_suite() {
        let wire = encode_encrypted(
            &h,
            &[Payload::Nonce(vec![5; 20])],
            &sk,
            [0, 0, 0, 0, 0, 0, 0, 9],
        );
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            let e = decode(&bad, Some(&sk)).unwrap_err();
            // The header's Next Payload, version, length and the SK length fields are checked
            // before the ICV; everything else reaches the ICV and fails there.
            if !(i == 16 || i == 17 || (24..28).contains(&i) || (30..32).contains(&i)) {
                assert_eq!(e, DecodeError::Integrity, "{sk:?} byte {i}");
            }
        }
    }
}

/// A message whose ICV is good but whose Pad Length points beyond the plaintext is BadPadding,
/// for every suite; so is (for AES-CBC) a ciphertext that is not whole blocks under a good ICV.
#[test]
fn sk_bad_padding_under_a_good_icv() {
    use crate::ike::crypto::sk::tests::every_suite;
    let h = Header::new(1, 2, exchange::INFORMATIONAL, flags::INITIATOR, 3);
    for sk in every_suite() {
        let block = sk.block_len();
        // Content of 3 octets, padded to the block, with a Pad Length of 200.
        let mut plain = vec![0u8; 3];
        plain.resize(3 + (block - 4 % block) % block, 0);
        plain.push(200);
        let iv = sk.iv([0, 0, 0, 0, 0, 0, 0, 1]);
        let sk_len = 4 + iv.len() + plain.len() + sk.icv_len();
        let mut hh = h;
        hh.next_payload = pt::SK;
        hh.length = (HEADER_LEN + sk_len) as u32;
        let mut out = Vec::new();
        hh.write(&mut out);
        out.extend_from_slice(&[pt::NONCE, 0]);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        let sealed = sk.seal(&iv, &out, &plain);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        assert_eq!(
            decode(&out, Some(&sk)),
            Err(DecodeError::BadPadding),
            "{sk:?}"
        );
    }
}
