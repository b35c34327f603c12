//! switchboard-floor: the smallest relay that speaks query-rooms (`/ws?peer_id=ID&room=ROOM`),
//! the floor that `switchboard bench compare` measures switchboard against. It relays addressed
//! and room-wide frames with a server-set `from` and does nothing else: no presence, no limits,
//! no error frames. Keep it this small; every feature added here lowers the bar.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Room id to its members, each a peer id and the queue its socket task drains.
type Rooms = Arc<Mutex<HashMap<String, HashMap<String, mpsc::Sender<Message>>>>>;

/// Frames queued per socket, as in switchboard; when full, the frame is dropped.
const OUTBOX_CAPACITY: usize = 512;
/// Pending connections the kernel may hold, as in switchboard.
const ACCEPT_BACKLOG: u32 = 4096;
/// Socket settings as in switchboard (2 KiB read buffer, 16 KiB write buffer, up to 64
/// queued frames per flush), so a ratio to the floor measures what switchboard adds on top
/// of the transport, not a difference in buffer sizes.
const READ_BUFFER_BYTES: usize = 2 * 1024;
const WRITE_BUFFER_BYTES: usize = 16 * 1024;
const MAX_BATCH: usize = 64;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Relayed<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    payload: Option<&'a RawValue>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = match args.iter().position(|a| a == "--listen") {
        Some(i) => args.get(i + 1).ok_or("--listen needs ADDR")?.parse()?,
        None => SocketAddr::from(([127, 0, 0, 1], 9000)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(ACCEPT_BACKLOG)?;
        let rooms = Rooms::default();
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(connection(stream, rooms.clone()));
        }
    })
}

async fn connection(stream: TcpStream, rooms: Rooms) {
    let (tx, mut rx) = mpsc::channel(OUTBOX_CAPACITY);
    let mut me: Option<(String, String)> = None;
    // Join inside the handshake, before the 101 goes out, so a client may send at once.
    #[allow(clippy::result_large_err)] // the signature is tungstenite's `Callback`
    let join = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let query = request.uri().query().unwrap_or("");
        let param = |key: &str| {
            let found = query.split('&').filter_map(|kv| kv.split_once('='));
            found
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_owned())
                .next()
        };
        match (request.uri().path(), param("peer_id"), param("room")) {
            ("/ws", Some(peer), Some(room)) => {
                let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
                rooms
                    .entry(room.clone())
                    .or_default()
                    .insert(peer.clone(), tx);
                me = Some((room, peer));
                Ok(response)
            }
            _ => {
                let mut refusal = ErrorResponse::new(Some("want /ws?peer_id=ID&room=ROOM".into()));
                *refusal.status_mut() = StatusCode::BAD_REQUEST;
                Err(refusal)
            }
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES);
    let accepted =
        tokio_tungstenite::accept_hdr_async_with_config(stream, join, Some(config)).await;
    let Some((room, peer)) = me else { return };
    if let Ok(mut ws) = accepted {
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(first) => if write(&mut ws, &mut rx, first).await.is_err() { break },
                    None => break,
                },
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => relay(&rooms, &room, &peer, text.as_str()),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(members) = rooms.get_mut(&room) {
        members.remove(&peer);
        if members.is_empty() {
            rooms.remove(&room);
        }
    }
}

/// Writes `first` and whatever else is queued (up to a batch) with one flush.
async fn write(
    ws: &mut WebSocketStream<TcpStream>,
    rx: &mut mpsc::Receiver<Message>,
    first: Message,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.feed(first).await?;
    for _ in 1..MAX_BATCH {
        let Ok(message) = rx.try_recv() else { break };
        ws.feed(message).await?;
    }
    ws.flush().await
}

fn relay(rooms: &Rooms, room: &str, from: &str, text: &str) {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        return;
    };
    let to = frame.to.as_deref();
    let relayed = Relayed {
        kind: &frame.kind,
        from,
        to,
        payload: frame.payload,
    };
    let Ok(json) = serde_json::to_string(&relayed) else {
        return;
    };
    let message = Message::text(json);
    let rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
    let Some(members) = rooms.get(room) else {
        return;
    };
    match to {
        Some(to) => {
            if let Some(outbox) = members.get(to) {
                let _ = outbox.try_send(message);
            }
        }
        None => {
            let others = members.iter().filter(|(name, _)| name.as_str() != from);
            for (_, outbox) in others {
                let _ = outbox.try_send(message.clone());
            }
        }
    }
}
