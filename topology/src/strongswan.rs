//! A real strongSwan as a peer: Debian's `charon` with the `kernel-libipsec` plugin (ESP in
//! userspace over a TUN device, `ipsec0`), run in a node of a [`Lab`] and driven through
//! `swanctl` over its vici socket.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use topology::strongswan::{Charon, CharonSpec};
//! use topology::{Lab, LabSpec, Node};
//!
//! let lab = Lab::up(&LabSpec::default())?;
//! let gw_b = Charon::start(&lab, Node::GwB, Path::new("/tmp/ss-gwB"), &CharonSpec::lab_gw_b(&lab))?;
//! let gw_a = Charon::start(&lab, Node::GwA, Path::new("/tmp/ss-gwA"), &CharonSpec::lab_gw_a(&lab))?;
//! gw_a.initiate("net")?;
//! let sa = gw_b.wait_established(Duration::from_secs(10))?;
//! println!("{} {:x}", sa.state, sa.children[0].spi_in);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each instance gets its own directory (`strongswan.conf`, `swanctl.conf`, credentials,
//! `charon.log`, the vici socket `charon.vici`) and a private `/run` (charon's pid file path is
//! fixed), so any number of them run side by side, one per node. See `docs/interop.md`.

use crate::lab::{Lab, LabError, Node, SITE_A, SITE_B};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The charon daemon Debian installs.
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// The Debian packages the harness needs.
pub const PACKAGES: &str = "strongswan-charon strongswan-swanctl libcharon-extra-plugins \
                            libstrongswan-extra-plugins libstrongswan-standard-plugins";
/// The plugins charon loads: enough for PSK and ECDSA/RSA certificates, AES-GCM/CBC,
/// ChaCha20-Poly1305 (`chapoly`; openssl has it too), SHA-1/2, the MODP groups,
/// X25519 and the NIST curves, ESP in userspace (`kernel-libipsec`) and the vici socket.
pub const PLUGINS: &str =
    "random nonce openssl aes sha1 sha2 gcm chapoly hmac kdf curve25519 pem pkcs1 \
                           pkcs8 x509 pubkey constraints kernel-libipsec kernel-netlink \
                           socket-default vici updown";
/// The pre-shared key of the lab convenience specifications.
pub const LAB_PSK: &str = "a-long-random-test-secret";
/// How long one `swanctl` exchange (initiate, terminate, rekey) may take.
pub const IKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long charon may take to open its vici socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The directories `swanctl --load-all` reads next to `swanctl.conf` (created empty, so it does
/// not complain about missing ones).
const CRED_DIRS: [&str; 13] = [
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
];

/// Why strongSwan could not be set up or driven. `Debug` prints the message (with charon's
/// log tail), so a test's `unwrap()` shows it readably.
#[derive(thiserror::Error)]
pub enum StrongswanError {
    /// charon or swanctl is missing.
    #[error(
        "strongSwan is not installed ({missing} missing): install the Debian packages \
         {PACKAGES} (e.g. ./ci/install-deps.sh {PACKAGES})"
    )]
    NotInstalled {
        /// The missing program.
        missing: String,
    },
    /// The lab could not run a command.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The specification cannot be written as a configuration.
    #[error("strongSwan configuration: {0}")]
    Config(String),
    /// A file or process operation failed.
    #[error("{what}: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        err: std::io::Error,
    },
    /// `swanctl` ran and failed.
    #[error("{what}: `{cmd}` failed ({status}):\n{output}\n--- charon.log (tail) ---\n{log}")]
    Swanctl {
        /// What was being done.
        what: String,
        /// The command line.
        cmd: String,
        /// Its exit status (or "timed out").
        status: String,
        /// Its output (stdout and stderr).
        output: String,
        /// The end of charon's log.
        log: String,
    },
    /// charon died.
    #[error(
        "charon in {node} exited ({status}); output: {output}\n--- charon.log (tail) ---\n{log}"
    )]
    Exited {
        /// The node it ran in.
        node: String,
        /// Its exit status.
        status: String,
        /// What it wrote on stdout/stderr.
        output: String,
        /// The end of its log.
        log: String,
    },
    /// Something did not happen in time.
    #[error("{what}: not done after {waited:?}; {detail}\n--- charon.log (tail) ---\n{log}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        waited: Duration,
        /// The last state seen.
        detail: String,
        /// The end of charon's log.
        log: String,
    },
    /// `swanctl` printed something this module does not understand.
    #[error("unexpected swanctl output: {0}")]
    Parse(String),
}

impl std::fmt::Debug for StrongswanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

type Result<T, E = StrongswanError> = std::result::Result<T, E>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StrongswanError {
    let what = what.into();
    move |err| StrongswanError::Io { what, err }
}

/// Checks that charon ([`CHARON`]) and `swanctl` are installed; the error names the packages.
pub fn ensure_installed() -> Result<()> {
    if !Path::new(CHARON).is_file() {
        return Err(StrongswanError::NotInstalled {
            missing: CHARON.into(),
        });
    }
    if Command::new("swanctl")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Err(StrongswanError::NotInstalled {
            missing: "swanctl".into(),
        });
    }
    Ok(())
}

/// strongSwan's version (`5.9.8`), from `charon --version`; `None` when not installed.
pub fn strongswan_version() -> Option<String> {
    let out = Command::new(CHARON)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.split("strongSwan").nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

/// How a peer authenticates (both sides use the same method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// A pre-shared key for the pair of identities.
    Psk(String),
    /// Certificates: this side's certificate and private key, and the CA that signed the
    /// peer's certificate (all PEM). They are written to `x509/`, `private/` and `x509ca/` of
    /// the instance's directory; the local certificate is always sent (`send_cert = always`).
    Pubkey {
        /// This side's certificate, optionally followed by intermediate CA certificates. Each
        /// certificate goes to its own file in `x509/` (loaded, not trusted), and charon sends
        /// the intermediates of its own chain along with its certificate.
        cert_pem: String,
        /// This side's private key (PKCS#8, SEC1 or PKCS#1).
        key_pem: String,
        /// The trusted CA.
        ca_pem: String,
    },
}

/// One charon instance's configuration: an IKEv2 connection with one child SA (tunnel mode,
/// UDP-encapsulated ESP as libipsec always does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharonSpec {
    /// Connection name in `swanctl.conf` (the lab specifications use `s2s`).
    pub name: String,
    /// Child SA name (the lab specifications use `net`).
    pub child: String,
    /// This side's IKE address.
    pub local_addr: IpAddr,
    /// The peer's IKE address (as seen from here: the NAT's address behind a NAT).
    pub remote_addr: IpAddr,
    /// This side's identity (strongSwan syntax: `gwA`, `C=CH, CN=gwA`, `10.0.0.1`…).
    pub local_id: String,
    /// The peer's identity.
    pub remote_id: String,
    /// How the peers authenticate.
    pub auth: PeerAuth,
    /// IKE proposals, e.g. `aes128gcm16-prfsha256-x25519`.
    pub proposals: Vec<String>,
    /// ESP proposals, e.g. `aes128gcm16` (add a DH group for PFS on rekeying).
    pub esp_proposals: Vec<String>,
    /// Local traffic selectors (CIDR).
    pub local_ts: Vec<String>,
    /// Remote traffic selectors (CIDR).
    pub remote_ts: Vec<String>,
    /// The child's `start_action` (`none`, `trap`, `start`); `None` keeps strongSwan's default.
    pub start_action: Option<String>,
    /// `dpd_delay` of the connection (`30s`); `None`: no DPD.
    pub dpd_delay: Option<String>,
    /// IKE SA `rekey_time` (`4h`, `0` to disable); `None`: strongSwan's default.
    pub rekey_time: Option<String>,
    /// Child SA `rekey_time`; `None`: strongSwan's default.
    pub child_rekey_time: Option<String>,
    /// Raw `swanctl.conf` lines added at the end of the connection section (after the
    /// generated settings, so they override them; one setting per line).
    pub extra_conn: String,
    /// Raw lines added at the end of the child section.
    pub extra_child: String,
    /// Raw lines added at the end of the `charon` section of `strongswan.conf`.
    pub extra_charon: String,
    /// Log IKE and child SA keys (`ike = 4`, `chd = 4`), for [`Charon::ike_keys`] and
    /// [`Charon::child_keys`]. Off by default; `esp` logging stays at 1 either way.
    pub log_keys: bool,
    /// IKE fragmentation (`fragmentation = yes|no`); `None`: strongSwan's default (yes).
    pub fragmentation: Option<bool>,
    /// charon installs routes for its children's selectors (into `ipsec0`, table 220); off for
    /// a route-based setup where a routing daemon owns the routes (`install_routes = no` and,
    /// because kernel-libipsec installs its routes regardless, `routing_table = 0`).
    pub install_routes: bool,
}

