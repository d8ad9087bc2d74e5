//! The `netns` module's tests.

use super::*;

#[test]
fn the_shipped_guide_names_the_default_topology_and_how_to_start_each() {
    let guide = Guide::read(&guide_path(), 1).expect("docs/DEPLOY.md parses");
    assert_hosts_are(&guide, 1);
    assert!(guide.every_host.contains("TOYSTORE_REPLICAS"));
    assert_eq!(guide.catalogs(), ["catalog"]);
}

#[test]
fn the_guide_with_three_catalogs_names_the_group_and_drops_the_single_catalog() {
    let guide = Guide::read(&guide_path(), 3).expect("docs/DEPLOY.md parses");
    assert_hosts_are(&guide, 3);
    assert_eq!(guide.catalogs(), ["catalog1", "catalog2", "catalog3"]);
    // The group's settings come after (and so override) everyone's.
    let single = guide
        .every_host
        .find("TOYSTORE_CATALOG_URL=http://catalog:");
    let group = guide
        .every_host
        .find("TOYSTORE_CATALOG_URL=http://catalog1:");
    assert!(single.is_some() && group > single, "{}", guide.every_host);
    assert!(guide.every_host.contains("CATALOG_PEERS="));
    assert!(Guide::read(&guide_path(), 2).is_err());
}

/// The guide's hosts are the services of the default topology with `catalogs`
/// catalog replicas, on its ports.
fn assert_hosts_are(guide: &Guide, catalogs: u16) {
    let topology = Ports::default()
        .with_catalogs(catalogs)
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
