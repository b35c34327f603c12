//! What each fuzz target does with one input, and what it checks. Shared by the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and by the replay of saved crashes that plain `cargo test` runs
//! (`crates/dialects/tests/fuzz_regressions.rs` includes this file), so a regression input is
//! checked exactly as the fuzzer checked it. Uses only the dialects' and the core's public API.
//!
//! A dialect target reads the input as frames, one per line, through one session (so stateful
//! decoders move on), and also as one binary frame. A frame that decodes becomes the events
//! the hub would send for it, and each event is encoded by every dialect (a relayed message
//! reaches receivers of any dialect). A frame that fails becomes the error event its sender
//! would hear. Checked, where cheap:
//! - decoders and encoders never panic (the fuzzer catches panics and sanitizer reports);
//! - every raw JSON value a decoder keeps (payload, request id, relayed members) is JSON;
//! - every text frame a JSON dialect writes is one JSON value;
//! - a relayed payload (not a chat's) reaches conference and query-rooms receivers byte for
//!   byte;
//! - broadcast passes a text frame through unchanged.
//!
//! The `frame` target aims at `frame.rs` from both ends: the input, as one frame, goes through
//! every decoder (each starts with `frame.rs`'s field splitting), and, as a string, through
//! every encoder's JSON string writer (as an error message, a chat text, a name), whose output
//! must parse back to exactly that string.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use switchboard_core::{
    Command, DialectKind, ErrorCode, ErrorEvent, Event, Joined, Message, PeerName, Presence,
    RawFrame, RawJson, RoomId, Signal, SignalKind,
};
use switchboard_dialects::{
    resume, Broadcast, Conference, Dialect, Outbound, Pairing, QueryRooms, RoomRelay, WireError,
};

/// One fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Conference,
    QueryRooms,
    Pairing,
    RoomRelay,
    Broadcast,
    Frame,
}

impl Target {
    /// Every target, in the order `scripts/fuzz.sh` runs them.
    pub const ALL: [Target; 6] = [
        Target::Conference,
        Target::QueryRooms,
        Target::Pairing,
        Target::RoomRelay,
        Target::Broadcast,
        Target::Frame,
    ];

    /// The target's name: its binary and its directory under `fuzz/regressions/`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Conference => "conference",
            Target::QueryRooms => "query_rooms",
            Target::Pairing => "pairing",
            Target::RoomRelay => "room_relay",
            Target::Broadcast => "broadcast",
            Target::Frame => "frame",
        }
    }
}

/// What one input went through, so a replay can show it was really decoded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Frames that decoded to a command.
    pub decoded: usize,
    /// Frames refused with a typed error.
    pub refused: usize,
    /// Text frames written by an encoder (and checked).
    pub encoded: usize,
}

/// Runs `target` on one input; panics when an invariant breaks.
pub fn check(target: Target, data: &[u8]) -> Outcome {
    let mut outcome = Outcome::default();
    match target {
        Target::Conference => {
            frames::<Conference>(data, &mut outcome);
            resume_layer(data, &mut outcome);
        }
        Target::QueryRooms => frames::<QueryRooms>(data, &mut outcome),
        Target::Pairing => frames::<Pairing>(data, &mut outcome),
        Target::RoomRelay => frames::<RoomRelay>(data, &mut outcome),
        Target::Broadcast => frames::<Broadcast>(data, &mut outcome),
        Target::Frame => frame(data, &mut outcome),
    }
    outcome
}

fn frames<D: Dialect>(data: &[u8], outcome: &mut Outcome) {
    let mut session = D::Session::default();
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.split('\n') {
            let decoded = D::decode(&mut session, line);
            after_decode::<D>(line, decoded, outcome);
        }
    }
    let decoded = D::decode_binary(&mut session, Bytes::copy_from_slice(data));
    after_decode::<D>("", decoded, outcome);
}

/// The conference dialect's resume layer (`?resume=1`), on every line: `peek` reads a number,
/// an `ack` or a `resume`, or refuses with `bad_field`; a `resume`'s token is a substring's
/// worth of the frame, never more. `session` and `resumed` carry any token as a JSON string,
/// and `stamp` keeps a frame JSON with its number last.
fn resume_layer(data: &[u8], outcome: &mut Outcome) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut out = String::new();
    for line in text.split('\n') {
        match resume::peek(line) {
            Ok(envelope) => {
                if let Some(resume::Control::Resume { token, .. }) = &envelope.control {
                    assert!(
                        token.len() <= line.len(),
                        "a resume token longer than its frame: {line:?}"
                    );
                }
                if envelope.seq.is_some() || envelope.control.is_some() {
                    outcome.decoded += 1;
                }
            }
            Err(error) => {
                assert_eq!(error.code, ErrorCode::BadField, "{line:?}: {error:?}");
                outcome.refused += 1;
            }
        }
        resume::session(&mut out, line, 30_000);
        let session = json(DialectKind::Conference, &out);
        assert_eq!(session["data"]["token"], line, "session lost its token");
        resume::resumed(&mut out, Some(line), line, 1, 0);
        let resumed = json(DialectKind::Conference, &out);
        assert_eq!(resumed["data"]["roomId"], line, "resumed lost its room");
        assert_eq!(resumed["data"]["token"], line, "resumed lost its token");
        resume::stamp(&mut out, 7);
        let stamped = json(DialectKind::Conference, &out);
        assert_eq!(stamped["seq"], 7, "stamp lost the number: {out}");
        outcome.encoded += 3;
    }
}

