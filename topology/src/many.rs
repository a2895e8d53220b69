//! Many site-to-site tunnels against one esprit gateway.
//!
//! The device under test is gwB: esprit-dataplane and esprit-ike in-process (as
//! [`crate::ike`] runs them), with one responder connection for every site (`remote_addrs =
//! ["%any"]`, any peer identity, one PSK). The sites are simulated in gwA's namespace by a
//! separate process (`esprit-lab many-sim`, [`simulate`]): esprit's own sans-IO IKE
//! [`Endpoint`] holding one initiator connection per site, each site with its own WAN address
//! (in 10.208.0.0/14, which gwA's namespace treats as local through one `local` route on `lo`,
//! so no address is added per site) and its own protected /27 (of 10.128.0.0/10), one UDP
//! socket for every site (`IP_PKTINFO` says which site a datagram is for and sends from the
//! site's address), initiations paced to a window, the timers driven, and every child rekeyed
//! by its own `rekey_time`. For a few sites the simulator also speaks ESP itself (with the
//! dataplane's ESP engine and the child's keys), so pings from those sites cross gwB to hB and
//! back through their tunnels, before and after the rekeys.
//!
//! The simulator runs in its own process so that the memory of the process running gwB is
//! gwB's alone: [`run`] measures its own heap in use (glibc `mallinfo2`) and VmRSS (after
//! `malloc_trim`) before the sites start, once every tunnel is up on both sides, after the
//! rekeys, and after esprit-ike stopped (the dataplane keeps its SAs): the differences divided
//! by the number of tunnels are the memory per tunnel of the whole gateway, of esprit-ike and
//! of the dataplane. A rekey is on schedule when the child's own timer started it when due;
//! the exchange's duration (retransmissions included) is reported apart. docs/benchmarks.md
//! ("1,000 tunnels") records the figures.

use crate::ike::{DataplaneThread, IkeDaemon, LAB_PSK};
use crate::lab::{Lab, LabGuard, LabSpec, Node, HOST_B};
use control::daemon::control::ControlRequest;
use control::ike::algorithms::{DhGroup, EncrAlg, PrfAlg};
use control::ike::identity::Identity;
use control::ike::rng::SystemRandom;
use control::ike::session::{
    ts, ChildMode, ChildParams, ChildSaInstall, ConnectionParams, Endpoint, EndpointSettings,
    EspProposalSpec, IkeEvent, IkeProposalSpec, LocalCredential, RemoteCredential, Retransmit,
    TsSpec,
};
use dataplane::esp::Verdict;
use dataplane::frame::OwnedFrame;
use dataplane::sa::{Direction, SaDb};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufRead, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most sites a run can have: each has one /27 of 10.128.0.0/10.
pub const MAX_TUNNELS: usize = 131_072;
/// The sites' WAN addresses (site `i` has the `i + 1`-th address): local in gwA's namespace
/// through a `local` route (AnyIP), routed there from gwB.
pub const SITES_WAN: &str = "10.208.0.0/14";
/// The first of them.
const SITES_WAN_BASE: Ipv4Addr = Ipv4Addr::new(10, 208, 0, 0);
/// The sites' protected prefixes (site `i` has the `i`-th /27).
pub const SITES_LAN: &str = "10.128.0.0/10";
/// The length of a site's protected prefix.
pub const SITE_LAN_LEN: u8 = 27;
/// The simulator's UDP receive buffer (`SO_RCVBUFFORCE`): every site's datagrams arrive on one
/// socket.
const SIM_RCVBUF: usize = 64 << 20;
/// Datagrams the simulator reads per round of its loop at most.
const SIM_RECV_BATCH: usize = 512;
/// gwA's WAN address: gwB's route to the sites and its dataplane's next hop.
const GW_A_WAN: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The IKE proposal of every tunnel.
pub const IKE_PROPOSAL: &str = "aes128gcm16-prfsha256-x25519";
/// The ESP proposal of every child.
pub const ESP_PROPOSAL: &str = "aes128gcm16";
/// How long the simulator may take to finish the exchanges under way once asked to stop.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(30);
/// A rekey is on schedule when its child's timer (`rekey_time` minus up to 10 % of jitter
/// after the child came up) started it no later than this after it was due.
pub const REKEY_PUNCTUAL: Duration = Duration::from_secs(1);
/// A rekey exchange that took longer than this had a message lost and retransmitted (the
/// first retransmission comes after 4 s).
const REKEY_PROMPT: Duration = Duration::from_secs(2);

/// The WAN address of site `i`.
pub fn site_wan(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SITES_WAN_BASE) + i as u32 + 1)
}

/// The protected /27 of site `i` (its network address).
pub fn site_lan(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + ((i as u32) << (32 - SITE_LAN_LEN)))
}

fn site_of_wan(a: Ipv4Addr) -> Option<usize> {
    let i = u32::from(a).checked_sub(u32::from(SITES_WAN_BASE) + 1)?;
    (i < MAX_TUNNELS as u32).then_some(i as usize)
}

fn site_name(i: usize) -> String {
    format!("s{i}")
}

fn site_of_name(n: &str) -> Option<usize> {
    n.strip_prefix('s')?.parse().ok()
}

// ----- what the simulator reports -----

/// Minimum, median, 99th percentile and maximum of a set of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (all zero when empty).
    pub fn of(v: &[f64]) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Spread {
            min: s[0],
            median: rank(0.5),
            p99: rank(0.99),
            max: s[s.len() - 1],
        }
    }
}

/// Pings through some tunnels: how many were sent and answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFigures {
    /// Sites that sent pings.
    pub sites: usize,
    /// Sites that got at least one answer.
    pub sites_ok: usize,
    /// Echo requests sent.
    pub sent: usize,
    /// Echo replies received and decrypted.
    pub replies: usize,
}

/// One line of the simulator's standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SimEvent {
    /// Sockets are open; the first initiation follows.
    Start {
        /// The simulator's memory.
        mem: Mem,
    },
    /// Every site's IKE SA and child SA are up (or the setup failed).
    Up {
        /// Seconds from the first initiation to the last child.
        secs: f64,
        /// Sites up.
        up: usize,
        /// Sites that failed.
        failed: usize,
        /// Initiations repeated after a failure.
        retries: usize,
        /// Initiation to child, per site, milliseconds.
        latency_ms: Spread,
        /// The simulator's memory now.
        mem: Mem,
    },
    /// Pings through the probe sites' tunnels.
    Probe {
        /// "before_rekey" or "after_rekey".
        phase: String,
        /// What was sent and answered.
        figures: ProbeFigures,
    },
    /// Every site's child has been rekeyed once and the child it replaced deleted.
    Rekeyed {
        /// Seconds from the end of the setup until then.
        secs: f64,
        /// Sites whose child was rekeyed and the old one deleted.
        sites: usize,
        /// Child rekeys in all (a child may be rekeyed twice by then).
        rekeys: usize,
        /// Age of the replaced child when its replacement came up, seconds, per site (first
        /// rekey).
        after_s: Spread,
        /// From the timer's start of the rekey to the new child, per site, milliseconds.
        exchange_ms: Spread,
        /// First rekeys not started by the child's timer on time: scheduled outside [0.9 ×
        /// rekey_time, rekey_time] after the child came up, started more than
        /// [`REKEY_PUNCTUAL`] after that, or not started at all.
        off_schedule: usize,
        /// First rekey exchanges that took more than two seconds (a message was lost and
        /// retransmitted, or waited that long in a socket buffer).
        late: usize,
        /// IKE SAs lost after they were up.
        lost: usize,
        /// Requests the sites retransmitted since they started (no answer in time: lost, or
        /// still queued at gwB).
        #[serde(default)]
        retransmissions: u64,
    },
    /// The simulator gave up.
    Error {
        /// Why.
        message: String,
    },
}