impl CharonSpec {
    fn lab_side(lab: &Lab, a: bool) -> CharonSpec {
        let wan_a: IpAddr = lab.gw_a_wan().parse().expect("lab address");
        let seen_a: IpAddr = lab.gw_a_seen_by_b().parse().expect("lab address");
        let wan_b: IpAddr = lab.gw_b_wan().parse().expect("lab address");
        let (local_addr, remote_addr) = if a { (wan_a, wan_b) } else { (wan_b, seen_a) };
        let (ids, ts) = (["gwA", "gwB"], [SITE_A, SITE_B]);
        let (l, r) = if a { (0, 1) } else { (1, 0) };
        CharonSpec {
            name: "s2s".into(),
            child: "net".into(),
            local_addr,
            remote_addr,
            local_id: ids[l].into(),
            remote_id: ids[r].into(),
            auth: PeerAuth::Psk(LAB_PSK.into()),
            proposals: vec!["aes128gcm16-prfsha256-x25519".into()],
            esp_proposals: vec!["aes128gcm16".into()],
            local_ts: vec![ts[l].into()],
            remote_ts: vec![ts[r].into()],
            start_action: None,
            dpd_delay: None,
            rekey_time: None,
            child_rekey_time: None,
            extra_conn: String::new(),
            extra_child: String::new(),
            extra_charon: String::new(),
            log_keys: false,
            fragmentation: None,
            install_routes: true,
        }
    }

    /// gwA of the lab: WAN address to gwB's, `gwA` ↔ `gwB`, site A ↔ site B, PSK [`LAB_PSK`],
    /// `aes128gcm16-prfsha256-x25519` / `aes128gcm16`, connection `s2s`, child `net`.
    pub fn lab_gw_a(lab: &Lab) -> CharonSpec {
        CharonSpec::lab_side(lab, true)
    }

    /// gwB of the lab, the mirror of [`CharonSpec::lab_gw_a`] (its peer is the NAT's public
    /// address when the lab has a NAT).
    pub fn lab_gw_b(lab: &Lab) -> CharonSpec {
        CharonSpec::lab_side(lab, false)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str, v: &str| {
            Err(StrongswanError::Config(format!(
                "{what} {v:?}: quotes, braces and line breaks are not allowed"
            )))
        };
        for (what, v) in [("connection name", &self.name), ("child name", &self.child)] {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(StrongswanError::Config(format!(
                    "{what} {v:?}: expected letters, digits, '-' and '_'"
                )));
            }
        }
        let mut values = vec![("local id", &self.local_id), ("remote id", &self.remote_id)];
        values.extend(self.proposals.iter().map(|p| ("proposal", p)));
        values.extend(self.esp_proposals.iter().map(|p| ("ESP proposal", p)));
        values.extend(self.local_ts.iter().map(|p| ("local TS", p)));
        values.extend(self.remote_ts.iter().map(|p| ("remote TS", p)));
        for o in [
            &self.start_action,
            &self.dpd_delay,
            &self.rekey_time,
            &self.child_rekey_time,
        ]
        .into_iter()
        .flatten()
        {
            values.push(("option", o));
        }
        for (what, v) in values {
            if v.contains(['"', '{', '}', '\n', '\r']) {
                return bad(what, v);
            }
        }
        if self.proposals.is_empty() || self.esp_proposals.is_empty() {
            return Err(StrongswanError::Config(
                "at least one IKE and one ESP proposal are needed".into(),
            ));
        }
        Ok(())
    }

    /// The `strongswan.conf` of an instance living in `dir`.
    pub fn strongswan_conf(&self, dir: &Path) -> String {
        let d = dir.display();
        let levels = if self.log_keys {
            "default = 1\n      ike = 4\n      chd = 4\n      cfg = 2\n      esp = 1"
        } else {
            "default = 1\n      ike = 2\n      cfg = 2\n      esp = 1"
        };
        format!(
            "# Written by topology::strongswan.\n\
             charon {{\n  load = {PLUGINS}\n  install_routes = {routes}\n  \
             filelog {{\n    log {{\n      path = \"{d}/charon.log\"\n      {levels}\n      \
             flush_line = yes\n      ike_name = yes\n      append = no\n    }}\n  }}\n  \
             plugins {{\n    vici {{\n      socket = \"unix://{d}/charon.vici\"\n    }}\n  }}\n\
             {extra}\n}}\n\
             swanctl {{\n  socket = \"unix://{d}/charon.vici\"\n}}\n",
            extra = self.extra_charon,
            routes = if self.install_routes {
                "yes"
            } else {
                "no\n  routing_table = 0"
            },
        )
    }

    /// The `swanctl.conf`: the connection, its child and the PSK secret (certificates are
    /// files next to it).
    pub fn swanctl_conf(&self) -> String {
        let mut c = String::from("# Written by topology::strongswan.\nconnections {\n");
        let _ = writeln!(c, "  {} {{", self.name);
        let mut line = |k: &str, v: &str| {
            let _ = writeln!(c, "    {k} = {v}");
        };
        line("version", "2");
        line("local_addrs", &self.local_addr.to_string());
        line("remote_addrs", &self.remote_addr.to_string());
        line("proposals", &self.proposals.join(", "));
        line("encap", "yes");
        if let Some(d) = &self.dpd_delay {
            line("dpd_delay", d);
        }
        if let Some(r) = &self.rekey_time {
            line("rekey_time", r);
        }
        if let Some(f) = self.fragmentation {
            line("fragmentation", if f { "yes" } else { "no" });
        }
        let (auth, certs) = match &self.auth {
            PeerAuth::Psk(_) => ("psk", false),
            PeerAuth::Pubkey { .. } => ("pubkey", true),
        };
        if certs {
            let _ = writeln!(c, "    send_cert = always");
        }
        let _ = writeln!(
            c,
            "    local {{\n      auth = {auth}\n      id = \"{}\"{}\n    }}",
            self.local_id,
            if certs {
                "\n      certs = local.pem"
            } else {
                ""
            }
        );
        let _ = writeln!(
            c,
            "    remote {{\n      auth = {auth}\n      id = \"{}\"\n    }}",
            self.remote_id
        );
        let _ = writeln!(c, "    children {{\n      {} {{", self.child);
        let mut cl = |k: &str, v: &str| {
            let _ = writeln!(c, "        {k} = {v}");
        };
        cl("mode", "tunnel");
        cl("local_ts", &self.local_ts.join(", "));
        cl("remote_ts", &self.remote_ts.join(", "));
        cl("esp_proposals", &self.esp_proposals.join(", "));
        if let Some(s) = &self.start_action {
            cl("start_action", s);
        }
        if let Some(r) = &self.child_rekey_time {
            cl("rekey_time", r);
        }
        for l in self.extra_child.lines() {
            let _ = writeln!(c, "        {}", l.trim());
        }
        c.push_str("      }\n    }\n");
        for l in self.extra_conn.lines() {
            let _ = writeln!(c, "    {}", l.trim());
        }
        c.push_str("  }\n}\n");
        if let PeerAuth::Psk(secret) = &self.auth {
            let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
            let _ = write!(
                c,
                "secrets {{\n  ike-psk {{\n    id-a = \"{}\"\n    id-b = \"{}\"\n    \
                 secret = 0x{hex}\n  }}\n}}\n",
                self.local_id, self.remote_id
            );
        }
        c
    }
}

