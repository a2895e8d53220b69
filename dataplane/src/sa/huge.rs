//! Transparent huge pages for the large SA tables: with a million tunnels the SAs span
//! gigabytes, and with 4 KiB pages nearly every packet's SA also misses the TLB. The kernel
//! backs memory with 2 MiB pages where asked (`MADV_HUGEPAGE`; the default
//! `transparent_hugepage=madvise` mode honours it), which makes those page walks rare.

/// Smallest table worth asking for: below a few huge pages the TLB covers it anyway.
const MIN_BYTES: usize = 8 << 20;
const HUGE: usize = 2 << 20;

/// Asks the kernel to back the 2 MiB-aligned part of `v`'s buffer with huge pages, if the
/// buffer is large enough for it to matter. Advice only: failures are ignored.
pub fn advise<T>(v: &Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < MIN_BYTES {
        return;
    }
    let start = (v.as_ptr() as usize).next_multiple_of(HUGE);
    let end = (v.as_ptr() as usize + bytes) & !(HUGE - 1);
    if end <= start {
        return;
    }
    // SAFETY: madvise with MADV_HUGEPAGE changes no contents and no mapping, only how the
    // kernel backs it; the range lies inside `v`'s live allocation.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}
