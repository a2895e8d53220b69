//! OpenIKED as a peer: Debian's `iked` (package `openiked`) run in a node of a [`Lab`] with
//! its own configuration file and control socket, driven with `ikectl`.
//!
//! iked keys the kernel through PF_KEY (RFC 2367), which this kernel does not have
//! (`CONFIG_NET_KEY` off: iked exits at start). The harness compiles `iked_pfkey_shim.c` (kept
//! beside this file) with the system `cc` and preloads it: iked's PF_KEY socket is then one
//! end of a socketpair answered by a thread that accepts every SA and policy and writes each
//! message (with the SA keys) to `pfkey.log`. What that stands in for, and what it cannot, is
//! in `docs/interop.md`.

use crate::lab::{Lab, Node};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The PF_KEY stand-in's source, compiled at start.
pub const SHIM_SOURCE: &str = include_str!("iked_pfkey_shim.c");

/// The iked daemon.
pub const IKED: &str = "/usr/sbin/iked";

/// How long iked may take to open its PF_KEY socket and register.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Fails unless iked and ikectl are installed, and `cc` is there to build the PF_KEY shim.
pub fn ensure_installed() -> Result<(), String> {
    for p in [IKED, "/usr/sbin/ikectl"] {
        if !Path::new(p).exists() {
            return Err(format!(
                "OpenIKED is not installed ({p} missing): apt-get install openiked"
            ));
        }
    }
    which("cc").map(|_| ())
}

fn which(prog: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(prog))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| format!("{prog} not found (the PF_KEY shim is compiled at test time)"))
}

/// One side's iked policy (`ikev2 "peer" …`), PSK-authenticated with FQDN identities.
#[derive(Debug, Clone)]
pub struct IkedSpec {
    /// Our outer address.
    pub local: String,
    /// The peer's outer address (as we see it).
    pub remote: String,
    /// Our identity (`srcid`).
    pub local_id: String,
    /// The peer's identity (`dstid`).
    pub remote_id: String,
    /// The flows, as (our subnet, the peer's subnet).
    pub flows: Vec<(String, String)>,
    /// The IKE SA's transforms after `ikesa`, e.g. `enc aes-256-gcm prf hmac-sha2-256 group
    /// curve25519`.
    pub ikesa: String,
    /// The child SA's transforms after `childsa`, e.g. `enc aes-256-gcm`.
    pub childsa: String,
    /// The pre-shared key.
    pub psk: String,
    /// `active` (iked initiates at start) or `passive` (it waits for the peer).
    pub active: bool,
    /// `ikelifetime`: iked rekeys its IKE SAs after this many seconds (none by default).
    pub ikelifetime: Option<u32>,
}

impl IkedSpec {
    fn check(&self) -> Result<(), String> {
        let flows = self.flows.iter().flat_map(|(a, b)| [a, b]);
        for v in [
            &self.local,
            &self.remote,
            &self.local_id,
            &self.remote_id,
            &self.ikesa,
            &self.childsa,
            &self.psk,
        ]
        .into_iter()
        .chain(flows)
        {
            if v.is_empty() || v.contains(['"', '\n', '\r', '#', '\\']) {
                return Err(format!(
                    "iked setting {v:?}: empty, quotes, comments or line breaks"
                ));
            }
        }
        Ok(())
    }

    /// The `iked.conf` text: one policy, `peer`.
    pub fn iked_conf(&self) -> String {
        let flows: String = self
            .flows
            .iter()
            .map(|(l, r)| format!(" from {l} to {r}"))
            .collect();
        let lifetime = self
            .ikelifetime
            .map(|t| format!(" ikelifetime {t}"))
            .unwrap_or_default();
        format!(
            "ikev2 \"peer\" {} esp{flows} local {} peer {} ikesa {} childsa {} srcid \"{}\" \
             dstid \"{}\"{lifetime} psk \"{}\"\n",
            if self.active { "active" } else { "passive" },
            self.local,
            self.remote,
            self.ikesa,
            self.childsa,
            self.local_id,
            self.remote_id,
            self.psk
        )
    }
}

