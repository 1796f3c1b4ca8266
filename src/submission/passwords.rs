//! Checking passwords against the argon2 hashes of `relay.toml`, with a
//! hard bound on the memory the checks can hold at once.
//!
//! Argon2 is memory-hard on purpose: each check of a default hash fills
//! 19 MiB. Run on tokio's blocking pool, every check landed on whichever
//! thread was free and left its 19 MiB in that thread's malloc arena, so
//! a few clients guessing in parallel pushed RSS past 400 MB. Here a fixed
//! number of worker threads each own one reusable block buffer: the
//! memory is `WORKERS` × the largest hash's cost, however many clients
//! guess, and sessions waiting for a worker hold only their password.
//! A worker frees its buffer as soon as no check waits: kept, two idle
//! workers held 38 MiB for the rest of the run after the first logins
//! (a third of the resident memory of a relay with 10 000 messages
//! queued).

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::oneshot;

/// Threads that run argon2. Two cores' worth: more would only queue.
const WORKERS: usize = 2;

/// Checks waiting for a worker before further clients wait for a slot
/// (which holds no password, only a place in the semaphore queue).
const QUEUED: usize = 64;

/// A hash of a password nobody has, checked for unknown user names so
/// they cost the same as a wrong password.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$kzYgEI0dAbE0vcd9W9H1B6cCQdLAZh5zSSh6qdnfvZg";

struct Job {
    hash: Arc<str>,
    password: Vec<u8>,
    done: oneshot::Sender<bool>,
}

/// The argon2 workers. Dropping the last handle stops them.
#[derive(Clone)]
pub struct Checker {
    jobs: crossbeam_channel::Sender<Job>,
    slots: Arc<tokio::sync::Semaphore>,
    dummy: Arc<str>,
}

impl Checker {
    pub fn start() -> Self {
        Self::start_counting(Arc::default())
    }

    /// Starts the workers; `held` follows the bytes of block buffers they
    /// hold: while a check runs, or while further checks wait.
    fn start_counting(held: Arc<AtomicUsize>) -> Self {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..WORKERS {
            let (rx, held) = (rx.clone(), held.clone());
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || work(&rx, &held));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        Self { jobs, slots: Arc::new(tokio::sync::Semaphore::new(QUEUED)), dummy: DUMMY.into() }
    }

    /// Whether `password` matches `hash` (`None`: an unknown user, checked
    /// against a dummy hash so the answer takes as long).
    pub async fn check(&self, hash: Option<Arc<str>>, password: &[u8]) -> bool {
        let Ok(_slot) = self.slots.acquire().await else { return false };
        let known = hash.is_some();
        let (done, answer) = oneshot::channel();
        let job = Job { hash: hash.unwrap_or_else(|| self.dummy.clone()), password: password.to_vec(), done };
        if self.jobs.send(job).is_err() {
            return false;
        }
        answer.await.unwrap_or(false) && known
    }
}

fn work(rx: &crossbeam_channel::Receiver<Job>, held: &AtomicUsize) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // Wait for a check with no buffer held; then check whatever waits
        // in the same buffer, and free it once nothing does.
        let Ok(mut job) = rx.recv() else { return };
        loop {
            let before = memory.capacity();
            let ok = verify(&job.hash, &job.password, &mut memory);
            held.fetch_add((memory.capacity() - before) * size_of::<Block>(), Ordering::AcqRel);
            job.password.fill(0);
            let next = rx.try_recv().ok();
            if next.is_none() {
                held.fetch_sub(memory.capacity() * size_of::<Block>(), Ordering::AcqRel);
                memory = Vec::new();
                // Under glibc's malloc (the library's users; the binary uses
                // mimalloc) the mmap threshold rises past a freed mapping
                // this size, so the next buffer comes from the heap: give
                // it back.
                crate::memory::trim();
            }
            // Answered once the buffer is accounted for.
            let _ = job.done.send(ok);
            match next {
                Some(n) => job = n,
                None => break,
            }
        }
    }
}

/// One check, in `memory` (grown to the hash's cost, then reused).
fn verify(hash: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else { return false };
    let version = parsed.version.map_or(Ok(Version::V0x13), Version::try_from).unwrap_or(Version::V0x13);
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks]).is_err() {
        return false;
    }
    aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok()
}

