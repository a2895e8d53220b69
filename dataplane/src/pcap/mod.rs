//! Capture files: a strict reader of pcap (both byte orders, micro- or nanosecond timestamps)
//! and pcapng (one section, interfaces of one link type), and a pcap writer, for the link types
//! `esp-pcap` handles — Ethernet (1) and raw IP (101, 228 IPv4, 229 IPv6).

pub mod tool;

use std::io::{self, Read, Write};

/// Ethernet II.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IPv4 or IPv6 (version from the first nibble).
pub const LINKTYPE_RAW: u32 = 101;
/// Raw IPv4.
pub const LINKTYPE_IPV4: u32 = 228;
/// Raw IPv6.
pub const LINKTYPE_IPV6: u32 = 229;

/// Largest record accepted (larger ones are refused rather than allocated).
pub const MAX_RECORD: u32 = 256 * 1024;

/// Why a capture file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// Neither pcap nor pcapng.
    #[error("not a pcap or pcapng file (magic 0x{0:08x})")]
    BadMagic(u32),
    /// A structure of the file is broken.
    #[error("malformed capture: {0}")]
    Malformed(&'static str),
    /// The file ends inside the global header.
    #[error("truncated file header")]
    TruncatedHeader,
    /// The file ends inside a record.
    #[error("record {index}: truncated (file ends inside it)")]
    TruncatedRecord {
        /// 0-based record number.
        index: u64,
    },
    /// A record claims more bytes than allowed.
    #[error("record {index}: captured length {len} exceeds {MAX_RECORD} bytes")]
    RecordTooLarge {
        /// 0-based record number.
        index: u64,
        /// Claimed length.
        len: u32,
    },
    /// A link type this tool does not handle.
    #[error("link type {0} is not supported: expected Ethernet (1) or raw IP (101, 228, 229)")]
    UnsupportedLinkType(u32),
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Seconds.
    pub ts_sec: u32,
    /// Microseconds or nanoseconds, as the file says.
    pub ts_frac: u32,
    /// Original length on the wire.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

/// File-level facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Link type (FCS bits masked off).
    pub linktype: u32,
    /// Timestamps in nanoseconds rather than microseconds.
    pub nanos: bool,
    /// Snapshot length.
    pub snaplen: u32,
}

/// Reads records from a pcap stream.
pub struct Reader<R> {
    r: R,
    swap: bool,
    /// The file header (for pcapng: the first interface's link type, microsecond timestamps).
    pub header: Header,
    index: u64,
    /// pcapng: per interface, its link type and timestamp units per second.
    ng: Option<Vec<(u32, u64)>>,
    /// pcapng: a block read ahead while looking for the first interface.
    pending: Option<(u32, Vec<u8>)>,
}

/// The pcapng Section Header Block type (also its magic).
const NG_SHB: u32 = 0x0a0d_0d0a;
/// Interface Description Block.
const NG_IDB: u32 = 1;
/// Simple Packet Block.
const NG_SPB: u32 = 3;
/// Enhanced Packet Block.
const NG_EPB: u32 = 6;
/// Largest pcapng block accepted.
const NG_MAX_BLOCK: u32 = MAX_RECORD + 4096;

