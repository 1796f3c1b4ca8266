//! The receiving sink (`herald::bench::sink`) spoken to over loopback with
//! the bench client: one test per recipient behaviour, plus STARTTLS,
//! pipelining and connection counting.

use herald::bench::client::{Client, ClientReply, tls_trusting};
use herald::bench::sink::{Sink, SinkConfig};
use std::time::{Duration, Instant};
use tokio_rustls::TlsAcceptor;

async fn start(tls: Option<TlsAcceptor>, keep_messages: bool) -> Sink {
    let config = SinkConfig { addr: "127.0.0.1:0".parse().unwrap(), hostname: "mx.sink.test".into(), tls, keep_messages };
    Sink::start(config).await.unwrap()
}

/// Connects and says EHLO.
async fn session(sink: &Sink) -> Client {
    let (mut c, greeting) = Client::connect(sink.addr()).await.unwrap();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(c.ehlo("relay.test").await.unwrap().code, 250);
    c
}

const BODY: &[u8] = b"From: <a@customer.example>\r\nSubject: hi\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nnon-ASCII: \xc3\xa9\r\nlast\r\n";

async fn send(c: &mut Client, rcpts: &[&str]) -> ClientReply {
    c.send_message("a@customer.example", rcpts, BODY).await.unwrap()
}

#[tokio::test]
async fn accepts_and_records_byte_for_byte() {
    let sink = start(None, true).await;
    let (mut c, greeting) = Client::connect(sink.addr()).await.unwrap();
    assert!(greeting.text().starts_with("mx.sink.test"), "{greeting:?}");
    let ehlo = c.ehlo("relay.test").await.unwrap();
    for ext in ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.lines.iter().any(|l| l == ext), "{ext} missing: {ehlo:?}");
    }
    assert!(ehlo.lines.iter().any(|l| l.starts_with("SIZE")), "{ehlo:?}");
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");

    let r = send(&mut c, &["payer@sink.example", "second@sink.example"]).await;
    assert_eq!((r.code, r.status()), (250, Some("2.0.0")), "{r:?}");
    assert_eq!(c.command("QUIT").await.unwrap().code, 221);
    assert!(c.is_closed().await);

    assert_eq!(sink.count(), 1);
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, BODY);
    assert_eq!(got[0].mail_from, "a@customer.example");
    assert_eq!(got[0].rcpts, ["payer@sink.example", "second@sink.example"]);
    assert_eq!(got[0].helo, "relay.test");
    assert!(!got[0].tls);
}