fn frame(data: &[u8], outcome: &mut Outcome) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = Conference::decode(&mut Default::default(), text);
    after_decode::<Conference>(text, decoded, outcome);
    let decoded = QueryRooms::decode(&mut Default::default(), text);
    after_decode::<QueryRooms>(text, decoded, outcome);
    let decoded = Pairing::decode(&mut Default::default(), text);
    after_decode::<Pairing>(text, decoded, outcome);
    let decoded = RoomRelay::decode(&mut Default::default(), text);
    after_decode::<RoomRelay>(text, decoded, outcome);

    let error = Event::Error(Box::new(ErrorEvent {
        code: ErrorCode::BadField,
        message: Arc::from(text),
        rid: None,
    }));
    for (dialect, out) in encode_everywhere(&error) {
        if let Some(out) = out {
            outcome.encoded += 1;
            assert!(
                holds_string(&json(dialect, &out), text),
                "{dialect:?} lost an error message: {text:?} became {out}"
            );
        }
    }
    let mut chat = Message::new(SignalKind::Chat, None);
    chat.text = Some(Arc::from(text));
    chat.timestamp = Some(Arc::from(text));
    let chat = signal(DialectKind::Conference, false, chat);
    for (dialect, out) in encode_everywhere(&chat) {
        if let Some(out) = out {
            outcome.encoded += 1;
            assert!(
                holds_string(&json(dialect, &out), text),
                "{dialect:?} lost a chat text: {text:?} became {out}"
            );
        }
    }
    if let (Ok(room), Ok(name)) = (RoomId::parse(text), PeerName::parse(text)) {
        let joined = Event::PeerJoined(Arc::new(Presence { room, name }));
        for (dialect, out) in encode_everywhere(&joined) {
            if let Some(out) = out {
                outcome.encoded += 1;
                assert!(
                    holds_string(&json(dialect, &out), text),
                    "{dialect:?} lost a name: {text:?} became {out}"
                );
            }
        }
    }
}

/// Checks what `D` decoded from `text` and encodes the events it leads to.
fn after_decode<D: Dialect>(
    text: &str,
    decoded: Result<Command<'_>, WireError>,
    outcome: &mut Outcome,
) {
    let command = match decoded {
        Ok(command) => {
            outcome.decoded += 1;
            command
        }
        Err(error) => {
            outcome.refused += 1;
            if let Some(rid) = &error.rid {
                assert_json(rid, "an error's rid");
            }
            let event = Event::Error(Box::new(ErrorEvent {
                code: error.code,
                message: Arc::from(&*error.message),
                rid: error.rid,
            }));
            outcome.encoded += encode_everywhere(&event)
                .iter()
                .filter(|(_, out)| out.is_some())
                .count();
            return;
        }
    };
    if let Some(rid) = command.rid() {
        assert_json(rid, "a rid");
    }
    for event in events(D::KIND, command) {
        let relayed = match &event {
            // A chat's payload is read into its text (and timestamp), not relayed as is.
            Event::Signal(signal) if signal.message.kind != SignalKind::Chat => {
                signal.message.payload.clone()
            }
            _ => None,
        };
        for (dialect, out) in encode_everywhere(&event) {
            let Some(out) = out else { continue };
            outcome.encoded += 1;
            if let (Some(payload), DialectKind::Conference | DialectKind::QueryRooms) =
                (&relayed, dialect)
            {
                assert!(
                    out.contains(payload.as_str()),
                    "{dialect:?} changed a relayed payload: {payload:?} in {out}"
                );
            }
        }
        if let (Event::Frame(frame), DialectKind::Broadcast) = (&event, D::KIND) {
            if let RawFrame::Text(bytes) = &**frame {
                assert_eq!(
                    &bytes[..],
                    text.as_bytes(),
                    "broadcast changed a text frame"
                );
            }
        }
    }
}