/// A child SA as `swanctl --list-sas` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChildSaInfo {
    /// Child configuration name (`net`).
    pub name: String,
    /// charon's unique id of this child SA (`net{3}`).
    pub unique_id: u32,
    /// Its state (`INSTALLED`, `REKEYED`…).
    pub state: String,
    /// `TUNNEL` or `TRANSPORT`.
    pub mode: String,
    /// ESP is UDP-encapsulated.
    pub encap: bool,
    /// Inbound SPI (chosen by this side).
    pub spi_in: u32,
    /// Outbound SPI (chosen by the peer).
    pub spi_out: u32,
    /// Encryption algorithm (`AES_GCM_16`, `AES_CBC`).
    pub encr_alg: String,
    /// Encryption key size in bits.
    pub encr_keysize: Option<u32>,
    /// Integrity algorithm, for non-AEAD suites (`HMAC_SHA2_256_128`).
    pub integ_alg: Option<String>,
    /// Bytes received (inner packets).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Local traffic selectors.
    pub local_ts: Vec<String>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<String>,
}

/// An IKE SA as `swanctl --list-sas` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IkeSaInfo {
    /// Connection name (`s2s`).
    pub name: String,
    /// charon's unique id of this IKE SA (`s2s[2]`).
    pub unique_id: u32,
    /// Its state (`CONNECTING`, `ESTABLISHED`, `REKEYED`…).
    pub state: String,
    /// This side initiated the IKE SA.
    pub initiator: bool,
    /// The initiator's SPI.
    pub initiator_spi: u64,
    /// The responder's SPI (0 until the responder answered).
    pub responder_spi: u64,
    /// Local address.
    pub local_host: String,
    /// Remote address.
    pub remote_host: String,
    /// Local identity.
    pub local_id: String,
    /// Remote identity.
    pub remote_id: String,
    /// Encryption algorithm (`AES_GCM_16`).
    pub encr_alg: String,
    /// Encryption key size in bits.
    pub encr_keysize: Option<u32>,
    /// Integrity algorithm, for non-AEAD suites (`HMAC_SHA2_256_128`).
    pub integ_alg: Option<String>,
    /// PRF (`PRF_HMAC_SHA2_256`).
    pub prf_alg: String,
    /// Key exchange group (`CURVE_25519`).
    pub dh_group: String,
    /// Seconds since it was established (`None` while not established).
    pub established: Option<u64>,
    /// Its child SAs.
    pub children: Vec<ChildSaInfo>,
}

impl IkeSaInfo {
    /// This side's SPI.
    pub fn local_spi(&self) -> u64 {
        if self.initiator {
            self.initiator_spi
        } else {
            self.responder_spi
        }
    }

    /// The peer's SPI.
    pub fn remote_spi(&self) -> u64 {
        if self.initiator {
            self.responder_spi
        } else {
            self.initiator_spi
        }
    }

    /// The first child SA of this name in state `INSTALLED`.
    pub fn installed_child(&self, name: &str) -> Option<&ChildSaInfo> {
        self.children
            .iter()
            .find(|c| c.name == name && c.state == "INSTALLED")
    }
}

/// A vici message as `swanctl --pretty` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Vici {
    Value(String),
    List(Vec<String>),
    Section(Vec<(String, Vici)>),
}

impl Vici {
    fn entries(&self) -> &[(String, Vici)] {
        match self {
            Vici::Section(e) => e,
            _ => &[],
        }
    }

    fn get(&self, key: &str) -> Option<&Vici> {
        self.entries()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn str(&self, key: &str) -> String {
        match self.get(key) {
            Some(Vici::Value(v)) => v.clone(),
            _ => String::new(),
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Vici::List(v)) => v.clone(),
            _ => Vec::new(),
        }
    }

    fn num(&self, key: &str) -> Option<u64> {
        self.str(key).parse().ok()
    }
}

/// Parses `swanctl --pretty` output into its top-level messages (`list-sa event`…).
fn parse_pretty(text: &str) -> Result<Vec<(String, Vici)>> {
    enum Open {
        Section(String, Vec<(String, Vici)>),
        List(String, Vec<String>),
    }
    let mut stack: Vec<Open> = vec![Open::Section(String::new(), Vec::new())];
    let err = |n: usize, l: &str| StrongswanError::Parse(format!("line {}: {l:?}", n + 1));
    for (n, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(Open::List(_, items)) = stack.last_mut() {
            if l == "]" {
                let Some(Open::List(k, items)) = stack.pop() else {
                    unreachable!()
                };
                match stack.last_mut() {
                    Some(Open::Section(_, e)) => e.push((k, Vici::List(items))),
                    _ => return Err(err(n, l)),
                }
            } else {
                items.push(l.to_string());
            }
            continue;
        }
        if l == "}" {
            if stack.len() < 2 {
                return Err(err(n, l));
            }
            let Some(Open::Section(k, e)) = stack.pop() else {
                return Err(err(n, l));
            };
            match stack.last_mut() {
                Some(Open::Section(_, p)) => p.push((k, Vici::Section(e))),
                _ => return Err(err(n, l)),
            }
        } else if let Some((k, v)) = l.split_once(" = ") {
            if v == "[" {
                stack.push(Open::List(k.to_string(), Vec::new()));
            } else {
                match stack.last_mut() {
                    Some(Open::Section(_, e)) => e.push((k.to_string(), Vici::Value(v.into()))),
                    _ => return Err(err(n, l)),
                }
            }
        } else if let Some(k) = l.strip_suffix('{') {
            stack.push(Open::Section(k.trim_end().to_string(), Vec::new()));
        } else if let Some(k) = l.strip_suffix(" =") {
            // An empty value.
            match stack.last_mut() {
                Some(Open::Section(_, e)) => e.push((k.to_string(), Vici::Value(String::new()))),
                _ => return Err(err(n, l)),
            }
        } else {
            return Err(err(n, l));
        }
    }
    match (stack.pop(), stack.is_empty()) {
        (Some(Open::Section(_, top)), true) => Ok(top),
        _ => Err(StrongswanError::Parse("unbalanced braces".into())),
    }
}

fn hex_u64(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap_or(0)
}

fn hex_u32(s: &str) -> u32 {
    u32::from_str_radix(s, 16).unwrap_or(0)
}

