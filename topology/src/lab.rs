//! Building, inspecting and removing a lab.

use std::fmt;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

/// A namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// Host on site A.
    HostA,
    /// Gateway of site A.
    GwA,
    /// The NAT between the gateways (only with `nat`).
    Nat,
    /// Gateway of site B.
    GwB,
    /// Host on site B.
    HostB,
}

impl Node {
    /// Short name used on the command line and in namespace names.
    pub fn name(self) -> &'static str {
        match self {
            Node::HostA => "hA",
            Node::GwA => "gwA",
            Node::Nat => "nat",
            Node::GwB => "gwB",
            Node::HostB => "hB",
        }
    }

    /// Parses a short name.
    pub fn parse(s: &str) -> Option<Node> {
        [Node::HostA, Node::GwA, Node::Nat, Node::GwB, Node::HostB]
            .into_iter()
            .find(|n| n.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Prefix of the namespace names (`<name>-gwA`…), so labs never collide.
    pub name: String,
    /// RX/TX queues on every veth (one AF_XDP worker per queue).
    pub queues: u32,
    /// Put a masquerading NAT between the gateways.
    pub nat: bool,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            name: "esprit".into(),
            queues: 1,
            nat: false,
        }
    }
}

/// Why a lab could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command failed.
    #[error("{what}: `{cmd}` failed: {stderr}")]
    Command {
        /// What was being done.
        what: String,
        /// The command line.
        cmd: String,
        /// Its error output.
        stderr: String,
    },
    /// A command could not be started (tool missing?).
    #[error("{what}: cannot run `{cmd}`: {err} (ci/install-deps.sh installs iproute2, nftables, ethtool)")]
    Spawn {
        /// What was being done.
        what: String,
        /// The command line.
        cmd: String,
        /// Cause.
        err: std::io::Error,
    },
    /// Not root.
    #[error("the lab needs root (network namespaces, XDP)")]
    NotRoot,
}

