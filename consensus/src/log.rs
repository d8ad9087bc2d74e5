//! Raft's log and vote, in two trees of a sled database of their own (e.g. `raft-log`
//! in an order replica's data directory).
//!
//! - `raft_log`: log index (big-endian u64) → the entry, bincode.
//! - `raft_state`: `vote`, `committed` and `purged` (the last log id removed by
//!   compaction), bincode; and `rebuilding` while the member rejoins its group after
//!   a rebuild (see [`crate::rejoin`]).
//!
//! Durability, as openraft requires: an appended entry is reported written only once a
//! flush that covers it has returned; the vote is flushed before `save_vote` returns.
//! Appends do not flush one by one: [`LogStore::append`] writes the entries and hands
//! the completion callback to one flusher thread ([`common::flush::Flusher`]), which
//! drains every callback queued while it flushed, flushes once, and completes them in
//! order (group commit, so many writes share one fsync even across entries). A tracked
//! task stops it at shutdown.
//!
//! Why a database of its own: every entry is written, and then deleted when the log is
//! purged. In the state machine's database, those dead entries shared sled's log
//! segments with data that stays, and sled reclaims a segment only once it is half
//! dead, so they were never given back (measured with the orders: 340 bytes of disk per
//! order against 222 without the log). On their own, whole segments die and are
//! reclaimed. The state machine's writes are then not made durable by the log's
//! flushes: a state machine flushes its own before a snapshot lets openraft purge the
//! entries they came from, and after a crash openraft applies again whatever the log
//! holds past the machine's position.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::domain::LogIndex;
use common::flush::{FlushError, Flusher};
use common::tasks::Tasks;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, encode, io_error};
use crate::{Group, NodeId};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";
const REBUILDING: &[u8] = b"rebuilding";

/// Index value meaning "nothing committed yet" in [`LogStore::committed_index`].
const NONE: u64 = u64::MAX;

/// Handle to the log; openraft owns one and clones another as its reader.
pub struct LogStore<C: Group> {
    db: sled::Db,
    log: sled::Tree,
    state: sled::Tree,
    /// Completion callbacks of appends, for the flusher thread.
    flushes: Flusher<LogFlushed<C>>,
    /// Index of the newest entry known committed, for `/health` ([`NONE`] if none).
    committed: Arc<AtomicU64>,
    /// Test-only fault injection: abort right after an entry of application data is
    /// durably appended, before openraft can replicate it.
    crash_before_replicate: bool,
}

// By hand: a derive would ask `C: Clone` of the type config.
impl<C: Group> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            log: self.log.clone(),
            state: self.state.clone(),
            flushes: self.flushes.clone(),
            committed: self.committed.clone(),
            crash_before_replicate: self.crash_before_replicate,
        }
    }
}

fn log_error(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    io_error(ErrorSubject::Logs, verb, e)
}

impl<C: Group> LogStore<C> {
    /// Opens (or creates) the log's database in `dir`, with a page cache of `cache_mb`
    /// MiB, and starts the flusher thread (stopped by a task on `tasks`).
    /// `crash_before_replicate` is a test-only fault (see the field).
    pub fn open(
        dir: &Path,
        cache_mb: u64,
        crash_before_replicate: bool,
        tasks: &Tasks,
    ) -> Result<Self, common::storage::StorageError> {
        let db = common::storage::open_db(dir, cache_mb)?;
        let flushes = Flusher::start(db.clone(), "raft-log-flush", complete::<C>)?;
        let stop = flushes.clone();
        let stopping = tasks.stopping();
        tasks.spawn("raft log flusher", async move {
            stopping.await;
            stop.stop();
        });
        let store = LogStore {
            log: db.open_tree("raft_log")?,
            state: db.open_tree("raft_state")?,
            db,
            flushes,
            committed: Arc::new(AtomicU64::new(NONE)),
            crash_before_replicate,
        };
        if let Some(bytes) = store.state.get(COMMITTED)? {
            if let Ok(Some(id)) = decode::<Option<LogId<NodeId>>>(&bytes) {
                store.committed.store(id.index, Ordering::SeqCst);
            }
        }
        Ok(store)
    }

    /// Index of the newest entry known committed.
    pub fn committed_index(&self) -> Option<LogIndex> {
        Some(self.committed.load(Ordering::SeqCst))
            .filter(|i| *i != NONE)
            .map(LogIndex)
    }

