//! Test certificates made with the openssl CLI (Debian package `openssl`): a CA and ECDSA P-256
//! end-entity certificates, the shape the interop tests need.

use std::path::Path;
use std::process::Command;

/// A CA and, for each name, a certificate (CN and DNS SAN = the name) and key, all ECDSA
/// P-256, made with the openssl CLI: (CA PEM, [(certificate PEM, key PEM)]).
pub fn make_pki(dir: &Path, names: &[&str]) -> (String, Vec<(String, String)>) {
    let openssl = |args: &[&str]| {
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
    };
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
