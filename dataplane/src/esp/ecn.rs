//! ECN handling at tunnel endpoints, RFC 6040 normal mode.

/// Not ECN-capable transport.
pub const NOT_ECT: u8 = 0;
/// ECN-capable transport (1).
pub const ECT1: u8 = 1;
/// ECN-capable transport (0).
pub const ECT0: u8 = 2;
/// Congestion experienced.
pub const CE: u8 = 3;

/// Outer ECN at encapsulation: normal mode copies the inner field (RFC 6040 §4.1).
#[inline]
pub fn encap(inner: u8) -> u8 {
    inner & 0x03
}

/// Inner ECN after decapsulation (RFC 6040 §4.2, Figure 4), or `None` if the packet must be
/// dropped (outer CE on a not-ECN-capable inner packet).
#[inline]
pub fn decap(inner: u8, outer: u8) -> Option<u8> {
    match (inner & 0x03, outer & 0x03) {
        (NOT_ECT, CE) => None,
        (NOT_ECT, _) => Some(NOT_ECT),
        (_, CE) => Some(CE),
        (ECT0, ECT1) => Some(ECT1),
        (i, _) => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6040_figure4() {
        // rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE
        let table = [
            (NOT_ECT, [Some(NOT_ECT), Some(NOT_ECT), Some(NOT_ECT), None]),
            (ECT0, [Some(ECT0), Some(ECT0), Some(ECT1), Some(CE)]),
            (ECT1, [Some(ECT1), Some(ECT1), Some(ECT1), Some(CE)]),
            (CE, [Some(CE), Some(CE), Some(CE), Some(CE)]),
        ];
        for (inner, row) in table {
            for (outer, want) in [NOT_ECT, ECT0, ECT1, CE].into_iter().zip(row) {
                assert_eq!(decap(inner, outer), want, "inner {inner} outer {outer}");
            }
        }
        for v in 0..4 {
            assert_eq!(encap(v), v);
        }
    }
}
