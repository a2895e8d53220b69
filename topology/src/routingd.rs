//! Routing daemons of the BGP lab ([`crate::bgp`]): BIRD 2 (`bird`) or FRR (`zebra`, `bgpd`,
//! `bfdd`) in a gateway's namespace, each instance with its own configuration, control
//! socket(s), pid file(s) and log in a directory of the run, so several labs (and the host's
//! own daemons, if any) never share one. Their configurations come from a [`Peering`]: eBGP
//! over each tunnel interface to the other side's tunnel address (`direct`), BFD on it, the
//! site's prefix and extra prefixes announced, learned routes merged into kernel ECMP routes.

use crate::lab::{Lab, Node};
use serde::Serialize;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Which routing daemon runs BGP and BFD on the gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingDaemon {
    /// BIRD 2 (Debian `bird2`).
    Bird,
    /// FRR (Debian `frr`): zebra, bgpd and bfdd.
    Frr,
}

impl std::str::FromStr for RoutingDaemon {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bird" => Ok(RoutingDaemon::Bird),
            "frr" => Ok(RoutingDaemon::Frr),
            _ => Err(format!(
                "routing daemon {s:?}: expected \"bird\" or \"frr\""
            )),
        }
    }
}

impl std::fmt::Display for RoutingDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutingDaemon::Bird => "bird",
            RoutingDaemon::Frr => "frr",
        })
    }
}

/// FRR's daemons (Debian installs them here).
const FRR_DIR: &str = "/usr/lib/frr";
/// The FRR daemons the lab runs, in start order (zebra first: the others connect to it).
const FRR_DAEMONS: [&str; 3] = ["zebra", "bfdd", "bgpd"];
/// How long a routing daemon may take to answer on its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One eBGP session over an interface: a tunnel interface (the dataplane's TUN device), or in
/// the scale-out lab ([`crate::scaleout`]) also the link between a gateway and its site router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSession {
    /// The interface.
    pub interface: String,
    /// Our address on it.
    pub local: Ipv4Addr,
    /// The other side's address on it: the BGP neighbour.
    pub neighbor: Ipv4Addr,
    /// The neighbour's AS when it is not [`Peering::remote_as`].
    pub remote_as: Option<u32>,
}

impl TunnelSession {
    /// The neighbour's AS in `p`.
    pub fn peer_as(&self, p: &Peering) -> u32 {
        self.remote_as.unwrap_or(p.remote_as)
    }
}

/// BFD timers: a session is declared down after `multiplier` intervals without a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BfdTimers {
    /// Transmit and receive interval, milliseconds.
    pub interval_ms: u32,
    /// Detection multiplier.
    pub multiplier: u32,
}

impl BfdTimers {
    /// How long a dead path takes to be detected.
    pub fn detect(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_ms) * u64::from(self.multiplier))
    }
}

/// What a gateway's routing daemon is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    /// The gateway's name (FRR's hostname, log lines).
    pub hostname: String,
    /// BGP router id.
    pub router_id: Ipv4Addr,
    /// Our AS.
    pub local_as: u32,
    /// The other site's AS.
    pub remote_as: u32,
    /// One session per tunnel.
    pub sessions: Vec<TunnelSession>,
    /// The site's prefix (reached through `lan`), announced; `None` where a site router
    /// announces it instead (the scale-out lab's site A gateways).
    pub site: Option<String>,
    /// The site's LAN interface.
    pub lan: String,
    /// Further prefixes announced (as if other networks sat behind the site).
    pub extra: Vec<String>,
    /// Pass learned routes on to the other neighbours (a gateway between its site router and
    /// the remote site); otherwise only the announced prefixes are exported.
    pub transit: bool,
    /// BFD on every session.
    pub bfd: BfdTimers,
    /// BGP keepalive and hold times, seconds: the fallback when BFD is not there.
    pub keepalive_secs: u32,
    /// BGP hold time, seconds.
    pub hold_secs: u32,
}

