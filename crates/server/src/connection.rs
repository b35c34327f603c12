//! The socket task: one per WebSocket, one loop, one exit, one leave. It reads frames,
//! decodes them with its dialect and hands the commands to the hub (never awaiting inside
//! the hub's lock); it drains its outbox to the socket in batches; it pings, and closes
//! with the right code when the peer is gone, too slow, too big, too fast or idle.
//!
//! A resumable socket (`/conference?resume=1`, `resume.rs`) numbers what it sends and keeps
//! it for a replay; when it drops abnormally its task parks instead of ending, still holding
//! the membership, and carries on with the socket that resumes it.

use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::FutureExt;
use switchboard_auth::Grants;
use switchboard_cluster::envelope::ForwardedRequest;
use switchboard_cluster::envelope::TunnelFrame;
use switchboard_cluster::{Cluster, Commit, Committed, Found, Lookup, Takeover, TakeoverError};
use switchboard_core::{
    Command, DialectKind, ErrorCode, ErrorEvent, Event, MediaRequest, Outcome, PeerKey, PeerName,
    RawJson, Retained, RoomId, SharedFrames, SharedHub,
};
use switchboard_dialects::resume::{self as wire, Control};
use switchboard_dialects::{Dialect, Outbound, WireError};
use switchboard_websocket::Error as FrameError;
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep, timeout, Duration, Instant, MissedTickBehavior, Sleep};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, trace, Instrument, Span};

use crate::limits::{RateLimit, Slot, Verdict};
use crate::metrics::{DialectMetrics, Limit};
use crate::resume::{self, Handoff, Link, Refusal, Replay, Token, TokenHash};
use crate::upgrade::{self, Admitted, Opening};
use crate::ws::{WebSocket, WsError};
use crate::AppState;

/// Events written to the socket per flush at most, so one busy peer's batch cannot delay
/// its own reads for long.
const MAX_BATCH: usize = 64;

/// How long a join may wait for the cluster before the peer hears `unavailable`.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// Removes the peer from the hub when dropped: exactly once, on every exit path, including
/// a client that vanishes during the upgrade.
pub(crate) struct Membership {
    hub: SharedHub,
    key: PeerKey,
}

impl Membership {
    pub(crate) fn new(hub: SharedHub, key: PeerKey) -> Self {
        Membership { hub, key }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.with(|hub| hub.disconnect(self.key));
    }
}

/// One socket's state besides the socket itself.
pub(crate) struct Connection<D: Dialect> {
    state: AppState,
    key: PeerKey,
    session: D::Session,
    inbox: mpsc::Receiver<Event>,
    metrics: DialectMetrics,
    rate: RateLimit,
    /// Reused for every encoded frame's text before it is handed to the socket.
    out: String,
    /// Set while a join or a pairing message waits for the cluster's verdict: until when.
    /// The socket reads nothing meanwhile, so the peer's next frame finds the verdict made.
    joining: Option<Instant>,
    /// What the socket's token grants (`None`: no limits): the SFU requests are checked here.
    grants: Option<Arc<Grants>>,
    /// The client's address.
    ip: IpAddr,
    /// What to write first, before anything from the outbox.
    opening: Opening,
    _membership: Membership,
    /// The resume state of an opted-in socket; `None` for every other (their frames are
    /// untouched, and cost one branch). Declared after the membership, so dropped after it:
    /// a socket still waiting at the door is let in as a fresh session only once the room
    /// has heard this one leave (and its name is free for the rejoin).
    resume: Option<Box<Resumable>>,
    /// The socket's place among the server's connections; none while parked.
    slot: Option<Slot>,
}

/// A resumable session's numbers, replay buffer and door.
pub(crate) struct Resumable {
    state: AppState,
    /// The hash of the session's current token.
    hash: TokenHash,
    /// Sockets that resume this session arrive here (capacity 1: one attempt at a time).
    door: mpsc::Receiver<Box<Handoff>>,
    /// The last `seq` stamped on a frame.
    sent: u64,
    /// The last numbered client frame processed.
    received: u64,
    replay: Replay,
    /// While parked: the last frame sent before the drop. Frames after it are unseen, so the
    /// buffer may not drop them.
    parked_at: Option<u64>,
    /// The buffer overflowed while parked: the session ends.
    overflowed: bool,
    /// Nothing has been read on this socket yet: only a first frame may be `resume`.
    fresh: bool,
    /// In a cluster: the session is durable, kept in Redis as it goes.
    durable: Option<Durable>,
}

/// A durable session's place in Redis (docs/scaling.md, "Durable sessions"): every frame is
/// kept there before it is written, so that another node can take the session over if
/// this one dies.
struct Durable {
    cluster: Cluster,
    session: u64,
    key: PeerKey,
    /// The last inbox entry written (relays and membership changes other nodes kept).
    inbox: u64,
    /// The last inbox entry Redis has been told of.
    inbox_kept: u64,
    /// The last frame the client acknowledged.
    acked: u64,
    /// Frames numbered and not yet kept.
    pending: Vec<(u64, Bytes)>,
}

impl Durable {
    fn commit(&mut self, received: u64, token: Option<TokenHash>) -> Commit {
        self.inbox_kept = self.inbox;
        Commit {
            session: self.session,
            key: self.key,
            received,
            inbox: self.inbox,
            acked: self.acked,
            token,
            frames: std::mem::take(&mut self.pending),
        }
    }
}

impl Resumable {
    /// A session with a fresh token (opened under its hash) and the token's text. In a
    /// cluster it is durable, and Redis has it before its client can know its token.
    fn open(state: &AppState, key: PeerKey, subject: Option<&str>) -> (Box<Resumable>, String) {
        let token = Token::new();
        let (door_in, door) = mpsc::channel(1);
        state.sessions.open(token.hash, door_in);
        let config = &state.config;
        let durable = state.cluster.as_ref().map(|cluster| {
            let session = switchboard_cluster::rand_u64();
            cluster.open_session(
                session,
                &token.hash,
                key,
                config.resume_window,
                config.resume_buffer_frames,
                subject,
            );
            Durable {
                cluster: cluster.clone(),
                session,
                key,
                inbox: 0,
                inbox_kept: 0,
                acked: 0,
                pending: Vec::new(),
            }
        });
        let resumable = Box::new(Resumable {
            state: state.clone(),
            hash: token.hash,
            door,
            sent: 0,
            received: 0,
            replay: Replay::new(config.resume_buffer_frames, config.resume_buffer_bytes),
            parked_at: None,
            overflowed: false,
            fresh: true,
            durable,
        });
        (resumable, token.text)
    }

    /// Replaces the token (each `resumed` and `session` hands out a new one) and returns it.
    fn rotate(&mut self) -> String {
        let token = Token::new();
        self.state.sessions.rotate(&self.hash, token.hash);
        self.hash = token.hash;
        token.text
    }
}

impl Drop for Resumable {
    fn drop(&mut self) {
        self.state.sessions.close(&self.hash);
        if let Some(durable) = &self.durable {
            durable.cluster.end_session(durable.session, durable.key);
        }
        // A socket that knocked just as the session ended: it hears `resume_failed` rather
        // than a dropped connection.
        self.door.close();
        while let Ok(handoff) = self.door.try_recv() {
            upgrade::restart(self.state.clone(), handoff, "the session has ended");
        }
    }
}

