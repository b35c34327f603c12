//! The decoder fed client frames built here (masked as a browser masks them, each length in
//! its shortest form), and the server's frames read back byte by byte.

use super::*;

/// The limit most tests decode under.
const MAX: usize = 64 * 1024;
/// Four different bytes, so that a mask applied from the wrong offset shows.
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
/// Payload lengths around every edge: each length form, and the unmasking's 8-byte steps with
/// and without a remainder.
const LENGTHS: [usize; 10] = [0, 1, 7, 8, 9, 125, 126, 1024, 65535, 65536];

/// The header of a client's frame announcing `len` payload bytes, masked with `mask`.
fn header(fin: bool, opcode: u8, len: u64, mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out
}

/// A whole client's frame: its header, then `payload` masked with `mask`.
fn masked(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = header(fin, opcode, payload.len() as u64, mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
    out
}

/// A final, masked frame: most tests need nothing else.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked(true, opcode, payload, MASK)
}

/// `len` bytes that do not repeat with the mask's period.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The first frame of `input`, read by a fresh decoder under [`MAX`].
fn decode(input: &[u8]) -> Result<Step, Error> {
    Decoder::new(MAX).decode(input)
}

/// The message of a whole frame that is all of `input`.
fn message(decoder: &mut Decoder, input: &[u8]) -> Option<Message> {
    match decoder.decode(input) {
        Ok(Step::Frame { used, message }) => {
            assert_eq!(used, input.len(), "the frame is all of its input");
            message
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Asserts that `result` is a protocol error (close code 1002).
fn protocol(result: Result<Step, Error>) {
    assert!(
        matches!(result, Err(Error::Protocol(_))),
        "expected a protocol error, got {result:?}"
    );
}

/// A server's frame, read: its FIN bit, its opcode and its payload. Checks that it is not
/// masked and that its length takes the shortest form, and that nothing follows it.
fn read_server_frame(bytes: &[u8]) -> (bool, u8, Vec<u8>) {
    let (fin, opcode) = (bytes[0] & 0x80 != 0, bytes[0] & 0x0F);
    assert_eq!(bytes[0] & 0x70, 0, "no reserved bits");
    assert_eq!(bytes[1] & 0x80, 0, "a server's frame is not masked");
    let (len, start) = match bytes[1] {
        126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
        127 => {
            let len = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
            (usize::try_from(len).unwrap(), 10)
        }
        short => (usize::from(short), 2),
    };
    let shortest = match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    assert_eq!(start, shortest, "the shortest length form for {len} bytes");
    assert_eq!(bytes.len(), start + len, "one frame, whole");
    (fin, opcode, bytes[start..].to_vec())
}

#[test]
fn a_masked_text_frame_decodes_to_its_payload() {
    for len in LENGTHS {
        let text = payload(len);
        let input = frame(TEXT, &text);
        let form = match len {
            0..=125 => len as u8,
            126..=0xFFFF => 126,
            _ => 127,
        };
        assert_eq!(input[1], 0x80 | form, "length form for {len}");
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            message(&mut decoder, &input),
            Some(Message::Text(Bytes::from(text))),
            "{len} bytes"
        );
        assert!(!decoder.in_message());
    }
}

#[test]
fn a_masked_binary_frame_decodes_to_its_payload() {
    for len in LENGTHS {
        let data = payload(len);
        let mut decoder = Decoder::new(MAX);
        let input = masked(true, BINARY, &data, [0xFF, 0x00, 0x80, 0x01]);
        assert_eq!(
            message(&mut decoder, &input),
            Some(Message::Binary(Bytes::from(data))),
            "{len} bytes"
        );
    }
}

#[test]
fn a_cut_frame_asks_for_the_rest_and_changes_nothing() {
    for len in [0, 5, 125, 126, 300, 65535, 65536] {
        let input = frame(BINARY, &payload(len));
        let header_len = input.len() - len;
        let mut decoder = Decoder::new(MAX);
        for cut in 0..input.len() {
            let Ok(Step::Need(need)) = decoder.decode(&input[..cut]) else {
                panic!("{len} bytes cut at {cut}: expected Need");
            };
            assert!(need > 0);
            // Before the length is read only the header can be asked for; after it, the frame.
            let expected = match cut {
                0 | 1 => 2,
                _ if cut < header_len => header_len,
                _ => input.len(),
            };
            assert_eq!(cut + need, expected, "{len} bytes cut at {cut}");
        }
        assert!(!decoder.in_message());
        assert_eq!(
            message(&mut decoder, &input),
            Some(Message::Binary(Bytes::from(payload(len))))
        );
    }
}

#[test]
fn a_cut_continuation_keeps_the_fragments_so_far() {
    let mut decoder = Decoder::new(MAX);
    assert_eq!(
        message(&mut decoder, &masked(false, TEXT, b"abc", MASK)),
        None
    );
    let rest = masked(true, CONTINUATION, b"defghijklmn", [1, 2, 3, 4]);
    for cut in 0..rest.len() {
        assert!(matches!(decoder.decode(&rest[..cut]), Ok(Step::Need(_))));
    }
    assert_eq!(
        message(&mut decoder, &rest),
        Some(Message::Text(Bytes::from_static(b"abcdefghijklmn")))
    );
}

#[test]
fn frames_back_to_back_are_read_one_at_a_time() {
    let frames = [
        frame(TEXT, b"one"),
        frame(PING, b"p"),
        frame(BINARY, &payload(200)),
        frame(PONG, b""),
        frame(CLOSE, &[0x03, 0xE8]),
    ];
    let input = frames.concat();
    let mut decoder = Decoder::new(MAX);
    let mut rest = &input[..];
    let mut messages = Vec::new();
    for sent in &frames {
        match decoder.decode(rest) {
            Ok(Step::Frame { used, message }) => {
                assert_eq!(used, sent.len());
                messages.push(message.unwrap());
                rest = &rest[used..];
            }
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    assert_eq!(decoder.decode(rest), Ok(Step::Need(2)));
    assert_eq!(
        messages,
        [
            Message::Text(Bytes::from_static(b"one")),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Binary(Bytes::from(payload(200))),
            Message::Pong(Bytes::new()),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            })),
        ]
    );
}

#[test]
fn a_ping_between_fragments_is_delivered_before_the_message() {
    // 3, 9 and 17 bytes: each fragment starts at an offset the mask and the 8-byte steps
    // do not divide.
    let mut decoder = Decoder::new(MAX);
    assert_eq!(
        message(&mut decoder, &masked(false, TEXT, b"Hel", MASK)),
        None
    );
    assert!(decoder.in_message());
    assert_eq!(
        message(&mut decoder, &frame(PING, b"still there?")),
        Some(Message::Ping(Bytes::from_static(b"still there?")))
    );
    assert!(decoder.in_message());
    let second = masked(false, CONTINUATION, b"lo, world", [9, 8, 7, 6]);
    assert_eq!(message(&mut decoder, &second), None);
    let third = masked(
        true,
        CONTINUATION,
        b", in three frames",
        [0xA5, 0, 0x5A, 0xFF],
    );
    assert_eq!(
        message(&mut decoder, &third),
        Some(Message::Text(Bytes::from_static(
            b"Hello, world, in three frames"
        )))
    );
    assert!(!decoder.in_message());
    // The decoder is ready for the next message.
    assert_eq!(
        message(&mut decoder, &frame(TEXT, b"next")),
        Some(Message::Text(Bytes::from_static(b"next")))
    );
}

#[test]
fn fragmented_binary_stays_binary() {
    let mut decoder = Decoder::new(MAX);
    assert_eq!(
        message(&mut decoder, &masked(false, BINARY, &[1; 10], MASK)),
        None
    );
    assert_eq!(
        message(&mut decoder, &masked(true, CONTINUATION, &[], MASK)),
        Some(Message::Binary(Bytes::from(vec![1; 10])))
    );
}

#[test]
fn a_continuation_without_a_start_is_refused() {
    protocol(decode(&masked(true, CONTINUATION, b"lost", MASK)));
    protocol(decode(&masked(false, CONTINUATION, b"lost", MASK)));
}

#[test]
fn a_new_message_inside_a_fragmented_one_is_refused() {
    for opcode in [TEXT, BINARY] {
        for fin in [true, false] {
            let mut decoder = Decoder::new(MAX);
            assert_eq!(
                message(&mut decoder, &masked(false, TEXT, b"half", MASK)),
                None
            );
            protocol(decoder.decode(&masked(fin, opcode, b"other", MASK)));
        }
    }
}

#[test]
fn an_unmasked_frame_is_refused() {
    protocol(decode(&[0x81, 5, b'h', b'e', b'l', b'l', b'o']));
    protocol(decode(&[0x89, 4, 0, 0, 0, 0]));
}

#[test]
fn reserved_bits_are_refused() {
    for bit in [0x40, 0x20, 0x10] {
        let mut input = frame(TEXT, b"compressed?");
        input[0] |= bit;
        protocol(decode(&input));
    }
}

#[test]
fn reserved_opcodes_are_refused() {
    for opcode in (3..=7).chain(11..=15) {
        protocol(decode(&frame(opcode, b"x")));
    }
}

#[test]
fn a_fragmented_control_frame_is_refused() {
    for opcode in [CLOSE, PING, PONG] {
        protocol(decode(&masked(false, opcode, b"", MASK)));
    }
}

#[test]
fn a_control_frame_over_125_bytes_is_refused_from_its_header() {
    for opcode in [CLOSE, PING, PONG] {
        let whole = frame(opcode, &payload(126));
        protocol(decode(&whole));
        protocol(decode(&whole[..8]));
    }
    assert_eq!(
        decode(&frame(PING, &payload(125))),
        Ok(Step::Frame {
            used: 6 + 125,
            message: Some(Message::Ping(Bytes::from(payload(125))))
        })
    );
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_header() {
    // Only the header: the refusal cannot wait for the payload.
    let over = header(true, TEXT, MAX as u64 + 1, MASK);
    assert_eq!(
        decode(&over),
        Err(Error::TooBig {
            size: MAX as u64 + 1,
            max: MAX
        })
    );
    assert_eq!(
        decode(&header(true, TEXT, MAX as u64, MASK)),
        Ok(Step::Need(MAX))
    );
    // The 16-bit form, and a fragment that starts a message.
    let mut decoder = Decoder::new(1000);
    assert_eq!(
        decoder.decode(&header(false, BINARY, 1001, MASK)),
        Err(Error::TooBig {
            size: 1001,
            max: 1000
        })
    );
}

#[test]
fn fragments_over_the_limit_together_are_refused() {
    let mut decoder = Decoder::new(100);
    assert_eq!(
        message(&mut decoder, &masked(false, TEXT, &[b'a'; 60], MASK)),
        None
    );
    assert_eq!(
        message(
            &mut decoder,
            &masked(false, CONTINUATION, &[b'b'; 40], MASK)
        ),
        None
    );
    assert_eq!(
        decoder.decode(&header(true, CONTINUATION, 1, MASK)),
        Err(Error::TooBig {
            size: 101,
            max: 100
        })
    );
    // Exactly at the limit is fine.
    let mut decoder = Decoder::new(100);
    assert_eq!(
        message(&mut decoder, &masked(false, TEXT, &[b'a'; 60], MASK)),
        None
    );
    assert_eq!(
        message(&mut decoder, &masked(true, CONTINUATION, &[b'b'; 40], MASK)),
        Some(Message::Text(Bytes::from(
            [[b'a'; 60].as_slice(), &[b'b'; 40]].concat()
        )))
    );
}

#[test]
fn a_64_bit_length_with_its_top_bit_set_is_refused() {
    for len in [1 << 63, (1 << 63) | 5, u64::MAX] {
        assert_eq!(
            decode(&header(true, BINARY, len, MASK)),
            Err(Error::TooBig {
                size: len,
                max: MAX
            })
        );
        assert!(decode(&header(true, CONTINUATION, len, MASK)).is_err());
        protocol(decode(&header(true, PING, len, MASK)));
    }
}

#[test]
fn an_empty_close_frame_has_no_code() {
    let mut decoder = Decoder::new(MAX);
    assert_eq!(
        message(&mut decoder, &frame(CLOSE, b"")),
        Some(Message::Close(None))
    );
}

#[test]
fn a_close_frame_of_one_byte_is_refused() {
    protocol(decode(&frame(CLOSE, &[0x03])));
}

#[test]
fn a_close_frame_carries_its_code_and_reason() {
    let mut decoder = Decoder::new(MAX);
    assert_eq!(
        message(&mut decoder, &frame(CLOSE, b"\x03\xE8bye")),
        Some(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "bye".to_owned()
        })))
    );
    let longest = [b"\x03\xE8".as_slice(), &[b'r'; 123]].concat();
    let Some(Message::Close(Some(close))) = message(&mut decoder, &frame(CLOSE, &longest)) else {
        panic!("a close frame of 125 bytes is a close frame");
    };
    assert_eq!(close.reason.len(), 123);
}

