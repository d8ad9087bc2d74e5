//! What two or more toystore services share, and nothing else.
//!
//! - [`wire`]: the JSON bodies that travel between services and to clients.
//! - [`domain`]: order numbers, epochs, terms, log indexes, versions and replica ids
//!   as types of their own.
//! - [`error`]: the `{"error": {"code", "message"}}` body every service answers with.
//! - [`http`]: the JSON body extractor, the cluster-token guard, the edge every
//!   request passes (head limits, request span).
//! - [`serve`]: the accept loop — a connection cap, the header and idle timeout,
//!   `TCP_NODELAY`, graceful shutdown.
//! - [`backoff`]: the one retry policy (doubling pauses, a cap, a deadline).
//! - [`batch`]: group work — many callers' items handled as one batch.
//! - [`client`]: typed clients for the catalog and the order replicas, which tell
//!   "peer unreachable" apart from "peer answered with an error".
//! - [`flush`]: group commit for sled — many writers share one `flush()`.
//! - [`storage`]: opening a sled database, waiting for its directory lock.
//! - [`config`]: parsing helpers for the command-line configuration.
//! - [`idkey`]: idempotency keys as stored (a UUID in 17 bytes).
//! - [`retention`]: how long idempotency keys are kept, and by which clock.
//! - [`tasks`]: one lifecycle for background tasks (cancel, then wait with a deadline),
//!   and a service's way to stop for good when its storage fails.
//! - [`telemetry`]: logging setup, done once per process.
//! - [`topology`]: the cluster's services, names, ports and command lines, written
//!   once for `run.sh`'s launcher, the tests and the client.
//! - [`metrics`]: the Prometheus recorder, `GET /metrics` and request metrics.
//! - [`trace`]: request ids (`x-request-id`), followed through every service's log.

pub mod backoff;
pub mod batch;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod flush;
pub mod http;
pub mod idkey;
pub mod metrics;
pub mod retention;
pub mod serve;
pub mod storage;
pub mod tasks;
pub mod telemetry;
pub mod topology;
pub mod trace;
pub mod wire;

/// Header that carries the shared cluster token on internal requests.
pub const TOKEN_HEADER: &str = "x-cluster-token";

/// Header a client may send to make `POST /orders` idempotent across its retries.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
