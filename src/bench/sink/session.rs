//! One connection to the sink: its verbs, driven by the server kit's loop
//! (`crate::smtpd`), which reads, writes, finds the end of DATA and keeps
//! the deadlines, exactly as for herald's own listeners.
//!
//! Replies are canned byte strings (sent as [`Reply::raw`]), and a
//! connection reuses its buffers, so a message costs little beyond its own
//! bytes. Scripted faults (`Stage`, `Action`) are applied here: a delay
//! through [`Verbs::pause`], a reply or a hang-up in place of the verb.

use super::{Action, Behaviour, DataOutcome, MAX_SIZE, Shared, SinkMessage, Stage, behaviour, lock};
use crate::smtpd::{Counters, End, Reply, Rules, Verbs, Wire, serve};
use smtp_proto::Request;
use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// An idle connection is closed after this long without input.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A sink serves benchmarks that may run for hours on one connection.
const LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// The kit's limits for sink sessions: generous, as a receiver's.
pub(super) fn rules(hostname: &str) -> Rules {
    Rules {
        hostname: hostname.to_string(),
        max_line_length: 4096,
        max_message_size: MAX_SIZE,
        command: IDLE_TIMEOUT,
        data_idle: IDLE_TIMEOUT,
        data_min_rate: 1,
        lifetime: LIFETIME,
        counters: Arc::new(Counters::default()),
    }
}

/// One connection, upgraded on STARTTLS.
pub(super) async fn connection(shared: Arc<Shared>, tcp: TcpStream) {
    let peer = tcp.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let rules = shared.rules.clone();
    let mut wire = Wire::new(tcp, Instant::now() + rules.lifetime, rules.command);
    match shared.fault(Stage::Greeting) {
        Some(Action::Drop) => return,
        Some(Action::Reply(line)) => wire.reply(&line_reply(line)),
        Some(Action::Delay(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            wire.reply(&Reply::raw(shared.greeting.clone()));
        }
        None => wire.reply(&Reply::raw(shared.greeting.clone())),
    }
    let mut session = Session { shared, peer, tls: false, helo: None, envelope: Envelope::default(), fault: None };
    // The sink has no shutdown of its own: a sender that never flips.
    let (_never, mut shutdown) = tokio::sync::watch::channel(false);
    match serve(&mut wire, &mut session, &rules, &mut shutdown).await {
        End::Closed => wire.close().await,
        End::Abort => {}
        End::StartTls => {
            let Some(acceptor) = session.shared.tls.clone() else { return };
            let (tcp, ends_at, write_timeout) = wire.into_parts();
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
                return;
            };
            // RFC 3207 §4.2: forget everything learnt before TLS.
            session.tls = true;
            session.helo = None;
            session.envelope.reset();
            let mut wire = Wire::new(tls, ends_at, write_timeout);
            if let End::Closed = serve(&mut wire, &mut session, &rules, &mut shutdown).await {
                wire.close().await;
            }
        }
    }
}

type Step = crate::smtpd::Step<Infallible>;

fn canned(bytes: &'static [u8]) -> Reply {
    Reply::raw(bytes)
}

/// A scripted reply line, which comes without its CRLF.
fn line_reply(line: &'static str) -> Reply {
    Reply::raw(format!("{line}\r\n").into_bytes())
}

const OK: &[u8] = b"250 2.0.0 Ok\r\n";
const SENDER_OK: &[u8] = b"250 2.1.0 Sender ok\r\n";
const RCPT_OK: &[u8] = b"250 2.1.5 Recipient ok\r\n";
const GO_AHEAD: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
const QUEUED: &[u8] = b"250 2.0.0 Message accepted\r\n";
const TEMPFAIL: &[u8] = b"451 4.3.0 try again later\r\n";
const NO_SUCH_USER: &[u8] = b"550 5.1.1 no such user\r\n";
const CONTENT_REJECTED: &[u8] = b"554 5.6.0 content rejected\r\n";
const NO_STORAGE: &[u8] = b"452 4.3.1 insufficient storage\r\n";
const BYE: &[u8] = b"221 2.0.0 Bye\r\n";
const READY: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";

/// A transaction between MAIL and the end of DATA. Its strings keep their
/// capacity from one transaction to the next.
#[derive(Default)]
struct Envelope {
    active: bool,
    mail_from: String,
    rcpts: Vec<String>,
    /// Recipients of this transaction: `rcpts[..len]`.
    len: usize,
    outcome: DataOutcome,
}

impl Envelope {
    fn begin(&mut self, from: &str) {
        self.reset();
        self.active = true;
        self.mail_from.clear();
        self.mail_from.push_str(from);
    }

