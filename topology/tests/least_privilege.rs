//! Least privilege in the lab, with the real binaries: esprit-dataplane (gwB's as `user =
//! "nobody"`) and esprit-ike (as `daemon.user = "nobody"`, reaching the dataplane through its
//! `api_group` socket) on both gateways. Each process ends with the capabilities it needs and no more, no_new_privs and
//! locked memory; the tunnel carries traffic, `espctl reload` works, and esprit-ike (unprivileged)
//! reconnects to a restarted dataplane. Needs root; run under
//! `flock /tmp/esprit-netns.lock`.

use control::daemon::control::{call, ControlRequest};
use esprit_testkit::require_root;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use topology::ike::{write_configs, IkeSite};
use topology::lab::{LabGuard, LabSpec, Node};

const WAIT: Duration = Duration::from_secs(20);

/// The workspace's binaries, built if needed (a test crate only gets its own package's).
fn bin(name: &str) -> PathBuf {
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "control",
            "-p",
            "dataplane",
            "--bins",
        ])
        .status()
        .expect("cargo build");
    assert!(st.success(), "building the daemons");
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    dir.join(name)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(lab: &topology::lab::Lab, node: Node, exe: &Path, cfg: &Path, log: &Path) -> Proc {
    let err = std::fs::File::create(log).unwrap();
    Proc(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns(node)])
            .arg(exe)
            .arg("--config")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

fn wait(what: &str, logs: &[&Path], mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > WAIT {
            let l: Vec<String> = logs
                .iter()
                .map(|p| {
                    format!(
                        "{}:\n{}",
                        p.display(),
                        std::fs::read_to_string(p).unwrap_or_default()
                    )
                })
                .collect();
            panic!("{what}\n{}", l.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

/// CAP_IPC_LOCK when RLIMIT_MEMLOCK cannot be raised here (no CAP_SYS_RESOURCE, as in some
/// containers): the daemons keep it then so locked allocations cannot fail.
fn memlock_extra() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid out-parameter.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) }, 0);
    let eff = u64::from_str_radix(&field(&status(std::process::id()), "CapEff"), 16).unwrap();
    if rl.rlim_max == libc::RLIM_INFINITY || eff & (1 << 24) != 0 {
        0
    } else {
        1 << 14
    }
}

