//! Inner fragmentation (RFC 4459 §3): an IPv4 packet without DF that does not fit the tunnel
//! is cut into IPv4 fragments *before* encryption, each of which becomes its own ESP packet,
//! as Linux and strongSwan do. The far gateway decrypts and forwards the fragments and the
//! destination host reassembles them; no gateway ever reassembles.
//!
//! The packet may itself be a fragment (a host with a 1500-byte MTU sends a large datagram as
//! 1500-byte fragments that no longer fit the tunnel): offsets and MF carry over, so the pieces
//! are fragments of the original datagram. The first piece keeps the packet's header and all
//! its options, in place in the packet's own frame; the others get the fixed header plus the
//! options whose copied flag is set (RFC 791 §3.1) and go into frames the pipeline asks its
//! [`FramePool`] for. Nothing allocates.

use super::Port;
use crate::frame::Frame;
use crate::wire::checksum;
use crate::wire::ipv4::MIN_HEADER_LEN;
use std::net::IpAddr;

/// Most pieces one packet is cut into. A 64 KiB datagram through a 1,400-byte tunnel needs 48;
/// a smaller tunnel MTU drops larger datagrams as `frag_limit`.
pub const MAX_PIECES: usize = 64;

/// Extra frames for packets the pipeline turns into several (sans-IO: the AF_XDP worker takes
/// them from its UMEM free list, tests and benchmarks from memory).
pub trait FramePool<B> {
    /// A free frame: the window starts after the headroom and spans the rest of the buffer.
    /// `None` when no frame is free.
    fn take(&mut self) -> Option<Frame<B>>;
    /// Transmits `f` (a frame from [`FramePool::take`] holding a complete Ethernet frame) on
    /// `port`, after the batch the pipeline is processing.
    fn send(&mut self, f: Frame<B>, port: Port);
    /// Holds `f` (a frame from [`FramePool::take`] holding a complete Ethernet frame whose
    /// destination MAC is still zero) until the link-layer address of `hop` on `port` is known,
    /// as [`super::Out::Wait`] does for the frames of the batch.
    fn wait(&mut self, f: Frame<B>, port: Port, hop: IpAddr);
    /// Returns an unused frame from [`FramePool::take`].
    fn give_back(&mut self, f: Frame<B>);
}

/// A pool without frames: the pipeline drops what it would have to split.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFrames;

impl<B> FramePool<B> for NoFrames {
    fn take(&mut self) -> Option<Frame<B>> {
        None
    }

    fn send(&mut self, _: Frame<B>, _: Port) {}

    fn wait(&mut self, _: Frame<B>, _: Port, _: IpAddr) {}

    fn give_back(&mut self, _: Frame<B>) {}
}

/// Why a packet cannot be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragError {
    /// Not an IPv4 packet with a consistent header.
    Malformed,
    /// More than [`MAX_PIECES`] pieces, or no room for 8 bytes of data in a piece.
    Limit,
}

/// How one IPv4 packet is cut: the same for every piece but the first (which keeps all options)
/// and the last (which takes the remainder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Header length of the packet (and of the first piece).
    pub first_hl: usize,
    /// Header length of the other pieces: fixed header plus copied options, padded to 4.
    pub rest_hl: usize,
    /// Data bytes in the first piece (a multiple of 8).
    pub first_data: usize,
    /// Data bytes in each following piece but the last (a multiple of 8).
    pub rest_data: usize,
    /// Data bytes of the packet.
    pub data: usize,
    /// Number of pieces.
    pub count: usize,
}

/// The copied options of an IPv4 header's option area (`opts`) written to `out`; returns
/// their length (not yet padded). A malformed option ends the list.
fn copied_options(opts: &[u8], out: &mut [u8]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if kind & 0x80 != 0 {
                    out[n..n + len].copy_from_slice(&opts[i..i + len]);
                    n += len;
                }
                i += len;
            }
        }
    }
    n
}

