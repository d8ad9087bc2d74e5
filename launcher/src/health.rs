//! `GET /health` in plain HTTP/1.0 over a `TcpStream`: the launcher needs no HTTP
//! client for one request per service. What the body must say is
//! [`common::topology::Kind::healthy`].

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// How long one health request may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to `host:port`, if something accepts one.
fn connect(host: &str, port: u16) -> Option<TcpStream> {
    let addrs = (host, port).to_socket_addrs().ok()?;
    addrs
        .into_iter()
        .find_map(|addr| TcpStream::connect_timeout(&addr, TIMEOUT).ok())
}

/// True when something accepts connections on `host:port`.
pub fn port_busy(host: &str, port: u16) -> bool {
    connect(host, port).is_some()
}

/// The body of `GET /health` on `host:port`, if it answers.
pub fn get_health(host: &str, port: u16) -> Option<String> {
    let mut stream = connect(host, port)?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    write!(
        stream,
        "GET /health HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then(|| body.trim_end().to_string())
}