    /// Whether this member is being rebuilt: its log and vote were lost, and it has
    /// not yet rejoined its group as a voter (see [`crate::rejoin`]).
    pub fn rebuilding(&self) -> Result<bool, StorageError<NodeId>> {
        self.state
            .contains_key(REBUILDING)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, &e))
    }

    /// Marks this member as being rebuilt, or no longer, durably (flushed before it
    /// returns: a member restarted mid-rebuild must go on refusing to vote).
    pub async fn set_rebuilding(&self, rebuilding: bool) -> Result<(), StorageError<NodeId>> {
        let written = if rebuilding {
            self.state.insert(REBUILDING, &[1u8][..]).map(drop)
        } else {
            self.state.remove(REBUILDING).map(drop)
        };
        written.map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.flush().await
    }

    fn get_state<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self
            .state
            .get(key)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, &e))?
        {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put_state<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError<NodeId>> {
        self.state
            .insert(key, encode(value)?)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StorageError<NodeId>> {
        common::flush::flush_blocking(&self.db)
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        match self
            .log
            .last()
            .map_err(|e| log_error(ErrorVerb::Read, &e))?
        {
            Some((_, bytes)) => Ok(Some(decode::<C::Entry>(&bytes)?.log_id)),
            None => Ok(None),
        }
    }
}

/// Completes the append callbacks of one flush that covers them, in the order they
/// were queued.
fn complete<C: Group>(
    callbacks: &mut Vec<LogFlushed<C>>,
    result: Result<(), FlushError>,
    _took: std::time::Duration,
) {
    for callback in callbacks.drain(..) {
        callback.log_io_completed(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        });
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl<C: Group> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (key, bytes) = item.map_err(|e| log_error(ErrorVerb::Read, &e))?;
            let index = key
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    log_error(ErrorVerb::Read, &std::io::Error::other("corrupt log key"))
                })?;
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&bytes)?);
        }
        Ok(entries)
    }
}

impl<C: Group> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.get_state(PURGED)?.flatten();
        let last = self.last_entry_id()?.or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_state(VOTE, vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_state(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Durable with the next flush; openraft does not need it flushed (a restarted
        // member learns the commit again from the leader).
        self.put_state(COMMITTED, &committed)?;
        self.committed
            .store(committed.map_or(NONE, |c| c.index), Ordering::SeqCst);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_state(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + Send,
        I::IntoIter: Send,
    {
        let mut data = false;
        let mut writes = Vec::new();
        for entry in entries {
            data |= matches!(entry.payload, EntryPayload::Normal(_));
            writes.push((index_key(entry.log_id.index), encode(&entry)?));
        }
        // One entry (the usual case) is one insert, atomic by itself; more are a sled
        // batch, which adds a marker that makes them atomic together (in the same I/O
        // buffer as the entries: see vendor/README.md).
        let written = match <[_; 1]>::try_from(writes) {
            Ok([(key, value)]) => self.log.insert(key, value).map(drop),
            Err(writes) => {
                let mut batch = sled::Batch::default();
                for (key, value) in writes {
                    batch.insert(&key, value);
                }
                self.log.apply_batch(batch)
            }
        };
        written.map_err(|e| log_error(ErrorVerb::Write, &e))?;
        if data && self.crash_before_replicate {
            // The fault's point: in this member's log (durably), and since openraft
            // replicates only after the append returns, on no follower.
            let _ = self.flush().await;
            tracing::error!("fault injection: crashing before replication");
            std::process::abort();
        }
        self.flushes
            .queue(callback)
            .map_err(|e| log_error(ErrorVerb::Write, &e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Entries from `log_id` on conflict with the leader's: drop them, durably, so
        // that a restart cannot bring them back.
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(|e| log_error(ErrorVerb::Read, &e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| log_error(ErrorVerb::Delete, &e))?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash in between leaves entries that are
        // simply purged again.
        self.put_state(PURGED, &Some(log_id))?;
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || remove_through(&log, log_id.index))
            .await
            .map_err(|e| log_error(ErrorVerb::Delete, &std::io::Error::other(e.to_string())))?
    }
}

/// Entries removed per batch by [`remove_through`].
const PURGE_BATCH: usize = 1024;

/// Removes the entries up to `index`, a batch of [`PURGE_BATCH`] at a time. sled
/// holds a whole batch in memory while it applies it: measured on a tree of 20,000
/// entries of 4 KiB, removing 19,000 in one batch took the process from 60 to 300 MiB
/// resident and 0.7 s, in batches of 1,024 it stayed at 60 MiB and took 0.3 s (the
/// jump `client bench --scale` saw on catalog replicas when a snapshot let a long log
/// go). Blocking: run it off the async threads.
fn remove_through(log: &sled::Tree, index: u64) -> Result<(), StorageError<NodeId>> {
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for item in log.range(..=index_key(index)) {
        let (key, _) = item.map_err(|e| log_error(ErrorVerb::Read, &e))?;
        batch.remove(key);
        in_batch += 1;
        if in_batch == PURGE_BATCH {
            log.apply_batch(std::mem::take(&mut batch))
                .map_err(|e| log_error(ErrorVerb::Delete, &e))?;
            in_batch = 0;
        }
    }
    log.apply_batch(batch)
        .map_err(|e| log_error(ErrorVerb::Delete, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_in_batches_removes_exactly_the_entries_through_its_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::open(dir.path()).expect("sled");
        let log = db.open_tree("log").expect("tree");
        let entries = 3 * PURGE_BATCH as u64 + 17;
        for i in 1..=entries {
            log.insert(index_key(i), &i.to_be_bytes()).expect("insert");
        }
        let through = 2 * PURGE_BATCH as u64 + 5;
        remove_through(&log, through).expect("purge");
        let first = log.first().expect("read").map(|(k, _)| k);
        assert_eq!(first.as_deref(), Some(&index_key(through + 1)[..]));
        assert_eq!(log.len() as u64, entries - through);
        // Purging again (after a crash mid-purge) changes nothing more.
        remove_through(&log, through).expect("again");
        assert_eq!(log.len() as u64, entries - through);
    }
}
