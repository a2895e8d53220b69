//! The SA file: manual keying in TOML, like `ip xfrm state add`, loaded by `esp-pcap` and the
//! dataplane daemon. See `docs/sa-file.md` for the reference.
//!
//! Every error names the file, the line, the SA and the key, and says what was expected; key
//! material never appears in an error.

use crate::crypto::Suite;
use crate::sa::config::{
    parse_keys, Direction, Lifetime, Mode, SaConfig, UdpEncap, DEFAULT_PAD_ALIGN,
    DEFAULT_REPLAY_WINDOW,
};
use crate::sa::{Prefix, Selectors};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// An error in an SA file, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaFileError {
    /// The file (as given).
    pub file: String,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// The key path, e.g. `sa[2].key`.
    pub key: Option<String>,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for SaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SaFileError {}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sa: Vec<Spanned<RawSa>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSa {
    spi: Spanned<IntOrString>,
    direction: Spanned<String>,
    mode: Option<Spanned<String>>,
    suite: Spanned<String>,
    key: Spanned<String>,
    integ_key: Option<Spanned<String>>,
    local: Spanned<String>,
    remote: Spanned<String>,
    encap: Option<Spanned<String>>,
    encap_ports: Option<Spanned<Vec<i64>>>,
    esn: Option<bool>,
    replay_window: Option<Spanned<i64>>,
    seq: Option<Spanned<IntOrString>>,
    local_ts: Option<Spanned<Vec<String>>>,
    remote_ts: Option<Spanned<Vec<String>>>,
    soft_bytes: Option<Spanned<i64>>,
    hard_bytes: Option<Spanned<i64>>,
    soft_packets: Option<Spanned<i64>>,
    hard_packets: Option<Spanned<i64>>,
    pad_align: Option<Spanned<i64>>,
    owner: Option<String>,
}

/// Reads and validates an SA file.
pub fn load(path: &Path) -> Result<Vec<SaConfig>, SaFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SaFileError {
        file: name.clone(),
        line: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &name)
}

/// Parses SA file text; `name` is used in errors.
pub fn parse(text: &str, name: &str) -> Result<Vec<SaConfig>, SaFileError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| SaFileError {
        file: name.to_string(),
        line: e.span().map(|s| line_of(text, s.start)),
        key: None,
        message: e.message().trim_end().to_string(),
    })?;
    let mut out = Vec::with_capacity(raw.sa.len());
    for (i, sa) in raw.sa.iter().enumerate() {
        let cx = Cx {
            text,
            name,
            index: i,
        };
        let cfg = cx.convert(sa.get_ref(), sa.span())?;
        out.push(cfg);
    }
    check_unique(&out, text, name, &raw.sa)?;
    Ok(out)
}

