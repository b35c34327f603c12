//! room-relay, seed 002 (`/room-relay`). `join-room` / `leave-room` with `roomId` and
//! `sender`; every other type is forwarded verbatim to the room (or to `target`), with
//! `sender` set by the server. One room per connection.

use std::sync::Arc;

use switchboard_core::{
    Command, CoreError, DialectKind, Event, Joined, Message, PeerName, RawJson, Signal, SignalKind,
};

use crate::frame::{self, push_str, Fields};
use crate::{Dialect, Outbound, WireError};

/// The room-relay dialect.
pub struct RoomRelay;

/// What a room-relay connection knows about itself.
#[derive(Debug, Default)]
pub struct Session {
    name: Option<PeerName>,
}

/// The server's own message types; a client may not send them.
const RESERVED: [&str; 4] = ["join-success", "user-joined", "user-left", "error"];

impl Dialect for RoomRelay {
    const KIND: DialectKind = DialectKind::RoomRelay;
    type Session = Session;

    fn decode<'a>(_session: &mut Session, text: &'a str) -> Result<Command<'a>, WireError> {
        let fields = Fields::parse(text)?;
        let kind = fields.kind()?;
        match kind.as_ref() {
            "join-room" => {
                let room = frame::room_id("roomId", &fields.required("roomId")?)?;
                let name = frame::peer_name("sender", &fields.required("sender")?)?;
                return Ok(Command::Join {
                    room,
                    name,
                    rid: None,
                });
            }
            "leave-room" => {
                return Ok(Command::Leave {
                    room: fields.string("roomId")?,
                    rid: None,
                })
            }
            reserved if RESERVED.contains(&reserved) => {
                return Err(CoreError::ReservedType(kind.into_owned()).into())
            }
            _ => {}
        }
        let to = fields.string("target")?;
        let room = fields.string("roomId")?;
        let kind = match kind.as_ref() {
            "offer" => SignalKind::Offer,
            "answer" => SignalKind::Answer,
            "ice-candidate" => SignalKind::IceCandidate,
            "chat" => SignalKind::Chat,
            other => SignalKind::Other(Arc::from(other)),
        };
        let text = match kind {
            // A chat whose `message` is not a string still relays verbatim; it just has no
            // text for the dialects that need one.
            SignalKind::Chat => fields
                .string("message")
                .ok()
                .flatten()
                .map(|text| Arc::from(text.as_ref())),
            _ => None,
        };
        let message = Message {
            payload: body(&fields, text.is_some()),
            kind,
            text,
            timestamp: None,
            fields: Some(verbatim(&fields)),
        };
        Ok(Command::Send {
            to,
            room,
            echo: false,
            message,
            rid: None,
        })
    }

    fn encode(session: &mut Session, event: &Event, out: &mut String) -> Outbound {
        out.clear();
        match event {
            Event::Joined(joined) => {
                let Joined {
                    room,
                    name,
                    members,
                    ..
                } = &**joined;
                session.name = Some(name.clone());
                out.push_str(r#"{"type":"join-success","roomId":"#);
                push_str(out, room.as_str());
                out.push_str(r#","userId":"#);
                push_str(out, name.as_str());
                out.push_str(r#","users":["#);
                let mut first = true;
                for member in members.iter().filter(|member| *member != name) {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    push_str(out, member.as_str());
                }
                out.push_str("]}");
            }
            Event::PeerJoined(joined) => presence(out, "user-joined", &joined.name),
            Event::PeerLeft(left) => presence(out, "user-left", &left.name),
            Event::Signal(signal) => return encode_signal(session, signal, out),
            Event::Error(error) => {
                out.push_str(r#"{"type":"error","code":""#);
                out.push_str(error.code.as_str());
                out.push_str(r#"","message":"#);
                push_str(out, &error.message);
                out.push('}');
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

/// The body other dialects receive: `data` when present; otherwise (a seed-004-style frame
/// such as `{"type":"offer","sdp":...}`) an object of the frame's own members.
fn body(fields: &Fields<'_>, is_chat_text: bool) -> Option<RawJson> {
    if let Some(data) = fields.raw("data") {
        return Some(frame::raw_json(data));
    }
    if is_chat_text {
        return None;
    }
    let mut out = String::from("{");
    for (key, value) in fields.iter() {
        if !matches!(key, "type" | "sender" | "roomId" | "target") {
            if out.len() > 1 {
                out.push(',');
            }
            push_str(&mut out, key);
            out.push(':');
            out.push_str(value.get());
        }
    }
    (out.len() > 1).then(|| {
        out.push('}');
        RawJson::new(&out)
    })
}

/// The frame's members but `type` and `sender`, as `"k":v,...`, for room-relay receivers.
fn verbatim(fields: &Fields<'_>) -> RawJson {
    let mut out = String::new();
    for (key, value) in fields.iter() {
        if key != "type" && key != "sender" {
            out.push(',');
            push_str(&mut out, key);
            out.push(':');
            out.push_str(value.get());
        }
    }
    RawJson::new(&out)
}

fn kind_name(kind: &SignalKind) -> Option<&str> {
    Some(match kind {
        SignalKind::Offer => "offer",
        SignalKind::Answer => "answer",
        SignalKind::IceCandidate => "ice-candidate",
        SignalKind::Chat => "chat",
        SignalKind::Other(kind) => kind,
        SignalKind::Ping | SignalKind::Pong | SignalKind::Disconnect => return None,
    })
}

fn encode_signal(session: &Session, signal: &Signal, out: &mut String) -> Outbound {
    let message = &signal.message;
    let Some(kind) = kind_name(&message.kind) else {
        return Outbound::Skip;
    };
    out.push_str(r#"{"type":"#);
    push_str(out, kind);
    out.push_str(r#","sender":"#);
    push_str(out, signal.from.as_str());
    match (&message.fields, &message.text) {
        // From another room-relay peer: the frame as it was sent, `sender` replaced.
        (Some(fields), _) if signal.origin == DialectKind::RoomRelay => {
            out.push_str(fields.as_str());
        }
        (_, Some(text)) if message.kind == SignalKind::Chat => {
            out.push_str(r#","message":"#);
            push_str(out, text);
        }
        _ => {
            out.push_str(r#","data":"#);
            out.push_str(message.payload.as_ref().map_or("null", RawJson::as_str));
            if signal.addressed {
                if let Some(name) = &session.name {
                    out.push_str(r#","target":"#);
                    push_str(out, name.as_str());
                }
            }
        }
    }
    out.push('}');
    // Only an addressed message names its receiver (`target`).
    if signal.addressed {
        Outbound::Text
    } else {
        Outbound::TextForAll
    }
}

fn presence(out: &mut String, kind: &str, name: &PeerName) {
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","userId":"#);
    push_str(out, name.as_str());
    out.push('}');
}

#[cfg(test)]
mod tests {
    use switchboard_core::{ErrorCode, ErrorEvent, Presence, RoomId};

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
        let outbound = RoomRelay::encode(session, event, &mut out);
        assert!(matches!(outbound, Outbound::Text | Outbound::TextForAll));
        out
    }

    fn relay(text: &str, from: &str, to: &str) -> String {
        let command = RoomRelay::decode(&mut Session::default(), text).unwrap();
        let Command::Send {
            to: target,
            message,
            ..
        } = command
        else {
            panic!()
        };
        let signal = Signal {
            frames: Default::default(),
            from: name(from),
            origin: DialectKind::RoomRelay,
            addressed: target.is_some(),
            message,
        };
        encode(&mut session(to), &Event::Signal(Arc::new(signal)))
    }

    #[test]
    fn join_room_from_the_seed() {
        let command = RoomRelay::decode(
            &mut Session::default(),
            r#"{"type":"join-room","roomId":"r1","sender":"u1"}"#,
        )
        .unwrap();
        let Command::Join { room, name, .. } = command else {
            panic!()
        };
        assert_eq!((room.as_str(), name.as_str()), ("r1", "u1"));
    }

    #[test]
    fn join_success_lists_the_others() {
        let event = Event::Joined(Box::new(Joined {
            room: RoomId::parse("r1").unwrap(),
            name: name("u2"),
            members: Arc::from([name("u1"), name("u2")]),
            rid: None,
            ice_servers: None,
            media: None,
        }));
        assert_eq!(
            encode(&mut Session::default(), &event),
            r#"{"type":"join-success","roomId":"r1","userId":"u2","users":["u1"]}"#
        );
        let event = Event::PeerJoined(Arc::new(Presence {
            room: RoomId::parse("r1").unwrap(),
            name: name("u3"),
        }));
        assert_eq!(
            encode(&mut session("u2"), &event),
            r#"{"type":"user-joined","userId":"u3"}"#
        );
        let event = Event::PeerLeft(Arc::new(Presence {
            room: RoomId::parse("r1").unwrap(),
            name: name("u3"),
        }));
        assert_eq!(
            encode(&mut session("u2"), &event),
            r#"{"type":"user-left","userId":"u3"}"#
        );
    }

    #[test]
    fn the_seeds_signal_and_chat_forward_verbatim_with_server_sender() {
        assert_eq!(
            relay(
                r#"{"type":"offer","roomId":"r1","sender":"mallory","data":{"sdp":"v=0"}}"#,
                "u1",
                "u2"
            ),
            r#"{"type":"offer","sender":"u1","roomId":"r1","data":{"sdp":"v=0"}}"#
        );
        assert_eq!(
            relay(
                r#"{"type":"chat","roomId":"r1","sender":"u1","message":"你好"}"#,
                "u1",
                "u2"
            ),
            r#"{"type":"chat","sender":"u1","roomId":"r1","message":"你好"}"#
        );
        assert_eq!(
            relay(r#"{"type":"answer","target":"u2","data":{}}"#, "u1", "u2"),
            r#"{"type":"answer","sender":"u1","target":"u2","data":{}}"#
        );
    }

    #[test]
    fn frames_without_data_carry_their_members_to_other_dialects() {
        let command = RoomRelay::decode(
            &mut Session::default(),
            r#"{"type":"offer","sdp":{"a":1},"sender":"x"}"#,
        )
        .unwrap();
        let Command::Send { message, .. } = command else {
            panic!()
        };
        assert_eq!(message.payload.unwrap().as_str(), r#"{"sdp":{"a":1}}"#);
    }

    #[test]
    fn signals_from_other_dialects_arrive_as_data_with_target() {
        let message = Message::new(
            SignalKind::IceCandidate,
            Some(RawJson::new(r#"{"candidate":"c"}"#)),
        );
        let signal = Signal {
            frames: Default::default(),
            from: name("q"),
            origin: DialectKind::QueryRooms,
            addressed: true,
            message,
        };
        assert_eq!(
            encode(&mut session("u2"), &Event::Signal(Arc::new(signal))),
            r#"{"type":"ice-candidate","sender":"q","data":{"candidate":"c"},"target":"u2"}"#
        );
        let mut message = Message::new(SignalKind::Chat, None);
        message.text = Some(Arc::from("hi"));
        let signal = Signal {
            frames: Default::default(),
            from: name("c"),
            origin: DialectKind::Conference,
            addressed: false,
            message,
        };
        assert_eq!(
            encode(&mut session("u2"), &Event::Signal(Arc::new(signal))),
            r#"{"type":"chat","sender":"c","message":"hi"}"#
        );
    }

    #[test]
    fn refusals() {
        let code = |text| {
            RoomRelay::decode(&mut Session::default(), text)
                .unwrap_err()
                .code
        };
        assert_eq!(code(r#"{"type":"user-joined"}"#), ErrorCode::ReservedType);
        assert_eq!(
            code(r#"{"type":"join-room","roomId":"r"}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"type":"join-room","roomId":"r","sender":""}"#),
            ErrorCode::BadId
        );
        let event = Event::Error(Box::new(ErrorEvent {
            code: ErrorCode::NotInRoom,
            message: Arc::from("join a room first"),
            rid: None,
        }));
        assert_eq!(
            encode(&mut session("u"), &event),
            r#"{"type":"error","code":"not_in_room","message":"join a room first"}"#
        );
    }
}
