//! Thin wrappers over the `bpf(2)` system call (map creation and update, program load, XDP
//! attachment through a bpf link, `BPF_PROG_TEST_RUN`) and over rtnetlink for the XDP
//! attachment that outlives the process (`RTM_SETLINK` with `IFLA_XDP`).
//!
//! Each attribute struct mirrors the prefix of `union bpf_attr` that its command reads; the
//! kernel treats the bytes it is not given as zero.

use super::asm::Insn;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_MAP_TYPE_XSKMAP`.
pub const MAP_TYPE_XSKMAP: u32 = 17;
const PROG_TYPE_XDP: u32 = 6;
const ATTACH_TYPE_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native (driver) XDP.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `XDP_FLAGS_REPLACE`: replace only the program given as `IFLA_XDP_EXPECTED_FD`.
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// XDP verdicts.
pub mod action {
    /// Drop the packet.
    pub const ABORTED: u32 = 0;
    /// Drop the packet.
    pub const DROP: u32 = 1;
    /// Hand the packet to the kernel stack.
    pub const PASS: u32 = 2;
    /// Send it back out of the interface it came in on.
    pub const TX: u32 = 3;
    /// Redirect (to an AF_XDP socket here).
    pub const REDIRECT: u32 = 4;
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly aligned repr(C) struct whose layout is the prefix of
    // `union bpf_attr` that `cmd` reads; the kernel reads (and for some commands writes) at most
    // `size_of::<T>()` bytes of it. Pointers inside it reference buffers the caller keeps alive
    // for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf syscall returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(
        name.bytes()
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .take(15),
    ) {
        *o = b;
    }
    out
}

/// Creates an XSKMAP with `entries` slots (one per RX queue).
pub fn create_xskmap(name: &str, entries: u32) -> io::Result<OwnedFd> {
    let mut a = MapCreateAttr {
        map_type: MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_name: name16(name),
        ..Default::default()
    };
    bpf(BPF_MAP_CREATE, &mut a).map(fd_from)
}

/// Sets `map[key] = value` for 4-byte keys and values (an XSKMAP slot takes a socket fd).
pub fn update_u32(map: &OwnedFd, key: u32, value: u32) -> io::Result<()> {
    let mut a = MapUpdateAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// Why a program failed to load.
#[derive(Debug, thiserror::Error)]
#[error("BPF program {name} refused: {err}\nverifier log:\n{log}")]
pub struct LoadError {
    /// Program name.
    pub name: String,
    /// The syscall error.
    pub err: io::Error,
    /// The verifier's explanation (may be empty).
    pub log: String,
}

/// Loads an XDP program. On failure the load is retried with the verifier log on, so the
/// error explains itself.
pub fn load_xdp(name: &str, insns: &[Insn]) -> Result<OwnedFd, LoadError> {
    let license = CString::new("Apache-2.0 OR MIT").expect("no NUL");
    let mut a = ProgLoadAttr {
        prog_type: PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name16(name),
        expected_attach_type: ATTACH_TYPE_XDP,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut a) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(err) => {
            let mut log = vec![0u8; 1 << 20];
            a.log_level = 1;
            a.log_size = log.len() as u32;
            a.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut a).map(fd_from);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(LoadError {
                name: name.to_string(),
                err,
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            })
        }
    }
}

/// Attaches an XDP program to an interface through a bpf link. The program stays attached
/// while the returned descriptor is open, and detaches when the process exits, even on SIGKILL.
pub fn attach_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: ATTACH_TYPE_XDP,
        flags,
    };
    bpf(BPF_LINK_CREATE, &mut a).map(fd_from)
}

const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
const NLA_F_NESTED: u16 = 1 << 15;

fn nla(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Sends one `RTM_SETLINK` request carrying `IFLA_XDP { attrs }` for `ifindex` and waits for
/// the kernel's acknowledgement.
fn setlink_xdp(ifindex: u32, attrs: &[(u16, i32)]) -> io::Result<()> {
    let mut xdp = Vec::new();
    for &(kind, v) in attrs {
        nla(&mut xdp, kind, &v.to_ne_bytes());
    }
    let mut body = Vec::with_capacity(64);
    // struct ifinfomsg: family, pad, type, index, flags, change.
    body.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    nla(&mut body, IFLA_XDP | NLA_F_NESTED, &xdp);
    let sock = rtnl_send(
        libc::RTM_SETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        &body,
    )?;
    let mut reply = [0u8; 4096];
    loop {
        let n = rtnl_recv(&sock, &mut reply)?;
        // NLMSG_ERROR (type 2): nlmsghdr, then the error code (0 is the acknowledgement).
        if n >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == libc::NLMSG_ERROR as u16 {
            let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
            return if code == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-code))
            };
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
    }
}

/// Opens a route netlink socket in the calling thread's network namespace and sends one
/// message of type `kind` with `flags` and `body` to the kernel.
fn rtnl_send(kind: u16, flags: u16, body: &[u8]) -> io::Result<OwnedFd> {
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `kernel` are valid for the lengths given for the duration of the call.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
            &kernel as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Receives one datagram of netlink messages into `reply`; returns its length.
fn rtnl_recv(sock: &OwnedFd, reply: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `reply` is a writable buffer of the length given.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                reply.as_mut_ptr() as *mut libc::c_void,
                reply.len(),
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;

/// How an XDP program is attached to an interface, as the kernel reports it
/// (`IFLA_XDP_ATTACHED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAttached {
    /// Nothing attached.
    None,
    /// In the driver (native mode).
    Native,
    /// In the generic (skb) path.
    Generic,
    /// Offloaded to the NIC.
    Offload,
    /// Several programs in different modes.
    Multi,
}

