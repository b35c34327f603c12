//! The media scenario: a publisher per room (`--rooms`, one by default) streams one VP8 video
//! stream through the SFU to the room's consumers (N in all, dealt to the rooms in turn), each
//! its own conference user with its own receive transport, and the report says how many
//! packets the server forwarded per second and what each cost it in CPU. Several rooms load
//! several of the server's media workers.
//!
//! Signaling is async: one WebSocket per user, the requests mediasoup-client sends
//! (`create-transport`, `connect-transport`, `produce`, `consume`, `resume-consumer`), each
//! answered under its `rid`. Media is not: every client transport is a
//! [`MediaClient`] (str0m on a plain std UDP socket), and one blocking thread owns them all,
//! from the moment each is set up (so ICE and DTLS run while the others sign up) to the end
//! of the drain. That thread writes the publishers' packets on schedule and polls everyone.
//!
//! Accounting without timestamps: the consumers only count packets and payload bytes, so
//! warm-up packets carry `size - 1` payload bytes and the window's `size`. The SFU forwards
//! payloads byte for byte (and str0m drops duplicates and unwraps RTX repairs), so the
//! window's deliveries are exact whenever they land: `bytes - (size - 1) × packets`.
//! Nothing is written after the window; the drain waits for what is in flight.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_sfu::client::MediaClient;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{hold, join_all, usage, Bench, Counters, SETUP_TIMEOUT};
use crate::client::{Dialect, Target, Ws};
use crate::probe::{Probe, Sample};
use crate::report::Report;
use crate::MediaArgs;

/// How long one signaling request may wait for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long every transport may take to reach DTLS once all are set up. The server gives
/// each 30 s from its `connect-transport`, and the media thread polls each from then on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The media thread's nap between sweeps while streaming. Arrivals wait in the sockets'
/// receive buffers meanwhile (~200 KiB each: ~90 packets of 1,100 bytes).
const SWEEP: Duration = Duration::from_millis(1);
/// The nap between sweeps while the others sign up: ICE and DTLS need no haste, and the
/// signaling needs the CPU.
const SETUP_SWEEP: Duration = Duration::from_millis(5);
/// The drain ends when nothing has arrived for this long (str0m's NACK repair is long over)...
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// ...or after this long in all; what is missing then is lost.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Video frames per second: packets are grouped into frames (one RTP timestamp, the marker
/// on the last packet) as a camera's are.
const FRAME_RATE: u64 = 30;
/// VP8's RTP clock rate.
const VIDEO_CLOCK: u64 = 90_000;
/// The publisher's SSRC; its RTX stream is the next one.
const SSRC: u32 = 0x5b00_0001;
/// The publisher's first sequence number.
const FIRST_SEQ: u64 = 1;
/// The server's media worker threads, `switchboard-media-N` as the kernel shortens it.
const WORKER_THREADS: &str = "switchboard-med";

