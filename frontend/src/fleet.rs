//! The cluster's front-ends as one front-end sees them: its own report (`GET
//! /health`) and, for the dashboard, every other front-end's.
//!
//! Front-ends share no state (each has its own cache, lease and leader watcher), so
//! nothing here is needed to serve a request: the list (`--frontend-urls`, which
//! `run.sh` passes to each) only lets the dashboard, viewed through any front-end or
//! the load balancer, show all of them. The i-th URL of several is named
//! `frontend<i>`, as `run.sh` names them; the one whose name is this front-end's
//! (`--name`) is read in-process rather than over HTTP.

use std::time::Duration;

use axum::http::Method;
use common::client::{ClusterClient, FrontendClient};
use common::config::Urls;
use common::metrics::route_totals;
use common::wire::{FrontendHealth, Served};

use crate::cache::Cache;
use crate::leader::Leaders;

/// The routes counted in [`Served`].
pub const LOOKUP_ROUTE: &str = "/products/{name}";
pub const ORDER_ROUTE: &str = "/orders";

/// What this front-end reports about itself.
pub fn health(name: &str, leaders: &Leaders, cache: &Cache) -> FrontendHealth {
    let leader = leaders.current();
    FrontendHealth {
        service: "frontend".into(),
        leader: leader.as_ref().map(|l| l.id),
        epoch: leader.as_ref().map(|l| l.epoch),
        cache: cache.stats(),
        name: name.to_string(),
        served: served(),
    }
}

/// Lookups and orders this process has answered, from the cells `/metrics` reads;
/// `None` while metrics are off.
pub fn served() -> Option<Served> {
    let lookups = route_totals(LOOKUP_ROUTE, &Method::GET)?;
    let orders = route_totals(ORDER_ROUTE, &Method::POST)?;
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    Some(Served {
        lookups: lookups.count,
        lookup_us: us(lookups.total),
        orders: orders.count,
        order_us: us(orders.total),
    })
}

/// One front-end of the cluster.
pub struct Member {
    pub name: String,
    /// `None`: this one.
    client: Option<FrontendClient>,
}

impl Member {
    pub fn is_this(&self) -> bool {
        self.client.is_none()
    }

    /// Where it is reached (`None`: this one).
    pub fn url(&self) -> Option<&reqwest::Url> {
        self.client.as_ref().map(FrontendClient::base)
    }
}

/// Every front-end, in the cluster's order.
pub struct Fleet {
    members: Vec<Member>,
}

impl Fleet {
    /// The front-ends at `urls` (this one alone without a list), calling the others
    /// with `cluster`.
    pub fn new(name: &str, urls: Option<&Urls>, cluster: &ClusterClient) -> Fleet {
        let urls = urls.map(|u| u.0.as_slice()).unwrap_or_default();
        let several = urls.len() > 1;
        let mut members: Vec<Member> = (1..)
            .zip(urls)
            .map(|(i, url)| {
                let member_name = if several {
                    format!("frontend{i}")
                } else {
                    "frontend".to_string()
                };
                let client = (member_name != name)
                    .then(|| FrontendClient::new(cluster.clone(), url.clone()));
                Member {
                    name: member_name,
                    client,
                }
            })
            .collect();
        if !members.iter().any(Member::is_this) {
            // Not in the list (or no list): this one is shown first, under its name.
            members.insert(
                0,
                Member {
                    name: name.to_string(),
                    client: None,
                },
            );
        }
        Fleet { members }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Each front-end's report, in order (`None`: it did not answer within
    /// `timeout`); this one's is `mine`.
    pub async fn poll(
        &self,
        mine: FrontendHealth,
        timeout: Duration,
    ) -> Vec<Option<FrontendHealth>> {
        let mut mine = Some(mine);
        let calls = self.members.iter().map(|m| {
            let mine = if m.is_this() { mine.take() } else { None };
            async move {
                match &m.client {
                    None => mine,
                    Some(client) => client.health_within(timeout).await.ok(),
                }
            }
        });
        futures_util::future::join_all(calls).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::client::PeerTimeouts;

    fn urls(ports: &[u16]) -> Urls {
        Urls(
            ports
                .iter()
                .map(|p| reqwest::Url::parse(&format!("http://127.0.0.1:{p}")).expect("url"))
                .collect(),
        )
    }

    fn names(fleet: &Fleet) -> Vec<(String, bool)> {
        fleet
            .members()
            .iter()
            .map(|m| (m.name.clone(), m.is_this()))
            .collect()
    }

    #[test]
    fn the_list_names_the_front_ends_as_run_sh_does_and_finds_this_one() {
        let cluster = ClusterClient::new("t", PeerTimeouts::default()).expect("client");
        let fleet = Fleet::new("frontend2", Some(&urls(&[8080, 8180, 8280])), &cluster);
        assert_eq!(
            names(&fleet),
            [
                ("frontend1".to_string(), false),
                ("frontend2".to_string(), true),
                ("frontend3".to_string(), false)
            ]
        );
        assert_eq!(
            fleet.members()[2].url().map(reqwest::Url::as_str),
            Some("http://127.0.0.1:8280/")
        );
    }

    #[test]
    fn without_a_list_or_outside_it_this_one_is_shown_first() {
        let cluster = ClusterClient::new("t", PeerTimeouts::default()).expect("client");
        let alone = Fleet::new("frontend", None, &cluster);
        assert_eq!(names(&alone), [("frontend".to_string(), true)]);
        let one = Fleet::new("frontend", Some(&urls(&[8080])), &cluster);
        assert_eq!(names(&one), [("frontend".to_string(), true)]);
        let outside = Fleet::new("edge", Some(&urls(&[8080, 8180])), &cluster);
        assert_eq!(
            names(&outside),
            [
                ("edge".to_string(), true),
                ("frontend1".to_string(), false),
                ("frontend2".to_string(), false)
            ]
        );
    }
}
