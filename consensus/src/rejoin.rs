//! Rejoining the group after a rebuild: a member whose log and vote were lost (its
//! data directory set aside by `--rebuild`) comes back without ever voting twice in
//! one term.
//!
//! Why it matters: Raft is safe because each member votes at most once per term and
//! remembers it. A member that forgot could give a second candidate a term it already
//! gave away, and two leaders could be elected in that term. An empty member would
//! also grant its vote to a candidate that lacks committed entries (an empty log is
//! never newer than the candidate's), and that leader would overwrite them.
//!
//! So a rebuilt member, marked *rebuilding* in its log's database until it is done
//! (the mark survives restarts):
//! 1. never stands for election and answers every vote request "not granted";
//! 2. asks the leader to turn it into a learner (openraft's `RemoveVoters`, kept as a
//!    learner). The other two members commit that change; from then on no quorum
//!    counts this member, whatever it voted before;
//! 3. takes the log, or a snapshot, from the leader as a learner, until it has
//!    applied what the leader reported committed (the usual catch-up, in `node`);
//! 4. asks the leader to make it a voter again (`AddVoterIds`), then clears its mark,
//!    and votes and stands for election again.
//!
//! Step 4 is safe because any term in which the member voted before the loss is no
//! newer than the term of the leader that committed step 2. The candidate it voted for
//! was one of the other two members (or itself), and both of them had to accept that
//! leader's term for step 2 to commit; terms only grow. From step 3 on, the member
//! holds that leader's term (or a newer one) in its own vote.
//!
//! The price: while it is a learner the group has two voters and needs both, so a
//! rebuild waits until both other members are up, and the group stops taking writes
//! if one of them fails before step 4 (until it is back).

use std::collections::BTreeSet;
use std::time::Duration;

use common::backoff::Backoff;
use common::client::{endpoint, ClusterClient};
use common::domain::ReplicaId;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{ChangeMembers, Raft, ServerState};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::codec::{from_bytes, to_bytes};
use crate::network::MessageError;
use crate::{Group, NodeId, RaftNode};

/// The change a rebuilt member asks of the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Step 2: no longer a voter (kept as a learner).
    Demote,
    /// Step 4: a voter again.
    Promote,
}

/// A rebuilt member's request (`/internal/<route>/rejoin`, bincode).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Request {
    pub member: NodeId,
    pub step: Step,
}

/// Why a member that was asked did not make the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refused {
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Failed(String),
}

/// As any member: answers a rebuilt member's request; the leader makes the change
/// and answers once it is committed (both halves of openraft's joint change).
pub(crate) async fn answer<C: Group>(raft: &Raft<C>, body: &[u8]) -> Result<Vec<u8>, MessageError> {
    let request: Request = from_bytes(body).map_err(MessageError::Unreadable)?;
    to_bytes(&change(raft, request).await).map_err(MessageError::Encode)
}

async fn change<C: Group>(raft: &Raft<C>, request: Request) -> Result<(), Refused> {
    let Request { member, step } = request;
    let (state, leader, membership) = {
        let m = raft.metrics().borrow().clone();
        (m.state, m.current_leader, m.membership_config.clone())
    };
    if state != ServerState::Leader {
        return Err(Refused::NotLeader(leader));
    }
    let config = membership.membership();
    if config.get_node(&member).is_none() {
        return Err(Refused::Failed(format!(
            "{member} is not a member of this group"
        )));
    }
    let uniform = config.get_joint_config().len() == 1;
    let voter = config.voter_ids().any(|v| v == member);
    let member_set = BTreeSet::from([member]);
    let changes = match step {
        Step::Demote if voter || !uniform => ChangeMembers::RemoveVoters(member_set),
        Step::Promote if !voter || !uniform => ChangeMembers::AddVoterIds(member_set),
        // Already done (a repeated request, e.g. after the member restarted).
        _ => return Ok(()),
    };
    tracing::warn!(
        member,
        ?step,
        "changing the membership for a rebuilt member"
    );
    match raft.change_membership(changes, true).await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
            Err(Refused::NotLeader(to.leader_id))
        }
        Err(e) => Err(Refused::Failed(e.to_string())),
    }
}

/// As a rebuilding member: the answer to a vote request, "not granted", with this
/// member's own vote (a candidate ignores a refusal that names an older vote).
pub(crate) fn refuse_vote<C: Group>(raft: &Raft<C>, body: &[u8]) -> Result<Vec<u8>, MessageError> {
    let request: VoteRequest<NodeId> = from_bytes(body).map_err(MessageError::Unreadable)?;
    let vote = raft.metrics().borrow().vote;
    tracing::info!(candidate = %request.vote, "rebuilding: refusing to vote");
    let reply: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
        Ok(VoteResponse::new(vote, None, false));
    to_bytes(&reply).map_err(MessageError::Encode)
}

/// Where a rebuilt member sends its requests.
pub(crate) struct Peers {
    pub client: ClusterClient,
    /// The group's path segment under `/internal/`.
    pub route: &'static str,
    pub peers: Vec<(ReplicaId, Url)>,
    /// How long one request may take (a joint change is two commits).
    pub wait: Duration,
}

/// As a rebuilding member: steps 2 to 4 (see the module docs), then this member votes
/// again. Runs until done, however long (a cancelled task starts over at the next
/// start: the mark stays until the end).
pub(crate) async fn run<C: Group>(node: RaftNode<C>, peers: Peers) {
    tracing::warn!("rebuilding: asking the leader to make this member a learner");
    peers.ask(node.id(), Step::Demote).await;
    tracing::info!("rebuilding: a learner now; taking the log from the leader");
    node.until_caught_up().await;
    peers.ask(node.id(), Step::Promote).await;
    match node.rebuilt().await {
        Ok(()) => tracing::warn!("rebuilt: a voting member of the group again"),
        Err(e) => node.fail(format!("cannot clear the rebuilding mark: {e}")),
    }
}

impl Peers {
    /// Asks the members, the leader first once one is named, until one has made the
    /// change; waits between rounds.
    async fn ask(&self, me: ReplicaId, step: Step) {
        let Ok(body) = to_bytes(&Request {
            member: me.node(),
            step,
        }) else {
            return;
        };
        let mut leader: Option<NodeId> = None;
        let mut backoff = Backoff::new();
        loop {
            let mut order: Vec<&(ReplicaId, Url)> = self.peers.iter().collect();
            order.sort_by_key(|(id, _)| Some(id.node()) != leader);
            for (peer, url) in order {
                let url = endpoint(url, &["internal", self.route, "rejoin"]);
                let reply = match self.client.post_bytes(url, body.clone(), self.wait).await {
                    Ok(bytes) => from_bytes::<Result<(), Refused>>(&bytes)
                        .unwrap_or_else(|e| Err(Refused::Failed(format!("unreadable: {e}")))),
                    Err(e) => Err(Refused::Failed(e.to_string())),
                };
                match reply {
                    Ok(()) => return,
                    Err(Refused::NotLeader(hint)) => leader = hint.or(leader),
                    Err(Refused::Failed(why)) => {
                        tracing::info!(%peer, ?step, %why, "rebuilding: not done yet");
                    }
                }
            }
            backoff.wait().await;
        }
    }
}
