//! Prometheus metrics: one recorder per process, served at `GET /metrics` in the text
//! format, and the request metrics every service records.
//!
//! Every service records `http_requests_total{route, method, status}` and
//! `http_request_duration_seconds{route, method}` (a histogram) for each request that
//! matched a route, in per-thread cells of this module (see [`track`]), appended to
//! the recorder's text when rendering. A service's own figures (cache, batches,
//! replication) go through the recorder with the `metrics` macros, where they happen
//! or just before a render ([`on_render`]). Histograms have explicit buckets (so they
//! render as Prometheus histograms, not summaries), and an upkeep task drains the
//! recorder's samples every few seconds so memory stays bounded between scrapes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `*_seconds` histogram: 50 µs to 10 s.
const SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Buckets of every `*_size` histogram (batch sizes): 1 to 4096.
const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// A figure-refreshing function run before each render.
type Refresh = Box<dyn Fn() + Send + Sync>;

/// What runs before each render, by registration id. A std mutex: held only to call
/// the (short, synchronous) functions or to edit the list.
static REFRESH: Mutex<Vec<(u64, Refresh)>> = Mutex::new(Vec::new());

/// Registers `refresh` to run before every render of `/metrics` (to set gauges that
/// are cheaper to read on demand than to keep current); it is removed when the
/// returned guard is dropped, so nothing outlives the service that registered it.
pub fn on_render(refresh: impl Fn() + Send + Sync + 'static) -> OnRender {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    REFRESH
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, Box::new(refresh)));
    OnRender(id)
}

/// Unregisters its refresh function when dropped.
pub struct OnRender(u64);

impl Drop for OnRender {
    fn drop(&mut self) {
        REFRESH
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.0);
    }
}

/// Set when `TOYSTORE_METRICS=off`: nothing is recorded (to measure what metrics cost).
static OFF: AtomicBool = AtomicBool::new(false);

/// Installs the process's recorder (once; later calls do nothing) and starts its
/// upkeep task, which stops when the returned guard is dropped. With
/// `TOYSTORE_METRICS=off` it installs nothing and `/metrics` stays empty.
pub fn install() -> Option<Upkeep> {
    if std::env::var("TOYSTORE_METRICS").is_ok_and(|v| v == "off") {
        OFF.store(true, Ordering::Relaxed);
        return None;
    }
    if HANDLE.get().is_some() {
        return None;
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZES));
    let handle = match builder.and_then(|b| b.install_recorder()) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(error = %e, "metrics are off: cannot install the recorder");
            return None;
        }
    };
    let upkeep = tokio::spawn({
        let handle = handle.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        }
    });
    let _ = HANDLE.set(handle);
    Some(Upkeep(upkeep))
}

