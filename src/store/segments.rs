//! Message bodies in the spool's own append-only segment files
//! (`<data dir>/bodies/<n>.seg`), out of the sled B-tree.
//!
//! The committer appends every waiting message in one `write` and makes
//! them durable with one `fdatasync`: for each, a *record frame* (what
//! sled is about to be given: record, due time, events) and then its
//! *body frame*. That write is what makes a new message durable (its
//! writer is answered then); its batch is applied and sled flushed after,
//! and what a crash takes from sled is replayed
//! from the record frames at the next start ([`super::replay`]). Frames:
//!
//! | bytes | what                                                        |
//! |-------|-------------------------------------------------------------|
//! | 4     | payload length, u32 little-endian; top bit set: a record frame |
//! | 4     | CRC32C of the id and the payload                            |
//! | 16    | the message id                                              |
//! | len   | the payload: the body, or the record frame's contents        |
//!
//! A torn tail (a crash in the middle of an append) fails its length or
//! checksum and is cut off when the last segment is opened again; nothing
//! points at it, since its records were never applied and its writers
//! never answered.
//!
//! Each segment counts the queued messages whose bodies it holds (rebuilt
//! at start from the location keys in sled). A segment other than the one
//! being appended to whose count drops to zero is deleted right after the
//! next successful flush, once the removals that emptied it are on disk.

use super::crc32c;
use crate::id::MessageId;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Frame header length.
pub const HEADER: usize = 24;

/// A segment past this size is closed and a new one started.
pub const SEGMENT_MAX: u64 = 64 * 1024 * 1024;

/// Where a body is: segment number, offset of its frame, body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl BodyRef {
    /// Its frame's [`Position`], then the body length (u32 big-endian).
    pub fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..16].copy_from_slice(&Position { segment: self.segment, offset: self.offset }.encode());
        b[16..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; 20] = b.try_into().ok()?;
        let at = Position::decode(&b[..16])?;
        Some(Self { segment: at.segment, offset: at.offset, len: u32::from_be_bytes(b[16..].try_into().ok()?) })
    }
}

/// The length field's top bit: the frame holds a record, not a body.
const RECORD_FRAME: u32 = 1 << 31;

/// A place in the segments: where the committer's appends have reached
/// (everything before it is on disk), or where a frame starts. Encoded as
/// segment and offset, u64 big-endian each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; 16] = b.try_into().ok()?;
        Some(Self { segment: u64::from_be_bytes(b[..8].try_into().ok()?), offset: u64::from_be_bytes(b[8..].try_into().ok()?) })
    }
}

/// One frame's header; `record` marks a record frame.
fn frame_header(id: &MessageId, payload: &[u8], record: bool) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    let len = payload.len() as u32 | if record { RECORD_FRAME } else { 0 };
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[8..].copy_from_slice(id.as_bytes());
    let crc = crc32c::extend(crc32c::crc32c(&h[8..]), payload);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Writes every slice at `offset` on, in as few `pwritev` calls as the
