//! Reloading esprit-ike's configuration between two esprit gateways in the lab while a ping
//! crosses the tunnel of a connection the reloads do not touch: a second connection is added,
//! has its child changed (rekeyed with the new settings), its IKE proposal changed
//! (re-established) and is removed, and a reload of the same file changes nothing. The
//! untouched tunnel must lose no packet and keep its IKE SA and child SA throughout.

use control::daemon::control::ControlRequest;
use esprit_testkit::require_root;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use topology::ike::{write_configs, DataplaneThread, IkeDaemon, IkeSite};
use topology::{LabGuard, LabSpec, Node};

const WAIT: Duration = Duration::from_secs(20);

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `extra` connection's table and PSK, as one side writes it.
fn extra(me: &str, peer: &str, a: bool, proposals: &str, rekey: &str) -> String {
    let (lid, rid, lts, rts) = if a {
        ("xA", "xB", "10.250.1.0/24", "10.250.2.0/24")
    } else {
        ("xB", "xA", "10.250.2.0/24", "10.250.1.0/24")
    };
    format!(
        "\n[connections.extra]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\n\
         proposals = [{proposals}]\nlocal = {{ auth = \"psk\", id = \"{lid}\" }}\n\
         remote = {{ auth = \"psk\", id = \"{rid}\" }}\nstart_action = \"{}\"\n\
         [connections.extra.children.net]\nlocal_ts = [\"{lts}\"]\nremote_ts = [\"{rts}\"]\n\
         rekey_time = \"{rekey}\"\n\n[[secrets.ike]]\nids = [\"xA\", \"xB\"]\n\
         secret = \"extra-connection-secret\"\n",
        if a { "start" } else { "none" }
    )
}

/// Writes `text` keeping the file private (esprit-ike refuses a PSK others can read).
fn write(path: &Path, text: &str) {
    topology::ike::write_private(path, text).unwrap();
}

/// (IKE SA id, installed child id) of connection `conn`, if established.
fn ids(d: &IkeDaemon, conn: &str) -> Option<(String, String)> {
    let v = d.list().ok()?;
    let sa = v
        .as_array()?
        .iter()
        .find(|s| s["conn"] == conn && s["state"] == "established")?;
    let child = sa["children"]
        .as_array()?
        .iter()
        .find(|c| c["state"] == "installed")?;
    Some((sa["id"].as_str()?.into(), child["id"].as_str()?.into()))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reload(d: &IkeDaemon) -> serde_json::Value {
    d.call(&ControlRequest::Reload).unwrap()
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn reloads_leave_the_untouched_tunnel_and_its_traffic_alone() {
    require_root();
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-rl{}", std::process::id()),
        ..LabSpec::default()
    })
    .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-rl-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let a_site = IkeSite {
        start_action: "start".into(),
        ..IkeSite::default()
    };
    let (ike_a, dp_a) = write_configs(&lab, Node::GwA, &dir.0, &a_site).unwrap();
    let (ike_b, dp_b) = write_configs(&lab, Node::GwB, &dir.0, &IkeSite::default()).unwrap();
    let (a_wan, b_wan) = (lab.gw_a_wan().to_string(), lab.gw_b_wan().to_string());
    let p1 = "\"aes128gcm16-prfsha256-x25519\"";
    let p2 = "\"aes256gcm16-prfsha384-ecp256\"";
    // gwB answers `extra` with either proposal; gwA starts without it.
    let base_b = std::fs::read_to_string(&ike_b).unwrap();
    write(
        &ike_b,
        &(base_b + &extra(&b_wan, &a_wan, false, &format!("{p1}, {p2}"), "1h")),
    );
    let base_a = std::fs::read_to_string(&ike_a).unwrap();
    let dp_a = DataplaneThread::start(&lab, Node::GwA, dp_a).unwrap();
    let dp_b = DataplaneThread::start(&lab, Node::GwB, dp_b).unwrap();
    let b = IkeDaemon::start(&lab, Node::GwB, &ike_b).unwrap();
    let a = IkeDaemon::start(&lab, Node::GwA, &ike_a).unwrap();
    a.wait_child(WAIT).unwrap();
    b.wait_child(WAIT).unwrap();
    let site = ids(&a, "site").unwrap();

    // A continuous ping through `site` (100 per second) while the reloads run.
    let pinger = lab
        .command(Node::HostA, "ping")
        .args(["-n", "-i", "0.01", "-W", "2", "10.201.2.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // Added: `extra` starts.
    write(
        &ike_a,
        &(base_a.clone() + &extra(&a_wan, &b_wan, true, p1, "1h")),
    );
    let r = reload(&a);
    assert_eq!(r["added"], serde_json::json!(["extra"]), "{r}");
    assert_eq!(r["unchanged"], serde_json::json!(["site"]), "{r}");
    wait_for("extra up", || ids(&a, "extra").is_some());
    let extra0 = ids(&a, "extra").unwrap();

    // The same file again: nothing changes.
    let r = reload(&a);
    assert_eq!(r["unchanged"], serde_json::json!(["site", "extra"]), "{r}");
    assert_eq!(ids(&a, "extra").unwrap(), extra0);

    // Its child changes: the IKE SA stays, the child is rekeyed.
    write(
        &ike_a,
        &(base_a.clone() + &extra(&a_wan, &b_wan, true, p1, "2h")),
    );
    let r = reload(&a);
    assert_eq!(
        r["children_changed"][0]["changed"],
        serde_json::json!(["net"]),
        "{r}"
    );
    wait_for("extra's child rekeyed", || {
        ids(&a, "extra").is_some_and(|(ike, child)| ike == extra0.0 && child != extra0.1)
    });

    // Its IKE proposal changes: re-established under a new IKE SA.
    write(
        &ike_a,
        &(base_a.clone() + &extra(&a_wan, &b_wan, true, p2, "2h")),
    );
    let r = reload(&a);
    assert_eq!(r["reestablished"], serde_json::json!(["extra"]), "{r}");
    wait_for("extra re-established", || {
        ids(&a, "extra").is_some_and(|(ike, _)| ike != extra0.0)
    });

    // Removed: deleted on both sides.
    write(&ike_a, &base_a);
    let r = reload(&a);
    assert_eq!(r["removed"], serde_json::json!(["extra"]), "{r}");
    wait_for("extra gone on both sides", || {
        ids(&a, "extra").is_none() && ids(&b, "extra").is_none()
    });

    // Stop the ping (SIGINT prints its summary) and count.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the child's pid, a process we own.
    unsafe { libc::kill(pinger.id() as i32, libc::SIGINT) };
    let out = pinger.wait_with_output().unwrap();
    let (lost, last, summary) = topology::demo::ping_gaps(&String::from_utf8_lossy(&out.stdout));
    assert!(last >= 50, "{summary}");
    assert!(
        lost.is_empty(),
        "echoes lost through the untouched tunnel: {lost:?} ({summary})"
    );
    assert_eq!(
        ids(&a, "site").unwrap(),
        site,
        "the untouched connection keeps its IKE SA and child"
    );
    drop((a, b, dp_a, dp_b));
}
