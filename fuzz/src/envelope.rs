//! The `envelope` fuzz target: what other nodes say through Redis is untrusted input, decoded
//! by `switchboard_cluster::envelope`. Shared by the fuzz target and by the regression replay
//! in `crates/cluster/tests/fuzz_regressions.rs` (which includes this file). Checked:
//! - no decoder panics, whatever the bytes;
//! - a relay or a frame that decodes encodes again to an envelope that decodes to the same
//!   sender, addressing and payload bytes (what a node forwards is what it was given);
//! - a media message that decodes encodes again to one that decodes;
//! - a resume message (a knock, a tunnel's frame) that decodes encodes again to the same.

use bytes::Bytes;
use switchboard_cluster::envelope::{self, MediaMessage, ResumeMessage};
use switchboard_core::{Inbound, NodeId, RawFrame};

/// The largest envelope a node accepts in these checks (a node's default is about 132 KiB).
const MAX: usize = 1 << 20;

/// Decodes `data` as an envelope and checks what can be checked.
pub fn check_envelope(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if envelope::is_stats(&bytes) {
        let _ = envelope::decode_stats(&bytes, MAX);
        return;
    }
    if envelope::is_resume(&bytes) {
        if let Ok(message) = envelope::decode_resume(&bytes, MAX) {
            let mut again = Vec::new();
            match &message {
                ResumeMessage::Knock(knock) => envelope::knock(&mut again, knock),
                ResumeMessage::Tunnel(frame) => envelope::tunnel(&mut again, frame),
            }
            let back = envelope::decode_resume(&Bytes::from(again), MAX);
            assert_eq!(back, Ok(message), "a resume message encodes to the same");
        }
        return;
    }
    if envelope::is_media(&bytes) {
        if let Ok((origin, message)) = envelope::decode_media(&bytes, MAX) {
            let mut again = Vec::new();
            match &message {
                MediaMessage::Request(request) => envelope::media_request(&mut again, request),
                MediaMessage::Event { room, to, event } => {
                    let origin = origin.unwrap_or(NodeId(0));
                    envelope::media_event(&mut again, origin, room, to, event);
                }
            }
            assert!(
                envelope::decode_media(&Bytes::from(again), MAX).is_ok(),
                "a decoded media message encodes to one that decodes"
            );
        }
        return;
    }
    let Ok(decoded) = envelope::decode(&bytes, MAX) else {
        return;
    };
    let origin = decoded.origin.unwrap_or(NodeId(0));
    match decoded.inbound {
        Inbound::Relay { room, to, signal } => {
            let mut again = Vec::new();
            envelope::relay(&mut again, origin, &room, to.as_ref(), &signal);
            let back = envelope::decode(&Bytes::from(again), MAX).expect("a relay encodes again");
            let Inbound::Relay {
                room: room2,
                to: to2,
                signal: signal2,
            } = back.inbound
            else {
                panic!("a relay decodes back as a relay")
            };
            assert_eq!((room, to), (room2, to2));
            assert_eq!(signal.from, signal2.from);
            assert_eq!(signal.message.kind, signal2.message.kind);
            assert_eq!(signal.message.payload, signal2.message.payload);
            assert_eq!(signal.message.text, signal2.message.text);
            assert_eq!(signal.message.fields, signal2.message.fields);
        }
        Inbound::Frame { channel, frame } => {
            let mut again = Vec::new();
            envelope::frame(&mut again, origin, &channel, &frame);
            let back = envelope::decode(&Bytes::from(again), MAX).expect("a frame encodes again");
            let Inbound::Frame { frame: frame2, .. } = back.inbound else {
                panic!("a frame decodes back as a frame")
            };
            let bytes = |f: &RawFrame| match f {
                RawFrame::Text(b) | RawFrame::Binary(b) => b.clone(),
            };
            assert_eq!(bytes(&frame), bytes(&frame2), "frame bytes untouched");
        }
        _ => {}
    }
}
