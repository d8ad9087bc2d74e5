//! The system's numbers as types of their own, so that an order number is never
//! passed where an epoch belongs. Each is `#[serde(transparent)]`: on the wire it is
//! the bare number it always was.
//!
//! - [`OrderNumber`]: an order's place in the history (0, 1, 2, …).
//! - [`Epoch`]: a primary-backup leadership epoch (fencing).
//! - [`Term`]: a Raft term; [`LogIndex`]: a Raft log position.
//! - [`Version`]: a toy's stock version (grows with every stock change).
//! - [`ReplicaId`]: an order replica's id (1, 2, 3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! number {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize,
            Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

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
    fn next_numbers_never_wrap() {
        assert_eq!(OrderNumber(u64::MAX).next(), None);
        assert_eq!(Epoch(1).next(), Some(Epoch(2)));
        assert_eq!(OrderNumber::count_through(None), 0);
        assert_eq!(OrderNumber::count_through(Some(OrderNumber(4))), 5);
    }
}