#[tokio::test]
async fn tempfail_counts_per_address_across_connections() {
    let sink = start(None, true).await;
    let addr = "tempfail-2-abc@sink.example";
    let mut c = session(&sink).await;
    assert_eq!(c.command("MAIL FROM:<a@x.example>").await.unwrap().code, 250);
    let r = c.command(&format!("RCPT TO:<{addr}>")).await.unwrap();
    assert_eq!((r.code, r.text().as_str()), (451, "4.3.0 try again later"));
    // Another tempfail address has its own count.
    assert_eq!(c.command("RCPT TO:<tempfail-2-other@sink.example>").await.unwrap().code, 451);
    assert_eq!(c.command("QUIT").await.unwrap().code, 221);

    let mut c = session(&sink).await;
    assert_eq!(c.command("MAIL FROM:<a@x.example>").await.unwrap().code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{addr}>")).await.unwrap().code, 451);
    assert_eq!(c.command(&format!("RCPT TO:<{addr}>")).await.unwrap().code, 250);
    assert_eq!(c.command("RSET").await.unwrap().code, 250);
    assert_eq!(send(&mut c, &[addr]).await.code, 250);
    assert_eq!(sink.received()[0].rcpts, [addr]);
    assert_eq!(sink.connections(), 2);
}

#[tokio::test]
async fn reject_refuses_only_that_recipient() {
    let sink = start(None, true).await;
    let mut c = session(&sink).await;
    let r = send(&mut c, &["reject-1@sink.example"]).await;
    assert_eq!((r.code, r.text().as_str()), (550, "5.1.1 no such user"));
    assert_eq!(sink.count(), 0);
    assert_eq!(send(&mut c, &["reject-1@sink.example", "ok@sink.example"]).await.code, 250);
    assert_eq!(sink.received()[0].rcpts, ["ok@sink.example"]);
}

#[tokio::test]
async fn datafail_and_tempdata_refuse_the_message() {
    let sink = start(None, true).await;
    let mut c = session(&sink).await;
    let r = send(&mut c, &["datafail@sink.example"]).await;
    assert_eq!((r.code, r.text().as_str()), (554, "5.6.0 content rejected"));
    let r = send(&mut c, &["tempdata@sink.example"]).await;
    assert_eq!((r.code, r.text().as_str()), (452, "4.3.1 insufficient storage"));
    // The worst outcome among accepted recipients decides.
    assert_eq!(send(&mut c, &["ok@sink.example", "datafail@sink.example", "tempdata@sink.example"]).await.code, 554);
    assert_eq!(send(&mut c, &["slow-10@sink.example", "tempdata@sink.example"]).await.code, 452);
    assert_eq!(sink.count(), 0);
    // The connection is still good.
    assert_eq!(send(&mut c, &["ok@sink.example"]).await.code, 250);
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn drop_closes_mid_data_and_records_nothing() {
    let sink = start(None, true).await;
    let mut c = session(&sink).await;
    // drop beats datafail.
    let r = c.send_message("a@x.example", &["ok@sink.example", "datafail@sink.example", "drop@sink.example"], BODY).await;
    assert!(r.is_err(), "{r:?}");
    assert!(c.is_closed().await);
    assert_eq!(sink.count(), 0);
    assert!(sink.received().is_empty());
    // The sink itself goes on.
    let mut c = session(&sink).await;
    assert_eq!(send(&mut c, &["ok@sink.example"]).await.code, 250);
}

#[tokio::test]
async fn slow_delays_the_reply_to_data() {
    let sink = start(None, true).await;
    let mut c = session(&sink).await;
    let t = Instant::now();
    let r = send(&mut c, &["slow-300-x@sink.example", "ok@sink.example"]).await;
    assert_eq!(r.code, 250);
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn starttls_is_offered_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    herald::tls::generate_self_signed("localhost", &cert, &key, std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64).unwrap();
    let sink = start(Some(herald::tls::acceptor(&cert, &key).unwrap()), true).await;

    let (mut c, _) = Client::connect(sink.addr()).await.unwrap();
    let ehlo = c.ehlo("plain.test").await.unwrap();
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    let mut c = c.starttls(&tls_trusting(&cert).unwrap(), "localhost").await.unwrap();
    // RFC 3207: the client must say hello again.
    assert_eq!(c.command("MAIL FROM:<a@x.example>").await.unwrap().code, 503);
    let ehlo = c.ehlo("tls.test").await.unwrap();
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert_eq!(c.command("STARTTLS").await.unwrap().code, 503);
    assert_eq!(send(&mut c, &["ok@sink.example"]).await.code, 250);

    let got = sink.received();
    assert!(got[0].tls);
    assert_eq!(got[0].helo, "tls.test");
    assert_eq!(got[0].data, BODY);
}

#[tokio::test]
async fn starttls_refused_when_not_configured() {
    let sink = start(None, true).await;
    let mut c = session(&sink).await;
    assert_eq!(c.command("STARTTLS").await.unwrap().code, 502);
}

#[tokio::test]
async fn pipelined_groups_get_every_reply() {
    let sink = start(None, true).await;
    let mut c = session(&sink).await;
    c.send_raw(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@sink.example>\r\nRCPT TO:<reject@sink.example>\r\nDATA\r\n").await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.read_reply().await.unwrap().code);
    }
    assert_eq!(codes, [250, 250, 550, 354]);
    // The end of one message pipelined with the next transaction.
    c.send_raw(b"one\r\n.\r\nMAIL FROM:<c@x.example>\r\nRCPT TO:<d@sink.example>\r\nDATA\r\n").await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.read_reply().await.unwrap().code);
    }
    assert_eq!(codes, [250, 250, 250, 354]);
    c.send_raw(b"two\r\n.\r\nNOOP\r\nQUIT\r\n").await.unwrap();
    for want in [250, 250, 221] {
        assert_eq!(c.read_reply().await.unwrap().code, want);
    }
    let got = sink.received();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].mail_from.as_str(), got[0].rcpts.as_slice(), got[0].data.as_slice()), ("a@x.example", &["b@sink.example".to_string()][..], &b"one\r\n"[..]));
    assert_eq!((got[1].mail_from.as_str(), got[1].rcpts.as_slice(), got[1].data.as_slice()), ("c@x.example", &["d@sink.example".to_string()][..], &b"two\r\n"[..]));
}