impl Peering {
    /// Every prefix announced: the site's and the extra ones.
    pub fn announced(&self) -> usize {
        usize::from(self.site.is_some()) + self.extra.len()
    }
}

/// `bird.conf` for a peering; BIRD logs to `log`.
pub fn bird_conf(p: &Peering, log: &Path) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# esprit BGP lab, {}: eBGP over each tunnel interface",
        p.hostname
    );
    let _ = writeln!(c, "router id {};", p.router_id);
    let _ = writeln!(c, "log \"{}\" all;", log.display());
    c.push_str("protocol device { scan time 2; }\n\n");
    c.push_str(
        "# Announced: the site and the extra prefixes (the extra ones lead nowhere here).\n\
         protocol static announced {\n  ipv4;\n",
    );
    if let Some(site) = &p.site {
        let _ = writeln!(c, "  route {site} via \"{}\";", p.lan);
    }
    for x in &p.extra {
        let _ = writeln!(c, "  route {x} blackhole;");
    }
    c.push_str("}\n\n");
    c.push_str(
        "# Learned routes go to the kernel, equal ones merged into one multipath (ECMP) route:\n\
         # the dataplane follows the kernel's routes through its tunnel interfaces.\n\
         protocol kernel {\n  ipv4 { import none; export where source = RTS_BGP; };\n  \
         merge paths on;\n}\n\n",
    );
    let ifaces: Vec<String> = p
        .sessions
        .iter()
        .map(|s| format!("\"{}\"", s.interface))
        .collect();
    let _ = writeln!(
        c,
        "protocol bfd {{\n  interface {} {{\n    min rx interval {ms} ms;\n    \
         min tx interval {ms} ms;\n    multiplier {m};\n  }};\n}}\n",
        ifaces.join(", "),
        ms = p.bfd.interval_ms,
        m = p.bfd.multiplier
    );
    let export = if p.transit {
        "proto = \"announced\" || source = RTS_BGP"
    } else {
        "proto = \"announced\""
    };
    let _ = writeln!(
        c,
        "template bgp tunnel {{\n  local as {};\n  direct;\n  bfd on;\n  hold time {};\n  \
         keepalive time {};\n  connect delay time 1;\n  connect retry time 2;\n  \
         error wait time 1, 5;\n  ipv4 {{ import all; export where {export}; }};\n}}\n",
        p.local_as, p.hold_secs, p.keepalive_secs
    );
    for (i, s) in p.sessions.iter().enumerate() {
        let _ = writeln!(
            c,
            "protocol bgp tunnel{} from tunnel {{\n  interface \"{}\";\n  source address {};\n  \
             neighbor {} as {};\n}}\n",
            i + 1,
            s.interface,
            s.local,
            s.neighbor,
            s.peer_as(p)
        );
    }
    c
}

/// `frr.conf` (zebra, bgpd and bfdd) for a peering; the daemons log to `log`.
pub fn frr_conf(p: &Peering, log: &Path) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "! esprit BGP lab, {}: eBGP over each tunnel interface",
        p.hostname
    );
    let _ = writeln!(c, "frr defaults traditional\nhostname {}", p.hostname);
    let _ = writeln!(c, "log file {}\n!", log.display());
    let _ = writeln!(
        c,
        "bfd\n profile tunnel\n  receive-interval {ms}\n  transmit-interval {ms}\n  \
         detect-multiplier {m}\n exit\nexit\n!",
        ms = p.bfd.interval_ms,
        m = p.bfd.multiplier
    );
    let _ = writeln!(c, "router bgp {}", p.local_as);
    let _ = writeln!(c, " bgp router-id {}", p.router_id);
    // The announced prefixes are not in this gateway's RIB (only the site's connected one is),
    // and the policy is the lab's: announce them, accept everything from the other site.
    c.push_str(" no bgp ebgp-requires-policy\n no bgp network import-check\n");
    for s in &p.sessions {
        let n = s.neighbor;
        let _ = writeln!(c, " neighbor {n} remote-as {}", s.peer_as(p));
        let _ = writeln!(c, " neighbor {n} update-source {}", s.local);
        let _ = writeln!(
            c,
            " neighbor {n} timers {} {}",
            p.keepalive_secs, p.hold_secs
        );
        c.push_str(&format!(" neighbor {n} timers connect 2\n"));
        let _ = writeln!(c, " neighbor {n} bfd profile tunnel");
    }
    c.push_str(" address-family ipv4 unicast\n");
    for x in p.site.iter().chain(&p.extra) {
        let _ = writeln!(c, "  network {x}");
    }
    let _ = writeln!(c, "  maximum-paths {}", p.sessions.len().max(1));
    c.push_str(" exit-address-family\nexit\n!\n");
    c
}

