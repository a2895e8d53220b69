//! ESP encapsulation: tunnel mode (IPv4/IPv6 in IPv4/IPv6) and transport mode, optionally in
//! UDP (RFC 3948), sealed in place with the SA's suite ([`crate::crypto::transform`]).

use super::{DropReason, Verdict};
use crate::frame::Frame;
use crate::sa::{Mode, OutboundSa, SaDb};
use crate::wire::esp::{emit_trailer, pad_len, TRAILER_LEN};
use crate::wire::ipv4::{Ipv4Repr, MIN_HEADER_LEN as IPV4_LEN};
use crate::wire::ipv6::{Ipv6Repr, HEADER_LEN as IPV6_LEN};
use crate::wire::udp::{UdpRepr, HEADER_LEN as UDP_LEN};
use crate::wire::{proto, Ipv4Packet, Ipv6Packet, WireError};
use std::net::IpAddr;

/// Outer TTL / hop limit of tunnel-mode packets.
pub const OUTER_TTL: u8 = 64;

/// Source and destination of an IP packet, plus what tunnel encapsulation copies from it.
#[derive(Debug, Clone, Copy)]
pub struct InnerInfo {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Length up to the IP total length (trailing link padding excluded).
    pub len: usize,
    dscp: u8,
    ecn: u8,
    dont_frag: bool,
    v6: bool,
}

impl InnerInfo {
    /// Don't-fragment: the IPv4 DF flag, always true for IPv6 (routers never fragment it).
    pub fn dont_frag(&self) -> bool {
        self.dont_frag
    }

    /// True for IPv6.
    pub fn is_v6(&self) -> bool {
        self.v6
    }
}

/// Reads an IPv4 or IPv6 packet's addresses and the fields tunnel mode copies.
#[inline]
pub fn inner_info(pkt: &[u8]) -> Result<InnerInfo, WireError> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(pkt)?;
            Ok(InnerInfo {
                src: p.src().into(),
                dst: p.dst().into(),
                len: p.total_len(),
                dscp: p.dscp(),
                ecn: p.ecn(),
                dont_frag: p.dont_frag(),
                v6: false,
            })
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(pkt)?;
            Ok(InnerInfo {
                src: p.src().into(),
                dst: p.dst().into(),
                len: p.total_len(),
                dscp: p.dscp(),
                ecn: p.ecn(),
                dont_frag: true,
                v6: true,
            })
        }
        _ => Err(WireError::Malformed { what: "ip version" }),
    }
}

/// Encrypts a batch of IP packets with one outbound SA. `verdicts[i]` tells what happened to
/// `frames[i]`; `verdicts` must be at least as long as `frames`.
pub fn encrypt_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
    sa: &mut OutboundSa,
    frames: &mut [Frame<B>],
    verdicts: &mut [Verdict],
) {
    for (f, v) in frames.iter_mut().zip(verdicts.iter_mut()) {
        *v = match encap(sa, f) {
            Ok(()) => Verdict::Pass,
            Err(r) => Verdict::Drop(sa.counters.drops.count(r)),
        };
    }
}

/// The last outbound lookup, reused while consecutive packets share their addresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct LookupCache(Option<(IpAddr, IpAddr, Option<usize>)>);

impl LookupCache {
    /// The remembered result for (`src`, `dst`), if that was the last lookup.
    #[inline]
    pub fn get(&self, src: IpAddr, dst: IpAddr) -> Option<Option<usize>> {
        match self.0 {
            Some((s, d, idx)) if s == src && d == dst => Some(idx),
            _ => None,
        }
    }

    /// Remembers a lookup.
    #[inline]
    pub fn set(&mut self, src: IpAddr, dst: IpAddr, idx: Option<usize>) {
        self.0 = Some((src, dst, idx));
    }
}

impl SaDb {
    /// Encrypts a batch of IP packets, each with the first outbound SA whose selectors match
    /// it (consecutive packets of one flow reuse the previous lookup).
    pub fn encrypt_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        frames: &mut [Frame<B>],
        verdicts: &mut [Verdict],
    ) {
        let mut cache = LookupCache::default();
        for (f, v) in frames.iter_mut().zip(verdicts.iter_mut()) {
            *v = self.encrypt_one(f, &mut cache);
        }
    }

    /// Encrypts one IP packet with the outbound SA its addresses select; drops are counted.
    #[inline]
    pub fn encrypt_one<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        f: &mut Frame<B>,
        cache: &mut LookupCache,
    ) -> Verdict {
        let info = match inner_info(f.data()) {
            Ok(i) => i,
            Err(_) => return Verdict::Drop(self.drops.count(DropReason::Malformed)),
        };
        let idx = match cache.0 {
            Some((s, d, idx)) if s == info.src && d == info.dst => idx,
            _ => {
                let idx = self.outbound_lookup(info.src, info.dst);
                cache.0 = Some((info.src, info.dst, idx));
                idx
            }
        };
        match idx {
            Some(i) => self.encrypt_at(i, f, &info),
            None => Verdict::Drop(self.drops.count(DropReason::NoPolicy)),
        }
    }

    /// Encrypts one IP packet, described by `info`, with the outbound SA at `index`; drops are
    /// counted, events collected.
    #[inline]
    pub fn encrypt_at<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        index: usize,
        f: &mut Frame<B>,
        info: &InnerInfo,
    ) -> Verdict {
        let Some(sa) = self.outbound_mut(index) else {
            return Verdict::Drop(self.drops.count(DropReason::NoPolicy));
        };
        let v = match encap_parsed(sa, f, info) {
            Ok(()) => Verdict::Pass,
            Err(r) => Verdict::Drop(sa.counters.drops.count(r)),
        };
        if sa.life.pending != 0 {
            // Rare: collect through a local list, then hand the events over.
            let mut got = arrayvec::ArrayVec::<crate::sa::SaEvent, 3>::new();
            sa.take_events(|e| got.push(e));
            self.events.extend(got);
        }
        v
    }
}

