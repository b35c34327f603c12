//! query-rooms, seed 000 (`/ws?peer_id=ID&room=ROOM`). The room and identity come from the
//! URL (checked before the upgrade); frames are `{"type","to","payload"}`, relayed to one
//! peer or the whole room with a server-stamped `from`.

use std::sync::Arc;

use switchboard_core::{
    Command, CoreError, DialectKind, Event, Message, PeerName, Presence, RoomId, Signal, SignalKind,
};

use crate::frame::{self, push_key, push_str, Fields};
use crate::{Dialect, Outbound, WireError};

/// The query-rooms dialect.
pub struct QueryRooms;

/// What a query-rooms connection knows about itself.
#[derive(Debug, Default)]
pub struct Session {
    name: Option<PeerName>,
}

/// The server's own message types; a client may not send them.
const RESERVED: [&str; 3] = ["peer_joined", "peer_left", "error"];

impl QueryRooms {
    /// Reads the identity from the upgrade URL's `peer_id` and `room`. The error says what
    /// is wrong, for the HTTP 400 body.
    pub fn identity(
        peer_id: Option<&str>,
        room: Option<&str>,
    ) -> Result<(RoomId, PeerName), String> {
        let peer_id = peer_id.ok_or("missing query parameter peer_id")?;
        let room = room.ok_or("missing query parameter room")?;
        let name = PeerName::parse(peer_id).map_err(|e| format!("peer_id: {e}"))?;
        let room = RoomId::parse(room).map_err(|e| format!("room: {e}"))?;
        Ok((room, name))
    }
}

impl Dialect for QueryRooms {
    const KIND: DialectKind = DialectKind::QueryRooms;
    type Session = Session;

