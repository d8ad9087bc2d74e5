//! What a fault's target names ("leader", "follower", "catalog",
//! "catalog-follower", "frontend") mean at the moment it is applied, and when the
//! cluster has settled after it.

use std::time::Duration;

use common::domain::ReplicaId;
use lab::cluster::Inspector;

/// What a fault's target names resolve against.
pub(super) struct Targets<'a> {
    pub(super) inspector: &'a Inspector,
    /// The catalog's hosts (one, or the replicas in id order).
    pub(super) catalogs: &'a [String],
    /// The front-ends' hosts (one, or two behind the load balancer).
    pub(super) frontends: &'a [String],
}

impl Targets<'_> {
    /// Resolves "leader" / "follower" (of the order replicas), "catalog" /
    /// "catalog-follower" (the catalog's leader when it is replicated) and "frontend"
    /// (one of several at random) to a host.
    pub(super) async fn resolve(&self, target: &str, rng: &mut fastrand::Rng) -> String {
        match target {
            "frontend" if !self.frontends.is_empty() => {
                self.frontends[rng.usize(..self.frontends.len())].clone()
            }
            "leader" | "follower" => {
                let leader = self.inspector.leader().await.unwrap_or(ReplicaId(3));
                if target == "leader" {
                    return format!("order{leader}");
                }
                let followers: Vec<u32> = (1..=3).filter(|i| ReplicaId(*i) != leader).collect();
                format!("order{}", followers[rng.usize(..followers.len())])
            }
            "catalog" | "catalog-follower" if self.catalogs.len() > 1 => {
                let leader = self.catalog_leader().await;
                if target == "catalog" {
                    return self.catalogs[leader].clone();
                }
                let followers: Vec<&String> = self
                    .catalogs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != leader)
                    .map(|(_, h)| h)
                    .collect();
                followers[rng.usize(..followers.len())].clone()
            }
            other => other.to_string(),
        }
    }

    /// The catalog replica that leads (by index), waiting a little for an election.
    pub(super) async fn catalog_leader(&self) -> usize {
        for _ in 0..25 {
            if let Some(i) = self.inspector.catalog_leader().await {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        0
    }

    /// The catalog replicas other than `host`.
    pub(super) fn other_catalogs(&self, host: &str) -> Vec<String> {
        self.catalogs
            .iter()
            .filter(|c| *c != host)
            .cloned()
            .collect()
    }

    /// Whether a fault of `host` alone may leave requests unanswered: the single
    /// front-end's or the single catalog's (each the only one of its kind), not a
    /// replica's or one of two front-ends'.
    pub(super) fn is_single(&self, host: &str) -> bool {
        (host == "frontend" && self.frontends.len() <= 1)
            || (host == "catalog" && self.catalogs.len() == 1)
    }

    /// Waits until every replica of both groups is ready again (a restarted one has
    /// caught up).
    pub(super) async fn settled(&self) {
        let _ = self.inspector.converged(Duration::from_secs(15)).await;
        if self.catalogs.len() > 1 {
            let _ = self
                .inspector
                .catalogs_converged(Duration::from_secs(15))
                .await;
        }
    }
}

/// The other two replicas.
pub(super) fn followers_of(leader: &str) -> Vec<String> {
    (1..=3)
        .map(|i| format!("order{i}"))
        .filter(|h| h != leader)
        .collect()
}
