//! A small SMTP client for the load tool and the tests: raw enough to send
//! malformed input (smuggling sequences), convenient enough to submit a
//! message with pipelining in one call.

use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A reply as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReply {
    pub code: u16,
    /// Text of each line, code and separator removed.
    pub lines: Vec<String>,
}

impl ClientReply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The enhanced status code at the start of the first line, if any.
    pub fn status(&self) -> Option<&str> {
        self.lines.first().and_then(|l| l.split_whitespace().next()).filter(|s| s.split('.').count() == 3 && s.chars().all(|c| c.is_ascii_digit() || c == '.'))
    }
}

pub type IoResult<T> = std::io::Result<T>;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// TLS settings trusting exactly the certificate in `cert_pem`.
pub fn tls_trusting(cert_pem: &Path) -> IoResult<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in crate::tls::load_certs(cert_pem).map_err(bad)? {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    let config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

pub struct Client {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> IoResult<(Self, ClientReply)> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut client = Self { stream: Box::new(tcp), buf: Vec::new() };
        let greeting = client.read_reply().await?;
        Ok((client, greeting))
    }

    /// Connects from the local address `from` (e.g. `127.0.0.2`, to stand
    /// for another client) and reads the greeting.
    pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> IoResult<(Self, ClientReply)> {
        let socket = if from.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(SocketAddr::new(from, 0))?;
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut client = Self { stream: Box::new(tcp), buf: Vec::new() };
        let greeting = client.read_reply().await?;
        Ok((client, greeting))
    }

    /// Connects with TLS from the first byte and reads the greeting.
    pub async fn connect_tls(addr: SocketAddr, tls: &TlsConnector, name: &str) -> IoResult<(Self, ClientReply)> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(name.to_string()).map_err(|e| bad(e.to_string()))?;
        let stream = tls.connect(name, tcp).await?;
        let mut client = Self { stream: Box::new(stream), buf: Vec::new() };
        let greeting = client.read_reply().await?;
        Ok((client, greeting))
    }

    /// Sends STARTTLS and, on 220, upgrades the connection.
    pub async fn starttls(mut self, tls: &TlsConnector, name: &str) -> IoResult<Self> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != 220 {
            return Err(bad(format!("STARTTLS refused: {reply:?}")));
        }
        let name = ServerName::try_from(name.to_string()).map_err(|e| bad(e.to_string()))?;
        let stream = tls.connect(name, self.stream).await?;
        Ok(Self { stream: Box::new(stream), buf: Vec::new() })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> IoResult<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> IoResult<ClientReply> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    pub async fn ehlo(&mut self, name: &str) -> IoResult<ClientReply> {
        self.command(&format!("EHLO {name}")).await
    }

    pub async fn auth_plain(&mut self, user: &str, password: &str) -> IoResult<ClientReply> {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.command(&format!("AUTH PLAIN {token}")).await
    }

    /// Reads one (possibly multi-line) reply. EOF is an error.
    pub async fn read_reply(&mut self) -> IoResult<ClientReply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.len() < 3 {
                return Err(bad(format!("short reply line {line:?}")));
            }
            let code: u16 = line[..3].parse().map_err(|_| bad(format!("bad reply line {line:?}")))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(ClientReply { code, lines });
            }
        }
    }

    async fn read_line(&mut self) -> IoResult<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
                return Ok(line);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the server has closed the connection (reads EOF).
    pub async fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(tokio::time::timeout(std::time::Duration::from_secs(5), self.stream.read(&mut chunk)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    /// Submits one message with pipelining: MAIL, RCPTs and DATA in one
    /// write, then the dot-stuffed body. Returns the reply to the end of
    /// data, or the first refusal before it.
    pub async fn send_message(&mut self, from: &str, rcpts: &[&str], body: &[u8]) -> IoResult<ClientReply> {
        let mut out = format!("MAIL FROM:<{from}>\r\n");
        for r in rcpts {
            out.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        out.push_str("DATA\r\n");
        self.send_raw(out.as_bytes()).await?;
        let mail = self.read_reply().await?;
        let mut accepted = 0;
        let mut first_refusal = None;
        for _ in rcpts {
            let r = self.read_reply().await?;
            if r.code == 250 {
                accepted += 1;
            } else if first_refusal.is_none() {
                first_refusal = Some(r);
            }
        }
        let data = self.read_reply().await?;
        if mail.code != 250 {
            return Ok(mail);
        }
        if data.code != 354 {
            return Ok(if accepted == 0 { first_refusal.unwrap_or(data) } else { data });
        }
        self.send_raw(&dot_stuff(body)).await?;
        self.read_reply().await
    }
}

/// Dot-stuffs a CRLF message and appends the end-of-data marker.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