fn u32_at(b: &[u8], at: usize, swap: bool) -> u32 {
    let v = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    if swap {
        v.swap_bytes()
    } else {
        v
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> Reader<R> {
    /// Reads and checks the global header.
    pub fn new(mut r: R) -> Result<Self, PcapError> {
        let mut h = [0u8; 24];
        let n = read_full(&mut r, &mut h)?;
        if n < 4 {
            return Err(PcapError::TruncatedHeader);
        }
        let magic = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let (swap, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            NG_SHB => return Self::new_ng(r, &h[..n]),
            m => return Err(PcapError::BadMagic(m)),
        };
        if n < 24 {
            return Err(PcapError::TruncatedHeader);
        }
        let linktype = u32_at(&h, 20, swap) & 0x0fff_ffff;
        if !matches!(
            linktype,
            LINKTYPE_ETHERNET | LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6
        ) {
            return Err(PcapError::UnsupportedLinkType(linktype));
        }
        Ok(Reader {
            r,
            swap,
            header: Header {
                linktype,
                nanos,
                snaplen: u32_at(&h, 16, swap),
            },
            index: 0,
            ng: None,
            pending: None,
        })
    }

    /// pcapng: checks the section header (whose first bytes are in `start`) and reads blocks
    /// up to the first interface, whose link type becomes the file's.
    fn new_ng(r: R, start: &[u8]) -> Result<Self, PcapError> {
        if start.len() < 12 {
            return Err(PcapError::TruncatedHeader);
        }
        let bom = u32::from_le_bytes(start[8..12].try_into().expect("4 bytes"));
        let swap = match bom {
            0x1a2b_3c4d => false,
            0x4d3c_2b1a => true,
            _ => return Err(PcapError::Malformed("pcapng byte-order magic")),
        };
        let shb_len = u32_at(start, 4, swap);
        if !(28..=NG_MAX_BLOCK).contains(&shb_len) || shb_len % 4 != 0 {
            return Err(PcapError::Malformed("pcapng section header length"));
        }
        let mut me = Reader {
            r,
            swap,
            header: Header {
                linktype: 0,
                nanos: false,
                snaplen: MAX_RECORD,
            },
            index: 0,
            ng: Some(Vec::new()),
            pending: None,
        };
        // The rest of the section header block (`start` holds its first bytes).
        let mut rest = vec![0u8; shb_len as usize - start.len().min(shb_len as usize)];
        if read_full(&mut me.r, &mut rest)? < rest.len() {
            return Err(PcapError::TruncatedHeader);
        }
        loop {
            let Some((ty, body)) = me.ng_block()? else {
                return Err(PcapError::Malformed("pcapng file without an interface"));
            };
            if ty == NG_IDB {
                me.ng_interface(&body)?;
                let (l, _) = me.ng.as_ref().expect("pcapng")[0];
                if !matches!(
                    l,
                    LINKTYPE_ETHERNET | LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6
                ) {
                    return Err(PcapError::UnsupportedLinkType(l));
                }
                me.header.linktype = l;
                return Ok(me);
            }
            if ty == NG_EPB || ty == NG_SPB {
                return Err(PcapError::Malformed("pcapng packet before any interface"));
            }
        }
    }

    /// Reads one pcapng block: its type and body (without the length fields).
    fn ng_block(&mut self) -> Result<Option<(u32, Vec<u8>)>, PcapError> {
        if let Some(b) = self.pending.take() {
            return Ok(Some(b));
        }
        let mut h = [0u8; 8];
        match read_full(&mut self.r, &mut h)? {
            0 => return Ok(None),
            8 => {}
            _ => return Err(PcapError::TruncatedRecord { index: self.index }),
        }
        let ty = u32_at(&h, 0, self.swap);
        let len = u32_at(&h, 4, self.swap);
        if ty == NG_SHB {
            return Err(PcapError::Malformed("pcapng files with several sections"));
        }
        if len < 12 || len % 4 != 0 || len > NG_MAX_BLOCK {
            return Err(PcapError::Malformed("pcapng block length"));
        }
        let mut body = vec![0u8; len as usize - 8];
        if read_full(&mut self.r, &mut body)? < body.len() {
            return Err(PcapError::TruncatedRecord { index: self.index });
        }
        body.truncate(len as usize - 12);
        Ok(Some((ty, body)))
    }

    /// Records an interface: its link type and timestamp resolution (option if_tsresol).
    fn ng_interface(&mut self, body: &[u8]) -> Result<(), PcapError> {
        if body.len() < 8 {
            return Err(PcapError::Malformed("pcapng interface block"));
        }
        let linktype = u32::from(if self.swap {
            u16::from_be_bytes([body[0], body[1]])
        } else {
            u16::from_le_bytes([body[0], body[1]])
        });
        let mut units: u64 = 1_000_000;
        let mut opts = &body[8..];
        while opts.len() >= 4 {
            let rd = |b: &[u8]| {
                if self.swap {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                }
            };
            let (code, olen) = (rd(&opts[0..2]), usize::from(rd(&opts[2..4])));
            if code == 0 || 4 + olen > opts.len() {
                break;
            }
            if code == 9 && olen >= 1 {
                let v = opts[4];
                units = if v & 0x80 == 0 {
                    10u64.checked_pow(u32::from(v)).unwrap_or(0)
                } else {
                    1u64.checked_shl(u32::from(v & 0x7f)).unwrap_or(0)
                };
                if units == 0 {
                    return Err(PcapError::Malformed("pcapng timestamp resolution"));
                }
            }
            opts = &opts[(4 + olen).next_multiple_of(4).min(opts.len())..];
        }
        self.ng.as_mut().expect("pcapng").push((linktype, units));
        Ok(())
    }

    /// pcapng: the next packet, converted to a pcap-style record (microsecond timestamps).
    fn next_ng(&mut self, rec: &mut Record) -> Result<bool, PcapError> {
        loop {
            let Some((ty, body)) = self.ng_block()? else {
                return Ok(false);
            };
            let rd = |at: usize| u32_at(&body, at, self.swap);
            match ty {
                NG_IDB => self.ng_interface(&body)?,
                NG_EPB if body.len() >= 20 => {
                    let iface = rd(0) as usize;
                    let ifs = self.ng.as_ref().expect("pcapng");
                    let Some(&(l, units)) = ifs.get(iface) else {
                        return Err(PcapError::Malformed(
                            "pcapng packet of an unknown interface",
                        ));
                    };
                    if l != self.header.linktype {
                        return Err(PcapError::Malformed(
                            "pcapng interfaces with different link types",
                        ));
                    }
                    let ts = (u64::from(rd(4)) << 32) | u64::from(rd(8));
                    let (caplen, orig) = (rd(12), rd(16));
                    if caplen > MAX_RECORD || 20 + caplen as usize > body.len() {
                        return Err(PcapError::RecordTooLarge {
                            index: self.index,
                            len: caplen,
                        });
                    }
                    rec.ts_sec = (ts / units) as u32;
                    rec.ts_frac = ((ts % units) * 1_000_000 / units) as u32;
                    rec.orig_len = orig;
                    rec.data.clear();
                    rec.data.extend_from_slice(&body[20..20 + caplen as usize]);
                    self.index += 1;
                    return Ok(true);
                }
                NG_SPB if body.len() >= 4 => {
                    let orig = rd(0);
                    let caplen = (body.len() - 4).min(orig as usize);
                    rec.ts_sec = 0;
                    rec.ts_frac = 0;
                    rec.orig_len = orig;
                    rec.data.clear();
                    rec.data.extend_from_slice(&body[4..4 + caplen]);
                    self.index += 1;
                    return Ok(true);
                }
                NG_EPB | NG_SPB => return Err(PcapError::Malformed("pcapng packet block")),
                _ => {}
            }
        }
    }

    /// Reads the next record into `rec` (reusing its buffer); `false` at the end of the file.
    pub fn next_into(&mut self, rec: &mut Record) -> Result<bool, PcapError> {
        if self.ng.is_some() {
            return self.next_ng(rec);
        }
        let mut h = [0u8; 16];
        match read_full(&mut self.r, &mut h)? {
            0 => return Ok(false),
            16 => {}
            _ => return Err(PcapError::TruncatedRecord { index: self.index }),
        }
        let incl = u32_at(&h, 8, self.swap);
        if incl > MAX_RECORD {
            return Err(PcapError::RecordTooLarge {
                index: self.index,
                len: incl,
            });
        }
        rec.ts_sec = u32_at(&h, 0, self.swap);
        rec.ts_frac = u32_at(&h, 4, self.swap);
        rec.orig_len = u32_at(&h, 12, self.swap);
        rec.data.resize(incl as usize, 0);
        if read_full(&mut self.r, &mut rec.data)? < incl as usize {
            return Err(PcapError::TruncatedRecord { index: self.index });
        }
        self.index += 1;
        Ok(true)
    }
}

/// Writes a little-endian pcap stream.
pub struct Writer<W> {
    w: W,
}

impl<W: Write> Writer<W> {
    /// Writes the global header.
    pub fn new(mut w: W, linktype: u32, nanos: bool) -> io::Result<Self> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&magic.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&MAX_RECORD.to_le_bytes());
        h.extend_from_slice(&linktype.to_le_bytes());
        w.write_all(&h)?;
        Ok(Writer { w })
    }

    /// Writes one record with `data` as its bytes (the original length becomes `data.len()`).
    pub fn write(&mut self, ts_sec: u32, ts_frac: u32, data: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ts_sec.to_le_bytes());
        h[4..8].copy_from_slice(&ts_frac.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(big_endian: bool, nanos: bool) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), LINKTYPE_RAW, nanos).unwrap();
        w.write(1, 2, &[0x45, 0, 0, 20]).unwrap();
        w.write(3, 4, &[]).unwrap();
        let le = w.finish().unwrap();
        if !big_endian {
            return le;
        }
        // Byte-swap every 32-bit header field (the 16-bit version fields swap as a pair).
        let mut be = le.clone();
        let swap4 = |b: &mut [u8], at: usize| b[at..at + 4].reverse();
        for at in [0, 8, 12, 16, 20] {
            swap4(&mut be, at);
        }
        be[4..6].reverse();
        be[6..8].reverse();
        let mut at = 24;
        while at < be.len() {
            let len = u32::from_le_bytes(le[at + 8..at + 12].try_into().unwrap()) as usize;
            for f in 0..4 {
                swap4(&mut be, at + 4 * f);
            }
            at += 16 + len;
        }
        be
    }

    #[test]
    fn reads_both_byte_orders_and_precisions() {
        for be in [false, true] {
            for ns in [false, true] {
                let f = sample(be, ns);
                let mut r = Reader::new(&f[..]).unwrap();
                assert_eq!(r.header.linktype, LINKTYPE_RAW);
                assert_eq!(r.header.nanos, ns);
                let mut rec = Record::default();
                assert!(r.next_into(&mut rec).unwrap());
                assert_eq!(
                    (rec.ts_sec, rec.ts_frac, &rec.data[..]),
                    (1, 2, &[0x45, 0, 0, 20][..])
                );
                assert!(r.next_into(&mut rec).unwrap());
                assert!(rec.data.is_empty());
                assert!(!r.next_into(&mut rec).unwrap());
            }
        }
    }

    /// A pcapng file: section header, an Ethernet interface with nanosecond timestamps, one
    /// enhanced packet block, a custom block to skip, one simple packet block.
    fn pcapng() -> Vec<u8> {
        let mut f = Vec::new();
        let block = |f: &mut Vec<u8>, ty: u32, body: &[u8]| {
            let len = (12 + body.len()).next_multiple_of(4) as u32;
            f.extend_from_slice(&ty.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(body);
            f.resize(f.len() + (len as usize - 12 - body.len()), 0);
            f.extend_from_slice(&len.to_le_bytes());
        };
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        block(&mut f, NG_SHB, &shb);
        let mut idb = vec![1, 0, 0, 0, 0, 0, 4, 0];
        idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        block(&mut f, NG_IDB, &idb);
        let ts: u64 = 1_700_000_000_123_456_789;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&3u32.to_le_bytes());
        epb.extend_from_slice(&60u32.to_le_bytes());
        epb.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
        block(&mut f, NG_EPB, &epb);
        block(&mut f, 0x0bad, &[1, 2, 3, 4]);
        let mut spb = 2u32.to_le_bytes().to_vec();
        spb.extend_from_slice(&[0x11, 0x22]);
        block(&mut f, NG_SPB, &spb);
        f
    }

    #[test]
    fn reads_pcapng() {
        let f = pcapng();
        let mut r = Reader::new(&f[..]).unwrap();
        assert_eq!(r.header.linktype, LINKTYPE_ETHERNET);
        let mut rec = Record::default();
        assert!(r.next_into(&mut rec).unwrap());
        assert_eq!(
            (rec.ts_sec, rec.ts_frac, rec.orig_len),
            (1_700_000_000, 123_456, 60)
        );
        assert_eq!(rec.data, [0xaa, 0xbb, 0xcc]);
        assert!(r.next_into(&mut rec).unwrap());
        assert_eq!(rec.data, [0x11, 0x22]);
        assert!(!r.next_into(&mut rec).unwrap());
        // Every truncation is an error or a clean end, never a panic.
        for cut in 0..f.len() {
            if let Ok(mut r) = Reader::new(&f[..cut]) {
                while let Ok(true) = r.next_into(&mut rec) {}
            }
        }
    }

    #[test]
    fn refuses_bad_files_clearly() {
        assert!(matches!(
            Reader::new(&[0u8; 3][..]),
            Err(PcapError::TruncatedHeader)
        ));
        assert!(matches!(
            Reader::new(&[0xd4, 0xc3, 0xb2, 0xa1, 0, 0][..]),
            Err(PcapError::TruncatedHeader)
        ));
        assert!(Reader::new(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0][..]).is_err());
        assert!(matches!(
            Reader::new(&[0x0b, 0x0d, 0x0d, 0x0a, 0, 0][..]),
            Err(PcapError::BadMagic(_))
        ));
        let mut f = sample(false, false);
        f[0] = 0x0a;
        assert!(matches!(Reader::new(&f[..]), Err(PcapError::BadMagic(_))));
        let mut f = sample(false, false);
        f[20] = 105;
        let e = Reader::new(&f[..]).err().unwrap();
        assert!(e.to_string().contains("link type 105"), "{e}");
        let f = sample(false, false);
        let mut r = Reader::new(&f[..f.len() - 1]).unwrap();
        let mut rec = Record::default();
        assert!(r.next_into(&mut rec).unwrap());
        assert!(matches!(
            r.next_into(&mut rec),
            Err(PcapError::TruncatedRecord { index: 1 })
        ));
        let mut f = sample(false, false);
        f[24 + 8..24 + 12].copy_from_slice(&(MAX_RECORD + 1).to_le_bytes());
        let mut r = Reader::new(&f[..]).unwrap();
        assert!(matches!(
            r.next_into(&mut rec),
            Err(PcapError::RecordTooLarge { index: 0, .. })
        ));
    }
}
