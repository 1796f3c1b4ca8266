//! SMTP submission over real sockets and real TLS on loopback.

mod support;

use herald::bench::client::Client;
use support::*;

#[tokio::test]
async fn starttls_auth_message_is_stored_byte_for_byte() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    let body = message("invoice@customer.example", "t1");
    let reply = c.send_message("invoice@customer.example", &["payer@example.net", "second@example.org"], &body).await.unwrap();
    let id = queued_id(&reply);
    assert_eq!(reply.status(), Some("2.0.0"));

    let store = &relay.running().store;
    assert_eq!(store.body(&id).unwrap().unwrap().as_slice(), body.as_slice(), "stored bytes differ from submitted bytes");
    let record = store.message(&id).unwrap().unwrap();
    assert_eq!(record.mail_from, "invoice@customer.example");
    assert_eq!(record.from_domain, "customer.example");
    assert_eq!(record.auth_user.as_deref(), Some(USER));
    assert!(record.tls);
    let rcpts: Vec<_> = record.recipients.iter().map(|r| (r.address.as_str(), r.status)).collect();
    assert_eq!(rcpts, [("payer@example.net", herald::store::RcptStatus::Queued), ("second@example.org", herald::store::RcptStatus::Queued)]);
    assert!(record.received_header.contains(&format!("with ESMTPSA id {id}")), "{}", record.received_header);
    // Queued: in the due index, or out on its first round from memory
    // (kept out of the index until its outcome is written).
    let due = store.due(i64::MAX, 10).unwrap().into_iter().map(|(_, id)| id);
    assert_eq!(due.chain(store.held()).filter(|m| *m == id).count(), 1, "message must be queued once");
}

#[tokio::test]
async fn implicit_tls_submission() {
    let relay = TestRelay::start().await;
    let (mut c, greeting) = Client::connect_tls(relay.implicit_addr(), &relay.tls, "localhost").await.unwrap();
    assert_eq!(greeting.code, 220);
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "no STARTTLS on implicit TLS: {ehlo:?}");
    assert!(ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo:?}");
    assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 235);
    let id = queued_id(&c.send_message("a@customer.example", &["b@example.net"], &message("a@customer.example", "t2")).await.unwrap());
    assert!(relay.running().store.message(&id).unwrap().unwrap().tls);
}

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let relay = TestRelay::start().await;
    let (mut c, _) = Client::connect(relay.starttls_addr()).await.unwrap();
    let ehlo = c.ehlo("client.test").await.unwrap();
    for ext in ["PIPELINING", "SIZE 200000", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "STARTTLS"] {
        assert!(ehlo.lines.iter().any(|l| l == ext), "missing {ext} in {ehlo:?}");
    }
    assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")), "AUTH must not be offered before TLS: {ehlo:?}");
}

