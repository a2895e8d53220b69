//! Certificate authentication: chains long enough to need IKE fragmentation, Ed25519, RSA and
//! ECDSA P-384 leaves, and a chain from a CA we do not trust.

use super::*;

/// A CA, two intermediates and a leaf per name (ECDSA P-256, SAN = the name): (trust store
/// with the CA, per name (private key, [leaf, intermediate 2, intermediate 1])).
#[allow(clippy::type_complexity)]
pub(crate) fn chain_pki(
    names: &[&str],
) -> (
    crate::ike::crypto::cert::Certificate,
    Vec<(
        crate::ike::crypto::auth::PrivateKey,
        Vec<crate::ike::crypto::cert::Certificate>,
    )>,
) {
    use crate::ike::crypto::auth::PrivateKey;
    use crate::ike::crypto::cert::Certificate;
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let dn = |cn: &str| {
        let mut d = rcgen::DistinguishedName::new();
        d.push(rcgen::DnType::OrganizationName, "esprit test");
        d.push(rcgen::DnType::CommonName, cn);
        d
    };
    let validity = |p: &mut rcgen::CertificateParams| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    };
    let ca_params = |cn: &str| {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn(cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        validity(&mut p);
        p
    };
    let ca_key = rcgen::KeyPair::generate_for(alg).unwrap();
    let root_p = ca_params("root CA");
    let root = root_p.clone().self_signed(&ca_key).unwrap();
    let mut out = Vec::new();
    for n in names {
        let i1_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let i1_p = ca_params(&format!("{n} intermediate 1"));
        let i1 = i1_p
            .clone()
            .signed_by(&i1_key, &rcgen::Issuer::from_params(&root_p, &ca_key))
            .unwrap();
        let i2_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let i2_p = ca_params(&format!("{n} intermediate 2"));
        let i2 = i2_p
            .clone()
            .signed_by(&i2_key, &rcgen::Issuer::from_params(&i1_p, &i1_key))
            .unwrap();
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut lp = rcgen::CertificateParams::new(vec![n.to_string()]).unwrap();
        lp.distinguished_name = dn(n);
        lp.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        validity(&mut lp);
        let leaf = lp
            .signed_by(&key, &rcgen::Issuer::from_params(&i2_p, &i2_key))
            .unwrap();
        let certs = [leaf.der(), i2.der(), i1.der()]
            .iter()
            .map(|d| Certificate::from_der(d.to_vec()).unwrap())
            .collect();
        out.push((
            PrivateKey::from_pkcs8_der(&key.serialize_der()).unwrap(),
            certs,
        ));
    }
    (Certificate::from_der(root.der().to_vec()).unwrap(), out)
}

#[test]
fn certificate_chains_are_fragmented_and_reassembled() {
    use crate::ike::crypto::cert::TrustStore;
    let (ca, mut ends) = chain_pki(&["gwA.example", "gwB.example"]);
    let hashes = vec![ca.spki_sha1()];
    let trust = Arc::new(TrustStore::new(vec![ca]).unwrap());
    let (kb, cb) = ends.pop().unwrap();
    let (ka, ca_certs) = ends.pop().unwrap();
    let pk = |mut c: ConnectionParams,
              key,
              certs: Vec<crate::ike::crypto::cert::Certificate>,
              me: &str,
              peer: &str| {
        c.local_id = Identity::parse(me).unwrap();
        c.remote_id = Some(Identity::parse(peer).unwrap());
        c.local_auth = LocalCredential::Pubkey {
            key: Arc::new(key),
            certs: certs.into_iter().map(Arc::new).collect(),
        };
        c.remote_auth = RemoteCredential::Pubkey {
            trust: trust.clone(),
            ca_hashes: hashes.clone(),
        };
        c
    };
    let a = pk(conn_a(), ka, ca_certs, "gwA.example", "gwB.example");
    let b = pk(conn_b(), kb, cb, "gwB.example", "gwA.example");
    let mut p = Pair::new(a, b);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1, "{:?}", p.ev_a);
    assert_crossed(child_ups(&p.ev_a)[0], child_ups(&p.ev_b)[0]);
    // IKE_AUTH carried three certificates each way: more than one fragment, none above 1280.
    assert!(
        p.wire_ab.len() >= 3 && p.wire_ba.len() >= 3,
        "{} {}",
        p.wire_ab.len(),
        p.wire_ba.len()
    );
    assert!(p
        .wire_ab
        .iter()
        .chain(&p.wire_ba)
        .all(|d| d.len() <= super::ike_sa::FRAGMENT_SIZE));
    // A lost fragment of the response: the initiator retransmits its whole request, the
    // responder answers from its cache once (on fragment 1), and the exchange completes.
    let mut q = Pair::new(
        p.a.connections()[0].as_ref().clone(),
        p.b.connections()[0].as_ref().clone(),
    );
    q.drop_ba = vec![2];
    q.up();
    assert_eq!(count(&q.ev_a, is_ike_up), 0);
    q.tick();
    assert_eq!(count(&q.ev_a, is_ike_up), 1);
    assert_eq!(child_ups(&q.ev_b).len(), 1);
}

