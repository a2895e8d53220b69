//! Thin wrappers over the `bpf(2)` system call: map creation and update, program load,
//! XDP attachment through a bpf link, and `BPF_PROG_TEST_RUN`.
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
