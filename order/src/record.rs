//! How an order is laid out on disk (the `orders` tree's values and the `keys`
//! tree's keys and values).
//!
//! An order's number is its key in the `orders` tree, so the value holds the rest:
//!
//! ```text
//! epoch, quantity, time, name length   LEB128 varints
//! name                                 UTF-8
//! idempotency key                      common::idkey's form, to the end
//! ```
//!
//! About 36 bytes for a UUID key and a ten-letter toy, against about 55 for the bincode
//! record this replaced. Databases written before hold that record; [`legacy`] reads it
//! so that `Store::open` can rewrite them once.

use common::wire::OrderRecord;

use crate::error::OrderError;

fn corrupt(what: &str) -> OrderError {
    OrderError::Storage(format!("corrupt {what}"))
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
    put_varint(&mut out, record.epoch);
    put_varint(&mut out, record.quantity);
    put_varint(&mut out, record.time);
    put_varint(&mut out, record.name.len() as u64);
    out.extend_from_slice(record.name.as_bytes());
    common::idkey::encode_into(&record.key, &mut out);
    out
}

/// The order numbered `number` whose `orders` value is `bytes`.
pub fn decode(number: u64, mut bytes: &[u8]) -> Result<OrderRecord, OrderError> {
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
        name: String::from_utf8(name.to_vec()).map_err(|_| corrupt("order name"))?,
        quantity,
        key: common::idkey::decode(key).ok_or_else(|| corrupt("idempotency key"))?,
        epoch,
        time,
    })
}

/// An order number as a key of the `orders` tree (big-endian, so that sled's order is
/// number order).
pub fn number_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

/// The number of an `orders` tree key.
pub fn number_of(bytes: &[u8]) -> Result<u64, OrderError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("order key"))
}

/// The `keys` tree's value: an order number as a varint.
pub fn index_value(number: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3);
    put_varint(&mut out, number);
    out
}

/// The order number in a `keys` tree value.
pub fn indexed_number(mut bytes: &[u8]) -> Result<u64, OrderError> {
    match take_varint(&mut bytes) {
        Some(number) if bytes.is_empty() => Ok(number),
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
        name: String,
        quantity: u64,
        key: String,
        epoch: u64,
    }

    /// The order in an old `orders` value, given the time its key is kept from.
    pub fn decode(bytes: &[u8], time: u64) -> Result<OrderRecord, OrderError> {
        let (r, _): (Record, _) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| OrderError::Storage(format!("corrupt order record: {e}")))?;
        Ok(OrderRecord {
            number: r.number,
            name: r.name,
            quantity: r.quantity,
            key: r.key,
            epoch: r.epoch,
            time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, name: &str) -> OrderRecord {
        OrderRecord {
            number: 1_234_567,
            name: name.into(),
            quantity: 3,
            key: key.into(),
            epoch: 300,
            time: 1_764_115_200_123,
        }
    }

    #[test]
    fn records_round_trip_in_few_bytes() {
        for r in [
            rec("0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3", "Tux"),
            rec("my own key", "Rubik's Cube"),
            rec("k", ""),
        ] {
            assert_eq!(decode(r.number, &encode(&r)).expect("decode"), r);
        }
        let uuid = rec("0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3", "Lego Bricks");
        assert_eq!(encode(&uuid).len(), 2 + 1 + 6 + 1 + 11 + 17);
    }

    #[test]
    fn varints_cover_the_whole_range() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(indexed_number(&index_value(n)).expect("decode"), n);
        }
        assert!(indexed_number(&[0x80]).is_err());
        assert!(indexed_number(&[1, 2]).is_err());
        assert!(indexed_number(&[0xff; 11]).is_err());
    }

    #[test]
    fn damaged_records_are_refused() {
        let bytes = encode(&rec("k", "Tux"));
        for cut in 0..bytes.len() - 1 {
            assert!(decode(1, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_name = bytes.clone();
        bad_name[10] = 0xff;
        assert!(decode(1, &bad_name).is_err());
    }

    #[test]
    fn legacy_records_are_read() {
        #[derive(serde::Serialize)]
        struct Old<'a>(u64, &'a str, u64, &'a str, u64);
        let bytes =
            bincode::serde::encode_to_vec(Old(7, "Tux", 2, "key", 3), bincode::config::standard())
                .expect("encode");
        let r = legacy::decode(&bytes, 99).expect("decode");
        assert_eq!((r.number, r.name.as_str(), r.quantity), (7, "Tux", 2));
        assert_eq!((r.key.as_str(), r.epoch, r.time), ("key", 3, 99));
    }
}
