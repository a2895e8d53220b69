//! AF_XDP sockets: UMEM registration, ring setup, bind (copy or zero-copy, optionally sharing
//! another socket's UMEM), wake-ups and statistics.

use super::ring::{MmapOffsets, Ring, XdpDesc};
use super::umem::Umem;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

const XDP_SHARED_UMEM: u16 = 1 << 0;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;

const PGOFF_RX_RING: u64 = 0;
const PGOFF_TX_RING: u64 = 0x8000_0000;
const PGOFF_FILL_RING: u64 = 0x1_0000_0000;
const PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// How the socket moves packets between the driver and the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// The kernel copies (works on every driver, veth included).
    Copy,
    /// The NIC DMAs into the UMEM (real NICs; veth refuses with EOPNOTSUPP).
    ZeroCopy,
}

/// How to create a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// Interface name.
    pub iface: String,
    /// RX queue to bind to.
    pub queue: u32,
    /// Entries in each of the four rings (a power of two).
    pub ring_size: u32,
    /// Copy or zero-copy.
    pub mode: BindMode,
    /// Ask the kernel to set need-wakeup flags instead of polling the rings itself.
    pub need_wakeup: bool,
}

/// Counters the kernel keeps per socket (`struct xdp_statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpStatistics {
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    /// Dropped because of invalid descriptors.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel refused.
    pub tx_invalid_descs: u64,
    /// RX ring was full.
    pub rx_ring_full: u64,
    /// Fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

/// An AF_XDP socket bound to one queue of one interface, with its four rings.
pub struct XskSocket {
    /// Packets received (kernel produces, we consume).
    pub rx: Ring<XdpDesc>,
    /// Packets to send (we produce).
    pub tx: Ring<XdpDesc>,
    /// Empty chunks for the kernel to receive into (we produce).
    pub fill: Ring<u64>,
    /// Chunks whose transmission completed (kernel produces).
    pub comp: Ring<u64>,
    fd: OwnedFd,
    ifindex: u32,
    queue: u32,
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the type the option expects, passed with its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt<T: Default>(fd: &OwnedFd, opt: libc::c_int) -> io::Result<T> {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, a live value of type T.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            &mut v as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl XskSocket {
    /// Creates a socket, registers `umem` (unless `shared_with` already did: then the socket
    /// shares that socket's UMEM, which must be `umem`), sets up the rings and binds.
    pub fn new(
        umem: &Umem,
        cfg: &SocketConfig,
        shared_with: Option<&XskSocket>,
    ) -> io::Result<Self> {
        if !cfg.ring_size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring_size must be a power of two",
            ));
        }
        let ifindex = super::sys::ifindex(&cfg.iface)
            .map_err(|e| ctx(&format!("interface {}", cfg.iface), e))?;
        // SAFETY: plain socket creation; the result is checked.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(ctx("socket(AF_XDP)", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if shared_with.is_none() {
            let c = umem.config();
            let reg = UmemReg {
                addr: umem.as_ptr() as u64,
                len: umem.len() as u64,
                chunk_size: c.frame_size,
                headroom: c.headroom,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(&fd, XDP_UMEM_REG, &reg).map_err(|e| ctx("XDP_UMEM_REG", e))?;
        }
        let n = cfg.ring_size;
        setsockopt(&fd, XDP_UMEM_FILL_RING, &n).map_err(|e| ctx("XDP_UMEM_FILL_RING", e))?;
        setsockopt(&fd, XDP_UMEM_COMPLETION_RING, &n)
            .map_err(|e| ctx("XDP_UMEM_COMPLETION_RING", e))?;
        setsockopt(&fd, XDP_RX_RING, &n).map_err(|e| ctx("XDP_RX_RING", e))?;
        setsockopt(&fd, XDP_TX_RING, &n).map_err(|e| ctx("XDP_TX_RING", e))?;
        let off: MmapOffsets =
            getsockopt(&fd, XDP_MMAP_OFFSETS).map_err(|e| ctx("XDP_MMAP_OFFSETS", e))?;
        let rx =
            Ring::map(&fd, &off.rx, n, PGOFF_RX_RING, false).map_err(|e| ctx("mmap rx ring", e))?;
        let tx =
            Ring::map(&fd, &off.tx, n, PGOFF_TX_RING, true).map_err(|e| ctx("mmap tx ring", e))?;
        let fill = Ring::map(&fd, &off.fr, n, PGOFF_FILL_RING, true)
            .map_err(|e| ctx("mmap fill ring", e))?;
        let comp = Ring::map(&fd, &off.cr, n, PGOFF_COMPLETION_RING, false)
            .map_err(|e| ctx("mmap completion ring", e))?;
        let flags = match shared_with {
            Some(_) => XDP_SHARED_UMEM,
            None => {
                let mode = match cfg.mode {
                    BindMode::Copy => XDP_COPY,
                    BindMode::ZeroCopy => XDP_ZEROCOPY,
                };
                mode | if cfg.need_wakeup {
                    XDP_USE_NEED_WAKEUP
                } else {
                    0
                }
            }
        };
        let sa = SockaddrXdp {
            family: AF_XDP as u16,
            flags,
            ifindex,
            queue_id: cfg.queue,
            shared_umem_fd: shared_with.map(|s| s.fd.as_raw_fd() as u32).unwrap_or(0),
        };
        // SAFETY: `sa` is a valid sockaddr_xdp passed with its exact size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const SockaddrXdp as *const libc::sockaddr,
                std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(ctx(
                &format!("bind AF_XDP to {} queue {}", cfg.iface, cfg.queue),
                io::Error::last_os_error(),
            ));
        }
        Ok(XskSocket {
            rx,
            tx,
            fill,
            comp,
            fd,
            ifindex,
            queue: cfg.queue,
        })
    }

    /// The socket descriptor (for the XSKMAP and for poll).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Bound queue.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Tells the kernel there is something on the TX ring (always needed in copy mode).
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length send with null buffers is the documented AF_XDP TX kick.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // The TX path is busy or out of buffers: the descriptors stay queued, retry later.
            if matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
            ) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` for received packets (need-wakeup mode); true if some arrived.
    pub fn poll_rx(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(r > 0 && p.revents & libc::POLLIN != 0)
    }

    /// How the kernel moves this socket's packets (`XDP_OPTIONS`): zero-copy or copy. A
    /// socket sharing another's UMEM on another interface has its own answer.
    pub fn bind_mode(&self) -> io::Result<BindMode> {
        let flags: u32 = getsockopt(&self.fd, XDP_OPTIONS)?;
        Ok(if flags & XDP_OPTIONS_ZEROCOPY != 0 {
            BindMode::ZeroCopy
        } else {
            BindMode::Copy
        })
    }

    /// The kernel's counters for this socket.
    pub fn statistics(&self) -> io::Result<XdpStatistics> {
        getsockopt(&self.fd, XDP_STATISTICS)
    }
}
