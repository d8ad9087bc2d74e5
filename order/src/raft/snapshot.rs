//! What a snapshot of the order log holds: its key cutoff (8 bytes, big-endian) and
//! every order up to its newest, as the store's buckets copied as they are stored
//! (`Store::export`), so making it decodes almost nothing, and installing it decodes
//! only the buckets the receiver lacks ([`orders_after`]; see `machine`). The bytes
//! are made only when a peer first reads them (`consensus::snapshot::LazyBytes`).

use std::io;

use common::domain::OrderNumber;
use common::storage::StorageError;
use common::wire::OrderRecord;
use consensus::snapshot::LazyBytes;

use crate::error::OrderError;
use crate::store::{record, Store};

/// `key_cutoff` and the orders of `store` up to `last_order` (none for `None`),
/// encoded when first read.
pub fn of_orders(store: Store, last_order: Option<OrderNumber>, key_cutoff: u64) -> LazyBytes {
    LazyBytes::later(move || {
        let orders = store.export(last_order).map_err(io::Error::other)?;
        let mut out = Vec::with_capacity(8 + orders.len());
        out.extend_from_slice(&key_cutoff.to_be_bytes());
        out.extend_from_slice(&orders);
        Ok(out)
    })
}

/// The key cutoff of a snapshot's data, and its orders numbered above `after`.
pub fn orders_after(
    bytes: &[u8],
    after: Option<OrderNumber>,
) -> Result<(u64, Vec<OrderRecord>), OrderError> {
    let (cutoff, stream) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| StorageError::corrupt("snapshot data (too short)"))?;
    Ok((
        u64::from_be_bytes(*cutoff),
        record::orders_after(stream, after)?,
    ))
}

#[cfg(test)]
mod tests {
    use std::io::SeekFrom;

    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    use super::*;
    use common::domain::{IdempotencyKey, ToyName};

    fn record(number: u64) -> OrderRecord {
        OrderRecord {
            number: OrderNumber(number),
            name: ToyName::new("Tux").expect("name"),
            quantity: 1,
            key: IdempotencyKey::new(format!("k{number}")).expect("key"),
            epoch: common::domain::Epoch(1),
            time: 1,
        }
    }

    #[tokio::test]
    async fn the_orders_are_encoded_when_first_read_after_a_seek() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let orders: Vec<OrderRecord> = (0..3).map(record).collect();
        store.append(&orders).expect("append");

        let mut bytes = of_orders(store.clone(), Some(OrderNumber(1)), 42);
        bytes.seek(SeekFrom::Start(0)).await.expect("seek");
        let mut read = Vec::new();
        bytes.read_to_end(&mut read).await.expect("read");
        assert_eq!(
            orders_after(&read, None).expect("decode"),
            (42, orders[..2].to_vec())
        );
        assert_eq!(
            orders_after(&read, Some(OrderNumber(0))).expect("decode"),
            (42, orders[1..2].to_vec())
        );
    }
}
