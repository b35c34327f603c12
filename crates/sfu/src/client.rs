//! A stand-in for a browser's transport, on str0m: full ICE (controlling), DTLS client,
//! RTP mode. Tests and `switchboard bench media` use it to publish and consume through the
//! SFU with the same messages mediasoup-client sends, in milliseconds and without a browser.
//! It speaks no signaling itself: the caller sends the requests and hands it the replies.
//! A client made with [`MediaClient::detached`] has no socket either: the caller hands it
//! datagrams and the time, and takes what it sends from [`MediaClient::outgoing`], as the
//! router's tests do in simulated time.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};

/// One client transport and its UDP socket (on 127.0.0.1), or none (detached).
pub struct MediaClient {
    rtc: Rtc,
    socket: Option<UdpSocket>,
    /// A detached client's datagrams to send: (destination, bytes), oldest first.
    pub outgoing: Vec<(SocketAddr, Vec<u8>)>,
    local: SocketAddr,
    server: SocketAddr,
    buffer: Vec<u8>,
    deadline: Instant,
    connected: bool,
    /// RTP packets received, all streams.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// The sequence numbers received, in arrival order (the first `KEEP` only).
    pub sequence_numbers: Vec<u16>,
    /// The payload types of the RTP packets received, each once, in order of first arrival.
    pub payload_types: Vec<u8>,
    /// The timestamps received, in arrival order (the first `KEEP` only).
    pub timestamps: Vec<u32>,
    /// The last byte of each payload received (the first `KEEP` only): a test marks what it
    /// sends with it, to see which stream a packet came from.
    pub tags: Vec<u8>,
    /// Keyframe requests the server sent us (as a publisher).
    pub keyframe_requests: u64,
    /// ICE failed or the DTLS session closed.
    pub failed: bool,
    /// Drop every n-th RTP datagram that arrives (a lossy link), to see loss repaired.
    pub drop_every: Option<u64>,
    /// RTP datagrams dropped by `drop_every`.
    pub dropped: u64,
    rtp_datagrams: u64,
    /// The payload type of each published stream, by SSRC.
    published: Vec<(u32, u8)>,
}

/// How many sequence numbers a client remembers.
const KEEP: usize = 4096;

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

