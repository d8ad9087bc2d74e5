//! Request ids: one `x-request-id` followed through every service's log.
//!
//! Every service runs each request in a `request{id=…}` span (see
//! [`crate::http::with_edge`]). The id is the request's `x-request-id` header when it
//! carries a usable one, else a fresh one; the reply carries it back. While the
//! request's own task runs, [`RequestId::current`] returns it and the typed clients
//! ([`crate::client`]) put it on every call they make, so the catalog and the leader
//! log a front-end request under the front-end's id.
//!
//! Work that leaves the request's task (the leader's buyer, writer and Raft batches,
//! which serve many requests at once) carries the ids in its messages instead, and the
//! receiving service logs each order with its `request_id` field.

use std::fmt;
use std::sync::Arc;

use axum::http::HeaderValue;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The header that carries a request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest id taken from a client; a longer or odder one is replaced.
pub const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// A request's id: 1 to [`MAX_REQUEST_ID`] visible ASCII characters other than
/// spaces, quotes, commas and backslashes (so it stays one token in a log line and a
/// header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// The id in `raw` if it is usable, else `None`.
    pub fn parse(raw: &[u8]) -> Option<RequestId> {
        let usable = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b'\\');
        if raw.is_empty() || raw.len() > MAX_REQUEST_ID || !raw.iter().all(usable) {
            return None;
        }
        std::str::from_utf8(raw).ok().map(|s| RequestId(s.into()))
    }

    /// A fresh id: 16 hex digits (64 random bits).
    pub fn generate() -> RequestId {
        RequestId(format!("{:016x}", fastrand::u64(..)).into())
    }

    /// The id of the request whose task is running, if any.
    pub fn current() -> Option<RequestId> {
        CURRENT.try_with(|id| id.clone()).ok()
    }

    /// Runs `work` as part of this request: [`RequestId::current`] returns this id.
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a header value.
    pub fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.0).ok()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Travels as a string; an unusable one is refused like any malformed field.
impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        RequestId::parse(raw.as_bytes()).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "a request id is 1 to {MAX_REQUEST_ID} visible ASCII characters without quotes, commas or backslashes"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ids_are_kept() {
        for raw in [
            "demo-1",
            "a",
            "0f3c:9/x+y=z@host_1.2",
            &"x".repeat(MAX_REQUEST_ID),
        ] {
            let id = RequestId::parse(raw.as_bytes()).expect(raw);
            assert_eq!(id.as_str(), raw);
        }
    }

    #[test]
    fn odd_ids_are_refused() {
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        for raw in ["", "a b", "a,b", "a\"b", "a\\b", "é", "a\nb", &long] {
            assert!(RequestId::parse(raw.as_bytes()).is_none(), "{raw:?}");
        }
    }

    #[test]
    fn generated_ids_are_usable_and_differ() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 16);
        assert_eq!(RequestId::parse(a.as_str().as_bytes()), Some(a));
    }

    #[test]
    fn ids_travel_as_strings_and_are_checked() {
        let id = RequestId::parse(b"demo-1").expect("usable");
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"demo-1\"");
        assert_eq!(
            serde_json::from_str::<RequestId>("\"demo-1\"").ok(),
            Some(id)
        );
        assert!(serde_json::from_str::<RequestId>("\"a b\"").is_err());
    }

    #[tokio::test]
    async fn the_current_id_is_the_scopes() {
        assert_eq!(RequestId::current(), None);
        let id = RequestId::generate();
        let seen = id.clone().scope(async { RequestId::current() }).await;
        assert_eq!(seen, Some(id));
        assert_eq!(RequestId::current(), None);
    }
}
