//! Every way a delivery can end, sorted into delivered / temporary /
//! permanent. Exhaustive on purpose: a new error kind must be placed here
//! by a person, and anything unknown is temporary (retrying is safe;
//! bouncing by mistake is not).

use crate::store::Outcome;

/// A reply code's verdict (RFC 5321 §4.2.1).
pub fn reply_outcome(code: u16) -> Outcome {
    match code {
        200..=299 => Outcome::Delivered,
        500..=599 => Outcome::Permanent,
        _ => Outcome::Temporary,
    }
}

/// A mail-send error's verdict.
pub fn error_outcome(error: &mail_send::Error) -> Outcome {
    use mail_send::Error as E;
    match error {
        E::UnexpectedReply(reply) => reply_outcome(reply.code()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let cases = [(250, Outcome::Delivered), (251, Outcome::Delivered), (421, Outcome::Temporary), (451, Outcome::Temporary), (452, Outcome::Temporary), (550, Outcome::Permanent), (554, Outcome::Permanent), (354, Outcome::Temporary), (0, Outcome::Temporary)];
        for (code, want) in cases {
            assert_eq!(reply_outcome(code), want, "{code}");
        }
    }

    #[test]
    fn errors() {
        let reply = |code| mail_send::Error::UnexpectedReply(smtp_proto::Response::new(code, 5, 1, 1, "x".to_string()));
        let cases = [
            (reply(550), Outcome::Permanent),
            (reply(451), Outcome::Temporary),
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
