//! WebSocket framing for the server's side of RFC 6455, without I/O.
//!
//! [`Decoder`] turns the bytes a client sent into messages: it checks each frame's header
//! (masked, no reserved bits or opcodes, control frames whole and at most 125 bytes), refuses a
//! frame or message over the size limit from its header alone, unmasks the payload as it copies
//! it out, and joins fragments. [`encode`] and [`encode_close`] write the server's frames
//! (unmasked) into a buffer. The socket around them (`switchboard-server`'s `ws.rs`) does the
//! reading and writing, so it decides how bytes are buffered: an idle socket holds none.
//!
//! Text is not checked for UTF-8 here: the server's string type checks it as it is made, and a
//! second pass would cost every message. Close reasons are checked.
#![warn(missing_docs)]

use bytes::Bytes;

#[cfg(test)]
mod tests;

/// Frame opcodes (RFC 6455 5.2).
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The longest header of a client's frame: 2 bytes, a 64-bit length and the mask.
const MAX_HEADER: usize = 2 + 8 + 4;

/// The largest payload of a control frame (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A message from the client, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, not yet checked for UTF-8 (see the crate's documentation).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the socket answers it with a pong of the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame, with its code and reason if it had them.
    Close(Option<CloseFrame>),
}

/// A close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (RFC 6455 7.4).
    pub code: u16,
    /// Why, in UTF-8; often empty.
    pub reason: String,
}

/// Why a client's bytes cannot be read as WebSocket frames. Each ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A frame, or a fragmented message so far, over the size limit (close code 1009).
    #[error("message of {size} bytes is over the limit of {max}")]
    TooBig {
        /// The size the header announced, with the fragments before it.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// Text that is not UTF-8 (close code 1007): a close reason, checked here, or a text
    /// message, which the caller checks as it makes its string.
    #[error("text is not UTF-8")]
    BadUtf8,
    /// Anything else RFC 6455 forbids (close code 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// What [`Decoder::decode`] found at the start of its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The first frame is not all there: this many more bytes at least (the whole frame
    /// once its header is in, so a reader can make room for it at once).
    Need(usize),
    /// A frame was read, `used` bytes of the input. It made `message`, or it was a fragment
    /// of one that is not finished (`None`).
    Frame {
        /// Bytes of the input the frame took.
        used: usize,
        /// The message it finished, if any.
        message: Option<Message>,
    },
}

/// A fragmented message being put together.
#[derive(Debug)]
struct Fragments {
    text: bool,
    data: Vec<u8>,
}

/// A whole text or binary message.
fn data_message(text: bool, data: Vec<u8>) -> Message {
    let data = Bytes::from(data);
    if text {
        Message::Text(data)
    } else {
        Message::Binary(data)
    }
}

/// Reads a client's frames into messages, one frame per call.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    fragments: Option<Fragments>,
}

/// A frame's header, read.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Bytes of header before the payload.
    len: usize,
    payload: u64,
}

impl Decoder {
    /// A decoder that refuses frames and messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            // A frame's header and payload must fit in a `usize` together.
            max_message: max_message.min(usize::MAX - MAX_HEADER),
            fragments: None,
        }
    }

    /// Whether a fragmented message is half read (its fragments are held here).
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// Reads the first frame of `input`. A frame that breaks the protocol or the size limit
    /// is refused from its header, before its payload is needed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, Error> {
        let Some(header) = self.header(input)? else {
            // Ask for the header the first two bytes announce (or for those two).
            return Ok(Step::Need(header_len(input).unwrap_or(2) - input.len()));
        };
        // Fits in usize: checked against `max_message` or the control limit.
        let payload = header.payload as usize;
        let used = header.len + payload;
        if input.len() < used {
            return Ok(Step::Need(used - input.len()));
        }
        let data = &input[header.len..used];
        let message = match header.opcode {
            TEXT | BINARY if header.fin => Some(data_message(
                header.opcode == TEXT,
                unmasked(data, header.mask),
            )),
            TEXT | BINARY => {
                self.fragments = Some(Fragments {
                    text: header.opcode == TEXT,
                    data: unmasked(data, header.mask),
                });
                None
            }
            CONTINUATION => {
                let Some(fragments) = self.fragments.as_mut() else {
                    return Err(Error::Protocol(
                        "a continuation with no message to continue",
                    ));
                };
                let start = fragments.data.len();
                fragments.data.reserve_exact(data.len());
                fragments.data.extend_from_slice(data);
                unmask(&mut fragments.data[start..], header.mask);
                if header.fin {
                    self.fragments
                        .take()
                        .map(|Fragments { text, data }| data_message(text, data))
                } else {
                    None
                }
            }
            CLOSE => Some(Message::Close(close_frame(&unmasked(data, header.mask))?)),
            PING => Some(Message::Ping(Bytes::from(unmasked(data, header.mask)))),
            PONG => Some(Message::Pong(Bytes::from(unmasked(data, header.mask)))),
            _ => return Err(Error::Protocol("a reserved opcode")),
        };
        Ok(Step::Frame { used, message })
    }

    /// The header at the start of `input`, checked as soon as the bytes that break a rule are
    /// in; `None` if it is not all there yet.
    fn header(&self, input: &[u8]) -> Result<Option<Header>, Error> {
        let [first, second, ..] = *input else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(Error::Protocol(
                "reserved bits set (no extension was agreed)",
            ));
        }
        if second & 0x80 == 0 {
            return Err(Error::Protocol("a client's frame must be masked"));
        }
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0F;
        let fragmented = self.fragments.is_some();
        match opcode {
            TEXT | BINARY if fragmented => {
                return Err(Error::Protocol("a new message inside a fragmented one"))
            }
            CONTINUATION if !fragmented => {
                return Err(Error::Protocol(
                    "a continuation with no message to continue",
                ))
            }
            TEXT | BINARY | CONTINUATION => {}
            CLOSE | PING | PONG if !fin => {
                return Err(Error::Protocol("a fragmented control frame"))
            }
            CLOSE | PING | PONG => {}
            _ => return Err(Error::Protocol("a reserved opcode")),
        }
        let Some(len) = header_len(input) else {
            return Ok(None);
        };
        if input.len() < len {
            return Ok(None);
        }
        let payload = match second & 0x7F {
            126 => u64::from(u16::from_be_bytes([input[2], input[3]])),
            127 => {
                let mut length = [0; 8];
                length.copy_from_slice(&input[2..10]);
                u64::from_be_bytes(length)
            }
            short => u64::from(short),
        };
        if opcode >= CLOSE {
            if payload > MAX_CONTROL_PAYLOAD {
                return Err(Error::Protocol("a control frame over 125 bytes"));
            }
        } else {
            let before = self.fragments.as_ref().map_or(0, |f| f.data.len() as u64);
            let size = before.saturating_add(payload);
            if size > self.max_message as u64 {
                return Err(Error::TooBig {
                    size,
                    max: self.max_message,
                });
            }
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&input[len - 4..len]);
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            len,
            payload,
        }))
    }
}

