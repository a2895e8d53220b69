//! Least privilege for esprit's daemons: files holding secrets must be private, sockets are
//! created with their final mode, and a daemon, once set up, locks its memory, keeps itself out
//! of core dumps, sets no_new_privs and keeps only the capabilities it still needs (none for
//! esprit-ike, which may also switch to an unprivileged user).
//!
//! Capabilities and no_new_privs belong to a thread: call [`lock_down`] before the daemon
//! spawns its threads, which inherit the result.
//!
//! [`notify`] tells systemd (a `Type=notify` unit) when a daemon is ready, reloading or
//! stopping.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

pub mod notify;

/// `CAP_CHOWN`: change a file's owner (esprit-ike's control socket, for `daemon.user`).
pub const CAP_CHOWN: u32 = 0;
/// `CAP_SETGID`: set group ids and supplementary groups (switching to a configured user).
pub const CAP_SETGID: u32 = 6;
/// `CAP_SETUID`: set user ids (switching to a configured user).
pub const CAP_SETUID: u32 = 7;
/// `CAP_SETPCAP`: remove capabilities from the bounding set ([`lock_down`] does).
pub const CAP_SETPCAP: u32 = 8;
/// `CAP_NET_BIND_SERVICE`: bind ports below 1024 (IKE's 500 and 4500).
pub const CAP_NET_BIND_SERVICE: u32 = 10;
/// `CAP_NET_ADMIN`: netlink link changes (XDP attach and detach).
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_NET_RAW`: create AF_XDP sockets.
pub const CAP_NET_RAW: u32 = 13;
/// `CAP_IPC_LOCK`: lock memory beyond RLIMIT_MEMLOCK.
pub const CAP_IPC_LOCK: u32 = 14;
/// `CAP_SYS_ADMIN`: what `bpf(2)` required before Linux 5.8 split out `CAP_BPF`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON`: lets the BPF verifier accept pointer arithmetic on packet pointers with a
/// variable offset (the IPv4 header length); without it: "pointer arithmetic prohibited for
/// !root".
pub const CAP_PERFMON: u32 = 38;
/// `CAP_BPF`: `bpf(2)`: create maps, load programs (Linux 5.8 and later).
pub const CAP_BPF: u32 = 39;

/// The capabilities of every part, sorted, each once: what a service unit grants a daemon
/// (what it needs to start and what it keeps).
pub fn capability_union(parts: &[&[u32]]) -> Vec<u32> {
    let mut all: Vec<u32> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The name of a capability this crate names (`CAP_NET_ADMIN`), as systemd and capabilities(7)
/// write it.
pub fn cap_name(cap: u32) -> Option<&'static str> {
    Some(match cap {
        CAP_CHOWN => "CAP_CHOWN",
        CAP_SETGID => "CAP_SETGID",
        CAP_SETUID => "CAP_SETUID",
        CAP_SETPCAP => "CAP_SETPCAP",
        CAP_NET_BIND_SERVICE => "CAP_NET_BIND_SERVICE",
        CAP_NET_ADMIN => "CAP_NET_ADMIN",
        CAP_NET_RAW => "CAP_NET_RAW",
        CAP_IPC_LOCK => "CAP_IPC_LOCK",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_PERFMON => "CAP_PERFMON",
        CAP_BPF => "CAP_BPF",
        _ => return None,
    })
}

/// Why a file with secrets is refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// The file could not be examined.
    #[error("{path}: cannot read its permissions: {err}")]
    Stat {
        /// The file.
        path: String,
        /// The cause.
        err: io::Error,
    },
    /// Group or others have access to it.
    #[error(
        "{path} holds secrets but is accessible by group or others (mode {mode:04o}): \
         run `chmod 600 {path}`"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// Refuses a file holding secrets (keys, pre-shared keys) that group or others may read or
/// write: its mode must grant nothing beyond the owner (0600 or 0400).
pub fn check_private(path: &Path) -> Result<(), PrivateFileError> {
    let md = std::fs::metadata(path).map_err(|err| PrivateFileError::Stat {
        path: path.display().to_string(),
        err,
    })?;
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Exposed {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Creates a listening Unix stream socket at `path` whose file has `mode` from the start
/// (the socket's inode is given the mode before `bind(2)` creates the file, so there is no
/// moment with a wider one, whatever the umask), owned by group `gid` when given. A stale file
/// at `path` must have been removed by the caller.
pub fn bind_unix(path: &Path, mode: u32, gid: Option<u32>) -> io::Result<UnixListener> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is new and owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fchmod on a descriptor we own. On a not yet bound Unix socket it sets the mode
    // that bind(2) gives the socket file (masked by the umask, which only narrows it).
    if unsafe { libc::fchmod(sock.as_raw_fd(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `addr` is a valid sockaddr_un of the size given.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(g) = gid {
        // SAFETY: `c` is a valid NUL-terminated path; uid -1 leaves the owner alone.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, g) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The umask may have taken group bits away: set them explicitly.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }
    // SAFETY: listen(2) on a bound socket we own.
    if unsafe { libc::listen(sock.as_raw_fd(), 128) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixListener::from(sock))
}

/// A user to switch to: its ids and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Every group it belongs to (primary included).
    pub groups: Vec<u32>,
}

/// Looks a user up in the system's user database, with its groups.
pub fn lookup_user(name: &str) -> io::Result<User> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero passwd is a valid out-parameter.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer references a live buffer of the size given.
    let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    if out.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no user named {name:?}"),
        ));
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: `groups` has room for `n` entries; `c` is a valid string.
    let r = unsafe { libc::getgrouplist(c.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n) };
    if r < 0 {
        return Err(io::Error::other(format!(
            "user {name:?} belongs to more than {} groups",
            groups.len()
        )));
    }
    groups.truncate(n.max(0) as usize);
    Ok(User {
        name: name.to_string(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        groups,
    })
}

/// Looks a group id up by name.
pub fn lookup_group(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero group is a valid out-parameter.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer references a live buffer of the size given.
    let r = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    if out.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no group named {name:?}"),
        ));
    }
    Ok(gr.gr_gid)
}

