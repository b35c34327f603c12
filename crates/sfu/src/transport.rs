//! One WebRTC transport: a str0m `Rtc` in ICE-lite, RTP mode, and what it needs before and
//! around it. A send transport's `Rtc` is built at its first `produce`, with the browser's
//! header-extension IDs; until then its STUN is buffered. Every call into the `Rtc` goes
//! through [`Transport::guard`]: a panic in str0m marks this transport failed and harms no
//! other.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::ids::{ConsumerId, ProducerId, TransportId};
use crate::params::Direction;
use crate::router::Datagram;
use str0m::config::{DtlsCert, Fingerprint};
use str0m::media::{MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionMap, RtpPacket, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc, RtcConfig};
use switchboard_core::PeerKey;

/// STUN datagrams kept for a send transport whose `Rtc` is not built yet.
const PENDING_MAX: usize = 64;

/// How often a receive transport reports egress statistics (for the NACK counters).
const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// Something a transport's `Rtc` said that the router must act on. Packets make up nearly
/// all of them, so they stay unboxed: boxing would allocate once per packet.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Happening {
    /// DTLS is up.
    Connected(TransportId),
    /// A producer's packet arrived.
    Rtp(TransportId, RtpPacket),
    /// A consumer's browser asked for a keyframe on `mid`.
    KeyframeRequest(TransportId, Mid),
    /// Egress statistics of a consumer's `mid`.
    Egress(TransportId, Mid, Egress),
}

/// A consumer stream's statistics, from its receiver's RTCP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Egress {
    /// NACKs so far.
    pub(crate) nacks: u64,
    /// Keyframe requests (PLI and FIR) so far.
    pub(crate) keyframe_requests: u64,
    /// The fraction lost in the receiver's last report, 0 to 1.
    pub(crate) loss: Option<f32>,
}

/// What became of a datagram offered to a transport.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    Accepted,
    Buffered,
    Refused,
}

pub(crate) struct Transport {
    pub(crate) id: TransportId,
    pub(crate) owner: PeerKey,
    pub(crate) direction: Direction,
    pub(crate) local: IceCreds,
    certificate: DtlsCert,
    rtc: Option<Rtc>,
    pending: Vec<(SocketAddr, Vec<u8>)>,
    dtls: Option<(Fingerprint, bool)>,
    remote_ufrag: Option<String>,
    /// Source addresses that passed a STUN check, for the demultiplexer.
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) connected: bool,
    /// Must be connected by then, once the client has connected the transport.
    pub(crate) connect_by: Option<Instant>,
    /// The `Rtc`'s next timeout, as scheduled in the worker's timer set.
    pub(crate) deadline: Option<Instant>,
    pub(crate) failed: bool,
    /// Packets were written to it that have not been sent yet (the router's `written`).
    pub(crate) written: bool,
    /// Producers on this (send) transport by SSRC, with the simulcast layer the SSRC
    /// carries (0 for a single stream). A simulcast layer's SSRC joins when its first
    /// packet names it.
    pub(crate) producers: Vec<(Ssrc, ProducerId, usize)>,
    /// A send transport's header-extension map, once its first producer built it.
    pub(crate) extensions: Option<ExtensionMap>,
    /// Its simulcast producers, by mid: where a new layer SSRC is looked up.
    pub(crate) simulcast: Vec<(Mid, ProducerId)>,
    /// Consumers on this (receive) transport, by their mid.
    pub(crate) consumers: Vec<(Mid, ConsumerId)>,
    /// The mids in use, producers' and consumers'.
    pub(crate) mids: Vec<Mid>,
    next_mid: u32,
}

fn base_config(local: &IceCreds, certificate: &DtlsCert) -> RtcConfig {
    Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .set_local_ice_credentials(local.clone())
        .set_dtls_cert(certificate.clone())
}

impl Transport {
    pub(crate) fn new(
        id: TransportId,
        owner: PeerKey,
        direction: Direction,
        certificate: &DtlsCert,
        announce: SocketAddr,
        now: Instant,
    ) -> Transport {
        let mut transport = Transport {
            id,
            owner,
            direction,
            local: IceCreds::new(),
            certificate: certificate.clone(),
            rtc: None,
            pending: Vec::new(),
            dtls: None,
            remote_ufrag: None,
            addrs: Vec::new(),
            connected: false,
            connect_by: None,
            deadline: None,
            failed: false,
            written: false,
            producers: Vec::new(),
            simulcast: Vec::new(),
            extensions: None,
            consumers: Vec::new(),
            mids: Vec::new(),
            next_mid: 0,
        };
        if direction == Direction::Recv {
            // We choose everything a receive transport carries, so build it now.
            let config = crate::caps::recv_config(base_config(&transport.local, certificate))
                .set_stats_interval(Some(STATS_INTERVAL));
            transport.install(config, announce, now);
        }
        transport
    }

