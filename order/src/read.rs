//! `GET /orders/{n}` (public): one committed order, never one that could still be
//! dropped (each mode's `read` says how it knows), and the catch-up pages peers read
//! (`GET /internal/log`, token).

use axum::extract::State;
use axum::response::IntoResponse;
use common::domain::OrderNumber;
use common::http::{PathParam, QueryParams};
use common::wire::{data, LogPage, OrderView};
use serde::Deserialize;

use crate::error::OrderError;
use crate::http::AppState;

/// Most orders in one catch-up page.
const MAX_PAGE: u64 = 1000;

/// One committed order.
pub async fn one(
    State(state): State<AppState>,
    PathParam(number): PathParam,
) -> Result<impl IntoResponse, OrderError> {
    let number: OrderNumber = number
        .parse()
        .map_err(|_| OrderError::BadRequest(format!("order number {number:?} is not a number")))?;
    let record = state.protocol.read(number).await?;
    Ok(data(OrderView::from(record)))
}

#[derive(Deserialize)]
pub struct PageQuery {
    from: OrderNumber,
    limit: Option<u64>,
}

/// A page of stored orders from `from` on, and this replica's newest order.
pub async fn log_page(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<impl IntoResponse, OrderError> {
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE) as usize;
    let store = state.protocol.store();
    Ok(data(LogPage {
        entries: store.page(q.from, limit)?,
        last_order: store.last()?.map(|r| r.number),
    }))
}