#[tokio::test]
async fn auth_before_starttls_is_refused() {
    let relay = TestRelay::start().await;
    let (mut c, _) = Client::connect(relay.starttls_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let r = c.auth_plain(USER, PASSWORD).await.unwrap();
    assert_eq!((r.code, r.status()), (538, Some("5.7.11")), "{r:?}");
    let r = c.command("MAIL FROM:<a@customer.example>").await.unwrap();
    assert_eq!((r.code, r.status()), (530, Some("5.7.0")), "{r:?}");
}

#[tokio::test]
async fn auth_allowed_without_tls_when_configured() {
    let relay = TestRelay::start_with(|c| c.listeners[0].allow_auth_without_tls = true).await;
    let (mut c, _) = Client::connect(relay.starttls_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 235);
}

#[tokio::test]
async fn auth_login_mechanism() {
    let relay = TestRelay::start().await;
    let mut c = relay.tls_client().await;
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(c.command("AUTH LOGIN").await.unwrap().code, 334);
    assert_eq!(c.command(&b64(USER)).await.unwrap().code, 334);
    assert_eq!(c.command(&b64(PASSWORD)).await.unwrap().code, 235);
}

#[tokio::test]
async fn wrong_password_is_refused_then_the_connection_dropped() {
    let relay = TestRelay::start().await; // max_auth_failures = 2
    let mut c = relay.tls_client().await;
    let r = c.auth_plain(USER, "wrong").await.unwrap();
    assert_eq!((r.code, r.status()), (535, Some("5.7.8")), "{r:?}");
    // The last allowed failure gets its own verdict, then the goodbye.
    let r = c.auth_plain("nobody", PASSWORD).await.unwrap();
    assert_eq!((r.code, r.status()), (535, Some("5.7.8")), "{r:?}");
    let r = c.read_reply().await.unwrap();
    assert_eq!((r.code, r.status()), (421, Some("4.7.0")), "{r:?}");
    assert!(c.is_closed().await, "connection must be closed after the configured number of failures");
}

#[tokio::test]
async fn unauthenticated_relaying_is_refused() {
    let relay = TestRelay::start().await;
    let mut c = relay.tls_client().await;
    let r = c.command("MAIL FROM:<a@customer.example>").await.unwrap();
    assert_eq!((r.code, r.status()), (530, Some("5.7.0")), "{r:?}");
    let r = c.command("RCPT TO:<victim@example.net>").await.unwrap();
    assert_eq!((r.code, r.status()), (503, Some("5.5.1")), "{r:?}");
    let r = c.command("DATA").await.unwrap();
    assert_eq!(r.code, 503, "{r:?}");
    assert_eq!(relay.running().store.messages().count(), 0);
}

#[tokio::test]
async fn allowed_network_submits_without_auth() {
    let relay = TestRelay::start_with(|c| c.relay.allow_networks = vec!["127.0.0.0/8".into()]).await;
    let (mut c, _) = Client::connect(relay.starttls_addr()).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let reply = c.send_message("a@customer.example", &["b@example.net"], &message("a@customer.example", "t3")).await.unwrap();
    let record = relay.running().store.message(&queued_id(&reply)).unwrap().unwrap();
    assert_eq!(record.auth_user, None);
}

/// Each sequence a smuggler might use as an end of data.
const SMUGGLING: &[&[u8]] = &[b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r\n\x00.\r\n", b"\r.\r\n", b"\n.\r", b"\r\n.\n", b"\r\n.\r\r\n"];

/// A message whose first part ends in `seq`, followed by the commands of a
/// second, smuggled transaction and a real end of data.
fn smuggling_data(seq: &[u8]) -> Vec<u8> {
    let mut data = b"From: a@customer.example\r\nSubject: s\r\n\r\nfirst".to_vec();
    data.extend_from_slice(seq);
    data.extend_from_slice(b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: evil@customer.example\r\n\r\nsmuggled\r\n.\r\n");
    data
}

/// With `limits.bare_newline = "reject"` none of the sequences may end
/// DATA; the message holding one is refused as a whole and the commands
/// hidden behind it are never executed.
#[tokio::test]
async fn smuggling_sequences_do_not_end_data_and_are_refused() {
    let relay = TestRelay::start_with(|c| c.limits.bare_newline = herald::config::BareNewline::Reject).await;
    let sequences = SMUGGLING;
    let mut c = relay.authed().await;
    for seq in sequences {
        for r in ["MAIL FROM:<a@customer.example>", "RCPT TO:<b@example.net>", "DATA"] {
            let reply = c.command(r).await.unwrap();
            assert!(reply.code == 250 || reply.code == 354, "{r}: {reply:?}");
        }
        c.send_raw(&smuggling_data(seq)).await.unwrap();
        let r = c.read_reply().await.unwrap();
        assert_eq!((r.code, r.status()), (550, Some("5.5.2")), "sequence {:?}: {r:?}", String::from_utf8_lossy(seq));
        // The next reply must answer our NOOP, not a smuggled command.
        let r = c.command("NOOP").await.unwrap();
        assert_eq!(r.code, 250, "sequence {:?}: {r:?}", String::from_utf8_lossy(seq));
    }
    assert_eq!(relay.running().store.messages().count(), 0, "nothing may be queued");
}

/// With the default `normalize`, a sequence made of bare LFs ends no
/// DATA either: the whole input is one message whose lines end in CRLF,
/// the smuggled commands are its content. Bare CR and NUL are refused.
#[tokio::test]
async fn smuggling_sequences_stay_inside_one_message_when_normalized() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    let store = &relay.running().store;
    for seq in SMUGGLING {
        let before = store.messages().count();
        for r in ["MAIL FROM:<a@customer.example>", "RCPT TO:<b@example.net>", "DATA"] {
            let reply = c.command(r).await.unwrap();
            assert!(reply.code == 250 || reply.code == 354, "{r}: {reply:?}");
        }
        c.send_raw(&smuggling_data(seq)).await.unwrap();
        let r = c.read_reply().await.unwrap();
        let shown = String::from_utf8_lossy(seq);
        if seq.iter().enumerate().any(|(i, &b)| b == 0 || (b == b'\r' && seq.get(i + 1) != Some(&b'\n'))) {
            assert_eq!((r.code, r.status()), (550, Some("5.5.2")), "sequence {shown:?}: {r:?}");
            assert_eq!(store.messages().count(), before, "sequence {shown:?}");
        } else {
            let id = queued_id(&r);
            assert_eq!(store.messages().count(), before + 1, "sequence {shown:?}: exactly one message");
            let body = store.body(&id).unwrap().unwrap();
            let text = String::from_utf8_lossy(&body);
            assert!(text.starts_with("From: a@customer.example\r\nSubject: s\r\n\r\nfirst\r\n"), "sequence {shown:?}: {text:?}");
            assert!(text.contains("\r\nMAIL FROM:<evil@attacker.example>\r\n") && text.ends_with("\r\nsmuggled\r\n"), "sequence {shown:?}: {text:?}");
            assert!(herald::message::find_forbidden(&body).is_none(), "sequence {shown:?}: {text:?}");
        }
        let r = c.command("NOOP").await.unwrap();
        assert_eq!(r.code, 250, "sequence {shown:?}: {r:?}");
    }
}

/// An LF-only message (curl with an LF file, some PHP mailers) is taken
/// and stored with CRLF line ends, dot-unstuffed.
#[tokio::test]
async fn lf_only_message_is_stored_with_crlf() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    for r in ["MAIL FROM:<a@customer.example>", "RCPT TO:<b@example.net>", "DATA"] {
        c.command(r).await.unwrap();
    }
    c.send_raw(b"From: a@customer.example\nSubject: lf\n\nline\n..dotted\nend\r\n.\r\n").await.unwrap();
    let id = queued_id(&c.read_reply().await.unwrap());
    let stored = relay.running().store.body(&id).unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&stored), "From: a@customer.example\r\nSubject: lf\r\n\r\nline\r\n.dotted\r\nend\r\n");
}

