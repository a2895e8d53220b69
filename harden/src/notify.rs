//! systemd's readiness protocol (`sd_notify(3)`): a daemon started by a `Type=notify` unit
//! tells the service manager, in one datagram per message on the Unix socket named by
//! `NOTIFY_SOCKET`, that it is ready (`READY=1`), reloading (`RELOADING=1`), stopping
//! (`STOPPING=1`) or what it is doing (`STATUS=…`).
//!
//! Without `NOTIFY_SOCKET` (started by hand, by a test or by another supervisor) every call
//! does nothing. A name starting with `@` is an abstract socket (the `@` stands for the
//! leading NUL byte); any other must be an absolute path.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets to the notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` names neither an absolute path nor an abstract socket.
    #[error("NOTIFY_SOCKET={0:?}: neither an absolute path nor an abstract socket name (@…)")]
    Address(String),
    /// The datagram could not be sent.
    #[error("NOTIFY_SOCKET={socket:?}: {err}")]
    Send {
        /// The socket named by `NOTIFY_SOCKET`.
        socket: String,
        /// The cause.
        err: io::Error,
    },
}

/// Sends `state` (newline-separated `KEY=value` assignments) to the socket `NOTIFY_SOCKET`
/// names. Returns whether it was sent: `Ok(false)` when `NOTIFY_SOCKET` is not set.
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var_os(NOTIFY_SOCKET) {
        None => Ok(false),
        Some(s) => notify_to(&s.to_string_lossy(), state).map(|()| true),
    }
}

/// Sends `state` to the notification socket `socket` (a `NOTIFY_SOCKET` value).
pub fn notify_to(socket: &str, state: &str) -> Result<(), NotifyError> {
    let addr = if let Some(name) = socket.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if socket.starts_with('/') {
        SocketAddr::from_pathname(socket)
    } else {
        return Err(NotifyError::Address(socket.to_string()));
    }
    .map_err(|_| NotifyError::Address(socket.to_string()))?;
    let send = |err| NotifyError::Send {
        socket: socket.to_string(),
        err,
    };
    let sock = UnixDatagram::unbound().map_err(send)?;
    let n = sock.send_to_addr(state.as_bytes(), &addr).map_err(send)?;
    if n != state.len() {
        return Err(send(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification truncated",
        )));
    }
    Ok(())
}

/// One `STATUS=` line: systemd shows it in `systemctl status`. Line breaks would end the
/// assignment, so they become spaces.
fn status_line(status: &str) -> String {
    format!("STATUS={}", status.replace(['\n', '\r'], " "))
}

/// `READY=1` with a status line: start-up is complete and the daemon serves.
pub fn ready(status: &str) -> Result<bool, NotifyError> {
    notify(&format!("READY=1\n{}", status_line(status)))
}

/// `RELOADING=1` with the monotonic time systemd asks for (`MONOTONIC_USEC`): the daemon
/// reloads its configuration; [`ready`] follows when it is done.
pub fn reloading() -> Result<bool, NotifyError> {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\n{}",
        monotonic_usec(),
        status_line("reloading the configuration")
    ))
}

/// `STOPPING=1`: the daemon is shutting down.
pub fn stopping() -> Result<bool, NotifyError> {
    notify(&format!("STOPPING=1\n{}", status_line("stopping")))
}

/// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC=` wants it.
fn monotonic_usec() -> u64 {
    // SAFETY: an all-zero timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn notifications_reach_a_socket_at_a_path() {
        let d = std::env::temp_dir().join(format!("esprit-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("notify");
        let server = UnixDatagram::bind(&p).unwrap();
        let name = p.to_str().unwrap();
        notify_to(name, "READY=1\nSTATUS=serving").unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=serving");
        notify_to(name, &status_line("two\nlines")).unwrap();
        assert_eq!(recv(&server), "STATUS=two lines");
        drop(server);
        let e = notify_to(name, "READY=1").unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn notifications_reach_an_abstract_socket() {
        let name = format!("esprit-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(&format!("@{name}"), "STOPPING=1").unwrap();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[test]
    fn relative_and_empty_names_are_refused() {
        for bad in ["notify", "", "vsock:2:1234"] {
            assert!(
                matches!(notify_to(bad, "READY=1"), Err(NotifyError::Address(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reloading_carries_the_monotonic_time() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