    fn decode<'a>(_session: &mut Session, text: &'a str) -> Result<Command<'a>, WireError> {
        let fields = Fields::parse(text)?;
        let kind = fields.kind()?;
        if RESERVED.contains(&kind.as_ref()) {
            return Err(CoreError::ReservedType(kind.into_owned()).into());
        }
        let to = fields.string("to")?;
        let payload = fields.raw("payload");
        let mut message = Message::new(signal_kind(&kind), payload.map(frame::raw_json));
        if message.kind == SignalKind::Chat {
            // Other dialects' chats carry text: take it from `payload.text` when there is one.
            let text = payload
                .and_then(|raw| Fields::parse(raw.get()).ok())
                .and_then(|body| body.string("text").ok().flatten());
            message.text = text.map(|text| Arc::from(text.as_ref()));
        }
        Ok(Command::Send {
            to,
            room: None,
            echo: false,
            message,
            rid: None,
        })
    }

    fn encode(session: &mut Session, event: &Event, out: &mut String) -> Outbound {
        out.clear();
        match event {
            Event::Joined(joined) => {
                session.name = Some(joined.name.clone());
                return Outbound::Skip; // query-rooms has no join reply: the upgrade is it
            }
            Event::PeerJoined(joined) => presence(out, "peer_joined", joined),
            Event::PeerLeft(left) => presence(out, "peer_left", left),
            Event::Signal(signal) => return encode_signal(session, signal, out),
            Event::Error(error) => {
                out.push_str(r#"{"type":"error","payload":{"code":""#);
                out.push_str(error.code.as_str());
                out.push_str(r#"","message":"#);
                push_str(out, &error.message);
                out.push_str("}}");
            }
            Event::Greeting { .. }
            | Event::PartnerGone { .. }
            | Event::Frame(_)
            | Event::Media(_)
            | Event::Settled
            | Event::Retained(_) => return Outbound::Skip,
        }
        Outbound::Text
    }
}

fn signal_kind(kind: &str) -> SignalKind {
    match kind {
        "offer" => SignalKind::Offer,
        "answer" => SignalKind::Answer,
        "ice_candidate" => SignalKind::IceCandidate,
        "chat" => SignalKind::Chat,
        other => SignalKind::Other(Arc::from(other)),
    }
}

fn encode_signal(session: &Session, signal: &Signal, out: &mut String) -> Outbound {
    let message = &signal.message;
    let kind = match &message.kind {
        SignalKind::Offer => "offer",
        SignalKind::Answer => "answer",
        SignalKind::IceCandidate => "ice_candidate",
        SignalKind::Chat => "chat",
        SignalKind::Other(kind) => kind,
        SignalKind::Ping | SignalKind::Pong | SignalKind::Disconnect => return Outbound::Skip,
    };
    out.push_str(r#"{"type":"#);
    push_str(out, kind);
    out.push_str(r#","from":"#);
    push_str(out, signal.from.as_str());
    if signal.addressed {
        if let Some(name) = &session.name {
            out.push_str(r#","to":"#);
            push_str(out, name.as_str());
        }
    }
    out.push(',');
    push_key(out, "payload");
    match (&message.payload, &message.text) {
        (Some(payload), _) => out.push_str(payload.as_str()),
        // A chat from a dialect with a text field becomes `payload.text`.
        (None, Some(text)) => {
            out.push_str(r#"{"text":"#);
            push_str(out, text);
            if let Some(timestamp) = &message.timestamp {
                out.push_str(r#","timestamp":"#);
                push_str(out, timestamp);
            }
            out.push('}');
        }
        (None, None) => out.push_str("null"),
    }
    out.push('}');
    for_all_unless(signal.addressed)
}

/// A signal's frame names its receiver (`to`) only when it was addressed to it.
fn for_all_unless(addressed: bool) -> Outbound {
    if addressed {
        Outbound::Text
    } else {
        Outbound::TextForAll
    }
}

fn presence(out: &mut String, kind: &str, news: &Presence) {
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","from":"#);
    push_str(out, news.name.as_str());
    out.push_str(r#","payload":{"peer_id":"#);
    push_str(out, news.name.as_str());
    out.push_str(r#","room":"#);
    push_str(out, news.room.as_str());
    out.push_str("}}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchboard_core::{ErrorCode, ErrorEvent, RawJson};

    use super::*;

    fn name(text: &str) -> PeerName {
        PeerName::parse(text).unwrap()
    }

    fn session(who: &str) -> Session {
        Session {
            name: Some(name(who)),
        }
    }

    fn encode(session: &mut Session, event: &Event) -> String {
        let mut out = String::new();
        let outbound = QueryRooms::encode(session, event, &mut out);
        assert!(matches!(outbound, Outbound::Text | Outbound::TextForAll));
        out
    }

    #[test]
    fn the_seeds_example_offer_relays_with_server_from() {
        let text = r#"{"type":"offer","from":"peer1","to":"peer2","payload":{"sdp":"mock-sdp","timestamp":1234567890}}"#;
        let command = QueryRooms::decode(&mut Session::default(), text).unwrap();
        let Command::Send { to, message, .. } = command else {
            panic!()
        };
        assert_eq!(to.as_deref(), Some("peer2"));
        let signal = Signal {
            frames: Default::default(),
            from: name("peer1"),
            origin: DialectKind::QueryRooms,
            addressed: true,
            message,
        };
        assert_eq!(
            encode(&mut session("peer2"), &Event::Signal(Arc::new(signal))),
            r#"{"type":"offer","from":"peer1","to":"peer2","payload":{"sdp":"mock-sdp","timestamp":1234567890}}"#
        );
    }

    #[test]
    fn room_wide_messages_have_no_to_and_missing_payload_is_null() {
        let command = QueryRooms::decode(&mut Session::default(), r#"{"type":"hello"}"#).unwrap();
        let Command::Send {
            to: None, message, ..
        } = command
        else {
            panic!()
        };
        let signal = Signal {
            frames: Default::default(),
            from: name("a"),
            origin: DialectKind::QueryRooms,
            addressed: false,
            message,
        };
        assert_eq!(
            encode(&mut session("b"), &Event::Signal(Arc::new(signal))),
            r#"{"type":"hello","from":"a","payload":null}"#
        );
    }

    /// A room-wide frame may be shared among receivers only because no session shapes it;
    /// an addressed one names its receiver.
    #[test]
    fn only_room_wide_frames_are_the_same_for_all() {
        let signal = |addressed| {
            let message = Message::new(SignalKind::Offer, Some(RawJson::new("{}")));
            let signal = Signal {
                frames: Default::default(),
                from: name("a"),
                origin: DialectKind::QueryRooms,
                addressed,
                message,
            };
            Event::Signal(Arc::new(signal))
        };
        let (mut b, mut c) = (String::new(), String::new());
        let room_wide = signal(false);
        let outbound = QueryRooms::encode(&mut session("b"), &room_wide, &mut b);
        assert_eq!(outbound, Outbound::TextForAll);
        QueryRooms::encode(&mut session("c"), &room_wide, &mut c);
        assert_eq!(b, c);
        let addressed = QueryRooms::encode(&mut session("b"), &signal(true), &mut b);
        assert_eq!(addressed, Outbound::Text);
    }

    #[test]
    fn presence_carries_peer_id_and_room() {
        let room = RoomId::parse("test-room").unwrap();
        let event = Event::PeerJoined(Arc::new(Presence {
            room: room.clone(),
            name: name("peer1"),
        }));
        assert_eq!(
            encode(&mut session("peer2"), &event),
            r#"{"type":"peer_joined","from":"peer1","payload":{"peer_id":"peer1","room":"test-room"}}"#
        );
        let event = Event::PeerLeft(Arc::new(Presence {
            room,
            name: name("peer1"),
        }));
        assert_eq!(
            encode(&mut session("peer2"), &event),
            r#"{"type":"peer_left","from":"peer1","payload":{"peer_id":"peer1","room":"test-room"}}"#
        );
    }

    #[test]
    fn reserved_types_and_errors() {
        let error =
            QueryRooms::decode(&mut Session::default(), r#"{"type":"peer_left"}"#).unwrap_err();
        assert_eq!(error.code, ErrorCode::ReservedType);
        let error =
            QueryRooms::decode(&mut Session::default(), r#"{"type":"offer","to":3}"#).unwrap_err();
        assert_eq!(error.code, ErrorCode::BadField);
        let event = Event::Error(Box::new(ErrorEvent {
            code: ErrorCode::PeerNotFound,
            message: Arc::from("no peer named x in this room"),
            rid: None,
        }));
        assert_eq!(
            encode(&mut session("a"), &event),
            r#"{"type":"error","payload":{"code":"peer_not_found","message":"no peer named x in this room"}}"#
        );
    }

    #[test]
    fn chat_text_crosses_dialects() {
        let text = r#"{"type":"chat","payload":{"text":"hi"}}"#;
        let Command::Send { message, .. } =
            QueryRooms::decode(&mut Session::default(), text).unwrap()
        else {
            panic!()
        };
        assert_eq!(message.text.as_deref(), Some("hi"));
        let mut from_conference = Message::new(SignalKind::Chat, None);
        from_conference.text = Some(Arc::from("yo"));
        from_conference.timestamp = Some(Arc::from("2025-01-01T00:00:00Z"));
        let signal = Signal {
            frames: Default::default(),
            from: name("c"),
            origin: DialectKind::Conference,
            addressed: false,
            message: from_conference,
        };
        assert_eq!(
            encode(&mut session("a"), &Event::Signal(Arc::new(signal))),
            r#"{"type":"chat","from":"c","payload":{"text":"yo","timestamp":"2025-01-01T00:00:00Z"}}"#
        );
    }

    #[test]
    fn identity_comes_from_the_query() {
        assert!(QueryRooms::identity(Some("p"), Some("r")).is_ok());
        assert!(QueryRooms::identity(None, Some("r"))
            .unwrap_err()
            .contains("peer_id"));
        assert!(QueryRooms::identity(Some("p"), None)
            .unwrap_err()
            .contains("room"));
        assert!(QueryRooms::identity(Some(""), Some("r")).is_err());
    }
}
