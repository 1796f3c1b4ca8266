//! `herald suppressions list|show|add|remove`: the suppression list,
//! through the running relay's admin API.

use super::api::{ApiArgs, print, table, time};
use crate::admin::suppressions::{AddSuppressionV1, SuppressionListV1};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct SuppressionsArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    api: ApiArgs,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Action {
    /// Suppressed addresses (every scope, or one).
    List {
        #[arg(long)]
        scope: Option<String>,
    },
    /// One address, in every scope.
    Show { address: String },
    /// Suppress an address by hand.
    Add {
        address: String,
        /// `relay` (default) or a customer domain.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// How long; default `suppression.days`, 0 = until removed.
        #[arg(long)]
        days: Option<u64>,
    },
    /// Take an address off the list: mail to it is accepted again.
    Remove {
        address: String,
        #[arg(long)]
        scope: Option<String>,
    },
}

/// Runs one `herald suppressions` command.
pub fn run(args: SuppressionsArgs) -> Result<(), String> {
    let client = args.api.client()?;
    let e = |e: crate::admin::client::ClientError| e.to_string();
    match args.action {
        Action::List { scope } => {
            let q = scope.map(|s| format!("scope={s}")).unwrap_or_default();
            print(args.json, &client.suppressions(&q).map_err(e)?, list_text);
        }
        Action::Show { address } => print(args.json, &client.suppression(&address).map_err(e)?, list_text),
        Action::Add { address, scope, reason, days } => {
            let request = AddSuppressionV1 { address, scope, reason, days };
            print(args.json, &client.add_suppression(&request).map_err(e)?, |s| format!("{} suppressed in scope {}\n", s.address, s.scope));
        }
        Action::Remove { address, scope } => print(args.json, &client.remove_suppression(&address, scope.as_deref()).map_err(e)?, |l| {
            l.suppressions.iter().map(|s| format!("{} removed from scope {}: mail to it is accepted again\n", s.address, s.scope)).collect()
        }),
    }
    Ok(())
}

fn list_text(list: &SuppressionListV1) -> String {
    if list.suppressions.is_empty() {
        return "no suppressed addresses\n".into();
    }
    let header = ["ADDRESS", "SCOPE", "CLASS", "SINCE (UTC)", "UNTIL", "WHY"];
    let rows: Vec<Vec<String>> = list
        .suppressions
        .iter()
        .map(|s| {
            let why = match &s.reply {
                Some(r) => format!("{} ({}: {r})", s.reason, s.source),
                None => format!("{} ({})", s.reason, s.source),
            };
            vec![s.address.clone(), s.scope.clone(), s.class.as_str().into(), time(s.since_ms), s.until_ms.map(time).unwrap_or_else(|| "removed by hand".into()), why]
        })
        .collect();
    table(&header, &rows)
}
