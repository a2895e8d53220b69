//! Traffic selectors in strongSwan's syntax: `10.201.1.0/24`, `10.0.0.1`, `fd00::/64`,
//! `dynamic`, each with an optional `[protocol/port]` such as `10.0.0.0/8[tcp/443]`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The address part of a traffic selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TsAddr {
    /// The tunnel's own outer address (in `local_ts`) or the peer's (in `remote_ts`).
    Dynamic,
    /// A prefix: the network address (host bits zero) and its length.
    Prefix(IpAddr, u8),
}

/// One configured traffic selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TsConfig {
    /// The addresses.
    pub addr: TsAddr,
    /// IP protocol number; 0 is any.
    pub protocol: u8,
    /// First and last port, inclusive; `(0, 65535)` is any. For ICMP and ICMPv6 the "port" is
    /// the message type in the high octet and the code in the low octet (RFC 4301 §4.4.1.1).
    pub ports: (u16, u16),
}

/// Any port.
pub const ANY_PORTS: (u16, u16) = (0, 65535);

/// Protocol names accepted in `[proto/port]`.
const PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("tcp", 6),
    ("udp", 17),
    ("dccp", 33),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("sctp", 132),
    ("udplite", 136),
];

/// Protocols whose selectors carry ports (or ICMP type/code).
fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 1 | 6 | 17 | 33 | 58 | 132 | 136)
}

fn is_icmp(protocol: u8) -> bool {
    matches!(protocol, 1 | 58)
}

impl TsConfig {
    /// `dynamic`, any protocol and port: the default of `local_ts` and `remote_ts`.
    pub fn dynamic() -> Self {
        TsConfig {
            addr: TsAddr::Dynamic,
            protocol: 0,
            ports: ANY_PORTS,
        }
    }

    /// The first and last address of a prefix; None for `dynamic`.
    pub fn range(&self) -> Option<(IpAddr, IpAddr)> {
        match self.addr {
            TsAddr::Dynamic => None,
            TsAddr::Prefix(IpAddr::V4(a), len) => {
                let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                let base = u32::from(a) & !host;
                Some((
                    IpAddr::V4(Ipv4Addr::from(base)),
                    IpAddr::V4(Ipv4Addr::from(base | host)),
                ))
            }
            TsAddr::Prefix(IpAddr::V6(a), len) => {
                let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                let base = u128::from(a) & !host;
                Some((
                    IpAddr::V6(Ipv6Addr::from(base)),
                    IpAddr::V6(Ipv6Addr::from(base | host)),
                ))
            }
        }
    }

    /// Parses strongSwan's syntax; see the module documentation.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (addr_part, proto_part) = match t.split_once('[') {
            None => (t, None),
            Some((a, rest)) => {
                let inner = rest
                    .strip_suffix(']')
                    .filter(|i| !i.contains('[') && !i.contains(']'))
                    .ok_or_else(|| {
                        format!("'{t}': expected [protocol] or [protocol/port] at the end")
                    })?;
                (a.trim(), Some(inner.trim()))
            }
        };
        let addr = parse_addr(addr_part)?;
        let (protocol, ports) = match proto_part {
            None => (0, ANY_PORTS),
            Some(p) => parse_proto_port(p)?,
        };
        Ok(TsConfig {
            addr,
            protocol,
            ports,
        })
    }
}

fn parse_addr(a: &str) -> Result<TsAddr, String> {
    if a.is_empty() || a == "dynamic" || a == "%dynamic" {
        return Ok(TsAddr::Dynamic);
    }
    if a == "%any" || a == "%any4" || a == "%any6" {
        return Err(format!(
            "'{a}' is not supported as a traffic selector: write 0.0.0.0/0 and/or ::/0"
        ));
    }
    if a.contains('-') {
        return Err(format!(
            "address ranges are not supported ('{a}'): write the range as prefixes"
        ));
    }
    let (ip_text, len_text) = match a.split_once('/') {
        Some((ip, len)) => (ip.trim(), Some(len.trim())),
        None => (a, None),
    };
    let ip: IpAddr = ip_text.parse().map_err(|_| {
        format!("expected an address, a prefix such as 10.0.0.0/24, or dynamic; got '{a}'")
    })?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("prefix length in '{a}' must be 0..={max}"))?,
    };
    let ts = TsConfig {
        addr: TsAddr::Prefix(ip, len),
        protocol: 0,
        ports: ANY_PORTS,
    };
    if let Some((network, _)) = ts.range() {
        if network != ip {
            return Err(format!(
                "'{a}' has host bits set (did you mean {network}/{len}?)"
            ));
        }
    }
    Ok(TsAddr::Prefix(ip, len))
}