    /// Builds the `Rtc` from `config` (the transport's credentials and certificate already
    /// in it), then applies what the client has told us so far.
    fn install(&mut self, config: RtcConfig, announce: SocketAddr, now: Instant) {
        let send = self.direction == Direction::Send;
        let built = catch_unwind(AssertUnwindSafe(|| {
            let mut rtc = config.build(now);
            if let Ok(candidate) = Candidate::host(announce, "udp") {
                rtc.add_local_candidate(candidate);
            }
            let mut api = rtc.direct_api();
            api.set_ice_controlling(false);
            if send {
                // Transport-wide CC feedback is the only bandwidth signal a publishing
                // browser gets from us; without it Chrome falls to ~30 kbps.
                api.enable_twcc_feedback();
            }
            rtc
        }));
        match built {
            Ok(rtc) => self.rtc = Some(rtc),
            Err(_) => {
                self.failed = true;
                return;
            }
        }
        if let Some(ufrag) = self.remote_ufrag.clone() {
            self.set_remote_ufrag(ufrag);
        }
        if let Some((fingerprint, active)) = self.dtls.clone() {
            self.start_dtls(fingerprint, active);
        }
    }

    /// Builds a send transport at its first `produce`; returns the STUN that waited for it.
    pub(crate) fn build_send(
        &mut self,
        configure: impl FnOnce(RtcConfig) -> RtcConfig,
        announce: SocketAddr,
        now: Instant,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let config = configure(base_config(&self.local, &self.certificate));
        self.install(config, announce, now);
        std::mem::take(&mut self.pending)
    }

    /// Runs `f` on the `Rtc`, if built. A panic inside marks the transport failed.
    pub(crate) fn guard<R>(&mut self, f: impl FnOnce(&mut Rtc) -> R) -> Option<R> {
        let rtc = self.rtc.as_mut()?;
        if self.failed {
            return None;
        }
        match catch_unwind(AssertUnwindSafe(|| f(rtc))) {
            Ok(result) => Some(result),
            Err(_) => {
                tracing::error!(transport = %self.id, "str0m panicked; closing the transport");
                self.failed = true;
                None
            }
        }
    }

    /// Records the client's DTLS parameters (`connect-transport`). Only once.
    pub(crate) fn connect(&mut self, fingerprint: Fingerprint, active: bool) -> bool {
        if self.dtls.is_some() {
            return false;
        }
        self.dtls = Some((fingerprint.clone(), active));
        if self.rtc.is_some() {
            self.start_dtls(fingerprint, active);
        }
        true
    }

    fn start_dtls(&mut self, fingerprint: Fingerprint, active: bool) {
        let started = self.guard(|rtc| {
            let mut api = rtc.direct_api();
            api.set_remote_fingerprint(fingerprint);
            api.start_dtls(active).is_ok()
        });
        if started != Some(true) {
            self.failed = true;
        }
    }

    /// The client never signals its ICE ufrag (mediasoup has no field for it): we learn it
    /// from its first STUN request. A lite agent never uses the remote password.
    fn set_remote_ufrag(&mut self, ufrag: String) {
        self.guard(|rtc| {
            rtc.direct_api().set_remote_ice_credentials(IceCreds {
                ufrag,
                pass: String::from("unused-by-an-ice-lite-agent"),
            });
        });
    }

