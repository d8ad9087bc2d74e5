//! The `nemesis` module's tests.

use super::*;

#[test]
fn a_schedule_rotates_kinds_and_hits_every_service() {
    let plan = schedule(
        &[Kind::Kill, Kind::Pause, Kind::Partition],
        21,
        true,
        false,
        false,
    );
    assert_eq!(plan.len(), 23);
    assert_eq!(plan[21], Fault::CutThenKillLeader);
    assert_eq!(plan.last(), Some(&Fault::LagThenLoseTwo));
    for target in ["leader", "follower", "catalog", "frontend"] {
        assert!(plan.contains(&Fault::Kill(target.into())), "kill {target}");
        assert!(
            plan.contains(&Fault::Pause(target.into())),
            "pause {target}"
        );
    }
    assert!(plan.contains(&Fault::CutLeaderFromFollowers));
    assert!(plan.contains(&Fault::CutFrontendFromCatalog));
}

#[test]
fn with_a_replicated_catalog_its_leader_and_followers_are_targets_too() {
    let plan = schedule(
        &[Kind::Kill, Kind::Pause, Kind::Partition],
        24,
        false,
        true,
        false,
    );
    assert_eq!(plan.len(), 24);
    for target in [
        "leader",
        "follower",
        "catalog",
        "catalog-follower",
        "frontend",
    ] {
        assert!(plan.contains(&Fault::Kill(target.into())), "kill {target}");
        assert!(
            plan.contains(&Fault::Pause(target.into())),
            "pause {target}"
        );
    }
    for partition in [
        Fault::CutCatalogLeaderFromFollowers,
        Fault::Isolate("catalog".into()),
        Fault::Isolate("catalog-follower".into()),
    ] {
        assert!(plan.contains(&partition), "{partition:?}");
    }
}

#[test]
fn with_two_front_ends_a_short_run_hits_one() {
    let plan = schedule(
        &[Kind::Kill, Kind::Pause, Kind::Partition],
        8,
        false,
        false,
        true,
    );
    assert_eq!(plan[3], Fault::Kill("frontend".into()));
    assert_eq!(plan[4], Fault::Pause("frontend".into()));
}
