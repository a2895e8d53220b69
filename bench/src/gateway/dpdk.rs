//! DPDK's ipsec-secgw example on gwA, as a system to compare esprit's plain-ESP path with.
//!
//! The example is built at run time from Debian's packaged source (`dpdk-doc`) against the
//! packaged libdpdk by `bench/dpdk/build-secgw.sh` into `target/dpdk` (nothing of DPDK is in
//! the repository). It runs in gwA's namespace on gwA's own veths, port 0 = lan0 (protected),
//! port 1 = wan0 (unprotected), through one of two software PMDs, [`Pmd`]; one lcore (the
//! gateway's core) polls both ports, with intel-ipsec-mb (`crypto_aesni_mb`) for AES-GCM.
//!
//! It gets one tunnel shaped like esprit's plain-ESP one: fresh SPIs and AES-128-GCM keys and
//! salts, gwA's and gwB's WAN addresses, IPv4 tunnel mode, site A's /24 against the ESP far
//! prefix; the bench keeps the twins, so it checks every ESP packet ipsec-secgw sends and
//! encrypts what it decrypts. ipsec-secgw does not do ESP-in-UDP.
//!
//! EAL: `--no-huge -m 512` (no hugepages to reserve on a shared machine; both PMDs copy
//! through the kernel, so the memory's page size is not what limits them), `--no-shconf` with
//! a per-run `--file-prefix` (no shared files, the runtime directory removed at stop), no PCI.
//! While DPDK owns the ports, gwA's kernel drops every IPv4 packet at prerouting (an nftables
//! table): af_packet hands DPDK a copy and the kernel would otherwise route the original too.

use super::systems::{hex, random_bytes, random_spi, sa_pair, PeerSas, ESP_PREFIX, GW_A_WAN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use topology::{Lab, Node};

/// The packet I/O driver ipsec-secgw uses on gwA's veths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pmd {
    /// `net_af_xdp`: an AF_XDP socket (copy mode on a veth), DPDK's own XDP program.
    AfXdp,
    /// `net_af_packet`: a PACKET_MMAP socket (the kernel copies every frame both ways).
    AfPacket,
}

impl Pmd {
    /// The PMD a DPDK system runs with, `None` for the other systems.
    pub fn of(system: super::systems::System) -> Option<Pmd> {
        use super::systems::System;
        match system {
            System::DpdkAfXdp => Some(Pmd::AfXdp),
            System::DpdkAfPacket => Some(Pmd::AfPacket),
            _ => None,
        }
    }

    /// The `--vdev` argument for port `port` on `iface`.
    pub fn vdev(self, port: usize, iface: &str) -> String {
        match self {
            Pmd::AfXdp => {
                format!("net_af_xdp{port},iface={iface},start_queue=0,queue_count=1,busy_budget=0")
            }
            Pmd::AfPacket => format!("net_af_packet{port},iface={iface},qpairs=1"),
        }
    }

    /// Short name ("af_xdp").
    pub fn name(self) -> &'static str {
        match self {
            Pmd::AfXdp => "af_xdp",
            Pmd::AfPacket => "af_packet",
        }
    }
}

/// Crypto devices tried in turn (the first that starts is used).
const CRYPTO_VDEVS: [&str; 2] = ["crypto_aesni_mb0", "crypto_openssl0"];

/// The build script, in the source tree the bench was built from.
fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dpdk/build-secgw.sh")
}