/// Encapsulates one IP packet in place.
#[inline]
pub fn encap<B: AsRef<[u8]> + AsMut<[u8]>>(
    sa: &mut OutboundSa,
    f: &mut Frame<B>,
) -> Result<(), DropReason> {
    let info = inner_info(f.data()).map_err(|_| DropReason::Malformed)?;
    encap_parsed(sa, f, &info)
}

/// Encapsulates one IP packet whose header `info` describes (from [`inner_info`]).
#[inline]
fn encap_parsed<B: AsRef<[u8]> + AsMut<[u8]>>(
    sa: &mut OutboundSa,
    f: &mut Frame<B>,
    info: &InnerInfo,
) -> Result<(), DropReason> {
    if sa.life.hard {
        return Err(DropReason::Expired);
    }
    let Some(seq) = sa.next_seq() else {
        if !sa.exhausted {
            sa.exhausted = true;
            sa.life.pending |= crate::sa::event::EV_SEQ;
        }
        return Err(DropReason::SeqExhausted);
    };
    if !f.set_len(info.len) {
        return Err(DropReason::Malformed);
    }
    let plain_len = match sa.cfg.mode {
        Mode::Tunnel => tunnel(sa, f, info, seq)?,
        Mode::Transport => transport(sa, f, info, seq)?,
    };
    sa.seq = seq;
    sa.counters.packets += 1;
    sa.counters.bytes += plain_len as u64;
    if sa.cfg.lifetime.is_limited() {
        sa.life.check(&sa.cfg.lifetime, &sa.counters);
    }
    Ok(())
}

/// The bytes ESP adds in front of the payload (header and IV) and behind it (ICV) with `sa`'s
/// suite.
#[inline]
fn framing(sa: &OutboundSa) -> (usize, usize) {
    (usize::from(sa.framing.prefix), usize::from(sa.framing.icv))
}

/// Writes SPI and sequence number at `esp_at`, the trailer at `ct_end - trailer`, and seals
/// `buf[esp_at..ct_end + icv]` (IV and ICV written by the suite).
#[inline]
#[allow(clippy::too_many_arguments)]
fn seal(
    sa: &OutboundSa,
    buf: &mut [u8],
    esp_at: usize,
    ct_end: usize,
    icv: usize,
    trailer: usize,
    next_header: u8,
    seq: u64,
) -> Result<(), DropReason> {
    emit_trailer(&mut buf[ct_end - trailer..ct_end], next_header);
    buf[esp_at..esp_at + 4].copy_from_slice(&sa.cfg.spi.to_be_bytes());
    buf[esp_at + 4..esp_at + 8].copy_from_slice(&(seq as u32).to_be_bytes());
    sa.cipher
        .seal(&sa.salt, &mut buf[esp_at..ct_end + icv], seq, sa.cfg.esn)
        .map_err(|_| DropReason::TooBig)
}

#[inline]
fn tunnel<B: AsRef<[u8]> + AsMut<[u8]>>(
    sa: &OutboundSa,
    f: &mut Frame<B>,
    info: &InnerInfo,
    seq: u64,
) -> Result<usize, DropReason> {
    let inner_len = info.len;
    let (prefix, icv) = framing(sa);
    let trailer = pad_len(inner_len, usize::from(sa.cfg.pad_align)) + TRAILER_LEN;
    let outer_v6 = sa.cfg.local.is_ipv6();
    let ip_len = if outer_v6 { IPV6_LEN } else { IPV4_LEN };
    let udp_len = if sa.cfg.encap.is_some() { UDP_LEN } else { 0 };
    let front = ip_len + udp_len + prefix;
    let esp_len = prefix + inner_len + trailer + icv;
    let ip_payload = udp_len + esp_len;
    if f.headroom() < front
        || f.tailroom() < trailer + icv
        || ip_payload + if outer_v6 { 0 } else { IPV4_LEN } > usize::from(u16::MAX)
    {
        return Err(DropReason::TooBig);
    }
    let (buf, start, end) = f.raw_mut();
    let esp_at = start - prefix;
    let ct_end = end + trailer;
    let nh = if info.v6 { proto::IPV6 } else { proto::IPV4 };
    seal(sa, buf, esp_at, ct_end, icv, trailer, nh, seq)?;
    let ip_at = start - front;
    let outer_proto = if udp_len != 0 { proto::UDP } else { proto::ESP };
    if let Some(e) = sa.cfg.encap {
        UdpRepr {
            src_port: e.src_port,
            dst_port: e.dst_port,
        }
        .emit(
            &mut buf[ip_at + ip_len..ct_end + icv],
            esp_len,
            sa.cfg.local,
            sa.cfg.remote,
            outer_v6,
        );
    }
    emit_outer(sa, &mut buf[ip_at..], outer_proto, ip_payload, info, seq);
    f.set_range(ip_at, ct_end + icv);
    Ok(inner_len)
}

