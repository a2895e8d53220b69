//! ESP decapsulation: outer header checks, SPI lookup, anti-replay, ICV check and decryption
//! with the SA's suite, trailer and padding checks (only once the ICV verified: no padding
//! oracle), traffic-selector check and ECN propagation, in place.

use super::{DropReason, Verdict, ICV_LEN, IV_LEN};
use crate::crypto::AeadError;
use crate::frame::Frame;
use crate::sa::{Mode, SaDb};
use crate::wire::esp::{parse_trailer, TrailerError};
use crate::wire::udp::HEADER_LEN as UDP_LEN;
use crate::wire::{proto, EspPacket, Ipv4Packet, Ipv6Packet, UdpPacket};
use std::net::IpAddr;

/// What a successfully decapsulated packet is, for the next stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecapOutcome {
    /// SPI of the SA that opened it.
    pub spi: u32,
    /// The 64-bit sequence number.
    pub seq: u64,
    /// The SA's peer (its configured remote address).
    pub peer: IpAddr,
}

/// Where the outer headers put things, relative to the packet start.
struct Outer {
    src: IpAddr,
    dst: IpAddr,
    v6: bool,
    /// End of the IP packet (trailing link padding excluded).
    ip_end: usize,
    /// Where ESP (or the UDP header in front of it) starts: the end of the part of the header
    /// chain that transport mode keeps.
    hdr_len: usize,
    /// Offset of the next-header byte to restore in transport mode.
    nh_at: usize,
    /// Start of the ESP header.
    esp_at: usize,
    ecn: u8,
}

/// Why the outer headers end the packet's way through decryption.
#[derive(Clone, Copy)]
enum Stop {
    /// Dropped before an SA is known, not yet counted.
    Drop(DropReason),
    /// Not for this stage (IKE, keepalive, not ESP): never [`Verdict::Drop`] or `Pass`.
    Not(Verdict),
}

/// Classifies the outer headers. `Err` for packets that are not ESP or are dropped before an
/// SA is known.
#[inline]
fn outer(db: &SaDb, pkt: &[u8]) -> Result<Outer, Stop> {
    let malformed = Stop::Drop(DropReason::Malformed);
    let (src, dst, v6, ip_end, hdr_len, nh_at, protocol, ecn) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(pkt).map_err(|_| malformed)?;
            if !p.verify_checksum() {
                return Err(malformed);
            }
            if p.is_fragment() && matches!(p.protocol(), proto::ESP | proto::UDP) {
                return Err(Stop::Drop(DropReason::Fragment));
            }
            let src: IpAddr = p.src().into();
            (
                src,
                p.dst().into(),
                false,
                p.total_len(),
                p.header_len(),
                9,
                p.protocol(),
                p.ecn(),
            )
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(pkt).map_err(|_| malformed)?;
            let w = p.upper_layer().map_err(|_| malformed)?;
            if w.fragment && matches!(w.next_header, proto::ESP | proto::UDP) {
                return Err(Stop::Drop(DropReason::Fragment));
            }
            let src: IpAddr = p.src().into();
            let (total, nhat, ecn) = (p.total_len(), w.next_header_at, p.ecn());
            (
                src,
                p.dst().into(),
                true,
                total,
                w.offset,
                nhat,
                w.next_header,
                ecn,
            )
        }
        _ => return Err(malformed),
    };
    let esp_at = match protocol {
        proto::ESP => hdr_len,
        proto::UDP => {
            let u = UdpPacket::new_checked(&pkt[hdr_len..ip_end]).map_err(|_| malformed)?;
            if !db.is_nat_t_port(u.dst_port()) {
                return Err(Stop::Not(Verdict::NotEsp));
            }
            let payload = u.payload();
            if payload == [0xff] {
                return Err(Stop::Not(Verdict::Keepalive));
            }
            if payload.len() >= 4 && payload[..4] == [0, 0, 0, 0] {
                return Err(Stop::Not(Verdict::Ike));
            }
            if hdr_len + u.len() != ip_end {
                return Err(malformed);
            }
            hdr_len + UDP_LEN
        }
        _ => return Err(Stop::Not(Verdict::NotEsp)),
    };
    Ok(Outer {
        src,
        dst,
        v6,
        ip_end,
        hdr_len,
        nh_at,
        esp_at,
        ecn,
    })
}

/// Decrypts a batch of received packets (IPv4 or IPv6, starting at the IP header). On
/// [`Verdict::Pass`] the frame holds the inner packet (tunnel mode) or the restored packet
/// (transport mode). `verdicts` must be at least as long as `frames`.
pub fn decrypt_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
    db: &mut SaDb,
    frames: &mut [Frame<B>],
    verdicts: &mut [Verdict],
) {
    for (f, v) in frames.iter_mut().zip(verdicts.iter_mut()) {
        *v = match decap(db, f) {
            Ok(_) => Verdict::Pass,
            Err(v) => v,
        };
    }
}

/// Decrypts one packet in place; drops are counted (per SA when the SA is known, in
/// `db.drops` otherwise).
pub fn decap<B: AsRef<[u8]> + AsMut<[u8]>>(
    db: &mut SaDb,
    f: &mut Frame<B>,
) -> Result<DecapOutcome, Verdict> {
    let o = match outer(db, f.data()) {
        Ok(o) => o,
        Err(Stop::Drop(r)) => return Err(Verdict::Drop(db.drops.count(r))),
        Err(Stop::Not(v)) => return Err(v),
    };
    let (spi, seq_lo) = match EspPacket::new_checked(&f.data()[o.esp_at..o.ip_end]) {
        // The shortest packet of any suite (the AEADs'); the SA's suite checks its own.
        Ok(e) if e.payload().len() >= IV_LEN + 2 + ICV_LEN => (e.spi(), e.seq()),
        _ => return Err(Verdict::Drop(db.drops.count(DropReason::Malformed))),
    };
    let Some(sa) = db.inbound_mut(spi, o.dst) else {
        return Err(Verdict::Drop(db.drops.count(DropReason::UnknownSpi)));
    };
    let r =
        open_checked(sa, f, &o, spi, seq_lo).map_err(|r| Verdict::Drop(sa.counters.drops.count(r)));
    if sa.life.pending != 0 {
        // Rare: `sa` borrows `db`, so collect through a local list, then hand the events over.
        let mut got = arrayvec::ArrayVec::<crate::sa::SaEvent, 3>::new();
        sa.take_events(|e| got.push(e));
        db.events.extend(got);
    }
    r
}

