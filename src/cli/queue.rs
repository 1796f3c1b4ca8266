//! `herald queue list|summary|show|find|retry|drop`: the queue, through the
//! running relay's admin API (see [`super::api`] for how it is found).

use super::api::{ApiArgs, now_ms, print, relative, table, time};
use crate::admin::client::ClientError;
use crate::admin::{AttemptV1, MessageSearchV1, MessageStateV1, MessageV1, QueueListV1, QueueSummaryV1, RcptStatusV1};
use crate::id::MessageId;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;

#[derive(Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    action: QueueAction,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the API's JSON answer as it came, on one line (pipe it to `jq` to format).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum QueueAction {
    /// Queued messages, newest first.
    List {
        /// Show at most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
    /// Counts: messages, recipients by status, the earliest due time.
    Summary,
    /// One message (queued or finished): per recipient, status and every attempt.
    Show {
        /// The relay message id, as in the `250 2.0.0 Ok: queued as <id>` reply.
        #[arg(value_parser = parse_id)]
        id: MessageId,
    },
    /// Find queued and finished messages by relay id, Message-ID, recipient
    /// address or the billing app's reference (`X-Herald-Ref`).
    Find {
        /// The whole value to look for (any case; angle brackets optional for a Message-ID).
        text: String,
    },
    /// Make a waiting message due now.
    Retry {
        /// The relay message id, as in the `250 2.0.0 Ok: queued as <id>` reply.
        #[arg(value_parser = parse_id)]
        id: MessageId,
    },
    /// Give up on a queued message: its pending recipients fail, no DSN is sent.
    Drop {
        /// The relay message id, as in the `250 2.0.0 Ok: queued as <id>` reply.
        #[arg(value_parser = parse_id)]
        id: MessageId,
    },
}

/// Runs one `herald queue` command.
pub fn run(args: QueueArgs) -> Result<(), String> {
    let client = args.api.client()?;
    let json = args.json;
    let e = |e: ClientError| e.to_string();
    match args.action {
        QueueAction::List { limit } => print(json, &client.list(limit).map_err(e)?, list_text),
        QueueAction::Summary => print(json, &client.summary().map_err(e)?, summary_text),
        QueueAction::Show { id } => print(json, &client.message(&id).map_err(e)?, show_text),
        QueueAction::Find { text } => print(json, &client.search_messages(&text).map_err(e)?, found_text),
        QueueAction::Retry { id } => print(json, &client.retry(&id).map_err(e)?, |m| {
            format!("message {} is due now; the queue will try it shortly.\n", m.id)
        }),
        QueueAction::Drop { id } => print(json, &client.drop_message(&id).map_err(e)?, |m| {
            format!(
                "message {} dropped; its pending recipients are marked failed (no DSN sent).\n\n{}",
                m.id,
                show_text(m)
            )
        }),
    }
    Ok(())
}

fn parse_id(text: &str) -> Result<MessageId, String> {
    MessageId::parse(text.trim()).ok_or_else(|| format!("`{text}` is not a relay message id (16 characters, e.g. 01jd5x3q8k2m7n4p)"))
}

fn list_text(list: &QueueListV1) -> String {
    if list.messages.is_empty() {
        return "the queue is empty\n".into();
    }
    let now = now_ms();
    let header = ["ID", "RECEIVED (UTC)", "FROM", "RECIPIENTS", "ATTEMPTS", "NEXT ATTEMPT"];
    let rows: Vec<Vec<String>> = list
        .messages
        .iter()
        .map(|m| {
            let next = if m.in_flight {
                "in flight".to_string()
            } else {
                m.due_ms.map_or_else(|| "-".into(), |d| relative(d, now))
            };
            vec![
                m.id.clone(),
                time(m.received_ms),
                m.from_address.clone(),
                statuses(m),
                m.attempts.to_string(),
                next,
            ]
        })
        .collect();
    let mut out = table(&header, &rows);
    if list.total > list.messages.len() {
        out.push_str(&format!(
            "(newest {} of {} queued messages; see --limit)\n",
            list.messages.len(),
            list.total
        ));
    }
    out
}

