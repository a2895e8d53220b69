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
    /// Cipher key, followed by the 4-byte salt for the AEAD suites; its length matches
    /// `suite.keymat_len()`.
    pub key: KeyMaterial,
    /// HMAC key of the CBC suites (`suite.integ_key_len()` bytes); `None` for the AEADs.
    pub integ_key: Option<KeyMaterial>,
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
            self.suite,
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
        check_key_lengths(self.suite, &self.key, self.integ_key.as_ref()).map_err(|e| e.message)?;
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
        if usize::from(self.pad_align) < self.suite.block_len() {
            return Err(format!(
                "{} pads to whole AES blocks: pad_align must be 16, not {}",
                self.suite, self.pad_align
            ));
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

/// A key of an SA that does not fit its suite: which one (`key` or `integ_key`) and why. The
/// message never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// `"key"` or `"integ_key"`.
    pub field: &'static str,
    /// What was expected.
    pub message: String,
}

fn key_error(field: &'static str, message: String) -> KeyError {
    KeyError { field, message }
}

/// Checks the lengths of `key` and `integ_key` against `suite`: the cipher key (and salt), and
/// an HMAC key exactly for the CBC suites.
pub fn check_key_lengths(
    suite: Suite,
    key: &KeyMaterial,
    integ_key: Option<&KeyMaterial>,
) -> Result<(), KeyError> {
    if key.len() != suite.keymat_len() {
        return Err(key_error(
            "key",
            format!(
                "{suite} needs {} bytes ({}), got {}",
                suite.keymat_len(),
                suite.key_layout(),
                key.len()
            ),
        ));
    }
    match (suite.integ(), integ_key) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(key_error(
            "integ_key",
            format!("{suite} is an AEAD: its key authenticates too, so it takes no integ_key"),
        )),
        (Some(i), None) => Err(key_error(
            "integ_key",
            format!(
                "{suite} needs integ_key: {} bytes of {} key",
                i.key_len(),
                i.name()
            ),
        )),
        (Some(i), Some(k)) if k.len() != i.key_len() => Err(key_error(
            "integ_key",
            format!(
                "{suite} needs {} bytes of {} key in integ_key, got {}",
                i.key_len(),
                i.name(),
                k.len()
            ),
        )),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// Reads the hex `key` and `integ_key` of an SA (SA file or API) and checks them against
/// `suite`.
pub fn parse_keys(
    suite: Suite,
    key: &str,
    integ_key: Option<&str>,
) -> Result<(KeyMaterial, Option<KeyMaterial>), KeyError> {
    let key = KeyMaterial::from_hex(key).map_err(|e| {
        key_error(
            "key",
            format!(
                "expected {} bytes of hex ({}): {e}",
                suite.keymat_len(),
                suite.key_layout()
            ),
        )
    })?;
    let integ_key = integ_key
        .map(|k| {
            KeyMaterial::from_hex(k).map_err(|e| {
                key_error(
                    "integ_key",
                    format!(
                        "expected {} bytes of hex (HMAC key): {e}",
                        suite.integ_key_len()
                    ),
                )
            })
        })
        .transpose()?;
    check_key_lengths(suite, &key, integ_key.as_ref())?;
    Ok((key, integ_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn km(n: usize) -> KeyMaterial {
        KeyMaterial::new(vec![0x5a; n])
    }

    #[test]
    fn key_lengths_per_suite() {
        for suite in Suite::ALL {
            let ik = (!suite.is_aead()).then(|| km(suite.integ_key_len()));
            check_key_lengths(suite, &km(suite.keymat_len()), ik.as_ref()).unwrap();
            let e = check_key_lengths(suite, &km(suite.keymat_len() + 1), ik.as_ref()).unwrap_err();
            assert_eq!(e.field, "key", "{suite}");
            if suite.is_aead() {
                let e =
                    check_key_lengths(suite, &km(suite.keymat_len()), Some(&km(32))).unwrap_err();
                assert_eq!(e.field, "integ_key");
                assert!(e.message.contains("takes no integ_key"), "{}", e.message);
            } else {
                let e = check_key_lengths(suite, &km(suite.keymat_len()), None).unwrap_err();
                assert!(e.message.contains("needs integ_key"), "{}", e.message);
                let e = check_key_lengths(
                    suite,
                    &km(suite.keymat_len()),
                    Some(&km(suite.integ_key_len() - 1)),
                )
                .unwrap_err();
                assert_eq!(e.field, "integ_key");
            }
        }
        assert_eq!(
            (
                Suite::Aes128CbcSha256.keymat_len(),
                Suite::Aes256CbcSha512.integ_key_len()
            ),
            (16, 64)
        );
        assert_eq!(Suite::ChaCha20Poly1305.keymat_len(), 36);
    }

    #[test]
    fn hex_errors_never_echo_keys() {
        let e = parse_keys(Suite::Aes256CbcSha384, &"11".repeat(32), Some("zz99")).unwrap_err();
        assert_eq!(e.field, "integ_key");
        assert!(
            !e.message.contains("zz99") && e.message.contains("48 bytes"),
            "{}",
            e.message
        );
        let (k, ik) = parse_keys(
            Suite::Aes256CbcSha384,
            &"11".repeat(32),
            Some(&"22".repeat(48)),
        )
        .unwrap();
        assert_eq!((k.len(), ik.map(|k| k.len())), (32, Some(48)));
    }
}
