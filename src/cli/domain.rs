//! `herald domain add|list|show|verify|rotate|remove` and `herald dns zone`:
//! customer domains and the operator zone, through the running relay's
//! admin API (see [`super::api`] for how it is found).
//!
//! Output is for the person onboarding a customer: `add` prints the three
//! records to hand to the customer, `verify` one ✓/✗ line per record with
//! what to fix, and exits 0 when the domain is verified, 1 when a record
//! is wrong, 2 when it could not be checked (temporary DNS failure, relay
//! unreachable), so it can be scripted.

use super::Failure;
use super::api::{ApiArgs, now_ms, print, relative, table, time};
use crate::admin::client::ClientError;
use crate::admin::{AddDomainV1, CustomerRecordV1, DomainListV1, DomainV1, KeyStepV1, KeyV1, OperatorRecordV1, OverallV1, RotationV1, VerificationV1};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct DomainArgs {
    #[command(subcommand)]
    action: DomainAction,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the API's JSON answer as it came, on one line (pipe it to `jq` to format).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum DomainAction {
    /// Register a customer domain (pending) and print the three DNS records
    /// the customer must create.
    Add {
        /// The customer's domain, e.g. customer.nl.
        domain: String,
        /// DKIM selectors become <P>1 and <P>2 (default: `domains.selector_prefix`),
        /// for a customer who already uses hr1._domainkey elsewhere.
        #[arg(long, value_name = "P")]
        selector_prefix: Option<String>,
        /// Return-path host label, e.g. em4821 (default: `domains.return_path_prefix`
        /// and four random digits).
        #[arg(long, value_name = "L")]
        return_path_label: Option<String>,
    },
    /// Every registered domain and its state.
    List,
    /// One domain: its state, the customer's and the operator's records, its history.
    Show { domain: String },
    /// Check the domain's three records now. Exit code: 0 verified; 1 a
    /// record is wrong (the state may change); 2 could not check (temporary
    /// DNS failure, or the relay could not be asked): nothing changed, try again.
    Verify { domain: String },
    /// Rotate the domain's DKIM key: a new key for the idle selector, published;
    /// signing switches once it resolves through the customer's CNAME (at once
    /// with the embedded DNS server). Run again to check a rotation that waits.
    /// `--relay` rotates the relay's own key (identity.domain) the same way.
    Rotate {
        /// The customer domain (not with --relay).
        #[arg(required_unless_present = "relay", conflicts_with = "relay")]
        domain: Option<String>,
        /// Rotate the relay's own key instead.
        #[arg(long)]
        relay: bool,
    },
    /// Remove a domain and its DKIM keys; its mail is sent as the relay from then on.
    Remove { domain: String },
}

#[derive(Args)]
pub struct DnsArgs {
    #[command(subcommand)]
    action: DnsAction,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Subcommand)]
enum DnsAction {
    /// Print what the operator's zone must hold (the relay's DKIM key, and
    /// per customer domain SPF, MX and two DKIM keys) as a zone-file fragment.
    Zone,
}

/// Runs one `herald domain` command.
pub fn run(args: DomainArgs) -> Result<(), Failure> {
    // Not knowing where the relay is means nothing could be checked.
    let client = args.api.client().map_err(|message| Failure { code: 2, message })?;
    let json = args.json;
    let e = |e: ClientError| e.to_string();
    match args.action {
        DomainAction::Add {
            domain,
            selector_prefix,
            return_path_label,
        } => {
            let request = AddDomainV1 {
                domain,
                selector_prefix,
                return_path_label,
            };
            print(json, &client.add_domain(&request).map_err(e)?, added_text);
        }
        DomainAction::List => print(json, &client.domains().map_err(e)?, list_text),
        DomainAction::Show { domain } => print(json, &client.domain(&domain).map_err(e)?, show_text),
        DomainAction::Verify { domain } => {
            let answer = client.verify_domain(&domain).map_err(|err| match err {
                // The relay answered: this domain is unknown, say.
                ClientError::Api { status, .. } if (400..500).contains(&status) => Failure::from(e(err)),
                other => Failure { code: 2, message: e(other) },
            })?;
            print(json, &answer, verify_text);
            return verdict(&answer.value);
        }
        DomainAction::Rotate { domain: Some(domain), .. } => print(json, &client.rotate_domain(&domain).map_err(e)?, rotated_text),
        DomainAction::Rotate { domain: None, .. } => print(json, &client.rotate_relay().map_err(e)?, rotated_text),
        DomainAction::Remove { domain } => print(json, &client.remove_domain(&domain).map_err(e)?, removed_text),
    }
    Ok(())
}