fn parse_protocol(p: &str) -> Result<u8, String> {
    if p.is_empty() || p == "%any" || p == "any" {
        return Ok(0);
    }
    let lower = p.to_ascii_lowercase();
    if let Some((_, n)) = PROTOCOLS.iter().find(|(name, _)| *name == lower) {
        return Ok(*n);
    }
    p.parse::<u8>().map_err(|_| {
        let names: Vec<&str> = PROTOCOLS.iter().map(|(n, _)| *n).collect();
        format!(
            "unknown protocol '{p}' (expected a number 0..=255 or one of {})",
            names.join(", ")
        )
    })
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.trim()
        .parse::<u16>()
        .map_err(|_| format!("expected a port number 0..=65535, got '{}'", p.trim()))
}

fn parse_proto_port(inner: &str) -> Result<(u8, (u16, u16)), String> {
    let (proto_text, port_text) = match inner.split_once('/') {
        Some((p, q)) => (p.trim(), Some(q.trim())),
        None => (inner, None),
    };
    let protocol = parse_protocol(proto_text)?;
    let Some(port_text) = port_text else {
        return Ok((protocol, ANY_PORTS));
    };
    if port_text.is_empty() || port_text == "%any" || port_text == "any" {
        return Ok((protocol, ANY_PORTS));
    }
    if port_text == "opaque" || port_text == "%opaque" {
        return Err("OPAQUE port selectors are not supported".into());
    }
    if protocol == 0 {
        return Err(format!(
            "port '{port_text}' needs a protocol, such as [tcp/{port_text}]"
        ));
    }
    if !has_ports(protocol) {
        return Err(format!(
            "protocol {protocol} has no ports (ports apply to tcp, udp, sctp, dccp, udplite, \
             icmp and ipv6-icmp)"
        ));
    }
    let ports = match port_text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
            if lo > hi {
                return Err(format!("port range '{port_text}' is empty (first > last)"));
            }
            (lo, hi)
        }
        None => {
            let p = parse_port(port_text)?;
            if is_icmp(protocol) && p < 256 {
                // A message type alone: any code.
                (p << 8, (p << 8) | 0xff)
            } else if p == 0 && !is_icmp(protocol) {
                return Err("port 0 is not a port (write %any, or leave the port out)".into());
            } else {
                (p, p)
            }
        }
    };
    Ok((protocol, ports))
}

impl FromStr for TsConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// strongSwan's syntax, such as `10.0.0.0/8[tcp/443]`, `dynamic` or `fd00::/64[udp/1000-2000]`.
impl fmt::Display for TsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            TsAddr::Dynamic => f.write_str("dynamic")?,
            TsAddr::Prefix(ip, len) => write!(f, "{ip}/{len}")?,
        }
        if self.protocol == 0 && self.ports == ANY_PORTS {
            return Ok(());
        }
        match PROTOCOLS.iter().find(|(_, n)| *n == self.protocol) {
            Some((name, _)) => write!(f, "[{name}")?,
            None => write!(f, "[{}", self.protocol)?,
        }
        let (lo, hi) = self.ports;
        let icmp = is_icmp(self.protocol);
        // A single number reads back as itself only where it is not an ICMP type (< 256) and
        // not port 0.
        let single = lo == hi && if icmp { lo >= 256 } else { lo != 0 };
        if (lo, hi) == ANY_PORTS {
            f.write_str("]")
        } else if icmp && lo & 0xff == 0 && hi == lo | 0xff {
            write!(f, "/{}]", lo >> 8)
        } else if single {
            write!(f, "/{lo}]")
        } else {
            write!(f, "/{lo}-{hi}]")
        }
    }
}
