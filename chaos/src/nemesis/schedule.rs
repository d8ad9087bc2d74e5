//! Which faults a run applies, in what order: kinds rotate, and each kind's targets
//! rotate so that every service is hit (see the [`super`] docs for what each fault
//! does).

/// The size of each replica's disk in a run with disk faults, in MiB: room for a
/// long run's data, quick to fill.
pub(super) const DISK_MB: u64 = 256;

/// The kinds of fault a run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    Disk,
}

/// One fault, with its target as planned ("leader" and "follower" are resolved when
/// it is applied).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Kill(String),
    Pause(String),
    Isolate(String),
    FillDisk(String),
    CutLeaderFromFollowers,
    /// The catalog's leader cut from its followers (replicated catalog).
    CutCatalogLeaderFromFollowers,
    CutFrontendFromCatalog,
    /// Admitted lossy schedule 1/3: the leader acknowledges alone, then dies.
    CutThenKillLeader,
    /// Admitted lossy schedule 2: a follower lags (paused), then the leader and the
    /// other follower die, and the lagging one is the only replica left to lead.
    LagThenLoseTwo,
}

/// `count` faults of the given kinds, rotating kinds and targets; `catalog_group`:
/// the catalog is replicated, so its followers are targets too; `frontends`: two
/// front-ends run behind the load balancer, so a front-end is the second target of
/// each kind (a short run hits one too: it must not stop anything).
pub fn schedule(
    kinds: &[Kind],
    count: usize,
    lossy: bool,
    catalog_group: bool,
    frontends: bool,
) -> Vec<Fault> {
    let isolate = |target: &str| Fault::Isolate(target.into());
    let (mut targets, partitions) = if catalog_group {
        (
            vec![
                "leader",
                "catalog",
                "catalog-follower",
                "follower",
                "frontend",
            ],
            // The catalog group's partitions first, so that a short run has them all.
            vec![
                isolate("leader"),
                Fault::CutCatalogLeaderFromFollowers,
                isolate("catalog"),
                isolate("catalog-follower"),
                Fault::CutLeaderFromFollowers,
                Fault::CutFrontendFromCatalog,
                isolate("follower"),
                isolate("frontend"),
            ],
        )
    } else {
        (
            vec!["leader", "catalog", "follower", "frontend"],
            vec![
                isolate("leader"),
                Fault::CutLeaderFromFollowers,
                Fault::CutFrontendFromCatalog,
                isolate("catalog"),
                isolate("follower"),
                isolate("frontend"),
            ],
        )
    };
    if frontends {
        targets.retain(|t| *t != "frontend");
        targets.insert(1, "frontend");
    }
    let disks: &[&str] = if catalog_group {
        &["follower", "catalog-follower", "leader", "catalog"]
    } else {
        &["follower", "leader"]
    };
    let mut turns = [0usize; 4];
    let mut out = Vec::with_capacity(count + 1);
    for i in 0..count {
        if kinds.is_empty() {
            break;
        }
        let kind = kinds[i % kinds.len()];
        let turn = &mut turns[kind as usize];
        out.push(match kind {
            Kind::Kill => Fault::Kill(targets[*turn % targets.len()].into()),
            Kind::Pause => Fault::Pause(targets[*turn % targets.len()].into()),
            Kind::Partition => partitions[*turn % partitions.len()].clone(),
            Kind::Disk => Fault::FillDisk(disks[*turn % disks.len()].into()),
        });
        *turn += 1;
    }
    if lossy {
        out.push(Fault::CutThenKillLeader);
        out.push(Fault::LagThenLoseTwo);
    }
    out
}
