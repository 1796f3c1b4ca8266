//! The `herald` binary: everything lives in the library; this only hands
//! the command line to it and turns its outcome into an exit code.
//!
//! The allocator is mimalloc. Every message is a 40 KB body copied a few
//! times between threads (session, commit thread, signer, delivery); with
//! glibc's malloc, 8 % of the relay's CPU under load was malloc and free
//! (`perf`: `_int_malloc`, `malloc_consolidate`, `unlink_chunk`, frees in
//! another thread's arena). With mimalloc, three interleaved pairs at ten
//! sessions: CPU per message −3 to −7 %, end to end +3.5 to +9.6 %;
//! resident memory with 10 000 messages queued 61–69 MiB (peak 80–81)
//! against glibc's 54–58 (peak 88–90), `scripts/bench.sh`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// mimalloc's options, set before `main` (and so before its first
/// allocation, when it reads them): commit arena memory as it is used,
/// not a whole arena up front, and give freed pages back at once instead
/// of 10 ms later. With its defaults, 10 000 queued messages kept
/// 150 MiB resident.
extern "C" fn mi_options() {
    // Positions in mimalloc v2's `mi_option_e` (include/mimalloc.h), the
    // version libmimalloc-sys builds unless its `v3` feature is on; the
    // crate names neither option. Check them when mimalloc is upgraded.
    const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
    const PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: mimalloc's option setters take any value, at any time.
    unsafe {
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(PURGE_DELAY, 0);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static MI_OPTIONS: extern "C" fn() = mi_options;

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
