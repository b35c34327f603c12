//! The socket task: one per WebSocket, one loop, one exit, one leave. It reads frames,
//! decodes them with its dialect and hands the commands to the hub (never awaiting inside
//! the hub's lock); it drains its outbox to the socket in batches; it pings, and closes
//! with the right code when the peer is gone, too slow, too big, too fast or idle.

use std::pin::{pin, Pin};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt};
use switchboard_auth::Grants;
use switchboard_cluster::envelope::ForwardedRequest;
use switchboard_core::{
    Command, DialectKind, ErrorCode, Event, MediaRequest, Outcome, PeerKey, PeerName, RawJson,
    RoomId, SharedHub,
};
use switchboard_dialects::{Dialect, Outbound, WireError};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep, timeout, Duration, Instant, MissedTickBehavior, Sleep};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, trace, Instrument, Span};

use crate::limits::{RateLimit, Slot, Verdict};
use crate::metrics::{DialectMetrics, Limit};
use crate::upgrade::Admitted;
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
    _membership: Membership,
    _slot: Slot,
}

/// How the loop ended, and what (if anything) to tell the client.
#[derive(Debug, Clone, Copy)]
enum Close {
    /// The client closed or the connection broke: nothing to send.
    Gone,
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
    /// A room dialect's socket that joined no room within the join timeout.
    NoJoin,
}

impl Close {
    fn frame(self) -> Option<(u16, &'static str)> {
        match self {
            Close::Gone | Close::Stalled => None,
            Close::GoingAway => Some((1001, "server shutting down")),
            Close::Evicted => Some((1008, "too slow: outbox full")),
            Close::TooBig => Some((1009, "frame too large")),
            Close::TooFast => Some((1008, "message rate limit exceeded")),
            Close::Idle => Some((1001, "idle timeout")),
            Close::BadUtf8 => Some((1007, "text frame is not valid UTF-8")),
            Close::NoJoin => Some((1008, "join timeout: no room joined")),
        }
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
            _membership: membership,
            _slot: slot,
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
        cluster.claim(room, name, self.key, rid);
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
        let event = Event::Error {
            code: error.code,
            message: Arc::from(&*error.message),
            rid: error.rid,
        };
        let key = self.key;
        self.state.hub.with(|hub| hub.reply(key, event));
    }

