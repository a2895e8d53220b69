//! XDP attach mode and AF_XDP bind mode, per interface.
//!
//! Why: in native (driver) mode the classifier runs on the driver's buffers before any skb
//! exists; in generic mode the kernel builds an skb first and runs XDP on it, several times
//! slower, and it sees GRO-merged packets. No program at all means the daemon's classifier
//! is gone and the site's traffic is neither encrypted nor, in fail-closed mode, dropped by
//! esprit. Zero-copy lets the NIC write into the UMEM; copy mode costs a copy per packet and
//! is what veth and drivers without AF_XDP zero-copy support offer.

use super::check::{Check, Status};
use super::host::Roots;
use esprit_api::InterfaceRuntime;

/// The XDP attach mode of `i` against what the dataplane asked for (`requested`).
pub fn xdp_mode(i: &InterfaceRuntime, requested: &str) -> Check {
    let c = |s, d: String| Check::iface("xdp_mode", &i.name, s, d);
    let restart = "restart esprit-dataplane (it attaches its classifier at start-up)";
    match i.xdp_attached.as_deref() {
        None => c(
            Status::Warn,
            format!(
                "the dataplane could not read the XDP attachment: {}",
                i.error.as_deref().unwrap_or("no answer")
            ),
        )
        .fix(format!("check `ip -d link show dev {}`", i.name)),
        Some("none") => c(
            Status::Fail,
            "no XDP program attached: the dataplane's classifier is gone (detached by hand?)"
                .into(),
        )
        .fix(restart),
        Some(m) if m != requested => c(
            Status::Fail,
            format!("XDP attached in {m} mode, the dataplane attached it in {requested} mode: another program replaced it"),
        )
        .fix(format!(
            "ip link set dev {} xdp off; then {restart}",
            i.name
        )),
        Some("native") => c(Status::Ok, "native (driver) XDP".into()),
        Some("generic") => c(
            Status::Warn,
            "generic (skb) XDP: the kernel builds an skb for every packet before XDP sees it"
                .into(),
        )
        .fix("set workers.xdp = \"native\" in the dataplane configuration (the driver must support XDP)"),
        Some(m) => c(Status::Warn, format!("XDP attached in {m} mode"))
            .fix(format!("check `ip -d link show dev {}`", i.name)),
    }
}

/// The AF_XDP bind mode of `i`'s sockets.
pub fn xsk_bind(i: &InterfaceRuntime, roots: &Roots) -> Check {
    let c = |s, d: String| Check::iface("xsk_bind", &i.name, s, d);
    if i.bind_modes.is_empty() {
        return c(Status::Fail, "no AF_XDP socket on this interface".into())
            .fix("restart esprit-dataplane");
    }
    let copies = i.bind_modes.iter().filter(|m| *m == "copy").count();
    let zc = i.bind_modes.iter().filter(|m| *m == "zerocopy").count();
    let n = i.bind_modes.len();
    if zc == n {
        return c(Status::Ok, format!("zero-copy on {n} queue(s)"));
    }
    if copies + zc < n {
        return c(
            Status::Warn,
            format!("bind mode unknown: {}", i.bind_modes.join(", ")),
        );
    }
    if !roots.has_device(&i.name) {
        return c(
            Status::Ok,
            format!("copy on {n} queue(s) (virtual interface: no zero-copy to have)"),
        );
    }
    c(
        Status::Warn,
        format!("copy mode on {copies} of {n} queue(s) of a NIC: one copy per packet each way"),
    )
    .fix("set workers.mode = \"zerocopy\" in the dataplane configuration (the driver must support AF_XDP zero-copy)")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, iface};
    use super::*;

    #[test]
    fn xdp_modes() {
        let ok = xdp_mode(&iface("wan0", Some("native"), &["copy"]), "native");
        assert_eq!(ok.status, Status::Ok);
        let gone = xdp_mode(&iface("wan0", Some("none"), &["copy"]), "native");
        assert_eq!(gone.status, Status::Fail);
        assert!(gone.fix.unwrap().contains("restart esprit-dataplane"));
        let replaced = xdp_mode(&iface("wan0", Some("generic"), &["copy"]), "native");
        assert_eq!(replaced.status, Status::Fail);
        assert!(replaced
            .fix
            .unwrap()
            .contains("ip link set dev wan0 xdp off"));
        let generic = xdp_mode(&iface("wan0", Some("generic"), &["copy"]), "generic");
        assert_eq!(generic.status, Status::Warn);
        assert!(generic.fix.unwrap().contains("workers.xdp = \"native\""));
        assert_eq!(
            xdp_mode(&iface("wan0", None, &["copy"]), "native").status,
            Status::Warn
        );
    }

    #[test]
    fn bind_modes() {
        let roots = fixtures::roots("xsk");
        let dir = roots.sys.clone();
        std::fs::create_dir_all(dir.join("class/net/nic0/device")).unwrap();
        std::fs::create_dir_all(dir.join("class/net/veth0")).unwrap();
        let zc = xsk_bind(
            &iface("nic0", Some("native"), &["zerocopy", "zerocopy"]),
            &roots,
        );
        assert_eq!(zc.status, Status::Ok);
        let copy_nic = xsk_bind(
            &iface("nic0", Some("native"), &["copy", "zerocopy"]),
            &roots,
        );
        assert_eq!(copy_nic.status, Status::Warn);
        assert!(copy_nic.fix.unwrap().contains("zerocopy"));
        let copy_veth = xsk_bind(&iface("veth0", Some("native"), &["copy"]), &roots);
        assert_eq!(copy_veth.status, Status::Ok, "{}", copy_veth.detail);
        assert_eq!(
            xsk_bind(&iface("veth0", Some("native"), &[]), &roots).status,
            Status::Fail
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
