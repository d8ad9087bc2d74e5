//! The `netns` module's tests.

use super::*;

#[test]
fn the_shipped_guide_names_the_default_topology_and_how_to_start_each() {
    let guide = Guide::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/DEPLOY.md"))
        .expect("docs/DEPLOY.md parses");
    // The guide's hosts are the default topology's services, on its ports.
    let topology = common::topology::Topology::default_layout();
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
    assert!(guide.every_host.contains("TOYSTORE_REPLICAS"));
}
