//! Every way a delivery can end, sorted into delivered / temporary /
//! permanent. Exhaustive on purpose: a new error kind must be placed here
//! by a person, and anything unknown is temporary (retrying is safe;
//! bouncing by mistake is not).
//!
//! A reply is judged against the step it answers (RFC 5321 §4.3.2): only
//! the code that step expects counts as success. A 2xx or 3xx where
//! another code belongs is out of protocol order: the attempt is
//! temporary and the connection is not trusted again. In particular only
//! the `250` that answers the end of DATA ever records a recipient
//! delivered.

use crate::store::Outcome;

/// The step of an SMTP client conversation a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Greeting,
    Ehlo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Rset,
}

impl Step {
    /// Whether `code` is the success this step expects (RFC 5321 §4.3.2).
    fn expects(self, code: u16) -> bool {
        match self {
            Step::Greeting | Step::StartTls => code == 220,
            Step::Ehlo | Step::Mail | Step::EndOfData | Step::Rset => code == 250,
            // 251: "user not local; will forward" is a success too.
            Step::Rcpt => matches!(code, 250 | 251),
            Step::Data => code == 354,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Greeting => "the greeting",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::Mail => "MAIL FROM",
            Step::Rcpt => "RCPT TO",
            Step::Data => "DATA",
            Step::EndOfData => "the end of DATA",
            Step::Rset => "RSET",
        }
    }
}

/// What one reply means for the step it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The step's own success code.
    Accepted,
    /// 4xx, or 503 (bad sequence: a verdict on our session, not the mail).
    Temporary,
    /// 5xx.
    Permanent,
    /// A code that does not belong to this step (2xx/3xx where another is
    /// expected, or no valid code at all): the two sides disagree on where
    /// the conversation is. Temporary, and the connection is closed.
    OutOfOrder,
}

impl Verdict {
    /// The recipient outcome for a refusal; `Accepted` has none of its own
    /// (what it leads to depends on the steps after it).
    pub fn refusal(self) -> Outcome {
        match self {
            Verdict::Permanent => Outcome::Permanent,
            Verdict::Temporary | Verdict::OutOfOrder | Verdict::Accepted => Outcome::Temporary,
        }
    }
}

/// A reply code's verdict for `step`.
pub fn verdict(step: Step, code: u16) -> Verdict {
    if step.expects(code) {
        return Verdict::Accepted;
    }
    match code {
        // "Bad sequence of commands" says the session is confused (a
        // transaction left open, say), not that the recipient is bad.
        503 => Verdict::Temporary,
        400..=499 => Verdict::Temporary,
        500..=599 => Verdict::Permanent,
        _ => Verdict::OutOfOrder,
    }
}

/// A mail-send error's verdict while setting up a connection (greeting,
/// EHLO, STARTTLS, AUTH). Never `Delivered`: nothing was sent yet.
pub fn error_outcome(error: &mail_send::Error) -> Outcome {
    use mail_send::Error as E;
    match error {
        // The connection steps all expect 2xx: any reply that is an error
        // here is judged like a refusal of EHLO.
        E::UnexpectedReply(reply) => verdict(Step::Ehlo, reply.code()).refusal(),
        // Network, TLS and protocol trouble: the next attempt may do better.
        E::Io(_) | E::Tls(_) | E::Timeout | E::UnparseableReply | E::InvalidTLSName | E::MissingStartTls => Outcome::Temporary,
        // Smarthost credentials are an operator problem: keep the mail
        // queued until they are fixed or the lifetime ends.
        E::Auth(_) | E::AuthenticationFailed(_) | E::MissingCredentials | E::UnsupportedAuthMechanism | E::Base64(_) => Outcome::Temporary,
        // Our own envelope is broken: retrying cannot help.
        E::MissingMailFrom | E::MissingRcptTo => Outcome::Permanent,
    }
}