fn summary_text(s: &QueueSummaryV1) -> String {
    let mut out = format!("queued messages  {}\nin flight        {}\n", s.messages, s.in_flight);
    if let Some(due) = s.oldest_due_ms {
        out.push_str(&format!("earliest due     {} ({})\n", time(due), relative(due, now_ms())));
    }
    if !s.recipients_by_status.is_empty() {
        out.push_str("recipients\n");
        for (status, n) in &s.recipients_by_status {
            out.push_str(&format!("  {status:<10} {n}\n"));
        }
    }
    out
}

fn found_text(found: &MessageSearchV1) -> String {
    if found.messages.is_empty() {
        return format!("no message has the relay id, Message-ID, recipient or reference `{}`\n", found.query);
    }
    let mut out: Vec<String> = found.messages.iter().map(show_text).collect();
    if found.truncated {
        out.push(format!("(the newest {} matches; there are more)\n", found.messages.len()));
    }
    out.join("\n")
}

fn show_text(m: &MessageV1) -> String {
    let now = now_ms();
    let mut out = format!(
        "message    {}{}\n",
        m.id,
        if m.is_dsn { " (delivery status notification)" } else { "" }
    );
    let state = match (m.state, m.in_flight, m.due_ms, m.finished_ms) {
        (MessageStateV1::Finished, _, _, Some(at)) => format!("finished {}", time(at)),
        (MessageStateV1::Finished, _, _, None) => "finished".into(),
        (MessageStateV1::Queued, true, _, _) => "queued, delivery attempt in progress".into(),
        (MessageStateV1::Queued, false, Some(due), _) => format!("queued, next attempt {} ({})", time(due), relative(due, now)),
        (MessageStateV1::Queued, false, None, _) => "queued".into(),
    };
    out.push_str(&format!("state      {state}\n"));
    let by = m.auth_user.as_deref().map_or_else(String::new, |u| format!(" by {u}"));
    out.push_str(&format!(
        "received   {}{by} from {}{}\n",
        time(m.received_ms),
        m.client_addr,
        if m.tls { " over TLS" } else { "" }
    ));
    out.push_str(&format!(
        "mail from  <{}>\nfrom       {}\nsize       {} bytes\nrounds     {}\n",
        m.mail_from, m.from_address, m.size, m.attempts
    ));
    if let Some(message_id) = &m.message_id {
        out.push_str(&format!("message-id {message_id}\n"));
    }
    if let Some(reference) = &m.reference {
        out.push_str(&format!("reference  {reference}\n"));
    }
    if let (Some(d), Some(s)) = (&m.signed_domain, &m.selector) {
        out.push_str(&format!(
            "signed as  d={d} s={s}{}\n",
            m.reason.as_deref().map_or_else(String::new, |r| format!(" ({r})"))
        ));
    }
    if let Some(envelope) = &m.envelope_from {
        out.push_str(&format!("sent as    <{envelope}>\n"));
    }
    out.push_str("recipients\n");
    for r in &m.recipients {
        out.push_str(&format!("  {}  {}\n", r.address, r.status.as_str()));
        for a in &r.attempts {
            out.push_str(&format!("    {}\n", attempt(a)));
        }
    }
    out
}

fn attempt(a: &AttemptV1) -> String {
    let host = if a.host.is_empty() {
        String::new()
    } else {
        format!("  {}", a.host)
    };
    let class = match &a.bounce {
        Some(b) => format!("\n      {} ({}, {}): {}", b.class.as_str(), if b.hard { "hard" } else { "soft" }, if a.outcome.as_str() == "permanent" { "final" } else { "will retry" }, b.description),
        None => String::new(),
    };
    format!("{}  {}{host}  {}{class}", time(a.at_ms), a.outcome.as_str(), a.reply.trim_end())
}

/// `1 deferred, 1 delivered`, worst first.
fn statuses(m: &MessageV1) -> String {
    let mut counts: BTreeMap<RcptStatusV1, usize> = BTreeMap::new();
    for r in &m.recipients {
        *counts.entry(r.status).or_default() += 1;
    }
    counts
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
