//! Restarts converge: under a steady ping (20 per second) esprit-ike is killed (SIGKILL) and
//! restarted on gwA (the initiator), then on gwB (the responder); then esprit-dataplane on each
//! side; and esprit-ike against a strongSwan peer. After each, the ping must get through again
//! within a bounded number of lost echoes, then lose nothing over a window, and each side must
//! be left with exactly one IKE SA with one child, and one SA pair in each dataplane. Orphans
//! (SAs of an earlier run) that nothing replaces go after `daemon.orphan_timeout`.
//!
//! The daemons run as processes of their own (`esprit-lab ike|dataplane`) so they can be
//! killed as a crash would. Root only (the lab); the strongSwan case also needs strongSwan.
//! Run under `flock /tmp/esprit-netns.lock`.

use esprit_testkit::{require, require_root};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use topology::ike::{write_configs, DaemonProcess, IkeSite};
use topology::strongswan::{ensure_installed, Charon, CharonSpec};
use topology::{Lab, LabGuard, LabSpec, Node};

/// The longest a restart may take to converge (generous: the machine is shared).
const WAIT: Duration = Duration::from_secs(20);
/// Echoes that may be lost across an esprit-ike restart: none should be (the dataplane keeps
/// forwarding), a few are tolerated for a loaded machine.
const IKE_GAP: usize = 10;
/// Echoes that may be lost across a dataplane restart (3 s at 20 per second): the dataplane is
/// away until it is started again and esprit-ike has re-installed the SAs.
const DATAPLANE_GAP: usize = 60;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit-lab"))
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A ping from host A to host B, 20 a second, recording which sequence numbers came back.
struct Pinger {
    child: Child,
    got: Arc<Mutex<BTreeSet<usize>>>,
}

