//! pairing, seed 001 (`/pairing`). No rooms: the server names each connection with a UUID v4
//! and greets it with `connected`; users address each other by id, and the core's pairing
//! state machine decides what may be sent.

use switchboard_core::{Command, DialectKind, Event, Message, PeerName, SignalKind};

use crate::frame::{self, push_str, Fields};
use crate::{Dialect, Outbound, WireError};

/// The pairing dialect.
pub struct Pairing;

/// What a pairing connection knows about itself.
#[derive(Debug, Default)]
pub struct Session {
    /// The id the server assigned, learnt from the greeting.
    id: Option<PeerName>,
}

impl Dialect for Pairing {
    const KIND: DialectKind = DialectKind::Pairing;
    type Session = Session;

    fn decode<'a>(_session: &mut Session, text: &'a str) -> Result<Command<'a>, WireError> {
        let fields = Fields::parse(text)?;
        let kind = fields.kind()?;
        let kind = match kind.as_ref() {
            "ping" => SignalKind::Ping,
            "pong" => SignalKind::Pong,
            "offer" => SignalKind::Offer,
            "answer" => SignalKind::Answer,
            "ice-candidate" => SignalKind::IceCandidate,
            "disconnect" => SignalKind::Disconnect,
            other => return Err(WireError::unknown_type(other)),
        };
        let to = fields.required("to")?;
        let message = Message::new(kind, fields.raw("data").map(frame::raw_json));
        Ok(Command::Pair { to, message })
    }

    fn encode(session: &mut Session, event: &Event, out: &mut String) -> Outbound {
        out.clear();
        match event {
            Event::Greeting { id } => {
                session.id = Some(id.clone());
                out.push_str(r#"{"type":"connected","data":{"userId":"#);
                push_str(out, id.as_str());
                out.push_str("}}");
            }
            Event::Signal(signal) => {
                let kind = match &signal.message.kind {
                    SignalKind::Ping => "ping",
                    SignalKind::Pong => "pong",
                    SignalKind::Offer => "offer",
                    SignalKind::Answer => "answer",
                    SignalKind::IceCandidate => "ice-candidate",
                    SignalKind::Disconnect => "disconnect",
                    SignalKind::Chat | SignalKind::Other(_) => return Outbound::Skip,
                };
                let data = signal
                    .message
                    .payload
                    .as_ref()
                    .map_or("null", |p| p.as_str());
                addressed(out, session, kind, &signal.from, data);
            }
            Event::PartnerGone { from } => {
                addressed(
                    out,
                    session,
                    "disconnect",
                    from,
                    r#"{"reason":"peer_gone"}"#,
                );
            }
            Event::Error(error) => {
                out.push_str(r#"{"type":"error","data":{"code":""#);
                out.push_str(error.code.as_str());
                out.push_str(r#"","message":"#);
                push_str(out, &error.message);
                out.push_str("}}");
            }
            Event::Joined(_)
            | Event::PeerJoined(_)
            | Event::PeerLeft(_)
            | Event::Frame(_)
            | Event::Media(_)
            | Event::Settled
            | Event::Retained(_) => return Outbound::Skip,
        }
        Outbound::Text
    }
}

/// `{"type":T,"from":F,"to":SELF,"data":D}`
fn addressed(out: &mut String, session: &Session, kind: &str, from: &PeerName, data: &str) {
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","from":"#);
    push_str(out, from.as_str());
    out.push_str(r#","to":"#);
    push_str(out, session.id.as_ref().map_or("", PeerName::as_str));
    out.push_str(r#","data":"#);
    out.push_str(data);
    out.push('}');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchboard_core::{ErrorCode, ErrorEvent, Signal};

    use super::*;

    fn greeted(id: &str) -> (Session, String) {
        let mut session = Session::default();
        let mut out = String::new();
        let event = Event::Greeting {
            id: PeerName::parse(id).unwrap(),
        };
        Pairing::encode(&mut session, &event, &mut out);
        (session, out)
    }

    #[test]
    fn greeting_names_the_user() {
        let (_, out) = greeted("6f1c7a2e-0b6b-4a8e-9d3c-2f1e5b7a9c10");
        assert_eq!(
            out,
            r#"{"type":"connected","data":{"userId":"6f1c7a2e-0b6b-4a8e-9d3c-2f1e5b7a9c10"}}"#
        );
    }

    #[test]
    fn the_seeds_messages_decode_and_relay() {
        let (mut session, _) = greeted("b");
        for (text, kind) in [
            (r#"{"type":"ping","to":"b","data":{"test":true}}"#, "ping"),
            (
                r#"{"type":"pong","to":"b","data":{"received":true}}"#,
                "pong",
            ),
            (
                r#"{"type":"offer","to":"b","data":{"type":"offer","sdp":"v=0\r\no=- 1234567890"}}"#,
                "offer",
            ),
            (
                r#"{"type":"answer","to":"b","data":{"type":"answer","sdp":"v=0\r\no=- 1234567890"}}"#,
                "answer",
            ),
            (
                r#"{"type":"ice-candidate","to":"b","data":{"candidate":"candidate:1 1 UDP 2113667326","sdpMLineIndex":0}}"#,
                "ice-candidate",
            ),
            (
                r#"{"type":"disconnect","to":"b","data":{"reason":"user_disconnect"}}"#,
                "disconnect",
            ),
        ] {
            let Command::Pair { to, message } =
                Pairing::decode(&mut Session::default(), text).unwrap()
            else {
                panic!()
            };
            assert_eq!(to, "b");
            let data = message.payload.clone().unwrap();
            let signal = Signal {
                frames: Default::default(),
                from: PeerName::parse("a").unwrap(),
                origin: DialectKind::Pairing,
                addressed: true,
                message,
            };
            let mut out = String::new();
            Pairing::encode(&mut session, &Event::Signal(Arc::new(signal)), &mut out);
            assert_eq!(
                out,
                format!(
                    r#"{{"type":"{kind}","from":"a","to":"b","data":{}}}"#,
                    data.as_str()
                )
            );
        }
    }

    #[test]
    fn partner_gone_and_errors() {
        let (mut session, _) = greeted("b");
        let mut out = String::new();
        let event = Event::PartnerGone {
            from: PeerName::parse("a").unwrap(),
        };
        Pairing::encode(&mut session, &event, &mut out);
        assert_eq!(
            out,
            r#"{"type":"disconnect","from":"a","to":"b","data":{"reason":"peer_gone"}}"#
        );
        let event = Event::Error(Box::new(ErrorEvent {
            code: ErrorCode::UserBusy,
            message: Arc::from("user a is busy"),
            rid: None,
        }));
        Pairing::encode(&mut session, &event, &mut out);
        assert_eq!(
            out,
            r#"{"type":"error","data":{"code":"user_busy","message":"user a is busy"}}"#
        );
    }

    #[test]
    fn unknown_types_and_missing_targets_are_refused() {
        let code = |text| {
            Pairing::decode(&mut Session::default(), text)
                .unwrap_err()
                .code
        };
        assert_eq!(code(r#"{"type":"chat","to":"b"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"ping"}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"ping","to":["b"]}"#), ErrorCode::BadField);
    }
}
