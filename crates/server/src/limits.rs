//! Per-server, per-address and per-connection limits: connection counts (TCP connections
//! per client IP from accept, WebSockets in total), per-address request rates (upgrades,
//! HTTP requests) and the per-connection message-rate token bucket. Counting only; what to
//! do when a limit is hit is decided by the caller (close at accept, HTTP 503/429 before an
//! upgrade, `rate_limited` or close 1008 after).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::{Duration, Instant};

/// Open-connection counts: per client IP from the TCP accept, and WebSockets in total.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Which connection limit refused a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Total,
    PerIp,
}

/// One counted WebSocket; dropping it frees its place in the total.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<ConnectionLimits>,
}

/// One counted TCP connection from `ip`; dropping it frees the address's place.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A place among the server's WebSockets, taken at the upgrade.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Slot, Full> {
        let max = self.max_total;
        self.total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                (total < max).then_some(total + 1)
            })
            .map_err(|_| Full::Total)?;
        Ok(Slot {
            limits: Arc::clone(self),
        })
    }

    /// A place among `ip`'s open TCP connections, taken at accept.
    pub(crate) fn acquire_address(self: &Arc<Self>, ip: IpAddr) -> Result<AddressSlot, Full> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(ip).or_default();
        if *count >= self.max_per_ip {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            return Err(Full::PerIp);
        }
        *count += 1;
        Ok(AddressSlot {
            limits: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut per_ip = self
            .limits
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Addresses whose request rate is tracked at once. Past this, buckets that have refilled
/// (idle addresses) are forgotten; if every one is still draining, a new address goes
/// untracked (allowed) rather than refused, so many addresses cannot lock out everyone.
/// 65,536 buckets cost a few MiB.
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// A token bucket per client address, for requests that are cheap to make and dear to
/// serve (WebSocket upgrades, HTTP requests). IPv6 clients are keyed by their /64, the
/// block one host usually owns.
#[derive(Debug)]
pub(crate) struct AddressRate {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl AddressRate {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        AddressRate {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A bucket that refills `per_minute` tokens a minute (budgets for rare events, such as
    /// failed session resumes).
    pub(crate) fn per_minute(per_minute: u32, burst: u32) -> Self {
        AddressRate {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip`'s bucket has a token left, without taking it.
    pub(crate) fn has_token(&self, ip: IpAddr, now: Instant) -> bool {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets
            .get(&address_key(ip))
            .is_none_or(|bucket| self.refill(*bucket, now).tokens >= 1.0)
    }

    /// Takes one token from `ip`'s bucket; false when it is empty.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let key = address_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| self.refill(*bucket, now).tokens < self.burst);
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                return true;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        *bucket = self.refill(*bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + elapsed * self.per_second).min(self.burst),
            refilled: now,
        }
    }
}

/// The address a rate is kept for: IPv4 as is, IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
    }
}

/// A token bucket for one connection's frames, with a strike count for sustained abuse.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    strikes: u32,
    max_strikes: u32,
    strike_window: Instant,
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Refuse the frame with `rate_limited`.
    Refuse,
    /// Too many refusals within a second: close the socket (1008).
    Close,
}

/// Strikes are counted per window of this length.
const STRIKE_WINDOW: Duration = Duration::from_secs(1);

impl RateLimit {
    pub(crate) fn new(per_second: u32, burst: u32, max_strikes: u32, now: Instant) -> Self {
        RateLimit {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            refilled: now,
            strikes: 0,
            max_strikes,
            strike_window: now,
        }
    }

    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.strike_window) >= STRIKE_WINDOW {
            self.strike_window = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes > self.max_strikes {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn connection_slots_are_counted_and_freed() {
        let limits = ConnectionLimits::new(2, 2);
        let a: IpAddr = Ipv4Addr::new(127, 0, 0, 1).into();
        let b: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
        let first = limits.acquire_address(a).unwrap();
        let _second = limits.acquire_address(a).unwrap();
        assert_eq!(limits.acquire_address(a).unwrap_err(), Full::PerIp);
        let _other = limits.acquire_address(b).unwrap();
        drop(first);
        assert!(limits.acquire_address(a).is_ok());

        let socket = limits.acquire().unwrap();
        let _socket = limits.acquire().unwrap();
        assert_eq!(limits.acquire().unwrap_err(), Full::Total);
        drop(socket);
        assert!(limits.acquire().is_ok());
    }

    #[test]
    fn address_rates_are_kept_per_address_and_per_ipv6_block() {
        let start = Instant::now();
        let rate = AddressRate::new(10, 2);
        let a: IpAddr = Ipv4Addr::new(127, 0, 0, 1).into();
        let b: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
        assert!(rate.allow(a, start));
        assert!(rate.allow(a, start));
        assert!(!rate.allow(a, start));
        assert!(rate.allow(b, start), "another address has its own bucket");
        assert!(rate.allow(a, start + Duration::from_millis(100)));
        let host: IpAddr = "2001:db8::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert!(rate.allow(host, start));
        assert!(rate.allow(same_block, start));
        assert!(!rate.allow(host, start), "one /64 shares one bucket");
    }

    #[test]
    fn the_bucket_refills_and_closes_on_sustained_abuse() {
        let start = Instant::now();
        let mut rate = RateLimit::new(10, 2, 3, start);
        assert_eq!(rate.check(start), Verdict::Allow);
        assert_eq!(rate.check(start), Verdict::Allow);
        assert_eq!(rate.check(start), Verdict::Refuse);
        // 100 ms later one token is back.
        let later = start + Duration::from_millis(100);
        assert_eq!(rate.check(later), Verdict::Allow);
        assert_eq!(rate.check(later), Verdict::Refuse);
        assert_eq!(rate.check(later), Verdict::Refuse);
        assert_eq!(rate.check(later), Verdict::Close);
        // A new strike window forgives old strikes.
        let much_later = start + Duration::from_secs(5);
        assert_eq!(rate.check(much_later), Verdict::Allow);
    }
}
