//! The test packets: IPv4/UDP of an exact size carrying a 24-byte stamp (magic, trial, sequence
//! number, send time), how a sink recognises them, and the packet sizes (fixed or IMIX).

use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::proto;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// UDP destination port of the test traffic (what the endpoints' XDP programs take).
pub const BENCH_PORT: u16 = 7788;
/// UDP source port of the test traffic.
pub const SRC_PORT: u16 = 7789;
/// First word of every stamp.
pub const MAGIC: u32 = 0x4553_5042;
/// Bytes of the stamp at the start of the UDP payload.
pub const STAMP_LEN: usize = 24;
/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// Offset of the stamp in an IPv4/UDP packet without options.
pub const STAMP_AT: usize = 28;
/// Smallest packet that holds the headers and the stamp (rounded up to the usual minimum).
pub const MIN_SIZE: usize = 64;
/// Largest plaintext packet: ESP-in-UDP with AES-GCM and 16-byte padding still fits a 1500-byte
/// MTU at 1420 (1420 + 20 + 8 + 8 + 8 + 4 + 16 = 1484); larger sizes would be too big for the
/// tunnel.
pub const MAX_SIZE: usize = 1420;

/// The IMIX cycle: 7 × 64, 4 × 576 and 1 × 1420 bytes, interleaved as traffic would be.
pub const IMIX_PATTERN: [usize; 12] = [64, 576, 64, 64, 1420, 64, 576, 64, 576, 64, 64, 576];

/// A packet size: every packet this long (the plaintext IP packet), or the IMIX mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameSize {
    /// Plaintext IP packets of exactly this many bytes.
    Fixed(usize),
    /// 7:4:1 of 64, 576 and 1420 bytes ([`IMIX_PATTERN`]).
    Imix,
}

impl FrameSize {
    /// The sizes of a full run.
    pub const ALL: [FrameSize; 4] = [
        FrameSize::Fixed(64),
        FrameSize::Fixed(512),
        FrameSize::Fixed(1420),
        FrameSize::Imix,
    ];

    /// Label for tables and JSON ("64", "imix").
    pub fn label(&self) -> String {
        match self {
            FrameSize::Fixed(n) => n.to_string(),
            FrameSize::Imix => "imix".into(),
        }
    }

    /// The packet lengths the generator cycles through.
    pub fn cycle(&self) -> Vec<usize> {
        match self {
            FrameSize::Fixed(n) => vec![*n],
            FrameSize::Imix => IMIX_PATTERN.to_vec(),
        }
    }

    /// Mean plaintext bytes per packet (converts packets/s into Gbit/s).
    pub fn mean_bytes(&self) -> f64 {
        let c = self.cycle();
        c.iter().sum::<usize>() as f64 / c.len() as f64
    }
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for FrameSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "imix" | "IMIX" => Ok(FrameSize::Imix),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| (MIN_SIZE..=MAX_SIZE).contains(n))
                .map(FrameSize::Fixed)
                .ok_or_else(|| {
                    format!(
                        "{n:?} is not a packet size in {MIN_SIZE}..={MAX_SIZE} bytes or \"imix\""
                    )
                }),
        }
    }
}

/// An IPv4/UDP packet of exactly `len` bytes from `src` to `dst`, port [`SRC_PORT`] to
/// [`BENCH_PORT`], DF set as `dont_frag` says, UDP checksum zero (allowed over IPv4; nothing on
/// the path checks it), the stamp zeroed and a fixed filler after it.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, len: usize, dont_frag: bool) -> Vec<u8> {
    let len = len.max(STAMP_AT + STAMP_LEN);
    let mut p = vec![0u8; len];
    Ipv4Repr {
        src,
        dst,
        protocol: proto::UDP,
        payload_len: len - 20,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag,
    }
    .emit(&mut p);
    p[20..22].copy_from_slice(&SRC_PORT.to_be_bytes());
    p[22..24].copy_from_slice(&BENCH_PORT.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    for (j, b) in p[STAMP_AT + STAMP_LEN..].iter_mut().enumerate() {
        *b = j as u8;
    }
    p
}

