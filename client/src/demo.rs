//! `client demo`: the lab's output document. A scripted session against a fresh
//! cluster of its own: lookups (a miss, then a hit), orders, one that exceeds the
//! stock, reading an order back, `kill -9` of the leader while a client orders, the
//! restart and catch-up, equal digests, and a restock seen through the cache. Every
//! command and its real reply go into `docs/OUTPUT.md`, with a caption each.
//!
//! The session places its orders one at a time, so order numbers, stock and the new
//! leader come out the same on every run; what may differ is where the kill falls in
//! the ordering client's run, and so the epochs inside the orders and the digests.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::topology::Kind;
use common::wire::ReplicaStatus;
use reqwest::Method;
use serde_json::Value;

use crate::ClientError;
use lab::cluster::{Inspector, RunSh};

/// Orders the client places while the leader is killed.
const ORDERS_DURING_KILL: u32 = 30;

/// The document being written, and the means to run what it shows.
struct Session {
    run_sh: RunSh,
    inspector: Inspector,
    http: reqwest::Client,
    doc: String,
    step: u32,
}

/// Runs the demo against `run_sh`'s cluster (already started) and writes the document
/// to `out`. Fails if any reply is not what the lab expects.
pub async fn demo(run_sh: RunSh, inspector: Inspector, out: &Path) -> Result<(), ClientError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(common::client::POOL_IDLE)
        .build()
        .map_err(ClientError::http("building the HTTP client"))?;
    let mut s = Session {
        run_sh,
        inspector,
        http,
        doc: String::new(),
        step: 0,
    };
    s.header();
    s.script().await?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(ClientError::file(dir))?;
    }
    std::fs::write(out, &s.doc).map_err(ClientError::file(out))?;
    println!("wrote {}", out.display());
    Ok(())
}

impl Session {
    fn header(&mut self) {
        let t = &self.run_sh.topology;
        let port = |name| t.service(name).map_or(0, |s| s.port);
        let _ = write!(
            self.doc,
            "# A toystore session\n\n\
             Written by `cargo run --release -p client -- demo` on {date}: a fresh cluster \
             ({mode} replication) on ports {f} (front-end), {c} (catalog) and {o1}-{o3} \
             (order replicas 1-3), started with `./run.sh`. Every command below was run \
             and its reply is the real one. The `./run.sh` commands run with the demo's \
             ports and data directory in their environment (`FRONTEND_PORT={f}` and so \
             on, `TOYSTORE_DATA_DIR={data}`). Run again, it writes the same document \
             but for process ids and, as the kill falls a little earlier or later, the \
             epochs inside orders and so the digest.\n",
            date = crate::bench::today(),
            mode = t.replication(),
            f = port("frontend"),
            c = port("catalog"),
            o1 = port("order1"),
            o3 = port("order3"),
            data = self.run_sh.data_dir.display(),
        );
    }

    fn caption(&mut self, title: &str, text: &str) {
        self.step += 1;
        let _ = write!(self.doc, "\n## {}. {title}\n\n{text}\n\n", self.step);
    }

    fn note(&mut self, text: &str) {
        let _ = write!(self.doc, "{text}\n\n");
    }

    /// `path` on the front-end.
    fn url(&self, path: &str) -> String {
        let front = self.run_sh.frontend_url();
        format!("{}{path}", front.as_str().trim_end_matches('/'))
    }

