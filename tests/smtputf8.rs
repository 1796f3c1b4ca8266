//! 8-bit and UTF-8 end to end, and line endings: a submission made with
//! SMTPUTF8 is relayed with SMTPUTF8; a receiver that does not offer it
//! gets nothing, and the sender gets an RFC 6533 DSN; an LF-only message
//! arrives with CRLF. Real sockets on loopback: the relay, the test sink,
//! a scripted SMTP receiver and the test DNS server.

mod support;

use herald::config::{OutboundTls, RouteConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::world::{WAIT, World};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A minimal SMTP receiver: answers every transaction with 250 and keeps
/// the command lines it was sent; offers SMTPUTF8 or not.
struct Receiver {
    addr: SocketAddr,
    commands: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(offer_smtputf8: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let seen = commands.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read);
                    let _ = write.write_all(b"220 receiver.test ESMTP\r\n").await;
                    let mut line = String::new();
                    while lines.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let command = line.trim_end().to_string();
                        line.clear();
                        seen.lock().unwrap().push(command.clone());
                        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" if offer_smtputf8 => b"250-receiver.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                            "EHLO" => b"250-receiver.test\r\n250 8BITMIME\r\n",
                            "DATA" => {
                                let _ = write.write_all(b"354 go on\r\n").await;
                                let mut data = String::new();
                                while lines.read_line(&mut data).await.unwrap_or(0) > 0 && !data.ends_with("\r\n.\r\n") {}
                                b"250 2.0.0 taken\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { addr, commands }
    }

    fn mail_commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().iter().filter(|c| c.to_ascii_uppercase().starts_with("MAIL FROM")).cloned().collect()
    }

    fn route(&self, domain: &str) -> RouteConfig {
        RouteConfig { domain: domain.into(), host: "127.0.0.1".into(), port: self.addr.port(), tls: OutboundTls::Disabled, ..Default::default() }
    }
}

/// DSNs to the submitter (app@sender.test) and mail to dest.test go to the sink.
const ZONE: &str = "sender.test. MX 10 mx.dest.test.\ndest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n";

/// Submits `message` with `MAIL FROM:<app@sender.test>` plus `params`;
/// the relay id.
async fn submit(w: &World, params: &str, rcpt: &str, message: &[u8]) -> herald::id::MessageId {
    let mut c = w.relay.authed().await;
    for command in [format!("MAIL FROM:<app@sender.test>{params}"), format!("RCPT TO:<{rcpt}>"), "DATA".into()] {
        let r = c.command(&command).await.unwrap();
        assert!(r.code == 250 || r.code == 354, "{command}: {r:?}");
    }
    c.send_raw(message).await.unwrap();
    support::queued_id(&c.read_reply().await.unwrap())
}

const UTF8_MESSAGE: &[u8] = "From: Bücherei <billing@sender.test>\r\nTo: <x@utf8.test>\r\nSubject: Rechnung für März\r\n\r\nGrüße\r\n.\r\n".as_bytes();

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_submission_is_relayed_with_smtputf8() {
    let receiver = Receiver::start(true).await;
    let route = receiver.route("utf8.test");
    let w = World::start(ZONE, move |c| c.routes.push(route)).await;
    let id = submit(&w, " SMTPUTF8", "x@utf8.test", UTF8_MESSAGE).await;
    assert!(w.store().find(&id).unwrap().unwrap().smtputf8, "the submission's SMTPUTF8 is recorded");
    w.finished(&id).await;
    let mails = receiver.mail_commands();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].starts_with(&format!("MAIL FROM:<bounces+{id}@bounces.relay.test>")) && mails[0].ends_with(" SMTPUTF8"), "{mails:?}");
    assert!(mails[0].contains("BODY=8BITMIME"), "{mails:?}");

    // Without SMTPUTF8 at submission, an ASCII message goes out without it.
    let ascii = b"From: <billing@sender.test>\r\nTo: <x@utf8.test>\r\nSubject: plain\r\n\r\nhi\r\n.\r\n";
    let id = submit(&w, "", "x@utf8.test", ascii).await;
    w.finished(&id).await;
    let mails = receiver.mail_commands();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(!mails[1].contains("SMTPUTF8"), "{mails:?}");
    // With it, even an ASCII message is relayed as it was submitted.
    let id = submit(&w, " SMTPUTF8", "x@utf8.test", ascii).await;
    w.finished(&id).await;
    let mails = receiver.mail_commands();
    assert_eq!(mails.len(), 3, "{mails:?}");
    assert!(mails[2].ends_with(" SMTPUTF8"), "{mails:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_without_smtputf8_fails_the_message_permanently_with_a_global_dsn() {
    let receiver = Receiver::start(false).await;
    let route = receiver.route("utf8.test");
    let w = World::start(ZONE, move |c| c.routes.push(route)).await;
    let id = submit(&w, " SMTPUTF8", "x@utf8.test", UTF8_MESSAGE).await;
    let record = w.finished(&id).await;
    let rcpt = &record.recipients[0];
    assert_eq!(rcpt.status, herald::store::RcptStatus::Failed, "{rcpt:?}");
    assert!(rcpt.attempts.last().unwrap().reply.starts_with("550 5.6.7 the receiving server does not offer SMTPUTF8"), "{rcpt:?}");
    assert!(receiver.mail_commands().is_empty(), "nothing may be sent: {:?}", receiver.commands.lock().unwrap());

    // The DSN reaches the submitter (through the sink), in RFC 6533 types.
    wait_until("no DSN reached the sink", || w.sink.received().iter().any(|m| m.mail_from.is_empty())).await;
    let dsn = w.sink.received().into_iter().find(|m| m.mail_from.is_empty()).unwrap();
    assert_eq!(dsn.rcpts, ["app@sender.test"]);
    let text = String::from_utf8_lossy(&dsn.data);
    for want in [
        "report-type=global-delivery-status",
        "Content-Type: message/global-delivery-status\r\n",
        "Content-Type: message/global-headers\r\n",
        "Final-Recipient: rfc822; x@utf8.test\r\nAction: failed\r\nStatus: 5.6.7\r\n",
        "Subject: Rechnung für März\r\n",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert!(!text.contains("message/delivery-status"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lf_only_message_is_delivered_with_crlf_and_a_signature_that_verifies() {
    let w = World::start(ZONE, |_| {}).await;
    let id = submit(&w, "", "payer@dest.test", b"From: Acme <billing@sender.test>\nTo: <payer@dest.test>\nSubject: from curl\n\nline one\n..dotted\nend\r\n.\r\n").await;
    w.finished(&id).await;
    let m = w.sink.received().into_iter().find(|m| m.mail_from.contains(id.as_str())).unwrap();
    assert!(herald::message::find_forbidden(&m.data).is_none(), "{:?}", String::from_utf8_lossy(&m.data));
    assert!(m.data.ends_with(b"\r\nSubject: from curl\r\n\r\nline one\r\n.dotted\r\nend\r\n"), "{:?}", String::from_utf8_lossy(&m.data));
    let auth = herald::dns::Dns::from_config(&w.dns.config()).unwrap().authenticator();
    let parsed = mail_auth::AuthenticatedMessage::parse(&m.data).unwrap();
    let results = auth.verify_dkim(&parsed).await;
    assert_eq!(results[0].result(), &mail_auth::DkimResult::Pass);
}
