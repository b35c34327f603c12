//! The media worker: a thread that drives one [`Router`] with one UDP socket and a clock.
//! Signaling reaches it through the bounded queue, datagrams through the socket, each
//! `Rtc`'s deadline through the router's timer. The router queues what it sends; the worker
//! writes the queue after each event, many datagrams per system call, and passes what it
//! tells other workers (a spread room's piped packets) to their queues. Nothing here blocks:
//! a datagram that cannot be sent, or a piped packet whose worker's queue is half full, is
//! dropped and counted.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::batch::{Receiver, Sender};
use crate::router::{Pipe, Router, HOUSEKEEPING};
use crate::{Input, MediaMetrics, Overflow};

/// Datagrams read per wake-up before timers and the queue get a turn.
const DATAGRAM_BATCH: usize = 64;
/// Inputs taken from the queue per wake-up (piped packets come many at a time).
const INPUT_BATCH: usize = 64;

pub(crate) struct Worker {
    socket: std::net::UdpSocket,
    inbox: mpsc::Receiver<Input>,
    overflow: Arc<Overflow>,
    router: Router,
    /// Every worker's queue, this one's included, by index.
    workers: Arc<[mpsc::Sender<Input>]>,
    metrics: MediaMetrics,
}

impl Worker {
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        inbox: mpsc::Receiver<Input>,
        overflow: Arc<Overflow>,
        router: Router,
        workers: Arc<[mpsc::Sender<Input>]>,
        metrics: MediaMetrics,
    ) -> Worker {
        Worker {
            socket,
            inbox,
            overflow,
            router,
            workers,
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
            workers,
            metrics,
        } = self;
        let Ok(socket) = UdpSocket::from_std(socket) else {
            tracing::error!("media worker cannot register its socket");
            return;
        };
        let mut receiver = Receiver::default();
        let mut sender = Sender::new(metrics.clone());
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            let next = router
                .next_timeout()
                .unwrap_or_else(|| Instant::now() + HOUSEKEEPING);
            tokio::select! {
                biased;
                input = inbox.recv() => match input {
                    Some(input) => {
                        router.input(Instant::now(), input);
                        for _ in 1..INPUT_BATCH {
                            let Ok(input) = inbox.try_recv() else { break };
                            router.input(Instant::now(), input);
                            sender.send(&socket, &mut router.outgoing);
                            pass_on(&mut router.piped, &workers, &metrics);
                        }
                    }
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
                            pass_on(&mut router.piped, &workers, &metrics);
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
            pass_on(&mut router.piped, &workers, &metrics);
        }
        router.close_all(Instant::now());
        sender.send(&socket, &mut router.outgoing);
    }
}

/// Puts what the router tells other workers on their queues. A packet goes only while the
/// queue is less than half full, so the rest stays free for requests and for the news that
/// keeps workers' views of a room in step (a producer opened, closed or paused), which is
/// dropped only when the queue is full.
fn pass_on(
    piped: &mut Vec<(usize, Pipe)>,
    workers: &[mpsc::Sender<Input>],
    metrics: &MediaMetrics,
) {
    for (to, pipe) in piped.drain(..) {
        let Some(queue) = workers.get(to) else {
            continue;
        };
        let packet = matches!(pipe, Pipe::Packet { .. });
        if packet && queue.capacity() < queue.max_capacity() / 2 {
            metrics.pipe_dropped.inc();
            continue;
        }
        match queue.try_send(Input::Pipe(pipe)) {
            Ok(()) => {
                if packet {
                    metrics.piped.inc();
                }
            }
            Err(_) => {
                metrics.pipe_dropped.inc();
                if !packet {
                    tracing::warn!(
                        worker = to,
                        "a media worker's queue is full: news of a producer was lost"
                    );
                }
            }
        }
    }
}
