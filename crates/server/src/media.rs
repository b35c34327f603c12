//! Where signaling meets the SFU: starting the media worker next to the listener, and the
//! [`Signaling`] it answers through (the hub, so its replies queue in order with everything
//! else a peer is told).

use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_core::{DialectKind, Event, MembershipListener, PeerKey, RoomId, SharedHub};
use switchboard_sfu::{MediaConfig, Sfu, Signaling, StartError};
use tracing::{info, warn};

use crate::Config;

struct HubSignaling(SharedHub);

/// The SFU follows conference members' rooms as the hub reports them: media belongs to one
/// membership, and closes with it.
pub(crate) struct Follower(pub(crate) Sfu);

impl MembershipListener for Follower {
    fn joined(&self, key: PeerKey, dialect: DialectKind, room: &RoomId, epoch: u32) {
        if dialect == DialectKind::Conference {
            self.0.joined(key, room.clone(), epoch);
        }
    }

    fn left(&self, key: PeerKey, dialect: DialectKind, epoch: u32) {
        if dialect == DialectKind::Conference {
            self.0.left(key, epoch);
        }
    }
}

impl Signaling for HubSignaling {
    fn tell(&self, peer: PeerKey, event: Event) {
        self.0.with(|hub| hub.reply(peer, event));
    }

    fn tell_room(&self, room: &RoomId, except: PeerKey, event: Event) {
        self.0.with(|hub| hub.tell_room(room, except, &event));
    }

    fn is_member(&self, peer: PeerKey, room: &RoomId) -> bool {
        self.0
            .with(|hub| hub.membership(peer).is_some_and(|(r, ..)| r == *room))
    }
}

/// Starts the SFU unless media is off. Its UDP port is the listener's port number unless
/// `--media-listen` says otherwise; when the listener's port was picked by the system (0)
/// and that number is taken for UDP, any free port will do.
pub(crate) fn start(
    config: &Config,
    listening: SocketAddr,
    hub: &SharedHub,
) -> Result<Option<Sfu>, StartError> {
    if !config.media {
        info!("media (SFU) is off");
        return Ok(None);
    }
    let (listen, fallback) = match config.media_listen {
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
    let signaling = Arc::new(HubSignaling(hub.clone()));
    let media = |listen| MediaConfig {
        listen,
        announce,
        limits: config.media_limits,
    };
    let sfu = match (Sfu::start(media(listen), signaling.clone()), fallback) {
        (Ok(sfu), _) => sfu,
        (Err(StartError::Bind(..)), Some(fallback)) => Sfu::start(media(fallback), signaling)?,
        (Err(error), _) => return Err(error),
    };
    info!(udp = %sfu.local_addr(), %announce, "media (SFU) listening");
    Ok(Some(sfu))
}
