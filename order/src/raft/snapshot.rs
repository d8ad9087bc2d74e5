//! A snapshot's bytes, encoded only when someone reads them.
//!
//! A snapshot's data is its key cutoff (8 bytes, big-endian) and every order up to its
//! newest, as the store's buckets copied as they are stored (`Store::export`), so
//! making it decodes almost nothing, and installing it decodes only the buckets the
//! receiver lacks ([`orders_after`]; see `machine`). openraft
//! 0.9 asks the state machine for its current snapshot as it starts, only to learn the
//! snapshot's meta (`storage/helper.rs`), and again whenever it sends one to a peer.
//! Encoding a million orders takes about a second, which a restart used to spend before
//! it even listened. [`SnapshotBytes`] holds the recipe instead and runs it, on the
//! blocking pool, at the first read or seek; bytes being received from a leader are
//! held as they are.

use std::future::Future;
use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use common::wire::OrderRecord;

use crate::error::OrderError;
use crate::record;
use crate::store::Store;

/// openraft's `SnapshotData`: the encoded orders of a snapshot, made on first use.
pub struct SnapshotBytes {
    state: State,
    /// A seek asked for before the bytes were ready, done once they are.
    pending_seek: Option<SeekFrom>,
}

enum State {
    /// Every order up to `last_order` (none for `None`), not read yet.
    Unbuilt {
        store: Store,
        last_order: Option<u64>,
        key_cutoff: u64,
    },
    /// Being read and encoded on the blocking pool.
    Building(JoinHandle<io::Result<Vec<u8>>>),
    Ready(Cursor<Vec<u8>>),
}

impl SnapshotBytes {
    /// `key_cutoff` and the orders of `store` up to `last_order`, encoded when first
    /// read.
    pub fn of_orders(store: Store, last_order: Option<u64>, key_cutoff: u64) -> Self {
        SnapshotBytes {
            state: State::Unbuilt {
                store,
                last_order,
                key_cutoff,
            },
            pending_seek: None,
        }
    }

    /// Empty, to receive a snapshot into.
    pub fn empty() -> Self {
        SnapshotBytes {
            state: State::Ready(Cursor::new(Vec::new())),
            pending_seek: None,
        }
    }

    /// The bytes received (or built), for installing.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self.state {
            State::Ready(cursor) => Ok(cursor.into_inner()),
            _ => Err(io::Error::other("snapshot bytes were never made")),
        }
    }

    /// The bytes, building them first if needed.
    fn poll_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut Cursor<Vec<u8>>>> {
        loop {
            let next = match &mut self.state {
                State::Unbuilt {
                    store,
                    last_order,
                    key_cutoff,
                } => {
                    let (store, last_order, key_cutoff) = (store.clone(), *last_order, *key_cutoff);
                    State::Building(tokio::task::spawn_blocking(move || {
                        encode_orders(&store, last_order, key_cutoff)
                    }))
                }
                State::Building(handle) => {
                    let built = ready!(Pin::new(handle).poll(cx))
                        .map_err(io::Error::other)
                        .and_then(|r| r)?;
                    State::Ready(Cursor::new(built))
                }
                State::Ready(_) => break,
            };
            self.state = next;
        }
        let State::Ready(cursor) = &mut self.state else {
            return Poll::Ready(Err(io::Error::other("snapshot bytes are not ready")));
        };
        if let Some(pos) = self.pending_seek.take() {
            std::io::Seek::seek(cursor, pos)?;
        }
        Poll::Ready(Ok(cursor))
    }
}

/// `key_cutoff` and every order up to `last_order`, encoded.
fn encode_orders(store: &Store, last_order: Option<u64>, key_cutoff: u64) -> io::Result<Vec<u8>> {
    let orders = store.export(last_order).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(8 + orders.len());
    out.extend_from_slice(&key_cutoff.to_be_bytes());
    out.extend_from_slice(&orders);
    Ok(out)
}

/// The key cutoff of a snapshot's data, and its orders numbered above `after`.
pub fn orders_after(
    bytes: &[u8],
    after: Option<u64>,
) -> Result<(u64, Vec<OrderRecord>), OrderError> {
    let (cutoff, stream) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| OrderError::Storage("snapshot data too short".into()))?;
    Ok((
        u64::from_be_bytes(*cutoff),
        record::orders_after(stream, after)?,
    ))
}

impl AsyncRead for SnapshotBytes {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let cursor = ready!(self.get_mut().poll_bytes(cx))?;
        Pin::new(cursor).poll_read(cx, buf)
    }
}

impl AsyncSeek for SnapshotBytes {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(cursor) => Pin::new(cursor).start_seek(position),
            // Done in `poll_complete`, once the bytes are there.
            _ => {
                this.pending_seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let cursor = ready!(self.get_mut().poll_bytes(cx))?;
        Pin::new(cursor).poll_complete(cx)
    }
}

impl AsyncWrite for SnapshotBytes {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let cursor = ready!(self.get_mut().poll_bytes(cx))?;
        Pin::new(cursor).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    fn record(number: u64) -> OrderRecord {
        OrderRecord {
            number,
            name: "Tux".into(),
            quantity: 1,
            key: format!("k{number}"),
            epoch: 1,
            time: 1,
        }
    }

    #[tokio::test]
    async fn the_orders_are_encoded_when_first_read_after_a_seek() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let orders: Vec<OrderRecord> = (0..3).map(record).collect();
        store.append(&orders).expect("append");

        let mut bytes = SnapshotBytes::of_orders(store.clone(), Some(1), 42);
        bytes.seek(SeekFrom::Start(0)).await.expect("seek");
        let mut read = Vec::new();
        bytes.read_to_end(&mut read).await.expect("read");
        assert_eq!(
            orders_after(&read, None).expect("decode"),
            (42, orders[..2].to_vec())
        );
        assert_eq!(
            orders_after(&read, Some(0)).expect("decode"),
            (42, orders[1..2].to_vec())
        );
    }

    #[tokio::test]
    async fn received_bytes_come_back_as_written() {
        let mut bytes = SnapshotBytes::empty();
        bytes.write_all(b"abc").await.expect("write");
        assert_eq!(bytes.into_bytes().expect("bytes"), b"abc");
    }
}
