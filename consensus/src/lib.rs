//! The Raft machinery a replicated toystore group runs on, whatever its state machine:
//! today the order replicas' log (`order::raft`), and tomorrow the catalog's.
//!
//! openraft 0.9 (with `storage-v2`) supplies the algorithm; this crate supplies what
//! openraft leaves to the application and what does not depend on what the log holds:
//!
//! - [`log`]: the log and the vote in a sled database of their own, flushed before
//!   openraft is told (group commit across appends).
//! - [`network`]: Raft's messages over the cluster's pooled HTTP client, bincode bodies
//!   at `/internal/<route>/{append,vote,snapshot}`; and [`network::handle`], their
//!   receiving end ([`RaftNode::handle`] adds `rejoin`, see [`rejoin`]).
//! - [`proposer`]: the task that batches client writes into log entries, several
//!   entries in flight, and answers each write when its entry is applied.
//! - [`node`]: a running member — start-up (who initialises the group), "caught up"
//!   after a restart, leadership and linearizable reads, the figures `/health` shows.
//! - [`rejoin`]: how a member whose log and vote were lost (`--rebuild`) rejoins the
//!   group without ever voting twice in a term.
//! - [`snapshot`]: snapshot data that is built only when first read.
//! - [`codec`]: bincode, and openraft's storage errors.
//!
//! A group defines its openraft type config with [`openraft::declare_raft_types!`]
//! (only `D`, `R` and `SnapshotData`; the rest keep openraft's defaults, which
//! [`Group`] names) and writes its state machine; everything else comes from here.

// openraft's storage traits return its `StorageError` (over 200 bytes); our helpers
// return the same type rather than convert back and forth.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod log;
pub mod network;
pub mod node;
pub mod proposer;
mod reads;
pub mod rejoin;
pub mod snapshot;

use openraft::impls::OneshotResponder;
use openraft::{BasicNode, RaftTypeConfig, TokioRuntime};

pub use node::{Identity, PeerView, Probe, RaftNode, ReadError, Settings, StartError, View};
pub use proposer::{Limits, Proposal, ProposeError, Proposer};

/// A member's id in openraft (the replica id, widened).
pub type NodeId = u64;

/// What openraft stores about a member: its URL (informational; the address used is
/// always the one in the member's own configuration, see [`network`]).
pub type Node = BasicNode;

/// An openraft type config as toystore's groups declare it: `u64` ids, [`BasicNode`]s,
/// openraft's own entry, responder and tokio runtime. Implemented for every such
/// config.
pub trait Group:
    RaftTypeConfig<
    NodeId = NodeId,
    Node = Node,
    Entry = openraft::Entry<Self>,
    Responder = OneshotResponder<Self>,
    AsyncRuntime = TokioRuntime,
>
{
}

impl<C> Group for C where
    C: RaftTypeConfig<
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<C>,
        Responder = OneshotResponder<C>,
        AsyncRuntime = TokioRuntime,
    >
{
}
