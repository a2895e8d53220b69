//! The SA of `sa.add` and `sa.update`: the keys of an `[[sa]]` table of the SA file
//! (`docs/sa-file.md`), typed. Values the wire can carry but the dataplane refuses (an unknown
//! suite, a key of the wrong length, a window too large) are checked by the dataplane when it
//! builds its SA, and answered with `invalid_sa`.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// A non-zero SPI. On the wire: `"0x8c77274a"` (a number or a decimal string is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spi(pub u32);

impl Spi {
    /// Reads an SPI written as hex (`0x…`) or decimal; `None` for zero or out of range.
    pub fn parse(s: &str) -> Option<Spi> {
        parse_u64(s)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n != 0)
            .map(Spi)
    }
}

impl fmt::Display for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

impl Serialize for Spi {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Spi {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = IntOrHex::deserialize(d)?.0;
        u32::try_from(n)
            .ok()
            .filter(|&n| n != 0)
            .map(Spi)
            .ok_or_else(|| de::Error::custom("expected a non-zero 32-bit SPI"))
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// An unsigned integer given as a number or as a hex (`0x…`) or decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntOrHex(pub u64);

impl Serialize for IntOrHex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for IntOrHex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = IntOrHex;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned integer or a hex string such as \"0x10\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrHex, E> {
                Ok(IntOrHex(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrHex, E> {
                u64::try_from(v)
                    .map(IntOrHex)
                    .map_err(|_| E::custom("expected an unsigned integer"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrHex, E> {
                parse_u64(v)
                    .map(IntOrHex)
                    .ok_or_else(|| E::custom(format!("expected an integer, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which way an SA carries traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Inbound: the peer sends, this gateway decrypts.
    In,
    /// Outbound: this gateway encrypts.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Whole IP packets inside ESP (the default).
    #[default]
    Tunnel,
    /// The transport payload only, between the two outer addresses.
    Transport,
}

/// Encapsulation of the ESP packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// Plain ESP (IP protocol 50).
    #[default]
    None,
    /// ESP in UDP (RFC 3948), ports in `encap_ports` or 4500.
    Udp,
}

/// Key material in hex (a cipher key then its salt, or an HMAC key). Wiped on drop, never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SaKey(Zeroizing<String>);

impl Serialize for SaKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SaKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SaKey(Zeroizing::new(s)))
    }
}

impl SaKey {
    /// Key material from bytes.
    pub fn from_bytes(key: &[u8]) -> SaKey {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = Zeroizing::new(String::with_capacity(key.len() * 2));
        for b in key {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        SaKey(s)
    }

    /// Key material already in hex.
    pub fn from_hex(hex: Zeroizing<String>) -> SaKey {
        SaKey(hex)
    }

    /// The hex text, for the dataplane to decode.
    pub fn expose_hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaKey(<redacted>)")
    }
}

/// An SA to install: what `sa.add` and `sa.update` carry in `sa`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaSpec {
    /// Security parameter index.
    pub spi: Spi,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Tunnel (default) or transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Suite name, e.g. `aes128gcm16` or `aes256cbc-sha256` (the dataplane knows which).
    pub suite: String,
    /// Encryption key material: the cipher key, followed by the 4-byte salt for the AEAD
    /// suites (AES-GCM, ChaCha20-Poly1305).
    pub key: SaKey,
    /// The HMAC key of the CBC suites (`aes*cbc-sha*`); absent for the AEAD suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integ_key: Option<SaKey>,
    /// Local outer address.
    pub local: IpAddr,
    /// Remote outer address.
    pub remote: IpAddr,
    /// Encapsulation (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap: Option<Encap>,
    /// `[source, destination]` UDP ports when `encap` is UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap_ports: Option<[u16; 2]>,
    /// Extended sequence numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esn: Option<bool>,
    /// Anti-replay window in packets (inbound; 0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_window: Option<u32>,
    /// First sequence number (out: last sent; in: highest received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<IntOrHex>,
    /// Source prefixes of the traffic the SA carries (this side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ts: Option<Vec<String>>,
    /// Destination prefixes (the peer's side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ts: Option<Vec<String>>,
    /// Soft byte limit: `soft_expire` once reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_bytes: Option<u64>,
    /// Hard byte limit: the SA expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_bytes: Option<u64>,
    /// Soft packet limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_packets: Option<u64>,
    /// Hard packet limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_packets: Option<u64>,
    /// ESP padding alignment: 4 or 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_align: Option<u32>,
    /// Owner tag, opaque to the dataplane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl SaSpec {
    /// An SA with the required fields and defaults for the rest.
    pub fn new(
        spi: Spi,
        direction: Direction,
        suite: impl Into<String>,
        key: SaKey,
        local: IpAddr,
        remote: IpAddr,
    ) -> SaSpec {
        SaSpec {
            spi,
            direction,
            mode: None,
            suite: suite.into(),
            key,
            integ_key: None,
            local,
            remote,
            encap: None,
            encap_ports: None,
            esn: None,
            replay_window: None,
            seq: None,
            local_ts: None,
            remote_ts: None,
            soft_bytes: None,
            hard_bytes: None,
            soft_packets: None,
            hard_packets: None,
            pad_align: None,
            owner: None,
        }
    }
}

/// Why a JSON value is not an [`SaSpec`], by key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sa.{field}: {message}")]
pub struct SaShapeError {
    /// The offending key (empty when `sa` is not an object at all).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn check<T: de::DeserializeOwned>(v: &serde_json::Value) -> Result<(), String> {
    T::deserialize(v).map(drop).map_err(|e| e.to_string())
}

impl SaSpec {
    /// Reads an SA from JSON, naming the key at fault when it does not fit (the server's
    /// `invalid_sa` message). Key material is never part of the message.
    pub fn from_json(v: &serde_json::Value) -> Result<SaSpec, SaShapeError> {
        let shape = |field: &str, message: String| SaShapeError {
            field: field.to_string(),
            message,
        };
        let Some(o) = v.as_object() else {
            return Err(shape(
                "",
                "expected an object with the keys of an SA file's [[sa]] table".into(),
            ));
        };
        for (k, v) in o {
            let r = match k.as_str() {
                "spi" => check::<Spi>(v),
                "direction" => check::<Direction>(v),
                "mode" => check::<Mode>(v),
                "suite" | "owner" => check::<String>(v),
                "key" | "integ_key" => {
                    check::<String>(v).map_err(|_| "expected a hex string".to_string())
                }
                "local" | "remote" => check::<IpAddr>(v),
                "encap" => check::<Encap>(v),
                "encap_ports" => check::<[u16; 2]>(v),
                "esn" => check::<bool>(v),
                "replay_window" | "pad_align" => check::<u32>(v),
                "seq" => check::<IntOrHex>(v),
                "local_ts" | "remote_ts" => check::<Vec<String>>(v),
                "soft_bytes" | "hard_bytes" | "soft_packets" | "hard_packets" => check::<u64>(v),
                _ => Err("unknown key".to_string()),
            };
            r.map_err(|m| shape(k, m))?;
        }
        SaSpec::deserialize(v).map_err(|e| {
            let m = e.to_string();
            let field = m
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .unwrap_or("");
            shape(field, m.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_of_an_sa_and_its_key_hides_the_key() {
        let bytes: Vec<u8> = (0x10..0x34).collect();
        let key = SaKey::from_bytes(&bytes);
        let hex = key.expose_hex().to_string();
        let sa = SaSpec::new(
            Spi(0xc001),
            Direction::In,
            "aes256gcm16",
            key.clone(),
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
        );
        let mut sa = sa;
        sa.integ_key = Some(SaKey::from_bytes(&[0x7e; 32]));
        for dbg in [format!("{key:?}"), format!("{sa:?}"), format!("{sa:#?}")] {
            assert!(!dbg.contains("7e7e"), "{dbg}");
            assert!(dbg.contains("<redacted>"), "{dbg}");
            assert!(!dbg.contains(&hex[..16]), "{dbg}");
            assert!(!dbg.contains("16, 17, 18"), "{dbg}");
        }
    }

    #[test]
    fn integ_key_round_trips_and_is_optional() {
        let mut sa = SaSpec::new(
            Spi(0xc002),
            Direction::Out,
            "aes256cbc-sha512",
            SaKey::from_bytes(&[1; 32]),
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
        );
        let plain = serde_json::to_value(&sa).unwrap();
        assert!(
            plain.get("integ_key").is_none(),
            "absent unless set: {plain}"
        );
        sa.integ_key = Some(SaKey::from_bytes(&[0xab; 64]));
        let v = serde_json::to_value(&sa).unwrap();
        assert_eq!(v["integ_key"], "ab".repeat(64));
        assert_eq!(SaSpec::from_json(&v).unwrap(), sa);
        let mut bad = v;
        bad["integ_key"] = serde_json::json!(7);
        let e = SaSpec::from_json(&bad).unwrap_err();
        assert_eq!(e.field, "integ_key");
        assert!(!e.to_string().contains("abab"), "{e}");
    }
}