#[test]
fn close_codes_that_may_not_be_sent_are_refused() {
    for code in [
        0u16,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2999,
        5000,
        u16::MAX,
    ] {
        let mut close = code.to_be_bytes().to_vec();
        close.extend_from_slice(b"why");
        protocol(decode(&frame(CLOSE, &close)));
    }
}

#[test]
fn close_codes_that_may_be_sent_are_read() {
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999] {
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            message(&mut decoder, &frame(CLOSE, &code.to_be_bytes())),
            Some(Message::Close(Some(CloseFrame {
                code,
                reason: String::new()
            })))
        );
    }
}

#[test]
fn a_close_reason_that_is_not_utf8_is_refused() {
    for reason in [b"\xFF\xFE".as_slice(), b"caf\xC3", b"\xED\xA0\x80"] {
        let close = [b"\x03\xE8".as_slice(), reason].concat();
        assert_eq!(decode(&frame(CLOSE, &close)), Err(Error::BadUtf8));
    }
}

/// What a client sends for a frame of `kind` with `len` bytes of payload, and the message
/// it must decode to. A close frame's payload is a code and a reason.
fn sample(kind: Kind, len: usize) -> (Vec<u8>, u8, Message) {
    let data = payload(len);
    match kind {
        Kind::Text => (data.clone(), TEXT, Message::Text(Bytes::from(data))),
        Kind::Binary => (data.clone(), BINARY, Message::Binary(Bytes::from(data))),
        Kind::Ping => (data.clone(), PING, Message::Ping(Bytes::from(data))),
        Kind::Pong => (data.clone(), PONG, Message::Pong(Bytes::from(data))),
        Kind::Close if len == 0 => (Vec::new(), CLOSE, Message::Close(None)),
        Kind::Close => {
            let reason = "r".repeat(len - 2);
            let close = [b"\x0F\xA0".as_slice(), reason.as_bytes()].concat();
            let frame = CloseFrame { code: 4000, reason };
            (close, CLOSE, Message::Close(Some(frame)))
        }
    }
}

