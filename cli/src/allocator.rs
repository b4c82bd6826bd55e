//! Allocator settings for Burn's CPU backend.
//!
//! The flex backend allocates and frees one large buffer per tensor operation. glibc's malloc
//! serves buffers above 128 KiB with `mmap` and returns them on `free`, so every operation
//! page-faults its output in again: a third of the run time went to the kernel. Keeping freed
//! memory in the heap makes the toy sampler about 1.5x faster (see book/src/benchmarks.md).

/// Serves buffers up to 32 MiB (glibc's maximum) from the heap and never trims it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only changes glibc's tuning parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        if std::env::var_os("AVDM_NO_MMAP").is_some() {
            libc::mallopt(libc::M_MMAP_MAX, 0);
        }
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// Other platforms' allocators keep freed memory already.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
