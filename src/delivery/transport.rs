//! One SMTP connection to a receiving server, driven with mail-send over a
//! socket herald dials itself (to the address it resolved), reused for
//! as many messages as the route allows.

use super::classify::{Step, Verdict, error_outcome, error_text, out_of_order_text, reply_text, verdict};
use crate::config::OutboundTls;
use crate::store::Outcome;
use mail_send::SmtpClient;
use smtp_proto::{EXT_8BIT_MIME, EXT_PIPELINING, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name: for TLS verification, SNI and the log.
    pub host: String,
    pub addr: SocketAddr,
    pub tls: OutboundTls,
    /// AUTH for a smarthost.
    pub credentials: Option<(String, String)>,
}

impl Target {
    pub fn label(&self) -> String {
        format!("{} [{}]:{}", self.host, self.addr.ip(), self.addr.port())
    }
}

/// The two TLS client set-ups: verifying (required) and not (opportunistic).
#[derive(Clone)]
pub struct Connectors {
    pub verifying: TlsConnector,
    pub opportunistic: TlsConnector,
}

impl Connectors {
    pub fn new() -> Result<Self, String> {
        Ok(Self { verifying: mail_send::smtp::tls::build_tls_connector(false)?, opportunistic: mail_send::smtp::tls::build_tls_connector(true)? })
    }
}

/// Why a connection could not be set up.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub outcome: Outcome,
    pub text: String,
    /// The TLS handshake after STARTTLS failed: with opportunistic TLS the
    /// caller may try again in plain text (RFC 3207 §4.1 leaves it open;
    /// Postfix does the same).
    pub tls_failed: bool,
}

/// What happened to each recipient of one transaction, in order.
pub type RcptResults = Vec<(Outcome, String)>;

pub struct Connection {
    client: SmtpClient<Box<dyn Stream>>,
    caps: u32,
    pub label: String,
    pub tls: bool,
    /// Transactions completed on this connection.
    pub sent: usize,
    reusable: bool,
}

/// A connection-level failure during a transaction.
#[derive(Debug)]
pub struct SendError {
    pub error: mail_send::Error,
    /// The message was (partly) transmitted: the receiver may have it.
    pub data_sent: bool,
}

/// A reply's verdict for `step` and its text for the attempt history;
/// clears `in_order` when the reply is out of protocol order.
fn judge(in_order: &mut bool, step: Step, r: &smtp_proto::Response<String>) -> (Verdict, String) {
    let v = verdict(step, r.code());
    *in_order &= v != Verdict::OutOfOrder;
    let text = if v == Verdict::OutOfOrder { out_of_order_text(step, r) } else { reply_text(r) };
    (v, text)
}

/// Every recipient's result, once none waits.
fn settled(results: Vec<Option<(Outcome, String)>>) -> RcptResults {
    results.into_iter().map(|r| r.unwrap_or((Outcome::Temporary, "no result".into()))).collect()
}

/// Gives every recipient still waiting (`None`) the same result.
fn fill(results: &mut [Option<(Outcome, String)>], verdict: &(Outcome, String)) {
    for r in results.iter_mut().filter(|r| r.is_none()) {
        *r = Some(verdict.clone());
    }
}

fn fail(target: &Target, e: mail_send::Error) -> ConnectError {
    ConnectError { outcome: error_outcome(&e), text: format!("{}: {}", target.label(), error_text(&e)), tls_failed: false }
}