impl Pinger {
    fn start(lab: &Lab) -> Pinger {
        let mut child = lab
            .command(Node::HostA, "ping")
            .args(["-n", "-i", "0.05", "10.201.2.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let got = Arc::new(Mutex::new(BTreeSet::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let seq = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("icmp_seq="))
                    .and_then(|n| n.parse().ok());
                if let (Some(seq), true) = (seq, line.contains("bytes from")) {
                    g.lock().unwrap().insert(seq);
                }
            }
        });
        Pinger { child, got }
    }

    /// The highest sequence number answered so far.
    fn last(&self) -> usize {
        self.got.lock().unwrap().last().copied().unwrap_or(0)
    }

    /// Sequence numbers in `from..=to` that got no answer.
    fn lost(&self, from: usize, to: usize) -> Vec<usize> {
        let g = self.got.lock().unwrap();
        (from..=to).filter(|s| !g.contains(s)).collect()
    }

    /// Waits until an echo sent after `seq` is answered.
    fn wait_past(&self, seq: usize, what: &str) {
        let start = Instant::now();
        while self.last() <= seq {
            assert!(
                start.elapsed() < WAIT,
                "{what}: no echo answered after #{seq} within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The IKE SAs esprit-ike lists.
fn ike_sas(d: &DaemonProcess) -> Vec<Value> {
    d.list()
        .map(|v| v.as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// One established IKE SA with exactly one child.
fn one_tunnel(d: &DaemonProcess) -> bool {
    let sas = ike_sas(d);
    sas.len() == 1
        && sas[0]["state"] == "established"
        && sas[0]["children"].as_array().is_some_and(|c| c.len() == 1)
        && sas[0]["children"][0]["rekeying"] == false
}

fn sa_count(dp: &DaemonProcess) -> usize {
    dp.sa_list()
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(usize::MAX)
}

/// Waits until `ok` holds, or fails with `state()` after [`WAIT`].
fn converge(what: &str, ok: impl Fn() -> bool, state: impl Fn() -> String) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < WAIT,
            "{what}: not converged in {WAIT:?}: {}",
            state()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After an event at echo `before`: traffic is back within `gap` lost echoes, then a 2 s window
/// loses nothing. Returns the echoes lost.
fn traffic_recovers(p: &Pinger, what: &str, before: usize, gap: usize) -> usize {
    p.wait_past(before + 1, what);
    // Echoes in flight when the check starts are given a second to come back.
    std::thread::sleep(Duration::from_secs(1));
    let w0 = p.last();
    let lost = p.lost(before + 1, w0);
    std::thread::sleep(Duration::from_millis(2500));
    let w1 = p.last();
    let window = p.lost(w0, w1.saturating_sub(20));
    eprintln!("{what}: {} echoes lost: {lost:?}", lost.len());
    assert!(
        lost.len() <= gap,
        "{what}: {} echoes lost (at most {gap}): {lost:?}",
        lost.len()
    );
    assert!(w1 >= w0 + 30, "{what}: the ping stalled ({w0} -> {w1})");
    assert!(window.is_empty(), "{what}: lost {window:?} after recovery");
    lost.len()
}

/// Two esprit gateways, every daemon a process. Fields drop in order: esprit-ike first.
struct Sites {
    ike_a: DaemonProcess,
    ike_b: DaemonProcess,
    dp_a: DaemonProcess,
    dp_b: DaemonProcess,
    dir: TempDir,
    lab: LabGuard,
}

impl Sites {
    fn up(tag: &str, b: IkeSite) -> Sites {
        require_root();
        let pid = std::process::id();
        let lab = LabGuard::up(&LabSpec {
            name: format!("esprit-rs{tag}{pid}"),
            ..LabSpec::default()
        })
        .unwrap();
        let dir = TempDir(std::env::temp_dir().join(format!("esprit-rs-{tag}-{pid}")));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).unwrap();
        // gwA initiates; gwB only answers (start_action none).
        let a = IkeSite {
            start_action: "start".into(),
            ..IkeSite::default()
        };
        write_configs(&lab, Node::GwA, &dir.0, &a).unwrap();
        write_configs(&lab, Node::GwB, &dir.0, &b).unwrap();
        let dp_a = Self::start_dataplane(&lab, &dir.0, Node::GwA);
        let dp_b = Self::start_dataplane(&lab, &dir.0, Node::GwB);
        let ike_b =
            DaemonProcess::ike(&lab, Node::GwB, exe(), &dir.0.join("gwB-ike.toml")).unwrap();
        let ike_a =
            DaemonProcess::ike(&lab, Node::GwA, exe(), &dir.0.join("gwA-ike.toml")).unwrap();
        let s = Sites {
            ike_a,
            ike_b,
            dp_a,
            dp_b,
            dir,
            lab,
        };
        s.converged("start");
        s
    }

    /// Starts a dataplane; the previous instance's XDP link and sockets go away asynchronously
    /// in the kernel, so a restart may need a second try, as a supervisor would give it.
    fn start_dataplane(lab: &Lab, dir: &Path, node: Node) -> DaemonProcess {
        let name = if node == Node::GwA { "gwA" } else { "gwB" };
        let cfg = dir.join(format!("{name}-dp.toml"));
        let mut tries = 0;
        loop {
            match DaemonProcess::dataplane(lab, node, exe(), &cfg) {
                Ok(d) => return d,
                Err(e) if tries < 10 => {
                    eprintln!("dataplane start: {e}; retrying");
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn restart_ike(&mut self, a: bool) {
        let (node, name) = if a {
            (Node::GwA, "gwA")
        } else {
            (Node::GwB, "gwB")
        };
        let d = if a { &mut self.ike_a } else { &mut self.ike_b };
        d.kill();
        *d = DaemonProcess::ike(
            &self.lab,
            node,
            exe(),
            &self.dir.0.join(format!("{name}-ike.toml")),
        )
        .unwrap();
    }

    fn restart_dataplane(&mut self, a: bool) {
        let node = if a { Node::GwA } else { Node::GwB };
        let d = if a { &mut self.dp_a } else { &mut self.dp_b };
        d.kill();
        *d = Self::start_dataplane(&self.lab, &self.dir.0, node);
    }

    /// Exactly one IKE SA with one child on each side, one SA pair in each dataplane.
    fn converged(&self, what: &str) {
        converge(
            what,
            || {
                one_tunnel(&self.ike_a)
                    && one_tunnel(&self.ike_b)
                    && sa_count(&self.dp_a) == 2
                    && sa_count(&self.dp_b) == 2
            },
            || {
                format!(
                    "gwA {:?} gwB {:?} dataplane SAs {} / {}",
                    ike_sas(&self.ike_a),
                    ike_sas(&self.ike_b),
                    sa_count(&self.dp_a),
                    sa_count(&self.dp_b)
                )
            },
        );
        // The pair each side sends with is the one the other receives with.
        let (a, b) = (ike_sas(&self.ike_a), ike_sas(&self.ike_b));
        let (ca, cb) = (&a[0]["children"][0], &b[0]["children"][0]);
        assert_eq!(ca["inbound_spi"], cb["outbound_spi"], "{what}: {ca} / {cb}");
        assert_eq!(ca["outbound_spi"], cb["inbound_spi"], "{what}: {ca} / {cb}");
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn a_killed_esprit_ike_on_either_side_converges_without_loss() {
    let mut s = Sites::up("i", IkeSite::default());
    let p = Pinger::start(&s.lab);
    p.wait_past(5, "warm-up");
    for (a, what) in [(true, "esprit-ike on gwA"), (false, "esprit-ike on gwB")] {
        let before = p.last();
        s.restart_ike(a);
        s.converged(what);
        traffic_recovers(&p, what, before, IKE_GAP);
        s.converged(what);
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn a_killed_dataplane_on_either_side_converges() {
    let mut s = Sites::up("d", IkeSite::default());
    let p = Pinger::start(&s.lab);
    p.wait_past(5, "warm-up");
    for (a, what) in [(true, "dataplane on gwA"), (false, "dataplane on gwB")] {
        let before = p.last();
        s.restart_dataplane(a);
        s.converged(what);
        traffic_recovers(&p, what, before, DATAPLANE_GAP);
        s.converged(what);
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn orphans_nobody_replaces_are_removed_after_the_orphan_timeout() {
    let b = IkeSite {
        extra_daemon: "orphan_timeout = \"3s\"".into(),
        ..IkeSite::default()
    };
    let mut s = Sites::up("o", b);
    // gwA's esprit-ike is gone for good; gwB's restarts and cannot re-establish the child.
    s.ike_a.kill();
    s.restart_ike(false);
    let p = Pinger::start(&s.lab);
    // Meanwhile the orphans forward: the tunnel still works.
    p.wait_past(5, "orphans forwarding");
    converge(
        "orphans removed",
        || sa_count(&s.dp_b) == 0,
        || format!("gwB dataplane: {:?}", s.dp_b.sa_list()),
    );
    // Fail closed: nothing crosses the tunnel any more.
    let last = p.last();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        p.last() <= last + 1,
        "traffic still crosses: {last} -> {}",
        p.last()
    );
}

#[test]
#[ignore = "needs root and strongSwan: ./ci/test.sh runs it as root"]
fn a_killed_esprit_ike_facing_strongswan_converges() {
    require_root();
    require(ensure_installed(), "strongSwan");
    let pid = std::process::id();
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-rss{pid}"),
        ..LabSpec::default()
    })
    .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-rs-s-{pid}")));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let site = IkeSite {
        proposals: vec!["aes128gcm16-prfsha256-x25519".into()],
        esp_proposals: vec!["aes128gcm16".into()],
        start_action: "start".into(),
        // strongSwan with kernel-libipsec always sends ESP in UDP.
        encap: true,
        ..IkeSite::default()
    };
    let spec = CharonSpec::lab_gw_b(&lab);
    let charon = Charon::start(&lab, Node::GwB, &dir.0.join("gwB"), &spec).unwrap();
    write_configs(&lab, Node::GwA, &dir.0, &site).unwrap();
    let dp = Sites::start_dataplane(&lab, &dir.0, Node::GwA);
    let ike_cfg = dir.0.join("gwA-ike.toml");
    let mut ike = DaemonProcess::ike(&lab, Node::GwA, exe(), &ike_cfg).unwrap();
    let settled = |what: &str, ike: &DaemonProcess| {
        converge(
            what,
            || {
                one_tunnel(ike)
                    && sa_count(&dp) == 2
                    && charon.list_sas().is_ok_and(|l| {
                        l.len() == 1
                            && l[0].children.len() == 1
                            && l[0].installed_child("net").is_some()
                    })
            },
            || {
                format!(
                    "esprit {:?} dataplane SAs {} charon {:?}",
                    ike_sas(ike),
                    sa_count(&dp),
                    charon.list_sas()
                )
            },
        );
        let esprit = &ike_sas(ike)[0]["children"][0];
        let theirs = charon.list_sas().unwrap()[0].children[0].clone();
        assert_eq!(
            (
                esprit["inbound_spi"].as_str(),
                esprit["outbound_spi"].as_str()
            ),
            (
                Some(format!("{:08x}", theirs.spi_out).as_str()),
                Some(format!("{:08x}", theirs.spi_in).as_str())
            ),
            "{what}: {esprit} / {theirs:?}"
        );
    };
    settled("start", &ike);
    let p = Pinger::start(&lab);
    p.wait_past(5, "warm-up");
    let before = p.last();
    ike.kill();
    ike = DaemonProcess::ike(&lab, Node::GwA, exe(), &ike_cfg).unwrap();
    settled("esprit-ike restarted", &ike);
    traffic_recovers(&p, "esprit-ike facing strongSwan", before, IKE_GAP);
    settled("esprit-ike restarted", &ike);
    drop(p);
    drop(ike);
    drop(dp);
    drop(charon);
    drop(dir);
    drop(lab);
}