/// Media: a publisher per room (`--rooms`), N consumers over the rooms, each of one stream.
pub(super) async fn media(bench: &Bench<'_>, args: &MediaArgs) -> anyhow::Result<Report> {
    let counters = bench.counters.clone();
    let before = bench.probe.and_then(|p| p.sample());
    let stop = CancellationToken::new();
    let mut holders = JoinSet::new();
    counters.set_phase("connecting");
    // Each room and its producer's id, in room order; the publishers' clients likewise.
    let mut rooms = Vec::new();
    let mut publishers = Vec::new();
    for index in 0..args.rooms {
        let room = format!("media-{}-{index}", bench.nonce);
        let (ws, publisher, producer) = timeout(SETUP_TIMEOUT, publish(bench.target, &room))
            .await
            .with_context(|| format!("a publisher took over {SETUP_TIMEOUT:?} to set up"))?
            .with_context(|| format!("the publisher of {room}"))?;
        counters.opened.fetch_add(1, Relaxed);
        holders.spawn(hold(ws, counters.clone(), stop.clone()));
        rooms.push((room, producer));
        publishers.push(publisher);
    }

    // Every consumer's client goes to the media thread as soon as it is set up; the channel
    // holds at most all of them, so sending never waits.
    let consumers = usize::try_from(args.consumers).context("--consumers")?;
    let (to_media, inbox) = mpsc::sync_channel(consumers + 1);
    let thread_counters = counters.clone();
    let thread = tokio::task::spawn_blocking(move || run_media(publishers, inbox, thread_counters));
    subscribe_all(bench, args, &rooms, &to_media, &mut holders, &stop).await?;
    let plan = Plan {
        rate: args.rate,
        size: args.size,
        warmup: args.warmup,
        duration: args.duration,
        probe: bench.probe,
    };
    to_media
        .try_send(ToMedia::Go(plan))
        .context("the media thread has stopped")?;
    drop(to_media);
    let streamed = thread.await.context("the media thread")??;

    counters.set_phase("closing");
    stop.cancel();
    join_all(&mut holders).await;
    if streamed.failed > 0 {
        counters.error(format_args!(
            "{} media transports failed (ICE or DTLS closed)",
            streamed.failed
        ));
        counters.errors.fetch_add(streamed.failed - 1, Relaxed);
    }
    let delivered = Delivered::attribute(streamed.packets, streamed.bytes, args.size)
        .with_context(|| {
            format!(
                "the consumers' {} packets and {} bytes cannot be warm-up packets of {} bytes \
                 and window packets of {}: did the server change payloads?",
                streamed.packets,
                streamed.bytes,
                args.size - 1,
                args.size
            )
        })?;
    let opened = counters.opened.load(Relaxed);
    let server = usage(before, streamed.from, streamed.to, opened);
    let mut report = bench.report("media", None, server);
    let measured_s = args.duration.as_secs_f64();
    report.sent = streamed.window_sent * args.rooms;
    report.expected = streamed.window_sent * args.consumers;
    report.received = delivered.window;
    report.operations = delivered.window;
    report.measured_s = measured_s;
    report.rate = delivered.window as f64 / measured_s;
    report.rate_unit = "packets/s";
    report.params.consumers = Some(args.consumers);
    report.params.rooms = Some(args.rooms);
    report.params.packet_rate = Some(u64::from(args.rate));
    report.params.size = Some(args.size as u64);
    report.params.warmup_s = Some(args.warmup.as_secs_f64());
    report.params.duration_s = Some(measured_s);
    report.client_busy = Some(streamed.busy);
    report.media_workers = streamed.workers;
    let cpu_us = report
        .server
        .map(|s| s.cpu_cores * 1e6 / report.rate)
        .filter(|us| us.is_finite() && *us > 0.0);
    report.cpu_us_per_packet = cpu_us;
    report.consumers_per_core = cpu_us.map(|us| 1e6 / (us * f64::from(args.rate)));
    Ok(report)
}

/// Sets up every consumer, `--concurrency` at a time, consumer `i` from loopback source
/// `i % --sources`, in room `i % --rooms` (`rooms`: each room and its producer); hands each
/// client to the media thread and each socket to a holder. Fails on the first consumer that
/// fails: a run short of consumers measures another N.
async fn subscribe_all(
    bench: &Bench<'_>,
    args: &MediaArgs,
    rooms: &[(String, String)],
    to_media: &SyncSender<ToMedia>,
    holders: &mut JoinSet<()>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let counters = &bench.counters;
    let gate = Arc::new(Semaphore::new(bench.common.concurrency));
    let mut tasks = JoinSet::new();
    let mut adopt = |done: Result<anyhow::Result<(Ws, MediaClient)>, _>| -> anyhow::Result<()> {
        let (ws, client) = match done {
            Ok(set_up) => set_up?,
            Err(error) => bail!("consumer task: {error}"),
        };
        counters.opened.fetch_add(1, Relaxed);
        to_media
            .try_send(ToMedia::Consumer(Box::new(client)))
            .context("the media thread has stopped")?;
        holders.spawn(hold(ws, counters.clone(), stop.clone()));
        Ok(())
    };
    let setup = async {
        for index in 0..args.consumers {
            // The permit is taken before spawning, so at most `concurrency` tasks exist.
            let permit = gate.clone().acquire_owned().await?;
            let target = bench.target.clone();
            let source = usize::try_from(index)
                .ok()
                .and_then(|i| target.source(i, bench.common.sources));
            let (room, producer) = usize::try_from(index % args.rooms)
                .ok()
                .and_then(|r| rooms.get(r))
                .cloned()
                .context("a consumer's room")?;
            tasks.spawn(async move {
                let name = format!("c{index}");
                let set_up = subscribe(&target, source, &room, &name, &producer).await;
                drop(permit);
                set_up.with_context(|| format!("consumer {name}"))
            });
            while let Some(done) = tasks.try_join_next() {
                adopt(done)?;
            }
        }
        while let Some(done) = tasks.join_next().await {
            adopt(done)?;
        }
        anyhow::Ok(())
    };
    counters.set_phase("subscribing");
    timeout(SETUP_TIMEOUT, setup).await.with_context(|| {
        format!(
            "setting up {} consumers took over {SETUP_TIMEOUT:?}",
            args.consumers
        )
    })?
}

