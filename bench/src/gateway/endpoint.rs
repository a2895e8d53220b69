//! A traffic endpoint: one AF_XDP socket (copy mode, queue 0) on a lab interface, with the
//! dataplane's UMEM, rings and loader, and a small XDP program of its own that takes the test
//! traffic and leaves everything else (ARP, ICMP, IKE, NAT keepalives) to the kernel, so the
//! namespace keeps answering its neighbours and a strongSwan peer keeps its IKE SA.
//!
//! The program redirects an IPv4 frame (20-byte header) to the socket when it is ESP, UDP to
//! [`BENCH_PORT`], or UDP to 4500 with a non-zero first word (ESP-in-UDP; a zero word is IKE).
//! Everything shorter than the headers it reads passes.

use super::packet::BENCH_PORT;
use dataplane::xdp::asm::{Alu, Asm, Cond, Helper, Insn, Size, R0, R1, R2, R3, R6, R7, R8};
use dataplane::xdp::ring::XdpDesc;
use dataplane::xdp::socket::{BindMode, SocketConfig, XdpStatistics, XskSocket};
use dataplane::xdp::sys::{self, action};
use dataplane::xdp::umem::{Umem, UmemConfig, MAX_BATCH};
use std::os::fd::{AsRawFd, OwnedFd};

/// A 16-bit network-order field as a 16-bit load sees it.
fn ne16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// The endpoint's XDP program (see the module documentation); `xsk_map_fd` holds the socket
/// of queue 0, and `no_socket` is the verdict for test traffic when no socket is registered
/// (`action::PASS` in use, another value in tests).
pub fn program(xsk_map_fd: i32, no_socket: u32) -> Result<Vec<Insn>, String> {
    let mut a = Asm::new();
    let e = |e: dataplane::xdp::asm::AsmError| e.to_string();
    a.alu_reg(Alu::Mov, R6, R1);
    a.load(Size::W, R7, R6, 0); // data
    a.load(Size::W, R8, R6, 4); // data_end
                                // Ethernet (14) + IPv4 (20) + UDP (8) + the first ESP word (4).
    a.alu_reg(Alu::Mov, R2, R7).alu_imm(Alu::Add, R2, 46);
    a.jmp_reg(Cond::Gt, R2, R8, "pass");
    a.load(Size::H, R3, R7, 12);
    a.jmp_imm(Cond::Ne, R3, ne16(0x0800), "pass");
    a.load(Size::B, R3, R7, 14);
    a.jmp_imm(Cond::Ne, R3, 0x45, "pass");
    a.load(Size::B, R3, R7, 23);
    a.jmp_imm(Cond::Eq, R3, 50, "redirect");
    a.jmp_imm(Cond::Ne, R3, 17, "pass");
    a.load(Size::H, R3, R7, 36);
    a.jmp_imm(Cond::Eq, R3, ne16(BENCH_PORT), "redirect");
    a.jmp_imm(Cond::Ne, R3, ne16(4500), "pass");
    a.load(Size::W, R3, R7, 42);
    a.jmp_imm(Cond::Eq, R3, 0, "pass");
    a.label("redirect").map_err(e)?;
    a.load(Size::W, R2, R6, 16); // rx_queue_index
    a.load_map_fd(R1, xsk_map_fd);
    a.alu_imm(Alu::Mov, R3, no_socket as i32);
    a.call(Helper::RedirectMap);
    a.exit();
    a.label("pass").map_err(e)?;
    a.alu_imm(Alu::Mov, R0, action::PASS as i32);
    a.exit();
    a.finish().map_err(e)
}

/// Frames per endpoint UMEM: half for receiving (the fill ring), half for sending.
const FRAMES: u32 = 8192;
/// Entries per ring.
pub const RING: u32 = 4096;

/// One endpoint: socket, UMEM, free frames, and the attached program (detached on drop).
pub struct Endpoint {
    /// Where it is ("hA/eth0").
    pub name: String,
    /// The UMEM.
    pub umem: Umem,
    /// The socket.
    pub xsk: XskSocket,
    /// Chunks free for sending.
    pub free: Vec<u64>,
    /// Frames lent to the kernel for sending and not completed yet.
    pub in_flight: u64,
    frame_mask: u64,
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
}

