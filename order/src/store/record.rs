//! How orders are laid out on disk (the `records` tree's keys and values, the
//! `index` tree's values).
//!
//! `records` holds [`PER_BUCKET`] consecutive order numbers per entry: the key is the
//! *bucket*, `number / PER_BUCKET` (big-endian, so that sled's order is number order),
//! and the value the bucket's orders in slot order, each as
//!
//! ```text
//! slot (number % PER_BUCKET)           one byte
//! length of the rest                   LEB128 varint
//! epoch, quantity, time, name length   LEB128 varints
//! name                                 UTF-8
//! idempotency key                      common::idkey's form, to the end
//! ```
//!
//! About 37 bytes for a UUID key and a ten-letter toy, against about 55 for the bincode
//! record this replaced. Buckets because sled's cost is per entry as much as per byte:
//! its leaves split at 16 entries, and with numbers only ever added at the end they
//! stay half full. A one-off experiment on this machine (a million orders and their key
//! index written straight into sled in flushed batches of 32; docs/DESIGN.md,
//! "Storage") measured 258 bytes of disk per order with one entry per order, 174 with
//! 16 per bucket and 197 with 64 (a bucket is rewritten whole on every change, so
//! larger ones cost more log). `client bench --scale` measures the real thing. Databases written before hold one bincode
//! record per order; [`legacy`] reads it so that `Store::open` can rewrite them once.

use common::domain::{Epoch, IdempotencyKey, OrderNumber, ToyName};
use common::storage::StorageError;
use common::wire::OrderRecord;

use crate::error::OrderError;

fn corrupt(what: &str) -> OrderError {
    StorageError::corrupt(what).into()
}

/// Appends `value` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads an unsigned LEB128 varint from the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The `orders` tree's value for `record`.
pub fn encode(record: &OrderRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + record.name.len() + record.key.len());
    put_varint(&mut out, record.epoch.get());
    put_varint(&mut out, record.quantity);
    put_varint(&mut out, record.time);
    put_varint(&mut out, record.name.len() as u64);
    out.extend_from_slice(record.name.as_bytes());
    common::idkey::encode_into(&record.key, &mut out);
    out
}

/// The order numbered `number` whose `orders` value is `bytes`.
pub fn decode(number: OrderNumber, mut bytes: &[u8]) -> Result<OrderRecord, OrderError> {
    let bytes = &mut bytes;
    let mut field = || take_varint(bytes).ok_or_else(|| corrupt("order record"));
    let (epoch, quantity, time, name_len) = (field()?, field()?, field()?, field()?);
    let name_len = usize::try_from(name_len).map_err(|_| corrupt("order record"))?;
    if bytes.len() < name_len {
        return Err(corrupt("order record"));
    }
    let (name, key) = bytes.split_at(name_len);
    Ok(OrderRecord {
        number,
        name: String::from_utf8(name.to_vec())
            .ok()
            .and_then(|n| ToyName::new(n).ok())
            .ok_or_else(|| corrupt("order name"))?,
        quantity,
        key: common::idkey::decode(key)
            .and_then(|k| IdempotencyKey::new(k).ok())
            .ok_or_else(|| corrupt("idempotency key"))?,
        epoch: Epoch(epoch),
        time,
    })
}

/// Orders per `records` entry.
pub const PER_BUCKET: u64 = 16;

/// An order number, big-endian (the pruner's cursor).
pub fn number_key(number: OrderNumber) -> [u8; 8] {
    number.get().to_be_bytes()
}

/// The number in [`number_key`]'s form.
pub fn number_of(bytes: &[u8]) -> Result<OrderNumber, OrderError> {
    bytes
        .try_into()
        .map(|b| OrderNumber(u64::from_be_bytes(b)))
        .map_err(|_| corrupt("order key"))
}

/// The `records` key of the bucket that holds order `number`.
pub fn bucket_key(number: OrderNumber) -> [u8; 8] {
    (number.get() / PER_BUCKET).to_be_bytes()
}

/// The orders' encodings in a bucket's value, by slot: `(slot, bytes)`, in slot order.
fn slots(mut value: &[u8]) -> Result<Vec<(u8, &[u8])>, OrderError> {
    let mut out = Vec::with_capacity(PER_BUCKET as usize);
    while let Some((&slot, rest)) = value.split_first() {
        value = rest;
        let len = take_varint(&mut value)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= value.len() && u64::from(slot) < PER_BUCKET)
            .ok_or_else(|| corrupt("order bucket"))?;
        let (record, rest) = value.split_at(len);
        out.push((slot, record));
        value = rest;
    }
    Ok(out)
}

/// The first order number of the bucket stored under `key`.
fn base_of(key: &[u8]) -> Result<u64, OrderError> {
    number_of(key)?
        .get()
        .checked_mul(PER_BUCKET)
        .ok_or_else(|| corrupt("order bucket key"))
}