/// A line over 998 bytes (RFC 5322 §2.1.1) is refused at once, naming
/// the line and the limit; 998 is taken.
#[tokio::test]
async fn line_over_998_bytes_is_refused_with_550_5_6_0() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    let cases = [(998, 250, None), (999, 550, Some("line 2 is 999 bytes long; the limit is 998 bytes")), (100_000, 550, Some("line 2 is 100000 bytes long"))];
    for (len, code, words) in cases {
        let body = format!("From: a@customer.example\r\nX-Long: {}\r\n\r\nbody\r\n", "a".repeat(len - 8));
        let r = c.send_message("a@customer.example", &["b@example.net"], body.as_bytes()).await.unwrap();
        assert_eq!(r.code, code, "{len}: {r:?}");
        if let Some(words) = words {
            assert_eq!(r.status(), Some("5.6.0"), "{r:?}");
            assert!(r.text().contains(words), "{len}: {r:?}");
        }
    }
}

/// DATA fed in small chunks still ends only at CRLF.CRLF.
#[tokio::test]
async fn data_in_chunks() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    for r in ["MAIL FROM:<a@customer.example>", "RCPT TO:<b@example.net>", "DATA"] {
        c.command(r).await.unwrap();
    }
    let body = b"From: a@customer.example\r\nSubject: chunks\r\n\r\nline\r\n..dotted\r\nend\r\n.\r\n";
    for chunk in body.chunks(3) {
        c.send_raw(chunk).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let id = queued_id(&c.read_reply().await.unwrap());
    let stored = relay.running().store.body(&id).unwrap().unwrap();
    assert_eq!(stored.as_slice(), b"From: a@customer.example\r\nSubject: chunks\r\n\r\nline\r\n.dotted\r\nend\r\n");
}

#[tokio::test]
async fn from_header_rule() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    let cases: [(&str, &str); 4] = [
        ("To: b@example.net\r\nSubject: none\r\n\r\nx\r\n", "no From header"),
        ("From: a@customer.example, c@customer.example\r\n\r\nx\r\n", "2 addresses"),
        ("From: a@customer.example\r\nFrom: c@customer.example\r\n\r\nx\r\n", "2 From headers"),
        ("From: undisclosed:;\r\n\r\nx\r\n", "no address"),
    ];
    for (body, words) in cases {
        let r = c.send_message("a@customer.example", &["b@example.net"], body.as_bytes()).await.unwrap();
        assert_eq!((r.code, r.status()), (550, Some("5.6.0")), "{body:?}: {r:?}");
        assert!(r.text().contains(words), "reply should name the problem ({words}): {r:?}");
    }
    assert_eq!(relay.running().store.messages().count(), 0);
}

