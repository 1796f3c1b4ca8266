//! Message bodies in the spool's own append-only segment files
//! (`<data dir>/bodies/<n>.seg`), out of the sled B-tree.
//!
//! The committer appends every waiting message in one `write` and makes
//! them durable with one `fdatasync`: for each, a *record frame* (what
//! sled is about to be given: record, due time, events) and then its
//! *body frame*. That write is what makes a new message durable; sled is
//! flushed after the answer, and what a crash takes from it is replayed
//! from the record frames at the next start ([`super::replay`]). Frames:
//!
//! | bytes | what                                                        |
//! |-------|-------------------------------------------------------------|
//! | 4     | payload length, u32 little-endian; top bit set: a record frame; next bit set: the CRC covers the segment number |
//! | 4     | CRC32C of the segment number (u64 little-endian), the id and the payload |
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
//! next successful flush, once the removals that emptied it are on disk —
//! or kept as a spare (`<n>.spare`, at most [`MAX_SPARES`]) and renamed to
//! be the next segment, as PostgreSQL recycles WAL segments: writing over
//! blocks a file already has lets `fdatasync` skip the journal commit an
//! append needs for the new size (on this VM's disk, p50 0.29-0.39 →
//! 0.21 ms per commit round at one session). What the file held before
//! is left behind the new frames; its frames fail their checksum, which
//! covers the segment number, so neither the end of the valid frames nor
//! the replay ever reads them. (Frames of spool format 3 and earlier have
//! no segment number in their checksum; a segment that starts with one
//! is never reused.)

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
pub const SEGMENT_MAX: u64 = 16 * 1024 * 1024;

/// Where a body is: segment number, offset of its frame, body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl BodyRef {
    pub fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset.to_be_bytes());
        b[16..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; 20] = b.try_into().ok()?;
        Some(Self {
            segment: u64::from_be_bytes(b[..8].try_into().ok()?),
            offset: u64::from_be_bytes(b[8..16].try_into().ok()?),
            len: u32::from_be_bytes(b[16..].try_into().ok()?),
        })
    }
}

/// The length field's top bit: the frame holds a record, not a body.
const RECORD_FRAME: u32 = 1 << 31;
/// The length field's next bit: the checksum covers the segment number
/// (every frame this herald writes).
const SEEDED: u32 = 1 << 30;

/// Emptied segments kept for reuse, at most.
pub const MAX_SPARES: usize = 2;

/// Where the committer's appends have reached: everything before it is
/// on disk.
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

/// A frame's checksum: of the segment number (`None`: a frame of format
/// 3 or earlier), the id and the payload.
fn checksum(segment: Option<u64>, id: &[u8], payload: &[u8]) -> u32 {
    let start = match segment {
        Some(n) => crc32c::extend(crc32c::crc32c(&n.to_le_bytes()), id),
        None => crc32c::crc32c(id),
    };
    crc32c::extend(start, payload)
}

/// One frame's header, for segment `segment`; `record` marks a record
/// frame.
fn frame_header(segment: u64, id: &MessageId, payload: &[u8], record: bool) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    let len = payload.len() as u32 | SEEDED | if record { RECORD_FRAME } else { 0 };
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[8..].copy_from_slice(id.as_bytes());
    let crc = checksum(Some(segment), &h[8..], payload);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A frame header's payload length, kind (`true`: a record frame) and
/// whether its checksum covers the segment number.
fn frame_len(h: &[u8; HEADER]) -> (u64, bool, bool) {
    let raw = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    ((raw & !(RECORD_FRAME | SEEDED)) as u64, raw & RECORD_FRAME != 0, raw & SEEDED != 0)
}

/// Checks a frame header of segment `segment` against the payload read
/// after it.
fn check_frame(segment: u64, h: &[u8; HEADER], payload: &[u8]) -> bool {
    let (len, _, seeded) = frame_len(h);
    len as usize == payload.len() && u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == checksum(seeded.then_some(segment), &h[8..], payload)
}

