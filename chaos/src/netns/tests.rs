//! The `netns` module's tests.

use super::*;

const ONE: Layout = Layout {
    catalogs: 1,
    frontends: 1,
};

#[test]
fn the_shipped_guide_names_the_default_topology_and_how_to_start_each() {
    let guide = Guide::read(&guide_path(), ONE).expect("docs/DEPLOY.md parses");
    assert_hosts_are(&guide, ONE);
    assert!(guide.every_host.contains("TOYSTORE_REPLICAS"));
    assert_eq!(guide.catalogs(), ["catalog"]);
    assert_eq!(guide.frontends(), ["frontend"]);
    assert_eq!(guide.balancer(), None);
}

#[test]
fn the_guide_with_two_front_ends_names_them_and_the_balancer() {
    for catalogs in [1, 3] {
        let layout = Layout {
            catalogs,
            frontends: 2,
        };
        let guide = Guide::read(&guide_path(), layout).expect("docs/DEPLOY.md parses");
        assert_hosts_are(&guide, layout);
        assert_eq!(guide.frontends(), ["frontend1", "frontend2"]);
        assert_eq!(guide.balancer().as_deref(), Some("lb"));
        // Both front-ends get the invalidations, after (so instead of) the single one.
        overrides(
            &guide,
            "CATALOG_FRONTEND_URL=http://frontend:",
            "CATALOG_FRONTEND_URL=http://frontend1:8080,http://frontend2:8180",
        );
        // The balancer's server list names the front-ends where they listen.
        let lb = guide.blocks_on("lb").join("\n");
        for (name, port) in [("frontend1", 8080), ("frontend2", 8180)] {
            assert!(
                lb.contains(&format!("server {name} {name}:{port} check")),
                "{lb}"
            );
        }
    }
    let three = Layout {
        catalogs: 1,
        frontends: 3,
    };
    assert!(Guide::read(&guide_path(), three).is_err());
}

#[test]
fn the_guide_with_three_catalogs_names_the_group_and_drops_the_single_catalog() {
    let layout = Layout {
        catalogs: 3,
        frontends: 1,
    };
    let guide = Guide::read(&guide_path(), layout).expect("docs/DEPLOY.md parses");
    assert_hosts_are(&guide, layout);
    assert_eq!(guide.catalogs(), ["catalog1", "catalog2", "catalog3"]);
    // The group's settings come after (and so override) everyone's.
    overrides(
        &guide,
        "TOYSTORE_CATALOG_URL=http://catalog:",
        "TOYSTORE_CATALOG_URL=http://catalog1:",
    );
    assert!(guide.every_host.contains("CATALOG_PEERS="));
    let two = Layout {
        catalogs: 2,
        frontends: 1,
    };
    assert!(Guide::read(&guide_path(), two).is_err());
}

/// The settings run on every host set `later` after `first` (so it wins).
fn overrides(guide: &Guide, first: &str, later: &str) {
    let first = guide.every_host.find(first);
    let later = guide.every_host.find(later);
    assert!(first.is_some() && later > first, "{}", guide.every_host);
}

/// The guide's hosts are the services of the default topology in `layout` (with the
/// load balancer on its default port when there are two front-ends), on its ports.
fn assert_hosts_are(guide: &Guide, layout: Layout) {
    let topology = Ports::from_env(|var| match var {
        "TOYSTORE_CATALOG_REPLICAS" => Some(layout.catalogs.to_string()),
        "TOYSTORE_FRONTENDS" => Some(layout.frontends.to_string()),
        "TOYSTORE_LB" if layout.frontends > 1 => Some("haproxy".into()),
        _ => None,
    })
    .and_then(|ports| Topology::new("127.0.0.1", &ports, Replication::PrimaryBackup))
    .expect("topology");
    let mut expected: Vec<&str> = topology.names();
    expected.sort_unstable();
    let names: Vec<&str> = guide.hosts.keys().map(String::as_str).collect();
    assert_eq!(names, expected);
    for service in topology.services() {
        assert_eq!(
            guide.port(&service.name),
            Some(service.port),
            "{}",
            service.name
        );
    }
}

fn guide_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/DEPLOY.md")
}
