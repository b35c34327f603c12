//! Session resume on one node (docs/protocol.md, "Resume"): the table of resumable sessions,
//! their secret tokens, the replay buffer, the parked-session cap and the per-address budget
//! for failed attempts. The socket task (`connection.rs`) runs the protocol with these.
//!
//! A resumable session is its socket task, not a record: when the socket drops, the task
//! keeps running without one ("parked"), still holding the peer's hub membership, its
//! outbox, its replay buffer and its codec state, so the room and the SFU see nothing. A
//! socket that resumes hands itself to that task ([`Handoff`]) through the session's entry
//! in [`Sessions`], and the task carries on with it. Nothing is moved between tasks but the
//! socket, so the hub, the media worker and the dialect need no resume code at all.
//!
//! In a cluster the same holds across nodes: a socket that reaches another node is carried
//! to its session's node through Redis ([`Link::Tunnel`], `switchboard_cluster::TunnelEnd`),
//! and the session's task takes it like any other. The session never moves, so its numbers,
//! its replay buffer and its room seat stay exactly as they were.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{ready, Future};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use futures_util::future::Either;
use switchboard_cluster::envelope::{Knock, TunnelFrame};
use switchboard_cluster::{ResumePort, TunnelEnd};
use switchboard_core::PeerKey;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::limits::{AddressRate, Slot};
use crate::metrics::Metrics;
use crate::ws::{WebSocket, WsError};

/// Random bytes in a token: 128 bits, past guessing at any rate the failure budget allows.
const TOKEN_BYTES: usize = 16;

/// Failed resume attempts one address may make per minute before it gets `rate_limited`
/// (spreed throttles its `HelloResume` the same way): a real client fails once, then joins.
const FAILURES_PER_MINUTE: u32 = 10;

/// The SHA-256 of a session token: all the server keeps of it.
pub(crate) type TokenHash = [u8; 32];

/// A fresh session token: the text goes to the client once, in `session` or `resumed`, and
/// only the hash stays.
pub(crate) struct Token {
    pub(crate) text: String,
    pub(crate) hash: TokenHash,
}

impl Token {
    pub(crate) fn new() -> Token {
        let mut bytes = [0u8; TOKEN_BYTES];
        // The system's randomness failing is not something a server can run without.
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
        let text = URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash(&text);
        Token { text, hash }
    }
}

/// The hash a token is kept and looked up under.
pub(crate) fn hash(token: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Compares two token hashes in constant time.
pub(crate) fn same(a: &TokenHash, b: &TokenHash) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A session's socket: the client's own WebSocket on this node, or one that another node
/// holds, carried here through a tunnel. Its methods are those of the WebSocket the
/// socket task uses.
// Nearly every link is local: boxing the WebSocket would cost each socket an allocation and
// an indirection per frame to save a tunnelled one a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link {
    Local(WebSocket),
    Tunnel(TunnelEnd),
}

impl Link {
    /// The next frame from the client; `None` once it is gone.
    pub(crate) async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        let end = match self {
            Link::Local(ws) => return ws.recv().await,
            Link::Tunnel(end) => end,
        };
        loop {
            let message = match end.recv().await? {
                TunnelFrame::Text(bytes) => Message::Text(Utf8Bytes::try_from(bytes).ok()?),
                TunnelFrame::Binary(bytes) => Message::Binary(bytes),
                TunnelFrame::Pong => Message::Pong(Bytes::new()),
                TunnelFrame::Close(NO_STATUS, _) => Message::Close(None),
                TunnelFrame::Close(code, reason) => Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::try_from(reason).unwrap_or_default(),
                })),
                // Only the session's end sends these.
                TunnelFrame::Ping | TunnelFrame::Refused | TunnelFrame::Gone => continue,
            };
            return Some(Ok(message));
        }
    }

    pub(crate) async fn send(&mut self, message: Message) -> Result<(), WsError> {
        match self {
            Link::Local(ws) => ws.send(message).await,
            Link::Tunnel(end) => carry(end, message),
        }
    }

    /// Queues one message. Not an async fn: the message is taken before the future is
    /// polled, so the future (room for which every socket's task keeps) holds none.
    pub(crate) fn feed(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), WsError>> + Send + '_ {
        match self {
            Link::Local(ws) => Either::Left(ws.feed(message)),
            Link::Tunnel(end) => Either::Right(ready(carry(end, message))),
        }
    }

    pub(crate) fn flush(&mut self) -> impl Future<Output = Result<(), WsError>> + Send + '_ {
        match self {
            Link::Local(ws) => Either::Left(ws.flush()),
            // Every frame is queued for Redis as it is fed.
            Link::Tunnel(_) => Either::Right(ready(Ok(()))),
        }
    }
}

