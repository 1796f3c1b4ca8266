//! One connection to the sink: the SMTP conversation, upgraded on
//! STARTTLS.
//!
//! It mirrors `crate::submission::session`: smtp-proto's
//! `RequestReceiver` parses commands, the submission module's `DataReader`
//! finds the end of DATA, and replies to pipelined commands (RFC 2920) are
//! written when the input buffer is drained. Replies are canned byte
//! strings, and a connection reuses its buffers, so a message costs no
//! allocation beyond its own bytes (and none at all with
//! `keep_messages: false`).

use super::{Action, Behaviour, DataOutcome, MAX_SIZE, Shared, SinkMessage, Stage, behaviour, lock};
use crate::submission::dot::DataReader;
use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{Error as ParseError, Request};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// An idle connection is closed after this long without input.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection, upgraded on STARTTLS.
pub(super) async fn connection(shared: Arc<Shared>, mut tcp: TcpStream) {
    let mut session = Session::new(shared);
    match session.shared.fault(Stage::Greeting) {
        Some(Action::Drop) => return,
        Some(Action::Reply(line)) => session.write(Reply::Line(line)),
        Some(Action::Delay(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            session.write(Reply::Greeting);
        }
        None => session.write(Reply::Greeting),
    }
    match session.serve(&mut tcp).await {
        End::Closed => session.close(&mut tcp).await,
        End::Abort => {}
        End::StartTls => {
            let Some(acceptor) = session.shared.tls.clone() else { return };
            let Ok(Ok(mut tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
                return;
            };
            // RFC 3207 §4.2: forget everything learnt before TLS.
            session.tls = true;
            session.helo = None;
            session.envelope.reset();
            if let End::Closed = session.serve(&mut tls).await {
                session.close(&mut tls).await;
            }
        }
    }
}

/// A reply: canned bytes, or one of the texts made once per sink.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Canned(&'static [u8]),
    /// A scripted reply line, without its CRLF.
    Line(&'static str),
    Greeting,
    Ehlo,
    Helo,
}

const OK: Reply = Reply::Canned(b"250 2.0.0 Ok\r\n");
const SENDER_OK: Reply = Reply::Canned(b"250 2.1.0 Sender ok\r\n");
const RCPT_OK: Reply = Reply::Canned(b"250 2.1.5 Recipient ok\r\n");
const GO_AHEAD: Reply = Reply::Canned(b"354 End data with <CR><LF>.<CR><LF>\r\n");
const QUEUED: Reply = Reply::Canned(b"250 2.0.0 Message accepted\r\n");
const TEMPFAIL: Reply = Reply::Canned(b"451 4.3.0 try again later\r\n");
const NO_SUCH_USER: Reply = Reply::Canned(b"550 5.1.1 no such user\r\n");
const CONTENT_REJECTED: Reply = Reply::Canned(b"554 5.6.0 content rejected\r\n");
const NO_STORAGE: Reply = Reply::Canned(b"452 4.3.1 insufficient storage\r\n");
const BYE: Reply = Reply::Canned(b"221 2.0.0 Bye\r\n");
const TIMEOUT: Reply = Reply::Canned(b"421 4.4.2 Idle too long, closing connection\r\n");

/// What the loop does after a command.
enum Step {
    Reply(Reply),
    /// Reply 354 and read the message.
    Data,
    /// Reply 220 and start TLS.
    StartTls,
    /// Reply, then close.
    Close(Reply),
    /// Close without a reply (a scripted fault).
    Abort,
}

enum End {
    /// Flush and close politely.
    Closed,
    /// Close without another byte (`drop` recipients).
    Abort,
    StartTls,
}

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
    tls: bool,
    helo: Option<String>,
    envelope: Envelope,
    /// Replies not yet written.
    out: Vec<u8>,
    /// The message being received; reused when messages are not kept.
    body: Vec<u8>,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            tls: false,
            helo: None,
            envelope: Envelope::default(),
            out: Vec::with_capacity(1024),
            body: Vec::new(),
        }
    }

    /// The one reply writer.
    fn write(&mut self, reply: Reply) {
        let bytes: &[u8] = match reply {
            Reply::Canned(bytes) => bytes,
            Reply::Line(line) => {
                self.out.extend_from_slice(line.as_bytes());
                b"\r\n"
            }
            Reply::Greeting => &self.shared.greeting,
            Reply::Ehlo => {
                let pipelining = self.shared.pipelining.load(std::sync::atomic::Ordering::Relaxed);
                match (self.tls, pipelining) {
                    (true, true) => &self.shared.ehlo_tls,
                    (true, false) => &self.shared.ehlo_tls_serial,
                    (false, true) => &self.shared.ehlo_plain,
                    (false, false) => &self.shared.ehlo_plain_serial,
                }
            }
            Reply::Helo => &self.shared.helo,
        };
        self.out.extend_from_slice(bytes);
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = stream.write_all(&self.out).await.is_ok() && stream.flush().await.is_ok();
        self.out.clear();
        ok
    }

    async fn close<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) {
        self.flush(stream).await;
        let _ = stream.shutdown().await;
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> End {
        let mut buf = vec![0u8; 16 * 1024];
        let mut requests = RequestReceiver::default();
        let mut data: Option<DataReader> = None;
        loop {
            // Everything read so far is answered: one write per pipelined group.
            if !self.flush(stream).await {
                return End::Closed;
            }
            let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return End::Closed,
                Ok(Ok(n)) => n,
                Err(_) => {
                    self.write(TIMEOUT);
                    return End::Closed;
                }
            };
            let mut bytes = buf[..n].iter();
            while !bytes.as_slice().is_empty() {
                if let Some(reader) = &mut data {
                    if self.envelope.outcome == DataOutcome::Drop {
                        // Some of the message has arrived: hang up mid-DATA.
                        self.flush(stream).await;
                        return End::Abort;
                    }
                    if !reader.ingest(&mut bytes, &mut self.body) {
                        continue;
                    }
                    data = None;
                    match self.end_of_data(stream).await {
                        Some(reply) => self.write(reply),
                        None => {
                            self.flush(stream).await;
                            return End::Abort;
                        }
                    }
                    continue;
                }
                let step = match requests.ingest(&mut bytes) {
                    Ok(request) => {
                        let stage = stage_of(&request);
                        match stage.and_then(|stage| self.shared.fault(stage)).map(|a| (stage, a)) {
                            Some((Some(Stage::StartTls), Action::Drop)) => {
                                // Say yes, then hang up: the handshake fails.
                                self.write(Reply::Canned(b"220 2.0.0 Ready to start TLS\r\n"));
                                self.flush(stream).await;
                                return End::Abort;
                            }
                            Some((_, Action::Drop)) => Step::Abort,
                            Some((_, Action::Reply(line))) => Step::Reply(Reply::Line(line)),
                            Some((_, Action::Delay(ms))) => {
                                self.flush(stream).await;
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                self.dispatch(request)
                            }
                            None => self.dispatch(request),
                        }
                    }
                    Err(ParseError::NeedsMoreData { .. }) => break,
                    Err(e) => parse_error(e),
                };
                match step {
                    Step::Reply(reply) => self.write(reply),
                    Step::Data => {
                        self.write(GO_AHEAD);
                        self.body.clear();
                        data = Some(DataReader::new());
                    }
                    Step::StartTls => {
                        self.write(Reply::Canned(b"220 2.0.0 Ready to start TLS\r\n"));
                        // Anything pipelined behind STARTTLS is dropped, not
                        // carried into the TLS session (CVE-2011-0411).
                        return if self.flush(stream).await { End::StartTls } else { End::Closed };
                    }
                    Step::Close(reply) => {
                        self.write(reply);
                        return End::Closed;
                    }
                    Step::Abort => {
                        self.flush(stream).await;
                        return End::Abort;
                    }
                }
            }
        }
    }

    /// The one place commands are dispatched (hello → TLS → transaction).
    fn dispatch(&mut self, request: Request<Cow<'_, str>>) -> Step {
        match request {
            Request::Ehlo { host } => self.hello(&host, Reply::Ehlo),
            Request::Helo { host } => self.hello(&host, Reply::Helo),
            Request::StartTls => self.starttls(),
            Request::Mail { from } => Step::Reply(self.mail(&from.address, from.size)),
            Request::Rcpt { to } => Step::Reply(self.rcpt(&to.address)),
            Request::Data => self.data(),
            Request::Rset => {
                self.envelope.reset();
                Step::Reply(OK)
            }
            Request::Noop { .. } => Step::Reply(OK),
            Request::Quit => Step::Close(BYE),
            // The chunk after BDAT would be read as commands.
            Request::Bdat { .. } => Step::Close(Reply::Canned(b"502 5.5.1 BDAT not offered, use DATA\r\n")),
            Request::Auth { .. }
            | Request::Vrfy { .. }
            | Request::Expn { .. }
            | Request::Help { .. }
            | Request::Lhlo { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Step::Reply(Reply::Canned(b"502 5.5.1 Command not implemented\r\n")),
        }
    }

    fn hello(&mut self, host: &str, reply: Reply) -> Step {
        match &mut self.helo {
            Some(helo) => {
                helo.clear();
                helo.push_str(host);
            }
            None => self.helo = Some(host.to_string()),
        }
        self.envelope.reset();
        Step::Reply(reply)
    }

    /// STARTTLS (RFC 3207).
    fn starttls(&mut self) -> Step {
        if self.tls {
            return Step::Reply(Reply::Canned(b"503 5.5.1 Already using TLS\r\n"));
        }
        if self.shared.tls.is_none() {
            return Step::Reply(Reply::Canned(b"502 5.5.1 STARTTLS not offered\r\n"));
        }
        Step::StartTls
    }

    fn mail(&mut self, from: &str, size: usize) -> Reply {
        if self.helo.is_none() {
            return Reply::Canned(b"503 5.5.1 Send EHLO first\r\n");
        }
        if self.envelope.active {
            return Reply::Canned(b"503 5.5.1 Nested MAIL command\r\n");
        }
        if size > MAX_SIZE {
            return Reply::Canned(b"552 5.3.4 Message too big\r\n");
        }
        self.envelope.begin(from);
        SENDER_OK
    }

    fn rcpt(&mut self, to: &str) -> Reply {
        if !self.envelope.active {
            return Reply::Canned(b"503 5.5.1 Need MAIL first\r\n");
        }
        let outcome = match behaviour(to) {
            Behaviour::Reject => {
                if let Reply::Canned(bytes) = NO_SUCH_USER {
                    self.shared.refused(to, bytes);
                }
                return NO_SUCH_USER;
            }
            Behaviour::Flaky(times) if self.shared.tempfail(&format!("flaky:{to}"), times) => DataOutcome::Drop,
            Behaviour::Flaky(_) => DataOutcome::Accept,
            Behaviour::TempFail(times) if self.shared.tempfail(to, times) => return TEMPFAIL,
            Behaviour::TempFail(_) => DataOutcome::Accept,
            Behaviour::Accept(outcome) => outcome,
        };
        self.envelope.add(to, outcome);
        RCPT_OK
    }

    fn data(&mut self) -> Step {
        if !self.envelope.active {
            return Step::Reply(Reply::Canned(b"503 5.5.1 Need MAIL first\r\n"));
        }
        if self.envelope.len == 0 {
            // RFC 2920 §3.1: DATA after every RCPT failed. The transaction
            // ends here, so a client need not RSET before the next MAIL.
            self.envelope.reset();
            return Step::Reply(Reply::Canned(b"554 5.5.1 No valid recipients\r\n"));
        }
        Step::Data
    }

    /// The message in `self.body` is complete: the answer (`None`: hang
    /// up without one), recording the message if accepted.
    async fn end_of_data<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Option<Reply> {
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
                return Some(Reply::Line(line));
            }
            Some(Action::Delay(ms)) => {
                self.flush(stream).await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            None => {}
        }
        match outcome {
            DataOutcome::DataFail => {
                if let Reply::Canned(bytes) = CONTENT_REJECTED {
                    for rcpt in self.envelope.rcpts() {
                        self.shared.refused(rcpt, bytes);
                    }
                }
                return Some(CONTENT_REJECTED);
            }
            DataOutcome::TempData => return Some(NO_STORAGE),
            DataOutcome::DropAtEnd => return None,
            // Caught at the first DATA bytes; an empty read cannot get here.
            DataOutcome::Drop => return Some(CONTENT_REJECTED),
            DataOutcome::Slow(ms) => {
                self.flush(stream).await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            DataOutcome::Accept => {}
        }
        if self.shared.keep_messages {
            let message = SinkMessage {
                mail_from: self.envelope.mail_from.clone(),
                rcpts: self.envelope.rcpts().to_vec(),
                data: std::mem::take(&mut self.body),
                tls: self.tls,
                helo: self.helo.clone().unwrap_or_default(),
            };
            lock(&self.shared.messages).push(message);
        }
        self.shared.count.send_modify(|count| *count += 1);
        Some(QUEUED)
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

fn parse_error(e: ParseError) -> Step {
    let text: &'static [u8] = match e {
        ParseError::UnknownCommand => b"500 5.5.1 Command unrecognized\r\n",
        ParseError::InvalidSenderAddress => b"501 5.1.7 Bad sender address syntax\r\n",
        ParseError::InvalidRecipientAddress => b"501 5.1.3 Bad recipient address syntax\r\n",
        ParseError::UnsupportedParameter { .. } => b"555 5.5.4 Unsupported parameter\r\n",
        ParseError::SyntaxError { .. }
        | ParseError::InvalidParameter { .. }
        | ParseError::NeedsMoreData { .. }
        | ParseError::InvalidResponse { .. } => b"501 5.5.4 Syntax error\r\n",
        // The rest of the line would be read as commands.
        ParseError::ResponseTooLong => return Step::Close(Reply::Canned(b"500 5.5.2 Line too long\r\n")),
    };
    Step::Reply(Reply::Canned(text))
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