/// One SA iked handed to the PF_KEY stand-in (`SADB_ADD` or `SADB_UPDATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfkeySa {
    /// `ADD` or `UPDATE`.
    pub op: String,
    /// The SPI.
    pub spi: u32,
    /// Outer source address.
    pub src: String,
    /// Outer destination address.
    pub dst: String,
    /// PF_KEY encryption algorithm number (`SADB_X_EALG_*`: 12 AES-CBC, 20 AES-GCM-16).
    pub encr: u8,
    /// PF_KEY authentication algorithm number (`SADB_X_AALG_*`: 5 HMAC-SHA2-256, 0 none).
    pub auth: u8,
    /// The encryption key (with the salt for AES-GCM).
    pub enckey: Vec<u8>,
    /// The authentication key (empty with AES-GCM).
    pub authkey: Vec<u8>,
    /// UDP encapsulation type (`SADB_X_EXT_NAT_T_TYPE`: 2 is ESP in UDP), if any.
    pub encap: Option<u8>,
    /// UDP encapsulation source port (`SADB_X_EXT_NAT_T_SPORT`), if any.
    pub sport: Option<u16>,
    /// UDP encapsulation destination port (`SADB_X_EXT_NAT_T_DPORT`), if any.
    pub dport: Option<u16>,
}

/// The keys of one IKE SA as iked logs them at `-vvv` (`ikev2_sa_keys: SK_ei with 36 bytes`
/// and a hex dump; with AES-GCM the key followed by the salt). A rekeyed IKE SA's keys are
/// logged the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IkedIkeKeys {
    /// SKEYSEED.
    pub skeyseed: Vec<u8>,
    /// SK_d.
    pub sk_d: Vec<u8>,
    /// SK_ai (empty with an AEAD).
    pub sk_ai: Vec<u8>,
    /// SK_ar.
    pub sk_ar: Vec<u8>,
    /// SK_ei.
    pub sk_ei: Vec<u8>,
    /// SK_er.
    pub sk_er: Vec<u8>,
}