/// Checks a body frame's header against the body read after it.
fn check(segment: u64, h: &[u8; HEADER], body: &[u8]) -> bool {
    !frame_len(h).1 && check_frame(segment, h, body)
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
fn walk(file: &File, segment: u64, from: u64, mut visit: impl FnMut(&[u8; HEADER], u64, &[u8])) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let mut at = from;
    let mut payload = Vec::new();
    while at + HEADER as u64 <= size {
        let mut h = [0u8; HEADER];
        file.read_exact_at(&mut h, at)?;
        let (len, _, _) = frame_len(&h);
        if at + HEADER as u64 + len > size {
            break;
        }
        payload.resize(len as usize, 0);
        file.read_exact_at(&mut payload, at + HEADER as u64)?;
        if !check_frame(segment, &h, &payload) {
            break;
        }
        visit(&h, at, &payload);
        at += HEADER as u64 + len;
    }
    Ok(at)
}

/// The valid frames of `file`, segment `segment`, from `from`.
fn frames(file: &File, segment: u64, from: u64) -> io::Result<Vec<Frame>> {
    let mut out = Vec::new();
    walk(file, segment, from, |h, offset, payload| {
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
        out.extend(frames(&file, n, start)?.into_iter().map(|f| (n, f)));
    }
    Ok(out)
}

fn segment_name(n: u64) -> String {
    format!("{n:08}.seg")
}

fn spare_name(n: u64) -> String {
    format!("{n:08}.spare")
}

fn segment_number(name: &str) -> Option<u64> {
    numbered(name, ".seg")
}

fn spare_number(name: &str) -> Option<u64> {
    numbered(name, ".spare")
}

/// `<digits><suffix>`'s number.
fn numbered(name: &str, suffix: &str) -> Option<u64> {
    name.strip_suffix(suffix).filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse().ok())
}

struct State {
    active: u64,
    file: Arc<File>,
    end: u64,
    live: HashMap<u64, u64>,
    readers: HashMap<u64, Arc<File>>,
    /// Empty and closed: deleted after the next successful flush.
    doomed: Vec<u64>,
    /// Emptied segment files kept for reuse (`<n>.spare`).
    spares: Vec<u64>,
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
fn valid_len(file: &File, segment: u64) -> io::Result<u64> {
    walk(file, segment, 0, |_, _, _| {})
}

/// Whether an emptied segment file may be reused: a full one whose first
/// frame's checksum covers the segment number (written by this format).
fn recyclable(path: &Path, max: u64) -> bool {
    let Ok(file) = File::open(path) else { return false };
    let mut h = [0u8; HEADER];
    file.metadata().is_ok_and(|m| m.len() >= max) && file.read_exact_at(&mut h, 0).is_ok() && frame_len(&h).2
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
        let mut spares = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(n) = name.to_str().and_then(segment_number) {
                found.push(n);
            } else if let Some(n) = name.to_str().and_then(spare_number) {
                if spares.len() < MAX_SPARES {
                    spares.push(n);
                } else {
                    std::fs::remove_file(entry.path())?;
                }
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
        let end = valid_len(&file, active)?;
        if end < file.metadata()?.len() {
            tracing::info!(segment = %path.display(), valid = end, size = file.metadata()?.len(), "cutting what follows the last valid frame off the body segment (a torn write, or what a reused file held before)");
            file.set_len(end)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        let state = State { active, file: Arc::new(file), end, live, readers: HashMap::new(), doomed: Vec::new(), spares };
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
        let total: usize = messages.iter().map(|(_, r, b)| HEADER + r.map_or(0, |r| HEADER + r.len()) + b.len()).sum();
        let mut buf = Vec::with_capacity(total);
        let mut refs = Vec::with_capacity(messages.len());
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "a message of 1 GiB or more");
        for (id, record, body) in messages {
            if let Some(record) = record {
                if record.len() as u64 >= SEEDED as u64 {
                    return Err(too_big());
                }
                buf.extend_from_slice(&frame_header(segment, id, record, true));
                buf.extend_from_slice(record);
            }
            let len = u32::try_from(body.len()).ok().filter(|&l| l < SEEDED).ok_or_else(too_big)?;
            refs.push(BodyRef { segment, offset: start + buf.len() as u64, len });
            buf.extend_from_slice(&frame_header(segment, id, body, false));
            buf.extend_from_slice(body);
        }
        let written = file.write_all_at(&buf, start).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Leave no garbage between frames; a crash now leaves a torn
            // tail, cut at the next start.
            let _ = file.set_len(start);
            return Err(e);
        }
        let mut s = self.state();
        s.end = start + buf.len() as u64;
        *s.live.entry(segment).or_default() += refs.len() as u64;
        Ok((refs, Position { segment, offset: s.end }))
    }

