//! Where signaling meets the SFU: starting the media worker next to the listener, the
//! [`Signaling`] it answers through (the hub, so its replies queue in order with everything
//! else a peer is told), and, in a cluster, the members of other nodes it serves as
//! *guests*: a room's media lives on one node (docs/scaling.md), and the members connected
//! elsewhere reach it through Redis.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use switchboard_cluster::envelope::ForwardedRequest;
use switchboard_cluster::{Cluster, MediaPort};
use switchboard_core::{
    DialectKind, ErrorEvent, Event, MembershipListener, NodeId, PeerKey, PeerName, RoomId, Seat,
    SharedHub,
};
use switchboard_sfu::{MediaConfig, Sfu, Signaling, StartError};
use tracing::{info, warn};

use crate::webhook::Webhooks;
use crate::Config;

/// Keys this node's SFU knows guests by start here, far above any local connection's.
const GUEST_KEYS: u64 = 1 << 62;

/// A member of another node whose room's media lives here.
#[derive(Debug, Clone)]
struct Guest {
    node: NodeId,
    key: PeerKey,
    room: RoomId,
    name: PeerName,
}

/// The guests, by the key the SFU knows them by and by where they are.
#[derive(Default)]
struct Guests {
    by_key: HashMap<PeerKey, Guest>,
    by_origin: HashMap<(NodeId, PeerKey), PeerKey>,
    next: u64,
}

impl Guests {
    /// The SFU's key for this guest, and whether its room changed (or it is new).
    fn admit(
        &mut self,
        node: NodeId,
        key: PeerKey,
        room: &RoomId,
        name: &PeerName,
    ) -> (PeerKey, bool) {
        let origin = (node, key);
        if let Some(&known) = self.by_origin.get(&origin) {
            if let Some(guest) = self.by_key.get_mut(&known) {
                let moved = guest.room != *room || guest.name != *name;
                guest.room = room.clone();
                guest.name = name.clone();
                return (known, moved);
            }
        }
        let guest_key = PeerKey(GUEST_KEYS + self.next);
        self.next += 1;
        self.by_origin.insert(origin, guest_key);
        self.by_key.insert(
            guest_key,
            Guest {
                node,
                key,
                room: room.clone(),
                name: name.clone(),
            },
        );
        (guest_key, true)
    }

    fn remove(&mut self, room: &RoomId, name: &PeerName, node: NodeId) -> Option<PeerKey> {
        let key = *self
            .by_key
            .iter()
            .find(|(_, g)| g.node == node && g.room == *room && g.name == *name)?
            .0;
        if let Some(guest) = self.by_key.remove(&key) {
            self.by_origin.remove(&(guest.node, guest.key));
        }
        Some(key)
    }
}

type SharedGuests = Arc<Mutex<Guests>>;

fn lock(guests: &SharedGuests) -> std::sync::MutexGuard<'_, Guests> {
    guests.lock().unwrap_or_else(PoisonError::into_inner)
}

struct HubSignaling {
    hub: SharedHub,
    guests: SharedGuests,
    cluster: Option<Cluster>,
    /// Told of producers published and closed (`--webhook`).
    webhooks: Option<Webhooks>,
}

impl HubSignaling {
    fn guest(&self, peer: PeerKey) -> Option<Guest> {
        if peer.0 < GUEST_KEYS {
            return None;
        }
        lock(&self.guests).by_key.get(&peer).cloned()
    }
}

impl Signaling for HubSignaling {
    fn tell(&self, peer: PeerKey, event: Event) {
        match (self.guest(peer), &self.cluster) {
            (Some(guest), Some(cluster)) => {
                cluster.media_to_peer(guest.node, guest.key, &guest.room, &event);
            }
            _ => self.hub.with(|hub| hub.reply(peer, event)),
        }
    }

    fn tell_room(&self, room: &RoomId, except: PeerKey, event: Event) {
        self.hub.with(|hub| hub.tell_room(room, except, &event));
        if let Some(cluster) = &self.cluster {
            let except = match self.guest(except) {
                Some(guest) => (guest.node, guest.key),
                None => (cluster.node(), except),
            };
            cluster.media_to_room(room, except, &event);
        }
    }

    fn producer(&self, room: &RoomId, name: &PeerName, id: &str, kind: &str, is_open: bool) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.producer(room, name, id, kind, is_open);
        }
    }

    fn is_member(&self, peer: PeerKey, room: &RoomId) -> bool {
        match self.guest(peer) {
            Some(guest) => {
                guest.room == *room
                    && self
                        .hub
                        .with(|hub| hub.is_remote_member(room, &guest.name, guest.node))
            }
            None => self
                .hub
                .with(|hub| hub.membership(peer).is_some_and(|(r, ..)| r == *room)),
        }
    }
}

