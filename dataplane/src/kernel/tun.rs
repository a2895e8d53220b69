//! Tunnel interfaces the kernel sees: layer-3 TUN devices (`IFF_TUN | IFF_NO_PI`) that the
//! dataplane creates, addresses, brings up and owns. What the gateway's own stack sends through
//! one (BGP, BFD, a ping to the far tunnel address) is read here and encrypted; what arrives
//! decrypted for it is written here. The device lives as long as its descriptor: when the
//! dataplane exits, the interface and every route through it disappear with it.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::neigh::{netlink_socket, recv};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTA_DST: u16 = 1;
const RTA_PRIORITY: u16 = 6;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RTN_UNREACHABLE: u8 = 7;
/// The metric of the unreachable route under each tunnel link prefix: the worst there is but
/// one, so any route someone installs for the prefix wins over it.
const UNREACHABLE_METRIC: u32 = u32::MAX - 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;

/// `struct ifreq` with the union as the flags / MTU field.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    value: i32,
    pad: [u8; 20],
}

impl IfReq {
    fn new(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not an interface name (1–15 characters, no '/')"),
            ));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: 0,
            pad: [0; 20],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(r)
    }
}

/// One TUN device and its descriptor (non-blocking).
#[derive(Debug)]
pub struct TunDevice {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
}

fn ioctl_sock(req: libc::c_ulong, ifr: &mut IfReq) -> io::Result<()> {
    // SAFETY: plain socket creation; checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let s = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the interface ioctls read and write a `struct ifreq`, which IfReq lays out.
    if unsafe { libc::ioctl(s.as_raw_fd(), req, ifr as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl TunDevice {
    /// Creates (or attaches to a persistent) TUN device `name`, with its carrier off until
    /// [`TunDevice::set_carrier`] says otherwise.
    pub fn create(name: &str) -> io::Result<Self> {
        let mut ifr = IfReq::new(name)?;
        ifr.value = i32::from(IFF_TUN | IFF_NO_PI);
        // SAFETY: opens a device node with a NUL-terminated path; checked below.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("/dev/net/tun: {e}")));
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which IfReq lays out.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut ifr as *mut IfReq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let ifindex = crate::xdp::sys::ifindex(name)?;
        let dev = TunDevice {
            fd,
            name: name.to_string(),
            ifindex,
        };
        dev.set_carrier(false)?;
        Ok(dev)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The descriptor, for poll(2).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Turns the carrier on or off: off, the kernel sees the link down (routing daemons
    /// close their sessions over it and routes through it are marked `linkdown`).
    pub fn set_carrier(&self, on: bool) -> io::Result<()> {
        let v: libc::c_int = on.into();
        // SAFETY: TUNSETCARRIER reads one int through the pointer.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), TUNSETCARRIER, &v as *const libc::c_int) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sets the MTU and brings the interface up.
    pub fn set_mtu_and_up(&self, mtu: usize) -> io::Result<()> {
        let mut ifr = IfReq::new(&self.name)?;
        ifr.value = i32::try_from(mtu)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"))?;
        ioctl_sock(libc::SIOCSIFMTU, &mut ifr)?;
        let mut ifr = IfReq::new(&self.name)?;
        ioctl_sock(libc::SIOCGIFFLAGS, &mut ifr)?;
        ifr.value |= libc::IFF_UP;
        ioctl_sock(libc::SIOCSIFFLAGS, &mut ifr)
    }

    /// Adds (or keeps) `addr/len` on the interface; IPv6 addresses skip duplicate address
    /// detection (the link is a point-to-point tunnel).
    pub fn add_address(&self, addr: IpAddr, len: u8) -> io::Result<()> {
        add_address(self.ifindex, addr, len)
    }

    /// Reads one packet into `buf`; `None` when none is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }

    /// Writes one IP packet to the kernel, as received on the interface.
    pub fn write(&self, pkt: &[u8]) -> io::Result<()> {
        // SAFETY: writes from a live buffer of the given length.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                pkt.as_ptr() as *const libc::c_void,
                pkt.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Appends one netlink attribute (header, value, padding to 4 bytes).
fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Installs (or keeps) an unreachable route for the prefix of `addr/len` in the main table,
/// at the worst metric but one. While the tunnel interface exists its connected route wins;
/// when the interface goes (the dataplane stopped or was killed) this route stays, so what the
/// gateway's own stack sends to the tunnel's far end (a routing daemon's BGP or BFD) is
/// refused instead of leaving in clear text through the default route.
pub fn hold_unreachable(addr: IpAddr, len: u8) -> io::Result<()> {
    let (family, bytes): (u8, Vec<u8>) = match crate::sa::Prefix::new(addr, len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "prefix length"))?
        .addr()
    {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let mut msg = vec![0u8; 16];
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    msg.extend_from_slice(&[
        family,
        len,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        0,
        RTN_UNREACHABLE,
    ]);
    msg.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut msg, RTA_DST, &bytes);
    push_attr(&mut msg, RTA_PRIORITY, &UNREACHABLE_METRIC.to_ne_bytes());
    request(msg, RTM_NEWROUTE)
}

/// RTM_NEWADDR for `addr/len` on `ifindex`, waiting for the kernel's answer.
fn add_address(ifindex: u32, addr: IpAddr, len: u8) -> io::Result<()> {
    let (family, bytes): (u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let mut msg = vec![0u8; 16];
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    msg.extend_from_slice(&[family, len, 0, 0]);
    msg.extend_from_slice(&ifindex.to_ne_bytes());
    push_attr(&mut msg, IFA_LOCAL, &bytes);
    push_attr(&mut msg, IFA_ADDRESS, &bytes);
    push_attr(&mut msg, IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
    request(msg, RTM_NEWADDR)
}

/// Sends `msg` (a netlink header's room, then the body) as a `kind` request that creates or
/// replaces, and waits for the kernel's answer.
fn request(mut msg: Vec<u8>, kind: u16) -> io::Result<()> {
    let total = msg.len() as u32;
    msg[0..4].copy_from_slice(&total.to_ne_bytes());
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let fd = netlink_socket(0)?;
    // SAFETY: sends a live buffer of the given length to the kernel (pid 0).
    if unsafe {
        libc::send(
            fd.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let Some(n) = recv(&fd, &mut buf)? else {
            continue;
        };
        let b = &buf[..n];
        if b.len() >= 20 && u16::from_ne_bytes([b[4], b[5]]) == NLMSG_ERROR {
            let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            return match code {
                0 => Ok(()),
                c => Err(io::Error::from_raw_os_error(-c)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("a-name-too-long-x").is_err());
        assert!(IfReq::new("a/b").is_err());
        assert!(IfReq::new("esp-b1").is_ok());
    }

    #[test]
    fn attributes_are_padded() {
        let mut b = Vec::new();
        push_attr(&mut b, IFA_LOCAL, &[10, 0, 0, 1]);
        push_attr(&mut b, IFA_FLAGS, &[1, 2, 3]);
        assert_eq!(b.len(), 8 + 8);
        assert_eq!(&b[0..2], &8u16.to_ne_bytes());
        assert_eq!(&b[8..10], &7u16.to_ne_bytes());
    }
}
