//! Test certificates made with the openssl CLI (Debian package `openssl`): a CA and ECDSA P-256
//! end-entity certificates, the shape the interop tests need, and chains of intermediate CAs
//! under one root ([`make_chain_pki`]).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and, for each name, a certificate (CN and DNS SAN = the name) and key, all ECDSA
/// P-256, made with the openssl CLI: (CA PEM, [(certificate PEM, key PEM)]).
pub fn make_pki(dir: &Path, names: &[&str]) -> (String, Vec<(String, String)>) {
    let openssl = |args: &[&str]| openssl(dir, args);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=esprit test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let mut certs = Vec::new();
    for n in names {
        let (key, csr, pem, ext) = (
            format!("{n}.key"),
            format!("{n}.csr"),
            format!("{n}.pem"),
            format!("{n}.ext"),
        );
        std::fs::write(dir.join(&ext), format!("subjectAltName=DNS:{n}\n")).unwrap();
        let subj = format!("/CN={n}");
        let mut req = vec!["req", "-new"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&req);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ]);
        certs.push((read(&pem), read(&key)));
    }
    (read("ca.pem"), certs)
}

/// The key type of [`make_chain_pki`]'s certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256.
    EcdsaP256,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
}

impl KeyType {
    fn newkey(self) -> &'static [&'static str] {
        match self {
            KeyType::EcdsaP256 => &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ],
            KeyType::Rsa2048 => &["-newkey", "rsa:2048", "-nodes"],
        }
    }
}

/// One end entity of [`make_chain_pki`]: its certificate, key and intermediate CAs as PEM
/// text, and the files they were written to.
#[derive(Debug, Clone)]
pub struct ChainCert {
    /// The end-entity certificate (CN and DNS SAN = the name).
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// The intermediate CAs, the end entity's issuer first, each one PEM certificate.
    pub intermediates: Vec<String>,
    /// `<name>.pem`: the end-entity certificate alone.
    pub cert_path: PathBuf,
    /// `<name>.key`: the private key.
    pub key_path: PathBuf,
    /// `<name>-chain.pem`: the end-entity certificate followed by the intermediates, issuer
    /// first (what a peer should send).
    pub chain_path: PathBuf,
}

/// A root CA (`root.pem`, `CN=esprit test root CA`) and, for each name, a chain of its own
/// under it: `depth` intermediate CAs (`CN=<name> intermediate 1` signed by the root,
/// `… 2` signed by `… 1`, and so on) and an end-entity certificate for the name signed by the
/// last one. All keys are `key`; made with the openssl CLI in `dir`, valid for two days.
/// Returns the root's PEM and one [`ChainCert`] per name.
pub fn make_chain_pki(
    dir: &Path,
    key: KeyType,
    names: &[&str],
    depth: usize,
) -> (String, Vec<ChainCert>) {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let ca_ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
                  subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n";
    let mut root = vec!["req", "-x509"];
    root.extend(key.newkey());
    root.extend([
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-days",
        "2",
        "-subj",
        "/CN=esprit test root CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &root);
    // Signs `<file>.csr` with the CA `<issuer>.pem`/`.key` into `<file>.pem`.
    let issue = |file: &str, subj: &str, issuer: &str, ext: &str| {
        let (k, csr, pem, extf) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.pem"),
            format!("{file}.ext"),
        );
        std::fs::write(dir.join(&extf), ext).unwrap();
        let mut req = vec!["req", "-new"];
        req.extend(key.newkey());
        req.extend(["-keyout", &k, "-out", &csr, "-subj", subj]);
        openssl(dir, &req);
        let (ca, ca_key) = (format!("{issuer}.pem"), format!("{issuer}.key"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &extf,
            ],
        );
    };
    let mut out = Vec::new();
    for n in names {
        let mut issuer = "root".to_string();
        let mut intermediates = Vec::new();
        for level in 1..=depth {
            let file = format!("{n}-im{level}");
            issue(
                &file,
                &format!("/CN={n} intermediate {level}"),
                &issuer,
                ca_ext,
            );
            intermediates.insert(0, read(&format!("{file}.pem")));
            issuer = file;
        }
        let ee_ext = format!(
            "subjectAltName=DNS:{n}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nauthorityKeyIdentifier=keyid:always\n"
        );
        issue(n, &format!("/CN={n}"), &issuer, &ee_ext);
        let cert_pem = read(&format!("{n}.pem"));
        let chain_path = dir.join(format!("{n}-chain.pem"));
        std::fs::write(&chain_path, format!("{cert_pem}{}", intermediates.concat())).unwrap();
        out.push(ChainCert {
            key_pem: read(&format!("{n}.key")),
            cert_pem,
            intermediates,
            cert_path: dir.join(format!("{n}.pem")),
            key_path: dir.join(format!("{n}.key")),
            chain_path,
        });
    }
    (read("root.pem"), out)
}

/// Runs the openssl CLI in `dir`; panics with its error output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
