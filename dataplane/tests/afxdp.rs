//! AF_XDP sockets on a real veth pair between two network namespaces: the classifier redirects
//! transit packets to the socket, and frames the socket transmits reach the other side's stack.
//! Needs root (ignored by a plain `cargo test`, run by `./ci/test.sh`). Namespaces are removed
//! even when a test fails.

mod common;
use common::{enter, ip};
use dataplane::wire::ethernet::{EtherType, EthernetRepr};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::proto;
use dataplane::xdp::program::{Classifier, ClassifierSpec, Role};
use dataplane::xdp::ring::XdpDesc;
use dataplane::xdp::socket::{BindMode, SocketConfig, XskSocket};
use dataplane::xdp::sys::action;
use dataplane::xdp::umem::{Umem, UmemConfig};
use esprit_testkit::require_root;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two namespaces joined by a veth pair `xa` (10.99.0.1) — `xb` (10.99.0.2); `xa` routes
/// 10.98.0.0/24 via `b`. Removed on drop.
struct Pair {
    ns_a: String,
    ns_b: String,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let id = std::process::id();
        let p = Pair {
            ns_a: format!("esprit-t{tag}a-{id}"),
            ns_b: format!("esprit-t{tag}b-{id}"),
        };
        for ns in [&p.ns_a, &p.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "-n", &p.ns_a, "link", "add", "name", "xa", "type", "veth", "peer", "name", "xb",
            "netns", &p.ns_b,
        ]);
        ip(&["-n", &p.ns_a, "addr", "add", "10.99.0.1/24", "dev", "xa"]);
        ip(&["-n", &p.ns_b, "addr", "add", "10.99.0.2/24", "dev", "xb"]);
        ip(&["-n", &p.ns_a, "link", "set", "xa", "up"]);
        ip(&["-n", &p.ns_b, "link", "set", "xb", "up"]);
        ip(&[
            "-n",
            &p.ns_a,
            "route",
            "add",
            "10.98.0.0/24",
            "via",
            "10.99.0.2",
            "dev",
            "xa",
        ]);
        p
    }

    fn mac(&self, ns: &str, dev: &str) -> [u8; 6] {
        let out = Command::new("ip")
            .args(["-n", ns, "-br", "link", "show", dev])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        let m = s.split_whitespace().nth(2).expect("mac column");
        let v: Vec<u8> = m
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn lan_classifier() -> Classifier {
    Classifier::load(
        &ClassifierSpec {
            role: Role::Lan,
            local_v4: vec!["10.99.0.2".parse().unwrap()],
            local_v6: vec![],
            nat_t_ports: vec![],
            no_socket_action: action::PASS,
        },
        1,
    )
    .expect("load classifier")
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn receive_transit_packets_on_an_xsk() {
    require_root();
    let pair = Pair::new("rx");
    let ns_b = pair.ns_b.clone();
    let ns_a = pair.ns_a.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        enter(&ns_b);
        let mut umem = Umem::new(UmemConfig {
            frames: 256,
            ..Default::default()
        })
        .unwrap();
        let cfg = SocketConfig {
            iface: "xb".into(),
            queue: 0,
            ring_size: 256,
            mode: BindMode::Copy,
            need_wakeup: true,
        };
        let mut xsk = XskSocket::new(&umem, &cfg, None).unwrap();
        let addrs: Vec<u64> = (0..128).map(|i| umem.chunk_addr(i)).collect();
        assert_eq!(xsk.fill.produce(&addrs), 128);
        let cls = lan_classifier();
        cls.register_socket(0, xsk.raw_fd()).unwrap();
        let _link = cls.attach("xb", false).expect("attach native XDP to veth");
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut descs = [XdpDesc::default(); 64];
        while got.len() < 20 && Instant::now() < deadline {
            let _ = xsk.poll_rx(100).unwrap();
            let n = xsk.rx.consume(&mut descs) as usize;
            let mut frames = arrayvec::ArrayVec::new();
            umem.frames_mut(descs[..n].iter().map(|d| (d.addr, d.len)), &mut frames)
                .unwrap();
            for f in &frames {
                got.push(f.data().to_vec());
            }
            drop(frames);
            let back: Vec<u64> = descs[..n].iter().map(|d| umem.chunk_base(d.addr)).collect();
            assert_eq!(xsk.fill.produce(&back), n as u32);
        }
        (got, xsk.statistics().unwrap())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver ready");
    let sender = std::thread::spawn(move || {
        enter(&ns_a);
        let s = UdpSocket::bind("10.99.0.1:0").unwrap();
        for i in 0..20u8 {
            s.send_to(&[b'e', b's', b'p', i], "10.98.0.5:9999").unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    sender.join().unwrap();
    let (got, stats) = receiver.join().unwrap();
    assert_eq!(
        got.len(),
        20,
        "all transit datagrams reach the socket ({stats:?})"
    );
    for (i, f) in got.iter().enumerate() {
        // Ethernet + IPv4 + UDP + 4 bytes of payload.
        assert_eq!(f.len(), 14 + 20 + 8 + 4);
        assert_eq!(&f[f.len() - 4..], &[b'e', b's', b'p', i as u8], "in order");
    }
    drop(pair);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn transmit_from_an_xsk_reaches_the_peer_stack() {
    require_root();
    let pair = Pair::new("tx");
    let mac_a = pair.mac(&pair.ns_a, "xa");
    let mac_b = pair.mac(&pair.ns_b, "xb");
    let ns_a = pair.ns_a.clone();
    let ns_b = pair.ns_b.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || {
        enter(&ns_a);
        let s = UdpSocket::bind("10.99.0.1:7777").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 8 {
            match s.recv_from(&mut buf) {
                Ok((n, from)) => got.push((buf[..n].to_vec(), from)),
                Err(_) => break,
            }
        }
        got
    });
    ready_rx.recv().unwrap();
    let sender = std::thread::spawn(move || {
        enter(&ns_b);
        let mut umem = Umem::new(UmemConfig {
            frames: 64,
            ..Default::default()
        })
        .unwrap();
        let cfg = SocketConfig {
            iface: "xb".into(),
            queue: 0,
            ring_size: 64,
            mode: BindMode::Copy,
            need_wakeup: true,
        };
        let mut xsk = XskSocket::new(&umem, &cfg, None).unwrap();
        let mut descs = Vec::new();
        for i in 0..8u32 {
            let addr = umem.chunk_addr(i) + 128;
            let chunk = umem.chunk_mut(addr).unwrap();
            let payload = [b'x', b's', b'k', i as u8];
            let f = &mut chunk[128..];
            EthernetRepr {
                dst: mac_a,
                src: mac_b,
                vlan_tci: None,
                ethertype: EtherType::IPV4,
            }
            .emit(f);
            Ipv4Repr {
                src: "10.98.0.7".parse().unwrap(),
                dst: "10.99.0.1".parse().unwrap(),
                protocol: proto::UDP,
                payload_len: 12,
                ttl: 64,
                dscp: 0,
                ecn: 0,
                ident: i as u16,
                dont_frag: true,
            }
            .emit(&mut f[14..]);
            f[34..42].copy_from_slice(&[0x30, 0x39, 0x1e, 0x61, 0, 12, 0, 0]);
            f[42..46].copy_from_slice(&payload);
            descs.push(XdpDesc {
                addr,
                len: 46,
                options: 0,
            });
        }
        assert_eq!(xsk.tx.produce(&descs), 8);
        xsk.kick_tx().unwrap();
        // Every transmitted chunk comes back on the completion ring.
        let mut done = 0;
        let mut comp = [0u64; 8];
        let deadline = Instant::now() + Duration::from_secs(5);
        while done < 8 && Instant::now() < deadline {
            done += xsk.comp.consume(&mut comp[done..]) as usize;
            xsk.kick_tx().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        done
    });
    assert_eq!(sender.join().unwrap(), 8, "completions");
    let got = listener.join().unwrap();
    assert_eq!(got.len(), 8);
    for (i, (p, from)) in got.iter().enumerate() {
        assert_eq!(p, &[b'x', b's', b'k', i as u8]);
        assert_eq!(from.to_string(), "10.98.0.7:12345");
    }
    drop(pair);
}