    fn rotate(&self, s: &mut State) -> io::Result<()> {
        let next = s.active + 1;
        let path = self.dir.join(segment_name(next));
        let reused = s.spares.pop().and_then(|n| match std::fs::rename(self.dir.join(spare_name(n)), &path) {
            Ok(()) => std::fs::OpenOptions::new().read(true).write(true).open(&path).ok(),
            Err(e) => {
                tracing::warn!(spare = n, error = %e, "cannot reuse a spare body segment; starting a new one");
                None
            }
        });
        let file = match reused {
            Some(f) => f,
            None => std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?,
        };
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

    /// Deletes emptied segments, or keeps them as spares for reuse.
    pub fn delete(&self, segments: Vec<u64>) {
        for n in segments {
            let room = {
                let mut s = self.state();
                s.readers.remove(&n);
                s.spares.len() < MAX_SPARES
            };
            let path = self.dir.join(segment_name(n));
            if room && recyclable(&path, self.max) && std::fs::rename(&path, self.dir.join(spare_name(n))).is_ok() {
                self.state().spares.push(n);
                continue;
            }
            if let Err(e) = std::fs::remove_file(&path) {
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
        if !check(r.segment, &h, &buf[HEADER..]) {
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
        let spares = [("00000007.spare", Some(7)), ("7.seg", None), (".spare", None), ("7.spare.tmp", None)];
        for (name, want) in spares {
            assert_eq!(spare_number(name), want, "{name}");
        }
    }

    #[test]
    fn checksums_cover_the_segment_number_and_read_older_frames() {
        let body = b"the amount is 100 EUR";
        let h = frame_header(3, &id(1), body, false);
        assert!(check(3, &h, body));
        assert!(!check(4, &h, body), "a frame left over from segment 3 is not valid in segment 4");
        assert!(!check(3, &frame_header(3, &id(1), body, true), body), "a record frame is not a body");
        // Format 3 and earlier: no flag, no segment number in the checksum.
        let mut old = [0u8; HEADER];
        old[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        old[8..].copy_from_slice(id(1).as_bytes());
        let crc = crc32c::extend(crc32c::crc32c(&old[8..]), body);
        old[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(check(3, &old, body) && check(9, &old, body));
    }

    #[test]
    fn an_emptied_segment_is_reused_and_what_it_held_is_never_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::open_sized(dir.path(), HashMap::new(), 4000).unwrap();
        let old: Vec<BodyRef> = (0..4).flat_map(|n| segs.append_records(&[(id(n), Some(&b"{}"[..]), &[n as u8; 1000])]).unwrap().0).collect();
        let inode = |n: u64| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.path().join(segment_name(n))).unwrap());
        let first = inode(1);
        // Segment 1 is full: the next append starts segment 2.
        let r2 = segs.append(&[(id(10), b"in segment 2")]).unwrap()[0];
        assert_eq!(r2.segment, 2);
        for r in &old {
            segs.release(*r);
        }
        segs.delete(segs.take_doomed());
        assert!(!dir.path().join(segment_name(1)).exists() && dir.path().join(spare_name(1)).exists(), "kept as a spare");
        // Segment 2 fills up; segment 3 is segment 1's file, its old frames behind.
        segs.append(&[(id(11), &[9u8; 4000])]).unwrap();
        let twelve = id(12);
        let r3 = segs.append_records(&[(twelve, Some(&b"{\"v\":1}"[..]), b"short")]).unwrap().0[0];
        assert_eq!((r3.segment, inode(3)), (3, first), "the spare is the new segment");
        assert!(std::fs::metadata(dir.path().join(segment_name(3))).unwrap().len() > 4000, "written over, not truncated");
        assert_eq!(segs.read(r3).unwrap(), b"short");
        // What the file held before is not a frame of segment 3: the
        // replay sees only the new record frame and body.
        let frames = frames_from(dir.path(), Position { segment: 3, offset: 0 }).unwrap();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].1.record && frames[1].1.id == Some(twelve));
        // Reopened: the valid frames end after the new ones.
        drop(segs);
        let segs = Segments::open_sized(dir.path(), HashMap::from([(2, 2), (3, 1)]), 4000).unwrap();
        let after = segs.append(&[(id(13), b"after")]).unwrap()[0];
        assert_eq!((after.segment, after.offset), (3, r3.offset + HEADER as u64 + 5));
        assert_eq!(segs.read(r3).unwrap(), b"short");
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
        let mut torn = frame_header(1, &id(4), &[1u8; 100], false).to_vec();
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
