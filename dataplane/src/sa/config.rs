//! The validated description of one SA, as manual keying or the IKE daemon gives it.

use crate::crypto::aead::KeyMaterial;
use crate::crypto::Suite;
use crate::sa::Selectors;
use std::fmt;
use std::net::IpAddr;

/// Direction of an SA, seen from this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Decrypts packets from the peer.
    In,
    /// Encrypts packets to the peer.
    Out,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

/// ESP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A whole IP packet inside a new outer header.
    Tunnel,
    /// The payload of the original IP packet, whose header stays.
    Transport,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tunnel => "tunnel",
            Mode::Transport => "transport",
        })
    }
}

/// UDP encapsulation of ESP (RFC 3948). Ports are those of the packets this SA carries:
/// for an outbound SA `src_port` is ours, for an inbound SA `dst_port` is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpEncap {
    /// UDP source port of the ESP-in-UDP packets.
    pub src_port: u16,
    /// UDP destination port of the ESP-in-UDP packets.
    pub dst_port: u16,
}

/// The IANA port for IKE and ESP-in-UDP after NAT detection.
pub const NAT_T_PORT: u16 = 4500;

impl Default for UdpEncap {
    fn default() -> Self {
        UdpEncap {
            src_port: NAT_T_PORT,
            dst_port: NAT_T_PORT,
        }
    }
}

/// Lifetime limits of an SA (RFC 4301 §4.4.2.1). Soft limits raise an expiry event once so the
/// control plane can rekey; at a hard limit the SA stops processing packets (dropped as
/// `expired`) and raises a hard expiry event. `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// Soft limit on plaintext bytes.
    pub soft_bytes: Option<u64>,
    /// Hard limit on plaintext bytes.
    pub hard_bytes: Option<u64>,
    /// Soft limit on packets.
    pub soft_packets: Option<u64>,
    /// Hard limit on packets.
    pub hard_packets: Option<u64>,
}

impl Lifetime {
    /// True if any limit is set.
    pub fn is_limited(&self) -> bool {
        self.soft_bytes.is_some()
            || self.hard_bytes.is_some()
            || self.soft_packets.is_some()
            || self.hard_packets.is_some()
    }
}

/// Default outbound padding alignment (whole AES-GCM blocks).
pub const DEFAULT_PAD_ALIGN: u8 = 16;

/// Default anti-replay window in packets.
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;

/// Longest owner tag an SA may carry.
pub const MAX_OWNER_LEN: usize = 256;

/// Everything needed to build an SA. `Debug` never shows the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaConfig {
    /// Security parameters index (non-zero).
    pub spi: u32,
    /// In or out.
    pub direction: Direction,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Encryption suite.
    pub suite: Suite,
    /// AES key followed by the 4-byte salt; its length matches `suite.keymat_len()`.
    pub key: KeyMaterial,
    /// This gateway's outer address.
    pub local: IpAddr,
    /// The peer's outer address.
    pub remote: IpAddr,
    /// UDP encapsulation, if any.
    pub encap: Option<UdpEncap>,
    /// 64-bit extended sequence numbers.
    pub esn: bool,
    /// Anti-replay window in packets (inbound; 0 disables the check).
    pub replay_window: u32,
    /// Outbound: the last sequence number sent. Inbound: the highest received so far.
    pub seq: u64,
    /// Addresses on this gateway's side the SA may carry.
    pub local_ts: Selectors,
    /// Addresses on the peer's side the SA may carry.
    pub remote_ts: Selectors,
    /// Byte and packet limits.
    pub lifetime: Lifetime,
    /// Outbound padding: the ESP payload, padding and trailer end on a multiple of this, 4 (the
    /// RFC 4303 minimum) or 16 (whole AES blocks, the default: see
    /// `docs/decisions/0005-esp-padding.md`).
    pub pad_align: u8,
    /// Who installed the SA, as the control plane tagged it (esprit-ike:
    /// `esprit-ike/<instance>/<connection>/<child>`); `None` for manual SAs. Opaque to the
    /// dataplane: returned by `sa.list` so a restarted control plane finds its SAs again.
    pub owner: Option<String>,
}

impl SaConfig {
    /// Starts loading the fields the fast path reads (see `OutboundSa::prefetch_hot`).
    #[inline]
    pub fn prefetch_hot(&self) {
        crate::prefetch_fields!(
            self.spi,
            self.mode,
            self.esn,
            self.pad_align,
            self.local,
            self.remote,
            self.encap,
            self.local_ts,
            self.remote_ts,
            self.lifetime,
        );
    }

    /// A short human-readable name: `0x8c77274a in 10.200.0.1->10.200.0.2`.
    pub fn label(&self) -> String {
        let (s, d) = match self.direction {
            Direction::In => (self.remote, self.local),
            Direction::Out => (self.local, self.remote),
        };
        format!("0x{:08x} {} {}->{}", self.spi, self.direction, s, d)
    }

    /// Checks the invariants a loader may have missed; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.spi == 0 {
            return Err("spi 0 is reserved (RFC 4303 §2.1)".into());
        }
        if self.key.len() != self.suite.keymat_len() {
            return Err(format!(
                "{} needs {} bytes of key material (key || 4-byte salt), got {}",
                self.suite,
                self.suite.keymat_len(),
                self.key.len()
            ));
        }
        if self.local.is_ipv4() != self.remote.is_ipv4() {
            return Err("local and remote must both be IPv4 or both IPv6".into());
        }
        if !self.esn && self.seq > u64::from(u32::MAX) {
            return Err("seq exceeds 2^32 - 1 without esn".into());
        }
        if self.esn && self.direction == Direction::In && self.replay_window == 0 {
            return Err(
                "esn needs a replay window (RFC 4303 §3.3.3): set replay_window > 0".into(),
            );
        }
        if let Some(o) = &self.owner {
            if o.is_empty() || o.len() > MAX_OWNER_LEN || !o.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "owner must be 1 to {MAX_OWNER_LEN} printable ASCII characters without spaces"
                ));
            }
        }
        if !matches!(self.pad_align, 4 | 16) {
            return Err(format!("pad_align must be 4 or 16, not {}", self.pad_align));
        }
        let l = &self.lifetime;
        for (soft, hard, what) in [
            (l.soft_bytes, l.hard_bytes, "bytes"),
            (l.soft_packets, l.hard_packets, "packets"),
        ] {
            if let (Some(s), Some(h)) = (soft, hard) {
                if s > h {
                    return Err(format!("soft_{what} ({s}) exceeds hard_{what} ({h})"));
                }
            }
        }
        if self.replay_window > crate::sa::replay::MAX_WINDOW {
            return Err(format!(
                "replay_window must be at most {}",
                crate::sa::replay::MAX_WINDOW
            ));
        }
        Ok(())
    }
}
