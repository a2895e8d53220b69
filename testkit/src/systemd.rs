//! systemd units in tests: reading a directive, and `systemd-analyze verify` in a scratch root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The values of `key` in `[section]` of a unit file's text, in order, with systemd's rule for
/// list settings applied: an empty assignment (`Key=`) resets what came before. Each value is
/// split on whitespace.
pub fn directive(text: &str, section: &str, key: &str) -> Vec<String> {
    let mut in_section = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name == section;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if in_section && k.trim() == key {
            if v.trim().is_empty() {
                out.clear();
            }
            out.extend(v.split_whitespace().map(str::to_string));
        }
    }
    out
}

/// The repository's `packaging/` directory.
pub fn packaging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .join("packaging")
}

/// Runs `systemd-analyze verify` on `units` inside a scratch root made of the host's system
/// units (`/usr/lib/systemd/system`, for the targets the units name), the units under test,
/// and a placeholder executable at every absolute path their `Exec*=` lines start, so that the
/// check is about the units, not about what is installed. Any complaint fails: a non-zero
/// exit, or any output (systemd only warns about unknown keys and bad values).
pub fn verify(units: &[PathBuf]) -> Result<(), String> {
    let root = crate::tmpdir(&format!(
        "units-{}",
        units
            .first()
            .and_then(|u| u.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let system = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&system).map_err(|e| e.to_string())?;
    let host = Path::new("/usr/lib/systemd/system");
    for entry in std::fs::read_dir(host).map_err(|e| format!("{}: {e}", host.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::copy(entry.path(), system.join(entry.file_name()))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut args = vec![format!("--root={}", root.display()), "verify".into()];
    for unit in units {
        let text = std::fs::read_to_string(unit).map_err(|e| format!("{}: {e}", unit.display()))?;
        for cmd in exec_commands(&text) {
            placeholder(&root.join(cmd.trim_start_matches('/')))?;
        }
        let name = unit.file_name().ok_or("a unit without a file name")?;
        std::fs::copy(unit, system.join(name)).map_err(|e| e.to_string())?;
        args.push(system.join(name).display().to_string());
    }
    let out = Command::new("systemd-analyze")
        .args(&args)
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    let _ = std::fs::remove_dir_all(&root);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("systemd-analyze verify ({}): {said}", out.status))
    }
}

/// The absolute program paths the `Exec*=` lines of a unit's text start (prefixes such as
/// `-` or `+` taken off).
fn exec_commands(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v))
        .filter_map(|v| v.split_whitespace().next())
        .map(|w| w.trim_start_matches(['-', '@', '+', '!', ':']).to_string())
        .filter(|w| w.starts_with('/'))
        .collect()
}

fn placeholder(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, "#!/bin/sh\n").map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}

/// A command that starts `program` with the privileges its unit (`unit_text`) grants, as far
/// as capabilities go: as root with only the unit's `CapabilityBoundingSet`, nothing
/// inheritable and no_new_privs (through `setpriv`), in network namespace `netns` if given.
/// Where RLIMIT_MEMLOCK cannot be made unlimited as the unit's `LimitMEMLOCK=infinity` makes
/// it (no `CAP_SYS_RESOURCE` here, as in some containers), `CAP_IPC_LOCK` is added: what the
/// daemons' lock-down falls back on then. Returns the command and whether it added it.
pub fn confined(unit_text: &str, netns: Option<&str>, program: &str) -> (Command, bool) {
    let mut caps: Vec<String> = directive(unit_text, "Service", "CapabilityBoundingSet")
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let ipc_lock = !memlock_unlimited_possible();
    if ipc_lock {
        caps.push("+ipc_lock".into());
    }
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "setpriv"]);
            c
        }
        None => Command::new("setpriv"),
    };
    cmd.arg(format!("--bounding-set=-all,{}", caps.join(",")))
        .args(["--inh-caps=-all", "--no-new-privs", "--", program]);
    (cmd, ipc_lock)
}

