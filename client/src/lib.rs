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

/// Why a client command failed, with its cause (`main` prints the whole chain).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A file or directory could not be read or written.
    #[error("{}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A service could not be asked, or answered with an error.
    #[error("{what}")]
    Peer {
        what: String,
        #[source]
        source: common::client::PeerError,
    },
    /// One of the client's own HTTP exchanges failed.
    #[error("{what}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// A task of the run died.
    #[error("{what}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A step that did not go as planned, and why.
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// The failure of reading or writing `path`.
    pub fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
        move |source| ClientError::File {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A failure of asking a service, saying what was asked.
    pub fn peer(what: impl Into<String>) -> impl FnOnce(common::client::PeerError) -> ClientError {
        let what = what.into();
        move |source| ClientError::Peer { what, source }
    }

    /// A failure of an HTTP exchange, saying what it was.
    pub fn http(what: impl Into<String>) -> impl FnOnce(reqwest::Error) -> ClientError {
        let what = what.into();
        move |source| ClientError::Http { what, source }
    }

    /// A task that died.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> ClientError {
        move |source| ClientError::Task { what, source }
    }
}
