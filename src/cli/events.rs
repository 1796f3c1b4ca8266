//! `herald events [--follow]` and `herald webhooks [test NAME]`: the event
//! log and the webhook endpoints, through the running relay's admin API.

use super::api::{ApiArgs, time};
use crate::admin::client::{AdminClient, ClientError};
use crate::events::{Event, EventKind};
use clap::{Args, Subcommand};
use std::time::Duration;

#[derive(Args)]
pub struct EventsArgs {
    /// Start after this cursor (from a previous run's last line, or `--json`).
    #[arg(long)]
    after: Option<String>,
    /// Only these types (`message.failed`, `message.*`, …); repeatable.
    #[arg(long = "type")]
    types: Vec<String>,
    /// Only events of this customer domain (From domain or identity).
    #[arg(long)]
    domain: Option<String>,
    /// Only events of this message (relay id or Message-ID).
    #[arg(long)]
    message: Option<String>,
    #[arg(long)]
    recipient: Option<String>,
    /// Keep printing new events as they happen (Ctrl-C to stop).
    #[arg(long, short)]
    follow: bool,
    /// One JSON object per line, as the API gives it.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs `herald events`.
pub fn run(args: EventsArgs) -> Result<(), String> {
    let client = args.api.client()?;
    let mut after = args.after.clone().unwrap_or_default();
    loop {
        let page = client.events(&query(&args, &after)).map_err(|e: ClientError| e.to_string())?.value;
        for e in &page.events {
            if args.json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                println!("{}", line(e));
            }
        }
        let more = page.cursor != after;
        after = page.cursor;
        if !more || page.events.is_empty() {
            if !args.follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn query(args: &EventsArgs, after: &str) -> String {
    let mut q = format!("limit=1000&after={after}");
    let mut add = |k: &str, v: &str| q.push_str(&format!("&{k}={}", encode(v)));
    if !args.types.is_empty() {
        add("type", &args.types.join(","));
    }
    for (k, v) in [("domain", &args.domain), ("message", &args.message), ("recipient", &args.recipient)] {
        if let Some(v) = v {
            add(k, v);
        }
    }
    q
}

fn encode(v: &str) -> String {
    v.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._*,".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// One line per event: time, type, message, recipient or domain, and
/// what happened.
pub fn line(e: &Event) -> String {
    let kind = e.kind.map(EventKind::as_str).unwrap_or("?");
    let subject = e.recipient.clone().or_else(|| e.domain.clone()).unwrap_or_else(|| e.recipients.join(","));
    let what = match (&e.reply, e.reasons.first()) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => String::new(),
    };
    let reference = e.reference.as_deref().map(|r| format!(" ref={r}")).unwrap_or_default();
    let class = e.bounce.as_ref().map(|b| format!(" ({}, {})", b.class.as_str(), if b.hard { "hard" } else { "soft" })).unwrap_or_default();
    format!("{} {:<19} {} {} {}{class}{reference} [{}]", time(e.time_ms), kind, e.message.as_deref().unwrap_or("-"), subject, what, e.id)
}

#[derive(Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    action: Option<WebhooksAction>,
    #[command(flatten)]
    api: ApiArgs,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// Send a `webhook.test` event to the endpoint now.
    Test { name: String },
}

/// Runs `herald webhooks [test NAME]`.
pub fn run_webhooks(args: WebhooksArgs) -> Result<(), String> {
    let client: AdminClient = args.api.client()?;
    match args.action {
        None => {
            let answer = client.webhooks().map_err(|e| e.to_string())?;
            super::api::print(args.json, &answer, |list| {
                if list.is_empty() {
                    return "no [[webhook]] in relay.toml\n".into();
                }
                let header = ["NAME", "URL", "PENDING", "DELIVERED", "FAILED", "LAST SUCCESS", "LAST ERROR"];
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|w| {
                        vec![
                            format!("{}{}", w.name, if w.disabled { " (disabled: 410)" } else { "" }),
                            w.url.clone(),
                            w.pending.to_string(),
                            w.delivered.to_string(),
                            w.failed_attempts.to_string(),
                            w.last_success_ms.map(time).unwrap_or_else(|| "-".into()),
                            w.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                super::api::table(&header, &rows)
            });
            Ok(())
        }
        Some(WebhooksAction::Test { name }) => {
            let answer = client.test_webhook(&name).map_err(|e| e.to_string())?;
            super::api::print(args.json, &answer, |t| match (&t.status, &t.error) {
                (Some(code), _) => format!("{}: the endpoint answered HTTP {code}\n", t.name),
                (None, Some(e)) => format!("{}: {e}\n", t.name),
                (None, None) => format!("{}: no answer\n", t.name),
            });
            Ok(())
        }
    }
}
