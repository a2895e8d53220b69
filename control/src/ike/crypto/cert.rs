//! X.509 certificates: parsing (x509-parser), identities they vouch for, the CERTREQ hash, and
//! path validation to configured CAs by rustls-webpki (signatures checked by aws-lc), with the
//! rules of RFC 4945 that a TLS validator does not know (extended key usage for IKE, the
//! signing key usage of the end entity, validity and path length of the configured CAs).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{
    EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage,
    RequiredEkuNotFoundContext, VerifiedPath,
};

use aws_lc_rs::digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use super::cert_pss::{self, PssAlgorithm};
use super::sig::{self, PublicKey};
use super::CryptoError;
use crate::ike::identity::Identity;

/// A parsed X.509 certificate, owning its DER.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    /// The signature algorithm to add to rustls-webpki's when this certificate is in a
    /// chain: RSASSA-PSS with a salt longer than the hash (see `cert_pss`).
    pss: Option<&'static PssAlgorithm>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    spki: Vec<u8>,
    key: Result<PublicKey, String>,
    not_before: i64,
    not_after: i64,
    /// basicConstraints: (cA, pathLenConstraint), None without the extension.
    basic_constraints: Option<(bool, Option<u32>)>,
    /// keyUsage: (digitalSignature or nonRepudiation, keyCertSign), None without the extension.
    key_usage: Option<(bool, bool)>,
    alt_names: Vec<Identity>,
    unhandled_critical: Option<String>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject_name())
            .field("issuer", &self.issuer_name())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Parse a DER certificate (the whole buffer must be one certificate).
    pub fn from_der(der: Vec<u8>) -> Result<Self, CryptoError> {
        let bad = |what: String| CryptoError::Certificate(what);
        let (rest, x509) =
            X509Certificate::from_der(&der).map_err(|e| bad(format!("malformed DER ({e})")))?;
        if !rest.is_empty() {
            return Err(bad("trailing octets after the certificate".into()));
        }
        let tbs = &x509.tbs_certificate;
        let pss = match sig::scheme_from_alg_id(&x509.signature_algorithm) {
            Ok(scheme) => cert_pss::signature_alg_contents(&der)
                .and_then(|id| cert_pss::algorithm_for(id, scheme)),
            Err(_) => None,
        };
        let ext_err = |e| bad(format!("bad extension ({e})"));
        let basic_constraints = tbs
            .basic_constraints()
            .map_err(ext_err)?
            .map(|bc| (bc.value.ca, bc.value.path_len_constraint));
        let key_usage = tbs.key_usage().map_err(ext_err)?.map(|ku| {
            (
                ku.value.digital_signature() || ku.value.non_repudiation(),
                ku.value.key_cert_sign(),
            )
        });
        let mut alt_names = Vec::new();
        if let Some(san) = tbs.subject_alternative_name().map_err(ext_err)? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(s) => alt_names.push(Identity::Fqdn(s.to_string())),
                    GeneralName::RFC822Name(s) => alt_names.push(Identity::Rfc822(s.to_string())),
                    GeneralName::IPAddress(ip) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*ip) {
                            alt_names.push(Identity::Ipv4(a.into()));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*ip) {
                            alt_names.push(Identity::Ipv6(a.into()));
                        }
                    }
                    _ => {}
                }
            }
        }
        let handled = [
            &OID_X509_EXT_BASIC_CONSTRAINTS,
            &OID_X509_EXT_KEY_USAGE,
            &OID_X509_EXT_SUBJECT_ALT_NAME,
            &OID_X509_EXT_EXTENDED_KEY_USAGE,
            &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
            &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        ];
        let unhandled_critical = tbs
            .extensions()
            .iter()
            .find(|e| e.critical && !handled.contains(&&e.oid))
            .map(|e| e.oid.to_id_string());
        let spki = tbs.public_key();
        Ok(Certificate {
            pss,
            subject: tbs.subject().as_raw().to_vec(),
            issuer: tbs.issuer().as_raw().to_vec(),
            spki: spki.raw.to_vec(),
            key: PublicKey::from_spki(spki),
            not_before: tbs.validity().not_before.timestamp(),
            not_after: tbs.validity().not_after.timestamp(),
            basic_constraints,
            key_usage,
            alt_names,
            unhandled_critical,
            der,
        })
    }

    /// Every certificate in PEM text (each CERTIFICATE block, other blocks ignored).
    pub fn from_pem(text: &str) -> Result<Vec<Self>, CryptoError> {
        let blocks = pem::parse_many(text)
            .map_err(|e| CryptoError::Certificate(format!("malformed PEM ({e})")))?;
        blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE" || b.tag() == "X509 CERTIFICATE")
            .map(|b| Self::from_der(b.into_contents()))
            .collect()
    }

    /// Every certificate in a PEM file, or the one certificate of a DER file. A file with no
    /// certificate is an error.
    pub fn load_pem_file(path: &Path) -> Result<Vec<Self>, CryptoError> {
        let io = |reason: String| CryptoError::Io {
            path: path.display().to_string(),
            reason,
        };
        let data = std::fs::read(path).map_err(|e| io(e.to_string()))?;
        let certs = match std::str::from_utf8(&data) {
            Ok(text) if text.contains("-----BEGIN") => Self::from_pem(text)?,
            _ => vec![Self::from_der(data)?],
        };
        if certs.is_empty() {
            return Err(io("no CERTIFICATE block in the file".into()));
        }
        Ok(certs)
    }

    /// The DER encoding (for CERT payloads).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject distinguished name as an identity.
    pub fn subject(&self) -> Identity {
        Identity::Dn(self.subject.clone())
    }

    /// The issuer distinguished name as an identity.
    pub fn issuer(&self) -> Identity {
        Identity::Dn(self.issuer.clone())
    }

    /// The subjectAltName entries esprit understands: DNS names, IP addresses, e-mail addresses.
    pub fn alt_names(&self) -> &[Identity] {
        &self.alt_names
    }

    /// Whether the certificate vouches for `id`: the subject DN or one of its alt names.
    pub fn matches_identity(&self, id: &Identity) -> bool {
        self.subject().matches(id) || self.alt_names.iter().any(|n| n.matches(id))
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-1 of the SubjectPublicKeyInfo: what a CERTREQ payload lists for each trusted CA
    /// (RFC 7296 §3.7).
    pub fn spki_sha1(&self) -> [u8; 20] {
        let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &self.spki);
        let mut out = [0u8; 20];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// Start of validity, in seconds since the Unix epoch.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// End of validity, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Whether basicConstraints marks the certificate as a CA.
    pub fn is_ca(&self) -> bool {
        matches!(self.basic_constraints, Some((true, _)))
    }

    /// The subject's public key, or why esprit cannot use it.
    pub(crate) fn public_key(&self) -> Result<&PublicKey, CryptoError> {
        self.key
            .as_ref()
            .map_err(|e| CryptoError::Unsupported(format!("{e} in '{}'", self.subject_name())))
    }

    /// Refuse certificates whose keyUsage excludes signing AUTH data.
    pub(crate) fn check_signing_usage(&self) -> Result<(), CryptoError> {
        match self.key_usage {
            Some((false, _)) => Err(CryptoError::KeyUsage(self.subject_name())),
            _ => Ok(()),
        }
    }

    fn subject_name(&self) -> String {
        self.subject().to_string()
    }

    fn issuer_name(&self) -> String {
        self.issuer().to_string()
    }

    fn check_time(&self, now: i64) -> Result<(), CryptoError> {
        if now < self.not_before || now > self.not_after {
            return Err(CryptoError::CertValidity {
                subject: self.subject_name(),
                not_before: time_string(self.not_before),
                not_after: time_string(self.not_after),
                now: time_string(now),
            });
        }
        Ok(())
    }

    fn check_critical(&self) -> Result<(), CryptoError> {
        match &self.unhandled_critical {
            Some(oid) => Err(CryptoError::CriticalExtension {
                subject: self.subject_name(),
                oid: oid.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether this certificate may be a configured CA: basicConstraints with cA, and
    /// keyCertSign when keyUsage is present.
    fn check_ca(&self) -> Result<(), CryptoError> {
        let is_ca = matches!(self.basic_constraints, Some((true, _)));
        if !is_ca || matches!(self.key_usage, Some((_, false))) {
            return Err(CryptoError::NotCa(self.subject_name()));
        }
        Ok(())
    }

    /// The pathLenConstraint of a CA certificate: how many intermediates may follow it.
    fn path_len(&self) -> Option<usize> {
        match self.basic_constraints {
            Some((true, Some(n))) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => None,
        }
    }

    fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn time_string(t: i64) -> String {
    ASN1Time::from_timestamp(t)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("@{t}"))
}

/// id-kp-ipsecIKE (RFC 4945 §5.1.3.12).
const EKU_IPSEC_IKE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11];
/// anyExtendedKeyUsage (RFC 5280 §4.2.1.12).
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
/// id-kp-serverAuth and id-kp-clientAuth (RFC 5280 §4.2.1.12).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// iKEIntermediate (1.3.6.1.5.5.8.2.2), which strongSwan's `pki --flag ikeIntermediate` sets.
const EKU_IKE_INTERMEDIATE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x08, 0x02, 0x02];

/// The extended key usage a certificate in an IKE path must allow: none at all (RFC 4945
/// recommends none), or one that names IKE or any usage. serverAuth and clientAuth are
/// accepted too: gateways' certificates commonly carry them (road-warrior clients require
/// serverAuth), and refusing them would refuse peers every other IKE implementation accepts.
struct IkeUsage;

impl ExtendedKeyUsageValidator for IkeUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let allowed = [
            EKU_IPSEC_IKE,
            EKU_ANY,
            EKU_SERVER_AUTH,
            EKU_CLIENT_AUTH,
            EKU_IKE_INTERMEDIATE,
        ]
        .map(KeyPurposeId::new);
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if allowed.contains(&id) {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: KeyUsage::required_if_present(EKU_IPSEC_IKE),
                present,
            },
        ))
    }
}