/// A CA and one leaf per name signed with `alg` (the CA with ECDSA P-256).
fn leaf_pki(
    alg: &'static rcgen::SignatureAlgorithm,
    names: &[&str],
) -> (
    crate::ike::crypto::cert::Certificate,
    Vec<(
        crate::ike::crypto::auth::PrivateKey,
        crate::ike::crypto::cert::Certificate,
    )>,
) {
    use crate::ike::crypto::auth::PrivateKey;
    use crate::ike::crypto::cert::Certificate;
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_p = rcgen::CertificateParams::default();
    ca_p.distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    ca_p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    ca_p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    ca_p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let ca = ca_p.clone().self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_p, &ca_key);
    let ends = names
        .iter()
        .map(|n| {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let mut p = rcgen::CertificateParams::new(vec![n.to_string()]).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, *n);
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2040, 1, 1);
            let c = p.signed_by(&key, &issuer).unwrap();
            (
                PrivateKey::from_pkcs8_der(&key.serialize_der()).unwrap(),
                Certificate::from_der(c.der().to_vec()).unwrap(),
            )
        })
        .collect();
    (Certificate::from_der(ca.der().to_vec()).unwrap(), ends)
}

fn pubkey_pair(alg: &'static rcgen::SignatureAlgorithm) -> Pair {
    use crate::ike::crypto::cert::TrustStore;
    let (ca, mut ends) = leaf_pki(alg, &["gwA.example", "gwB.example"]);
    let hashes = vec![ca.spki_sha1()];
    let trust = Arc::new(TrustStore::new(vec![ca]).unwrap());
    let (kb, cb) = ends.pop().unwrap();
    let (ka, ca_cert) = ends.pop().unwrap();
    let set = |mut c: ConnectionParams, key, cert, me: &str, peer: &str| {
        c.local_id = Identity::parse(me).unwrap();
        c.remote_id = Some(Identity::parse(peer).unwrap());
        c.local_auth = LocalCredential::Pubkey {
            key: Arc::new(key),
            certs: vec![Arc::new(cert)],
        };
        c.remote_auth = RemoteCredential::Pubkey {
            trust: trust.clone(),
            ca_hashes: hashes.clone(),
        };
        c
    };
    Pair::new(
        set(conn_a(), ka, ca_cert, "gwA.example", "gwB.example"),
        set(conn_b(), kb, cb, "gwB.example", "gwA.example"),
    )
}

#[test]
fn ed25519_rsa_and_ecdsa_p384_certificates_authenticate() {
    for alg in [
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ] {
        let mut p = pubkey_pair(alg);
        p.up();
        assert_eq!(count(&p.ev_a, is_ike_up), 1, "{alg:?}: {:?}", p.ev_a);
        assert_eq!(count(&p.ev_b, is_ike_up), 1, "{alg:?}");
        assert_crossed(child_ups(&p.ev_a)[0], child_ups(&p.ev_b)[0]);
    }
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    use crate::ike::crypto::cert::TrustStore;
    let mut p = pubkey_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (other_ca, _) = leaf_pki(&rcgen::PKCS_ECDSA_P256_SHA256, &["x"]);
    let mut b = p.b.connections()[0].as_ref().clone();
    b.remote_auth = RemoteCredential::Pubkey {
        trust: Arc::new(TrustStore::new(vec![other_ca]).unwrap()),
        ca_hashes: vec![],
    };
    let a = p.a.connections()[0].as_ref().clone();
    p = Pair::new(a, b);
    p.up();
    assert!(down_reason(&p.ev_a)
        .unwrap()
        .contains("AUTHENTICATION_FAILED"));
    assert!(
        down_reason(&p.ev_b).unwrap().contains("not trusted"),
        "{:?}",
        down_reason(&p.ev_b)
    );
}