fn check_unique(
    sas: &[SaConfig],
    text: &str,
    name: &str,
    raw: &[Spanned<RawSa>],
) -> Result<(), SaFileError> {
    for (i, a) in sas.iter().enumerate() {
        if let Some(j) = sas[..i].iter().position(|b| {
            a.direction == b.direction
                && a.spi == b.spi
                && a.local == b.local
                && a.remote == b.remote
        }) {
            return Err(SaFileError {
                file: name.to_string(),
                line: Some(line_of(text, raw[i].get_ref().spi.span().start)),
                key: Some(format!("sa[{i}].spi")),
                message: format!(
                    "SA 0x{:08x} ({}) is defined twice: sa[{j}] has the same SPI, direction and addresses",
                    a.spi, a.direction
                ),
            });
        }
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Cx<'a> {
    text: &'a str,
    name: &'a str,
    index: usize,
}

impl Cx<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> SaFileError {
        SaFileError {
            file: self.name.to_string(),
            line: Some(line_of(self.text, span.start)),
            key: Some(format!("sa[{}].{key}", self.index)),
            message: message.into(),
        }
    }

    fn int(&self, v: &Spanned<IntOrString>, key: &str, what: &str) -> Result<u64, SaFileError> {
        let bad = || self.err(v.span(), key, format!("expected {what}"));
        match v.get_ref() {
            IntOrString::Int(n) => u64::try_from(*n).map_err(|_| bad()),
            IntOrString::Str(s) => {
                let s = s.trim();
                let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => s.parse::<u64>(),
                };
                parsed.map_err(|_| bad())
            }
        }
    }

    fn addr(&self, v: &Spanned<String>, key: &str) -> Result<IpAddr, SaFileError> {
        v.get_ref().trim().parse().map_err(|_| {
            self.err(
                v.span(),
                key,
                format!("expected an IPv4 or IPv6 address, got {:?}", v.get_ref()),
            )
        })
    }

    fn selectors(
        &self,
        v: &Option<Spanned<Vec<String>>>,
        key: &str,
    ) -> Result<Selectors, SaFileError> {
        let Some(v) = v else {
            return Ok(Selectors::default());
        };
        let mut out = Vec::with_capacity(v.get_ref().len());
        for s in v.get_ref() {
            let p: Prefix = s.parse().map_err(|e: String| {
                self.err(
                    v.span(),
                    key,
                    format!("expected prefixes like \"10.0.1.0/24\": {e}"),
                )
            })?;
            out.push(p);
        }
        Ok(Selectors::new(out))
    }

    fn convert(&self, r: &RawSa, span: Range<usize>) -> Result<SaConfig, SaFileError> {
        let spi = self.int(
            &r.spi,
            "spi",
            "an SPI: a non-zero 32-bit integer or hex string such as \"0x8c77274a\"",
        )?;
        let spi = u32::try_from(spi)
            .ok()
            .filter(|&s| s != 0)
            .ok_or_else(|| self.err(r.spi.span(), "spi", "expected a non-zero 32-bit SPI"))?;
        let direction = match r.direction.get_ref().as_str() {
            "in" => Direction::In,
            "out" => Direction::Out,
            other => {
                return Err(self.err(
                    r.direction.span(),
                    "direction",
                    format!("expected \"in\" or \"out\", got {other:?}"),
                ))
            }
        };
        let mode = match r.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("tunnel", _)) => Mode::Tunnel,
            Some(("transport", _)) => Mode::Transport,
            Some((other, sp)) => {
                return Err(self.err(
                    sp,
                    "mode",
                    format!("expected \"tunnel\" or \"transport\", got {other:?}"),
                ))
            }
        };
        let suite: Suite = r
            .suite
            .get_ref()
            .parse()
            .map_err(|e: String| self.err(r.suite.span(), "suite", e))?;
        let (key, integ_key) = parse_keys(
            suite,
            r.key.get_ref(),
            r.integ_key.as_ref().map(|k| k.get_ref().as_str()),
        )
        .map_err(|e| {
            let sp = match (e.field, &r.integ_key) {
                ("integ_key", Some(k)) => k.span(),
                ("integ_key", None) => span.clone(),
                _ => r.key.span(),
            };
            self.err(sp, e.field, e.message)
        })?;
        let local = self.addr(&r.local, "local")?;
        let remote = self.addr(&r.remote, "remote")?;
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(self.err(
                r.remote.span(),
                "remote",
                "expected the same address family as local",
            ));
        }
        let encap = match r.encap.as_ref().map(|e| (e.get_ref().as_str(), e.span())) {
            None | Some(("none", _)) => None,
            Some(("udp", _)) => Some(UdpEncap::default()),
            Some((other, sp)) => {
                return Err(self.err(
                    sp,
                    "encap",
                    format!("expected \"udp\" (or \"none\"), got {other:?}"),
                ))
            }
        };
        let encap = match (&r.encap_ports, encap) {
            (None, e) => e,
            (Some(p), None) => {
                return Err(self.err(p.span(), "encap_ports", "encap_ports needs encap = \"udp\""))
            }
            (Some(p), Some(_)) => match p.get_ref().as_slice() {
                [s, d] => {
                    let port = |v: i64| u16::try_from(v).ok().filter(|&p| p != 0);
                    match (port(*s), port(*d)) {
                        (Some(src_port), Some(dst_port)) => Some(UdpEncap { src_port, dst_port }),
                        _ => {
                            return Err(self.err(
                                p.span(),
                                "encap_ports",
                                "expected two ports in 1..=65535: [source, destination]",
                            ))
                        }
                    }
                }
                _ => {
                    return Err(self.err(
                        p.span(),
                        "encap_ports",
                        "expected two ports: [source, destination]",
                    ))
                }
            },
        };
        let esn = r.esn.unwrap_or(false);
        let replay_window = match &r.replay_window {
            None => DEFAULT_REPLAY_WINDOW,
            Some(w) => u32::try_from(*w.get_ref())
                .ok()
                .filter(|&n| n <= crate::sa::replay::MAX_WINDOW)
                .ok_or_else(|| {
                    self.err(
                        w.span(),
                        "replay_window",
                        format!(
                            "expected a window size in packets, 0..={} (0 disables anti-replay)",
                            crate::sa::replay::MAX_WINDOW
                        ),
                    )
                })?,
        };
        let seq = match &r.seq {
            None => 0,
            Some(s) => self.int(s, "seq", "a sequence number (integer or hex string)")?,
        };
        if !esn && seq > u64::from(u32::MAX) {
            let sp = r.seq.as_ref().map(|s| s.span()).unwrap_or(span.clone());
            return Err(self.err(sp, "seq", "expected at most 4294967295 without esn = true"));
        }
        if esn && direction == Direction::In && replay_window == 0 {
            return Err(self.err(
                span,
                "replay_window",
                "esn needs a replay window to infer the high sequence bits: set replay_window > 0",
            ));
        }
        let limit = |v: &Option<Spanned<i64>>, key: &str| -> Result<Option<u64>, SaFileError> {
            v.as_ref()
                .map(|x| {
                    u64::try_from(*x.get_ref())
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| self.err(x.span(), key, "expected a positive count"))
                })
                .transpose()
        };
        let lifetime = Lifetime {
            soft_bytes: limit(&r.soft_bytes, "soft_bytes")?,
            hard_bytes: limit(&r.hard_bytes, "hard_bytes")?,
            soft_packets: limit(&r.soft_packets, "soft_packets")?,
            hard_packets: limit(&r.hard_packets, "hard_packets")?,
        };
        let pad_align = match &r.pad_align {
            None => DEFAULT_PAD_ALIGN,
            Some(a) => match *a.get_ref() {
                4 => 4,
                16 => 16,
                _ => {
                    return Err(self.err(
                        a.span(),
                        "pad_align",
                        "expected 4 (RFC 4303 minimum) or 16 (whole AES blocks)",
                    ))
                }
            },
        };
        let local_ts = self.selectors(&r.local_ts, "local_ts")?;
        let remote_ts = self.selectors(&r.remote_ts, "remote_ts")?;
        let cfg = SaConfig {
            spi,
            direction,
            mode,
            suite,
            key,
            integ_key,
            local,
            remote,
            encap,
            esn,
            replay_window,
            seq,
            local_ts,
            remote_ts,
            lifetime,
            pad_align,
            owner: r.owner.clone(),
        };
        cfg.validate().map_err(|m| self.err(span, "", m))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[sa]]
