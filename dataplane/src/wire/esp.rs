//! The ESP header (RFC 4303 §2) and trailer.

use super::{be32, need, put32, WireError};

/// SPI plus sequence number.
pub const HEADER_LEN: usize = 8;
/// Pad length plus next header.
pub const TRAILER_LEN: usize = 2;

/// A checked view of an ESP packet: SPI, sequence number and the protected payload
/// (IV || ciphertext || ICV). Invariant: at least the 8-byte header is present.
#[derive(Debug, Clone, Copy)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Checks that the header is present. SPI 0 is reserved (RFC 4303 §2.1) and rejected;
    /// SPIs 1–255 are reserved by IANA but may appear in manual keying, so they pass.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("esp header", b, HEADER_LEN)?;
        if be32(b, 0) == 0 {
            return Err(WireError::Malformed { what: "esp spi 0" });
        }
        Ok(EspPacket { buf })
    }

    /// Security parameters index.
    pub fn spi(&self) -> u32 {
        be32(self.buf.as_ref(), 0)
    }

    /// Low 32 bits of the sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    /// IV || ciphertext || ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, spi: u32) {
        put32(self.buf.as_mut(), 0, spi);
    }

    /// Sets the low 32 bits of the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        put32(self.buf.as_mut(), 4, seq);
    }
}

/// The decrypted ESP trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspTrailer {
    /// Length of the payload data before the padding.
    pub payload_len: usize,
    /// Protocol of the payload data.
    pub next_header: u8,
}

/// Why a decrypted trailer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrailerError {
    /// Too short to hold pad length and next header, or the pad length exceeds the data.
    #[error("esp trailer truncated")]
    Truncated,
    /// Padding bytes are not 1, 2, 3, … (RFC 4303 §2.4).
    #[error("esp padding is not 1, 2, 3, ...")]
    BadPadding,
}

/// Bytes of padding needed so that payload, padding and trailer end on a multiple of `align`
/// (a power of two, at least 4: RFC 4303 §2.4 asks for 4; AES-GCM runs faster on whole
/// 16-byte blocks).
#[inline]
pub fn pad_len(payload_len: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two() && align >= 4);
    (payload_len + TRAILER_LEN).wrapping_neg() & (align - 1)
}

const PAD_BYTES: [u8; 255] = {
    let mut t = [0u8; 255];
    let mut i = 0;
    while i < 255 {
        t[i] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// Writes padding 1, 2, 3, … then pad length and next header into `buf`, which must be
/// exactly `pad + 2` bytes long.
#[inline]
pub fn emit_trailer(buf: &mut [u8], next_header: u8) {
    let pad = buf.len() - TRAILER_LEN;
    buf[..pad].copy_from_slice(&PAD_BYTES[..pad]);
    buf[pad] = pad as u8;
    buf[pad + 1] = next_header;
}

/// Parses and checks the trailer at the end of a decrypted payload.
#[inline]
pub fn parse_trailer(plain: &[u8]) -> Result<EspTrailer, TrailerError> {
    let n = plain.len();
    if n < TRAILER_LEN {
        return Err(TrailerError::Truncated);
    }
    let pad = usize::from(plain[n - 2]);
    let next_header = plain[n - 1];
    if pad + TRAILER_LEN > n {
        return Err(TrailerError::Truncated);
    }
    let payload_len = n - TRAILER_LEN - pad;
    let padding = &plain[payload_len..n - TRAILER_LEN];
    if padding != &PAD_BYTES[..pad] {
        return Err(TrailerError::BadPadding);
    }
    Ok(EspTrailer {
        payload_len,
        next_header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let mut b = [0u8; 12];
        let mut e = EspPacket::new_checked(&mut b[..]).map(|_| ()).unwrap_err();
        assert_eq!(e, WireError::Malformed { what: "esp spi 0" });
        b[3] = 1;
        let mut p = EspPacket::new_checked(&mut b[..]).unwrap();
        p.set_spi(0x8c77274a);
        p.set_seq(7);
        assert_eq!((p.spi(), p.seq(), p.payload().len()), (0x8c77274a, 7, 4));
        e = EspPacket::new_checked(&b[..7]).map(|_| ()).unwrap_err();
        assert!(matches!(e, WireError::Truncated { .. }));
    }

    #[test]
    fn trailer_roundtrip_for_every_alignment() {
        for (len, align) in (0..40).flat_map(|l| [(l, 4), (l, 16)]) {
            let pad = pad_len(len, align);
            assert_eq!((len + pad + 2) % align, 0);
            assert!(pad < align);
            let mut buf = vec![0xaa; len + pad + 2];
            emit_trailer(&mut buf[len..], 4);
            assert_eq!(
                parse_trailer(&buf),
                Ok(EspTrailer {
                    payload_len: len,
                    next_header: 4
                })
            );
        }
    }

    #[test]
    fn trailer_errors() {
        assert_eq!(parse_trailer(&[4]), Err(TrailerError::Truncated));
        assert_eq!(parse_trailer(&[1, 2, 3, 4]), Err(TrailerError::Truncated));
        assert_eq!(
            parse_trailer(&[9, 1, 3, 2, 4]),
            Err(TrailerError::BadPadding)
        );
        assert_eq!(
            parse_trailer(&[9, 1, 2, 2, 4]),
            Ok(EspTrailer {
                payload_len: 1,
                next_header: 4
            })
        );
        assert_eq!(
            parse_trailer(&[9, 2, 1, 2, 4]),
            Err(TrailerError::BadPadding)
        );
    }
}
