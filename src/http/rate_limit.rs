//! `--limit-rate`: requests per client address, refused with 429 before the app (nginx's
//! `limit_req` with `burst` and `nodelay`). Runs on the tokio threads: no Python, no log line.
//!
//! The algorithm is GCRA (the token bucket as one timestamp per client, what nginx and the
//! `governor` crate use): each client's entry is the time its bucket is full again (its
//! "theoretical arrival time", TAT). A request at `now` passes if `TAT - now` leaves room for it
//! in the burst, and then moves TAT one interval (period / N) later; a refused request changes
//! nothing, so a client flooding at any speed still gets N per period through.
//!
//! Hand-written rather than `governor`, because the table is what matters here and governor's keyed
//! stores (a DashMap or a locked HashMap) take every new key without a bound: `retain_recent` drops
//! only keys whose bucket is full again, so within one refill period (minutes at `N/m`) a flood of
//! spoofed addresses grows them without limit. Here each worker's table holds at most
//! `--limit-rate-keys` clients (~40 bytes each), in shards, each behind its own mutex (held for a
//! hash lookup). A shard that is full first forgets the clients whose bucket is full again (they
//! are the same as unknown ones), then those nearest to it (the smallest TAT: the least
//! information lost, and an abusive client, whose TAT is far ahead, is the last to go). Forgetting
//! a client only ever gives it a fresh bucket, so a flood can never get a real client refused. A
//! shard also drops its idle clients, and gives the memory back, at most every `SWEEP_EVERY` when
//! a request touches it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::request::Peer;
use crate::config::RateLimitSettings;

/// How often a shard drops the clients whose bucket is full again.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Shards of the table: fewer threads wait on one lock, and a sweep holds only one shard.
const MAX_SHARDS: usize = 16;
/// Below this many keys per shard, fewer shards (so a small cap is exact).
const MIN_SHARD_KEYS: usize = 1024;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A client as the limit sees it: an IPv4 address, or the /64 network of an IPv6 address (a
/// single host or home usually gets a whole /64, and can pick any of its 2^64 addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    V4(u32),
    V6Net(u64),
}

impl Client {
    /// The client behind a request's address, after proxy headers and the PROXY protocol. A Unix
    /// socket peer with no forwarded address has none: it is the proxy itself, and limiting it
    /// would limit every client behind it together, so it is not limited.
    pub fn of(peer: &Peer) -> Option<Self> {
        match peer {
            Peer::Tcp(a) => Some(Self::from_ip(a.ip())),
            Peer::Unix => None,
        }
    }

    pub fn from_ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6Net((u128::from(v6) >> 64) as u64),
        }
    }
}

/// A refused request: the client may try again in `retry_after` whole seconds (rounded up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: u64,
}

/// One worker's limiter: its settings in nanoseconds, and the table of clients.
pub struct RateLimiter {
    /// Time between two requests at the sustained rate (period / N), at least 1 ns.
    interval: u64,
    /// How far ahead of now a TAT may be and still take a request: (burst - 1) intervals.
    tolerance: u64,
    paths: Vec<String>,
    shards: Box<[Mutex<Shard>]>,
    keys_per_shard: usize,
    hasher: RandomState,
    /// Times are nanoseconds since this instant.
    origin: Instant,
}

struct Shard {
    tats: HashMap<Client, u64>,
    swept: u64,
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let period = u64::try_from(settings.period.as_nanos()).unwrap_or(u64::MAX);
        let interval = (period / settings.requests.max(1)).max(1);
        let max_keys = settings.max_keys.max(1);
        let shards = (max_keys / MIN_SHARD_KEYS).clamp(1, MAX_SHARDS);
        Self {
            interval,
            tolerance: settings.burst.max(1).saturating_sub(1).saturating_mul(interval),
            paths: settings.paths.clone(),
            shards: (0..shards).map(|_| Mutex::new(Shard { tats: HashMap::new(), swept: 0 })).collect(),
            keys_per_shard: max_keys / shards,
            hasher: RandomState::new(),
            origin: Instant::now(),
        }
    }

    /// The request's verdict now: None if it may go on (not limited, or within the limit).
    pub fn check_request(&self, peer: &Peer, path: &str) -> Option<Limited> {
        if !self.applies_to(path) {
            return None;
        }
        self.check(Client::of(peer)?, Instant::now()).err()
    }

    /// `--limit-rate-path`: whether `path` counts. Compared after percent-decoding, as the app
    /// routes it (`/%61pi/` is `/api/`); no prefix given: every path counts.
    pub fn applies_to(&self, path: &str) -> bool {
        self.paths.is_empty()
            || self.paths.iter().any(|prefix| {
                let mut decoded = percent_encoding::percent_decode_str(path);
                prefix.bytes().all(|b| decoded.next() == Some(b))
            })
    }

    /// Takes one request from `client`'s bucket at `now`, or says how long until there is room.
    pub fn check(&self, client: Client, now: Instant) -> Result<(), Limited> {
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        let index = (self.hasher.hash_one(client) as usize) % self.shards.len();
        let Some(shard) = self.shards.get(index) else {
            return Ok(()); // unreachable: there is at least one shard
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_sub(shard.swept) >= SWEEP_EVERY.as_nanos() as u64 {
            shard.sweep(now);
        }
        let known = shard.tats.get(&client).copied();
        let tat = known.unwrap_or(0).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return Err(Limited { retry_after: wait.div_ceil(NANOS_PER_SEC).max(1) });
        }
        if known.is_none() && shard.tats.len() >= self.keys_per_shard {
            shard.make_room(now, self.keys_per_shard);
        }
        shard.tats.insert(client, tat.saturating_add(self.interval));
        Ok(())
    }

    /// Clients tracked now, in every shard (at most `--limit-rate-keys`).
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).tats.len()).sum()
    }
}

