//! esprit (esprit-ike + esprit-dataplane on gwA) against a real strongSwan (charon with
//! kernel-libipsec on gwB) over a tunnel's life: 50 child rekeys and 5 IKE rekeys started by
//! each side under a continuous ping with no packet lost and no SA left over; IKE_AUTH
//! fragmented both ways with three-certificate RSA chains (root → intermediate 1 →
//! intermediate 2 → gateway), each side trusting only the root; and the key schedule (IKE
//! SA, children with PFS, rekeyed IKE SAs and the children derived from their SK_d) checked
//! against the keys charon logs.
//!
//! Root only (the lab) and strongSwan installed: ignored by a plain `cargo test`, run by
//! `./ci/test.sh`, and a missing prerequisite fails the test.

use control::daemon::control::ControlRequest;
use esprit_testkit::{require, require_root};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use topology::ike::{write_configs, DataplaneThread, IkeAuth, IkeDaemon, IkeSite};
use topology::lab::{HOST_A, HOST_B};
use topology::pki::{make_chain_pki, KeyType};
use topology::strongswan::{
    ensure_installed, strongswan_version, Charon, CharonSpec, IkeSaInfo, PeerAuth,
};
use topology::{Lab, LabGuard, LabSpec, Node};

/// The longest any exchange, settling or deletion may take (generous: the machine is shared).
const WAIT: Duration = Duration::from_secs(30);
/// esprit's connection name (`write_configs` writes `[connections.site]`).
const CONN: &str = "site";

/// Fails unless the lab can be built (root) and strongSwan is installed.
fn require_ready() {
    require_root();
    require(ensure_installed(), "strongSwan");
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// esprit on gwA and charon on gwB in a lab of their own. Fields drop in order: esprit-ike,
/// the dataplane, charon, the directory, the lab.
struct Pair {
    ike: IkeDaemon,
    _dp: DataplaneThread,
    charon: Charon,
    dir: TempDir,
    lab: LabGuard,
}

/// Brings up the lab, charon on gwB and esprit on gwA (neither initiates). `configure` gets
/// the test's directory and adjusts esprit's site and charon's specification; esprit exports
/// its keys (`wireshark_keys`) to `<dir>/keys`.
fn pair(tag: &str, configure: impl FnOnce(&Path, &mut IkeSite, &mut CharonSpec)) -> Pair {
    require_ready();
    let pid = std::process::id();
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-isl{tag}{pid}"),
        ..LabSpec::default()
    })
    .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-isl-{tag}-{pid}")));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut site = IkeSite {
        proposals: vec!["aes128gcm16-prfsha256-x25519".into()],
        esp_proposals: vec!["aes128gcm16".into()],
        start_action: "none".into(),
        // strongSwan with kernel-libipsec always sends ESP in UDP.
        encap: true,
        extra_daemon: format!("wireshark_keys = \"{}\"", dir.0.join("keys").display()),
        ..IkeSite::default()
    };
    let mut spec = CharonSpec::lab_gw_b(&lab);
    configure(&dir.0, &mut site, &mut spec);
    let charon = Charon::start(&lab, Node::GwB, &dir.0.join("gwB"), &spec).unwrap();
    let (ike_cfg, dp_cfg) = write_configs(&lab, Node::GwA, &dir.0, &site).unwrap();
    let dp = DataplaneThread::start(&lab, Node::GwA, dp_cfg).unwrap();
    let ike = IkeDaemon::start(&lab, Node::GwA, &ike_cfg).unwrap();
    // No neighbour warm-up: the dataplane resolves next hops itself and holds the first
    // packets while it does (decision 0013), so the tests' first ping must be answered.
    Pair {
        ike,
        _dp: dp,
        charon,
        dir,
        lab,
    }
}

/// Who starts an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Esprit,
    StrongSwan,
}

/// Both sides' view of the tunnel once it is settled.
#[derive(Clone, Debug)]
struct Tunnel {
    /// esprit's only IKE SA (`ike.list`).
    esprit: Value,
    /// charon's only IKE SA.
    charon: IkeSaInfo,
}

impl Tunnel {
    /// The IKE SA's SPIs as esprit lists them: (initiator's, responder's), 16 hex digits each.
    fn spis(&self) -> (String, String) {
        (
            self.esprit["spi_i"].as_str().unwrap().to_string(),
            self.esprit["spi_r"].as_str().unwrap().to_string(),
        )
    }

