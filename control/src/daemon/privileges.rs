//! The capabilities `esprit-ike` needs: to start, and once set up (none). The systemd unit
//! (`packaging/systemd/esprit-ike.service`) grants exactly [`unit_capabilities`]; a test
//! compares its `CapabilityBoundingSet` with it.

use esprit_harden::{CAP_CHOWN, CAP_NET_BIND_SERVICE, CAP_SETGID, CAP_SETPCAP, CAP_SETUID};

/// Kept after start-up: none ([`crate::daemon::run::Daemon::drop_privileges`]).
pub const RUNTIME_CAPABILITIES: &[u32] = &[];

/// Needed only to start, dropped by `esprit_harden::lock_down` once the sockets are bound:
/// - `CAP_NET_BIND_SERVICE`: bind UDP ports 500 and 4500;
/// - `CAP_SETPCAP`: clear the capability bounding set;
/// - `CAP_SETUID`, `CAP_SETGID`: switch to `daemon.user` when configured;
/// - `CAP_CHOWN`: give the control socket to `daemon.user` first.
///
/// Memory locking needs no capability when RLIMIT_MEMLOCK is unlimited, as the unit sets it
/// (`LimitMEMLOCK=infinity`).
pub const STARTUP_CAPABILITIES: &[u32] = &[
    CAP_NET_BIND_SERVICE,
    CAP_SETPCAP,
    CAP_SETUID,
    CAP_SETGID,
    CAP_CHOWN,
];

/// Every capability the daemon may use, sorted: what its service unit grants.
pub fn unit_capabilities() -> Vec<u32> {
    esprit_harden::capability_union(&[STARTUP_CAPABILITIES, RUNTIME_CAPABILITIES])
}