#[inline]
fn emit_outer(
    sa: &OutboundSa,
    buf: &mut [u8],
    protocol: u8,
    payload_len: usize,
    info: &InnerInfo,
    seq: u64,
) {
    let ecn = super::ecn::encap(info.ecn);
    match (sa.cfg.local, sa.cfg.remote) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl: OUTER_TTL,
            dscp: info.dscp,
            ecn,
            ident: seq as u16,
            dont_frag: info.dont_frag,
        }
        .emit(buf),
        (IpAddr::V6(src), IpAddr::V6(dst)) => Ipv6Repr {
            src,
            dst,
            next_header: protocol,
            payload_len,
            hop_limit: OUTER_TTL,
            dscp: info.dscp,
            ecn,
            flow_label: sa.cfg.spi & 0xf_ffff,
        }
        .emit(buf),
        _ => unreachable!("SaConfig::validate keeps both outer addresses in one family"),
    }
}

fn transport<B: AsRef<[u8]> + AsMut<[u8]>>(
    sa: &OutboundSa,
    f: &mut Frame<B>,
    info: &InnerInfo,
    seq: u64,
) -> Result<usize, DropReason> {
    // The IP header (and, for IPv6, the extension headers that stay in front) keeps its place
    // at the front; ESP (and UDP) go between it and the protected payload.
    let (hdr_len, nh, nh_at) = if info.v6 {
        let p = Ipv6Packet::new_checked(f.data()).map_err(|_| DropReason::Malformed)?;
        let w = p.esp_transport_point().map_err(|_| DropReason::Malformed)?;
        (w.offset, w.next_header, w.next_header_at)
    } else {
        let p = Ipv4Packet::new_checked(f.data()).map_err(|_| DropReason::Malformed)?;
        // The header is rewritten and its checksum computed afresh below: a header whose
        // checksum is wrong would leave with a right one, so it is dropped here instead.
        if !p.verify_checksum() {
            return Err(DropReason::Malformed);
        }
        if p.is_fragment() {
            return Err(DropReason::Fragment);
        }
        (p.header_len(), p.protocol(), 9)
    };
    let payload_len = info.len - hdr_len;
    let (prefix, icv) = framing(sa);
    let trailer = pad_len(payload_len, usize::from(sa.cfg.pad_align)) + TRAILER_LEN;
    let udp_len = if sa.cfg.encap.is_some() { UDP_LEN } else { 0 };
    let front = udp_len + prefix;
    let esp_len = prefix + payload_len + trailer + icv;
    let new_total = hdr_len + udp_len + esp_len;
    let len_field = if info.v6 {
        new_total - IPV6_LEN
    } else {
        new_total
    };
    if f.headroom() < front || f.tailroom() < trailer + icv || len_field > usize::from(u16::MAX) {
        return Err(DropReason::TooBig);
    }
    let (buf, start, end) = f.raw_mut();
    let new_start = start - front;
    buf.copy_within(start..start + hdr_len, new_start);
    let esp_at = new_start + hdr_len + udp_len;
    let ct_end = end + trailer;
    seal(sa, buf, esp_at, ct_end, icv, trailer, nh, seq)?;
    let outer_proto = if udp_len != 0 { proto::UDP } else { proto::ESP };
    buf[new_start + nh_at] = outer_proto;
    if info.v6 {
        let mut p = Ipv6Packet::new_checked(&mut buf[new_start..ct_end + icv])
            .map_err(|_| DropReason::Malformed)?;
        p.set_payload_len(len_field as u16);
    } else {
        let mut p = Ipv4Packet::new_checked(&mut buf[new_start..ct_end + icv])
            .map_err(|_| DropReason::Malformed)?;
        p.set_total_len(len_field as u16);
        p.fill_checksum();
    }
    if let Some(e) = sa.cfg.encap {
        UdpRepr {
            src_port: e.src_port,
            dst_port: e.dst_port,
        }
        .emit(
            &mut buf[new_start + hdr_len..ct_end + icv],
            esp_len,
            info.src,
            info.dst,
            info.v6,
        );
    }
    f.set_range(new_start, ct_end + icv);
    Ok(payload_len)
}
