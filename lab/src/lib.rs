//! What toystore's experiments share: the lab's client sessions, the history of what
//! they saw and the verdict on it, latency figures, and a cluster of their own
//! to run against. The `client` command's jobs (`client/`: evaluation, benchmarks,
//! the demo; `chaos/`: the fault experiments) are built on it.
//!
//! Modules:
//! - [`session`]: the lab's client session (query, maybe order, read orders back).
//! - [`stats`]: latency summaries and error counts.
//! - [`checker`]: the history of what clients saw, and the verdict on it.
//! - [`cluster`]: a cluster of the experiment's own through `run.sh`, and the
//!   services' internal figures.

pub mod checker;
pub mod cluster;
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