/// The simulator's settings (passed as JSON to `esprit-lab many-sim`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimOptions {
    /// Sites.
    pub tunnels: usize,
    /// Initiations in flight at most.
    pub window: usize,
    /// The children's `rekey_time`, seconds.
    pub rekey_s: f64,
    /// gwB's WAN address.
    pub gw_b: Ipv4Addr,
    /// Sites that also ping through their tunnel.
    pub probes: usize,
    /// Give up the setup after this long, seconds.
    pub setup_timeout_s: f64,
}

// ----- small system helpers -----

/// Memory of this process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mem {
    /// VmRSS, KiB, after `malloc_trim` gave free heap pages back.
    pub rss_kib: u64,
    /// Heap in use (glibc `mallinfo2`: allocated chunks in every arena plus mmapped ones),
    /// KiB: what the program holds, without the allocator's free space or fragmentation.
    pub heap_kib: u64,
}

impl Mem {
    /// Measure now (trims the heap first).
    pub fn now() -> Mem {
        let rss_kib = trimmed_rss_kib();
        Mem {
            rss_kib,
            heap_kib: heap_in_use() / 1024,
        }
    }
}

/// Memory per tunnel between two measurements, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerTunnel {
    /// VmRSS growth per tunnel.
    pub rss_kib: f64,
    /// Heap growth per tunnel.
    pub heap_kib: f64,
}