/// Plans cutting the IPv4 packet `pkt` into pieces of at most `max` bytes.
pub fn plan(pkt: &[u8], max: usize) -> Result<Plan, FragError> {
    if pkt.len() < MIN_HEADER_LEN || pkt[0] >> 4 != 4 {
        return Err(FragError::Malformed);
    }
    let hl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if hl < MIN_HEADER_LEN || total < hl || total > pkt.len() {
        return Err(FragError::Malformed);
    }
    let mut scratch = [0u8; 40];
    let rest_hl =
        (MIN_HEADER_LEN + copied_options(&pkt[MIN_HEADER_LEN..hl], &mut scratch) + 3) & !3;
    let first_data = max.saturating_sub(hl) & !7;
    let rest_data = max.saturating_sub(rest_hl) & !7;
    if first_data == 0 || rest_data == 0 {
        return Err(FragError::Limit);
    }
    let data = total - hl;
    if frag_fields(pkt).0 + data > 0xffff {
        return Err(FragError::Malformed);
    }
    let count = if data <= first_data {
        1
    } else {
        1 + (data - first_data).div_ceil(rest_data)
    };
    if count > MAX_PIECES {
        return Err(FragError::Limit);
    }
    Ok(Plan {
        first_hl: hl,
        rest_hl,
        first_data,
        rest_data,
        data,
        count,
    })
}

/// Fragment offset (in bytes) and MF of the packet `pkt`.
fn frag_fields(pkt: &[u8]) -> (usize, bool, u16) {
    let w = u16::from_be_bytes([pkt[6], pkt[7]]);
    (usize::from(w & 0x1fff) * 8, w & 0x2000 != 0, w & 0xc000)
}

