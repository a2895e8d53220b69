//! Cache prefetch hints, with which a batch's lookups in large SA tables load in parallel.

/// Asks the CPU to start loading the cache line holding `p` (no effect where unsupported).
#[inline(always)]
pub fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the CPU to start loading the cache lines of the `bytes` bytes from `p`.
#[inline(always)]
pub fn lines(p: *const u8, bytes: usize) {
    let first = p as usize & !63;
    let end = p as usize + bytes;
    let mut a = first;
    while a < end {
        line(a as *const u8);
        a += 64;
    }
}

/// Asks the CPU to start loading `v` (its own bytes, not what it points to).
#[inline(always)]
pub fn value<T: ?Sized>(v: &T) {
    lines(v as *const T as *const u8, std::mem::size_of_val(v));
}

/// Asks the CPU to start loading the cache line of each of the fields listed, e.g.
/// `fields!(sa.seq, sa.cfg.spi)`: the fast path's fields of a struct whose layout the compiler
/// chooses (lines shared by several fields are asked for once per field, at no extra cost).
#[macro_export]
macro_rules! prefetch_fields {
    ($($f:expr),+ $(,)?) => {
        $( $crate::prefetch::line(std::ptr::addr_of!($f) as *const u8); )+
    };
}
