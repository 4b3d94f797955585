//! The outgoing queue of a connection: small frames coalesced into one buffer, large payloads
//! kept as their own `Bytes` (no copy), written together with vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

/// Payloads at least this large are queued by reference instead of copied.
pub(crate) const ZERO_COPY_MIN: usize = 2048;
/// Most slices per vectored write.
const MAX_IOV: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// Segments in order, before `tail`.
    chunks: VecDeque<Bytes>,
    /// Bytes appended last (headers, control frames, small payloads).
    tail: BytesMut,
    /// Total queued bytes.
    len: usize,
}

impl WriteQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs `f` to append to the tail buffer (the sans-IO encoders write there).
    pub(crate) fn append<R>(&mut self, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        let before = self.tail.len();
        let r = f(&mut self.tail);
        self.len += self.tail.len() - before;
        r
    }

    /// Queues `b` after everything appended so far, without copying it.
    pub(crate) fn push_bytes(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += b.len();
        self.chunks.push_back(b);
    }

    /// Writes everything out (vectored when there are several segments), then flushes.
    pub(crate) fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.len > 0 {
            let n = if self.chunks.is_empty() {
                ready!(Pin::new(&mut *io).poll_write(cx, &self.tail))?
            } else {
                // On the stack: no allocation per write.
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                for c in self.chunks.iter().take(MAX_IOV - 1) {
                    iov[k] = IoSlice::new(c);
                    k += 1;
                }
                if self.chunks.len() < MAX_IOV && !self.tail.is_empty() {
                    iov[k] = IoSlice::new(&self.tail);
                    k += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &iov[..k]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        // Everything is written: release the buffer, so an idle connection holds none.
        self.tail = BytesMut::new();
        Pin::new(io).poll_flush(cx)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    self.tail.advance(n);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `max` bytes per call and records everything.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
            let n = b.len().min(self.max);
            self.out.extend_from_slice(&b[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.max;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                left -= k;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
    }

    #[test]
    fn order_is_kept_across_partial_vectored_writes() {
        for max in [1usize, 3, 7, 100, 5000, 1 << 20] {
            let mut q = WriteQueue::default();
            let mut expect = Vec::new();
            for i in 0..200u32 {
                if i % 3 == 0 {
                    let big = Bytes::from(vec![(i % 251) as u8; 3000 + i as usize]);
                    expect.extend_from_slice(&big);
                    q.push_bytes(big);
                } else {
                    let small = i.to_be_bytes();
                    expect.extend_from_slice(&small);
                    q.append(|t| t.extend_from_slice(&small));
                }
            }
            assert_eq!(q.len(), expect.len());
            let mut w = Trickle { out: Vec::new(), max };
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(matches!(q.poll_write(&mut w, &mut cx), Poll::Ready(Ok(()))));
            assert_eq!(w.out, expect, "max {max}");
            assert!(q.is_empty());
        }
    }
}
