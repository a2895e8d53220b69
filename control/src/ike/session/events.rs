//! What the sans-IO core hands to the daemon: datagrams to send and events.

use super::params::ChildMode;
use super::proposal::{EspSuite, IkeSuite};
use crate::ike::identity::Identity;
use crate::ike::message::TrafficSelector;
use std::fmt;
use std::net::SocketAddr;
use tracing::Level;
use zeroize::Zeroizing;

/// A datagram to send. Datagrams from or to port 4500 need the four-octet non-ESP marker in
/// front (the daemon adds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Our address and port to send from.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// The IKE message.
    pub data: Vec<u8>,
}

/// A child SA pair ready to install in the dataplane.
pub struct ChildSaInstall {
    /// The IKE SA it belongs to (our SPI of it).
    pub ike_sa: u64,
    /// The IKE SA's initiator and responder SPIs (for the log).
    pub ike_spis: (u64, u64),
    /// Connection name.
    pub conn: String,
    /// Child name.
    pub child: String,
    /// The SPI we receive with.
    pub inbound_spi: u32,
    /// The SPI we send with.
    pub outbound_spi: u32,
    /// Algorithms.
    pub suite: EspSuite,
    /// Inbound encryption key (and salt for an AEAD).
    pub inbound_key: Zeroizing<Vec<u8>>,
    /// Inbound integrity key (empty for an AEAD).
    pub inbound_integ_key: Zeroizing<Vec<u8>>,
    /// Outbound encryption key (and salt for an AEAD).
    pub outbound_key: Zeroizing<Vec<u8>>,
    /// Outbound integrity key (empty for an AEAD).
    pub outbound_integ_key: Zeroizing<Vec<u8>>,
    /// Selectors on our side.
    pub local_ts: Vec<TrafficSelector>,
    /// Selectors on the peer's side.
    pub remote_ts: Vec<TrafficSelector>,
    /// Our outer address (and IKE port).
    pub local: SocketAddr,
    /// The peer's outer address (and IKE port).
    pub remote: SocketAddr,
    /// UDP-encapsulate ESP (a NAT was detected or encapsulation forced), ports 4500 or the
    /// peer's NAT-mapped port.
    pub encap: bool,
    /// Tunnel or transport.
    pub mode: ChildMode,
    /// Soft and hard byte/packet limits and the replay window from the child's configuration.
    pub limits: ChildLimits,
    /// The inbound SPI of the child SA this one replaces (a rekey), if any.
    pub replaces: Option<u32>,
    /// The outbound SPI of the child SA this one replaces.
    pub replaces_outbound: Option<u32>,
    /// Whether we initiated the exchange that made it. The initiator of a rekey may send on the
    /// new SA at once (the responder installed its inbound half first); the responder keeps
    /// sending on the old one until the initiator deletes it (make-before-break).
    pub we_initiated: bool,
}

/// Lifetime limits and the replay window of a child SA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildLimits {
    /// Soft byte limit (0 = none).
    pub soft_bytes: u64,
    /// Soft packet limit.
    pub soft_packets: u64,
    /// Hard byte limit.
    pub hard_bytes: u64,
    /// Hard packet limit.
    pub hard_packets: u64,
    /// Anti-replay window.
    pub replay_window: u32,
}

impl fmt::Debug for ChildSaInstall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSaInstall")
            .field("conn", &self.conn)
            .field("child", &self.child)
            .field("inbound_spi", &format_args!("{:08x}", self.inbound_spi))
            .field("outbound_spi", &format_args!("{:08x}", self.outbound_spi))
            .field("suite", &self.suite)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("encap", &self.encap)
            .finish_non_exhaustive()
    }
}

/// Something the daemon must act on or report.
#[derive(Debug)]
pub enum IkeEvent {
    /// An IKE SA is established.
    IkeUp {
        /// Our SPI of the IKE SA.
        ike_sa: u64,
        /// The IKE SA's initiator and responder SPIs (for the log).
        ike_spis: (u64, u64),
        /// Connection name.
        conn: String,
        /// Peer's identity.
        remote_id: Identity,
        /// Algorithms.
        suite: IkeSuite,
    },
    /// An IKE SA is gone (its children are reported down first).
    IkeDown {
        /// Our SPI of the IKE SA.
        ike_sa: u64,
        /// The IKE SA's initiator and responder SPIs (for the log).
        ike_spis: (u64, u64),
        /// Connection name.
        conn: String,
        /// Why.
        reason: String,
    },
    /// An IKE SA was rekeyed: `new` (our SPI) took over the children of `old`.
    IkeRekeyed {
        /// Our SPI of the old IKE SA.
        old: u64,
        /// Our SPI of the new IKE SA.
        new: u64,
        /// The new IKE SA's initiator and responder SPIs (for the log).
        new_spis: (u64, u64),
        /// Connection name.
        conn: String,
    },
    /// A child SA pair to install.
    ChildUp(Box<ChildSaInstall>),
    /// A child SA pair to remove.
    ChildDown {
        /// Our SPI of the IKE SA.
        ike_sa: u64,
        /// The IKE SA's initiator and responder SPIs (for the log).
        ike_spis: (u64, u64),
        /// Connection name.
        conn: String,
        /// Child name.
        child: String,
        /// The SPI we received with.
        inbound_spi: u32,
        /// The SPI we sent with.
        outbound_spi: u32,
        /// Our outer address.
        local: SocketAddr,
        /// The peer's outer address.
        remote: SocketAddr,
        /// The peer said with INITIAL_CONTACT that it lost this child: it is gone without a
        /// Delete, and the peer's new child (just installed) replaces it.
        peer_lost: bool,
    },
    /// A child could not be negotiated (the IKE SA stays).
    ChildFailed {
        /// The IKE SA's initiator and responder SPIs (for the log).
        ike_spis: (u64, u64),
        /// Connection name.
        conn: String,
        /// Child name.
        child: String,
        /// Why.
        reason: String,
    },
    /// A notable occurrence for the log (never contains key material).
    Log(LogLine),
}

/// A line for the daemon's log: how much it matters, the text, and what it concerns (the
/// daemon writes these as the line's fields). Never holds key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// How much it matters (the core writes debug, info and warn lines).
    pub level: Level,
    /// The text, complete in itself (it names the connection and IKE SA when it has them).
    pub message: String,
    /// The connection it concerns.
    pub conn: Option<String>,
    /// The IKE SA it concerns: the initiator's and the responder's SPI (the responder's is 0
    /// until IKE_SA_INIT's answer).
    pub ike_spis: Option<(u64, u64)>,
    /// The peer's address and port.
    pub remote: Option<SocketAddr>,
    /// The child SA it concerns: the SPI we receive with.
    pub spi_in: Option<u32>,
    /// A machine-readable reason (a drop counter's name).
    pub reason: Option<&'static str>,
}

impl LogLine {
    /// A line at `level` concerning nothing in particular.
    pub fn new(level: Level, message: impl Into<String>) -> LogLine {
        LogLine {
            level,
            message: message.into(),
            conn: None,
            ike_spis: None,
            remote: None,
            spi_in: None,
            reason: None,
        }
    }
}