#[tokio::test]
async fn oversize_is_refused_with_552() {
    let relay = TestRelay::start().await; // max_message_size = 200000
    let mut c = relay.authed().await;
    let r = c.command("MAIL FROM:<a@customer.example> SIZE=300000").await.unwrap();
    assert_eq!((r.code, r.status()), (552, Some("5.3.4")), "{r:?}");
    let mut body = message("a@customer.example", "big");
    body.extend(std::iter::repeat_n(b"x".repeat(98).into_iter().chain(*b"\r\n"), 2100).flatten());
    let r = c.send_message("a@customer.example", &["b@example.net"], &body).await.unwrap();
    assert_eq!((r.code, r.status()), (552, Some("5.3.4")), "{r:?}");
    // The session is still usable and in sync.
    let id = queued_id(&c.send_message("a@customer.example", &["b@example.net"], &message("a@customer.example", "small")).await.unwrap());
    assert_eq!(relay.running().store.messages().count(), 1);
    assert!(relay.running().store.message(&id).unwrap().is_some());
}

#[tokio::test]
async fn too_many_recipients_get_452() {
    let relay = TestRelay::start().await; // max_recipients = 5
    let mut c = relay.authed().await;
    assert_eq!(c.command("MAIL FROM:<a@customer.example>").await.unwrap().code, 250);
    for i in 0..5 {
        assert_eq!(c.command(&format!("RCPT TO:<r{i}@example.net>")).await.unwrap().code, 250);
    }
    let r = c.command("RCPT TO:<r5@example.net>").await.unwrap();
    assert_eq!((r.code, r.status()), (452, Some("4.5.3")), "{r:?}");
}

#[tokio::test]
async fn overlong_command_line_is_refused() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    let r = c.command(&format!("NOOP {}", "x".repeat(3000))).await.unwrap();
    assert_eq!((r.code, r.status()), (500, Some("5.5.2")), "{r:?}");
    assert_eq!(c.command("NOOP").await.unwrap().code, 250);
}

