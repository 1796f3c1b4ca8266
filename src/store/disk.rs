//! Free space on the data directory's filesystem, and the floor below
//! which the relay stops taking new mail (`store.min_free_mb`).
//!
//! Why a floor, not an error handler: sled keeps the first write error
//! it meets as a global state and fails every later operation until the
//! database is reopened. A relay that lets the disk fill up to the last
//! byte would stop delivering too. Stopping new submissions while some
//! room is left keeps the queue draining — delivery frees space — and the
//! state clears by itself when space comes back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct DiskWatch {
    dir: PathBuf,
    floor_bytes: AtomicU64,
    pressed: AtomicBool,
}

impl DiskWatch {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, floor_bytes: AtomicU64::new(0), pressed: AtomicBool::new(false) }
    }

    pub fn set_floor_mb(&self, mb: u64) {
        self.floor_bytes.store(mb.saturating_mul(1024 * 1024), Ordering::Relaxed);
    }

    pub fn floor_bytes(&self) -> u64 {
        self.floor_bytes.load(Ordering::Relaxed)
    }

    /// Bytes an unprivileged writer can still use on the filesystem;
    /// `None` if it cannot be asked.
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a valid NUL-terminated string and `st` is
        // written by statvfs before it is read (only on success).
        let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// Whether free space is below the floor. A change of state is logged
    /// once, not on every call.
    pub fn under_pressure(&self) -> bool {
        let floor = self.floor_bytes();
        let free = self.free_bytes();
        let pressed = floor > 0 && free.is_some_and(|f| f < floor);
        if self.pressed.swap(pressed, Ordering::Relaxed) != pressed {
            let free_mb = free.unwrap_or(0) / (1024 * 1024);
            let floor_mb = floor / (1024 * 1024);
            if pressed {
                tracing::error!(dir = %self.dir.display(), free_mb, min_free_mb = floor_mb, "disk almost full: new mail is refused with 452 4.3.1 until space is freed (`store.min_free_mb`); queued mail is still delivered");
            } else {
                tracing::warn!(dir = %self.dir.display(), free_mb, min_free_mb = floor_mb, "disk space is back above the floor: accepting mail again");
            }
        }
        pressed
    }

    /// The state as last seen by [`DiskWatch::under_pressure`].
    pub fn pressed(&self) -> bool {
        self.pressed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_decides_pressure() {
        let dir = tempfile::tempdir().unwrap();
        let watch = DiskWatch::new(dir.path().to_path_buf());
        let free = watch.free_bytes().expect("statvfs works on a temp dir");
        assert!(free > 0);
        assert!(!watch.under_pressure(), "floor 0 is off");
        watch.set_floor_mb(free / (1024 * 1024) + 1024);
        assert!(watch.under_pressure() && watch.pressed());
        watch.set_floor_mb(1);
        assert!(!watch.under_pressure() && !watch.pressed());
    }
}
