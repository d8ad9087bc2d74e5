//! The contract's JSON body on the replies hyper writes by itself. A request head that
//! hyper cannot parse at all (malformed, a target over 64 KiB, a head over
//! [`super::MAX_HEAD`]) never reaches a handler or the edge middleware: hyper answers
//! 400, 414 or 431 itself, with an empty body, and closes the connection. [`JsonErrors`]
//! sits between hyper and the socket and writes the contract's JSON error in place of
//! such a reply; every other byte passes through untouched (the check is a prefix
//! compare on each write).
//!
//! How such a reply is told apart: a response head (`HTTP/1.1 ` at the start of a
//! write) with one of those three statuses and `content-length: 0`. No handler of
//! ours answers a 4xx without a body, so none is rewritten by mistake.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's socket, with hyper's own empty error replies given JSON bodies.
pub struct JsonErrors<T> {
    inner: T,
    /// A reply written in place of hyper's, and how much of it is out.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<T> JsonErrors<T> {
    pub fn new(inner: T) -> Self {
        JsonErrors {
            inner,
            replacing: None,
        }
    }
}

/// The JSON reply to write instead of `head`, if `head` is one of hyper's own empty
/// error replies.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (status, message) = match status {
        b"400" => (StatusCode::BAD_REQUEST, "malformed request head"),
        b"414" => (StatusCode::URI_TOO_LONG, "request target too long"),
        b"431" => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ),
        _ => return None,
    };
    let empty = head
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
    if !empty {
        return None;
    }
    let body = crate::error::error_body(status, message);
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    Some(reply.into_bytes())
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes out the replacement reply; `consumed` is what the caller's write is
    /// answered once it is all out (the bytes of hyper's reply it stands for).
    fn poll_replace(
        &mut self,
        cx: &mut Context<'_>,
        consumed: usize,
    ) -> Poll<std::io::Result<usize>> {
        while let Some((reply, written)) = &mut self.replacing {
            if *written == reply.len() {
                self.replacing = None;
                return Poll::Ready(Ok(consumed));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &reply[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(consumed))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            match replacement(buf) {
                Some(reply) => this.replacing = Some((reply, 0)),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        this.poll_replace(cx, buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            let first = bufs.iter().find(|b| !b.is_empty());
            match first.and_then(|b| replacement(b)) {
                Some(reply) => this.replacing = Some((reply, 0)),
                None => return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            }
        }
        let all = bufs.iter().map(|b| b.len()).sum();
        this.poll_replace(cx, all)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_own_empty_error_replies_are_replaced() {
        let own = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let reply = String::from_utf8(replacement(own).expect("replaced")).expect("utf-8");
        let (head, body) = reply.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json["error"]["code"], 414);

        // A handler's reply with a body, a success, a status hyper does not send.
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"{\"data\": 1}",
        ] {
            assert!(
                replacement(head).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
