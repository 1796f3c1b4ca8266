//! Reading one command line, shared by every SMTP server in herald: the
//! smtp-proto receiver plus the `limits.max_line_length` check and the
//! refusal of control characters.
//!
//! A NUL or another control byte in a command is never legitimate (RFC
//! 5321 §4.1.2 builds commands from printable ASCII, UTF-8 with
//! SMTPUTF8, SP and CRLF) and, echoed in a reply (`250 greets a\0b`),
//! confuses the client's parser or its logs. Such a line is answered
//! `501 5.5.2` without quoting it.

use super::Reply;
use super::reply::common;
use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{Error as ParseError, Request};
use std::borrow::Cow;

/// What the bytes read so far amount to.
pub enum Command<'o> {
    Request(Request<Cow<'o, str>>),
    /// The line is not complete yet: read more.
    Incomplete,
    /// The line could not be used; answer this and go on.
    Refuse(Reply),
    /// An unfinished line is already over the limit: answer and close.
    Overlong(Reply),
    /// The line held a control byte: answer [`control_refused`], go on.
    Control,
    /// MAIL or RCPT with a quoted local part or an address literal, which
    /// smtp-proto unquotes or refuses: parse `line` (the command with a
    /// stand-in address) and put `path` (the address as sent) back in.
    Path { line: Vec<u8>, path: String },
}

/// The command line being received, across reads.
#[derive(Debug, Default)]
pub struct Line {
    /// Bytes of the line so far, to enforce `max_line_length`.
    pub len: usize,
    /// A control byte was seen in it.
    control: bool,
    /// The line as received (at most `max_line_length` bytes are kept).
    raw: Vec<u8>,
}

impl Line {
    /// Some of a line has arrived, but not its end.
    pub fn is_partial(&self) -> bool {
        self.len > 0
    }
}

/// Whether `byte` may not appear in a command line. CR and LF end lines
/// (the receiver deals with them); TAB is tolerated as white space.
pub fn is_control(byte: u8) -> bool {
    (byte < 0x20 && !matches!(byte, b'\r' | b'\n' | b'\t')) || byte == 0x7f
}

pub fn control_refused() -> Reply {
    Reply::new(501, [5, 5, 2], "Command refused: it holds a NUL or another control character")
}

/// Takes the next command from `bytes`.
pub fn read<'r, 'b, 'o>(requests: &'r mut RequestReceiver, bytes: &mut std::slice::Iter<'b, u8>, line: &mut Line, max: usize) -> Command<'o>
where
    'r: 'o,
    'b: 'o,
{
    let start = bytes.as_slice();
    let parsed = requests.ingest(bytes);
    let used = start.len() - bytes.len();
    line.len += used;
    line.control |= start[..used].iter().copied().any(is_control);
    let keep = used.min((max + 2).saturating_sub(line.raw.len()));
    line.raw.extend_from_slice(&start[..keep]);
    let too_long = line.len > max;
    let command = match parsed {
        Err(ParseError::NeedsMoreData { .. }) if too_long => return Command::Overlong(Reply::new(500, [5, 5, 2], "Line too long")),
        Err(ParseError::NeedsMoreData { .. }) => return Command::Incomplete,
        _ if too_long => Command::Refuse(Reply::new(500, [5, 5, 2], "Line too long")),
        _ if line.control => Command::Control,
        parsed => match envelope_path(&line.raw) {
            Some(Ok((line, path))) => Command::Path { line, path },
            Some(Err(reply)) => Command::Refuse(reply),
            None => match parsed {
                Ok(request) => Command::Request(request),
                Err(e) => Command::Refuse(common::parse_error(e)),
            },
        },
    };
    line.len = 0;
    line.control = false;
    line.raw.clear();
    command
}

/// For `MAIL FROM:<path>` or `RCPT TO:<path>` whose path holds a quote
/// or a bracket: the line with a stand-in address and the path, or the
/// reply refusing the path. `None` for every other line.
fn envelope_path(raw: &[u8]) -> Option<Result<(Vec<u8>, String), Reply>> {
    let upper = |n: usize| raw.get(..n).map(|p| p.to_ascii_uppercase());
    let (prefix, sender) = if upper(10).as_deref() == Some(b"MAIL FROM:") {
        (10, true)
    } else if upper(8).as_deref() == Some(b"RCPT TO:") {
        (8, false)
    } else {
        return None;
    };
    let open = prefix + raw[prefix..].iter().position(|&b| b != b' ')?;
    if raw[open] != b'<' {
        return None;
    }
    let close = open + 1 + path_len(&raw[open + 1..])?;
    let path = &raw[open + 1..close];
    if !path.iter().any(|b| matches!(b, b'"' | b'[')) {
        return None;
    }
    let refuse = |why: &str| {
        let (status, what) = if sender { ([5, 1, 7], "sender") } else { ([5, 1, 3], "recipient") };
        Some(Err(Reply::new(501, status, format!("Bad {what} address syntax: {why}"))))
    };
    let Ok(path) = std::str::from_utf8(path) else { return refuse("not UTF-8") };
    if let Err(why) = crate::message::parse_mailbox(path) {
        return refuse(why);
    }
    let mut line = raw[..=open].to_vec();
    line.extend_from_slice(b"stand-in@example.invalid");
    line.extend_from_slice(&raw[close..]);
    Some(Ok((line, path.to_string())))
}

