//! System tests: real service binaries, real sockets, real sled directories, and
//! SIGKILL where a test is about crashes. Each test starts its own cluster on free
//! ports (see `helpers`). Set `TEST_LOG=debug` for chattier service logs; the logs of
//! a failed test's cluster are printed with its failure.

mod api;
mod balancer;
mod cache;
mod catalog_group;
mod chaos;
mod crash;
mod dashboard;
mod demo;
mod disk;
mod docs;
mod faults;
mod frontends;
mod helpers;
mod metrics;
#[path = "../support/modes.rs"]
mod modes;
mod raft;
mod replication;
mod retention;
mod shutdown;
mod tracing;