/// How the loop ended, and what (if anything) to tell the client.
#[derive(Debug)]
enum Close {
    /// The connection broke (no close frame, a read or write error): nothing to send. A
    /// resumable session parks.
    Gone,
    /// The client closed the socket (a close frame with 1000, 1001 or no code): nothing to
    /// send, and a resumable session ends too.
    Left,
    /// A fresh resumable socket asked to take over the session of this token hash, whose
    /// frames its client processed up to `seq`.
    Resume(TokenHash, u64),
    /// Another socket took this session over (this one is half-open, or about to be).
    Takeover(Box<Handoff>),
    /// Another node took this durable session over (this node did not answer in time).
    Moved,
    /// Server shutdown.
    GoingAway,
    /// The hub evicted this peer for a full outbox.
    Evicted,
    /// A write took longer than the write timeout.
    Stalled,
    /// A frame over the size limit.
    TooBig,
    /// Sustained flooding past the rate limit.
    TooFast,
    /// Nothing received for the idle timeout.
    Idle,
    /// A text frame that is not valid UTF-8 (RFC 6455 8.1).
    BadUtf8,
    /// Bytes that are not WebSocket frames (RFC 6455 7.4.1: 1002).
    Protocol,
    /// A room dialect's socket that joined no room within the join timeout.
    NoJoin,
}

impl Close {
    fn frame(&self) -> Option<(u16, &'static str)> {
        match self {
            Close::Gone | Close::Left | Close::Stalled | Close::Resume(..) => None,
            Close::Takeover(_) | Close::Moved => Some((4001, "session resumed")),
            Close::GoingAway => Some((1001, "server shutting down")),
            Close::Evicted => Some((1008, "too slow: outbox full")),
            Close::TooBig => Some((1009, "frame too large")),
            Close::TooFast => Some((1008, "message rate limit exceeded")),
            Close::Idle => Some((1001, "idle timeout")),
            Close::BadUtf8 => Some((1007, "text frame is not valid UTF-8")),
            Close::Protocol => Some((1002, "protocol error")),
            Close::NoJoin => Some((1008, "join timeout: no room joined")),
        }
    }

    /// Whether a resumable session waits for its client after this (the socket broke).
    fn parks(&self) -> bool {
        matches!(self, Close::Gone | Close::Stalled | Close::Idle)
    }
}

impl<D: Dialect> Connection<D> {
    pub(crate) fn new(state: AppState, admitted: Admitted) -> Self {
        let Admitted {
            key,
            inbox,
            membership,
            slot,
            grants,
            ip,
            opening,
        } = admitted;
        let config = &state.config;
        let rate = RateLimit::new(
            config.max_message_rate,
            config.message_burst,
            config.rate_strikes,
            Instant::now(),
        );
        // A query-rooms join claimed before the upgrade may not be confirmed yet: the peer's
        // first frame waits for it like any other join's.
        let joining = (state.cluster.is_some() && state.hub.with(|hub| hub.awaits_join(key)))
            .then(|| Instant::now() + CLAIM_TIMEOUT);
        Connection {
            metrics: state.metrics.for_dialect(D::KIND),
            state,
            key,
            session: D::Session::default(),
            inbox,
            rate,
            out: String::new(),
            joining,
            grants,
            ip,
            opening,
            resume: None,
            _membership: membership,
            slot: Some(slot),
        }
    }

