//! toystore's fault experiments, and the checks that follow them.
//!
//! Modules:
//! - [`crash`]: kill order replicas (the leader too) of a `run.sh` cluster while
//!   sessions run, then check the guarantees (`client chaos`).
//! - [`netns`]: five hosts as network namespaces, set up by following docs/DEPLOY.md.
//! - [`nemesis`]: kills, pauses, partitions and full disks on those hosts while sessions run
//!   (`client chaos --hosts`).
//!
//! The sessions, their history and the verdict on it come from `lab`.

pub mod crash;
pub mod nemesis;
pub mod netns;
