//! `herald inspect FILE.eml|-` and `herald inspect --id RELAYID`: a
//! message's DKIM, SPF and DMARC as a receiver computes them, explained,
//! and the identity herald would choose for its From domain.
//!
//! A file is checked here, through the relay's resolver settings
//! (`[dns]`) or `--dns ip:port`; herald's own view comes from the running
//! relay's admin API (the CLI never opens the database). A stored message
//! (`--id`) is inspected by the relay itself.

use super::api::ApiArgs;
use crate::admin::types::InspectRequestV1;
use crate::dns::Dns;
use crate::id::MessageId;
use clap::Args;
use std::io::Read;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// The message file (RFC 5322, as received); `-` reads standard input.
    #[arg(required_unless_present = "id", conflicts_with = "id")]
    file: Option<PathBuf>,
    /// Inspect a stored message as herald will send it (through the admin API).
    #[arg(long, value_parser = parse_id)]
    id: Option<MessageId>,
    /// Envelope sender for SPF (MAIL FROM); default: none (the HELO name is checked).
    #[arg(long)]
    mail_from: Option<String>,
    /// The connecting IP a receiver saw, for SPF; without it SPF is not checked.
    #[arg(long)]
    ip: Option<String>,
    /// The HELO/EHLO name a receiver saw, for SPF.
    #[arg(long)]
    helo: Option<String>,
    /// Ask this DNS server (`ip:port` or `ip`) instead of the relay's `[dns]` servers.
    #[arg(long)]
    dns: Option<String>,
    /// Print the report as JSON (`InspectV1`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

fn parse_id(text: &str) -> Result<MessageId, String> {
    MessageId::parse(text).ok_or_else(|| format!("`{text}` is not a relay message id (16 characters, e.g. 01jd5x3q8k2m7n4p)"))
}

/// Runs `herald inspect`.
pub fn run(args: InspectArgs) -> Result<(), String> {
    let request = InspectRequestV1 { mail_from: args.mail_from.clone(), ip: args.ip.clone(), helo: args.helo.clone() };
    let report = match (&args.id, &args.file) {
        (Some(id), _) => args.api.client()?.inspect_stored(id, &request).map_err(|e| e.to_string())?.value,
        (None, Some(file)) => {
            let raw = read(file)?;
            let config = args.api.config()?;
            let mut dns_config = config.dns.clone();
            if let Some(server) = &args.dns {
                dns_config.nameservers = vec![server.clone()];
            }
            let runtime = super::runtime()?;
            let dns = runtime.block_on(async { Dns::from_config(&dns_config) }).map_err(|e| e.replace("dns.nameservers", "--dns"))?;
            let mut report = runtime.block_on(crate::inspect::inspect(&dns, &raw, &request, &config.server.hostname)).map_err(|e| e.to_string())?;
            if let Some(domain) = report.from_domain.clone() {
                match args.api.client().and_then(|c| c.identity(&domain).map_err(|e| e.to_string())) {
                    Ok(answer) => report.identity = Some(answer.value),
                    Err(e) => eprintln!("herald: herald's own view is not available: {e}"),
                }
            }
            report
        }
        (None, None) => return Err("give a message file (or `-` for standard input), or --id RELAYID".into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", crate::inspect::render(&report));
    }
    Ok(())
}

fn read(file: &PathBuf) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut raw).map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        raw = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    }
    Ok(raw)
}