    /// Handles one incoming frame. Never awaits: the hub is reached under its lock and
    /// replies go to this peer's own outbox, in order with everything else.
    fn receive(&mut self, decoded: Result<Command<'_>, WireError>) {
        let mut command = match decoded {
            Ok(command) => command,
            Err(error) => return self.refuse(error),
        };
        command.stamp_chat(|| {
            Arc::from(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string())
        });
        let command = match command {
            Command::Media { request, data, rid } => return self.media(request, data, rid),
            command => command,
        };
        let rid = command.rid().cloned();
        let key = self.key;
        let result = self.state.hub.with(|hub| {
            let result = hub.execute(key, command);
            if let Err(error) = &result {
                hub.refuse(key, error, rid.clone());
            }
            result
        });
        match result {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Waiting) => self.joining = Some(Instant::now() + CLAIM_TIMEOUT),
            Ok(Outcome::Claim { room, name }) => self.claim(room, name, rid),
            Ok(Outcome::Pair { to, signal }) => {
                if let Some(cluster) = &self.state.cluster {
                    // Like a claim: the peer's next frame waits for the verdict.
                    cluster.pair(key, to, &signal);
                    self.joining = Some(Instant::now() + CLAIM_TIMEOUT);
                }
            }
            Err(error) => {
                trace!(%error, "refused");
                self.state.metrics.error(D::KIND, error.code());
            }
        }
    }

    /// A join the cluster must confirm: the claim goes to Redis, and this socket reads
    /// nothing more until the reply (`joined` or an error) is on its way, so that what the
    /// peer sends next finds it in the room.
    fn claim(&mut self, room: RoomId, name: PeerName, rid: Option<RawJson>) {
        let Some(cluster) = &self.state.cluster else {
            return;
        };
        let session = self
            .resume
            .as_ref()
            .and_then(|r| r.durable.as_ref())
            .map(|durable| durable.session);
        cluster.claim(room, name, self.key, rid, session);
        self.joining = Some(Instant::now() + CLAIM_TIMEOUT);
    }

    /// The claim took too long: give up on it (its name is released if it went through).
    fn claim_expired(&mut self) {
        self.joining = None;
        let key = self.key;
        let gave_up = self.state.hub.with(|hub| hub.give_up_join(key));
        if gave_up {
            self.state.metrics.error(D::KIND, ErrorCode::Unavailable);
        }
    }

    /// Hands an SFU request to the media worker, which answers on this peer's outbox: this
    /// node's, or in a cluster the room's media node's, through Redis.
    fn media(&mut self, request: MediaRequest, data: RawJson, rid: Option<RawJson>) {
        if let Some(grants) = &self.grants {
            let refused = match request {
                MediaRequest::Produce if !grants.publish => {
                    Some("the token does not grant publish")
                }
                MediaRequest::Consume if !grants.subscribe => {
                    Some("the token does not grant subscribe")
                }
                _ => None,
            };
            if let Some(why) = refused {
                let error = WireError::new(ErrorCode::Forbidden, format!("forbidden: {why}"));
                return self.refuse(error.with_rid(rid));
            }
        }
        let key = self.key;
        let Some((room, name, epoch, home)) = self.state.hub.with(|hub| {
            let (room, name, epoch) = hub.membership(key)?;
            let home = hub
                .media_home(&room)
                .filter(|&home| Some(home) != hub.node());
            Some((room, name, epoch, home))
        }) else {
            let error = WireError::new(ErrorCode::NotInRoom, "join a room first");
            return self.refuse(error.with_rid(rid));
        };
        if let (Some(home), Some(cluster)) = (home, &self.state.cluster) {
            let forwarded = ForwardedRequest {
                node: cluster.node(),
                key,
                room,
                name,
                epoch,
                request,
                data,
                rid: rid.clone(),
            };
            if let Err(error) = cluster.forward_media(home, &forwarded) {
                self.refuse(WireError::new(error.code(), error.to_string()).with_rid(rid));
            }
            return;
        }
        let Some(sfu) = &self.state.sfu else {
            let error = WireError::new(ErrorCode::MediaDisabled, "media is off on this server");
            return self.refuse(error.with_rid(rid));
        };
        let request = switchboard_sfu::Request {
            peer: key,
            room,
            name,
            epoch,
            request,
            data,
            rid: rid.clone(),
        };
        if let Err((code, message)) = sfu.request(request) {
            self.refuse(WireError::new(code, message).with_rid(rid));
        }
    }

    fn refuse(&mut self, error: WireError) {
        trace!(%error, "bad frame");
        self.state.metrics.error(D::KIND, error.code);
        let event = Event::Error(Box::new(ErrorEvent {
            code: error.code,
            message: Arc::from(&*error.message),
            rid: error.rid,
        }));
        let key = self.key;
        self.state.hub.with(|hub| hub.reply(key, event));
    }

    /// Encodes `event` (and, if `more`, whatever else is already queued, up to a batch) and
    /// writes it.
    async fn flush(&mut self, socket: &mut Link, first: Event, more: bool) -> Result<(), Close> {
        let limit = self.state.config.write_timeout;
        let durable = self.resume.as_ref().is_some_and(|r| r.durable.is_some());
        let write = async {
            let mut next = Some(first);
            let mut batch = 0;
            // Counted once per batch: the counters are shared by every socket, and one
            // atomic add per frame on each made a room-wide fanout's cores fight over them.
            let (mut frames, mut bytes) = (0, 0);
            // A durable session's frames wait until Redis has them.
            let mut held = Vec::new();
            while let Some(event) = next.take() {
                self.note(&event);
                if let Some(message) = self.encode(&event) {
                    frames += 1;
                    bytes += length(&message);
                    if durable {
                        held.push(message);
                    } else {
                        socket.feed(message).await.map_err(|_| Close::Gone)?;
                    }
                }
                batch += 1;
                if batch < MAX_BATCH && more {
                    next = self.inbox.try_recv().ok();
                }
            }
            if durable {
                self.keep().await?;
                for message in held {
                    socket.feed(message).await.map_err(|_| Close::Gone)?;
                }
            }
            self.metrics.frames_out.inc_by(frames);
            self.metrics.bytes_out.inc_by(bytes);
            socket.flush().await.map_err(|_| Close::Gone)
        };
        // Most writes finish at once (the kernel's send buffer has room): try without a timer
        // first, and arm the write timeout only for a write that has to wait.
        let waited = {
            let mut write = pin!(write);
            if let Some(result) = write.as_mut().now_or_never() {
                return result;
            }
            // Boxed: only a write that waits pays for the timer's space, not every socket.
            Box::pin(timeout(limit, write)).await
        };
        match waited {
            Ok(result) => result,
            Err(_) => {
                self.state.metrics.limit_hit(Limit::WriteTimeout);
                Err(Close::Stalled)
            }
        }
    }

    /// What an event tells this task about its own socket's state.
    fn note(&mut self, event: &Event) {
        if matches!(event, Event::Error(_) | Event::Settled) {
            self.joining = None;
        }
        if let Event::Joined(joined) = event {
            self.joining = None;
            Span::current()
                .record("peer", joined.name.as_str())
                .record("room", joined.room.as_str());
        }
    }

    /// Keeps a durable session's numbered frames (and how far it has got) in Redis before
    /// they are written. Without Redis they are written all the same: the session is as
    /// durable as one node then. Another node took the session over: this socket ends.
    async fn keep(&mut self) -> Result<(), Close> {
        let Some(resumable) = self.resume.as_mut() else {
            return Ok(());
        };
        let received = resumable.received;
        let Some(durable) = resumable.durable.as_mut() else {
            return Ok(());
        };
        if durable.pending.is_empty() && durable.inbox == durable.inbox_kept {
            return Ok(());
        }
        let cluster = durable.cluster.clone();
        let commit = durable.commit(received, None);
        match Box::pin(cluster.commit(commit)).await {
            Committed::Kept | Committed::Unavailable | Committed::Gone => Ok(()),
            Committed::Moved => Err(Close::Moved),
        }
    }

    fn encode(&mut self, event: &Event) -> Option<Message> {
        if let Event::Retained(retained) = event {
            // Written from here on: its place in the inbox is kept with the frame.
            if let Some(durable) = self.resume.as_mut().and_then(|r| r.durable.as_mut()) {
                durable.inbox = durable.inbox.max(retained.inbox);
            }
            return self.encode(&retained.event);
        }
        // A room-wide signal is encoded by its first receiver in this dialect; the others
        // write the same frame: no encoding, no copy and no UTF-8 check per receiver.
        let shared = match event {
            Event::Signal(signal) => Some(&signal.frames),
            _ => None,
        };
        match shared.and_then(|frames| frames.get::<Utf8Bytes>(D::KIND)) {
            // A resumable socket stamps its own `seq`, on its own copy of the shared frame
            // (its replay buffer keeps it).
            Some(frame) if self.resume.is_some() => {
                self.out.clear();
                self.out.push_str(frame.as_str());
                Some(Message::Text(self.number()))
            }
            Some(frame) => Some(Message::Text(frame.clone())),
            None => self.encode_new(event, shared),
        }
    }

    /// Encodes `event` in this dialect; a frame that is the same for every receiver is kept
    /// in `shared` for the others.
    fn encode_new(&mut self, event: &Event, shared: Option<&SharedFrames>) -> Option<Message> {
        let outbound = D::encode(&mut self.session, event, &mut self.out);
        if let (Outbound::TextForAll, Some(frames)) = (&outbound, shared) {
            let frame = Utf8Bytes::from(self.out.as_str());
            frames.set(D::KIND, frame.clone());
            if self.resume.is_none() {
                return Some(Message::Text(frame));
            }
        }
        Some(match outbound {
            Outbound::Skip => return None,
            Outbound::Text | Outbound::TextForAll if self.resume.is_some() => {
                Message::Text(self.number())
            }
            Outbound::Text | Outbound::TextForAll => {
                Message::Text(Utf8Bytes::from(self.out.as_str()))
            }
            Outbound::SharedText(bytes) => Message::Text(Utf8Bytes::try_from(bytes).ok()?),
            Outbound::Binary(bytes) => Message::Binary(bytes),
        })
    }

    /// Counts a frame, read at `now`, against the rate limit; `Err` means close the socket.
    fn admit_frame(&mut self, len: usize, now: Instant) -> Result<bool, Close> {
        self.metrics.frames_in.inc();
        self.metrics.bytes_in.inc_by(len as u64);
        match self.rate.check(now) {
            Verdict::Allow => Ok(true),
            Verdict::Refuse => {
                self.state.metrics.limit_hit(Limit::Rate);
                self.refuse(WireError::new(
                    switchboard_core::ErrorCode::RateLimited,
                    "too many messages: slow down",
                ));
                Ok(false)
            }
            Verdict::Close => {
                self.state.metrics.limit_hit(Limit::RateClose);
                Err(Close::TooFast)
            }
        }
    }

    /// Stamps the next `seq` on the frame in `out` and keeps it for a replay.
    fn number(&mut self) -> Utf8Bytes {
        let Some(resumable) = self.resume.as_mut() else {
            return Utf8Bytes::from(self.out.as_str());
        };
        resumable.sent += 1;
        let seq = resumable.sent;
        wire::stamp(&mut self.out, seq);
        let frame = Utf8Bytes::from(self.out.as_str());
        let seen = resumable.parked_at.unwrap_or(seq);
        if resumable.replay.push(seq, frame.clone(), seen).is_err() {
            resumable.overflowed = true;
        }
        if let Some(durable) = resumable.durable.as_mut() {
            let bytes = Bytes::copy_from_slice(self.out.as_bytes());
            durable.pending.push((seq, bytes));
        }
        frame
    }

    /// Handles one frame of a resumable socket: its number (a frame already processed is a
    /// resend, dropped), the resume layer's own frames, then the conference frame. A `resume`
    /// ends the loop, to hand the socket to its session.
    fn receive_numbered(&mut self, text: &str) -> Option<Close> {
        let envelope = match wire::peek(text) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.refuse(error);
                return None;
            }
        };
        let resumable = self.resume.as_mut()?;
        let fresh = std::mem::replace(&mut resumable.fresh, false);
        if envelope.seq.is_some_and(|seq| seq <= resumable.received) {
            trace!("resent frame dropped");
            return None;
        }
        match envelope.control {
            Some(Control::Ack(seq)) => {
                resumable.replay.ack(seq);
                if let Some(durable) = resumable.durable.as_mut() {
                    // Redis drops what the client has, and learns how far the client's own
                    // frames were processed (each batch of frames written says so too).
                    durable.acked = durable.acked.max(seq.min(resumable.sent));
                    durable.cluster.commit_later(Commit {
                        session: durable.session,
                        key: durable.key,
                        received: resumable.received,
                        inbox: durable.inbox_kept,
                        acked: durable.acked,
                        token: None,
                        frames: Vec::new(),
                    });
                }
                return None;
            }
            Some(Control::Resume { token, seq }) if fresh => {
                return Some(Close::Resume(resume::hash(&token), seq));
            }
            Some(Control::Resume { .. }) => {
                let error = WireError::new(
                    ErrorCode::InvalidState,
                    "resume must be the first frame on a socket",
                );
                self.refuse(error);
                return None;
            }
            None => {}
        }
        let decoded = D::decode(&mut self.session, text);
        self.receive(decoded);
        if let (Some(seq), Some(resumable)) = (envelope.seq, self.resume.as_mut()) {
            resumable.received = seq;
        }
        None
    }

    /// Opens the resume layer on a fresh opted-in socket: a failed resume's error first if
    /// this socket carries one on, then `session`.
    async fn open(&mut self, socket: &mut Link) -> Result<(), Close> {
        let failed = match std::mem::replace(&mut self.opening, Opening::Plain) {
            Opening::Plain => return Ok(()),
            Opening::Session => None,
            Opening::Failed(code, message) => Some((code, message)),
        };
        let subject = self.grants.as_ref().map(|grants| grants.subject.as_str());
        let (resumable, token) = Resumable::open(&self.state, self.key, subject);
        self.resume = Some(resumable);
        if let Some((code, message)) = failed {
            self.refuse_resume(socket, code, message).await?;
        }
        self.send_session(socket, &token).await
    }

    async fn send_session(&mut self, socket: &mut Link, token: &str) -> Result<(), Close> {
        let window = u64::try_from(self.state.config.resume_window.as_millis()).unwrap_or(u64::MAX);
        wire::session(&mut self.out, token, window);
        let frame = Utf8Bytes::from(self.out.as_str());
        send_now(socket, frame, self.state.config.write_timeout).await
    }

    /// Writes a failed resume's error, unnumbered.
    async fn refuse_resume(
        &mut self,
        socket: &mut Link,
        code: ErrorCode,
        message: &'static str,
    ) -> Result<(), Close> {
        self.state.metrics.error(D::KIND, code);
        let error = Event::Error(Box::new(ErrorEvent {
            code,
            message: Arc::from(message),
            rid: None,
        }));
        if D::encode(&mut self.session, &error, &mut self.out) != Outbound::Text {
            return Ok(());
        }
        let frame = Utf8Bytes::from(self.out.as_str());
        send_now(socket, frame, self.state.config.write_timeout).await
    }

    /// Takes `handoff` on as this session's socket if its token and position fit: writes
    /// `resumed` and replays what the client missed. `Err` gives the socket back: the
    /// position is outside the buffer (or the token was rotated meanwhile).
    async fn resume(
        &mut self,
        handoff: Box<Handoff>,
    ) -> Result<(Link, TaskTrackerToken), Box<Handoff>> {
        let Some(resumable) = self.resume.as_mut() else {
            return Err(handoff);
        };
        let same_client = match &handoff.remote {
            None => same_subject(self.grants.as_deref(), handoff.grants.as_deref()),
            Some(subject) => {
                self.grants.as_ref().map(|grants| grants.subject.as_str()) == subject.as_deref()
            }
        };
        if !resume::same(&handoff.hash, &resumable.hash)
            || !resumable.replay.covers(handoff.seq, resumable.sent)
            || !same_client
        {
            return Err(handoff);
        }
        let Handoff {
            mut ws,
            slot,
            tracked,
            seq,
            grants,
            remote,
            ..
        } = *handoff;
        // The fresh token's rights from here on (a refreshed token may narrow them); the
        // room the session is in was granted when it joined. A socket carried from another
        // node brings only its subject, checked above: the session keeps its rights.
        if remote.is_none() {
            self.grants = grants;
        }
        resumable.replay.ack(seq);
        resumable.parked_at = None;
        resumable.fresh = false;
        let (next, received) = (seq + 1, resumable.received);
        let token = resumable.rotate();
        if let Some(durable) = resumable.durable.as_mut() {
            // The new token opens the session elsewhere too, before its client has it.
            durable.acked = durable.acked.max(seq);
            let cluster = durable.cluster.clone();
            let commit = durable.commit(received, Some(resumable.hash));
            // Moved meanwhile: the loop's next commit finds it, and the socket ends.
            let _ = Box::pin(cluster.commit(commit)).await;
        }
        let frames: Vec<Utf8Bytes> = resumable.replay.after(seq).cloned().collect();
        self.slot = Some(slot);
        let key = self.key;
        let room = self.state.hub.with(|hub| hub.membership(key)).map(|m| m.0);
        wire::resumed(
            &mut self.out,
            room.as_ref().map(|room| room.as_str()),
            &token,
            next,
            received,
        );
        let resumed = Utf8Bytes::from(self.out.as_str());
        self.state.metrics.resume("resumed");
        self.state.metrics.replayed(frames.len() as u64);
        debug!(replayed = frames.len(), "resumed");
        let limit = self.state.config.write_timeout;
        // A socket that fails during the replay is found broken by the loop, which parks
        // the session again: the frames stay in the buffer until acknowledged.
        if send_now(&mut ws, resumed, limit).await.is_ok() {
            for frame in frames {
                if send_now(&mut ws, frame, limit).await.is_err() {
                    break;
                }
            }
        }
        Ok((ws, tracked))
    }
}

