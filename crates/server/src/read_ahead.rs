//! Reads for small buffers, without holding a big one. tungstenite keeps one read buffer per
//! socket for the socket's life and reads at most that buffer's size per call, so the size
//! is a trade: a big buffer is memory every idle socket holds, a small one is a system call
//! per small piece of every frame. [`ReadAhead`] takes both sides: a small read is served
//! from one per-thread scratch buffer big enough for a burst of frames, in one system call,
//! and what the caller had no room for waits in a per-socket buffer that exists only until
//! it has been read. An idle socket holds nothing here.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The per-thread scratch buffer: one read from the socket takes up to this much.
const SCRATCH_BYTES: usize = 16 * 1024;

/// A read asking for at least this much goes straight to the socket (hyper reading a
/// request head asks for kilobytes; there is nothing to gain from a copy).
const DIRECT_READ_BYTES: usize = 4 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// A byte stream whose small reads are served from a shared scratch buffer (see the module
/// documentation). Writes pass straight through.
pub(crate) struct ReadAhead<Io> {
    io: Io,
    /// Bytes read from `io` that no caller has taken yet, from `taken` on; no allocation
    /// when there are none.
    ahead: Vec<u8>,
    taken: usize,
}

impl<Io> ReadAhead<Io> {
    pub(crate) fn new(io: Io) -> ReadAhead<Io> {
        ReadAhead {
            io,
            ahead: Vec::new(),
            taken: 0,
        }
    }

    /// Hands the caller what was read ahead; frees the buffer once it is all taken.
    fn take_ahead(&mut self, buf: &mut ReadBuf<'_>) {
        let waiting = &self.ahead[self.taken..];
        let n = waiting.len().min(buf.remaining());
        buf.put_slice(&waiting[..n]);
        self.taken += n;
        if self.taken == self.ahead.len() {
            self.ahead = Vec::new();
            self.taken = 0;
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for ReadAhead<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken < this.ahead.len() {
            this.take_ahead(buf);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= DIRECT_READ_BYTES {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        SCRATCH.with(|scratch| {
            // Only this function borrows it, and never across a call back into itself; if
            // that ever changed, reading directly is still correct.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            };
            let mut read = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let got = read.filled();
            let n = got.len().min(buf.remaining());
            buf.put_slice(&got[..n]);
            if n < got.len() {
                this.ahead = got[n..].to_vec();
                this.taken = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for ReadAhead<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Small reads get every byte, in order, and the buffer read ahead is gone once taken.
    #[tokio::test]
    async fn small_reads_get_every_byte_and_hold_nothing_after() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut reader = ReadAhead::new(server);
        let sent: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut got = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let n = reader.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(reader.ahead.capacity(), 0);
    }

    /// A large read after small ones first drains what was read ahead, then reads directly.
    #[tokio::test]
    async fn large_reads_drain_what_was_read_ahead_first() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut reader = ReadAhead::new(server);
        client.write_all(b"0123456789").await.unwrap();
        let mut small = [0u8; 4];
        assert_eq!(reader.read(&mut small).await.unwrap(), 4);
        assert_eq!(&small, b"0123");
        assert_eq!(reader.ahead.len() - reader.taken, 6);
        let mut large = [0u8; DIRECT_READ_BYTES];
        assert_eq!(reader.read(&mut large).await.unwrap(), 6);
        assert_eq!(&large[..6], b"456789");
        client.write_all(b"abc").await.unwrap();
        assert_eq!(reader.read(&mut large).await.unwrap(), 3);
        assert_eq!(&large[..3], b"abc");
        assert_eq!(reader.ahead.capacity(), 0);
    }
}
