//! The handlers' rules, in-process: every service's router driven without spawning a
//! process (the catalog and a replica behind a front-end listen on port 0 in this
//! process). The real-process tests in `tests/system` keep what needs a real process:
//! crashes, pauses, partitions, replication between replicas, chaos.

mod catalog_api;
mod edge;
mod frontend_api;
mod frontend_docs;
#[path = "../support/modes.rs"]
mod modes;
mod order_api;
mod stack;
