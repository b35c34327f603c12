//! Durable sessions: a resumable session that outlives its node (docs/scaling.md, "Durable
//! sessions"). Its node keeps every frame in Redis before writing it to the client
//! ([`Cluster::commit`]), and other nodes keep what they publish for it in its inbox (the
//! `RELAY`, `JOIN` and leave scripts) until its node has written it. When its node dies,
//! the reaper parks it instead of removing it from its room, and the node its client
//! resumes on takes it over ([`Cluster::take_over`]): its seat moves there with nothing
//! said to the room, the frames the client has not acknowledged are replayed, and what
//! was kept in its inbox is written next.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::{Event, Inbound, NodeId, PeerKey, PeerName, Presence, RoomId};
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::resp::Value;
use crate::{envelope, Cluster, Op, REDIS_TIMEOUT};

/// What a session's node has written to its client, or is about to: kept in Redis first.
#[derive(Debug)]
pub struct Commit {
    /// The session.
    pub session: u64,
    /// Its peer's key on this node (the owner a takeover replaces).
    pub key: PeerKey,
    /// The last client frame processed.
    pub received: u64,
    /// The last inbox entry written (0: none yet).
    pub inbox: u64,
    /// The last frame the client acknowledged: earlier ones are dropped.
    pub acked: u64,
    /// A new token's hash (a resume rotated it).
    pub token: Option<[u8; 32]>,
    /// The frames, numbered.
    pub frames: Vec<(u64, Bytes)>,
}

/// How a commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// In Redis: the frames may be written.
    Kept,
    /// Another node took the session over: this node's socket task ends quietly.
    Moved,
    /// The session is not in Redis (ended, or never made it there).
    Gone,
    /// Redis is unreachable: the frames are written without being kept.
    Unavailable,
}

/// A durable session as Redis knows it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The session.
    pub session: u64,
    /// The node that holds it.
    pub node: NodeId,
    /// Its room and name there, if it is in one.
    pub seat: Option<(RoomId, PeerName)>,
    /// Whether that node holds a live lease and has not let the session go.
    pub alive: bool,
}

/// What Redis says of a token.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A durable session has it.
    Found(Found),
    /// No session has it: every resumable session of a cluster is in Redis from its start.
    Unknown,
    /// Redis could not be asked.
    Unavailable,
}

/// A takeover to ask for.
#[derive(Debug)]
pub struct Takeover {
    /// The session.
    pub session: u64,
    /// The hash of the token the client presented.
    pub hash: [u8; 32],
    /// The peer on this node that becomes the session.
    pub key: PeerKey,
    /// The last frame the client processed.
    pub seq: u64,
    /// The hash of the token the session gets now.
    pub new_hash: [u8; 32],
    /// The subject of the client's access token (`None` without tokens).
    pub subject: Option<String>,
}

/// A session taken over: everything its new node needs to carry on.
#[derive(Debug)]
pub struct TakenOver {
    /// Its room and name (its seat is this node's now), if it is in one.
    pub seat: Option<(RoomId, PeerName)>,
    /// The last frame number written to the client.
    pub sent: u64,
    /// The last client frame processed.
    pub received: u64,
    /// The frames after the client's position, to replay.
    pub frames: Vec<(u64, Bytes)>,
    /// What other nodes kept for it that its old node had not written, in order, with
    /// each one's place in the inbox.
    pub inbox: Vec<(u64, Event)>,
}

/// Why a takeover did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeoverError {
    /// No such session (ended, expired, or the token was rotated away).
    Unknown,
    /// The client's access token names another subject.
    Subject,
    /// The client's position is outside what was kept (or the inbox overflowed): the
    /// session has ended, and its room heard the leave once.
    Stale,
    /// Redis is unreachable.
    Unavailable,
}

pub(crate) struct CommitOp {
    pub(crate) commit: Commit,
    pub(crate) reply: Option<oneshot::Sender<Committed>>,
}

pub(crate) struct OpenOp {
    pub(crate) session: u64,
    pub(crate) hash: String,
    pub(crate) key: PeerKey,
    pub(crate) window_ms: u64,
    pub(crate) cap: usize,
    pub(crate) subject: String,
}

pub(crate) struct TakeoverOp {
    pub(crate) takeover: Takeover,
    pub(crate) reply: oneshot::Sender<Result<TakenOver, TakeoverError>>,
}

