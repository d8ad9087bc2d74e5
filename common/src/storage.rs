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
        "the database in {} is damaged ({reason}): start the replica with --rebuild \
         (`./run.sh rebuild <service>`), which moves its data directory aside and \
         rebuilds it from its peers, or restore the directory from a copy",
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

/// `--rebuild`: moves a replica's data directory `dir` aside, to
/// `<dir>.damaged-<unix seconds>` (kept for inspection, never deleted), so that the
/// replica starts empty and takes its history from its peers. Answers where it went;
/// `None` if there was no directory.
pub fn set_aside(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".damaged-{}", crate::retention::now_ms() / 1000));
    let aside = PathBuf::from(aside);
    std::fs::rename(dir, &aside)?;
    tracing::warn!(
        from = %dir.display(),
        to = %aside.display(),
        "rebuilding: the data directory is set aside; this replica takes its history from its peers"
    );
    Ok(Some(aside))
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

/// The key, in a database's default tree, that says the database was created (by
/// [`open_db`], flushed before anything else is written). sled's recovery stops at
/// the first damaged part of its log, and when that is early it opens a damaged
/// database as an empty one, without an error: a catalog would then seed its stock
/// again and a Raft replica forget its vote. A database whose files hold data but
/// which opens without this key is therefore refused as damaged.
const CREATED: &[u8] = b"toystore.created";

/// Opens (or creates) the sled database in `dir` with a page cache of `cache_mb`
/// MiB, retrying while its lock is held for up to [`LOCK_WAIT`]. A damaged database
/// is [`StorageError::Damaged`]: when sled panics or reports corruption, or when a
/// database whose files hold data opens empty (see `CREATED`; a damage that rolls
/// it back to an earlier non-empty state cannot be told from that state). Blocking:
/// call it at start-up or from blocking code.
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
    // sled's log file is empty until its first flush.
    let had_files = std::fs::metadata(dir.join("db")).is_ok_and(|m| m.len() > 0);
    let db = loop {
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
            Ok(other) => break other?,
        }
    };
    if db.get(CREATED)?.is_none() {
        if had_files && !holds_data(&db)? {
            return Err(damaged(
                "its files hold data but it opened empty: sled's recovery found no \
                 readable log"
                    .into(),
            ));
        }
        // A new database, or one from before the mark existed.
        db.insert(CREATED, &[1u8][..])?;
        db.flush()?;
    }
    Ok(db)
}

/// Whether any tree of `db` holds a key.
fn holds_data(db: &sled::Db) -> Result<bool, sled::Error> {
    for name in db.tree_names() {
        if !db.open_tree(name)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
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
        assert!(message.contains("--rebuild"), "{message}");
        assert!(
            !message.contains("no message"),
            "sled's own words are lost: {message}"
        );
    }

    #[test]
    fn a_database_from_before_the_mark_opens_and_one_that_lost_its_log_does_not() {
        let old = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(old.path()).expect("open");
            db.open_tree("orders")
                .expect("tree")
                .insert(b"1", b"Tux")
                .expect("insert");
            db.flush().expect("flush");
        }
        let db = open_db(old.path(), DEFAULT_CACHE_MB).expect("an unmarked db with data");
        assert!(db.get(CREATED).expect("get").is_some());
        drop(db);

        let lost = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(lost.path()).expect("open");
            db.insert(b"x", b"y").expect("insert");
            db.flush().expect("flush");
        }
        // What sled's recovery leaves when its log is unreadable: files, no data.
        for entry in std::fs::read_dir(lost.path()).expect("list") {
            let path = entry.expect("entry").path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
            {
                std::fs::remove_file(path).expect("remove snapshot");
            }
        }
        let db_file = lost.path().join("db");
        let len = std::fs::metadata(&db_file).expect("db file").len();
        std::fs::write(&db_file, vec![0u8; len as usize]).expect("zero the log");
        let refused = open_db(lost.path(), DEFAULT_CACHE_MB).expect_err("opened empty");
        assert!(refused.to_string().contains("opened empty"), "{refused}");
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
