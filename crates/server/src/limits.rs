//! Per-server and per-connection limits: connection counts (total and per client IP) and
//! the message-rate token bucket. Counting only; what to do when a limit is hit is decided
//! by the caller (HTTP 503/429 before an upgrade, `rate_limited` or close 1008 after).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::{Duration, Instant};

/// Open-connection counts, checked before each upgrade.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Which connection limit refused a new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Total,
    PerIp,
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
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

    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Full::Total);
        }
        let count = per_ip.entry(ip).or_default();
        if *count >= self.max_per_ip {
            return Err(Full::PerIp);
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            limits: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
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
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
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
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = Ipv4Addr::new(127, 0, 0, 1).into();
        let b: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
        let first = limits.acquire(a).unwrap();
        let _second = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).unwrap_err(), Full::PerIp);
        let _third = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).unwrap_err(), Full::Total);
        drop(first);
        assert!(limits.acquire(a).is_ok());
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
