//! A running member of a Raft group: starting it (and the group), knowing when a
//! restarted member has caught up, who leads, linearizable reads, and the figures a
//! member's `/health` shows. The state machine is the group's; everything here is
//! the same for every group.
//!
//! Start-up: the member with the lowest configured id initialises the group with every
//! configured member, unless it or any peer that answers already belongs to one (its
//! data was lost while the others kept theirs). openraft must be initialised on one
//! member only: every member initialising gives endless elections. A member marked
//! *rebuilding* never initialises: it rejoins the group (see [`crate::rejoin`]).
//!
//! Ready: a restarted follower learns of the leader from its first heartbeat, before
//! it has the entries it missed, so knowing the leader alone does not mean caught up.
//! A member is caught up once it leads — confirmed by a majority: one restarted with
//! its own committed vote believes it leads until it hears of a newer term — or once
//! it has applied what its leader reported committed when asked (a fixed target:
//! under load the leader's commit index moves on all the time); and ready while
//! caught up and knowing a leader.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client::ClusterClient;
use common::domain::{LogIndex, ReplicaId, Term};
use common::tasks::Tasks;
use openraft::error::{CheckIsLeaderError, Fatal, RaftError};
use openraft::storage::RaftStateMachine;
use openraft::{Raft, ServerState, SnapshotPolicy};
use reqwest::Url;

use crate::log::LogStore;
use crate::network::{self, MessageError, Network};
use crate::reads::Reads;
use crate::rejoin;
use crate::{Group, Node, NodeId};

/// A group's timing, from its members' flags.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// Shortest election timeout; each timeout is drawn between this and twice it.
    pub election: Duration,
    /// How long an entry may wait for a majority (and a snapshot may take to install).
    pub commit: Duration,
    /// How long a read may wait for the leader to confirm its leadership.
    pub read: Duration,
    /// Log entries between snapshots; as many are kept after the log is purged.
    pub snapshot_entries: u64,
}

impl Settings {
    /// openraft's configuration for a group named `name`.
    pub fn openraft(&self, name: &str) -> Result<openraft::Config, openraft::ConfigError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        openraft::Config {
            cluster_name: name.into(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election),
            election_timeout_max: millis(self.election).saturating_mul(2),
            install_snapshot_timeout: millis(self.commit),
            max_payload_entries: 64,
            snapshot_max_chunk_size: 1 << 20,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_entries),
            max_in_snapshot_log_to_keep: self.snapshot_entries,
            ..Default::default()
        }
        .validate()
    }
}

/// Who a group is: its name (openraft's cluster name) and its route for Raft's
/// messages (`/internal/<route>/…`).
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub name: &'static str,
    pub route: &'static str,
}

/// What a peer says of its place in the group.
#[derive(Debug, Clone, Copy)]
pub struct PeerView {
    pub term: Term,
    pub leader: Option<ReplicaId>,
    pub commit_index: Option<LogIndex>,
}

/// How a member asks a peer for its [`PeerView`] (each group has its own status
/// endpoint). `None`: no answer within `within`, or not a member of this kind of group.
pub trait Probe: Clone + Send + Sync + 'static {
    fn probe(&self, peer: &Url, within: Duration) -> impl Future<Output = Option<PeerView>> + Send;
}