/// kernel takes (at most `IOV_MAX` slices each).
fn write_all_vectored_at(file: &std::fs::File, mut slices: &mut [io::IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const IOV_MAX: usize = 1024;
    while !slices.is_empty() {
        let n = slices.len().min(IOV_MAX);
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and
        // the `n` slices it points to outlive the call.
        let written = unsafe { libc::pwritev(file.as_raw_fd(), slices.as_ptr().cast::<libc::iovec>(), n as libc::c_int, offset as libc::off_t) };
        match written {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => return Err(io::Error::new(io::ErrorKind::WriteZero, "the segment took no more bytes")),
            w => {
                offset += w as u64;
                io::IoSlice::advance_slices(&mut slices, w as usize);
            }
        }
    }
    Ok(())
}

/// One body's frame header.
fn header(id: &MessageId, body: &[u8]) -> [u8; HEADER] {
    frame_header(id, body, false)
}

/// A frame header's payload length and kind (`true`: a record frame).
fn frame_len(h: &[u8; HEADER]) -> (u64, bool) {
    let raw = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    ((raw & !RECORD_FRAME) as u64, raw & RECORD_FRAME != 0)
}

/// Checks a frame header against the payload read after it.
fn check_frame(h: &[u8; HEADER], payload: &[u8]) -> bool {
    frame_len(h).0 as usize == payload.len() && u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == crc32c::extend(crc32c::crc32c(&h[8..]), payload)
}

/// Checks a body frame's header against the body read after it.
fn check(h: &[u8; HEADER], body: &[u8]) -> bool {
    !frame_len(h).1 && check_frame(h, body)
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
fn walk(file: &File, from: u64, mut visit: impl FnMut(&[u8; HEADER], u64, &[u8])) -> io::Result<u64> {
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
        if !check_frame(&h, &payload) {
            break;
        }
        visit(&h, at, &payload);
        at += HEADER as u64 + len;
    }
    Ok(at)
}

/// The valid frames of `file` from `from`.
fn frames(file: &File, from: u64) -> io::Result<Vec<Frame>> {
    let mut out = Vec::new();
    walk(file, from, |h, offset, payload| {
        let record = frame_len(h).1;
        let id = std::str::from_utf8(&h[8..]).ok().and_then(MessageId::parse);
        out.push(Frame { id, record, payload: if record { payload.to_vec() } else { Vec::new() }, offset, len: payload.len() as u32 });
    })?;
    Ok(out)
}

/// Every valid frame in the segments of `dir` from `from` on, in order,
/// with the segment each is in (for the replay at start).
pub fn frames_from(dir: &Path, from: Position) -> io::Result<Vec<(u64, Frame)>> {
    let mut numbers: Vec<u64> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().and_then(|e| e.file_name().to_str().and_then(segment_number))).filter(|&n| n >= from.segment).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    numbers.sort_unstable();
    let mut out = Vec::new();
    for n in numbers {
        let file = File::open(dir.join(segment_name(n)))?;
        let start = if n == from.segment { from.offset } else { 0 };
        out.extend(frames(&file, start)?.into_iter().map(|f| (n, f)));
    }
    Ok(out)
}

fn segment_name(n: u64) -> String {
    format!("{n:08}.seg")
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_suffix(".seg").filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse().ok())
}

struct State {
    active: u64,
    file: Arc<File>,
    end: u64,
    live: HashMap<u64, u64>,
    readers: HashMap<u64, Arc<File>>,
    /// Empty and closed: deleted after the next successful flush.
    doomed: Vec<u64>,
}

pub struct Segments {
    dir: PathBuf,
    /// Size past which a segment is closed ([`SEGMENT_MAX`] but in tests).
    max: u64,
    state: Mutex<State>,
    /// Held through each append (the committer's, and copying forward).
    writer: Mutex<()>,
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The length of the valid prefix of a segment: every frame whose length
/// and checksum hold, up to the first that does not.
fn valid_len(file: &File) -> io::Result<u64> {
    walk(file, 0, |_, _, _| {})
}

impl Segments {
    /// Opens the segments in `dir` (created if missing). `live` counts the
    /// queued bodies per segment. Segments nothing points at are deleted;
    /// the newest one is appended to after its torn tail, if any, is cut.
    pub fn open(dir: &Path, live: HashMap<u64, u64>) -> io::Result<Self> {
        Self::open_sized(dir, live, SEGMENT_MAX)
    }