/// A routing daemon running in a gateway's namespace.
pub struct RoutingInstance {
    daemon: RoutingDaemon,
    lab: Lab,
    node: Node,
    /// BIRD's control socket, or FRR's vty socket directory.
    ctl: PathBuf,
    children: Vec<(&'static str, Child)>,
}

fn spawn_logged(
    lab: &Lab,
    node: Node,
    program: &str,
    args: &[String],
    log: &Path,
) -> Result<Child, String> {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    lab.command(node, program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{node}: starting {program}: {e} (is it installed? ci/install-deps.sh installs bird2 and frr)"))
}

impl RoutingInstance {
    /// Writes the configuration for `p` into `dir` and starts the daemon(s) in `node`'s
    /// namespace, in the foreground (as children of this process); returns once they answer on
    /// their control socket.
    pub fn start(
        lab: &Lab,
        node: Node,
        daemon: RoutingDaemon,
        dir: &Path,
        p: &Peering,
    ) -> Result<RoutingInstance, String> {
        let base = dir.join(format!("{node}-{daemon}"));
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        let log = base.join(format!("{daemon}.log"));
        let stderr = base.join("stderr.log");
        let write = |name: &str, text: &str| {
            let path = base.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok::<PathBuf, String>(path)
        };
        let mut inst = RoutingInstance {
            daemon,
            lab: lab.clone(),
            node,
            ctl: PathBuf::new(),
            children: Vec::new(),
        };
        match daemon {
            RoutingDaemon::Bird => {
                let conf = write("bird.conf", &bird_conf(p, &log))?;
                inst.ctl = base.join("bird.ctl");
                let args = [
                    "-f".to_string(),
                    "-c".into(),
                    conf.display().to_string(),
                    "-s".into(),
                    inst.ctl.display().to_string(),
                    "-P".into(),
                    base.join("bird.pid").display().to_string(),
                ];
                let child = spawn_logged(lab, node, "bird", &args, &stderr)?;
                inst.children.push(("bird", child));
                inst.wait_answering(&stderr, None)?;
            }
            RoutingDaemon::Frr => {
                let conf = write("frr.conf", &frr_conf(p, &log))?;
                let empty = write("empty.conf", "")?;
                inst.ctl = base.clone();
                // The daemons drop to the `frr` user (whose group `frrvty` owns the vty
                // sockets; running them as root fails on that group): it writes here.
                let out = std::process::Command::new("chown")
                    .args(["-R", "frr:frr"])
                    .arg(&base)
                    .output()
                    .map_err(|e| format!("chown frr {}: {e}", base.display()))?;
                if !out.status.success() {
                    return Err(format!(
                        "chown frr {}: {} (is frr installed?)",
                        base.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                let zsock = base.join("zserv.api");
                for d in FRR_DAEMONS {
                    let mut args = vec![
                        "-f".to_string(),
                        empty.display().to_string(),
                        "-i".into(),
                        base.join(format!("{d}.pid")).display().to_string(),
                        "-z".into(),
                        zsock.display().to_string(),
                        format!("--vty_socket={}", base.display()),
                        "-P".into(),
                        "0".into(),
                    ];
                    if d == "bfdd" {
                        args.push(format!("--bfdctl={}", base.join("bfdd.sock").display()));
                    }
                    let child = spawn_logged(lab, node, &format!("{FRR_DIR}/{d}"), &args, &stderr)?;
                    inst.children.push((d, child));
                    inst.wait_answering(&stderr, Some(d))?;
                }
                // The whole configuration through vtysh, which hands each daemon its part.
                let out = inst.ctl_output(&["-f".to_string(), conf.display().to_string()])?;
                if !out.0 {
                    return Err(format!("{node}: vtysh -f {}: {}", conf.display(), out.1));
                }
            }
        }
        Ok(inst)
    }

    /// Waits until the daemon answers on its control socket; with FRR, until `frr_daemon`
    /// answers on its own vty socket. (A plain `vtysh -c "show version"` is answered by zebra
    /// alone, so it returned before bgpd listened, and the `vtysh -f` that followed then
    /// configured the daemons that were there and silently left bgpd without a configuration;
    /// with four instances starting at once, one in a few runs.)
    fn wait_answering(&mut self, stderr: &Path, frr_daemon: Option<&str>) -> Result<(), String> {
        let start = Instant::now();
        let probe: Vec<String> = match (self.daemon, frr_daemon) {
            (RoutingDaemon::Frr, Some(d)) => {
                vec!["-d".into(), d.into(), "-c".into(), "show version".into()]
            }
            (RoutingDaemon::Frr, None) => vec!["-c".into(), "show version".into()],
            (RoutingDaemon::Bird, _) => vec!["show".into(), "status".into()],
        };
        loop {
            if matches!(self.ctl_output(&probe), Ok((true, t)) if !t.is_empty()) {
                return Ok(());
            }
            let exited = self.children.iter_mut().find_map(|(n, c)| {
                c.try_wait()
                    .ok()
                    .flatten()
                    .map(|s| format!("{n} exited ({s})"))
            });
            if exited.is_some() || start.elapsed() > START_TIMEOUT {
                let log = std::fs::read_to_string(stderr).unwrap_or_default();
                return Err(format!(
                    "{}: {} did not start: {}: {}",
                    self.node,
                    self.daemon,
                    exited.unwrap_or_else(|| format!("no answer after {START_TIMEOUT:?}")),
                    log.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ctl_output(&self, args: &[String]) -> Result<(bool, String), String> {
        let mut c = match self.daemon {
            RoutingDaemon::Bird => {
                let mut c = self.lab.command(self.node, "birdc");
                c.arg("-s").arg(&self.ctl);
                c
            }
            RoutingDaemon::Frr => {
                let mut c = self.lab.command(self.node, "vtysh");
                c.arg(format!("--vty_socket={}", self.ctl.display()));
                c
            }
        };
        let out = c
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {} control: {e}", self.node, self.daemon))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    /// Runs one command of the daemon's CLI (`birdc` or `vtysh -c`) and returns its output.
    pub fn cmd(&self, command: &str) -> Result<String, String> {
        let args: Vec<String> = match self.daemon {
            RoutingDaemon::Bird => command.split_whitespace().map(String::from).collect(),
            RoutingDaemon::Frr => vec!["-c".into(), command.into()],
        };
        match self.ctl_output(&args)? {
            (true, text) => Ok(text),
            (false, text) => Err(format!("{}: `{command}`: {}", self.node, text.trim())),
        }
    }

    /// What the daemon says about its routes: `birdc show route count`, or FRR's
    /// `show ip route summary` and `show bgp ipv4 unicast summary`.
    pub fn route_count(&self) -> Result<String, String> {
        match self.daemon {
            RoutingDaemon::Bird => self.cmd("show route count"),
            RoutingDaemon::Frr => Ok(format!(
                "{}{}",
                self.cmd("show ip route summary")?,
                self.cmd("show bgp ipv4 unicast summary")?
            )),
        }
    }

    /// How many of the BGP sessions are established.
    pub fn sessions_established(&self) -> Result<usize, String> {
        match self.daemon {
            RoutingDaemon::Bird => Ok(self
                .cmd("show protocols")?
                .lines()
                .filter(|l| l.contains(" BGP ") && l.contains("Established"))
                .count()),
            RoutingDaemon::Frr => {
                let text = self.cmd("show bgp ipv4 unicast summary json")?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{}: bgp summary: {e}: {text}", self.node))?;
                Ok(v["peers"]
                    .as_object()
                    .map(|m| m.values().filter(|p| p["state"] == "Established").count())
                    .unwrap_or(0))
            }
        }
    }

    /// Leaves the daemon(s) running after this handle is gone; returns (pid, program) of each.
    pub fn detach(mut self) -> Vec<(u32, &'static str)> {
        std::mem::take(&mut self.children)
            .into_iter()
            .map(|(n, c)| (c.id(), n))
            .collect()
    }
}

impl Drop for RoutingInstance {
    fn drop(&mut self) {
        for (_, c) in self.children.iter_mut().rev() {
            crate::kept::signal(c.id(), libc::SIGTERM);
        }
        let start = Instant::now();
        for (_, c) in self.children.iter_mut().rev() {
            while matches!(c.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peering() -> Peering {
        Peering {
            hostname: "gwA".into(),
            router_id: Ipv4Addr::new(10, 200, 1, 1),
            local_as: 65001,
            remote_as: 65002,
            sessions: vec![
                TunnelSession {
                    interface: "esp-t1".into(),
                    local: Ipv4Addr::new(169, 254, 21, 1),
                    neighbor: Ipv4Addr::new(169, 254, 21, 2),
                    remote_as: None,
                },
                TunnelSession {
                    interface: "esp-t2".into(),
                    local: Ipv4Addr::new(169, 254, 22, 1),
                    neighbor: Ipv4Addr::new(169, 254, 22, 2),
                    remote_as: None,
                },
            ],
            site: Some("10.201.1.0/24".into()),
            lan: "lan0".into(),
            extra: vec!["10.210.0.0/24".into(), "10.210.1.0/24".into()],
            transit: false,
            bfd: BfdTimers {
                interval_ms: 100,
                multiplier: 3,
            },
            keepalive_secs: 1,
            hold_secs: 3,
        }
    }

    #[test]
    fn bird_conf_has_a_session_per_tunnel_bfd_and_ecmp() {
        let c = bird_conf(&peering(), Path::new("/x/bird.log"));
        assert!(c.contains("neighbor 169.254.21.2 as 65002;"), "{c}");
        assert!(c.contains("interface \"esp-t2\";"), "{c}");
        assert!(c.contains("merge paths on;"), "{c}");
        assert!(c.contains("min rx interval 100 ms;") && c.contains("multiplier 3;"));
        assert!(c.contains("route 10.201.1.0/24 via \"lan0\";"));
        assert_eq!(c.matches(" blackhole;").count(), 2);
        assert_eq!(peering().announced(), 3);
    }

    #[test]
    fn frr_conf_has_a_session_per_tunnel_bfd_and_ecmp() {
        let c = frr_conf(&peering(), Path::new("/x/frr.log"));
        assert!(
            c.contains(" neighbor 169.254.22.2 remote-as 65002\n"),
            "{c}"
        );
        assert!(
            c.contains(" neighbor 169.254.21.2 bfd profile tunnel\n"),
            "{c}"
        );
        assert!(c.contains("  maximum-paths 2\n"), "{c}");
        assert_eq!(c.matches("  network ").count(), 3);
        assert!(c.contains("  receive-interval 100\n"));
    }

    #[test]
    fn daemon_names_parse() {
        assert_eq!("bird".parse::<RoutingDaemon>(), Ok(RoutingDaemon::Bird));
        assert_eq!("frr".parse::<RoutingDaemon>(), Ok(RoutingDaemon::Frr));
        assert!("quagga".parse::<RoutingDaemon>().is_err());
        assert_eq!(
            BfdTimers {
                interval_ms: 100,
                multiplier: 3
            }
            .detect(),
            Duration::from_millis(300)
        );
    }
}
