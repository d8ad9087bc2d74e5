//! The live dashboard: `GET /dashboard` (and `GET /` redirects there).
//!
//! One task (`poll_loop`) asks the [`Monitor`] for a [`Snapshot`] every
//! [`crate::monitor::POLL`] and renders it, once, into HTML [`Panels`] that it
//! publishes on a `watch` channel. The page is those panels in a static frame; its
//! script opens `GET /dashboard/events`, a Server-Sent Events stream that sends every
//! panel at once, then each panel that changed, and swaps them in. So however many
//! people watch, the cluster is polled once per interval and rendered once per poll; a
//! viewer costs one stream that sends strings already made. Streams end when the
//! front-end starts shutting down, so they never hold up its exit.
//!
//! Every asset is compiled into the binary and served from here (the page works with
//! no internet), and the page's `Content-Security-Policy` forbids loading anything
//! from elsewhere. The page shows no secret: nothing in a [`Snapshot`] is one.

use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use common::tasks::Tasks;
use common::wire::{CacheEventKind, CatalogHealth, ReplicaStatus, Replication, Role};
use futures_util::Stream;
use tokio::sync::watch;

use crate::monitor::{FeedItem, FeedKind, Monitor, Snapshot, FLASH, POLL};

mod charts;
mod frontends;

use charts::charts;
use frontends::frontends;

const PAGE: &str = include_str!("../../assets/dashboard.html");

const SCRIPT: &str = include_str!("../../assets/dashboard.js");

const STYLE: &str = include_str!("../../assets/dashboard.css");

/// Only the front-end itself may serve what the page uses.
const CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/// Lines shown of each feed (the monitor keeps [`crate::monitor::FEED`]).
const FEED_SHOWN: usize = 30;

/// How soon a browser reopens a broken stream.
const RECONNECT: Duration = Duration::from_secs(1);

/// Toys shown that just left the cache.
const GONE_SHOWN: usize = 10;

/// The dashboard's parts, rendered as HTML; the page and the stream send these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Panels {
    pub summary: String,
    pub replicas: String,
    pub catalog: String,
    pub frontends: String,
    pub cache: String,
    pub charts: String,
    pub feed: String,
}

impl Panels {
    /// Before the first poll.
    fn waiting() -> Self {
        let wait = "<p class=\"muted\">looking at the cluster…</p>".to_string();
        Panels {
            summary: wait.clone(),
            replicas: wait.clone(),
            catalog: wait.clone(),
            frontends: wait.clone(),
            cache: wait.clone(),
            charts: wait.clone(),
            feed: wait,
        }
    }

    fn parts(&self) -> [(&'static str, &str); 7] {
        [
            ("summary", &self.summary),
            ("replicas", &self.replicas),
            ("catalog", &self.catalog),
            ("frontends", &self.frontends),
            ("cache", &self.cache),
            ("charts", &self.charts),
            ("feed", &self.feed),
        ]
    }

    /// A JSON object of the panels that differ from `sent` (all of them without it),
    /// by element id.
    fn changed_since(&self, sent: Option<&Panels>) -> String {
        let before = sent.map(Panels::parts);
        let mut changed = serde_json::Map::new();
        for (i, (id, html)) in self.parts().into_iter().enumerate() {
            if before.is_none_or(|b| b[i].1 != html) {
                changed.insert(id.to_string(), html.into());
            }
        }
        serde_json::Value::Object(changed).to_string()
    }

    fn render(s: &Snapshot) -> Self {
        Panels {
            summary: summary(s),
            replicas: replicas(s),
            catalog: catalog(s),
            frontends: frontends(&s.frontends, s.mode),
            cache: cache(s),
            charts: charts(&s.history),
            feed: feed(s),
        }
    }
}

/// What the dashboard's handlers share.
#[derive(Clone)]
pub struct Dashboard {
    panels: watch::Receiver<Arc<Panels>>,
    /// Stopped as soon as shutdown begins (the front-end's `closing` signal): streams
    /// end, so that the server can finish draining (no task runs on it).
    closing: Tasks,
}

impl Dashboard {
    /// Starts polling with `monitor` on `tasks` and returns the handle the routes
    /// serve from; its streams end when `closing` is stopped.
    pub fn start(monitor: Monitor, tasks: &Tasks, closing: Tasks) -> Self {
        let (tx, panels) = watch::channel(Arc::new(Panels::waiting()));
        tasks.spawn_cancellable("dashboard poll", poll_loop(monitor, tx));
        Dashboard { panels, closing }
    }
}

/// Polls and renders every [`POLL`], until shutdown drops it; viewers are woken only
/// when a panel changed.
async fn poll_loop(mut monitor: Monitor, panels: watch::Sender<Arc<Panels>>) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let snapshot = monitor.poll().await;
        let rendered = Panels::render(&snapshot);
        panels.send_if_modified(|current| {
            let changed = **current != rendered;
            if changed {
                *current = Arc::new(rendered);
            }
            changed
        });
    }
}