/// The users that may authenticate, by name, with their PHC hashes.
#[derive(Clone)]
pub struct Users {
    hashes: Arc<HashMap<String, Arc<str>>>,
    /// Credentials already proven this run, as keyed SHA-256 digests: the
    /// billing app reconnects all day, and argon2 costs tens of
    /// milliseconds of CPU per check by design. Only a password that
    /// passed argon2 ever gets here.
    proven: Arc<std::sync::Mutex<HashMap<String, [u8; 32]>>>,
    /// Random per process, so the digests are useless outside it.
    key: Arc<[u8; 32]>,
    /// The argon2 workers, with their bounded memory.
    checker: Checker,
}

impl Users {
    pub fn from_config(users: &[crate::config::UserConfig]) -> Self {
        Self {
            hashes: Arc::new(table(users)),
            proven: Default::default(),
            key: Arc::new(rand::random()),
            checker: Checker::start(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn digest(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&self.key[..]);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn is_proven(&self, user: &str, digest: &[u8; 32]) -> bool {
        let cached = self.proven.lock().ok().and_then(|m| m.get(user).copied());
        cached.is_some_and(|c| aws_lc_rs::constant_time::verify_slices_are_equal(&c, digest).is_ok())
    }

    /// Checks a password; an unknown user costs the same as a wrong
    /// password.
    pub async fn verify(&self, user: &str, password: &[u8]) -> bool {
        let digest = self.digest(user, password);
        if self.is_proven(user, &digest) {
            return true;
        }
        let ok = self.checker.check(self.hashes.get(user).cloned(), password).await;
        if ok && let Ok(mut m) = self.proven.lock() {
            m.insert(user.to_string(), digest);
        }
        ok
    }
}

/// Hashes a password for `relay.toml` (`herald passwd`).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// The configured hashes by user name.
fn table(users: &[crate::config::UserConfig]) -> HashMap<String, Arc<str>> {
    users.iter().map(|u| (u.name.clone(), Arc::from(u.password_hash.as_str()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reusable_memory_gives_argon2s_verdicts() {
        let hash = hash_password("right").unwrap();
        let mut memory = Vec::new();
        for (password, want) in [("right", true), ("wrong", false), ("right", true), ("", false)] {
            assert_eq!(verify(&hash, password.as_bytes(), &mut memory), want, "{password}");
        }
        assert!(!verify("not a hash", b"right", &mut memory));
        // The dummy hash is well formed (its check costs a real argon2 run).
        assert!(PasswordHash::new(DUMMY).is_ok() && !verify(DUMMY, b"", &mut memory));
        assert_eq!(memory.len(), 19456);
    }

    /// The block buffers are held while checks run or wait, and given
    /// back once none does: idle workers hold nothing.
    #[tokio::test]
    async fn idle_workers_hold_no_argon2_memory() {
        let hash: Arc<str> = hash_password("right").unwrap().into();
        let held = Arc::new(AtomicUsize::new(0));
        let checker = Checker::start_counting(held.clone());
        let memory_held = || held.load(Ordering::Acquire);
        assert_eq!(memory_held(), 0);
        let checks: Vec<_> = (0..6)
            .map(|i| {
                let (checker, hash) = (checker.clone(), hash.clone());
                tokio::spawn(async move { checker.check(Some(hash), if i % 2 == 0 { b"right" } else { b"wrong" }).await })
            })
            .collect();
        let mut verdicts = Vec::new();
        for c in checks {
            verdicts.push(c.await.unwrap());
        }
        assert_eq!(verdicts, [true, false, true, false, true, false]);
        assert_eq!(memory_held(), 0, "a worker kept its buffer after the last check");
        // A worker that freed its buffer checks again as well.
        assert!(checker.check(Some(hash.clone()), b"right").await);
        assert!(!checker.check(None, b"right").await);
        assert_eq!(memory_held(), 0);
    }

    #[tokio::test]
    async fn proven_credentials_do_not_open_the_door_to_others() {
        let hash = hash_password("right").unwrap();
        let users = Users::from_config(&[crate::config::UserConfig { name: "app".into(), password_hash: hash, ..Default::default() }]);
        let cases = [("app", "wrong", false), ("app", "right", true), ("app", "right", true), ("app", "wrong", false), ("other", "right", false), ("app", "right\0", false)];
        for (user, password, want) in cases {
            assert_eq!(users.verify(user, password.as_bytes()).await, want, "{user}/{password:?}");
        }
    }
}