spi = "0x8c77274a"        # hex string or integer
direction = "in"          # "in" | "out"
mode = "tunnel"           # "tunnel" | "transport"
suite = "aes128gcm16"     # see docs/configuration.md for every suite
key = "00112233445566778899aabbccddeeff01020304"
local = "10.200.0.2"      # this gateway's outer address (IPv4 or IPv6)
remote = "10.200.0.1"     # the peer's outer address
encap = "udp"             # optional
esn = false
replay_window = 1024
seq = 0
local_ts = ["10.201.2.0/24"]
remote_ts = ["10.201.1.0/24"]

[[sa]]
spi = 3456
direction = "out"
suite = "aes256gcm16"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f a0a1a2a3"
local = "2001:db8::2"
remote = "2001:db8::1"
encap = "udp"
encap_ports = [4501, 4502]
esn = true
seq = "0xfffffffe"
pad_align = 4
soft_bytes = 1000000
hard_bytes = 2000000
hard_packets = 5000
"#;

    #[test]
    fn the_documented_shape_is_accepted() {
        let sas = parse(EXAMPLE, "sa.toml").unwrap();
        assert_eq!(sas.len(), 2);
        let a = &sas[0];
        assert_eq!(a.spi, 0x8c77274a);
        assert_eq!(a.direction, Direction::In);
        assert_eq!(a.encap, Some(UdpEncap::default()));
        assert_eq!(a.local_ts.prefixes()[0].to_string(), "10.201.2.0/24");
        let b = &sas[1];
        assert_eq!(
            (b.spi, b.mode, b.suite),
            (3456, Mode::Tunnel, Suite::Aes256Gcm16)
        );
        assert_eq!(
            b.encap,
            Some(UdpEncap {
                src_port: 4501,
                dst_port: 4502
            })
        );
        assert_eq!(b.seq, 0xffff_fffe);
        assert_eq!(b.replay_window, DEFAULT_REPLAY_WINDOW);
        assert_eq!(b.lifetime.soft_bytes, Some(1_000_000));
        assert_eq!(b.lifetime.hard_packets, Some(5000));
        assert_eq!(b.lifetime.soft_packets, None);
        assert_eq!((a.pad_align, b.pad_align), (16, 4));
        assert!(format!("{b:?}").contains("redacted"));
    }

    fn error_for(replace: &str, with: &str) -> SaFileError {
        parse(&EXAMPLE.replacen(replace, with, 1), "sa.toml").unwrap_err()
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = error_for("direction = \"in\"", "direction = \"inbound\"");
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key.as_deref(), Some("sa[0].direction"));
        assert!(
            e.to_string()
                .starts_with("sa.toml:4: sa[0].direction: expected \"in\" or \"out\""),
            "{e}"
        );

        let e = error_for("00112233445566778899aabbccddeeff01020304", "0011");
        assert_eq!(e.key.as_deref(), Some("sa[0].key"));
        assert!(e.message.contains("20 bytes"), "{e}");
        assert!(
            !e.to_string().contains("0011"),
            "key material must not be echoed: {e}"
        );

        let e = error_for("10.201.2.0/24", "10.201.2.1/24");
        assert!(e.message.contains("10.201.2.0/24"), "{e}");
        assert_eq!(e.key.as_deref(), Some("sa[0].local_ts"));

        let e = error_for("seq = \"0xfffffffe\"", "seq = \"0xfffffffe\"\nbogus = 1");
        assert!(e.message.contains("bogus"), "{e}");
        assert!(e.line.is_some());

        let e = error_for("spi = 3456", "spi = 0");
        assert_eq!(e.key.as_deref(), Some("sa[1].spi"));

        let e = error_for("remote = \"10.200.0.1\"", "remote = \"2001:db8::1\"");
        assert_eq!(e.key.as_deref(), Some("sa[0].remote"));

        let e = error_for("spi = 3456\n", "");
        assert!(e.message.contains("spi"), "{e}");

        let e = error_for("encap_ports = [4501, 4502]", "encap_ports = [4501]");
        assert_eq!(e.key.as_deref(), Some("sa[1].encap_ports"));

        let e = error_for("pad_align = 4", "pad_align = 8");
        assert_eq!(e.key.as_deref(), Some("sa[1].pad_align"));

        let e = error_for("hard_bytes = 2000000", "hard_bytes = 20");
        assert!(e.message.contains("exceeds"), "{e}");
        let e = error_for("hard_packets = 5000", "hard_packets = 0");
        assert_eq!(e.key.as_deref(), Some("sa[1].hard_packets"));

        let e = error_for("replay_window = 1024", "replay_window = -1");
        assert_eq!(e.key.as_deref(), Some("sa[0].replay_window"));
    }

    const CBC: &str = r#"
