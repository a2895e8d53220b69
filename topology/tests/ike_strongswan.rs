//! esprit (esprit-ike + esprit-dataplane on gwA) against a real strongSwan (charon with
//! kernel-libipsec on gwB): esprit as initiator and as responder, PSK and ECDSA certificates,
//! AES-GCM-128 and -256, x25519 and ECP-256. Each run passes ping and a TCP transfer checked by
//! SHA-256 through the tunnel, finds the SA in `ike.list` on esprit's side and in strongSwan's,
//! and deletes it from one side, after which both sides are empty.

use esprit_testkit::{require, require_root};
use std::path::PathBuf;
use std::time::Duration;
use topology::ike::{write_configs, DataplaneThread, IkeAuth, IkeDaemon, IkeSite};
use topology::strongswan::{ensure_installed, Charon, CharonSpec, PeerAuth};
use topology::{LabGuard, LabSpec, Node};

const WAIT: Duration = Duration::from_secs(20);

/// Fails unless the lab can be built (root) and strongSwan is installed.
fn require_ready() {
    require_root();
    require(ensure_installed(), "strongSwan");
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Who {
    Esprit,
    StrongSwan,
}

struct Case {
    tag: &'static str,
    initiator: Who,
    certs: bool,
    ike: &'static str,
    esp: &'static str,
    delete_from: Who,
}

fn run(c: &Case) {
    require_ready();
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-is{}{}", c.tag, std::process::id()),
        ..LabSpec::default()
    })
    .unwrap();
    let dir =
        TempDir(std::env::temp_dir().join(format!("esprit-is-{}-{}", c.tag, std::process::id())));
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
    if c.certs {
        let pki = dir.0.join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        let (ca, certs) = topology::pki::make_pki(&pki, &["gwA", "gwB"]);
        site.auth = IkeAuth::Pubkey {
            cert: pki.join("gwA.pem"),
            key: pki.join("gwA.key"),
            ca: pki.join("ca.pem"),
            local_id: "gwA".into(),
            remote_id: "gwB".into(),
        };
        spec.auth = PeerAuth::Pubkey {
            cert_pem: certs[1].0.clone(),
            key_pem: certs[1].1.clone(),
            ca_pem: ca,
        };
    }
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
    assert_eq!(sa["encap"], true);
    assert_eq!(sa["remote_id"], "gwB");
    let child = &sa["children"][0];
    let ss_child = ss
        .installed_child("net")
        .expect("strongSwan installed the child");
    assert_eq!(
        format!("{:08x}", ss_child.spi_in),
        child["outbound_spi"].as_str().unwrap()
    );
    assert_eq!(
        format!("{:08x}", ss_child.spi_out),
        child["inbound_spi"].as_str().unwrap()
    );
    assert_eq!(
        sa["role"],
        if c.initiator == Who::Esprit {
            "initiator"
        } else {
            "responder"
        }
    );

    keys_match_strongswans(&dir.0.join("keys"), &charon);

    // Traffic both ways: ping from each site, then 4 MB over TCP with its SHA-256 checked.
    for (node, dst, text) in topology::demo::ping_across(&lab).unwrap() {
        assert!(
            topology::demo::loss(&text) <= 20.0,
            "{node} -> {dst}:\n{text}\n--- charon ---\n{}",
            charon.log()
        );
    }
    let (n, ok, _) = topology::demo::tcp_transfer(&lab, 4 << 20).unwrap();
    assert_eq!(n, 4 << 20);
    assert!(ok, "SHA-256 of the TCP stream differs");

    // Delete from one side: both sides end empty, and the dataplane has no SA left.
    match c.delete_from {
        Who::Esprit => {
            ike.call(&control::daemon::control::ControlRequest::Terminate {
                conn: "site".into(),
            })
            .unwrap();
        }
        Who::StrongSwan => charon.terminate_ike().unwrap(),
    }
    ike.wait_empty(WAIT).unwrap();
    let start = std::time::Instant::now();
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
    assert!(
        snap.sas.is_empty(),
        "SAs left in the dataplane: {:?}",
        snap.sas.len()
    );
    charon.stop();
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn esprit_initiates_psk_aes128_x25519_deleted_by_esprit() {
    run(&Case {
        tag: "a",
        initiator: Who::Esprit,
        certs: false,
        ike: "aes128gcm16-prfsha256-x25519",
        esp: "aes128gcm16",
        delete_from: Who::Esprit,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn strongswan_initiates_psk_aes256_ecp256_deleted_by_strongswan() {
    run(&Case {
        tag: "b",
        initiator: Who::StrongSwan,
        certs: false,
        ike: "aes256gcm16-prfsha384-ecp256",
        esp: "aes256gcm16",
        delete_from: Who::StrongSwan,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn esprit_initiates_ecdsa_certificates_deleted_by_strongswan() {
    run(&Case {
        tag: "c",
        initiator: Who::Esprit,
        certs: true,
        ike: "aes256gcm16-prfsha256-ecp256",
        esp: "aes128gcm16",
        delete_from: Who::StrongSwan,
    });
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn strongswan_initiates_ecdsa_certificates_deleted_by_esprit() {
    run(&Case {
        tag: "d",
        initiator: Who::StrongSwan,
        certs: true,
        ike: "aes128gcm16-prfsha256-x25519",
        esp: "aes256gcm16",
        delete_from: Who::Esprit,
    });
}

/// The keys esprit exported (daemon.wireshark_keys) are the ones charon logged: every ESP SA
/// charon logged with its key has the same key under the same SPI in esprit's `esp_sa`, and
/// the IKE SA's SK_ei/SK_er match the `ikev2_decryption_table` line with the same SPIs.
fn keys_match_strongswans(dir: &std::path::Path, charon: &Charon) {
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
            "ESP key of {:08x} differs",
            k.spi
        );
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
}