impl Endpoint {
    /// Opens the socket on queue 0 of `iface` and attaches the program (native XDP). Call it
    /// from a thread inside the interface's namespace; the endpoint can then be used from any
    /// thread (the socket stays bound to its namespace).
    pub fn open(name: &str, iface: &str) -> Result<Endpoint, String> {
        let ctx = |what: &str| {
            let name = name.to_string();
            let what = what.to_string();
            move |e: std::io::Error| format!("{name}: {what}: {e}")
        };
        let umem = Umem::new(UmemConfig {
            frames: FRAMES,
            ..Default::default()
        })
        .map_err(ctx("UMEM"))?;
        let xsk = XskSocket::new(
            &umem,
            &SocketConfig {
                iface: iface.to_string(),
                queue: 0,
                ring_size: RING,
                mode: BindMode::Copy,
                need_wakeup: false,
            },
            None,
        )
        .map_err(ctx("AF_XDP socket"))?;
        let map = sys::create_xskmap("esprit_bench", 1).map_err(ctx("XSKMAP"))?;
        let prog = sys::load_xdp("esprit_bench", &program(map.as_raw_fd(), action::PASS)?)
            .map_err(|e| format!("{name}: {e}"))?;
        sys::update_u32(&map, 0, xsk.raw_fd() as u32).map_err(ctx("XSKMAP update"))?;
        let link = sys::attach_xdp(&prog, xsk.ifindex(), sys::XDP_FLAGS_DRV_MODE)
            .map_err(ctx("attaching XDP"))?;
        let frame_size = u64::from(umem.config().frame_size);
        let mut ep = Endpoint {
            name: name.to_string(),
            free: Vec::new(),
            in_flight: 0,
            frame_mask: !(frame_size - 1),
            umem,
            xsk,
            _link: link,
            _prog: prog,
            _map: map,
        };
        let rx: Vec<u64> = (0..FRAMES / 2).map(|i| ep.umem.chunk_addr(i)).collect();
        let n = ep.xsk.fill.produce(&rx) as usize;
        ep.free = (n as u32..FRAMES)
            .rev()
            .map(|i| ep.umem.chunk_addr(i))
            .collect();
        Ok(ep)
    }

    /// Takes completed transmissions back into the free list; returns how many completed.
    pub fn reclaim(&mut self) -> u64 {
        let mut done = [0u64; MAX_BATCH];
        let mut total = 0;
        loop {
            let n = self.xsk.comp.consume(&mut done) as usize;
            self.free
                .extend(done[..n].iter().map(|a| a & self.frame_mask));
            total += n as u64;
            if n < MAX_BATCH {
                break;
            }
        }
        self.in_flight -= total.min(self.in_flight);
        total
    }

    /// Chunk base of a UMEM address.
    #[inline]
    pub fn chunk_of(&self, addr: u64) -> u64 {
        addr & self.frame_mask
    }

    /// Returns received chunks to the fill ring.
    pub fn refill(&mut self, chunks: &[u64]) {
        let n = self.xsk.fill.produce(chunks) as usize;
        // The fill ring holds as many entries as there are receive frames: never full.
        self.free.extend_from_slice(&chunks[n..]);
    }

    /// Queues descriptors for sending and kicks the kernel; returns how many the TX ring took
    /// (the rest go back to the free list).
    pub fn transmit(&mut self, descs: &[XdpDesc]) -> Result<usize, String> {
        let n = self.xsk.tx.produce(descs) as usize;
        for d in &descs[n..] {
            let c = self.chunk_of(d.addr);
            self.free.push(c);
        }
        self.in_flight += n as u64;
        self.kick()?;
        Ok(n)
    }

    /// Asks the kernel to send what the TX ring holds (copy mode sends in this call).
    pub fn kick(&self) -> Result<(), String> {
        if self.xsk.tx.pending() > 0 {
            self.xsk
                .kick_tx()
                .map_err(|e| format!("{}: sending: {e}", self.name))?;
        }
        Ok(())
    }

    /// The kernel's counters for the socket.
    pub fn statistics(&self) -> XdpStatistics {
        self.xsk.statistics().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::packet::{ethernet, ipv4_udp};
    use std::net::Ipv4Addr;

    #[test]
    fn program_assembles() {
        let insns = program(3, action::PASS).unwrap();
        assert!(insns.len() < 40, "{} instructions", insns.len());
    }

    /// Runs the program on frames with `BPF_PROG_TEST_RUN` (needs root; skips otherwise). The
    /// map holds no socket, so a redirect returns the fallback verdict, DROP here.
    #[test]
    fn program_takes_only_test_traffic() {
        let Ok(map) = sys::create_xskmap("bench_test", 1) else {
            eprintln!("skipped: creating a BPF map needs root");
            return;
        };
        let insns = program(map.as_raw_fd(), action::DROP).unwrap();
        let prog = sys::load_xdp("bench_test", &insns).unwrap();
        let eth = ethernet([2; 6], [4; 6]);
        let frame = |ip: &[u8]| [&eth[..], ip].concat();
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let test = ipv4_udp(a, b, 64, true);
        let mut esp_in_udp = ipv4_udp(a, b, 64, true);
        esp_in_udp[22..24].copy_from_slice(&4500u16.to_be_bytes());
        esp_in_udp[28..32].copy_from_slice(&0x1234u32.to_be_bytes());
        let mut ike = esp_in_udp.clone();
        ike[28..32].copy_from_slice(&[0; 4]);
        let mut esp = ipv4_udp(a, b, 64, true);
        esp[9] = 50;
        let mut other_udp = ipv4_udp(a, b, 64, true);
        other_udp[22..24].copy_from_slice(&53u16.to_be_bytes());
        let mut icmp = ipv4_udp(a, b, 64, true);
        icmp[9] = 1;
        let arp = [&eth[..12], &[0x08, 0x06], &[0u8; 28][..]].concat();
        let run = |f: &[u8]| sys::test_run(&prog, f).unwrap();
        for taken in [&test, &esp_in_udp, &esp] {
            assert_eq!(run(&frame(taken)), action::DROP);
        }
        for left in [&ike, &other_udp, &icmp] {
            assert_eq!(run(&frame(left)), action::PASS);
        }
        assert_eq!(run(&arp), action::PASS);
        assert_eq!(run(&frame(&test)[..40]), action::PASS, "short frames pass");
    }
}
