//! Idempotency keys as the catalog and the replicas store them.
//!
//! A key in the canonical UUID form — 36 characters, lower-case hex, hyphenated, which
//! is what the front-end makes — is stored as a tag byte and its 16 bytes; any other
//! key as a tag byte and its own bytes. Decoding gives back the exact string, and the
//! tag keeps the two forms from ever colliding. Keys are most of what an order stores,
//! so this halves the key's share of the disk (see docs/DESIGN.md, "Storage").

/// Tag of a key stored as its own bytes.
const TEXT: u8 = 0;
/// Tag of a canonical UUID stored as 16 bytes.
const UUID: u8 = 1;

/// Where the hyphens of a canonical UUID are.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// The 16 bytes of `key` if it is a UUID in canonical form.
fn uuid_bytes(key: &str) -> Option<[u8; 16]> {
    let text = key.as_bytes();
    if text.len() != 36 || HYPHENS.iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = text
        .iter()
        .enumerate()
        .filter(|(i, _)| !HYPHENS.contains(i));
    for byte in &mut out {
        let (_, hi) = digits.next()?;
        let (_, lo) = digits.next()?;
        *byte = (hex_value(*hi)? << 4) | hex_value(*lo)?;
    }
    Some(out)
}

/// A lower-case hex digit's value (upper case is not canonical: it would not come back).
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Appends the stored form of `key` to `out`.
pub fn encode_into(key: &str, out: &mut Vec<u8>) {
    match uuid_bytes(key) {
        Some(bytes) => {
            out.push(UUID);
            out.extend_from_slice(&bytes);
        }
        None => {
            out.push(TEXT);
            out.extend_from_slice(key.as_bytes());
        }
    }
}

/// The stored form of `key`.
pub fn encode(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    encode_into(key, &mut out);
    out
}

/// The key whose stored form is `bytes` (all of them), or `None` if they are not one.
pub fn decode(bytes: &[u8]) -> Option<String> {
    match bytes.split_first()? {
        (&TEXT, text) => String::from_utf8(text.to_vec()).ok(),
        (&UUID, raw) if raw.len() == 16 => {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut text = String::with_capacity(36);
            for (i, byte) in raw.iter().enumerate() {
                if [4, 6, 8, 10].contains(&i) {
                    text.push('-');
                }
                text.push(char::from(DIGITS[usize::from(byte >> 4)]));
                text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
            }
            Some(text)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_comes_back_exactly() {
        for key in [
            "0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3",
            "0196F1C2-7D3E-7A41-9B2C-5E8F00A1B2C3",
            "0196f1c27d3e7a419b2c5e8f00a1b2c3",
            "{0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3}",
            "0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2cg",
            "0196f1c2+7d3e-7a41-9b2c-5e8f00a1b2c3",
            "order-42",
            "ключ",
            "x",
        ] {
            assert_eq!(decode(&encode(key)).as_deref(), Some(key), "{key}");
        }
    }

    #[test]
    fn only_canonical_uuids_are_packed() {
        assert_eq!(encode("0196f1c2-7d3e-7a41-9b2c-5e8f00a1b2c3").len(), 17);
        assert_eq!(encode("0196F1C2-7D3E-7A41-9B2C-5E8F00A1B2C3").len(), 37);
        assert_eq!(encode("order-42").len(), 9);
    }

    #[test]
    fn a_text_key_never_collides_with_a_packed_one() {
        // 16 characters whose bytes could pass for a packed UUID's.
        let text = "abcdefghijklmnop";
        let packed = encode("61626364-6566-6768-696a-6b6c6d6e6f70");
        assert_ne!(encode(text), packed);
        assert_eq!(
            decode(&packed).as_deref(),
            Some("61626364-6566-6768-696a-6b6c6d6e6f70")
        );
    }

    #[test]
    fn bytes_that_are_no_key_are_refused() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[UUID, 1, 2, 3]), None);
        assert_eq!(decode(&[TEXT, 0xff, 0xfe]), None);
        assert_eq!(decode(&[7, b'a']), None);
    }
}
