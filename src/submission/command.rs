//! Reading one command line, shared by every SMTP server in herald: the
//! smtp-proto receiver plus the `limits.max_line_length` check.

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
}

/// Takes the next command from `bytes`. `line_len` counts the bytes of the
/// line being received across calls.
pub fn read<'r, 'b, 'o>(requests: &'r mut RequestReceiver, bytes: &mut std::slice::Iter<'b, u8>, line_len: &mut usize, max: usize) -> Command<'o>
where
    'r: 'o,
    'b: 'o,
{
    let before = bytes.len();
    let parsed = requests.ingest(bytes);
    *line_len += before - bytes.len();
    let too_long = *line_len > max;
    let command = match parsed {
        Err(ParseError::NeedsMoreData { .. }) if too_long => return Command::Overlong(Reply::new(500, [5, 5, 2], "Line too long")),
        Err(ParseError::NeedsMoreData { .. }) => return Command::Incomplete,
        _ if too_long => Command::Refuse(Reply::new(500, [5, 5, 2], "Line too long")),
        Ok(request) => Command::Request(request),
        Err(e) => Command::Refuse(common::parse_error(e)),
    };
    *line_len = 0;
    command
}