    fn add(&mut self, rcpt: &str, outcome: DataOutcome) {
        match self.rcpts.get_mut(self.len) {
            Some(slot) => {
                slot.clear();
                slot.push_str(rcpt);
            }
            None => self.rcpts.push(rcpt.to_string()),
        }
        self.len += 1;
        self.outcome = self.outcome.max(outcome);
    }

    fn rcpts(&self) -> &[String] {
        &self.rcpts[..self.len]
    }

    fn reset(&mut self) {
        self.active = false;
        self.len = 0;
        self.outcome = DataOutcome::Accept;
    }
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
    helo: Option<String>,
    envelope: Envelope,
    /// The scripted fault drawn for the command being handled (stage and
    /// action), between [`Verbs::pause`] and [`Verbs::command`].
    fault: Option<(Stage, Action)>,
}

impl Verbs for Session {
    type Pending = Infallible;

    fn pause(&mut self, request: &Request<Cow<'_, str>>) -> Option<Duration> {
        let stage = stage_of(request)?;
        match self.shared.fault(stage)? {
            Action::Delay(ms) => Some(Duration::from_millis(ms)),
            action => {
                self.fault = Some((stage, action));
                None
            }
        }
    }

    async fn command(&mut self, request: Request<Cow<'_, str>>) -> Step {
        match self.fault.take() {
            // Say yes, then hang up: the handshake fails.
            Some((Stage::StartTls, Action::Drop)) => Step::Close(canned(READY)),
            Some((_, Action::Drop)) => Step::Abort,
            Some((_, Action::Reply(line))) => Step::Reply(line_reply(line)),
            Some((_, Action::Delay(_))) | None => self.dispatch(request),
        }
    }

    async fn respond(&mut self, pending: Infallible, _line: &[u8]) -> Step {
        match pending {}
    }

    fn data_started(&mut self) -> bool {
        // Some of the message has arrived: hang up mid-DATA.
        self.envelope.outcome != DataOutcome::Drop
    }

    async fn message(&mut self, body: &mut Vec<u8>) -> Step {
        match self.end_of_data(body).await {
            Some(reply) => Step::Reply(reply),
            None => Step::Abort,
        }
    }