impl PerTunnel {
    /// (`after` − `before`) / `n`.
    pub fn between(after: Mem, before: Mem, n: usize) -> PerTunnel {
        let per = |a: u64, b: u64| (a as f64 - b as f64) / n.max(1) as f64;
        PerTunnel {
            rss_kib: per(after.rss_kib, before.rss_kib),
            heap_kib: per(after.heap_kib, before.heap_kib),
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics (under its locks) and returns
    // them by value.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> u64 {
    0
}

/// VmRSS of this process, KiB (0 if unreadable).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// VmRSS after giving free heap pages back to the kernel, so that what the allocator keeps
/// does not count.
pub fn trimmed_rss_kib() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's arenas; it has no
    // preconditions and touches no memory the program uses.
    unsafe {
        libc::malloc_trim(0);
    }
    rss_kib()
}

/// A raw IPv4 socket: with `IPPROTO_RAW` it sends whole IPv4 packets (header included), with
/// `IPPROTO_ESP` it receives every ESP packet for this namespace, IPv4 header first.
struct RawSock(OwnedFd);

impl RawSock {
    fn open(protocol: i32) -> io::Result<RawSock> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(RawSock(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send_to(&self, pkt: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `pkt` and `sa` are live for the call and the lengths given are theirs.
        let r = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
        let r = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

/// The one UDP socket of every site: bound to port 500 on every address, with `IP_PKTINFO`
/// so that a datagram says which site's address it was sent to and an answer leaves from it
/// (the sites' addresses are local through a `local` route, AnyIP).
struct SitesSock(OwnedFd);

/// Room for one `IP_PKTINFO` control message.
const PKTINFO_SPACE: usize = 64;

impl SitesSock {
    fn open(port: u16, rcvbuf: usize) -> io::Result<SitesSock> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let sock = SitesSock(unsafe { OwnedFd::from_raw_fd(fd) });
        let on: libc::c_int = 1;
        sock.setsockopt(libc::SOL_IP, libc::IP_PKTINFO, on)?;
        // Above net.core.rmem_max: the simulator runs as root (CAP_NET_ADMIN).
        let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        if sock
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size)
            .is_err()
        {
            sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
        let sa = sockaddr_in(Ipv4Addr::UNSPECIFIED, port);
        // SAFETY: `sa` is a live sockaddr_in and the length given is its size.
        let r = unsafe {
            libc::bind(
                sock.0.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn setsockopt(&self, level: i32, name: i32, v: libc::c_int) -> io::Result<()> {
        // SAFETY: `v` is a live c_int and the length given is its size.
        let r = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram: its length, its source, and the local address it was sent to.
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Ipv4Addr)> {
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut control = [0u64; PKTINFO_SPACE / 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = PKTINFO_SPACE as _;
        // SAFETY: `msg` points at `from`, `iov` (over `buf`) and `control`, all live and
        // writable for the lengths it gives.
        let n = unsafe { libc::recvmsg(self.0.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        // SAFETY: the CMSG_* walk stays within `msg.msg_control`/`msg_controllen`, which the
        // kernel filled; a pktinfo header's data is an in_pktinfo (read unaligned).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                    let info: libc::in_pktinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let src = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr))),
            u16::from_be(from.sin_port),
        );
        Ok((n as usize, src, dst))
    }

    /// Send `data` from `src` to `dst`.
    fn send(&self, data: &[u8], src: Ipv4Addr, dst: SocketAddr) -> io::Result<()> {
        let IpAddr::V4(dst_ip) = dst.ip() else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let to = sockaddr_in(dst_ip, dst.port());
        let mut control = [0u64; PKTINFO_SPACE / 8];
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&to as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen =
            unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) } as _;
        // SAFETY: `control` holds CMSG_SPACE(in_pktinfo) bytes (checked below), so the first
        // header and its data are within it; the data is written unaligned.
        unsafe {
            debug_assert!(msg.msg_controllen as usize <= PKTINFO_SPACE);
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            (*c).cmsg_level = libc::SOL_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as _;
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
        }
        // SAFETY: `msg` points at `to`, `iov` (over `data`) and `control`, live for the call.
        let r = unsafe { libc::sendmsg(self.0.as_raw_fd(), &msg, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// poll(2) over `fds` for at most `timeout`; returns how many are ready.
fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = timeout.as_micros().div_ceil(1000).min(1000) as libc::c_int;
    // SAFETY: `fds` is an exclusively borrowed, live slice of `fds.len()` pollfd structures.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

// ----- ICMP through the simulator's own ESP -----

const PROBE_ID: u16 = 0xe5e5;
const PROBE_PAYLOAD: &[u8] = b"esprit many-tunnels probe";

fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let icmp_len = 8 + PROBE_PAYLOAD.len();
    let mut p = vec![0u8; 20 + icmp_len];
    dataplane::wire::ipv4::Ipv4Repr {
        src,
        dst,
        protocol: 1,
        payload_len: icmp_len,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: seq,
        dont_frag: true,
    }
    .emit(&mut p);
    let icmp = &mut p[20..];
    icmp[0] = 8;
    icmp[4..6].copy_from_slice(&PROBE_ID.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[8..].copy_from_slice(PROBE_PAYLOAD);
    let c = dataplane::wire::checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// (source, destination, sequence) of an ICMP echo reply of ours.
fn echo_reply(pkt: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16)> {
    let ip = dataplane::wire::ipv4::Ipv4Packet::new_checked(pkt).ok()?;
    let icmp = ip.payload();
    if ip.protocol() != 1 || icmp.len() < 8 || icmp[0] != 0 || icmp[4..6] != PROBE_ID.to_be_bytes()
    {
        return None;
    }
    Some((ip.src(), ip.dst(), u16::from_be_bytes([icmp[6], icmp[7]])))
}

/// The SAs of a probe site's children, as gwB's dataplane has them mirrored.
fn insert_child(db: &mut SaDb, c: &ChildSaInstall) -> Result<(), String> {
    for (_, _, sa) in control::daemon::dataplane::sa_objects(c) {
        let cfg = dataplane::api::convert::sa_config(&sa).map_err(|e| e.to_string())?;
        db.insert(cfg).map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct ProbeRound {
    phase: &'static str,
    /// Sends left, and when the next one is due.
    sends_left: u32,
    next_send: Instant,
    deadline: Instant,
    sent: HashMap<u16, usize>,
    answered: HashSet<u16>,
}

// ----- the simulator -----

struct Site {
    tries: u32,
    started: Option<Instant>,
    pending: bool,
    up: bool,
    failed: bool,
    /// The current child: inbound SPI and when it came up.
    child: Option<(u32, Instant)>,
    /// Age of the first replaced child when its replacement came up, and its inbound SPI.
    first_rekey: Option<(f64, u32)>,
    old_deleted: bool,
    /// Our SPI of its IKE SA.
    ike_spi: u64,
    /// The first child's rekey: (due, how long after the child it was due, started).
    first_due: Option<(Instant, Duration, Option<Instant>)>,
    /// When the first rekey exchange started and how long it took.
    first_exchange: Option<Duration>,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    Setup,
    ProbeBefore,
    Rekey,
    ProbeAfter,
    Hold,
}

fn emit(e: &SimEvent) {
    use std::io::Write;
    let line = serde_json::to_string(e).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn connection(i: usize, gw_b: Ipv4Addr, rekey: Duration) -> Result<ConnectionParams, String> {
    let id = |s: &str| Identity::parse(s).map_err(|e| format!("identity {s}: {e:?}"));
    let child = ChildParams {
        name: "net".into(),
        local_ts: vec![TsSpec::Fixed(ts::prefix(
            IpAddr::V4(site_lan(i)),
            SITE_LAN_LEN,
        ))],
        remote_ts: vec![TsSpec::Fixed(ts::prefix(
            IpAddr::V4(Ipv4Addr::new(10, 201, 2, 0)),
            24,
        ))],
        proposals: vec![EspProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128],
            integ: vec![],
            dh: vec![],
            esn: vec![false],
            addke: Default::default(),
        }],
        mode: ChildMode::Tunnel,
        rekey_time: Some(rekey),
        rekey_bytes: 0,
        rekey_packets: 0,
        life_bytes: 0,
        life_packets: 0,
        replay_window: 1024,
    };
    Ok(ConnectionParams {
        name: site_name(i),
        local_addrs: vec![IpAddr::V4(site_wan(i))],
        remote_addrs: vec![IpAddr::V4(gw_b)],
        remote_port: 500,
        proposals: vec![IkeProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::X25519],
            addke: Default::default(),
        }],
        local_id: id(&format!("site{i}.esprit.test"))?,
        remote_id: Some(id("gwB")?),
        local_auth: LocalCredential::Psk(Arc::new(LAB_PSK.as_bytes().to_vec().into())),
        remote_auth: RemoteCredential::Psk(Arc::new(LAB_PSK.as_bytes().to_vec().into())),
        children: vec![child],
        force_encap: false,
        retransmit: Retransmit::default(),
        dpd_delay: None,
        rekey_time: None,
        fragmentation: true,
    })
}

/// The site simulator (`esprit-lab many-sim`), run in gwA's namespace, whose WAN carries the
/// sites' addresses: sets up one IKE SA and one child per site, pings through the probe sites'
/// tunnels, waits until every child has been rekeyed by its timer, pings again, and then keeps
/// every tunnel alive until its standard input closes. Reports [`SimEvent`]s as JSON lines on
/// standard output.
pub fn simulate(o: &SimOptions) -> Result<(), String> {
    let r = simulate_inner(o);
    if let Err(e) = &r {
        emit(&SimEvent::Error { message: e.clone() });
    }
    r
}

fn simulate_inner(o: &SimOptions) -> Result<(), String> {
    let n = o.tunnels;
    if n == 0 || n > MAX_TUNNELS || o.window == 0 {
        return Err(format!(
            "tunnels must be 1–{MAX_TUNNELS} and window at least 1"
        ));
    }
    let rekey = Duration::from_secs_f64(o.rekey_s);
    let closed = Arc::new(AtomicBool::new(false));
    {
        let closed = closed.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            closed.store(true, Ordering::Relaxed);
        });
    }
    let sock = SitesSock::open(500, SIM_RCVBUF).map_err(|e| format!("UDP port 500: {e}"))?;
    let mut sites = Vec::with_capacity(n);
    for _ in 0..n {
        sites.push(Site {
            tries: 0,
            started: None,
            pending: false,
            up: false,
            failed: false,
            child: None,
            first_rekey: None,
            old_deleted: false,
            ike_spi: 0,
            first_due: None,
            first_exchange: None,
        });
    }
    let raw_out = RawSock::open(libc::IPPROTO_RAW).map_err(|e| format!("raw socket: {e}"))?;
    let esp_in = RawSock::open(libc::IPPROTO_ESP).map_err(|e| format!("ESP socket: {e}"))?;
    let mut fds: Vec<libc::pollfd> = [sock.0.as_raw_fd(), esp_in.0.as_raw_fd()]
        .into_iter()
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let conns = (0..n)
        .map(|i| connection(i, o.gw_b, rekey).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ep = Endpoint::new(
        conns,
        EndpointSettings::default(),
        Box::new(SystemRandom::new()),
    );
    // Probe sites, spread over the range; each mirrors its children's SAs in its own SaDb.
    let probe_sites: Vec<usize> = (0..o.probes.min(n))
        .map(|k| k * n / o.probes.min(n).max(1))
        .collect();
    let mut probe_db: HashMap<usize, SaDb> = probe_sites
        .iter()
        .map(|&i| (i, SaDb::new(dataplane::esp::Backend::default())))
        .collect();
    let mut round: Option<ProbeRound> = None;
    let mut next_seq: u16 = 1;
    let host_b: Ipv4Addr = HOST_B.0.parse().map_err(|_| "HOST_B is not IPv4")?;

    emit(&SimEvent::Start { mem: Mem::now() });
    let t0 = Instant::now();
    let setup_deadline = t0 + Duration::from_secs_f64(o.setup_timeout_s);
    let mut queue: VecDeque<usize> = (0..n).collect();
    let (mut inflight, mut up, mut failed, mut retries, mut lost) = (0usize, 0, 0, 0, 0);
    let mut rekeys = 0usize;
    let mut latencies: Vec<f64> = Vec::with_capacity(n);
    // First children's rekey times, earliest first, until their timer has fired.
    let mut due: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize)>> =
        std::collections::BinaryHeap::new();
    let mut phase = Phase::Setup;
    let mut setup_end = t0;
    let mut buf = vec![0u8; 65_536];

    let mut quiesce_until: Option<Instant> = None;
    loop {
        if closed.load(Ordering::Relaxed) {
            // Asked to stop: once no site has an exchange or a second child under way, exit
            // (the SAs stay on gwB, every one with exactly one child).
            let end = *quiesce_until.get_or_insert_with(|| Instant::now() + QUIESCE_TIMEOUT);
            let quiet = sites.iter().all(|s| {
                ep.sa(s.ike_spi).is_none_or(|sa| match sa.children() {
                    [c] => !c.rekeying && sa.poll_timeout() == c.rekey_at,
                    _ => false,
                })
            });
            if quiet {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(format!(
                    "exchanges still under way {QUIESCE_TIMEOUT:?} after the stop"
                ));
            }
        }
        let now = Instant::now();
        // Pace the initiations.
        while phase == Phase::Setup && inflight < o.window {
            let Some(i) = queue.pop_front() else { break };
            let local = SocketAddr::new(IpAddr::V4(site_wan(i)), 500);
            ep.initiate(now, &site_name(i), None, local)
                .map_err(|e| e.to_string())?;
            let s = &mut sites[i];
            s.tries += 1;
            s.started.get_or_insert(now);
            s.pending = true;
            inflight += 1;
        }
        // Probes: send when due.
        if let Some(r) = &mut round {
            if r.sends_left > 0 && now >= r.next_send {
                r.sends_left -= 1;
                r.next_send = now + Duration::from_millis(500);
                for &i in &probe_sites {
                    let Some(db) = probe_db.get_mut(&i) else {
                        continue;
                    };
                    let seq = next_seq;
                    next_seq = next_seq.wrapping_add(1);
                    let src = Ipv4Addr::from(u32::from(site_lan(i)) + 1);
                    let mut frames = vec![OwnedFrame::from_packet(
                        &echo_request(src, host_b, seq),
                        128,
                        64,
                    )];
                    let mut v = [Verdict::Pass];
                    db.encrypt_batch(&mut frames, &mut v);
                    if v[0] == Verdict::Pass && raw_out.send_to(frames[0].data(), o.gw_b).is_ok() {
                        r.sent.insert(seq, i);
                    }
                }
            }
        }
        // Flush datagrams.
        while let Some(t) = ep.poll_transmit() {
            let (IpAddr::V4(a), 500) = (t.local.ip(), t.local.port()) else {
                eprintln!("esprit-lab many-sim: no socket for {}", t.local);
                continue;
            };
            if site_of_wan(a).is_some_and(|i| i < n) {
                let _ = sock.send(&t.data, a, t.remote);
            }
        }
        // Events.
        while let Some(e) = ep.poll_event() {
            let now = Instant::now();
            match e {
                IkeEvent::ChildUp(c) => {
                    let Some(i) = site_of_name(&c.conn).filter(|i| *i < n) else {
                        continue;
                    };
                    if let Some(db) = probe_db.get_mut(&i) {
                        insert_child(db, &c)?;
                    }
                    let s = &mut sites[i];
                    s.ike_spi = c.ike_sa;
                    match c.replaces {
                        None => {
                            if s.pending {
                                s.pending = false;
                                inflight -= 1;
                            }
                            if !s.up {
                                s.up = true;
                                up += 1;
                                let began = s.started.unwrap_or(now);
                                latencies.push(now.duration_since(began).as_secs_f64() * 1e3);
                                let at = ep
                                    .sa(c.ike_sa)
                                    .and_then(|sa| {
                                        sa.children()
                                            .iter()
                                            .find(|ch| ch.inbound_spi == c.inbound_spi)
                                    })
                                    .and_then(|ch| ch.rekey_at.map(|r| (r, r - ch.installed)));
                                if let Some((r, after)) = at {
                                    s.first_due = Some((r, after, None));
                                    due.push(std::cmp::Reverse((r, i)));
                                }
                            }
                        }
                        Some(old) => {
                            rekeys += 1;
                            if s.first_rekey.is_none() {
                                let born = s
                                    .child
                                    .filter(|(spi, _)| *spi == old)
                                    .map(|(_, t)| t)
                                    .unwrap_or(now);
                                s.first_rekey = Some((now.duration_since(born).as_secs_f64(), old));
                                s.first_exchange = s
                                    .first_due
                                    .and_then(|(_, _, started)| started)
                                    .map(|t| now.duration_since(t));
                            }
                        }
                    }
                    s.child = Some((c.inbound_spi, now));
                }
                IkeEvent::ChildDown {
                    conn,
                    inbound_spi,
                    outbound_spi,
                    ..
                } => {
                    let Some(i) = site_of_name(&conn).filter(|i| *i < n) else {
                        continue;
                    };
                    if let Some(db) = probe_db.get_mut(&i) {
                        db.remove(inbound_spi, Direction::In, None);
                        db.remove(outbound_spi, Direction::Out, None);
                    }
                    let s = &mut sites[i];
                    if s.first_rekey.is_some_and(|(_, old)| old == inbound_spi) {
                        s.old_deleted = true;
                    }
                }
                IkeEvent::IkeDown { conn, reason, .. } => {
                    let Some(i) = site_of_name(&conn).filter(|i| *i < n) else {
                        continue;
                    };
                    let s = &mut sites[i];
                    if s.up {
                        lost += 1;
                        eprintln!("esprit-lab many-sim: {conn}: IKE SA lost: {reason}");
                    } else if s.pending {
                        s.pending = false;
                        inflight -= 1;
                        if s.tries < 3 && phase == Phase::Setup {
                            retries += 1;
                            queue.push_back(i);
                        } else {
                            s.failed = true;
                            failed += 1;
                            eprintln!("esprit-lab many-sim: {conn}: failed: {reason}");
                        }
                    }
                }
                IkeEvent::ChildFailed { conn, reason, .. } => {
                    eprintln!("esprit-lab many-sim: {conn}: child failed: {reason}");
                    if let Some(s) = site_of_name(&conn).and_then(|i| sites.get_mut(i)) {
                        if s.pending {
                            s.pending = false;
                            s.failed = true;
                            inflight -= 1;
                            failed += 1;
                        }
                    }
                }
                IkeEvent::IkeUp { .. } | IkeEvent::IkeRekeyed { .. } | IkeEvent::Log(_) => {}
            }
        }
        // Phases.
        let now = Instant::now();
        match phase {
            Phase::Setup if up + failed == n || now > setup_deadline => {
                setup_end = now;
                emit(&SimEvent::Up {
                    secs: now.duration_since(t0).as_secs_f64(),
                    up,
                    failed: n - up,
                    retries,
                    latency_ms: Spread::of(&latencies),
                    mem: Mem::now(),
                });
                if up < n {
                    return Err(format!("{} of {n} sites did not come up", n - up));
                }
                phase = Phase::ProbeBefore;
                round = Some(ProbeRound {
                    phase: "before_rekey",
                    sends_left: 3,
                    next_send: now,
                    deadline: now + Duration::from_secs(3),
                    sent: HashMap::new(),
                    answered: HashSet::new(),
                });
            }
            Phase::ProbeBefore | Phase::ProbeAfter => {
                let done = round.as_ref().is_none_or(|r| {
                    now >= r.deadline || (r.sends_left == 0 && r.answered.len() == r.sent.len())
                });
                if done {
                    if let Some(r) = round.take() {
                        let ok: HashSet<usize> = r
                            .answered
                            .iter()
                            .filter_map(|q| r.sent.get(q))
                            .copied()
                            .collect();
                        emit(&SimEvent::Probe {
                            phase: r.phase.into(),
                            figures: ProbeFigures {
                                sites: probe_sites.len(),
                                sites_ok: ok.len(),
                                sent: r.sent.len(),
                                replies: r.answered.len(),
                            },
                        });
                    }
                    phase = if phase == Phase::ProbeBefore {
                        Phase::Rekey
                    } else {
                        Phase::Hold
                    };
                }
            }
            Phase::Rekey => {
                let done = sites
                    .iter()
                    .filter(|s| s.first_rekey.is_some() && s.old_deleted)
                    .count();
                if done == n || now > setup_end + rekey + rekey_slack(n) {
                    let ages: Vec<f64> = sites
                        .iter()
                        .filter_map(|s| s.first_rekey.map(|(a, _)| a))
                        .collect();
                    let exchanges: Vec<f64> = sites
                        .iter()
                        .filter_map(|s| s.first_exchange.map(|d| d.as_secs_f64() * 1e3))
                        .collect();
                    let window = rekey.mul_f64(0.9).saturating_sub(Duration::from_millis(1))
                        ..=rekey + Duration::from_millis(1);
                    let punctual = |s: &Site| {
                        s.first_due.is_some_and(|(at, after, started)| {
                            window.contains(&after)
                                && started.is_some_and(|t| t.duration_since(at) <= REKEY_PUNCTUAL)
                        })
                    };
                    emit(&SimEvent::Rekeyed {
                        secs: now.duration_since(setup_end).as_secs_f64(),
                        sites: done,
                        rekeys,
                        after_s: Spread::of(&ages),
                        exchange_ms: Spread::of(&exchanges),
                        off_schedule: sites.iter().filter(|s| !punctual(s)).count(),
                        late: exchanges
                            .iter()
                            .filter(|ms| **ms > REKEY_PROMPT.as_secs_f64() * 1e3)
                            .count(),
                        lost,
                        retransmissions: ep.stats().retransmissions,
                    });
                    phase = Phase::ProbeAfter;
                    round = Some(ProbeRound {
                        phase: "after_rekey",
                        sends_left: 3,
                        next_send: now,
                        deadline: now + Duration::from_secs(3),
                        sent: HashMap::new(),
                        answered: HashSet::new(),
                    });
                }
            }
            _ => {}
        }
        // Wait for datagrams or the next timer.
        let mut wait = Duration::from_millis(100);
        if let Some(t) = ep.poll_timeout() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        if let Some(r) = &round {
            if r.sends_left > 0 {
                wait = wait.min(r.next_send.saturating_duration_since(now));
            }
        }
        if phase == Phase::Setup && inflight < o.window && !queue.is_empty() {
            wait = Duration::ZERO;
        }
        for f in fds.iter_mut() {
            f.revents = 0;
        }
        poll_fds(&mut fds, wait).map_err(|e| format!("poll: {e}"))?;
        let now = Instant::now();
        for (i, f) in fds.iter().enumerate() {
            if f.revents == 0 {
                continue;
            }
            if i == 1 {
                // ESP for a probe site: decrypt with its SAs, expect our echo reply.
                while let Ok(len) = esp_in.recv(&mut buf) {
                    let pkt = &buf[..len];
                    let Some(site) = (len >= 20)
                        .then(|| Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]))
                        .and_then(site_of_wan)
                    else {
                        continue;
                    };
                    let Some(db) = probe_db.get_mut(&site) else {
                        continue;
                    };
                    let mut f = OwnedFrame::from_packet(pkt, 128, 64);
                    if dataplane::esp::decap::decap(db, &mut f).is_err() {
                        continue;
                    }
                    if let (Some((src, dst, seq)), Some(r)) = (echo_reply(f.data()), &mut round) {
                        let me = Ipv4Addr::from(u32::from(site_lan(site)) + 1);
                        if src == host_b && dst == me && r.sent.get(&seq) == Some(&site) {
                            r.answered.insert(seq);
                        }
                    }
                }
                continue;
            }
            // A batch per round, so that timers and sends are not starved under a flood.
            for _ in 0..SIM_RECV_BATCH {
                let Ok((len, from, dst)) = sock.recv(&mut buf) else {
                    break;
                };
                if site_of_wan(dst).is_some_and(|i| i < n) {
                    let local = SocketAddr::new(IpAddr::V4(dst), 500);
                    ep.handle_datagram(now, local, from, &buf[..len]);
                }
            }
        }
        let now = Instant::now();
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
            // The first children whose rekey was due have had their timer run: the rekey
            // started now (the child says so).
            while let Some(std::cmp::Reverse((at, i))) = due.peek().copied() {
                if at > now {
                    break;
                }
                due.pop();
                let s = &mut sites[i];
                let rekeying = ep.sa(s.ike_spi).is_some_and(|sa| {
                    sa.children().iter().any(|ch| {
                        s.child.is_some_and(|(spi, _)| spi == ch.inbound_spi) && ch.rekeying
                    })
                });
                if let Some((_, _, started)) = &mut s.first_due {
                    if rekeying || s.first_rekey.is_some() {
                        *started = Some(now);
                    }
                }
            }
        }
    }
}

// ----- the driver -----

/// How long after its rekey time the simulator waits for the last child's rekey: 30 s, plus
/// 1 s per 2,000 tunnels (a gateway rekeys at a finite rate).
fn rekey_slack(n: usize) -> Duration {
    Duration::from_secs(30 + n as u64 / 2000)
}

/// The default setup timeout for `n` tunnels: 120 s, or 10 ms per tunnel if longer.
pub fn setup_timeout_for(n: usize) -> Duration {
    Duration::from_secs(120).max(Duration::from_millis(10 * n as u64))
}

/// Settings of a many-tunnel run.
#[derive(Debug, Clone)]
pub struct ManyOptions {
    /// Lab name (namespace prefix).
    pub name: String,
    /// Sites, one tunnel each (1–[`MAX_TUNNELS`]).
    pub tunnels: usize,
    /// Initiations in flight at most.
    pub window: usize,
    /// The children's `rekey_time` on the sites' side.
    pub rekey: Duration,
    /// Sites that ping hB through their tunnel.
    pub probes: usize,
    /// Give up if the tunnels are not all up after this long.
    pub setup_timeout: Duration,
    /// The `esprit-lab` executable, whose `many-sim` subcommand is the simulator.
    pub simulator: PathBuf,
    /// gwB's dataplane worker spins (`[workers] poll = "busy"`) instead of sleeping in
    /// poll(2) when idle (`"adaptive"`, the dataplane's default, which the router wakes for
    /// every SA update).
    pub busy_poll: bool,
}

impl Default for ManyOptions {
    fn default() -> Self {
        ManyOptions {
            name: "esprit-many".into(),
            tunnels: 1000,
            window: 100,
            rekey: Duration::from_secs(30),
            probes: 4,
            setup_timeout: Duration::from_secs(120),
            simulator: PathBuf::from("esprit-lab"),
            busy_poll: false,
        }
    }
}

/// gwB's memory at the steps of a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemFigures {
    /// esprit-ike and the dataplane started, no tunnel.
    pub baseline: Mem,
    /// Every tunnel up.
    pub up: Mem,
    /// After the rekeys, exactly one child per tunnel again.
    pub rekeyed: Mem,
    /// esprit-ike stopped; the dataplane still holds every SA.
    pub without_ike: Mem,
}

/// What a many-tunnel run measured and checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ManyReport {
    /// Tunnels (sites).
    pub tunnels: usize,
    /// Initiations in flight at most.
    pub window: usize,
    /// gwB's dataplane worker polling: "busy" or "adaptive".
    pub poll: String,
    /// The children's rekey_time, seconds.
    pub rekey_s: f64,
    /// From the first initiation until every IKE SA and child was up on both sides, seconds.
    pub setup_s: f64,
    /// Tunnels per second over `setup_s`.
    pub setups_per_s: f64,
    /// Until the simulator had every child, seconds.
    pub initiator_up_s: f64,
    /// Until gwB had every IKE SA and had installed every child, seconds.
    pub responder_up_s: f64,
    /// Initiation to child per tunnel, milliseconds.
    pub latency_ms: Spread,
    /// Initiations repeated after a failure.
    pub retries: usize,
    /// IKE SAs established on gwB after the setup.
    pub gw_b_ike_sas: usize,
    /// Children on gwB after the setup.
    pub gw_b_children: usize,
    /// gwB's memory (the process runs gwB's esprit-ike and dataplane, and this driver).
    pub gw_b_mem: MemFigures,
    /// gwB (esprit-ike and dataplane) memory per tunnel: (up − baseline) / tunnels.
    pub per_tunnel: PerTunnel,
    /// The same after the rekeys: (rekeyed − baseline) / tunnels.
    pub per_tunnel_after_rekey: PerTunnel,
    /// esprit-ike's part: (rekeyed − without_ike) / tunnels.
    pub per_tunnel_ike: PerTunnel,
    /// The dataplane's part: (without_ike − baseline) / tunnels.
    pub per_tunnel_dataplane: PerTunnel,
    /// The simulator's (initiator side) memory per tunnel.
    pub initiator_per_tunnel: PerTunnel,
    /// Child rekeys counted by the simulator when every site had rekeyed.
    pub rekeys: usize,
    /// Sites whose child was rekeyed and the old child deleted.
    pub sites_rekeyed: usize,
    /// Age of the replaced child at its first rekey, seconds.
    pub rekey_after_s: Spread,
    /// From the timer's start of the first rekey to the new child, milliseconds.
    pub rekey_exchange_ms: Spread,
    /// First rekeys not started on time by the child's timer (see [`REKEY_PUNCTUAL`]).
    pub rekeys_off_schedule: usize,
    /// First rekey exchanges that took more than two seconds: a request or its answer was
    /// lost and retransmitted, or waited that long in gwB's socket buffer.
    pub rekeys_retransmitted: usize,
    /// Requests the sites retransmitted from the start until the rekeys were done.
    pub initiator_retransmissions: u64,
    /// IKE SAs lost after they were up.
    pub lost: usize,
    /// IKE SAs established on gwB after the rekeys.
    pub gw_b_ike_sas_after_rekey: usize,
    /// Children on gwB after the rekeys.
    pub gw_b_children_after_rekey: usize,
    /// Most children of one IKE SA on gwB after the rekeys.
    pub gw_b_max_children_per_sa: usize,
    /// gwB's children after the rekeys whose inbound SPI is not one their IKE SA's child had
    /// after the setup.
    pub gw_b_children_replaced: usize,
    /// SAs in gwB's dataplane after the rekeys (both directions).
    pub dataplane_sas: usize,
    /// UDP datagrams gwB's kernel dropped for want of socket buffer space (`RcvbufErrors`).
    pub gw_b_udp_rcvbuf_errors: u64,
    /// The same in gwA, where the simulator runs.
    pub gw_a_udp_rcvbuf_errors: u64,
    /// Pings through the probe sites' tunnels before the rekeys.
    pub probe_before: ProbeFigures,
    /// And after.
    pub probe_after: ProbeFigures,
    /// gwB's dataplane drops at the end, by reason (SA database and forwarding).
    pub dataplane_drops: std::collections::BTreeMap<String, u64>,
    /// The whole run, lab included, seconds.
    pub total_s: f64,
}

impl ManyReport {
    /// What is wrong with the run (empty: every tunnel came up, rekeyed on schedule, left
    /// exactly one child on gwB, and the pings went through).
    pub fn problems(&self) -> Vec<String> {
        let n = self.tunnels;
        let mut p = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                p.push(what);
            }
        };
        check(
            self.gw_b_ike_sas == n && self.gw_b_children == n,
            format!(
                "after the setup gwB has {} IKE SAs and {} children, not {n}",
                self.gw_b_ike_sas, self.gw_b_children
            ),
        );
        check(
            self.sites_rekeyed == n,
            format!("{} of {n} children were rekeyed", self.sites_rekeyed),
        );
        check(
            self.rekeys_off_schedule == 0,
            format!("{} rekeys off schedule", self.rekeys_off_schedule),
        );
        check(self.lost == 0, format!("{} IKE SAs lost", self.lost));
        check(
            self.gw_b_ike_sas_after_rekey == n
                && self.gw_b_children_after_rekey == n
                && self.gw_b_max_children_per_sa == 1,
            format!(
                "after the rekeys gwB has {} IKE SAs and {} children (at most {} per IKE SA), \
                 not {n} with one each",
                self.gw_b_ike_sas_after_rekey,
                self.gw_b_children_after_rekey,
                self.gw_b_max_children_per_sa
            ),
        );
        check(
            self.gw_b_children_replaced == n,
            format!(
                "{} of gwB's {n} children are new after the rekeys",
                self.gw_b_children_replaced
            ),
        );
        check(
            self.dataplane_sas == 2 * n,
            format!(
                "gwB's dataplane holds {} SAs, not {}",
                self.dataplane_sas,
                2 * n
            ),
        );
        for (when, f) in [("before", self.probe_before), ("after", self.probe_after)] {
            check(
                f.sites > 0 && f.sites_ok == f.sites,
                format!(
                    "pings {when} the rekeys: {} of {} probe sites answered",
                    f.sites_ok, f.sites
                ),
            );
        }
        p
    }

    /// The figures, for people.
    pub fn render(&self) -> String {
        let m = &self.gw_b_mem;
        let kib = |p: PerTunnel| format!("{:.1} KiB heap, {:.1} KiB RSS", p.heap_kib, p.rss_kib);
        format!(
            "tunnels: {} (window {}, IKE {IKE_PROPOSAL}, ESP {ESP_PROPOSAL}, PSK; gwB's \
             dataplane polls {})\n\
             setup: {:.2} s until all up on both sides ({:.0} tunnels/s); initiator {:.2} s, \
             gwB {:.2} s; per tunnel {:.0} ms median, {:.0} ms p99, {:.0} ms max; {} retries\n\
             gwB after setup: {} IKE SAs, {} children\n\
             gwB memory, heap/VmRSS KiB: baseline {}/{}, up {}/{}, after rekeys {}/{}, \
             without esprit-ike {}/{}\n\
             per tunnel on gwB: {}; after rekeys {}: esprit-ike {}, dataplane {}\n\
             per tunnel on the initiator: {}\n\
             rekeys (rekey_time {:.0} s): {} sites rekeyed, {} rekeys, first at age {:.2}–{:.2} s \
             (median {:.2}); exchange {:.0} ms median, {:.0} ms p99, {:.0} ms max, {} over 2 s; \
             {} requests retransmitted by the sites; {} not started on schedule; {} IKE SAs \
             lost\n\
             gwB after rekeys: {} IKE SAs, {} children (at most {} per IKE SA), {} replaced; \
             dataplane {} SAs\n\
             UDP receive buffer overflows: gwB {}, gwA {}\n\
             pings: before rekeys {}/{} sites ({} of {} replies), after {}/{} sites ({} of {})\n\
             gwB dataplane drops: {:?}\n\
             total {:.1} s",
            self.tunnels,
            self.window,
            self.poll,
            self.setup_s,
            self.setups_per_s,
            self.initiator_up_s,
            self.responder_up_s,
            self.latency_ms.median,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.retries,
            self.gw_b_ike_sas,
            self.gw_b_children,
            m.baseline.heap_kib,
            m.baseline.rss_kib,
            m.up.heap_kib,
            m.up.rss_kib,
            m.rekeyed.heap_kib,
            m.rekeyed.rss_kib,
            m.without_ike.heap_kib,
            m.without_ike.rss_kib,
            kib(self.per_tunnel),
            kib(self.per_tunnel_after_rekey),
            kib(self.per_tunnel_ike),
            kib(self.per_tunnel_dataplane),
            kib(self.initiator_per_tunnel),
            self.rekey_s,
            self.sites_rekeyed,
            self.rekeys,
            self.rekey_after_s.min,
            self.rekey_after_s.max,
            self.rekey_after_s.median,
            self.rekey_exchange_ms.median,
            self.rekey_exchange_ms.p99,
            self.rekey_exchange_ms.max,
            self.rekeys_retransmitted,
            self.initiator_retransmissions,
            self.rekeys_off_schedule,
            self.lost,
            self.gw_b_ike_sas_after_rekey,
            self.gw_b_children_after_rekey,
            self.gw_b_max_children_per_sa,
            self.gw_b_children_replaced,
            self.dataplane_sas,
            self.gw_b_udp_rcvbuf_errors,
            self.gw_a_udp_rcvbuf_errors,
            self.probe_before.sites_ok,
            self.probe_before.sites,
            self.probe_before.replies,
            self.probe_before.sent,
            self.probe_after.sites_ok,
            self.probe_after.sites,
            self.probe_after.replies,
            self.probe_after.sent,
            self.dataplane_drops,
            self.total_s,
        )
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The simulator process; killed when dropped.
struct Simulator {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<SimEvent>,
}

impl Simulator {
    fn spawn(lab: &Lab, exe: &Path, o: &SimOptions) -> Result<Simulator, String> {
        let json = serde_json::to_string(o).map_err(|e| e.to_string())?;
        let mut child = lab
            .command(Node::GwA, exe)
            .arg("many-sim")
            .arg(json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the simulator {}: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("the simulator has no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<SimEvent>(&line) {
                    Ok(e) => {
                        if tx.send(e).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("esprit-lab many-sim: {line}"),
                }
            }
        });
        Ok(Simulator {
            child,
            stdin,
            events: rx,
        })
    }

    /// The next event, if one comes before `deadline`; an error if the simulator reported one
    /// or exited.
    fn next_before(&self, deadline: Instant) -> Result<Option<SimEvent>, String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(wait) {
            Ok(SimEvent::Error { message }) => Err(format!("simulator: {message}")),
            Ok(e) => Ok(Some(e)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err("the simulator exited".into()),
        }
    }

    fn expect(&self, what: &str, timeout: Duration) -> Result<SimEvent, String> {
        self.next_before(Instant::now() + timeout)?
            .ok_or_else(|| format!("no {what} from the simulator within {timeout:?}"))
    }

    /// Close its input: it finishes the exchanges under way and exits. An error if it
    /// reports one or does not exit in time.
    fn finish(mut self) -> Result<(), String> {
        self.stdin.take();
        let end = Instant::now() + QUIESCE_TIMEOUT + Duration::from_secs(10);
        loop {
            if let Ok(SimEvent::Error { message }) = self.events.try_recv() {
                return Err(format!("simulator: {message}"));
            }
            match self.child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(format!("the simulator exited with {st}")),
                Ok(None) if Instant::now() > end => {
                    return Err("the simulator did not exit when asked".into())
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("the simulator: {e}")),
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ok_status(what: &str, out: io::Result<std::process::Output>) -> Result<(), String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Make the sites' addresses local in gwA's namespace (one `local` route, AnyIP: whatever
/// the number of sites) and route them from gwB through gwA.
fn add_sites(lab: &Lab) -> Result<(), String> {
    ok_status(
        "making the sites' addresses local on gwA",
        lab.command(Node::GwA, "ip")
            .args(["route", "add", "local", SITES_WAN, "dev", "lo"])
            .output(),
    )?;
    ok_status(
        "routing the sites on gwB",
        lab.command(Node::GwB, "ip")
            .args(["route", "add", SITES_WAN, "via"])
            .arg(GW_A_WAN.to_string())
            .output(),
    )
}

/// gwB's esprit-ike's `udp_rcvbuf`: the default 4 MiB, or 640 bytes per tunnel (64 MiB for
/// 100,000), so that a round of rekeys waits in the socket rather than being dropped.
fn gw_b_rcvbuf(tunnels: usize) -> u32 {
    let want = u32::try_from(tunnels.saturating_mul(640)).unwrap_or(u32::MAX);
    want.clamp(control::config::DEFAULT_UDP_RCVBUF, 1 << 30)
}

/// gwB's esprit-ike and dataplane configurations: one responder connection for every site.
fn write_gw_b_configs(
    lab: &Lab,
    dir: &Path,
    o: &ManyOptions,
) -> Result<(PathBuf, dataplane::daemon::DataplaneConfig), String> {
    let dp_sock = dir.join("gwB-dp.sock");
    let ike = format!(
        "[daemon]\ndataplane_socket = \"{}\"\nsocket = \"{}\"\n\
         # Above the simulator's window: every initiation is answered without a COOKIE round.\n\
         cookie_threshold = {}\n\
         # Room for a round of rekeys of every tunnel at once.\n\
         udp_rcvbuf = {}\n\n\
         [connections.sites]\nlocal_addrs = [\"{}\"]\nremote_addrs = [\"%any\"]\n\
         proposals = [\"{IKE_PROPOSAL}\"]\nlocal = {{ auth = \"psk\", id = \"gwB\" }}\n\
         remote = {{ auth = \"psk\" }}\n\n\
         [connections.sites.children.net]\nlocal_ts = [\"10.201.2.0/24\"]\n\
         remote_ts = [\"{SITES_LAN}\"]\nesp_proposals = [\"{ESP_PROPOSAL}\"]\n\n\
         [[secrets.ike]]\nids = [\"gwB\"]\nsecret = \"{LAB_PSK}\"\n",
        dp_sock.display(),
        dir.join("gwB-ike.sock").display(),
        (2 * o.window).max(10),
        gw_b_rcvbuf(o.tunnels),
        lab.gw_b_wan(),
    );
    let ike_path = dir.join("gwB-ike.toml");
    crate::ike::write_private(&ike_path, &ike)?;
    let dp = format!(
        "api_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n\
         gateway = \"{GW_A_WAN}\"\n[workers]\ncount = {}\npoll = \"{}\"\n",
        dp_sock.display(),
        lab.spec.queues,
        if o.busy_poll { "busy" } else { "adaptive" },
    );
    let dp_path = dir.join("gwB-dp.toml");
    std::fs::write(&dp_path, dp).map_err(|e| format!("{}: {e}", dp_path.display()))?;
    let cfg = dataplane::daemon::DataplaneConfig::load(&dp_path).map_err(|e| e.to_string())?;
    Ok((ike_path, cfg))
}

/// gwB's IKE SAs: (established, children, most children of one SA, the inbound SPIs of each
/// IKE SA's children by the IKE SA's SPIs).
type GwBSas = (usize, usize, usize, HashMap<String, HashSet<String>>);

fn gw_b_sas(ike: &IkeDaemon) -> Result<GwBSas, String> {
    let v = ike.list()?;
    let sas = v.as_array().ok_or("ike.list is not a list")?;
    let mut spis: HashMap<String, HashSet<String>> = HashMap::new();
    let (mut est, mut children, mut most) = (0, 0, 0);
    for sa in sas {
        if sa["state"] == "established" {
            est += 1;
        }
        let c = sa["children"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        children += c.len();
        most = most.max(c.len());
        let ike_sa = format!("{}_{}", sa["spi_i"], sa["spi_r"]);
        spis.entry(ike_sa).or_default().extend(
            c.iter()
                .filter_map(|c| c["inbound_spi"].as_str().map(String::from)),
        );
    }
    Ok((est, children, most, spis))
}

fn dataplane_sas(socket: &Path) -> Result<usize, String> {
    let mut c = dataplane::api::Client::connect(socket).map_err(|e| e.to_string())?;
    let v = c
        .call(dataplane::api::Request::SaList)
        .map_err(|e| e.to_string())?;
    Ok(v.as_array().map_or(0, Vec::len))
}

/// `Udp: RcvbufErrors` of a node (/proc/net/snmp).
fn udp_rcvbuf_errors(lab: &Lab, node: Node) -> u64 {
    let Ok(out) = lab.exec(node, &["cat", "/proc/net/snmp"]) else {
        return 0;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn stat(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Run the many-tunnel test: build a lab, start gwB, run the simulator against it, check and
/// measure. `say` gets progress lines. Errors mean a phase could not complete; what completed
/// but is wrong is in [`ManyReport::problems`].
pub fn run(o: &ManyOptions, mut say: impl FnMut(&str)) -> Result<ManyReport, String> {
    let n = o.tunnels;
    if n == 0 || n > MAX_TUNNELS || o.window == 0 {
        return Err(format!(
            "tunnels must be 1–{MAX_TUNNELS} and the window at least 1"
        ));
    }
    if o.rekey < Duration::from_secs(2) {
        return Err("the rekey time must be at least 2 s".into());
    }
    let t_all = Instant::now();
    let mut r = ManyReport {
        tunnels: n,
        window: o.window,
        poll: if o.busy_poll { "busy" } else { "adaptive" }.into(),
        rekey_s: o.rekey.as_secs_f64(),
        ..ManyReport::default()
    };
    let lab = LabGuard::up(&LabSpec {
        name: o.name.clone(),
        ..LabSpec::default()
    })
    .map_err(|e| e.to_string())?;
    let dir = TempDir(std::env::temp_dir().join(format!("{}-{}", o.name, std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    add_sites(&lab)?;
    let (ike_cfg, dp_cfg) = write_gw_b_configs(&lab, &dir.0, o)?;
    let dp_sock = dp_cfg.api_socket.clone();
    say(&format!(
        "lab {} up, {SITES_WAN} local on gwA for {n} sites",
        o.name
    ));
    let dp = DataplaneThread::start(&lab, Node::GwB, dp_cfg)?;
    let ike = IkeDaemon::start(&lab, Node::GwB, &ike_cfg)?;
    let start = Instant::now();
    while ike.call(&ControlRequest::Stats)?["dataplane_connected"] != true {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("esprit-ike did not connect to the dataplane".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    r.gw_b_mem.baseline = Mem::now();

    let sim = Simulator::spawn(
        &lab,
        &o.simulator,
        &SimOptions {
            tunnels: n,
            window: o.window,
            rekey_s: o.rekey.as_secs_f64(),
            gw_b: lab.gw_b_wan().parse().map_err(|_| "gwB's address")?,
            probes: o.probes,
            setup_timeout_s: o.setup_timeout.as_secs_f64(),
        },
    )?;
    let SimEvent::Start { mem: sim_mem0 } = sim.expect("start", Duration::from_secs(30))? else {
        return Err("the simulator did not start as expected".into());
    };
    let t0 = Instant::now();
    say(&format!(
        "simulator started in gwA; setting up {n} tunnels, {} in flight",
        o.window
    ));

    // Until every tunnel is up on both sides.
    let deadline = t0 + o.setup_timeout + Duration::from_secs(10);
    let (mut sim_up, mut gw_up): (Option<SimEvent>, Option<f64>) = (None, None);
    let mut early = Vec::new();
    while sim_up.is_none() || gw_up.is_none() {
        if Instant::now() > deadline {
            let s = ike
                .call(&ControlRequest::Stats)
                .unwrap_or_else(|e| e.into());
            return Err(format!(
                "not all up after {:?}: simulator {}, gwB {s}",
                o.setup_timeout,
                if sim_up.is_some() { "up" } else { "not up" }
            ));
        }
        if gw_up.is_none() {
            // A busy esprit-ike may leave its control socket unanswered for a while: not an
            // error as long as the tunnels come up in time.
            let s = ike.call(&ControlRequest::Stats).unwrap_or_default();
            if stat(&s, "ike_sas") == n as u64 && stat(&s, "sas_installed") == 2 * n as u64 {
                gw_up = Some(t0.elapsed().as_secs_f64());
            }
        }
        match sim.next_before(Instant::now() + Duration::from_millis(50))? {
            Some(e @ SimEvent::Up { .. }) => sim_up = Some(e),
            Some(e) => early.push(e),
            None => {}
        }
    }
    let Some(SimEvent::Up {
        secs,
        retries,
        latency_ms,
        mem: sim_mem,
        ..
    }) = sim_up
    else {
        return Err("no setup report from the simulator".into());
    };
    r.gw_b_mem.up = Mem::now();
    r.initiator_up_s = secs;
    r.responder_up_s = gw_up.unwrap_or_default();
    r.setup_s = r.initiator_up_s.max(r.responder_up_s);
    r.setups_per_s = n as f64 / r.setup_s.max(1e-9);
    r.latency_ms = latency_ms;
    r.retries = retries;
    r.initiator_per_tunnel = PerTunnel::between(sim_mem, sim_mem0, n);
    r.per_tunnel = PerTunnel::between(r.gw_b_mem.up, r.gw_b_mem.baseline, n);
    let (est, children, _, first_spis) = gw_b_sas(&ike).unwrap_or_default();
    r.gw_b_ike_sas = est;
    r.gw_b_children = children;
    say(&format!(
        "all {n} up in {:.2} s ({:.0}/s): gwB has {est} IKE SAs and {children} children, \
         {:.1} KiB heap per tunnel",
        r.setup_s, r.setups_per_s, r.per_tunnel.heap_kib
    ));

    // Pings, then the rekeys (each child rekey_time after it came up), then pings again.
    let rekey_deadline = Instant::now() + o.rekey + rekey_slack(n) + Duration::from_secs(30);
    let mut pending: VecDeque<SimEvent> = early.into();
    let mut next = |what: &str| -> Result<SimEvent, String> {
        if let Some(e) = pending.pop_front() {
            return Ok(e);
        }
        sim.next_before(rekey_deadline)?
            .ok_or_else(|| format!("no {what} from the simulator in time"))
    };
    let (mut rekeyed, mut probed_after) = (false, false);
    while !rekeyed || !probed_after {
        match next("rekey report")? {
            SimEvent::Probe { phase, figures } if phase == "before_rekey" => {
                r.probe_before = figures;
                say(&format!(
                    "pings before the rekeys: {}/{} sites answered",
                    figures.sites_ok, figures.sites
                ));
            }
            SimEvent::Probe { figures, .. } => {
                probed_after = true;
                r.probe_after = figures;
                say(&format!(
                    "pings after the rekeys: {}/{} sites answered",
                    figures.sites_ok, figures.sites
                ));
            }
            SimEvent::Rekeyed {
                sites,
                rekeys,
                after_s,
                exchange_ms,
                off_schedule,
                late,
                lost,
                retransmissions,
                ..
            } => {
                rekeyed = true;
                r.sites_rekeyed = sites;
                r.rekeys = rekeys;
                r.rekey_after_s = after_s;
                r.rekey_exchange_ms = exchange_ms;
                r.rekeys_off_schedule = off_schedule;
                r.rekeys_retransmitted = late;
                r.initiator_retransmissions = retransmissions;
                r.lost = lost;
                say(&format!(
                    "{sites} children rekeyed ({rekeys} rekeys), at age {:.2}–{:.2} s",
                    after_s.min, after_s.max
                ));
            }
            SimEvent::Start { .. } | SimEvent::Up { .. } | SimEvent::Error { .. } => {}
        }
    }
    // The simulator finishes the exchanges under way and exits (its SAs stay on gwB): gwB must
    // then hold exactly one child per tunnel, in esprit-ike and in the dataplane (replaced
    // inbound SAs drain for 2 s there).
    sim.finish()?;
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let (Ok((est, children, most, spis)), Ok(dp_sas)) =
            (gw_b_sas(&ike), dataplane_sas(&dp_sock))
        else {
            if Instant::now() > end {
                return Err("gwB did not answer after the rekeys".into());
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        r.gw_b_ike_sas_after_rekey = est;
        r.gw_b_children_after_rekey = children;
        r.gw_b_max_children_per_sa = most;
        // Per IKE SA: a new child may reuse the SPI another tunnel's replaced child had.
        r.gw_b_children_replaced = spis
            .iter()
            .map(|(k, now)| {
                let before = first_spis.get(k);
                now.iter()
                    .filter(|s| before.is_none_or(|b| !b.contains(*s)))
                    .count()
            })
            .sum();
        r.dataplane_sas = dp_sas;
        let settled = est == n && children == n && most == 1 && dp_sas == 2 * n;
        if settled || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    r.gw_b_mem.rekeyed = Mem::now();
    say(&format!(
        "gwB after the rekeys: {} IKE SAs, {} children, dataplane {} SAs",
        r.gw_b_ike_sas_after_rekey, r.gw_b_children_after_rekey, r.dataplane_sas
    ));
    r.gw_b_udp_rcvbuf_errors = udp_rcvbuf_errors(&lab, Node::GwB);
    r.gw_a_udp_rcvbuf_errors = udp_rcvbuf_errors(&lab, Node::GwA);
    ike.stop()?;
    std::thread::sleep(Duration::from_millis(200));
    r.gw_b_mem.without_ike = Mem::now();
    let snap = dp.stop()?;
    for (k, v) in snap.sadb_drops.into_iter().chain(snap.forwarding_drops) {
        *r.dataplane_drops.entry(k).or_default() += v;
    }
    let g = r.gw_b_mem;
    r.per_tunnel_after_rekey = PerTunnel::between(g.rekeyed, g.baseline, n);
    r.per_tunnel_ike = PerTunnel::between(g.rekeyed, g.without_ike, n);
    r.per_tunnel_dataplane = PerTunnel::between(g.without_ike, g.baseline, n);
    drop(lab);
    r.total_s = t_all.elapsed().as_secs_f64();
    Ok(r)
}
