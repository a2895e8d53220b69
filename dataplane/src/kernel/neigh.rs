//! The kernel's neighbour table: read with an RTM_GETNEIGH dump, followed through RTNLGRP_NEIGH
//! notifications, and kept resolved with RTM_NEWNEIGH NTF_USE requests.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_CREATE: u16 = 0x400;
/// Multicast group bit of RTNLGRP_NEIGH (group 3).
const RTMGRP_NEIGH: u32 = 1 << (3 - 1);
const NTF_USE: u8 = 0x01;
const NUD_NONE: u16 = 0x00;
const NUD_FAILED: u16 = 0x20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// NUD states whose link-layer address can be used: reachable, stale, delay, probe, permanent,
/// noarp.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80 | 0x40;

#[repr(C)]
struct Request {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    pad: [u8; 3],
    ifindex: i32,
    state: u16,
    ndm_flags: u8,
    ndm_type: u8,
}

/// Usable neighbour entries on interface `ifindex`, as (address, MAC) pairs collected into any
/// table (the workers' `Neighbours`, a map in tests): the kernel module knows no worker type.
pub fn dump<T: Default + Extend<(IpAddr, [u8; 6])>>(ifindex: u32) -> io::Result<T> {
    let req = Request {
        len: std::mem::size_of::<Request>() as u32,
        kind: RTM_GETNEIGH,
        flags: NLM_F_REQUEST | NLM_F_DUMP,
        seq: 1,
        pid: 0,
        family: libc::AF_UNSPEC as u8,
        pad: [0; 3],
        ifindex: 0,
        state: 0,
        ndm_flags: 0,
        ndm_type: 0,
    };
    let mut table = T::default();
    dump_with(&req, |b| parse(b, ifindex, &mut table))?;
    Ok(table)
}

/// Sends the netlink dump request `req` (a live `repr(C)` message whose first field is its
/// length) on a fresh socket and feeds every datagram of the answer to `parse` until it says
/// the dump is complete.
pub(super) fn dump_with<R>(
    req: &R,
    mut parse: impl FnMut(&[u8]) -> io::Result<bool>,
) -> io::Result<()> {
    let fd = netlink_socket(0)?;
    // SAFETY: sends the bytes of a live request of exactly its size to the kernel (pid 0).
    let r = unsafe {
        libc::send(
            fd.as_raw_fd(),
            req as *const R as *const libc::c_void,
            std::mem::size_of::<R>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match recv(&fd, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if parse(&buf[..n])? {
            return Ok(());
        }
    }
}

/// One neighbour entry (or its removal) as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry {
    /// Interface.
    pub ifindex: u32,
    /// Address of the neighbour.
    pub ip: IpAddr,
    /// Its link-layer address, if the message carries one.
    pub mac: Option<[u8; 6]>,
    /// NUD state bits.
    pub state: u16,
    /// True for RTM_DELNEIGH: the entry is gone.
    pub deleted: bool,
}

impl NeighEntry {
    /// True when the MAC may be used to send: the entry exists, has an address and is
    /// REACHABLE, STALE, DELAY, PROBE, PERMANENT or NOARP (not INCOMPLETE, FAILED or NONE).
    pub fn usable(&self) -> bool {
        !self.deleted && self.mac.is_some() && self.state & NUD_USABLE != 0
    }

    /// True when the kernel gave up resolving it (FAILED).
    pub fn failed(&self) -> bool {
        !self.deleted && self.state & NUD_FAILED != 0
    }
}

/// Parses one netlink datagram of neighbour messages (a dump part or notifications), calling
/// `f` for each entry; true when it ends a dump (NLMSG_DONE).
pub(crate) fn parse_entries(mut b: &[u8], mut f: impl FnMut(NeighEntry)) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message");
    while b.len() >= 16 {
        let len = u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            return Err(bad());
        }
        let msg = &b[16..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = msg
                    .get(0..4)
                    .map(|e| i32::from_ne_bytes(e.try_into().expect("4 bytes")))
                    .ok_or_else(bad)?;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
            }
            RTM_NEWNEIGH | RTM_DELNEIGH if msg.len() >= 12 => {
                let idx = i32::from_ne_bytes(msg[4..8].try_into().expect("4 bytes"));
                let state = u16::from_ne_bytes([msg[8], msg[9]]);
                let (mut dst, mut ll) = (None, None);
                let mut a = &msg[12..];
                while a.len() >= 4 {
                    let alen = usize::from(u16::from_ne_bytes([a[0], a[1]]));
                    let atype = u16::from_ne_bytes([a[2], a[3]]);
                    if alen < 4 || alen > a.len() {
                        break;
                    }
                    let v = &a[4..alen];
                    match (atype, v.len()) {
                        (NDA_DST, 4) => {
                            dst = Some(IpAddr::from(<[u8; 4]>::try_from(v).expect("4")))
                        }
                        (NDA_DST, 16) => {
                            dst = Some(IpAddr::from(<[u8; 16]>::try_from(v).expect("16")))
                        }
                        (NDA_LLADDR, 6) => ll = Some(<[u8; 6]>::try_from(v).expect("6")),
                        _ => {}
                    }
                    a = &a[alen.next_multiple_of(4).min(a.len())..];
                }
                if let Some(ip) = dst {
                    f(NeighEntry {
                        ifindex: idx as u32,
                        ip,
                        mac: ll,
                        state,
                        deleted: kind == RTM_DELNEIGH,
                    });
                }
            }
            _ => {}
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Ok(false)
}

