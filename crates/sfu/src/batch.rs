//! Many datagrams per system call: `sendmmsg` (through rustix) for what the router queued,
//! `recvmmsg` (through nix) for what arrived. An SFU writes each packet it receives to every
//! consumer, so sends outnumber receives by the fan-out; both are batched, sends are where it
//! counts. Where the kernel has UDP segmentation offload, a run of same-size datagrams to one
//! address (a video frame's packets to one consumer) goes as one `sendmsg` with `UDP_SEGMENT`:
//! the kernel's UDP and IP path is then walked once per run, not once per packet. The
//! workspace forbids `unsafe`; both crates wrap the calls safely.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::io::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

use crate::router::Datagram;
use crate::MediaMetrics;

/// Datagrams per system call, each way.
pub(crate) const BATCH: usize = 32;
/// The largest datagram read; a longer one is cut (no WebRTC datagram comes near it).
const DATAGRAM_MAX: usize = 2048;
/// Most datagrams in one segmented send (older kernels take at most 64).
const SEGMENTS_MAX: usize = 64;
/// Most bytes in one segmented send (a UDP datagram's limit, with room for headers).
const SEGMENTED_BYTES_MAX: usize = 60_000;

/// How many datagrams from the first of `queue` can go as one segmented send: the same
/// destination, the first's size each (the last may be shorter, and ends the run), within
/// the kernel's limits. 1 when none can join it.
fn same_size_run(queue: &[Datagram]) -> usize {
    let Some(first) = queue.first() else {
        return 0;
    };
    let size = first.contents.len();
    let (mut run, mut bytes) = (1, size);
    for next in &queue[1..] {
        let len = next.contents.len();
        if next.to != first.to
            || len > size
            || len == 0
            || run == SEGMENTS_MAX
            || bytes + len > SEGMENTED_BYTES_MAX
        {
            break;
        }
        run += 1;
        bytes += len;
        if len < size {
            break;
        }
    }
    run
}

/// Reads up to [`BATCH`] datagrams per call into buffers it owns.
pub(crate) struct Receiver {
    buffer: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
    /// What the last call read: (its buffer's index, source, length).
    received: Vec<(usize, SocketAddr, usize)>,
}

impl Default for Receiver {
    fn default() -> Receiver {
        Receiver {
            buffer: vec![0; BATCH * DATAGRAM_MAX],
            headers: MultiHeaders::preallocate(BATCH, None),
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl Receiver {
    /// Reads what has arrived without waiting; returns how many datagrams, or `WouldBlock`.
    pub(crate) fn receive(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.received.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffer
            .chunks_mut(DATAGRAM_MAX)
            .map(|chunk| [IoSliceMut::new(chunk)])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for (index, message) in results.enumerate() {
            let source = message.address.as_ref().and_then(|address| {
                address
                    .as_sockaddr_in()
                    .map(|a| SocketAddr::from(*a))
                    .or_else(|| address.as_sockaddr_in6().map(|a| SocketAddr::from(*a)))
            });
            if let Some(source) = source {
                self.received
                    .push((index, source, message.bytes.min(DATAGRAM_MAX)));
            }
        }
        Ok(self.received.len())
    }

    /// The datagrams the last [`Receiver::receive`] read, with their sources.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.received.iter().map(|&(index, source, len)| {
            let start = index * DATAGRAM_MAX;
            (source, &self.buffer[start..start + len])
        })
    }
}

/// Writes queued datagrams, [`BATCH`] per system call, or a run of same-size ones to one
/// address in one segmented send.
pub(crate) struct Sender {
    metrics: MediaMetrics,
    addresses: Vec<SocketAddrAny>,
    /// Whether the socket takes segmented sends: asked at the first send.
    segments: Option<bool>,
}

impl Sender {
    pub(crate) fn new(metrics: MediaMetrics) -> Sender {
        Sender {
            metrics,
            addresses: Vec::with_capacity(BATCH),
            segments: None,
        }
    }

