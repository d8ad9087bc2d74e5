//! toystore's client tools: load sessions, the evaluation and the crash experiment.
//!
//! Modules:
//! - [`session`]: the lab's client session (query, maybe order, read orders back).
//! - [`stats`]: latency summaries and error counts.
//! - [`eval`]: p × cache sweep, CSV, plots ([`plot`]) and `docs/EVALUATION.md`, with
//!   cache replacement in action ([`cachetrace`]).
//! - [`chaos`]: kill replicas while sessions run, then check the guarantees.
//! - [`netns`]: five hosts as network namespaces, set up by following docs/DEPLOY.md.
//! - [`nemesis`]: kills, pauses and partitions on those hosts, while sessions run.
//! - [`checker`]: the history of what clients saw, and the verdict on it.
//! - [`cluster`]: `run.sh` control and the services' internal figures.
//! - [`bench`](mod@bench): the benchmark against the bare [`baseline`] servers, with `wrk`.
//! - [`scale`]: what a growing history costs (`bench --scale`).
//! - [`demo`](mod@demo): the lab's output document, `docs/OUTPUT.md`, from a scripted session.

pub mod baseline;
pub mod bench;
pub mod cachetrace;
pub mod chaos;
pub mod checker;
pub mod cluster;
pub mod cpu;
pub mod demo;
pub mod eval;
pub mod nemesis;
pub mod netns;
pub mod plot;
pub mod scale;
pub mod session;
pub mod stats;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Other(String),
}