/// Queues a frame for the tunnel's other end; a full queue breaks the tunnel, which to the
/// session is a dropped socket.
fn carry(end: &mut TunnelEnd, message: Message) -> Result<(), WsError> {
    let frame = match message {
        Message::Text(text) => TunnelFrame::Text(Bytes::copy_from_slice(text.as_str().as_bytes())),
        Message::Binary(bytes) => TunnelFrame::Binary(bytes),
        Message::Ping(_) => TunnelFrame::Ping,
        Message::Pong(_) => TunnelFrame::Pong,
        Message::Close(frame) => match frame {
            Some(frame) => TunnelFrame::Close(
                frame.code,
                Bytes::copy_from_slice(frame.reason.as_str().as_bytes()),
            ),
            None => TunnelFrame::Close(NO_STATUS, Bytes::new()),
        },
    };
    end.send(frame)
        .map_err(|_| WsError::Io(io::ErrorKind::BrokenPipe.into()))
}

/// A close frame without a code (RFC 6455 7.4.1: 1005 is never sent as such).
pub(crate) const NO_STATUS: u16 = 1005;

/// A socket that asks to take over a session: everything the session's task needs to carry
/// on with it.
pub(crate) struct Handoff {
    pub(crate) ws: Link,
    /// The new socket's place among the server's connections.
    pub(crate) slot: Slot,
    /// Keeps shutdown waiting for the socket.
    pub(crate) tracked: TaskTrackerToken,
    /// The token hash the socket presented (checked again by the session: a token rotated
    /// meanwhile no longer opens it).
    pub(crate) hash: TokenHash,
    /// The last frame the client processed.
    pub(crate) seq: u64,
    /// The client's address, for the failure budget.
    pub(crate) ip: IpAddr,
    /// What the new socket's token grants.
    pub(crate) grants: Option<Arc<switchboard_auth::Grants>>,
    /// A socket carried from another node: the subject of the token it presented there (the
    /// session keeps the rights it has; `None` without tokens).
    pub(crate) remote: Option<Option<String>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").field("seq", &self.seq).finish()
    }
}

/// Why a resume attempt found no session to hand the socket to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The address has failed too often lately.
    RateLimited,
    /// No live session has this token (never had, expired, ended, or rotated away).
    Unknown,
}

/// Every resumable session on this node, by token hash, and the parked count.
pub(crate) struct Sessions {
    /// Each session's door: its task takes sockets from the receiver. A map keyed by the hash
    /// leaks, through timing, at most where two SHA-256 digests differ, which says nothing
    /// about a token; the entry found is still checked in constant time.
    doors: Mutex<HashMap<TokenHash, mpsc::Sender<Box<Handoff>>>>,
    parked: AtomicUsize,
    /// The hub keys of the parked sessions, for `/api/stats` (`"state":"resuming"`).
    parked_keys: Mutex<HashSet<PeerKey>>,
    max_parked: usize,
    failures: AddressRate,
}

impl Sessions {
    pub(crate) fn new(max_parked: usize) -> Self {
        Sessions {
            doors: Mutex::new(HashMap::new()),
            parked: AtomicUsize::new(0),
            parked_keys: Mutex::new(HashSet::new()),
            max_parked,
            failures: AddressRate::per_minute(FAILURES_PER_MINUTE, FAILURES_PER_MINUTE),
        }
    }

    /// Opens a door for a session under `hash`.
    pub(crate) fn open(&self, hash: TokenHash, door: mpsc::Sender<Box<Handoff>>) {
        self.doors().insert(hash, door);
    }

    /// Closes the door of `hash`: its token opens nothing any more.
    pub(crate) fn close(&self, hash: &TokenHash) {
        self.doors().remove(hash);
    }