    /// esprit's child: (inbound SPI, outbound SPI).
    fn child(&self) -> (u32, u32) {
        let c = &self.esprit["children"][0];
        let spi = |k: &str| u32::from_str_radix(c[k].as_str().unwrap(), 16).unwrap();
        (spi("inbound_spi"), spi("outbound_spi"))
    }
}

impl Pair {
    /// The tail of charon's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self.charon.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- charon.log (tail) ---\n{}",
            lines[lines.len().saturating_sub(60)..].join("\n")
        )
    }

    /// The tunnel if both sides agree on exactly one IKE SA with exactly one installed child
    /// and nothing in progress: esprit lists one established IKE SA with one child that is not
    /// rekeying; charon lists one ESTABLISHED IKE SA with the same SPIs whose one INSTALLED
    /// child has esprit's SPIs crossed, and no other child but replaced ones waiting for their
    /// deletion (charon keeps rekeyed inbound SAs for `delete_rekeyed_delay`, 5 s).
    fn settled(&self) -> Option<Tunnel> {
        let list = self.ike.list().ok()?;
        let [sa] = list.as_array()?.as_slice() else {
            return None;
        };
        let [child] = sa["children"].as_array()?.as_slice() else {
            return None;
        };
        if sa["state"] != "established" || child["rekeying"] != false {
            return None;
        }
        let sas = self.charon.list_sas().ok()?;
        let [ss] = sas.as_slice() else {
            return None;
        };
        let t = Tunnel {
            esprit: sa.clone(),
            charon: ss.clone(),
        };
        let (i, r) = t.spis();
        let installed: Vec<_> = ss
            .children
            .iter()
            .filter(|c| c.state == "INSTALLED")
            .collect();
        let others_replaced = ss
            .children
            .iter()
            .all(|c| ["INSTALLED", "REKEYED", "DELETING", "DELETED"].contains(&c.state.as_str()));
        let (inb, outb) = t.child();
        (ss.state == "ESTABLISHED"
            && format!("{:016x}", ss.initiator_spi) == i
            && format!("{:016x}", ss.responder_spi) == r
            && installed.len() == 1
            && others_replaced
            && installed[0].spi_in == outb
            && installed[0].spi_out == inb)
            .then_some(t)
    }

    /// Waits until [`Pair::settled`] holds and `done` accepts the tunnel.
    fn wait_settled(&self, what: &str, done: impl Fn(&Tunnel) -> bool) -> Tunnel {
        let start = Instant::now();
        loop {
            if let Some(t) = self.settled() {
                if done(&t) {
                    return t;
                }
            }
            if start.elapsed() > WAIT {
                panic!(
                    "{what}: not settled after {WAIT:?}\nesprit: {:?}\ncharon: {:#?}\n{}",
                    self.ike.list(),
                    self.charon.list_sas(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Brings the tunnel up from one side and waits until both agree on it.
    fn up(&self, from: Side) -> Tunnel {
        match from {
            Side::Esprit => {
                self.ike
                    .call(&ControlRequest::Initiate {
                        conn: CONN.into(),
                        child: None,
                    })
                    .unwrap();
            }
            Side::StrongSwan => self
                .charon
                .initiate("net")
                .unwrap_or_else(|e| panic!("{e:?}")),
        }
        self.wait_settled(&format!("initiated by {from:?}"), |_| true)
    }

    /// One rekey (of the child, or of the IKE SA) started by `by`, waited for until it is
    /// done on both sides: new SPIs, one IKE SA and one installed child on each side.
    fn rekey(&self, by: Side, ike: bool, before: &Tunnel) -> Tunnel {
        let what = format!(
            "{} rekey started by {by:?}",
            if ike { "IKE" } else { "child" }
        );
        match by {
            Side::Esprit => {
                let start = Instant::now();
                loop {
                    let r = self.ike.call(&ControlRequest::Rekey {
                        conn: CONN.into(),
                        ike,
                        child: None,
                    });
                    match r {
                        Ok(v) if v["rekeying"].as_u64().unwrap_or(0) > 0 => break,
                        other => assert!(
                            start.elapsed() < WAIT,
                            "{what}: esprit did not start it: {other:?}"
                        ),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Side::StrongSwan if ike => self.charon.rekey_ike().unwrap(),
            Side::StrongSwan => self.charon.rekey_child().unwrap(),
        }
        let old_spis = before.spis();
        let old_child = before.child();
        self.wait_settled(&what, |t| {
            if ike {
                let (i, r) = t.spis();
                i != old_spis.0 && r != old_spis.1
            } else {
                let (inb, outb) = t.child();
                t.spis() == old_spis && inb != old_child.0 && outb != old_child.1
            }
        })
    }

    /// Waits until charon lists exactly one IKE SA with exactly one child (the replaced
    /// inbound SAs it keeps for a few seconds are gone).
    fn wait_charon_clean(&self) -> IkeSaInfo {
        let start = Instant::now();
        loop {
            let sas = self.charon.list_sas().unwrap();
            if let [sa] = sas.as_slice() {
                if sa.children.len() == 1 && sa.installed_child("net").is_some() {
                    return sa.clone();
                }
            }
            assert!(
                start.elapsed() < WAIT,
                "charon kept more than one IKE SA or child: {sas:#?}\n{}\n{}",
                self.charon_log_of_stale_children(&sas),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Both sides' SAs with their counters and the end of charon's log, for failure messages.
    fn diagnosis(&self) -> String {
        let dp = dataplane::api::Client::connect(&self.dir.0.join("gwA-dp.sock")).map(|mut c| {
            (
                c.call(dataplane::api::Request::SaList),
                c.call(dataplane::api::Request::Stats),
            )
        });
        format!(
            "esprit: {:?}\nesprit's dataplane (SAs, stats): {dp:?}\ncharon: {:#?}\n{}",
            self.ike.list(),
            self.charon.list_sas(),
            self.log_tail()
        )
    }

    /// charon's log lines about its children that are not installed (by unique id or SPI).
    fn charon_log_of_stale_children(&self, sas: &[IkeSaInfo]) -> String {
        let log = self.charon.log();
        let mut out = String::new();
        for c in sas.iter().flat_map(|s| &s.children) {
            if c.state == "INSTALLED" {
                continue;
            }
            let keys = [
                format!("{}{{{}}}", c.name, c.unique_id),
                format!("CHILD_SA {{{}}} ", c.unique_id),
                format!("{:08x}", c.spi_in),
                format!("{:08x}", c.spi_out),
            ];
            out.push_str(&format!(
                "--- charon.log on {}{{{}}} ({}) ---\n",
                c.name, c.unique_id, c.state
            ));
            for l in log.lines().filter(|l| keys.iter().any(|k| l.contains(k))) {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The SAs installed in esprit's dataplane.
    fn dataplane_sas(&self) -> usize {
        let mut c = dataplane::api::Client::connect(&self.dir.0.join("gwA-dp.sock")).unwrap();
        c.call(dataplane::api::Request::SaList)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    }

    /// Ping across the tunnel both ways; every echo request must be answered.
    fn traffic_both_ways(&self, count: u32) {
        for (from, dst) in [(Node::HostA, HOST_B.0), (Node::HostB, HOST_A.0)] {
            let (sent, got, text) = ping(&self.lab, from, dst, count);
            assert!(
                sent == count && got == sent,
                "{from} -> {dst}:\n{text}\n{}",
                self.diagnosis()
            );
        }
    }
}

/// `ping -c count` from a node: (transmitted, received, output).
fn ping(lab: &Lab, from: Node, dst: &str, count: u32) -> (u32, u32, String) {
    let out = lab
        .exec(
            from,
            &[
                "ping",
                "-n",
                "-c",
                &count.to_string(),
                "-i",
                "0.1",
                "-W",
                "2",
                dst,
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |word: &str| -> u32 {
        text.lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split(',').find(|p| p.contains(word)))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("transmitted"), field("received"), text)
}

/// A continuous `ping -i 0.01` writing to a file; killed when dropped (a failing test leaves
/// no ping behind).
struct Pinger {
    child: Option<Child>,
    out: PathBuf,
}

impl Pinger {
    fn start(lab: &Lab, from: Node, dst: &str, out: PathBuf) -> Pinger {
        let file = std::fs::File::create(&out).unwrap();
        let child = lab
            .command(from, "ping")
            .args(["-n", "-i", "0.01", "-W", "2", dst])
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Pinger {
            child: Some(child),
            out,
        }
    }

    /// Stops ping with SIGINT (it prints its summary) and returns (sequence numbers never
    /// answered up to the last answered one, highest answered sequence number, summary line).
    /// Requests sent after the last reply (at most the few in flight when ping stopped) are not
    /// counted as lost.
    fn stop(mut self) -> (Vec<u32>, u32, String) {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child, not yet reaped (so the pid is still ours).
        unsafe { libc::kill(pid, libc::SIGINT) };
        child.wait().unwrap();
        let text = std::fs::read_to_string(&self.out).unwrap();
        topology::demo::ping_gaps(&text)
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// 50 child rekeys and 5 IKE rekeys started by each side, interleaved and one at a time (each
/// waited for on both sides), under a 100 packets/s ping from hA to hB: no echo request goes
/// unanswered, and afterwards each side has one IKE SA with one child, and esprit's dataplane
/// one SA pair.
#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn rekeys_against_strongswan_lose_no_packet() {
    let p = pair("r", |_, _, _| {});
    eprintln!(
        "strongSwan {}",
        strongswan_version().unwrap_or_else(|| "(unknown version)".into())
    );
    let mut t = p.up(Side::Esprit);
    assert_eq!(t.esprit["role"], "initiator");
    p.traffic_both_ways(5);
    let pinger = Pinger::start(&p.lab, Node::HostA, HOST_B.0, p.dir.0.join("ping.out"));
    std::thread::sleep(Duration::from_millis(500));
    let (mut child_rekeys, mut ike_rekeys) = ([0u32; 2], [0u32; 2]);
    for i in 0..100 {
        let (by, n) = if i % 2 == 0 {
            (Side::Esprit, 0)
        } else {
            (Side::StrongSwan, 1)
        };
        t = p.rekey(by, false, &t);
        child_rekeys[n] += 1;
        // i % 20 == 8 is esprit's turn, 19 strongSwan's: five IKE rekeys each.
        if i % 20 == 8 || i % 20 == 19 {
            // charon destroys a replaced child's inbound SA from a job 5 s after the rekey
            // (`delete_rekeyed_delay`). Once in about 25 runs without this wait, charon 5.9.8
            // never did it for a child whose job was due as an IKE rekey finished (40 ms
            // apart): the child stayed DELETED on the new IKE SA for good, its delete exchange
            // with esprit long done. So the IKE SA is rekeyed once charon has no such child.
            p.wait_charon_clean();
            t = p.rekey(by, true, &t);
            ike_rekeys[n] += 1;
        }
    }
    assert_eq!((child_rekeys, ike_rekeys), ([50, 50], [5, 5]));
    // Let the replaced SAs drain (esprit keeps old inbound SAs briefly, charon for 5 s) with
    // the ping still running, then count.
    let ss = p.wait_charon_clean();
    std::thread::sleep(Duration::from_secs(3));
    let (lost, last, summary) = pinger.stop();
    eprintln!("ping during the rekeys: {summary}");
    assert!(last > 1000, "too few echo replies: {summary}");
    assert!(
        lost.is_empty(),
        "echo requests lost across 100 child and 10 IKE rekeys: {lost:?} ({summary})\n{}",
        p.diagnosis()
    );
    let list = p.ike.list().unwrap();
    let sas = list.as_array().unwrap();
    assert_eq!(sas.len(), 1, "esprit's IKE SAs: {list}");
    assert_eq!(sas[0]["children"].as_array().unwrap().len(), 1, "{list}");
    let final_t = p.settled().expect("both sides agree on the tunnel");
    assert_eq!(final_t.spis(), t.spis());
    let sas = p.charon.list_sas().unwrap();
    assert!(
        sas.len() == 1 && sas[0].children.len() == 1,
        "charon's SAs: {sas:#?}"
    );
    assert_eq!(sas[0].unique_id, ss.unique_id);
    assert_eq!(
        p.dataplane_sas(),
        2,
        "one SA pair left in esprit's dataplane"
    );
    p.traffic_both_ways(3);
}

/// Root CA → intermediate 1 → intermediate 2 → gateway certificate for each gateway (RSA-2048,
/// a chain of its own per gateway), each side trusting only the root and sending its
/// certificate with both intermediates: the IKE_AUTH messages are far above 1280 octets and go
/// as RFC 7383 fragments both ways, with esprit as initiator and then as responder.
#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn fragmented_ike_auth_with_a_three_certificate_chain() {
    let p = pair("f", |dir, site, spec| {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        let (root, chains) = make_chain_pki(&pki, KeyType::Rsa2048, &["gwA", "gwB"], 2);
        let (a, b) = (&chains[0], &chains[1]);
        assert_eq!((a.intermediates.len(), b.intermediates.len()), (2, 2));
        site.auth = IkeAuth::Pubkey {
            // gwA's certificate followed by its intermediates, in one file.
            cert: a.chain_path.clone(),
            key: a.key_path.clone(),
            ca: pki.join("root.pem"),
            local_id: "gwA".into(),
            remote_id: "gwB".into(),
        };
        spec.auth = PeerAuth::Pubkey {
            cert_pem: format!("{}{}", b.cert_pem, b.intermediates.concat()),
            key_pem: b.key_pem.clone(),
            ca_pem: root,
        };
        spec.fragmentation = Some(true);
    });
    for from in [Side::Esprit, Side::StrongSwan] {
        let offset = p.charon.log().len();
        let t = p.up(from);
        assert_eq!(
            t.esprit["role"],
            if from == Side::Esprit {
                "initiator"
            } else {
                "responder"
            }
        );
        assert_eq!(t.esprit["remote_id"], "gwB");
        p.traffic_both_ways(3);
        let log = p.charon.log()[offset..].to_string();
        let fail = |what: &str| format!("{from:?} initiating: charon's log lacks {what}:\n{log}");
        let (ours, theirs) = if from == Side::Esprit {
            ("response", "request")
        } else {
            ("request", "response")
        };
        // charon split its own IKE_AUTH message and reassembled esprit's.
        let has = |pat: &[&str]| log.lines().any(|l| pat.iter().all(|p| l.contains(p)));
        assert!(
            has(&["generating IKE_AUTH", ours, "[ EF(1/"]),
            "{}",
            fail("its IKE_AUTH as fragments")
        );
        assert!(has(&["splitting IKE message"]), "{}", fail("splitting"));
        assert!(
            has(&["parsed IKE_AUTH", theirs, "[ EF(1/"]),
            "{}",
            fail("esprit's IKE_AUTH as fragments")
        );
        assert!(
            has(&["reassembled fragmented IKE message"]),
            "{}",
            fail("reassembly")
        );
        // esprit sent its certificate and both intermediates, and charon built the chain to
        // the root it trusts from them.
        assert!(
            has(&["received end entity cert", "CN=gwA"]),
            "{}",
            fail("gwA's certificate")
        );
        for level in [1, 2] {
            let name = format!("CN=gwA intermediate {level}");
            assert!(
                has(&["received issuer cert", &name]),
                "{}",
                fail(&format!("esprit's {name}"))
            );
        }
        assert!(
            has(&["reached self-signed root ca with a path length of 2"]),
            "{}",
            fail("the chain to the root")
        );
        // Down again (deleted by the side that did not initiate), for the other direction.
        match from {
            Side::Esprit => p.charon.terminate_ike().unwrap(),
            Side::StrongSwan => {
                p.ike
                    .call(&ControlRequest::Terminate { conn: CONN.into() })
                    .unwrap();
            }
        }
        p.ike.wait_empty(WAIT).unwrap();
        let start = Instant::now();
        while !p.charon.list_sas().unwrap().is_empty() {
            assert!(
                start.elapsed() < WAIT,
                "charon kept its SA\n{}",
                p.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The keys esprit exported (`wireshark_keys`) are the ones charon logged, for every IKE SA
/// and ESP SA so far: SK_ei/SK_er of each IKE SA charon logged with its SPIs, and key + salt
/// of each ESP SA under its SPI. The tunnel's current IKE SA and both SAs of its child must be
/// among them. Returns how many IKE and ESP SAs were compared.
fn keys_agree(p: &Pair, t: &Tunnel) -> (usize, usize) {
    let keys = p.dir.0.join("keys");
    let esp = std::fs::read_to_string(keys.join("esp_sa")).unwrap();
    let ike = std::fs::read_to_string(keys.join("ikev2_decryption_table")).unwrap();
    // esp_sa: "IPv4","src","dst","0xSPI","AES-GCM …","0xKEY","NULL",""
    let esp_key = |spi: u32| -> Option<String> {
        esp.lines().find_map(|l| {
            let f: Vec<&str> = l.split(',').map(|f| f.trim_matches('"')).collect();
            (f.get(3) == Some(&format!("0x{spi:08x}").as_str()))
                .then(|| f.get(5).map(|k| k.trim_start_matches("0x").to_string()))
                .flatten()
        })
    };
    let logged = p.charon.child_keys();
    for k in &logged {
        let ours = esp_key(k.spi)
            .unwrap_or_else(|| panic!("esprit exported no ESP SA {:08x}:\n{esp}", k.spi));
        assert_eq!(
            ours,
            hex(&k.encr_key),
            "ESP key and salt of SPI {:08x} ({}bound at charon)",
            k.spi,
            if k.inbound { "in" } else { "out" }
        );
    }
    let (inb, outb) = t.child();
    for (spi, charon_inbound) in [(inb, false), (outb, true)] {
        assert!(
            logged
                .iter()
                .any(|k| k.spi == spi && k.inbound == charon_inbound),
            "charon logged no key for the current child's SPI {spi:08x}: {logged:#?}"
        );
    }
    let (spi_i, spi_r) = t.spis();
    let logged_ike = p.charon.ike_keys();
    let mut compared = 0;
    for k in &logged_ike {
        let (Some(i), Some(r)) = (k.initiator_spi, k.responder_spi) else {
            continue;
        };
        let line = ike
            .lines()
            .find(|l| l.starts_with(&format!("{i:016x},{r:016x},")))
            .unwrap_or_else(|| panic!("esprit exported no IKE SA {i:016x}_{r:016x}:\n{ike}"));
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(
            (f[2], f[3]),
            (hex(&k.sk_ei).as_str(), hex(&k.sk_er).as_str()),
            "SK_ei/SK_er of IKE SA {i:016x}_{r:016x}"
        );
        compared += 1;
    }
    assert!(
        logged_ike
            .iter()
            .any(
                |k| k.initiator_spi.map(|s| format!("{s:016x}")) == Some(spi_i.clone())
                    && k.responder_spi.map(|s| format!("{s:016x}")) == Some(spi_r.clone())
            ),
        "charon logged no keys for the current IKE SA {spi_i}_{spi_r}: {logged_ike:#?}"
    );
    (compared, logged.len())
}

/// With charon logging its keys: the IKE SA's SPIs in esprit's `ike.list` are the ones charon
/// lists and logs, the child's SPIs are crossed, and the keys agree (see [`keys_agree`]) after
/// the first IKE_AUTH, child rekeys with PFS (x25519) from either side, IKE rekeys from either
/// side (SKEYSEED from the old SK_d) and child rekeys under the rekeyed IKE SA (KEYMAT from
/// its new SK_d); traffic passes both ways after each step.
#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn key_schedule_matches_strongswans() {
    let ike = "aes256gcm16-prfsha384-ecp256";
    let esp = "aes256gcm16-x25519";
    let p = pair("k", |_, site, spec| {
        site.proposals = vec![ike.into()];
        site.esp_proposals = vec![esp.into()];
        spec.proposals = vec![ike.into()];
        spec.esp_proposals = vec![esp.into()];
        spec.log_keys = true;
    });
    let mut t = p.up(Side::Esprit);
    let steps: [(&str, Option<(Side, bool)>); 7] = [
        ("IKE_AUTH", None),
        ("child rekey by esprit", Some((Side::Esprit, false))),
        ("child rekey by strongSwan", Some((Side::StrongSwan, false))),
        ("IKE rekey by esprit", Some((Side::Esprit, true))),
        ("child rekey by esprit", Some((Side::Esprit, false))),
        ("IKE rekey by strongSwan", Some((Side::StrongSwan, true))),
        ("child rekey by strongSwan", Some((Side::StrongSwan, false))),
    ];
    let mut ike_seen = HashSet::new();
    for (what, step) in steps {
        if let Some((by, ike)) = step {
            t = p.rekey(by, ike, &t);
        }
        let ss = &t.charon;
        let (spi_i, spi_r) = t.spis();
        assert_eq!(
            (
                format!("{:016x}", ss.initiator_spi),
                format!("{:016x}", ss.responder_spi)
            ),
            (spi_i.clone(), spi_r.clone()),
            "{what}: IKE SPIs"
        );
        assert_eq!(ss.encr_alg, "AES_GCM_16", "{what}");
        assert_eq!(t.esprit["encr"], "aes256gcm16", "{what}");
        let child = ss.installed_child("net").unwrap();
        let (inb, outb) = t.child();
        assert_eq!(
            (child.spi_in, child.spi_out),
            (outb, inb),
            "{what}: child SPIs"
        );
        if step.is_some() {
            assert_eq!(
                t.esprit["children"][0]["pfs"], "x25519",
                "{what}: {}",
                t.esprit
            );
        }
        let (n_ike, n_esp) = keys_agree(&p, &t);
        ike_seen.insert((spi_i, spi_r));
        eprintln!("{what}: {n_ike} IKE SAs and {n_esp} ESP SAs agree");
        p.traffic_both_ways(3);
    }
    assert_eq!(ike_seen.len(), 3, "three IKE SAs in turn");
}
