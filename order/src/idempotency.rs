//! Which order an idempotency key makes: the one rule the primary-backup writer and
//! the Raft state machine share.
//!
//! A key is *held* while a replica has an order for it stored within the replicas'
//! window (`common::retention::replica_window`; older keys have expired even before
//! the pruner drops them from the index). What the catalog did for the order decides
//! the rest, so that an order is written exactly when its stock was taken:
//!
//! | catalog                  | key held                      | key not held          |
//! |--------------------------|-------------------------------|-----------------------|
//! | took the stock now       | a new order (the catalog had forgotten the key) | a new order |
//! | had taken it for the key | the held order                | a new order (its first write was lost) |
//! | was not reached          | the held order                | refused: 503          |
//!
//! A held key names a toy and a quantity; an order that names others is refused (422)
//! unless the catalog took stock for it now.

use common::domain::OrderNumber;
use common::wire::{NewOrder, OrderRecord};
use serde::{Deserialize, Serialize};

/// What the catalog did for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purchase {
    /// It took the order's stock now.
    Fresh,
    /// It had taken the stock before, for the same key.
    Repeated,
    /// It was not reached (the replica holds the key, so the order may be answered).
    NotBought,
}

/// What becomes of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it as a new order.
    New,
    /// Answer with the held order's number.
    Held(OrderNumber),
    /// Refuse: the key was used for another order.
    KeyReused,
    /// Refuse: its stock was not taken and no order is held for its key.
    NotBought,
}

/// The answer to [`Decision::NotBought`]: the catalog could not take the order's
/// stock, and its key's order has expired meanwhile (or was never stored).
pub fn not_bought() -> crate::error::OrderError {
    crate::error::OrderError::CatalogUnavailable(
        "the catalog could not be reached, and no order is held for this key".into(),
    )
}

/// A repeated key must name the same toy (in any capitalisation) and quantity.
pub fn same_order(held: &OrderRecord, order: &NewOrder) -> bool {
    held.quantity == order.quantity && held.name.to_lowercase() == order.name.to_lowercase()
}

/// Decides `order`, given the order held for its key (if any) and what the catalog did.
pub fn decide(held: Option<&OrderRecord>, order: &NewOrder, purchase: Purchase) -> Decision {
    match (held, purchase) {
        (_, Purchase::Fresh) | (None, Purchase::Repeated) => Decision::New,
        (None, Purchase::NotBought) => Decision::NotBought,
        (Some(held), _) if same_order(held, order) => Decision::Held(held.number),
        (Some(_), _) => Decision::KeyReused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::domain::{IdempotencyKey, ToyName};

    fn order(name: &str, quantity: u64) -> NewOrder {
        NewOrder {
            name: ToyName::new(name).expect("name"),
            quantity,
            key: IdempotencyKey::new("k").expect("key"),
            request_id: None,
        }
    }

    #[test]
    fn an_order_is_written_exactly_when_its_stock_was_taken_or_its_write_was_lost() {
        let held = OrderRecord {
            number: OrderNumber(7),
            name: ToyName::new("Tux").expect("name"),
            quantity: 2,
            key: IdempotencyKey::new("k").expect("key"),
            epoch: common::domain::Epoch(1),
            time: 1,
        };
        let tux = order("tux", 2);
        let other = order("Tux", 3);
        use Decision as D;
        use Purchase as P;
        assert_eq!(decide(Some(&held), &tux, P::Fresh), D::New);
        assert_eq!(decide(Some(&held), &other, P::Fresh), D::New);
        assert_eq!(
            decide(Some(&held), &tux, P::Repeated),
            D::Held(OrderNumber(7))
        );
        assert_eq!(
            decide(Some(&held), &tux, P::NotBought),
            D::Held(OrderNumber(7))
        );
        assert_eq!(decide(Some(&held), &other, P::Repeated), D::KeyReused);
        assert_eq!(decide(Some(&held), &other, P::NotBought), D::KeyReused);
        assert_eq!(decide(None, &tux, P::Fresh), D::New);
        assert_eq!(decide(None, &tux, P::Repeated), D::New);
        assert_eq!(decide(None, &tux, P::NotBought), D::NotBought);
    }
}
