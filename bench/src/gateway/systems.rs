//! The systems measured on gwA, the two directions, the addresses each uses, and the esprit
//! gateway under test (started in-process in gwA's namespace, keyed with manual SAs whose
//! twins the bench keeps to encrypt and decrypt on gwB's side).

use dataplane::api::Snapshot;
use dataplane::daemon::DataplaneConfig;
use dataplane::esp::Backend;
use dataplane::sa::{file, Direction, SaDb};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use topology::{Lab, Node};

/// Host A (site A), where the LAN side's generator and sink live.
pub const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);
/// The far site's host, as the tunnels' traffic selectors name it (esprit ESP-in-UDP and
/// strongSwan).
pub const SITE_B_HOST: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 2);
/// A far host reached through esprit's plain-ESP SA (its own selectors).
pub const ESP_HOST: Ipv4Addr = Ipv4Addr::new(10, 204, 0, 2);
/// The far prefix of esprit's plain-ESP SA (and of DPDK's).
pub const ESP_PREFIX: &str = "10.204.0.0/24";
/// A far host reached in the clear: esprit's bypass route, the kernel's static route.
pub const CLEAR_HOST: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 2);
/// The prefix of [`CLEAR_HOST`].
pub const CLEAR_PREFIX: &str = "10.202.0.0/24";
/// gwA's WAN address.
pub const GW_A_WAN: &str = "10.200.0.1";
/// gwB's WAN address (the bench's endpoint on gwB's WAN answers ARP with it).
pub const GW_B_WAN: &str = "10.200.0.2";

/// A direction through gwA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Plaintext in on the LAN, ESP out on the WAN.
    Encrypt,
    /// ESP in on the WAN, plaintext out on the LAN.
    Decrypt,
}

impl Dir {
    /// Short key for JSON ("encrypt").
    pub fn key(self) -> &'static str {
        match self {
            Dir::Encrypt => "encrypt",
            Dir::Decrypt => "decrypt",
        }
    }

    /// Label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Dir::Encrypt => "LAN>WAN",
            Dir::Decrypt => "WAN>LAN",
        }
    }
}

/// What runs on gwA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum System {
    /// esprit with ESP-in-UDP (NAT-T, port 4500): the main figure, as strongSwan sends.
    Esprit,
    /// esprit with plain ESP (IP protocol 50).
    EspritEsp,
    /// esprit forwarding in the clear (a bypass route): the same AF_XDP path without crypto.
    EspritBypass,
    /// The kernel's IPv4 forwarding, no esprit.
    Kernel,
    /// strongSwan's charon with kernel-libipsec (ESP in userspace, ESP-in-UDP).
    StrongSwan,
    /// DPDK's ipsec-secgw example with the `net_af_xdp` PMD (plain ESP).
    DpdkAfXdp,
    /// DPDK's ipsec-secgw example with the `net_af_packet` PMD (plain ESP).
    DpdkAfPacket,
}

impl System {
    /// Every system, in the order of a round.
    pub const ALL: [System; 7] = [
        System::Esprit,
        System::EspritEsp,
        System::EspritBypass,
        System::Kernel,
        System::StrongSwan,
        System::DpdkAfXdp,
        System::DpdkAfPacket,
    ];

    /// Both DPDK systems (`dpdk` on the command line).
    pub const DPDK: [System; 2] = [System::DpdkAfXdp, System::DpdkAfPacket];

