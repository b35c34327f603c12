//! What nodes say to each other through Redis, and its wire form. A message is `SB1`, a kind
//! byte, then fields, each `<decimal length>:<bytes>`: simple enough that the Lua scripts
//! build membership messages themselves (atomically with the change they announce), and
//! strict enough to decode as untrusted input: every length is checked, every identifier
//! parsed, every JSON payload validated, and a bad message is a typed error, never a panic.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_core::{
    CoreError, DialectKind, ErrorCode, ErrorEvent, Event, Inbound, MediaEvent, MediaRequest,
    Message, NodeId, PeerKey, PeerName, RawFrame, RawJson, RoomId, Seat, Signal, SignalKind, State,
    Stats, UserStats,
};

/// The version and magic every envelope starts with.
const MAGIC: &[u8] = b"SB1";

/// Why an envelope was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not ours, or a version this node does not speak.
    #[error("unknown magic or version")]
    Magic,
    /// Larger than any envelope a node sends.
    #[error("too large")]
    TooLarge,
    /// A field is missing, mis-sized or of the wrong form.
    #[error("malformed field")]
    Field,
    /// An identifier broke the identifier rules.
    #[error("bad identifier")]
    Id,
    /// A JSON payload is not valid JSON.
    #[error("bad JSON")]
    Json,
    /// Bytes left over after the last field.
    #[error("trailing bytes")]
    Trailing,
    /// An unknown kind byte.
    #[error("unknown kind")]
    Kind,
}

impl DecodeError {
    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            DecodeError::Magic => "magic",
            DecodeError::TooLarge => "too_large",
            DecodeError::Field => "field",
            DecodeError::Id => "id",
            DecodeError::Json => "json",
            DecodeError::Trailing => "trailing",
            DecodeError::Kind => "kind",
        }
    }
}

/// An envelope decoded: the node that sent it (for relays and frames, so a node can drop its
/// own echoes) and what it says.
#[derive(Debug)]
pub struct Decoded {
    /// The sending node, for relays and frames (a node drops its own echoes by it).
    pub origin: Option<NodeId>,
    /// What to apply.
    pub inbound: Inbound,
}

/// Encodes a relay from `origin` in `room`.
pub fn relay(
    out: &mut Vec<u8>,
    origin: NodeId,
    room: &RoomId,
    to: Option<&PeerName>,
    signal: &Signal,
) {
    out.extend_from_slice(MAGIC);
    out.push(b'M');
    field(out, origin.to_string().as_bytes());
    field(out, room.as_str().as_bytes());
    field(out, signal.from.as_str().as_bytes());
    field(out, to.map_or("", PeerName::as_str).as_bytes());
    signal_body(out, signal);
}

/// Encodes a pairing message from `origin` for user `to`, as the pairing script publishes it
/// to `to`'s node once the state machine allows it.
pub fn pair(out: &mut Vec<u8>, origin: NodeId, to: &PeerName, signal: &Signal) {
    out.extend_from_slice(MAGIC);
    out.push(b'P');
    field(out, origin.to_string().as_bytes());
    field(out, signal.from.as_str().as_bytes());
    field(out, to.as_str().as_bytes());
    signal_body(out, signal);
}

/// The sender's dialect, addressing and message: the part relays and pairing share.
fn signal_body(out: &mut Vec<u8>, signal: &Signal) {
    let message = &signal.message;
    field(out, &[b'0' + signal.origin.index() as u8]);
    field(out, if signal.addressed { b"1" } else { b"0" });
    let kind: &[u8] = match &message.kind {
        SignalKind::Offer => b"o",
        SignalKind::Answer => b"a",
        SignalKind::IceCandidate => b"i",
        SignalKind::Chat => b"c",
        SignalKind::Ping => b"p",
        SignalKind::Pong => b"P",
        SignalKind::Disconnect => b"d",
        SignalKind::Other(name) => {
            out_other(out, name);
            &[]
        }
    };
    if !kind.is_empty() {
        field(out, kind);
    }
    let parts = [
        message.payload.as_ref().map(RawJson::as_str),
        message.text.as_deref(),
        message.timestamp.as_deref(),
        message.fields.as_ref().map(RawJson::as_str),
    ];
    let mask: Vec<u8> = parts
        .iter()
        .map(|p| if p.is_some() { b'1' } else { b'0' })
        .collect();
    field(out, &mask);
    for part in parts {
        field(out, part.unwrap_or("").as_bytes());
    }
}

fn out_other(out: &mut Vec<u8>, name: &str) {
    let mut kind = Vec::with_capacity(name.len() + 1);
    kind.push(b'x');
    kind.extend_from_slice(name.as_bytes());
    field(out, &kind);
}

