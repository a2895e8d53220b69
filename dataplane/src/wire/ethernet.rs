//! Ethernet II frames with at most one 802.1Q tag.

use super::{be16, need, put16, WireError};

/// An EtherType value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of an Ethernet II header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// A checked view of an Ethernet II frame. Invariant: the buffer holds the whole header,
/// including the 802.1Q tag when the outer EtherType says there is one.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that `buf` holds a complete Ethernet header (tag included).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        need("ethernet header", b, HEADER_LEN)?;
        if be16(b, 12) == EtherType::VLAN.0 {
            need("802.1Q header", b, TAGGED_HEADER_LEN)?;
        }
        Ok(EthernetFrame { buf })
    }

    /// Destination MAC address.
    pub fn dst(&self) -> [u8; 6] {
        self.buf.as_ref()[0..6].try_into().expect("checked length")
    }

    /// Source MAC address.
    pub fn src(&self) -> [u8; 6] {
        self.buf.as_ref()[6..12].try_into().expect("checked length")
    }

    /// The 802.1Q tag control information (PCP, DEI, VLAN ID), if the frame is tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        let b = self.buf.as_ref();
        (be16(b, 12) == EtherType::VLAN.0).then(|| be16(b, 14))
    }

    /// The EtherType of the payload (after the tag, if any).
    pub fn ethertype(&self) -> EtherType {
        let b = self.buf.as_ref();
        EtherType(be16(b, self.header_len() - 2))
    }

    /// Header length: 14, or 18 with a tag.
    pub fn header_len(&self) -> usize {
        if be16(self.buf.as_ref(), 12) == EtherType::VLAN.0 {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the payload EtherType (after the tag, if any).
    pub fn set_ethertype(&mut self, t: EtherType) {
        let at = self.header_len() - 2;
        put16(self.buf.as_mut(), at, t.0);
    }

    /// Sets the destination MAC address.
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[0..6].copy_from_slice(&mac);
    }

    /// Sets the source MAC address.
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[6..12].copy_from_slice(&mac);
    }
}

/// Fields to build an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// Optional 802.1Q tag control information.
    pub vlan_tci: Option<u16>,
    /// Payload EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header fields of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Self {
        EthernetRepr {
            dst: f.dst(),
            src: f.src(),
            vlan_tci: f.vlan_tci(),
            ethertype: f.ethertype(),
        }
    }

    /// Bytes this header occupies.
    pub fn header_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header at the start of `buf`, which must be at least `header_len()` long.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..6].copy_from_slice(&self.dst);
        buf[6..12].copy_from_slice(&self.src);
        match self.vlan_tci {
            Some(tci) => {
                put16(buf, 12, EtherType::VLAN.0);
                put16(buf, 14, tci);
                put16(buf, 16, self.ethertype.0);
            }
            None => put16(buf, 12, self.ethertype.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_and_tagged() {
        let mut f = [0u8; 20];
        let r = EthernetRepr {
            dst: [1; 6],
            src: [2; 6],
            vlan_tci: None,
            ethertype: EtherType::IPV6,
        };
        r.emit(&mut f);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.ethertype(), EtherType::IPV6);
        assert_eq!(e.payload().len(), 6);
        assert_eq!(EthernetRepr::parse(&e), r);

        let t = EthernetRepr {
            vlan_tci: Some(0x2064),
            ..r
        };
        t.emit(&mut f);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan_tci(), Some(0x2064));
        assert_eq!(e.ethertype(), EtherType::IPV6);
        assert_eq!(e.header_len(), 18);
        assert_eq!(EthernetRepr::parse(&e), t);
    }

    #[test]
    fn truncated_tag_is_rejected() {
        let mut f = [0u8; 16];
        put16(&mut f, 12, 0x8100);
        assert!(EthernetFrame::new_checked(&f[..]).is_err());
        assert!(EthernetFrame::new_checked(&f[..13]).is_err());
    }
}