[[sa]]
spi = "0x1001"
direction = "in"
suite = "aes256cbc-sha384"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
integ_key = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f"
local = "10.200.0.2"
remote = "10.200.0.1"
esn = true

[[sa]]
spi = "0x1002"
direction = "out"
suite = "chacha20poly1305"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f a0a1a2a3"
local = "10.200.0.1"
remote = "10.200.0.2"
pad_align = 4
"#;

    fn cbc_error(replace: &str, with: &str) -> SaFileError {
        parse(&CBC.replacen(replace, with, 1), "cbc.toml").unwrap_err()
    }

    #[test]
    fn cbc_and_chacha_suites_and_their_keys() {
        let sas = parse(CBC, "cbc.toml").unwrap();
        assert_eq!(sas[0].suite, Suite::Aes256CbcSha384);
        assert_eq!(sas[0].key.len(), 32);
        assert_eq!(sas[0].integ_key.as_ref().map(|k| k.len()), Some(48));
        assert_eq!(
            (sas[1].suite, sas[1].key.len()),
            (Suite::ChaCha20Poly1305, 36)
        );
        assert!(sas[1].integ_key.is_none());
        let shown = format!("{:?}", sas[0]);
        assert!(
            shown.contains("redacted") && !shown.contains("404142"),
            "{shown}"
        );

        let e = cbc_error("integ_key = \"4041", "# integ_key = \"4041");
        assert_eq!(e.key.as_deref(), Some("sa[0].integ_key"));
        assert!(e.message.contains("needs integ_key: 48 bytes"), "{e}");

        let e = cbc_error("5d5e5f606162636465666768696a6b6c6d6e6f\"", "5d5e5f\"");
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("sa[0].integ_key"), Some(7))
        );
        assert!(e.message.contains("48 bytes"), "{e}");
        assert!(
            !e.to_string().contains("404142"),
            "never echoes key material: {e}"
        );

        let e = cbc_error("a0a1a2a3\"", "a0a1a2a3\"\ninteg_key = \"00\"");
        assert_eq!(e.key.as_deref(), Some("sa[1].integ_key"));
        assert!(e.message.contains("takes no integ_key"), "{e}");

        let e = cbc_error(" a0a1a2a3", "");
        assert_eq!(e.key.as_deref(), Some("sa[1].key"));
        assert!(
            e.message.contains("36 bytes (ChaCha20 key || 4-byte salt)"),
            "{e}"
        );

        let e = cbc_error("1c1d1e1f\"\ninteg", "1c1d1e1f00010203\"\ninteg");
        assert!(
            e.message
                .contains("aes256cbc-sha384 needs 32 bytes (AES key)"),
            "{e}"
        );

        let e = cbc_error("esn = true", "pad_align = 4");
        assert!(e.message.contains("pad_align must be 16"), "{e}");

        let e = cbc_error("aes256cbc-sha384", "aes256cbc-sha1");
        assert_eq!(e.key.as_deref(), Some("sa[0].suite"));
        assert!(e.message.contains("aes128cbc-sha256"), "{e}");
    }

    #[test]
    fn duplicates_are_refused() {
        let text = format!(
            "{}\n{}",
            &EXAMPLE[..EXAMPLE.find("[[sa]]\nspi = 3456").unwrap()],
            &EXAMPLE[..EXAMPLE.find("[[sa]]\nspi = 3456").unwrap()]
        );
        let e = parse(&text, "dup.toml").unwrap_err();
        assert!(e.message.contains("defined twice"), "{e}");
    }
}
