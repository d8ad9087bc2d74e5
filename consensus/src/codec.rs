//! bincode for everything Raft stores and sends, and openraft's storage errors.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::NodeId;

/// `value` in bincode (standard configuration).
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

/// A value from its bincode.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(v, _)| v)
}

/// `value` in bincode, or openraft's storage error.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError<NodeId>> {
    to_bytes(value).map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, &e))
}

/// A stored value from its bincode, or openraft's storage error naming the type.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError<NodeId>> {
    from_bytes(bytes).map_err(|e| {
        let what = std::any::type_name::<T>();
        io_error(
            ErrorSubject::Store,
            ErrorVerb::Read,
            &std::io::Error::other(format!("corrupt {what}: {e}")),
        )
    })
}

/// openraft's storage error for a failure `e` of `verb` on `subject`.
pub fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote};

    use super::*;
    use crate::Node;

    openraft::declare_raft_types!(
        /// A group whose entries carry a number, to encode every kind of entry.
        Test: D = u64, R = (), SnapshotData = crate::snapshot::LazyBytes,
    );

    fn roundtrip<T: Serialize + DeserializeOwned + std::fmt::Debug>(v: &T) {
        let bytes = to_bytes(v).expect("encode");
        let back: T = from_bytes(&bytes).expect("decode");
        assert_eq!(format!("{v:?}"), format!("{back:?}"));
    }

    #[test]
    fn raft_types_survive_bincode() {
        let id = LogId::new(CommittedLeaderId::new(3, 1), 7);
        roundtrip(&Some(id));
        roundtrip(&Vote::<NodeId>::new(3, 1));
        let nodes: BTreeMap<NodeId, Node> = (1..=3)
            .map(|i| {
                (
                    i,
                    Node {
                        addr: "http://x".into(),
                    },
                )
            })
            .collect();
        let m = Membership::<NodeId, Node>::new(vec![nodes.keys().copied().collect()], nodes);
        roundtrip(&StoredMembership::new(Some(id), m.clone()));
        for payload in [
            EntryPayload::Membership(m),
            EntryPayload::Blank,
            EntryPayload::Normal(7),
        ] {
            roundtrip(&openraft::Entry::<Test> {
                log_id: id,
                payload,
            });
        }
    }
}
