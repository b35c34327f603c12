//! The router: which codecs and header extensions it offers, and the tables each transport's
//! `Rtc` is built with. Payload types are Chromium's and str0m's defaults (Opus 111, VP8 96,
//! RTX 97; H.264 108, RTX 109) so a browser's producer needs no remapping; the receive side
//! uses str0m's standard extension IDs, which are the ones advertised here. A consumer
//! receives its producer's codec: the router does not transcode.

use serde_json::{json, Value};
use str0m::format::{Codec, CodecConfig, FormatParams};
use str0m::media::Pt;
use str0m::rtp::{Extension, ExtensionMap};
use str0m::RtcConfig;

use crate::params::{CapabilityCodec, HeaderExtension, Kind, ProducedStream, RTP_STREAM_ID};

pub(crate) const OPUS_PT: u8 = 111;
pub(crate) const VP8_PT: u8 = 96;
pub(crate) const VP8_RTX_PT: u8 = 97;
pub(crate) const H264_PT: u8 = 108;
pub(crate) const H264_RTX_PT: u8 = 109;
/// H.264 constrained baseline, level 3.1: what every WebRTC browser encodes and decodes.
const H264_PROFILE_LEVEL_ID: u32 = 0x42e01f;

const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
const TRANSPORT_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const REPAIRED_RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// The router's codecs: what a producer may send and what every consumer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouterCodec {
    Opus,
    Vp8,
    /// Packetization mode 1, the baseline profiles.
    H264,
}

impl RouterCodec {
    pub(crate) fn payload_type(self) -> u8 {
        match self {
            RouterCodec::Opus => OPUS_PT,
            RouterCodec::Vp8 => VP8_PT,
            RouterCodec::H264 => H264_PT,
        }
    }

    /// Its retransmission (RTX) payload type: video only.
    fn rtx_payload_type(self) -> Option<u8> {
        match self {
            RouterCodec::Opus => None,
            RouterCodec::Vp8 => Some(VP8_RTX_PT),
            RouterCodec::H264 => Some(H264_RTX_PT),
        }
    }

    /// Whether an RTP payload of this codec starts a keyframe: where a consumer may start
    /// watching, or move to another simulcast layer. Any payload is safe to ask about; what
    /// cannot be read is not a keyframe.
    pub(crate) fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            RouterCodec::Opus => true,
            RouterCodec::Vp8 => vp8_starts_keyframe(payload),
            RouterCodec::H264 => h264_starts_keyframe(payload),
        }
    }

    pub(crate) fn mime_type(self) -> &'static str {
        match self {
            RouterCodec::Opus => "audio/opus",
            RouterCodec::Vp8 => "video/VP8",
            RouterCodec::H264 => "video/H264",
        }
    }

    pub(crate) fn clock_rate(self) -> u32 {
        match self {
            RouterCodec::Opus => 48_000,
            RouterCodec::Vp8 | RouterCodec::H264 => 90_000,
        }
    }

    /// Its `parameters` (fmtp), as advertised and as a consumer is told.
    fn parameters(self) -> Value {
        match self {
            RouterCodec::Opus => json!({"minptime": 10, "useinbandfec": 1}),
            RouterCodec::Vp8 => json!({}),
            RouterCodec::H264 => json!({
                "packetization-mode": 1,
                "level-asymmetry-allowed": 1,
                "profile-level-id": format!("{H264_PROFILE_LEVEL_ID:06x}"),
            }),
        }
    }

    /// Whether a receiver that lists `codec` in its capabilities can decode this codec.
    fn matches(self, codec: &CapabilityCodec) -> bool {
        codec_for(
            self.kind(),
            &codec.mime_type,
            codec.clock_rate,
            codec.channels,
            &codec.parameters,
        ) == Some(self)
    }

    pub(crate) fn kind(self) -> Kind {
        match self {
            RouterCodec::Opus => Kind::Audio,
            RouterCodec::Vp8 | RouterCodec::H264 => Kind::Video,
        }
    }

    /// str0m's codec and format parameters for it.
    fn spec(self) -> (Codec, Option<u8>, FormatParams) {
        match self {
            RouterCodec::Opus => (
                Codec::Opus,
                Some(2),
                FormatParams {
                    min_p_time: Some(10),
                    use_inband_fec: Some(true),
                    ..FormatParams::default()
                },
            ),
            RouterCodec::Vp8 => (Codec::Vp8, None, FormatParams::default()),
            RouterCodec::H264 => (
                Codec::H264,
                None,
                FormatParams {
                    level_asymmetry_allowed: Some(true),
                    packetization_mode: Some(1),
                    profile_level_id: Some(H264_PROFILE_LEVEL_ID),
                    ..FormatParams::default()
                },
            ),
        }
    }
}