/// Encodes a broadcast frame from `origin` on `channel`.
pub fn frame(out: &mut Vec<u8>, origin: NodeId, channel: &RoomId, frame: &RawFrame) {
    out.extend_from_slice(MAGIC);
    out.push(b'F');
    field(out, origin.to_string().as_bytes());
    field(out, channel.as_str().as_bytes());
    let (binary, bytes) = match frame {
        RawFrame::Text(bytes) => (b"0", bytes),
        RawFrame::Binary(bytes) => (b"1", bytes),
    };
    field(out, binary);
    field(out, bytes);
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Decodes one envelope of at most `max` bytes.
pub fn decode(bytes: &Bytes, max: usize) -> Result<Decoded, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge);
    }
    let rest = bytes.strip_prefix(MAGIC).ok_or(DecodeError::Magic)?;
    let (&kind, _) = rest.split_first().ok_or(DecodeError::Kind)?;
    let mut reader = Reader {
        bytes,
        at: MAGIC.len() + 1,
    };
    let decoded = match kind {
        b'M' => reader.relay()?,
        b'F' => {
            let origin = Some(reader.node()?);
            let channel = reader.room()?;
            let binary = reader.flag()?;
            let bytes = reader.bytes()?;
            let frame = if binary {
                RawFrame::Binary(bytes)
            } else {
                std::str::from_utf8(&bytes).map_err(|_| DecodeError::Field)?;
                RawFrame::Text(bytes)
            };
            Decoded {
                origin,
                inbound: Inbound::Frame { channel, frame },
            }
        }
        kind @ (b'R' | b'Y') => {
            let room = reader.room()?;
            let rseq = reader.number()?;
            let media = match reader.text()? {
                "" => None,
                node => Some(NodeId::parse(node).ok_or(DecodeError::Id)?),
            };
            let count = reader.number()?;
            let mut seats = Vec::new();
            for _ in 0..count {
                seats.push(reader.seat()?);
            }
            if kind == b'R' {
                membership(Inbound::Roster {
                    room,
                    rseq,
                    media,
                    seats,
                })
            } else {
                membership(Inbound::Resync {
                    room,
                    rseq,
                    media,
                    seats,
                })
            }
        }
        b'J' => {
            let room = reader.room()?;
            let rseq = reader.number()?;
            let seat = reader.seat()?;
            membership(Inbound::Joined { room, rseq, seat })
        }
        b'O' => {
            let room = reader.room()?;
            let rseq = reader.number()?;
            let seat = reader.seat()?;
            membership(Inbound::Moved { room, rseq, seat })
        }
        b'H' => {
            // A relay, join or leave, kept in the inboxes of the durable members named.
            let count = reader.number()?;
            let mut inboxes = Vec::new();
            for _ in 0..count {
                inboxes.push((reader.name()?, reader.number()?));
            }
            let inner = bytes.slice(reader.at..);
            if !matches!(inner.get(MAGIC.len()), Some(b'M' | b'J' | b'L')) {
                return Err(DecodeError::Kind);
            }
            let decoded = decode(&inner, max)?;
            reader.at = bytes.len();
            Decoded {
                origin: decoded.origin,
                inbound: Inbound::Retained {
                    inboxes,
                    inner: Box::new(decoded.inbound),
                },
            }
        }
        b'L' => {
            let room = reader.room()?;
            let rseq = reader.number()?;
            let name = reader.name()?;
            membership(Inbound::Left { room, rseq, name })
        }
        b'C' => {
            let channel = reader.room()?;
            let node = reader.node()?;
            let on = reader.flag()?;
            membership(Inbound::ChannelNode { channel, node, on })
        }
        b'P' => {
            // Published only to the addressed user's node, which may be the sender's own:
            // never an echo to drop, so no origin is reported.
            let _origin = reader.node()?;
            let from = reader.name()?;
            let to = reader.name()?;
            let signal = reader.signal(from)?;
            Decoded {
                origin: None,
                inbound: Inbound::Pair {
                    to,
                    signal: Arc::new(signal),
                },
            }
        }
        b'V' => {
            let key = PeerKey(reader.number()?);
            let to = reader.name()?;
            let kind = match reader.text()? {
                "ping" => SignalKind::Ping,
                "pong" => SignalKind::Pong,
                "disconnect" => SignalKind::Disconnect,
                "signal" => SignalKind::Offer,
                "other" => SignalKind::Chat,
                _ => return Err(DecodeError::Field),
            };
            let verdict = pair_verdict(Some(reader.text()?.as_bytes()), &to);
            membership(Inbound::PairVerdict {
                key,
                to,
                kind,
                verdict,
            })
        }
        b'G' => {
            let to = reader.name()?;
            let from = reader.name()?;
            membership(Inbound::PartnerGone { to, from })
        }
        b'K' => {
            let room = reader.room()?;
            let node = reader.node()?;
            membership(Inbound::MediaHome { room, node })
        }
        b'D' => membership(Inbound::NodeDown {
            node: reader.node()?,
        }),
        _ => return Err(DecodeError::Kind),
    };
    if reader.at != bytes.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(decoded)
}

fn membership(inbound: Inbound) -> Decoded {
    Decoded {
        origin: None,
        inbound,
    }
}

struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn raw(&mut self) -> Result<(usize, usize), DecodeError> {
        let rest = self.bytes.get(self.at..).ok_or(DecodeError::Field)?;
        let colon = rest
            .iter()
            .take(12)
            .position(|&b| b == b':')
            .ok_or(DecodeError::Field)?;
        let digits = &rest[..colon];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::Field);
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(DecodeError::Field)?;
        let start = self.at + colon + 1;
        let end = start.checked_add(len).ok_or(DecodeError::Field)?;
        if end > self.bytes.len() {
            return Err(DecodeError::Field);
        }
        self.at = end;
        Ok((start, end))
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let (start, end) = self.raw()?;
        Ok(self.bytes.slice(start..end))
    }

    fn text(&mut self) -> Result<&str, DecodeError> {
        let (start, end) = self.raw()?;
        std::str::from_utf8(&self.bytes[start..end]).map_err(|_| DecodeError::Field)
    }

    fn room(&mut self) -> Result<RoomId, DecodeError> {
        RoomId::parse(self.text()?).map_err(|_| DecodeError::Id)
    }

    fn name(&mut self) -> Result<PeerName, DecodeError> {
        PeerName::parse(self.text()?).map_err(|_| DecodeError::Id)
    }

    fn node(&mut self) -> Result<NodeId, DecodeError> {
        NodeId::parse(self.text()?).ok_or(DecodeError::Id)
    }

    fn number(&mut self) -> Result<u64, DecodeError> {
        let text = self.text()?;
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::Field);
        }
        text.parse().map_err(|_| DecodeError::Field)
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.text()? {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(DecodeError::Field),
        }
    }

    fn seat(&mut self) -> Result<Seat, DecodeError> {
        Ok(Seat {
            name: self.name()?,
            node: self.node()?,
            key: PeerKey(self.number()?),
            seq: self.number()?,
            durable: self.flag()?,
        })
    }

    fn json(&mut self) -> Result<RawJson, DecodeError> {
        let text = self.text()?;
        serde_json::from_str::<&RawValue>(text).map_err(|_| DecodeError::Json)?;
        Ok(RawJson::new(text))
    }

    fn relay(&mut self) -> Result<Decoded, DecodeError> {
        let origin = self.node()?;
        let room = self.room()?;
        let from = self.name()?;
        let to = match self.text()? {
            "" => None,
            to => Some(PeerName::parse(to).map_err(|_| DecodeError::Id)?),
        };
        let signal = self.signal(from)?;
        Ok(Decoded {
            origin: Some(origin),
            inbound: Inbound::Relay {
                room,
                to,
                signal: Arc::new(signal),
            },
        })
    }

    fn signal(&mut self, from: PeerName) -> Result<Signal, DecodeError> {
        let dialect = match self.text()?.as_bytes() {
            [digit @ b'0'..=b'4'] => DialectKind::ALL[usize::from(digit - b'0')],
            _ => return Err(DecodeError::Field),
        };
        let addressed = self.flag()?;
        let kind = match self.text()? {
            "o" => SignalKind::Offer,
            "a" => SignalKind::Answer,
            "i" => SignalKind::IceCandidate,
            "c" => SignalKind::Chat,
            "p" => SignalKind::Ping,
            "P" => SignalKind::Pong,
            "d" => SignalKind::Disconnect,
            other => match other.strip_prefix('x') {
                Some(name) if !name.is_empty() && name.len() <= 128 => {
                    SignalKind::Other(Arc::from(name))
                }
                _ => return Err(DecodeError::Field),
            },
        };
        let mask = self.text()?.as_bytes().to_vec();
        if mask.len() != 4 || !mask.iter().all(|&b| b == b'0' || b == b'1') {
            return Err(DecodeError::Field);
        }
        let payload = if mask[0] == b'1' {
            Some(self.json()?)
        } else {
            self.text()?;
            None
        };
        let text = self.text()?;
        let text = (mask[1] == b'1').then(|| Arc::from(text));
        let timestamp = self.text()?;
        let timestamp = (mask[2] == b'1').then(|| Arc::from(timestamp));
        let fields = self.text()?;
        let fields = (mask[3] == b'1').then(|| RawJson::new(fields));
        Ok(Signal {
            frames: Default::default(),
            from,
            origin: dialect,
            addressed,
            message: Message {
                kind,
                payload,
                text,
                timestamp,
                fields,
            },
        })
    }
}

/// The pairing script's answer as the hub's verdict.
pub(crate) fn pair_verdict(reply: Option<&[u8]>, to: &PeerName) -> Result<(), CoreError> {
    let reply = reply
        .and_then(|r| std::str::from_utf8(r).ok())
        .unwrap_or("");
    if reply == "OK" || reply == "SILENT" {
        return Ok(());
    }
    let Some(error) = reply.strip_prefix("E:") else {
        return Err(CoreError::Unavailable);
    };
    let (code, detail) = error.split_once(':').unwrap_or((error, ""));
    Err(match code {
        "user_not_found" => CoreError::UserNotFound(to.as_str().into()),
        "user_busy" => CoreError::UserBusy(to.clone()),
        "invalid_state" => CoreError::InvalidState(match detail {
            "only an idle user can ping" => "only an idle user can ping",
            "no pending ping from that user" => "no pending ping from that user",
            "only an idle user can accept a ping" => "only an idle user can accept a ping",
            "not connected to that user" => "not connected to that user",
            "not connecting or connected to that user" => {
                "not connecting or connected to that user"
            }
            "a user cannot pair with itself" => "a user cannot pair with itself",
            "not a pairing message" => "not a pairing message",
            _ => "not allowed in this pairing state",
        }),
        _ => CoreError::Unavailable,
    })
}

/// A cluster-wide `/api/stats` question or one node's answer.
#[derive(Debug)]
pub enum StatsMessage {
    /// Answer `id` to `reply_to` with your oldest `limit` connections.
    Request {
        /// The question's number at the asking node.
        id: u64,
        /// The asking node.
        reply_to: NodeId,
        /// How many connections to list at most.
        limit: usize,
    },
    /// One node's answer.
    Reply {
        /// The question's number.
        id: u64,
        /// The answering node.
        node: NodeId,
        /// Its connections.
        stats: Stats,
    },
}

/// Whether `bytes` is a stats message (decoded by [`decode_stats`], not [`decode`]).
pub fn is_stats(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) && matches!(bytes.get(MAGIC.len()), Some(b'S' | b'T'))
}

/// Encodes a stats question.
pub fn stats_request(out: &mut Vec<u8>, id: u64, reply_to: NodeId, limit: usize) {
    out.extend_from_slice(MAGIC);
    out.push(b'S');
    field(out, id.to_string().as_bytes());
    field(out, reply_to.to_string().as_bytes());
    field(out, limit.to_string().as_bytes());
}