    /// [`Segments::open`], closing segments past `max` bytes.
    pub fn open_sized(dir: &Path, live: HashMap<u64, u64>, max: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(n) = entry.file_name().to_str().and_then(segment_number) {
                found.push(n);
            }
        }
        found.sort_unstable();
        let active = found.last().copied().unwrap_or(1);
        for &n in &found {
            if n != active && live.get(&n).copied().unwrap_or(0) == 0 {
                std::fs::remove_file(dir.join(segment_name(n)))?;
            }
        }
        let path = dir.join(segment_name(active));
        let file = open_append(&path)?;
        let end = valid_len(&file)?;
        if end < file.metadata()?.len() {
            tracing::warn!(segment = %path.display(), valid = end, size = file.metadata()?.len(), "cutting a torn tail off the body segment");
            file.set_len(end)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        let state = State { active, file: Arc::new(file), end, live, readers: HashMap::new(), doomed: Vec::new() };
        Ok(Self { dir: dir.to_path_buf(), max, state: Mutex::new(state), writer: Mutex::new(()) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `bodies` in one write and one fdatasync; returns where each
    /// one is. Each counts as live from here on (see [`Segments::release`]).
    pub fn append(&self, bodies: &[(MessageId, &[u8])]) -> io::Result<Vec<BodyRef>> {
        let messages: Vec<(MessageId, Option<&[u8]>, &[u8])> = bodies.iter().map(|(id, b)| (*id, None, *b)).collect();
        Ok(self.append_records(&messages)?.0)
    }

    /// Appends, in one write and one fdatasync, each message's record
    /// frame (when it has one) followed by its body frame. Returns where
    /// each body is, and where the appends have reached.
    pub fn append_records(&self, messages: &[(MessageId, Option<&[u8]>, &[u8])]) -> io::Result<(Vec<BodyRef>, Position)> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (segment, file, start) = {
            let mut s = self.state();
            if s.end >= self.max {
                self.rotate(&mut s)?;
            }
            (s.active, s.file.clone(), s.end)
        };
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "a message of 2 GiB or more");
        // Every frame's header and payload first, so the slices below can
        // borrow the headers: the bodies go to the kernel from where they
        // are, uncopied.
        let mut frames = Vec::with_capacity(messages.len() * 2);
        for (id, record, body) in messages {
            if let Some(record) = record {
                if record.len() as u64 >= RECORD_FRAME as u64 {
                    return Err(too_big());
                }
                frames.push((frame_header(id, record, true), *record));
            }
            u32::try_from(body.len()).ok().filter(|&l| l < RECORD_FRAME).ok_or_else(too_big)?;
            frames.push((header(id, body), *body));
        }
        let mut slices = Vec::with_capacity(frames.len() * 2);
        let mut refs = Vec::with_capacity(messages.len());
        let mut at = start;
        for (h, payload) in &frames {
            if !frame_len(h).1 {
                refs.push(BodyRef { segment, offset: at, len: payload.len() as u32 });
            }
            slices.push(io::IoSlice::new(h));
            slices.push(io::IoSlice::new(payload));
            at += (HEADER + payload.len()) as u64;
        }
        let total = at - start;
        let written = write_all_vectored_at(&file, &mut slices, start).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Leave no garbage between frames; a crash now leaves a torn
            // tail, cut at the next start.
            let _ = file.set_len(start);
            return Err(e);
        }
        let mut s = self.state();
        s.end = start + total;
        *s.live.entry(segment).or_default() += refs.len() as u64;
        Ok((refs, Position { segment, offset: s.end }))
    }

    fn rotate(&self, s: &mut State) -> io::Result<()> {
        let next = s.active + 1;
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(self.dir.join(segment_name(next)))?;
        sync_dir(&self.dir)?;
        let old = s.active;
        s.readers.insert(old, s.file.clone());
        s.active = next;
        s.file = Arc::new(file);
        s.end = 0;
        if s.live.get(&old).copied().unwrap_or(0) == 0 {
            s.doomed.push(old);
        }
        Ok(())
    }

    /// One body no longer queued (its location key was removed).
    pub fn release(&self, r: BodyRef) {
        let mut s = self.state();
        let left = match s.live.get_mut(&r.segment) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => return,
        };
        if left == 0 && r.segment != s.active {
            s.live.remove(&r.segment);
            s.doomed.push(r.segment);
        }
    }

    /// Empty segments waiting to be deleted; taken before a flush and
    /// given to [`Segments::delete`] once it succeeded.
    pub fn take_doomed(&self) -> Vec<u64> {
        std::mem::take(&mut self.state().doomed)
    }

    pub fn delete(&self, segments: Vec<u64>) {
        for n in segments {
            self.state().readers.remove(&n);
            if let Err(e) = std::fs::remove_file(self.dir.join(segment_name(n))) {
                tracing::warn!(segment = n, error = %e, "cannot delete an empty body segment");
            }
        }
    }