impl<D: Dialect> Connection<D> {
    /// Takes over a durable session whose node died (or did not answer) for this fresh
    /// socket: its seat in its room moves here with nothing said to the room, `resumed` and
    /// the frames the client has not processed are written, then what other nodes kept in
    /// its inbox, numbered on. This socket's own fresh session is given up for it.
    async fn take_over(
        &mut self,
        socket: &mut Link,
        found: Found,
        hash: TokenHash,
        seq: u64,
    ) -> Result<(), TakeoverError> {
        let key = self.key;
        let cluster = self
            .state
            .cluster
            .clone()
            .ok_or(TakeoverError::Unavailable)?;
        if let Some((room, name)) = &found.seat {
            let held = self.state.hub.with(|hub| hub.take_seat(key, room, name));
            held.map_err(|_| TakeoverError::Unavailable)?;
        }
        let token = Token::new();
        let takeover = Takeover {
            session: found.session,
            hash,
            key,
            seq,
            new_hash: token.hash,
            subject: self.grants.as_ref().map(|grants| grants.subject.clone()),
        };
        let room = found.seat.as_ref().map(|(room, _)| room);
        let taken = match cluster.take_over(takeover, room).await {
            Ok(taken) => taken,
            Err(error) => {
                self.state.hub.with(|hub| hub.drop_takeover(key));
                return Err(error);
            }
        };
        if taken.seat.is_some() {
            // Its socket reads nothing until the seat is this node's (`Settled`).
            self.joining = Some(Instant::now() + CLAIM_TIMEOUT);
        } else if found.seat.is_some() {
            // The session left its room meanwhile: there is no seat to wait for.
            self.state.hub.with(|hub| hub.drop_takeover(key));
        }
        let config = &self.state.config;
        let mut replay = Replay::new(config.resume_buffer_frames, config.resume_buffer_bytes);
        let mut frames = Vec::with_capacity(taken.frames.len());
        for (n, bytes) in taken.frames {
            let Ok(frame) = Utf8Bytes::try_from(bytes) else {
                continue;
            };
            let _ = replay.push(n, frame.clone(), seq);
            frames.push(frame);
        }
        let resumable = self.resume.as_mut().ok_or(TakeoverError::Unavailable)?;
        self.state.sessions.rotate(&resumable.hash, token.hash);
        resumable.hash = token.hash;
        resumable.sent = taken.sent;
        resumable.received = taken.received;
        resumable.replay = replay;
        resumable.fresh = false;
        if let Some(durable) = resumable.durable.as_mut() {
            // This socket's own fresh session is not needed any more.
            cluster.end_session(durable.session, key);
            durable.session = found.session;
            durable.acked = seq;
            durable.inbox = 0;
            durable.inbox_kept = 0;
            durable.pending.clear();
        }
        let room = taken.seat.as_ref().map(|(room, _)| room.as_str());
        wire::resumed(&mut self.out, room, &token.text, seq + 1, taken.received);
        let resumed = Utf8Bytes::from(self.out.as_str());
        self.state.metrics.resume("taken_over");
        self.state.metrics.replayed(frames.len() as u64);
        debug!(
            replayed = frames.len(),
            kept = taken.inbox.len(),
            "taken over"
        );
        let limit = self.state.config.write_timeout;
        // A socket that fails here is found broken by the loop, which parks the session.
        if send_now(socket, resumed, limit).await.is_err() {
            return Ok(());
        }
        for frame in frames {
            if send_now(socket, frame, limit).await.is_err() {
                return Ok(());
            }
        }
        for (inbox, event) in taken.inbox {
            let event = Event::Retained(Box::new(Retained { inbox, event }));
            if self.flush(socket, event, false).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// Whether a socket with `new` grants may take over a session opened with `old`: with
/// `--auth`, only a token for the same subject does (the session token alone proves the
/// client held the session; the access token says who it is now).
fn same_subject(old: Option<&Grants>, new: Option<&Grants>) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => old.subject == new.subject,
        (None, None) => true,
        _ => false,
    }
}

/// A socket and its state, boxed once per connection. An async fn keeps its arguments
/// twice in its state (as arguments, then as locals), and a task holds its future for its
/// whole life: passing one box keeps every idle socket's task small.
struct Socket<D: Dialect> {
    ws: Link,
    conn: Connection<D>,
    _tracked: TaskTrackerToken,
}

/// Runs one socket until it ends, then says goodbye with the right close code. `tracked`
/// keeps the server's shutdown waiting for it.
pub(crate) fn run<D: Dialect>(
    ws: Link,
    conn: Connection<D>,
    tracked: TaskTrackerToken,
) -> impl std::future::Future<Output = ()> + Send {
    let span = tracing::debug_span!(
        "conn",
        id = conn.key.0,
        dialect = D::KIND.as_str(),
        peer = tracing::field::Empty,
        room = tracing::field::Empty
    );
    let socket = Box::new(Socket {
        ws,
        conn,
        _tracked: tracked,
    });
    serve(socket).instrument(span)
}

async fn serve<D: Dialect>(mut this: Box<Socket<D>>) {
    debug!("open");
    let opened = {
        let Socket { ws, conn, .. } = &mut *this;
        conn.open(ws).await
    };
    let mut close = match opened {
        Ok(()) => pump(&mut this).await,
        Err(close) => close,
    };
    // A resumable session goes round here once per socket: a resume attempt, a takeover,
    // a drop (parked until a socket comes back), then the loop again with the new socket.
    // Each of these waits is boxed: a future is as big as its largest state, and every
    // socket's task holds this one for its whole life, while only a resumable session ever
    // reaches them (unboxed, `park` and `knock` made it twice the size of `pump`).
    loop {
        this = match close {
            Close::Resume(hash, seq) => match Box::pin(knock(this, hash, seq)).await {
                Some(this) => this,
                None => return,
            },
            Close::Takeover(handoff) => {
                let Socket { ws, conn, _tracked } = *this;
                let limit = conn.state.config.write_timeout;
                // The old socket (half-open, or about to be) hears why, without waiting.
                conn.state.sockets.spawn(
                    goodbye(ws, 4001, "session resumed", limit, Close::Gone).in_current_span(),
                );
                match Box::pin(take(conn, handoff)).await {
                    Some(this) => this,
                    None => return,
                }
            }
            close if close.parks() && this.conn.resume.is_some() => {
                debug!(?close, "parked");
                match Box::pin(park(this)).await {
                    Some(this) => this,
                    None => return,
                }
            }
            close => return end(this, close).await,
        };
        close = pump(&mut this).await;
    }
}

/// Ends a socket with the right close code, leaving the hub first.
async fn end<D: Dialect>(this: Box<Socket<D>>, close: Close) {
    let metrics = &this.conn.state.metrics;
    match close {
        Close::Evicted | Close::Stalled => metrics.eviction(D::KIND),
        Close::TooBig => metrics.limit_hit(Limit::FrameSize),
        Close::Idle => metrics.limit_hit(Limit::IdleTimeout),
        Close::NoJoin => metrics.limit_hit(Limit::JoinTimeout),
        _ => {}
    }
    debug!(?close, "closed");
    let durable = this
        .conn
        .resume
        .as_ref()
        .is_some_and(|r| r.durable.is_some());
    let frame = match close {
        // A durable session outlives this node: the cluster parked it, and the client
        // resumes it on another node (1012: service restart).
        Close::GoingAway if durable => Some((1012, "server restarting: resume elsewhere")),
        _ => close.frame(),
    };
    if let Some((code, reason)) = frame {
        let Socket {
            ws: socket,
            conn,
            _tracked,
        } = *this;
        let write_timeout = conn.state.config.write_timeout;
        drop(conn); // leave the hub now; the goodbye below may take a moment
                    // Boxed, like every rare wait here: a future's size is its largest state, and each
                    // idle socket would carry this one's timers for nothing.
        Box::pin(goodbye(socket, code, reason, write_timeout, close)).await;
    }
}

/// A fresh socket's `resume`: hands the socket to the session its token names and ends
/// (this socket's own fresh session goes with it). If there is none, the client hears
/// `resume_failed` (or `rate_limited`) and a new `session`, and this socket carries on.
async fn knock<D: Dialect>(
    this: Box<Socket<D>>,
    hash: TokenHash,
    seq: u64,
) -> Option<Box<Socket<D>>> {
    let Socket {
        ws,
        mut conn,
        _tracked,
    } = *this;
    let slot = conn.slot.take()?;
    let handoff = Box::new(Handoff {
        ws,
        slot,
        tracked: _tracked,
        hash,
        seq,
        ip: conn.ip,
        grants: conn.grants.clone(),
        remote: None,
    });
    let sessions = conn.state.sessions.clone();
    let (refusal, handoff) = match sessions.knock(handoff, Instant::now()) {
        Ok(()) => {
            debug!("handed over to its session");
            return None;
        }
        Err(refused) => refused,
    };
    let Handoff {
        ws: link,
        slot,
        tracked,
        ..
    } = *handoff;
    conn.slot = Some(slot);
    let (mut result, mut code, mut message) = match refusal {
        Refusal::RateLimited => (
            "rate_limited",
            ErrorCode::RateLimited,
            "too many failed resumes: slow down",
        ),
        Refusal::Unknown => (
            "unknown",
            ErrorCode::ResumeFailed,
            "unknown or expired session",
        ),
    };
    // Not here: in a cluster, perhaps on another node.
    let mut ws = match (link, conn.state.cluster.clone()) {
        (Link::Local(ws), Some(cluster)) if refusal == Refusal::Unknown => {
            let (found, ask) = match Box::pin(cluster.lookup(&hash)).await {
                // The session's node lives: the socket is carried there, if it answers.
                Lookup::Found(found) => {
                    let ask = found.alive && found.node != cluster.node();
                    (Some(found), ask)
                }
                // Every resumable session of a cluster is in Redis: no node has this one.
                Lookup::Unknown => (None, false),
                // Redis is away: perhaps its node can still be reached.
                Lookup::Unavailable => (None, true),
            };
            if ask {
                let subject = conn.grants.as_ref().map(|grants| grants.subject.clone());
                if let Some((end, first)) =
                    Box::pin(find(&cluster, hash, seq, conn.ip, subject)).await
                {
                    let state = conn.state.clone();
                    state.metrics.resume("carried");
                    debug!("carried to its session's node");
                    let slot = conn.slot.take();
                    drop(conn); // this socket's own fresh session ends
                    Box::pin(carried(state, ws, end, first)).await;
                    drop((slot, tracked));
                    return None;
                }
            }
            let mut link = Link::Local(ws);
            // Its node is gone (or did not answer): the session is taken over here.
            if let Some(found) = found {
                match Box::pin(conn.take_over(&mut link, found, hash, seq)).await {
                    Ok(()) => {
                        return Some(Box::new(Socket {
                            ws: link,
                            conn,
                            _tracked: tracked,
                        }))
                    }
                    Err(TakeoverError::Stale) => {
                        (result, message) =
                            ("stale", "session cannot be resumed from that position");
                    }
                    Err(TakeoverError::Unavailable) => {
                        (result, code) = ("unavailable", ErrorCode::Unavailable);
                        message = "the cluster could not be reached: try again";
                    }
                    Err(TakeoverError::Unknown | TakeoverError::Subject) => {}
                }
            }
            link
        }
        (link, _) => link,
    };
    conn.state.sessions.failed(conn.ip, Instant::now());
    conn.state.metrics.resume(result);
    debug!(result, "resume refused");
    conn.refuse_resume(&mut ws, code, message).await.ok()?;
    let token = conn.resume.as_mut()?.rotate();
    if let Some(resumable) = conn.resume.as_mut() {
        resumable.fresh = true;
        if let Some(durable) = resumable.durable.as_mut() {
            let commit = durable.commit(resumable.received, Some(resumable.hash));
            durable.cluster.commit_later(commit);
        }
    }
    conn.send_session(&mut ws, &token).await.ok()?;
    Some(Box::new(Socket {
        ws,
        conn,
        _tracked: tracked,
    }))
}

/// How long a resume waits for another node to answer for its session: Redis's round trip
/// and the session node's, with room to spare; a token no node knows costs this much.
const KNOCK_WAIT: Duration = Duration::from_secs(2);

/// Asks the other nodes for the session of `hash`: the tunnel to it and the session's
/// first answer (`resumed`), or `None` if no node has it or it refused.
async fn find(
    cluster: &switchboard_cluster::Cluster,
    hash: TokenHash,
    seq: u64,
    ip: IpAddr,
    subject: Option<String>,
) -> Option<(switchboard_cluster::TunnelEnd, TunnelFrame)> {
    let mut end = cluster.knock(hash, seq, ip, subject).ok()?;
    match timeout(KNOCK_WAIT, end.recv()).await {
        Ok(Some(TunnelFrame::Refused)) | Ok(None) | Err(_) => None,
        Ok(Some(first)) => Some((end, first)),
    }
}

/// Serves a client whose session lives on another node: its frames go through the tunnel
/// to the session, the session's come back, until either end goes. A tunnel that breaks
/// drops the socket without a close frame, so the client resumes again (its session parks
/// and keeps every frame for the replay); a close frame from either side is passed on.
async fn carried(
    state: AppState,
    mut ws: WebSocket,
    mut end: switchboard_cluster::TunnelEnd,
    first: TunnelFrame,
) {
    let limit = state.config.write_timeout;
    let mut cancelled = pin!(state.going_away.wait());
    // The session pings its client every ping interval, through the tunnel: a tunnel silent
    // for the idle timeout is dead even if its end was never told (a `Gone` lost while
    // Redis was away). The client resumes again.
    let idle_timeout = state.config.idle_timeout;
    let silent = sleep(idle_timeout);
    let mut silent = pin!(silent);
    let mut next = Some(first);
    loop {
        if let Some(frame) = next.take() {
            silent.as_mut().reset(Instant::now() + idle_timeout);
            let message = match frame {
                TunnelFrame::Text(bytes) => match Utf8Bytes::try_from(bytes) {
                    Ok(text) => Message::Text(text),
                    Err(_) => return,
                },
                TunnelFrame::Binary(bytes) => Message::Binary(bytes),
                TunnelFrame::Ping => Message::Ping(Bytes::new()),
                TunnelFrame::Close(code, reason) => {
                    let frame = (code != resume::NO_STATUS).then(|| CloseFrame {
                        code,
                        reason: Utf8Bytes::try_from(reason).unwrap_or_default(),
                    });
                    let mut link = Link::Local(ws);
                    if matches!(
                        timeout(limit, link.send(Message::Close(frame))).await,
                        Ok(Ok(()))
                    ) {
                        linger(&mut link, Close::Left).await;
                    }
                    return;
                }
                TunnelFrame::Pong | TunnelFrame::Refused | TunnelFrame::Gone => continue,
            };
            if !matches!(timeout(limit, ws.send(message)).await, Ok(Ok(()))) {
                return;
            }
            continue;
        }
        tokio::select! {
            biased;
            () = &mut cancelled => {
                // The session parks on its node; the client comes back elsewhere.
                let frame = CloseFrame {
                    code: 1001,
                    reason: Utf8Bytes::from_static("server shutting down"),
                };
                let _ = timeout(limit, ws.send(Message::Close(Some(frame)))).await;
                return;
            }
            frame = end.recv() => match frame {
                Some(frame) => next = Some(frame),
                None => return,
            },
            () = &mut silent => {
                debug!("tunnel silent for the idle timeout: dropping the client's socket");
                return;
            }
            message = ws.recv() => {
                let frame = match message {
                    Some(Ok(Message::Text(text))) => {
                        TunnelFrame::Text(Bytes::copy_from_slice(text.as_str().as_bytes()))
                    }
                    Some(Ok(Message::Binary(bytes))) => TunnelFrame::Binary(bytes),
                    Some(Ok(Message::Pong(_))) => TunnelFrame::Pong,
                    Some(Ok(Message::Ping(_))) => continue, // the socket answers pings
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map_or((resume::NO_STATUS, Bytes::new()), |f| {
                            (f.code, Bytes::copy_from_slice(f.reason.as_str().as_bytes()))
                        });
                        let _ = end.send(TunnelFrame::Close(code, reason));
                        // The socket has queued its answer to the close frame.
                        let _ = timeout(limit, ws.flush()).await;
                        return;
                    }
                    None | Some(Err(_)) => return,
                };
                if end.send(frame).is_err() {
                    return;
                }
            }
        }
    }
}

