//! pcap capture files (the classic libpcap format): a strict reader and a writer for the link
//! types `esp-pcap` handles — Ethernet (1) and raw IP (101, 228 IPv4, 229 IPv6).

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
    /// Not a pcap file (pcapng is not supported).
    #[error("not a pcap file (magic 0x{0:08x}); pcapng must be converted first, e.g. `editcap -F pcap in.pcapng out.pcap`")]
    BadMagic(u32),
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
    /// The file header.
    pub header: Header,
    index: u64,
}

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
        })
    }

    /// Reads the next record into `rec` (reusing its buffer); `false` at the end of the file.
    pub fn next_into(&mut self, rec: &mut Record) -> Result<bool, PcapError> {
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
        assert!(matches!(
            Reader::new(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0][..]),
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
