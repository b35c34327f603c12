//! Many datagrams per system call: `sendmmsg` (through rustix) for what the router queued,
//! `recvmmsg` (through nix) for what arrived. An SFU writes each packet it receives to every
//! consumer, so sends outnumber receives by the fan-out; both are batched, sends are where it
//! counts. The workspace forbids `unsafe`; both crates wrap the calls safely.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::io::AsRawFd;

use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

use crate::router::Datagram;
use crate::MediaMetrics;

/// Datagrams per system call, each way.
pub(crate) const BATCH: usize = 32;
/// The largest datagram read; a longer one is cut (no WebRTC datagram comes near it).
const DATAGRAM_MAX: usize = 2048;

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

/// Writes queued datagrams, [`BATCH`] per system call.
pub(crate) struct Sender {
    metrics: MediaMetrics,
    addresses: Vec<SocketAddrAny>,
}

impl Sender {
    pub(crate) fn new(metrics: MediaMetrics) -> Sender {
        Sender {
            metrics,
            addresses: Vec::with_capacity(BATCH),
        }
    }

    /// Sends every datagram in `outgoing` and empties it. One the kernel will not take (a
    /// full send buffer) is dropped and counted: media is loss-tolerant, and str0m
    /// retransmits what matters.
    pub(crate) fn send(&mut self, socket: &impl AsFd, outgoing: &mut Vec<Datagram>) {
        let mut start = 0;
        while start < outgoing.len() {
            let chunk = &outgoing[start..outgoing.len().min(start + BATCH)];
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
        outgoing.clear();
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
