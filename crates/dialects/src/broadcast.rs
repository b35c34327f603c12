//! broadcast, seed 004 (`/broadcast`, `/broadcast/CHANNEL`). Every frame, text or binary,
//! goes to every other subscriber of the channel byte for byte; the server adds nothing,
//! not even errors. The frame is copied once on arrival and shared by every receiver.

use bytes::Bytes;
use switchboard_core::{Command, DialectKind, Event, RawFrame};

use crate::{Dialect, Outbound, WireError};

/// The broadcast dialect.
pub struct Broadcast;

impl Dialect for Broadcast {
    const KIND: DialectKind = DialectKind::Broadcast;
    type Session = ();

    fn decode<'a>(_session: &mut (), text: &'a str) -> Result<Command<'a>, WireError> {
        Ok(Command::Broadcast(RawFrame::Text(Bytes::copy_from_slice(
            text.as_bytes(),
        ))))
    }

    fn decode_binary(_session: &mut (), bytes: Bytes) -> Result<Command<'static>, WireError> {
        Ok(Command::Broadcast(RawFrame::Binary(bytes)))
    }

    fn encode(_session: &mut (), event: &Event, _out: &mut String) -> Outbound {
        let Event::Frame(frame) = event else {
            return Outbound::Skip; // the server sends nothing of its own
        };
        match &**frame {
            RawFrame::Text(bytes) => Outbound::SharedText(bytes.clone()),
            RawFrame::Binary(bytes) => Outbound::Binary(bytes.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn frames_pass_through_untouched() {
        let text = r#"{"type":"offer","sdp":"not even checked"#;
        let Command::Broadcast(frame) = Broadcast::decode(&mut (), text).unwrap() else {
            panic!()
        };
        let outbound =
            Broadcast::encode(&mut (), &Event::Frame(Arc::new(frame)), &mut String::new());
        assert_eq!(outbound, Outbound::SharedText(Bytes::from(text)));
        let bytes = Bytes::from_static(&[0, 159, 146, 150]);
        let Command::Broadcast(frame) = Broadcast::decode_binary(&mut (), bytes.clone()).unwrap()
        else {
            panic!()
        };
        let outbound =
            Broadcast::encode(&mut (), &Event::Frame(Arc::new(frame)), &mut String::new());
        assert_eq!(outbound, Outbound::Binary(bytes));
    }
}