/// Joins as `publisher`, connects a send transport and produces one VP8 stream; returns the
/// socket, the client and the producer's id.
async fn publish(target: &Target, room: &str) -> anyhow::Result<(Ws, MediaClient, String)> {
    let mut user = User::join(target, None, room, "publisher").await?;
    let (transport, mut client) = user.transport("send").await?;
    let rtp_parameters = client.publish_video("0", SSRC, SSRC + 1);
    let produced = user
        .request(
            "produce",
            json!({"transportId": transport, "kind": "video",
                   "rtpParameters": rtp_parameters, "appData": {}}),
            "produced",
        )
        .await?;
    let producer = produced["id"]
        .as_str()
        .context("produced without an id")?
        .to_owned();
    Ok((user.ws, client, producer))
}

/// Joins as `name`, connects a receive transport and consumes `producer`.
async fn subscribe(
    target: &Target,
    source: Option<Ipv4Addr>,
    room: &str,
    name: &str,
    producer: &str,
) -> anyhow::Result<(Ws, MediaClient)> {
    let mut user = User::join(target, source, room, name).await?;
    let (transport, mut client) = user.transport("recv").await?;
    let consumed = user
        .request(
            "consume",
            json!({"transportId": transport, "producerId": producer,
                   "rtpCapabilities": MediaClient::capabilities()}),
            "consumed",
        )
        .await?;
    client.expect(&consumed).context("the consumed reply")?;
    let consumer = consumed["id"].as_str().context("consumed without an id")?;
    user.request(
        "resume-consumer",
        json!({"consumerId": consumer}),
        "consumerResumed",
    )
    .await?;
    Ok((user.ws, client))
}

/// One conference user's WebSocket and its next request id.
struct User {
    ws: Ws,
    next_rid: u64,
}

impl User {
    async fn join(
        target: &Target,
        source: Option<Ipv4Addr>,
        room: &str,
        name: &str,
    ) -> anyhow::Result<User> {
        let ws = target.open(Dialect::Conference, source, room, name).await?;
        Ok(User { ws, next_rid: 1 })
    }

    /// Creates a transport and connects it; returns its id and the client playing the
    /// browser's side of it.
    async fn transport(&mut self, direction: &str) -> anyhow::Result<(String, MediaClient)> {
        let created = self
            .request(
                "create-transport",
                json!({"direction": direction}),
                "webRtcTransportCreated",
            )
            .await?;
        let id = created["id"]
            .as_str()
            .context("webRtcTransportCreated without an id")?
            .to_owned();
        let mut client = MediaClient::new(&created)
            .with_context(|| format!("a client for the server's {direction} transport"))?;
        self.request(
            "connect-transport",
            json!({"transportId": id, "dtlsParameters": client.dtls_parameters()}),
            "transportConnected",
        )
        .await?;
        Ok((id, client))
    }