/// The length of the (masked) header that `input` starts, once its first two bytes are in.
fn header_len(input: &[u8]) -> Option<usize> {
    let second = *input.get(1)?;
    Some(match second & 0x7F {
        126 => 2 + 2 + 4,
        127 => 2 + 8 + 4,
        _ => 2 + 4,
    })
}

/// `data` unmasked, in a buffer of its own size (so `Bytes::from` takes it without copying).
fn unmasked(data: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = data.to_vec();
    unmask(&mut out, mask);
    out
}

/// XORs `data` with the mask; `data` starts at the mask's first byte. Blocks of 32 bytes
/// against the mask repeated, which the compiler turns into a few vector instructions.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let mut wide = [0; 32];
    for (byte, key) in wide.iter_mut().zip(mask.iter().cycle()) {
        *byte = *key;
    }
    let mut blocks = data.chunks_exact_mut(32);
    for block in &mut blocks {
        for (byte, key) in block.iter_mut().zip(wide) {
            *byte ^= key;
        }
    }
    for (byte, key) in blocks.into_remainder().iter_mut().zip(wide) {
        *byte ^= key;
    }
}

/// A close frame's payload: nothing, or a valid code and a UTF-8 reason (RFC 6455 5.5.1, 7.4).
fn close_frame(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(Error::Protocol("a close frame of one byte")),
        [high, low, reason @ ..] => (u16::from_be_bytes([*high, *low]), reason),
    };
    // 1004-1006 and 1015 are reserved for reporting, never sent; 1016-2999 are unassigned.
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        return Err(Error::Protocol("a close code that may not be sent"));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| Error::BadUtf8)?;
    Ok(Some(CloseFrame {
        code,
        reason: reason.to_owned(),
    }))
}

/// The kinds of frame the server writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message.
    Text,
    /// A binary message.
    Binary,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
    /// A close frame (see [`encode_close`]).
    Close,
}

/// Appends one unmasked frame with `payload` to `out`. A control frame's payload must be at
/// most 125 bytes (the server's pings, pongs and closes are).
pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    let opcode = match kind {
        Kind::Text => TEXT,
        Kind::Binary => BINARY,
        Kind::Ping => PING,
        Kind::Pong => PONG,
        Kind::Close => CLOSE,
    };
    let len = payload.len();
    out.reserve(len + 10);
    out.push(0x80 | opcode);
    match u16::try_from(len) {
        Ok(short) if short < 126 => out.push(short as u8),
        Ok(medium) => {
            out.push(126);
            out.extend_from_slice(&medium.to_be_bytes());
        }
        Err(_) => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame to `out`: empty without a code, else the code and as much of the
/// reason as fits in a control frame (cut at a character boundary).
pub fn encode_close(frame: Option<(u16, &str)>, out: &mut Vec<u8>) {
    let Some((code, reason)) = frame else {
        return encode(Kind::Close, &[], out);
    };
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD as usize - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0; MAX_CONTROL_PAYLOAD as usize];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(Kind::Close, &payload[..2 + end], out);
}
