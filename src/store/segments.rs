//! Message bodies in the spool's own append-only segment files
//! (`<data dir>/bodies/<n>.seg`), out of the sled B-tree.
//!
//! The committer appends every waiting message in one `write` and makes
//! them durable with one `fdatasync`: for each, a *record frame* (what
//! sled is about to be given: record, due time, events) and then its
//! *body frame*. That write is what makes a new message durable (its
//! writer is answered then); its batch is applied and sled flushed after,
//! and what a crash takes from sled is replayed
//! from the record frames at the next start ([`super::replay`]). How a
//! frame is laid out and checked: [`super::frames`].
//!
//! A torn tail (a crash in the middle of an append) fails its length or
//! checksum and is cut off when the last segment is opened again; nothing
//! points at it, since its records were never applied and its writers
//! never answered.
//!
//! Each segment counts the queued messages whose bodies it holds (rebuilt
//! at start from the location keys in sled). A segment other than the one
//! being appended to whose count drops to zero is deleted right after the
//! next successful flush, once the removals that emptied it are on disk;
//! the first full one is kept instead as the *spare* (`bodies/spare`),
//! which the next segment reuses, as PostgreSQL recycles its WAL
//! segments: an fdatasync into blocks the file already has need not
//! commit its size and extents to the journal (here, 0.21 against
//! 0.33-0.49 ms for 150 KB). The frames the file held before, after the
//! new segment's end, fail the new number's salt, so they are never read
//! as this segment's.

pub use super::frames::{Frame, HEADER};
use super::frames::{RECORD_FRAME, check, frame_header, frame_len, frames, header, salt, valid_len};
use crate::id::MessageId;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A segment past this size is closed and a new one started.
pub const SEGMENT_MAX: u64 = 64 * 1024 * 1024;

/// An emptied segment kept for the next one to reuse (not a segment name).
const SPARE: &str = "spare";

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

/// Every valid frame in the segments of `dir` from `from` on, in order,
/// with the segment each is in (for the replay at start); checksums are
/// salted from segment `salted_from` on.
pub fn frames_from(dir: &Path, from: Position, salted_from: u64) -> io::Result<Vec<(u64, Frame)>> {
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
        out.extend(frames(&file, start, salt(n, salted_from))?.into_iter().map(|f| (n, f)));
    }
    Ok(out)
}