impl Connection {
    /// Connects, reads the greeting, says EHLO, does TLS as the target's
    /// policy says, and authenticates if the route has credentials.
    pub async fn open(target: &Target, helo: &str, connect_timeout: Duration, timeout: Duration, tls: &Connectors) -> Result<Self, ConnectError> {
        let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(target.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(target, mail_send::Error::Io(e))),
            Err(_) => return Err(fail(target, mail_send::Error::Timeout)),
        };
        let _ = tcp.set_nodelay(true);
        let mut secure = false;
        let stream: Box<dyn Stream> = if target.tls == OutboundTls::Implicit {
            secure = true;
            Box::new(handshake(&tls.verifying, &target.host, tcp, timeout).await.map_err(|e| fail(target, e))?)
        } else {
            Box::new(tcp)
        };
        let mut client = SmtpClient { stream, timeout };
        let greeting = tokio::time::timeout(timeout, client.read()).await.map_err(|_| fail(target, mail_send::Error::Timeout))?.map_err(|e| fail(target, e))?;
        if verdict(Step::Greeting, greeting.code()) != Verdict::Accepted {
            return Err(fail(target, mail_send::Error::UnexpectedReply(greeting)));
        }
        let mut ehlo = client.ehlo(helo).await.map_err(|e| fail(target, e))?;
        let offers_tls = ehlo.has_capability(EXT_START_TLS);
        let connector = match (target.tls, offers_tls) {
            (OutboundTls::Required, false) => {
                return Err(ConnectError { outcome: Outcome::Temporary, text: format!("{}: TLS is required on this route but the server does not offer STARTTLS", target.label()), tls_failed: false });
            }
            (OutboundTls::Required, true) => Some(&tls.verifying),
            (OutboundTls::Opportunistic, true) => Some(&tls.opportunistic),
            _ => None,
        };
        if let Some(connector) = connector {
            // A TLS failure is never a verdict on the mail: temporary.
            let reply = client.cmd(b"STARTTLS\r\n").await.map_err(|e| fail(target, e))?;
            if verdict(Step::StartTls, reply.code()) != Verdict::Accepted {
                return Err(ConnectError { outcome: Outcome::Temporary, tls_failed: true, ..fail(target, mail_send::Error::UnexpectedReply(reply)) });
            }
            let SmtpClient { stream, timeout } = client;
            let tls_stream = handshake(connector, &target.host, stream, timeout).await.map_err(|e| ConnectError { outcome: Outcome::Temporary, tls_failed: true, ..fail(target, e) })?;
            client = SmtpClient { stream: Box::new(tls_stream), timeout };
            secure = true;
            ehlo = client.ehlo(helo).await.map_err(|e| fail(target, e))?;
        }
        if let Some((user, password)) = &target.credentials {
            let creds = mail_send::Credentials::new(user.clone(), password.clone());
            client.authenticate(&creds, &ehlo).await.map_err(|e| fail(target, e))?;
        }
        Ok(Self { caps: caps(&ehlo), client, label: target.label(), tls: secure, sent: 0, reusable: true })
    }

    /// One transaction: MAIL, RCPT for each recipient, DATA with the
    /// message given as chunks (dot-stuffed on the way out).
    ///
    /// A recipient is recorded delivered only by the `250` that answers
    /// the end of DATA. Every way out that leaves a transaction open ends
    /// it (an empty DATA after a stray `354`, then RSET) before the
    /// connection may carry another; a reply out of protocol order, or an
    /// RSET that is not answered `250`, makes the connection unusable
    /// ([`Connection::reusable`]). An `Err` is connection-level: the
    /// connection must be dropped, and [`SendError::data_sent`] says
    /// whether the receiver may have the message.
    /// `smtputf8`: the submission used `SMTPUTF8` ([`super::utf8::mode`]).
    pub async fn send(&mut self, from: &str, rcpts: &[&str], chunks: &[&[u8]], smtputf8: bool) -> Result<RcptResults, SendError> {
        let utf8 = super::utf8::mode(smtputf8, from, rcpts, chunks, self.caps & EXT_SMTP_UTF8 != 0);
        if let super::utf8::Utf8Mode::Refuse(outcome, text) = utf8 {
            // Nothing was sent: the connection stays as it was.
            return Ok(vec![(outcome, text); rcpts.len()]);
        }
        self.reusable = false;
        let eight_bit = chunks.iter().any(|c| !c.is_ascii());
        let mut mail = format!("MAIL FROM:<{from}>");
        if eight_bit && self.caps & EXT_8BIT_MIME != 0 {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 == super::utf8::Utf8Mode::SmtpUtf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let rcpt_cmds: Vec<String> = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
        let before_data = |e| SendError { error: e, data_sent: false };

        // MAIL, RCPT… and DATA: in one write with PIPELINING (RFC 2920),
        // else one by one, stopping where the server refused.
        let (mail_reply, rcpt_replies, data_reply) = if self.caps & EXT_PIPELINING != 0 {
            let cmds = std::iter::once(mail.clone()).chain(rcpt_cmds.iter().cloned()).chain(std::iter::once("DATA\r\n".to_string()));
            let mut replies = self.client.cmds(cmds).await.map_err(before_data)?;
            if replies.len() != rcpts.len() + 2 {
                return Err(before_data(mail_send::Error::UnparseableReply));
            }
            let data = replies.pop();
            let mail = replies.remove(0);
            (mail, replies, data)
        } else {
            let mail_reply = self.client.cmd(mail.as_bytes()).await.map_err(before_data)?;
            let mut rcpt_replies = Vec::new();
            let mut data = None;
            if verdict(Step::Mail, mail_reply.code()) == Verdict::Accepted {
                for c in &rcpt_cmds {
                    rcpt_replies.push(self.client.cmd(c.as_bytes()).await.map_err(before_data)?);
                }
                if rcpt_replies.iter().any(|r| verdict(Step::Rcpt, r.code()) == Verdict::Accepted) {
                    data = Some(self.client.cmd(b"DATA\r\n").await.map_err(before_data)?);
                }
            }
            (mail_reply, rcpt_replies, data)
        };

        let mut in_order = true;
        // Per recipient: `None` while accepted and waiting for the end of DATA.
        let mut results: Vec<Option<(Outcome, String)>> = match judge(&mut in_order, Step::Mail, &mail_reply) {
            (Verdict::Accepted, _) => {
                let mut per_rcpt: Vec<Option<(Outcome, String)>> = rcpt_replies
                    .iter()
                    .map(|r| match judge(&mut in_order, Step::Rcpt, r) {
                        (Verdict::Accepted, _) => None,
                        (v, text) => Some((v.refusal(), text)),
                    })
                    .collect();
                per_rcpt.resize(rcpts.len(), Some((Outcome::Temporary, "no reply to RCPT".into())));
                per_rcpt
            }
            (v, text) => vec![Some((v.refusal(), text)); rcpts.len()],
        };
        let data_verdict = data_reply.as_ref().map(|d| judge(&mut in_order, Step::Data, d));
        let any_accepted = results.iter().any(Option::is_none);
        let outcome = match data_verdict {
            Some((Verdict::Accepted, _)) if any_accepted && in_order => {
                self.write_data(chunks).await.map_err(|e| SendError { error: e, data_sent: true })?;
                let end = self.read_reply().await.map_err(|e| SendError { error: e, data_sent: true })?;
                let (v, text) = judge(&mut in_order, Step::EndOfData, &end);
                let verdict = match v {
                    Verdict::Accepted => (Outcome::Delivered, text),
                    v => (v.refusal(), text),
                };
                fill(&mut results, &verdict);
                self.sent += 1;
                // The end-of-DATA reply ends the transaction (RFC 5321 §4.1.1.4).
                self.reusable = in_order;
                return Ok(settled(results));
            }
            Some((Verdict::Accepted, _)) => {
                // 354 although nothing was accepted (pipelined), or after a
                // reply out of order: end the transaction with no message.
                self.write_data(&[]).await.map_err(|e| SendError { error: e, data_sent: false })?;
                let _ = self.read_reply().await.map_err(|e| SendError { error: e, data_sent: false })?;
                (Outcome::Temporary, "the server invited DATA out of protocol order".to_string())
            }
            Some((v, text)) => (v.refusal(), text),
            None => (Outcome::Temporary, "no reply to DATA".to_string()),
        };
        fill(&mut results, &outcome);
        // No message went through: close the transaction before the
        // connection carries another (a server left mid-transaction answers
        // the next MAIL with 503).
        if in_order {
            let rset = self.client.cmd(b"RSET\r\n").await.map_err(before_data)?;
            self.reusable = verdict(Step::Rset, rset.code()) == Verdict::Accepted;
        }
        Ok(settled(results))
    }

    /// Whether the last transaction ended in a known state, so the
    /// connection may carry another.
    pub fn reusable(&self) -> bool {
        self.reusable
    }

    async fn read_reply(&mut self) -> Result<smtp_proto::Response<String>, mail_send::Error> {
        tokio::time::timeout(self.client.timeout, self.client.read()).await.map_err(|_| mail_send::Error::Timeout)?
    }

    /// Writes the message dot-stuffed (RFC 5321 §4.5.2) and the final
    /// `.CRLF`, adding a CRLF first if the message does not end with one.
    async fn write_data(&mut self, chunks: &[&[u8]]) -> Result<(), mail_send::Error> {
        let timeout = self.client.timeout;
        let stream = &mut self.client.stream;
        let write = async {
            let mut out = Vec::with_capacity(64 * 1024);
            let mut at_line_start = true;
            let mut last_two = [0u8; 2];
            for chunk in chunks {
                stuff_into(&mut out, chunk, &mut at_line_start);
                if let Some(&b) = chunk.last() {
                    last_two = [if chunk.len() > 1 { chunk[chunk.len() - 2] } else { last_two[1] }, b];
                }
                if out.len() >= 48 * 1024 {
                    stream.write_all(&out).await?;
                    out.clear();
                }
            }
            let empty = chunks.iter().all(|c| c.is_empty());
            if !empty && last_two != *b"\r\n" {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
            stream.write_all(&out).await?;
            stream.flush().await
        };
        tokio::time::timeout(timeout, write).await.map_err(|_| mail_send::Error::Timeout)?.map_err(mail_send::Error::Io)
    }

    /// Says QUIT (best effort).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.cmd(b"QUIT\r\n")).await;
    }
}

