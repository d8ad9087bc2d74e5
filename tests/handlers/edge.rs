//! The HTTP edge every service is served behind (`common::serve`): the front-end's
//! router served on a port-0 socket, driven over raw TCP the way a slow, idle,
//! greedy or oversized client would.

use std::time::{Duration, Instant};

use common::serve::Edge;
use common::wire::Replication;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::stack::{listener, serve_within, Served, Stack};

/// The front-end of a fresh stack, served within `edge`: its address.
async fn served(edge: Edge) -> (Stack, Served, String) {
    let stack = Stack::start(Replication::PrimaryBackup, 100).await;
    let (listener, url) = listener().await;
    let served = serve_within(listener, stack.frontend.clone(), edge);
    (stack, served, url.trim_start_matches("http://").to_string())
}

/// Reads until the server closes the connection (at most `within`): the bytes, or
/// `None` if it was still open then.
async fn until_closed(tcp: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(within, tcp.read_to_end(&mut got))
        .await
        .ok()
        .map(|_| got)
}

/// `request` (whole, `Connection: close`) sent raw; the reply's status and JSON body.
async fn exchange(addr: &str, request: &[u8]) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("send");
    let reply = until_closed(&mut tcp, Duration::from_secs(10))
        .await
        .expect("the server closes after its reply");
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn lookup() -> Vec<u8> {
    b"GET /products/Tux HTTP/1.1\r\nHost: toystore\r\nConnection: close\r\n\r\n".to_vec()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let edge = Edge {
        header_timeout: Duration::from_millis(300),
        ..Edge::default()
    };
    let (_stack, _served, addr) = served(edge).await;
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    let opened = Instant::now();
    assert!(
        until_closed(&mut idle, Duration::from_secs(5))
            .await
            .is_some(),
        "a silent connection was still open after 5 s"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(250),
        "closed before its timeout"
    );

    // A kept-alive connection that goes quiet after a request is closed the same way.
    let mut kept = TcpStream::connect(&addr).await.expect("connect");
    kept.write_all(b"GET /products/Tux HTTP/1.1\r\nHost: toystore\r\n\r\n")
        .await
        .expect("send");
    let reply = until_closed(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection was still open after 5 s");
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_thousand_half_sent_requests_do_not_stop_a_lookup() {
    let (_stack, _served, addr) = served(Edge::default()).await;
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut tcp = TcpStream::connect(&addr).await.expect("connect");
        tcp.write_all(b"GET /products/Tux HTTP/1.1\r\nHost: toystore\r\nX-Slow: ")
            .await
            .expect("send half a request");
        slow.push(tcp);
    }
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), exchange(&addr, &lookup()))
        .await
        .expect("a lookup waited more than 5 s behind 1,000 half-sent requests");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["name"], "Tux");
}

#[tokio::test]
async fn a_connection_past_the_cap_gets_a_json_503_and_the_others_go_on() {
    let edge = Edge {
        max_connections: 2,
        ..Edge::default()
    };
    let (_stack, _served, addr) = served(edge).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let (status, body) = exchange(&addr, &lookup()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], 503);
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("too many connections (at most 2)")));

    // One of the two closes: a new connection is served again.
    drop(held.pop());
    let mut status = 0;
    for _ in 0..50 {
        status = exchange(&addr, &lookup()).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "no connection was served after one closed");
}

#[tokio::test]
async fn oversized_heads_get_the_contracts_json_errors() {
    let (_stack, _served, addr) = served(Edge::default()).await;
    let request = |target: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: toystore\r\n{headers}Connection: close\r\n\r\n")
            .into_bytes()
    };
    // A request target of 32 KiB: 414, from the edge middleware. Past 64 KiB, or past
    // the 256 KiB of head read, the HTTP library refuses it itself: its 414 or 431
    // gets the same JSON body.
    for kib in [32, 100, 1024] {
        let long = format!("/products/{}", "a".repeat(kib * 1024));
        let (status, body) = exchange(&addr, &request(&long, "")).await;
        assert!(
            matches!(status, 414 | 431) && body["error"]["code"].as_u64() == Some(status.into()),
            "a request target of {kib} KiB got {status} {body}"
        );
    }
    // A head that is not HTTP: the library's own 400, with the JSON body.
    let (status, body) = exchange(&addr, b"GET /products/Tux HTTP/1.1\r\nBad Header\r\n\r\n").await;
    assert_eq!(
        (status, body["error"]["code"].as_u64()),
        (400, Some(400)),
        "{body}"
    );

    // 100 headers of 1 KB: 431.
    let big: String = (0..100)
        .map(|i| format!("X-Big-{i}: {}\r\n", "b".repeat(1000)))
        .collect();
    let (status, body) = exchange(&addr, &request("/products/Tux", &big)).await;
    assert_eq!(
        (status, body["error"]["code"].as_u64()),
        (431, Some(431)),
        "{body}"
    );

    // 200 small headers: 431.
    let many: String = (0..200).map(|i| format!("X-H-{i}: v\r\n")).collect();
    let (status, body) = exchange(&addr, &request("/products/Tux", &many)).await;
    assert_eq!(
        (status, body["error"]["code"].as_u64()),
        (431, Some(431)),
        "{body}"
    );

    // Within the limits: served.
    let (status, body) = exchange(&addr, &request("/products/Tux", "X-Fine: yes\r\n")).await;
    assert_eq!(status, 200, "{body}");
}