    /// Sends a request under a fresh `rid` and returns the `data` of the reply of type
    /// `reply` that echoes it, skipping notices (other users joining, the new producer).
    /// Any error frame fails it: nothing in a bench run should be refused.
    async fn request(&mut self, kind: &str, data: Value, reply: &str) -> anyhow::Result<Value> {
        let rid = self.next_rid;
        self.next_rid += 1;
        let frame = json!({"type": kind, "data": data, "rid": rid});
        self.ws.send(Message::text(frame.to_string())).await?;
        let answer = async {
            while let Some(frame) = self.ws.next().await {
                let Message::Text(text) = frame? else {
                    continue;
                };
                if crate::client::is_error(&text) {
                    bail!("{kind} refused: {}", text.as_str());
                }
                // Notices carry no rid; only replies are worth parsing.
                if !text.contains(r#""rid""#) {
                    continue;
                }
                let mut answer: Value = serde_json::from_str(&text)
                    .with_context(|| format!("a reply that is no JSON: {}", text.as_str()))?;
                if answer["rid"] != rid {
                    continue;
                }
                if answer["type"] != reply {
                    bail!("{kind}: expected {reply}, got {}", text.as_str());
                }
                return Ok(answer["data"].take());
            }
            bail!("the socket closed while {kind} waited for {reply}")
        };
        timeout(REPLY_TIMEOUT, answer)
            .await
            .with_context(|| format!("no {reply} within {REPLY_TIMEOUT:?}"))?
    }
}

/// What the async side tells the media thread.
enum ToMedia {
    /// Another consumer, set up: poll it from now on. Boxed: a client is ~10 KB, and the
    /// channel holds a slot for every consumer.
    Consumer(Box<MediaClient>),
    /// Everyone is set up: wait for every transport, then stream.
    Go(Plan),
}

/// How to stream.
struct Plan {
    rate: u32,
    size: usize,
    warmup: Duration,
    duration: Duration,
    probe: Option<Probe>,
}

/// What the media thread saw.
#[derive(Debug)]
struct Streamed {
    /// Packets each publisher wrote in the measured window (warm-up ones are not counted).
    window_sent: u64,
    /// Packets and payload bytes all consumers received, warm-up and window together.
    packets: u64,
    bytes: u64,
    /// The server at both ends of the window.
    from: Option<Sample>,
    to: Option<Sample>,
    /// Share of the window spent working rather than waiting.
    busy: f64,
    /// Each media worker thread's CPU over the window, cores.
    workers: Vec<f64>,
    /// Transports whose ICE or DTLS failed.
    failed: u64,
}

/// The media thread: polls every client as it arrives, then streams on `Go`. Ends early,
/// with an error, if the async side goes away first.
fn run_media(
    publishers: Vec<MediaClient>,
    inbox: Receiver<ToMedia>,
    counters: Arc<Counters>,
) -> anyhow::Result<Streamed> {
    let mut fleet = Fleet {
        publishers,
        consumers: Vec::new(),
    };
    let plan = loop {
        match inbox.try_recv() {
            Ok(ToMedia::Consumer(client)) => {
                fleet.consumers.push(*client);
                continue; // take every waiting client before the next sweep
            }
            Ok(ToMedia::Go(plan)) => break plan,
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => bail!("setup ended before streaming"),
        }
        fleet.poll();
        std::thread::sleep(SETUP_SWEEP);
    };
    fleet.connect(&counters)?;
    fleet.stream(&plan, &counters)
}

/// Every client transport of the run, polled by the media thread alone.
struct Fleet {
    /// One per room, in room order.
    publishers: Vec<MediaClient>,
    consumers: Vec<MediaClient>,
}

impl Fleet {
    fn poll(&mut self) {
        for client in self.publishers.iter_mut().chain(&mut self.consumers) {
            client.poll();
        }
    }

    fn all(&self) -> impl Iterator<Item = &MediaClient> {
        self.publishers.iter().chain(&self.consumers)
    }