/// The router codec a producer's or receiver's codec entry names, if any. Audio must be
/// stereo Opus, as mediasoup-client's matching requires; H.264 must be packetization mode 1
/// in a baseline profile (`profile-level-id` 42xxxx, or none, which means baseline), the one
/// the router advertises.
pub(crate) fn codec_for(
    kind: Kind,
    mime_type: &str,
    clock_rate: u32,
    channels: Option<u8>,
    parameters: &serde_json::Map<String, Value>,
) -> Option<RouterCodec> {
    let codec = match kind {
        Kind::Audio if mime_type.eq_ignore_ascii_case("audio/opus") && channels == Some(2) => {
            RouterCodec::Opus
        }
        Kind::Video if mime_type.eq_ignore_ascii_case("video/vp8") => RouterCodec::Vp8,
        Kind::Video
            if mime_type.eq_ignore_ascii_case("video/h264") && is_baseline_mode_1(parameters) =>
        {
            RouterCodec::H264
        }
        _ => return None,
    };
    (codec.clock_rate() == clock_rate).then_some(codec)
}

/// H.264 parameters the router can forward: packetization mode 1 (numbers or strings, as
/// clients write either), baseline or constrained baseline.
fn is_baseline_mode_1(parameters: &serde_json::Map<String, Value>) -> bool {
    let number = |key: &str| match parameters.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(text)) => text.parse().ok(),
        _ => None,
    };
    let profile = match parameters.get("profile-level-id") {
        None => true,
        Some(Value::String(id)) => id.len() == 6 && id[..2].eq_ignore_ascii_case("42"),
        Some(_) => false,
    };
    number("packetization-mode") == Some(1) && profile
}

/// Whether a consumer with these capabilities can receive a producer of `codec`.
pub(crate) fn can_consume(codec: RouterCodec, capabilities: &[CapabilityCodec]) -> bool {
    capabilities.iter().any(|c| codec.matches(c))
}

fn feedback(kind: Kind) -> Value {
    match kind {
        Kind::Audio => json!([{"type": "transport-cc"}]),
        Kind::Video => json!([
            {"type": "nack"},
            {"type": "nack", "parameter": "pli"},
            {"type": "ccm", "parameter": "fir"},
            {"type": "transport-cc"}
        ]),
    }
}