/// Runs one `herald dns` command.
pub fn run_dns(args: DnsArgs) -> Result<(), String> {
    let client = args.api.client()?;
    match args.action {
        DnsAction::Zone => print!("{}", client.zone().map_err(|e| e.to_string())?),
    }
    Ok(())
}

fn added_text(d: &DomainV1) -> String {
    let labels: Vec<String> = d.customer_records.iter().map(|r| format!("`{}`", r.label)).collect();
    format!(
        "{domain} added as tenant {tenant} ({state}).\n\n\
         Ask the customer to create these three DNS records in the zone of {domain}:\n\n{records}\n\
         Many DNS providers add `{domain}` to the host by themselves: there, enter only {labels} as the host names.\n\
         Once the records are in place, check them with `herald domain verify {domain}`.\n\
         The operator's zone must hold this domain's records too: see `herald dns zone`.\n",
        domain = d.domain,
        tenant = d.tenant,
        state = d.state.as_str(),
        records = customer_table(&d.customer_records),
        labels = labels.join(", "),
    )
}

fn list_text(list: &DomainListV1) -> String {
    if list.domains.is_empty() {
        return "no domains registered; add one with `herald domain add DOMAIN`\n".into();
    }
    let now = now_ms();
    let header = [
        "DOMAIN",
        "TENANT",
        "STATE",
        "SINCE (UTC)",
        "SIGNS AS",
        "LAST CHECK (UTC)",
        "NEXT CHECK",
    ];
    let rows: Vec<Vec<String>> = list
        .domains
        .iter()
        .map(|d| {
            vec![
                d.domain.clone(),
                d.tenant.clone(),
                d.state.as_str().to_string(),
                time(d.state_since_ms),
                signs_as(d),
                d.last_check_ms.map_or_else(|| "never".into(), time),
                relative(d.next_check_ms, now),
            ]
        })
        .collect();
    table(&header, &rows)
}

fn show_text(d: &DomainV1) -> String {
    let now = now_ms();
    let mut out = format!("domain       {} (tenant {})\n", d.domain, d.tenant);
    out.push_str(&format!("state        {} since {}\n", d.state.as_str(), time(d.state_since_ms)));
    out.push_str(&format!("signs as     {}\n", signs_as(d)));
    let last = d.last_check_ms.map_or_else(|| "never".into(), time);
    out.push_str(&format!("checked      {last}; next check {}\n", relative(d.next_check_ms, now)));
    out.push_str(&format!(
        "\ncustomer records (in the zone of {}):\n{}",
        d.domain,
        indent(&customer_table(&d.customer_records))
    ));
    out.push_str(&format!(
        "\noperator records (see `herald dns zone`):\n{}",
        indent(&operator_table(&d.operator_records))
    ));
    if !d.keys.is_empty() {
        out.push_str(&format!("\nDKIM keys:\n{}", indent(&keys_table(&d.keys))));
    }
    if !d.key_history.is_empty() {
        out.push_str(&format!("\nkey rotation:\n{}", steps_text(&d.key_history)));
    }
    if !d.history.is_empty() {
        out.push_str("\nhistory:\n");
        for t in &d.history {
            out.push_str(&format!(
                "  {}  {} → {}  {}\n",
                time(t.at_ms),
                t.from.as_str(),
                t.to.as_str(),
                t.reason
            ));
        }
    }
    out
}

fn verify_text(v: &VerificationV1) -> String {
    let mut out = String::new();
    for r in &v.records {
        out.push_str(&format!("{} {} — {}\n", if r.ok { "✓" } else { "✗" }, r.host, r.message));
    }
    out
}

/// Ok only when the check says verified; otherwise the error the command
/// ends with (and a non-zero exit code).
fn verdict(v: &VerificationV1) -> Result<(), Failure> {
    match v.overall {
        OverallV1::Verified => {
            println!("{} is verified: its mail is signed as {}.", v.domain, v.domain);
            Ok(())
        }
        OverallV1::NotVerified => Err(Failure {
            code: 1,
            message: format!(
                "{} is not verified (state `{}`): fix the records marked ✗, then run `herald domain verify {}` again",
                v.domain,
                v.state.as_str(),
                v.domain
            ),
        }),
        OverallV1::Temporary => Err(Failure {
            code: 2,
            message: format!(
                "{} could not be checked completely because of a temporary DNS failure, so its state stays `{}`; try again later",
                v.domain,
                v.state.as_str()
            ),
        }),
    }
}