/// Every order in the bucket stored under `key` with `value`, in number order.
pub fn bucket_orders(key: &[u8], value: &[u8]) -> Result<Vec<OrderRecord>, OrderError> {
    let base = base_of(key)?;
    slots(value)?
        .into_iter()
        .map(|(slot, bytes)| decode(OrderNumber(base + u64::from(slot)), bytes))
        .collect()
}

/// Order `number` from its bucket's value, decoding only that order.
pub fn bucket_order(number: OrderNumber, value: &[u8]) -> Result<Option<OrderRecord>, OrderError> {
    let slot = (number.get() % PER_BUCKET) as u8;
    match slots(value)?.into_iter().find(|(s, _)| *s == slot) {
        Some((_, bytes)) => decode(number, bytes).map(Some),
        None => Ok(None),
    }
}

/// A bucket's value after dropping `removed` and writing `written` (orders of this
/// bucket, already [`encode`]d); `None` when nothing is left in it.
pub fn edit_bucket(
    value: Option<&[u8]>,
    removed: &[OrderNumber],
    written: &[(OrderNumber, &[u8])],
) -> Result<Option<Vec<u8>>, OrderError> {
    let slot = |n: OrderNumber| (n.get() % PER_BUCKET) as u8;
    let mut kept: Vec<(u8, &[u8])> = match value {
        Some(value) => slots(value)?,
        None => Vec::new(),
    };
    kept.retain(|(s, _)| {
        !removed.iter().any(|&n| slot(n) == *s) && !written.iter().any(|(n, _)| slot(*n) == *s)
    });
    kept.extend(written.iter().map(|(n, bytes)| (slot(*n), *bytes)));
    kept.sort_by_key(|(s, _)| *s);
    if kept.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(kept.iter().map(|(_, b)| b.len() + 3).sum());
    for (s, bytes) in kept {
        out.push(s);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    Ok(Some(out))
}

/// Appends a bucket, as stored under `key` with `value`, to a stream of buckets (a
/// Raft snapshot's orders): the key, the value's length as a varint, the value.
pub fn put_bucket(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(key);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// The orders numbered above `after` (all for `None`) in a stream of buckets made by
/// [`put_bucket`]. Buckets that hold only older orders are skipped undecoded.
pub fn orders_after(
    mut stream: &[u8],
    after: Option<OrderNumber>,
) -> Result<Vec<OrderRecord>, OrderError> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        if stream.len() < 8 {
            return Err(corrupt("bucket stream"));
        }
        let (key, rest) = stream.split_at(8);
        stream = rest;
        let len = take_varint(&mut stream)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= stream.len())
            .ok_or_else(|| corrupt("bucket stream"))?;
        let (value, rest) = stream.split_at(len);
        stream = rest;
        let last_in_bucket = base_of(key)?.saturating_add(PER_BUCKET - 1);
        if after.is_some_and(|a| last_in_bucket <= a.get()) {
            continue;
        }
        out.extend(
            bucket_orders(key, value)?
                .into_iter()
                .filter(|r| after.is_none_or(|a| r.number > a)),
        );
    }
    Ok(out)
}

/// The `index` tree's value: an order number as a varint.
pub fn index_value(number: OrderNumber) -> Vec<u8> {
    let mut out = Vec::with_capacity(3);
    put_varint(&mut out, number.get());
    out
}

/// The order number in an `index` tree value.
pub fn indexed_number(mut bytes: &[u8]) -> Result<OrderNumber, OrderError> {
    match take_varint(&mut bytes) {
        Some(number) if bytes.is_empty() => Ok(OrderNumber(number)),
        _ => Err(corrupt("key index entry")),
    }
}

/// The records of databases written before this layout (bincode, every field, no
/// time; the `keys` tree held raw keys and big-endian numbers).
pub mod legacy {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Record {
        number: u64,
        name: ToyName,
        quantity: u64,
        key: IdempotencyKey,
        epoch: u64,
    }