/// Parses one netlink datagram of the dump into `table` (usable entries of `ifindex`); true
/// when the dump is complete.
pub(crate) fn parse(
    b: &[u8],
    ifindex: u32,
    table: &mut impl Extend<(IpAddr, [u8; 6])>,
) -> io::Result<bool> {
    parse_entries(b, |e| {
        if e.ifindex == ifindex && e.usable() {
            if let Some(mac) = e.mac {
                table.extend([(e.ip, mac)]);
            }
        }
    })
}

pub(super) fn netlink_socket(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Receives one datagram into `buf`; `None` when nothing is waiting (non-blocking sockets).
pub(super) fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: receives into a live buffer of the given length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(n as usize))
}

/// A subscription to the kernel's neighbour notifications (RTNLGRP_NEIGH): every entry that
/// is created, changes state or is removed, as it happens.
pub struct NeighMonitor {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl NeighMonitor {
    /// Subscribes (non-blocking socket, 1 MiB receive buffer).
    pub fn open() -> io::Result<Self> {
        let fd = netlink_socket(libc::SOCK_NONBLOCK)?;
        let size: libc::c_int = 1 << 20;
        // SAFETY: sets an integer socket option from a live c_int; failure only leaves the
        // default buffer size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_NEIGH;
        // SAFETY: binds to a live sockaddr_nl of the stated size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NeighMonitor {
            fd,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// The descriptor, to wait for notifications with poll(2).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Calls `f` for every notification waiting, without blocking. An `ENOBUFS` error means
    /// notifications were lost: the caller should dump the table again.
    pub fn read(&mut self, mut f: impl FnMut(NeighEntry)) -> io::Result<()> {
        while let Some(n) = recv(&self.fd, &mut self.buf)? {
            parse_entries(&self.buf[..n], &mut f)?;
        }
        Ok(())
    }
}

/// Asks the kernel to use neighbour entries the way its own transmit path does
/// (RTM_NEWNEIGH with NTF_USE): a missing entry is created and resolved, a STALE one is
/// re-validated by unicast probe, a resolved one is marked recently used (so the garbage
/// collector keeps it).
pub struct NeighUser {
    fd: OwnedFd,
    buf: Vec<u8>,
}

#[repr(C)]
struct UseRequest {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    pad: [u8; 3],
    ifindex: i32,
    state: u16,
    ndm_flags: u8,
    ndm_type: u8,
    attr_len: u16,
    attr_type: u16,
    dst: [u8; 16],
}

impl NeighUser {
    /// Opens the (non-blocking) netlink socket requests go through.
    pub fn open() -> io::Result<Self> {
        Ok(NeighUser {
            fd: netlink_socket(libc::SOCK_NONBLOCK)?,
            buf: vec![0u8; 8 * 1024],
        })
    }

