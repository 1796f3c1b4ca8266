//! The `herald` binary: everything lives in the library; this only hands
//! the command line to it and turns its outcome into an exit code.

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
