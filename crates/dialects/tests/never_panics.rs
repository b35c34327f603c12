//! Every decoder takes any input without panicking: arbitrary text, and arbitrary JSON
//! objects built from the field names the dialects read (which reach deeper code paths).

use bytes::Bytes;
use proptest::prelude::*;
use switchboard_dialects::{Broadcast, Conference, Dialect, Pairing, QueryRooms, RoomRelay};

fn decode_all(text: &str) {
    let _ = QueryRooms::decode(&mut Default::default(), text);
    let _ = Pairing::decode(&mut Default::default(), text);
    let _ = RoomRelay::decode(&mut Default::default(), text);
    let _ = Conference::decode(&mut Default::default(), text);
    let _ = Broadcast::decode(&mut (), text);
    let _ = Conference::decode_binary(
        &mut Default::default(),
        Bytes::copy_from_slice(text.as_bytes()),
    );
}

fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<String>()
            .prop_map(|s| serde_json::to_string(&s).expect("a String always serializes")),
        prop::sample::select(vec![
            "\"join-room\"",
            "\"webrtc-offer\"",
            "\"chat-message\"",
            "\"ping\"",
            "\"pong\"",
            "\"offer\"",
            "\"leave-room\"",
            "\"chat\"",
            "\"produce\"",
            "\"\"",
            "\"a\"",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((field_name(), inner), 0..6).prop_map(|fields| {
                let body: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

fn field_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "type",
        "data",
        "rid",
        "to",
        "from",
        "payload",
        "target",
        "roomId",
        "username",
        "sender",
        "text",
        "timestamp",
        "message",
        "x",
    ])
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        decode_all(&text);
    }

    #[test]
    fn arbitrary_json_objects_never_panic(value in json_value()) {
        decode_all(&value);
    }

    #[test]
    fn arbitrary_frames_with_a_known_type_never_panic(
        kind in prop::sample::select(vec![
            "join-room", "leave-room", "chat-message", "webrtc-offer", "webrtc-answer",
            "webrtc-ice-candidate", "ping", "pong", "offer", "answer", "ice-candidate",
            "ice_candidate", "disconnect", "chat", "produce", "error", "peer_left",
        ]),
        fields in prop::collection::vec((field_name(), json_value()), 0..6),
    ) {
        let mut body = format!("{{\"type\":\"{kind}\"");
        for (key, value) in fields {
            body.push_str(&format!(",\"{key}\":{value}"));
        }
        body.push('}');
        decode_all(&body);
    }
}
