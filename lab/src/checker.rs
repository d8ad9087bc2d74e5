//! The chaos checker: a history of everything clients saw, and the verdict on it.
//!
//! Recorded while the nemesis runs (times in seconds since the start):
//! - every acknowledged order (its idempotency key, number, toy, quantity) and every
//!   order or lookup that failed;
//! - every product reply's version (the front-end's `x-toy-version`), and, from a
//!   watcher that polls the catalog itself, when each version was first seen there;
//! - every order a reader saw at `GET /orders/<n>` while probing for new numbers.
//!
//! Judged against the replicas' final history (read with the cluster token):
//! - **lost**: acknowledged, but the final history holds another order at its number
//!   (or none);
//! - **duplicated**: one key at two numbers;
//! - **phantom**: read at `GET /orders/<n>`, but not what the final history holds at
//!   `n`, and never acknowledged to anyone (a number acknowledged twice — an order
//!   lost in an admitted schedule, then the one that took its number — counts for
//!   both); one read during a window the design admits as lossy is counted apart;
//! - **stale reads**: a product reply whose version the catalog had already
//!   replaced before the request was sent; the longest such gap is reported. The
//!   front-end's lease promises it never exceeds `--cache-lease-ms`.
//! - **reads after an order**: after each acknowledged order a session looks its toy
//!   up again. Answered by the front-end that took the order (its `x-served-by`), the
//!   reply must show the order (read-your-writes): a version newer than the one the
//!   session read before ordering, since the order changed the stock. Answered by
//!   another front-end, it may lag, by no more than the lease; both kinds are counted
//!   apart.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client::endpoint;
use common::wire::{CatalogProduct, Data, OrderRecord, OrderView};
use common::wire::{ReplicaStatus, StockTotals};
use reqwest::Url;

/// An acknowledged order.
#[derive(Debug, Clone)]
pub struct Ack {
    pub at: f64,
    pub key: String,
    pub number: u64,
    pub name: String,
    pub quantity: u64,
}

/// A request that failed as a client saw it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub at: f64,
    pub what: String,
}

#[derive(Default)]
struct Events {
    acks: Vec<Ack>,
    failures: Vec<Failure>,
    /// (request sent, lower-cased toy, version replied)
    product_reads: Vec<(f64, String, u64)>,
    /// lower-cased toy → (time first seen, version), versions increasing
    catalog_versions: HashMap<String, Vec<(f64, u64)>>,
    /// (time, order read)
    order_reads: Vec<(f64, OrderView)>,
    reads_after_order: Vec<ReadAfterOrder>,
}

/// A lookup of a toy just ordered.
#[derive(Debug, Clone)]
struct ReadAfterOrder {
    sent: f64,
    /// Lower-cased toy.
    toy: String,
    /// The version the session read before ordering.
    before: u64,
    /// The version of this reply.
    version: u64,
    /// Answered by the front-end that acknowledged the order.
    same_frontend: bool,
}