/// A running iked.
pub struct Iked {
    node: Node,
    dir: PathBuf,
    child: Option<Child>,
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Compiles the PF_KEY stand-in into `dir/iked_pfkey_shim.so`; returns its path.
pub fn build_shim(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("iked_pfkey_shim.c");
    let so = dir.join("iked_pfkey_shim.so");
    std::fs::write(&src, SHIM_SOURCE).map_err(io_err("writing the shim's source"))?;
    let out = std::process::Command::new(which("cc")?)
        .args(["-Wall", "-Werror", "-O2", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .args(["-ldl", "-lpthread"])
        .output()
        .map_err(io_err("running cc"))?;
    if !out.status.success() {
        return Err(format!(
            "cc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(so)
}

impl Iked {
    /// Writes the configuration under `dir`, builds the PF_KEY stand-in and starts iked
    /// (`-d -vvv`, foreground: every payload and the IKE keys logged) in `node`'s namespace
    /// with it preloaded; returns once iked has registered with the stand-in and its control
    /// socket exists.
    pub fn start(lab: &Lab, node: Node, dir: &Path, spec: &IkedSpec) -> Result<Iked, String> {
        spec.check()?;
        ensure_installed()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(io_err("creating the directory"))?;
        let dir = dir
            .canonicalize()
            .map_err(io_err("resolving the directory"))?;
        // `flock … cargo test` hands its lock down: neither cc nor iked may hold it.
        crate::kept::cloexec_inherited();
        let shim = build_shim(&dir)?;
        let conf = dir.join("iked.conf");
        crate::ike::write_private(&conf, &spec.iked_conf())?;
        let log = std::fs::File::create(dir.join("iked.log")).map_err(io_err("iked.log"))?;
        let err = log.try_clone().map_err(io_err("iked.log"))?;
        let mut cmd = lab.command(node, IKED);
        cmd.args(["-d", "-vvv", "-f"])
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("iked.sock"))
            .env("LD_PRELOAD", &shim)
            .env("IKED_PFKEY_SHIM_LOG", dir.join("pfkey.log"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(io_err(format!("starting iked in {node}")))?;
        let mut d = Iked {
            node,
            dir,
            child: Some(child),
        };
        let start = Instant::now();
        // iked registers for ESP and AH once its ikev2 process has the PF_KEY socket.
        while d.pfkey_log().matches("REGISTER").count() < 2 || !d.dir.join("iked.sock").exists() {
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("iked in {node} exited ({st}):\n{}", d.tail(30)));
                }
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(format!("iked in {node} did not start:\n{}", d.tail(30)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(d)
    }

    /// Runs `ikectl -s … ARGS` (the control socket is reached by path from any namespace);
    /// its output, or an error with it.
    pub fn ikectl(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new("/usr/sbin/ikectl")
            .arg("-s")
            .arg(self.dir.join("iked.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("ikectl"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("ikectl {args:?} ({}): {text}", out.status))
        }
    }

    /// The IKE SAs `ikectl show sa` lists, as (initiator SPI, responder SPI, state), e.g.
    /// `(0x1cfa…, 0x0911…, "ESTABLISHED")`.
    pub fn ike_sas(&self) -> Result<Vec<(u64, u64, String)>, String> {
        Ok(parse_show_sa(&self.ikectl(&["show", "sa"])?))
    }

    /// iked's log (stderr, `-vvv`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("iked.log")).unwrap_or_default()
    }

    /// The PF_KEY stand-in's log: one line per message iked sent.
    pub fn pfkey_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pfkey.log")).unwrap_or_default()
    }

    /// The last `n` lines of iked's log.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "{}\n--- pfkey ---\n{}",
            lines[lines.len().saturating_sub(n)..].join("\n"),
            self.pfkey_log()
        )
    }

    /// Waits until iked's log (`pfkey`: the stand-in's) has `n` lines containing `needle`.
    pub fn wait_log(
        &self,
        needle: &str,
        n: usize,
        pfkey: bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let text = if pfkey { self.pfkey_log() } else { self.log() };
            if text.lines().filter(|l| l.contains(needle)).count() >= n {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "iked did not log {needle:?} ({n}) within {timeout:?}:\n{}",
                    self.tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every SA iked handed to the kernel (the stand-in), in order.
    pub fn sas(&self) -> Vec<PfkeySa> {
        parse_pfkey_log(&self.pfkey_log())
    }

    /// Every IKE SA's keys iked logged, in order.
    pub fn ike_keys(&self) -> Vec<IkedIkeKeys> {
        parse_ike_keys(&self.log())
    }

    /// The SPIs iked deleted from the kernel (`SADB_DELETE`), in order.
    pub fn deleted_spis(&self) -> Vec<u32> {
        self.pfkey_log()
            .lines()
            .filter(|l| l.starts_with("DELETE "))
            .filter_map(|l| {
                let v = l
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("spi=0x"))?;
                u32::from_str_radix(v, 16).ok()
            })
            .collect()
    }

    /// The node it runs in.
    pub fn node(&self) -> Node {
        self.node
    }

    /// Stops iked: SIGTERM (it then stops its privilege-separated processes), SIGKILL after
    /// 3 s.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid (`ip netns exec` became iked by exec).
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Iked {
    fn drop(&mut self) {
        self.kill();
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// See [`Iked::ike_keys`]: each `ikev2_sa_keys: NAME with N bytes` line and the hex dump
/// after it (groups of 8 hex digits); a new `SKEYSEED` starts a new IKE SA.
pub fn parse_ike_keys(log: &str) -> Vec<IkedIkeKeys> {
    let mut out: Vec<IkedIkeKeys> = Vec::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        let Some((_, rest)) = line.split_once("ikev2_sa_keys: ") else {
            continue;
        };
        let Some((name, n)) = rest.split_once(" with ") else {
            continue;
        };
        let Some(n) = n
            .strip_suffix(" bytes")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let mut key = Vec::with_capacity(n);
        while key.len() < n {
            let Some(l) = lines.next() else { break };
            let words: Vec<&str> = l.split_whitespace().collect();
            if words.is_empty()
                || !words
                    .iter()
                    .all(|w| w.len() % 2 == 0 && w.chars().all(|c| c.is_ascii_hexdigit()))
            {
                break;
            }
            for w in words {
                key.extend(hex_bytes(w));
            }
        }
        if key.len() != n {
            continue;
        }
        if name == "SKEYSEED" {
            out.push(IkedIkeKeys::default());
        }
        let Some(k) = out.last_mut() else { continue };
        match name {
            "SKEYSEED" => k.skeyseed = key,
            "SK_d" => k.sk_d = key,
            "SK_ai" => k.sk_ai = key,
            "SK_ar" => k.sk_ar = key,
            "SK_ei" => k.sk_ei = key,
            "SK_er" => k.sk_er = key,
            _ => {}
        }
    }
    out
}

/// See [`Iked::ike_sas`]: the `iked_sas:` lines (`… rspi 0x… ispi 0x… a->b<id>[] STATE …`).
pub fn parse_show_sa(text: &str) -> Vec<(u64, u64, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("iked_sas: "))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = |k: &str| {
                let i = w.iter().position(|x| *x == k)?;
                u64::from_str_radix(w.get(i + 1)?.trim_start_matches("0x"), 16).ok()
            };
            let (r, i) = (at("rspi")?, at("ispi")?);
            let state = w.get(w.iter().position(|x| *x == "ispi")? + 3)?;
            Some((i, r, state.to_string()))
        })
        .collect()
}

/// See [`Iked::sas`]: the `ADD`/`UPDATE` lines of the stand-in's log.
pub fn parse_pfkey_log(log: &str) -> Vec<PfkeySa> {
    let mut out = Vec::new();
    for line in log.lines() {
        let mut words = line.split_whitespace();
        let op = match words.next() {
            Some(op @ ("ADD" | "UPDATE")) => op,
            _ => continue,
        };
        let mut sa = PfkeySa {
            op: op.into(),
            spi: 0,
            src: String::new(),
            dst: String::new(),
            encr: 0,
            auth: 0,
            enckey: Vec::new(),
            authkey: Vec::new(),
            encap: None,
            sport: None,
            dport: None,
        };
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            let addr = |v: &str| v.split('/').next().unwrap_or(v).to_string();
            match k {
                "spi" => sa.spi = u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(0),
                "src" => sa.src = addr(v),
                "dst" => sa.dst = addr(v),
                "encr" => sa.encr = v.parse().unwrap_or(0),
                "auth" => sa.auth = v.parse().unwrap_or(0),
                "enckey" => sa.enckey = hex_bytes(v),
                "authkey" => sa.authkey = hex_bytes(v),
                "encap" => sa.encap = v.parse().ok(),
                "sport" => sa.sport = v.parse().ok(),
                "dport" => sa.dport = v.parse().ok(),
                _ => {}
            }
        }
        out.push(sa);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_are_read_from_the_stand_ins_log() {
        let log = "\
SOCKET pid=4968
FLUSH satype=0 seq=1
GETSPI satype=3 seq=9 src=10.200.0.1/32 dst=10.200.0.2/32
GETSPI-REPLY satype=3 spi=0xc0ffee01
UPDATE satype=3 seq=10 spi=0xc0ffee01 encr=12 auth=5 src=10.200.0.1/32 dst=10.200.0.2/32 encap=2 sport=4500 dport=31000 enckey=00112233 authkey=aabb
ADD satype=3 seq=11 spi=0x01020304 encr=20 auth=0 src=10.200.0.2/32 dst=10.200.0.1/32 enckey=ff
";
        let sas = parse_pfkey_log(log);
        assert_eq!(sas.len(), 2);
        assert_eq!(sas[0].op, "UPDATE");
        assert_eq!(sas[0].spi, 0xc0ffee01);
        assert_eq!(sas[0].src, "10.200.0.1");
        assert_eq!(sas[0].encr, 12);
        assert_eq!(sas[0].auth, 5);
        assert_eq!(sas[0].encap, Some(2));
        assert_eq!((sas[0].sport, sas[0].dport), (Some(4500), Some(31000)));
        assert_eq!(sas[1].encap, None);
        assert_eq!(sas[0].enckey, vec![0, 0x11, 0x22, 0x33]);
        assert_eq!(sas[0].authkey, vec![0xaa, 0xbb]);
        assert_eq!(sas[1].spi, 0x01020304);
        assert_eq!(sas[1].dst, "10.200.0.1");
        assert!(sas[1].authkey.is_empty());
    }

    #[test]
    fn ike_keys_are_read_from_the_log() {
        let log = "\
ikev2_sa_keys: SKEYSEED with 4 bytes
e89654f6
spi=0x3317ec61a3ff723d: ikev2_sa_keys: S with 8 bytes
6e5f880c 2447a0f7
ikev2_sa_keys: SK_d with 4 bytes
01020304
ikev2_sa_keys: SK_ei with 36 bytes
b2b6b007 e16e1748 0ee195f2 968ba00d d0cbbbdb 1fe08f78 07db369c 1f41fb5d
aabbccdd
ikev2_sa_keys: SK_er with 4 bytes
975bd228
ikev2_sa_keys: SKEYSEED with 4 bytes
00000001
";
        let k = parse_ike_keys(log);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].skeyseed, vec![0xe8, 0x96, 0x54, 0xf6]);
        assert_eq!(k[0].sk_d, vec![1, 2, 3, 4]);
        assert_eq!(k[0].sk_ei.len(), 36);
        assert_eq!(&k[0].sk_ei[32..], &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(k[0].sk_er, vec![0x97, 0x5b, 0xd2, 0x28]);
        assert!(k[0].sk_ai.is_empty());
        assert_eq!(k[1].skeyseed, vec![0, 0, 0, 1]);
    }

    #[test]
    fn ike_sas_are_read_from_show_sa() {
        let text = "\
iked_sas: 0x556ff5646620 rspi 0x091124503811f316 ispi 0x1cfaf1384e21a6a9 10.200.0.2:500->10.200.0.1:500<FQDN/gwA>[] ESTABLISHED i nexti (nil) pol 0x556ff5648280
  sa_childsas: 0x556ff5660ed0 ESP 0xcea54d64 out 10.200.0.2:500 -> 10.200.0.1:500 (L) B=(nil) P=0x556ff5660f80 @0x556ff5646620
iked_dstid_sas: 0x556ff5646620 rspi 0x091124503811f316 ispi 0x1cfaf1384e21a6a9 10.200.0.2:500->10.200.0.1:500<FQDN/gwA>[] ESTABLISHED i nexti (nil) pol 0x556ff5648280
";
        assert_eq!(
            parse_show_sa(text),
            vec![(
                0x1cfaf1384e21a6a9,
                0x091124503811f316,
                "ESTABLISHED".to_string()
            )]
        );
    }

    #[test]
    fn the_configuration_is_one_policy() {
        let spec = IkedSpec {
            local: "10.200.0.2".into(),
            remote: "10.200.0.1".into(),
            local_id: "gwB".into(),
            remote_id: "gwA".into(),
            flows: vec![("10.201.2.0/24".into(), "10.201.1.0/24".into())],
            ikesa: "enc aes-256-gcm prf hmac-sha2-256 group curve25519".into(),
            childsa: "enc aes-256-gcm".into(),
            psk: "secret".into(),
            active: false,
            ikelifetime: None,
        };
        assert!(spec.check().is_ok());
        assert_eq!(
            spec.iked_conf(),
            "ikev2 \"peer\" passive esp from 10.201.2.0/24 to 10.201.1.0/24 local 10.200.0.2 \
             peer 10.200.0.1 ikesa enc aes-256-gcm prf hmac-sha2-256 group curve25519 childsa \
             enc aes-256-gcm srcid \"gwB\" dstid \"gwA\" psk \"secret\"\n"
        );
        let rekeying = IkedSpec {
            ikelifetime: Some(4),
            ..spec.clone()
        };
        assert!(rekeying
            .iked_conf()
            .ends_with("dstid \"gwA\" ikelifetime 4 psk \"secret\"\n"));
        let bad = IkedSpec {
            psk: "a\"b".into(),
            ..spec
        };
        assert!(bad.check().is_err());
    }
}