/// Encodes one node's stats answer.
pub fn stats_reply(out: &mut Vec<u8>, id: u64, node: NodeId, stats: &Stats) {
    out.extend_from_slice(MAGIC);
    out.push(b'T');
    field(out, id.to_string().as_bytes());
    field(out, node.to_string().as_bytes());
    field(out, stats.connected.to_string().as_bytes());
    field(out, stats.users.len().to_string().as_bytes());
    for user in &stats.users {
        field(out, user.key.0.to_string().as_bytes());
        field(
            out,
            user.id.as_ref().map_or("", PeerName::as_str).as_bytes(),
        );
        field(out, &[b'0' + user.dialect.index() as u8]);
        field(out, user.state.as_str().as_bytes());
        field(
            out,
            user.target.as_ref().map_or("", PeerName::as_str).as_bytes(),
        );
        field(
            out,
            user.room.as_ref().map_or("", RoomId::as_str).as_bytes(),
        );
        // Nanoseconds: connections made a moment apart on two nodes still list in order.
        let at = user
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        field(out, at.to_string().as_bytes());
        field(out, user.ip.to_string().as_bytes());
    }
}

/// Decodes a stats message of at most `max` bytes, as untrusted as any other.
pub fn decode_stats(bytes: &Bytes, max: usize) -> Result<StatsMessage, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge);
    }
    if !is_stats(bytes) {
        return Err(DecodeError::Kind);
    }
    let mut reader = Reader {
        bytes,
        at: MAGIC.len() + 1,
    };
    let message = if bytes[MAGIC.len()] == b'S' {
        StatsMessage::Request {
            id: reader.number()?,
            reply_to: reader.node()?,
            limit: usize::try_from(reader.number()?)
                .map_err(|_| DecodeError::Field)?
                .min(MAX_STATS_USERS),
        }
    } else {
        let id = reader.number()?;
        let node = reader.node()?;
        let connected = usize::try_from(reader.number()?).map_err(|_| DecodeError::Field)?;
        let count = reader.number()?;
        if count > MAX_STATS_USERS as u64 {
            return Err(DecodeError::Field);
        }
        let mut users = Vec::new();
        for _ in 0..count {
            users.push(reader.user()?);
        }
        StatsMessage::Reply {
            id,
            node,
            stats: Stats {
                connected,
                rooms: 0,
                users,
            },
        }
    };
    if reader.at != bytes.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(message)
}

/// The most connections one stats answer may list (`/api/stats` lists at most 1000).
const MAX_STATS_USERS: usize = 1000;

impl Reader<'_> {
    fn optional_name(&mut self) -> Result<Option<PeerName>, DecodeError> {
        match self.text()? {
            "" => Ok(None),
            name => PeerName::parse(name).map(Some).map_err(|_| DecodeError::Id),
        }
    }

    fn user(&mut self) -> Result<UserStats, DecodeError> {
        let key = PeerKey(self.number()?);
        let id = self.optional_name()?;
        let dialect = match self.text()?.as_bytes() {
            [digit @ b'0'..=b'4'] => DialectKind::ALL[usize::from(digit - b'0')],
            _ => return Err(DecodeError::Field),
        };
        let state = match self.text()? {
            "idle" => State::Idle,
            "connecting" => State::Connecting,
            "connected" => State::Connected,
            _ => return Err(DecodeError::Field),
        };
        let target = self.optional_name()?;
        let room = match self.text()? {
            "" => None,
            room => Some(RoomId::parse(room).map_err(|_| DecodeError::Id)?),
        };
        let at = Duration::from_nanos(self.number()?);
        let connected_at = UNIX_EPOCH.checked_add(at).ok_or(DecodeError::Field)?;
        let ip: IpAddr = self.text()?.parse().map_err(|_| DecodeError::Field)?;
        Ok(UserStats {
            key,
            id,
            dialect,
            state,
            target,
            room,
            connected_at,
            ip,
        })
    }
}

/// Media (SFU) traffic between a member's node and its room's media node.
#[derive(Debug)]
pub enum MediaMessage {
    /// A member on another node asks the media node (`Q`).
    Request(Box<ForwardedRequest>),
    /// The media node answers or notifies (`E`).
    Event {
        /// The room it concerns.
        room: RoomId,
        /// Who hears it.
        to: MediaTarget,
        /// What.
        event: Event,
    },
}

/// A media request forwarded to the room's media node.
#[derive(Debug)]
pub struct ForwardedRequest {
    /// The member's node.
    pub node: NodeId,
    /// The member's key there.
    pub key: PeerKey,
    /// The room.
    pub room: RoomId,
    /// The member's name in it.
    pub name: PeerName,
    /// The member's membership epoch.
    pub epoch: u32,
    /// Which request.
    pub request: MediaRequest,
    /// Its `data`, raw.
    pub data: RawJson,
    /// Its request id.
    pub rid: Option<RawJson>,
}

/// Who hears a media event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaTarget {
    /// One member on the receiving node.
    Peer(PeerKey),
    /// Every member of the room on the receiving node but `except` (node and key).
    Room {
        /// The member not to tell (the one whose action it is).
        except: (NodeId, PeerKey),
    },
}

/// The media event kinds the SFU sends, so a decoded one is one of them.
const MEDIA_KINDS: [&str; 9] = [
    "routerRtpCapabilities",
    "webRtcTransportCreated",
    "transportConnected",
    "produced",
    "consumed",
    "consumerResumed",
    "producerClosed",
    "new-producer",
    "producer-closed",
];