    /// Sends the request for `ip` on `ifindex` (errors the kernel reports come back later and
    /// are dropped by [`NeighUser::drain`]).
    pub fn use_entry(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        let (family, n, dst) = match ip {
            IpAddr::V4(a) => {
                let mut d = [0u8; 16];
                d[..4].copy_from_slice(&a.octets());
                (libc::AF_INET as u8, 4usize, d)
            }
            IpAddr::V6(a) => (libc::AF_INET6 as u8, 16, a.octets()),
        };
        let len = 16 + 12 + 4 + n;
        let req = UseRequest {
            len: len as u32,
            kind: RTM_NEWNEIGH,
            flags: NLM_F_REQUEST | NLM_F_CREATE,
            seq: 0,
            pid: 0,
            family,
            pad: [0; 3],
            ifindex: ifindex as i32,
            state: NUD_NONE,
            ndm_flags: NTF_USE,
            ndm_type: 0,
            attr_len: (4 + n) as u16,
            attr_type: NDA_DST,
            dst,
        };
        self.drain();
        // SAFETY: sends the first `len` bytes of a live repr(C) request (len <= its size).
        let r = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                &req as *const UseRequest as *const libc::c_void,
                len,
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads and discards whatever the kernel answered (errors for entries it would not
    /// create, e.g. on an interface that went down).
    pub fn drain(&mut self) {
        while let Ok(Some(_)) = recv(&self.fd, &mut self.buf) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn dump_runs() {
        // The dump of a real table completes (loopback may hold NOARP entries).
        let lo = crate::xdp::sys::ifindex("lo").unwrap();
        dump::<Vec<_>>(lo).unwrap();
    }

    #[test]
    fn parses_an_entry_and_ignores_garbage() {
        let mut m = Vec::new();
        let body_len = 12 + 8 + 12;
        m.extend_from_slice(&((16 + body_len) as u32).to_ne_bytes());
        m.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[2, 0, 0, 0]);
        m.extend_from_slice(&7i32.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NDA_DST.to_ne_bytes());
        m.extend_from_slice(&[10, 0, 0, 9]);
        m.extend_from_slice(&10u16.to_ne_bytes());
        m.extend_from_slice(&NDA_LLADDR.to_ne_bytes());
        m.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0, 0]);
        let mut t = HashMap::new();
        assert!(!parse(&m, 7, &mut t).unwrap());
        assert_eq!(
            t.get(&IpAddr::from([10, 0, 0, 9])),
            Some(&[2, 0, 0, 0, 0, 9])
        );
        let mut t = HashMap::new();
        parse(&m, 8, &mut t).unwrap();
        assert!(t.is_empty(), "other interfaces are ignored");
        let mut broken = m.clone();
        broken[0] = 200;
        assert!(parse(&broken, 7, &mut HashMap::new()).is_err());
    }

    /// One RTM_NEWNEIGH / RTM_DELNEIGH message for an IPv6 neighbour.
    fn message(kind: u16, state: u16, mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&[10, 0, 0, 0]);
        body.extend_from_slice(&3i32.to_ne_bytes());
        body.extend_from_slice(&state.to_ne_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&20u16.to_ne_bytes());
        body.extend_from_slice(&NDA_DST.to_ne_bytes());
        body.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        if let Some(m) = mac {
            body.extend_from_slice(&10u16.to_ne_bytes());
            body.extend_from_slice(&NDA_LLADDR.to_ne_bytes());
            body.extend_from_slice(&m);
            body.extend_from_slice(&[0, 0]);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn states_decide_what_is_usable() {
        let mac = Some([2, 0, 0, 0, 0, 2]);
        let entry = |kind, state, mac| {
            let mut got = Vec::new();
            parse_entries(&message(kind, state, mac), |e| got.push(e)).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].ip, "fd00::2".parse::<IpAddr>().unwrap());
            assert_eq!(got[0].ifindex, 3);
            got[0]
        };
        // REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT: the MAC may be used.
        for state in [0x02, 0x04, 0x08, 0x10, 0x40, 0x80] {
            let e = entry(RTM_NEWNEIGH, state, mac);
            assert!(e.usable() && !e.failed(), "state {state:#x}");
        }
        // INCOMPLETE, FAILED, NONE: it may not, and FAILED is reported as such.
        for state in [0x01, 0x20, 0x00] {
            let e = entry(RTM_NEWNEIGH, state, None);
            assert!(!e.usable(), "state {state:#x}");
            assert_eq!(e.failed(), state == 0x20);
        }
        // A FAILED entry may still carry the old address: not usable either.
        assert!(!entry(RTM_NEWNEIGH, 0x20, mac).usable());
        // A deleted entry is gone whatever its last state.
        let e = entry(RTM_DELNEIGH, 0x04, mac);
        assert!(e.deleted && !e.usable() && !e.failed());
        // Two messages in one datagram.
        let mut two = message(RTM_NEWNEIGH, 0x02, mac);
        two.extend_from_slice(&message(RTM_DELNEIGH, 0x02, mac));
        let mut n = 0;
        assert!(!parse_entries(&two, |_| n += 1).unwrap());
        assert_eq!(n, 2);
    }

    #[test]
    fn monitor_opens_and_reads_without_blocking() {
        let mut m = NeighMonitor::open().unwrap();
        m.read(|_| {}).unwrap();
        NeighUser::open().unwrap().drain();
    }
}
