//! Raft's messages between members, over the cluster's HTTP stack: the pooled client,
//! the cluster token, bincode bodies at `/internal/<route>/{append,vote,snapshot}`
//! (each group has its own route, e.g. `raft` for the order log). [`Network`] sends
//! them; [`handle`] answers them.
//!
//! A reply carries the callee's `Result`, so openraft tells "the peer said no" (a
//! remote error) apart from "no answer" (unreachable: openraft backs off before it
//! tries again) and a transport failure that is worth repeating at once.

use std::marker::PhantomData;

use common::client::{endpoint, ClusterClient, PeerError};
use common::domain::ReplicaId;
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::Raft;
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{from_bytes, to_bytes};
use crate::{Group, Node, NodeId};

/// Makes one [`Peer`] per member openraft talks to.
pub struct Network<C> {
    client: ClusterClient,
    /// The group's path segment under `/internal/`.
    route: &'static str,
    /// Every other member's base URL.
    peers: Vec<(ReplicaId, Url)>,
    group: PhantomData<fn() -> C>,
}

impl<C> Network<C> {
    pub fn new(client: ClusterClient, route: &'static str, peers: Vec<(ReplicaId, Url)>) -> Self {
        Network {
            client,
            route,
            peers,
            group: PhantomData,
        }
    }
}

/// The connection to one member (the pooled client underneath).
pub struct Peer<C> {
    client: ClusterClient,
    route: &'static str,
    target: NodeId,
    url: Option<Url>,
    group: PhantomData<fn() -> C>,
}

impl<C: Group> RaftNetworkFactory<C> for Network<C> {
    type Network = Peer<C>;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Peer<C> {
        // The address comes from this member's own configuration, not from the
        // membership, so a peer cannot redirect traffic by what it stores.
        let url = self
            .peers
            .iter()
            .find(|(id, _)| id.node() == target)
            .map(|(_, url)| url.clone());
        Peer {
            client: self.client.clone(),
            route: self.route,
            target,
            url,
            group: PhantomData,
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

fn unreachable<E: std::error::Error>(why: String) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why)))
}

fn network<E: std::error::Error>(why: String) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(why)))
}

impl<C> Peer<C> {
    async fn call<Req, Resp, E>(
        &self,
        kind: &str,
        request: &Req,
        option: RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(base) = &self.url else {
            return Err(unreachable(format!(
                "member {} is not configured",
                self.target
            )));
        };
        let body = to_bytes(request).map_err(|e| network(e.to_string()))?;
        let url = endpoint(base, &["internal", self.route, kind]);
        let reply = match self.client.post_bytes(url, body, option.hard_ttl()).await {
            Ok(bytes) => bytes,
            Err(PeerError::Unreachable(why)) => return Err(unreachable(why)),
            Err(e) => return Err(network(e.to_string())),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            from_bytes(&reply).map_err(|e| network(format!("unreadable reply: {e}")))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl<C: Group> RaftNetwork<C> for Peer<C> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.call("append", &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call("snapshot", &rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.call("vote", &rpc, option).await
    }
}

/// Why a message from a peer was not answered.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not one of `append`, `vote`, `snapshot`.
    #[error("no raft message {0:?}")]
    UnknownKind(String),
    /// The body is not the message it names.
    #[error("unreadable raft message: {0}")]
    Unreadable(#[source] bincode::error::DecodeError),
    #[error("cannot encode a raft reply: {0}")]
    Encode(#[source] bincode::error::EncodeError),
}

/// Answers one of Raft's messages from a peer: `kind` is `append`, `vote` or
/// `snapshot`; the body and the answer are bincode.
pub async fn handle<C: Group>(
    raft: &Raft<C>,
    kind: &str,
    body: &[u8],
) -> Result<Vec<u8>, MessageError> {
    tracing::trace!(kind, bytes = body.len(), "raft message");
    let answer = match kind {
        "append" => to_bytes(
            &raft
                .append_entries(from_bytes(body).map_err(MessageError::Unreadable)?)
                .await,
        ),
        "vote" => to_bytes(
            &raft
                .vote(from_bytes(body).map_err(MessageError::Unreadable)?)
                .await,
        ),
        "snapshot" => to_bytes(
            &raft
                .install_snapshot(from_bytes(body).map_err(MessageError::Unreadable)?)
                .await,
        ),
        other => return Err(MessageError::UnknownKind(other.into())),
    };
    answer.map_err(MessageError::Encode)
}
