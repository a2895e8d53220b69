//! Helpers for tests that build network namespaces.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::Command;

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into a network namespace.
pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    // SAFETY: setns on a valid namespace descriptor affects only the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Namespaces deleted on drop, so a failing test leaves nothing behind.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    /// Creates fresh namespaces named `esprit-t<tag><name>-<pid>`.
    pub fn new(tag: &str, names: &[&str]) -> Self {
        let id = std::process::id();
        let v: Vec<String> = names
            .iter()
            .map(|n| format!("esprit-t{tag}{n}-{id}"))
            .collect();
        for ns in &v {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Namespaces(v)
    }

    /// The full name of namespace `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Formats a MAC address for `ip link ... address`.
pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One end of a veth pair: namespace, interface name, MAC and addresses (`addr/len`).
pub struct End<'a>(pub &'a str, pub &'a str, pub [u8; 6], pub &'a [&'a str]);

/// Joins two ends with a veth pair and gives both their MACs and addresses (IPv6 without DAD).
pub fn link(x: End, y: End) {
    link_q(x, y, 1)
}

/// Like [`link`], with `queues` RX and TX queues on both ends.
pub fn link_q(x: End, y: End, queues: u32) {
    let q = queues.to_string();
    ip(&[
        "-n",
        x.0,
        "link",
        "add",
        "name",
        x.1,
        "address",
        &mac_str(x.2),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        y.1,
        "address",
        &mac_str(y.2),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        y.0,
    ]);
    for End(ns, ifn, _, addrs) in [x, y] {
        for ad in addrs {
            if ad.contains(':') {
                ip(&["-n", ns, "addr", "add", ad, "dev", ifn, "nodad"]);
            } else {
                ip(&["-n", ns, "addr", "add", ad, "dev", ifn]);
            }
        }
        ip(&["-n", ns, "link", "set", ifn, "up"]);
    }
}

/// The two-site topology: hA — gwA ==== gwB — hB, IPv4 and IPv6, hosts routed via their
/// gateway, gateways forwarding with default routes via each other. Returns the namespaces (hA, gwA, gwB, hB).
pub fn two_sites(tag: &str) -> Namespaces {
    two_sites_q(tag, 1)
}

/// Like [`two_sites`], with `queues` queues on every veth.
pub fn two_sites_q(tag: &str, queues: u32) -> Namespaces {
    let link = |x: End, y: End| link_q(x, y, queues);
    let ns = Namespaces::new(tag, &["hA", "gwA", "gwB", "hB"]);
    let (ha, gwa, gwb, hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    link(
        End(
            ha,
            "eth0",
            [2, 0, 0, 0, 0x1a, 2],
            &["10.201.1.2/24", "fd00:201:1::2/64"],
        ),
        End(
            gwa,
            "lan0",
            [2, 0, 0, 0, 0x1a, 1],
            &["10.201.1.1/24", "fd00:201:1::1/64"],
        ),
    );
    link(
        End(
            gwa,
            "wan0",
            [2, 0, 0, 0, 0x0a, 1],
            &["10.200.0.1/24", "fd00:200::1/64"],
        ),
        End(
            gwb,
            "wan0",
            [2, 0, 0, 0, 0x0a, 2],
            &["10.200.0.2/24", "fd00:200::2/64"],
        ),
    );
    link(
        End(
            gwb,
            "lan0",
            [2, 0, 0, 0, 0x2b, 1],
            &["10.201.2.1/24", "fd00:201:2::1/64"],
        ),
        End(
            hb,
            "eth0",
            [2, 0, 0, 0, 0x2b, 2],
            &["10.201.2.2/24", "fd00:201:2::2/64"],
        ),
    );
    for (h, v4, v6) in [
        (ha, "10.201.1.1", "fd00:201:1::1"),
        (hb, "10.201.2.1", "fd00:201:2::1"),
    ] {
        ip(&["-n", h, "route", "add", "default", "via", v4]);
        ip(&["-n", h, "-6", "route", "add", "default", "via", v6]);
    }
    // The gateways live in a real gateway's world: forwarding on and a default route (each
    // other's WAN address), so a packet esprit let through to the kernel would leave the WAN in
    // clear text.
    for (gw, v4, v6) in [
        (gwa, "10.200.0.2", "fd00:200::2"),
        (gwb, "10.200.0.1", "fd00:200::1"),
    ] {
        ip(&["-n", gw, "route", "add", "default", "via", v4]);
        ip(&["-n", gw, "-6", "route", "add", "default", "via", v6]);
        for k in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            let st = Command::new("ip")
                .args(["netns", "exec", gw, "sysctl", "-qw", k])
                .status()
                .expect("run sysctl");
            assert!(st.success(), "sysctl {k} in {gw}");
        }
    }
    ns
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Sends one `len`-byte UDP datagram (IP total length) from hA to hB, without DF, a few times;
/// returns the SHA-256 of the payload sent and of the first datagram that arrived.
pub fn udp_datagram(ha: &str, hb: &str, len: usize) -> (Vec<u8>, Option<Vec<u8>>) {
    let payload: Vec<u8> = (0..len - 28).map(|i| (i * 7 + 3) as u8).collect();
    let sent = sha256(&payload);
    let (tx, rx) = std::sync::mpsc::channel();
    let hb = hb.to_string();
    let server = std::thread::spawn(move || {
        enter(&hb);
        let s = std::net::UdpSocket::bind("10.201.2.2:5002").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        tx.send(()).unwrap();
        let mut buf = vec![0u8; 65536];
        s.recv(&mut buf).ok().map(|n| sha256(&buf[..n]))
    });
    rx.recv().unwrap();
    let ha = ha.to_string();
    let client = std::thread::spawn(move || {
        enter(&ha);
        // Larger than the 1500-byte link: the host sends it as fragments without DF (Linux
        // clears DF on datagrams it fragments itself).
        let s = std::net::UdpSocket::bind("10.201.1.2:0").unwrap();
        for _ in 0..3 {
            s.send_to(&payload, "10.201.2.2:5002").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    let got = server.join().unwrap();
    client.join().unwrap();
    (sent, got)
}

/// Writes a file holding keys, mode 0600 (the daemon refuses one others can read).
pub fn write_secret(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}