/// `/` (a redirect), the page, its stream and its assets.
pub fn routes<S>(dashboard: Dashboard) -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(page))
        .route("/dashboard/events", get(events))
        .route(
            "/dashboard/app.js",
            get(|| asset("text/javascript", SCRIPT)),
        )
        .route("/dashboard/style.css", get(|| asset("text/css", STYLE)))
        .with_state(dashboard)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page, with the latest panels already in it.
async fn page(State(d): State<Dashboard>) -> Response {
    let panels = d.panels.borrow().clone();
    let mut html = PAGE.to_string();
    for (id, part) in panels.parts() {
        html = html.replace(&format!("<!--{id}-->"), part);
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        html,
    )
        .into_response()
}

/// The stream: every panel at once, then the panels that changed, until shutdown.
async fn events(State(d): State<Dashboard>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let start = (d.panels, d.closing, None::<Arc<Panels>>);
    let stream = futures_util::stream::unfold(start, |(mut panels, closing, sent)| async move {
        if closing.is_stopping() {
            return None;
        }
        if sent.is_some() {
            tokio::select! {
                changed = panels.changed() => changed.ok()?,
                _ = closing.stopping() => return None,
            }
        }
        let now = panels.borrow_and_update().clone();
        let data = now.changed_since(sent.as_deref());
        let mut event = Event::default().event("panels").data(data);
        if sent.is_none() {
            // A stream that breaks (its front-end died) is reopened soon, through the
            // load balancer to another front-end if there is one.
            event = event.retry(RECONNECT);
        }
        Some((Ok(event), (panels, closing, Some(now))))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Text made safe to put in HTML (element content or a quoted attribute).
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `1234567` as `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn epoch_word(mode: Replication) -> &'static str {
    match mode {
        Replication::PrimaryBackup => "epoch",
        Replication::Raft => "term",
    }
}

/// The line at the top: who leads, in which mode, and whether the catalog is heard.
fn summary(s: &Snapshot) -> String {
    let mut out = String::new();
    match s.leader {
        Some((id, epoch)) => {
            let _ = write!(
                out,
                "<span id=\"leader\" data-leader=\"{id}\">order{id}</span> leads at {} {epoch}",
                epoch_word(s.mode)
            );
        }
        None => out.push_str("<span id=\"leader\" data-leader=\"\">no leader</span>"),
    }
    let up = s.replicas.iter().filter(|r| r.status.is_some()).count();
    let _ = write!(
        out,
        " · {up} of {} replicas up · {} replication · catalog {}",
        s.replicas.len(),
        s.mode,
        if s.catalog.up { "up" } else { "down" }
    );
    if s.frontends.len() > 1 {
        let up = s.frontends.iter().filter(|f| f.health.is_some()).count();
        let this = s.frontends.iter().find(|f| f.this).map_or("", |f| &f.name);
        let _ = write!(
            out,
            " · {up} of {} front-ends up · served by <span id=\"served-by\">{}</span>",
            s.frontends.len(),
            Esc(this)
        );
    }
    out
}

fn replicas(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<table><thead><tr><th>replica</th><th>role</th><th>ready</th><th>{}</th>\
         <th>last order</th><th>orders</th><th>digest</th><th>behind</th></tr></thead><tbody>",
        epoch_word(s.mode)
    );
    for row in &s.replicas {
        let id = row.id;
        let Some(st) = &row.status else {
            let _ = write!(
                out,
                "<tr data-replica=\"{id}\" data-role=\"down\" class=\"down\"><td>order{id}</td>\
                 <td colspan=\"7\">down: not answering</td></tr>"
            );
            continue;
        };
        let role = match st.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
        };
        let last = st.last_order.map_or("–".to_string(), |n| n.to_string());
        let behind = match row.behind {
            Some(0) => "0".to_string(),
            Some(n) => format!("<strong>{}</strong>", count(n)),
            None => "?".to_string(),
        };
        let digest = st.digest.get(..12).unwrap_or(&st.digest);
        let ready = ready_cell(st);
        let _ = write!(
            out,
            "<tr data-replica=\"{id}\" data-role=\"{role}\" class=\"up {role}{}\">\
             <td>order{id}</td><td>{role}</td><td>{ready}</td><td>{}</td><td>{last}</td>\
             <td>{}</td><td class=\"mono\" title=\"{}\">{}</td><td>{behind}</td></tr>",
            if st.ready { "" } else { " unready" },
            st.epoch,
            count(st.orders),
            Esc(&st.digest),
            Esc(digest),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// A replica's "ready" cell: yes, no, or "failed" with the reason as its tooltip (a
/// replica that stopped for good says why while its shutdown runs, then exits).
fn ready_cell(st: &ReplicaStatus) -> String {
    match (&st.failure, st.ready) {
        (Some(why), _) => format!("<span title=\"{}\">failed</span>", Esc(why)),
        (None, true) => "yes".to_string(),
        (None, false) => "no".to_string(),
    }
}

fn catalog(s: &Snapshot) -> String {
    let c = &s.catalog;
    let mut out = String::new();
    if c.up {
        out.push_str("<p><span class=\"pill up\">up</span>");
    } else {
        out.push_str("<p><span class=\"pill down\">down</span> (stock as last seen)");
    }
    if let Some(h) = &c.health {
        let _ = write!(
            out,
            " next restock in {:.0} s (every {:.0} s)",
            Duration::from_millis(h.next_restock_ms)
                .as_secs_f64()
                .ceil(),
            Duration::from_millis(h.restock_period_ms).as_secs_f64(),
        );
    }
    out.push_str("</p>");
    if !c.replicas.is_empty() {
        catalog_replicas(&mut out, &c.replicas);
    }
    out.push_str(
        "<table><thead><tr><th>toy</th><th>price</th><th>stock</th><th>version</th></tr>\
         </thead><tbody>",
    );
    for toy in &c.products {
        let sold_out = toy.quantity == 0;
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            if sold_out { " class=\"sold-out\"" } else { "" },
            Esc(&toy.name),
            toy.price,
            if sold_out {
                "<span class=\"pill down\">sold out</span>".to_string()
            } else {
                count(toy.quantity)
            },
            toy.version,
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// A replicated catalog's replicas, like the order replicas: up or down, role, term,
/// how far behind the leader's commit each has applied, and the stock digest.
fn catalog_replicas(out: &mut String, replicas: &[Option<CatalogHealth>]) {
    let committed = replicas
        .iter()
        .flatten()
        .filter_map(|h| h.group.as_ref())
        .filter(|g| g.role == Role::Leader)
        .filter_map(|g| g.commit_index)
        .max();
    out.push_str(
        "<table><thead><tr><th>replica</th><th>role</th><th>ready</th><th>term</th>\
         <th>applied</th><th>digest</th><th>behind</th></tr></thead><tbody>",
    );
    for (i, health) in replicas.iter().enumerate() {
        let name = format!("catalog{}", i + 1);
        let Some((h, g)) = health.as_ref().and_then(|h| Some((h, h.group.as_ref()?))) else {
            let _ = write!(
                out,
                "<tr data-catalog=\"{name}\" data-role=\"down\" class=\"down\"><td>{name}</td>\
                 <td colspan=\"6\">down: not answering</td></tr>"
            );
            continue;
        };
        let role = match g.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
        };
        let applied = g.applied_index.map_or("–".to_string(), |i| i.to_string());
        let behind = match (committed, g.applied_index) {
            (Some(c), Some(a)) if c.get() > a.get() => {
                format!("<strong>{}</strong>", count(c.get() - a.get()))
            }
            (Some(_), _) => "0".to_string(),
            (None, _) => "?".to_string(),
        };
        let digest = h.digest.get(..12).unwrap_or(&h.digest);
        let _ = write!(
            out,
            "<tr data-catalog=\"{name}\" data-role=\"{role}\" class=\"up {role}{}\">\
             <td>{name}</td><td>{role}</td><td>{}</td><td>{}</td><td>{applied}</td>\
             <td class=\"mono\" title=\"{}\">{}</td><td>{behind}</td></tr>",
            if h.ready { "" } else { " unready" },
            if h.ready { "yes" } else { "no" },
            g.term,
            Esc(&h.digest),
            Esc(digest),
        );
    }
    out.push_str("</tbody></table>");
}

fn cache(s: &Snapshot) -> String {
    let st = &s.cache_stats;
    let mut out = String::new();
    if !st.enabled {
        return "<p><span class=\"pill down\">disabled</span> every lookup reads the catalog</p>"
            .into();
    }
    let lookups = st.hits + st.misses;
    let ratio = if lookups == 0 {
        String::new()
    } else {
        format!(" ({:.1}% hits)", st.hits as f64 * 100.0 / lookups as f64)
    };
    let _ = write!(
        out,
        "<p>{} of {} entries · {} hits · {} misses{ratio} · {} evictions · {} invalidations · \
         lease {}</p><ol id=\"lru\" class=\"lru\">",
        st.size,
        st.capacity,
        count(st.hits),
        count(st.misses),
        count(st.evictions),
        count(st.invalidations),
        if st.leased {
            "current"
        } else {
            "<strong>expired</strong>"
        },
    );
    // The newest flash of each toy decides its highlight.
    let flash = |name: &str| {
        s.flashes
            .iter()
            .rev()
            .find(|(e, _)| e.name == name)
            .map(|(e, age)| (e.kind, *age))
    };
    for entry in &s.cache.entries {
        let class = match flash(&entry.name) {
            Some((kind, age)) => flash_class(kind, age),
            None => String::new(),
        };
        let _ = write!(
            out,
            "<li data-name=\"{}\" class=\"{class}\">{} <small>v{}</small></li>",
            Esc(&entry.name),
            Esc(&entry.name),
            entry.version
        );
    }
    out.push_str("</ol>");
    // Toys that left the cache just now and are not back.
    let mut gone: Vec<&str> = Vec::new();
    for (e, age) in s.flashes.iter().rev() {
        if s.cache.entries.iter().any(|c| c.name == e.name) || gone.contains(&e.name.as_str()) {
            continue;
        }
        if gone.len() == GONE_SHOWN {
            break;
        }
        gone.push(&e.name);
        if gone.len() == 1 {
            out.push_str("<p class=\"muted\">just left:</p><ul class=\"gone\">");
        }
        let _ = write!(
            out,
            "<li class=\"{}\">{} <small>{}</small></li>",
            flash_class(e.kind, *age),
            Esc(&e.name),
            kind_word(e.kind)
        );
    }
    if !gone.is_empty() {
        out.push_str("</ul>");
    }
    out
}

fn kind_word(kind: CacheEventKind) -> &'static str {
    match kind {
        CacheEventKind::Filled => "filled",
        CacheEventKind::Evicted => "evicted",
        CacheEventKind::Invalidated => "invalidated",
        CacheEventKind::Expired => "lease ran out",
    }
}

/// The highlight of an entry that was evicted or invalidated `age` ago: strong in the
/// first half of [`FLASH`], fading in the second.
fn flash_class(kind: CacheEventKind, age: Duration) -> String {
    let strength = if age < FLASH / 2 { "new" } else { "old" };
    format!("flash-{} {strength}", kind_word(kind).replace(' ', "-"))
}

/// The two feeds side by side: the cluster's events and the cache's.
fn feed(s: &Snapshot) -> String {
    let mut out = String::from("<div class=\"feeds\">");
    feed_list(&mut out, "cluster", &s.feed);
    feed_list(&mut out, "cache", &s.cache_feed);
    out.push_str("</div>");
    out
}

fn feed_list(out: &mut String, title: &str, items: &[FeedItem]) {
    let _ = write!(out, "<div><h3>{title}</h3>");
    if items.is_empty() {
        out.push_str("<p class=\"muted\">nothing yet</p></div>");
        return;
    }
    let _ = write!(out, "<ol class=\"feed\" id=\"feed-{title}\">");
    for item in items.iter().take(FEED_SHOWN) {
        let kind = match item.kind {
            FeedKind::Leader => "leader",
            FeedKind::Down => "down",
            FeedKind::Up => "up",
            FeedKind::CaughtUp => "caught-up",
            FeedKind::Restock => "restock",
            FeedKind::Evicted => "evicted",
            FeedKind::Invalidated => "invalidated",
            FeedKind::Expired => "expired",
        };
        let t = item.at_unix_s % 86_400;
        let _ = write!(
            out,
            "<li class=\"k-{kind}\"><time>{:02}:{:02}:{:02}</time> {}</li>",
            t / 3600,
            t / 60 % 60,
            t % 60,
            Esc(&item.text)
        );
    }
    out.push_str("</ol></div>");
}

#[cfg(test)]
mod tests;