fn ping(lab: &topology::lab::Lab, count: &str) -> (bool, String) {
    let o = lab
        .exec(
            Node::HostA,
            &["ping", "-c", count, "-i", "0.2", "-W", "1", "10.201.2.2"],
        )
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn daemons_run_with_least_privilege_and_still_forward_reload_and_reconnect() {
    require_root();
    let (dp_bin, ike_bin) = (bin("esprit-dataplane"), bin("esprit-ike"));
    let lab = LabGuard::up(&LabSpec {
        name: format!("lp{}", std::process::id()),
        ..Default::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("esprit-lp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = dataplane::harden::lookup_user("nobody").unwrap();
    let mut paths = Vec::new();
    for (node, start) in [(Node::GwA, "start"), (Node::GwB, "none")] {
        let site = IkeSite {
            start_action: start.into(),
            extra_daemon: "user = \"nobody\"\n".into(),
            ..Default::default()
        };
        let (ike, dp) = write_configs(&lab, node, &dir, &site).unwrap();
        // esprit-ike re-reads its configuration as nobody on reload: nobody owns it, 0600.
        std::os::unix::fs::chown(&ike, Some(nobody.uid), Some(nobody.gid)).unwrap();
        let name = if node == Node::GwA { "gwA" } else { "gwB" };
        let dp_path = dir.join(format!("{name}-dp.toml"));
        let text = std::fs::read_to_string(&dp_path).unwrap();
        // gwB's dataplane also gives up root; gwA's stays uid 0 (with no capability).
        let user = if node == Node::GwB {
            "user = \"nobody\"\n"
        } else {
            ""
        };
        std::fs::write(&dp_path, format!("api_group = \"nogroup\"\n{user}{text}")).unwrap();
        paths.push((node, name, ike, dp_path, dp.api_socket));
    }
    let log = |n: &str| dir.join(format!("{n}.log"));
    let mut dps = Vec::new();
    for (node, name, _, dp, sock) in &paths {
        let l = log(&format!("{name}-dp"));
        dps.push(spawn(&lab, *node, &dp_bin, dp, &l));
        wait("dataplane API", &[&l], || {
            std::os::unix::net::UnixStream::connect(sock).is_ok()
        });
    }
    let mut ikes = Vec::new();
    for (node, name, ike, _, _) in &paths {
        let l = log(&format!("{name}-ike"));
        ikes.push(spawn(&lab, *node, &ike_bin, ike, &l));
    }
    let ike_sock = |name: &str| dir.join(format!("{name}-ike.sock"));
    let all_logs: Vec<PathBuf> = ["gwA-dp", "gwB-dp", "gwA-ike", "gwB-ike"]
        .iter()
        .map(|n| log(n))
        .collect();
    let logs: Vec<&Path> = all_logs.iter().map(PathBuf::as_path).collect();
    wait("a child SA on gwA", &logs, || {
        call(&ike_sock("gwA"), &ControlRequest::IkeList)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["children"].as_array().is_some_and(|c| !c.is_empty()))
            })
    });
    let (ok, text) = ping(&lab, "10");
    assert!(ok, "traffic through the tunnel:\n{text}");

    let extra = memlock_extra();
    for p in &ikes {
        let s = status(p.0.id());
        let id = format!("{0}\t{0}\t{0}\t{0}", nobody.uid);
        assert_eq!(field(&s, "Uid"), id, "esprit-ike runs as nobody");
        assert_eq!(field(&s, "Gid"), format!("{0}\t{0}\t{0}\t{0}", nobody.gid));
        for k in ["CapPrm", "CapEff", "CapBnd"] {
            assert_eq!(field(&s, k), format!("{extra:016x}"), "esprit-ike {k}");
        }
        for k in ["CapInh", "CapAmb"] {
            assert_eq!(field(&s, k), "0000000000000000", "esprit-ike {k}");
        }
        assert_eq!(field(&s, "NoNewPrivs"), "1");
        assert_ne!(field(&s, "VmLck"), "0 kB", "esprit-ike's memory is locked");
    }
    for (p, uid) in dps.iter().zip([0, nobody.uid]) {
        let s = status(p.0.id());
        assert_eq!(field(&s, "Uid"), format!("{0}\t{0}\t{0}\t{0}", uid));
        // CAP_NET_ADMIN (12) only: the neighbour requests (NTF_USE) need it.
        for k in ["CapPrm", "CapEff", "CapBnd"] {
            assert_eq!(
                field(&s, k),
                format!("{:016x}", (1 << 12) | extra),
                "esprit-dataplane {k}"
            );
        }
        assert_eq!(field(&s, "NoNewPrivs"), "1");
        assert_ne!(
            field(&s, "VmLck"),
            "0 kB",
            "the dataplane's memory is locked"
        );
    }
    // The control socket belongs to the unprivileged user; reload re-reads the configuration.
    {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(ike_sock("gwA")).unwrap();
        assert_eq!(
            (md.uid(), md.permissions().mode() & 0o777),
            (nobody.uid, 0o600)
        );
    }
    let r = call(&ike_sock("gwA"), &ControlRequest::Reload).unwrap();
    assert_eq!(r["connections"], 1, "{r}");

    // esprit-ike, now nobody, reconnects to a restarted dataplane through the api_group socket
    // and puts the tunnel back.
    let (node, _, _, dp, sock) = &paths[0];
    let mut old = dps.remove(0);
    let _ = Command::new("kill")
        .args(["-TERM", &old.0.id().to_string()])
        .status();
    let _ = old.0.wait();
    let l = log("gwA-dp2");
    let _dp_a = spawn(&lab, *node, &dp_bin, dp, &l);
    wait("dataplane API after restart", &[&l], || {
        std::os::unix::net::UnixStream::connect(sock).is_ok()
    });
    wait("traffic after the dataplane restart", &logs, || {
        ping(&lab, "3").0
    });
    let stats = call(&ike_sock("gwA"), &ControlRequest::Stats).unwrap();
    assert_eq!(stats["dataplane_connected"], true, "{stats}");
    drop(ikes);
    drop(dps);
    let _ = std::fs::remove_dir_all(&dir);
}