/// Builds ipsec-secgw (installing Debian's DPDK packages if missing) and returns the binary's
/// path; `ESPRIT_DPDK_SECGW` names a binary to use instead. `Err` says why DPDK cannot be
/// measured.
pub fn build(say: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("ESPRIT_DPDK_SECGW") {
        return Ok(PathBuf::from(p));
    }
    let script = build_script();
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dpdk");
    say(&format!(
        "  building DPDK ipsec-secgw from Debian's packages ({})",
        script.display()
    ));
    let out = Command::new(&script)
        .arg(&out_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        return Err(format!(
            "building ipsec-secgw failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    if path.is_empty() || !Path::new(&path).exists() {
        return Err("the build script named no ipsec-secgw binary".into());
    }
    Ok(PathBuf::from(path))
}

/// One tunnel's keys, from gwA's side.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// gwA's outbound SPI.
    pub out_spi: u32,
    /// gwA's inbound SPI.
    pub in_spi: u32,
    /// Outbound AES-128 key and salt, hex (40 digits).
    pub out_key: String,
    /// Inbound AES-128 key and salt, hex.
    pub in_key: String,
}

impl Tunnel {
    /// Fresh SPIs and keys.
    pub fn random() -> Result<Tunnel, String> {
        Ok(Tunnel {
            out_spi: random_spi()?,
            in_spi: random_spi()?,
            out_key: hex(&random_bytes(20)?),
            in_key: hex(&random_bytes(20)?),
        })
    }

    /// The bench's twins (gwB's side), as an SA file.
    pub fn twin_text(&self) -> String {
        sa_pair(
            self.out_spi,
            self.in_spi,
            &self.out_key,
            &self.in_key,
            ESP_PREFIX,
            false,
            true,
        )
    }
}

/// `01:02:…` from hex digits.
fn colon_bytes(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The ipsec-secgw configuration of gwA: the tunnel's policies, SAs, routes (outer address of
/// gwB via port 1, site A via port 0) and next-hop MACs (`lan_peer` = hA's, `wan_peer` =
/// gwB's).
pub fn secgw_config(t: &Tunnel, lan_peer: &str, wan_peer: &str) -> String {
    let site_a = topology::lab::SITE_A;
    format!(
        "# esprit-bench gateway: gwA as DPDK ipsec-secgw (port 0 = lan0, port 1 = wan0)\n\
         sp ipv4 out esp protect {out} pri 1 src {site_a} dst {ESP_PREFIX} sport 0:65535 dport 0:65535\n\
         sa out {out} aead_algo aes-128-gcm aead_key {ko} mode ipv4-tunnel src {GW_A_WAN} dst {gw_b}\n\
         sp ipv4 in esp protect {inn} pri 1 src {ESP_PREFIX} dst {site_a} sport 0:65535 dport 0:65535\n\
         sa in {inn} aead_algo aes-128-gcm aead_key {ki} mode ipv4-tunnel src {gw_b} dst {GW_A_WAN}\n\
         rt ipv4 dst {gw_b}/32 port 1\n\
         rt ipv4 dst {site_a} port 0\n\
         neigh port 0 {lan_peer}\n\
         neigh port 1 {wan_peer}\n",
        out = t.out_spi,
        inn = t.in_spi,
        ko = colon_bytes(&t.out_key),
        ki = colon_bytes(&t.in_key),
        gw_b = super::systems::GW_B_WAN,
    )
}

/// The nftables table that keeps gwA's kernel off the IPv4 traffic while DPDK runs.
const NFT_TABLE: &str = "esprit_bench_dpdk";

/// ipsec-secgw running on gwA.
pub struct DpdkDut {
    child: Child,
    lab: Lab,
    prefix: String,
    /// Which PMD.
    pub pmd: Pmd,
    /// The bench's twins of its SAs.
    pub peer: PeerSas,
    log: PathBuf,
    stopped: bool,
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(n)
        .collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

impl DpdkDut {
    /// Writes a fresh tunnel's configuration into `dir`, starts `bin` in gwA's namespace with
    /// `pmd` on lan0/wan0 and its lcore on `core`, and waits for its main loop. `Err` says why
    /// it cannot be measured.
    pub fn start(
        lab: &Lab,
        dir: &Path,
        bin: &Path,
        pmd: Pmd,
        core: usize,
        say: &mut dyn FnMut(&str),
    ) -> Result<DpdkDut, String> {
        let t = Tunnel::random()?;
        let cfg = dir.join(format!("secgw-{}.cfg", pmd.name()));
        let text = secgw_config(
            &t,
            &topology::plan::mac(Node::HostA, "eth0"),
            &topology::plan::mac(Node::GwB, "wan0"),
        );
        std::fs::write(&cfg, text).map_err(|e| format!("{}: {e}", cfg.display()))?;
        for cmd in [
            vec!["nft", "add", "table", "ip", NFT_TABLE],
            vec![
                "nft",
                "add",
                "chain",
                "ip",
                NFT_TABLE,
                "pre",
                "{ type filter hook prerouting priority -300; policy drop; }",
            ],
        ] {
            let out = lab.exec(Node::GwA, &cmd).map_err(|e| e.to_string())?;
            if !out.status.success() {
                remove_nft(lab);
                return Err(format!(
                    "gwA: {}: {}",
                    cmd.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let mut last = String::new();
        for crypto in CRYPTO_VDEVS {
            let prefix = format!("esprit-bench-{}-{}", std::process::id(), pmd.name());
            let log = dir.join(format!("secgw-{}-{crypto}.log", pmd.name()));
            let logf =
                std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let loge = logf.try_clone().map_err(|e| e.to_string())?;
            let lcore = core.to_string();
            let config = format!("(0,0,{core}),(1,0,{core})");
            let child = Command::new("ip")
                .args(["netns", "exec", &lab.ns(Node::GwA)])
                .arg(bin)
                .args(["--no-huge", "-m", "512", "--no-shconf", "--no-pci"])
                .args(["--file-prefix", &prefix, "-l", &lcore])
                .args(["--log-level", "lib.eal:notice"])
                .args([
                    "--vdev",
                    &pmd.vdev(0, "lan0"),
                    "--vdev",
                    &pmd.vdev(1, "wan0"),
                ])
                .args(["--vdev", crypto, "--"])
                .args(["-p", "0x3", "-P", "-u", "0x2", "--config", &config, "-f"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(logf)
                .stderr(loge)
                .spawn()
                .map_err(|e| format!("starting ipsec-secgw: {e}"))?;
            let mut dut = DpdkDut {
                child,
                lab: lab.clone(),
                prefix,
                pmd,
                peer: PeerSas::from_text(&t.twin_text(), "DPDK twin SAs")?,
                log: log.clone(),
                stopped: false,
            };
            match dut.wait_ready() {
                Ok(()) => {
                    let niced = super::placement::renice_threads(dut.child.id(), "", -20);
                    say(&format!(
                        "  DPDK ipsec-secgw on gwA ({} PMD on lan0/wan0, {crypto}, lcore {core}, {niced} threads at nice -20, SPIs out 0x{:08x} in 0x{:08x})",
                        pmd.name(),
                        t.out_spi,
                        t.in_spi
                    ));
                    return Ok(dut);
                }
                Err(e) => {
                    last = format!("{crypto}: {e}");
                    dut.kill_child();
                }
            }
        }
        remove_nft(lab);
        Err(format!(
            "ipsec-secgw ({}) did not start: {last}",
            pmd.name()
        ))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("exited ({st}): {}", last_lines(&self.log, 4)));
            }
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("entering main loop") {
                // The ports report link up a little later.
                std::thread::sleep(Duration::from_millis(500));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no main loop within 20 s: {}",
                    last_lines(&self.log, 4)
                ));
            }
        }
    }

    /// Stops ipsec-secgw with SIGINT (SIGKILL after 5 s), once.
    fn kill_child(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }

    /// Stops it and gives gwA's kernel the traffic back; returns a line for the notes.
    pub fn stop(mut self) -> String {
        self.kill_child();
        remove_nft(&self.lab);
        format!(
            "DPDK ipsec-secgw ({}) on gwA stopped: {}",
            self.pmd.name(),
            last_lines(&self.log, 1)
        )
    }
}

impl Drop for DpdkDut {
    /// A bench that fails half-way still stops ipsec-secgw and gives gwA's kernel its traffic
    /// back.
    fn drop(&mut self) {
        if !self.stopped {
            self.kill_child();
            remove_nft(&self.lab);
        }
    }
}

fn remove_nft(lab: &Lab) {
    let _ = lab.exec(Node::GwA, &["nft", "delete", "table", "ip", NFT_TABLE]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_matches_the_twins() {
        let t = Tunnel {
            out_spi: 0x1234,
            in_spi: 0x5678,
            out_key: "0102030405060708090a0b0c0d0e0f10a1a2a3a4".into(),
            in_key: "1112131415161718191a1b1c1d1e1f20c1c2c3c4".into(),
        };
        let c = secgw_config(&t, "02:e5:00:00:01:00", "02:e5:00:00:04:02");
        assert!(c.contains(&format!(
            "sa out 4660 aead_algo aes-128-gcm aead_key 01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:a1:a2:a3:a4 mode ipv4-tunnel src {GW_A_WAN} dst 10.200.0.2\n"
        )));
        assert!(c.contains("sa in 22136 "));
        assert!(c.contains(&format!("src {ESP_PREFIX} dst 10.201.1.0/24")));
        assert!(c.contains("neigh port 1 02:e5:00:00:04:02\n"));
        let peer = PeerSas::from_text(&t.twin_text(), "t").unwrap();
        // The bench encrypts with gwA's inbound SA and decrypts with its outbound one.
        let out = &peer.gen.outbound()[0];
        assert_eq!(out.cfg.spi, 0x5678);
        assert!(out.cfg.encap.is_none());
        let inb = peer.sink.inbound().next().unwrap();
        assert_eq!(inb.cfg.spi, 0x1234);
        assert_eq!(inb.cfg.key.expose_secret()[..2], [1, 2]);
    }

    #[test]
    fn vdevs() {
        assert_eq!(
            Pmd::AfPacket.vdev(1, "wan0"),
            "net_af_packet1,iface=wan0,qpairs=1"
        );
        assert!(Pmd::AfXdp
            .vdev(0, "lan0")
            .starts_with("net_af_xdp0,iface=lan0,"));
    }
}