impl MediaClient {
    /// A client for the transport the server described in `webRtcTransportCreated`'s data.
    pub fn new(created: &Value) -> io::Result<MediaClient> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let mut client = MediaClient::detached(created, local, Instant::now())?;
        client.socket = Some(socket);
        Ok(client)
    }

    /// A client without a socket, at `local`, its clock starting at `now`.
    pub fn detached(created: &Value, local: SocketAddr, now: Instant) -> io::Result<MediaClient> {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now);
        let candidate = &created["iceCandidates"][0];
        let server = SocketAddr::new(
            candidate["address"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| bad("iceCandidates[0].address"))?,
            candidate["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad("iceCandidates[0].port"))?,
        );
        let host = Candidate::host(local, "udp").map_err(|_| bad("local candidate"))?;
        rtc.add_local_candidate(host);
        let remote = Candidate::host(server, "udp").map_err(|_| bad("server candidate"))?;
        rtc.add_remote_candidate(remote);
        let ice = &created["iceParameters"];
        let creds = IceCreds {
            ufrag: ice["usernameFragment"]
                .as_str()
                .ok_or_else(|| bad("ufrag"))?
                .into(),
            pass: ice["password"]
                .as_str()
                .ok_or_else(|| bad("password"))?
                .into(),
        };
        let fingerprint = created["dtlsParameters"]["fingerprints"][0].clone();
        let fingerprint = format!(
            "{} {}",
            fingerprint["algorithm"].as_str().unwrap_or_default(),
            fingerprint["value"].as_str().unwrap_or_default()
        )
        .parse()
        .map_err(|_| bad("fingerprint"))?;
        let mut api = rtc.direct_api();
        api.set_remote_ice_credentials(creds);
        api.set_remote_fingerprint(fingerprint);
        api.set_ice_controlling(true);
        api.start_dtls(true).map_err(|_| bad("start_dtls"))?;
        Ok(MediaClient {
            rtc,
            socket: None,
            outgoing: Vec::new(),
            local,
            server,
            buffer: vec![0; 2048],
            deadline: now,
            connected: false,
            packets: 0,
            bytes: 0,
            sequence_numbers: Vec::new(),
            keyframe_requests: 0,
            failed: false,
            drop_every: None,
            dropped: 0,
            rtp_datagrams: 0,
            payload_types: Vec::new(),
            timestamps: Vec::new(),
            tags: Vec::new(),
            published: Vec::new(),
        })
    }

    /// `connect-transport`'s `dtlsParameters`: our fingerprint, and that we are the client.
    pub fn dtls_parameters(&mut self) -> Value {
        let fingerprint = self.rtc.direct_api().local_dtls_fingerprint().to_string();
        let (algorithm, value) = fingerprint.split_once(' ').unwrap_or_default();
        json!({"role": "client", "fingerprints": [{"algorithm": algorithm, "value": value}]})
    }

    /// Declares a VP8 video stream to publish and returns `produce`'s `rtpParameters` (the
    /// same shape Chromium's mediasoup-client sends, with str0m's extension IDs).
    pub fn publish_video(&mut self, mid: &str, ssrc: u32, rtx: u32) -> Value {
        self.publish(
            mid,
            ssrc,
            rtx,
            json!({"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {}}),
        )
    }

    /// [`MediaClient::publish_video`] in H.264 (packetization mode 1, constrained baseline),
    /// at str0m's payload types for it (108, RTX 109).
    pub fn publish_h264(&mut self, mid: &str, ssrc: u32, rtx: u32) -> Value {
        self.publish(
            mid,
            ssrc,
            rtx,
            json!({"mimeType": "video/H264", "payloadType": 108, "clockRate": 90000,
                   "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f",
                                  "level-asymmetry-allowed": 1}}),
        )
    }

    fn publish(&mut self, mid: &str, ssrc: u32, rtx: u32, codec: Value) -> Value {
        let mut api = self.rtc.direct_api();
        let media_id = Mid::from(mid);
        api.declare_media(media_id, MediaKind::Video);
        api.declare_stream_tx(Ssrc::from(ssrc), Some(Ssrc::from(rtx)), media_id, None);
        let pt = codec["payloadType"].as_u64().unwrap_or(96);
        self.published.push((ssrc, u8::try_from(pt).unwrap_or(96)));
        let encodings = json!([{"ssrc": ssrc, "rtx": {"ssrc": rtx}}]);
        video_parameters(mid, codec, &[], encodings)
    }

    /// Declares a VP8 simulcast publication, one stream per SSRC in `ssrcs` (lowest layer
    /// first, rids `r0`, `r1`, ...), each with an RTX stream at its SSRC + 1000, and returns
    /// `produce`'s `rtpParameters` as Chromium's mediasoup-client sends them: rids, no SSRCs.
    pub fn publish_simulcast(&mut self, mid: &str, ssrcs: &[u32]) -> Value {
        let mut api = self.rtc.direct_api();
        let media_id = Mid::from(mid);
        api.declare_media(media_id, MediaKind::Video);
        let mut encodings = Vec::new();
        for (layer, &ssrc) in ssrcs.iter().enumerate() {
            let rid = format!("r{layer}");
            let rtx = Some(Ssrc::from(ssrc + 1000));
            api.declare_stream_tx(
                Ssrc::from(ssrc),
                rtx,
                media_id,
                Some(Rid::from(rid.as_str())),
            );
            self.published.push((ssrc, 96));
            encodings
                .push(json!({"rid": rid, "scaleResolutionDownBy": 1 << (ssrcs.len() - 1 - layer)}));
        }
        let codec = json!({"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {}});
        let rids = [
            json!({"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10}),
            json!({"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 11}),
        ];
        video_parameters(mid, codec, &rids, Value::from(encodings))
    }

    /// What a receiver offers in `consume`'s `rtpCapabilities`.
    pub fn capabilities() -> Value {
        json!({"codecs": [
            {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2, "preferredPayloadType": 111},
            {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000, "preferredPayloadType": 96},
            {"kind": "video", "mimeType": "video/H264", "clockRate": 90000, "preferredPayloadType": 108,
             "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1}}
        ], "headerExtensions": []})
    }

    /// Expects the stream a `consumed` reply describes.
    pub fn expect(&mut self, consumed: &Value) -> io::Result<()> {
        let parameters = &consumed["rtpParameters"];
        let mid = Mid::from(parameters["mid"].as_str().ok_or_else(|| bad("mid"))?);
        let encoding = &parameters["encodings"][0];
        let ssrc = encoding["ssrc"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| bad("ssrc"))?;
        let rtx = encoding["rtx"]["ssrc"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok());
        let kind = match consumed["kind"].as_str() {
            Some("audio") => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        let mut api = self.rtc.direct_api();
        api.declare_media(mid, kind);
        api.expect_stream_rx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, None);
        Ok(())
    }

    /// Writes one RTP packet on a published stream.
    pub fn write(&mut self, ssrc: u32, seq: u64, timestamp: u32, payload: &[u8], marker: bool) {
        self.write_at(Instant::now(), ssrc, seq, timestamp, payload, marker);
    }

    /// [`MediaClient::write`] at the time given.
    pub fn write_at(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u64,
        timestamp: u32,
        payload: &[u8],
        marker: bool,
    ) {
        let pt = self
            .published
            .iter()
            .find(|(s, _)| *s == ssrc)
            .map_or(96, |&(_, pt)| pt);
        if let Some(stream) = self.rtc.direct_api().stream_tx(&Ssrc::from(ssrc)) {
            stream.write_rtp(
                RtpWrite::new(
                    Pt::from(pt),
                    SeqNo::from(seq),
                    timestamp,
                    now,
                    payload.to_vec(),
                )
                .marker(marker)
                .nackable(true),
            );
        }
        self.drive(now);
        // str0m sends a written packet when its clock moves on: move it on now, so the
        // packet leaves at once rather than queueing behind the next timeout.
        if self.rtc.handle_input(Input::Timeout(now)).is_err() {
            self.failed = true;
        }
        self.drive(now);
    }

    /// Whether DTLS is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The server's UDP address, from its candidate.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Reads what has arrived and runs the timers: call it often.
    pub fn poll(&mut self) {
        let now = Instant::now();
        let mut buffer = std::mem::take(&mut self.buffer);
        while let Some(Ok((len, source))) = self.socket.as_ref().map(|s| s.recv_from(&mut buffer)) {
            self.receive(now, source, &buffer[..len]);
        }
        self.buffer = buffer;
        self.advance(now);
    }

    /// A datagram from `source`, at `now`.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        if is_rtp(datagram) && self.loses_rtp() {
            return;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, datagram) else {
            return;
        };
        let input = Input::Receive(now, receive);
        if self.rtc.accepts(&input) && self.rtc.handle_input(input).is_err() {
            self.failed = true;
        }
        self.drive(now);
    }

    /// Runs the timers due by `now`.
    pub fn advance(&mut self, now: Instant) {
        if now >= self.deadline && self.rtc.handle_input(Input::Timeout(now)).is_err() {
            self.failed = true;
        }
        self.drive(now);
    }

    /// Whether `drop_every` drops the RTP datagram that just arrived.
    fn loses_rtp(&mut self) -> bool {
        let Some(every) = self.drop_every else {
            return false;
        };
        self.rtp_datagrams += 1;
        let lost = self.rtp_datagrams.is_multiple_of(every);
        self.dropped += u64::from(lost);
        lost
    }

    fn drive(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.deadline = at.max(now);
                    return;
                }
                Ok(Output::Transmit(transmit)) => match &self.socket {
                    Some(socket) => {
                        let _ = socket.send_to(&transmit.contents, transmit.destination);
                    }
                    None => self
                        .outgoing
                        .push((transmit.destination, transmit.contents.into())),
                },
                Ok(Output::Event(event)) => match event {
                    Event::Connected => self.connected = true,
                    Event::RtpPacket(packet) => {
                        self.packets += 1;
                        self.bytes += packet.payload.len() as u64;
                        if self.sequence_numbers.len() < KEEP {
                            self.sequence_numbers.push(packet.header.sequence_number);
                            self.timestamps.push(packet.header.timestamp);
                            self.tags
                                .push(packet.payload.last().copied().unwrap_or_default());
                        }
                        let pt = *packet.header.payload_type;
                        if !self.payload_types.contains(&pt) {
                            self.payload_types.push(pt);
                        }
                    }
                    Event::KeyframeRequest(_) => self.keyframe_requests += 1,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    | Event::Closed => self.failed = true,
                    _ => {}
                },
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
    }
}

/// `produce`'s `rtpParameters` for a video `codec` (its RTX at the next payload type) at str0m's
/// extension IDs, with `extensions` beside mid, abs-send-time and transport-cc.
fn video_parameters(mid: &str, mut codec: Value, extensions: &[Value], encodings: Value) -> Value {
    let pt = codec["payloadType"].as_u64().unwrap_or(96);
    codec["rtcpFeedback"] =
        json!([{"type": "nack"}, {"type": "nack", "parameter": "pli"}, {"type": "transport-cc"}]);
    let mut header_extensions = vec![
        json!({"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4}),
        json!({"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2}),
        json!({"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3}),
    ];
    header_extensions.extend_from_slice(extensions);
    json!({
        "mid": mid,
        "codecs": [
            codec,
            {"mimeType": "video/rtx", "payloadType": pt + 1, "clockRate": 90000, "parameters": {"apt": pt}}
        ],
        "headerExtensions": header_extensions,
        "encodings": encodings,
        "rtcp": {"cname": "switchboard-client", "reducedSize": true}
    })
}

/// Whether a datagram is RTP: RFC 7983's range for RTP and RTCP, and not one of RTCP's
/// packet types (RFC 5761).
fn is_rtp(datagram: &[u8]) -> bool {
    matches!(datagram, [128..=191, second, ..] if !(64..=95).contains(&(second & 0x7f)))
}

/// Polls every client until `done` says so or `limit` passes; returns whether `done` did.
pub fn pump(
    clients: &mut [&mut MediaClient],
    limit: Duration,
    mut done: impl FnMut(&[&mut MediaClient]) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        for client in clients.iter_mut() {
            client.poll();
        }
        if done(clients) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}