/// The CA certificates a peer's certificate must chain to.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    cas: Vec<Certificate>,
    /// `cas[i]` as rustls-webpki's trust anchor.
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustStore {
    /// A store of trust anchors. Every certificate must be a CA (basicConstraints cA, and
    /// keyCertSign if it has keyUsage) that rustls-webpki can use as an anchor (X.509 v3).
    pub fn new(cas: Vec<Certificate>) -> Result<Self, CryptoError> {
        let mut anchors = Vec::with_capacity(cas.len());
        for ca in &cas {
            ca.check_ca()?;
            let der = CertificateDer::from(ca.der());
            let anchor = webpki::anchor_from_trusted_cert(&der).map_err(|e| {
                CryptoError::Certificate(format!(
                    "'{}' cannot be a trust anchor ({e:?})",
                    ca.subject_name()
                ))
            })?;
            anchors.push(anchor.to_owned());
        }
        Ok(TrustStore { cas, anchors })
    }

    /// The trust anchors.
    pub fn cas(&self) -> &[Certificate] {
        &self.cas
    }

    /// The Certification Authority data of a CERTREQ payload: the SHA-1 of every anchor's
    /// SubjectPublicKeyInfo, concatenated.
    pub fn certreq_data(&self) -> Vec<u8> {
        self.cas.iter().flat_map(|c| c.spki_sha1()).collect()
    }

    /// Check that `end_entity` chains to a configured CA through some of `intermediates` at
    /// `now_unix`. rustls-webpki builds and checks the path (signatures, validity periods,
    /// basicConstraints and keyUsage of the issuers, pathLenConstraint, name constraints,
    /// unknown critical extensions, bounded search); esprit adds what IKE needs beyond TLS: the
    /// end entity may sign (keyUsage digitalSignature or nonRepudiation, RFC 4945
    /// §5.1.3.2), the extended key usage of every certificate allows IKE ([`IkeUsage`]), and
    /// the configured CA is itself within its validity period and its pathLenConstraint.
    pub fn validate(
        &self,
        end_entity: &Certificate,
        intermediates: &[Certificate],
        now_unix: i64,
    ) -> Result<(), CryptoError> {
        end_entity.check_time(now_unix)?;
        end_entity.check_critical()?;
        end_entity.check_signing_usage()?;
        let ee_der = CertificateDer::from(end_entity.der());
        let ee = EndEntityCert::try_from(&ee_der).map_err(|e| path_error(end_entity, e))?;
        let chain: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.der()))
            .collect();
        // Only CAs valid now may anchor a path; remember the others to name them if that is
        // why no path was found.
        let (current, lapsed): (Vec<usize>, Vec<usize>) =
            (0..self.cas.len()).partition(|&i| self.cas[i].is_valid_at(now_unix));
        let anchors: Vec<TrustAnchor<'_>> =
            current.iter().map(|&i| self.anchors[i].clone()).collect();
        let path_len = |path: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
            let anchor = path.anchor();
            let below = path.intermediate_certificates().count();
            let limit = self
                .cas
                .iter()
                .zip(&self.anchors)
                .find(|(_, a)| {
                    a.subject == anchor.subject
                        && a.subject_public_key_info == anchor.subject_public_key_info
                })
                .and_then(|(ca, _)| ca.path_len());
            match limit {
                Some(n) if below > n => Err(webpki::Error::PathLenConstraintViolated),
                _ => Ok(()),
            }
        };
        let time =
            UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now_unix).unwrap_or(0)));
        let mut algorithms = webpki::ALL_VERIFICATION_ALGS.to_vec();
        for c in std::iter::once(end_entity).chain(intermediates) {
            if let Some(a) = c.pss {
                algorithms.push(a);
            }
        }
        let verified = ee.verify_for_usage(
            &algorithms,
            &anchors,
            &chain,
            time,
            IkeUsage,
            None,
            Some(&path_len),
        );
        match verified {
            Ok(_) => Ok(()),
            Err(webpki::Error::UnknownIssuer) => {
                // A lapsed CA that named itself issuer of the end entity or an intermediate
                // is the likely reason: say so.
                let issuers: Vec<&[u8]> = std::iter::once(end_entity)
                    .chain(intermediates)
                    .map(|c| c.issuer.as_slice())
                    .collect();
                if let Some(ca) = lapsed
                    .iter()
                    .map(|&i| &self.cas[i])
                    .find(|ca| issuers.contains(&ca.subject.as_slice()))
                {
                    return ca.check_time(now_unix);
                }
                Err(CryptoError::UnknownIssuer {
                    subject: end_entity.subject_name(),
                    issuer: end_entity.issuer_name(),
                })
            }
            Err(e) => Err(path_error(end_entity, e)),
        }
    }
}

