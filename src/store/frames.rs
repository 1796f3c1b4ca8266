//! One frame of a body segment ([`super::segments`]): how it is laid
//! out, checked and read back.
//!
//! | bytes | what                                                        |
//! |-------|-------------------------------------------------------------|
//! | 4     | payload length, u32 little-endian; top bit set: a record frame |
//! | 4     | CRC32C of the salt, the id and the payload                  |
//! | 16    | the message id                                              |
//! | len   | the payload: the body, or the record frame's contents        |
//!
//! The salt is the segment's number (8 bytes big-endian; none in the
//! segments written before format 5, [`super::migrate::SALTED_FROM`]), so
//! the frames a reused segment file held before are never read as its own.

use super::crc32c;
use crate::id::MessageId;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Frame header length.
pub const HEADER: usize = 24;

/// The length field's top bit: the frame holds a record, not a body.
pub(super) const RECORD_FRAME: u32 = 1 << 31;

/// The salt of segment `n`'s checksums: its number, from `salted_from`
/// on (0, none, in segments written before salting began).
pub fn salt(n: u64, salted_from: u64) -> u64 {
    if n >= salted_from { n } else { 0 }
}

/// A frame's checksum: CRC32C of the salt (if any), the id and the payload.
fn frame_crc(salt: u64, h: &[u8; HEADER], payload: &[u8]) -> u32 {
    let start = if salt == 0 { crc32c::crc32c(&h[8..]) } else { crc32c::extend(crc32c::crc32c(&salt.to_be_bytes()), &h[8..]) };
    crc32c::extend(start, payload)
}

/// One frame's header; `record` marks a record frame.
pub(super) fn frame_header(id: &MessageId, payload: &[u8], record: bool, salt: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    let len = payload.len() as u32 | if record { RECORD_FRAME } else { 0 };
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[8..].copy_from_slice(id.as_bytes());
    let crc = frame_crc(salt, &h, payload);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// One body's frame header.
pub(super) fn header(id: &MessageId, body: &[u8], salt: u64) -> [u8; HEADER] {
    frame_header(id, body, false, salt)
}

/// A frame header's payload length and kind (`true`: a record frame).
pub(super) fn frame_len(h: &[u8; HEADER]) -> (u64, bool) {
    let raw = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    ((raw & !RECORD_FRAME) as u64, raw & RECORD_FRAME != 0)
}

/// Checks a frame header against the payload read after it.
fn check_frame(h: &[u8; HEADER], payload: &[u8], salt: u64) -> bool {
    frame_len(h).0 as usize == payload.len() && u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == frame_crc(salt, h, payload)
}

/// Checks a body frame's header against the body read after it.
pub(super) fn check(h: &[u8; HEADER], body: &[u8], salt: u64) -> bool {
    !frame_len(h).1 && check_frame(h, body, salt)
}

/// One valid frame read back: its id, kind and place; the payload only
/// for a record frame.
pub struct Frame {
    pub id: Option<MessageId>,
    pub record: bool,
    pub payload: Vec<u8>,
    pub offset: u64,
    pub len: u32,
}

/// Walks the valid frames of `file` from `from`, up to the first that is
/// not, calling `visit` with each header, offset and payload; returns
/// where the valid frames end.
fn walk(file: &File, from: u64, salt: u64, mut visit: impl FnMut(&[u8; HEADER], u64, &[u8])) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let mut at = from;
    let mut payload = Vec::new();
    while at + HEADER as u64 <= size {
        let mut h = [0u8; HEADER];
        file.read_exact_at(&mut h, at)?;
        let (len, _) = frame_len(&h);
        if at + HEADER as u64 + len > size {
            break;
        }
        payload.resize(len as usize, 0);
        file.read_exact_at(&mut payload, at + HEADER as u64)?;
        if !check_frame(&h, &payload, salt) {
            break;
        }
        visit(&h, at, &payload);
        at += HEADER as u64 + len;
    }
    Ok(at)
}

/// The valid frames of `file` from `from`.
pub(super) fn frames(file: &File, from: u64, salt: u64) -> io::Result<Vec<Frame>> {
    let mut out = Vec::new();
    walk(file, from, salt, |h, offset, payload| {
        let record = frame_len(h).1;
        let id = std::str::from_utf8(&h[8..]).ok().and_then(MessageId::parse);
        out.push(Frame { id, record, payload: if record { payload.to_vec() } else { Vec::new() }, offset, len: payload.len() as u32 });
    })?;
    Ok(out)
}

/// The length of the valid prefix of a segment: every frame whose length
/// and checksum hold, up to the first that does not.
pub(super) fn valid_len(file: &File, salt: u64) -> io::Result<u64> {
    walk(file, 0, salt, |_, _, _| {})
}

