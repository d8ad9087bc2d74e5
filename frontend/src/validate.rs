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
    /// How many: a positive integer up to 18446744073709551615 (`1.0` and `1e0` count
    /// as 1, as in JSON Schema). Read exactly, from the number's text.
    #[schema(value_type = u64, minimum = 1)]
    pub quantity: Box<serde_json::value::RawValue>,
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
        let quantity = parse_quantity(body.quantity.get())?;
        Ok(OrderRequest { name, quantity })
    }
}

/// A quantity from its JSON text, exactly: a positive integer no larger than
/// `u64::MAX`. JSON has one number type, and JSON Schema (which the OpenAPI
/// description uses) counts `1.0` as the integer 1, so a whole number written as a
/// decimal or with an exponent (`2.0`, `1e3`) is that integer. Reading the text
/// rather than a float keeps every digit: no number is rounded or clamped into one the
/// client did not send.
pub fn parse_quantity(text: &str) -> Result<u64, FrontendError> {
    let not_positive = || FrontendError::BadRequest("quantity must be a positive integer".into());
    let too_large = || FrontendError::BadRequest(format!("quantity must be at most {}", u64::MAX));
    let text = text.trim();
    if text.starts_with('-') {
        return Err(not_positive());
    }
    // JSON's grammar: digits, then `.digits`, then `e[+-]digits`, each part optional
    // after the first. Anything else (a string, null, true, an array) is refused.
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || mantissa.ends_with('.') {
        return Err(not_positive());
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !all_digits(digits) {
                return Err(not_positive());
            }
            // An exponent of more than 18 digits is beyond any quantity either way
            // (or, negative, leaves no integer); keep its sign and saturate.
            let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX / 2);
            if e.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    // The value is `digits` × 10^`scale`.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Err(not_positive());
    }
    let significant = digits.trim_end_matches('0');
    let scale = exponent
        .saturating_sub(frac.len() as i64)
        .saturating_add((digits.len() - significant.len()) as i64);
    if scale < 0 {
        return Err(not_positive()); // a fraction is left
    }
    // u64::MAX has 20 digits.
    if significant.len() as i64 + scale > 20 {
        return Err(too_large());
    }
    let zeros = "0".repeat(scale as usize);
    format!("{significant}{zeros}")
        .parse::<u64>()
        .map_err(|_| too_large())
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
    fn quantities_are_read_exactly() {
        let q = |text: &str| parse_quantity(text).map_err(|e| e.to_string());
        for (text, want) in [
            ("1", 1),
            ("2.0", 2),
            ("1e3", 1000),
            ("1E+2", 100),
            ("100e-2", 1),
            ("0.5e1", 5),
            ("007", 7),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551615.000", u64::MAX),
            ("1844674407370955161.5e1", u64::MAX),
            ("9007199254740993", 9_007_199_254_740_993), // not a float's 2^53 + 0
        ] {
            assert_eq!(q(text), Ok(want), "{text}");
        }
        let too_large = "quantity must be at most 18446744073709551615";
        for text in [
            "18446744073709551616",
            "1e300",
            "1e20",
            "99999999999999999999999",
            "1e999999999999999999999",
        ] {
            assert!(
                q(text).is_err_and(|e| e.contains(too_large)),
                "{text}: {:?}",
                q(text)
            );
        }
        for text in [
            "0",
            "-1",
            "-0",
            "0.0",
            "1.5",
            "150e-2",
            "1e-999999999999999999999",
            "\"1\"",
            "null",
            "true",
            "[1]",
            "{}",
            "1.",
            ".5",
            "1e",
            "1e+",
            "0x10",
        ] {
            assert!(
                q(text).is_err_and(|e| e.contains("positive integer")),
                "{text}: {:?}",
                q(text)
            );
        }
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
        assert!(order(json!({"name": "Tux", "quantity": 1e30})).is_err());
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