    /// Offers a datagram. `stun_remote` is the remote ufrag when it is a binding request.
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        stun_remote: Option<&str>,
    ) -> Received {
        if let Some(ufrag) = stun_remote {
            if self.remote_ufrag.is_none() {
                self.remote_ufrag = Some(ufrag.to_owned());
                if self.rtc.is_some() {
                    self.set_remote_ufrag(ufrag.to_owned());
                }
            }
        }
        if self.rtc.is_none() {
            if stun_remote.is_some() && self.pending.len() < PENDING_MAX {
                self.pending.push((source, data.to_vec()));
                return Received::Buffered;
            }
            return Received::Refused;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else {
            return Received::Refused;
        };
        let accepted = self.guard(|rtc| {
            let input = Input::Receive(now, receive);
            rtc.accepts(&input) && rtc.handle_input(input).is_ok()
        });
        if accepted == Some(true) {
            Received::Accepted
        } else {
            Received::Refused
        }
    }

    /// Drives the `Rtc` to `now`.
    pub(crate) fn timeout(&mut self, now: Instant) {
        self.guard(|rtc| {
            let _ = rtc.handle_input(Input::Timeout(now));
        });
    }

    /// Polls the `Rtc` until it only waits: queues what it transmits, hands its events to
    /// the router, and returns its next deadline.
    pub(crate) fn drain(
        &mut self,
        outgoing: &mut Vec<Datagram>,
        happenings: &mut std::collections::VecDeque<Happening>,
    ) -> Option<Instant> {
        // A send transport before its first produce has nothing to poll.
        self.rtc.as_ref()?;
        let id = self.id;
        let outcome = self.guard(|rtc| loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(at)) => return Ok(Some(at)),
                Ok(Output::Transmit(transmit)) => outgoing.push(Datagram {
                    to: transmit.destination,
                    contents: transmit.contents.into(),
                }),
                Ok(Output::Event(event)) => match event {
                    Event::Connected => happenings.push_back(Happening::Connected(id)),
                    Event::RtpPacket(packet) => happenings.push_back(Happening::Rtp(id, packet)),
                    Event::KeyframeRequest(request) => {
                        happenings.push_back(Happening::KeyframeRequest(id, request.mid));
                    }
                    Event::MediaEgressStats(stats) => happenings.push_back(Happening::Egress(
                        id,
                        stats.mid,
                        Egress {
                            nacks: stats.nacks,
                            keyframe_requests: stats.plis + stats.firs,
                            loss: stats.loss,
                        },
                    )),
                    Event::Closed => return Err(()),
                    _ => {}
                },
                Err(_) => return Err(()),
            }
        });
        match outcome {
            Some(Ok(deadline)) => {
                if self.rtc.as_ref().is_some_and(|rtc| !rtc.is_alive()) {
                    self.failed = true;
                }
                deadline
            }
            Some(Err(())) | None => {
                self.failed = true;
                None
            }
        }
    }

    /// A fresh mid for a consumer on this (receive) transport.
    pub(crate) fn next_mid(&mut self) -> Mid {
        loop {
            let mid = Mid::from(self.next_mid.to_string().as_str());
            self.next_mid += 1;
            if !self.mids.contains(&mid) {
                return mid;
            }
        }
    }

    /// Declares a simulcast producer's media section: its layers' streams are found by the
    /// rids their packets carry, and only these rids are accepted (str0m would otherwise make
    /// a stream for any rid a client sends).
    pub(crate) fn declare_simulcast(&mut self, mid: Mid, rids: &[String]) -> bool {
        let declared = self.guard(|rtc| {
            let mut api = rtc.direct_api();
            let media = api.declare_media(mid, MediaKind::Video);
            for rid in rids {
                media.expect_rid_rx(Rid::from(rid.as_str()));
            }
        });
        if declared.is_some() {
            self.mids.push(mid);
        }
        declared.is_some()
    }

    /// Declares a media section and its receive or send stream.
    pub(crate) fn declare(
        &mut self,
        mid: Mid,
        kind: MediaKind,
        ssrc: Ssrc,
        rtx: Option<Ssrc>,
        receive: bool,
    ) -> bool {
        let declared = self.guard(|rtc| {
            let mut api = rtc.direct_api();
            let media = api.declare_media(mid, kind);
            if receive {
                // Its SSRCs are known: no stream is to be found by rid. ("~" is a rid no
                // producer can have: theirs are [A-Za-z0-9_-].)
                media.expect_rid_rx(Rid::from("~"));
                api.expect_stream_rx(ssrc, rtx, mid, None);
            } else {
                api.declare_stream_tx(ssrc, rtx, mid, None);
            }
        });
        if declared.is_some() {
            self.mids.push(mid);
        }
        declared.is_some()
    }

    /// Removes a media section (a closed producer or consumer).
    pub(crate) fn remove(&mut self, mid: Mid) {
        self.mids.retain(|m| *m != mid);
        self.guard(|rtc| rtc.direct_api().remove_media(mid));
    }

    /// A random SSRC for a consumer's stream.
    pub(crate) fn new_ssrc(&mut self) -> Option<Ssrc> {
        self.guard(|rtc| rtc.direct_api().new_ssrc())
    }

    /// Whether the built `Rtc` can receive payload type `pt`.
    pub(crate) fn has_payload_type(&self, pt: u8) -> bool {
        self.rtc
            .as_ref()
            .is_some_and(|rtc| rtc.codec_config().params().iter().any(|p| *p.pt() == pt))
    }

    /// Closes the `Rtc` (a DTLS close_notify goes out on the next drain).
    pub(crate) fn close(&mut self) {
        self.guard(|rtc| rtc.disconnect());
    }
}
