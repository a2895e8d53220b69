//! Interop with an independent ESP implementation (scapy 2.8): scapy encrypts and esprit
//! decrypts, esprit encrypts and scapy decrypts, for tunnel 4in4/6in4/4in6/6in6, transport
//! IPv4/IPv6, NAT-T (tunnel and transport), AES-128/256-GCM, and ESN across the 2^32 boundary,
//! then every other suite (AES-128/256-CBC with HMAC-SHA-256-128, AES-256-CBC with
//! HMAC-SHA-384-192 and HMAC-SHA-512-256, ChaCha20-Poly1305) in tunnel, transport, NAT-T and
//! ESN cases, each with a corrupted ICV, a replay and an unknown SPI that must be dropped and
//! counted.
//!
//! The fixtures under `data/scapy/` were written by `scapy/gen.py` (see `scapy/regen.sh`): no
//! Python is needed here. For the esprit → scapy direction, scapy's verdict on esprit's output
//! is committed, and this test checks that esprit still produces exactly those bytes (the IV is
//! the sequence number, or for CBC the encryption of a block made of it, so the output is
//! deterministic).

use dataplane::esp::Backend;
use dataplane::pcap::tool::{run, Op, Options};
use dataplane::pcap::{Reader, Record};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scapy")
}

fn cases() -> Vec<String> {
    let v: Vec<String> =
        serde_json::from_slice(&std::fs::read(data().join("cases.json")).unwrap()).unwrap();
    assert!(v.len() >= 17, "every case of the issue is covered");
    for suite in dataplane::esp::Suite::ALL {
        let covered = v.iter().any(|c| {
            std::fs::read_to_string(data().join(c).join("sa-in.toml"))
                .unwrap()
                .contains(&format!("suite = \"{}\"", suite.name()))
        });
        assert!(covered, "no scapy case for {suite}");
    }
    v
}

fn records(p: &Path) -> Vec<Vec<u8>> {
    let mut r = Reader::new(std::fs::File::open(p).unwrap()).unwrap();
    let mut out = Vec::new();
    let mut rec = Record::default();
    while r.next_into(&mut rec).unwrap() {
        out.push(rec.data.clone());
    }
    out
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("esprit-scapy-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[derive(serde::Deserialize)]
struct Expect {
    written: u64,
    auth_failed: u64,
    replayed: u64,
    unknown_spi: u64,
    skipped: BTreeMap<String, u64>,
}

#[test]
fn esprit_decrypts_what_scapy_encrypted() {
    for case in cases() {
        let d = data().join(&case);
        for backend in Backend::ALL {
            let out = tmp(&format!("{case}-{}-dec.pcap", backend.name()));
            let s = run(&Options {
                op: Op::Decrypt,
                sa_file: d.join("sa-in.toml"),
                input: d.join("scapy-esp.pcap"),
                output: out.clone(),
                backend,
            })
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            let exp: Expect =
                serde_json::from_slice(&std::fs::read(d.join("expect.json")).unwrap()).unwrap();
            assert_eq!(s.written, exp.written, "{case}: written\n{}", s.render());
            assert_eq!(
                records(&out),
                records(&d.join("expect-plain.pcap")),
                "{case}: plaintext, byte for byte, in order"
            );
            let sa = &s.sas[0];
            assert_eq!(
                sa.drops.get("auth_failed").copied().unwrap_or(0),
                exp.auth_failed,
                "{case}\n{}",
                s.render()
            );
            assert_eq!(
                sa.drops.get("replayed").copied().unwrap_or(0),
                exp.replayed,
                "{case}\n{}",
                s.render()
            );
            assert_eq!(
                s.drops.get("unknown_spi").copied().unwrap_or(0),
                exp.unknown_spi,
                "{case}\n{}",
                s.render()
            );
            assert_eq!(s.skipped, exp.skipped, "{case}");
            assert_eq!(
                sa.drops.len(),
                2,
                "{case}: no other drop reason: {:?}",
                sa.drops
            );
        }
    }
}

#[test]
fn scapy_decrypts_what_esprit_encrypts() {
    for case in cases() {
        let d = data().join(&case);
        let verdict: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("scapy-verdict.json")).unwrap()).unwrap();
        assert_eq!(
            verdict["ok"], true,
            "{case}: scapy's verdict on esprit's output: {verdict}"
        );
        for backend in Backend::ALL {
            let out = tmp(&format!("{case}-{}-enc.pcap", backend.name()));
            let s = run(&Options {
                op: Op::Encrypt,
                sa_file: d.join("sa-out.toml"),
                input: d.join("plain.pcap"),
                output: out.clone(),
                backend,
            })
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(
                s.written as usize,
                records(&d.join("plain.pcap")).len(),
                "{case}"
            );
            assert_eq!(verdict["packets"].as_u64(), Some(s.written), "{case}");
            assert_eq!(
                std::fs::read(&out).unwrap(),
                std::fs::read(d.join("esprit-esp.pcap")).unwrap(),
                "{case}: esprit's output is exactly what scapy verified ({})",
                backend.name()
            );
        }
    }
}