/// Where the `>` closing a path is, skipping quoted strings (with their
/// backslash escapes) and address literals.
fn path_len(rest: &[u8]) -> Option<usize> {
    let (mut quoted, mut escaped, mut literal) = (false, false, false);
    for (i, &b) in rest.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' if !literal => quoted = !quoted,
            b'[' if !quoted => literal = true,
            b']' if !quoted => literal = false,
            b'>' if !quoted && !literal => return Some(i),
            b'\r' | b'\n' => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole and byte by byte; returns the replies' first
    /// line and whether a request came through.
    fn outcome(input: &[u8]) -> Vec<String> {
        let mut seen = Vec::new();
        for chunk in [input.len(), 1] {
            let mut rx = RequestReceiver::default();
            let mut line = Line::default();
            let mut got = Vec::new();
            for part in input.chunks(chunk.max(1)) {
                let mut it = part.iter();
                while !it.as_slice().is_empty() {
                    match read(&mut rx, &mut it, &mut line, 512) {
                        Command::Incomplete => break,
                        Command::Request(r) => got.push(format!("ok {r:?}").chars().take(12).collect()),
                        Command::Control => got.push("501 5.5.2".into()),
                        Command::Path { line, path } => got.push(format!("path {path} {}", String::from_utf8_lossy(&line).trim_end())),
                        Command::Refuse(r) | Command::Overlong(r) => got.push(r.code.to_string() + &r.status.map(|s| format!(" {}.{}.{}", s[0], s[1], s[2])).unwrap_or_default()),
                    }
                }
            }
            seen.push(got.join("|"));
        }
        assert_eq!(seen[0], seen[1], "whole and byte-wise differ for {input:?}");
        seen.swap_remove(0).split('|').map(String::from).collect()
    }

    #[test]
    fn control_bytes_are_refused_and_never_parsed() {
        let cases: &[(&[u8], &str)] = &[
            (b"EHLO a\0b\r\n", "501 5.5.2"),
            (b"EHLO a\x01b\r\n", "501 5.5.2"),
            (b"MAIL FROM:<a\x1b@b.example>\r\n", "501 5.5.2"),
            (b"NOOP \x7f\r\n", "501 5.5.2"),
            (b"\0\r\n", "501 5.5.2"),
            (b"EHLO a.example\r\n", "ok Ehlo"),
            (b"EHLO a\tb\r\n", "ok Ehlo"),
        ];
        for &(input, want) in cases {
            let got = outcome(input);
            assert!(got[0].starts_with(want), "{input:?}: got {got:?}, want {want}");
        }
        let paths: &[(&[u8], &str)] = &[
            (b"MAIL FROM:<a@[127.0.0.1]> SIZE=10\r\n", "path a@[127.0.0.1] MAIL FROM:<stand-in@example.invalid> SIZE=10"),
            (b"rcpt to: <\"john doe\"@example.net>\r\n", "path \"john doe\"@example.net rcpt to: <stand-in@example.invalid>"),
            (b"RCPT TO:<\"a>b\"@example.net>\r\n", "path \"a>b\"@example.net RCPT TO:<stand-in@example.invalid>"),
            (b"MAIL FROM:<a@[300.0.0.1]>\r\n", "501 5.1.7"),
            (b"RCPT TO:<\"open@example.net>\r\n", "501"),
            (b"MAIL FROM:<plain@example.net>\r\n", "ok Mail"),
        ];
        for &(input, want) in paths {
            let got = outcome(input);
            assert!(got[0].starts_with(want), "{input:?}: got {got:?}, want {want}");
        }
        // The next line after a refused one is read normally.
        let got = outcome(b"EHLO \0\r\nNOOP\r\n");
        assert!(got[0].starts_with("501") && got[1].starts_with("ok Noop"), "{got:?}");
    }
}
