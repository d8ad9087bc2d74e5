//! toystore's load and measurement tools: the evaluation, the benchmarks and the demo
//! (the fault experiments are the `chaos` crate; what all of them share is `lab`).
//!
//! Modules:
//! - [`eval`]: p × cache sweep, CSV, plots ([`plot`]) and `docs/EVALUATION.md`, with cache
//!   replacement in action ([`cachetrace`]).
//! - [`bench`](mod@bench): the benchmark against the bare [`baseline`] servers, with
//!   `wrk`, and the CPU each service spends ([`cpu`]).
//! - [`scale`]: what a growing history costs (`bench --scale`).
//! - [`demo`](mod@demo): the lab's output document, `docs/OUTPUT.md`, from a scripted session.

pub mod baseline;
pub mod bench;
pub mod cachetrace;
pub mod cpu;
pub mod demo;
pub mod eval;
pub mod plot;
pub mod scale;

pub use lab::ClientError;

/// Whether HAProxy is installed (the balancer of `bench`'s front-end rows and of
/// `chaos --hosts` with two front-ends): on the PATH, or in Debian's `/usr/sbin`.
pub fn haproxy_installed() -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("haproxy").is_file()));
    on_path
        || ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .iter()
            .any(|p| std::path::Path::new(p).is_file())
}
