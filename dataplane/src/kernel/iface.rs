//! Interface facts: MAC address (sysfs), addresses and connected prefixes (getifaddrs).

use crate::sa::Prefix;
use std::io;
use std::net::IpAddr;

/// Runs an interface ioctl (`SIOCGIF*`) for `iface` on a throw-away socket of the calling
/// thread's network namespace and returns the filled request.
fn ifreq_ioctl(iface: &str, request: libc::c_ulong, what: &str) -> io::Result<libc::ifreq> {
    ifreq_ioctl_with(iface, request, what, |_| {})
}

/// Like [`ifreq_ioctl`], with `prepare` filling the request's union first (the `SIOCETHTOOL`
/// data pointer).
fn ifreq_ioctl_with(
    iface: &str,
    request: libc::c_ulong,
    what: &str,
    prepare: impl FnOnce(&mut libc::ifreq),
) -> io::Result<libc::ifreq> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    // SAFETY: plain socket creation; checked below and closed by OwnedFd.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    prepare(&mut req);
    // SAFETY: the SIOCGIF* requests read ifr_name and write one member of ifr_ifru in `req`;
    // SIOCETHTOOL reads and writes the buffer `prepare` pointed ifr_data at, which the caller
    // keeps alive across this call.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), request, &mut req) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what} of {iface}: {e}")));
    }
    Ok(req)
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// The RX queues of `iface` (`ETHTOOL_GCHANNELS`: rx plus combined channels) and whether
/// the driver counts them as combined channels, in the calling thread's network namespace.
pub fn rx_queues(iface: &str) -> io::Result<(u32, bool)> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let data = &mut ch as *mut EthtoolChannels as *mut libc::c_char;
    ifreq_ioctl_with(iface, libc::SIOCETHTOOL, "channels", |r| {
        r.ifr_ifru.ifru_data = data;
    })?;
    Ok((ch.rx_count + ch.combined_count, ch.combined_count > 0))
}

/// The MAC address of `iface` (SIOCGIFHWADDR, so it answers for the calling thread's network
/// namespace, unlike sysfs, which shows the namespace it was mounted in).
pub fn mac(iface: &str) -> io::Result<[u8; 6]> {
    let req = ifreq_ioctl(iface, libc::SIOCGIFHWADDR, "MAC")?;
    // SAFETY: SIOCGIFHWADDR filled the ifr_hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

/// The MTU of `iface` (SIOCGIFMTU, in the calling thread's network namespace).
pub fn mtu(iface: &str) -> io::Result<usize> {
    let req = ifreq_ioctl(iface, libc::SIOCGIFMTU, "MTU")?;
    // SAFETY: SIOCGIFMTU filled the ifr_mtu member of the union.
    let m = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(usize::try_from(m).unwrap_or(0))
}

/// An address configured on an interface, with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length of the connected network.
    pub prefix_len: u8,
}

impl IfAddr {
    /// The connected prefix.
    pub fn network(&self) -> Prefix {
        Prefix::new(self.addr, self.prefix_len).expect("length from a netmask")
    }
}

/// IPv4 and IPv6 addresses of `iface` (link-local IPv6 excluded).
pub fn addresses(iface: &str) -> io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr and ifa_netmask point to sockaddrs of the family in sa_family.
        let (addr, mask) = unsafe { (sockaddr_ip(ifa.ifa_addr), sockaddr_ip(ifa.ifa_netmask)) };
        let (Some(addr), Some(mask)) = (addr, mask) else {
            continue;
        };
        if let IpAddr::V6(a) = addr {
            if a.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
        }
        let prefix_len = match mask {
            IpAddr::V4(m) => u32::from(m).count_ones() as u8,
            IpAddr::V6(m) => u128::from(m).count_ones() as u8,
        };
        out.push(IfAddr { addr, prefix_len });
    }
    // SAFETY: frees the list returned by getifaddrs exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Reads an IPv4/IPv6 address out of a sockaddr.
///
/// # Safety
/// `sa` must be null or point to a valid sockaddr whose storage matches its family.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: caller guarantees `sa` is valid; the casts follow sa_family.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let s = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(s.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let s = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(s.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_127_0_0_1() {
        let a = addresses("lo").unwrap();
        assert!(a
            .iter()
            .any(|x| x.addr == IpAddr::from([127, 0, 0, 1]) && x.prefix_len == 8));
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        assert!(mtu("lo").unwrap() >= 1500);
        assert!(mac("esprit-none0").is_err());
        assert!(mac("").is_err());
    }
}
