//! The media worker: a thread that drives one [`Router`] with one UDP socket and a clock.
//! Signaling reaches it through the bounded queue, datagrams through the socket, each
//! `Rtc`'s deadline through the router's timer. The router queues what it sends; the worker
//! writes the queue after each event, many datagrams per system call. Nothing here blocks: a
//! datagram that cannot be sent is dropped and counted.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::batch::{Receiver, Sender};
use crate::router::{Router, HOUSEKEEPING};
use crate::{Input, MediaMetrics, Overflow};

/// Datagrams read per wake-up before timers and the queue get a turn.
const DATAGRAM_BATCH: usize = 64;

pub(crate) struct Worker {
    socket: std::net::UdpSocket,
    inbox: mpsc::Receiver<Input>,
    overflow: Arc<Overflow>,
    router: Router,
    metrics: MediaMetrics,
}

impl Worker {
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        inbox: mpsc::Receiver<Input>,
        overflow: Arc<Overflow>,
        router: Router,
        metrics: MediaMetrics,
    ) -> Worker {
        Worker {
            socket,
            inbox,
            overflow,
            router,
            metrics,
        }
    }

    /// The thread's body: a current-thread runtime for the socket and the timers.
    pub(crate) fn run(self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build();
        match runtime {
            Ok(runtime) => runtime.block_on(self.serve()),
            Err(error) => tracing::error!(%error, "media worker cannot start its runtime"),
        }
    }

    async fn serve(self) {
        let Worker {
            socket,
            mut inbox,
            overflow,
            mut router,
            metrics,
        } = self;
        let Ok(socket) = UdpSocket::from_std(socket) else {
            tracing::error!("media worker cannot register its socket");
            return;
        };
        let mut receiver = Receiver::default();
        let mut sender = Sender::new(metrics);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            let next = router
                .next_timeout()
                .unwrap_or_else(|| Instant::now() + HOUSEKEEPING);
            tokio::select! {
                biased;
                input = inbox.recv() => match input {
                    Some(input) => router.input(Instant::now(), input),
                    None => break,
                },
                () = overflow.wake.notified() => {}
                readable = socket.readable() => {
                    if readable.is_ok() {
                        let mut left = DATAGRAM_BATCH;
                        while left > 0 {
                            let received = socket.try_io(Interest::READABLE, || receiver.receive(&socket));
                            let Ok(count) = received else { break };
                            left = left.saturating_sub(count.max(1));
                            router.datagrams(Instant::now(), receiver.datagrams());
                            sender.send(&socket, &mut router.outgoing);
                        }
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
                _ = housekeeping.tick() => router.housekeeping(Instant::now()),
            }
            for (peer, epoch) in overflow.take() {
                router.input(Instant::now(), Input::Left { peer, epoch });
            }
            router.timeouts(Instant::now());
            sender.send(&socket, &mut router.outgoing);
        }
        router.close_all(Instant::now());
        sender.send(&socket, &mut router.outgoing);
    }
}
