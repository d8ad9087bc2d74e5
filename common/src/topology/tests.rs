//! The `topology` module's tests.

use super::*;

fn default_topology() -> Topology {
    let ports = Ports::from_env(|_| None).expect("default ports");
    let checked = Topology::new("127.0.0.1", &ports, Replication::PrimaryBackup);
    let checked = checked.expect("the default layout has no shared port");
    assert_eq!(checked.services(), Topology::default_layout().services());
    checked
}

#[test]
fn the_default_layout_is_the_operational_contract() {
    let t = default_topology();
    assert_eq!(
        t.names(),
        ["catalog", "order1", "order2", "order3", "frontend"]
    );
    let port = |name| t.service(name).expect("service").port;
    assert_eq!(port("frontend"), 8080);
    assert_eq!(port("catalog"), 8081);
    assert_eq!(
        [port("order1"), port("order2"), port("order3")],
        [8091, 8092, 8093]
    );
    // The services' own defaults (clap) agree with the launcher's.
    assert_eq!(t.replicas_arg(), crate::config::DEFAULT_REPLICAS);
    assert_eq!(t.frontend_url().as_str(), "http://127.0.0.1:8080/");
}

#[test]
fn ports_come_from_their_variables_and_round_trip() {
    let vars = [("CATALOG_PORT", "9001"), ("ORDER2_PORT", "9002")];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let ports = Ports::from_env(lookup).expect("ports");
    assert_eq!(ports.catalogs, [9001]);
    assert_eq!(ports.orders, [8091, 9002, 8093]);
    let env = ports.env();
    let back = Ports::from_env(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    assert_eq!(back, Ok(ports));
}

#[test]
fn bad_layouts_are_refused_with_their_reason() {
    let bad = Ports::from_env(|name| (name == "ORDER3_PORT").then(|| "80x".to_string()));
    assert_eq!(
        bad,
        Err(TopologyError::BadPort {
            var: "ORDER3_PORT".into(),
            value: "80x".into()
        })
    );
    assert!(Ports::from_env(|name| (name == "CATALOG_PORT").then(|| "0".into())).is_err());
    assert_eq!(
        Ports::from_base(65_500),
        Err(TopologyError::BaseTooHigh(65_500))
    );
    let ports =
        Ports::from_env(|name| (name == "CATALOG_PORT").then(|| "8092".into())).expect("ports");
    let shared = Topology::new("127.0.0.1", &ports, Replication::Raft).map(|_| ());
    assert_eq!(
        shared,
        Err(TopologyError::SharedPort {
            port: 8092,
            first: "catalog".into(),
            second: "order2".into()
        })
    );
    let unknown = default_topology().service("order4").map(|_| ());
    assert!(
        matches!(unknown, Err(TopologyError::UnknownService { ref known, .. }) if known == "catalog order1 order2 order3 frontend")
    );
}

#[test]
fn commands_carry_address_id_data_and_cluster() {
    let ports = Ports::from_base(10_000).expect("ports");
    let t = Topology::new("127.0.0.1", &ports, Replication::Raft).expect("topology");
    let order2 = t.service("order2").expect("order2");
    let cmd = t.command(order2, Path::new("bin"), Path::new("data"));
    assert_eq!(cmd.get_program(), "bin/order");
    let args: Vec<_> = cmd.get_args().collect();
    assert_eq!(
        args,
        [
            "--listen",
            "127.0.0.1:10092",
            "--id",
            "2",
            "--data-dir",
            "data/order2-raft"
        ]
    );
    let env: Vec<_> = cmd.get_envs().collect();
    assert!(env.contains(&(
        "TOYSTORE_CATALOG_URL".as_ref(),
        Some("http://127.0.0.1:10081".as_ref())
    )));
    let frontend = t.service("frontend").expect("frontend");
    assert_eq!(t.data_dir(frontend, Path::new("data")), None);
}

#[test]
fn a_replicated_catalog_is_named_numbered_and_listed() {
    let vars = [
        ("TOYSTORE_CATALOG_REPLICAS", "3"),
        ("CATALOG3_PORT", "9003"),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let ports = Ports::from_env(lookup).expect("ports");
    assert_eq!(ports.catalogs, [8081, 8082, 9003]);
    let t = Topology::new("127.0.0.1", &ports, Replication::Raft).expect("topology");
    assert_eq!(
        t.names(),
        ["catalog1", "catalog2", "catalog3", "order1", "order2", "order3", "frontend"]
    );
    let catalog2 = t.service("catalog2").expect("catalog2");
    let cmd = t.command(catalog2, Path::new("bin"), Path::new("data"));
    let args: Vec<_> = cmd.get_args().collect();
    assert_eq!(
        args,
        [
            "--listen",
            "127.0.0.1:8082",
            "--id",
            "2",
            "--data-dir",
            "data/catalog2"
        ]
    );
    let env: Vec<_> = cmd.get_envs().collect();
    let urls = "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:9003";
    assert!(env.contains(&("TOYSTORE_CATALOG_URL".as_ref(), Some(urls.as_ref()))));
    let peers = "1=http://127.0.0.1:8081,2=http://127.0.0.1:8082,3=http://127.0.0.1:9003";
    assert!(env.contains(&("CATALOG_PEERS".as_ref(), Some(peers.as_ref()))));
    // The variables that give run.sh these ports give back the same layout.
    let back = ports.env();
    let again =
        Ports::from_env(|name| back.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    assert_eq!(again, Ok(ports));
}

#[test]
fn several_frontends_are_named_a_hundred_ports_apart_and_all_get_pushes() {
    let vars = [("TOYSTORE_FRONTENDS", "3"), ("FRONTEND3_PORT", "9380")];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let ports = Ports::from_env(lookup).expect("ports");
    assert_eq!(ports.frontends, [8080, 8180, 9380]);
    let t = Topology::new("127.0.0.1", &ports, Replication::PrimaryBackup).expect("topology");
    assert_eq!(
        t.names(),
        [
            "catalog",
            "order1",
            "order2",
            "order3",
            "frontend1",
            "frontend2",
            "frontend3"
        ]
    );
    let catalog = t.service("catalog").expect("catalog");
    let cmd = t.command(catalog, Path::new("bin"), Path::new("data"));
    let env: Vec<_> = cmd.get_envs().collect();
    let urls = "http://127.0.0.1:8080,http://127.0.0.1:8180,http://127.0.0.1:9380";
    assert!(env.contains(&("CATALOG_FRONTEND_URL".as_ref(), Some(urls.as_ref()))));
    let back = ports.env();
    let again =
        Ports::from_env(|name| back.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    assert_eq!(again, Ok(ports));
    let with_lb = |name: &str| match name {
        "TOYSTORE_FRONTENDS" => Some("2".to_string()),
        "TOYSTORE_LB" => Some("haproxy".to_string()),
        _ => None,
    };
    let ports = Ports::from_env(with_lb).expect("ports");
    assert_eq!(ports.balancer, Some(8000));
    let t = Topology::new("127.0.0.1", &ports, Replication::Raft).expect("topology");
    assert_eq!(t.names().last(), Some(&"lb"));
    let servers = t.balancer_servers();
    assert!(
        servers.contains("server frontend2 127.0.0.1:8180 check"),
        "{servers}"
    );
    let bad_lb = Ports::from_env(|name| (name == "TOYSTORE_LB").then(|| "nginx".into()));
    assert!(matches!(bad_lb, Err(TopologyError::BadCount { .. })));
    for bad in ["0", "10", "two"] {
        let err = Ports::from_env(|name| (name == "TOYSTORE_FRONTENDS").then(|| bad.into()));
        assert!(
            matches!(err, Err(TopologyError::BadCount { .. })),
            "{bad}: {err:?}"
        );
    }
}