/// A VP8 payload (RFC 7741): its descriptor says the packet starts partition 0 of a frame
/// (S set, PID 0), and the frame's header that it is a keyframe (P bit clear).
fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let (extended, start, partition) = (first & 0x80 != 0, first & 0x10 != 0, first & 0x07);
    if !start || partition != 0 {
        return false;
    }
    let mut at = 1;
    if extended {
        let Some(&flags) = payload.get(1) else {
            return false;
        };
        at = 2;
        if flags & 0x80 != 0 {
            // PictureID: two bytes when its M bit is set.
            let Some(&picture) = payload.get(at) else {
                return false;
            };
            at += if picture & 0x80 != 0 { 2 } else { 1 };
        }
        if flags & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if flags & 0x30 != 0 {
            at += 1; // TID, Y, KEYIDX
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// An H.264 payload (RFC 6184) that carries an IDR slice or a sequence parameter set (which
/// encoders send just before an IDR): a single NAL unit, one inside a STAP-A, or the first
/// fragment of an FU-A.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let key = |nal: u8| matches!(nal & 0x1f, IDR | SPS);
    match payload.first().map(|b| b & 0x1f) {
        Some(STAP_A) => {
            let mut rest = &payload[1..];
            while let [high, low, tail @ ..] = rest {
                let size = usize::from(u16::from_be_bytes([*high, *low]));
                let Some(unit) = tail.get(..size) else {
                    return false;
                };
                if unit.first().is_some_and(|&nal| key(nal)) {
                    return true;
                }
                rest = &tail[size..];
            }
            false
        }
        Some(FU_A) => payload
            .get(1)
            .is_some_and(|&header| header & 0x80 != 0 && key(header)),
        Some(nal) => key(nal),
        None => false,
    }
}

/// The router's RTP capabilities in mediasoup's shape, for `device.load`.
pub(crate) fn router_capabilities() -> Value {
    let mut extensions = Vec::new();
    for kind in ["audio", "video"] {
        extensions.push(json!({"kind": kind, "uri": MID, "preferredId": 4, "preferredEncrypt": false, "direction": "sendrecv"}));
        if kind == "audio" {
            extensions.push(json!({"kind": kind, "uri": AUDIO_LEVEL, "preferredId": 1, "preferredEncrypt": false, "direction": "sendrecv"}));
        }
        extensions.push(json!({"kind": kind, "uri": ABS_SEND_TIME, "preferredId": 2, "preferredEncrypt": false, "direction": "sendrecv"}));
        extensions.push(json!({"kind": kind, "uri": TRANSPORT_CC, "preferredId": 3, "preferredEncrypt": false, "direction": "sendrecv"}));
        if kind == "video" {
            // Simulcast: the router receives these (each layer's name), consumers never do.
            extensions.push(json!({"kind": kind, "uri": RTP_STREAM_ID, "preferredId": 10, "preferredEncrypt": false, "direction": "recvonly"}));
            extensions.push(json!({"kind": kind, "uri": REPAIRED_RTP_STREAM_ID, "preferredId": 11, "preferredEncrypt": false, "direction": "recvonly"}));
        }
    }
    json!({
        "codecs": [
            {"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": OPUS_PT,
             "clockRate": 48000, "channels": 2,
             "parameters": {"minptime": 10, "useinbandfec": 1},
             "rtcpFeedback": feedback(Kind::Audio)},
            {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": VP8_PT,
             "clockRate": 90000, "parameters": {}, "rtcpFeedback": feedback(Kind::Video)},
            {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": VP8_RTX_PT,
             "clockRate": 90000, "parameters": {"apt": VP8_PT}, "rtcpFeedback": []},
            {"kind": "video", "mimeType": "video/H264", "preferredPayloadType": H264_PT,
             "clockRate": 90000, "parameters": RouterCodec::H264.parameters(),
             "rtcpFeedback": feedback(Kind::Video)},
            {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": H264_RTX_PT,
             "clockRate": 90000, "parameters": {"apt": H264_PT}, "rtcpFeedback": []}
        ],
        "headerExtensions": extensions,
    })
}

/// A consumer's `rtpParameters`: its producer's codec at the router's payload type, our
/// SSRCs, and the receive-side IDs.
pub(crate) fn consumer_parameters(
    codec: RouterCodec,
    mid: &str,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) -> Value {
    let kind = codec.kind();
    let mut codecs = vec![json!({
        "mimeType": codec.mime_type(),
        "payloadType": codec.payload_type(),
        "clockRate": codec.clock_rate(),
        "parameters": codec.parameters(),
        "rtcpFeedback": feedback(kind),
    })];
    if kind == Kind::Audio {
        codecs[0]["channels"] = json!(2);
    }
    let mut encoding = json!({"ssrc": ssrc});
    if let (Some(rtx), Some(rtx_pt)) = (rtx_ssrc, codec.rtx_payload_type()) {
        codecs.push(json!({"mimeType": "video/rtx", "payloadType": rtx_pt,
            "clockRate": 90000, "parameters": {"apt": codec.payload_type()}, "rtcpFeedback": []}));
        encoding["rtx"] = json!({"ssrc": rtx});
    }
    let mut extensions = vec![
        json!({"uri": MID, "id": 4, "encrypt": false, "parameters": {}}),
        json!({"uri": ABS_SEND_TIME, "id": 2, "encrypt": false, "parameters": {}}),
        json!({"uri": TRANSPORT_CC, "id": 3, "encrypt": false, "parameters": {}}),
    ];
    if kind == Kind::Audio {
        extensions.push(json!({"uri": AUDIO_LEVEL, "id": 1, "encrypt": false, "parameters": {}}));
    }
    json!({
        "mid": mid,
        "codecs": codecs,
        "headerExtensions": extensions,
        "encodings": [encoding],
        "rtcp": {"cname": "switchboard", "reducedSize": true},
    })
}

fn extension_of(uri: &str) -> Option<Extension> {
    Some(match uri {
        MID => Extension::RtpMid,
        AUDIO_LEVEL => Extension::AudioLevel,
        ABS_SEND_TIME => Extension::AbsoluteSendTime,
        TRANSPORT_CC => Extension::TransportSequenceNumber,
        "urn:3gpp:video-orientation" => Extension::VideoOrientation,
        RTP_STREAM_ID => Extension::RtpStreamId,
        REPAIRED_RTP_STREAM_ID => Extension::RepairedRtpStreamId,
        _ => return None,
    })
}

/// Adds `codec` to a transport's table at `pt` (and `rtx`).
fn add_codec(config: &mut CodecConfig, codec: RouterCodec, pt: u8, rtx: Option<u8>) {
    let (spec, channels, format) = codec.spec();
    let clock = match codec.kind() {
        Kind::Audio => str0m::media::Frequency::FORTY_EIGHT_KHZ,
        Kind::Video => str0m::media::Frequency::NINETY_KHZ,
    };
    config.add_config(
        Pt::from(pt),
        rtx.map(Pt::from),
        spec,
        clock,
        channels,
        format,
    );
}

/// The codec table every transport is built with: the router codecs at the router's PTs.
fn router_codecs(config: &mut CodecConfig) {
    config.clear();
    for codec in [RouterCodec::Opus, RouterCodec::Vp8, RouterCodec::H264] {
        add_codec(
            config,
            codec,
            codec.payload_type(),
            codec.rtx_payload_type(),
        );
    }
}

/// A receive transport's tables: the router's, exactly as advertised.
pub(crate) fn recv_config(mut config: RtcConfig) -> RtcConfig {
    router_codecs(config.codec_config());
    let mut map = ExtensionMap::empty();
    map.set(1, Extension::AudioLevel);
    map.set(2, Extension::AbsoluteSendTime);
    map.set(3, Extension::TransportSequenceNumber);
    map.set(4, Extension::RtpMid);
    config.set_extension_map(map)
}

/// A send transport's tables, built at its first `produce`: the browser chose the extension
/// IDs (they depend on the order it produced tracks in), so the map takes them as they are.
/// IDs it has not used yet get audio-level, so a later audio producer's level still parses
/// whatever ID the browser picks for it (docs/media.md, "extension IDs").
pub(crate) fn send_config(
    mut config: RtcConfig,
    stream: &ProducedStream,
    extensions: &ExtensionMap,
) -> RtcConfig {
    let codecs = config.codec_config();
    router_codecs(codecs);
    let codec = stream.codec;
    if stream.payload_type != codec.payload_type() {
        // A browser with other payload types: receive them as they are, forward as the router's.
        let rtx = match codec.kind() {
            Kind::Audio => None,
            Kind::Video => stream.rtx_payload_type,
        };
        add_codec(codecs, codec, stream.payload_type, rtx);
    }
    config.set_extension_map(extensions.clone())
}

/// A send transport's extension map, fixed at its first `produce`: the browser's IDs for
/// what that producer names. An ID it leaves free is filled for what a later producer on the
/// same transport may name (str0m cannot change the map once built): the router's own IDs
/// for the simulcast rids (10, 11) and video orientation (13), Chromium's too (a browser keeps
/// a URI's ID across its media sections), and audio-level at every other.
pub(crate) fn send_extensions(extensions: &[HeaderExtension]) -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    for extension in extensions {
        if let Some(known) = extension_of(&extension.uri) {
            map.set(extension.id, known);
        }
    }
    for (id, reserved) in [
        (10, Extension::RtpStreamId),
        (11, Extension::RepairedRtpStreamId),
        (13, Extension::VideoOrientation),
    ] {
        if map.lookup(id).is_none() && map.id_of(reserved.clone()).is_none() {
            map.set(id, reserved);
        }
    }
    for id in 1..=14 {
        if map.lookup(id).is_none() {
            map.set(id, Extension::AudioLevel);
        }
    }
    map
}

