//! Reading and writing JSON frames without touching what is relayed.
//!
//! A frame is read in two steps: [`Fields`] splits the top-level object into names and raw
//! values (nothing below the top level is parsed), then each dialect reads the few fields it
//! needs. Relayed values (`payload`, `data`, `rid`) stay [`RawValue`]s, copied once and
//! written back byte for byte. (`#[serde(tag = "type")]` enums cannot hold a `RawValue`:
//! serde-rs/json#545.)

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{ErrorCode, PeerName, RawJson, RoomId};

use crate::WireError;

/// The top-level members of one JSON object frame, in order, values unparsed.
pub(crate) struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Fields<'a> {
    /// Splits `text` into its members: `bad_json` if it is not JSON, `bad_field` if it is
    /// not an object.
    pub(crate) fn parse(text: &'a str) -> Result<Self, WireError> {
        serde_json::from_str(text).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => {
                WireError::new(ErrorCode::BadField, "a frame must be a JSON object")
            }
            _ => WireError::new(ErrorCode::BadJson, format!("not valid JSON: {error}")),
        })
    }

    /// The raw value of `name`, if present (the last one, if repeated).
    pub(crate) fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|&(_, value)| value)
    }

    /// The frame's `type`: `missing_type` if absent, `bad_field` if not a string.
    pub(crate) fn kind(&self) -> Result<Cow<'a, str>, WireError> {
        match self.raw("type") {
            None => Err(WireError::new(
                ErrorCode::MissingType,
                "the frame has no type",
            )),
            Some(raw) => string(raw).ok_or_else(|| WireError::bad_field("type", "a string")),
        }
    }

    /// An optional string member; `null` counts as absent.
    pub(crate) fn string(&self, name: &str) -> Result<Option<Cow<'a, str>>, WireError> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => string(raw)
                .map(Some)
                .ok_or_else(|| WireError::bad_field(name, "a string")),
        }
    }

    /// A required string member.
    pub(crate) fn required(&self, name: &str) -> Result<Cow<'a, str>, WireError> {
        self.string(name)?
            .ok_or_else(|| WireError::bad_field(name, "a string"))
    }

    /// A required object member, as its own [`Fields`].
    pub(crate) fn object(&self, name: &str) -> Result<Fields<'a>, WireError> {
        let raw = self
            .raw(name)
            .ok_or_else(|| WireError::bad_field(name, "an object"))?;
        serde_json::from_str(raw.get()).map_err(|_| WireError::bad_field(name, "an object"))
    }

    /// Every member, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_ref(), *value))
    }
}

/// Reads a JSON string, borrowing it when it has no escapes.
pub(crate) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let json = raw.get();
    if let Ok(borrowed) = serde_json::from_str::<&str>(json) {
        return Some(Cow::Borrowed(borrowed));
    }
    serde_json::from_str::<String>(json).ok().map(Cow::Owned)
}

/// Copies a raw value out of the frame, to be relayed as it is.
pub(crate) fn raw_json(raw: &RawValue) -> RawJson {
    RawJson::new(raw.get())
}

/// The request id (`rid`) of a frame, if it has one.
pub(crate) fn rid(fields: &Fields<'_>) -> Option<RawJson> {
    fields.raw("rid").map(raw_json)
}

pub(crate) fn room_id(name: &str, text: &str) -> Result<RoomId, WireError> {
    RoomId::parse(text)
        .map_err(|error| WireError::new(ErrorCode::BadId, format!("{name}: {error}")))
}

pub(crate) fn peer_name(name: &str, text: &str) -> Result<PeerName, WireError> {
    PeerName::parse(text)
        .map_err(|error| WireError::new(ErrorCode::BadId, format!("{name}: {error}")))
}

/// Appends `text` as a JSON string, quotes included.
pub(crate) fn push_str(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..index]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        start = index + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Appends `"name":` (the name is one of ours: no escaping needed).
pub(crate) fn push_key(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

/// Appends `,"rid":R` when there is a request id to echo.
pub(crate) fn push_rid(out: &mut String, rid: Option<&RawJson>) {
    if let Some(rid) = rid {
        out.push_str(",\"rid\":");
        out.push_str(rid.as_str());
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                // Frames have a handful of members; 8 covers every seed's frames.
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8).min(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    entries.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields { entries })
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_values_raw() {
        let fields =
            Fields::parse(r#"{"type":"offer","payload":{"sdp":"v=0\r\n", "n": 1.50}}"#).unwrap();
        assert_eq!(fields.kind().unwrap(), "offer");
        assert_eq!(
            fields.raw("payload").unwrap().get(),
            r#"{"sdp":"v=0\r\n", "n": 1.50}"#
        );
    }

    #[test]
    fn malformed_frames_get_their_codes() {
        let code = |text| Fields::parse(text).and_then(|f| f.kind()).unwrap_err().code;
        assert_eq!(code("{"), ErrorCode::BadJson);
        assert_eq!(code("nope"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadField);
        assert_eq!(code(r#"{"to":"x"}"#), ErrorCode::MissingType);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::BadField);
    }

    #[test]
    fn escaped_strings_are_read_and_written_back() {
        let fields = Fields::parse(r#"{"type":"a\"b\u00e9"}"#).unwrap();
        let kind = fields.kind().unwrap();
        assert_eq!(kind, "a\"bé");
        let mut out = String::new();
        push_str(&mut out, "q\"\\\n\u{1}é");
        assert_eq!(out, r#""q\"\\\n\u0001é""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "q\"\\\n\u{1}é"
        );
    }
}