/// Takes a socket offered to this session on, or, if it does not fit (a position the
/// buffer no longer covers, a rotated token), ends the session (the room hears the leave
/// once) and carries the socket on as a fresh session that starts with `resume_failed`.
async fn take<D: Dialect>(
    mut conn: Connection<D>,
    handoff: Box<Handoff>,
) -> Option<Box<Socket<D>>> {
    match conn.resume(handoff).await {
        Ok((ws, tracked)) => Some(Box::new(Socket {
            ws,
            conn,
            _tracked: tracked,
        })),
        Err(handoff) => {
            let state = conn.state.clone();
            state.metrics.resume("stale");
            state.sessions.failed(handoff.ip, Instant::now());
            debug!("resume refused: position outside the replay buffer");
            drop(conn); // the session ends before its client can join again under its name
            upgrade::restart(
                state,
                handoff,
                "session cannot be resumed from that position",
            );
            None
        }
    }
}

/// Keeps a resumable session whose socket dropped: in its room, its frames numbered and
/// buffered, until a socket takes it over (`Some`), or the window ends, the buffer
/// overflows, the hub evicts it or the server shuts down (`None`: the session ends, and the
/// room hears the leave once).
async fn park<D: Dialect>(this: Box<Socket<D>>) -> Option<Box<Socket<D>>> {
    let Socket {
        ws,
        mut conn,
        _tracked,
    } = *this;
    drop(ws);
    let state = conn.state.clone();
    let Some(parked) = state.sessions.park(&state.metrics, conn.key) else {
        debug!("too many parked sessions: ending");
        return None;
    };
    conn.slot = None; // a parked session holds no connection, only its place under --max-parked
    let resumable = conn.resume.as_mut()?;
    resumable.parked_at = Some(resumable.sent);
    let deadline = Box::pin(sleep(state.config.resume_window));
    let mut deadline = deadline;
    let going_away = state.going_away.clone();
    let mut cancelled = pin!(going_away.wait());
    let reason = loop {
        let resumable = conn.resume.as_mut()?;
        tokio::select! {
            biased;
            () = &mut cancelled => break "shutdown",
            () = &mut deadline => break "expired",
            handoff = resumable.door.recv() => match handoff {
                Some(handoff) => {
                    drop(parked);
                    return take(conn, handoff).await;
                }
                None => break "shutdown",
            },
            event = conn.inbox.recv() => match event {
                Some(event) => {
                    conn.note(&event);
                    if let Some(message) = conn.encode(&event) {
                        conn.metrics.frames_out.inc();
                        conn.metrics.bytes_out.inc_by(length(&message));
                    }
                    if conn.resume.as_ref().is_some_and(|r| r.overflowed) {
                        break "overflow";
                    }
                    // A durable session keeps what it would have written, so that it
                    // survives this node too.
                    if conn.keep().await.is_err() {
                        break "moved";
                    }
                }
                None => break "evicted",
            },
        }
    };
    state.metrics.parked_ended(reason);
    debug!(reason, "parked session ended");
    None
}