/// Whether a later producer's extensions sit where the transport's map has them: each one
/// the router reads at the same ID.
pub(crate) fn extensions_fit(map: &ExtensionMap, extensions: &[HeaderExtension]) -> bool {
    extensions.iter().all(|extension| {
        extension_of(&extension.uri).is_none_or(|known| map.lookup(extension.id) == Some(&known))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cap(mime: &str, clock: u32, channels: Option<u8>) -> CapabilityCodec {
        CapabilityCodec {
            mime_type: mime.into(),
            clock_rate: clock,
            channels,
            parameters: serde_json::Map::new(),
        }
    }

    fn h264(parameters: Value) -> CapabilityCodec {
        CapabilityCodec {
            parameters: parameters.as_object().unwrap().clone(),
            ..cap("video/H264", 90_000, None)
        }
    }

    #[test]
    fn vp8_keyframes_are_told_from_the_descriptor_and_frame_header() {
        // X, S, PID 0; I with a 15-bit picture id; L; T; then the frame header.
        let key = [0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x10, 0x02, 0x9d];
        assert!(RouterCodec::Vp8.starts_keyframe(&key));
        let mut delta = key;
        delta[6] = 0x11; // P set: an interframe
        assert!(!RouterCodec::Vp8.starts_keyframe(&delta));
        let mut middle = key;
        middle[0] = 0x80; // S clear: not the frame's first packet
        assert!(!RouterCodec::Vp8.starts_keyframe(&middle));
        assert!(RouterCodec::Vp8.starts_keyframe(&[0x10, 0x00])); // no extension
        for cut in 0..7 {
            assert!(!RouterCodec::Vp8.starts_keyframe(&key[..cut]), "{cut}");
        }
    }

    #[test]
    fn h264_keyframes_are_found_in_single_stap_a_and_fu_a_packets() {
        let h264 = RouterCodec::H264;
        assert!(h264.starts_keyframe(&[0x65, 0x88])); // IDR slice
        assert!(!h264.starts_keyframe(&[0x41, 0x9a])); // non-IDR slice
                                                       // STAP-A with an SPS and a PPS.
        assert!(h264.starts_keyframe(&[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        assert!(!h264.starts_keyframe(&[0x18, 0x00, 0x01, 0x68, 0x00, 0x09])); // PPS, cut
        assert!(h264.starts_keyframe(&[0x7c, 0x85])); // FU-A, start, IDR
        assert!(!h264.starts_keyframe(&[0x7c, 0x05])); // FU-A, not the start
        assert!(!h264.starts_keyframe(&[0x7c]));
        assert!(!h264.starts_keyframe(&[]));
        assert!(!h264.starts_keyframe(&[0x18, 0xff, 0xff, 0x67]));
    }

    #[test]
    fn a_transport_built_by_audio_keeps_the_rid_ids_for_later_simulcast() {
        let extension = |uri: &str, id| HeaderExtension {
            uri: uri.to_owned(),
            id,
        };
        let audio = [extension(MID, 4), extension(AUDIO_LEVEL, 1)];
        let map = send_extensions(&audio);
        let simulcast = [
            extension(MID, 4),
            extension(RTP_STREAM_ID, 10),
            extension(REPAIRED_RTP_STREAM_ID, 11),
            extension(TRANSPORT_CC, 3),
        ];
        assert!(
            !extensions_fit(&map, &simulcast),
            "transport-cc at 3 is not mapped"
        );
        let audio = [
            extension(MID, 4),
            extension(AUDIO_LEVEL, 1),
            extension(TRANSPORT_CC, 3),
        ];
        let map = send_extensions(&audio);
        assert!(extensions_fit(&map, &simulcast));
        assert!(extensions_fit(&map, &audio));
        // A later producer naming the rid at another ID cannot be read.
        assert!(!extensions_fit(&map, &[extension(RTP_STREAM_ID, 12)]));
        // The first producer's own IDs win over the reserved ones.
        let odd = send_extensions(&[extension(MID, 10)]);
        assert_eq!(odd.lookup(10), Some(&Extension::RtpMid));
        assert_eq!(odd.lookup(11), Some(&Extension::RepairedRtpStreamId));
    }

    #[test]
    fn consumers_need_their_producers_codec() {
        let chrome = [
            cap("audio/opus", 48_000, Some(2)),
            cap("video/VP8", 90_000, None),
            h264(json!({"packetization-mode": 1, "profile-level-id": "42e01f"})),
        ];
        assert!(can_consume(RouterCodec::Opus, &chrome));
        assert!(can_consume(RouterCodec::Vp8, &chrome));
        assert!(can_consume(RouterCodec::H264, &chrome));
        let h264_only = [h264(
            json!({"packetization-mode": "1", "profile-level-id": "42001f"}),
        )];
        assert!(!can_consume(RouterCodec::Vp8, &h264_only));
        assert!(can_consume(RouterCodec::H264, &h264_only));
        // Mode 0, a High profile, no mode at all: not what the router forwards.
        for parameters in [
            json!({"packetization-mode": 0, "profile-level-id": "42e01f"}),
            json!({"packetization-mode": 1, "profile-level-id": "640032"}),
            json!({"profile-level-id": "42e01f"}),
        ] {
            assert!(!can_consume(RouterCodec::H264, &[h264(parameters)]));
        }
        let mono = [cap("audio/opus", 48_000, Some(1))];
        assert!(!can_consume(RouterCodec::Opus, &mono));
        assert!(!can_consume(RouterCodec::Vp8, &[]));
    }

    #[test]
    fn the_capabilities_offer_what_the_contract_requires() {
        let caps = router_capabilities();
        let codecs = caps["codecs"].as_array().unwrap();
        let opus = &codecs[0];
        assert_eq!(opus["preferredPayloadType"], 111);
        assert_eq!(opus["channels"], 2);
        let vp8 = &codecs[1];
        assert_eq!(vp8["preferredPayloadType"], 96);
        assert_eq!(vp8["rtcpFeedback"].as_array().unwrap().len(), 4);
        assert_eq!(codecs[2]["parameters"]["apt"], 96);
        let uris: Vec<&str> = caps["headerExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["uri"].as_str().unwrap())
            .collect();
        for uri in [
            MID,
            AUDIO_LEVEL,
            ABS_SEND_TIME,
            TRANSPORT_CC,
            RTP_STREAM_ID,
            REPAIRED_RTP_STREAM_ID,
        ] {
            assert!(uris.contains(&uri), "{uri}");
        }
    }

    #[test]
    fn consumer_parameters_carry_our_ssrcs() {
        let video = consumer_parameters(RouterCodec::Vp8, "3", 11, Some(12));
        assert_eq!(video["mid"], "3");
        assert_eq!(video["encodings"][0]["ssrc"], 11);
        assert_eq!(video["encodings"][0]["rtx"]["ssrc"], 12);
        assert_eq!(video["codecs"][1]["mimeType"], "video/rtx");
        let h264 = consumer_parameters(RouterCodec::H264, "5", 14, Some(15));
        assert_eq!(h264["codecs"][0]["mimeType"], "video/H264");
        assert_eq!(h264["codecs"][0]["payloadType"], 108);
        assert_eq!(h264["codecs"][0]["parameters"]["packetization-mode"], 1);
        assert_eq!(
            h264["codecs"][0]["parameters"]["profile-level-id"],
            "42e01f"
        );
        assert_eq!(h264["codecs"][1]["parameters"]["apt"], 108);
        let audio = consumer_parameters(RouterCodec::Opus, "4", 13, None);
        assert_eq!(audio["codecs"][0]["channels"], 2);
        assert_eq!(audio["codecs"].as_array().unwrap().len(), 1);
    }
}