    /// Reads and checks one body.
    pub fn read(&self, r: BodyRef) -> io::Result<Vec<u8>> {
        let file = {
            let mut s = self.state();
            if r.segment == s.active {
                s.file.clone()
            } else if let Some(f) = s.readers.get(&r.segment) {
                f.clone()
            } else {
                let f = Arc::new(File::open(self.dir.join(segment_name(r.segment)))?);
                s.readers.insert(r.segment, f.clone());
                f
            }
        };
        let mut buf = vec![0u8; HEADER + r.len as usize];
        file.read_exact_at(&mut buf, r.offset)?;
        let h: [u8; HEADER] = buf[..HEADER].try_into().map_err(|_| io::Error::other("short frame"))?;
        if !check(&h, &buf[HEADER..]) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("body in segment {} at {} fails its checksum", r.segment, r.offset)));
        }
        buf.drain(..HEADER);
        Ok(buf)
    }

    /// A segment's size on disk.
    pub fn size(&self, segment: u64) -> io::Result<u64> {
        Ok(std::fs::metadata(self.dir.join(segment_name(segment)))?.len())
    }

    /// The segment being appended to.
    pub fn active(&self) -> u64 {
        self.state().active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> MessageId {
        MessageId::generate(1_700_000_000_000 + n)
    }

    #[test]
    fn body_ref_round_trips() {
        let cases = [BodyRef { segment: 1, offset: 0, len: 0 }, BodyRef { segment: u64::MAX, offset: 1 << 40, len: u32::MAX }];
        for r in cases {
            assert_eq!(BodyRef::decode(&r.encode()), Some(r));
        }
        assert_eq!(BodyRef::decode(&[0u8; 19]), None);
    }

    #[test]
    fn segment_names() {
        let cases = [("00000001.seg", Some(1)), ("123.seg", Some(123)), (".seg", None), ("1.sег", None), ("x1.seg", None), ("1.seg.tmp", None)];
        for (name, want) in cases {
            assert_eq!(segment_number(name), want, "{name}");
        }
        assert_eq!(segment_number(&segment_name(42)), Some(42));
    }

    #[test]
    fn append_read_and_torn_tail_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::open(dir.path(), HashMap::new()).unwrap();
        let (a, b) = (id(1), id(2));
        let refs = segs.append(&[(a, b"first body"), (b, b"")]).unwrap();
        let more = segs.append(&[(id(3), &[7u8; 5000])]).unwrap();
        assert_eq!(segs.read(refs[0]).unwrap(), b"first body");
        assert_eq!(segs.read(refs[1]).unwrap(), b"");
        assert_eq!(segs.read(more[0]).unwrap(), vec![7u8; 5000]);
        drop(segs);
        // A crash in the middle of the next append: half a frame.
        let path = dir.path().join(segment_name(1));
        let good = std::fs::metadata(&path).unwrap().len();
        let mut torn = header(&id(4), &[1u8; 100]).to_vec();
        torn.extend_from_slice(&[1u8; 40]);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all_at(&torn, good).unwrap();
        let segs = Segments::open(dir.path(), HashMap::from([(1, 3)])).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good, "the torn frame is cut");
        let after = segs.append(&[(id(5), b"after the cut")]).unwrap();
        assert_eq!(after[0].offset, good);
        assert_eq!(segs.read(refs[0]).unwrap(), b"first body");
        assert_eq!(segs.read(after[0]).unwrap(), b"after the cut");
    }

    #[test]
    fn a_flipped_byte_is_an_error_not_a_wrong_body() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::open(dir.path(), HashMap::new()).unwrap();
        let r = segs.append(&[(id(1), b"the amount is 100 EUR")]).unwrap()[0];
        let path = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 7;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(segs.read(r).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn an_emptied_closed_segment_is_deleted_after_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::open(dir.path(), HashMap::new()).unwrap();
        let r = segs.append(&[(id(1), b"x")]).unwrap()[0];
        // Close segment 1 as if it had filled up.
        segs.rotate(&mut segs.state()).unwrap();
        let r2 = segs.append(&[(id(2), b"y")]).unwrap()[0];
        assert_eq!((r.segment, r2.segment), (1, 2));
        assert!(segs.take_doomed().is_empty());
        segs.release(r);
        let doomed = segs.take_doomed();
        assert_eq!(doomed, vec![1]);
        assert!(dir.path().join(segment_name(1)).exists(), "kept until the flush");
        segs.delete(doomed);
        assert!(!dir.path().join(segment_name(1)).exists());
        // The active segment stays even when empty.
        segs.release(r2);
        assert!(segs.take_doomed().is_empty());
        // At start, a closed segment nothing points at goes at once.
        segs.rotate(&mut segs.state()).unwrap();
        drop(segs);
        let _ = Segments::open(dir.path(), HashMap::new()).unwrap();
        assert!(!dir.path().join(segment_name(2)).exists());
        assert!(dir.path().join(segment_name(3)).exists());
    }
}