#[test]
fn encoded_frames_are_final_unmasked_and_read_back() {
    // Control frames are only encoded within their 125-byte limit (`encode`'s contract).
    let cases = [Kind::Text, Kind::Binary]
        .into_iter()
        .flat_map(|kind| [0, 125, 126, 65535, 65536].map(|len| (kind, len)))
        .chain(
            [Kind::Ping, Kind::Pong, Kind::Close]
                .into_iter()
                .flat_map(|kind| [0, 125].map(|len| (kind, len))),
        );
    for (kind, len) in cases {
        let (data, opcode, expected) = sample(kind, len);
        let mut out = b"before".to_vec();
        encode(kind, &data, &mut out);
        assert_eq!(&out[..6], b"before", "encode appends");
        let (fin, written_opcode, written) = read_server_frame(&out[6..]);
        assert!(fin, "{kind:?} {len}");
        assert_eq!(written_opcode, opcode, "{kind:?} {len}");
        assert_eq!(written, data, "{kind:?} {len}");
        // The same frame from a client decodes to the message.
        let mut decoder = Decoder::new(MAX);
        let client = masked(fin, written_opcode, &written, MASK);
        assert_eq!(
            message(&mut decoder, &client),
            Some(expected),
            "{kind:?} {len}"
        );
    }
}

