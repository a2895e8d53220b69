//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Adds `data` to a running one's-complement sum (not yet folded; equal to the plain sum of
/// 16-bit big-endian words modulo 0xffff, which is all the fold and the checksum depend on).
#[inline]
pub fn sum(acc: u32, data: &[u8]) -> u32 {
    // Sixteen bytes a step, in native byte order, into two accumulators: the one's-complement
    // sum of 32-bit words folds to the same 16 bits as that of 16-bit words (2^16 ≡ 1 modulo
    // 0xffff), and summing byte-swapped words gives the byte-swapped sum (RFC 1071 §2(B)), so
    // one swap at the end replaces one per word. A u64 cannot overflow: each step adds less
    // than 2^33, and packets are far shorter than 2^30 steps.
    let (mut a, mut b) = (0u64, 0u64);
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let (x, y) = c.split_at(8);
        let x = u64::from_ne_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        a += (x >> 32) + (x & 0xffff_ffff);
        b += (y >> 32) + (y & 0xffff_ffff);
    }
    let mut wide = a + b;
    let mut pairs = chunks.remainder().chunks_exact(2);
    for c in &mut pairs {
        wide += u64::from(u16::from_ne_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        wide += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    wide = (wide & 0xffff) + (wide >> 16);
    wide = (wide & 0xffff) + (wide >> 16);
    wide = (wide & 0xffff) + (wide >> 16);
    let native = wide as u16;
    // Fold the running sum to at most 17 bits, so callers can keep adding small values.
    let acc = (acc & 0xffff) + (acc >> 16);
    acc + u32::from(u16::from_be(native))
}

/// Folds a running sum to 16 bits and complements it: the value to store in a header.
#[inline]
pub fn finish(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` alone.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// Folds a running sum to 16 bits without complementing it (a nonzero sum folds to
/// 1..=0xffff, as the kernel's `csum_fold` before its final complement).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The running sum of a TCP/UDP/ICMPv6 pseudo-header: both addresses (4 or 16 bytes each, of
/// one family), the protocol and the upper-layer length (RFC 793, RFC 768, RFC 8200 §8.1).
#[inline]
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], protocol: u8, len: usize) -> u32 {
    // The upper-layer length is at most 2^16 + some for IPv4/IPv6 without jumbograms: it fits
    // a u32 with room for the additions, and RFC 8200 sums it as a 32-bit value.
    let len = len as u32;
    sum(sum(0, src), dst) + u32::from(protocol) + (len >> 16) + (len & 0xffff)
}

/// Updates checksum `old_sum` when a 16-bit word changes from `old` to `new` (RFC 1624 eqn. 3).
#[inline]
pub fn update16(old_sum: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!old_sum) + u32::from(!old) + u32::from(new);
    finish(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to 0xddf2, checksum is its complement.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            checksum(&[0x12, 0x34, 0x56]),
            checksum(&[0x12, 0x34, 0x56, 0x00])
        );
    }

    #[test]
    fn wide_sum_matches_word_by_word() {
        let data: Vec<u8> = (0..1501u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 1499, 1500, 1501] {
            let d = &data[..len];
            let mut words = 0u32;
            for c in d.chunks(2) {
                words += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            }
            assert_eq!(finish(sum(0x1234, d)), finish(0x1234 + words), "{len}");
            assert_eq!(fold(sum(0x1234, d)), fold(0x1234 + words), "{len}");
        }
        assert_eq!(finish(sum(0, &[0xff; 4096])), 0, "all ones fold to 0xffff");
    }

    #[test]
    fn incremental_matches_full() {
        let mut d = [0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01];
        let before = checksum(&d);
        let old = u16::from_be_bytes([d[8], d[9]]);
        d[8] = 0x3f;
        let new = u16::from_be_bytes([d[8], d[9]]);
        assert_eq!(update16(before, old, new), checksum(&d));
    }
}
