//! The XDP classifiers that decide, per received frame, whether the dataplane takes it (redirect
//! to the queue's AF_XDP socket) or the kernel keeps it (ARP/ND, IKE, management, traffic for
//! the gateway itself).
//!
//! WAN side: ESP (IP protocol 50) and ESP-in-UDP (to a NAT-T port, with a non-zero first word:
//! a zero marker is IKE, and a 1-byte 0xFF is a NAT keepalive) addressed to one of the gateway's
//! addresses are redirected; outer fragments, everything else and everything unparsable pass.
//! LAN side: IPv4/IPv6 transit traffic is redirected; ARP, multicast/broadcast, IPv6 link-local
//! and multicast destinations, and traffic to the gateway's own addresses pass.
//!
//! The program is generated for the gateway's addresses and ports (immediates, no lookup map):
//! when they change, a new program is loaded and swapped in.

use super::asm::{
    Alu, Asm, AsmError, Cond, Helper, Insn, Size, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9,
};
use super::sys;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

/// Removes whatever XDP program is attached to `iface` through rtnetlink, in native and in
/// generic mode (decommissioning a fail-closed gateway).
pub fn detach_all(iface: &str) -> io::Result<()> {
    let ifindex = sys::ifindex(iface)?;
    sys::detach_xdp_netlink(ifindex, sys::XDP_FLAGS_DRV_MODE)?;
    sys::detach_xdp_netlink(ifindex, sys::XDP_FLAGS_SKB_MODE)
}

/// Which side of the gateway an interface is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Unprotected side: ESP arrives here.
    Wan,
    /// Protected side: the sites' plaintext traffic arrives here.
    Lan,
}

/// What the classifier needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierSpec {
    /// WAN or LAN.
    pub role: Role,
    /// The gateway's IPv4 addresses on this interface (and any it should treat as its own).
    pub local_v4: Vec<Ipv4Addr>,
    /// The gateway's IPv6 addresses.
    pub local_v6: Vec<Ipv6Addr>,
    /// UDP ports on which ESP-in-UDP arrives (WAN).
    pub nat_t_ports: Vec<u16>,
    /// Verdict when no AF_XDP socket is bound on the packet's queue (none yet, or its process
    /// is gone): `action::DROP` to fail closed, `action::PASS` to fail open (the kernel
    /// handles it), a distinct value in tests.
    pub no_socket_action: u32,
}

/// Most addresses or ports one program compares against (keeps programs small).
pub const MAX_MATCHES: usize = 32;