/// Whether `bytes` is a media message (decoded by [`decode_media`]).
pub fn is_media(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) && matches!(bytes.get(MAGIC.len()), Some(b'Q' | b'E'))
}

/// Encodes a forwarded media request.
pub fn media_request(out: &mut Vec<u8>, request: &ForwardedRequest) {
    out.extend_from_slice(MAGIC);
    out.push(b'Q');
    field(out, request.node.to_string().as_bytes());
    field(out, request.key.0.to_string().as_bytes());
    field(out, request.room.as_str().as_bytes());
    field(out, request.name.as_str().as_bytes());
    field(out, request.epoch.to_string().as_bytes());
    let name = MediaRequest::ALL
        .iter()
        .find(|(r, _)| *r == request.request)
        .map_or("", |(_, wire)| wire);
    field(out, name.as_bytes());
    field(out, request.data.as_str().as_bytes());
    optional_json(out, request.rid.as_ref());
}

/// Encodes a media event from `origin` (the media node).
pub fn media_event(
    out: &mut Vec<u8>,
    origin: NodeId,
    room: &RoomId,
    to: &MediaTarget,
    event: &Event,
) {
    out.extend_from_slice(MAGIC);
    out.push(b'E');
    field(out, origin.to_string().as_bytes());
    field(out, room.as_str().as_bytes());
    match to {
        MediaTarget::Peer(key) => {
            field(out, b"p");
            field(out, key.0.to_string().as_bytes());
        }
        MediaTarget::Room { except } => {
            field(out, b"r");
            field(out, except.0.to_string().as_bytes());
            field(out, except.1 .0.to_string().as_bytes());
        }
    }
    match event {
        Event::Media(media) => {
            field(out, b"m");
            field(out, media.kind.as_bytes());
            field(out, media.data.as_str().as_bytes());
            optional_json(out, media.rid.as_ref());
        }
        Event::Error(error) => {
            field(out, b"e");
            field(out, error.code.as_str().as_bytes());
            field(out, error.message.as_bytes());
            optional_json(out, error.rid.as_ref());
        }
        // Nothing else comes from the SFU.
        _ => field(out, b"-"),
    }
}

fn optional_json(out: &mut Vec<u8>, json: Option<&RawJson>) {
    match json {
        Some(json) => {
            field(out, b"1");
            field(out, json.as_str().as_bytes());
        }
        None => field(out, b"0"),
    }
}

/// Decodes a media message of at most `max` bytes; the origin node comes first.
pub fn decode_media(
    bytes: &Bytes,
    max: usize,
) -> Result<(Option<NodeId>, MediaMessage), DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge);
    }
    if !is_media(bytes) {
        return Err(DecodeError::Kind);
    }
    let mut reader = Reader {
        bytes,
        at: MAGIC.len() + 1,
    };
    let decoded = if bytes[MAGIC.len()] == b'Q' {
        let node = reader.node()?;
        let key = PeerKey(reader.number()?);
        let room = reader.room()?;
        let name = reader.name()?;
        let epoch = u32::try_from(reader.number()?).map_err(|_| DecodeError::Field)?;
        let request = MediaRequest::from_name(reader.text()?).ok_or(DecodeError::Field)?;
        let data = reader.json()?;
        let rid = reader.optional_json()?;
        (
            None,
            MediaMessage::Request(Box::new(ForwardedRequest {
                node,
                key,
                room,
                name,
                epoch,
                request,
                data,
                rid,
            })),
        )
    } else {
        let origin = reader.node()?;
        let room = reader.room()?;
        let to = match reader.text()? {
            "p" => MediaTarget::Peer(PeerKey(reader.number()?)),
            "r" => MediaTarget::Room {
                except: (reader.node()?, PeerKey(reader.number()?)),
            },
            _ => return Err(DecodeError::Field),
        };
        let event = match reader.text()? {
            "m" => {
                let kind = reader.text()?;
                let kind = MEDIA_KINDS
                    .iter()
                    .find(|k| **k == kind)
                    .ok_or(DecodeError::Field)?;
                let data = reader.json()?;
                let rid = reader.optional_json()?;
                Event::Media(Box::new(MediaEvent { kind, data, rid }))
            }
            "e" => {
                let code = reader.text()?;
                let code = ErrorCode::ALL
                    .iter()
                    .copied()
                    .find(|c| c.as_str() == code)
                    .ok_or(DecodeError::Field)?;
                let message = Arc::from(reader.text()?);
                let rid = reader.optional_json()?;
                Event::Error(Box::new(ErrorEvent { code, message, rid }))
            }
            _ => return Err(DecodeError::Field),
        };
        (Some(origin), MediaMessage::Event { room, to, event })
    };
    if reader.at != bytes.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(decoded)
}

impl Reader<'_> {
    fn optional_json(&mut self) -> Result<Option<RawJson>, DecodeError> {
        if self.flag()? {
            self.json().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A resumable session's socket carried between two nodes: the node that holds the client's
/// socket (`node`) numbers its tunnels (`id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelId {
    /// The node that holds the client's socket.
    pub node: NodeId,
    /// That node's number for the tunnel.
    pub id: u64,
}

/// A resume that found no session on the node the client reached: asked of every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knock {
    /// Where the client's socket is.
    pub tunnel: TunnelId,
    /// The SHA-256 of the token the client presented (never the token itself).
    pub hash: [u8; 32],
    /// The last frame the client processed.
    pub seq: u64,
    /// The client's address (for the session node's failure budget).
    pub ip: IpAddr,
    /// The subject of the client's access token, with `--auth`.
    pub subject: Option<String>,
}