/// Appends `chunk` to `out` with a dot doubled at the start of every line
/// (RFC 5321 §4.5.2); `at_line_start` carries across chunks. Finds the
/// line starts with a vectorised search, not byte by byte.
fn stuff_into(out: &mut Vec<u8>, chunk: &[u8], at_line_start: &mut bool) {
    let Some(&last) = chunk.last() else { return };
    if *at_line_start && chunk[0] == b'.' {
        out.push(b'.');
    }
    let mut start = 0;
    for newline in memchr::memmem::find_iter(chunk, b"\n.") {
        out.extend_from_slice(&chunk[start..=newline]);
        out.push(b'.');
        start = newline + 1;
    }
    out.extend_from_slice(&chunk[start..]);
    *at_line_start = last == b'\n';
}

fn caps(ehlo: &EhloResponse<String>) -> u32 {
    ehlo.capabilities()
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &TlsConnector,
    host: &str,
    stream: S,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<S>, mail_send::Error> {
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|_| mail_send::Error::InvalidTLSName)?;
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(mail_send::Error::Io(e)),
        Err(_) => Err(mail_send::Error::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::stuff_into;

    /// Every way of cutting the message into chunks gives the same bytes.
    #[test]
    fn dots_at_line_starts_are_doubled_across_chunks() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b".", b".."),
            (b"a.b\r\n", b"a.b\r\n"),
            (b".a\r\n.\r\n..\r\nb.\r\n", b"..a\r\n..\r\n...\r\nb.\r\n"),
            (b"a\r\n.\n.x", b"a\r\n..\n..x"),
            (b"x\r.y", b"x\r.y"),
        ];
        for &(input, want) in cases {
            for cut in 1..=input.len().max(1) {
                let mut out = Vec::new();
                let mut at_line_start = true;
                for chunk in input.chunks(cut) {
                    stuff_into(&mut out, chunk, &mut at_line_start);
                }
                assert_eq!(out, want, "{:?} in chunks of {cut}", String::from_utf8_lossy(input));
            }
        }
    }
}