/// Stops the upkeep task when dropped.
pub struct Upkeep(tokio::task::JoinHandle<()>);

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `GET /metrics`: every metric of this process in Prometheus's text format (empty
/// when no recorder is installed, as in tests that drive a router in-process).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Requests by route and status with latency histograms, and the \
                   service's own figures (see the README's Metrics section).",
    responses((status = 200, description = "Prometheus text format",
               content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub async fn render() -> Response {
    for (_, refresh) in REFRESH.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        refresh();
    }
    let mut body = HANDLE.get().map(|h| h.render()).unwrap_or_default();
    if HANDLE.get().is_some() {
        render_requests(&mut body);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Middleware (a route layer, so the route is known): counts each request by route,
/// method and status, and records its duration.
///
/// Built for the hot path: each worker thread keeps its own `Cell` per route,
/// method and status, found through a thread-local map, so a request costs a few
/// uncontended atomic additions and no allocation; rendering sums the threads'
/// cells. (Building labelled keys per request, and the exporter's histograms, which
/// keep every sample until the next upkeep, cost cached lookups 6–20%; shared
/// counters still cost several percent, as two cores passed their cache lines back
/// and forth.)
pub async fn track(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    if OFF.load(Ordering::Relaxed) {
        return next.run(req).await;
    }
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.run(req).await;
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    CELLS_HERE.with(|cells| {
        let mut cells = cells.borrow_mut();
        let per_route = match cells.get_mut(route) {
            Some(v) => v,
            None => cells.entry(route.to_owned()).or_default(),
        };
        match per_route
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)
        {
            Some((_, _, cell)) => cell.record(elapsed),
            None => {
                let cell = register(route, method, status);
                cell.record(elapsed);
                per_route.push((method, status, cell));
            }
        }
    });
    response
}

/// One thread's requests of one route, method and status: how many, and how long
/// they took in fixed buckets ([`SECONDS`]).
#[derive(Default)]
struct Cell {
    /// Observations per bucket, not cumulative; above the last bucket only `count`.
    buckets: [AtomicU64; SECONDS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Cell {
    fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = self
            .buckets
            .get(SECONDS.partition_point(|le| *le < seconds))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// One thread's cells, by route, then method and status.
type ThreadCells = HashMap<String, Vec<(&'static str, u16, Arc<Cell>)>>;

thread_local! {
    static CELLS_HERE: std::cell::RefCell<ThreadCells> = std::cell::RefCell::new(HashMap::new());
}

/// A cell and its labels.
struct Series {
    route: String,
    method: &'static str,
    status: u16,
    cell: Arc<Cell>,
}

/// Every thread's cells, for rendering. A std mutex: taken when a thread meets a new
/// route, method and status, and to render.
static CELLS: Mutex<Vec<Series>> = Mutex::new(Vec::new());

/// A new cell for this thread, registered for rendering.
fn register(route: &str, method: &'static str, status: u16) -> Arc<Cell> {
    let cell = Arc::new(Cell::default());
    CELLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Series {
            route: route.to_owned(),
            method,
            status,
            cell: cell.clone(),
        });
    cell
}

/// Requests of one route and method since the process started, summed over threads
/// and statuses: how many, and how long they took in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTotals {
    pub count: u64,
    pub total: Duration,
}

/// The [`RouteTotals`] of `route` (as matched, e.g. `/products/{name}`) and `method`,
/// read from the same cells as `/metrics`; `None` while metrics are off. For
/// in-process readers (the front-end's dashboard) that want rates and mean latencies
/// without scraping.
pub fn route_totals(route: &str, method: &Method) -> Option<RouteTotals> {
    if OFF.load(Ordering::Relaxed) {
        return None;
    }
    let method = method_label(method);
    let all = CELLS.lock().unwrap_or_else(|p| p.into_inner());
    let mut t = Totals::default();
    for s in all
        .iter()
        .filter(|s| s.route == route && s.method == method)
    {
        t.add(&s.cell);
    }
    Some(RouteTotals {
        count: t.count,
        total: Duration::from_nanos(t.sum_nanos),
    })
}

/// A histogram summed over threads (and statuses).
#[derive(Default)]
struct Totals {
    buckets: [u64; SECONDS.len()],
    sum_nanos: u64,
    count: u64,
}

impl Totals {
    fn add(&mut self, cell: &Cell) {
        for (total, bucket) in self.buckets.iter_mut().zip(&cell.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
        self.sum_nanos = self
            .sum_nanos
            .wrapping_add(cell.sum_nanos.load(Ordering::Relaxed));
        self.count += cell.count.load(Ordering::Relaxed);
    }
}

const REQUESTS: &str = "http_requests_total";
const DURATION: &str = "http_request_duration_seconds";

/// `http_requests_total` and `http_request_duration_seconds` in Prometheus's text
/// format, summed over every thread's cells.
fn render_requests(out: &mut String) {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    let mut requests: BTreeMap<(&str, &str, u16), u64> = BTreeMap::new();
    let mut durations: BTreeMap<(&str, &str), Totals> = BTreeMap::new();
    let all = CELLS.lock().unwrap_or_else(|p| p.into_inner());
    if all.is_empty() {
        return;
    }
    for s in all.iter() {
        *requests.entry((&s.route, s.method, s.status)).or_default() +=
            s.cell.count.load(Ordering::Relaxed);
        durations
            .entry((&s.route, s.method))
            .or_default()
            .add(&s.cell);
    }
    let _ = writeln!(out, "# TYPE {REQUESTS} counter");
    for ((route, method, status), count) in &requests {
        let route = escape(route);
        let _ = writeln!(
            out,
            "{REQUESTS}{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
        );
    }
    out.push('\n');
    let _ = writeln!(out, "# TYPE {DURATION} histogram");
    for ((route, method), totals) in &durations {
        render_series(out, route, method, totals);
    }
    out.push('\n');
}

/// One route's and method's histogram: cumulative buckets, then sum and count.
fn render_series(out: &mut String, route: &str, method: &str, t: &Totals) {
    use std::fmt::Write as _;
    let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
    let mut cumulative = 0;
    for (le, bucket) in SECONDS.iter().zip(&t.buckets) {
        cumulative += bucket;
        let _ = writeln!(
            out,
            "{DURATION}_bucket{{{labels},le=\"{le}\"}} {cumulative}"
        );
    }
    let (count, sum) = (t.count, t.sum_nanos as f64 / 1e9);
    let _ = writeln!(out, "{DURATION}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{DURATION}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{DURATION}_count{{{labels}}} {count}");
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// In metrics text as `GET /metrics` renders it, the sum of every sample of `name`
/// whose labels include all of `labels` (for readers: the tests, `client bench`).
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sum_adds_the_samples_whose_labels_match() {
        let text = "# TYPE x_count counter\n\
                    x_count{route=\"/a\",method=\"GET\"} 2\n\
                    x_count{route=\"/a\",method=\"POST\"} 3\n\
                    x_count{route=\"/b\",method=\"GET\"} 5\n\
                    x_countless 7\n";
        assert_eq!(sum(text, "x_count", &[]), 10.0);
        assert_eq!(sum(text, "x_count", &[("method", "GET")]), 7.0);
        assert_eq!(
            sum(text, "x_count", &[("route", "/a"), ("method", "POST")]),
            3.0
        );
        assert_eq!(sum(text, "x_count", &[("route", "/c")]), 0.0);
    }

    #[test]
    fn durations_render_as_cumulative_buckets() {
        // Two threads' cells of one route add up.
        let (one, two) = (Cell::default(), Cell::default());
        one.record(Duration::from_micros(100)); // in the 0.0001 bucket
        two.record(Duration::from_millis(3)); // in the 0.005 bucket
        two.record(Duration::from_secs(20)); // above every bucket: only in +Inf
        let mut totals = Totals::default();
        totals.add(&one);
        totals.add(&two);
        let mut out = String::new();
        render_series(&mut out, "/orders/{n}", "GET", &totals);
        let value = |le: &str| -> u64 {
            let wanted = format!("le=\"{le}\"}} ");
            out.lines()
                .find_map(|l| l.split_once(&wanted).map(|(_, v)| v))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        assert_eq!(value("0.00005"), 0);
        assert_eq!(value("0.0001"), 1);
        assert_eq!(value("0.0025"), 1);
        assert_eq!(value("0.005"), 2);
        assert_eq!(value("10"), 2);
        assert_eq!(value("+Inf"), 3);
        assert!(
            out.contains("_count{route=\"/orders/{n}\",method=\"GET\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("_sum{route=\"/orders/{n}\",method=\"GET\"} 20.0031"),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
