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

#[test]
fn full_disks_hit_the_order_replicas_and_a_replicated_catalog() {
    let plan = schedule(&[Kind::Disk], 4, false, true, false);
    let expected = ["follower", "catalog-follower", "leader", "catalog"];
    assert_eq!(plan, expected.map(|t| Fault::FillDisk(t.into())).to_vec());
    // A lone catalog's full disk would only stop the store: it is not a target.
    let plan = schedule(&[Kind::Disk], 4, false, false, false);
    assert!(plan
        .iter()
        .all(|f| matches!(f, Fault::FillDisk(t) if t == "leader" || t == "follower")));
}

#[test]
fn a_report_is_titled_by_the_kinds_of_fault_it_applied() {
    let all = schedule(
        &[Kind::Kill, Kind::Pause, Kind::Partition, Kind::Disk],
        8,
        false,
        false,
        false,
    );
    assert_eq!(
        report::kinds(&all),
        "kills, pauses, partitions and full disks"
    );
    assert_eq!(report::kinds(&all[..1]), "kills");
    assert_eq!(report::kinds(&[]), "no faults");
}