/// A path validation failure of `end_entity`'s chain, in words.
fn path_error(end_entity: &Certificate, e: webpki::Error) -> CryptoError {
    use webpki::Error as E;
    let reason = match e {
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::InvalidCertValidity => {
            "an intermediate certificate is outside its validity period".to_string()
        }
        E::InvalidSignatureForPublicKey => {
            "a certificate's signature does not verify with its issuer's key".to_string()
        }
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a certificate is signed with an algorithm esprit does not accept (SHA-1 or \
             unknown)"
                .to_string()
        }
        E::CaUsedAsEndEntity => "the end entity is a CA certificate".to_string(),
        E::EndEntityUsedAsCa => "an issuer in the chain is not a CA (basicConstraints)".to_string(),
        E::PathLenConstraintViolated => {
            "an issuer's pathLenConstraint does not allow this many intermediates".to_string()
        }
        E::RequiredEkuNotFoundContext(_) => {
            "a certificate's extended key usage does not allow IKE (RFC 4945 §5.1.3.12)".to_string()
        }
        E::NameConstraintViolation => "a CA's name constraints exclude a name".to_string(),
        E::UnsupportedCriticalExtension => {
            "a certificate in the chain has a critical extension esprit does not process"
                .to_string()
        }
        E::MaximumSignatureChecksExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumPathDepthExceeded => {
            "no path to a trusted CA within the search limits".to_string()
        }
        other => format!("{other:?}"),
    };
    CryptoError::CertPath {
        subject: end_entity.subject_name(),
        reason,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType, SignatureAlgorithm,
    };

    /// 2030-01-01T00:00:00Z.
    pub(crate) const NOW: i64 = 1_893_456_000;

    /// A key and its certificate, as rcgen made them.
    pub(crate) struct Made {
        pub(crate) key: KeyPair,
        pub(crate) params: CertificateParams,
        pub(crate) cert: Certificate,
    }

    impl Made {
        pub(crate) fn issuer(&self) -> Issuer<'_, &KeyPair> {
            Issuer::from_params(&self.params, &self.key)
        }
    }

    pub(crate) fn key_for(alg: &'static SignatureAlgorithm) -> KeyPair {
        if alg == &rcgen::PKCS_RSA_SHA256 {
            KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048).unwrap()
        } else {
            KeyPair::generate_for(alg).unwrap()
        }
    }

    fn params(cn: &str, ca: bool, years: (i32, i32)) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "CH");
        p.distinguished_name
            .push(DnType::OrganizationName, "esprit");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        p.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        } else {
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.subject_alt_names = vec![
                SanType::DnsName(format!("{cn}.example").try_into().unwrap()),
                SanType::IpAddress("192.0.2.1".parse().unwrap()),
                SanType::IpAddress("2001:db8::1".parse().unwrap()),
                SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
            ];
        }
        p
    }

    pub(crate) fn make(
        cn: &str,
        ca: bool,
        alg: &'static SignatureAlgorithm,
        issuer: Option<&Made>,
    ) -> Made {
        make_with(params(cn, ca, (2020, 2040)), alg, issuer)
    }

    fn make_with(
        params: CertificateParams,
        alg: &'static SignatureAlgorithm,
        issuer: Option<&Made>,
    ) -> Made {
        let key = key_for(alg);
        let der = match issuer {
            Some(i) => params.signed_by(&key, &i.issuer()).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        let cert = Certificate::from_der(der.der().to_vec()).unwrap();
        Made { key, params, cert }
    }

    /// CA → intermediate → leaf, all with `alg`.
    pub(crate) fn chain(alg: &'static SignatureAlgorithm) -> (Made, Made, Made) {
        let ca = make("Root CA", true, alg, None);
        let im = make("Intermediate CA", true, alg, Some(&ca));
        let leaf = make("gw", false, alg, Some(&im));
        (ca, im, leaf)
    }

    pub(crate) const ALGS: [&SignatureAlgorithm; 5] = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ECDSA_P521_SHA512,
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_ED25519,
    ];

    #[test]
    fn valid_chains_for_every_key_type() {
        for alg in ALGS {
            let (ca, im, leaf) = chain(alg);
            let store = TrustStore::new(vec![ca.cert.clone()]).unwrap();
            store
                .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            // The intermediate list may hold unrelated certificates, in any order.
            let other = make("Other CA", true, alg, None);
            store
                .validate(&leaf.cert, &[other.cert.clone(), im.cert.clone()], NOW)
                .unwrap();
            // A leaf issued directly by the CA needs no intermediate.
            let direct = make("direct", false, alg, Some(&ca));
            store.validate(&direct.cert, &[], NOW).unwrap();
        }
    }

    #[test]
    fn mixed_key_types_chain() {
        let ca = make("Root CA", true, &rcgen::PKCS_RSA_SHA256, None);
        let im = make(
            "Intermediate CA",
            true,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            Some(&ca),
        );
        let leaf = make("gw", false, &rcgen::PKCS_ED25519, Some(&im));
        TrustStore::new(vec![ca.cert.clone()])
            .unwrap()
            .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
            .unwrap();
    }

    #[test]
    fn untrusted_or_missing_issuers_are_rejected() {
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let (ca, im, leaf) = chain(alg);
        // Another CA with the same name but another key.
        let impostor = make("Root CA", true, alg, None);
        let err = TrustStore::new(vec![impostor.cert.clone()])
            .unwrap()
            .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
            .unwrap_err();
        assert!(
            matches!(&err, CryptoError::CertPath { reason, .. } if reason.contains("signature")),
            "{err}"
        );
        let other = make("Other CA", true, alg, None);
        assert!(matches!(
            TrustStore::new(vec![other.cert.clone()])
                .unwrap()
                .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
                .unwrap_err(),
            CryptoError::UnknownIssuer { .. }
        ));
        // Missing intermediate.
        let store = TrustStore::new(vec![ca.cert.clone()]).unwrap();
        let err = store.validate(&leaf.cert, &[], NOW).unwrap_err();
        assert_eq!(
            err,
            CryptoError::UnknownIssuer {
                subject: "C=CH, O=esprit, CN=gw".into(),
                issuer: "C=CH, O=esprit, CN=Intermediate CA".into()
            }
        );
        assert!(err.to_string().contains("CN=Intermediate CA"));
        // An empty store trusts nothing.
        assert!(TrustStore::default()
            .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
            .is_err());
    }

    #[test]
    fn validity_periods_are_enforced() {
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca = make("Root CA", true, alg, None);
        let old = make_with(params("old", false, (2020, 2025)), alg, Some(&ca));
        let store = TrustStore::new(vec![ca.cert.clone()]).unwrap();
        let err = store.validate(&old.cert, &[], NOW).unwrap_err();
        assert!(matches!(err, CryptoError::CertValidity { .. }), "{err}");
        assert!(err.to_string().contains("CN=old"), "{err}");
        store.validate(&old.cert, &[], 1_700_000_000).unwrap();
        // Not yet valid.
        let future = make_with(params("future", false, (2035, 2040)), alg, Some(&ca));
        assert!(matches!(
            store.validate(&future.cert, &[], NOW),
            Err(CryptoError::CertValidity { .. })
        ));
        // An expired intermediate breaks the chain, and so does an expired CA.
        let im = make_with(
            params("Intermediate CA", true, (2020, 2025)),
            alg,
            Some(&ca),
        );
        let leaf = make("gw", false, alg, Some(&im));
        let err = store
            .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
            .unwrap_err();
        assert!(
            matches!(&err, CryptoError::CertPath { reason, .. } if reason.contains("validity")),
            "{err}"
        );
        let old_ca = make_with(params("Old CA", true, (2020, 2025)), alg, None);
        let leaf = make("gw", false, alg, Some(&old_ca));
        assert!(matches!(
            TrustStore::new(vec![old_ca.cert.clone()])
                .unwrap()
                .validate(&leaf.cert, &[], NOW),
            Err(CryptoError::CertValidity { .. })
        ));
    }

    #[test]
    fn tampered_signatures_are_rejected() {
        for alg in ALGS {
            let (ca, im, leaf) = chain(alg);
            let store = TrustStore::new(vec![ca.cert.clone()]).unwrap();
            // Flip a bit in the last octet (the signature) and in the middle (the TBS part).
            for pos in [leaf.cert.der().len() - 1, leaf.cert.der().len() / 2] {
                let mut der = leaf.cert.der().to_vec();
                der[pos] ^= 0x01;
                match Certificate::from_der(der) {
                    Ok(bad) => assert!(
                        store
                            .validate(&bad, std::slice::from_ref(&im.cert), NOW)
                            .is_err(),
                        "{alg:?} {pos}"
                    ),
                    Err(CryptoError::Certificate(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }

    #[test]
    fn issuers_must_be_cas() {
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca = make("Root CA", true, alg, None);
        let not_ca = make("Intermediate CA", false, alg, Some(&ca));
        let leaf = make("gw", false, alg, Some(&not_ca));
        let store = TrustStore::new(vec![ca.cert.clone()]).unwrap();
        let err = store
            .validate(&leaf.cert, std::slice::from_ref(&not_ca.cert), NOW)
            .unwrap_err();
        assert!(
            matches!(&err, CryptoError::CertPath { reason, .. } if reason.contains("not a CA")),
            "{err}"
        );
        // pathLenConstraint 0 on the root forbids an intermediate below it.
        let mut p = params("Root CA", true, (2020, 2040));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let strict = make_with(p, alg, None);
        let im = make("Intermediate CA", true, alg, Some(&strict));
        let leaf = make("gw", false, alg, Some(&im));
        let store = TrustStore::new(vec![strict.cert.clone()]).unwrap();
        let err = store
            .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
            .unwrap_err();
        assert!(
            matches!(&err, CryptoError::CertPath { reason, .. } if reason.contains("pathLenConstraint")),
            "{err}"
        );
        let direct = make("direct", false, alg, Some(&strict));
        store.validate(&direct.cert, &[], NOW).unwrap();
        // A configured CA whose keyUsage lacks keyCertSign, or that is no CA at all, is refused
        // when the store is made (the configuration does not load).
        let mut p = params("Root CA", true, (2020, 2040));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let no_sign = make_with(p, alg, None);
        assert_eq!(
            TrustStore::new(vec![no_sign.cert.clone()]).unwrap_err(),
            CryptoError::NotCa("C=CH, O=esprit, CN=Root CA".into())
        );
        assert!(matches!(
            TrustStore::new(vec![not_ca.cert.clone()]),
            Err(CryptoError::NotCa(_))
        ));
    }

    #[test]
    fn end_entity_key_usage_and_critical_extensions() {
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca = make("Root CA", true, alg, None);
        let store = TrustStore::new(vec![ca.cert.clone()]).unwrap();
        let mut p = params("enc", false, (2020, 2040));
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        let enc = make_with(p, alg, Some(&ca));
        assert_eq!(
            store.validate(&enc.cert, &[], NOW).unwrap_err(),
            CryptoError::KeyUsage("C=CH, O=esprit, CN=enc".into())
        );
        let mut p = params("crit", false, (2020, 2040));
        let mut ext =
            rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
        ext.set_criticality(true);
        p.custom_extensions = vec![ext];
        let crit = make_with(p, alg, Some(&ca));
        assert_eq!(
            store.validate(&crit.cert, &[], NOW).unwrap_err(),
            CryptoError::CriticalExtension {
                subject: "C=CH, O=esprit, CN=crit".into(),
                oid: "1.3.6.1.4.1.99999.1".into()
            }
        );
    }

    #[test]
    fn extended_key_usage_follows_rfc_4945() {
        use rcgen::ExtendedKeyUsagePurpose as Eku;
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca = make("Root CA", true, alg, None);
        let store = TrustStore::new(vec![ca.cert.clone()]).unwrap();
        let ipsec_ike = Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 17]);
        let ike_intermediate = Eku::Other(vec![1, 3, 6, 1, 5, 5, 8, 2, 2]);
        for (ekus, ok) in [
            (vec![], true),
            (vec![ipsec_ike.clone()], true),
            (vec![Eku::Any], true),
            (vec![Eku::ServerAuth, ike_intermediate], true),
            (vec![Eku::EmailProtection, Eku::ClientAuth], true),
            (vec![Eku::CodeSigning], false),
            (vec![Eku::EmailProtection, Eku::TimeStamping], false),
        ] {
            let mut p = params("gw", false, (2020, 2040));
            p.extended_key_usages = ekus.clone();
            let leaf = make_with(p, alg, Some(&ca));
            match store.validate(&leaf.cert, &[], NOW) {
                Ok(()) => assert!(ok, "{ekus:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{ekus:?}: {e}");
                    assert!(e.to_string().contains("extended key usage"), "{e}");
                }
            }
        }
        // An intermediate CA limited to code signing cannot vouch for an IKE peer.
        let mut p = params("Intermediate CA", true, (2020, 2040));
        p.extended_key_usages = vec![Eku::CodeSigning];
        let im = make_with(p, alg, Some(&ca));
        let leaf = make("gw", false, alg, Some(&im));
        assert!(store
            .validate(&leaf.cert, std::slice::from_ref(&im.cert), NOW)
            .is_err());
    }

    #[test]
    fn loops_and_depth_are_bounded() {
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        // Two intermediates that issued each other: never reaches a CA, must terminate.
        let a_key = key_for(alg);
        let b_key = key_for(alg);
        let a_params = params("A", true, (2020, 2040));
        let b_params = params("B", true, (2020, 2040));
        let a = Certificate::from_der(
            a_params
                .signed_by(&a_key, &Issuer::from_params(&b_params, &b_key))
                .unwrap()
                .der()
                .to_vec(),
        )
        .unwrap();
        let b = Certificate::from_der(
            b_params
                .signed_by(&b_key, &Issuer::from_params(&a_params, &a_key))
                .unwrap()
                .der()
                .to_vec(),
        )
        .unwrap();
        let leaf_params = params("gw", false, (2020, 2040));
        let leaf_key = key_for(alg);
        let leaf = Certificate::from_der(
            leaf_params
                .signed_by(&leaf_key, &Issuer::from_params(&a_params, &a_key))
                .unwrap()
                .der()
                .to_vec(),
        )
        .unwrap();
        let ca = make("Root CA", true, alg, None);
        assert!(matches!(
            TrustStore::new(vec![ca.cert.clone()])
                .unwrap()
                .validate(&leaf, &[a, b], NOW),
            Err(CryptoError::UnknownIssuer { .. })
        ));

        // A chain of 7 intermediates (9 certificates) is too long; 6 fits.
        let root = make("Root CA", true, alg, None);
        let mut ims: Vec<Made> = Vec::new();
        for i in 0..7 {
            let im = make(
                &format!("CA {i}"),
                true,
                alg,
                Some(ims.last().unwrap_or(&root)),
            );
            ims.push(im);
        }
        let store = TrustStore::new(vec![root.cert.clone()]).unwrap();
        let certs: Vec<Certificate> = ims.iter().map(|m| m.cert.clone()).collect();
        let leaf = make("gw", false, alg, Some(&ims[6]));
        let err = store.validate(&leaf.cert, &certs, NOW).unwrap_err();
        assert!(
            matches!(
                &err,
                CryptoError::CertPath { .. } | CryptoError::UnknownIssuer { .. }
            ),
            "{err}"
        );
        let leaf = make("gw", false, alg, Some(&ims[5]));
        store.validate(&leaf.cert, &certs[..6], NOW).unwrap();
    }

    #[test]
    fn search_effort_is_bounded() {
        // Twelve CA certificates with one name and one key: each verifies every other's
        // signature, so an unbounded search would try 12 * 11 * ... * 7 orderings.
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let key = key_for(alg);
        let p = params("Loop CA", true, (2020, 2040));
        let loops: Vec<Certificate> = (0..12)
            .map(|_| {
                let der = p.signed_by(&key, &Issuer::from_params(&p, &key)).unwrap();
                Certificate::from_der(der.der().to_vec()).unwrap()
            })
            .collect();
        let leaf = params("gw", false, (2020, 2040))
            .signed_by(&key_for(alg), &Issuer::from_params(&p, &key))
            .unwrap();
        let leaf = Certificate::from_der(leaf.der().to_vec()).unwrap();
        let ca = make("Root CA", true, alg, None);
        let start = std::time::Instant::now();
        let err = TrustStore::new(vec![ca.cert.clone()])
            .unwrap()
            .validate(&leaf, &loops, NOW)
            .unwrap_err();
        assert!(
            matches!(
                &err,
                CryptoError::CertPath { .. } | CryptoError::UnknownIssuer { .. }
            ),
            "{err}"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn identities_and_hashes() {
        let leaf = make("gw", false, &rcgen::PKCS_ED25519, None);
        let c = &leaf.cert;
        assert!(c.matches_identity(&Identity::parse("C=CH, O=esprit, CN=gw").unwrap()));
        assert!(c.matches_identity(&Identity::parse("gw.example").unwrap()));
        assert!(c.matches_identity(&Identity::parse("GW.example").unwrap()));
        assert!(c.matches_identity(&Identity::parse("192.0.2.1").unwrap()));
        assert!(c.matches_identity(&Identity::parse("2001:db8::1").unwrap()));
        assert!(c.matches_identity(&Identity::parse("ops@example.org").unwrap()));
        assert!(!c.matches_identity(&Identity::parse("other.example").unwrap()));
        assert!(!c.matches_identity(&Identity::parse("192.0.2.2").unwrap()));
        assert!(!c.matches_identity(&Identity::parse("C=CH, O=esprit, CN=gw2").unwrap()));
        assert_eq!(c.alt_names().len(), 4);
        assert_eq!(c.subject(), c.issuer());
        assert!(!c.is_ca());
        assert!(c.not_before() < NOW && NOW < c.not_after());
        let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, c.spki());
        assert_eq!(c.spki_sha1().as_slice(), d.as_ref());
        // The SPKI of an Ed25519 key is 44 octets: SEQ { SEQ { OID }, BIT STRING (33) }.
        assert_eq!(c.spki().len(), 44);
        let ca = make("Root CA", true, &rcgen::PKCS_ED25519, None).cert;
        let store = TrustStore::new(vec![ca.clone(), ca.clone()]).unwrap();
        assert_eq!(store.certreq_data().len(), 40);
        assert_eq!(store.cas().len(), 2);
        assert!(format!("{c:?}").contains("CN=gw"));
    }

    #[test]
    fn pem_and_files() {
        let (ca, im, leaf) = chain(&rcgen::PKCS_ECDSA_P256_SHA256);
        let pem_text = format!(
            "junk before\n{}{}{}",
            pem::encode(&pem::Pem::new("CERTIFICATE", leaf.cert.der().to_vec())),
            pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3])),
            pem::encode(&pem::Pem::new("CERTIFICATE", im.cert.der().to_vec())),
        );
        let certs = Certificate::from_pem(&pem_text).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1].der(), im.cert.der());

        let dir = std::env::temp_dir().join(format!("esprit-cert-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem_path = dir.join("chain.pem");
        std::fs::write(&pem_path, &pem_text).unwrap();
        assert_eq!(Certificate::load_pem_file(&pem_path).unwrap().len(), 2);
        let der_path = dir.join("ca.der");
        std::fs::write(&der_path, ca.cert.der()).unwrap();
        let loaded = Certificate::load_pem_file(&der_path).unwrap();
        assert_eq!(loaded[0].der(), ca.cert.der());
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n").unwrap();
        assert!(matches!(
            Certificate::load_pem_file(&empty),
            Err(CryptoError::Io { .. })
        ));
        let missing = Certificate::load_pem_file(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(Certificate::from_der(vec![0x30, 0x03, 1, 2, 3]).is_err());
        let mut trailing = leaf.cert.der().to_vec();
        trailing.push(0);
        assert!(Certificate::from_der(trailing).is_err());
    }

    /// An RSASSA-PSS chain made by OpenSSL 3 (`openssl req -x509 -newkey rsa:2048 -sigopt
    /// rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sha256`; see testdata/README.md).
    #[test]
    fn openssl_rsa_pss_chain() {
        let ca = Certificate::from_pem(include_str!("testdata/pss_ca.pem")).unwrap();
        let leaf = Certificate::from_pem(include_str!("testdata/pss_leaf.pem")).unwrap();
        let store = TrustStore::new(ca).unwrap();
        store.validate(&leaf[0], &[], NOW).unwrap();
        assert!(
            leaf[0].pss.is_none(),
            "salt of the hash length: webpki's own algorithm"
        );
        // The same chain signed with the maximum salt length.
        let leaf_max =
            Certificate::from_pem(include_str!("testdata/pss_leaf_maxsalt.pem")).unwrap();
        assert!(leaf_max[0].pss.is_some());
        store.validate(&leaf_max[0], &[], NOW).unwrap();
        // Tampered, it fails like any other signature.
        let mut der = leaf_max[0].der().to_vec();
        let n = der.len();
        der[n - 1] ^= 1;
        let bad = Certificate::from_der(der).unwrap();
        assert!(store.validate(&bad, &[], NOW).is_err());
    }
}
