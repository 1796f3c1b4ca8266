//! The one HTTP request webhooks need: a POST over HTTP/1.1, on a fresh
//! connection (plain TCP, or rustls with the aws-lc-rs provider and
//! certificate verification), answered by a status code. Kept this small
//! on purpose: nothing is reused, nothing is followed, the body of the
//! answer is not read beyond its status line.

use crate::config::WebhookUrl;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

/// Where to POST, and how.
pub struct Endpoint {
    pub url: WebhookUrl,
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl Endpoint {
    /// `ca_file`: extra trusted CA certificates (PEM), beside the system's.
    pub fn new(url: WebhookUrl, ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<Endpoint, String> {
        let tls = if url.https { Some(connector(ca_file)?) } else { None };
        Ok(Endpoint { url, tls, timeout })
    }

    /// POSTs `body` (JSON) with `headers`; the status code of the answer.
    pub async fn post(&self, headers: &[(&str, String)], body: &[u8]) -> Result<u16, String> {
        tokio::time::timeout(self.timeout, self.exchange(headers, body)).await.map_err(|_| format!("no answer within {} s", self.timeout.as_secs()))?
    }

    async fn exchange(&self, headers: &[(&str, String)], body: &[u8]) -> Result<u16, String> {
        let u = &self.url;
        let tcp = TcpStream::connect((u.host.as_str(), u.port)).await.map_err(|e| format!("cannot connect to {}:{}: {e}", u.host, u.port))?;
        let _ = tcp.set_nodelay(true);
        let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: herald/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            u.path,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        match &self.tls {
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(u.host.clone()).map_err(|e| format!("`{}` cannot be a TLS name: {e}", u.host))?;
                let stream = tls.connect(name, tcp).await.map_err(|e| format!("TLS with {}: {e}", u.host))?;
                status(stream, head.as_bytes(), body).await
            }
            None => status(tcp, head.as_bytes(), body).await,
        }
    }
}

async fn status<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, head: &[u8], body: &[u8]) -> Result<u16, String> {
    stream.write_all(head).await.map_err(|e| format!("sending: {e}"))?;
    stream.write_all(body).await.map_err(|e| format!("sending: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 || buf.len() > 8192 {
            return Err("the endpoint closed without an HTTP status line".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status(&buf).ok_or_else(|| format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(64)])))
}

/// `HTTP/1.1 204 No Content` → 204.
fn parse_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    let mut parts = std::str::from_utf8(line).ok()?.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok().filter(|c| (100..600).contains(c))
}

fn connector(ca_file: Option<&std::path::Path>) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in crate::tls::load_certs(path)? {
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(format!("no trusted CA certificates (the system store had {added}); set `ca_file`"));
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_lines() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"HTTP/1.1 204 No Content\r\n", Some(204)),
            (b"HTTP/1.0 410 Gone\r\nX: y\r\n", Some(410)),
            (b"HTTP/2 200\r\n", None),
            (b"SSH-2.0-OpenSSH\r\n", None),
            (b"HTTP/1.1 999 what\r\n", None),
        ];
        for (answer, want) in cases {
            assert_eq!(super::parse_status(answer), *want, "{:?}", String::from_utf8_lossy(answer));
        }
    }
}
