//! Daemons a lab keeps running after the command that started them has exited
//! (`esprit-lab demo --keep`): their configurations, sockets and logs live in the lab's state
//! directory, `/run/esprit-lab/<lab>/`, with a `pids` file that `esprit-lab down` reads to
//! stop them before it removes the namespaces.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The state directory of lab `name`.
pub fn dir(name: &str) -> PathBuf {
    PathBuf::from("/run/esprit-lab").join(name)
}

/// Where a run on lab `name` keeps its configurations, sockets and logs, created: the lab's
/// state directory when its daemons are to outlive the run, a fresh temporary directory (the
/// caller removes it) otherwise.
pub fn run_dir(name: &str, keep: bool) -> Result<PathBuf, String> {
    let dir = if keep {
        dir(name)
    } else {
        std::env::temp_dir().join(format!("{name}-{}", std::process::id()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn pids_file(name: &str) -> PathBuf {
    dir(name).join("pids")
}

/// Records that process `pid` (`what`, e.g. "gwA esprit-ike") belongs to lab `name`.
pub fn record(name: &str, pid: u32, what: &str) -> Result<(), String> {
    let path = pids_file(name);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{pid} {what}").map_err(|e| format!("{}: {e}", path.display()))
}

/// The processes recorded for lab `name`: (pid, what).
pub fn recorded(name: &str) -> Vec<(u32, String)> {
    let Ok(text) = std::fs::read_to_string(pids_file(name)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (pid, what) = l.split_once(' ')?;
            Some((pid.parse().ok()?, what.to_string()))
        })
        .collect()
}

/// The programs a lab keeps running: its own daemons (`esprit-lab ike|dataplane`) and the
/// BGP lab's routing daemons (BIRD; FRR's zebra, bgpd and bfdd).
const KEPT_PROGRAMS: [&[u8]; 5] = [b"esprit-lab", b"bird", b"zebra", b"bgpd", b"bfdd"];

/// Whether `pid` is still one of the lab's daemons: alive, and one of [`KEPT_PROGRAMS`] (a pid
/// the kernel has given to something else since is left alone).
fn is_ours(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .next()
                .is_some_and(|arg0| KEPT_PROGRAMS.iter().any(|p| arg0.ends_with(p)))
        })
        .unwrap_or(false)
}

/// Sends signal `sig` to process `pid`.
pub(crate) fn signal(pid: u32, sig: i32) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid the caller started or checked to be one of the lab's
        // processes; no memory is involved.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

/// Marks every descriptor this process inherited (beyond stdin, stdout and stderr) close-on-exec,
/// so the daemons a lab starts do not inherit them. The one that matters: `flock
/// /tmp/esprit-netns.lock cargo test` hands its lock's descriptor down to the tests, and a
/// routing daemon or esprit process that outlived its test (`--keep`, or a crash) would hold the
/// lock, and block every later netns test, for as long as it ran. Rust opens its own descriptors
/// close-on-exec already, so only inherited ones change.
pub fn cloexec_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl(2) reading and setting the descriptor flags of a descriptor number; a
        // number that is not (or no longer) open fails with EBADF, and no memory is involved.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Stops every daemon recorded for lab `name` (SIGTERM, then SIGKILL after 5 s) and removes
/// its state directory. Returns what was stopped.
pub fn stop_all(name: &str) -> Vec<String> {
    let procs: Vec<(u32, String)> = recorded(name)
        .into_iter()
        .filter(|(pid, _)| is_ours(*pid))
        .collect();
    for (pid, _) in &procs {
        signal(*pid, libc::SIGTERM);
    }
    let start = Instant::now();
    while procs.iter().any(|(pid, _)| is_ours(*pid)) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (pid, _) in &procs {
        if is_ours(*pid) {
            signal(*pid, libc::SIGKILL);
        }
    }
    let _ = std::fs::remove_dir_all(dir(name));
    procs.into_iter().map(|(_, what)| what).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloexec(fd: i32) -> bool {
        // SAFETY: F_GETFD on a descriptor this test owns; no memory is involved.
        unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
    }

    #[test]
    fn inherited_descriptors_become_close_on_exec() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("/dev/null").unwrap();
        // A duplicate without FD_CLOEXEC, as `flock FILE cmd` hands its lock down.
        // SAFETY: dup(2) of an open descriptor; the new one is closed below.
        let fd = unsafe { libc::dup(f.as_raw_fd()) };
        assert!(fd > 2);
        assert!(!cloexec(fd));
        cloexec_inherited();
        let after = cloexec(fd);
        // SAFETY: closing the descriptor dup(2) returned, used by nothing else.
        unsafe { libc::close(fd) };
        assert!(after);
        assert!(cloexec(f.as_raw_fd()));
    }

    #[test]
    #[ignore = "needs root (writes /run/esprit-lab): ./ci/test.sh runs it as root"]
    fn records_survive_and_foreign_pids_are_left_alone() {
        esprit_testkit::require_root();
        let name = format!("kept-test-{}", std::process::id());
        std::fs::create_dir_all(dir(&name)).unwrap();
        record(&name, 1, "init, not ours").unwrap();
        record(&name, std::process::id(), "this test").unwrap();
        assert_eq!(recorded(&name).len(), 2);
        // Neither pid 1 nor this test binary is an esprit-lab process.
        assert!(!is_ours(1));
        assert!(!is_ours(std::process::id()));
        assert_eq!(stop_all(&name), Vec::<String>::new());
        assert!(!dir(&name).exists());
    }
}
