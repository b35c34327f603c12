//! The WebSocket connection: the upgrade handshake, and a socket that reads and writes
//! frames (`switchboard-websocket` does the framing) straight on the accepted connection.
//!
//! Why our own and not axum's (tungstenite's): tungstenite keeps a read buffer per socket for
//! the socket's life and reads at most that buffer's size per call, so its size is a trade
//! between an idle socket's memory and the reads per message (at 256 bytes, a 1 KiB frame took
//! seven reads, each through five layers of hyper's upgraded stream). Here every read goes
//! into one scratch buffer per runtime thread, in one system call; a frame read whole is
//! unmasked straight out of it into its own payload, so the common case copies nothing else,
//! and only the bytes of a frame that is not all here yet wait in a buffer of the socket's own,
//! freed once they are used. An idle socket holds no read buffer. Writes collect in a buffer
//! flushed at the end of each batch, as before.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use switchboard_websocket::{encode, encode_close, Decoder, Error as FrameError, Kind, Step};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::accept::Wire;

/// Bytes of outgoing frames collected before a write; a batch is flushed at its end anyway.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The most write buffer a socket keeps between batches.
const KEEP_OUT_BYTES: usize = 2 * WRITE_BUFFER_BYTES;

/// The per-thread scratch buffer: one read from a socket takes up to this much.
const SCRATCH_BYTES: usize = 16 * 1024;

/// Pongs are queued only while the write buffer holds less than this: a client that pings
/// and never reads cannot grow it (RFC 6455 5.5.3 lets a pong answer only the latest ping).
const PONG_ROOM: usize = 4 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// RFC 6455 1.3: the GUID a handshake's key is hashed with.
const HANDSHAKE_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A request that asks for a WebSocket, checked (RFC 6455 4.2.1).
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade; answered with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotUpgrade {
    Method,
    Connection,
    Upgrade,
    Version,
    Key,
    /// The connection cannot be upgraded (HTTP/2, or a request built in a test).
    NotUpgradable,
}

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        let (status, why) = match self {
            NotUpgrade::Method => (
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade is a GET",
            ),
            NotUpgrade::Connection => (StatusCode::BAD_REQUEST, "Connection must name upgrade"),
            NotUpgrade::Upgrade => (StatusCode::BAD_REQUEST, "Upgrade must be websocket"),
            NotUpgrade::Version => (
                StatusCode::UPGRADE_REQUIRED,
                "Sec-WebSocket-Version must be 13",
            ),
            NotUpgrade::Key => (StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing"),
            NotUpgrade::NotUpgradable => {
                (StatusCode::UPGRADE_REQUIRED, "not an upgradable connection")
            }
        };
        let mut response = (status, why).into_response();
        if self == NotUpgrade::Version {
            // RFC 6455 4.4: name the version this server speaks.
            let version = HeaderValue::from_static("13");
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_VERSION, version);
        }
        response
    }
}

impl Upgrade {
    /// The upgrade `parts` asks for, if it is a valid one.
    pub(crate) fn from_parts(parts: &mut Parts) -> Result<Upgrade, NotUpgrade> {
        if parts.method != Method::GET {
            return Err(NotUpgrade::Method);
        }
        if !names(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(NotUpgrade::Connection);
        }
        if !names(&parts.headers, header::UPGRADE, "websocket") {
            return Err(NotUpgrade::Upgrade);
        }
        if parts.headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13"))
        {
            return Err(NotUpgrade::Version);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(NotUpgrade::Key)?
            .clone();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotUpgrade::NotUpgradable)?;
        Ok(Upgrade { key, on_upgrade })
    }