fn removed_text(d: &DomainV1) -> String {
    let mut out = format!(
        "{} removed (tenant {}), with its DKIM keys; its mail is sent as the relay from now on.\n",
        d.domain, d.tenant
    );
    out.push_str(&format!(
        "\nThe customer may delete these records:\n{}",
        indent(&customer_table(&d.customer_records))
    ));
    if !d.operator_records.is_empty() {
        out.push_str(&format!(
            "\nThe operator may delete these from the zone:\n{}",
            indent(&operator_table(&d.operator_records))
        ));
    }
    out
}

fn rotated_text(r: &RotationV1) -> String {
    let mut out = String::new();
    if let Some(step) = r.steps.last() {
        out.push_str(&steps_text(std::slice::from_ref(step)));
    }
    match (&r.publishing, r.switched) {
        (_, true) => out.push_str(&format!("{} now signs with {} (d={} s={}).\n", r.domain, r.selector, r.domain, r.selector)),
        (Some(new), false) => {
            if let Some(check) = &r.check {
                out.push_str(&format!("{} {} — {}\n", if check.ok { "✓" } else { "✗" }, check.host, check.message));
            }
            let publish = if r.embedded_dns {
                "the embedded DNS server serves it; resolvers may still hold the old record for the zone's TTL".to_string()
            } else {
                "publish the new record of `herald dns zone` at your DNS provider (the customer changes nothing)".to_string()
            };
            out.push_str(&format!(
                "{} still signs with {}; the new key {new} is not visible from the relay's resolver yet: {publish}.\n\
                 Signing switches once it is (checked in the background, or now with `herald domain rotate {}`).\n",
                r.domain, r.selector, r.domain
            ));
        }
        (None, false) => out.push_str(&format!("{} signs with {}.\n", r.domain, r.selector)),
    }
    out.push_str(&format!("\nDKIM keys:\n{}", indent(&keys_table(&r.keys))));
    out
}

fn keys_table(keys: &[KeyV1]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let when = match (k.phase.as_str(), k.at_ms) {
                ("retiring", Some(t)) => format!("published until {}", time(t)),
                (_, Some(t)) => format!("since {}", time(t)),
                (_, None) => String::new(),
            };
            vec![k.selector.clone(), k.phase.clone(), when]
        })
        .collect();
    table(&["SELECTOR", "KEY", "WHEN (UTC)"], &rows)
}

fn steps_text(steps: &[KeyStepV1]) -> String {
    steps
        .iter()
        .map(|s| format!("  {}  {:<9} {}  {}\n", time(s.at_ms), s.step, s.selector, s.detail))
        .collect()
}

fn signs_as(d: &DomainV1) -> String {
    if d.signs_as_customer {
        format!("the customer (d={} s={})", d.domain, d.selector)
    } else {
        "the relay".into()
    }
}

fn customer_table(records: &[CustomerRecordV1]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| vec![r.host.clone(), r.kind.clone(), r.value.clone()])
        .collect();
    table(&["HOST", "TYPE", "VALUE"], &rows)
}

fn operator_table(records: &[OperatorRecordV1]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| vec![r.name.clone(), r.kind.clone(), r.value.clone()])
        .collect();
    table(&["NAME", "TYPE", "VALUE"], &rows)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{CheckStatusV1, DomainStateV1, RecordCheckV1};

    fn check(host: &str, ok: bool, message: &str) -> RecordCheckV1 {
        RecordCheckV1 {
            host: host.into(),
            label: String::new(),
            expected: String::new(),
            status: if ok { CheckStatusV1::Ok } else { CheckStatusV1::Missing },
            ok,
            message: message.into(),
        }
    }

    #[test]
    fn verify_lines_and_verdict() {
        let mut v = VerificationV1 {
            domain: "customer.nl".into(),
            overall: OverallV1::NotVerified,
            state: DomainStateV1::Pending,
            records: vec![
                check("em4821.customer.nl", true, "Ok."),
                check("hr1._domainkey.customer.nl", false, "Missing: add it."),
            ],
        };
        assert_eq!(
            verify_text(&v),
            "✓ em4821.customer.nl — Ok.\n✗ hr1._domainkey.customer.nl — Missing: add it.\n"
        );
        let no = verdict(&v).unwrap_err();
        assert!(no.code == 1 && no.message.contains("fix the records marked ✗"), "{no:?}");
        v.overall = OverallV1::Temporary;
        let later = verdict(&v).unwrap_err();
        assert!(later.code == 2 && later.message.contains("temporary DNS failure"), "{later:?}");
        v.overall = OverallV1::Verified;
        assert_eq!(verdict(&v), Ok(()));
    }
}
