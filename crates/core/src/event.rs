//! What the core tells a peer. Events sit in a peer's outbox until its connection task
//! encodes them in the peer's dialect; cloning one is cheap (shared, reference-counted parts).

use std::any::Any;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::{DialectKind, ErrorCode, Message, PeerName, RoomId};

/// Raw JSON text, checked by the dialect that made it and never parsed again.
#[derive(Clone, PartialEq, Eq)]
pub struct RawJson(Arc<str>);

impl RawJson {
    /// Wraps text that the caller has checked is one valid JSON value.
    pub fn new(json: &str) -> Self {
        RawJson(Arc::from(json))
    }

    /// The JSON text, byte for byte as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A broadcast frame, shared by every receiver (one buffer, never copied per receiver).
#[derive(Debug, Clone)]
pub enum RawFrame {
    /// A text frame; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
}

/// A message on its way to one or more peers, with the sender stamped by the hub.
#[derive(Debug)]
pub struct Signal {
    /// The sender, as the hub knows it: a client cannot speak as someone else.
    pub from: PeerName,
    /// The sender's dialect.
    pub origin: DialectKind,
    /// Whether the sender addressed one peer (the receiver) rather than the whole room.
    pub addressed: bool,
    /// What the sender said.
    pub message: Message,
    /// The frame this signal encodes to in each dialect, when that frame is the same for
    /// every receiver (a room-wide message): made once, by the first receiver of that dialect,
    /// and shared by the rest. Empty when the signal is made.
    pub frames: SharedFrames,
}

/// One encoded frame per dialect, filled at most once each and then only read: a room-wide
/// signal is encoded once per dialect, not once per receiver, and every receiver writes the
/// same reference-counted bytes. The core never fills it (it sees no frames); the socket
/// tasks do, with what their dialect said any receiver would get. A frame is kept as the
/// transport's own type (for the server, a WebSocket text frame whose bytes are known to be
/// UTF-8, so no receiver checks them again), which the core does not know: hence `Any`.
#[derive(Default)]
pub struct SharedFrames([OnceLock<Box<dyn Any + Send + Sync>>; DialectKind::ALL.len()]);

impl SharedFrames {
    /// The frame already made for `dialect`, if a receiver of that dialect has made one of
    /// type `F`.
    pub fn get<F: Any>(&self, dialect: DialectKind) -> Option<&F> {
        self.0.get(dialect.index())?.get()?.downcast_ref()
    }

    /// Keeps `frame` as this signal's frame in `dialect` for the receivers to come (a frame
    /// made meanwhile by another receiver stays: they are the same bytes).
    pub fn set<F: Any + Send + Sync>(&self, dialect: DialectKind, frame: F) {
        if let Some(slot) = self.0.get(dialect.index()) {
            let _ = slot.set(Box::new(frame));
        }
    }
}

impl std::fmt::Debug for SharedFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = DialectKind::ALL.iter().filter(|d| {
            self.0
                .get(d.index())
                .is_some_and(|slot| slot.get().is_some())
        });
        f.debug_set().entries(made.map(|d| d.as_str())).finish()
    }
}

/// One thing for one peer to hear.
#[derive(Debug, Clone)]
pub enum Event {
    /// pairing: the id the server assigned to this connection.
    Greeting {
        /// The new user's id (a UUID v4).
        id: PeerName,
    },
    /// The reply to a join: the room and everyone in it, the joiner included. Boxed: it is
    /// rare and large, and every outbox slot is as big as the largest event.
    Joined(Box<Joined>),
    /// Another peer joined this peer's room. Behind an `Arc`, made once per join and shared
    /// by every member told: inline, a room and a name (32 bytes) made every outbox slot
    /// 40 bytes instead of 24.
    PeerJoined(Arc<Presence>),
    /// Another peer left this peer's room, or its socket dropped; shared like `PeerJoined`.
    PeerLeft(Arc<Presence>),
    /// A relayed message.
    Signal(Arc<Signal>),
    /// pairing: the partner's socket dropped; this peer is idle again.
    PartnerGone {
        /// The partner that went away.
        from: PeerName,
    },
    /// A broadcast frame from another subscriber of the channel. Behind an `Arc`, made once
    /// per frame and shared by every receiver: inline, its `Bytes` (32 bytes and a tag) made
    /// `Event` 48 bytes and every outbox's first block of 32 slots 256 bytes bigger.
    Frame(Arc<RawFrame>),
    /// A reply or notice from the media worker (conference only), boxed like `Joined`.
    Media(Box<MediaEvent>),
    /// A request of this peer's that the cluster decided has been answered (nothing is
    /// written: its socket may read the peer's next frame).
    Settled,
    /// A refusal of this peer's own request, boxed like `Joined`: it is rare, and inline, its
    /// code, reason and request id made every outbox slot 40 bytes instead of 24.
    Error(Box<ErrorEvent>),
    /// An event for a durable session (a resumable session in a cluster) that the cluster
    /// also keeps in the session's inbox in Redis, at `inbox`: its socket task records how
    /// far it has written them, so that whichever node takes the session over after its
    /// node died knows what is still to be told. Never encoded as such: the task encodes the
    /// event inside.
    Retained(Box<Retained>),
}

/// An event the cluster keeps for a durable session until its node has written it.
#[derive(Debug, Clone)]
pub struct Retained {
    /// Its place in the session's inbox.
    pub inbox: u64,
    /// The event.
    pub event: Event,
}

/// The reply to a join.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The room joined.
    pub room: RoomId,
    /// The joiner's own name.
    pub name: PeerName,
    /// Every member's name in join order, the joiner last.
    pub members: Arc<[PeerName]>,
    /// The request id of the join, echoed.
    pub rid: Option<RawJson>,
    /// The ICE servers (STUN/TURN) the operator configured, as a JSON array, if any.
    pub ice_servers: Option<RawJson>,
    /// The SFU's router RTP capabilities (a JSON object) when media is on.
    pub media: Option<RawJson>,
}

/// Who joined or left which room: the news `PeerJoined` and `PeerLeft` carry.
#[derive(Debug)]
pub struct Presence {
    /// The room.
    pub room: RoomId,
    /// Who joined or left.
    pub name: PeerName,
}

/// A reply or notice from the media worker: `{"type":kind,"data":data,"rid":rid}`.
#[derive(Debug, Clone)]
pub struct MediaEvent {
    /// The message type, e.g. `produced` or `new-producer`.
    pub kind: &'static str,
    /// The `data` object, encoded once by the media worker.
    pub data: RawJson,
    /// The request id of the request answered, echoed.
    pub rid: Option<RawJson>,
}

/// A refusal of a peer's own request.
#[derive(Debug, Clone)]
pub struct ErrorEvent {
    /// The stable machine code.
    pub code: ErrorCode,
    /// A human-readable reason.
    pub message: Arc<str>,
    /// The request id of the refused request, echoed.
    pub rid: Option<RawJson>,
}

#[cfg(test)]
mod tests {
    /// Every outbox slot is as big as the largest event: keep it small (idle memory). 24 is
    /// a 16-byte payload (a `PeerName`) and the tag; anything bigger goes behind a pointer.
    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<super::Event>() <= 24);
    }
}
