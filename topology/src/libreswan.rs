//! Libreswan as a peer: Debian's `pluto` run in a node of a [`Lab`] with its own directory
//! (`ipsec.conf`, `ipsec.secrets`, an NSS database, the control socket), driven with `whack`.
//! Debian's `libreswan` package conflicts with strongSwan's, so `ci/install-libreswan.sh`
//! unpacks it into a directory of its own ([`root`]) instead of installing it. Its IKEv2 is complete; its ESP is the kernel's (XFRM), which this kernel
//! does not have: pluto establishes IKE SAs, derives the child keys (logged with
//! `plutodebug="all private"`) and then fails to install the child (`Add SA …: Function not
//! implemented`). What that leaves to check is in `docs/interop.md`.

use crate::lab::{Lab, Node};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Where `ci/install-libreswan.sh` unpacks Libreswan by default.
pub const DEFAULT_ROOT: &str = "/opt/esprit-libreswan";

/// Where Libreswan is unpacked: `$ESPRIT_LIBRESWAN_ROOT`, else [`DEFAULT_ROOT`].
pub fn root() -> PathBuf {
    std::env::var_os("ESPRIT_LIBRESWAN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// The pluto daemon.
pub fn pluto_path() -> PathBuf {
    root().join("usr/libexec/ipsec/pluto")
}

/// Fails unless pluto is unpacked, saying how to get it.
pub fn ensure_installed() -> Result<(), String> {
    let p = pluto_path();
    if p.exists() {
        Ok(())
    } else {
        Err(format!(
            "Libreswan is not unpacked ({} missing): run ./ci/install-libreswan.sh",
            p.display()
        ))
    }
}

/// One side's Libreswan connection (`conn peer`), PSK-authenticated with FQDN identities.
#[derive(Debug, Clone)]
pub struct PlutoSpec {
    /// Our outer address.
    pub local: String,
    /// The peer's outer address (as we see it).
    pub remote: String,
    /// Our identity (`@` is prepended: an FQDN).
    pub local_id: String,
    /// The peer's identity.
    pub remote_id: String,
    /// Our protected subnet.
    pub local_subnet: String,
    /// The peer's protected subnet.
    pub remote_subnet: String,
    /// `ike=` (Libreswan's syntax, e.g. `aes_gcm256-sha2_256-curve25519`).
    pub ike: String,
    /// `esp=` (e.g. `aes_gcm256`).
    pub esp: String,
    /// The pre-shared key.
    pub psk: String,
}

/// A running pluto.
pub struct Pluto {
    node: Node,
    dir: PathBuf,
    child: Option<Child>,
}

/// How long pluto may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

impl PlutoSpec {
    fn check(&self) -> Result<(), String> {
        for v in [
            &self.local,
            &self.remote,
            &self.local_id,
            &self.remote_id,
            &self.local_subnet,
            &self.remote_subnet,
            &self.ike,
            &self.esp,
            &self.psk,
        ] {
            if v.is_empty() || v.contains(['"', '\n', '\r']) {
                return Err(format!(
                    "libreswan setting {v:?}: empty, quotes or line breaks"
                ));
            }
        }
        Ok(())
    }

    /// The `ipsec.conf` text.
    pub fn ipsec_conf(&self) -> String {
        format!(
            "config setup\n    plutodebug=\"all private\"\n\nconn peer\n    left={}\n    right={}\n    \
             leftid=@{}\n    rightid=@{}\n    leftsubnet={}\n    rightsubnet={}\n    authby=secret\n    \
             ikev2=insist\n    ike={}\n    esp={}\n    auto=add\n",
            self.local,
            self.remote,
            self.local_id,
            self.remote_id,
            self.local_subnet,
            self.remote_subnet,
            self.ike,
            self.esp
        )
    }

    /// The `ipsec.secrets` text.
    pub fn secrets(&self) -> String {
        format!(
            "@{} @{} : PSK \"{}\"\n",
            self.local_id, self.remote_id, self.psk
        )
    }
}

impl Pluto {
    /// Writes the configuration and a fresh NSS database under `dir` and starts pluto in
    /// `node`'s namespace; returns once its control socket answers.
    pub fn start(lab: &Lab, node: Node, dir: &Path, spec: &PlutoSpec) -> Result<Pluto, String> {
        spec.check()?;
        ensure_installed()?;
        let _ = std::fs::remove_dir_all(dir);
        for d in ["nss", "run"] {
            std::fs::create_dir_all(dir.join(d)).map_err(io_err(format!("creating {d}")))?;
        }
        let dir = dir
            .canonicalize()
            .map_err(io_err("resolving the directory"))?;
        std::fs::write(dir.join("ipsec.conf"), spec.ipsec_conf())
            .map_err(io_err("writing ipsec.conf"))?;
        crate::ike::write_private(&dir.join("ipsec.secrets"), &spec.secrets())?;
        let nss = dir.join("nss");
        // What `ipsec initnss` does: an empty NSS database without a password.
        let init = std::process::Command::new("certutil")
            .args(["-N", "--empty-password", "-d"])
            .arg(format!("sql:{}", nss.display()))
            .output()
            .map_err(io_err("certutil (libnss3-tools)"))?;
        if !init.status.success() {
            return Err(format!(
                "certutil -N: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let log = std::fs::File::create(dir.join("pluto.log")).map_err(io_err("pluto.log"))?;
        let err = log.try_clone().map_err(io_err("pluto.log"))?;
        // pluto runs its helpers (addconn) from the compiled-in /usr/libexec/ipsec: in a mount
        // namespace of its own, the unpacked tree is bound there (`ip netns exec`, `unshare`
        // and `sh` all exec, so the child is pluto itself).
        let libexec = root().join("usr/libexec");
        let mut cmd = lab.command(node, "unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind '{}' /usr/libexec && exec '{}' \"$@\"",
                libexec.display(),
                pluto_path().display()
            ))
            .arg("pluto")
            .args(["--nofork", "--stderrlog", "--config"])
            .arg(dir.join("ipsec.conf"))
            .arg("--rundir")
            .arg(dir.join("run"))
            .arg("--nssdir")
            .arg(&nss)
            .arg("--secretsfile")
            .arg(dir.join("ipsec.secrets"))
            .arg("--ipsecdir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(io_err(format!("starting pluto in {node}")))?;
        let mut p = Pluto {
            node,
            dir,
            child: Some(child),
        };
        let start = Instant::now();
        while !p.log().contains("listening for IKE messages") || !p.ctl().exists() {
            if let Some(c) = p.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("pluto in {node} exited ({st}):\n{}", p.tail(30)));
                }
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(format!("pluto in {node} did not start:\n{}", p.tail(30)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Without ESP in the kernel every child fails; pluto would then revive the
        // connection again and again. The tests want one attempt.
        p.whack(lab, &["--impair", "revival"])?;
        Ok(p)
    }

    fn ctl(&self) -> PathBuf {
        self.dir.join("run").join("pluto.ctl")
    }

    /// Runs `whack --ctlsocket … ARGS` in pluto's namespace; its output.
    pub fn whack(&self, lab: &Lab, args: &[&str]) -> Result<String, String> {
        let (ctl, whack) = (self.ctl(), root().join("usr/libexec/ipsec/whack"));
        let mut all = vec![
            whack.to_str().unwrap_or(""),
            "--ctlsocket",
            ctl.to_str().unwrap_or(""),
        ];
        all.extend_from_slice(args);
        let out = lab.exec(self.node, &all).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    }

    /// Starts the connection (`--initiate`, without waiting for the outcome).
    pub fn initiate(&self, lab: &Lab) -> Result<String, String> {
        self.whack(lab, &["--initiate", "--asynchronous", "--name", "peer"])
    }

    /// Deletes the connection's IKE SA (and tells the peer).
    pub fn terminate(&self, lab: &Lab) -> Result<String, String> {
        self.whack(lab, &["--terminate", "--name", "peer"])
    }

    /// Rekeys the connection's IKE SA.
    pub fn rekey_ike(&self, lab: &Lab) -> Result<String, String> {
        self.whack(lab, &["--rekey-ike", "--name", "peer"])
    }

    /// pluto's log (stderr, with debugging).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pluto.log")).unwrap_or_default()
    }

    /// The log's lines that are not debugging (`| …`), the last `n` of them.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains(": | ")).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until the log has `n` lines containing `needle`.
    pub fn wait_log(&self, needle: &str, n: usize, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        while self.log().matches(needle).count() < n {
            if start.elapsed() > timeout {
                return Err(format!(
                    "pluto did not log {needle:?} ({n}) within {timeout:?}:\n{}",
                    self.tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The ESP keys pluto derived and tried to install, as (SPI, encryption key with salt):
    /// from each `ESP enckey:` dump and the `add_sa()` line after it naming the SPI.
    pub fn esp_keys(&self) -> Vec<(u32, Vec<u8>)> {
        parse_esp_keys(&self.log())
    }

    /// Stops pluto.
    pub fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pluto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// See [`Pluto::esp_keys`].
pub fn parse_esp_keys(log: &str) -> Vec<(u32, Vec<u8>)> {
    let mut keys = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    let mut collecting = false;
    for line in log.lines() {
        let Some((_, body)) = line.split_once("| ") else {
            continue;
        };
        if body.starts_with("ESP enckey:") {
            key = Some(Vec::new());
            collecting = true;
            continue;
        }
        if body.starts_with("ESP authkey:") {
            collecting = false;
            continue;
        }
        if collecting {
            // "  3b 26 8b de  47 d3 …   ;&..G..." : hex pairs, then the printable column.
            let hex = body.get(..body.len().min(54)).unwrap_or(body);
            if let Some(k) = key.as_mut() {
                k.extend(
                    hex.split_whitespace()
                        .filter(|w| w.len() == 2)
                        .filter_map(|w| u8::from_str_radix(w, 16).ok()),
                );
            }
            continue;
        }
        if body.contains("add_sa()") {
            let spi = body
                .split_once('[')
                .and_then(|(_, r)| r.split_once(']'))
                .and_then(|(s, _)| u32::from_str_radix(s, 16).ok());
            if let (Some(spi), Some(k)) = (spi, key.take()) {
                keys.push((spi, k));
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_keys_are_read_from_the_debug_log() {
        let log = "\
Dec  6 06:25:12.043262: | ESP enckey:
Dec  6 06:25:12.043264: |   3b 26 8b de  47 d3 1a 0e  af dd 68 75  75 8c b0 40   ;&..G.....huu..@
Dec  6 06:25:12.043266: |   df 5a cf c1  80 55 67 ba  be b7 ef fc  0b 05 c4 e5   .Z...Ug.........
Dec  6 06:25:12.043267: |   d4 9d 3c a2                                          ..<.
Dec  6 06:25:12.043269: | ESP authkey:
Dec  6 06:25:12.043271: |
Dec  6 06:25:12.043279: | kernel: add_sa() level=0 outbound tunnel 10.2.0.0/24-ALL->10.9.9.2[6c7278d1]==>10.9.9.1
";
        let k = parse_esp_keys(log);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].0, 0x6c7278d1);
        assert_eq!(k[0].1.len(), 36);
        assert_eq!(&k[0].1[..4], &[0x3b, 0x26, 0x8b, 0xde]);
        assert_eq!(&k[0].1[32..], &[0xd4, 0x9d, 0x3c, 0xa2]);
    }
}