    /// Sends every datagram in `outgoing`, in order, and empties it. One the kernel will not
    /// take (a full send buffer) is dropped and counted: media is loss-tolerant, and str0m
    /// retransmits what matters.
    pub(crate) fn send(&mut self, socket: &(impl AsFd + AsRawFd), outgoing: &mut Vec<Datagram>) {
        let segments = *self.segments.get_or_insert_with(|| {
            // Setting the socket's default segment size (0: none) succeeds only where the
            // kernel has UDP segmentation offload (Linux 4.18 and later).
            setsockopt(socket, sockopt::UdpGsoSegment, &0).is_ok()
        });
        let mut unsent = 0;
        let mut at = 0;
        while at < outgoing.len() {
            let run = if segments {
                same_size_run(&outgoing[at..])
            } else {
                1
            };
            if run > 1 {
                self.send_each(socket, &outgoing[unsent..at]);
                self.send_segmented(socket, &outgoing[at..at + run]);
                unsent = at + run;
            }
            at += run;
        }
        self.send_each(socket, &outgoing[unsent..]);
        outgoing.clear();
    }

    /// A run of datagrams of one size (the last may be shorter) to one address, as one
    /// segmented send; all are dropped and counted if the kernel refuses it.
    fn send_segmented(&mut self, socket: &(impl AsFd + AsRawFd), run: &[Datagram]) {
        let Ok(size) = u16::try_from(run[0].contents.len()) else {
            return self.send_each(socket, run);
        };
        let slices: Vec<IoSlice<'_>> = run.iter().map(|d| IoSlice::new(&d.contents)).collect();
        let to = SockaddrStorage::from(run[0].to);
        let sent = sendmsg(
            socket.as_raw_fd(),
            &slices,
            &[ControlMessage::UdpGsoSegments(&size)],
            MsgFlags::MSG_DONTWAIT,
            Some(&to),
        );
        match sent {
            Ok(bytes) => {
                self.metrics.packets_out.inc_by(run.len() as u64);
                self.metrics.bytes_out.inc_by(bytes as u64);
            }
            Err(Errno::EAGAIN) => {
                self.metrics.dropped.inc_by(run.len() as u64);
            }
            Err(_) => {
                // Refused for another reason (a device without checksum offload, say): this
                // socket sends one datagram at a time from now on.
                self.segments = Some(false);
                self.send_each(socket, run);
            }
        }
    }

    /// Sends `datagrams` [`BATCH`] per `sendmmsg`.
    fn send_each(&mut self, socket: &impl AsFd, datagrams: &[Datagram]) {
        let mut start = 0;
        while start < datagrams.len() {
            let chunk = &datagrams[start..datagrams.len().min(start + BATCH)];
            match self.send_chunk(socket, chunk) {
                Ok((0, _)) | Err(_) => {
                    // The first datagram was refused: drop it, try the rest.
                    self.metrics.dropped.inc();
                    start += 1;
                }
                Ok((sent, bytes)) => {
                    self.metrics.packets_out.inc_by(sent as u64);
                    self.metrics.bytes_out.inc_by(bytes as u64);
                    start += sent;
                }
            }
        }
    }