    /// Key for the command line and JSON.
    pub fn key(self) -> &'static str {
        match self {
            System::Esprit => "esprit",
            System::EspritEsp => "esprit-esp",
            System::EspritBypass => "esprit-nocrypto",
            System::Kernel => "kernel",
            System::StrongSwan => "strongswan",
            System::DpdkAfXdp => "dpdk-af_xdp",
            System::DpdkAfPacket => "dpdk-af_packet",
        }
    }

    /// Label for tables and the plot.
    pub fn label(self) -> &'static str {
        match self {
            System::Esprit => "esprit ESP-in-UDP",
            System::EspritEsp => "esprit ESP",
            System::EspritBypass => "esprit no crypto",
            System::Kernel => "kernel forwarding",
            System::StrongSwan => "strongSwan libipsec",
            System::DpdkAfXdp => "DPDK secgw af_xdp",
            System::DpdkAfPacket => "DPDK secgw af_packet",
        }
    }

    /// Parses a key.
    pub fn parse(s: &str) -> Result<System, String> {
        System::ALL
            .into_iter()
            .find(|x| x.key() == s.trim())
            .ok_or_else(|| {
                format!(
                    "{s:?}: expected dpdk or one of {}",
                    System::ALL.map(|x| x.key()).join(", ")
                )
            })
    }

    /// Parses a key, or `dpdk` for both DPDK systems.
    pub fn parse_many(s: &str) -> Result<Vec<System>, String> {
        if s.trim() == "dpdk" {
            Ok(System::DPDK.to_vec())
        } else {
            System::parse(s).map(|x| vec![x])
        }
    }

    /// The directions it is measured in. esprit forwards no plaintext from its WAN (the WAN
    /// classifier passes it to the kernel), so its no-crypto baseline is LAN to WAN only.
    pub fn dirs(self) -> &'static [Dir] {
        match self {
            System::EspritBypass => &[Dir::Encrypt],
            _ => &[Dir::Encrypt, Dir::Decrypt],
        }
    }

    /// The far host of its traffic.
    pub fn far_host(self) -> Ipv4Addr {
        match self {
            System::Esprit | System::StrongSwan => SITE_B_HOST,
            System::EspritEsp | System::DpdkAfXdp | System::DpdkAfPacket => ESP_HOST,
            System::EspritBypass | System::Kernel => CLEAR_HOST,
        }
    }

    /// True if the traffic is ESP on the WAN.
    pub fn encrypts(self) -> bool {
        matches!(
            self,
            System::Esprit
                | System::EspritEsp
                | System::StrongSwan
                | System::DpdkAfXdp
                | System::DpdkAfPacket
        )
    }

    /// True if it needs esprit running on gwA.
    pub fn is_esprit(self) -> bool {
        matches!(
            self,
            System::Esprit | System::EspritEsp | System::EspritBypass
        )
    }
}

/// Random bytes from the kernel.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(b)
}

/// Lower-case hex digits of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A random SPI (at least 0x100).
pub fn random_spi() -> Result<u32, String> {
    let b = random_bytes(4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(0x100))
}

/// The SAs of gwA and their twins on the bench's side (gwB's role).
struct SaPlan {
    gw_a: String,
    peer: String,
}

/// One tunnel's SA pair, written from gwA's side (`mirror` writes the peer's).
#[allow(clippy::too_many_arguments)]
pub fn sa_pair(
    out_spi: u32,
    in_spi: u32,
    out_key: &str,
    in_key: &str,
    far_ts: &str,
    encap: bool,
    mirror: bool,
) -> String {
    let (local, remote) = if mirror {
        (GW_B_WAN, GW_A_WAN)
    } else {
        (GW_A_WAN, GW_B_WAN)
    };
    let (lts, rts) = if mirror {
        (far_ts, "10.201.1.0/24")
    } else {
        ("10.201.1.0/24", far_ts)
    };
    // gwA's outbound is the peer's inbound and the other way round.
    let ((spi_o, key_o), (spi_i, key_i)) = if mirror {
        ((in_spi, in_key), (out_spi, out_key))
    } else {
        ((out_spi, out_key), (in_spi, in_key))
    };
    let encap = if encap { "encap = \"udp\"\n" } else { "" };
    let one = |spi: u32, dir: &str, key: &str| {
        format!(
            "[[sa]]\nspi = \"0x{spi:08x}\"\ndirection = \"{dir}\"\nsuite = \"aes128gcm16\"\n\
             key = \"{key}\"\nlocal = \"{local}\"\nremote = \"{remote}\"\n{encap}\
             local_ts = [\"{lts}\"]\nremote_ts = [\"{rts}\"]\n\n"
        )
    };
    one(spi_o, "out", key_o) + &one(spi_i, "in", key_i)
}

