//! Raft's messages between replicas, over the cluster's HTTP stack: the pooled
//! client, the cluster token, bincode bodies at `/internal/raft/{append,vote,snapshot}`.
//!
//! A reply carries the callee's `Result`, so openraft tells "the peer said no" (a
//! remote error) apart from "no answer" (unreachable: openraft backs off before it
//! tries again) and a transport failure that is worth repeating at once.

use common::client::{endpoint, ClusterClient, PeerError};
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Node, NodeId, TypeConfig};

/// Makes one [`Peer`] per replica openraft talks to.
#[derive(Clone)]
pub struct Network {
    client: ClusterClient,
    /// Every other replica's base URL.
    peers: Vec<(u32, Url)>,
}

impl Network {
    pub fn new(client: ClusterClient, peers: Vec<(u32, Url)>) -> Self {
        Network { client, peers }
    }
}

/// The connection to one replica (the pooled client underneath).
pub struct Peer {
    client: ClusterClient,
    target: NodeId,
    url: Option<Url>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Peer {
        // The address comes from this replica's own configuration, not from the
        // membership, so a peer cannot redirect traffic by what it stores.
        let url = self
            .peers
            .iter()
            .find(|(id, _)| u64::from(*id) == target)
            .map(|(_, url)| url.clone());
        Peer {
            client: self.client.clone(),
            target,
            url,
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

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
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
                "replica {} is not configured",
                self.target
            )));
        };
        let body = super::to_bytes(request).map_err(|e| network(e.to_string()))?;
        let url = endpoint(base, &["internal", "raft", path]);
        let reply = match self.client.post_bytes(url, body, option.hard_ttl()).await {
            Ok(bytes) => bytes,
            Err(PeerError::Unreachable(why)) => return Err(unreachable(why)),
            Err(e) => return Err(network(e.to_string())),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            super::from_bytes(&reply).map_err(|e| network(format!("unreadable reply: {e}")))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.call("append", &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
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
