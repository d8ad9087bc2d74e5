//! Snapshot data that is built only when someone reads it.
//!
//! openraft 0.9 asks the state machine for its current snapshot as it starts, only to
//! learn the snapshot's meta (`storage/helper.rs`), and again whenever it sends one to
//! a peer. Encoding a large state (a million orders takes about a second) would be
//! spent at every restart before the member even listened. [`LazyBytes`] holds the
//! recipe instead and runs it, on the blocking pool, at the first read or seek; bytes
//! being received from a leader are held as they are.

use std::future::Future;
use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

/// What makes a snapshot's bytes (run on the blocking pool).
type Recipe = Box<dyn FnOnce() -> io::Result<Vec<u8>> + Send>;

/// A group's `SnapshotData`: a snapshot's bytes, made on first use.
pub struct LazyBytes {
    state: State,
    /// A seek asked for before the bytes were ready, done once they are.
    pending_seek: Option<SeekFrom>,
}

enum State {
    /// Not made yet (the recipe is taken when building starts).
    Unbuilt(Option<Recipe>),
    /// Being made on the blocking pool.
    Building(JoinHandle<io::Result<Vec<u8>>>),
    Ready(Cursor<Vec<u8>>),
}

impl LazyBytes {
    /// The bytes `recipe` makes, made when first read.
    pub fn later(recipe: impl FnOnce() -> io::Result<Vec<u8>> + Send + 'static) -> Self {
        LazyBytes {
            state: State::Unbuilt(Some(Box::new(recipe))),
            pending_seek: None,
        }
    }

    /// Empty, to receive a snapshot into.
    pub fn empty() -> Self {
        LazyBytes {
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
                State::Unbuilt(recipe) => match recipe.take() {
                    Some(recipe) => State::Building(tokio::task::spawn_blocking(recipe)),
                    None => return Poll::Ready(Err(io::Error::other("snapshot recipe lost"))),
                },
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

impl AsyncRead for LazyBytes {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let cursor = ready!(self.get_mut().poll_bytes(cx))?;
        Pin::new(cursor).poll_read(cx, buf)
    }
}

impl AsyncSeek for LazyBytes {
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

impl AsyncWrite for LazyBytes {
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_bytes_are_made_when_first_read_after_a_seek() {
        let made = Arc::new(AtomicBool::new(false));
        let mut bytes = LazyBytes::later({
            let made = made.clone();
            move || {
                made.store(true, Ordering::SeqCst);
                Ok(b"hello".to_vec())
            }
        });
        assert!(!made.load(Ordering::SeqCst));
        bytes.seek(SeekFrom::Start(1)).await.expect("seek");
        let mut read = Vec::new();
        bytes.read_to_end(&mut read).await.expect("read");
        assert!(made.load(Ordering::SeqCst));
        assert_eq!(read, b"ello");
    }

    #[tokio::test]
    async fn received_bytes_come_back_as_written() {
        let mut bytes = LazyBytes::empty();
        bytes.write_all(b"abc").await.expect("write");
        assert_eq!(bytes.into_bytes().expect("bytes"), b"abc");
    }
}
