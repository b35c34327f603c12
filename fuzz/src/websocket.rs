//! The `websocket` fuzz target: a client's bytes, the first thing the server reads from a
//! socket, through `switchboard_websocket::Decoder`. Shared by the fuzz target and by the
//! regression replay in `crates/websocket/tests/fuzz_regressions.rs` (which includes this
//! file).
//!
//! The input is read as the server reads a socket: frames back to back, one per call,
//! advancing by `used`, until the decoder needs more bytes or refuses. Checked:
//! - nothing panics;
//! - a frame takes at least one byte and at most what there is; a `Need` asks for at least
//!   one, and once met it is enough: the whole frame when the header was in;
//! - a frame cut one byte short asks for more and changes nothing (a second decoder is given
//!   each frame cut short first, then whole, and must read it as the first did);
//! - a text or binary message is within the limit, a ping or pong within 125 bytes, a close
//!   reason within 123; a refusal for size is for a size over the limit;
//! - the decoder is in a message exactly after a fragment that does not finish one;
//! - every message, encoded as the server encodes it and masked as a client masks it, decodes
//!   back to itself.

use switchboard_websocket::{encode, encode_close, Decoder, Error, Kind, Message, Step};

/// The decoder's limit here: well under the fuzzer's longest input (`-max_len=8192` in
/// `scripts/fuzz.sh`), so that whole messages at and over the limit are reachable, not only
/// headers announcing them.
pub const LIMIT: usize = 4096;

/// The mask the round trip puts on the server's frames; four different bytes, so that a mask
/// applied from the wrong offset shows.
const MASK: [u8; 4] = [0x5A, 0x01, 0xC3, 0x7E];

/// How far one input got.
#[derive(Debug)]
pub struct Outcome {
    /// Messages the decoder finished.
    pub messages: usize,
    /// Bytes left over when it stopped: a frame not all there, or the one it refused.
    pub left: usize,
    /// Why it stopped, if it refused.
    pub refused: Option<Error>,
}

/// Reads `data` as the bytes a client sent, checking what can be checked.
pub fn check_websocket(data: &[u8]) -> Outcome {
    let mut decoder = Decoder::new(LIMIT);
    let mut twin = Decoder::new(LIMIT);
    let mut rest = data;
    let mut messages = 0;
    let refused = loop {
        let was_in_message = decoder.in_message();
        let step = decoder.decode(rest);
        match &step {
            Err(error) => {
                if let Error::TooBig { size, max } = error {
                    assert_eq!(*max, LIMIT, "the limit reported is the decoder's");
                    assert!(*size > LIMIT as u64, "refused {size} bytes under the limit");
                }
                break Some(error.clone());
            }
            Ok(Step::Need(need)) => {
                check_need(&mut twin, rest, *need);
                break None;
            }
            Ok(Step::Frame { used, message }) => {
                let used = *used;
                assert!(used > 0, "a frame takes at least one byte");
                assert!(used <= rest.len(), "a frame longer than its input");
                check_cut(&mut twin, &rest[..used], &step);
                match message {
                    None => assert!(decoder.in_message(), "a fragment leaves a message open"),
                    Some(message) => {
                        check_message(message);
                        round_trip(message);
                        messages += 1;
                        // Only a data message ends a fragmented one; a control frame leaves it.
                        let expected = match message {
                            Message::Text(_) | Message::Binary(_) => false,
                            _ => was_in_message,
                        };
                        assert_eq!(decoder.in_message(), expected, "after {message:?}");
                    }
                }
                rest = &rest[used..];
            }
        }
    };
    Outcome {
        messages,
        left: rest.len(),
        refused,
    }
}

/// The length of the header that `frame` starts (its first two bytes are in).
fn header_len(frame: &[u8]) -> usize {
    match frame[1] & 0x7F {
        126 => 2 + 2 + 4,
        127 => 2 + 8 + 4,
        _ => 2 + 4,
    }
}

/// `frame`, read whole as `step`, is read by `twin` cut one byte short (more is needed, and
/// nothing changes), then whole (the same step).
fn check_cut(twin: &mut Decoder, frame: &[u8], step: &Result<Step, Error>) {
    let cut = &frame[..frame.len() - 1];
    match twin.decode(cut) {
        Ok(Step::Need(need)) => {
            assert!(need > 0, "Need(0)");
            if cut.len() >= 2 && cut.len() >= header_len(frame) {
                assert_eq!(
                    need, 1,
                    "with the header in, the frame's last byte is needed"
                );
            } else {
                assert!(cut.len() + need <= frame.len(), "asked past the frame");
            }
        }
        other => panic!("a frame cut short read as {other:?}, whole as {step:?}"),
    }
    assert_eq!(
        &twin.decode(frame),
        step,
        "a frame cut short changed the decoder"
    );
}

/// The `need` bytes asked for after `rest` are enough: given them, `twin` (in the same state
/// as the decoder) reads a frame of exactly that length, refuses, or (if the header was not
/// in) asks for the payload.
fn check_need(twin: &mut Decoder, rest: &[u8], need: usize) {
    assert!(need > 0, "Need(0)");
    assert!(
        need <= LIMIT + 14,
        "Need({need}) over any frame within the limit"
    );
    let mut met = rest.to_vec();
    met.resize(rest.len() + need, 0);
    let header_was_in = rest.len() >= 2 && rest.len() >= header_len(rest);
    match twin.decode(&met) {
        Ok(Step::Frame { used, .. }) => assert_eq!(used, met.len(), "Need({need}) was not exact"),
        Ok(Step::Need(more)) => {
            assert!(!header_was_in, "Need({need}) met, and then Need({more})");
            assert!(more > 0, "Need(0)");
        }
        Err(_) => {}
    }
}

/// A message is within its limit.
fn check_message(message: &Message) {
    match message {
        Message::Text(data) | Message::Binary(data) => {
            assert!(data.len() <= LIMIT, "a message of {} bytes", data.len());
        }
        Message::Ping(data) | Message::Pong(data) => {
            assert!(data.len() <= 125, "a control frame of {} bytes", data.len());
        }
        Message::Close(Some(close)) => {
            assert!(
                close.reason.len() <= 123,
                "a close reason of {} bytes",
                close.reason.len()
            );
        }
        Message::Close(None) => {}
    }
}

/// `message`, as the server would send it, sent back by a client, decodes to itself.
fn round_trip(message: &Message) {
    let mut frame = Vec::new();
    match message {
        Message::Text(data) => encode(Kind::Text, data, &mut frame),
        Message::Binary(data) => encode(Kind::Binary, data, &mut frame),
        Message::Ping(data) => encode(Kind::Ping, data, &mut frame),
        Message::Pong(data) => encode(Kind::Pong, data, &mut frame),
        Message::Close(None) => encode_close(None, &mut frame),
        Message::Close(Some(close)) => encode_close(Some((close.code, &close.reason)), &mut frame),
    }
    let client = masked(&frame);
    let step = Decoder::new(LIMIT).decode(&client);
    let expected = Step::Frame {
        used: client.len(),
        message: Some(message.clone()),
    };
    assert_eq!(
        step,
        Ok(expected),
        "a message encoded, masked and decoded again"
    );
}

/// A server's (unmasked) frame as a client would send it: masked with [`MASK`].
fn masked(frame: &[u8]) -> Vec<u8> {
    let header = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..header].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&MASK);
    let payload = frame[header..].iter().zip(MASK.iter().cycle());
    out.extend(payload.map(|(byte, key)| byte ^ key));
    out
}
