//! `POST /orders` (token; leader only): the whole order path, the same in both modes.
//!
//! validate → wait for any order with the same key in progress here
//! ([`KeyGate`](crate::keys::KeyGate)) → is the key already held here? → [`Buyer::buy`](crate::buyer::Buyer::buy)
//! (the catalog takes the stock, idempotently by key, many orders per request) →
//! [`Protocol::submit`](crate::replication::Protocol::submit) (the
//! mode numbers, stores and replicates it, or answers the order the key made) → the
//! number, the toy's canonical name and its version after the buy (for the
//! front-end's cache).

use axum::extract::State;
use axum::response::IntoResponse;
use common::http::Json;
use common::retention;
use common::trace::RequestId;
use common::wire::{data, NewOrder, OrderAccepted};
use tracing::Instrument;

use crate::error::OrderError;
use crate::http::AppState;

/// Places an order: the catalog takes the stock (idempotent by key), then the
/// protocol stores and replicates the order (or answers the order a repeated key made).
pub async fn place(
    State(state): State<AppState>,
    Json(mut order): Json<NewOrder>,
) -> Result<impl IntoResponse, OrderError> {
    state.protocol.check_writable()?;
    if order.request_id.is_none() {
        order.request_id = RequestId::current();
    }
    // Its name and key were checked as the body was read (`common::domain`).
    if order.quantity == 0 {
        return Err(OrderError::BadRequest(
            "an order needs a positive quantity".into(),
        ));
    }
    // A retry racing its first try waits for it here, then finds its key held.
    let pass = state.keys.enter(&order.key).await;
    // From here on the order is finished even if its client hangs up (this handler
    // is then dropped): once the catalog may take the stock, the order must be
    // submitted, or the stock would be sold for no order. The key's pass goes with
    // it, so a retry waits for it.
    let finish = tokio::spawn(
        async move {
            let _pass = pass;
            buy_and_submit(&state, order).await
        }
        .instrument(tracing::Span::current()),
    );
    let accepted = finish.await.map_err(OrderError::TaskEnded)??;
    Ok(data(accepted))
}

/// Buys the order's stock and submits it to the mode: the reply of a placed order.
async fn buy_and_submit(state: &AppState, order: NewOrder) -> Result<OrderAccepted, OrderError> {
    // The catalog is idempotent by key, so a repeated key is bought again too: that
    // returns the toy's version after the original buy, which the front-end's cache
    // needs (see `buyer` for what happens when the catalog is down).
    let valid_from = retention::cutoff(retention::now_ms(), state.key_window);
    let held = state
        .protocol
        .store()
        .by_key(&order.key, valid_from)?
        .is_some();
    let bought = state.buyer.buy(order, held).await?;
    let (order, version) = (bought.order, bought.version);
    // A held key is answered by the protocol too, so the reply waits until that
    // order is durable and replicated.
    let name = order.name.clone();
    let number = state.protocol.submit(order, bought.purchase).await?;
    tracing::info!(order = %number, toy = %name, "order placed");
    Ok(OrderAccepted {
        order_number: number,
        name,
        version,
    })
}
