//! The mediasoup-shaped JSON of the SFU requests (docs/media.md), parsed with serde and then
//! checked, so that nothing a client sends can reach a str0m call that would panic on it.

use serde::{Deserialize, Serialize};
use str0m::media::MediaKind;

use crate::MediaError;

/// Parses a request's `data` object, or says which field is wrong.
pub(crate) fn parse<'a, T: Deserialize<'a>>(data: &'a str) -> Result<T, MediaError> {
    serde_json::from_str(data).map_err(|error| MediaError::BadParameters(error.to_string()))
}

/// Audio or video, as the wire spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }

    pub(crate) fn media_kind(self) -> MediaKind {
        match self {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        }
    }
}

/// Which way media flows on a transport, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Direction {
    /// The client produces on it.
    Send,
    /// The client consumes on it.
    Recv,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateTransport {
    pub(crate) direction: Direction,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectTransport {
    pub(crate) transport_id: String,
    pub(crate) dtls_parameters: DtlsParameters,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DtlsParameters {
    #[serde(default)]
    pub(crate) role: Option<DtlsRole>,
    pub(crate) fingerprints: Vec<DtlsFingerprint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DtlsRole {
    Auto,
    Client,
    Server,
}

#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct DtlsFingerprint {
    pub(crate) algorithm: String,
    pub(crate) value: String,
}

impl DtlsParameters {
    /// The client's certificate fingerprint in str0m's form. Like mediasoup-client, the last
    /// of several wins.
    pub(crate) fn fingerprint(&self) -> Result<str0m::config::Fingerprint, MediaError> {
        let last = self
            .fingerprints
            .last()
            .ok_or_else(|| MediaError::bad("dtlsParameters.fingerprints is empty"))?;
        let text = format!("{} {}", last.algorithm.to_ascii_lowercase(), last.value);
        text.parse()
            .map_err(|_| MediaError::bad("dtlsParameters.fingerprints: not a fingerprint"))
    }

    /// Whether we start the DTLS handshake: only when the client says it is the server.
    pub(crate) fn we_are_client(&self) -> bool {
        self.role == Some(DtlsRole::Server)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Produce {
    pub(crate) transport_id: String,
    pub(crate) kind: Kind,
    pub(crate) rtp_parameters: RtpParameters,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RtpParameters {
    #[serde(default)]
    pub(crate) mid: Option<String>,
    pub(crate) codecs: Vec<CodecParameters>,
    #[serde(default)]
    pub(crate) header_extensions: Vec<HeaderExtension>,
    #[serde(default)]
    pub(crate) encodings: Vec<Encoding>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CodecParameters {
    pub(crate) mime_type: String,
    pub(crate) payload_type: u8,
    pub(crate) clock_rate: u32,
    #[serde(default)]
    pub(crate) channels: Option<u8>,
    #[serde(default)]
    pub(crate) parameters: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeaderExtension {
    pub(crate) uri: String,
    pub(crate) id: u8,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Encoding {
    #[serde(default)]
    pub(crate) ssrc: Option<u32>,
    #[serde(default)]
    pub(crate) rtx: Option<Rtx>,
    #[serde(default)]
    pub(crate) rid: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Rtx {
    pub(crate) ssrc: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Consume {
    pub(crate) transport_id: String,
    pub(crate) producer_id: String,
    pub(crate) rtp_capabilities: RtpCapabilities,
    /// The layer a consumer of a simulcast producer would rather have (default: the top).
    #[serde(default)]
    pub(crate) preferred_layers: Option<PreferredLayers>,
}

/// `consume`'s `preferredLayers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreferredLayers {
    pub(crate) spatial_layer: u8,
}

/// `set-preferred-layers`. A `temporalLayer` is accepted and ignored: every temporal layer
/// of the chosen spatial layer is forwarded.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetPreferredLayers {
    pub(crate) consumer_id: String,
    pub(crate) spatial_layer: u8,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RtpCapabilities {
    #[serde(default)]
    pub(crate) codecs: Vec<CapabilityCodec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CapabilityCodec {
    pub(crate) mime_type: String,
    pub(crate) clock_rate: u32,
    #[serde(default)]
    pub(crate) channels: Option<u8>,
    #[serde(default)]
    pub(crate) parameters: serde_json::Map<String, serde_json::Value>,
}

/// The data of a request about one consumer: `pause-consumer`, `resume-consumer`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OfConsumer {
    pub(crate) consumer_id: String,
}

/// The data of a request about one producer: `pause-producer`, `resume-producer`,
/// `close-producer`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OfProducer {
    pub(crate) producer_id: String,
}

/// The most simulcast layers a producer may send.
pub(crate) const MAX_LAYERS: usize = 4;

/// The header extension that names a simulcast layer (RFC 8852).
pub(crate) const RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// A producer's stream, checked: what the send transport is told to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducedStream {
    pub(crate) mid: String,
    pub(crate) codec: crate::caps::RouterCodec,
    pub(crate) payload_type: u8,
    pub(crate) rtx_payload_type: Option<u8>,
    pub(crate) encodings: Encodings,
}

/// How a producer's packets are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encodings {
    /// One stream, its SSRCs given.
    Single { ssrc: u32, rtx_ssrc: Option<u32> },
    /// Simulcast: one stream per layer, lowest first, each named by its rid; their SSRCs are
    /// learnt from the first packets (the RTP stream id header extension carries the rid).
    Simulcast(Vec<String>),
}

impl Produce {
    /// Checks the parameters against what this SFU forwards: one encoding with an SSRC, or
    /// (video) 2 to [`MAX_LAYERS`] encodings named by rids; the router's codec for the kind
    /// first; a mid str0m can hold.
    pub(crate) fn stream(&self) -> Result<ProducedStream, MediaError> {
        let rtp = &self.rtp_parameters;
        let mid = rtp
            .mid
            .clone()
            .ok_or_else(|| MediaError::bad("rtpParameters.mid is required"))?;
        if mid.is_empty() || mid.len() > 16 || !mid.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MediaError::bad(
                "rtpParameters.mid must be 1 to 16 visible ASCII characters",
            ));
        }
        let codec = rtp
            .codecs
            .first()
            .ok_or_else(|| MediaError::bad("rtpParameters.codecs is empty"))?;
        let Some(router_codec) = crate::caps::codec_for(
            self.kind,
            &codec.mime_type,
            codec.clock_rate,
            codec.channels,
            &codec.parameters,
        ) else {
            return Err(MediaError::bad(format!(
                "codec {}/{} is not one the router offers for {}",
                codec.mime_type,
                codec.clock_rate,
                self.kind.as_str()
            )));
        };
        check_payload_type(codec.payload_type)?;
        let rtx_payload_type = rtp
            .codecs
            .iter()
            .find(|c| {
                c.mime_type
                    .eq_ignore_ascii_case(&format!("{}/rtx", self.kind.as_str()))
                    && c.parameters.get("apt").and_then(serde_json::Value::as_u64)
                        == Some(u64::from(codec.payload_type))
            })
            .map(|c| c.payload_type);
        if let Some(pt) = rtx_payload_type {
            check_payload_type(pt)?;
        }
        let encodings = match rtp.encodings.as_slice() {
            [encoding] if encoding.rid.is_none() => single(encoding)?,
            [] => return Err(MediaError::bad("rtpParameters.encodings is empty")),
            several => {
                if self.kind != Kind::Video {
                    return Err(MediaError::bad("only video can be simulcast"));
                }
                if !rtp.header_extensions.iter().any(|e| e.uri == RTP_STREAM_ID) {
                    return Err(MediaError::bad(
                        "simulcast needs the rtp-stream-id header extension",
                    ));
                }
                simulcast(several)?
            }
        };
        for extension in &rtp.header_extensions {
            if !(1..=14).contains(&extension.id) {
                return Err(MediaError::bad(
                    "rtpParameters.headerExtensions: id must be 1..=14",
                ));
            }
        }
        Ok(ProducedStream {
            mid,
            codec: router_codec,
            payload_type: codec.payload_type,
            rtx_payload_type,
            encodings,
        })
    }
}

/// One encoding: its SSRC, and its RTX SSRC if it has one.
fn single(encoding: &Encoding) -> Result<Encodings, MediaError> {
    let ssrc = encoding
        .ssrc
        .filter(|&ssrc| ssrc != 0)
        .ok_or_else(|| MediaError::bad("rtpParameters.encodings[0].ssrc is required"))?;
    let rtx_ssrc = encoding.rtx.as_ref().map(|rtx| rtx.ssrc);
    if rtx_ssrc == Some(0) || rtx_ssrc == Some(ssrc) {
        return Err(MediaError::bad(
            "rtpParameters.encodings[0].rtx.ssrc is invalid",
        ));
    }
    Ok(Encodings::Single { ssrc, rtx_ssrc })
}

/// Simulcast encodings: each names its layer by a distinct rid of 1 to 8 characters from
/// `[A-Za-z0-9_-]` (str0m holds at most 8). SSRCs, if given, are not needed: the packets'
/// rids say which layer they are.
fn simulcast(encodings: &[Encoding]) -> Result<Encodings, MediaError> {
    if encodings.len() > MAX_LAYERS {
        return Err(MediaError::bad(format!(
            "rtpParameters.encodings: at most {MAX_LAYERS} simulcast layers"
        )));
    }
    let mut rids: Vec<String> = Vec::with_capacity(encodings.len());
    for encoding in encodings {
        let Some(rid) = encoding.rid.as_ref() else {
            return Err(MediaError::bad(
                "rtpParameters.encodings: each simulcast encoding needs a rid",
            ));
        };
        let valid = (1..=8).contains(&rid.len())
            && rid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(MediaError::bad(
                "rtpParameters.encodings: a rid is 1 to 8 characters of A-Z, a-z, 0-9, _ and -",
            ));
        }
        if rids.contains(rid) {
            return Err(MediaError::bad("rtpParameters.encodings: rids must differ"));
        }
        rids.push(rid.clone());
    }
    Ok(Encodings::Simulcast(rids))
}

fn check_payload_type(pt: u8) -> Result<(), MediaError> {
    // 0..=34 are static audio/video types, 64..=95 collide with RTCP packet types.
    if (96..=127).contains(&pt) {
        Ok(())
    } else {
        Err(MediaError::bad(format!(
            "payload type {pt} is not a dynamic one (96..=127)"
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CHROME_VIDEO: &str = r#"{"transportId":"t1","kind":"video","rtpParameters":{"mid":"0",
        "codecs":[{"mimeType":"video/VP8","payloadType":96,"clockRate":90000,"parameters":{},
                   "rtcpFeedback":[{"type":"nack"}]},
                  {"mimeType":"video/rtx","payloadType":97,"clockRate":90000,"parameters":{"apt":96}}],
        "headerExtensions":[{"uri":"urn:ietf:params:rtp-hdrext:sdes:mid","id":9}],
        "encodings":[{"ssrc":1892573884,"rtx":{"ssrc":672040645},"dtx":false}],
        "rtcp":{"cname":"x","reducedSize":true}},"appData":{}}"#;

    #[test]
    fn a_chromium_video_producer_is_accepted() {
        let produce: Produce = parse(CHROME_VIDEO).unwrap();
        let stream = produce.stream().unwrap();
        assert_eq!(
            stream,
            ProducedStream {
                mid: "0".into(),
                codec: crate::caps::RouterCodec::Vp8,
                payload_type: 96,
                rtx_payload_type: Some(97),
                encodings: Encodings::Single {
                    ssrc: 1_892_573_884,
                    rtx_ssrc: Some(672_040_645),
                },
            }
        );
    }

    /// What mediasoup-client sends for `produce({encodings: [3 layers]})` in Chromium: rids,
    /// no SSRCs, and the rid extensions the router offered.
    const CHROME_SIMULCAST: &str = r#"{"transportId":"t1","kind":"video","rtpParameters":{"mid":"1",
        "codecs":[{"mimeType":"video/VP8","payloadType":96,"clockRate":90000,"parameters":{}}],
        "headerExtensions":[{"uri":"urn:ietf:params:rtp-hdrext:sdes:mid","id":4},
                            {"uri":"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id","id":10},
                            {"uri":"urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id","id":11}],
        "encodings":[{"rid":"r0","scaleResolutionDownBy":4,"maxBitrate":150000,"active":true},
                     {"rid":"r1","scaleResolutionDownBy":2,"maxBitrate":500000,"active":true},
                     {"rid":"r2","scaleResolutionDownBy":1,"maxBitrate":1500000,"active":true}],
        "rtcp":{"cname":"x","reducedSize":true}},"appData":{}}"#;

    #[test]
    fn a_chromium_simulcast_producer_is_accepted_lowest_layer_first() {
        let stream = parse::<Produce>(CHROME_SIMULCAST)
            .unwrap()
            .stream()
            .unwrap();
        assert_eq!(
            stream.encodings,
            Encodings::Simulcast(vec!["r0".into(), "r1".into(), "r2".into()])
        );
    }

    #[test]
    fn bad_simulcast_is_refused_with_a_reason() {
        let audio = CHROME_SIMULCAST
            .replace(r#""kind":"video""#, r#""kind":"audio""#)
            .replace(
                r#""mimeType":"video/VP8","payloadType":96,"clockRate":90000,"#,
                r#""mimeType":"audio/opus","payloadType":111,"clockRate":48000,"channels":2,"#,
            );
        assert!(refusal(&audio).contains("only video"));
        let no_extension = CHROME_SIMULCAST.replace("sdes:rtp-stream-id", "sdes:other");
        assert!(refusal(&no_extension).contains("rtp-stream-id"));
        let same = CHROME_SIMULCAST.replace(r#""rid":"r1""#, r#""rid":"r0""#);
        assert!(refusal(&same).contains("differ"));
        let long = CHROME_SIMULCAST.replace(r#""rid":"r1""#, r#""rid":"r123456789""#);
        assert!(refusal(&long).contains("1 to 8"));
        let odd = CHROME_SIMULCAST.replace(r#""rid":"r1""#, r#""rid":"r 1""#);
        assert!(refusal(&odd).contains("1 to 8"));
        let unnamed = CHROME_SIMULCAST.replace(r#""rid":"r1","#, "");
        assert!(refusal(&unnamed).contains("needs a rid"));
        let five =
            CHROME_SIMULCAST.replace(r#"{"rid":"r0","#, r#"{"rid":"a"},{"rid":"b"},{"rid":"r0","#);
        assert!(refusal(&five).contains("at most 4"));
    }

    fn refusal(text: &str) -> String {
        let produce: Produce = parse(text).unwrap();
        match produce.stream() {
            Err(MediaError::BadParameters(message)) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_h264_producer_in_mode_1_is_accepted_at_its_own_payload_type() {
        let h264 = CHROME_VIDEO
            .replace("video/VP8", "video/H264")
            .replace(
                r#""parameters":{},"#,
                r#""parameters":{"packetization-mode":1,"profile-level-id":"42e01f","level-asymmetry-allowed":1},"#,
            )
            .replace(r#""payloadType":96"#, r#""payloadType":106"#)
            .replace(r#""apt":96"#, r#""apt":106"#);
        let stream = parse::<Produce>(&h264).unwrap().stream().unwrap();
        assert_eq!(stream.codec, crate::caps::RouterCodec::H264);
        assert_eq!(stream.payload_type, 106);
        assert_eq!(stream.rtx_payload_type, Some(97));
    }

    #[test]
    fn bad_producers_are_refused_with_a_reason() {
        let no_ssrc = CHROME_VIDEO.replace(r#""ssrc":1892573884,"#, "");
        assert!(refusal(&no_ssrc).contains("ssrc"));
        let no_encoding = CHROME_VIDEO.replace(
            r#"[{"ssrc":1892573884,"rtx":{"ssrc":672040645},"dtx":false}]"#,
            "[]",
        );
        assert!(refusal(&no_encoding).contains("empty"));
        // H.264 without packetization-mode 1 is not what the router forwards.
        let h264 = CHROME_VIDEO.replace("video/VP8", "video/H264");
        assert!(refusal(&h264).contains("router"));
        let static_pt = CHROME_VIDEO.replace(r#""payloadType":96"#, r#""payloadType":8"#);
        assert!(refusal(&static_pt).contains("dynamic"));
        let long_mid = CHROME_VIDEO.replace(r#""mid":"0""#, r#""mid":"0123456789abcdefg""#);
        assert!(refusal(&long_mid).contains("mid"));
        let audio_as_video = CHROME_VIDEO.replace(r#""kind":"video""#, r#""kind":"audio""#);
        assert!(refusal(&audio_as_video).contains("router"));
    }

    #[test]
    fn wrong_shapes_are_typed_errors() {
        for text in [
            "{}",
            r#"{"transportId":1,"kind":"video","rtpParameters":{}}"#,
            r#"{"transportId":"t","kind":"data","rtpParameters":{"codecs":[]}}"#,
            r#"{"transportId":"t","kind":"video","rtpParameters":{"codecs":[{"payloadType":300}]}}"#,
        ] {
            assert!(matches!(
                parse::<Produce>(text),
                Err(MediaError::BadParameters(_))
            ));
        }
    }

    #[test]
    fn fingerprints_convert_to_str0m() {
        let dtls: DtlsParameters = parse(
            r#"{"role":"client","fingerprints":[{"algorithm":"sha-256","value":"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"}]}"#,
        )
        .unwrap();
        assert!(!dtls.we_are_client());
        let fingerprint = dtls.fingerprint().unwrap();
        assert_eq!(fingerprint.hash_func, "sha-256");
        assert_eq!(fingerprint.bytes.len(), 32);
        let empty: DtlsParameters = parse(r#"{"fingerprints":[]}"#).unwrap();
        assert!(empty.fingerprint().is_err());
        let garbage: DtlsParameters =
            parse(r#"{"fingerprints":[{"algorithm":"sha-256","value":"zz"}]}"#).unwrap();
        assert!(garbage.fingerprint().is_err());
    }
}