#[tokio::test]
async fn commands_out_of_order_are_refused() {
    let sink = start(None, true).await;
    let (mut c, _) = Client::connect(sink.addr()).await.unwrap();
    assert_eq!(c.command("MAIL FROM:<a@x.example>").await.unwrap().code, 503);
    assert_eq!(c.command("HELO old.test").await.unwrap().code, 250);
    assert_eq!(c.command("RCPT TO:<b@sink.example>").await.unwrap().code, 503);
    assert_eq!(c.command("DATA").await.unwrap().code, 503);
    assert_eq!(c.command("MAIL FROM:<a@x.example>").await.unwrap().code, 250);
    // No valid recipients: refused, and the transaction is over.
    assert_eq!(c.command("DATA").await.unwrap().code, 554);
    assert_eq!(c.command("NOOP").await.unwrap().code, 250);
    assert_eq!(c.command("BOGUS").await.unwrap().code, 500);
    assert_eq!(c.command("MAIL FROM:<a@x.example> SIZE=999999999999").await.unwrap().code, 552);
    assert_eq!(c.command("MAIL FROM:<a@x.example>").await.unwrap().code, 250);
    assert_eq!(c.command("MAIL FROM:<a@x.example>").await.unwrap().code, 503);
    assert_eq!(c.command("RSET").await.unwrap().code, 250);
    assert_eq!(send(&mut c, &["b@sink.example"]).await.code, 250);
    assert_eq!(sink.received()[0].helo, "old.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_connections_and_messages_under_load() {
    let sink = start(None, false).await;
    let addr = sink.addr();
    let mut tasks = Vec::new();
    for i in 0..60 {
        tasks.push(tokio::spawn(async move {
            let (mut c, _) = Client::connect(addr).await.unwrap();
            c.ehlo("load.test").await.unwrap();
            for j in 0..5 {
                let body = herald::bench::invoice("a@x.example", "p@sink.example", 4096, i * 5 + j);
                assert_eq!(c.send_message("a@x.example", &["p@sink.example"], &body).await.unwrap().code, 250);
            }
            c.command("QUIT").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(sink.wait_for(300, Duration::from_secs(5)).await);
    assert_eq!(sink.count(), 300);
    assert_eq!(sink.connections(), 60);
    assert!(sink.received().is_empty(), "keep_messages is off");
    assert!(!sink.wait_for(301, Duration::from_millis(100)).await);
}

#[tokio::test]
async fn wait_for_sees_later_messages() {
    let sink = start(None, true).await;
    let addr = sink.addr();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut c, _) = Client::connect(addr).await.unwrap();
        c.ehlo("later.test").await.unwrap();
        c.send_message("a@x.example", &["ok@sink.example"], BODY).await.unwrap().code
    });
    assert!(sink.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(sender.await.unwrap(), 250);
}

#[tokio::test]
async fn stop_closes_connections_and_listener() {
    let sink = start(None, true).await;
    let addr = sink.addr();
    let mut c = session(&sink).await;
    sink.stop();
    assert!(c.is_closed().await);
    assert!(Client::connect(addr).await.is_err());
}