#[test]
fn an_empty_close_is_two_bytes() {
    let mut out = Vec::new();
    encode_close(None, &mut out);
    assert_eq!(out, [0x88, 0x00]);
    out.clear();
    encode_close(Some((1000, "")), &mut out);
    assert_eq!(out, [0x88, 0x02, 0x03, 0xE8]);
}

#[test]
fn a_long_close_reason_is_cut_at_a_character_boundary() {
    // 123 bytes of reason fit. "a€€…" is cut at 121 (1 + 3 × 40), "🦀🦀…" at 120 (4 × 30),
    // "é…" at 122; ASCII at exactly 123.
    let cases = [
        (format!("a{}", "€".repeat(60)), 121),
        ("🦀".repeat(40), 120),
        ("é".repeat(100), 122),
        ("x".repeat(123), 123),
        ("x".repeat(200), 123),
        ("short, ünïcödé".to_owned(), "short, ünïcödé".len()),
    ];
    for (reason, kept) in cases {
        let mut out = Vec::new();
        encode_close(Some((1001, &reason)), &mut out);
        let (fin, opcode, written) = read_server_frame(&out);
        assert!(fin);
        assert_eq!(opcode, CLOSE);
        assert!(written.len() <= 125);
        assert_eq!(written.len(), 2 + kept, "{reason}");
        assert_eq!(written[..2], [0x03, 0xE9]);
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            message(&mut decoder, &frame(CLOSE, &written)),
            Some(Message::Close(Some(CloseFrame {
                code: 1001,
                reason: reason[..kept].to_owned()
            })))
        );
    }
}

/// A broken rule is refused from the first bytes that show it, not after a payload the
/// server would have to make room for and wait for.
#[test]
fn a_broken_rule_is_refused_from_the_first_two_bytes() {
    protocol(decode(&[0x81, 0x00]));
    protocol(decode(&[0xC1, 0x80]));
    protocol(decode(&header(true, 0x3, 1000, MASK)[..2]));
    protocol(decode(&header(true, CONTINUATION, 1000, MASK)[..2]));
    protocol(decode(&header(false, PING, 0, MASK)[..2]));
    let mut decoder = Decoder::new(MAX);
    assert_eq!(
        message(&mut decoder, &masked(false, TEXT, b"half", MASK)),
        None
    );
    protocol(decoder.decode(&header(true, BINARY, 1000, MASK)[..2]));
}

/// A limit near `usize::MAX` cannot make a frame's size overflow.
#[test]
fn the_largest_limit_refuses_the_largest_frame_without_overflow() {
    let input = header(true, BINARY, u64::MAX, MASK);
    let result = Decoder::new(usize::MAX).decode(&input);
    assert!(matches!(result, Err(Error::TooBig { .. })), "{result:?}");
}