fn sa_plan() -> Result<SaPlan, String> {
    let mut gw_a = String::new();
    let mut peer = String::new();
    for (far, encap) in [("10.201.2.0/24", true), (ESP_PREFIX, false)] {
        let (o, i) = (random_spi()?, random_spi()?);
        let (ko, ki) = (hex(&random_bytes(20)?), hex(&random_bytes(20)?));
        gw_a += &sa_pair(o, i, &ko, &ki, far, encap, false);
        peer += &sa_pair(o, i, &ko, &ki, far, encap, true);
    }
    Ok(SaPlan { gw_a, peer })
}

/// The bench's side of the tunnels: SAs that encrypt towards gwA (the generator's) and that
/// decrypt what gwA sends (the sink's).
pub struct PeerSas {
    /// Outbound twins of gwA's inbound SAs.
    pub gen: SaDb,
    /// Inbound twins of gwA's outbound SAs.
    pub sink: SaDb,
}

impl PeerSas {
    /// Builds both databases from an SA file's text (as `sa-file.md` describes).
    pub fn from_text(text: &str, name: &str) -> Result<PeerSas, String> {
        let sas = file::parse(text, name).map_err(|e| e.to_string())?;
        let mut gen = SaDb::new(Backend::Ring);
        let mut sink = SaDb::new(Backend::Ring);
        for sa in sas {
            match sa.direction {
                Direction::Out => gen.insert(sa),
                Direction::In => sink.insert(sa),
            }
            .map_err(|e| e.to_string())?;
        }
        Ok(PeerSas { gen, sink })
    }
}

/// esprit running on gwA.
pub struct EspritDut {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<Snapshot, String>>>,
    /// The bench's twins of its SAs.
    pub peer: PeerSas,
    /// What the daemon said when it started.
    pub banner: String,
}

/// The dataplane configuration of gwA: one worker on `core`, adaptive polling, native or
/// generic XDP, the bypass route for the clear baseline, gwB as the WAN next hop for it. It
/// fails open: gwA switches to strongSwan and kernel forwarding after it, which a program left
/// attached (fail closed) would starve.
fn dataplane_config(dir: &Path, core: usize, generic: bool) -> String {
    format!(
        "sa_file = \"{}\"\nfail_mode = \"open\"\napi_socket = \"{}\"\n\n[lan]\ninterface = \"lan0\"\n\n[wan]\n\
         interface = \"wan0\"\ngateway = \"{GW_B_WAN}\"\n\n[workers]\ncount = 1\ncores = [{core}]\n\
         poll = \"adaptive\"\nxdp = \"{}\"\n\n[[route]]\nprefix = \"{CLEAR_PREFIX}\"\naction = \"bypass\"\n",
        dir.join("gwA-sa.toml").display(),
        dir.join("gwA.sock").display(),
        if generic { "generic" } else { "native" },
    )
}

impl EspritDut {
    /// Writes fresh SAs (random SPIs and AES-128-GCM keys) and the configuration into `dir`,
    /// starts the dataplane in gwA's namespace (its worker on `core`, generic XDP with
    /// `generic`) and waits until it forwards.
    pub fn start(lab: &Lab, dir: &Path, core: usize, generic: bool) -> Result<EspritDut, String> {
        let plan = sa_plan()?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        write("gwA-sa.toml", &plan.gw_a)?;
        let cfg_path = write("gwA.toml", &dataplane_config(dir, core, generic))?;
        let cfg = DataplaneConfig::load(&cfg_path).map_err(|e| e.to_string())?;
        let peer = PeerSas::from_text(&plan.peer, "peer SAs")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (lab2, stop2) = (lab.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("esprit-gwA".into())
            .spawn(move || -> Result<Snapshot, String> {
                lab2.enter(Node::GwA)
                    .map_err(|e| format!("entering gwA: {e}"))?;
                let txe = tx.clone();
                dataplane::daemon::run::run(&cfg, stop2, move |m| {
                    let _ = tx.send(m.to_string());
                })
                .map_err(|e| {
                    let m = format!("esprit on gwA: {e}");
                    let _ = txe.send(format!("error: {m}"));
                    m
                })
            })
            .map_err(|e| format!("starting esprit: {e}"))?;
        let mut dut = EspritDut {
            stop,
            handle: Some(handle),
            peer,
            banner: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(m) if !m.starts_with("error: ") => dut.banner = m,
            Ok(m) => {
                let _ = dut.stop();
                return Err(m.trim_start_matches("error: ").to_string());
            }
            Err(_) => {
                let r = dut.stop();
                return Err(format!(
                    "esprit on gwA did not start within 20 s{}",
                    r.err().map(|e| format!(": {e}")).unwrap_or_default()
                ));
            }
        }
        Ok(dut)
    }

    /// Stops the dataplane and returns its counters.
    pub fn stop(&mut self) -> Result<Snapshot, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err("esprit on gwA panicked".into())),
            None => Err("esprit was already stopped".into()),
        }
    }
}

