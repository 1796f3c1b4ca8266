//! The `herald` command line. Each subcommand is a thin wrapper over the
//! library; output for people by default.

use crate::clock::SystemClock;
use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod api;
mod domain;
mod events;
mod suppressions;
mod inspect;
mod queue;

#[derive(Parser)]
#[command(name = "herald", version, about = "SMTP relay that signs billing mail as the customer's own domain")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        /// Configuration file (default: ./relay.toml, else the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Hash a password read from standard input, for a [[user]] in relay.toml.
    Passwd,
    /// Inspect and act on the queue of the running relay (through its admin API).
    Queue(queue::QueueArgs),
    /// Customer domains: add, list, show, verify, remove (through the admin API).
    Domain(domain::DomainArgs),
    /// The operator's DNS: `herald dns zone` prints the records to publish.
    Dns(domain::DnsArgs),
    /// The event log: what happened to every message and domain (`--follow` to keep watching).
    Events(events::EventsArgs),
    /// The suppression list: hard-bounced addresses refused at submission.
    Suppressions(suppressions::SuppressionsArgs),
    /// Webhook endpoints: pending events, last success and error; `test NAME` sends a test event.
    Webhooks(events::WebhooksArgs),
    /// Explain a message's DKIM, SPF and DMARC as a receiver computes them.
    Inspect(inspect::InspectArgs),
    /// Load generators.
    Bench {
        #[command(subcommand)]
        action: crate::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the file and print the effective configuration.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Why a command failed, and the exit code that says so (1 unless the
/// command documents others, as `domain verify` does).
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self { code: 1, message }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("cannot start the runtime: {e}"))
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            init_logging(&config.log.level);
            runtime()?.block_on(crate::server::serve(config, Arc::new(SystemClock)))?
        }
        Command::Config { action: ConfigAction::Check { config } } => {
            let config = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
            println!("configuration ok\n\n{}", config.redacted());
        }
        Command::Passwd => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(String::from("empty password; type it on standard input").into());
            }
            println!("{}", crate::submission::hash_password(password)?);
        }
        Command::Queue(args) => queue::run(args)?,
        Command::Domain(args) => domain::run(args)?,
        Command::Dns(args) => domain::run_dns(args)?,
        Command::Inspect(args) => inspect::run(args)?,
        Command::Events(args) => events::run(args)?,
        Command::Webhooks(args) => events::run_webhooks(args)?,
        Command::Suppressions(args) => suppressions::run(args)?,
        Command::Bench { action } => {
            init_logging("warn");
            runtime()?.block_on(crate::bench::run(action))?
        }
    }
    Ok(())
}

/// Logs to stderr; `RUST_LOG` overrides the configured filter.
pub fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG").ok().and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok());
    let filter = filter.unwrap_or_else(|| tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| "info".into()));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, never into log files.
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(|| QuietStderr).try_init();
}

/// Standard error that drops what it cannot write. When stderr goes to a
/// file on a full disk, tracing-subscriber reports a failed write with
/// `eprintln!`, which panics on the same full disk: a log line must never
/// take the relay down (it restarts itself once the disk has room again).
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
