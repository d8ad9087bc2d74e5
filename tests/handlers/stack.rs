//! The services in this process: each one's `App`, its router driven without a
//! socket (`tower::ServiceExt::oneshot`, as in axum's `testing` example), and, where
//! another service must reach it over HTTP, served on a port-0 listener.

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use clap::Parser;
use common::wire::Replication;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

pub(crate) use crate::modes::in_both_modes;

/// Waits (up to 20 s) until `check` gives a value; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => panic!("{what}: {last}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// `GET path` with the cluster token (internal routes).
pub fn get_internal(path: &str) -> Request<Body> {
    Request::get(path)
        .header(common::TOKEN_HEADER, TOKEN)
        .body(Body::empty())
        .expect("request")
}

/// The cluster token every in-process service shares.
pub const TOKEN: &str = "in-process-test-token";

/// Replies larger than this are a bug in a test.
const MAX_REPLY: usize = 16 << 20;

/// Sends `request` to `router` (behind the edge every served request passes:
/// trailing slash, request id): status, headers and the body as JSON (`Null` if the
/// body is not JSON).
pub async fn call(router: &Router, request: Request<Body>) -> Reply {
    let response = common::http::with_edge(router.clone())
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_REPLY)
        .await
        .expect("a whole body");
    Reply {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// One reply, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// The status as a number, and the JSON body (for one-line assertions).
    pub fn parts(&self) -> (u16, &Value) {
        (self.status.as_u16(), &self.json)
    }

    /// Asserts the contract's error shape with `code` equal to the status.
    pub fn assert_error(&self, status: u16, what: &str) {
        assert_eq!(self.status.as_u16(), status, "{what} → {}", self.text);
        assert_eq!(self.json["error"]["code"], status, "{what} → {}", self.text);
        assert!(
            self.json["error"]["message"].is_string(),
            "{what} → {}",
            self.text
        );
    }
}

/// `GET path`.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

/// `POST path` with `body` as JSON, and the cluster token when `token` is true.
pub fn post(path: &str, body: impl Into<Body>, token: Option<&str>) -> Request<Body> {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header(common::TOKEN_HEADER, token);
    }
    req.body(body.into()).expect("request")
}