/// A 16-bit field as a little-endian load of its network-order bytes sees it.
fn ne16(v: u16) -> i32 {
    i32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// A 32-bit field (network order) as a 32-bit load sees it.
fn ne32(b: [u8; 4]) -> u32 {
    u32::from_ne_bytes(b)
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;

/// Emits the classifier. `xsk_map_fd` is the XSKMAP holding one socket per RX queue.
pub fn build(spec: &ClassifierSpec, xsk_map_fd: i32) -> Result<Vec<Insn>, ClassifierError> {
    if spec.role == Role::Wan && spec.local_v4.is_empty() && spec.local_v6.is_empty() {
        return Err(ClassifierError::NoAddresses);
    }
    let mut a = Asm::new();
    // r6 = ctx, r7 = L3 header, r8 = data_end, r9 = L4 header.
    a.alu_reg(Alu::Mov, R6, R1);
    a.load(Size::W, R7, R6, 0);
    a.load(Size::W, R8, R6, 4);
    a.alu_reg(Alu::Mov, R2, R7).alu_imm(Alu::Add, R2, 14);
    a.jmp_reg(Cond::Gt, R2, R8, "pass");
    a.load(Size::H, R3, R7, 12);
    a.alu_imm(Alu::Add, R7, 14);
    a.jmp_imm(Cond::Ne, R3, ne16(ETH_P_8021Q), "untagged");
    a.alu_reg(Alu::Mov, R2, R7).alu_imm(Alu::Add, R2, 4);
    a.jmp_reg(Cond::Gt, R2, R8, "pass");
    a.load(Size::H, R3, R7, 2);
    a.alu_imm(Alu::Add, R7, 4);
    a.label("untagged")?;
    a.jmp_imm(Cond::Eq, R3, ne16(ETH_P_IP), "v4");
    a.jmp_imm(Cond::Eq, R3, ne16(ETH_P_IPV6), "v6");
    a.ja("pass");

    // Every label below is placed only where some jump reaches it: the verifier refuses
    // unreachable instructions.
    let wan = spec.role == Role::Wan;
    let has_v4 = !spec.local_v4.is_empty();
    let has_v6 = !spec.local_v6.is_empty();
    let udp = wan && !spec.nat_t_ports.is_empty() && (has_v4 || has_v6);
    // On the LAN a packet for the gateway itself passes; on the WAN it is the one to inspect.
    let local_target = if wan { "v4_local" } else { "pass" };

    // IPv4
    a.label("v4")?;
    a.alu_reg(Alu::Mov, R2, R7).alu_imm(Alu::Add, R2, 20);
    a.jmp_reg(Cond::Gt, R2, R8, "pass");
    a.load(Size::W, R3, R7, 16);
    for addr in spec.local_v4.iter().take(MAX_MATCHES) {
        a.jmp32_imm(Cond::Eq, R3, ne32(addr.octets()), local_target);
    }
    if wan {
        a.ja("pass");
        if has_v4 {
            a.label("v4_local")?;
            // Fragments (MF set or non-zero offset) go to the kernel.
            a.load(Size::H, R3, R7, 6);
            a.jmp_imm(Cond::Set, R3, ne16(0x3fff), "pass");
            a.load(Size::B, R3, R7, 9);
            a.jmp_imm(Cond::Eq, R3, 50, "redirect");
            if udp {
                a.jmp_imm(Cond::Ne, R3, 17, "pass");
                a.load(Size::B, R4, R7, 0);
                a.alu_imm(Alu::And, R4, 0x0f).alu_imm(Alu::Lsh, R4, 2);
                a.alu_reg(Alu::Mov, R9, R7).alu_reg(Alu::Add, R9, R4);
                a.ja("udp");
            } else {
                a.ja("pass");
            }
        }
    } else {
        // Multicast, reserved and broadcast (224.0.0.0 and up) stay with the kernel.
        a.load(Size::B, R4, R7, 16);
        a.jmp_imm(Cond::Ge, R4, 224, "pass");
        a.ja("redirect");
    }

    // IPv6
    a.label("v6")?;
    a.alu_reg(Alu::Mov, R2, R7).alu_imm(Alu::Add, R2, 40);
    a.jmp_reg(Cond::Gt, R2, R8, "pass");
    let local_target = if wan { "v6_local" } else { "pass" };
    for (i, addr) in spec.local_v6.iter().take(MAX_MATCHES).enumerate() {
        let o = addr.octets();
        let next = format!("v6_next_{i}");
        for w in 0..4 {
            a.load(Size::W, R3, R7, 24 + 4 * w as i16);
            let word = [o[4 * w], o[4 * w + 1], o[4 * w + 2], o[4 * w + 3]];
            a.jmp32_imm(Cond::Ne, R3, ne32(word), &next);
        }
        a.ja(local_target);
        a.label(&next)?;
    }
    if wan {
        a.ja("pass");
        if has_v6 {
            a.label("v6_local")?;
            a.load(Size::B, R3, R7, 6);
            a.jmp_imm(Cond::Eq, R3, 50, "redirect");
            if udp {
                a.jmp_imm(Cond::Ne, R3, 17, "pass");
                a.alu_reg(Alu::Mov, R9, R7).alu_imm(Alu::Add, R9, 40);
                a.ja("udp");
            } else {
                a.ja("pass");
            }
        }
        if udp {
            // UDP: a NAT-T port and a non-zero first word (zero is IKE's non-ESP marker; a
            // one-byte keepalive is too short to match).
            a.label("udp")?;
            a.alu_reg(Alu::Mov, R2, R9).alu_imm(Alu::Add, R2, 12);
            a.jmp_reg(Cond::Gt, R2, R8, "pass");
            a.load(Size::H, R3, R9, 2);
            for port in spec.nat_t_ports.iter().take(MAX_MATCHES) {
                a.jmp_imm(Cond::Eq, R3, ne16(*port), "udp_port");
            }
            a.ja("pass");
            a.label("udp_port")?;
            a.load(Size::W, R3, R9, 8);
            a.jmp_imm(Cond::Eq, R3, 0, "pass");
            a.ja("redirect");
        }
    } else {
        // Multicast (ff00::/8) and link-local (fe80::/10) destinations stay with the kernel.
        a.load(Size::B, R4, R7, 24);
        a.jmp_imm(Cond::Eq, R4, 0xff, "pass");
        a.jmp_imm(Cond::Ne, R4, 0xfe, "redirect");
        a.load(Size::B, R5, R7, 25);
        a.alu_imm(Alu::And, R5, 0xc0);
        a.jmp_imm(Cond::Eq, R5, 0x80, "pass");
        a.ja("redirect");
    }

    a.label("redirect")?;
    a.load(Size::W, R2, R6, 16); // rx_queue_index
    a.load_map_fd(R1, xsk_map_fd);
    a.alu_imm(Alu::Mov, R3, spec.no_socket_action as i32);
    a.call(Helper::RedirectMap);
    a.exit();
    a.label("pass")?;
    a.alu_imm(Alu::Mov, R0, super::sys::action::PASS as i32);
    a.exit();
    Ok(a.finish()?)
}

/// A loaded classifier and its XSKMAP, ready to attach.
pub struct Classifier {
    prog: OwnedFd,
    xsks: OwnedFd,
    queues: u32,
}

/// A classifier attached to an interface; detached when dropped (or when the process dies).
pub struct XdpLink {
    _link: OwnedFd,
    /// The interface index it is attached to.
    pub ifindex: u32,
}

/// A classifier attached through rtnetlink: it belongs to the interface, not to the process,
/// and stays attached after the process exits (even on SIGKILL) unless [`Self::detach_on_drop`]
/// was asked for.
pub struct PersistentXdp {
    prog: OwnedFd,
    flags: u32,
    detach_on_drop: bool,
    /// The interface index it is attached to.
    pub ifindex: u32,
}

impl PersistentXdp {
    /// Detaches the program when this handle is dropped (fail open), unless another program
    /// has replaced it by then.
    pub fn detach_on_drop(&mut self) {
        self.detach_on_drop = true;
    }
}

impl Drop for PersistentXdp {
    fn drop(&mut self) {
        if self.detach_on_drop {
            // A newer instance may have replaced the program (EEXIST): that one stays.
            let _ = sys::detach_xdp_netlink_if(&self.prog, self.ifindex, self.flags);
        }
    }
}

/// Why a classifier could not be built, loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// A WAN classifier needs at least one local address to recognise the gateway's ESP.
    #[error("a WAN classifier needs at least one local address")]
    NoAddresses,
    /// The program generator failed (a bug).
    #[error("assembling the XDP classifier: {0}")]
    Asm(#[from] AsmError),
    /// The kernel refused the map.
    #[error("creating the XSKMAP: {0}")]
    Map(io::Error),
    /// The verifier refused the program.
    #[error(transparent)]
    Load(#[from] sys::LoadError),
    /// Attaching failed (no such interface, or another program holds it).
    #[error("attaching XDP to {iface}: {err}")]
    Attach {
        /// Interface name.
        iface: String,
        /// Cause.
        err: io::Error,
    },
    /// Registering a socket in the XSKMAP failed.
    #[error("registering the AF_XDP socket of queue {queue}: {err}")]
    Register {
        /// Queue.
        queue: u32,
        /// Cause.
        err: io::Error,
    },
}

impl Classifier {
    /// Generates and loads the classifier for an interface with `queues` RX queues.
    pub fn load(spec: &ClassifierSpec, queues: u32) -> Result<Self, ClassifierError> {
        let name = match spec.role {
            Role::Wan => "esprit_wan",
            Role::Lan => "esprit_lan",
        };
        let xsks = sys::create_xskmap(name, queues.max(1)).map_err(ClassifierError::Map)?;
        let insns = build(spec, xsks.as_raw_fd())?;
        let prog = sys::load_xdp(name, &insns)?;
        Ok(Classifier {
            prog,
            xsks,
            queues: queues.max(1),
        })
    }

    /// Runs the program once on a frame without any interface (`BPF_PROG_TEST_RUN`).
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        sys::test_run(&self.prog, frame)
    }

    /// Registers the AF_XDP socket `fd` for RX queue `queue`.
    pub fn register_socket(&self, queue: u32, fd: i32) -> Result<(), ClassifierError> {
        if queue >= self.queues {
            return Err(ClassifierError::Register {
                queue,
                err: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        sys::update_u32(&self.xsks, queue, fd as u32)
            .map_err(|err| ClassifierError::Register { queue, err })
    }

    /// Attaches to `iface` through rtnetlink, in native (driver) mode or generic mode with
    /// `generic`, atomically replacing a program left there in the same mode (by an instance
    /// that died, say). The attachment outlives the process: see [`PersistentXdp`].
    pub fn attach_persistent(
        &self,
        iface: &str,
        generic: bool,
    ) -> Result<PersistentXdp, ClassifierError> {
        let attach_err = |err| ClassifierError::Attach {
            iface: iface.to_string(),
            err,
        };
        let ifindex = sys::ifindex(iface).map_err(attach_err)?;
        let flags = if generic {
            sys::XDP_FLAGS_SKB_MODE
        } else {
            sys::XDP_FLAGS_DRV_MODE
        };
        let prog = self.prog.try_clone().map_err(attach_err)?;
        sys::attach_xdp_netlink(&prog, ifindex, flags).map_err(|err| {
            let err = if err.raw_os_error() == Some(libc::EEXIST) {
                io::Error::new(
                    err.kind(),
                    format!(
                        "{err}: a program is attached in the other XDP mode (native vs \
                         generic); remove it with `esprit-dataplane --detach --config FILE`"
                    ),
                )
            } else if err.raw_os_error() == Some(libc::EBUSY) {
                io::Error::new(
                    err.kind(),
                    format!("{err}: another process holds the interface's XDP hook (a bpf link)"),
                )
            } else {
                err
            };
            attach_err(err)
        })?;
        Ok(PersistentXdp {
            prog,
            flags,
            detach_on_drop: false,
            ifindex,
        })
    }

    /// Attaches to `iface` through a bpf link, in native (driver) mode, or generic mode with
    /// `generic`; the program detaches when the link is dropped or the process dies.
    pub fn attach(&self, iface: &str, generic: bool) -> Result<XdpLink, ClassifierError> {
        let attach_err = |err| ClassifierError::Attach {
            iface: iface.to_string(),
            err,
        };
        let ifindex = sys::ifindex(iface).map_err(attach_err)?;
        let flags = if generic {
            sys::XDP_FLAGS_SKB_MODE
        } else {
            sys::XDP_FLAGS_DRV_MODE
        };
        let link = sys::attach_xdp(&self.prog, ifindex, flags).map_err(attach_err)?;
        Ok(XdpLink {
            _link: link,
            ifindex,
        })
    }
}
