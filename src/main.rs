//! The `herald` binary: everything lives in the library; this only hands
//! the command line to it and turns its outcome into an exit code.

fn main() -> std::process::ExitCode {
    // glibc serves allocations over 128 KiB (a commit round's bodies, a
    // growing DATA buffer) with fresh mmaps, so every round faulted in and
    // zeroed new pages and unmapped them again. Keep them in the heap:
    // under load (`perf`) those faults were most of the allocator's share
    // of the CPU; throughput +8 %, resident memory with 10 000 messages
    // queued unchanged (scripts/bench.sh).
    // SAFETY: called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
    herald::cli::main()
}
