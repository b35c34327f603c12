//! What a peer asks of the core. A dialect decodes each frame into one [`Command`]; the hub
//! carries it out. Borrowed parts point into the frame and live only as long as it does.

use std::borrow::Cow;
use std::sync::Arc;

use crate::{PeerName, RawFrame, RawJson, RoomId};

/// One request from one peer, already parsed and checked for shape by its dialect.
#[derive(Debug)]
pub enum Command<'a> {
    /// Join `room` as `name` (leaving any room the peer is in first).
    Join {
        /// The room to join; created if it does not exist.
        room: RoomId,
        /// The identity the peer takes in that room.
        name: PeerName,
        /// The request id to echo on the reply, when the dialect has one.
        rid: Option<RawJson>,
    },
    /// Leave the current room. When `room` is given it must be the room the peer is in.
    Leave {
        /// The room the client named, if it named one.
        room: Option<Cow<'a, str>>,
        /// The request id to echo on an error.
        rid: Option<RawJson>,
    },
    /// Send a message in the peer's room: to one member, or to all the others.
    Send {
        /// The addressed member; `None` means everyone else in the room.
        to: Option<Cow<'a, str>>,
        /// The room the client named, if it named one; it must be the peer's room.
        room: Option<Cow<'a, str>>,
        /// Whether a room-wide message also comes back to the sender (conference chat).
        echo: bool,
        /// What to deliver.
        message: Message,
        /// The request id to echo on an error.
        rid: Option<RawJson>,
    },
    /// A pairing message to one user, subject to the pairing state machine.
    Pair {
        /// The addressed user id.
        to: Cow<'a, str>,
        /// What to deliver; its kind drives the state machine.
        message: Message,
    },
    /// A broadcast frame for every other subscriber of the peer's channel.
    Broadcast(RawFrame),
    /// An SFU request (conference). The core does not carry it out: the server hands it to
    /// the media worker with the peer's room, and the worker answers on the peer's outbox.
    Media {
        /// Which request it is.
        request: MediaRequest,
        /// The request's `data` object, raw; the media worker checks its shape.
        data: RawJson,
        /// The request id to echo on the reply or error.
        rid: Option<RawJson>,
    },
}

/// The SFU requests of the conference dialect (docs/media.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRequest {
    /// `get-router-rtp-capabilities`
    RouterCapabilities,
    /// `create-transport`
    CreateTransport,
    /// `connect-transport`
    ConnectTransport,
    /// `produce`
    Produce,
    /// `consume`
    Consume,
    /// `pause-producer`
    PauseProducer,
    /// `resume-producer`
    ResumeProducer,
    /// `pause-consumer`
    PauseConsumer,
    /// `resume-consumer`
    ResumeConsumer,
    /// `close-producer`
    CloseProducer,
    /// `set-preferred-layers`
    SetPreferredLayers,
}

impl MediaRequest {
    /// Every request, with its wire name.
    pub const ALL: [(MediaRequest, &'static str); 11] = [
        (
            MediaRequest::RouterCapabilities,
            "get-router-rtp-capabilities",
        ),
        (MediaRequest::CreateTransport, "create-transport"),
        (MediaRequest::ConnectTransport, "connect-transport"),
        (MediaRequest::Produce, "produce"),
        (MediaRequest::Consume, "consume"),
        (MediaRequest::PauseProducer, "pause-producer"),
        (MediaRequest::ResumeProducer, "resume-producer"),
        (MediaRequest::PauseConsumer, "pause-consumer"),
        (MediaRequest::ResumeConsumer, "resume-consumer"),
        (MediaRequest::CloseProducer, "close-producer"),
        (MediaRequest::SetPreferredLayers, "set-preferred-layers"),
    ];

    /// The request named `name` on the wire, if it is one.
    pub fn from_name(name: &str) -> Option<MediaRequest> {
        Self::ALL
            .iter()
            .find(|(_, wire)| *wire == name)
            .map(|&(request, _)| request)
    }
}

impl Command<'_> {
    /// The request id to echo on a reply or error, if the command carries one.
    pub fn rid(&self) -> Option<&RawJson> {
        match self {
            Command::Join { rid, .. }
            | Command::Leave { rid, .. }
            | Command::Send { rid, .. }
            | Command::Media { rid, .. } => rid.as_ref(),
            Command::Pair { .. } | Command::Broadcast(_) => None,
        }
    }

    /// Fills in a chat message's timestamp when the client sent none. The core reads no
    /// clock, so the server calls this with the time of arrival.
    pub fn stamp_chat(&mut self, now: impl FnOnce() -> Arc<str>) {
        if let Command::Send { message, .. } = self {
            if message.kind == SignalKind::Chat && message.timestamp.is_none() {
                message.timestamp = Some(now());
            }
        }
    }
}

/// The body of a relayed message, as the sender's dialect found it. Each receiving dialect
/// picks the parts it can express (see the mapping table in docs/dialects.md).
#[derive(Debug, Clone)]
pub struct Message {
    /// What kind of message it is, which decides its name in each dialect.
    pub kind: SignalKind,
    /// The relayed body (`payload` or `data`), raw JSON passed through untouched.
    pub payload: Option<RawJson>,
    /// Chat text, when the message is a chat and its text is known.
    pub text: Option<Arc<str>>,
    /// Chat timestamp (ISO 8601), as given by the client or filled in by the server.
    pub timestamp: Option<Arc<str>>,
    /// room-relay only: the frame's other members (`"k":v,...`, without `type` and
    /// `sender`), so that room-relay peers receive the frame verbatim.
    pub fields: Option<RawJson>,
}

impl Message {
    /// A message of `kind` carrying `payload` and nothing else.
    pub fn new(kind: SignalKind, payload: Option<RawJson>) -> Self {
        Message {
            kind,
            payload,
            text: None,
            timestamp: None,
            fields: None,
        }
    }
}

/// The kinds of message the dialects share. Their wire names differ per dialect
/// (`ice_candidate`, `ice-candidate`, `webrtc-ice-candidate`); the kind is what maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalKind {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// An ICE candidate.
    IceCandidate,
    /// A chat message.
    Chat,
    /// pairing: ask a user to connect.
    Ping,
    /// pairing: accept a ping.
    Pong,
    /// pairing: end a pairing.
    Disconnect,
    /// An application-defined type, relayed under its own name.
    Other(Arc<str>),
}