/// What one end of a tunnel says to the other: a WebSocket frame, or the tunnel's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelFrame {
    /// A text frame (valid UTF-8, checked when decoded).
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A ping (session node to client) or a pong (client to session node).
    Ping,
    /// The client answered a ping.
    Pong,
    /// A close frame with its code and reason (valid UTF-8).
    Close(u16, Bytes),
    /// The session refused the resume (a position outside its buffer, another subject): the
    /// client's node carries its socket on as a fresh session.
    Refused,
    /// The other end is gone, without a close frame.
    Gone,
}

/// One frame of a tunnel. `n` numbers each direction's frames (1, 2, …), so a frame lost on
/// the way (pub/sub is at most once) ends the tunnel instead of going unnoticed; `Gone` may
/// come with 0, from anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelMessage {
    /// The tunnel.
    pub tunnel: TunnelId,
    /// The node that sent this.
    pub from: NodeId,
    /// This direction's frame number.
    pub n: u64,
    /// The frame.
    pub frame: TunnelFrame,
}

/// A resume across nodes: a knock, or a tunnel's frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeMessage {
    /// Who has this session?
    Knock(Knock),
    /// A frame through a tunnel.
    Tunnel(TunnelMessage),
}

/// The longest access-token subject a knock carries.
const MAX_SUBJECT: usize = 1024;

/// Whether `bytes` is a resume message (decoded by [`decode_resume`]).
pub fn is_resume(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) && matches!(bytes.get(MAGIC.len()), Some(b'W' | b'X'))
}

/// Encodes a knock.
pub fn knock(out: &mut Vec<u8>, knock: &Knock) {
    out.extend_from_slice(MAGIC);
    out.push(b'W');
    field(out, knock.tunnel.node.to_string().as_bytes());
    field(out, knock.tunnel.id.to_string().as_bytes());
    let mut hash = String::with_capacity(64);
    for byte in knock.hash {
        hash.push_str(&format!("{byte:02x}"));
    }
    field(out, hash.as_bytes());
    field(out, knock.seq.to_string().as_bytes());
    field(out, knock.ip.to_string().as_bytes());
    match &knock.subject {
        Some(subject) => {
            field(out, b"1");
            field(out, subject.as_bytes());
        }
        None => field(out, b"0"),
    }
}

/// Encodes a tunnel's frame.
pub fn tunnel(out: &mut Vec<u8>, message: &TunnelMessage) {
    out.extend_from_slice(MAGIC);
    out.push(b'X');
    field(out, message.tunnel.node.to_string().as_bytes());
    field(out, message.tunnel.id.to_string().as_bytes());
    field(out, message.from.to_string().as_bytes());
    field(out, message.n.to_string().as_bytes());
    let (op, payload, code): (&[u8], &[u8], u16) = match &message.frame {
        TunnelFrame::Text(bytes) => (b"t", bytes, 0),
        TunnelFrame::Binary(bytes) => (b"b", bytes, 0),
        TunnelFrame::Ping => (b"p", b"", 0),
        TunnelFrame::Pong => (b"P", b"", 0),
        TunnelFrame::Close(code, reason) => (b"c", reason, *code),
        TunnelFrame::Refused => (b"f", b"", 0),
        TunnelFrame::Gone => (b"g", b"", 0),
    };
    field(out, op);
    field(out, payload);
    field(out, code.to_string().as_bytes());
}

