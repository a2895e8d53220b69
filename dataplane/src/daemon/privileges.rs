//! The capabilities `esprit-dataplane` needs: to start, and once set up. The systemd unit
//! (`packaging/systemd/esprit-dataplane.service`) grants exactly [`unit_capabilities`]; a test
//! compares its `CapabilityBoundingSet` with it.

use crate::harden::{
    CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON, CAP_SETGID, CAP_SETPCAP, CAP_SETUID,
};

/// Kept after start-up (see [`crate::daemon::run::runtime_capabilities`]): `CAP_NET_ADMIN`,
/// for the neighbour requests that resolve next hops (RTM_NEWNEIGH with NTF_USE) and, with
/// `fail_mode = "open"`, to detach the classifiers on exit.
pub const RUNTIME_CAPABILITIES: &[u32] = &[CAP_NET_ADMIN];

/// Needed only to start, dropped by [`crate::harden::lock_down`] before any thread starts:
/// - `CAP_BPF`: `bpf(2)`, to create the classifiers' maps and load them (Linux 5.8 and
///   later; older kernels want `CAP_SYS_ADMIN` instead);
/// - `CAP_PERFMON`: the verifier accepts the classifiers' arithmetic on packet pointers with
///   a variable offset (past an IPv4 header of any length) only with it ("pointer arithmetic
///   prohibited for !root" without);
/// - `CAP_NET_ADMIN` (kept too): attach the classifiers (RTM_SETLINK with IFLA_XDP), create
///   the XSKMAP;
/// - `CAP_NET_RAW`: create the AF_XDP sockets;
/// - `CAP_SETPCAP`: clear the capability bounding set;
/// - `CAP_SETUID`, `CAP_SETGID`: switch to `user` when the configuration names one.
///
/// Memory locking needs no capability when RLIMIT_MEMLOCK is unlimited, as the unit sets it
/// (`LimitMEMLOCK=infinity`); where it cannot be raised, `lock_down` would want `CAP_IPC_LOCK`.
pub const STARTUP_CAPABILITIES: &[u32] = &[
    CAP_BPF,
    CAP_PERFMON,
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    CAP_SETPCAP,
    CAP_SETUID,
    CAP_SETGID,
];

/// Every capability the daemon may use, sorted: what its service unit grants.
pub fn unit_capabilities() -> Vec<u32> {
    crate::harden::capability_union(&[STARTUP_CAPABILITIES, RUNTIME_CAPABILITIES])
}
