//! What a state machine needs to know about a connection: proposals, identities, credentials,
//! children and timers. The daemon builds these from the configuration file; tests build them
//! directly.

use crate::ike::algorithms::{DhGroup, EncrAlg, IntegAlg, PrfAlg};
use crate::ike::crypto::auth::PrivateKey;
use crate::ike::crypto::cert::{Certificate, TrustStore};
use crate::ike::crypto::mlkem::AddKeSlots;
use crate::ike::identity::Identity;
use crate::ike::message::TrafficSelector;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// One IKE proposal: every combination of its algorithms is acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeProposalSpec {
    /// Encryption algorithms, most preferred first.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms for the non-AEAD ciphers (AES-CBC), most preferred first.
    pub integ: Vec<IntegAlg>,
    /// PRFs.
    pub prf: Vec<PrfAlg>,
    /// Key exchange methods; the first is the group of the initiator's KE payload.
    pub dh: Vec<DhGroup>,
    /// Additional key exchanges (RFC 9370), ADDKE1 to ADDKE7; all empty for a classical-only
    /// proposal.
    pub addke: AddKeSlots,
}

impl IkeProposalSpec {
    /// Whether the proposal requires an additional key exchange (some ADDKE type offered
    /// without NONE).
    pub fn requires_addke(&self) -> bool {
        self.addke
            .iter()
            .any(|s| !s.is_empty() && !s.contains(&None))
    }
}

/// One ESP proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspProposalSpec {
    /// Encryption algorithms.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms for the non-AEAD ciphers (AES-CBC).
    pub integ: Vec<IntegAlg>,
    /// Key exchange methods for PFS in CREATE_CHILD_SA (empty: no PFS).
    pub dh: Vec<DhGroup>,
    /// Additional key exchanges after the PFS group (RFC 9370, IKE_FOLLOWUP_KE), ADDKE1 to
    /// ADDKE7; all empty without.
    pub addke: AddKeSlots,
    /// Extended sequence numbers offered or accepted (true = ESN).
    pub esn: Vec<bool>,
}

/// How this end proves its identity.
#[derive(Clone)]
pub enum LocalCredential {
    /// A pre-shared key.
    Psk(Arc<Zeroizing<Vec<u8>>>),
    /// A private key with its certificate (first) and any intermediates.
    Pubkey {
        /// The private key.
        key: Arc<PrivateKey>,
        /// End-entity certificate first, then intermediates to send.
        certs: Vec<Arc<Certificate>>,
    },
}

/// How the peer must prove its identity.
#[derive(Clone)]
pub enum RemoteCredential {
    /// The pre-shared key it must know.
    Psk(Arc<Zeroizing<Vec<u8>>>),
    /// A certificate chaining to one of these CAs.
    Pubkey {
        /// The CAs to validate against.
        trust: Arc<TrustStore>,
        /// SHA-1 of each CA's subjectPublicKeyInfo, sent in CERTREQ (strongSwan sends its
        /// certificate only when asked).
        ca_hashes: Vec<[u8; 20]>,
    },
}

/// Tunnel or transport mode for a child SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildMode {
    /// Tunnel mode.
    Tunnel,
    /// Transport mode (USE_TRANSPORT_MODE).
    Transport,
}

/// A traffic selector of the configuration: a range, or this end's / the peer's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsSpec {
    /// The address of this end (local side) or of the peer (remote side), all protocols/ports.
    Dynamic,
    /// A fixed selector.
    Fixed(TrafficSelector),
}

/// A child SA configuration.
#[derive(Clone, Debug)]
pub struct ChildParams {
    /// The child's name.
    pub name: String,
    /// Selectors on this side.
    pub local_ts: Vec<TsSpec>,
    /// Selectors on the peer's side.
    pub remote_ts: Vec<TsSpec>,
    /// ESP proposals.
    pub proposals: Vec<EspProposalSpec>,
    /// Tunnel or transport.
    pub mode: ChildMode,
    /// Rekey after this long (None: never).
    pub rekey_time: Option<Duration>,
    /// Soft limits passed to the dataplane (0 = none).
    pub rekey_bytes: u64,
    /// Soft packet limit.
    pub rekey_packets: u64,
    /// Hard limits passed to the dataplane (0 = none).
    pub life_bytes: u64,
    /// Hard packet limit.
    pub life_packets: u64,
    /// Anti-replay window.
    pub replay_window: u32,
}

/// Retransmission schedule (strongSwan's defaults: 4 s × 1.8^n, 5 retransmissions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retransmit {
    /// First timeout.
    pub timeout: Duration,
    /// Multiplier per retransmission.
    pub base: f64,
    /// Retransmissions before giving up.
    pub tries: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            timeout: Duration::from_secs(4),
            base: 1.8,
            tries: 5,
        }
    }
}

impl Retransmit {
    /// The timeout after the `n`th transmission (0 = the first).
    pub fn delay(&self, n: u32) -> Duration {
        self.timeout
            .mul_f64(self.base.powi(n as i32))
            .min(Duration::from_secs(3600))
    }
}

/// A connection as the state machines see it.
#[derive(Clone)]
pub struct ConnectionParams {
    /// Name (for events, logs and the CLI).
    pub name: String,
    /// Our addresses this connection may use (empty: any).
    pub local_addrs: Vec<std::net::IpAddr>,
    /// The peer's addresses (empty: any, responder only).
    pub remote_addrs: Vec<std::net::IpAddr>,
    /// The peer's IKE port (500).
    pub remote_port: u16,
    /// IKE proposals in order of preference.
    pub proposals: Vec<IkeProposalSpec>,
    /// Our identity.
    pub local_id: Identity,
    /// The identity the peer must have (None: any that authenticates).
    pub remote_id: Option<Identity>,
    /// Our credential.
    pub local_auth: LocalCredential,
    /// What the peer must prove.
    pub remote_auth: RemoteCredential,
    /// Children (the first is negotiated in IKE_AUTH when initiating).
    pub children: Vec<ChildParams>,
    /// Force UDP encapsulation by faking a NAT in NAT detection (like strongSwan's `encap`).
    pub force_encap: bool,
    /// Retransmission schedule.
    pub retransmit: Retransmit,
    /// Liveness check after this long without inbound IKE traffic (None: never).
    pub dpd_delay: Option<Duration>,
    /// Rekey the IKE SA after this long.
    pub rekey_time: Option<Duration>,
    /// Offer and accept IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
}

impl ConnectionParams {
    /// A child by name.
    pub fn child(&self, name: &str) -> Option<&ChildParams> {
        self.children.iter().find(|c| c.name == name)
    }
}