#[inline]
fn open_checked<B: AsRef<[u8]> + AsMut<[u8]>>(
    sa: &mut crate::sa::InboundSa,
    f: &mut Frame<B>,
    o: &Outer,
    spi: u32,
    seq_lo: u32,
) -> Result<DecapOutcome, DropReason> {
    if sa.life.hard {
        return Err(DropReason::Expired);
    }
    let seq = sa.replay.infer(seq_lo);
    sa.replay.check(seq).map_err(|_| DropReason::Replayed)?;
    let (buf, start, _) = f.raw_mut();
    let esp_at = start + o.esp_at;
    let ip_end = start + o.ip_end;
    sa.cipher
        .open(&sa.salt, &mut buf[esp_at..ip_end], seq, sa.cfg.esn)
        .map_err(|e| match e {
            AeadError::Length => DropReason::Malformed,
            _ => DropReason::AuthFailed,
        })?;
    // Authentic: the window moves now, whatever the payload turns out to hold.
    sa.replay.update(seq).map_err(|_| DropReason::Replayed)?;
    let plain_at = esp_at + usize::from(sa.framing.prefix);
    let plain_end = ip_end - usize::from(sa.framing.icv);
    let t = parse_trailer(&buf[plain_at..plain_end]).map_err(|e| match e {
        TrailerError::BadPadding => DropReason::BadPadding,
        TrailerError::Truncated => DropReason::Malformed,
    })?;
    if t.next_header == proto::IPV6_NONXT {
        return Err(DropReason::Dummy);
    }
    let plain_len = match sa.cfg.mode {
        Mode::Tunnel => {
            let inner = &mut buf[plain_at..plain_at + t.payload_len];
            let len = tunnel_inner(sa, inner, t.next_header, o.ecn)?;
            f.set_range(plain_at, plain_at + len);
            len
        }
        Mode::Transport => {
            let (src, dst) = (o.src, o.dst);
            if !sa.cfg.remote_ts.matches(src) || !sa.cfg.local_ts.matches(dst) {
                return Err(DropReason::SelectorMismatch);
            }
            // Slide the kept header chain up against the payload, then fix it.
            let new_start = plain_at - o.hdr_len;
            buf.copy_within(start..start + o.hdr_len, new_start);
            buf[new_start + o.nh_at] = t.next_header;
            let total = o.hdr_len + t.payload_len;
            let pkt = &mut buf[new_start..new_start + total];
            if o.v6 {
                let len = (total - crate::wire::ipv6::HEADER_LEN) as u16;
                pkt[4..6].copy_from_slice(&len.to_be_bytes());
            } else {
                pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                Ipv4Packet::new_checked(&mut *pkt)
                    .map_err(|_| DropReason::Malformed)?
                    .fill_checksum();
            }
            f.set_range(new_start, new_start + total);
            t.payload_len
        }
    };
    sa.counters.packets += 1;
    sa.counters.bytes += plain_len as u64;
    if sa.cfg.lifetime.is_limited() {
        sa.life.check(&sa.cfg.lifetime, &sa.counters);
    }
    Ok(DecapOutcome {
        spi,
        seq,
        peer: sa.cfg.remote,
    })
}

/// Checks the inner packet of a tunnel-mode SA and applies RFC 6040 ECN decapsulation.
/// Returns the inner packet's length (any TFC padding after it is cut off).
#[inline]
fn tunnel_inner(
    sa: &crate::sa::InboundSa,
    inner: &mut [u8],
    next_header: u8,
    outer_ecn: u8,
) -> Result<usize, DropReason> {
    let (src, dst, len, ecn, v6) = match next_header {
        proto::IPV4 => {
            let p = Ipv4Packet::new_checked(&*inner).map_err(|_| DropReason::Malformed)?;
            (
                IpAddr::from(p.src()),
                IpAddr::from(p.dst()),
                p.total_len(),
                p.ecn(),
                false,
            )
        }
        proto::IPV6 => {
            let p = Ipv6Packet::new_checked(&*inner).map_err(|_| DropReason::Malformed)?;
            (
                IpAddr::from(p.src()),
                IpAddr::from(p.dst()),
                p.total_len(),
                p.ecn(),
                true,
            )
        }
        _ => return Err(DropReason::Malformed),
    };
    if !sa.cfg.remote_ts.matches(src) || !sa.cfg.local_ts.matches(dst) {
        return Err(DropReason::SelectorMismatch);
    }
    let new_ecn = super::ecn::decap(ecn, outer_ecn).ok_or(DropReason::EcnDrop)?;
    if new_ecn != ecn {
        if v6 {
            Ipv6Packet::new_checked(&mut *inner)
                .map_err(|_| DropReason::Malformed)?
                .set_ecn(new_ecn);
        } else {
            Ipv4Packet::new_checked(&mut *inner)
                .map_err(|_| DropReason::Malformed)?
                .set_ecn(new_ecn);
        }
    }
    Ok(len)
}
