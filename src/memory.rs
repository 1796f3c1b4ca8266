//! Giving freed memory back to the operating system.
//!
//! The `herald` binary allocates with mimalloc, which gives freed pages
//! back itself (`src/main.rs`). What still allocates with glibc's malloc
//! (the C libraries, and the library's users: tests) is trimmed here:
//! bursts leave glibc's per-thread arenas holding freed pages, and
//! without a trim the resident size stays at the high-water mark long
//! after the burst.

/// Returns free heap memory to the OS where the allocator supports it.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only walks glibc's own arenas; it takes no
        // pointers from us and is safe to call from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Trims every `every` until `shutdown` flips.
pub async fn run(every: std::time::Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => trim(),
            _ = crate::smtpd::stopping(&mut shutdown) => return,
        }
    }
}