impl Shard {
    /// Drops the clients whose bucket is full again, and returns memory a flood left behind.
    fn sweep(&mut self, now: u64) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.capacity() > 64 && self.tats.len() < self.tats.capacity() / 4 {
            self.tats.shrink_to(self.tats.len() * 2);
        }
        self.swept = now;
    }

    /// Full: keeps at most 7/8 of `cap`, so the next sweep is `cap / 8` new clients away (the
    /// O(n) pass costs a few operations per new client). Idle clients go first, then the ones
    /// with the smallest TAT.
    fn make_room(&mut self, now: u64, cap: usize) {
        self.sweep(now);
        let keep = cap.saturating_sub((cap / 8).max(1));
        let excess = self.tats.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        let mut tats: Vec<u64> = self.tats.values().copied().collect();
        if excess > tats.len() {
            return; // unreachable: excess <= len
        }
        let (_, cut, _) = tats.select_nth_unstable(excess - 1);
        let cut = *cut;
        self.tats.retain(|_, tat| *tat > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u64, period: Duration, burst: u64, max_keys: usize) -> RateLimiter {
        RateLimiter::new(&RateLimitSettings { requests, period, burst, paths: Vec::new(), max_keys })
    }

    fn ip(s: &str) -> Client {
        Client::from_ip(s.parse().unwrap())
    }

    #[test]
    fn burst_then_one_per_interval() {
        let l = limiter(10, Duration::from_secs(1), 3, 100);
        let t0 = l.origin + Duration::from_secs(1);
        let c = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.check(c, t0), Ok(()));
        }
        assert_eq!(l.check(c, t0), Err(Limited { retry_after: 1 }));
        // One interval (100 ms) later one more passes, and the refusals in between changed nothing.
        assert_eq!(l.check(c, t0 + Duration::from_millis(99)), Err(Limited { retry_after: 1 }));
        assert_eq!(l.check(c, t0 + Duration::from_millis(100)), Ok(()));
        assert!(l.check(c, t0 + Duration::from_millis(100)).is_err());
        // After a full refill, the whole burst again.
        let later = t0 + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(l.check(c, later), Ok(()));
        }
        assert!(l.check(c, later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let l = limiter(1, Duration::from_secs(60), 1, 100);
        let t0 = l.origin;
        let c = ip("192.0.2.1");
        assert_eq!(l.check(c, t0), Ok(()));
        assert_eq!(l.check(c, t0), Err(Limited { retry_after: 60 }));
        assert_eq!(l.check(c, t0 + Duration::from_millis(59_001)), Err(Limited { retry_after: 1 }));
        assert_eq!(l.check(c, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn ipv6_per_64_ipv4_per_address() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(Client::of(&Peer::Unix), None);
    }

    #[test]
    fn prefixes_match_the_decoded_path() {
        let settings = RateLimitSettings {
            requests: 1,
            period: Duration::from_secs(1),
            burst: 1,
            paths: vec!["/api/".into(), "/login".into()],
            max_keys: 10,
        };
        let l = RateLimiter::new(&settings);
        for yes in ["/api/", "/api/x", "/%61pi/x", "/login", "/login/", "/loginx"] {
            assert!(l.applies_to(yes), "{yes}");
        }
        for no in ["/", "/ap", "/api", "/static/api/", "/%zz", ""] {
            assert!(!l.applies_to(no), "{no}");
        }
        assert!(limiter(1, Duration::from_secs(1), 1, 10).applies_to("/anything"));
    }

    #[test]
    fn the_table_stays_under_its_cap_in_a_spoofed_flood() {
        let cap = 100_000;
        let l = limiter(1, Duration::from_secs(1), 10, cap);
        let t0 = l.origin;
        let heavy = ip("198.51.100.1");
        for _ in 0..10 {
            l.check(heavy, t0).unwrap();
        }
        for i in 0..200_000u32 {
            let _ = l.check(Client::V4(0x0a00_0000 + i), t0 + Duration::from_micros(u64::from(i)));
            assert!(i % 1000 != 0 || l.tracked() <= cap, "{} clients tracked", l.tracked());
        }
        assert!(l.tracked() <= cap);
        // The client that used its burst has the largest TAT: it was kept, and is still limited.
        assert!(l.check(heavy, t0 + Duration::from_millis(500)).is_err());
        // Idle clients are swept once their buckets are full again, shard by shard as requests
        // touch them (a thousand clients touch all sixteen).
        for i in 0..1000 {
            assert_eq!(l.check(Client::V4(i), t0 + Duration::from_secs(60)), Ok(()));
        }
        assert!(l.tracked() <= 1000, "{}", l.tracked());
    }

    #[test]
    fn a_tiny_cap_is_exact() {
        let l = limiter(1, Duration::from_secs(3600), 1, 1);
        for i in 0..100 {
            assert_eq!(l.check(Client::V4(i), l.origin), Ok(()));
            assert_eq!(l.tracked(), 1);
        }
    }

    #[test]
    fn extreme_settings_do_not_overflow() {
        let l = limiter(u64::MAX, Duration::from_secs(60), u64::MAX, usize::MAX);
        assert_eq!(l.check(ip("192.0.2.1"), l.origin), Ok(()));
        let l = limiter(1, Duration::MAX, 1, 1);
        assert_eq!(l.check(ip("192.0.2.1"), l.origin + Duration::from_secs(1)), Ok(()));
        assert!(l.check(ip("192.0.2.1"), l.origin + Duration::from_secs(1)).is_err());
    }
}
