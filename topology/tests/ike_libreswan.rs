//! esprit (esprit-ike + esprit-dataplane on gwA) against Libreswan's pluto on gwB. This kernel
//! has no ESP, so pluto cannot install a child SA (XFRM answers ENOSYS); what is checked is
//! what an IKEv2 peer shows without it: IKE_SA_INIT and IKE_AUTH both ways (PSK, FQDN
//! identities, through the lab's NAT), the child keys pluto derived against the ones esprit
//! installed (same SPI, same key), pluto's refusal of a child it cannot install handled as
//! RFC 7296 says (TS_UNACCEPTABLE: the IKE SA stays, without the child), an IKE SA rekey
//! initiated by pluto, and a delete from either side leaving both empty. See docs/interop.md.

use esprit_testkit::{require, require_root};
use std::time::Duration;
use topology::ike::{write_configs, DataplaneThread, IkeDaemon, IkeSite};
use topology::libreswan::{ensure_installed, Pluto, PlutoSpec};
use topology::strongswan::LAB_PSK;
use topology::{Lab, LabGuard, LabSpec, Node};

const WAIT: Duration = Duration::from_secs(20);

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        // Kept after a failure: pluto's debug log is the evidence.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A lab with esprit on gwA (starting the connection itself when `esprit_starts`) and pluto
/// on gwB, both with `ike`/`esp` (esprit's and Libreswan's spelling of the same suite).
fn setup(
    tag: &str,
    esprit_starts: bool,
    (ike, ike_ls): (&str, &str),
    (esp, esp_ls): (&str, &str),
) -> (LabGuard, TempDir, Pluto, DataplaneThread, IkeDaemon) {
    require_root();
    require(ensure_installed(), "Libreswan");
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-ls{tag}{}", std::process::id()),
        ..LabSpec::default()
    })
    .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-ls-{tag}-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let spec = PlutoSpec {
        local: lab.gw_b_wan().into(),
        remote: lab.gw_a_seen_by_b().into(),
        local_id: "gwB".into(),
        remote_id: "gwA".into(),
        local_subnet: "10.201.2.0/24".into(),
        remote_subnet: "10.201.1.0/24".into(),
        ike: ike_ls.into(),
        esp: esp_ls.into(),
        psk: LAB_PSK.into(),
    };
    let pluto = Pluto::start(&lab, Node::GwB, &dir.0.join("gwB"), &spec).unwrap();
    let mut site = IkeSite {
        proposals: vec![ike.into()],
        esp_proposals: vec![esp.into()],
        start_action: if esprit_starts { "start" } else { "none" }.into(),
        ..IkeSite::default()
    };
    // Two retransmissions (1 s, 1.8 s, 3.2 s): a request pluto leaves unanswered is given
    // up within seconds.
    site.extra_daemon = format!(
        "wireshark_keys = \"{}\"\nretransmit_tries = 2",
        dir.0.join("keys").display()
    );
    let (ike_cfg, dp_cfg) = write_configs(&lab, Node::GwA, &dir.0, &site).unwrap();
    let dp = DataplaneThread::start(&lab, Node::GwA, dp_cfg).unwrap();
    let ike_d = IkeDaemon::start(&lab, Node::GwA, &ike_cfg).unwrap();
    (lab, dir, pluto, dp, ike_d)
}