/// An Ethernet header: destination, source, IPv4.
pub fn ethernet(dst: [u8; 6], src: [u8; 6]) -> [u8; ETH_LEN] {
    let mut h = [0u8; ETH_LEN];
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..].copy_from_slice(&0x0800u16.to_be_bytes());
    h
}

/// Writes the stamp into an IPv4/UDP packet built by [`ipv4_udp`].
#[inline]
pub fn stamp(ip: &mut [u8], trial: u32, seq: u64, t_ns: u64) {
    let s = &mut ip[STAMP_AT..STAMP_AT + STAMP_LEN];
    s[..4].copy_from_slice(&MAGIC.to_be_bytes());
    s[4..8].copy_from_slice(&trial.to_be_bytes());
    s[8..16].copy_from_slice(&seq.to_be_bytes());
    s[16..24].copy_from_slice(&t_ns.to_be_bytes());
}

/// What a sink reads back from a test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Trial identifier.
    pub trial: u32,
    /// Sequence number within the trial.
    pub seq: u64,
    /// Send time, nanoseconds since the run's clock origin.
    pub t_ns: u64,
    /// Length of the IP packet.
    pub ip_len: usize,
}

/// Reads the stamp of an IPv4 packet (any header length) if it is a test packet.
#[inline]
pub fn read_stamp(ip: &[u8]) -> Option<Stamp> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != proto::UDP {
        return None;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let s = ip.get(hl + 8..hl + 8 + STAMP_LEN)?;
    if ip.get(hl + 2..hl + 4)? != BENCH_PORT.to_be_bytes() || s[..4] != MAGIC.to_be_bytes() {
        return None;
    }
    let word = |a: usize| u64::from_be_bytes(s[a..a + 8].try_into().expect("8 bytes"));
    Some(Stamp {
        trial: u32::from_be_bytes(s[4..8].try_into().expect("4 bytes")),
        seq: word(8),
        t_ns: word(16),
        ip_len: total,
    })
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_at_every_size() {
        let (a, b) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1));
        for len in [64, 512, 576, 1420] {
            let mut p = ipv4_udp(a, b, len, true);
            assert_eq!(p.len(), len);
            assert!(
                read_stamp(&p).is_none(),
                "an unstamped packet is not a test packet"
            );
            stamp(&mut p, 7, 42, 123_456);
            let s = read_stamp(&p).unwrap();
            assert_eq!((s.trial, s.seq, s.t_ns, s.ip_len), (7, 42, 123_456, len));
            assert!(dataplane::wire::Ipv4Packet::new_checked(&p[..])
                .unwrap()
                .verify_checksum());
        }
    }

    #[test]
    fn sizes_parse_and_average() {
        assert_eq!("64".parse::<FrameSize>(), Ok(FrameSize::Fixed(64)));
        assert_eq!("imix".parse::<FrameSize>(), Ok(FrameSize::Imix));
        assert!("1500".parse::<FrameSize>().is_err());
        assert!("20".parse::<FrameSize>().is_err());
        let imix = FrameSize::Imix.cycle();
        assert_eq!(imix.iter().filter(|&&n| n == 64).count(), 7);
        assert_eq!(imix.iter().filter(|&&n| n == 576).count(), 4);
        assert_eq!(imix.iter().filter(|&&n| n == 1420).count(), 1);
        assert_eq!(
            FrameSize::Imix.mean_bytes(),
            (7.0 * 64.0 + 4.0 * 576.0 + 1420.0) / 12.0
        );
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:e5:00:00:02:01"), Some([2, 0xe5, 0, 0, 2, 1]));
        assert_eq!(parse_mac("02:e5:00:00:02"), None);
        assert_eq!(parse_mac("02:e5:00:00:02:01:00"), None);
    }
}