    /// Packets and payload bytes received by all consumers.
    fn received(&self) -> (u64, u64) {
        self.consumers
            .iter()
            .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))
    }

    /// Polls until every transport is up (DTLS done, so the server forwards to it).
    fn connect(&mut self, counters: &Counters) -> anyhow::Result<()> {
        counters.set_phase("connecting media");
        let total = self.consumers.len() + self.publishers.len();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            self.poll();
            let connected = self.all().filter(|c| c.is_connected()).count();
            if connected == total {
                return Ok(());
            }
            let failed = self.all().filter(|c| c.failed).count();
            if failed > 0 {
                bail!("{failed} of {total} media transports failed before connecting");
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} of {total} media transports did not connect within {CONNECT_TIMEOUT:?}",
                    total - connected
                );
            }
            std::thread::sleep(SWEEP);
        }
    }

    /// Writes packets at `plan.rate` through warm-up and window while polling everyone,
    /// then drains.
    fn stream(&mut self, plan: &Plan, counters: &Counters) -> anyhow::Result<Streamed> {
        counters.set_phase("warming up");
        let mut source = Source::new(plan, Instant::now());
        let (window_start, window_end) = (source.window_start, source.window_end);
        let (mut measuring, mut from, mut threads) = (false, None, None);
        let mut busy = Duration::ZERO;
        loop {
            let now = Instant::now();
            if now >= window_end {
                break;
            }
            if !measuring && now >= window_start {
                measuring = true;
                from = plan.probe.and_then(|p| p.sample());
                threads = plan.probe.map(|p| p.threads(WORKER_THREADS));
                counters.set_phase("measuring");
            }
            source.write_until(&mut self.publishers, now);
            self.poll();
            counters.sent.store(source.written, Relaxed);
            counters.received.store(self.received().0, Relaxed);
            let done = Instant::now();
            if now >= window_start {
                busy += done.saturating_duration_since(now);
            }
            let next = source.next_at().min(done + SWEEP).min(window_end);
            std::thread::sleep(next.saturating_duration_since(done));
        }
        // Whatever was due before the window ended goes out now, a little late.
        source.write_until(&mut self.publishers, window_end);
        let to = plan.probe.and_then(|p| p.sample());
        let workers = match (plan.probe, &threads) {
            (Some(probe), Some(earlier)) => probe.threads(WORKER_THREADS).cores_since(earlier),
            _ => Vec::new(),
        };
        counters.sent.store(source.written, Relaxed);

        counters.set_phase("draining");
        let expected = source.written * self.consumers.len() as u64;
        let drain_end = Instant::now() + DRAIN_TIMEOUT;
        let mut last = self.received().0;
        let mut last_change = Instant::now();
        loop {
            self.poll();
            let (packets, _) = self.received();
            counters.received.store(packets, Relaxed);
            let now = Instant::now();
            if packets != last {
                last = packets;
                last_change = now;
            }
            if packets >= expected
                || now.duration_since(last_change) >= DRAIN_QUIET
                || now >= drain_end
            {
                break;
            }
            std::thread::sleep(SWEEP);
        }
        let (packets, bytes) = self.received();
        Ok(Streamed {
            window_sent: source.window_written,
            packets,
            bytes,
            from,
            to,
            busy: busy.as_secs_f64() / plan.duration.as_secs_f64(),
            workers,
            failed: self.all().filter(|c| c.failed).count() as u64,
        })
    }
}

/// The publisher's stream: packet `k` is due at `start + k / rate`; those due before the
/// window carry `size - 1` payload bytes, the window's `size`. Being due, not being
/// written, decides which, so the counts do not depend on how punctual the thread is.
struct Source {
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    rate: u64,
    packets_per_frame: u64,
    warmup_payload: Vec<u8>,
    window_payload: Vec<u8>,
    /// Packets written so far, and how many of them were the window's.
    written: u64,
    window_written: u64,
}

impl Source {
    fn new(plan: &Plan, start: Instant) -> Source {
        let window_start = start + plan.warmup;
        let rate = u64::from(plan.rate.max(1));
        Source {
            start,
            window_start,
            window_end: window_start + plan.duration,
            rate,
            packets_per_frame: (rate / FRAME_RATE).max(1),
            warmup_payload: payload(plan.size.saturating_sub(1)),
            window_payload: payload(plan.size),
            written: 0,
            window_written: 0,
        }
    }