/// Serves the socket until it ends.
async fn pump<D: Dialect>(this: &mut Socket<D>) -> Close {
    let Socket {
        ws: socket, conn, ..
    } = this;
    let going_away = conn.state.going_away.clone();
    let config = &conn.state.config;
    let (ping_every, idle_timeout) = (config.ping_interval, config.idle_timeout);
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // Room dialects must join within the join timeout; boxed and dropped once they have, so
    // a socket in a room carries no timer for it.
    let mut join_deadline = matches!(D::KIND, DialectKind::Conference | DialectKind::RoomRelay)
        .then(|| Box::pin(sleep(config.join_timeout)));
    // One wait for the whole life of the socket, polled on every wake-up at the cost of an
    // atomic load (`shutdown.rs`).
    let mut cancelled = pin!(going_away.wait());
    loop {
        tokio::select! {
            biased;
            () = &mut cancelled => break Close::GoingAway,
            event = conn.inbox.recv() => match event {
                Some(event) => {
                    if let Err(close) = conn.flush(socket, event, true).await {
                        break close;
                    }
                    // Evicted while we were writing: stop now rather than drain the backlog.
                    if conn.inbox.is_closed() {
                        break Close::Evicted;
                    }
                }
                None => break Close::Evicted,
            },
            handoff = takeover(&mut conn.resume) => break Close::Takeover(handoff),
            () = claim_timer(conn.joining) => conn.claim_expired(),
            frame = socket.recv(), if conn.joining.is_none() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match conn.admit_frame(text.len(), last_heard) {
                        Ok(true) if conn.resume.is_some() => {
                            if let Some(close) = conn.receive_numbered(text.as_str()) {
                                break close;
                            }
                        }
                        Ok(true) => {
                            let decoded = D::decode(&mut conn.session, text.as_str());
                            conn.receive(decoded);
                        }
                        Ok(false) => {}
                        Err(close) => break close,
                    },
                    Some(Ok(Message::Binary(bytes))) => match conn.admit_frame(bytes.len(), last_heard) {
                        Ok(true) => {
                            let decoded = D::decode_binary(&mut conn.session, bytes);
                            conn.receive(decoded);
                        }
                        Ok(false) => {}
                        Err(close) => break close,
                    },
                    Some(Ok(Message::Close(frame))) => {
                        // The socket has queued its answer: see it out, within the write
                        // timeout, before the socket is dropped.
                        let limit = conn.state.config.write_timeout;
                        let _ = Box::pin(timeout(limit, socket.flush())).await;
                        break closed_by_client(frame.as_ref());
                    }
                    None => break Close::Gone,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {} // the socket answers pings
                    Some(Err(error)) => break read_error(error),
                }
            }
            () = expired(&mut join_deadline) => {
                let key = conn.key;
                // A join the cluster is still confirming counts as made.
                if conn.state.hub.with(|hub| hub.membership(key).is_none() && !hub.awaits_join(key)) {
                    break Close::NoJoin;
                }
                join_deadline = None;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    break Close::Idle;
                }
                if !ping_sent(socket, conn.state.config.write_timeout).await {
                    break Close::Gone;
                }
            }
        }
    }
}