/// Decodes a resume message of at most `max` bytes, as untrusted as any other.
pub fn decode_resume(bytes: &Bytes, max: usize) -> Result<ResumeMessage, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge);
    }
    if !is_resume(bytes) {
        return Err(DecodeError::Kind);
    }
    let mut reader = Reader {
        bytes,
        at: MAGIC.len() + 1,
    };
    let tunnel = TunnelId {
        node: reader.node()?,
        id: reader.number()?,
    };
    let message = if bytes[MAGIC.len()] == b'W' {
        let hex = reader.text()?;
        let mut hash = [0u8; 32];
        if hex.len() != 64 {
            return Err(DecodeError::Field);
        }
        for (i, byte) in hash.iter_mut().enumerate() {
            let digits = hex.get(i * 2..i * 2 + 2).ok_or(DecodeError::Field)?;
            *byte = u8::from_str_radix(digits, 16).map_err(|_| DecodeError::Field)?;
        }
        let seq = reader.number()?;
        let ip = reader.text()?.parse().map_err(|_| DecodeError::Field)?;
        let subject = if reader.flag()? {
            let subject = reader.text()?;
            if subject.len() > MAX_SUBJECT {
                return Err(DecodeError::Field);
            }
            Some(subject.to_owned())
        } else {
            None
        };
        ResumeMessage::Knock(Knock {
            tunnel,
            hash,
            seq,
            ip,
            subject,
        })
    } else {
        let from = reader.node()?;
        let n = reader.number()?;
        let op = reader.text()?.to_owned();
        let payload = reader.bytes()?;
        let code = u16::try_from(reader.number()?).map_err(|_| DecodeError::Field)?;
        let utf8 = |bytes: Bytes| match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(bytes),
            Err(_) => Err(DecodeError::Field),
        };
        let frame = match op.as_str() {
            "t" => TunnelFrame::Text(utf8(payload)?),
            "b" => TunnelFrame::Binary(payload),
            "p" => TunnelFrame::Ping,
            "P" => TunnelFrame::Pong,
            // RFC 6455 5.5: a close frame's reason fits in 123 bytes.
            "c" if payload.len() <= 123 => TunnelFrame::Close(code, utf8(payload)?),
            "f" => TunnelFrame::Refused,
            "g" => TunnelFrame::Gone,
            _ => return Err(DecodeError::Field),
        };
        ResumeMessage::Tunnel(TunnelMessage {
            tunnel,
            from,
            n,
            frame,
        })
    };
    if reader.at != bytes.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(text: &str) -> RoomId {
        RoomId::parse(text).unwrap()
    }

    #[test]
    fn relays_and_frames_survive_the_trip_byte_for_byte() {
        let signal = Signal {
            frames: Default::default(),
            from: PeerName::parse("alice").unwrap(),
            origin: DialectKind::RoomRelay,
            addressed: false,
            message: Message {
                kind: SignalKind::Other(Arc::from("custom:thing")),
                payload: Some(RawJson::new(r#"{"sdp":"v=0\r\n","n":[1,2]}"#)),
                text: None,
                timestamp: Some(Arc::from("2026-12-02T00:00:00Z")),
                fields: Some(RawJson::new(r#""x":1"#)),
            },
        };
        let mut out = Vec::new();
        relay(&mut out, NodeId(7), &room("r:1"), None, &signal);
        let decoded = decode(&Bytes::from(out), 1 << 20).unwrap();
        assert_eq!(decoded.origin, Some(NodeId(7)));
        let Inbound::Relay {
            room: r,
            to,
            signal: back,
        } = decoded.inbound
        else {
            panic!()
        };
        assert_eq!((r.as_str(), to), ("r:1", None));
        assert_eq!(back.from.as_str(), "alice");
        assert_eq!(back.origin, DialectKind::RoomRelay);
        assert_eq!(back.message.kind, signal.message.kind);
        assert_eq!(back.message.payload, signal.message.payload);
        assert_eq!(back.message.text, None);
        assert_eq!(back.message.timestamp, signal.message.timestamp);
        assert_eq!(back.message.fields, signal.message.fields);

        let bytes = Bytes::from_static(&[0, 159, 255, 10]);
        let mut out = Vec::new();
        frame(
            &mut out,
            NodeId(1),
            &room("c"),
            &RawFrame::Binary(bytes.clone()),
        );
        let decoded = decode(&Bytes::from(out), 1 << 20).unwrap();
        let Inbound::Frame {
            frame: RawFrame::Binary(back),
            ..
        } = decoded.inbound
        else {
            panic!()
        };
        assert_eq!(back, bytes);
    }

    #[test]
    fn membership_messages_as_the_scripts_write_them() {
        let roster = Bytes::from_static(
            b"SB1R1:r2:4216:00000000000000ab1:15:alice16:00000000000000ab1:32:421:0",
        );
        let Inbound::Roster { media, seats, .. } = decode(&roster, 1024).unwrap().inbound else {
            panic!()
        };
        assert_eq!((media, seats.len()), (Some(NodeId(0xab)), 1));
        let joined = Bytes::from_static(b"SB1J1:r2:425:alice16:00000000000000ab1:32:421:0");
        let decoded = decode(&joined, 1024).unwrap();
        let Inbound::Joined { room, rseq, seat } = decoded.inbound else {
            panic!()
        };
        assert_eq!((room.as_str(), rseq), ("r", 42));
        assert_eq!(seat.node, NodeId(0xab));
        assert_eq!((seat.key, seat.seq, seat.durable), (PeerKey(3), 42, false));
        // Kept for durable member bob at place 7 of his inbox, then published.
        let held =
            Bytes::from_static(b"SB1H1:13:bob1:7SB1J1:r2:425:alice16:00000000000000ab1:32:421:1");
        let Inbound::Retained { inboxes, inner } = decode(&held, 1024).unwrap().inbound else {
            panic!()
        };
        assert_eq!(inboxes, [(PeerName::parse("bob").unwrap(), 7)]);
        assert!(matches!(*inner, Inbound::Joined { seat, .. } if seat.durable));
        let moved = Bytes::from_static(b"SB1O1:r2:435:alice16:00000000000000cd1:92:421:1");
        let Inbound::Moved { seat, .. } = decode(&moved, 1024).unwrap().inbound else {
            panic!()
        };
        assert_eq!((seat.node, seat.key), (NodeId(0xcd), PeerKey(9)));
        // Only a relay, join or leave is kept, and only once.
        let nested = Bytes::from_static(b"SB1H1:0SB1H1:0SB1D16:00000000000000ab");
        assert_eq!(decode(&nested, 1024).unwrap_err(), DecodeError::Kind);
    }

    #[test]
    fn bad_envelopes_are_typed_errors() {
        let cases: [(&[u8], DecodeError); 8] = [
            (b"XX1J", DecodeError::Magic),
            (b"SB1", DecodeError::Kind),
            (b"SB1Z", DecodeError::Kind),
            (b"SB1L1:r", DecodeError::Field),
            (b"SB1L1:r1:11:ax", DecodeError::Trailing),
            (b"SB1L0:1:11:a", DecodeError::Id),
            (b"SB1L1:r99999999999999999999:1:1:a", DecodeError::Field),
            (b"SB1D3:xyz", DecodeError::Id),
        ];
        for (bytes, error) in cases {
            let bytes = Bytes::copy_from_slice(bytes);
            assert_eq!(decode(&bytes, 1024).unwrap_err(), error, "{bytes:?}");
        }
        let big = Bytes::from(vec![b'x'; 2000]);
        assert_eq!(decode(&big, 1024).unwrap_err(), DecodeError::TooLarge);
    }

    #[test]
    fn stats_answers_survive_the_trip() {
        let stats = Stats {
            connected: 7,
            rooms: 0,
            users: vec![UserStats {
                key: PeerKey(3),
                id: Some(PeerName::parse("alice").unwrap()),
                dialect: DialectKind::Conference,
                state: State::Connected,
                target: None,
                room: Some(room("r")),
                connected_at: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
                ip: "127.0.0.1".parse().unwrap(),
            }],
        };
        let mut out = Vec::new();
        stats_reply(&mut out, 9, NodeId(2), &stats);
        let Ok(StatsMessage::Reply {
            id,
            node,
            stats: back,
        }) = decode_stats(&Bytes::from(out), 1 << 20)
        else {
            panic!()
        };
        assert_eq!((id, node, back.connected), (9, NodeId(2), 7));
        let user = &back.users[0];
        assert_eq!(user.id.as_ref().map(PeerName::as_str), Some("alice"));
        assert_eq!(user.connected_at, stats.users[0].connected_at);
        assert_eq!(user.room.as_ref().map(RoomId::as_str), Some("r"));
        let bad = Bytes::from_static(b"SB1T1:92:zz1:01:0");
        assert_eq!(decode_stats(&bad, 1024).unwrap_err(), DecodeError::Id);
    }

    #[test]
    fn resume_messages_survive_the_trip_and_bad_ones_are_typed_errors() {
        let tunnel = TunnelId {
            node: NodeId(0xb),
            id: 7,
        };
        let knocked = Knock {
            tunnel,
            hash: [0xab; 32],
            seq: 41,
            ip: "192.0.2.1".parse().unwrap(),
            subject: Some("alice".into()),
        };
        let mut out = Vec::new();
        knock(&mut out, &knocked);
        let decoded = decode_resume(&Bytes::from(out.clone()), 1 << 16).unwrap();
        assert_eq!(decoded, ResumeMessage::Knock(knocked));
        let frames = [
            TunnelFrame::Text(Bytes::from_static(b"{\"seq\":1}")),
            TunnelFrame::Binary(Bytes::from_static(&[0, 255, 1])),
            TunnelFrame::Ping,
            TunnelFrame::Pong,
            TunnelFrame::Close(4001, Bytes::from_static(b"session resumed")),
            TunnelFrame::Refused,
            TunnelFrame::Gone,
        ];
        for (n, frame) in frames.into_iter().enumerate() {
            let message = TunnelMessage {
                tunnel,
                from: NodeId(0xa),
                n: n as u64,
                frame,
            };
            let mut out = Vec::new();
            super::tunnel(&mut out, &message);
            let decoded = decode_resume(&Bytes::from(out), 1 << 16).unwrap();
            assert_eq!(decoded, ResumeMessage::Tunnel(message));
        }
        // Text that is not UTF-8, a short hash, a truncation, trailing bytes, too large.
        let bad_text = b"SB1X16:000000000000000b1:716:000000000000000a1:11:t2:\xff\xfe1:0";
        assert_eq!(
            decode_resume(&Bytes::from_static(bad_text), 1 << 16),
            Err(DecodeError::Field)
        );
        let short = b"SB1W16:000000000000000b1:72:ab2:411:1.2.3.41:0";
        assert_eq!(
            decode_resume(&Bytes::from_static(short), 1 << 16),
            Err(DecodeError::Field)
        );
        let truncated = Bytes::from(out[..out.len() - 3].to_vec());
        assert!(decode_resume(&truncated, 1 << 16).is_err());
        let mut trailing = out.clone();
        trailing.push(b'x');
        assert_eq!(
            decode_resume(&Bytes::from(trailing), 1 << 16),
            Err(DecodeError::Trailing)
        );
        assert_eq!(
            decode_resume(&Bytes::from(out), 10),
            Err(DecodeError::TooLarge)
        );
    }

    #[test]
    fn media_messages_survive_the_trip() {
        let request = ForwardedRequest {
            node: NodeId(5),
            key: PeerKey(8),
            room: room("r"),
            name: PeerName::parse("bob").unwrap(),
            epoch: 2,
            request: MediaRequest::Produce,
            data: RawJson::new(r#"{"kind":"video"}"#),
            rid: Some(RawJson::new("7")),
        };
        let mut out = Vec::new();
        media_request(&mut out, &request);
        let (_, MediaMessage::Request(back)) = decode_media(&Bytes::from(out), 1 << 20).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (back.node, back.key, back.epoch),
            (NodeId(5), PeerKey(8), 2)
        );
        assert_eq!(back.request, MediaRequest::Produce);
        assert_eq!(back.data.as_str(), r#"{"kind":"video"}"#);
        let event = Event::Media(Box::new(MediaEvent {
            kind: "new-producer",
            data: RawJson::new(r#"{"producerId":"p1"}"#),
            rid: None,
        }));
        let to = MediaTarget::Room {
            except: (NodeId(5), PeerKey(8)),
        };
        let mut out = Vec::new();
        media_event(&mut out, NodeId(1), &room("r"), &to, &event);
        let (
            origin,
            MediaMessage::Event {
                room: r,
                to: t,
                event,
            },
        ) = decode_media(&Bytes::from(out), 1 << 20).unwrap()
        else {
            panic!()
        };
        assert_eq!((origin, r.as_str(), t), (Some(NodeId(1)), "r", to));
        assert!(matches!(event, Event::Media(m) if m.kind == "new-producer"));
        let unknown = Bytes::from_static(b"SB1E1:11:r1:p1:31:m4:evil2:{}1:0");
        assert_eq!(
            decode_media(&unknown, 1024).unwrap_err(),
            DecodeError::Field
        );
    }
}