/// Parses `swanctl --list-sas --pretty` output.
pub fn parse_list_sas(text: &str) -> Result<Vec<IkeSaInfo>> {
    let mut sas = Vec::new();
    for (event, msg) in parse_pretty(text)? {
        if event != "list-sa event" {
            continue;
        }
        for (name, ike) in msg.entries() {
            let established = ike.num("established");
            let ike_integ = ike.str("integ-alg");
            let mut info = IkeSaInfo {
                name: name.clone(),
                unique_id: ike.num("uniqueid").unwrap_or(0) as u32,
                state: ike.str("state"),
                initiator: ike.str("initiator") == "yes",
                initiator_spi: hex_u64(&ike.str("initiator-spi")),
                responder_spi: hex_u64(&ike.str("responder-spi")),
                local_host: ike.str("local-host"),
                remote_host: ike.str("remote-host"),
                local_id: ike.str("local-id"),
                remote_id: ike.str("remote-id"),
                encr_alg: ike.str("encr-alg"),
                encr_keysize: ike.num("encr-keysize").map(|k| k as u32),
                integ_alg: (!ike_integ.is_empty()).then_some(ike_integ),
                prf_alg: ike.str("prf-alg"),
                dh_group: ike.str("dh-group"),
                established,
                children: Vec::new(),
            };
            if let Some(children) = ike.get("child-sas") {
                for (_, c) in children.entries() {
                    let integ = c.str("integ-alg");
                    info.children.push(ChildSaInfo {
                        name: c.str("name"),
                        unique_id: c.num("uniqueid").unwrap_or(0) as u32,
                        state: c.str("state"),
                        mode: c.str("mode"),
                        encap: c.str("encap") == "yes",
                        spi_in: hex_u32(&c.str("spi-in")),
                        spi_out: hex_u32(&c.str("spi-out")),
                        encr_alg: c.str("encr-alg"),
                        encr_keysize: c.num("encr-keysize").map(|k| k as u32),
                        integ_alg: (!integ.is_empty()).then_some(integ),
                        bytes_in: c.num("bytes-in").unwrap_or(0),
                        bytes_out: c.num("bytes-out").unwrap_or(0),
                        packets_in: c.num("packets-in").unwrap_or(0),
                        packets_out: c.num("packets-out").unwrap_or(0),
                        local_ts: c.list("local-ts"),
                        remote_ts: c.list("remote-ts"),
                    });
                }
            }
            sas.push(info);
        }
    }
    Ok(sas)
}

/// The keys of one ESP SA as charon logged them (`chd = 4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChildSa {
    /// Unique id of the IKE SA it was negotiated on (the `<s2s|N>` log prefix).
    pub ike_sa: u32,
    /// Child configuration name.
    pub child: String,
    /// charon's unique id of the child SA (`net{N}`).
    pub child_id: u32,
    /// Its SPI.
    pub spi: u32,
    /// Inbound (this side decrypts) or outbound.
    pub inbound: bool,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
    /// This side initiated the exchange that created the SA (IKE_AUTH or CREATE_CHILD_SA), so
    /// outbound SAs use the initiator's keys.
    pub initiator: bool,
    /// Encryption key; for AES-GCM the key followed by the 4-byte salt (RFC 4106), as
    /// Wireshark's `esp_sa` table and scapy's `crypt_key` want it.
    pub encr_key: Vec<u8>,
    /// Integrity key (non-AEAD suites only).
    pub integ_key: Option<Vec<u8>>,
}

/// The keys of one IKE SA as charon logged them (`ike = 4`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoggedIkeSa {
    /// charon's unique id of the IKE SA (`s2s[N]`).
    pub ike_sa: u32,
    /// The initiator's SPI, when the log shows it (IKE_SA_INIT; see [`Charon::ike_keys`]).
    pub initiator_spi: Option<u64>,
    /// The responder's SPI, likewise.
    pub responder_spi: Option<u64>,
    /// SKEYSEED.
    pub skeyseed: Vec<u8>,
    /// SK_d.
    pub sk_d: Vec<u8>,
    /// SK_ai (empty with AEAD).
    pub sk_ai: Vec<u8>,
    /// SK_ar (empty with AEAD).
    pub sk_ar: Vec<u8>,
    /// SK_ei (key and salt with AES-GCM).
    pub sk_ei: Vec<u8>,
    /// SK_er.
    pub sk_er: Vec<u8>,
    /// SK_pi.
    pub sk_pi: Vec<u8>,
    /// SK_pr.
    pub sk_pr: Vec<u8>,
}

/// One line of charon's file log: thread, group, IKE SA unique id, message.
struct LogLine<'a> {
    thread: &'a str,
    ike: u32,
    msg: &'a str,
}

fn split_log_line(line: &str) -> Option<LogLine<'_>> {
    let (head, rest) = line.split_once(' ')?;
    let (thread, group) = head.split_once('[')?;
    if thread.is_empty() || !thread.bytes().all(|b| b.is_ascii_digit()) || !group.ends_with(']') {
        return None;
    }
    let (ike, msg) = match rest.strip_prefix('<') {
        Some(r) => {
            let (tag, msg) = r.split_once("> ")?;
            let id = tag.rsplit('|').next().unwrap_or(tag);
            (id.parse().unwrap_or(0), msg)
        }
        None => (0, rest),
    };
    Some(LogLine { thread, ike, msg })
}

/// A hex dump in progress: `label => N bytes @ 0x…` then lines `  16: 01 02 …  ascii`.
struct Dump {
    label: String,
    ike: u32,
    want: usize,
    bytes: Vec<u8>,
}

/// Splits a log into completed hex dumps and plain lines, in order, per thread.
enum LogItem<'a> {
    Line(LogLine<'a>),
    Dump(&'a str, Dump),
}

fn log_items(log: &str) -> Vec<LogItem<'_>> {
    let mut open: HashMap<&str, Dump> = HashMap::new();
    let mut items = Vec::new();
    for line in log.lines() {
        let Some(l) = split_log_line(line) else {
            continue;
        };
        if let Some(d) = open.get_mut(l.thread) {
            let t = l.msg.trim_start();
            if let Some((off, hex)) = t.split_once(": ") {
                if off.parse::<usize>().ok() == Some(d.bytes.len()) {
                    let n = (d.want - d.bytes.len()).min(16);
                    let got: Vec<u8> = hex
                        .split(' ')
                        .take(n)
                        .filter_map(|h| u8::from_str_radix(h, 16).ok())
                        .collect();
                    if got.len() == n {
                        d.bytes.extend(got);
                        if d.bytes.len() == d.want {
                            let d = open.remove(l.thread).expect("open dump");
                            items.push(LogItem::Dump(l.thread, d));
                        }
                        continue;
                    }
                }
            }
            open.remove(l.thread);
        }
        if let Some((label, rest)) = l.msg.split_once(" => ") {
            if let Some(n) = rest
                .split(" bytes @ ")
                .next()
                .and_then(|n| n.parse::<usize>().ok())
            {
                let d = Dump {
                    label: label.trim().to_string(),
                    ike: l.ike,
                    want: n,
                    bytes: Vec::new(),
                };
                if n == 0 {
                    items.push(LogItem::Dump(l.thread, d));
                } else {
                    open.insert(l.thread, d);
                }
                continue;
            }
        }
        items.push(LogItem::Line(l));
    }
    items
}