    /// `curl` against the front-end: the command, the status and the body go into
    /// the document.
    async fn curl(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value), ClientError> {
        let url = self.url(path);
        let mut req = self.http.request(method.clone(), &url);
        let shown = match body {
            Some(b) => {
                req = req.body(b.to_string());
                format!("curl -s -X {method} {url} -d '{b}'")
            }
            None => format!("curl -s {url}"),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Other(format!("{shown}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Other(format!("{shown}: {e}")))?;
        let _ = write!(self.doc, "```console\n$ {shown}\n{text}\n```\n");
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// `./run.sh <args>`: the command and what it printed go into the document.
    async fn run_sh(&mut self, args: &[&str]) -> Result<(), ClientError> {
        let output = self.run_sh.run_output(args, &[]).await?;
        let _ = write!(
            self.doc,
            "```console\n$ ./run.sh {}\n{}```\n",
            args.join(" "),
            output
        );
        Ok(())
    }

    /// Each replica's health, reduced to what the story needs, as `jq` would show it.
    async fn replica_summaries(&mut self) -> Result<Vec<ReplicaStatus>, ClientError> {
        let statuses = self.inspector.statuses().await;
        let mut shown = String::new();
        for s in &statuses {
            let _ = writeln!(
                shown,
                "{{\"id\":{},\"role\":{},\"ready\":{},\"epoch\":{},\"last_order\":{},\"digest\":\"{}\"}}",
                s.id,
                serde_json::to_string(&s.role).unwrap_or_default(),
                s.ready,
                s.epoch,
                s.last_order.map_or("null".into(), |n| n.to_string()),
                s.digest
            );
        }
        let ports: Vec<String> = (self.run_sh.topology)
            .of_kind(Kind::Order)
            .map(|s| s.port.to_string())
            .collect();
        let _ = write!(
            self.doc,
            "```console\n$ for port in {}; do curl -s http://127.0.0.1:$port/health \
             | jq -c '{{id, role, ready, epoch, last_order, digest}}'; done\n{shown}```\n",
            ports.join(" ")
        );
        Ok(statuses)
    }

    async fn script(&mut self) -> Result<(), ClientError> {
        // The cache stores nothing until the front-end has first heard from the
        // catalog (its lease); the miss-then-hit step needs that to have happened.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.inspector.cache_stats().await.is_ok_and(|c| c.leased) {
            if Instant::now() > deadline {
                return Err(ClientError::Other(
                    "the front-end's cache has no lease".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.caption(
            "Start",
            "`./run.sh` built and started the catalog, three order replicas and the \
             front-end. Its status:",
        );
        self.run_sh(&["status"]).await?;

        self.caption(
            "A lookup misses the cache, the next one hits",
            "The front-end's cache starts empty: the first lookup of a toy is read from \
             the catalog and cached, the second is served from the cache (see `hits` and \
             `misses`). Names match case-insensitively and may be URL-encoded.",
        );
        let (status, _) = self.curl(Method::GET, "/products/Tux", None).await?;
        expect(status == 200, "the first lookup")?;
        self.curl(Method::GET, "/products/tux", None).await?;
        self.curl(Method::GET, "/products/Rubik's%20Cube", None)
            .await?;
        let (_, health) = self.curl(Method::GET, "/health", None).await?;
        expect(
            health["cache"]["hits"] == 1 && health["cache"]["misses"] == 2,
            "one hit and two misses",
        )?;

        self.caption(
            "Orders",
            "The leader numbers orders from 0; each is \
             durable on the catalog and on every order replica before its reply. The \
             order invalidates the cached toy, so the next lookup shows the new stock.",
        );
        for (toy, quantity) in [("Tux", 2), ("LEGO", 1), ("Tux", 3)] {
            let body = format!("{{\"name\": \"{toy}\", \"quantity\": {quantity}}}");
            let (status, _) = self.curl(Method::POST, "/orders", Some(&body)).await?;
            expect(status == 200, "an order")?;
        }
        let (_, tux) = self.curl(Method::GET, "/products/Tux", None).await?;
        expect(tux["data"]["quantity"] == 95, "Tux down to 95")?;

        self.caption(
            "Orders the store refuses",
            "More than the stock is a 409, a quantity of 0 a 400; both in the contract's \
             error shape, and neither changes anything.",
        );
        let (status, _) = self
            .curl(
                Method::POST,
                "/orders",
                Some("{\"name\": \"Tux\", \"quantity\": 1000}"),
            )
            .await?;
        expect(status == 409, "409 for too many")?;
        let (status, _) = self
            .curl(
                Method::POST,
                "/orders",
                Some("{\"name\": \"Tux\", \"quantity\": 0}"),
            )
            .await?;
        expect(status == 400, "400 for a zero quantity")?;

        self.caption(
            "Reading an order back",
            "From the leader; an order number that does not exist is a 404.",
        );
        let (status, order) = self.curl(Method::GET, "/orders/2", None).await?;
        expect(
            status == 200 && order["data"]["quantity"] == 3,
            "order 2 is 3 Tux",
        )?;
        let (status, _) = self.curl(Method::GET, "/orders/99", None).await?;
        expect(status == 404, "404 for an unknown order")?;

        self.kill_the_leader().await?;
        self.restock().await?;
        Ok(())
    }

    async fn kill_the_leader(&mut self) -> Result<(), ClientError> {
        let leader = self
            .inspector
            .leader()
            .await
            .ok_or_else(|| ClientError::Other("no leader".into()))?;
        self.caption(
            "Kill -9 the leader while a client orders",
            &format!(
                "A client places {ORDERS_DURING_KILL} orders of one Slinky each, one after \
                 another. After the tenth, the leader (order{leader}) is killed with \
                 SIGKILL. The front-end finds the next leader and retries the order in \
                 flight there with the same idempotency key: the client sees no error."
            ),
        );
        let url = self.url("/orders");
        let http = self.http.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let client = tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..ORDERS_DURING_KILL {
                if i == 10 {
                    let _ = tx.send(()).await;
                }
                let status = http
                    .post(&url)
                    .body("{\"name\": \"Slinky\", \"quantity\": 1}")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                answers.push(status);
            }
            answers
        });
        let _ = rx.recv().await;
        self.run_sh(&["kill", &format!("order{leader}")]).await?;
        let answers = client
            .await
            .map_err(|e| ClientError::Other(format!("ordering client: {e}")))?;
        let ok = answers.iter().filter(|s| **s == 200).count();
        self.note(&format!(
            "The client's {ORDERS_DURING_KILL} orders: {ok} answered 200, {} failed.",
            answers.len() - ok
        ));
        expect(ok == answers.len(), "no order failed during the kill")?;
        self.curl(Method::GET, "/health", None).await?;

        self.caption(
            "Restart and catch-up",
            &format!(
                "order{leader} comes back, asks the others for every order it missed \
                 before it reports ready, and joins as a follower. Once all three are \
                 ready they hold the same orders: equal `last_order` and `digest`."
            ),
        );
        self.run_sh(&["start", &format!("order{leader}")]).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let statuses = loop {
            let statuses = self.inspector.statuses().await;
            let settled = statuses.len() == 3
                && statuses.iter().all(|s| s.ready)
                && statuses.windows(2).all(|w| w[0].digest == w[1].digest);
            if settled || Instant::now() > deadline {
                break statuses;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        expect(
            statuses.len() == 3 && statuses.iter().all(|s| s.ready),
            "all three replicas ready again",
        )?;
        let shown = self.replica_summaries().await?;
        expect(
            shown.windows(2).all(|w| w[0].digest == w[1].digest),
            "equal digests",
        )?;
        Ok(())
    }

    async fn restock(&mut self) -> Result<(), ClientError> {
        self.caption(
            "Sold out, then restocked through the cache",
            "Buying every Uno leaves none. The catalog restocks sold-out toys every few \
             seconds (10 s by default) and pushes an invalidation to the front-end, so \
             the cached quantity 0 is dropped and the next lookup shows the new stock.",
        );
        let (_, uno) = self.curl(Method::GET, "/products/Uno", None).await?;
        let left = uno["data"]["quantity"].as_u64().unwrap_or(0);
        let body = format!("{{\"name\": \"Uno\", \"quantity\": {left}}}");
        let (status, _) = self.curl(Method::POST, "/orders", Some(&body)).await?;
        expect(status == 200, "buying every Uno")?;
        let (_, uno) = self.curl(Method::GET, "/products/Uno", None).await?;
        expect(uno["data"]["quantity"] == 0, "Uno sold out")?;
        // Wait (without recording) until the restock is visible, then show it.
        let url = self.url("/products/Uno");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let quantity = self
                .http
                .get(&url)
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            let restocked = match quantity {
                Some(body) => body.await.ok().is_some_and(|b| b["data"]["quantity"] != 0),
                None => false,
            };
            if restocked || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.note(
            "A few seconds later (the demo looked Uno up every quarter second meanwhile, \
             hence the hits):",
        );
        let (_, uno) = self.curl(Method::GET, "/products/Uno", None).await?;
        expect(uno["data"]["quantity"] != 0, "Uno restocked")?;
        let (_, health) = self.curl(Method::GET, "/health", None).await?;
        expect(
            health["cache"]["invalidations"].as_u64().unwrap_or(0) > 0,
            "invalidations arrived",
        )?;
        self.caption(
            "Stop",
            "Every service stops; the data stays in the data directory for the next start.",
        );
        self.run_sh(&["stop"]).await?;
        Ok(())
    }
}

fn expect(ok: bool, what: &str) -> Result<(), ClientError> {
    if ok {
        Ok(())
    } else {
        Err(ClientError::Other(format!("demo: expected {what}")))
    }
}