/// The events the hub would send for `command` from a peer of dialect `origin` (to the
/// sender and to the others), without a hub: each command's typical outcome.
fn events(origin: DialectKind, command: Command<'_>) -> Vec<Event> {
    let sender = PeerName::parse("fuzz").expect("\"fuzz\" is a valid name");
    match command {
        Command::Join { room, name, rid } => {
            assert_eq!(RoomId::parse(room.as_str()).as_ref(), Ok(&room));
            assert_eq!(PeerName::parse(name.as_str()).as_ref(), Ok(&name));
            let presence = Arc::new(Presence {
                room: room.clone(),
                name: name.clone(),
            });
            vec![
                Event::Joined(Box::new(Joined {
                    room: room.clone(),
                    name: name.clone(),
                    members: Arc::from(vec![sender, name.clone()]),
                    rid,
                    ice_servers: None,
                    media: None,
                })),
                Event::PeerJoined(presence.clone()),
                Event::PeerLeft(presence),
            ]
        }
        Command::Leave { .. } => Vec::new(),
        Command::Send { to, message, .. } => {
            check_message(&message);
            vec![signal(origin, to.is_some(), message)]
        }
        Command::Pair { message, .. } => {
            check_message(&message);
            vec![
                signal(origin, true, message),
                Event::PartnerGone { from: sender },
            ]
        }
        Command::Broadcast(frame) => vec![Event::Frame(Arc::new(frame))],
        Command::Media { data, rid, .. } => {
            assert_json(&data, "media data");
            vec![Event::Error(Box::new(ErrorEvent {
                code: ErrorCode::MediaDisabled,
                message: Arc::from("media is off on this server"),
                rid,
            }))]
        }
    }
}

fn check_message(message: &Message) {
    if let Some(payload) = &message.payload {
        assert_json(payload, "a payload");
    }
    // Room-relay keeps a frame's other members as `,"k":v...`, to be written inside an object.
    if let Some(fields) = &message.fields {
        let object = format!("{{\"type\":0{}}}", fields.as_str());
        assert_json(&RawJson::new(&object), "relayed members");
    }
}

fn signal(origin: DialectKind, addressed: bool, message: Message) -> Event {
    Event::Signal(Arc::new(Signal {
        from: PeerName::parse("fuzz").expect("\"fuzz\" is a valid name"),
        origin,
        addressed,
        message,
        frames: Default::default(),
    }))
}

/// Encodes `event` with every dialect; each JSON dialect's text output must be one JSON
/// value. Returns the text each produced (`None`: skipped, or binary).
fn encode_everywhere(event: &Event) -> Vec<(DialectKind, Option<String>)> {
    let outputs = [
        (
            DialectKind::Conference,
            encode::<Conference>(event, DialectKind::Conference),
        ),
        (
            DialectKind::QueryRooms,
            encode::<QueryRooms>(event, DialectKind::QueryRooms),
        ),
        (
            DialectKind::Pairing,
            encode::<Pairing>(event, DialectKind::Pairing),
        ),
        (
            DialectKind::RoomRelay,
            encode::<RoomRelay>(event, DialectKind::RoomRelay),
        ),
        (
            DialectKind::Broadcast,
            encode::<Broadcast>(event, DialectKind::Broadcast),
        ),
    ];
    outputs.into_iter().collect()
}

fn encode<D: Dialect>(event: &Event, kind: DialectKind) -> Option<String> {
    let mut out = String::new();
    match D::encode(&mut D::Session::default(), event, &mut out) {
        Outbound::Text | Outbound::TextForAll => {
            // Validated without building a tree: this runs for every event of every input.
            if let Err(error) = serde_json::from_str::<&serde_json::value::RawValue>(&out) {
                panic!("{kind:?} wrote a frame that is not JSON ({error}): {out}");
            }
            Some(out)
        }
        // Broadcast's relayed frame: any text, JSON or not, but UTF-8 (a text frame).
        Outbound::SharedText(bytes) => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Some(text),
            Err(_) => panic!("{kind:?} wrote a text frame that is not UTF-8"),
        },
        Outbound::Skip | Outbound::Binary(_) => None,
    }
}

fn json(kind: DialectKind, out: &str) -> Value {
    serde_json::from_str(out)
        .unwrap_or_else(|error| panic!("{kind:?} wrote a frame that is not JSON ({error}): {out}"))
}

fn assert_json(raw: &RawJson, what: &str) {
    if let Err(error) = serde_json::from_str::<&serde_json::value::RawValue>(raw.as_str()) {
        panic!("{what} kept as raw JSON is not JSON ({error}): {raw:?}");
    }
}

/// Whether `value` holds the string `text` anywhere (as a string value).
fn holds_string(value: &Value, text: &str) -> bool {
    match value {
        Value::String(string) => string == text,
        Value::Array(items) => items.iter().any(|item| holds_string(item, text)),
        Value::Object(members) => members.values().any(|member| holds_string(member, text)),
        _ => false,
    }
}
