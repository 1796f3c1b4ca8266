//! What a recipient asks the sink to do, read from the local part of its
//! address: `tempfail-N…`, `reject…`, `datafail…`, `drop…`, `slow-MS…`,
//! `tempdata…`, `flaky-N…`, `dropend…`; anything else is accepted.

/// `tempfail` without a number fails this many times.
const DEFAULT_TEMPFAILS: u32 = 1;
/// `slow` without a number waits this many milliseconds.
const DEFAULT_SLOW_MS: u64 = 1000;

/// What a recipient asks the sink to do, from its local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// RCPT accepted; the end of DATA answered as the outcome says.
    Accept(DataOutcome),
    /// `tempfail-N`: the first N RCPTs of this exact address get 451.
    TempFail(u32),
    /// `reject`: RCPT gets 550.
    Reject,
    /// `flaky-N`: the first N transactions carrying this exact address are
    /// cut in the middle of DATA (nothing recorded); later ones accepted.
    Flaky(u32),
}

/// The answer to the end of DATA, ordered from best to worst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataOutcome {
    #[default]
    Accept,
    /// `slow-MS`: accept after MS milliseconds.
    Slow(u64),
    /// `tempdata`: 452.
    TempData,
    /// `datafail`: 554.
    DataFail,
    /// `dropend`: read the whole message, then close without a reply and
    /// without keeping it (the client cannot know it was not taken).
    DropAtEnd,
    /// `drop`: close the connection in the middle of DATA.
    Drop,
}

/// Reads the behaviour from an address's local part (case-insensitive
/// prefixes; a missing number means 1 tempfail or 1000 ms).
pub fn behaviour(address: &str) -> Behaviour {
    let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
    if let Some(rest) = strip_prefix_ci(local, "tempfail") {
        return Behaviour::TempFail(number(rest).and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_TEMPFAILS));
    }
    if strip_prefix_ci(local, "reject").is_some() {
        return Behaviour::Reject;
    }
    if let Some(rest) = strip_prefix_ci(local, "flaky") {
        return Behaviour::Flaky(number(rest).and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_TEMPFAILS));
    }
    let outcome = if strip_prefix_ci(local, "datafail").is_some() {
        DataOutcome::DataFail
    } else if strip_prefix_ci(local, "dropend").is_some() {
        DataOutcome::DropAtEnd
    } else if strip_prefix_ci(local, "drop").is_some() {
        DataOutcome::Drop
    } else if strip_prefix_ci(local, "tempdata").is_some() {
        DataOutcome::TempData
    } else if let Some(rest) = strip_prefix_ci(local, "slow") {
        DataOutcome::Slow(number(rest).unwrap_or(DEFAULT_SLOW_MS))
    } else {
        DataOutcome::Accept
    };
    Behaviour::Accept(outcome)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// The digits after a leading `-`: `-25-abc` → 25.
fn number(s: &str) -> Option<u64> {
    let s = s.strip_prefix('-')?;
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_from_local_part() {
        use DataOutcome as D;
        let cases = [
            ("payer@sink.example", Behaviour::Accept(D::Accept)),
            ("tempfail-2-abc@x", Behaviour::TempFail(2)),
            ("TempFail-10@x", Behaviour::TempFail(10)),
            ("tempfail@x", Behaviour::TempFail(1)),
            ("reject-me@x", Behaviour::Reject),
            ("datafail@x", Behaviour::Accept(D::DataFail)),
            ("drop-1@x", Behaviour::Accept(D::Drop)),
            ("slow-250-a@x", Behaviour::Accept(D::Slow(250))),
            ("slow@x", Behaviour::Accept(D::Slow(1000))),
            ("tempdata@x", Behaviour::Accept(D::TempData)),
            ("flaky-3-a@x", Behaviour::Flaky(3)),
            ("flaky@x", Behaviour::Flaky(1)),
            ("dropend-1@x", Behaviour::Accept(D::DropAtEnd)),
            ("x@reject.example", Behaviour::Accept(D::Accept)),
            ("", Behaviour::Accept(D::Accept)),
            ("é@x", Behaviour::Accept(D::Accept)),
        ];
        for (address, want) in cases {
            assert_eq!(behaviour(address), want, "{address}");
        }
    }
}