    /// Answers 101 and, once hyper hands the connection over, runs `serve` on its socket,
    /// which refuses messages over `max_message` bytes.
    pub(crate) fn on_upgrade<F, Fut>(self, max_message: usize, serve: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => return debug!(%error, "upgrade failed"),
            };
            // `accept.rs` serves every connection as a `TokioIo<Wire>`.
            match upgraded.downcast::<TokioIo<Wire>>() {
                Ok(parts) => {
                    let socket = WebSocket::new(parts.io.into_inner(), parts.read_buf, max_message);
                    serve(socket).await;
                }
                Err(_) => debug!("upgraded connection of an unknown type: dropped"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

/// Whether the comma-separated header `name` lists `token` (case-insensitively).
fn names(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// `Sec-WebSocket-Accept` for a handshake's key (RFC 6455 4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    use aws_lc_rs::digest;
    let mut context = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(HANDSHAKE_GUID);
    let encoded = base64::engine::general_purpose::STANDARD.encode(context.finish());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

/// Why a socket cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    /// The client's bytes are not WebSocket frames, too big ones, or text that is not UTF-8.
    #[error(transparent)]
    Frame(#[from] switchboard_websocket::Error),
    /// A frame sent after our close frame.
    #[error("the socket is closing")]
    Closing,
    /// The connection broke.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A WebSocket on an upgraded connection. Reads are cancel-safe: a `recv` dropped while it
/// waits loses nothing.
pub(crate) struct WebSocket {
    io: Wire,
    decoder: Decoder,
    /// Bytes read but not yet decoded, from `start` on: the start of a frame not all here yet,
    /// or frames after the one a read delivered. Freed once used up.
    pending: Vec<u8>,
    start: usize,
    /// Frames to write, from `written` on.
    out: Vec<u8>,
    written: usize,
    close_sent: bool,
    close_received: bool,
    /// A read failed: nothing more is read.
    failed: bool,
}

/// What one read brought.
enum Read {
    /// The client closed the connection.
    End,
    /// Bytes, now in `pending`.
    More,
    /// A message, decoded straight from the scratch buffer.
    Message(switchboard_websocket::Message),
    Failed(switchboard_websocket::Error),
}

impl WebSocket {
    /// A socket on `io`, whose first bytes (read by hyper past the request) are `early`.
    pub(crate) fn new(io: Wire, early: Bytes, max_message: usize) -> WebSocket {
        WebSocket {
            io,
            decoder: Decoder::new(max_message),
            pending: early.to_vec(),
            start: 0,
            out: Vec::new(),
            written: 0,
            close_sent: false,
            close_received: false,
            failed: false,
        }
    }

    /// The next message from the client; `None` once it has closed, or the connection has
    /// ended. Pings are answered (with the next write, or at once if the socket has room).
    pub(crate) async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        loop {
            if self.close_received || self.failed {
                return None;
            }
            let message = match self.decode_pending() {
                Ok(Some(message)) => message,
                Ok(None) => match poll_fn(|cx| self.poll_read_more(cx)).await {
                    Ok(Read::More) => continue,
                    Ok(Read::End) => return None,
                    Ok(Read::Message(message)) => message,
                    Ok(Read::Failed(error)) => return Some(Err(self.fail(error.into()))),
                    Err(error) => return Some(Err(self.fail(error.into()))),
                },
                Err(error) => return Some(Err(self.fail(error.into()))),
            };
            return Some(self.deliver(message));
        }
    }

    /// The next message among the bytes already read, if they hold a whole one.
    fn decode_pending(
        &mut self,
    ) -> Result<Option<switchboard_websocket::Message>, switchboard_websocket::Error> {
        while self.start < self.pending.len() {
            match self.decoder.decode(&self.pending[self.start..])? {
                Step::Frame { used, message } => {
                    self.start += used;
                    if self.start == self.pending.len() {
                        self.pending = Vec::new();
                        self.start = 0;
                    }
                    if message.is_some() {
                        return Ok(message);
                    }
                }
                Step::Need(need) => {
                    if self.start > 0 {
                        self.pending.drain(..self.start);
                        self.start = 0;
                    }
                    // Room for this frame and no more: what a frame before it grew is let go.
                    let wanted = self.pending.len() + need;
                    if self.pending.capacity() > wanted + SCRATCH_BYTES {
                        self.pending.shrink_to(wanted);
                    }
                    self.pending.reserve_exact(need);
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// Reads once into the thread's scratch buffer. With nothing pending, the first message
    /// is decoded from there and only what follows it is kept; otherwise the bytes join the
    /// frame that is waiting for them.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Read>> {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.poll_read_into(cx, &mut scratch),
            // Only this function borrows it, and never across a call back into itself; if
            // that ever changed, a buffer on the stack is still correct.
            Err(_) => self.poll_read_into(cx, &mut [0; 2048]),
        })
    }

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        scratch: &mut [u8],
    ) -> Poll<io::Result<Read>> {
        {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let got = buf.filled();
            if got.is_empty() {
                return Poll::Ready(Ok(Read::End));
            }
            if !self.pending.is_empty() {
                self.pending.reserve_exact(got.len());
                self.pending.extend_from_slice(got);
                return Poll::Ready(Ok(Read::More));
            }
            let mut at = 0;
            let mut read = Read::More;
            while at < got.len() {
                match self.decoder.decode(&got[at..]) {
                    Ok(Step::Frame { used, message }) => {
                        at += used;
                        if let Some(message) = message {
                            read = Read::Message(message);
                            break;
                        }
                    }
                    Ok(Step::Need(need)) => {
                        self.pending.reserve_exact(got.len() - at + need);
                        break;
                    }
                    Err(error) => return Poll::Ready(Ok(Read::Failed(error))),
                }
            }
            self.pending.extend_from_slice(&got[at..]);
            Poll::Ready(Ok(read))
        }
    }

    fn fail(&mut self, error: WsError) -> WsError {
        self.failed = true;
        self.pending = Vec::new();
        self.start = 0;
        error
    }

    /// Turns a decoded message into axum's, answering pings and close frames.
    fn deliver(&mut self, message: switchboard_websocket::Message) -> Result<Message, WsError> {
        use switchboard_websocket::Message as Frame;
        Ok(match message {
            Frame::Text(bytes) => match Utf8Bytes::try_from(bytes) {
                Ok(text) => Message::Text(text),
                Err(_) => return Err(self.fail(FrameError::BadUtf8.into())),
            },
            Frame::Binary(bytes) => Message::Binary(bytes),
            Frame::Ping(payload) => {
                if !self.close_sent && self.out.len() < PONG_ROOM {
                    encode(Kind::Pong, &payload, &mut self.out);
                    self.write_now();
                }
                Message::Ping(payload)
            }
            Frame::Pong(payload) => Message::Pong(payload),
            Frame::Close(frame) => {
                self.close_received = true;
                // Our half of the closing handshake, with the client's code (RFC 6455 5.5.1).
                if !self.close_sent {
                    self.close_sent = true;
                    encode_close(frame.as_ref().map(|f| (f.code, "")), &mut self.out);
                    self.write_now();
                }
                Message::Close(frame.map(|frame| CloseFrame {
                    code: frame.code,
                    reason: Utf8Bytes::from(frame.reason),
                }))
            }
        })
    }

    /// Writes what is queued if the socket takes it without waiting; the rest goes with the
    /// next flush.
    fn write_now(&mut self) {
        let waker = std::task::Waker::noop();
        let _ = self.poll_flush(&mut Context::from_waker(waker));
    }

    /// Sends one message, written at once.
    pub(crate) async fn send(&mut self, message: Message) -> Result<(), WsError> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues one message; it is written when the buffer fills or at the next flush. The
    /// message is encoded before the returned future is first polled, so the future holds no
    /// message (every idle socket's task keeps room for it).
    pub(crate) fn feed(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), WsError>> + Send + '_ {
        let full = self
            .queue(message)
            .map(|()| self.out.len() >= WRITE_BUFFER_BYTES);
        async move {
            if full? {
                poll_fn(|cx| self.poll_write_out(cx)).await?;
            }
            Ok(())
        }
    }

    /// Encodes one message into the write buffer.
    fn queue(&mut self, message: Message) -> Result<(), WsError> {
        if self.close_sent {
            return Err(WsError::Closing);
        }
        let out = &mut self.out;
        match &message {
            Message::Text(text) => encode(Kind::Text, text.as_str().as_bytes(), out),
            Message::Binary(bytes) => encode(Kind::Binary, bytes, out),
            Message::Ping(bytes) => encode(Kind::Ping, bytes, out),
            Message::Pong(bytes) => encode(Kind::Pong, bytes, out),
            Message::Close(frame) => {
                self.close_sent = true;
                encode_close(frame.as_ref().map(|f| (f.code, f.reason.as_str())), out);
            }
        }
        Ok(())
    }

    /// Writes everything queued and flushes the connection (TLS holds records until then).
    pub(crate) fn flush(&mut self) -> impl Future<Output = Result<(), WsError>> + Send + '_ {
        poll_fn(|cx| self.poll_flush(cx).map_err(WsError::from))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes the queued frames. Progress is kept in `written`, so a write dropped while it
    /// waits resumes where it stopped.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let wrote = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]))?;
            if wrote == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += wrote;
        }
        self.written = 0;
        // Kept for the next batch (which fills at most a little over `WRITE_BUFFER_BYTES`
        // before it is written), so a busy socket does not grow it again for every batch;
        // only a buffer that one huge frame grew is let go.
        if self.out.capacity() > KEEP_OUT_BYTES {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 6455 1.3.
    #[test]
    fn the_accept_key_is_the_rfcs() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn connection_and_upgrade_are_read_as_token_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(names(&headers, header::CONNECTION, "upgrade"));
        assert!(!names(&headers, header::CONNECTION, "close"));
        assert!(!names(&headers, header::UPGRADE, "websocket"));
    }
}