/// The highest segment number in `dir`, if any.
pub fn last(dir: &Path) -> io::Result<Option<u64>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().and_then(|e| e.file_name().to_str().and_then(segment_number))).max()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
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
    /// The first segment whose checksums are salted with its number.
    salted_from: u64,
    state: Mutex<State>,
    /// Held through each append (the committer's, and copying forward).
    writer: Mutex<()>,
    /// Held by whoever reads a body's location key, changes it and then
    /// releases the place it leaves (see [`Segments::locations`]).
    locations: Mutex<()>,
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Segments {
    /// Opens the segments in `dir` (created if missing). `live` counts the
    /// queued bodies per segment. Segments nothing points at are deleted;
    /// the newest one is appended to after its torn tail, if any, is cut.
    #[cfg(test)]
    pub fn open(dir: &Path, live: HashMap<u64, u64>) -> io::Result<Self> {
        Self::open_sized(dir, live, SEGMENT_MAX, 1)
    }

    /// [`Segments::open`], closing segments past `max` bytes, salting the
    /// checksums of segment `salted_from` and later ones (a directory
    /// written before salting began gets a new segment to append to).
    pub fn open_sized(dir: &Path, live: HashMap<u64, u64>, max: u64, salted_from: u64) -> io::Result<Self> {
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
        let end = valid_len(&file, salt(active, salted_from))?;
        if end < file.metadata()?.len() {
            tracing::warn!(segment = %path.display(), valid = end, size = file.metadata()?.len(), "cutting a torn tail off the body segment");
            file.set_len(end)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        let state = State { active, file: Arc::new(file), end, live, readers: HashMap::new(), doomed: Vec::new() };
        let segments = Self { dir: dir.to_path_buf(), max, salted_from, state: Mutex::new(state), writer: Mutex::new(()), locations: Mutex::new(()) };
        if active < salted_from {
            segments.rotate(&mut segments.state(), salted_from)?;
        }
        Ok(segments)
    }

    /// The salt of segment `n`'s checksums.
    fn salt(&self, n: u64) -> u64 {
        salt(n, self.salted_from)
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
                let next = s.active + 1;
                self.rotate(&mut s, next)?;
            }
            (s.active, s.file.clone(), s.end)
        };
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "a message of 2 GiB or more");
        let salt = self.salt(segment);
        // Every frame's header and payload first, so the slices below can
        // borrow the headers: the bodies go to the kernel from where they
        // are, uncopied.
        let mut frames = Vec::with_capacity(messages.len() * 2);
        for (id, record, body) in messages {
            if let Some(record) = record {
                if record.len() as u64 >= RECORD_FRAME as u64 {
                    return Err(too_big());
                }
                frames.push((frame_header(id, record, true, salt), *record));
            }
            u32::try_from(body.len()).ok().filter(|&l| l < RECORD_FRAME).ok_or_else(too_big)?;
            frames.push((header(id, body, salt), *body));
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

    /// Closes the active segment and starts segment `next`: the spare, if
    /// there is one (its old frames fail the new number's checksums, and
    /// an fdatasync into blocks already written need not commit the
    /// file's size or extents: about a third faster here), else a new file.
    fn rotate(&self, s: &mut State, next: u64) -> io::Result<()> {
        let path = self.dir.join(segment_name(next));
        let file = match std::fs::rename(self.dir.join(SPARE), &path) {
            Ok(()) => open_append(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?,
            Err(e) => return Err(e),
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

    /// To hold from reading a body's location key, through the batch that
    /// removes or moves it, to releasing the place it leaves: a message
    /// retired while compaction copies its body forward would otherwise
    /// release its old place twice (once for each), and the segment could
    /// be deleted under a body still queued in it. Taken before the
    /// pending map's lock, never after.
    pub fn locations(&self) -> MutexGuard<'_, ()> {
        self.locations.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Deletes emptied segments; the first full one becomes the spare
    /// that the next segment reuses, if there is none yet.
    pub fn delete(&self, segments: Vec<u64>) {
        for n in segments {
            self.state().readers.remove(&n);
            let path = self.dir.join(segment_name(n));
            let spare = self.dir.join(SPARE);
            let reuse = !spare.exists() && std::fs::metadata(&path).is_ok_and(|m| m.len() >= self.max);
            let gone = if reuse { std::fs::rename(&path, &spare) } else { std::fs::remove_file(&path) };
            if let Err(e) = gone {
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
        if !check(&h, &buf[HEADER..], self.salt(r.segment)) {
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
        let mut torn = header(&id(4), &[1u8; 100], 1).to_vec();
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
        segs.rotate(&mut segs.state(), 2).unwrap();
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
        segs.rotate(&mut segs.state(), 3).unwrap();
        drop(segs);
        let _ = Segments::open(dir.path(), HashMap::new()).unwrap();
        assert!(!dir.path().join(segment_name(2)).exists());
        assert!(dir.path().join(segment_name(3)).exists());
    }

    /// An emptied full segment is kept as the spare, and the next segment
    /// is that file: its old frames, still there after the new ones, fail
    /// the new number's checksums, so neither the replay nor the open at
    /// start takes them for frames.
    #[test]
    fn an_emptied_segment_is_reused_and_its_old_frames_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let max = 4096;
        let segs = Segments::open_sized(dir.path(), HashMap::new(), max, 1).unwrap();
        let old: Vec<BodyRef> = (0..4).map(|n| segs.append(&[(id(n), &[b'o'; 1000])]).unwrap()[0]).collect();
        assert!(old.iter().all(|r| r.segment == 1));
        let kept = segs.append(&[(id(10), b"in segment 2")]).unwrap()[0];
        assert_eq!(kept.segment, 2, "segment 1 is full");
        old.iter().for_each(|r| segs.release(*r));
        let doomed = segs.take_doomed();
        assert_eq!(doomed, vec![1]);
        segs.delete(doomed);
        assert!(!dir.path().join(segment_name(1)).exists());
        assert!(dir.path().join(SPARE).exists(), "kept as the spare");
        // Segment 2 fills up; segment 3 is the spare, renamed.
        segs.append(&[(id(11), &[b'x'; 4096])]).unwrap();
        let newest = id(12);
        let new = segs.append(&[(newest, b"new")]).unwrap()[0];
        assert_eq!((new.segment, new.offset), (3, 0));
        assert!(!dir.path().join(SPARE).exists());
        assert!(std::fs::metadata(dir.path().join(segment_name(3))).unwrap().len() >= max, "the old file, old frames after the new one");
        assert_eq!(segs.read(new).unwrap(), b"new");
        assert_eq!(segs.read(kept).unwrap(), b"in segment 2");
        // Only the new frame is read back: by the replay, and by the open
        // at start, which cuts the old ones off and appends after it.
        let found: Vec<(u64, Option<MessageId>)> = frames_from(dir.path(), Position { segment: 3, offset: 0 }, 1).unwrap().into_iter().map(|(n, f)| (n, f.id)).collect();
        assert_eq!(found, vec![(3, Some(newest))]);
        drop(segs);
        let segs = Segments::open_sized(dir.path(), HashMap::from([(2, 2), (3, 1)]), max, 1).unwrap();
        let after = segs.append(&[(id(13), b"after")]).unwrap()[0];
        assert_eq!((after.segment, after.offset), (3, new.offset + (HEADER + 3) as u64));
        assert_eq!(segs.read(new).unwrap(), b"new");
        assert_eq!(segs.read(after).unwrap(), b"after");
    }

    /// Segments written before salting began (format 4) are read with
    /// plain checksums; a new segment is started for salted ones.
    #[test]
    fn segments_from_before_salting_are_read_and_appended_after() {
        let dir = tempfile::tempdir().unwrap();
        // Segment 1 as format 4 wrote it.
        let (first, second) = (id(1), id(2));
        let mut plain = header(&first, b"unsalted", 0).to_vec();
        plain.extend_from_slice(b"unsalted");
        std::fs::write(dir.path().join(segment_name(1)), &plain).unwrap();
        let old = BodyRef { segment: 1, offset: 0, len: 8 };
        let segs = Segments::open_sized(dir.path(), HashMap::from([(1, 1)]), SEGMENT_MAX, 2).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join(segment_name(1))).unwrap().len(), plain.len() as u64, "not taken for a torn tail");
        assert_eq!(segs.read(old).unwrap(), b"unsalted");
        let new = segs.append(&[(second, b"salted")]).unwrap()[0];
        assert_eq!(new.segment, 2, "a new segment for salted frames");
        assert_eq!(segs.read(new).unwrap(), b"salted");
        let found = |salted_from| frames_from(dir.path(), Position::default(), salted_from).unwrap().into_iter().map(|(n, f)| (n, f.id)).collect::<Vec<_>>();
        assert_eq!(found(2), vec![(1, Some(first)), (2, Some(second))]);
        assert_eq!(found(1), vec![(2, Some(second))], "plain frames fail a salted check");
        assert_eq!(found(u64::MAX), vec![(1, Some(first))], "salted frames fail a plain check");
    }
}
