//! The router: which codecs and header extensions it offers, and the tables each transport's
//! `Rtc` is built with. Payload types are Chromium's and str0m's defaults (Opus 111, VP8 96,
//! RTX 97) so a browser's producer needs no remapping; the receive side uses str0m's standard
//! extension IDs, which are the ones advertised here.

use serde_json::{json, Value};
use str0m::format::{Codec, CodecConfig, FormatParams};
use str0m::media::Pt;
use str0m::rtp::{Extension, ExtensionMap};
use str0m::RtcConfig;

use crate::params::{CapabilityCodec, HeaderExtension, Kind, ProducedStream};

pub(crate) const OPUS_PT: u8 = 111;
pub(crate) const VP8_PT: u8 = 96;
pub(crate) const VP8_RTX_PT: u8 = 97;

const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
const TRANSPORT_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The router's codecs: what a producer may send and what every consumer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouterCodec {
    Opus,
    Vp8,
}

impl RouterCodec {
    pub(crate) fn payload_type(self) -> u8 {
        match self {
            RouterCodec::Opus => OPUS_PT,
            RouterCodec::Vp8 => VP8_PT,
        }
    }

    fn mime_type(self) -> &'static str {
        match self {
            RouterCodec::Opus => "audio/opus",
            RouterCodec::Vp8 => "video/VP8",
        }
    }

    fn clock_rate(self) -> u32 {
        match self {
            RouterCodec::Opus => 48_000,
            RouterCodec::Vp8 => 90_000,
        }
    }

    /// Whether a receiver that lists `codec` in its capabilities can decode this codec.
    fn matches(self, codec: &CapabilityCodec) -> bool {
        codec_for(
            self.kind(),
            &codec.mime_type,
            codec.clock_rate,
            codec.channels,
        ) == Some(self)
    }

    fn kind(self) -> Kind {
        match self {
            RouterCodec::Opus => Kind::Audio,
            RouterCodec::Vp8 => Kind::Video,
        }
    }
}

/// The router codec a producer's or receiver's codec entry names, if any. Audio must be
/// stereo Opus, as mediasoup-client's matching requires.
pub(crate) fn codec_for(
    kind: Kind,
    mime_type: &str,
    clock_rate: u32,
    channels: Option<u8>,
) -> Option<RouterCodec> {
    let codec = match kind {
        Kind::Audio if mime_type.eq_ignore_ascii_case("audio/opus") && channels == Some(2) => {
            RouterCodec::Opus
        }
        Kind::Video if mime_type.eq_ignore_ascii_case("video/vp8") => RouterCodec::Vp8,
        _ => return None,
    };
    (codec.clock_rate() == clock_rate).then_some(codec)
}

/// The router codec of `kind`.
pub(crate) fn router_codec(kind: Kind) -> RouterCodec {
    match kind {
        Kind::Audio => RouterCodec::Opus,
        Kind::Video => RouterCodec::Vp8,
    }
}

/// Whether a consumer with these capabilities can receive a producer of `kind`.
pub(crate) fn can_consume(kind: Kind, capabilities: &[CapabilityCodec]) -> bool {
    let codec = router_codec(kind);
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
             "clockRate": 90000, "parameters": {"apt": VP8_PT}, "rtcpFeedback": []}
        ],
        "headerExtensions": extensions,
    })
}

/// A consumer's `rtpParameters`: the router codec, our SSRCs, and the receive-side IDs.
pub(crate) fn consumer_parameters(
    kind: Kind,
    mid: &str,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) -> Value {
    let codec = router_codec(kind);
    let mut codecs = vec![json!({
        "mimeType": codec.mime_type(),
        "payloadType": codec.payload_type(),
        "clockRate": codec.clock_rate(),
        "parameters": match kind {
            Kind::Audio => json!({"minptime": 10, "useinbandfec": 1}),
            Kind::Video => json!({}),
        },
        "rtcpFeedback": feedback(kind),
    })];
    if kind == Kind::Audio {
        codecs[0]["channels"] = json!(2);
    }
    let mut encoding = json!({"ssrc": ssrc});
    if let Some(rtx) = rtx_ssrc {
        codecs.push(json!({"mimeType": "video/rtx", "payloadType": VP8_RTX_PT,
            "clockRate": 90000, "parameters": {"apt": VP8_PT}, "rtcpFeedback": []}));
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
        _ => return None,
    })
}

/// The codec table every transport is built with: the router codecs at the router's PTs.
fn router_codecs(config: &mut CodecConfig) {
    config.clear();
    config.add_config(
        Pt::from(OPUS_PT),
        None,
        Codec::Opus,
        str0m::media::Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            ..FormatParams::default()
        },
    );
    config.add_config(
        Pt::from(VP8_PT),
        Some(Pt::from(VP8_RTX_PT)),
        Codec::Vp8,
        str0m::media::Frequency::NINETY_KHZ,
        None,
        FormatParams::default(),
    );
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
    kind: Kind,
    stream: &ProducedStream,
    extensions: &[HeaderExtension],
) -> RtcConfig {
    let codecs = config.codec_config();
    router_codecs(codecs);
    let codec = router_codec(kind);
    if stream.payload_type != codec.payload_type() {
        // A browser with other payload types: receive them as they are, forward as the router's.
        let (clock, channels, resend) = match kind {
            Kind::Audio => (str0m::media::Frequency::FORTY_EIGHT_KHZ, Some(2), None),
            Kind::Video => (
                str0m::media::Frequency::NINETY_KHZ,
                None,
                stream.rtx_payload_type.map(Pt::from),
            ),
        };
        let spec = match kind {
            Kind::Audio => Codec::Opus,
            Kind::Video => Codec::Vp8,
        };
        codecs.add_config(
            Pt::from(stream.payload_type),
            resend,
            spec,
            clock,
            channels,
            FormatParams::default(),
        );
    }
    let mut map = ExtensionMap::empty();
    for extension in extensions {
        if let Some(known) = extension_of(&extension.uri) {
            map.set(extension.id, known);
        }
    }
    for id in 1..=14 {
        if map.lookup(id).is_none() {
            map.set(id, Extension::AudioLevel);
        }
    }
    config.set_extension_map(map)
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
        }
    }

    #[test]
    fn consumers_need_the_router_codec() {
        let chrome = [
            cap("audio/opus", 48_000, Some(2)),
            cap("video/VP8", 90_000, None),
        ];
        assert!(can_consume(Kind::Audio, &chrome));
        assert!(can_consume(Kind::Video, &chrome));
        let h264_only = [cap("video/H264", 90_000, None)];
        assert!(!can_consume(Kind::Video, &h264_only));
        let mono = [cap("audio/opus", 48_000, Some(1))];
        assert!(!can_consume(Kind::Audio, &mono));
        assert!(!can_consume(Kind::Video, &[]));
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
        for uri in [MID, AUDIO_LEVEL, ABS_SEND_TIME, TRANSPORT_CC] {
            assert!(uris.contains(&uri), "{uri}");
        }
    }

    #[test]
    fn consumer_parameters_carry_our_ssrcs() {
        let video = consumer_parameters(Kind::Video, "3", 11, Some(12));
        assert_eq!(video["mid"], "3");
        assert_eq!(video["encodings"][0]["ssrc"], 11);
        assert_eq!(video["encodings"][0]["rtx"]["ssrc"], 12);
        assert_eq!(video["codecs"][1]["mimeType"], "video/rtx");
        let audio = consumer_parameters(Kind::Audio, "4", 13, None);
        assert_eq!(audio["codecs"][0]["channels"], 2);
        assert_eq!(audio["codecs"].as_array().unwrap().len(), 1);
    }
}
