//! Talking to systemd: readiness (`Type=notify`) and reload notices, as datagrams on
//! `$NOTIFY_SOCKET` (sd_notify(3)'s protocol is one text datagram per notice, so std's
//! `UnixDatagram` suffices and no crate or unsafe code is needed). Outside systemd, with no
//! `NOTIFY_SOCKET`, every notice is a no-op.

use std::os::unix::net::UnixDatagram;

/// The listener is bound: systemd may start what depends on us (`READY=1`).
pub(crate) fn ready() {
    notify("READY=1\nSTATUS=listening");
}

/// A reload (SIGHUP) has begun.
pub(crate) fn reloading() {
    notify("RELOADING=1\nSTATUS=reloading");
}

/// A reload is over.
pub(crate) fn reloaded() {
    notify("READY=1\nSTATUS=listening");
}

/// Shutdown has begun: systemd shows it instead of waiting silently.
pub(crate) fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}

/// Sends `state` to `$NOTIFY_SOCKET`. Failures are logged, never fatal: the service runs
/// the same, systemd's start timeout reports a readiness that never came.
fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        // An abstract socket (Linux) is written `@name`.
        #[cfg(target_os = "linux")]
        if let Some(name) = path.as_encoded_bytes().strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            return socket.send_to_addr(state.as_bytes(), &address);
        }
        socket.send_to(state.as_bytes(), &path)
    });
    if let Err(error) = sent {
        tracing::warn!(%error, state, "cannot notify systemd");
    }
}