/// Everything the clients saw. Cheap to share (`Arc`); one std mutex, held only to
/// push an event.
pub struct History {
    start: Instant,
    events: Mutex<Events>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            start: Instant::now(),
            events: Mutex::new(Events::default()),
        }
    }

    /// Seconds since the history started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn events(&self) -> std::sync::MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn acked(&self, key: &str, number: u64, name: &str, quantity: u64) {
        let at = self.now();
        self.events().acks.push(Ack {
            at,
            key: key.to_string(),
            number,
            name: name.to_string(),
            quantity,
        });
    }

    pub fn failed(&self, what: impl Into<String>) {
        let at = self.now();
        self.events().failures.push(Failure {
            at,
            what: what.into(),
        });
    }

    /// A product reply of `version`, for a request sent at `sent`.
    pub fn product_read(&self, sent: f64, toy: &str, version: u64) {
        self.events()
            .product_reads
            .push((sent, toy.to_lowercase(), version));
    }

    /// A lookup of `toy`, sent at `sent` after an order of it was acknowledged, that
    /// replied `version`; `before`: the version read before the order;
    /// `same_frontend`: answered by the front-end that took the order. Counted as a
    /// product read too.
    pub fn read_after_order(
        &self,
        sent: f64,
        toy: &str,
        before: u64,
        version: u64,
        same_frontend: bool,
    ) {
        let toy = toy.to_lowercase();
        let mut events = self.events();
        events.product_reads.push((sent, toy.clone(), version));
        events.reads_after_order.push(ReadAfterOrder {
            sent,
            toy,
            before,
            version,
            same_frontend,
        });
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.events().acks.clone()
    }

    pub fn failures(&self) -> Vec<Failure> {
        self.events().failures.clone()
    }

    /// Polls the catalog's versions (from whichever of `catalogs` answers: a replicated
    /// catalog's leader) and probes `GET /orders/<next>` on the front-end
    /// until `stop` is set.
    pub async fn watch(self: Arc<Self>, frontend: Url, catalogs: Vec<Url>, stop: Arc<AtomicBool>) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_idle_timeout(common::client::POOL_IDLE)
            .build()
            .unwrap_or_default();
        let mut next = 0u64;
        // The catalog replica that answered last (only a replicated catalog's leader
        // answers lookups; the others say "not leader").
        let mut answering = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut list = None;
            for i in 0..catalogs.len() {
                let catalog = &catalogs[(answering + i) % catalogs.len()];
                let Ok(resp) = http.get(endpoint(catalog, &["products"])).send().await else {
                    continue;
                };
                if let Ok(products) = resp.json::<Data<Vec<CatalogProduct>>>().await {
                    answering = (answering + i) % catalogs.len();
                    list = Some(products);
                    break;
                }
            }
            if let Some(list) = list {
                let seen = self.now();
                let mut events = self.events();
                for p in list.data {
                    let versions = events
                        .catalog_versions
                        .entry(p.name.to_lowercase())
                        .or_default();
                    if versions.last().is_none_or(|(_, v)| *v < p.version.get()) {
                        versions.push((seen, p.version.get()));
                    }
                }
            }
            // Probe a few numbers ahead: reads of orders not yet committed are 404.
            for _ in 0..4 {
                let url = endpoint(&frontend, &["orders", &next.to_string()]);
                let Ok(resp) = http.get(url).send().await else {
                    break;
                };
                if !resp.status().is_success() {
                    break;
                }
                let at = self.now();
                if let Ok(order) = resp.json::<Data<OrderView>>().await {
                    self.events().order_reads.push((at, order.data));
                    next += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A stretch of the run during which one fault was active.
#[derive(Debug, Clone)]
pub struct Window {
    pub label: String,
    pub start: f64,
    pub end: f64,
    /// The design admits that clients see errors during it (the catalog or the
    /// front-end is down or cut off).
    pub unavailable: bool,
    /// The design admits that it can lose acknowledged orders (docs/DESIGN.md).
    pub lossy: bool,
}

/// How long after a fault heals its errors are still put down to it (restarts,
/// re-selection).
pub const SETTLE: f64 = 5.0;

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub acked: usize,
    /// Lost orders acknowledged during a window the design admits as lossy.
    pub lost_admitted: Vec<Ack>,
    /// Any other lost order: a broken guarantee.
    pub lost: Vec<Ack>,
    pub duplicated: Vec<String>,
    pub phantoms: Vec<String>,
    /// Orders read during a window the design admits as lossy, and lost with it.
    pub phantoms_admitted: usize,
    pub reads: usize,
    pub stale_reads: usize,
    pub longest_stale: f64,
    /// Lookups of a toy just ordered, answered by the front-end that took the order.
    pub own_reads: usize,
    /// Of those, replies that did not show the order (read-your-writes broken).
    pub own_unseen: usize,
    /// Lookups of a toy just ordered, answered by another front-end.
    pub other_reads: usize,
    /// Of those, stale ones, and the longest staleness.
    pub other_stale: usize,
    pub other_longest_stale: f64,
    /// Failures during (or just after) a fault the design admits as unavailable.
    pub failures_admitted: usize,
    /// Failures anywhere else.
    pub failures: Vec<Failure>,
}

impl Verdict {
    pub fn units_lost_admitted(&self) -> u64 {
        self.lost_admitted.iter().map(|a| a.quantity).sum()
    }
}

/// Judges `history` against the replicas' `final_orders` (in number order).
pub fn judge(history: &History, final_orders: &[OrderRecord], windows: &[Window]) -> Verdict {
    let events = history.events();
    let by_number: BTreeMap<u64, &OrderRecord> =
        final_orders.iter().map(|r| (r.number.get(), r)).collect();
    let mut verdict = Verdict {
        acked: events.acks.len(),
        reads: events.product_reads.len(),
        ..Verdict::default()
    };
    let in_window = |at: f64, pick: fn(&Window) -> bool| {
        windows
            .iter()
            .any(|w| pick(w) && at >= w.start && at <= w.end + SETTLE)
    };

    for ack in &events.acks {
        let kept = by_number
            .get(&ack.number)
            .is_some_and(|r| r.key == ack.key.as_str() && r.quantity == ack.quantity);
        if !kept {
            if in_window(ack.at, |w| w.lossy) {
                verdict.lost_admitted.push(ack.clone());
            } else {
                verdict.lost.push(ack.clone());
            }
        }
    }

    let mut numbers_of: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in final_orders {
        numbers_of.entry(&r.key).or_default().push(r.number.get());
    }
    for (key, numbers) in numbers_of {
        if numbers.len() > 1 {
            verdict
                .duplicated
                .push(format!("key {key} holds orders {numbers:?}"));
        }
    }

    // A number may have been acknowledged twice: once for an order the admitted
    // schedule then lost, and again for the order that took its number.
    let mut acked_numbers: HashMap<u64, Vec<&Ack>> = HashMap::new();
    for ack in &events.acks {
        acked_numbers.entry(ack.number).or_default().push(ack);
    }
    for (at, read) in &events.order_reads {
        let held = by_number
            .get(&read.number.get())
            .is_some_and(|r| r.name == read.name.as_str() && r.quantity == read.quantity);
        let acked_as_read = acked_numbers.get(&read.number.get()).is_some_and(|acks| {
            acks.iter()
                .any(|a| a.name == read.name && a.quantity == read.quantity)
        });
        if held || acked_as_read {
            continue;
        }
        // An order read while the design admits losing orders, and lost with them.
        if in_window(*at, |w| w.lossy) {
            verdict.phantoms_admitted += 1;
        } else {
            verdict.phantoms.push(format!(
                "order {} read at {at:.1} s as {} × {}, later gone",
                read.number, read.quantity, read.name
            ));
        }
    }

    // How stale a reply of `version`, sent at `sent`, was: how long before the
    // request the catalog had been seen at a newer version.
    let staleness = |sent: f64, toy: &str, version: u64| {
        let seen = events.catalog_versions.get(toy)?;
        let newer = seen.partition_point(|(_, v)| *v <= version);
        let (replaced, _) = seen.get(newer)?;
        (*replaced < sent).then(|| sent - replaced)
    };
    for (sent, toy, version) in &events.product_reads {
        if let Some(stale) = staleness(*sent, toy, *version) {
            verdict.stale_reads += 1;
            verdict.longest_stale = verdict.longest_stale.max(stale);
        }
    }
    for read in &events.reads_after_order {
        if read.same_frontend {
            verdict.own_reads += 1;
            if read.version <= read.before {
                verdict.own_unseen += 1;
            }
        } else {
            verdict.other_reads += 1;
            if let Some(stale) = staleness(read.sent, &read.toy, read.version) {
                verdict.other_stale += 1;
                verdict.other_longest_stale = verdict.other_longest_stale.max(stale);
            }
        }
    }

    for failure in &events.failures {
        if in_window(failure.at, |w| w.unavailable) {
            verdict.failures_admitted += 1;
        } else {
            verdict.failures.push(failure.clone());
        }
    }
    verdict
}

/// Orders acknowledged per second in `[from, to)`.
pub fn rate(acks: &[Ack], from: f64, to: f64) -> f64 {
    if to <= from {
        return 0.0;
    }
    acks.iter().filter(|a| a.at >= from && a.at < to).count() as f64 / (to - from)
}

/// The longest stretch of `[from, to]` in which no order was acknowledged.
pub fn longest_gap(acks: &[Ack], from: f64, to: f64) -> f64 {
    let mut last = from;
    let mut gap: f64 = 0.0;
    for a in acks.iter().filter(|a| a.at >= from && a.at <= to) {
        gap = gap.max(a.at - last);
        last = a.at;
    }
    gap.max(to - last)
}

/// The catalog's books: `initial + restocked - sold == current`, as a check line.
pub fn stock_adds_up(t: &StockTotals) -> (bool, String) {
    (
        t.initial + t.restocked == t.current + t.sold,
        format!(
            "catalog: initial {} + restocked {} - sold {} = current {}",
            t.initial, t.restocked, t.sold, t.current
        ),
    )
}

/// Converged replicas (all holding the same history), as a check line.
pub fn replicas_agree(all: &[ReplicaStatus]) -> (bool, String) {
    match all.first() {
        Some(first) => (
            true,
            format!(
                "all {} replicas hold the same {} orders (digest {})",
                all.len(),
                first.orders,
                first.digest
            ),
        ),
        None => (false, "no replica answered".into()),
    }
}

/// The line an experiment ends with.
pub fn closing_line(ok: bool) -> &'static str {
    if ok {
        "all checks passed"
    } else {
        "SOME CHECKS FAILED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(number: u64, key: &str) -> OrderRecord {
        OrderRecord {
            number: common::domain::OrderNumber(number),
            name: common::domain::ToyName::new("Tux").expect("name"),
            quantity: 1,
            key: common::domain::IdempotencyKey::new(key).expect("key"),
            epoch: common::domain::Epoch(1),
            time: 0,
        }
    }

    #[test]
    fn lost_duplicated_and_admitted_orders_are_told_apart() {
        let history = History::new();
        history.acked("a", 0, "Tux", 1);
        history.acked("b", 1, "Tux", 1);
        history.acked("c", 2, "Tux", 1);
        let lossy = Window {
            label: "cut, then kill".into(),
            start: 0.0,
            end: 0.0,
            unavailable: false,
            lossy: true,
        };
        // "b" lost its number to "x"; "a" also sits at number 3; "c" is gone.
        let finals = [rec(0, "a"), rec(1, "x"), rec(3, "a")];
        let verdict = judge(&history, &finals, &[lossy]);
        assert_eq!(
            verdict.lost_admitted.len(),
            2,
            "acked inside the lossy window"
        );
        assert!(verdict.lost.is_empty());
        assert_eq!(verdict.duplicated.len(), 1);

        let verdict = judge(&history, &finals, &[]);
        assert_eq!(verdict.lost.len(), 2);
    }

    #[test]
    fn a_read_of_an_order_lost_in_the_admitted_schedule_is_no_phantom() {
        let history = History::new();
        let read = |number, name: &str| OrderView {
            number: common::domain::OrderNumber(number),
            name: name.into(),
            quantity: 1,
        };
        // Number 5 was acknowledged for Tux, lost, and acknowledged again for Fox.
        history.acked("a", 5, "Tux", 1);
        history.acked("b", 5, "Fox", 1);
        history.events().order_reads.push((0.5, read(5, "Tux")));
        // Number 6 was never acknowledged, read, and lost.
        history.events().order_reads.push((0.5, read(6, "Uno")));
        let finals = [OrderRecord {
            name: common::domain::ToyName::new("Fox").expect("name"),
            ..rec(5, "b")
        }];
        let lossy = Window {
            label: "cut, then kill".into(),
            start: 0.0,
            end: 1.0,
            unavailable: false,
            lossy: true,
        };
        let verdict = judge(&history, &finals, &[lossy]);
        assert!(verdict.phantoms.is_empty(), "{:?}", verdict.phantoms);
        assert_eq!(verdict.phantoms_admitted, 1);
        // Outside a lossy window the unacknowledged one is a phantom.
        let verdict = judge(&history, &finals, &[]);
        assert_eq!(verdict.phantoms.len(), 1, "{:?}", verdict.phantoms);
    }

    #[test]
    fn the_longest_gap_counts_the_edges_of_the_window() {
        let history = History::new();
        history.acked("a", 0, "Tux", 1);
        let mut acks = history.acks();
        acks[0].at = 2.0;
        assert!((longest_gap(&acks, 1.0, 6.0) - 4.0).abs() < 1e-9);
        assert!((longest_gap(&[], 1.0, 6.0) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn a_reply_older_than_the_catalog_already_was_is_stale() {
        let history = History::new();
        history
            .events()
            .catalog_versions
            .insert("tux".into(), vec![(1.0, 4), (2.0, 5)]);
        history.product_read(1.5, "Tux", 4); // current when sent
        history.product_read(2.7, "Tux", 4); // replaced at 2.0: 0.7 s stale
        history.product_read(3.0, "Tux", 5);
        let verdict = judge(&history, &[], &[]);
        assert_eq!(verdict.stale_reads, 1);
        assert!((verdict.longest_stale - 0.7).abs() < 1e-9);
    }

    #[test]
    fn a_read_after_an_order_must_show_it_through_the_front_end_that_took_it() {
        let history = History::new();
        history
            .events()
            .catalog_versions
            .insert("tux".into(), vec![(1.0, 4), (2.0, 5), (3.0, 6)]);
        history.read_after_order(2.1, "Tux", 4, 5, true); // shows the order
        history.read_after_order(3.1, "Tux", 5, 5, true); // does not
        history.read_after_order(3.4, "Tux", 4, 5, false); // elsewhere, 0.4 s stale
        history.read_after_order(3.5, "Tux", 5, 6, false);
        let verdict = judge(&history, &[], &[]);
        assert_eq!((verdict.own_reads, verdict.own_unseen), (2, 1));
        assert_eq!((verdict.other_reads, verdict.other_stale), (2, 1));
        assert!((verdict.other_longest_stale - 0.4).abs() < 1e-9);
        // They are product reads as well: 3.1 s (0.1 s stale) and 3.4 s.
        assert_eq!(verdict.reads, 4);
        assert_eq!(verdict.stale_reads, 2);
    }
}