/// The SFU follows members' rooms as the hub reports them: media belongs to one membership,
/// and closes with it. Guests leave when the hub hears their leave from their node.
struct Follower {
    sfu: Sfu,
    guests: SharedGuests,
}

impl MembershipListener for Follower {
    fn joined(&self, key: PeerKey, dialect: DialectKind, room: &RoomId, epoch: u32) {
        if dialect == DialectKind::Conference {
            self.sfu.joined(key, room.clone(), epoch);
        }
    }

    fn left(&self, key: PeerKey, dialect: DialectKind, epoch: u32) {
        if dialect == DialectKind::Conference {
            self.sfu.left(key, epoch);
        }
    }

    /// A member of another node joined a room whose media lives here: it hears of the
    /// room's producers now, as a local member would.
    fn remote_joined(&self, room: &RoomId, seat: &Seat) {
        let (key, _) = lock(&self.guests).admit(seat.node, seat.key, room, &seat.name);
        self.sfu.joined(key, room.clone(), 0);
    }

    fn remote_left(&self, room: &RoomId, name: &PeerName, node: NodeId) {
        if let Some(key) = lock(&self.guests).remove(room, name, node) {
            self.sfu.left(key, switchboard_sfu::GONE);
        }
    }
}

/// Requests forwarded from other nodes' members to this node's SFU.
struct Port {
    sfu: Sfu,
    guests: SharedGuests,
    cluster: Cluster,
}

impl MediaPort for Port {
    fn request(&self, request: ForwardedRequest) {
        let (key, moved) =
            lock(&self.guests).admit(request.node, request.key, &request.room, &request.name);
        if moved {
            // Like a local member's join: it hears of the room's producers.
            self.sfu.joined(key, request.room.clone(), request.epoch);
        }
        let rid = request.rid.clone();
        let forwarded = switchboard_sfu::Request {
            peer: key,
            room: request.room.clone(),
            name: request.name.clone(),
            epoch: request.epoch,
            request: request.request,
            data: request.data,
            rid: request.rid,
        };
        if let Err((code, message)) = self.sfu.request(forwarded) {
            let error = Event::Error(Box::new(ErrorEvent {
                code,
                message: Arc::from(message),
                rid,
            }));
            self.cluster
                .media_to_peer(request.node, request.key, &request.room, &error);
        }
    }
}

/// Starts the SFU unless media is off. Its UDP port is the listener's port number unless
/// `--media-listen` says otherwise; when the listener's port was picked by the system (0)
/// and that number is taken for UDP, any free port will do.
pub(crate) fn start(
    config: &Config,
    listening: SocketAddr,
    hub: &SharedHub,
    cluster: Option<&Cluster>,
    webhooks: Option<Webhooks>,
) -> Result<Option<Sfu>, StartError> {
    if !config.media {
        info!("media (SFU) is off");
        return Ok(None);
    }
    let (listen, fallback) = match config.media_listen {
        // A fixed range is the operator's: no fallback to an ephemeral port.
        _ if config.media_ports.is_some() => (config.media_listen.unwrap_or(listening), None),
        Some(listen) => (listen, None),
        None => (
            listening,
            (config.listen.port() == 0).then(|| SocketAddr::new(listening.ip(), 0)),
        ),
    };
    let announce = match config.media_announce {
        Some(ip) => ip,
        None => {
            let (ip, guessed) = MediaConfig::default_announce(listen.ip());
            if guessed {
                warn!(
                    announce = %ip,
                    "media listens on a wildcard address and announces {ip}: browsers on other \
                     hosts cannot reach it; set --media-announce to this host's public IP"
                );
            }
            ip
        }
    };
    let guests = SharedGuests::default();
    let signaling = Arc::new(HubSignaling {
        hub: hub.clone(),
        guests: guests.clone(),
        cluster: cluster.cloned(),
        webhooks,
    });
    let media = |listen| MediaConfig {
        listen,
        announce,
        limits: config.media_limits,
        socket_buffer: config.media_socket_buffer,
        workers: config.media_workers,
        ports: config.media_ports,
        room_spread: config.media_room_spread,
    };
    let sfu = match (Sfu::start(media(listen), signaling.clone()), fallback) {
        (Ok(sfu), _) => sfu,
        (Err(StartError::Bind(..)), Some(fallback)) => Sfu::start(media(fallback), signaling)?,
        (Err(error), _) => return Err(error),
    };
    let udp: Vec<String> = sfu.local_addrs().iter().map(ToString::to_string).collect();
    info!(udp = %udp.join(","), %announce, "media (SFU) listening");
    let follower = Arc::new(Follower {
        sfu: sfu.clone(),
        guests: guests.clone(),
    });
    hub.with(|hub| hub.add_listener(follower));
    if let Some(cluster) = cluster {
        cluster.set_media(Arc::new(Port {
            sfu: sfu.clone(),
            guests,
            cluster: cluster.clone(),
        }));
    }
    Ok(Some(sfu))
}