/// Waits until esprit lists one established IKE SA; returns it.
fn wait_ike(
    ike: &IkeDaemon,
    pluto: &Pluto,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let v = ike.list().unwrap();
        if let Some(sa) = v.as_array().and_then(|a| a.iter().find(|s| pred(s))) {
            return sa.clone();
        }
        assert!(
            start.elapsed() < WAIT,
            "esprit: {v}\n--- pluto ---\n{}",
            pluto.tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// pluto deletes its IKE SA: esprit answers and ends empty.
fn pluto_deletes(lab: &Lab, ike: &IkeDaemon, pluto: &Pluto) {
    let before = pluto.log().matches("deleting state").count();
    pluto.terminate(lab).unwrap();
    ike.wait_empty(WAIT).unwrap();
    pluto.wait_log("deleting state", before + 1, WAIT).unwrap();
}

#[test]
#[ignore = "needs root and Libreswan: ./ci/test.sh runs it as root"]
fn libreswan_initiates_and_its_child_keys_are_esprits() {
    let (lab, dir, pluto, dp, ike) = setup(
        "a",
        false,
        (
            "aes256gcm16-prfsha256-x25519",
            "aes_gcm256-sha2_256-curve25519",
        ),
        ("aes256gcm16", "aes_gcm256"),
    );
    pluto.initiate(&lab).unwrap();
    // esprit answers IKE_AUTH with the child installed in its dataplane; pluto derives the
    // same keys and then fails to install them in this kernel.
    let sa = ike
        .wait_child(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", pluto.tail(40)));
    assert_eq!(sa["role"], "responder");
    assert_eq!(sa["remote_id"], "gwB");
    pluto.wait_log("established IKE SA", 1, WAIT).unwrap();
    pluto
        .wait_log("ESP enckey", 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let child = &sa["children"][0];
    let inbound = u32::from_str_radix(child["inbound_spi"].as_str().unwrap(), 16).unwrap();
    let keys = pluto.esp_keys();
    let (_, key) = keys
        .iter()
        .find(|(spi, _)| *spi == inbound)
        .unwrap_or_else(|| {
            panic!("pluto derived no key for esprit's inbound SPI {inbound:08x}: {keys:?}")
        });
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let esp = std::fs::read_to_string(dir.0.join("keys").join("esp_sa")).unwrap();
    let line = esp
        .lines()
        .find(|l| l.contains(&format!("\"0x{inbound:08x}\"")))
        .unwrap_or_else(|| panic!("esprit exported no ESP SA {inbound:08x}:\n{esp}"));
    assert!(
        line.contains(&format!("\"0x{hex}\"")),
        "ESP key of {inbound:08x} differs:\n{line}"
    );
    // pluto, as initiator, takes the failed install as fatal and drops its IKE SA without a
    // Delete. esprit's own delete then goes unanswered and is given up after its
    // retransmissions (RFC 7296 §2.4), taking the child out of the dataplane.
    pluto.wait_log("NOT sending notification", 1, WAIT).unwrap();
    ike.call(&control::daemon::control::ControlRequest::Terminate {
        conn: "site".into(),
    })
    .unwrap();
    pluto
        .wait_log("INFORMATIONAL request has no corresponding IKE SA", 1, WAIT)
        .unwrap();
    ike.wait_empty(WAIT).unwrap();
    ike.stop().unwrap();
    dp.stop().unwrap();
    pluto.stop();
}

#[test]
#[ignore = "needs root and Libreswan: ./ci/test.sh runs it as root"]
fn esprit_initiates_libreswan_refuses_the_child_and_rekeys_the_ike_sa() {
    let (lab, _dir, pluto, dp, ike) = setup(
        "b",
        true,
        ("aes128gcm16-prfsha256-ecp256", "aes_gcm128-sha2_256-dh19"),
        ("aes128gcm16", "aes_gcm128"),
    );
    let sa = wait_ike(&ike, &pluto, |s| s["state"] == "established");
    assert_eq!(sa["role"], "initiator");
    pluto.wait_log("established IKE SA", 1, WAIT).unwrap();
    // pluto could not install the child and said so with TS_UNACCEPTABLE: the IKE SA stays
    // up without it (RFC 7296 §1.2: a failed child does not fail the IKE SA).
    pluto.wait_log("ESP enckey", 1, WAIT).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let sa = wait_ike(&ike, &pluto, |s| s["state"] == "established");
    assert!(
        sa["children"].as_array().is_none_or(|c| c.is_empty()),
        "no child without pluto's: {sa}"
    );
    // pluto rekeys the IKE SA (CREATE_CHILD_SA): esprit follows with new SPIs.
    let old = sa["id"].clone();
    pluto.rekey_ike(&lab).unwrap();
    wait_ike(&ike, &pluto, |s| {
        s["state"] == "established" && s["id"] != old
    });
    pluto_deletes(&lab, &ike, &pluto);
    ike.stop().unwrap();
    dp.stop().unwrap();
    pluto.stop();
}