    /// One `sendmmsg`: how many datagrams of `chunk` went, and their bytes.
    fn send_chunk(&mut self, socket: &impl AsFd, chunk: &[Datagram]) -> io::Result<(usize, usize)> {
        self.addresses.clear();
        self.addresses.extend(
            chunk
                .iter()
                .map(|datagram| SocketAddrAny::from(datagram.to)),
        );
        let slices: Vec<[IoSlice<'_>; 1]> = chunk
            .iter()
            .map(|datagram| [IoSlice::new(&datagram.contents)])
            .collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..chunk.len())
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut messages: Vec<MMsgHdr<'_>> = self
            .addresses
            .iter()
            .zip(&slices)
            .zip(controls.iter_mut())
            .map(|((address, slice), control)| MMsgHdr::new_with_addr(address, slice, control))
            .collect();
        let sent = sendmmsg(socket, &mut messages, SendFlags::DONTWAIT)?;
        let bytes = messages[..sent].iter().map(MMsgHdr::bytes_sent).sum();
        Ok((sent, bytes))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn datagram(to: SocketAddr, fill: u8, len: usize) -> Datagram {
        Datagram {
            to,
            contents: vec![fill; len],
        }
    }

    #[test]
    fn a_queue_longer_than_a_batch_arrives_whole_and_in_order() {
        let sender_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let receiver_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver_socket.set_nonblocking(true).unwrap();
        let to = receiver_socket.local_addr().unwrap();
        let metrics = MediaMetrics::default();
        let mut sender = Sender::new(metrics.clone());
        let count = BATCH * 2 + 5;
        let mut outgoing: Vec<Datagram> =
            (0..count).map(|i| datagram(to, i as u8, 100 + i)).collect();
        sender.send(&sender_socket, &mut outgoing);
        assert!(outgoing.is_empty());
        assert_eq!(metrics.packets_out.get(), count as u64);
        let mut receiver = Receiver::default();
        let mut seen = Vec::new();
        while let Ok(n) = receiver.receive(&receiver_socket) {
            assert!(n <= BATCH);
            for (source, data) in receiver.datagrams() {
                assert_eq!(source, sender_socket.local_addr().unwrap());
                seen.push((data[0], data.len()));
            }
        }
        let expected: Vec<(u8, usize)> = (0..count).map(|i| (i as u8, 100 + i)).collect();
        assert_eq!(seen, expected);
        assert_eq!(
            metrics.bytes_out.get(),
            expected.iter().map(|&(_, len)| len as u64).sum::<u64>()
        );
    }

    #[test]
    fn runs_of_one_size_to_one_address_are_found() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let queue = [
            datagram(a, 0, 100),
            datagram(a, 0, 100),
            datagram(a, 0, 60), // shorter: ends the run, in it
            datagram(a, 0, 100),
            datagram(b, 0, 100), // another address
            datagram(b, 0, 120), // longer: not in the run
        ];
        assert_eq!(same_size_run(&queue), 3);
        assert_eq!(same_size_run(&queue[3..]), 1);
        assert_eq!(same_size_run(&queue[4..]), 1);
        assert_eq!(same_size_run(&[]), 0);
        let many: Vec<Datagram> = (0..100).map(|_| datagram(a, 0, 1200)).collect();
        assert_eq!(same_size_run(&many), SEGMENTED_BYTES_MAX / 1200);
        let small: Vec<Datagram> = (0..100).map(|_| datagram(a, 0, 10)).collect();
        assert_eq!(same_size_run(&small), SEGMENTS_MAX);
    }

    /// A frame's packets to each of two receivers, interleaved with odd sizes: each receiver
    /// gets every datagram, whole, in order, however the sender grouped them.
    #[test]
    fn segmented_runs_arrive_as_the_datagrams_they_were() {
        let sender_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let receivers: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_nonblocking(true).unwrap();
                socket
            })
            .collect();
        let mut outgoing = Vec::new();
        let mut expected: Vec<Vec<(u8, usize)>> = vec![Vec::new(), Vec::new()];
        let mut fill = 0u8;
        for (index, receiver) in receivers.iter().enumerate() {
            let to = receiver.local_addr().unwrap();
            for len in [1100, 1100, 1100, 1100, 700, 90, 1100, 1100] {
                fill = fill.wrapping_add(1);
                outgoing.push(datagram(to, fill, len));
                expected[index].push((fill, len));
            }
        }
        let metrics = MediaMetrics::default();
        let mut sender = Sender::new(metrics.clone());
        let count = outgoing.len() as u64;
        sender.send(&sender_socket, &mut outgoing);
        assert_eq!(metrics.packets_out.get(), count);
        assert_eq!(metrics.dropped.get(), 0);
        // This machine's kernel (Linux 6) segments on loopback: the runs went segmented.
        assert_eq!(sender.segments, Some(true));
        for (receiver, expected) in receivers.iter().zip(&expected) {
            let mut seen = Vec::new();
            let mut buffer = [0u8; 2048];
            while let Ok((len, _)) = receiver.recv_from(&mut buffer) {
                assert!(buffer[..len].iter().all(|&b| b == buffer[0]));
                seen.push((buffer[0], len));
            }
            assert_eq!(&seen, expected);
        }
    }

    #[test]
    fn nothing_to_read_is_would_block_and_a_refused_datagram_is_counted() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = Receiver::default().receive(&socket).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        // An IPv6 destination from an IPv4 socket is refused by the kernel; the datagram
        // after it still goes.
        let receiver_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let metrics = MediaMetrics::default();
        let mut sender = Sender::new(metrics.clone());
        let mut outgoing = vec![
            datagram("[::1]:9".parse().unwrap(), 1, 10),
            datagram(receiver_socket.local_addr().unwrap(), 2, 10),
        ];
        sender.send(&socket, &mut outgoing);
        assert_eq!(metrics.dropped.get(), 1);
        assert_eq!(metrics.packets_out.get(), 1);
        let mut buffer = [0u8; 64];
        let (len, _) = receiver_socket.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..len], &[2; 10]);
    }
}
