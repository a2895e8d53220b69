//! The kernel's neighbour table, read with an RTM_GETNEIGH netlink dump.

use crate::worker::Neighbours;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
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

/// Usable neighbour entries on interface `ifindex`.
pub fn dump(ifindex: u32) -> io::Result<Neighbours> {
    // SAFETY: plain socket creation; checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
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
    // SAFETY: sends the bytes of a live repr(C) request to the kernel (pid 0).
    let r = unsafe {
        libc::send(
            fd.as_raw_fd(),
            &req as *const Request as *const libc::c_void,
            req.len as usize,
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut table = Neighbours::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
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
            return Err(io::Error::last_os_error());
        }
        if parse(&buf[..n as usize], ifindex, &mut table)? {
            return Ok(table);
        }
    }
}

/// Parses one netlink datagram of the dump; true when the dump is complete.
pub(crate) fn parse(mut b: &[u8], ifindex: u32, table: &mut Neighbours) -> io::Result<bool> {
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
            RTM_NEWNEIGH if msg.len() >= 12 => {
                let idx = i32::from_ne_bytes(msg[4..8].try_into().expect("4 bytes"));
                let state = u16::from_ne_bytes([msg[8], msg[9]]);
                if idx as u32 == ifindex && state & NUD_USABLE != 0 {
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
                    if let (Some(d), Some(m)) = (dst, ll) {
                        table.insert(d, m);
                    }
                }
            }
            _ => {}
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_runs() {
        // The dump of a real table completes (loopback may hold NOARP entries).
        let lo = crate::xdp::sys::ifindex("lo").unwrap();
        dump(lo).unwrap();
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
        let mut t = Neighbours::new();
        assert!(!parse(&m, 7, &mut t).unwrap());
        assert_eq!(t.get(IpAddr::from([10, 0, 0, 9])), Some([2, 0, 0, 0, 0, 9]));
        let mut t = Neighbours::new();
        parse(&m, 8, &mut t).unwrap();
        assert!(t.is_empty(), "other interfaces are ignored");
        let mut broken = m.clone();
        broken[0] = 200;
        assert!(parse(&broken, 7, &mut Neighbours::new()).is_err());
    }
}