/// The ESP SA keys in a charon log written with `chd = 4` (as [`CharonSpec::log_keys`] sets),
/// each SA once, in the order they were installed.
pub fn parse_child_keys(log: &str) -> Vec<LoggedChildSa> {
    #[derive(Default)]
    struct Thread {
        initiator: bool,
        child: (String, u32),
        keys: HashMap<&'static str, Vec<u8>>,
        pending: Option<bool>,
    }
    let mut threads: HashMap<&str, Thread> = HashMap::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for item in log_items(log) {
        match item {
            LogItem::Dump(thread, d) => {
                let key = match d.label.as_str() {
                    "encryption initiator key" => "ei",
                    "encryption responder key" => "er",
                    "integrity initiator key" => "ai",
                    "integrity responder key" => "ar",
                    _ => continue,
                };
                threads.entry(thread).or_default().keys.insert(key, d.bytes);
            }
            LogItem::Line(l) => {
                let t = threads.entry(l.thread).or_default();
                let msg = l.msg.trim();
                if let Some(rest) = msg.strip_prefix("parsed ") {
                    // "parsed IKE_AUTH response 1 [ … ]"
                    let mut w = rest.split_whitespace();
                    if let (Some(_), Some(kind)) = (w.next(), w.next()) {
                        t.initiator = kind == "response";
                    }
                } else if let Some(rest) = msg.strip_prefix("CHILD_SA ") {
                    if rest.contains("state change: CREATED => INSTALLING") {
                        let name = rest.split(' ').next().unwrap_or_default();
                        if let Some((n, id)) = name.split_once('{') {
                            let id = id.trim_end_matches('}').parse().unwrap_or(0);
                            t.child = (n.to_string(), id);
                            t.keys.clear();
                        }
                    } else if rest.contains("=> INSTALLED") {
                        t.keys.clear();
                    }
                } else if msg.ends_with(" ESP SA")
                    && (msg.starts_with("adding ") || msg.starts_with("registering "))
                {
                    t.pending = Some(msg.contains(" inbound "));
                } else if let (Some(rest), Some(inbound)) = (msg.strip_prefix("SPI 0x"), t.pending)
                {
                    t.pending = None;
                    // "SPI 0x913c3de1, src 10.200.0.2 dst 10.200.0.1"
                    let mut w = rest.split([',', ' ']).filter(|s| !s.is_empty());
                    let spi = w.next().map(hex_u32);
                    let (src, dst) = match (w.next(), w.next(), w.next(), w.next()) {
                        (Some("src"), Some(s), Some("dst"), Some(d)) => (s.parse(), d.parse()),
                        _ => continue,
                    };
                    let (Some(spi), Ok(src), Ok(dst)) = (spi, src, dst) else {
                        continue;
                    };
                    // Outbound SAs of the exchange's initiator use the initiator's keys.
                    let (e, a) = if inbound != t.initiator {
                        ("ei", "ai")
                    } else {
                        ("er", "ar")
                    };
                    let Some(encr_key) = t.keys.get(e).cloned() else {
                        continue;
                    };
                    if !seen.insert((spi, inbound)) {
                        continue;
                    }
                    out.push(LoggedChildSa {
                        ike_sa: l.ike,
                        child: t.child.0.clone(),
                        child_id: t.child.1,
                        spi,
                        inbound,
                        src,
                        dst,
                        initiator: t.initiator,
                        encr_key,
                        integ_key: t.keys.get(a).cloned(),
                    });
                }
            }
        }
    }
    out
}

/// The IKE SA keys in a charon log written with `ike = 4` (as [`CharonSpec::log_keys`] sets),
/// in the order they were derived. SPIs come from the NAT detection data of the IKE_SA_INIT
/// exchange; an IKE SA created by rekeying has none in the log ([`Charon::ike_keys`] fills
/// them in from the live SAs).
pub fn parse_ike_keys(log: &str) -> Vec<LoggedIkeSa> {
    let mut out: Vec<LoggedIkeSa> = Vec::new();
    // Per thread: index into `out` of the key block being logged, and the IKE SA it was logged
    // under (a rekeyed IKE SA's keys are logged under the old one).
    let mut current: HashMap<&str, (usize, u32)> = HashMap::new();
    let mut spis: HashMap<u32, (u64, u64)> = HashMap::new();
    for item in log_items(log) {
        match item {
            LogItem::Dump(thread, d) => {
                if d.label == "natd_chunk" && d.bytes.len() >= 16 {
                    let i = u64::from_be_bytes(d.bytes[..8].try_into().expect("8 bytes"));
                    let r = u64::from_be_bytes(d.bytes[8..16].try_into().expect("8 bytes"));
                    if i != 0 && r != 0 {
                        spis.insert(d.ike, (i, r));
                    }
                    continue;
                }
                if d.label == "SKEYSEED" {
                    out.push(LoggedIkeSa {
                        ike_sa: d.ike,
                        skeyseed: d.bytes,
                        ..LoggedIkeSa::default()
                    });
                    current.insert(thread, (out.len() - 1, d.ike));
                    continue;
                }
                let Some(&(idx, _)) = current.get(thread) else {
                    continue;
                };
                let k = &mut out[idx];
                let slot = match d.label.as_str() {
                    "Sk_d secret" => &mut k.sk_d,
                    "Sk_ai secret" => &mut k.sk_ai,
                    "Sk_ar secret" => &mut k.sk_ar,
                    "Sk_ei secret" => &mut k.sk_ei,
                    "Sk_er secret" => &mut k.sk_er,
                    "Sk_pi secret" => &mut k.sk_pi,
                    "Sk_pr secret" => &mut k.sk_pr,
                    _ => continue,
                };
                *slot = d.bytes;
            }
            LogItem::Line(l) => {
                // "IKE_SA s2s[2] state change: CONNECTING => ESTABLISHED", logged under <s2s|1>
                // right after the new SA's keys when rekeying.
                let Some(rest) = l.msg.trim().strip_prefix("IKE_SA ") else {
                    continue;
                };
                if !rest.contains("=> ESTABLISHED") {
                    continue;
                }
                let id = rest
                    .split(' ')
                    .next()
                    .and_then(|n| n.rsplit_once('['))
                    .and_then(|(_, id)| id.trim_end_matches(']').parse::<u32>().ok());
                if let (Some(id), Some(&(idx, under))) = (id, current.get(l.thread)) {
                    if id != under && l.ike == under && out[idx].ike_sa == under {
                        out[idx].ike_sa = id;
                    }
                }
            }
        }
    }
    for k in &mut out {
        if let Some(&(i, r)) = spis.get(&k.ike_sa) {
            k.initiator_spi = Some(i);
            k.responder_spi = Some(r);
        }
    }
    out
}

/// The PEM blocks of a text (`-----BEGIN …` to `-----END …-----` lines), each with its lines.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            cur = Some(String::new());
        }
        if let Some(b) = cur.as_mut() {
            b.push_str(line);
            b.push('\n');
            if line.starts_with("-----END ") {
                blocks.extend(cur.take());
            }
        }
    }
    blocks
}