    /// Moves a session's door from its old token to its new one (every resume rotates it).
    pub(crate) fn rotate(&self, old: &TokenHash, new: TokenHash) {
        let mut doors = self.doors();
        if let Some(door) = doors.remove(old) {
            doors.insert(new, door);
        }
    }

    /// Hands `handoff` to the session its token names; gives it back if there is none, the
    /// address has failed too often, or the session is busy with another resume. A failure
    /// is counted against the address by the caller ([`Sessions::failed`]), once it knows
    /// no other node has the session either.
    pub(crate) fn knock(
        &self,
        handoff: Box<Handoff>,
        now: Instant,
    ) -> Result<(), (Refusal, Box<Handoff>)> {
        if !self.failures.has_token(handoff.ip, now) {
            return Err((Refusal::RateLimited, handoff));
        }
        let door = self
            .doors()
            .get_key_value(&handoff.hash)
            .filter(|(hash, _)| same(hash, &handoff.hash))
            .map(|(_, door)| door.clone());
        let Some(door) = door else {
            return Err((Refusal::Unknown, handoff));
        };
        door.try_send(handoff).map_err(|error| {
            let handoff = match error {
                mpsc::error::TrySendError::Full(h) | mpsc::error::TrySendError::Closed(h) => h,
            };
            (Refusal::Unknown, handoff)
        })
    }

    /// Whether a session has this token hash (compared in constant time).
    pub(crate) fn has(&self, hash: &TokenHash) -> bool {
        self.doors()
            .get_key_value(hash)
            .is_some_and(|(key, _)| same(key, hash))
    }