    /// The order in an old `orders` value, given the time its key is kept from.
    pub fn decode(bytes: &[u8], time: u64) -> Result<OrderRecord, OrderError> {
        let (r, _): (Record, _) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| StorageError::undecodable("order record (old layout)", e))?;
        Ok(OrderRecord {
            number: OrderNumber(r.number),
            name: r.name,
            quantity: r.quantity,
            key: r.key,
            epoch: Epoch(r.epoch),
            time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::domain::{IdempotencyKey, ToyName};

    /// Order number `n`, briefly.
    fn n(n: u64) -> OrderNumber {
        OrderNumber(n)
    }

    /// Order `number`, of key "k".
    fn order(number: u64) -> OrderRecord {
        OrderRecord {
            number: n(number),
            ..rec("k", "Tux")
        }
    }

    /// A bucket's value holding `numbers`' orders.
    fn bucket(numbers: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let bytes: Vec<(u64, Vec<u8>)> = numbers
            .into_iter()
            .map(|x| (x, encode(&order(x))))
            .collect();
        let written: Vec<(OrderNumber, &[u8])> =
            bytes.iter().map(|(x, b)| (n(*x), b.as_slice())).collect();
        edit_bucket(None, &[], &written)
            .expect("edit")
            .expect("orders")
    }

    fn rec(key: &str, name: &str) -> OrderRecord {
        OrderRecord {
            number: n(1_234_567),
            name: ToyName::new(name).expect("name"),
            quantity: 3,
            key: IdempotencyKey::new(key).expect("key"),
            epoch: Epoch(300),
            time: 1_764_115_200_123,
        }
    }

    #[test]
    fn records_round_trip_in_few_bytes() {
        for r in [
            rec("0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3", "Tux"),
            rec("my own key", "Rubik's Cube"),
            rec("k", "U"),
        ] {
            assert_eq!(decode(r.number, &encode(&r)).expect("decode"), r);
        }
        let uuid = rec("0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3", "Lego Bricks");
        assert_eq!(encode(&uuid).len(), 2 + 1 + 6 + 1 + 11 + 17);
        // An empty name or key is not a record (the types refuse them).
        let mut empty_name = Vec::new();
        put_varint(&mut empty_name, 1);
        put_varint(&mut empty_name, 1);
        put_varint(&mut empty_name, 1);
        put_varint(&mut empty_name, 0);
        common::idkey::encode_into("k", &mut empty_name);
        assert!(decode(n(1), &empty_name).is_err());
    }

    #[test]
    fn buckets_keep_their_orders_by_slot() {
        let value = bucket([33, 35, 32]);
        let key = bucket_key(n(33));
        assert_eq!(key, 2u64.to_be_bytes());
        let numbers = |value: &[u8]| -> Vec<u64> {
            bucket_orders(&key, value)
                .expect("decode")
                .iter()
                .map(|r| r.number.get())
                .collect()
        };
        assert_eq!(numbers(&value), [32, 33, 35]);
        assert_eq!(bucket_order(n(35), &value).expect("read"), Some(order(35)));
        assert_eq!(bucket_order(n(34), &value).expect("read"), None);
        // Overwrite 33, drop 35, add 47 (the bucket's last slot).
        let other = OrderRecord {
            epoch: Epoch(9),
            ..order(33)
        };
        let (o, last) = (encode(&other), encode(&order(47)));
        let value = edit_bucket(Some(&value), &[n(35)], &[(n(33), &o), (n(47), &last)])
            .expect("edit")
            .expect("orders");
        assert_eq!(numbers(&value), [32, 33, 47]);
        assert_eq!(bucket_order(n(33), &value).expect("read"), Some(other));
        assert_eq!(
            edit_bucket(Some(&value), &[n(32), n(33), n(47)], &[]).expect("edit"),
            None
        );
        assert!(bucket_orders(&key, &value[..value.len() - 1]).is_err());
        assert!(bucket_orders(&key, &[16, 0]).is_err());
    }

    #[test]
    fn a_bucket_stream_gives_the_orders_after_a_number() {
        let mut stream = Vec::new();
        for b in [0u64, 1, 2] {
            let value = bucket(b * PER_BUCKET..(b + 1) * PER_BUCKET);
            put_bucket(&mut stream, &bucket_key(n(b * PER_BUCKET)), &value);
        }
        let numbers = |after: Option<u64>| -> Vec<u64> {
            orders_after(&stream, after.map(n))
                .expect("decode")
                .iter()
                .map(|r| r.number.get())
                .collect()
        };
        assert_eq!(numbers(None), (0..48).collect::<Vec<_>>());
        assert_eq!(numbers(Some(20)), (21..48).collect::<Vec<_>>());
        assert_eq!(numbers(Some(47)), Vec::<u64>::new());
        assert!(orders_after(&stream[..stream.len() - 1], None).is_err());
        assert!(orders_after(&stream[..5], None).is_err());
    }

    #[test]
    fn varints_cover_the_whole_range() {
        for x in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(indexed_number(&index_value(n(x))).expect("decode"), n(x));
        }
        assert!(indexed_number(&[0x80]).is_err());
        assert!(indexed_number(&[1, 2]).is_err());
        assert!(indexed_number(&[0xff; 11]).is_err());
    }

    #[test]
    fn damaged_records_are_refused() {
        let bytes = encode(&rec("k", "Tux"));
        for cut in 0..bytes.len() - 1 {
            assert!(decode(n(1), &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_name = bytes.clone();
        bad_name[10] = 0xff;
        assert!(decode(n(1), &bad_name).is_err());
    }

    #[test]
    fn legacy_records_are_read() {
        #[derive(serde::Serialize)]
        struct Old<'a>(u64, &'a str, u64, &'a str, u64);
        let bytes =
            bincode::serde::encode_to_vec(Old(7, "Tux", 2, "key", 3), bincode::config::standard())
                .expect("encode");
        let r = legacy::decode(&bytes, 99).expect("decode");
        assert_eq!((r.number, r.name.as_str(), r.quantity), (n(7), "Tux", 2));
        assert_eq!((r.key.as_str(), r.epoch, r.time), ("key", Epoch(3), 99));
    }
}