    fn too_big(&mut self) -> Reply {
        self.envelope.reset();
        canned(b"552 5.3.4 Message too big\r\n")
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl Session {
    /// The one place commands are dispatched (hello → TLS → transaction).
    fn dispatch(&mut self, request: Request<Cow<'_, str>>) -> Step {
        match request {
            Request::Ehlo { host } => self.hello(&host, true),
            Request::Helo { host } => self.hello(&host, false),
            Request::StartTls => self.starttls(),
            Request::Mail { from } => Step::Reply(self.mail(&from.address, from.size)),
            Request::Rcpt { to } => Step::Reply(self.rcpt(&to.address)),
            Request::Data => self.data(),
            Request::Rset => {
                self.envelope.reset();
                Step::Reply(canned(OK))
            }
            Request::Noop { .. } => Step::Reply(canned(OK)),
            Request::Quit => Step::Close(canned(BYE)),
            // The chunk after BDAT would be read as commands.
            Request::Bdat { .. } => Step::Close(canned(b"502 5.5.1 BDAT not offered, use DATA\r\n")),
            Request::Auth { .. }
            | Request::Vrfy { .. }
            | Request::Expn { .. }
            | Request::Help { .. }
            | Request::Lhlo { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Step::Reply(canned(b"502 5.5.1 Command not implemented\r\n")),
        }
    }

    fn hello(&mut self, host: &str, esmtp: bool) -> Step {
        match &mut self.helo {
            Some(helo) => {
                helo.clear();
                helo.push_str(host);
            }
            None => self.helo = Some(host.to_string()),
        }
        self.envelope.reset();
        if !esmtp {
            return Step::Reply(Reply::raw(self.shared.helo.clone()));
        }
        let pipelining = self.shared.pipelining.load(std::sync::atomic::Ordering::Relaxed);
        let bytes = match (self.tls, pipelining) {
            (true, true) => &self.shared.ehlo_tls,
            (true, false) => &self.shared.ehlo_tls_serial,
            (false, true) => &self.shared.ehlo_plain,
            (false, false) => &self.shared.ehlo_plain_serial,
        };
        Step::Reply(Reply::raw(bytes.clone()))
    }

    /// STARTTLS (RFC 3207).
    fn starttls(&mut self) -> Step {
        if self.tls {
            return Step::Reply(canned(b"503 5.5.1 Already using TLS\r\n"));
        }
        if self.shared.tls.is_none() {
            return Step::Reply(canned(b"502 5.5.1 STARTTLS not offered\r\n"));
        }
        Step::StartTls(canned(READY))
    }

    fn mail(&mut self, from: &str, size: usize) -> Reply {
        if self.helo.is_none() {
            return canned(b"503 5.5.1 Send EHLO first\r\n");
        }
        if self.envelope.active {
            return canned(b"503 5.5.1 Nested MAIL command\r\n");
        }
        if size > MAX_SIZE {
            return canned(b"552 5.3.4 Message too big\r\n");
        }
        self.envelope.begin(from);
        canned(SENDER_OK)
    }

    fn rcpt(&mut self, to: &str) -> Reply {
        if !self.envelope.active {
            return canned(b"503 5.5.1 Need MAIL first\r\n");
        }
        let outcome = match behaviour(to) {
            Behaviour::Reject => {
                self.shared.refused(to, NO_SUCH_USER);
                return canned(NO_SUCH_USER);
            }
            Behaviour::Flaky(times) if self.shared.tempfail(&format!("flaky:{to}"), times) => DataOutcome::Drop,
            Behaviour::Flaky(_) => DataOutcome::Accept,
            Behaviour::TempFail(times) if self.shared.tempfail(to, times) => return canned(TEMPFAIL),
            Behaviour::TempFail(_) => DataOutcome::Accept,
            Behaviour::Accept(outcome) => outcome,
        };
        self.envelope.add(to, outcome);
        canned(RCPT_OK)
    }

    fn data(&mut self) -> Step {
        if !self.envelope.active {
            return Step::Reply(canned(b"503 5.5.1 Need MAIL first\r\n"));
        }
        if self.envelope.len == 0 {
            // RFC 2920 §3.1: DATA after every RCPT failed. The transaction
            // ends here, so a client need not RSET before the next MAIL.
            self.envelope.reset();
            return Step::Reply(canned(b"554 5.5.1 No valid recipients\r\n"));
        }
        Step::Data(canned(GO_AHEAD))
    }

    /// The message in `body` is complete: the answer (`None`: hang up
    /// without one), recording the message if accepted. Every reply due
    /// before it was written with the 354, so a pause here is seen as a
    /// slow answer to the end of data.
    async fn end_of_data(&mut self, body: &mut Vec<u8>) -> Option<Reply> {
        let outcome = self.envelope.outcome;
        self.envelope.active = false;
        match self.shared.fault(Stage::EndOfData) {
            Some(Action::Drop) => return None,
            Some(Action::Reply(line)) => {
                if line.starts_with('5') {
                    for rcpt in self.envelope.rcpts() {
                        self.shared.refused(rcpt, line.as_bytes());
                    }
                }
                return Some(line_reply(line));
            }
            Some(Action::Delay(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => {}
        }
        match outcome {
            DataOutcome::DataFail => {
                for rcpt in self.envelope.rcpts() {
                    self.shared.refused(rcpt, CONTENT_REJECTED);
                }
                return Some(canned(CONTENT_REJECTED));
            }
            DataOutcome::TempData => return Some(canned(NO_STORAGE)),
            DataOutcome::DropAtEnd => return None,
            // Caught at the first DATA bytes; an empty read cannot get here.
            DataOutcome::Drop => return Some(canned(CONTENT_REJECTED)),
            DataOutcome::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            DataOutcome::Accept => {}
        }
        if self.shared.keep_messages {
            let message = SinkMessage {
                mail_from: self.envelope.mail_from.clone(),
                rcpts: self.envelope.rcpts().to_vec(),
                data: std::mem::take(body),
                tls: self.tls,
                helo: self.helo.clone().unwrap_or_default(),
            };
            lock(&self.shared.messages).push(message);
        }
        self.shared.count.send_modify(|count| *count += 1);
        Some(canned(QUEUED))
    }
}

/// The scripted-fault stage a command reaches, if any.
fn stage_of(request: &Request<Cow<'_, str>>) -> Option<Stage> {
    match request {
        Request::Ehlo { .. } | Request::Helo { .. } => Some(Stage::Ehlo),
        Request::StartTls => Some(Stage::StartTls),
        Request::Mail { .. } => Some(Stage::Mail),
        Request::Rcpt { .. } => Some(Stage::Rcpt),
        Request::Data => Some(Stage::Data),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_outcome_wins() {
        use DataOutcome as D;
        let mut e = Envelope::default();
        e.begin("a@x");
        for o in [D::Slow(5), D::Accept, D::TempData, D::Slow(50)] {
            e.add("r@x", o);
        }
        assert_eq!(e.outcome, D::TempData);
        assert!(D::Drop > D::DataFail && D::DataFail > D::TempData && D::Slow(1) > D::Accept && D::Slow(9) > D::Slow(1));
        e.begin("b@x");
        assert_eq!((e.outcome, e.rcpts().len()), (D::Accept, 0));
    }
}