#[tokio::test]
async fn bad_sequences_and_syntax() {
    let relay = TestRelay::start().await;
    let (mut c, _) = Client::connect(relay.starttls_addr()).await.unwrap();
    let r = c.command("MAIL FROM:<a@customer.example>").await.unwrap();
    assert_eq!((r.code, r.status()), (503, Some("5.5.1")), "MAIL before EHLO: {r:?}");
    assert_eq!(c.command("FOO").await.unwrap().code, 500);
    assert_eq!(c.command("BDAT 10 LAST").await.unwrap().code, 502);
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn connection_limit_answers_421() {
    let relay = TestRelay::start_with(|c| c.limits.max_connections = 1).await;
    let (_first, g) = Client::connect(relay.starttls_addr()).await.unwrap();
    assert_eq!(g.code, 220);
    let (_second, g) = Client::connect(relay.starttls_addr()).await.unwrap();
    assert_eq!((g.code, g.status()), (421, Some("4.7.0")), "{g:?}");
}

#[tokio::test]
async fn idle_session_times_out_with_421() {
    let relay = TestRelay::start_with(|c| c.limits.command_timeout_secs = 1).await;
    let (mut c, _) = Client::connect(relay.starttls_addr()).await.unwrap();
    let r = c.read_reply().await.unwrap();
    assert_eq!((r.code, r.status()), (421, Some("4.4.2")), "{r:?}");
}

/// A session in the middle of DATA when shutdown begins still gets its
/// message queued and its 250; idle sessions are told 421.
#[tokio::test]
async fn graceful_shutdown_finishes_data() {
    let mut relay = TestRelay::start().await;
    let mut busy = relay.authed().await;
    let mut idle = relay.authed().await;
    for r in ["MAIL FROM:<a@customer.example>", "RCPT TO:<b@example.net>", "DATA"] {
        busy.command(r).await.unwrap();
    }
    busy.send_raw(b"From: a@customer.example\r\nSubject: late\r\n\r\nhalf").await.unwrap();
    let store = relay.running().store.clone();
    let stopping = tokio::spawn({
        let running = relay.running.take().unwrap();
        async move { running.shutdown().await }
    });
    let r = idle.read_reply().await.unwrap();
    assert_eq!((r.code, r.status()), (421, Some("4.3.2")), "{r:?}");
    busy.send_raw(b" done\r\n.\r\n").await.unwrap();
    let id = queued_id(&busy.read_reply().await.unwrap());
    stopping.await.unwrap();
    assert!(store.message(&id).unwrap().is_some());
    relay.stop().await;
}

/// Valid RFC 5321/5322 addresses are accepted end to end: a quoted local
/// part in the envelope and bare in From, an address literal as sender.
#[tokio::test]
async fn quoted_local_parts_and_address_literals() {
    let relay = TestRelay::start().await;
    let mut c = relay.authed().await;
    let cases = [
        ("a@[127.0.0.1]", "From: \"john doe\"@customer.example\r\nSubject: q\r\n\r\nx\r\n", "\"john doe\"@customer.example"),
        ("\"john doe\"@customer.example", "From: John <\"john doe\"@customer.example>\r\n\r\nx\r\n", "\"john doe\"@customer.example"),
        ("a@[IPv6:::1]", "From: a@customer.example\r\n\r\nx\r\n", "a@customer.example"),
    ];
    for (sender, body, from) in cases {
        let reply = c.send_message(sender, &["\"payer x\"@example.net"], body.as_bytes()).await.unwrap();
        let record = relay.running().store.message(&queued_id(&reply)).unwrap().unwrap();
        assert_eq!((record.mail_from.as_str(), record.from_address.as_str(), record.from_domain.as_str()), (sender, from, "customer.example"));
        assert_eq!(record.recipients[0].address, "\"payer x\"@example.net");
    }
    let r = c.command("MAIL FROM:<a@[127.0.0.256]>").await.unwrap();
    assert_eq!((r.code, r.status()), (501, Some("5.1.7")), "{r:?}");
    assert_eq!(c.command("MAIL FROM:<a@customer.example>").await.unwrap().code, 250);
    let r = c.command("RCPT TO:<b@[192.0.2.1]>").await.unwrap();
    assert_eq!((r.code, r.status()), (550, Some("5.1.2")), "{r:?}");
}

/// `limits.max_concurrent_data`: with one slot, a second session's DATA is
/// answered `354` only once the first message has its `250`; and a
/// message that stalls keeps its slot only for the lease (1 s), not until
/// `data_timeout_secs`, so it cannot hold the door shut for the others.
#[tokio::test]
async fn data_waits_for_a_slot_and_a_stalled_message_gives_its_slot_up() {
    use std::time::{Duration, Instant};
    let relay = TestRelay::start_with(|c| c.limits.max_concurrent_data = 1).await;
    let mut a = relay.authed().await;
    let mut b = relay.authed().await;
    let open = async |c: &mut Client, subject: &str| {
        assert_eq!(c.command("MAIL FROM:<invoice@customer.example>").await.unwrap().code, 250);
        assert_eq!(c.command("RCPT TO:<payer@example.net>").await.unwrap().code, 250, "{subject}");
    };
    let body = |subject: &str| herald::bench::client::dot_stuff(&message("invoice@customer.example", subject));

    open(&mut a, "a1").await;
    open(&mut b, "b1").await;
    assert_eq!(a.command("DATA").await.unwrap().code, 354);
    b.send_raw(b"DATA\r\n").await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), b.read_reply()).await;
    assert!(early.is_err(), "the only slot is taken: no 354 yet, got {early:?}");
    a.send_raw(&body("a1")).await.unwrap();
    queued_id(&a.read_reply().await.unwrap());
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), b.read_reply()).await.unwrap().unwrap().code, 354, "the slot came free with a's 250");

    // b now holds the slot and sends nothing.
    open(&mut a, "a2").await;
    let asked = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), a.command("DATA")).await.expect("a stalled message holds its slot no longer than its lease").unwrap();
    let waited = asked.elapsed();
    assert_eq!(r.code, 354);
    assert!(waited >= Duration::from_millis(900), "a waited for the lease to end: {waited:?}");
    // Both messages still arrive whole.
    a.send_raw(&body("a2")).await.unwrap();
    b.send_raw(&body("b1")).await.unwrap();
    let (ra, rb) = (a.read_reply().await.unwrap(), b.read_reply().await.unwrap());
    for id in [queued_id(&ra), queued_id(&rb)] {
        assert!(relay.running().store.body(&id).unwrap().is_some(), "{id} stored");
    }
}