impl XdpAttached {
    /// `none`, `native`, `generic`, `offload` or `multi`.
    pub fn name(self) -> &'static str {
        match self {
            XdpAttached::None => "none",
            XdpAttached::Native => "native",
            XdpAttached::Generic => "generic",
            XdpAttached::Offload => "offload",
            XdpAttached::Multi => "multi",
        }
    }
}

/// The XDP attachment of `ifindex` (`RTM_GETLINK`): its mode and the program's id.
pub fn xdp_attached(ifindex: u32) -> io::Result<(XdpAttached, Option<u32>)> {
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    let sock = rtnl_send(libc::RTM_GETLINK, libc::NLM_F_REQUEST as u16, &body)?;
    let mut reply = vec![0u8; 64 * 1024];
    let n = rtnl_recv(&sock, &mut reply)?;
    parse_xdp_attached(&reply[..n])
}

/// The attributes in `b`, as (type without flags, payload).
fn nl_attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, payload))
    })
}

/// The XDP attachment in an `RTM_NEWLINK` answer (or the error the kernel sent instead).
fn parse_xdp_attached(m: &[u8]) -> io::Result<(XdpAttached, Option<u32>)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short RTM_GETLINK answer");
    if m.len() < 16 {
        return Err(bad());
    }
    let kind = u16::from_ne_bytes([m[4], m[5]]);
    if kind == libc::NLMSG_ERROR as u16 && m.len() >= 20 {
        let code = i32::from_ne_bytes([m[16], m[17], m[18], m[19]]);
        return Err(io::Error::from_raw_os_error(-code));
    }
    if kind != libc::RTM_NEWLINK || m.len() < 32 {
        return Err(bad());
    }
    let len = (u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize).min(m.len());
    let mut mode = XdpAttached::None;
    let mut prog = None;
    for (t, p) in nl_attrs(&m[32..len]) {
        if t != IFLA_XDP {
            continue;
        }
        for (t, p) in nl_attrs(p) {
            match (t, p) {
                (IFLA_XDP_ATTACHED, [a, ..]) => {
                    mode = match a {
                        1 => XdpAttached::Native,
                        2 => XdpAttached::Generic,
                        3 => XdpAttached::Offload,
                        4 => XdpAttached::Multi,
                        _ => XdpAttached::None,
                    }
                }
                (IFLA_XDP_PROG_ID, [a, b, c, d, ..]) => {
                    prog = Some(u32::from_ne_bytes([*a, *b, *c, *d]));
                }
                _ => {}
            }
        }
    }
    Ok((mode, prog))
}

/// Attaches an XDP program to an interface through rtnetlink. Unlike a bpf link, this
/// attachment belongs to the interface: it stays after the process exits (even on SIGKILL)
/// until it is replaced or detached. Whatever program is attached in the same mode is replaced
/// atomically: the interface is never without a program in between.
pub fn attach_xdp_netlink(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<()> {
    setlink_xdp(
        ifindex,
        &[
            (IFLA_XDP_FD, prog.as_raw_fd()),
            (IFLA_XDP_FLAGS, flags as i32),
        ],
    )
}

/// Detaches the program attached through rtnetlink in mode `flags`, but only if it is still
/// `expected` (a newer instance may have replaced it since).
pub fn detach_xdp_netlink_if(expected: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<()> {
    setlink_xdp(
        ifindex,
        &[
            (IFLA_XDP_FD, -1),
            (IFLA_XDP_EXPECTED_FD, expected.as_raw_fd()),
            (IFLA_XDP_FLAGS, (flags | XDP_FLAGS_REPLACE) as i32),
        ],
    )
}

/// Detaches whatever program is attached through rtnetlink in mode `flags` (nothing attached is
/// not an error).
pub fn detach_xdp_netlink(ifindex: u32, flags: u32) -> io::Result<()> {
    setlink_xdp(
        ifindex,
        &[(IFLA_XDP_FD, -1), (IFLA_XDP_FLAGS, flags as i32)],
    )
}

/// Runs a loaded XDP program once on `packet` (no interface involved) and returns its verdict.
pub fn test_run(prog: &OwnedFd, packet: &[u8]) -> io::Result<u32> {
    let mut out = vec![0u8; packet.len() + 256];
    let mut a = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(a.retval)
}

/// The index of a network interface by name.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_xdp_and_a_missing_interface_is_an_error() {
        let lo = ifindex("lo").unwrap();
        assert_eq!(xdp_attached(lo).unwrap(), (XdpAttached::None, None));
        let e = xdp_attached(u32::MAX >> 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
    }
}