/// Runs a command with a deadline; the output says nothing about a timeout, the bool does.
fn output_within(mut cmd: Command, timeout: Duration) -> std::io::Result<(Output, bool)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    fn drain(p: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(s) = child.try_wait()? {
            break (s, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait()?, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok((
        Output {
            status,
            stdout,
            stderr,
        },
        timed_out,
    ))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A charon running in a lab node; stopped (with its private `/run`) when dropped.
#[derive(Debug)]
pub struct Charon {
    node: Node,
    dir: PathBuf,
    spec: CharonSpec,
    child: Option<Child>,
}

impl Charon {
    /// Writes `strongswan.conf`, `swanctl.conf` and the credentials under `dir` (created if
    /// needed; not under `/run`, which charon gets a private copy of), starts charon in
    /// `node`'s namespace with a private `/run`, waits for its vici socket and loads the
    /// configuration. One instance per node (charon binds UDP 500 and 4500).
    pub fn start(lab: &Lab, node: Node, dir: &Path, spec: &CharonSpec) -> Result<Charon> {
        ensure_installed()?;
        spec.check()?;
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(io_err(format!("resolving {}", dir.display())))?;
        if dir.starts_with("/run") || dir.starts_with("/var/run") {
            return Err(StrongswanError::Config(format!(
                "{}: charon gets a private /run, so its directory must live elsewhere",
                dir.display()
            )));
        }
        let socket = dir.join("charon.vici");
        if socket.as_os_str().len() >= 100 {
            return Err(StrongswanError::Config(format!(
                "{}: too long for a Unix socket path",
                socket.display()
            )));
        }
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(io_err(format!("writing {}", p.display())))
        };
        for d in CRED_DIRS {
            let p = dir.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        write("strongswan.conf", &spec.strongswan_conf(&dir))?;
        write("swanctl.conf", &spec.swanctl_conf())?;
        if let PeerAuth::Pubkey {
            cert_pem,
            key_pem,
            ca_pem,
        } = &spec.auth
        {
            let certs = pem_blocks(cert_pem);
            write(
                "x509/local.pem",
                certs.first().map_or(cert_pem.as_str(), |c| c),
            )?;
            for (i, c) in certs.iter().enumerate().skip(1) {
                write(&format!("x509/chain-{i}.pem"), c)?;
            }
            write("private/local.pem", key_pem)?;
            write("x509ca/ca.pem", ca_pem)?;
        }
        for stale in ["charon.log", "charon.vici"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        // Fails with a clear error when the node does not exist.
        lab.exec(node, &["true"])?;
        let out =
            std::fs::File::create(dir.join("charon.out")).map_err(io_err("creating charon.out"))?;
        let err = out.try_clone().map_err(io_err("duplicating charon.out"))?;
        let mut cmd = lab.command(node, "unshare");
        // `ip netns exec`, `unshare` and `sh` all exec, so the child is charon itself, and its
        // mount namespace (with the tmpfs on /run) goes away with it.
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!("mount -t tmpfs tmpfs /run && exec {CHARON}"),
        ])
        .env("STRONGSWAN_CONF", dir.join("strongswan.conf"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        let child = cmd
            .spawn()
            .map_err(io_err(format!("starting charon in {node}")))?;
        let mut charon = Charon {
            node,
            dir,
            spec: spec.clone(),
            child: Some(child),
        };
        charon.wait_vici()?;
        let file = charon.dir.join("swanctl.conf");
        charon.swanctl_checked(
            "loading the configuration",
            &[
                "--load-all",
                "--noprompt",
                "--file",
                &file.to_string_lossy(),
            ],
            Duration::from_secs(10),
        )?;
        Ok(charon)
    }

    fn wait_vici(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            if self.dir.join("charon.vici").exists() {
                let (out, _) = self.swanctl_output(&["--stats"], Duration::from_secs(5))?;
                if out.status.success() {
                    return Ok(());
                }
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(StrongswanError::Timeout {
                    what: format!("charon in {} opening its vici socket", self.node),
                    waited: START_TIMEOUT,
                    detail: format!("charon output: {}", self.output()),
                    log: tail(&self.log(), 30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.out"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Fails if charon has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(c) = self.child.as_mut() else {
            return Err(StrongswanError::Exited {
                node: self.node.to_string(),
                status: "stopped".into(),
                output: String::new(),
                log: String::new(),
            });
        };
        match c.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(StrongswanError::Exited {
                node: self.node.to_string(),
                status: status.to_string(),
                output: self.output(),
                log: tail(&self.log(), 30),
            }),
            Err(e) => Err(io_err("checking on charon")(e)),
        }
    }

    /// The node charon runs in.
    pub fn node(&self) -> Node {
        self.node
    }

    /// The instance's directory (configuration, credentials, `charon.log`, vici socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The specification it was started with.
    pub fn spec(&self) -> &CharonSpec {
        &self.spec
    }

    /// charon's process id (`None` once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The vici URI `swanctl --uri` takes.
    pub fn vici_uri(&self) -> String {
        format!("unix://{}", self.dir.join("charon.vici").display())
    }

    fn swanctl_command(&self, args: &[&str]) -> Command {
        // The vici socket is a file: swanctl reaches it from any network namespace.
        let mut c = Command::new("swanctl");
        c.args(args)
            .arg("--uri")
            .arg(self.vici_uri())
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"));
        c
    }

    fn swanctl_output(&self, args: &[&str], timeout: Duration) -> Result<(Output, bool)> {
        output_within(self.swanctl_command(args), timeout).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StrongswanError::NotInstalled {
                missing: "swanctl".into(),
            },
            _ => io_err("running swanctl")(e),
        })
    }

    fn swanctl_checked(&self, what: &str, args: &[&str], timeout: Duration) -> Result<String> {
        let (out, timed_out) = self.swanctl_output(args, timeout)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let failed_load = text.contains("failed to load") || text.contains("config discarded");
        if timed_out || !out.status.success() || failed_load {
            return Err(StrongswanError::Swanctl {
                what: format!("{what} (charon in {})", self.node),
                cmd: format!("swanctl {} --uri {}", args.join(" "), self.vici_uri()),
                status: if timed_out {
                    format!("timed out after {timeout:?}")
                } else {
                    out.status.to_string()
                },
                output: text.trim().to_string(),
                log: tail(&self.log(), 30),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `swanctl` with these arguments against this charon (the `--uri` is added) and
    /// returns its standard output; fails on a non-zero exit or after [`IKE_TIMEOUT`].
    pub fn swanctl(&self, args: &[&str]) -> Result<String> {
        self.swanctl_checked("swanctl", args, IKE_TIMEOUT)
    }

    fn ike_op(&self, what: &str, args: &[&str]) -> Result<()> {
        let secs = IKE_TIMEOUT.as_secs().to_string();
        let mut a = args.to_vec();
        a.extend(["--timeout", &secs]);
        self.swanctl_checked(what, &a, IKE_TIMEOUT + Duration::from_secs(5))
            .map(|_| ())
    }

    /// Initiates a child SA (and its IKE SA if needed) and waits for the result
    /// (`swanctl --initiate --child`, at most [`IKE_TIMEOUT`]).
    pub fn initiate(&self, child: &str) -> Result<()> {
        self.ike_op(
            &format!("initiating child {child}"),
            &["--initiate", "--child", child],
        )
    }

    /// Deletes the connection's IKE SAs (and their children), telling the peer.
    pub fn terminate_ike(&self) -> Result<()> {
        let name = self.spec.name.clone();
        self.ike_op(
            &format!("terminating IKE SA {name}"),
            &["--terminate", "--ike", &name],
        )
    }

    /// Deletes the connection's child SAs (the IKE SA stays), telling the peer.
    pub fn terminate_child(&self) -> Result<()> {
        let child = self.spec.child.clone();
        self.ike_op(
            &format!("terminating child {child}"),
            &["--terminate", "--child", &child],
        )
    }

    /// Rekeys the connection's IKE SA (`swanctl --rekey --ike`).
    pub fn rekey_ike(&self) -> Result<()> {
        let name = self.spec.name.clone();
        self.swanctl_checked(
            &format!("rekeying IKE SA {name}"),
            &["--rekey", "--ike", &name],
            IKE_TIMEOUT,
        )
        .map(|_| ())
    }

    /// Rekeys the connection's child SA (`swanctl --rekey --child`).
    pub fn rekey_child(&self) -> Result<()> {
        let child = self.spec.child.clone();
        self.swanctl_checked(
            &format!("rekeying child {child}"),
            &["--rekey", "--child", &child],
            IKE_TIMEOUT,
        )
        .map(|_| ())
    }

    /// The IKE SAs and their children (`swanctl --list-sas --pretty`).
    pub fn list_sas(&self) -> Result<Vec<IkeSaInfo>> {
        let text = self.swanctl_checked(
            "listing SAs",
            &["--list-sas", "--pretty"],
            Duration::from_secs(10),
        )?;
        parse_list_sas(&text)
    }

    /// Waits until an IKE SA of the connection is `ESTABLISHED` with its child `INSTALLED`,
    /// and returns it.
    pub fn wait_established(&self, timeout: Duration) -> Result<IkeSaInfo> {
        let start = Instant::now();
        loop {
            let sas = self.list_sas()?;
            if let Some(sa) = sas.iter().find(|s| {
                s.name == self.spec.name
                    && s.state == "ESTABLISHED"
                    && s.installed_child(&self.spec.child).is_some()
            }) {
                return Ok(sa.clone());
            }
            if start.elapsed() >= timeout {
                return Err(StrongswanError::Timeout {
                    what: format!(
                        "charon in {}: IKE SA {} with child {} established",
                        self.node, self.spec.name, self.spec.child
                    ),
                    waited: timeout,
                    detail: format!("SAs: {sas:?}"),
                    log: tail(&self.log(), 40),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// charon's log (`charon.log`) so far.
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("charon.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The ESP SA keys charon logged (empty unless [`CharonSpec::log_keys`]).
    pub fn child_keys(&self) -> Vec<LoggedChildSa> {
        parse_child_keys(&self.log())
    }

    /// The IKE SA keys charon logged (empty unless [`CharonSpec::log_keys`]), with SPIs the
    /// log lacks (IKE SAs created by rekeying) taken from the live SAs when still there.
    pub fn ike_keys(&self) -> Vec<LoggedIkeSa> {
        let mut keys = parse_ike_keys(&self.log());
        if keys.iter().any(|k| k.initiator_spi.is_none()) {
            if let Ok(sas) = self.list_sas() {
                for k in keys.iter_mut().filter(|k| k.initiator_spi.is_none()) {
                    if let Some(sa) = sas.iter().find(|s| s.unique_id == k.ike_sa) {
                        k.initiator_spi = Some(sa.initiator_spi);
                        k.responder_spi = Some(sa.responder_spi);
                    }
                }
            }
        }
        keys
    }

    /// Stops charon (SIGTERM, then SIGKILL after 3 s) and reaps it; its TUN device, routes and
    /// private `/run` go with it. Returns its exit status (`None` if already stopped).
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.halt()
    }

    fn halt(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with the pid of our own child, which has not been reaped yet
            // (try_wait above said it is running), so the pid cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_SAS: &str = "list-sa event {
  s2s {
    uniqueid = 2
    version = 2
    state = ESTABLISHED
    local-host = 10.200.0.1
    local-port = 4500
    local-id = C=CH, O=esprit, CN=gwA
    remote-host = 10.200.0.2
    remote-id = gwB
    initiator = yes
    initiator-spi = 4f0dfcf0f25643f3
    responder-spi = 95f6f388e0e5e834
    encr-alg = AES_GCM_16
    encr-keysize = 128
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = CURVE_25519
    established = 3
    child-sas {
      net-1 {
        name = net
        uniqueid = 1
        state = INSTALLED
        mode = TUNNEL
        encap = yes
        spi-in = d02870dc
        spi-out = 82281e05
        encr-alg = AES_GCM_16
        encr-keysize = 128
        bytes-in = 168
        packets-in = 2
        bytes-out = 84
        packets-out = 1
        local-ts = [
          10.201.1.0/24
        ]
        remote-ts = [
          10.201.2.0/24
          fd00:201:2::/64
        ]
      }
    }
  }
}
list-sas reply {
}
";

    #[test]
    fn list_sas_is_parsed() {
        let sas = parse_list_sas(LIST_SAS).unwrap();
        assert_eq!(sas.len(), 1);
        let s = &sas[0];
        assert_eq!((s.name.as_str(), s.unique_id), ("s2s", 2));
        assert_eq!(s.state, "ESTABLISHED");
        assert_eq!(s.local_id, "C=CH, O=esprit, CN=gwA");
        assert_eq!(s.local_spi(), 0x4f0dfcf0f25643f3);
        assert_eq!(s.remote_spi(), 0x95f6f388e0e5e834);
        assert_eq!(s.established, Some(3));
        let c = s.installed_child("net").unwrap();
        assert_eq!((c.spi_in, c.spi_out), (0xd02870dc, 0x82281e05));
        assert_eq!((c.packets_in, c.packets_out, c.bytes_in), (2, 1, 168));
        assert_eq!(c.encr_keysize, Some(128));
        assert_eq!(c.integ_alg, None);
        assert_eq!(c.remote_ts, ["10.201.2.0/24", "fd00:201:2::/64"]);
        assert!(parse_list_sas("list-sa event {\n  s2s {\n").is_err());
        assert!(parse_list_sas("list-sas reply {\n}\n").unwrap().is_empty());
    }

    /// Excerpts of a real initiator log (strongSwan 5.9.8, `ike = 4`, `chd = 4`, `ike_name`).
    const LOG: &str = "\
05[IKE] <s2s|1> natd_chunk => 22 bytes @ 0x7f7148036680
05[IKE] <s2s|1>    0: 38 52 E8 F2 71 34 D0 7F 00 00 00 00 00 00 00 00  8R..q4..........
05[IKE] <s2s|1>   16: 78 7F 9C C1 00 00                                x.....
04[ENC] <s2s|1> parsed IKE_SA_INIT response 0 [ SA KE No N(NATD_S_IP) ]
04[IKE] <s2s|1> natd_chunk => 22 bytes @ 0x7f7150005a10
04[IKE] <s2s|1>    0: 38 52 E8 F2 71 34 D0 7F 6A 6F D5 01 D9 52 C7 ED  8R..q4..jo...R..
04[IKE] <s2s|1>   16: 0A C8 00 01 01 F4                                ......
04[IKE] <s2s|1> SKEYSEED => 32 bytes @ 0x7f715000c620
04[IKE] <s2s|1>    0: 64 40 58 95 49 04 12 19 0A 0F 19 A3 84 B6 43 A7  d@X.I.........C.
16[NET] <s2s|1> received packet: from 10.200.0.2[4500] to 10.200.0.1[4500] (260 bytes)
04[IKE] <s2s|1>   16: EA FB 79 EA 47 7B 7B 12 AD 6F 52 C2 DE 23 3E D9  ..y.G{{..oR..#>.
04[IKE] <s2s|1> Sk_d secret => 32 bytes @ 0x7f715000c620
04[IKE] <s2s|1>    0: 5D F2 44 A9 ED C8 C5 D0 A3 88 19 6D 04 3F 6D D8  ].D........m.?m.
04[IKE] <s2s|1>   16: B7 0C 03 AD 1F 67 5D 61 B3 AA 91 47 46 39 6B 2F  .....g]a...GF9k/
04[IKE] <s2s|1> Sk_ei secret => 20 bytes @ 0x7f715000c1c0
04[IKE] <s2s|1>    0: 8A 0F F8 80 3A CA D2 7C A6 92 A6 97 76 3D 7E E3  ....:..|....v=~.
04[IKE] <s2s|1>   16: 00 83 57 19                                      ..W.
04[IKE] <s2s|1> Sk_er secret => 20 bytes @ 0x7f715000c1d4
04[IKE] <s2s|1>    0: 42 75 3D 44 59 E5 58 38 B0 BD 23 06 57 AE 55 45  Bu=DY.X8..#.W.UE
04[IKE] <s2s|1>   16: 7E B2 1B 29                                      ~..)
16[ENC] <s2s|1> parsed IKE_AUTH response 1 [ IDr AUTH SA TSi TSr ]
16[CHD] <s2s|1> CHILD_SA net{1} state change: CREATED => INSTALLING
16[CHD] <s2s|1> encryption initiator key => 20 bytes @ 0x7f7158003a90
16[CHD] <s2s|1>    0: 79 74 DD BE D6 F3 C8 4A A9 A3 B5 C6 C5 6F AB C1  yt.....J.....o..
16[CHD] <s2s|1>   16: 7C 73 29 6F                                      |s)o
16[CHD] <s2s|1> encryption responder key => 20 bytes @ 0x7f7158004f20
16[CHD] <s2s|1>    0: 44 F8 EA 7D FE BD 23 DA 47 82 CE 80 57 D1 32 77  D..}..#.G...W.2w
16[CHD] <s2s|1>   16: AC 29 9C 46                                      .).F
16[CHD] <s2s|1> adding inbound ESP SA
16[CHD] <s2s|1>   SPI 0x913c3de1, src 10.200.0.2 dst 10.200.0.1
16[CHD] <s2s|1> adding outbound ESP SA
16[CHD] <s2s|1>   SPI 0xf4e228f8, src 10.200.0.1 dst 10.200.0.2
16[CHD] <s2s|1> CHILD_SA net{1} state change: INSTALLING => INSTALLED
12[ENC] <s2s|1> parsed CREATE_CHILD_SA response 2 [ SA No KE ]
12[IKE] <s2s|1> SKEYSEED => 2 bytes @ 0x7f2ad002df90
12[IKE] <s2s|1>    0: 01 02                                            ..
12[IKE] <s2s|1> Sk_ei secret => 1 bytes @ 0x7f2ad00387a0
12[IKE] <s2s|1>    0: 03                                               .
12[IKE] <s2s|1> IKE_SA s2s[2] state change: CONNECTING => ESTABLISHED
01[ENC] <s2s|2> parsed CREATE_CHILD_SA request 0 [ N(REKEY_SA) SA No TSi TSr ]
01[CHD] <s2s|2> CHILD_SA net{2} state change: CREATED => INSTALLING
01[CHD] <s2s|2> encryption initiator key => 2 bytes @ 0x7f2ac00017c0
01[CHD] <s2s|2>    0: AA BB                                            ..
01[CHD] <s2s|2> encryption responder key => 2 bytes @ 0x7f2ac00017a0
01[CHD] <s2s|2>    0: CC DD                                            ..
01[CHD] <s2s|2> adding inbound ESP SA
01[CHD] <s2s|2>   SPI 0xf2b2f7aa, src 10.200.0.2 dst 10.200.0.1
01[CHD] <s2s|2> registering outbound ESP SA
01[CHD] <s2s|2>   SPI 0x7e0dd2d3, src 10.200.0.1 dst 10.200.0.2
01[CHD] <s2s|2> CHILD_SA net{2} state change: INSTALLING => INSTALLED
12[ENC] <s2s|2> parsed INFORMATIONAL request 1 [ D ]
12[CHD] <s2s|2> adding outbound ESP SA
12[CHD] <s2s|2>   SPI 0x7e0dd2d3, src 10.200.0.1 dst 10.200.0.2
";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn child_keys_are_read_from_the_log() {
        let k = parse_child_keys(LOG);
        assert_eq!(k.len(), 4, "{k:#?}");
        // Initiator of IKE_AUTH: inbound uses the responder's key, outbound the initiator's.
        assert_eq!((k[0].spi, k[0].inbound), (0x913c3de1, true));
        assert_eq!(
            k[0].encr_key,
            hex("44f8ea7dfebd23da4782ce8057d13277ac299c46")
        );
        assert_eq!(k[0].src, "10.200.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (k[0].child.as_str(), k[0].child_id, k[0].ike_sa),
            ("net", 1, 1)
        );
        assert_eq!((k[1].spi, k[1].inbound), (0xf4e228f8, false));
        assert_eq!(
            k[1].encr_key,
            hex("7974ddbed6f3c84aa9a3b5c6c56fabc17c73296f")
        );
        assert!(k[1].initiator && k[1].integ_key.is_none());
        // Responder of the rekeying: inbound uses the initiator's key; the outbound SA is
        // registered with its keys, installed later on another thread, and listed once.
        assert_eq!(
            (k[2].spi, k[2].inbound, k[2].initiator),
            (0xf2b2f7aa, true, false)
        );
        assert_eq!(k[2].encr_key, [0xaa, 0xbb]);
        assert_eq!((k[3].spi, k[3].inbound), (0x7e0dd2d3, false));
        assert_eq!(k[3].encr_key, [0xcc, 0xdd]);
        assert_eq!((k[3].child_id, k[3].ike_sa), (2, 2));
    }

    #[test]
    fn ike_keys_are_read_from_the_log() {
        let k = parse_ike_keys(LOG);
        assert_eq!(k.len(), 2, "{k:#?}");
        assert_eq!(k[0].ike_sa, 1);
        assert_eq!(k[0].initiator_spi, Some(0x3852e8f27134d07f));
        assert_eq!(k[0].responder_spi, Some(0x6a6fd501d952c7ed));
        assert_eq!(k[0].skeyseed.len(), 32);
        assert_eq!(k[0].sk_d[..2], [0x5d, 0xf2]);
        assert_eq!(k[0].sk_ei, hex("8a0ff8803acad27ca692a697763d7ee300835719"));
        assert_eq!(k[0].sk_er, hex("42753d4459e55838b0bd230657ae55457eb21b29"));
        assert!(k[0].sk_ai.is_empty());
        // The rekeyed IKE SA's keys are logged under the old SA; the state change names it.
        assert_eq!((k[1].ike_sa, k[1].initiator_spi), (2, None));
        assert_eq!(k[1].sk_ei, [3]);
    }

    #[test]
    fn pem_blocks_are_split() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let two = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_blocks(&format!("junk\n{one}\n{two}")), [one, two]);
        assert!(pem_blocks("no PEM here").is_empty());
    }

    #[test]
    fn lab_specs_mirror_each_other() {
        let lab = Lab::new(crate::LabSpec::default());
        let (a, b) = (CharonSpec::lab_gw_a(&lab), CharonSpec::lab_gw_b(&lab));
        assert_eq!((a.local_addr, a.remote_addr), (b.remote_addr, b.local_addr));
        assert_eq!((a.local_id.as_str(), b.local_id.as_str()), ("gwA", "gwB"));
        assert_eq!(a.local_ts, b.remote_ts);
        let conf = a.swanctl_conf();
        assert!(conf.contains("local_addrs = 10.200.0.1\n"), "{conf}");
        assert!(conf.contains("remote_ts = 10.201.2.0/24\n"), "{conf}");
        // The PSK is written in hex, so no character of it needs quoting.
        assert!(conf.contains("secret = 0x612d6c6f6e67"), "{conf}");
        let nat = Lab::new(crate::LabSpec {
            nat: true,
            ..crate::LabSpec::default()
        });
        assert_eq!(
            CharonSpec::lab_gw_b(&nat).remote_addr.to_string(),
            crate::lab::NAT_PUBLIC
        );
        let mut bad = a.clone();
        bad.local_id = "x\"y".into();
        assert!(bad.check().is_err());
        bad = a;
        bad.name = "a b".into();
        assert!(bad.check().is_err());
    }
}
