//! Typed ids of the router's objects. On the wire each is its prefix and a number (`t12`,
//! `p13`, `c14`); a worker hands out numbers that no other worker does, so an id names one
//! object whichever worker made it.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

macro_rules! id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ": `", $prefix, "<n>` on the wire.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) struct $name(u64);

        impl $name {
            /// The id written `text` on the wire, or `None` without the prefix or number.
            pub(crate) fn parse(text: &str) -> Option<$name> {
                text.strip_prefix($prefix)?.parse().ok().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<Ids> for $name {
            fn from(ids: Ids) -> $name {
                $name(ids.next)
            }
        }
    };
}

id!(TransportId, "t", "transport");
id!(ProducerId, "p", "producer");
id!(ConsumerId, "c", "consumer");

/// A map keyed by one of these ids. Its hash is one multiplication: the ids are numbers the
/// server hands out, never chosen by a client, so SipHash's defence against chosen keys buys
/// nothing here, and the forwarding path looks a consumer and its transport up per packet.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: Fibonacci hashing of the id's number, which spreads consecutive
/// numbers over the whole word (the table takes its bits from the top).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }
}

/// A worker's id numbers: they go up by the number of workers, each worker starting at its
/// own index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    next: u64,
    step: u64,
}

impl Ids {
    /// The numbers of worker `index` of `count`.
    pub(crate) fn new(index: u64, count: u64) -> Ids {
        Ids {
            next: index + 1,
            step: count.max(1),
        }
    }

    /// The next id, of whichever kind.
    pub(crate) fn take<T: From<Ids>>(&mut self) -> T {
        let id = T::from(*self);
        self.next += self.step;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_need_their_prefix() {
        assert_eq!(TransportId::parse("t12"), Some(TransportId(12)));
        assert_eq!(TransportId::parse("p12"), None);
        assert_eq!(TransportId::parse("t"), None);
        assert_eq!(TransportId::parse("t-1"), None);
        assert_eq!(ProducerId(7).to_string(), "p7");
    }

    #[test]
    fn consecutive_ids_hash_apart() {
        let hash = |n: u64| {
            let mut hasher = IdHasher::default();
            std::hash::Hash::hash(&TransportId(n), &mut hasher);
            hasher.finish()
        };
        // The top 7 bits (what a hash table groups by) differ across a run of ids.
        let tops: std::collections::HashSet<u64> = (1..=64).map(|n| hash(n) >> 57).collect();
        assert!(tops.len() > 32, "{tops:?}");
        let mut map: IdMap<TransportId, u64> = IdMap::default();
        map.extend((1..=1000).map(|n| (TransportId(n), n)));
        assert_eq!(map[&TransportId(777)], 777);
    }

    #[test]
    fn workers_never_hand_out_the_same_number() {
        let (mut first, mut second) = (Ids::new(0, 2), Ids::new(1, 2));
        let a: Vec<TransportId> = (0..3).map(|_| first.take()).collect();
        let b: Vec<ConsumerId> = (0..3).map(|_| second.take()).collect();
        assert_eq!(a, [TransportId(1), TransportId(3), TransportId(5)]);
        assert_eq!(b, [ConsumerId(2), ConsumerId(4), ConsumerId(6)]);
    }
}