/// A close frame from the client: 1000 and 1001 (and none) end the session; any other code
/// is a client saying "I will be back" (a resumable session parks).
fn closed_by_client(frame: Option<&CloseFrame>) -> Close {
    match frame.map(|frame| frame.code) {
        None | Some(1000 | 1001) => Close::Left,
        Some(_) => Close::Gone,
    }
}

/// A socket that wants this session, if it is resumable; never otherwise.
async fn takeover(resume: &mut Option<Box<Resumable>>) -> Box<Handoff> {
    match resume {
        Some(resumable) => match resumable.door.recv().await {
            Some(handoff) => handoff,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Writes a frame outside the numbering (`session`, `resumed`, a failed resume's error, a
/// replayed frame) straight to the socket, within the write timeout.
async fn send_now(socket: &mut Link, frame: Utf8Bytes, limit: Duration) -> Result<(), Close> {
    match Box::pin(timeout(limit, socket.send(Message::Text(frame)))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Close::Gone),
    }
}

/// Fires when a join waiting for the cluster has waited too long; never without one.
async fn claim_timer(until: Option<Instant>) {
    match until {
        Some(until) => Box::pin(tokio::time::sleep_until(until)).await,
        None => std::future::pending().await,
    }
}

/// Completes when the join deadline passes; never, once there is none.
async fn expired(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(deadline) => deadline.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Sends a ping within the write timeout; false if the socket is gone or stalled.
async fn ping_sent(socket: &mut Link, limit: Duration) -> bool {
    let sent = Box::pin(timeout(limit, socket.send(Message::Ping(Bytes::new())))).await;
    matches!(sent, Ok(Ok(())))
}

/// Sends our close frame, then lingers for the client's.
async fn goodbye(mut socket: Link, code: u16, reason: &'static str, limit: Duration, close: Close) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let sent = timeout(limit, socket.send(Message::Close(Some(frame)))).await;
    if matches!(sent, Ok(Ok(()))) {
        linger(&mut socket, close).await;
    }
}

/// How long to wait for the client's side of the closing handshake.
const LINGER: Duration = Duration::from_secs(2);

/// Waits, briefly, for the client to answer our close (RFC 6455 7.1.1: the server closes TCP
/// after the client's close frame). After an oversized frame the stream cannot be read as
/// frames any more, so there is nothing to wait for: the socket is dropped at once, and the
/// connection (`accept::Accepted`) sends its FIN right after the close frame and reads and
/// drops the rest of the client's input, so no reset destroys the close frame and the client
/// learns of the close at once.
async fn linger(socket: &mut Link, close: Close) {
    if matches!(close, Close::TooBig) {
        return;
    }
    let _ = timeout(LINGER, async {
        while let Some(Ok(frame)) = socket.recv().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A data frame's length in bytes, for the metrics.
fn length(message: &Message) -> u64 {
    let bytes = match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        _ => 0,
    };
    bytes as u64
}

fn read_error(error: WsError) -> Close {
    match error {
        WsError::Frame(FrameError::TooBig { .. }) => Close::TooBig,
        WsError::Frame(FrameError::BadUtf8) => Close::BadUtf8,
        WsError::Frame(FrameError::Protocol(why)) => {
            debug!(why, "WebSocket protocol error");
            Close::Protocol
        }
        WsError::Closing | WsError::Io(_) => Close::Gone,
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::mem::size_of;

    use switchboard_dialects::{Conference, QueryRooms};

    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
        size_of::<F>()
    }

    /// What every idle socket holds in its task and its box, for docs/performance.md:
    /// `cargo test -p switchboard-server --lib idle_sizes -- --nocapture`.
    #[test]
    fn idle_sizes() {
        let sizes = [
            ("Event (one outbox slot)", size_of::<Event>()),
            ("Link", size_of::<Link>()),
            ("WebSocket", size_of::<WebSocket>()),
            (
                "Connection<QueryRooms>",
                size_of::<Connection<QueryRooms>>(),
            ),
            (
                "Connection<Conference>",
                size_of::<Connection<Conference>>(),
            ),
            (
                "Socket<QueryRooms> (boxed)",
                size_of::<Socket<QueryRooms>>(),
            ),
            ("Resumable (boxed)", size_of::<Resumable>()),
            ("RateLimit", size_of::<RateLimit>()),
            ("DialectMetrics", size_of::<DialectMetrics>()),
            ("Opening", size_of::<Opening>()),
            (
                "serve::<QueryRooms> future (the task's)",
                future_size(serve::<QueryRooms>),
            ),
            (
                "serve::<Conference> future (the task's)",
                future_size(serve::<Conference>),
            ),
            (
                "pump::<QueryRooms> future",
                future_size(|s: &'static mut Socket<QueryRooms>| pump(s)),
            ),
            (
                "pump::<Conference> future",
                future_size(|s: &'static mut Socket<Conference>| pump(s)),
            ),
            (
                "open (a fresh socket's first frames)",
                future_size(
                    |(c, l): (&'static mut Connection<QueryRooms>, &'static mut Link)| c.open(l),
                ),
            ),
            (
                "flush",
                future_size(
                    |(c, l, e): (
                        &'static mut Connection<QueryRooms>,
                        &'static mut Link,
                        Event,
                    )| { c.flush(l, e, true) },
                ),
            ),
            ("Link::recv", future_size(|l: &'static mut Link| l.recv())),
            ("park", future_size(park::<QueryRooms>)),
            (
                "end",
                future_size(|(s, c): (Box<Socket<QueryRooms>>, Close)| end(s, c)),
            ),
            (
                "knock",
                future_size(|(s, h, q): (Box<Socket<QueryRooms>>, TokenHash, u64)| knock(s, h, q)),
            ),
            (
                "take",
                future_size(|(c, h): (Connection<QueryRooms>, Box<Handoff>)| take(c, h)),
            ),
        ];
        for (what, bytes) in sizes {
            println!("{what:45} {bytes:5} B");
        }
        // Every outbox's first block holds 32 events (`events_stay_small` in core keeps
        // them at 24 bytes); the task's future is the other size an idle socket pays in full.
        assert!(size_of::<Event>() <= 24);
    }
}
