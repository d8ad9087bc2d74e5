//! The system's numbers as types of their own, so that an order number is never
//! passed where an epoch belongs. Each is `#[serde(transparent)]`: on the wire it is
//! the bare number it always was.
//!
//! - [`OrderNumber`]: an order's place in the history (0, 1, 2, …).
//! - [`Epoch`]: a primary-backup leadership epoch (fencing).
//! - [`Term`]: a Raft term; [`LogIndex`]: a Raft log position.
//! - [`Version`]: a toy's stock version (grows with every stock change).
//! - [`ReplicaId`]: an order replica's id (1, 2, 3).
//!
//! And the two texts every service passes on, each checked once, where it is read
//! (a JSON or bincode body that holds a bad one does not decode):
//!
//! - [`ToyName`]: a toy's name, 1 to [`MAX_TEXT`] bytes.
//! - [`IdempotencyKey`]: an order's idempotency key, 1 to [`MAX_TEXT`] bytes.
//!
//! (The front-end's public rules are stricter — at most 128 characters, no control
//! characters, a printable ASCII key header — and stay with its validation.)

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest toy name or idempotency key any service accepts, in bytes: the front-end's
/// 128 characters at up to four bytes each.
pub const MAX_TEXT: usize = 512;

/// A text outside 1 to [`MAX_TEXT`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to {MAX_TEXT} bytes, not {len}")]
pub struct TextError {
    what: &'static str,
    len: usize,
}

macro_rules! number {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        // Like the bare number, so that messages read as they always did.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $name {
            /// The bare number (for storage layouts and arithmetic).
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$inner> for $name {
            fn from(n: $inner) -> Self {
                $name(n)
            }
        }

        impl From<$name> for $inner {
            fn from(n: $name) -> Self {
                n.0
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

number!(
    /// An order's number: unique, from 0, one more per order placed.
    OrderNumber(u64)
);
number!(
    /// A primary-backup leadership epoch: every order records the one it was written
    /// in, and a message from an older epoch is refused.
    Epoch(u64)
);
number!(
    /// A Raft term.
    Term(u64)
);
number!(
    /// A position in a Raft log.
    LogIndex(u64)
);
number!(
    /// A toy's version: grows with every change of its stock, so that caches can
    /// order what they hear.
    Version(u64)
);
number!(
    /// An order replica's id.
    ReplicaId(u32)
);

macro_rules! text {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        // Like the bare string (quoted), so that messages read as they always did.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $name {
            /// `text`, if it is 1 to [`MAX_TEXT`] bytes.
            pub fn new(text: impl Into<String>) -> Result<Self, TextError> {
                let text = text.into();
                if (1..=MAX_TEXT).contains(&text.len()) {
                    Ok($name(text))
                } else {
                    Err(TextError {
                        what: $what,
                        len: text.len(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = TextError;

            fn try_from(text: String) -> Result<Self, TextError> {
                $name::new(text)
            }
        }

        impl From<$name> for String {
            fn from(text: $name) -> String {
                text.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        // By hand rather than `#[serde(try_from, into)]`: serialising borrows the
        // text instead of cloning it (every order is serialised several times).
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $name::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

text!(
    /// A toy's name as the services pass it (the catalog gives the canonical one).
    ToyName,
    "a toy name"
);
text!(
    /// An order's idempotency key: a retry with the same key gets the same order.
    IdempotencyKey,
    "an idempotency key"
);

impl OrderNumber {
    /// The number after this one (`None` past the last).
    pub fn next(self) -> Option<OrderNumber> {
        self.0.checked_add(1).map(OrderNumber)
    }

    /// How many orders a history whose newest is `last` holds.
    pub fn count_through(last: Option<OrderNumber>) -> u64 {
        last.map_or(0, |n| n.0.saturating_add(1))
    }
}

impl Epoch {
    /// The epoch after this one (`None` past the last).
    pub fn next(self) -> Option<Epoch> {
        self.0.checked_add(1).map(Epoch)
    }
}

impl ReplicaId {
    /// The id as openraft's node id.
    pub fn node(self) -> u64 {
        u64::from(self.0)
    }

    /// The replica of openraft's node id `node`, if it is one.
    pub fn of_node(node: u64) -> Option<ReplicaId> {
        u32::try_from(node).ok().map(ReplicaId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_are_their_numbers_on_the_wire() {
        let n: OrderNumber = serde_json::from_str("7").expect("parse");
        assert_eq!(n, OrderNumber(7));
        assert_eq!(serde_json::to_string(&Epoch(3)).expect("encode"), "3");
        assert_eq!(
            serde_json::to_string(&Some(ReplicaId(2))).expect("encode"),
            "2"
        );
    }

    #[test]
    fn texts_are_1_to_512_bytes_and_checked_when_read() {
        assert!(ToyName::new("").is_err());
        assert!(ToyName::new("x".repeat(MAX_TEXT)).is_ok());
        assert!(IdempotencyKey::new("k".repeat(MAX_TEXT + 1)).is_err());
        let name: ToyName = serde_json::from_str("\"Tux\"").expect("parse");
        assert_eq!(name, "Tux");
        assert_eq!(serde_json::to_string(&name).expect("encode"), "\"Tux\"");
        assert!(serde_json::from_str::<IdempotencyKey>("\"\"").is_err());
    }

    #[test]
    fn messages_show_the_bare_values() {
        let key = IdempotencyKey::new("abc").expect("key");
        assert_eq!(
            format!("{key:?} {:?}", Some(ReplicaId(2))),
            "\"abc\" Some(2)"
        );
    }

    #[test]
    fn next_numbers_never_wrap() {
        assert_eq!(OrderNumber(u64::MAX).next(), None);
        assert_eq!(Epoch(1).next(), Some(Epoch(2)));
        assert_eq!(OrderNumber::count_through(None), 0);
        assert_eq!(OrderNumber::count_through(Some(OrderNumber(4))), 5);
    }
}
