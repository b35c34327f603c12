//! conference, seed 003 and switchboard's native dialect (`/conference`, and `/` by default).
//! Envelope `{"type":T,"data":{...},"rid":R?}`; `rid` is echoed on the direct reply or error.

use std::sync::Arc;

use switchboard_core::{
    Command, DialectKind, ErrorEvent, Event, Joined, MediaEvent, MediaRequest, Message, PeerName,
    RawJson, SignalKind,
};

use crate::frame::{self, push_key, push_rid, push_str, Fields};
use crate::{Dialect, Outbound, WireError};

/// The conference dialect.
pub struct Conference;

/// What a conference connection knows about itself.
#[derive(Debug, Default)]
pub struct Session {
    /// The name it joined under: a room-wide signal from another dialect is addressed to it.
    name: Option<PeerName>,
}

impl Dialect for Conference {
    const KIND: DialectKind = DialectKind::Conference;
    type Session = Session;

    fn decode<'a>(_session: &mut Session, text: &'a str) -> Result<Command<'a>, WireError> {
        let fields = Fields::parse(text)?;
        let rid = frame::rid(&fields);
        decode_fields(&fields, rid.clone()).map_err(|error| error.with_rid(rid))
    }

    fn encode(session: &mut Session, event: &Event, out: &mut String) -> Outbound {
        out.clear();
        match event {
            Event::Joined(joined) => {
                let Joined {
                    room,
                    name,
                    members,
                    rid,
                    ice_servers,
                    media,
                } = &**joined;
                session.name = Some(name.clone());
                out.push_str(r#"{"type":"joined","data":{"roomId":"#);
                push_str(out, room.as_str());
                out.push_str(r#","users":["#);
                for (index, member) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    push_str(out, member.as_str());
                }
                out.push(']');
                if let Some(ice_servers) = ice_servers {
                    out.push_str(r#","iceServers":"#);
                    out.push_str(ice_servers.as_str());
                }
                if let Some(capabilities) = media {
                    out.push_str(r#","routerRtpCapabilities":"#);
                    out.push_str(capabilities.as_str());
                }
                out.push('}');
                push_rid(out, rid.as_ref());
                out.push('}');
            }
            Event::PeerJoined(joined) => presence(out, "user-joined", &joined.name),
            Event::PeerLeft(left) => presence(out, "user-left", &left.name),
            Event::Signal(signal) => {
                let message = &signal.message;
                let kind = match &message.kind {
                    SignalKind::Chat => {
                        let Some(text) = &message.text else {
                            return Outbound::Skip;
                        };
                        out.push_str(r#"{"type":"chat-message","data":{"from":"#);
                        push_str(out, signal.from.as_str());
                        out.push_str(r#","text":"#);
                        push_str(out, text);
                        out.push_str(r#","timestamp":"#);
                        push_str(out, message.timestamp.as_deref().unwrap_or_default());
                        out.push_str("}}");
                        // A chat names no receiver: the same frame for everyone.
                        return Outbound::TextForAll;
                    }
                    SignalKind::Offer => "webrtc-offer",
                    SignalKind::Answer => "webrtc-answer",
                    SignalKind::IceCandidate => "webrtc-ice-candidate",
                    _ => return Outbound::Skip, // conference cannot express it
                };
                let Some(target) = &session.name else {
                    return Outbound::Skip;
                };
                out.push_str(r#"{"type":""#);
                out.push_str(kind);
                out.push_str(r#"","data":{"from":"#);
                push_str(out, signal.from.as_str());
                out.push_str(r#","target":"#);
                push_str(out, target.as_str());
                out.push(',');
                push_key(out, "payload");
                out.push_str(message.payload.as_ref().map_or("null", |p| p.as_str()));
                out.push_str("}}");
            }
            Event::Error(error) => {
                let ErrorEvent { code, message, rid } = &**error;
                out.push_str(r#"{"type":"error","data":{"message":"#);
                push_str(out, message);
                out.push_str(r#","code":""#);
                out.push_str(code.as_str());
                out.push_str("\"}");
                push_rid(out, rid.as_ref());
                out.push('}');
            }
            Event::Media(media) => {
                let MediaEvent { kind, data, rid } = &**media;
                out.push_str(r#"{"type":""#);
                out.push_str(kind);
                out.push_str(r#"","data":"#);
                out.push_str(data.as_str());
                push_rid(out, rid.as_ref());
                out.push('}');
            }
            Event::Greeting { .. }
            | Event::PartnerGone { .. }
            | Event::Frame(_)
            | Event::Settled
            | Event::Retained(_) => return Outbound::Skip,
        }
        Outbound::Text
    }
}

fn decode_fields<'a>(
    fields: &Fields<'a>,
    rid: Option<switchboard_core::RawJson>,
) -> Result<Command<'a>, WireError> {
    let kind = fields.kind()?;
    let signal = match kind.as_ref() {
        "join-room" => {
            let data = fields.object("data")?;
            let room = frame::room_id("roomId", &data.required("roomId")?)?;
            let name = frame::peer_name("username", &data.required("username")?)?;
            return Ok(Command::Join { room, name, rid });
        }
        "leave-room" => {
            let room = match fields.raw("data") {
                Some(data) if data.get() != "null" => fields.object("data")?.string("roomId")?,
                _ => None,
            };
            return Ok(Command::Leave { room, rid });
        }
        "chat-message" => {
            let data = fields.object("data")?;
            let text = data.required("text")?;
            let timestamp = data.string("timestamp")?;
            let message = Message {
                kind: SignalKind::Chat,
                payload: None,
                text: Some(Arc::from(text.as_ref())),
                timestamp: timestamp.map(|t| Arc::from(t.as_ref())),
                fields: None,
            };
            return Ok(Command::Send {
                to: None,
                room: None,
                echo: true,
                message,
                rid,
            });
        }
        "webrtc-offer" => SignalKind::Offer,
        "webrtc-answer" => SignalKind::Answer,
        "webrtc-ice-candidate" => SignalKind::IceCandidate,
        other => {
            let Some(request) = MediaRequest::from_name(other) else {
                return Err(WireError::unknown_type(other));
            };
            // The media worker checks the shape of `data`; here it only has to be an object.
            let data = match fields.raw("data") {
                Some(data) if data.get().starts_with('{') => frame::raw_json(data),
                None => RawJson::new("{}"),
                Some(_) => return Err(WireError::bad_field("data", "an object")),
            };
            return Ok(Command::Media { request, data, rid });
        }
    };
    let data = fields.object("data")?;
    let to = data.required("target")?;
    let payload = data
        .raw("payload")
        .ok_or_else(|| WireError::bad_field("payload", "present"))?;
    let message = Message::new(signal, Some(frame::raw_json(payload)));
    Ok(Command::Send {
        to: Some(to),
        room: None,
        echo: false,
        message,
        rid,
    })
}

fn presence(out: &mut String, kind: &str, name: &PeerName) {
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","data":{"user":"#);
    push_str(out, name.as_str());
    out.push_str("}}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchboard_core::{Presence, RoomId, Signal};

    use switchboard_core::ErrorCode;

    use super::*;

    fn code(text: &str) -> ErrorCode {
        Conference::decode(&mut Session::default(), text)
            .unwrap_err()
            .code
    }

    fn name(text: &str) -> PeerName {
        PeerName::parse(text).unwrap()
    }

    fn encode(session: &mut Session, event: &Event) -> String {
        let mut out = String::new();
        let outbound = Conference::encode(session, event, &mut out);
        assert!(matches!(outbound, Outbound::Text | Outbound::TextForAll));
        out
    }

    fn joined_session(who: &str) -> Session {
        let mut session = Session::default();
        let event = Event::Joined(Box::new(Joined {
            room: RoomId::parse("r").unwrap(),
            name: name(who),
            members: Arc::from([name(who)]),
            rid: None,
            ice_servers: None,
            media: None,
        }));
        encode(&mut session, &event);
        session
    }

    #[test]
    fn join_room_from_the_seed() {
        let text = r#"{"type":"join-room","data":{"roomId":"room1","username":"alice"},"rid":7}"#;
        let command = Conference::decode(&mut Session::default(), text).unwrap();
        let Command::Join { room, name, rid } = command else {
            panic!("{command:?}")
        };
        assert_eq!((room.as_str(), name.as_str()), ("room1", "alice"));
        assert_eq!(rid, Some(RawJson::new("7")));
    }

    #[test]
    fn joined_lists_everyone_and_echoes_rid() {
        let mut session = Session::default();
        let event = Event::Joined(Box::new(Joined {
            room: RoomId::parse("room1").unwrap(),
            name: name("bob"),
            members: Arc::from([name("alice"), name("bob")]),
            rid: Some(RawJson::new(r#""r-1""#)),
            ice_servers: None,
            media: None,
        }));
        assert_eq!(
            encode(&mut session, &event),
            r#"{"type":"joined","data":{"roomId":"room1","users":["alice","bob"]},"rid":"r-1"}"#
        );
        let ice = r#"[{"urls":["stun:127.0.0.1:3478"]}]"#;
        let event = Event::Joined(Box::new(Joined {
            room: RoomId::parse("room1").unwrap(),
            name: name("bob"),
            members: Arc::from([name("bob")]),
            rid: None,
            ice_servers: Some(RawJson::new(ice)),
            media: Some(RawJson::new(r#"{"codecs":[]}"#)),
        }));
        assert_eq!(
            encode(&mut session, &event),
            format!(
                r#"{{"type":"joined","data":{{"roomId":"room1","users":["bob"],"iceServers":{ice},"routerRtpCapabilities":{{"codecs":[]}}}}}}"#
            )
        );
    }

    #[test]
    fn presence_events() {
        let mut session = joined_session("bob");
        let event = Event::PeerJoined(Arc::new(Presence {
            room: RoomId::parse("r").unwrap(),
            name: name("carol"),
        }));
        assert_eq!(
            encode(&mut session, &event),
            r#"{"type":"user-joined","data":{"user":"carol"}}"#
        );
        let event = Event::PeerLeft(Arc::new(Presence {
            room: RoomId::parse("r").unwrap(),
            name: name("carol"),
        }));
        assert_eq!(
            encode(&mut session, &event),
            r#"{"type":"user-left","data":{"user":"carol"}}"#
        );
    }

    #[test]
    fn signals_relay_their_payload_byte_for_byte() {
        let payload = r#"{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1"}"#;
        let text =
            format!(r#"{{"type":"webrtc-offer","data":{{"target":"bob","payload":{payload}}}}}"#);
        let command = Conference::decode(&mut Session::default(), &text).unwrap();
        let Command::Send {
            to,
            message,
            echo: false,
            ..
        } = command
        else {
            panic!()
        };
        assert_eq!(to.as_deref(), Some("bob"));
        assert_eq!(message.payload.as_ref().map(RawJson::as_str), Some(payload));
        let signal = Signal {
            frames: Default::default(),
            from: name("alice"),
            origin: DialectKind::Conference,
            addressed: true,
            message,
        };
        let mut session = joined_session("bob");
        assert_eq!(
            encode(&mut session, &Event::Signal(Arc::new(signal))),
            format!(
                r#"{{"type":"webrtc-offer","data":{{"from":"alice","target":"bob","payload":{payload}}}}}"#
            )
        );
    }

    #[test]
    fn chat_goes_out_with_sender_and_timestamp() {
        let text = r#"{"type":"chat-message","data":{"from":"mallory","text":"hi \"all\"","timestamp":"2025-01-01T00:00:00Z"}}"#;
        let command = Conference::decode(&mut Session::default(), text).unwrap();
        let Command::Send {
            to: None,
            echo: true,
            message,
            ..
        } = command
        else {
            panic!()
        };
        let signal = Signal {
            frames: Default::default(),
            from: name("alice"),
            origin: DialectKind::Conference,
            addressed: false,
            message,
        };
        let mut session = joined_session("bob");
        assert_eq!(
            encode(&mut session, &Event::Signal(Arc::new(signal))),
            r#"{"type":"chat-message","data":{"from":"alice","text":"hi \"all\"","timestamp":"2025-01-01T00:00:00Z"}}"#
        );
    }

    #[test]
    fn errors_carry_code_message_and_rid() {
        let event = Event::Error(Box::new(ErrorEvent {
            code: ErrorCode::NameTaken,
            message: Arc::from("name alice is already taken in this room"),
            rid: Some(RawJson::new("3")),
        }));
        assert_eq!(
            encode(&mut Session::default(), &event),
            r#"{"type":"error","data":{"message":"name alice is already taken in this room","code":"name_taken"},"rid":3}"#
        );
    }

    #[test]
    fn refusals_have_stable_codes() {
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"data":{}}"#), ErrorCode::MissingType);
        assert_eq!(
            code(r#"{"type":"join-room","data":{"roomId":1,"username":"a"}}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"type":"join-room","data":{"roomId":"","username":"a"}}"#),
            ErrorCode::BadId
        );
        assert_eq!(
            code(r#"{"type":"webrtc-offer","data":{"target":"b"}}"#),
            ErrorCode::BadField
        );
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"produce","data":[],"rid":1}"#),
            ErrorCode::BadField
        );
    }

    #[test]
    fn media_requests_carry_their_data_raw() {
        let text = r#"{"type":"consume","data":{"transportId":"t1","producerId":"p2"},"rid":"x"}"#;
        let command = Conference::decode(&mut Session::default(), text).unwrap();
        let Command::Media { request, data, rid } = command else {
            panic!("{command:?}")
        };
        assert_eq!(request, MediaRequest::Consume);
        assert_eq!(data.as_str(), r#"{"transportId":"t1","producerId":"p2"}"#);
        assert_eq!(rid, Some(RawJson::new(r#""x""#)));
        let bare = r#"{"type":"get-router-rtp-capabilities"}"#;
        let Command::Media { data, rid, .. } =
            Conference::decode(&mut Session::default(), bare).unwrap()
        else {
            panic!()
        };
        assert_eq!((data.as_str(), rid), ("{}", None));
    }

    #[test]
    fn media_replies_echo_the_rid() {
        let mut session = joined_session("bob");
        let event = Event::Media(Box::new(MediaEvent {
            kind: "produced",
            data: RawJson::new(r#"{"id":"p1","kind":"video"}"#),
            rid: Some(RawJson::new("7")),
        }));
        assert_eq!(
            encode(&mut session, &event),
            r#"{"type":"produced","data":{"id":"p1","kind":"video"},"rid":7}"#
        );
    }

    #[test]
    fn what_conference_cannot_express_is_skipped() {
        let message = Message::new(SignalKind::Other(Arc::from("custom")), None);
        let signal = Signal {
            frames: Default::default(),
            from: name("a"),
            origin: DialectKind::QueryRooms,
            addressed: false,
            message,
        };
        let mut out = String::new();
        let outbound = Conference::encode(
            &mut joined_session("b"),
            &Event::Signal(Arc::new(signal)),
            &mut out,
        );
        assert_eq!(outbound, Outbound::Skip);
    }
}