/// What [`lock_down`] does.
#[derive(Debug, Clone, Default)]
pub struct LockDown {
    /// Switch to this user (groups, gid, uid) after everything that needs root is done.
    pub user: Option<User>,
    /// Capabilities to keep (effective and permitted); every other one goes, from the bounding
    /// set too.
    pub keep: Vec<u32>,
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; unused ones are zero.
    if unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } < 0
    {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn capset(keep: &[u32]) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    for &c in keep {
        let (i, bit) = ((c / 32) as usize, 1u32 << (c % 32));
        data[i].effective |= bit;
        data[i].permitted |= bit;
    }
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset(2) with a version-3 header and two data structs, as the kernel expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn step(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Locks the calling thread (and the threads it spawns afterwards) down: raises
/// RLIMIT_MEMLOCK and locks all current and future memory (keys never reach swap), marks the
/// process not dumpable (no core dump, no ptrace by the same user), sets no_new_privs, clears
/// the capability bounding set and ambient set except `keep`, switches to `user` if given, and
/// leaves only `keep` in the effective and permitted sets (nothing inheritable).
///
/// When RLIMIT_MEMLOCK cannot be raised to unlimited (no `CAP_SYS_RESOURCE`, as in some
/// containers), `CAP_IPC_LOCK` is kept as well, so locked allocations made later cannot fail.
/// Returns the capabilities kept.
pub fn lock_down(l: &LockDown) -> io::Result<Vec<u32>> {
    let mut keep = l.keep.clone();
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(step("raising RLIMIT_MEMLOCK")(e));
        }
        if !keep.contains(&CAP_IPC_LOCK) {
            keep.push(CAP_IPC_LOCK);
        }
    }
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(step("mlockall")(io::Error::last_os_error()));
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(step("no_new_privs"))?;
    for cap in 0..=last_cap() {
        if !keep.contains(&cap) {
            prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong)
                .map_err(step("clearing the capability bounding set"))?;
        }
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(step("clearing ambient capabilities")(
            io::Error::last_os_error(),
        ));
    }
    if let Some(u) = &l.user {
        if !keep.is_empty() {
            // Keep the permitted set across setuid, so `keep` can stay.
            prctl(libc::PR_SET_KEEPCAPS, 1).map_err(step("PR_SET_KEEPCAPS"))?;
        }
        // SAFETY: `groups` is a live slice of gid_t of the length given.
        if unsafe { libc::setgroups(u.groups.len(), u.groups.as_ptr()) } != 0 {
            return Err(step("setgroups")(io::Error::last_os_error()));
        }
        // SAFETY: plain id-setting calls; glibc applies them to every thread.
        if unsafe { libc::setresgid(u.gid, u.gid, u.gid) } != 0 {
            return Err(step("setgid")(io::Error::last_os_error()));
        }
        // SAFETY: as above.
        if unsafe { libc::setresuid(u.uid, u.uid, u.uid) } != 0 {
            return Err(step("setuid")(io::Error::last_os_error()));
        }
    }
    capset(&keep).map_err(step("capset"))?;
    if l.user.is_some() && !keep.is_empty() {
        prctl(libc::PR_SET_KEEPCAPS, 0).map_err(step("PR_SET_KEEPCAPS"))?;
    }
    // After setuid, which resets it: not dumpable, so no core dump holds a key.
    prctl(libc::PR_SET_DUMPABLE, 0).map_err(step("PR_SET_DUMPABLE"))?;
    keep.sort_unstable();
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("esprit-harden-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn capability_unions_are_sorted_and_named() {
        let all = capability_union(&[&[CAP_NET_RAW, CAP_BPF, CAP_NET_ADMIN], &[CAP_NET_ADMIN]]);
        assert_eq!(all, [CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF]);
        assert_eq!(cap_name(CAP_PERFMON), Some("CAP_PERFMON"));
        assert_eq!(cap_name(1), None);
    }

    #[test]
    fn exposed_secret_files_are_refused_with_the_fix() {
        let d = tmp("mode");
        let f = d.join("sa.toml");
        std::fs::write(&f, "secret").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&f).unwrap_err().to_string();
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(check_private(&f).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&f).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        check_private(&f).unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sockets_are_born_with_their_mode() {
        let d = tmp("sock");
        let p = d.join("api.sock");
        let l = bind_unix(&p, 0o600, None).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::os::unix::net::UnixStream::connect(&p).unwrap();
        drop(l);
        std::fs::remove_file(&p).unwrap();
        let gid = std::fs::metadata(&d).unwrap().gid();
        let _l = bind_unix(&p, 0o660, Some(gid)).unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o660);
        assert_eq!(md.gid(), gid);
        let _ = std::fs::remove_dir_all(&d);
    }
}
