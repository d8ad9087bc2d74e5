//! Cache replacement in action, for the evaluation: one client looks toys up with a
//! skewed popularity (Zipf, s = 1: the k-th toy is looked up 1/k as often as the
//! first) and orders one unit of what it found with probability [`ORDER_P`]. Meanwhile the
//! front-end's cache journal (`GET /cache`) is read every 100 ms, and the run becomes
//! a timeline: one row per toy, most popular at the top, a bar while the toy is
//! cached, a red tick where it was evicted (least recently used) and a blue one where
//! it was invalidated (an order or a restock changed it).

use std::path::Path;
use std::time::{Duration, Instant};

use common::wire::{CacheEvent, CacheEventKind, CacheView, Data, Product};
use plotters::prelude::*;
use reqwest::Url;

use crate::plot::{err, register_font};
use crate::ClientError;

/// Probability of ordering a toy that was found in stock.
pub const ORDER_P: f64 = 0.05;

/// Time between two lookups.
pub const PACE: Duration = Duration::from_millis(4);

/// What one run recorded.
pub struct Timeline {
    /// Toy names, most popular first.
    pub toys: Vec<String>,
    /// The journal's events during the run, in order.
    pub events: Vec<CacheEvent>,
    /// The run's first and last moment on the journal's clock (ms).
    pub span_ms: (u64, u64),
    pub capacity: usize,
    pub lookups: u64,
    pub orders: u64,
}

impl Timeline {
    pub fn count(&self, kind: CacheEventKind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }
}

/// Runs `lookups` lookups ([`PACE`] apart) against the front-end at `url`, whose
/// cache must be on, and records its journal meanwhile.
pub async fn record(url: &Url, lookups: u64, seed: u64) -> Result<Timeline, ClientError> {
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = url.join(path);
        let http = http.clone();
        async move {
            let url = url.map_err(|e| ClientError::Other(e.to_string()))?;
            let what = format!("GET {url}");
            http.get(url)
                .send()
                .await
                .map_err(ClientError::http(what.clone()))?
                .bytes()
                .await
                .map_err(ClientError::http(what))
        }
    };
    let parse = |bytes: &[u8]| {
        serde_json::from_slice::<Data<CacheView>>(bytes)
            .map(|d| d.data)
            .map_err(|e| ClientError::Other(format!("GET /cache: {e}")))
    };
    let products: Data<Vec<Product>> = serde_json::from_slice(&get("products").await?)
        .map_err(|e| ClientError::Other(format!("GET /products: {e}")))?;
    let toys: Vec<String> = products.data.iter().map(|p| p.name.clone()).collect();
    let start = parse(&get("cache").await?)?;

    // The journal, read every 100 ms while the client runs.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let reader = {
        let url = url.clone();
        let http = http.clone();
        let mut next = start.next;
        tokio::spawn(async move {
            let mut events = Vec::new();
            loop {
                let stopping = *stop_rx.borrow();
                if let Ok(cache_url) = url.join(&format!("cache?after={next}")) {
                    if let Ok(resp) = http.get(cache_url).send().await {
                        if let Ok(view) = resp.json::<Data<CacheView>>().await {
                            next = view.data.next;
                            events.extend(view.data.events);
                        }
                    }
                }
                if stopping {
                    return events;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop_rx.changed() => {}
                }
            }
        })
    };

    let mut rng = fastrand::Rng::with_seed(seed);
    let weights: Vec<f64> = (1..=toys.len()).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut orders = 0;
    let began = Instant::now();
    for i in 0..lookups {
        let mut pick = rng.f64() * total;
        let rank = weights
            .iter()
            .position(|w| {
                pick -= w;
                pick <= 0.0
            })
            .unwrap_or(toys.len() - 1);
        let name = &toys[rank];
        let found = get(&format!("products/{name}")).await?;
        let in_stock =
            serde_json::from_slice::<Data<Product>>(&found).is_ok_and(|d| d.data.quantity > 0);
        if in_stock && rng.f64() < ORDER_P {
            let order = url
                .join("orders")
                .map_err(|e| ClientError::Other(e.to_string()))?;
            http.post(order)
                .body(format!(
                    "{{\"name\": {}, \"quantity\": 1}}",
                    serde_json::json!(name)
                ))
                .send()
                .await
                .map_err(|e| ClientError::Other(e.to_string()))?;
            orders += 1;
        }
        // Paced, so the run spreads over several seconds and the plot can show it.
        let due = began + PACE * u32::try_from(i + 1).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
    }
    let _ = stop_tx.send(true);
    let events = reader
        .await
        .map_err(|e| ClientError::Other(format!("journal reader: {e}")))?;
    let end = parse(&get("cache").await?)?;
    let first = events.first().map_or(0, |e| e.at_ms);
    let last = events.last().map_or(first, |e| e.at_ms);
    Ok(Timeline {
        toys,
        events,
        span_ms: (first, last.max(first + 1)),
        capacity: end.capacity,
        lookups,
        orders,
    })
}