fn run(what: &str, args: &[&str]) -> Result<Output, LabError> {
    let cmd = args.join(" ");
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|err| LabError::Spawn {
            what: what.into(),
            cmd: cmd.clone(),
            err,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            what: what.into(),
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// A built lab (its description; the namespaces live in the kernel).
#[derive(Debug, Clone)]
pub struct Lab {
    /// What it was built from.
    pub spec: LabSpec,
}

/// Site A's prefix (IPv4).
pub const SITE_A: &str = "10.201.1.0/24";
/// Site B's prefix (IPv4).
pub const SITE_B: &str = "10.201.2.0/24";
/// Site A's prefix (IPv6).
pub const SITE_A6: &str = "fd00:201:1::/64";
/// Site B's prefix (IPv6).
pub const SITE_B6: &str = "fd00:201:2::/64";

impl Lab {
    /// The namespace of a node.
    pub fn ns(&self, n: Node) -> String {
        format!("{}-{}", self.spec.name, n.name())
    }

    /// Nodes of this lab.
    pub fn nodes(&self) -> Vec<Node> {
        let mut v = vec![Node::HostA, Node::GwA, Node::GwB, Node::HostB];
        if self.spec.nat {
            v.insert(2, Node::Nat);
        }
        v
    }

    /// gwA's WAN address (private behind the NAT, if any).
    pub fn gw_a_wan(&self) -> &'static str {
        if self.spec.nat {
            "10.200.1.1"
        } else {
            "10.200.0.1"
        }
    }

    /// gwB's WAN address.
    pub fn gw_b_wan(&self) -> &'static str {
        "10.200.0.2"
    }

    /// The address gwB sees gwA's packets coming from (the NAT's, with a NAT).
    pub fn gw_a_seen_by_b(&self) -> &'static str {
        if self.spec.nat {
            "10.200.0.254"
        } else {
            "10.200.0.1"
        }
    }

    /// Builds the lab, removing any previous lab of the same name first (so `up` twice gives
    /// the same lab, and a half-built one is rebuilt).
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let lab = Lab { spec: spec.clone() };
        lab.down()?;
        // A lab that fails half-way is removed, not left behind.
        let guard = LabGuard(lab.clone());
        lab.build()?;
        std::mem::forget(guard);
        Ok(lab)
    }

    fn build(&self) -> Result<(), LabError> {
        let lab = self;
        let spec = &self.spec;
        let what = |s: &str| format!("building lab {}: {s}", spec.name);
        for n in lab.nodes() {
            let ns = lab.ns(n);
            run(&what("namespace"), &["ip", "netns", "add", &ns])?;
            run(
                &what("loopback"),
                &["ip", "-n", &ns, "link", "set", "lo", "up"],
            )?;
        }
        let q = spec.queues.max(1).to_string();
        let link = |a: Node, ia: &str, b: Node, ib: &str| -> Result<(), LabError> {
            run(
                &what("veth"),
                &[
                    "ip",
                    "-n",
                    &lab.ns(a),
                    "link",
                    "add",
                    "name",
                    ia,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    ib,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                    "netns",
                    &lab.ns(b),
                ],
            )?;
            run(
                &what("link up"),
                &["ip", "-n", &lab.ns(a), "link", "set", ia, "up"],
            )?;
            run(
                &what("link up"),
                &["ip", "-n", &lab.ns(b), "link", "set", ib, "up"],
            )?;
            Ok(())
        };
        let addr = |n: Node, dev: &str, a: &str| -> Result<(), LabError> {
            let mut args = vec!["ip", "-n"];
            let ns = lab.ns(n);
            args.push(&ns);
            args.extend(["addr", "add", a, "dev", dev]);
            if a.contains(':') {
                args.push("nodad");
            }
            run(&what("address"), &args).map(|_| ())
        };
        link(Node::HostA, "eth0", Node::GwA, "lan0")?;
        link(Node::GwB, "lan0", Node::HostB, "eth0")?;
        addr(Node::HostA, "eth0", "10.201.1.2/24")?;
        addr(Node::HostA, "eth0", "fd00:201:1::2/64")?;
        addr(Node::GwA, "lan0", "10.201.1.1/24")?;
        addr(Node::GwA, "lan0", "fd00:201:1::1/64")?;
        addr(Node::GwB, "lan0", "10.201.2.1/24")?;
        addr(Node::GwB, "lan0", "fd00:201:2::1/64")?;
        addr(Node::HostB, "eth0", "10.201.2.2/24")?;
        addr(Node::HostB, "eth0", "fd00:201:2::2/64")?;
        if spec.nat {
            link(Node::GwA, "wan0", Node::Nat, "in0")?;
            link(Node::Nat, "out0", Node::GwB, "wan0")?;
            addr(Node::GwA, "wan0", "10.200.1.1/24")?;
            addr(Node::Nat, "in0", "10.200.1.254/24")?;
            addr(Node::Nat, "out0", "10.200.0.254/24")?;
            addr(Node::GwB, "wan0", "10.200.0.2/24")?;
            run(
                &what("gwA default route"),
                &[
                    "ip",
                    "-n",
                    &lab.ns(Node::GwA),
                    "route",
                    "add",
                    "default",
                    "via",
                    "10.200.1.254",
                ],
            )?;
            let nat = lab.ns(Node::Nat);
            run(
                &what("NAT forwarding"),
                &[
                    "ip",
                    "netns",
                    "exec",
                    &nat,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ],
            )?;
            run(
                &what("NAT table"),
                &[
                    "ip",
                    "netns",
                    "exec",
                    &nat,
                    "nft",
                    "add",
                    "table",
                    "ip",
                    "esprit_nat",
                ],
            )?;
            run(
                &what("NAT chain"),
                &[
                    "ip",
                    "netns",
                    "exec",
                    &nat,
                    "nft",
                    "add",
                    "chain",
                    "ip",
                    "esprit_nat",
                    "post",
                    "{ type nat hook postrouting priority 100 ; }",
                ],
            )?;
            run(
                &what("NAT masquerade"),
                &[
                    "ip",
                    "netns",
                    "exec",
                    &nat,
                    "nft",
                    "add",
                    "rule",
                    "ip",
                    "esprit_nat",
                    "post",
                    "oifname",
                    "out0",
                    "masquerade",
                ],
            )?;
        } else {
            link(Node::GwA, "wan0", Node::GwB, "wan0")?;
            addr(Node::GwA, "wan0", "10.200.0.1/24")?;
            addr(Node::GwA, "wan0", "fd00:200::1/64")?;
            addr(Node::GwB, "wan0", "fd00:200::2/64")?;
            addr(Node::GwB, "wan0", "10.200.0.2/24")?;
        }
        for (h, v4, v6) in [
            (Node::HostA, "10.201.1.1", "fd00:201:1::1"),
            (Node::HostB, "10.201.2.1", "fd00:201:2::1"),
        ] {
            run(
                &what("host route"),
                &["ip", "-n", &lab.ns(h), "route", "add", "default", "via", v4],
            )?;
            run(
                &what("host route"),
                &[
                    "ip",
                    "-n",
                    &lab.ns(h),
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    v6,
                ],
            )?;
            // Checksums in software, so they survive AF_XDP copy mode on the gateways.
            let _ = run(
                &what("offloads"),
                &[
                    "ip",
                    "netns",
                    "exec",
                    &lab.ns(h),
                    "ethtool",
                    "-K",
                    "eth0",
                    "tx",
                    "off",
                ],
            );
        }
        for g in [Node::GwA, Node::GwB] {
            let ns = lab.ns(g);
            for s in [
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv6.conf.all.forwarding=1",
            ] {
                run(
                    &what("sysctl"),
                    &["ip", "netns", "exec", &ns, "sysctl", "-qw", s],
                )?;
            }
        }
        Ok(())
    }

    /// Removes every namespace of the lab; absent ones are fine.
    pub fn down(&self) -> Result<(), LabError> {
        let existing = run("listing namespaces", &["ip", "netns", "list"])?;
        let list = String::from_utf8_lossy(&existing.stdout).to_string();
        for n in [Node::HostA, Node::GwA, Node::Nat, Node::GwB, Node::HostB] {
            let ns = self.ns(n);
            if list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str()))
            {
                run(
                    &format!("removing lab {}", self.spec.name),
                    &["ip", "netns", "del", &ns],
                )?;
            }
        }
        Ok(())
    }

    /// Which of the lab's namespaces exist.
    pub fn status(&self) -> Result<Vec<(Node, bool)>, LabError> {
        let existing = run("listing namespaces", &["ip", "netns", "list"])?;
        let list = String::from_utf8_lossy(&existing.stdout).to_string();
        Ok([Node::HostA, Node::GwA, Node::Nat, Node::GwB, Node::HostB]
            .into_iter()
            .map(|n| {
                let ns = self.ns(n);
                (
                    n,
                    list.lines()
                        .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
                )
            })
            .collect())
    }

    /// Runs a command in a node's namespace and returns its output (whatever its status).
    pub fn exec(&self, n: Node, args: &[&str]) -> Result<Output, LabError> {
        let ns = self.ns(n);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        Command::new(full[0])
            .args(&full[1..])
            .output()
            .map_err(|err| LabError::Spawn {
                what: format!("running in {n}"),
                cmd: full.join(" "),
                err,
            })
    }

    /// Moves the calling thread into a node's namespace (for in-process gateways and traffic).
    pub fn enter(&self, n: Node) -> std::io::Result<()> {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.ns(n)))?;
        // SAFETY: setns on a valid namespace descriptor affects only the calling thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Removes the lab when dropped, so a failing test or an early return leaves nothing behind.
pub struct LabGuard(pub Lab);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.0.down();
    }
}

/// True when running as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