/// Text for the attempt history.
pub fn error_text(error: &mail_send::Error) -> String {
    match error {
        mail_send::Error::UnexpectedReply(r) | mail_send::Error::AuthenticationFailed(r) => reply_text(r),
        other => other.to_string(),
    }
}

/// `550 5.1.1 no such user` from a parsed reply.
pub fn reply_text(r: &smtp_proto::Response<String>) -> String {
    let [a, b, c] = r.esc;
    if a > 0 { format!("{} {a}.{b}.{c} {}", r.code, r.message) } else { format!("{} {}", r.code, r.message) }
}

/// The attempt text for a reply out of protocol order.
pub fn out_of_order_text(step: Step, r: &smtp_proto::Response<String>) -> String {
    format!("unexpected reply to {}: {}", step.name(), reply_text(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_judged_against_their_step() {
        use Step as S;
        use Verdict as V;
        let cases = [
            (S::Greeting, 220, V::Accepted),
            (S::Greeting, 250, V::OutOfOrder),
            (S::Greeting, 421, V::Temporary),
            (S::Greeting, 554, V::Permanent),
            (S::Ehlo, 250, V::Accepted),
            (S::Ehlo, 251, V::OutOfOrder),
            (S::StartTls, 220, V::Accepted),
            (S::StartTls, 454, V::Temporary),
            (S::Mail, 250, V::Accepted),
            (S::Mail, 354, V::OutOfOrder),
            (S::Mail, 503, V::Temporary),
            (S::Mail, 451, V::Temporary),
            (S::Mail, 550, V::Permanent),
            (S::Rcpt, 250, V::Accepted),
            (S::Rcpt, 251, V::Accepted),
            (S::Rcpt, 252, V::OutOfOrder),
            (S::Rcpt, 354, V::OutOfOrder),
            (S::Rcpt, 452, V::Temporary),
            (S::Rcpt, 550, V::Permanent),
            (S::Rcpt, 503, V::Temporary),
            (S::Data, 354, V::Accepted),
            (S::Data, 250, V::OutOfOrder),
            (S::Data, 554, V::Permanent),
            (S::EndOfData, 250, V::Accepted),
            (S::EndOfData, 251, V::OutOfOrder),
            (S::EndOfData, 354, V::OutOfOrder),
            (S::EndOfData, 452, V::Temporary),
            (S::EndOfData, 554, V::Permanent),
            (S::Rset, 250, V::Accepted),
            (S::Rset, 0, V::OutOfOrder),
            (S::Rset, 999, V::OutOfOrder),
        ];
        for (step, code, want) in cases {
            assert_eq!(verdict(step, code), want, "{step:?} {code}");
        }
    }

    #[test]
    fn no_verdict_but_success_is_delivery() {
        for v in [Verdict::Temporary, Verdict::OutOfOrder, Verdict::Accepted] {
            assert_eq!(v.refusal(), Outcome::Temporary, "{v:?}");
        }
        assert_eq!(Verdict::Permanent.refusal(), Outcome::Permanent);
    }

    #[test]
    fn errors() {
        let reply = |code| mail_send::Error::UnexpectedReply(smtp_proto::Response::new(code, 5, 1, 1, "x".to_string()));
        let cases = [
            (reply(550), Outcome::Permanent),
            (reply(451), Outcome::Temporary),
            // A 2xx where EHLO's 250 belongs (found by a hostile receiver):
            // never a delivery.
            (reply(251), Outcome::Temporary),
            (reply(250), Outcome::Temporary),
            (reply(354), Outcome::Temporary),
            (reply(503), Outcome::Temporary),
            (mail_send::Error::Timeout, Outcome::Temporary),
            (mail_send::Error::MissingStartTls, Outcome::Temporary),
            (mail_send::Error::Io(std::io::Error::other("reset")), Outcome::Temporary),
            (mail_send::Error::MissingRcptTo, Outcome::Permanent),
        ];
        for (e, want) in cases {
            assert_eq!(error_outcome(&e), want, "{e}");
        }
        assert_eq!(error_text(&reply(550)), "550 5.1.1 x");
    }
}
