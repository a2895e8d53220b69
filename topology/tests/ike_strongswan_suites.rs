//! esprit (esprit-ike + esprit-dataplane on gwA) against a real strongSwan (charon with
//! kernel-libipsec on gwB) with the IKE and ESP suites beyond AES-GCM: AES-CBC with
//! HMAC-SHA2-256-128/384-192/512-256 and ChaCha20-Poly1305, for the IKE SA (SK payload) and for
//! the child SA (ESP), with esprit as initiator and as responder.
//!
//! Each case checks that both sides agree on the suite (esprit's `ike.list` against
//! `swanctl --list-sas`: encryption, key size, integrity, PRF, group), that the keys esprit
//! exported (`daemon.wireshark_keys`) are the ones charon logged (SK_ei/er and SK_ai/ar of the
//! IKE SA, encryption and integrity key of each ESP SA), that ping crosses the tunnel both ways,
//! that an IKE rekey by esprit and then a child rekey by strongSwan (under the rekeyed IKE SA)
//! complete with the same suites and traffic still passes, and that a delete from esprit leaves
//! both sides and the dataplane empty. Bounded: one lab per case, a few seconds each.

use esprit_testkit::{require, require_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use topology::ike::{write_configs, DataplaneThread, IkeDaemon, IkeSite};
use topology::strongswan::{ensure_installed, Charon, CharonSpec, IkeSaInfo};
use topology::{LabGuard, LabSpec, Node};

const WAIT: Duration = Duration::from_secs(20);

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Who {
    Esprit,
    StrongSwan,
}

/// What strongSwan's `--list-sas` must show for the negotiated suites (key size 0: none shown,
/// as for ChaCha20-Poly1305, which has no Key Length attribute).
struct Want {
    ike_encr: (&'static str, u32),
    ike_integ: Option<&'static str>,
    prf: &'static str,
    dh: &'static str,
    esp_encr: (&'static str, u32),
    esp_integ: Option<&'static str>,
}

struct Case {
    tag: &'static str,
    initiator: Who,
    ike: &'static str,
    esp: &'static str,
    want: Want,
    /// Capture gwB's side and have tshark decrypt it with the keys esprit exported: the
    /// Wireshark algorithm names esprit writes must be ones Wireshark knows.
    tshark: bool,
}

fn run(c: &Case) {
    require_root();
    require(ensure_installed(), "strongSwan");
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-su{}{}", c.tag, std::process::id()),
        ..LabSpec::default()
    })
    .unwrap();
    let dir =
        TempDir(std::env::temp_dir().join(format!("esprit-su-{}-{}", c.tag, std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut site = IkeSite {
        proposals: vec![c.ike.into()],
        esp_proposals: vec![c.esp.into()],
        start_action: if c.initiator == Who::Esprit {
            "start".into()
        } else {
            "none".into()
        },
        // strongSwan with kernel-libipsec always sends ESP in UDP.
        encap: true,
        ..IkeSite::default()
    };
    site.extra_daemon = format!("wireshark_keys = \"{}\"", dir.0.join("keys").display());
    let mut spec = CharonSpec::lab_gw_b(&lab);
    spec.log_keys = true;
    spec.proposals = vec![c.ike.into()];
    spec.esp_proposals = vec![c.esp.into()];
    let capture = c
        .tshark
        .then(|| Capture::start(&lab, &dir.0.join("wan.pcap")));
    let charon = Charon::start(&lab, Node::GwB, &dir.0.join("gwB"), &spec).unwrap();
    let (ike_cfg, dp_cfg) = write_configs(&lab, Node::GwA, &dir.0, &site).unwrap();
    let dp = DataplaneThread::start(&lab, Node::GwA, dp_cfg).unwrap();
    let ike = IkeDaemon::start(&lab, Node::GwA, &ike_cfg).unwrap();
    if c.initiator == Who::StrongSwan {
        charon
            .initiate("net")
            .unwrap_or_else(|e| panic!("{e:?}\n{}", charon.log()));
    }
    let sa = ike
        .wait_child(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n--- charon ---\n{}", charon.log()));
    let ss = charon.wait_established(WAIT).unwrap();
    check_suites(c, &sa, &ss);
    let ss_child = ss
        .installed_child("net")
        .expect("strongSwan installed the child");
    let child = &sa["children"][0];
    assert_eq!(
        format!("{:08x}", ss_child.spi_in),
        child["outbound_spi"].as_str().unwrap()
    );
    keys_match_strongswans(&dir.0.join("keys"), &charon, c.want.ike_integ.is_some());

    for (node, dst, text) in topology::demo::ping_across(&lab).unwrap() {
        assert!(
            topology::demo::loss(&text) <= 20.0,
            "{node} -> {dst}:\n{text}\n--- charon ---\n{}",
            charon.log()
        );
    }
    if let Some(cap) = capture {
        tshark_decrypts(&cap.stop(), &dir.0.join("keys"), c);
    }
    // Both of strongSwan's ESP SAs carried the pings: its libipsec decrypted and verified what
    // esprit's dataplane sealed, and the other way round.
    let after = charon.wait_established(WAIT).unwrap();
    let ss_child = after.installed_child("net").unwrap();
    assert!(
        ss_child.packets_in > 0 && ss_child.packets_out > 0,
        "{ss_child:?}"
    );

    rekeys(&ike, &charon, &sa, &ss);
    for (node, dst, text) in topology::demo::ping_across(&lab).unwrap() {
        assert!(
            topology::demo::loss(&text) <= 20.0,
            "after the rekeys, {node} -> {dst}:\n{text}\n--- charon ---\n{}",
            charon.log()
        );
    }

    ike.call(&control::daemon::control::ControlRequest::Terminate {
        conn: "site".into(),
    })
    .unwrap();
    ike.wait_empty(WAIT).unwrap();
    let start = Instant::now();
    while !charon.list_sas().unwrap().is_empty() {
        assert!(
            start.elapsed() < WAIT,
            "strongSwan kept its SA:\n{}",
            charon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ike.stop().unwrap();
    let snap = dp.stop().unwrap();
    assert!(snap.sas.is_empty(), "SAs left in the dataplane");
    charon.stop();
}

/// esprit's only established IKE SA, once `ok` accepts it and charon lists exactly one IKE SA
/// with the same SPIs whose installed child's SPIs cross those of esprit's only child.
fn wait_agreed(
    ike: &IkeDaemon,
    charon: &Charon,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> (Value, topology::strongswan::IkeSaInfo) {
    let start = Instant::now();
    loop {
        let list = ike.list().unwrap();
        let ours: Vec<&Value> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["state"] == "established")
            .collect();
        let theirs = charon.list_sas().unwrap();
        if let ([sa], [ss]) = (ours.as_slice(), theirs.as_slice()) {
            let spis = (
                format!("{:016x}", ss.initiator_spi),
                format!("{:016x}", ss.responder_spi),
            );
            let child = &sa["children"][0];
            // charon keeps a replaced child's inbound SA a few seconds (delete_rekeyed_delay),
            // listed but not installed: only the installed one counts.
            let crossed = ss.installed_child("net").is_some_and(|c| {
                sa["children"].as_array().is_some_and(|a| a.len() == 1)
                    && format!("{:08x}", c.spi_in) == child["outbound_spi"].as_str().unwrap_or("")
                    && format!("{:08x}", c.spi_out) == child["inbound_spi"].as_str().unwrap_or("")
            });
            if ok(sa)
                && crossed
                && sa["spi_i"].as_str() == Some(&spis.0)
                && sa["spi_r"].as_str() == Some(&spis.1)
            {
                return ((*sa).clone(), ss.clone());
            }
        }
        assert!(
            start.elapsed() < WAIT,
            "{what}: not agreed after {WAIT:?}\nesprit: {list}\ncharon: {theirs:#?}\n{}",
            charon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// esprit rekeys the IKE SA (SKEYSEED from the old SK_d, the new SA's keys with its integrity
/// keys), then strongSwan rekeys the child under the new IKE SA (a CREATE_CHILD_SA in SK
/// payloads of the rekeyed keys): both end with one IKE SA and one installed child, new SPIs
/// and the same suites.
fn rekeys(ike: &IkeDaemon, charon: &Charon, before: &Value, ss_before: &IkeSaInfo) {
    use control::daemon::control::ControlRequest;
    let old_spi_i = before["spi_i"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let r = ike.call(&ControlRequest::Rekey {
            conn: "site".into(),
            ike: true,
            child: None,
        });
        match r {
            Ok(v) if v["rekeying"].as_u64().unwrap_or(0) > 0 => break,
            other => assert!(
                start.elapsed() < WAIT,
                "esprit did not start the IKE rekey: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (after_ike, ss) = wait_agreed(ike, charon, "IKE rekey by esprit", |sa| {
        sa["spi_i"].as_str() != Some(&old_spi_i)
    });
    assert_eq!(
        (
            &ss.encr_alg,
            ss.encr_keysize,
            &ss.integ_alg,
            &ss.prf_alg,
            &ss.dh_group
        ),
        (
            &ss_before.encr_alg,
            ss_before.encr_keysize,
            &ss_before.integ_alg,
            &ss_before.prf_alg,
            &ss_before.dh_group
        )
    );
    let old_child = after_ike["children"][0]["inbound_spi"]
        .as_str()
        .unwrap()
        .to_string();
    charon.rekey_child().unwrap();
    let (_, ss) = wait_agreed(ike, charon, "child rekey by strongSwan", |sa| {
        sa["children"][0]["inbound_spi"].as_str() != Some(&old_child)
    });
    let (c, c0) = (
        ss.installed_child("net").unwrap(),
        ss_before.installed_child("net").unwrap(),
    );
    assert_eq!(
        (&c.encr_alg, c.encr_keysize, &c.integ_alg),
        (&c0.encr_alg, c0.encr_keysize, &c0.integ_alg)
    );
}

/// esprit's `ike.list` and strongSwan's `--list-sas` name the same suites, the ones wanted.
fn check_suites(c: &Case, sa: &Value, ss: &IkeSaInfo) {
    let w = &c.want;
    assert_eq!(
        (ss.encr_alg.as_str(), ss.encr_keysize.unwrap_or(0)),
        w.ike_encr,
        "{ss:?}"
    );
    assert_eq!(ss.integ_alg.as_deref(), w.ike_integ, "{ss:?}");
    assert_eq!(ss.prf_alg, w.prf);
    assert_eq!(ss.dh_group, w.dh);
    let ss_child = ss.installed_child("net").unwrap();
    assert_eq!(
        (
            ss_child.encr_alg.as_str(),
            ss_child.encr_keysize.unwrap_or(0)
        ),
        w.esp_encr,
        "{ss_child:?}"
    );
    assert_eq!(ss_child.integ_alg.as_deref(), w.esp_integ);
    // esprit's view: the proposal keywords of the same algorithms.
    let ike_words: Vec<&str> = c.ike.split('-').collect();
    assert_eq!(sa["encr"], ike_words[0], "{sa}");
    let esp_words: Vec<&str> = c.esp.split('-').collect();
    let child = &sa["children"][0];
    assert_eq!(child["encr"], esp_words[0], "{child}");
    assert_eq!(
        child["integ"].as_str(),
        esp_words.get(1).copied(),
        "{child}"
    );
    assert_eq!(
        sa["integ"].as_str().is_some(),
        w.ike_integ.is_some(),
        "{sa}"
    );
}

/// The keys esprit exported are the ones charon logged: per ESP SA the encryption key and (for
/// AES-CBC) the integrity key under the same SPI, and the IKE SA's SK_ei/SK_er and SK_ai/SK_ar.
fn keys_match_strongswans(dir: &Path, charon: &Charon, ike_integ: bool) {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let esp = std::fs::read_to_string(dir.join("esp_sa")).unwrap();
    let logged = charon.child_keys();
    assert_eq!(logged.len(), 2, "{logged:?}");
    for k in &logged {
        let line = esp
            .lines()
            .find(|l| l.contains(&format!("\"0x{:08x}\"", k.spi)))
            .unwrap_or_else(|| panic!("esprit exported no ESP SA {:08x}:\n{esp}", k.spi));
        assert!(
            line.contains(&format!("\"0x{}\"", hex(&k.encr_key))),
            "ESP encryption key of {:08x} differs",
            k.spi
        );
        match &k.integ_key {
            Some(a) => assert!(
                line.contains(&format!("\"0x{}\"", hex(a))),
                "ESP integrity key of {:08x} differs",
                k.spi
            ),
            None => assert!(line.ends_with("\"NULL\",\"\""), "{line}"),
        }
    }
    let ike = std::fs::read_to_string(dir.join("ikev2_decryption_table")).unwrap();
    let logged = charon.ike_keys();
    let k = logged.last().expect("charon logged the IKE keys");
    let (Some(i), Some(r)) = (k.initiator_spi, k.responder_spi) else {
        panic!("charon's log lacks the IKE SPIs")
    };
    let line = ike
        .lines()
        .find(|l| l.starts_with(&format!("{i:016x},{r:016x},")))
        .unwrap_or_else(|| panic!("esprit exported no IKE SA {i:016x}_{r:016x}:\n{ike}"));
    assert!(
        line.contains(&format!(",{},{},", hex(&k.sk_ei), hex(&k.sk_er))),
        "SK_ei/SK_er differ"
    );
    if ike_integ {
        assert!(!k.sk_ai.is_empty());
        assert!(
            line.contains(&format!(",{},{},", hex(&k.sk_ai), hex(&k.sk_ar))),
            "SK_ai/SK_ar differ"
        );
    }
}

/// tcpdump on gwB (charon's side, where the kernel sees IKE and the UDP-encapsulated ESP, unlike
/// gwA, whose dataplane takes ESP off the wire before any capture).
struct Capture {
    child: std::process::Child,
    file: PathBuf,
}

impl Capture {
    fn start(lab: &topology::Lab, file: &Path) -> Capture {
        let mut child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(Node::GwB),
                "tcpdump",
                "-i",
                "any",
                "-n",
                "-U",
            ])
            .arg("-w")
            .arg(file)
            .arg("udp port 500 or udp port 4500")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump (ci/install-deps.sh installs it)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(WAIT).expect("tcpdump started capturing");
        Capture {
            child,
            file: file.to_path_buf(),
        }
    }

    /// Stops the capture (SIGINT makes tcpdump finish the file); returns the file.
    fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on our own child's pid (`ip netns exec` became tcpdump by exec).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.file.clone()
    }
}

/// tshark, given the profile directory esprit wrote (`daemon.wireshark_keys`), decrypts the
/// IKE_AUTH exchange and verifies its ICVs with the suite's algorithm, and decrypts and
/// verifies every ESP packet of the pings.
fn tshark_decrypts(pcap: &Path, keys: &Path, c: &Case) {
    let out = std::process::Command::new("tshark")
        .env("WIRESHARK_CONFIG_DIR", keys)
        .arg("-r")
        .arg(pcap)
        .args(["-V", "-o", "esp.enable_encryption_decode:TRUE"])
        .args(["-o", "esp.enable_authentication_check:TRUE"])
        .output()
        .expect("tshark (ci/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let ike_icv = text
        .lines()
        .filter(|l| l.contains("Integrity Checksum Data") && l.contains("[correct]"))
        .count();
    assert!(
        ike_icv >= 2 && !text.contains("[incorrect]"),
        "{}: tshark verified {ike_icv} IKE ICVs",
        c.ike
    );
    assert!(
        text.contains("Payload: Identification - Initiator"),
        "{}",
        c.ike
    );
    let esp_icv = text
        .lines()
        .filter(|l| l.contains("ESP ICV") && l.contains("[correct]"))
        .count();
    assert!(
        esp_icv >= 8,
        "{}: tshark verified {esp_icv} ESP ICVs",
        c.esp
    );
    assert!(text.contains("Echo (ping) request"), "{}", c.esp);
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn esprit_initiates_aes256_sha256_modp2048_esp_aes256_sha512() {
    run(&Case {
        tag: "a",
        initiator: Who::Esprit,
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha512",
        want: Want {
            ike_encr: ("AES_CBC", 256),
            ike_integ: Some("HMAC_SHA2_256_128"),
            prf: "PRF_HMAC_SHA2_256",
            dh: "MODP_2048",
            esp_encr: ("AES_CBC", 256),
            esp_integ: Some("HMAC_SHA2_512_256"),
        },
        tshark: true,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn strongswan_initiates_aes128_sha256_x25519_esp_aes128_sha256() {
    run(&Case {
        tag: "b",
        initiator: Who::StrongSwan,
        ike: "aes128-sha256-x25519",
        esp: "aes128-sha256",
        want: Want {
            ike_encr: ("AES_CBC", 128),
            ike_integ: Some("HMAC_SHA2_256_128"),
            prf: "PRF_HMAC_SHA2_256",
            dh: "CURVE_25519",
            esp_encr: ("AES_CBC", 128),
            esp_integ: Some("HMAC_SHA2_256_128"),
        },
        tshark: true,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn esprit_initiates_chacha20poly1305_x25519_esp_chacha20poly1305() {
    run(&Case {
        tag: "c",
        initiator: Who::Esprit,
        ike: "chacha20poly1305-prfsha256-x25519",
        esp: "chacha20poly1305",
        want: Want {
            ike_encr: ("CHACHA20_POLY1305", 0),
            ike_integ: None,
            prf: "PRF_HMAC_SHA2_256",
            dh: "CURVE_25519",
            esp_encr: ("CHACHA20_POLY1305", 0),
            esp_integ: None,
        },
        tshark: false,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn strongswan_initiates_chacha20poly1305_ecp256_esp_aes256_sha384() {
    run(&Case {
        tag: "d",
        initiator: Who::StrongSwan,
        ike: "chacha20poly1305-prfsha512-ecp256",
        esp: "aes256-sha384",
        want: Want {
            ike_encr: ("CHACHA20_POLY1305", 0),
            ike_integ: None,
            prf: "PRF_HMAC_SHA2_512",
            dh: "ECP_256",
            esp_encr: ("AES_CBC", 256),
            esp_integ: Some("HMAC_SHA2_384_192"),
        },
        tshark: false,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn strongswan_initiates_aes256_sha512_ecp384_esp_chacha20poly1305() {
    run(&Case {
        tag: "e",
        initiator: Who::StrongSwan,
        ike: "aes256-sha512-ecp384",
        esp: "chacha20poly1305",
        want: Want {
            ike_encr: ("AES_CBC", 256),
            ike_integ: Some("HMAC_SHA2_512_256"),
            prf: "PRF_HMAC_SHA2_512",
            dh: "ECP_384",
            esp_encr: ("CHACHA20_POLY1305", 0),
            esp_integ: None,
        },
        tshark: false,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn esprit_initiates_aes128_sha384_ecp256_esp_aes256_sha256() {
    run(&Case {
        tag: "f",
        initiator: Who::Esprit,
        ike: "aes128-sha384-ecp256",
        esp: "aes256-sha256",
        want: Want {
            ike_encr: ("AES_CBC", 128),
            ike_integ: Some("HMAC_SHA2_384_192"),
            prf: "PRF_HMAC_SHA2_384",
            dh: "ECP_256",
            esp_encr: ("AES_CBC", 256),
            esp_integ: Some("HMAC_SHA2_256_128"),
        },
        tshark: true,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn esprit_initiates_aes256_sha384_ecp521_esp_aes256gcm16() {
    run(&Case {
        tag: "g",
        initiator: Who::Esprit,
        ike: "aes256-sha384-ecp521",
        esp: "aes256gcm16",
        want: Want {
            ike_encr: ("AES_CBC", 256),
            ike_integ: Some("HMAC_SHA2_384_192"),
            prf: "PRF_HMAC_SHA2_384",
            dh: "ECP_521",
            esp_encr: ("AES_GCM_16", 256),
            esp_integ: None,
        },
        tshark: false,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn strongswan_initiates_aes128gcm16_modp3072_esp_aes128_sha256() {
    run(&Case {
        tag: "h",
        initiator: Who::StrongSwan,
        ike: "aes128gcm16-prfsha256-modp3072",
        esp: "aes128-sha256",
        want: Want {
            ike_encr: ("AES_GCM_16", 128),
            ike_integ: None,
            prf: "PRF_HMAC_SHA2_256",
            dh: "MODP_3072",
            esp_encr: ("AES_CBC", 128),
            esp_integ: Some("HMAC_SHA2_256_128"),
        },
        tshark: false,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn esprit_initiates_chacha20poly1305_modp4096_esp_aes256_sha512() {
    run(&Case {
        tag: "i",
        initiator: Who::Esprit,
        ike: "chacha20poly1305-prfsha384-modp4096",
        esp: "aes256-sha512",
        want: Want {
            ike_encr: ("CHACHA20_POLY1305", 0),
            ike_integ: None,
            prf: "PRF_HMAC_SHA2_384",
            dh: "MODP_4096",
            esp_encr: ("AES_CBC", 256),
            esp_integ: Some("HMAC_SHA2_512_256"),
        },
        tshark: false,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn strongswan_initiates_aes256_sha256_ecp521_esp_chacha20poly1305() {
    run(&Case {
        tag: "j",
        initiator: Who::StrongSwan,
        ike: "aes256-sha256-ecp521",
        esp: "chacha20poly1305",
        want: Want {
            ike_encr: ("AES_CBC", 256),
            ike_integ: Some("HMAC_SHA2_256_128"),
            prf: "PRF_HMAC_SHA2_256",
            dh: "ECP_521",
            esp_encr: ("CHACHA20_POLY1305", 0),
            esp_integ: None,
        },
        tshark: false,
    });
}