    /// Counts a failed attempt against `ip`'s budget.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) {
        let _ = self.failures.allow(ip, now);
    }

    /// The parked sessions' hub keys.
    pub(crate) fn parked_keys(&self) -> HashSet<PeerKey> {
        self.parked_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A place among the parked sessions, if the cap (`--max-parked`) leaves one.
    pub(crate) fn park(self: &Arc<Self>, metrics: &Metrics, key: PeerKey) -> Option<Parked> {
        let taken = self
            .parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |parked| {
                (parked < self.max_parked).then_some(parked + 1)
            });
        taken.ok().map(|_| {
            let gauge = metrics.parked_gauge();
            gauge.inc();
            self.parked_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key);
            Parked {
                sessions: self.clone(),
                gauge,
                key,
            }
        })
    }

    fn doors(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, mpsc::Sender<Box<Handoff>>>> {
        self.doors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sessions of this node as other nodes reach them: a knock for a session that is here
/// opens the tunnel's end and hands it to the session like a socket of this node.
pub(crate) struct Port(pub(crate) std::sync::Weak<crate::Inner>);

impl ResumePort for Port {
    fn knock(&self, knock: Knock) {
        let Some(state) = self.0.upgrade().map(crate::AppState) else {
            return;
        };
        // Every node hears every knock: only the session's node answers.
        if !state.sessions.has(&knock.hash) {
            return;
        }
        let Some(cluster) = &state.cluster else {
            return;
        };
        let mut end = cluster.answer_knock(&knock);
        let Ok(slot) = state.limits.acquire() else {
            let _ = end.send(TunnelFrame::Refused);
            return;
        };
        let handoff = Box::new(Handoff {
            ws: Link::Tunnel(end),
            slot,
            tracked: state.sockets.token(),
            hash: knock.hash,
            seq: knock.seq,
            ip: knock.ip,
            grants: None,
            remote: Some(knock.subject),
        });
        if let Err((_, handoff)) = state.sessions.knock(handoff, Instant::now()) {
            refuse_carried(*handoff);
        }
    }
}

/// Tells the node that holds a carried socket that its resume was refused here; that node
/// carries the socket on as a fresh session.
pub(crate) fn refuse_carried(handoff: Handoff) {
    if let Link::Tunnel(mut end) = handoff.ws {
        let _ = end.send(TunnelFrame::Refused);
    }
}

/// One parked session's place under `--max-parked`; dropping it frees the place.
pub(crate) struct Parked {
    sessions: Arc<Sessions>,
    gauge: prometheus_client::metrics::gauge::Gauge,
    key: PeerKey,
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.sessions.parked.fetch_sub(1, Ordering::AcqRel);
        self.sessions
            .parked_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        self.gauge.dec();
    }
}

/// Frames sent on a session and not yet acknowledged, exactly as sent, for a resume to
/// replay. Bounded by `--resume-buffer` (frames and bytes, whichever first).
pub(crate) struct Replay {
    frames: VecDeque<(u64, Utf8Bytes)>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
}

/// The replay buffer would have to drop a frame the client has certainly not seen.
#[derive(Debug)]
pub(crate) struct Overflow;

impl Replay {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Replay {
            frames: VecDeque::new(),
            bytes: 0,
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    /// Keeps frame `seq`. To stay within bounds the oldest frames go, as long as they are
    /// at most `seen` (frames the client may have processed: while connected, all of them;
    /// while parked, those sent before the drop). Having to drop a later one is an overflow.
    pub(crate) fn push(&mut self, seq: u64, frame: Utf8Bytes, seen: u64) -> Result<(), Overflow> {
        self.bytes += frame.len();
        self.frames.push_back((seq, frame));
        while self.frames.len() > self.max_frames || self.bytes > self.max_bytes {
            match self.frames.front() {
                Some(&(oldest, _)) if oldest <= seen => {
                    if let Some((_, dropped)) = self.frames.pop_front() {
                        self.bytes -= dropped.len();
                    }
                }
                _ => return Err(Overflow),
            }
        }
        Ok(())
    }

    /// Forgets every frame up to `seq`: the client has processed them.
    pub(crate) fn ack(&mut self, seq: u64) {
        while let Some(&(oldest, _)) = self.frames.front() {
            if oldest > seq {
                break;
            }
            if let Some((_, dropped)) = self.frames.pop_front() {
                self.bytes -= dropped.len();
            }
        }
    }

    /// Whether the buffer holds every frame after `seq` up to `sent` (the last one sent).
    pub(crate) fn covers(&self, seq: u64, sent: u64) -> bool {
        if seq > sent {
            return false; // the client claims frames never sent
        }
        let first = self.frames.front().map_or(sent + 1, |&(first, _)| first);
        seq + 1 >= first
    }

    /// The frames after `seq`, in order.
    pub(crate) fn after(&self, seq: u64) -> impl Iterator<Item = &Utf8Bytes> + '_ {
        self.frames
            .iter()
            .filter(move |(n, _)| *n > seq)
            .map(|(_, frame)| frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Utf8Bytes {
        Utf8Bytes::from(text)
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_matches() {
        let (a, b) = (Token::new(), Token::new());
        assert_eq!(a.text.len(), 22, "128 bits in base64url without padding");
        assert_ne!(a.text, b.text);
        assert!(same(&hash(&a.text), &a.hash));
        assert!(!same(&a.hash, &b.hash));
    }

    #[test]
    fn the_buffer_drops_what_may_have_been_seen_and_overflows_on_the_rest() {
        let mut replay = Replay::new(3, 1024);
        for seq in 1..=5 {
            replay.push(seq, frame("x"), seq).unwrap();
        }
        assert!(replay.covers(2, 5) && replay.covers(5, 5));
        assert!(!replay.covers(1, 5), "frame 2 is gone");
        assert!(!replay.covers(6, 5), "frame 6 was never sent");
        assert_eq!(replay.after(3).count(), 2);
        // Parked after 5: frames 6.. are unseen; the buffer may drop 3..5 but no more.
        for seq in 6..=8 {
            replay.push(seq, frame("x"), 5).unwrap();
        }
        assert!(replay.push(9, frame("x"), 5).is_err());
        replay.ack(7);
        assert_eq!(replay.after(0).count(), 2);
    }

    #[test]
    fn bytes_bound_the_buffer_too() {
        let mut replay = Replay::new(100, 10);
        replay.push(1, frame("123456"), 1).unwrap();
        replay.push(2, frame("123456"), 2).unwrap();
        assert_eq!(replay.after(0).count(), 1);
        // Parked after frame 1: frame 2 is unseen, and it would have to go.
        assert!(replay.push(3, frame("123456"), 1).is_err());
    }
}