/// Writes the flags and offset word and the total length of piece `k` into `hdr`, and its
/// header checksum.
fn finish_header(
    hdr: &mut [u8],
    hl: usize,
    len: usize,
    pkt_frag: (usize, bool, u16),
    offset: usize,
    last: bool,
) {
    let (base, mf, flags) = pkt_frag;
    let off = (base + offset) / 8;
    let more = if last { mf } else { true };
    // Flags other than MF (DF is clear here, the reserved bit is kept as it came).
    let w = (flags & 0x8000) | if more { 0x2000 } else { 0 } | (off as u16 & 0x1fff);
    hdr[0] = 0x40 | (hl / 4) as u8;
    hdr[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    hdr[6..8].copy_from_slice(&w.to_be_bytes());
    hdr[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&hdr[..hl]);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes piece `k` (1 ≤ k < `plan.count`) of `pkt`, as planned by [`plan`], into `out`;
/// returns its length, or `None` if `out` is too short.
pub fn write_piece(pkt: &[u8], plan: &Plan, k: usize, out: &mut [u8]) -> Option<usize> {
    debug_assert!(k >= 1 && k < plan.count);
    let start = plan.first_data + (k - 1) * plan.rest_data;
    let n = plan.rest_data.min(plan.data - start);
    let len = plan.rest_hl + n;
    if out.len() < len {
        return None;
    }
    out[..MIN_HEADER_LEN].copy_from_slice(&pkt[..MIN_HEADER_LEN]);
    let o = copied_options(
        &pkt[MIN_HEADER_LEN..plan.first_hl],
        &mut out[MIN_HEADER_LEN..plan.rest_hl],
    );
    out[MIN_HEADER_LEN + o..plan.rest_hl].fill(0);
    let from = plan.first_hl + start;
    out[plan.rest_hl..len].copy_from_slice(&pkt[from..from + n]);
    finish_header(
        out,
        plan.rest_hl,
        len,
        frag_fields(pkt),
        start,
        k + 1 == plan.count,
    );
    Some(len)
}

/// Turns `pkt` into its first piece in place (after the other pieces are written: their data
/// stays in the buffer but leaves the packet); returns the piece's length.
pub fn cut_first(pkt: &mut [u8], plan: &Plan) -> usize {
    let len = plan.first_hl + plan.first_data.min(plan.data);
    let fields = frag_fields(pkt);
    finish_header(pkt, plan.first_hl, len, fields, 0, plan.count == 1);
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Repr;
    use crate::wire::{proto, Ipv4Packet};

    fn datagram(payload_len: usize, options: &[u8]) -> Vec<u8> {
        let hl = 20 + options.len();
        let mut b = vec![0u8; hl + payload_len];
        Ipv4Repr {
            src: "192.168.10.2".parse().unwrap(),
            dst: "10.20.30.40".parse().unwrap(),
            protocol: proto::UDP,
            payload_len: 0,
            ttl: 63,
            dscp: 10,
            ecn: 1,
            ident: 0xbeef,
            dont_frag: false,
        }
        .emit(&mut b);
        b[0] = 0x40 | (hl / 4) as u8;
        b[2..4].copy_from_slice(&((hl + payload_len) as u16).to_be_bytes());
        b[20..hl].copy_from_slice(options);
        for (i, x) in b[hl..].iter_mut().enumerate() {
            *x = (i * 31 + 7) as u8;
        }
        Ipv4Packet::new_checked(&mut b[..]).unwrap().fill_checksum();
        b
    }

    /// Every piece of `pkt` at `max`, the first one last written (as the pipeline does).
    fn split(pkt: &[u8], max: usize) -> Vec<Vec<u8>> {
        let plan = plan(pkt, max).unwrap();
        let mut pieces = vec![];
        for k in 1..plan.count {
            let mut out = vec![0u8; 2048];
            let n = write_piece(pkt, &plan, k, &mut out).unwrap();
            out.truncate(n);
            pieces.push(out);
        }
        let mut first = pkt.to_vec();
        let n = cut_first(&mut first, &plan);
        first.truncate(n);
        pieces.insert(0, first);
        for p in &pieces {
            let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
            assert!(p.len() <= max, "piece of {} bytes > {max}", p.len());
            assert_eq!(ip.total_len(), p.len());
            assert!(ip.verify_checksum());
            assert!(!ip.dont_frag());
            assert_eq!(ip.ident(), 0xbeef);
            assert_eq!((ip.ttl(), ip.dscp(), ip.ecn()), (63, 10, 1));
            assert_eq!(ip.src(), Ipv4Packet::new_checked(pkt).unwrap().src());
        }
        pieces
    }

    /// Reassembles fragments (any order) into (offset of the first byte, data, final MF).
    fn reassemble(pieces: &[Vec<u8>]) -> (usize, Vec<u8>, bool) {
        let mut v: Vec<_> = pieces
            .iter()
            .map(|p| {
                let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
                (ip.frag_offset(), ip.payload().to_vec(), ip.more_frags())
            })
            .collect();
        v.sort_by_key(|x| x.0);
        let start = v[0].0;
        let mut data = vec![];
        for (off, d, _) in &v {
            assert_eq!(*off, start + data.len(), "pieces are contiguous");
            data.extend_from_slice(d);
        }
        let mf = v.last().unwrap().2;
        for (_, _, mf) in &v[..v.len() - 1] {
            assert!(mf, "every piece but the last has MF");
        }
        (start, data, mf)
    }

    #[test]
    fn a_plain_datagram_reassembles_to_itself() {
        let pkt = datagram(2980, &[]);
        let pieces = split(&pkt, 1394);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].len(), 20 + 1368);
        let (off, data, mf) = reassemble(&pieces);
        assert_eq!((off, mf), (0, false));
        assert_eq!(data, pkt[20..]);
        for p in &pieces[..2] {
            assert_eq!(
                (p.len() - 20) % 8,
                0,
                "non-last pieces carry multiples of 8"
            );
        }
    }

    #[test]
    fn fragments_are_refragmented_keeping_offset_and_mf() {
        // A 3,000-byte datagram sent as 1500-byte fragments: 1480 + 1480 + 40 bytes of data.
        let whole = datagram(2980, &[]);
        let host = split(&whole, 1500);
        assert_eq!(host.len(), 3);
        let mut through_tunnel = vec![];
        for f in &host {
            if f.len() > 1394 {
                through_tunnel.extend(split(f, 1394));
            } else {
                through_tunnel.push(f.clone());
            }
        }
        assert_eq!(through_tunnel.len(), 5);
        let (off, data, mf) = reassemble(&through_tunnel);
        assert_eq!((off, mf), (0, false));
        assert_eq!(data, whole[20..]);
        // The middle host fragment (offset 1480, MF set) splits into two with MF on both.
        let mid = split(&host[1], 1394);
        let (off, data, mf) = reassemble(&mid);
        assert_eq!((off, mf), (1480, true));
        assert_eq!(data, host[1][20..]);
    }

    #[test]
    fn only_copied_options_go_into_later_pieces() {
        // Security (130, copied, 11 bytes), NOP, record route (7, not copied, 7 bytes), EOL.
        let mut opts = vec![130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 7, 7, 4, 0, 0, 0, 0];
        opts.resize(20, 0);
        let pkt = datagram(3000, &opts);
        let pieces = split(&pkt, 1400);
        // The first piece keeps every option.
        assert_eq!(
            Ipv4Packet::new_checked(&pieces[0][..])
                .unwrap()
                .header_len(),
            40
        );
        assert_eq!(pieces[0][20..40], pkt[20..40]);
        for p in &pieces[1..] {
            let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
            assert_eq!(ip.header_len(), 32, "20 + 11 copied bytes, padded to 4");
            assert_eq!(&p[20..31], &opts[..11]);
            assert_eq!(p[31], 0);
        }
        let (off, data, mf) = reassemble(&pieces);
        assert_eq!((off, mf), (0, false));
        assert_eq!(data, pkt[40..]);
    }

    proptest::proptest! {
        #[test]
        // (Up to 9,000 bytes in pieces of at least 264: never more than 64 pieces.)
        fn any_packet_reassembles_at_any_tunnel_mtu(
            payload_len in 1usize..9000,
            max in 300usize..1500,
            security in proptest::bool::ANY,
            offset_blocks in 0usize..100,
            more in proptest::bool::ANY,
        ) {
            let opts: &[u8] = if security {
                &[130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
            } else {
                &[]
            };
            let mut pkt = datagram(payload_len, opts);
            // Maybe already a fragment of a larger datagram.
            let w = (offset_blocks as u16) | if more { 0x2000 } else { 0 };
            pkt[6..8].copy_from_slice(&w.to_be_bytes());
            Ipv4Packet::new_checked(&mut pkt[..]).unwrap().fill_checksum();
            let hl = 20 + opts.len();
            proptest::prop_assume!(pkt.len() > max);
            let pieces = split(&pkt, max);
            let (off, data, mf) = reassemble(&pieces);
            proptest::prop_assert_eq!(off, offset_blocks * 8);
            proptest::prop_assert_eq!(mf, more);
            proptest::prop_assert_eq!(&data[..], &pkt[hl..]);
        }
    }

    #[test]
    fn limits_and_garbage() {
        assert_eq!(plan(&[0x45, 0, 0], 1400), Err(FragError::Malformed));
        let pkt = datagram(60000, &[]);
        assert_eq!(plan(&pkt, 900), Err(FragError::Limit), "67 pieces");
        assert!(plan(&pkt, 1400).is_ok());
        assert_eq!(plan(&pkt, 27), Err(FragError::Limit), "no room for data");
        let mut short = datagram(100, &[]);
        short.truncate(60);
        assert_eq!(plan(&short, 40), Err(FragError::Malformed));
        let mut late = datagram(1000, &[]);
        late[6..8].copy_from_slice(&0x1fffu16.to_be_bytes());
        assert_eq!(
            plan(&late, 400),
            Err(FragError::Malformed),
            "past offset 65535"
        );
        let p = plan(&datagram(100, &[]), 40).unwrap();
        assert_eq!(
            write_piece(&datagram(100, &[]), &p, 1, &mut [0u8; 10]),
            None
        );
    }
}
