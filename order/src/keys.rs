//! One order per idempotency key at a time on the leader.
//!
//! The order path is two pipelined stages: while the writer (or the Raft log) stores
//! one batch, the buyer is already buying the next. A client's retry that races its
//! first try would otherwise be bought in the next batch, answered "repeated" by the
//! catalog, and reach the writer before the first try's order is stored: with its key
//! not held yet, the idempotency table (see `idempotency`) makes it a second order
//! for stock taken once. So `POST /orders` passes this gate first: a second order
//! with a key waits until the first has been stored (or refused), then finds the key
//! held and is answered with the same order. Different keys never wait for each other.
//!
//! The gate is per process. A retry sent to another replica is fenced by the modes
//! themselves: only the leader of the current epoch or term stores orders.
//!
//! A first try whose client hangs up still holds its pass until it is stored or
//! refused: past the gate an order runs on a task of its own (see `place`), because
//! once the catalog may take its stock it must become an order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use common::domain::IdempotencyKey;
use tokio::sync::OwnedMutexGuard;

type Lanes = HashMap<IdempotencyKey, Arc<tokio::sync::Mutex<()>>>;

/// Keys with an order in progress. Cheap to clone.
#[derive(Clone, Default)]
pub struct KeyGate {
    busy: Arc<Mutex<Lanes>>,
}

/// The right to place the one order of a key; dropping it lets the next one in.
pub struct Pass {
    busy: Arc<Mutex<Lanes>>,
    key: IdempotencyKey,
    _turn: OwnedMutexGuard<()>,
}

impl KeyGate {
    /// Waits until no other order with `key` is in progress here.
    pub async fn enter(&self, key: &IdempotencyKey) -> Pass {
        let lane = lock(&self.busy).entry(key.clone()).or_default().clone();
        Pass {
            busy: self.busy.clone(),
            key: key.clone(),
            _turn: lane.lock_owned().await,
        }
    }

    /// How many keys have an order in progress or waiting.
    pub fn busy(&self) -> usize {
        lock(&self.busy).len()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut busy = lock(&self.busy);
        // Held by the map and by this pass only: nobody waits, so the key's lane goes.
        // (Entering clones the lane under the same lock, so this cannot race.)
        if busy
            .get(&self.key)
            .is_some_and(|lane| Arc::strong_count(lane) == 2)
        {
            busy.remove(&self.key);
        }
    }
}

/// The map's lock; a panic while holding it leaves the map usable.
fn lock(busy: &Mutex<Lanes>) -> MutexGuard<'_, Lanes> {
    busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::new(k).expect("key")
    }

    #[tokio::test]
    async fn a_second_order_with_a_key_waits_for_the_first() {
        let gate = KeyGate::default();
        let first = gate.enter(&key("a")).await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(&key("a")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "entered while the first was in");
        let _other = gate.enter(&key("b")).await;
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("let in after the first left")
            .expect("task");
        assert_eq!(gate.busy(), 2);
        drop(second);
        drop(_other);
        assert_eq!(gate.busy(), 0, "a key nobody waits for is forgotten");
    }
}