/// What a member reports of itself.
#[derive(Debug, Clone)]
pub struct View {
    pub leading: bool,
    pub term: Term,
    pub leader: Option<ReplicaId>,
    /// Caught up once since its start, knows a leader, and its Raft core runs.
    pub ready: bool,
    /// Why the member stopped for good (its Raft core died, or its service failed).
    pub failure: Option<String>,
    pub commit_index: Option<LogIndex>,
    pub applied_index: Option<LogIndex>,
    /// As leader, every follower and how many log entries it is behind (0 elsewhere).
    pub behind: Vec<(ReplicaId, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft settings")]
    Config(#[source] Box<openraft::ConfigError>),
    #[error("raft did not start")]
    Fatal(#[source] Box<Fatal<NodeId>>),
    #[error("the raft log's state could not be read or written")]
    Storage(#[source] Box<openraft::StorageError<NodeId>>),
}

/// Why a linearizable read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot confirm leadership")]
    NotConfirmed(#[source] Box<CheckIsLeaderError<NodeId, Node>>),
    #[error("no majority confirmed the leadership within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("raft has stopped")]
    Fatal(#[source] Box<Fatal<NodeId>>),
}

/// Why a confirmation failed (before it becomes a [`ReadError`]).
enum Unconfirmed {
    Raft(Box<RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>>),
    /// A restored leader did not apply its log within the read wait.
    Timeout,
}

impl From<RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>> for Unconfirmed {
    fn from(e: RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>) -> Self {
        Unconfirmed::Raft(Box::new(e))
    }
}

/// Handle to a running member. Cheap to clone.
pub struct RaftNode<C: Group> {
    inner: Arc<Inner<C>>,
}

// By hand: a derive would ask `C: Clone`.
impl<C: Group> Clone for RaftNode<C> {
    fn clone(&self) -> Self {
        RaftNode {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C: Group> {
    id: ReplicaId,
    raft: Raft<C>,
    /// Set once this member has caught up after its start (see the module docs).
    caught_up: AtomicBool,
    /// Set while this member rejoins the group after a rebuild: it neither votes nor
    /// stands for election (see [`crate::rejoin`]).
    rebuilding: AtomicBool,
    /// The term this member led when it stopped, if it restarts as that term's
    /// leader (see [`RaftNode::linearize`]).
    restored_term: Option<u64>,
    /// Linearizable reads share leadership confirmations (see [`Reads`]).
    reads: Reads,
    log: LogStore<C>,
    settings: Settings,
    /// The service's lifecycle: a dead Raft core stops the service through it.
    tasks: Tasks,
}

impl<C: Group> RaftNode<C> {
    /// Starts member `id` of the group of `members` (every member, this one included)
    /// on `log` and `machine`; messages go through `client`. Spawns the catch-up watch,
    /// and on the lowest id the group's initialisation, on `tasks`; or, if `log` is
    /// marked rebuilding, the rejoining of the group.
    #[allow(clippy::too_many_arguments)]
    pub async fn start<M: RaftStateMachine<C>>(
        id: ReplicaId,
        group: Identity,
        members: &[(ReplicaId, Url)],
        log: LogStore<C>,
        machine: M,
        client: ClusterClient,
        settings: Settings,
        probe: impl Probe,
        tasks: &Tasks,
    ) -> Result<Self, StartError> {
        let peers: Vec<(ReplicaId, Url)> =
            members.iter().filter(|(p, _)| *p != id).cloned().collect();
        let config = settings
            .openraft(group.name)
            .map_err(|e| StartError::Config(Box::new(e)))?;
        let rebuilding = log
            .rebuilding()
            .map_err(|e| StartError::Storage(Box::new(e)))?;
        let network = Network::new(client.clone(), group.route, peers.clone());
        let raft = Raft::new(id.node(), Arc::new(config), network, log.clone(), machine)
            .await
            .map_err(|e| StartError::Fatal(Box::new(e)))?;
        if rebuilding {
            raft.runtime_config().elect(false);
        }
        let restored_term = {
            let m = raft.metrics().borrow().clone();
            (m.state == ServerState::Leader).then_some(m.current_term)
        };
        let node = RaftNode {
            inner: Arc::new(Inner {
                id,
                raft,
                caught_up: AtomicBool::new(false),
                rebuilding: AtomicBool::new(rebuilding),
                restored_term,
                reads: Reads::default(),
                log,
                settings,
                tasks: tasks.clone(),
            }),
        };
        tasks.spawn_cancellable(
            "raft core watch",
            watch_core(node.inner.raft.metrics(), tasks.clone()),
        );
        tasks.spawn_cancellable(
            "raft catch-up",
            catch_up(node.clone(), probe.clone(), peers.clone()),
        );
        if rebuilding {
            let wait = settings.commit.saturating_mul(2) + settings.election;
            let peers = rejoin::Peers {
                client,
                route: group.route,
                peers,
                wait,
            };
            tasks.spawn_cancellable("raft rejoin", rejoin::run(node.clone(), peers));
        } else if peers.iter().all(|(p, _)| *p > id) {
            let members: BTreeMap<NodeId, Node> = members
                .iter()
                .map(|(p, url)| {
                    (
                        p.node(),
                        Node {
                            addr: url.to_string(),
                        },
                    )
                })
                .collect();
            tasks.spawn_cancellable(
                "raft initialise",
                initialize(node.clone(), members, probe, peers),
            );
        }
        Ok(node)
    }

    pub fn id(&self) -> ReplicaId {
        self.inner.id
    }

    /// The openraft handle, for `client_write` and the state machine's reads.
    pub fn raft(&self) -> &Raft<C> {
        &self.inner.raft
    }

    /// Ok if this member leads (and so takes writes); otherwise the leader it knows.
    pub fn leads(&self) -> Result<(), Option<ReplicaId>> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        if m.state == ServerState::Leader {
            Ok(())
        } else {
            Err(m.current_leader.and_then(ReplicaId::of_node))
        }
    }

    /// As leader: confirms the leadership with a majority and waits until everything
    /// committed before the read is applied here (a linearizable read), within the
    /// read wait. Concurrent reads share confirmations (see `Reads`).
    ///
    /// openraft's read index is the newer of the commit index and the first entry of
    /// the leader's term. A member restarted as the leader of its old term (its vote
    /// was committed) has neither right: the commit index it restored may be older
    /// than what was acknowledged before the crash (it is not flushed on every
    /// commit), and its term's first entry is older still. Such a leader waits for
    /// every entry in its log instead: as the confirmed leader it commits them all, so
    /// the wait ends, and it includes everything acknowledged.
    pub async fn linearize(&self) -> Result<(), ReadError> {
        let wait = self.inner.settings.read;
        let confirm = || async {
            self.inner.raft.ensure_linearizable().await?;
            let m = self.inner.raft.metrics().borrow().clone();
            if self.inner.restored_term == Some(m.current_term) {
                let waited = self
                    .inner
                    .raft
                    .wait(Some(wait))
                    .applied_index_at_least(m.last_log_index, "restored leader's read")
                    .await;
                if waited.is_err() {
                    return Err(Unconfirmed::Timeout);
                }
            }
            Ok(())
        };
        let read = self.inner.reads.serve(confirm);
        match tokio::time::timeout(wait, read).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Unconfirmed::Raft(e))) => match *e {
                RaftError::APIError(e) => Err(ReadError::NotConfirmed(Box::new(e))),
                RaftError::Fatal(e) => Err(ReadError::Fatal(Box::new(e))),
            },
            Ok(Err(Unconfirmed::Timeout)) | Err(_) => Err(ReadError::Timeout(wait)),
        }
    }

    /// What this member reports of itself.
    pub fn view(&self) -> View {
        let m = self.inner.raft.metrics().borrow().clone();
        let last = m.last_log_index.map_or(0, |i| i.saturating_add(1));
        let behind = m
            .membership_config
            .nodes()
            .filter(|(id, _)| **id != m.id)
            .filter_map(|(follower, _)| {
                // Only the leader knows; elsewhere 0, not the values of an earlier term.
                let behind = match &m.replication {
                    Some(replication) => {
                        let matched = replication.get(follower).copied().flatten();
                        last.saturating_sub(matched.map_or(0, |l| l.index.saturating_add(1)))
                    }
                    None => 0,
                };
                Some((ReplicaId::of_node(*follower)?, behind))
            })
            .collect();
        let leader = m.current_leader.and_then(ReplicaId::of_node);
        View {
            leading: m.state == ServerState::Leader,
            term: Term(m.current_term),
            leader,
            // Caught up once (after its start) and knows a leader. Not "has applied
            // all it knows committed": under load a member applies a moment after it
            // learns of a commit, so that would flicker.
            ready: self.inner.caught_up.load(Ordering::SeqCst)
                && !self.inner.rebuilding.load(Ordering::SeqCst)
                && leader.is_some()
                && m.running_state.is_ok(),
            failure: self.inner.tasks.failure().map(str::to_string),
            commit_index: self.inner.log.committed_index(),
            applied_index: m.last_applied.map(|l| LogIndex(l.index)),
            behind,
        }
    }

    /// Answers one of Raft's messages from a peer (see [`network::handle`]), or a
    /// rebuilt member's request to rejoin (`rejoin`, see [`crate::rejoin`]). While this
    /// member rebuilds, it grants no vote.
    pub async fn handle(&self, kind: &str, body: &[u8]) -> Result<Vec<u8>, MessageError> {
        match kind {
            "rejoin" => rejoin::answer(&self.inner.raft, body).await,
            "vote" if self.inner.rebuilding.load(Ordering::SeqCst) => {
                rejoin::refuse_vote(&self.inner.raft, body)
            }
            _ => network::handle(&self.inner.raft, kind, body).await,
        }
    }

    /// Waits until this member has caught up after its start.
    pub(crate) async fn until_caught_up(&self) {
        while !self.inner.caught_up.load(Ordering::SeqCst) {
            tokio::time::sleep(self.inner.settings.heartbeat).await;
        }
    }

    /// The end of a rebuild: the mark is cleared (durably), and this member votes and
    /// stands for election again.
    pub(crate) async fn rebuilt(&self) -> Result<(), openraft::StorageError<NodeId>> {
        self.inner.log.set_rebuilding(false).await?;
        self.inner.rebuilding.store(false, Ordering::SeqCst);
        self.inner.raft.runtime_config().elect(true);
        Ok(())
    }

    /// Stops the service for good, saying why.
    pub(crate) fn fail(&self, why: String) {
        self.inner.tasks.fail(why);
    }

    /// Stops the member (its tasks end; the log is already durable).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
    }
}

/// Stops the service for good when its Raft core dies (a storage error in the log or
/// the state machine is fatal to openraft: the member then neither votes nor takes
/// entries, and only a restart, which catches up, brings it back). A core stopped by
/// shutdown is not a failure.
async fn watch_core(
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, Node>>,
    tasks: Tasks,
) {
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            if !matches!(fatal, Fatal::Stopped) {
                tasks.fail(format!("the Raft core stopped: {fatal}"));
            }
            return;
        }
        if metrics.changed().await.is_err() {
            // The core is gone without saying so: it panicked (openraft tells a panic
            // only to whoever calls it next).
            if metrics.borrow().running_state.is_ok() && !tasks.is_stopping() {
                tasks.fail("the Raft core stopped: it panicked");
            }
            return;
        }
    }
}

/// Marks the member caught up once it leads (confirmed by a majority), or once it has
/// applied what its leader reported committed when asked; ends then, or when the
/// member stops.
async fn catch_up<C: Group>(node: RaftNode<C>, probe: impl Probe, peers: Vec<(ReplicaId, Url)>) {
    let inner = &node.inner;
    let mut metrics = inner.raft.metrics();
    let me = inner.id.node();
    let mut target: Option<(u64, Option<u64>)> = None; // (leader, its commit index)
    loop {
        let (leader, applied, stopped) = {
            let m = metrics.borrow_and_update();
            (
                m.current_leader,
                m.last_applied.map(|l| l.index),
                m.running_state.is_err(),
            )
        };
        if stopped {
            return;
        }
        let done = match leader {
            // A member restarted with its own committed vote believes it leads until
            // it hears of a newer term: it has caught up only once a majority
            // confirms its leadership and it has applied what was committed before.
            Some(l) if l == me => node.linearize().await.is_ok(),
            Some(l) => {
                if target.is_none_or(|(asked, _)| asked != l) {
                    target = None;
                    if let Some((_, url)) = peers.iter().find(|(p, _)| p.node() == l) {
                        if let Some(view) = probe.probe(url, inner.settings.read).await {
                            target = Some((l, view.commit_index.map(LogIndex::get)));
                        }
                    }
                }
                target.is_some_and(|(_, commit)| applied >= commit)
            }
            None => false,
        };
        if done {
            inner.caught_up.store(true, Ordering::SeqCst);
            tracing::info!(applied, "caught up with the raft group");
            return;
        }
        // Wait for progress (or a little while, if the leader could not be asked).
        if let Ok(Err(_)) = tokio::time::timeout(inner.settings.heartbeat, metrics.changed()).await
        {
            return; // the member has stopped
        }
    }
}

/// Initialises the group with every configured member, unless a peer already
/// belongs to one.
async fn initialize<C: Group>(
    node: RaftNode<C>,
    members: BTreeMap<NodeId, Node>,
    probe: impl Probe,
    peers: Vec<(ReplicaId, Url)>,
) {
    let raft = &node.inner.raft;
    if raft.is_initialized().await.unwrap_or(true) {
        return;
    }
    for (peer, url) in &peers {
        if let Some(view) = probe.probe(url, node.inner.settings.election).await {
            if view.term > Term(0) || view.leader.is_some() {
                tracing::info!(
                    %peer,
                    "a peer already belongs to a raft group; not initialising"
                );
                return;
            }
        }
    }
    match raft.initialize(members).await {
        Ok(()) => tracing::info!("initialised the raft group"),
        Err(e) => tracing::info!(error = %e, "raft group not initialised"),
    }
}
