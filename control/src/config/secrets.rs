//! Pre-shared keys (`[[secrets.ike]]`) and strongSwan's rule for choosing one.

use super::doc::{Tbl, Val};
use super::error::ConfigError;
use crate::ike::identity::Identity;
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// The secrets section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// IKE pre-shared keys, in file order.
    pub ike: Vec<IkeSecret>,
}

/// One IKE pre-shared key and the identities it is for. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct IkeSecret {
    /// The identities this key is for; empty: any.
    pub ids: Vec<Identity>,
    secret: Zeroizing<Vec<u8>>,
}

impl IkeSecret {
    /// A secret for `ids` (empty: any identity).
    pub fn new(ids: Vec<Identity>, secret: Vec<u8>) -> Self {
        IkeSecret {
            ids,
            secret: Zeroizing::new(secret),
        }
    }

    /// The key.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// How well this entry fits a pair of identities: None if it does not, else 1 for an entry
    /// without ids, 2 when one of its ids is one of the pair, 3 when both are.
    fn score(&self, local: Option<&Identity>, remote: Option<&Identity>) -> Option<u8> {
        if self.ids.is_empty() {
            return Some(1);
        }
        let has =
            |id: Option<&Identity>| id.is_some_and(|id| self.ids.iter().any(|i| i.matches(id)));
        match (has(local), has(remote)) {
            (true, true) => Some(3),
            (true, false) | (false, true) => Some(2),
            (false, false) => None,
        }
    }
}

impl fmt::Debug for IkeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeSecret")
            .field("ids", &self.ids)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Equal ids and equal keys (the keys compared without an early exit).
impl PartialEq for IkeSecret {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.secret(), other.secret());
        let same_key =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        self.ids == other.ids && same_key
    }
}

impl Eq for IkeSecret {}

impl Secrets {
    /// The pre-shared key for a pair of identities, by strongSwan's rule: an entry naming both
    /// identities beats one naming either, which beats one without ids; entries naming neither
    /// do not apply; among equals the first in the file wins.
    pub fn psk_for(&self, local: &Identity, remote: &Identity) -> Option<&[u8]> {
        self.best(Some(local), Some(remote)).map(IkeSecret::secret)
    }

    fn best(&self, local: Option<&Identity>, remote: Option<&Identity>) -> Option<&IkeSecret> {
        let mut best: Option<(u8, &IkeSecret)> = None;
        for s in &self.ike {
            if let Some(score) = s.score(local, remote) {
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, s));
                }
            }
        }
        best.map(|(_, s)| s)
    }

    /// Whether some entry could serve a connection whose identities may be unknown at load time
    /// (None: any identity, which any entry might match).
    pub(crate) fn could_serve(&self, local: Option<&Identity>, remote: Option<&Identity>) -> bool {
        self.ike.iter().any(|s| {
            s.ids.is_empty()
                || local.is_none()
                || remote.is_none()
                || s.score(local, remote).is_some()
        })
    }
}

/// Decodes strongSwan's secret encodings: `0x<hex>`, `0s<base64>`, else the string's octets.
/// Errors never repeat the secret.
pub fn decode_secret(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let out = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        decode_hex(hex).ok_or("expected hex digits after 0x (an even number of them)")?
    } else if let Some(b64) = s.strip_prefix("0s") {
        decode_base64(b64).ok_or("expected base64 after 0s")?
    } else {
        Zeroizing::new(s.as_bytes().to_vec())
    };
    if out.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(out)
}

fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let digits = s.as_bytes();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks(2) {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        out.push(u8::try_from(hi * 16 + lo).ok()?);
    }
    Some(out)
}

fn decode_base64(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() / 4 * 3 + 3));
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut count = 0usize;
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        count += 1;
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    acc.zeroize();
    if count % 4 == 1 {
        return None;
    }
    Some(out)
}

/// Reads `[[secrets.ike]]` entries.
pub(crate) fn parse_secrets(root: &Tbl<'_>) -> Result<Secrets, ConfigError> {
    let Some(section) = root.get("secrets") else {
        return Ok(Secrets::default());
    };
    let section = section.table()?;
    section.check_keys(&["ike"])?;
    let mut secrets = Secrets::default();
    if let Some(list) = section.get("ike") {
        for entry in list.items() {
            secrets.ike.push(parse_entry(&entry)?);
        }
    }
    Ok(secrets)
}

fn parse_entry(entry: &Val<'_>) -> Result<IkeSecret, ConfigError> {
    let t = entry.table()?;
    t.check_keys(&["ids", "secret"])?;
    let mut ids = Vec::new();
    if let Some(v) = t.get("ids") {
        let items = v.strings("identity", false)?;
        let n = items.len();
        for (text, item) in items {
            if text.trim() == "%any" {
                if n == 1 {
                    continue;
                }
                return Err(item.err(
                    "%any cannot be mixed with other ids (leave ids out to match any identity)",
                ));
            }
            ids.push(Identity::parse(text).map_err(|e| item.err(e.to_string()))?);
        }
    }
    let Some(v) = t.get("secret") else {
        return Err(t.missing(
            "secret",
            "missing (expected secret = \"...\", \"0x<hex>\" or \"0s<base64>\")",
        ));
    };
    let text = v.str_for("a string (plain, \"0x<hex>\" or \"0s<base64>\")")?;
    let secret = decode_secret(text).map_err(|e| v.err(e))?;
    Ok(IkeSecret { ids, secret })
}