    /// When packet `k` is due.
    fn due(&self, k: u64) -> Instant {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate);
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When the next packet is due.
    fn next_at(&self) -> Instant {
        self.due(self.written)
    }

    /// Writes every packet due by `now` and before the window's end, each to every publisher
    /// (one stream per room).
    fn write_until(&mut self, publishers: &mut [MediaClient], now: Instant) {
        loop {
            let k = self.written;
            let due = self.due(k);
            if due > now || due >= self.window_end {
                return;
            }
            let in_window = due >= self.window_start;
            let payload = if in_window {
                &self.window_payload
            } else {
                &self.warmup_payload
            };
            let frame = k / self.packets_per_frame;
            // The frame's capture time on the 90 kHz clock; RTP timestamps wrap.
            let ticks = frame * self.packets_per_frame * VIDEO_CLOCK / self.rate;
            let timestamp = (ticks & u64::from(u32::MAX)) as u32;
            let marker = (k + 1).is_multiple_of(self.packets_per_frame);
            for publisher in publishers.iter_mut() {
                publisher.write(SSRC, FIRST_SEQ + k, timestamp, payload, marker);
            }
            self.written += 1;
            if in_window {
                self.window_written += 1;
            }
        }
    }
}

/// A VP8 packet's payload of `size` bytes: the payload descriptor (start of partition 0),
/// the payload header of an inter frame, then filler the SFU never reads.
fn payload(size: usize) -> Vec<u8> {
    let mut payload = vec![0xa5; size];
    for (byte, value) in payload.iter_mut().zip([0x10, 0x01]) {
        *byte = value;
    }
    payload
}

/// The consumers' packets, split into warm-up and window ones.
#[derive(Debug, PartialEq, Eq)]
struct Delivered {
    warmup: u64,
    window: u64,
}

impl Delivered {
    /// Splits `packets` carrying `bytes` in all, each of `size - 1` bytes (warm-up) or
    /// `size` (window); `None` if no such split exists.
    fn attribute(packets: u64, bytes: u64, size: usize) -> Option<Delivered> {
        let short = u64::try_from(size.checked_sub(1)?).ok()?;
        let window = bytes.checked_sub(short.checked_mul(packets)?)?;
        let warmup = packets.checked_sub(window)?;
        Some(Delivered { warmup, window })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_split_exactly_by_payload_size() {
        let split = |warmup: u64, window: u64| {
            Delivered::attribute(warmup + window, warmup * 1099 + window * 1100, 1100)
        };
        assert_eq!(
            split(7, 12_000),
            Some(Delivered {
                warmup: 7,
                window: 12_000
            })
        );
        assert_eq!(
            split(0, 0),
            Some(Delivered {
                warmup: 0,
                window: 0
            })
        );
        assert_eq!(
            split(500, 0),
            Some(Delivered {
                warmup: 500,
                window: 0
            })
        );
        // Too few bytes (a payload shrank) or too many (it grew) has no split.
        assert_eq!(Delivered::attribute(10, 10 * 1099 - 1, 1100), None);
        assert_eq!(Delivered::attribute(10, 10 * 1100 + 1, 1100), None);
    }

    #[test]
    fn the_schedule_is_the_rate_and_the_window_decides_the_size() {
        let plan = Plan {
            rate: 250,
            size: 100,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            probe: None,
        };
        let start = Instant::now();
        let source = Source::new(&plan, start);
        assert_eq!(source.due(0), start);
        assert_eq!(source.due(250), start + Duration::from_secs(1));
        assert_eq!(source.due(1), start + Duration::from_millis(4));
        assert_eq!(source.packets_per_frame, 8);
        assert_eq!(source.warmup_payload.len(), 99);
        assert_eq!(source.window_payload.len(), 100);
        assert_eq!(&source.window_payload[..2], &[0x10, 0x01]);
    }
}