/// A token hash as the scripts key it.
pub(crate) fn hex(hash: &[u8; 32]) -> String {
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

impl Cluster {
    /// Keeps a new durable session in Redis (queued: a join that follows finds it there).
    pub fn open_session(
        &self,
        session: u64,
        hash: &[u8; 32],
        key: PeerKey,
        window: Duration,
        cap: usize,
        subject: Option<&str>,
    ) {
        self.push(Op::Session(Box::new(OpenOp {
            session,
            hash: hex(hash),
            key,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            cap,
            subject: subject.unwrap_or("").to_owned(),
        })));
    }

    /// Keeps `commit` in Redis and waits until it is there (or it cannot be).
    pub async fn commit(&self, commit: Commit) -> Committed {
        if !self.0.up.load(Ordering::SeqCst) {
            return Committed::Unavailable;
        }
        let (reply, done) = oneshot::channel();
        self.push(Op::Commit(Box::new(CommitOp {
            commit,
            reply: Some(reply),
        })));
        match timeout(REDIS_TIMEOUT * 2, done).await {
            Ok(Ok(committed)) => committed,
            _ => Committed::Unavailable,
        }
    }

    /// Queues `commit` without waiting (a client frame processed, a rotated token). Dropped
    /// when the queue is full: what it says is said again, cumulatively, by the next one.
    pub fn commit_later(&self, commit: Commit) {
        let op = Op::Commit(Box::new(CommitOp {
            commit,
            reply: None,
        }));
        let _ = self.queue_bounded(op);
    }

    /// The session ended on this node: its records go (not if it was parked for a
    /// takeover, or another node holds it now).
    pub fn end_session(&self, session: u64, key: PeerKey) {
        self.push(Op::End { session, key });
    }

    /// The durable session of a token, as Redis knows it.
    pub async fn lookup(&self, hash: &[u8; 32]) -> Lookup {
        if !self.0.up.load(Ordering::SeqCst) {
            return Lookup::Unavailable;
        }
        let (reply, found) = oneshot::channel();
        self.push(Op::Lookup {
            hash: hex(hash),
            reply,
        });
        match timeout(REDIS_TIMEOUT * 2, found).await {
            Ok(Ok(lookup)) => lookup,
            _ => Lookup::Unavailable,
        }
    }

    /// Takes a durable session over for local peer `takeover.key`, whose join into the
    /// session's room (`room`, from [`Cluster::lookup`]) the hub holds
    /// ([`switchboard_core::Hub::take_seat`]): this node listens to the room first, so
    /// that the seat's move reaches it.
    pub async fn take_over(
        &self,
        takeover: Takeover,
        room: Option<&RoomId>,
    ) -> Result<TakenOver, TakeoverError> {
        if !self.0.up.load(Ordering::SeqCst) {
            return Err(TakeoverError::Unavailable);
        }
        let (reply, done) = oneshot::channel();
        let op = Op::Takeover(Box::new(TakeoverOp { takeover, reply }));
        match room {
            Some(room) => self.subscribe(self.key(b'r', room.as_str()), Some(op)),
            None => self.push(op),
        }
        match timeout(REDIS_TIMEOUT * 2, done).await {
            Ok(Ok(result)) => result,
            _ => Err(TakeoverError::Unavailable),
        }
    }

    pub(crate) fn encode_durable(&self, op: &Op, out: &mut Vec<u8>) {
        let p = self.prefix().as_bytes();
        let node = self.node().to_string();
        match op {
            Op::Relay {
                room,
                to,
                channel,
                payload,
            } => {
                let to = to.as_ref().map_or("", PeerName::as_str);
                let args: [&[u8]; 6] = [
                    p,
                    room.as_str().as_bytes(),
                    node.as_bytes(),
                    to.as_bytes(),
                    channel,
                    payload,
                ];
                crate::eval_into(out, crate::Script::Relay, &args);
            }
            Op::Session(open) => {
                let (session, key) = (open.session.to_string(), open.key.0.to_string());
                let (window, cap) = (open.window_ms.to_string(), open.cap.to_string());
                let args: [&[u8]; 8] = [
                    p,
                    session.as_bytes(),
                    open.hash.as_bytes(),
                    node.as_bytes(),
                    key.as_bytes(),
                    window.as_bytes(),
                    cap.as_bytes(),
                    open.subject.as_bytes(),
                ];
                crate::eval_into(out, crate::Script::Session, &args);
            }
            Op::Commit(op) => {
                let c = &op.commit;
                let numbers =
                    [c.session, c.key.0, c.received, c.inbox, c.acked].map(|n| n.to_string());
                let token = c.token.as_ref().map(hex).unwrap_or_default();
                let seqs: Vec<String> = c.frames.iter().map(|(n, _)| n.to_string()).collect();
                let mut args: Vec<&[u8]> = vec![
                    p,
                    numbers[0].as_bytes(),
                    node.as_bytes(),
                    numbers[1].as_bytes(),
                    numbers[2].as_bytes(),
                    numbers[3].as_bytes(),
                    numbers[4].as_bytes(),
                    token.as_bytes(),
                ];
                for (seq, (_, frame)) in seqs.iter().zip(&c.frames) {
                    args.push(seq.as_bytes());
                    args.push(frame);
                }
                crate::eval_into(out, crate::Script::Commit, &args);
            }
            Op::End { session, key } => {
                let (session, key) = (session.to_string(), key.0.to_string());
                let args: [&[u8]; 4] = [p, session.as_bytes(), node.as_bytes(), key.as_bytes()];
                crate::eval_into(out, crate::Script::End, &args);
            }
            Op::Lookup { hash, .. } => {
                crate::eval_into(out, crate::Script::Lookup, &[p, hash.as_bytes()]);
            }
            Op::Takeover(op) => {
                let t = &op.takeover;
                let (session, key, seq) = (
                    t.session.to_string(),
                    t.key.0.to_string(),
                    t.seq.to_string(),
                );
                let (hash, new_hash, inc) = (hex(&t.hash), hex(&t.new_hash), self.inc());
                let subject = t.subject.as_deref().unwrap_or("");
                let args: [&[u8]; 9] = [
                    p,
                    session.as_bytes(),
                    hash.as_bytes(),
                    node.as_bytes(),
                    inc.as_bytes(),
                    key.as_bytes(),
                    seq.as_bytes(),
                    new_hash.as_bytes(),
                    subject.as_bytes(),
                ];
                crate::eval_into(out, crate::Script::Takeover, &args);
            }
            _ => {}
        }
    }

    /// Handles the reply to a durable-session command; true if it says this node was
    /// fenced (the takeover is asked again once it has registered anew).
    pub(crate) fn answer_durable(&self, op: Op, value: &Value) -> bool {
        let word = value.as_bytes();
        match op {
            Op::Commit(op) => {
                let committed = match word {
                    Some(b"OK") => Committed::Kept,
                    Some(b"MOVED") => Committed::Moved,
                    Some(b"GONE") => Committed::Gone,
                    _ => Committed::Unavailable,
                };
                if let Some(reply) = op.reply {
                    let _ = reply.send(committed);
                }
            }
            Op::Lookup { reply, .. } => {
                let _ = reply.send(lookup(value));
            }
            Op::Takeover(op) => {
                let result = match word {
                    Some(b"FENCED") => {
                        self.push(Op::Takeover(op));
                        return true;
                    }
                    Some(b"UNKNOWN") => Err(TakeoverError::Unknown),
                    Some(b"SUBJECT") => Err(TakeoverError::Subject),
                    Some(b"STALE") => Err(TakeoverError::Stale),
                    _ => self.taken_over(value).ok_or(TakeoverError::Unavailable),
                };
                let _ = op.reply.send(result);
            }
            _ => {}
        }
        false
    }

    /// The `TAKEOVER` script's `OK` reply.
    fn taken_over(&self, value: &Value) -> Option<TakenOver> {
        let Value::Array(Some(items)) = value else {
            return None;
        };
        let text = |i: usize| std::str::from_utf8(items.get(i)?.as_bytes()?).ok();
        let seat = match (text(1)?, text(2)?) {
            ("", _) => None,
            (room, name) => Some((RoomId::parse(room).ok()?, PeerName::parse(name).ok()?)),
        };
        let sent = text(3)?.parse().ok()?;
        let received = text(4)?.parse().ok()?;
        let pairs = |i: usize| -> Option<Vec<(u64, Bytes)>> {
            let Some(Value::Array(Some(list))) = items.get(i) else {
                return None;
            };
            list.chunks(2)
                .map(|pair| {
                    let n = std::str::from_utf8(pair.first()?.as_bytes()?)
                        .ok()?
                        .parse()
                        .ok()?;
                    Some((n, Bytes::copy_from_slice(pair.get(1)?.as_bytes()?)))
                })
                .collect()
        };
        let frames = pairs(5)?;
        let max = self.0.config.max_envelope;
        let inbox = pairs(6)?
            .into_iter()
            .filter_map(|(n, bytes)| {
                let inbound = envelope::decode(&bytes, max).ok()?.inbound;
                Some((n, kept_event(inbound)?))
            })
            .collect();
        Some(TakenOver {
            seat,
            sent,
            received,
            frames,
            inbox,
        })
    }
}

/// What a relay, join or leave kept in an inbox tells the session.
fn kept_event(inbound: Inbound) -> Option<Event> {
    Some(match inbound {
        Inbound::Relay { signal, .. } => Event::Signal(signal),
        Inbound::Joined { room, seat, .. } => Event::PeerJoined(Arc::new(Presence {
            room,
            name: seat.name,
        })),
        Inbound::Left { room, name, .. } => Event::PeerLeft(Arc::new(Presence { room, name })),
        _ => return None,
    })
}

/// The `LOOKUP` script's reply.
fn lookup(value: &Value) -> Lookup {
    match value {
        Value::Array(Some(items)) if items.is_empty() => Lookup::Unknown,
        _ => found(value).map_or(Lookup::Unavailable, Lookup::Found),
    }
}

fn found(value: &Value) -> Option<Found> {
    let Value::Array(Some(items)) = value else {
        return None;
    };
    let text = |i: usize| std::str::from_utf8(items.get(i)?.as_bytes()?).ok();
    let session = text(0)?.parse().ok()?;
    let node = NodeId::parse(text(1)?)?;
    let seat = match (text(2)?, text(3)?) {
        ("", _) => None,
        (room, name) => Some((RoomId::parse(room).ok()?, PeerName::parse(name).ok()?)),
    };
    Some(Found {
        session,
        node,
        seat,
        alive: text(4)? == "1",
    })
}