/// A daemon started the way its unit starts it, as far as capabilities go (see [`confined`]),
/// with a notification socket in `NOTIFY_SOCKET`, its stderr kept for the test's messages.
pub struct UnitDaemon {
    child: Option<std::process::Child>,
    /// Where the daemon's notifications arrive.
    pub notify: NotifySocket,
    ipc_lock: bool,
}

impl UnitDaemon {
    /// Starts `program ARGS` under the unit `unit_text`, in network namespace `netns` if given.
    pub fn start(
        tag: &str,
        unit_text: &str,
        netns: Option<&str>,
        program: &str,
        args: &[&std::ffi::OsStr],
    ) -> Self {
        let notify = NotifySocket::new(tag);
        let (mut cmd, ipc_lock) = confined(unit_text, netns, program);
        let child = cmd
            .args(args)
            .env("NOTIFY_SOCKET", notify.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program} under setpriv: {e}"));
        UnitDaemon {
            child: Some(child),
            notify,
            ipc_lock,
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Its permitted, effective and bounding capability sets, as masks.
    pub fn capabilities(&self) -> [u64; 3] {
        ["CapPrm", "CapEff", "CapBnd"].map(|set| crate::capabilities_of(self.pid(), set))
    }

    /// The mask of what a daemon that declares it keeps `runtime` should hold once set up
    /// here: `runtime`, plus `CAP_IPC_LOCK` when [`confined`] had to add it.
    pub fn expected(&self, runtime: &[u32]) -> u64 {
        let kept = runtime.iter().fold(0u64, |m, c| m | 1 << c);
        if self.ipc_lock {
            kept | 1 << 14
        } else {
            kept
        }
    }

    /// Sends SIGTERM, waits for `STOPPING=1` and the exit; returns the wait's outcome, the
    /// exit status and the daemon's stderr.
    pub fn stop(mut self) -> (Result<String, String>, std::process::ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let stopping = self
            .notify
            .wait_for("STOPPING=1", std::time::Duration::from_secs(20));
        let out = self
            .child
            .take()
            .expect("running")
            .wait_with_output()
            .expect("wait for the daemon");
        (
            stopping,
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for UnitDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// True when this process could raise RLIMIT_MEMLOCK to unlimited: it already is, or the
/// process has `CAP_SYS_RESOURCE`.
fn memlock_unlimited_possible() -> bool {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let unlimited = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .is_some_and(|l| l.split_whitespace().nth(4) == Some("unlimited"));
    unlimited || crate::capabilities_of(std::process::id(), "CapEff") & (1 << 24) != 0
}

/// The receiving end of a `NOTIFY_SOCKET`, as systemd holds it for a `Type=notify` service.
pub struct NotifySocket {
    sock: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a datagram socket in a fresh temporary directory.
    pub fn new(tag: &str) -> Self {
        let dir = crate::tmpdir(&format!("notify-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("notify directory");
        let path = dir.join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket { sock, path }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for a message with the line `line` (`READY=1`); returns it, or
    /// every message seen when none had it.
    pub fn wait_for(&self, line: &str, timeout: std::time::Duration) -> Result<String, String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(format!("no {line} within {timeout:?}; got {seen:?}"));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if msg.lines().any(|l| l == line) {
                        return Ok(msg);
                    }
                    seen.push(msg);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_per_section_with_resets() {
        let unit = "[Unit]\nAfter=a.target\n[Service]\n# After=comment\nAfter=x\n\
                    CapabilityBoundingSet=CAP_A CAP_B\nCapabilityBoundingSet=\n\
                    CapabilityBoundingSet=CAP_C\nExecStart=-/usr/bin/x --y\nExecReload=kill\n";
        assert_eq!(directive(unit, "Unit", "After"), ["a.target"]);
        assert_eq!(directive(unit, "Service", "After"), ["x"]);
        assert_eq!(
            directive(unit, "Service", "CapabilityBoundingSet"),
            ["CAP_C"]
        );
        assert!(directive(unit, "Install", "WantedBy").is_empty());
        assert_eq!(exec_commands(unit), ["/usr/bin/x"]);
    }
}