    /// Encodes `event` (and whatever else is already queued, up to a batch) and writes it.
    async fn flush(&mut self, socket: &mut WebSocket, first: Event) -> Result<(), Close> {
        let limit = self.state.config.write_timeout;
        let write = async {
            let mut next = Some(first);
            let mut batch = 0;
            while let Some(event) = next.take() {
                if matches!(event, Event::Error { .. } | Event::Settled) {
                    self.joining = None;
                }
                if let Event::Joined(joined) = &event {
                    self.joining = None;
                    Span::current()
                        .record("peer", joined.name.as_str())
                        .record("room", joined.room.as_str());
                }
                if let Some(message) = self.encode(&event) {
                    socket.feed(message).await.map_err(|_| Close::Gone)?;
                }
                batch += 1;
                if batch < MAX_BATCH {
                    next = self.inbox.try_recv().ok();
                }
            }
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

    fn encode(&mut self, event: &Event) -> Option<Message> {
        let message = match D::encode(&mut self.session, event, &mut self.out) {
            Outbound::Skip => return None,
            Outbound::Text => Message::Text(Utf8Bytes::from(self.out.as_str())),
            Outbound::SharedText(bytes) => Message::Text(Utf8Bytes::try_from(bytes).ok()?),
            Outbound::Binary(bytes) => Message::Binary(bytes),
        };
        let bytes = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
            _ => 0,
        };
        self.metrics.frames_out.inc();
        self.metrics.bytes_out.inc_by(bytes as u64);
        Some(message)
    }

    /// Counts a frame against the rate limit; `Err` means close the socket.
    fn admit_frame(&mut self, len: usize) -> Result<bool, Close> {
        self.metrics.frames_in.inc();
        self.metrics.bytes_in.inc_by(len as u64);
        match self.rate.check(Instant::now()) {
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
}

/// A socket and its state, boxed once per connection. An async fn keeps its arguments
/// twice in its state (as arguments, then as locals), and a task holds its future for its
/// whole life: passing one box keeps every idle socket's task small.
struct Socket<D: Dialect> {
    ws: WebSocket,
    conn: Connection<D>,
    _tracked: TaskTrackerToken,
}

/// Runs one socket until it ends, then says goodbye with the right close code. `tracked`
/// keeps the server's shutdown waiting for it.
pub(crate) fn run<D: Dialect>(
    ws: WebSocket,
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
    let Socket {
        ws: socket, conn, ..
    } = &mut *this;
    let shutdown = conn.state.shutdown.clone();
    let config = &conn.state.config;
    let (ping_every, idle_timeout) = (config.ping_interval, config.idle_timeout);
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // Room dialects must join within the join timeout; boxed and dropped once they have, so
    // a socket in a room carries no timer for it.
    let mut join_deadline = matches!(D::KIND, DialectKind::Conference | DialectKind::RoomRelay)
        .then(|| Box::pin(sleep(config.join_timeout)));
    // One waiter for the whole life of the socket: a fresh `cancelled()` per turn of the loop
    // would lock the token's waiter list twice per frame, shared by every socket.
    let cancelled = shutdown.cancelled();
    let mut cancelled = pin!(cancelled);
    debug!("open");
    let close = loop {
        tokio::select! {
            biased;
            () = &mut cancelled => break Close::GoingAway,
            event = conn.inbox.recv() => match event {
                Some(event) => {
                    if let Err(close) = conn.flush(socket, event).await {
                        break close;
                    }
                    // Evicted while we were writing: stop now rather than drain the backlog.
                    if conn.inbox.is_closed() {
                        break Close::Evicted;
                    }
                }
                None => break Close::Evicted,
            },
            () = claim_timer(conn.joining) => conn.claim_expired(),
            frame = socket.recv(), if conn.joining.is_none() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match conn.admit_frame(text.len()) {
                        Ok(true) => {
                            let decoded = D::decode(&mut conn.session, text.as_str());
                            conn.receive(decoded);
                        }
                        Ok(false) => {}
                        Err(close) => break close,
                    },
                    Some(Ok(Message::Binary(bytes))) => match conn.admit_frame(bytes.len()) {
                        Ok(true) => {
                            let decoded = D::decode_binary(&mut conn.session, bytes);
                            conn.receive(decoded);
                        }
                        Ok(false) => {}
                        Err(close) => break close,
                    },
                    Some(Ok(Message::Close(_))) | None => break Close::Gone,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {} // tungstenite answers pings
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
    };
    match close {
        Close::Evicted | Close::Stalled => conn.state.metrics.eviction(D::KIND),
        Close::TooBig => conn.state.metrics.limit_hit(Limit::FrameSize),
        Close::Idle => conn.state.metrics.limit_hit(Limit::IdleTimeout),
        Close::NoJoin => conn.state.metrics.limit_hit(Limit::JoinTimeout),
        _ => {}
    }
    debug!(?close, "closed");
    if let Some((code, reason)) = close.frame() {
        let write_timeout = conn.state.config.write_timeout;
        let Socket {
            ws: socket,
            conn,
            _tracked,
        } = *this;
        drop(conn); // leave the hub now; the goodbye below may take a moment
                    // Boxed, like every rare wait here: a future's size is its largest state, and each
                    // idle socket would carry this one's timers for nothing.
        Box::pin(goodbye(socket, code, reason, write_timeout, close)).await;
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
async fn ping_sent(socket: &mut WebSocket, limit: Duration) -> bool {
    let sent = Box::pin(timeout(limit, socket.send(Message::Ping(Bytes::new())))).await;
    matches!(sent, Ok(Ok(())))
}

/// Sends our close frame, then lingers for the client's.
async fn goodbye(
    mut socket: WebSocket,
    code: u16,
    reason: &'static str,
    limit: Duration,
    close: Close,
) {
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
async fn linger(socket: &mut WebSocket, close: Close) {
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

fn read_error(error: axum::Error) -> Close {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Close::TooBig,
        Some(tungstenite::Error::Utf8(_)) => Close::BadUtf8,
        _ => Close::Gone,
    }
}