impl Drop for EspritDut {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.stop();
        }
    }
}

/// A one-line summary of the dataplane's counters: frames forwarded each way, bypassed, and
/// every non-zero drop.
pub fn counters_line(s: &Snapshot) -> String {
    let mut drops: Vec<String> = s
        .sadb_drops
        .iter()
        .chain(s.forwarding_drops.iter())
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    for sa in &s.sas {
        drops.extend(
            sa.drops
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{} {k} {v}", sa.label)),
        );
    }
    for (side, k) in [("lan", &s.lan_socket), ("wan", &s.wan_socket)] {
        for (what, v) in [
            ("rx_dropped", k.rx_dropped),
            ("rx_ring_full", k.rx_ring_full),
            ("rx_fill_ring_empty", k.rx_fill_ring_empty),
        ] {
            if v > 0 {
                drops.push(format!("{side} socket {what} {v}"));
            }
        }
    }
    format!(
        "lan>wan {} wan>lan {} bypassed {}; drops: {}",
        s.lan_to_wan,
        s.wan_to_lan,
        s.bypassed,
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_sas_mirror_gw_a() {
        let plan = sa_plan().unwrap();
        let a = file::parse(&plan.gw_a, "gwA").unwrap();
        let p = file::parse(&plan.peer, "peer").unwrap();
        assert_eq!(a.len(), 4);
        for sa in &a {
            let twin = p
                .iter()
                .find(|t| t.spi == sa.spi)
                .expect("every SA has a twin");
            assert_ne!(twin.direction, sa.direction);
            assert_eq!(twin.local, sa.remote);
            assert_eq!(twin.remote, sa.local);
            assert_eq!(twin.encap.is_some(), sa.encap.is_some());
            assert_eq!(twin.key.expose_secret(), sa.key.expose_secret());
        }
        let peer = PeerSas::from_text(&plan.peer, "peer").unwrap();
        assert_eq!(peer.gen.outbound().len(), 2);
        assert_eq!(peer.sink.inbound().count(), 2);
    }

    #[test]
    fn config_parses() {
        let dir = std::env::temp_dir();
        let text = dataplane_config(&dir, 1, true);
        let cfg = DataplaneConfig::parse(&text, "gwA.toml").unwrap();
        assert_eq!(cfg.cores, vec![1]);
        assert!(cfg.generic_xdp);
        assert_eq!(cfg.routes.len(), 1);
    }

    #[test]
    fn systems_parse() {
        for s in System::ALL {
            assert_eq!(System::parse(s.key()), Ok(s));
        }
        assert!(System::parse("vpp").is_err());
        assert_eq!(System::parse_many("dpdk").unwrap(), System::DPDK.to_vec());
        assert_eq!(System::parse_many("kernel").unwrap(), vec![System::Kernel]);
        assert_eq!(System::DpdkAfPacket.far_host(), ESP_HOST);
        assert_eq!(System::EspritBypass.dirs(), &[Dir::Encrypt]);
    }
}