#[test]
fn esp_pcap_binary_reports_json_and_writes_wireshark_keys() {
    let d = data().join("natt-tunnel-4in4");
    let out = tmp("bin-dec.pcap");
    let keys = tmp("ws-keys");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_esp-pcap"))
        .args(["decrypt", "--json", "--sa"])
        .arg(d.join("sa-in.toml"))
        .arg(d.join("scapy-esp.pcap"))
        .arg(&out)
        .arg("--wireshark-keys")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["written"], 9);
    assert_eq!(j["drops"]["unknown_spi"], 1);
    assert_eq!(j["skipped"]["ike"], 1);
    let table = std::fs::read_to_string(keys.join("esp_sa")).unwrap();
    let sa = std::fs::read_to_string(d.join("sa-in.toml")).unwrap();
    let key = sa
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .unwrap()
        .trim_end_matches('"');
    assert_eq!(
        table.trim(),
        format!(
            "\"IPv4\",\"10.200.0.1\",\"10.200.0.2\",\"{}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{key}\",\"NULL\",\"\"",
            sa.lines().find_map(|l| l.strip_prefix("spi = \"")).unwrap().trim_end_matches('"')
        )
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(keys.join("esp_sa"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(keys.join("preferences"))
        .unwrap()
        .contains("esp.enable_encryption_decode: TRUE"));
    // The summary never prints keys.
    assert!(!String::from_utf8_lossy(&o.stdout).contains(key));
    assert!(!String::from_utf8_lossy(&o.stderr).contains(key));
}

#[test]
fn esp_pcap_refuses_bad_input_with_clear_errors() {
    let d = data().join("tunnel-4in4");
    let run_bin = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_esp-pcap"))
            .args(args)
            .output()
            .unwrap()
    };
    let not_pcap = tmp("not.pcap");
    std::fs::write(&not_pcap, b"\x0a\x0d\x0d\x0a this is pcapng").unwrap();
    let o = run_bin(&[
        "decrypt".as_ref(),
        "--sa".as_ref(),
        d.join("sa-in.toml").as_os_str(),
        not_pcap.as_os_str(),
        tmp("x.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not.pcap") && err.contains("pcapng"), "{err}");
    let bad_sa = tmp("bad-sa.toml");
    std::fs::write(&bad_sa, "[[sa]]\nspi = 0\n").unwrap();
    let o = run_bin(&[
        "decrypt".as_ref(),
        "--sa".as_ref(),
        bad_sa.as_os_str(),
        d.join("scapy-esp.pcap").as_os_str(),
        tmp("y.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad-sa.toml:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run_bin(&["frobnicate".as_ref()]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit with 2");
    // A truncated capture: everything before the cut is processed, then a clear error.
    let full = std::fs::read(d.join("scapy-esp.pcap")).unwrap();
    let cut = tmp("cut.pcap");
    std::fs::write(&cut, &full[..full.len() - 5]).unwrap();
    let o = run_bin(&[
        "decrypt".as_ref(),
        "--sa".as_ref(),
        d.join("sa-in.toml").as_os_str(),
        cut.as_os_str(),
        tmp("z.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
#[ignore = "needs tshark: ./ci/test.sh installs it and runs it"]
fn tshark_decrypts_esprit_output_with_the_exported_keys() {
    esprit_testkit::require_tool("tshark", &["-v"]);
    // AES-GCM and AES-256-CBC with HMAC-SHA-384-192 (in UDP). ChaCha20-Poly1305 needs
    // Wireshark 4.2 or later (Debian 12 has 4.0, which refuses the esp_sa line).
    for case in ["tunnel-6in4", "cbc256-sha384-natt-6in4"] {
        tshark_reads(case);
    }
}

fn tshark_reads(case: &str) {
    let d = data().join(case);
    let keys = tmp(&format!("ws-profile-{case}"));
    let out = tmp(&format!("tshark-enc-{case}.pcap"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_esp-pcap"))
        .args(["encrypt", "--sa"])
        .arg(d.join("sa-out.toml"))
        .arg(d.join("plain.pcap"))
        .arg(&out)
        .arg("--wireshark-keys")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(o.status.success());
    let t = std::process::Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", &keys)
        .env("HOME", &keys)
        .args(["-n", "-r"])
        .arg(&out)
        .args([
            "-o",
            "esp.enable_authentication_check:TRUE",
            "-T",
            "fields",
            "-e",
            "esp.sequence",
            "-e",
            "ipv6.dst",
            "-e",
            "esp.icv_good",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        8,
        "{case}: {text}\n{}",
        String::from_utf8_lossy(&t.stderr)
    );
    for l in lines {
        assert!(
            l.contains("fd00:201:2::2"),
            "{case}: tshark sees the inner IPv6 packet: {l}"
        );
    }
}
