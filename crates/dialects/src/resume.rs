//! The resume layer of the conference dialect (docs/protocol.md, "Resume"): what an opted-in
//! socket adds around the conference frames. The client may number its frames (`"seq"`) and
//! sends two control frames of its own (`ack`, `resume`); the server stamps a `"seq"` on
//! every frame it sends and writes three control frames (`session`, `resumed`, and the
//! `resume_failed` error, which the conference codec encodes). Pure like every codec: the
//! socket task keeps the numbers, the replay buffer and the sessions.

use std::borrow::Cow;
use std::fmt::Write;

use switchboard_core::ErrorCode;

use crate::frame::{push_str, Fields};
use crate::WireError;

/// What an opted-in client frame says to the resume layer, read before the conference codec
/// sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The client's number for this frame (`"seq"`), if it numbered it.
    pub seq: Option<u64>,
    /// A control frame of the resume layer, which the conference codec never sees.
    pub control: Option<Control<'a>>,
}

/// A client frame that belongs to the resume layer, not to the conference.
#[derive(Debug, PartialEq, Eq)]
pub enum Control<'a> {
    /// `{"type":"ack","data":{"seq":N}}`: the client has processed every frame up to `N`.
    Ack(u64),
    /// `{"type":"resume","data":{"token":T,"seq":S}}`: take over the session of token `T`,
    /// whose frames the client processed up to `S`.
    Resume {
        /// The session's secret token (never logged).
        token: Cow<'a, str>,
        /// The last frame the client processed.
        seq: u64,
    },
}

/// Reads the resume layer's part of a client frame: its number and whether it is a control
/// frame. Anything else in it is the conference codec's business, so a frame this cannot
/// read as an object is left for the codec to refuse (`Ok` with nothing in it).
pub fn peek(text: &str) -> Result<Envelope<'_>, WireError> {
    let Ok(fields) = Fields::parse(text) else {
        return Ok(Envelope {
            seq: None,
            control: None,
        });
    };
    let seq = match fields.raw("seq") {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(number(raw.get(), "seq")?),
    };
    let control = match fields.kind().ok().as_deref() {
        Some("ack") => {
            let data = fields.object("data")?;
            let seq = data
                .raw("seq")
                .ok_or_else(|| WireError::bad_field("seq", "a number"))?;
            Some(Control::Ack(number(seq.get(), "seq")?))
        }
        Some("resume") => {
            let data = fields.object("data")?;
            let token = data.required("token")?;
            let seq = data
                .raw("seq")
                .ok_or_else(|| WireError::bad_field("seq", "a number"))?;
            Some(Control::Resume {
                token,
                seq: number(seq.get(), "seq")?,
            })
        }
        _ => None,
    };
    Ok(Envelope { seq, control })
}

/// Stamps `"seq":N` on a conference frame just encoded into `out`: every conference frame is
/// a JSON object, so the number goes in before its closing brace. No allocation while `out`
/// has room (it is reused for every frame).
pub fn stamp(out: &mut String, seq: u64) {
    if out.ends_with('}') {
        out.pop();
        // Writing to a String cannot fail.
        let _ = write!(out, r#","seq":{seq}}}"#);
    }
}

/// `{"type":"session","data":{"token":T,"window":MS}}`: the first frame of an opted-in
/// socket (unnumbered).
pub fn session(out: &mut String, token: &str, window_ms: u64) {
    out.clear();
    out.push_str(r#"{"type":"session","data":{"token":"#);
    push_str(out, token);
    let _ = write!(out, r#","window":{window_ms}}}}}"#);
}

/// `{"type":"resumed","data":{"roomId":R,"token":T2,"next":N,"received":M}}` (unnumbered);
/// `roomId` is `null` for a session that had joined no room.
pub fn resumed(out: &mut String, room: Option<&str>, token: &str, next: u64, received: u64) {
    out.clear();
    out.push_str(r#"{"type":"resumed","data":{"roomId":"#);
    match room {
        Some(room) => push_str(out, room),
        None => out.push_str("null"),
    }
    out.push_str(r#","token":"#);
    push_str(out, token);
    let _ = write!(out, r#","next":{next},"received":{received}}}}}"#);
}

/// A non-negative integer member, as JSON writes it.
fn number(json: &str, name: &str) -> Result<u64, WireError> {
    json.parse::<u64>()
        .map_err(|_| WireError::new(ErrorCode::BadField, format!("{name} must be a number ≥ 0")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_and_numbers_are_read() {
        let peeked = peek(r#"{"type":"ack","data":{"seq":41}}"#).unwrap();
        assert_eq!(peeked.control, Some(Control::Ack(41)));
        assert_eq!(peeked.seq, None);
        let peeked = peek(r#"{"type":"resume","data":{"token":"abc","seq":0}}"#).unwrap();
        assert_eq!(
            peeked.control,
            Some(Control::Resume {
                token: Cow::Borrowed("abc"),
                seq: 0
            })
        );
        let peeked = peek(r#"{"type":"chat-message","data":{"text":"x"},"seq":7}"#).unwrap();
        assert_eq!(peeked.seq, Some(7));
        assert_eq!(peeked.control, None);
    }

    #[test]
    fn bad_numbers_are_typed_errors() {
        for text in [
            r#"{"type":"ack","data":{"seq":-1}}"#,
            r#"{"type":"ack","data":{"seq":"1"}}"#,
            r#"{"type":"ack","data":{}}"#,
            r#"{"type":"ack"}"#,
            r#"{"type":"resume","data":{"seq":1}}"#,
            r#"{"type":"x","seq":1.5}"#,
            r#"{"type":"x","seq":99999999999999999999999}"#,
        ] {
            assert_eq!(peek(text).unwrap_err().code, ErrorCode::BadField, "{text}");
        }
        // Not an object: the conference codec refuses it, not this layer.
        assert_eq!(peek("[1]").unwrap().control, None);
        assert_eq!(peek("{").unwrap().seq, None);
    }

    #[test]
    fn frames_are_written_exactly() {
        let mut out = String::from(r#"{"type":"user-joined","data":{"user":"a"}}"#);
        stamp(&mut out, 12);
        assert_eq!(
            out,
            r#"{"type":"user-joined","data":{"user":"a"},"seq":12}"#
        );
        session(&mut out, "tok", 30_000);
        assert_eq!(
            out,
            r#"{"type":"session","data":{"token":"tok","window":30000}}"#
        );
        resumed(&mut out, Some("r1"), "t2", 42, 3);
        assert_eq!(
            out,
            r#"{"type":"resumed","data":{"roomId":"r1","token":"t2","next":42,"received":3}}"#
        );
        resumed(&mut out, None, "t2", 1, 0);
        assert!(out.contains(r#""roomId":null"#));
    }

    proptest::proptest! {
        #[test]
        fn peek_never_panics(text in ".{0,200}") {
            let _ = peek(&text);
        }
    }
}
