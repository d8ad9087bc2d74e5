//! The `netns` module's tests.

use super::*;

#[test]
fn the_shipped_guide_names_five_hosts_and_how_to_start_each() {
    let guide = Guide::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/DEPLOY.md"))
        .expect("docs/DEPLOY.md parses");
    let names: Vec<&str> = guide.hosts.keys().map(String::as_str).collect();
    assert_eq!(names, ["catalog", "frontend", "order1", "order2", "order3"]);
    for (host, port) in [
        ("frontend", 8080),
        ("catalog", 8081),
        ("order1", 8091),
        ("order3", 8093),
    ] {
        assert_eq!(guide.port(host), Some(port), "{host}");
    }
    assert!(guide.every_host.contains("TOYSTORE_REPLICAS"));
}