/// Draws `timeline` into a PNG at `path`.
pub fn plot(path: &Path, timeline: &Timeline) -> Result<(), ClientError> {
    register_font();
    let rows = timeline.toys.len().max(1);
    let root = BitMapBackend::new(path, (1100, 120 + 22 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (t0, t1) = timeline.span_ms;
    let seconds = |ms: u64| ms.saturating_sub(t0) as f64 / 1000.0;
    let x_max = seconds(t1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Cache replacement: {} lookups with Zipf popularity, cache of {} toys",
                timeline.lookups, timeline.capacity
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(130)
        .build_cartesian_2d(0f64..x_max, -0.5f64..(rows as f64 - 0.5))
        .map_err(err)?;
    let label = |y: &f64| {
        let row = y.round();
        if (y - row).abs() > 0.01 || row < 0.0 {
            return String::new();
        }
        // Row 0 (the most popular toy) is at the top.
        timeline
            .toys
            .get(rows - 1 - row as usize)
            .cloned()
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_labels(rows * 2 + 1)
        .y_label_formatter(&label)
        .disable_y_mesh()
        .draw()
        .map_err(err)?;
    let y_of = |name: &str| {
        timeline
            .toys
            .iter()
            .position(|t| t.to_lowercase() == name)
            .map(|i| (rows - 1 - i) as f64)
    };
    let cached = RGBColor(44, 160, 44).mix(0.6).filled();
    let evicted = RGBColor(214, 39, 40).filled();
    let invalidated = RGBColor(31, 119, 180).filled();
    // Bars: from a fill to whatever ends it (or the end of the run).
    let mut open: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    let mut bars = Vec::new();
    let (mut evictions, mut invalidations) = (Vec::new(), Vec::new());
    for event in &timeline.events {
        let Some(y) = y_of(&event.name) else { continue };
        let x = seconds(event.at_ms);
        match event.kind {
            CacheEventKind::Filled => {
                open.insert(&event.name, x);
            }
            kind => {
                if let Some(from) = open.remove(event.name.as_str()) {
                    bars.push((from, x, y));
                }
                match kind {
                    CacheEventKind::Evicted => evictions.push((x, y)),
                    _ => invalidations.push((x, y)),
                }
            }
        }
    }
    for (name, from) in open {
        if let Some(y) = y_of(name) {
            bars.push((from, x_max, y));
        }
    }
    chart
        .draw_series(
            bars.into_iter().map(|(a, b, y)| {
                Rectangle::new([(a, y - 0.3), (b.max(a + 0.005), y + 0.3)], cached)
            }),
        )
        .map_err(err)?
        .label("cached")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], cached));
    let tick_width = x_max / 600.0;
    for (ticks, style, name) in [
        (evictions, evicted, "evicted (LRU)"),
        (invalidations, invalidated, "invalidated"),
    ] {
        chart
            .draw_series(
                ticks.into_iter().map(|(x, y)| {
                    Rectangle::new([(x, y - 0.42), (x + tick_width, y + 0.42)], style)
                }),
            )
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 4, y + 5)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