/// Parses a service's flags as its `main` would, with the environment ignored for
/// the token (tests never read the machine's).
fn config<C: Parser>(name: &str, args: &[String]) -> C {
    let mut all = vec![name.to_string(), "--cluster-token".into(), TOKEN.into()];
    all.extend(args.iter().cloned());
    C::try_parse_from(all).unwrap_or_else(|e| panic!("{name} flags: {e}"))
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The shipped seed file (24 toys).
fn seed_file() -> String {
    format!("{}/data/toys.json", env!("CARGO_MANIFEST_DIR"))
}

/// A catalog in this process, with `stock` of every toy; it pushes invalidations to
/// `frontend` (nothing need listen there).
pub async fn catalog(dir: &Path, stock: u64, frontend: &str) -> catalog::App {
    let config: catalog::Config = config(
        "catalog",
        &[
            "--data-dir".into(),
            path_arg(&dir.join("catalog")),
            "--seed-file".into(),
            seed_file(),
            "--initial-stock".into(),
            stock.to_string(),
            "--frontend-url".into(),
            frontend.into(),
        ],
    );
    catalog::App::start(config).await.expect("catalog starts")
}

/// Replica 1, the only member of its group, in `mode`, buying at `catalog_url`;
/// `url` is where it is (or will be) served.
pub async fn replica(dir: &Path, mode: Replication, url: &str, catalog_url: &str) -> order::App {
    let config: order::Config = config(
        "order",
        &[
            "--id".into(),
            "1".into(),
            "--replicas".into(),
            format!("1={url}"),
            "--data-dir".into(),
            path_arg(&dir.join("order1")),
            "--catalog-url".into(),
            catalog_url.into(),
            "--replication".into(),
            mode.to_string(),
            "--raft-heartbeat-ms".into(),
            "50".into(),
            "--raft-election-ms".into(),
            "150".into(),
        ],
    );
    order::App::start(config).await.expect("replica starts")
}

/// A router served on a port-0 listener until dropped.
pub struct Served {
    _stop: oneshot::Sender<()>,
}

/// Binds a port-0 listener (so its URL is known before the service starts).
pub async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

/// Serves `router` on `listener` until the returned handle is dropped.
pub fn serve(listener: TcpListener, router: Router) -> Served {
    serve_within(listener, router, common::serve::Edge::default())
}

/// [`serve`] within the edge bounds `edge`.
pub fn serve_within(listener: TcpListener, router: Router, edge: common::serve::Edge) -> Served {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(common::serve::serve(listener, router, edge, async move {
        let _ = stopped.await;
    }));
    Served { _stop: stop }
}

/// A front-end driven in-process, in front of a catalog and one replica that are
/// served on port 0.
pub struct Stack {
    pub frontend: Router,
    pub catalog: Router,
    pub replica: Router,
    _served: (Served, Served),
    _apps: (frontend::App, catalog::App, order::App),
    _dir: TempDir,
}

impl Stack {
    /// Every toy at `stock`, replication `mode`; waits until an order can be placed.
    pub async fn start(mode: Replication, stock: u64) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let (catalog_listener, catalog_url) = listener().await;
        let (replica_listener, replica_url) = listener().await;
        let catalog = catalog(dir.path(), stock, "http://127.0.0.1:9").await;
        let replica = replica(dir.path(), mode, &replica_url, &catalog_url).await;
        let served = (
            serve(catalog_listener, catalog.router()),
            serve(replica_listener, replica.router()),
        );
        let config: frontend::Config = config(
            "frontend",
            &[
                "--catalog-url".into(),
                catalog_url,
                "--replicas".into(),
                format!("1={replica_url}"),
                "--replication".into(),
                mode.to_string(),
            ],
        );
        let frontend = frontend::App::start(config)
            .await
            .expect("front-end starts");
        let stack = Stack {
            frontend: frontend.router(),
            catalog: catalog.router(),
            replica: replica.router(),
            _served: served,
            _apps: (frontend, catalog, replica),
            _dir: dir,
        };
        stack.wait_for_a_leader().await;
        stack
    }

    async fn wait_for_a_leader(&self) {
        eventually("the front-end found no leader", || async {
            let health = call(&self.frontend, get("/health")).await;
            let ready = health.json["leader"].is_u64() && health.json["cache"]["leased"] == true;
            if ready {
                Ok(())
            } else {
                Err(health.text)
            }
        })
        .await
    }

    /// `GET path` on the front-end.
    pub async fn get(&self, path: &str) -> Reply {
        call(&self.frontend, get(path)).await
    }

    /// `POST /orders` on the front-end with `body` as is.
    pub async fn post_order(&self, body: &str) -> Reply {
        call(&self.frontend, post("/orders", body.to_string(), None)).await
    }

    /// `POST /orders` for `quantity` of `name`, with an `Idempotency-Key` if given.
    pub async fn order(&self, name: &str, quantity: u64, key: Option<&str>) -> Reply {
        let body = serde_json::json!({"name": name, "quantity": quantity}).to_string();
        let mut req = Request::post("/orders").header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header(common::IDEMPOTENCY_HEADER, key);
        }
        call(&self.frontend, req.body(Body::from(body)).expect("request")).await
    }

    /// The catalog's own quantity of `name` (not the front-end's cache).
    pub async fn catalog_quantity(&self, name: &str) -> u64 {
        let reply = call(&self.catalog, get(&format!("/products/{name}"))).await;
        reply.json["data"]["quantity"]
            .as_u64()
            .unwrap_or_else(|| panic!("catalog lookup of {name}: {}", reply.text))
    }

    /// How many orders the replica holds.
    pub async fn replica_orders(&self) -> u64 {
        let reply = call(&self.replica, get("/health")).await;
        reply.json["orders"].as_u64().expect("orders")
    }
}
