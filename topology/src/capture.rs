//! A capture of clear text on a lab's WAN: `tcpdump` in a node's namespace, on all of its
//! interfaces, keeping only what is *not* expected on a WAN between two IPsec gateways. ESP,
//! IKE and NAT-T (UDP 500 and 4500), ARP, ICMPv6 neighbour discovery (types 133–137) and
//! multicast listener discovery (MLD: types 130–132 and 143, behind a hop-by-hop header, sent
//! from link-local addresses when an interface joins a group) are expected; anything else the
//! capture keeps, and a tunnel that leaked would show here.

use crate::lab::{Lab, Node};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The packets expected on the WAN (a pcap filter); the capture keeps the others.
pub const EXPECTED_ON_WAN: &str = "esp or udp port 500 or udp port 4500 or arp or \
     (icmp6 and ip6[40] >= 133 and ip6[40] <= 137) or \
     (ip6 proto 0 and ip6[40] == 58 and ip6[41] == 0 and \
     (ip6[48] == 143 or (ip6[48] >= 130 and ip6[48] <= 132)))";
/// At most this many of the kept packets are shown in a report.
const SAMPLES: usize = 10;

/// A capture under way.
pub struct WanCapture {
    child: Option<Child>,
    file: PathBuf,
}

/// What a capture kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleartext {
    /// Packets that were not ESP, IKE/NAT-T, ARP or ICMPv6 ND.
    pub packets: usize,
    /// The first of them, as tcpdump prints them.
    pub samples: Vec<String>,
}

impl WanCapture {
    /// Starts capturing in `node`'s namespace into `file` (pcap); returns once tcpdump listens.
    pub fn start(lab: &Lab, node: Node, file: &Path) -> Result<WanCapture, String> {
        let filter = format!("not ({EXPECTED_ON_WAN})");
        let mut child = lab
            .command(node, "tcpdump")
            .args(["-i", "any", "-n", "-U", "-Z", "root", "-w"])
            .arg(file)
            .arg(&filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!("{node}: starting tcpdump: {e} (ci/install-deps.sh installs tcpdump)")
            })?;
        let stderr = child.stderr.take().ok_or("tcpdump: no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut cap = WanCapture {
            child: Some(child),
            file: file.to_path_buf(),
        };
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) if l.contains("listening on") => return Ok(cap),
                Ok(_) => continue,
                Err(_) => {
                    cap.kill();
                    return Err(format!("{node}: tcpdump did not start capturing"));
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::kept::signal(c.id(), libc::SIGINT);
            let start = std::time::Instant::now();
            while matches!(c.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the capture and reads back what it kept.
    pub fn finish(mut self) -> Result<Cleartext, String> {
        self.kill();
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.file)
            .output()
            .map_err(|e| format!("reading {}: {e}", self.file.display()))?;
        if !out.status.success() {
            return Err(format!(
                "reading {}: {}",
                self.file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        Ok(Cleartext {
            packets: lines.len(),
            samples: lines.iter().take(SAMPLES).map(|l| l.to_string()).collect(),
        })
    }
}

impl Drop for WanCapture {
    fn drop(&mut self) {
        self.kill();
    }
}
