//! Opening a sled database, waiting (boundedly) for its directory lock, and never
//! panicking on a damaged one.
//!
//! sled holds an exclusive lock on its directory until the background flusher thread
//! of the last `Db` handle exits, a moment *after* that handle is dropped. Reopening
//! the same directory at once in the same process (a test that reopens a store, a
//! service restarted in-process) can therefore fail with `WouldBlock`. A lock held by
//! another live process stays held, so the wait is bounded and then the error stands.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::flush::FlushError;

/// A failure of a service's own storage: the same variant for the same failure in
/// every service (each service's error enum wraps it, with its cause). A dead
/// blocking flush is `FlushError::Task`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sled failed")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Flush(#[from] FlushError),
    /// A database that cannot be opened because its files are damaged (sled panics on
    /// some damage, reports other as corruption): where, why, and what to do.
    #[error(
        "the database in {} is damaged ({reason}): move it aside and start the service \
         again, and it rebuilds from its peers (an order replica's --rebuild does this), \
         or restore the directory from a copy",
        .dir.display()
    )]
    Damaged { dir: PathBuf, reason: String },
    /// Stored bytes that do not decode: names what was being read, and why, if a
    /// decoder said.
    #[error("corrupt {what}")]
    Corrupt {
        what: String,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StorageError {
    /// `what` does not decode.
    pub fn corrupt(what: impl Into<String>) -> Self {
        StorageError::Corrupt {
            what: what.into(),
            cause: None,
        }
    }

    /// `what` does not decode, because of `cause`.
    pub fn undecodable(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StorageError::Corrupt {
            what: what.into(),
            cause: Some(Box::new(cause)),
        }
    }
}

/// How long [`open_db`] waits for another handle's lock to be released.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// sled's page cache per database, in MiB, unless configured (`--sled-cache-mb`).
/// sled's own default is 1 GiB per database, which a laptop running four of them
/// (the catalog and three replicas) cannot spare. sled's resident memory is several
/// times its cache: with a million orders stored, 64 MiB gave each replica about
/// 206 MiB resident, 16 MiB about 89 MiB, for about the same orders/s (the indexes
/// grow at their end, so their hot part is small; `client bench --scale` measures it).
pub const DEFAULT_CACHE_MB: u64 = 16;

/// Opens (or creates) the sled database in `dir` with a page cache of `cache_mb`
/// MiB, retrying while its lock is held for up to [`LOCK_WAIT`]. Blocking: call it at
/// start-up or from blocking code.
pub fn open_db(dir: &Path, cache_mb: u64) -> Result<sled::Db, StorageError> {
    open_db_within(dir, cache_mb, LOCK_WAIT)
}

/// [`open_db`] with a wait of the caller's choice.
pub fn open_db_within(dir: &Path, cache_mb: u64, wait: Duration) -> Result<sled::Db, StorageError> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(5);
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_mb.saturating_mul(1024 * 1024));
    let damaged = |reason: String| StorageError::Damaged {
        dir: dir.to_path_buf(),
        reason,
    };
    loop {
        // sled 0.34 panics on some damaged pages while it recovers (e.g. "tried to
        // serialize Uninitialized"); the panic is on this thread, so it is caught and
        // named. (The panic hook has already printed sled's own line.)
        match std::panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
            Err(panic) => return Err(damaged(format!("sled panicked: {}", panic_text(&*panic)))),
            Ok(Err(sled::Error::Io(e))) if is_lock_held(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Ok(Err(sled::Error::Corruption { at, bt: _ })) => {
                return Err(damaged(format!("sled found corruption at {at:?}")))
            }
            Ok(other) => return Ok(other?),
        }
    }
}

/// What a caught panic said.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// sled reports a held lock as an `Other` I/O error whose text names it (the
/// underlying `WouldBlock` is flattened into the message).
fn is_lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_can_be_reopened_right_after_its_last_handle_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        for round in 0..20u64 {
            let db = open_db(dir.path(), DEFAULT_CACHE_MB).expect("open");
            db.insert(b"round", &round.to_be_bytes()).expect("insert");
            db.flush().expect("flush");
            drop(db);
        }
        let db = open_db(dir.path(), DEFAULT_CACHE_MB).expect("reopen");
        assert_eq!(
            db.get(b"round").expect("get").as_deref(),
            Some(&19u64.to_be_bytes()[..])
        );
    }

    #[test]
    fn a_damaged_database_is_refused_with_its_directory_and_the_remedy_not_a_panic() {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = open_db(dir.path(), DEFAULT_CACHE_MB).expect("open");
            let tree = db.open_tree("records").expect("tree");
            for i in 0u64..200_000 {
                tree.insert(i.to_be_bytes(), &[7u8; 60][..])
                    .expect("insert");
            }
            db.flush().expect("flush");
        }
        let file = dir.path().join("db");
        assert!(std::fs::metadata(&file).expect("db file").len() > 10 << 20);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("open the db file");
        for mib in [1u64, 2, 6, 8] {
            f.seek(SeekFrom::Start(mib << 20)).expect("seek");
            f.write_all(&[0xa5; 16]).expect("damage");
        }
        drop(f);
        let refused = open_db(dir.path(), DEFAULT_CACHE_MB).expect_err("a damaged db opened");
        let message = refused.to_string();
        assert!(matches!(refused, StorageError::Damaged { .. }), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("move it aside"), "{message}");
        assert!(
            !message.contains("no message"),
            "sled's own words are lost: {message}"
        );
    }

    #[test]
    fn a_lock_that_stays_held_is_reported_after_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = open_db(dir.path(), DEFAULT_CACHE_MB).expect("open");
        let wait = Duration::from_millis(200);
        let started = Instant::now();
        assert!(open_db_within(dir.path(), DEFAULT_CACHE_MB, wait).is_err());
        assert!(started.elapsed() >= wait);
    }
}
