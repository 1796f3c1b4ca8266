//! One SMTP connection to a receiving server, driven with mail-send over a
//! socket herald dials itself (to the address it resolved), reused for
//! as many messages as the route allows.

use super::classify::{error_outcome, error_text, reply_outcome, reply_text};
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
}

fn fail(target: &Target, e: mail_send::Error) -> ConnectError {
    ConnectError { outcome: error_outcome(&e), text: format!("{}: {}", target.label(), error_text(&e)) }
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
        if greeting.code() != 220 {
            return Err(fail(target, mail_send::Error::UnexpectedReply(greeting)));
        }
        let mut ehlo = client.ehlo(helo).await.map_err(|e| fail(target, e))?;
        let offers_tls = ehlo.has_capability(EXT_START_TLS);
        let connector = match (target.tls, offers_tls) {
            (OutboundTls::Required, false) => {
                return Err(ConnectError { outcome: Outcome::Temporary, text: format!("{}: TLS is required on this route but the server does not offer STARTTLS", target.label()) });
            }
            (OutboundTls::Required, true) => Some(&tls.verifying),
            (OutboundTls::Opportunistic, true) => Some(&tls.opportunistic),
            _ => None,
        };
        if let Some(connector) = connector {
            let reply = client.cmd(b"STARTTLS\r\n").await.map_err(|e| fail(target, e))?;
            if reply.code() != 220 {
                return Err(fail(target, mail_send::Error::UnexpectedReply(reply)));
            }
            let SmtpClient { stream, timeout } = client;
            let tls_stream = handshake(connector, &target.host, stream, timeout).await.map_err(|e| fail(target, e))?;
            client = SmtpClient { stream: Box::new(tls_stream), timeout };
            secure = true;
            ehlo = client.ehlo(helo).await.map_err(|e| fail(target, e))?;
        }
        if let Some((user, password)) = &target.credentials {
            let creds = mail_send::Credentials::new(user.clone(), password.clone());
            client.authenticate(&creds, &ehlo).await.map_err(|e| fail(target, e))?;
        }
        Ok(Self { caps: caps(&ehlo), client, label: target.label(), tls: secure, sent: 0 })
    }

    /// One transaction: MAIL, RCPT for each recipient, DATA with the
    /// message given as chunks (dot-stuffed on the way out). Errors are
    /// connection-level: the connection must not be reused after one.
    pub async fn send(&mut self, from: &str, rcpts: &[&str], chunks: &[&[u8]]) -> Result<RcptResults, mail_send::Error> {
        let eight_bit = chunks.iter().any(|c| !c.is_ascii());
        let utf8_addr = !from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
        let mut mail = format!("MAIL FROM:<{from}>");
        if eight_bit && self.caps & EXT_8BIT_MIME != 0 {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8_addr && self.caps & EXT_SMTP_UTF8 != 0 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let rcpt_cmds: Vec<String> = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
        let replies = if self.caps & EXT_PIPELINING != 0 {
            // RFC 2920: MAIL, every RCPT and DATA in one write.
            let cmds = std::iter::once(mail.clone()).chain(rcpt_cmds.iter().cloned()).chain(std::iter::once("DATA\r\n".to_string()));
            self.client.cmds(cmds).await?
        } else {
            let mut replies = vec![self.client.cmd(mail.as_bytes()).await?];
            if replies[0].code() / 100 == 2 {
                for c in &rcpt_cmds {
                    replies.push(self.client.cmd(c.as_bytes()).await?);
                }
                if replies[1..].iter().any(|r| r.code() / 100 == 2) {
                    replies.push(self.client.cmd(b"DATA\r\n").await?);
                }
            }
            replies
        };
        let mail_reply = &replies[0];
        if mail_reply.code() / 100 != 2 {
            let verdict = (reply_outcome(mail_reply.code()), reply_text(mail_reply));
            self.reset(replies.len() > rcpts.len() + 1 && replies[rcpts.len() + 1].code() == 354).await?;
            return Ok(vec![verdict; rcpts.len()]);
        }
        let mut results: RcptResults = replies[1..=rcpts.len().min(replies.len() - 1)].iter().map(|r| (reply_outcome(r.code()), reply_text(r))).collect();
        results.resize(rcpts.len(), (Outcome::Temporary, "no reply to RCPT".into()));
        let data = replies.get(rcpts.len() + 1);
        match data {
            Some(d) if d.code() == 354 => {}
            Some(d) => {
                // No recipient accepted (or DATA refused): the accepted ones,
                // if any, take DATA's verdict.
                let verdict = (reply_outcome(d.code()), reply_text(d));
                for r in results.iter_mut().filter(|r| r.0 == Outcome::Delivered) {
                    *r = verdict.clone();
                }
                return Ok(results);
            }
            None => return Ok(results),
        }
        if !results.iter().any(|r| r.0 == Outcome::Delivered) {
            // The server sent 354 although nothing was accepted: end the
            // empty transaction without a message.
            self.write_data(&[]).await?;
            let _ = self.client.read().await?;
            return Ok(results);
        }
        self.write_data(chunks).await?;
        let end = tokio::time::timeout(self.client.timeout, self.client.read()).await.map_err(|_| mail_send::Error::Timeout)??;
        let verdict = (reply_outcome(end.code()), reply_text(&end));
        for r in results.iter_mut().filter(|r| r.0 == Outcome::Delivered) {
            *r = verdict.clone();
        }
        self.sent += 1;
        Ok(results)
    }

    async fn reset(&mut self, in_data: bool) -> Result<(), mail_send::Error> {
        if in_data {
            self.write_data(&[]).await?;
            let _ = self.client.read().await?;
        }
        self.client.rset().await
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
                let mut start = 0;
                for (i, &b) in chunk.iter().enumerate() {
                    if at_line_start && b == b'.' {
                        out.extend_from_slice(&chunk[start..i]);
                        out.push(b'.');
                        start = i;
                    }
                    at_line_start = b == b'\n';
                }
                out.extend_from_slice(&chunk[start..]);
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
