//! The node's memory of failed connections by address: repeated authentication failures
//! from one address wait before they are judged again (a bounded delay before the
//! CONNACK), and a transport failure is logged once per address.
//!
//! One per node (in `NodeShared`), behind a lock taken only at CONNECT and at a failure,
//! never on the message path; the front's handshake uses it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered; past it, the stale ones go (and, if none is stale, all).
const REMEMBERED: usize = 4096;
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Failures let through before the delay starts.
const FREE_FAILURES: u32 = 2;
/// The first delay, doubled with each further failure, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Slow checks (argon2) at once per shard; the rest wait their turn.
pub const SLOW_AT_ONCE: usize = 4;

/// What the node remembers of failing addresses.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    logged: Mutex<HashMap<IpAddr, Instant>>,
}

fn prune<V>(map: &mut HashMap<IpAddr, V>, at: impl Fn(&V) -> Instant, now: Instant) {
    if map.len() >= REMEMBERED {
        map.retain(|_, v| now.duration_since(at(v)) < FORGET_AFTER);
        if map.len() >= REMEMBERED {
            map.clear();
        }
    }
}

impl Throttle {
    /// How long a CONNECT from `ip` waits before it is judged.
    pub fn delay(&self, ip: IpAddr, now: Instant) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some((n, last)) = failures.get(&ip) else { return Duration::ZERO };
        if now.duration_since(*last) >= FORGET_AFTER || *n <= FREE_FAILURES {
            return Duration::ZERO;
        }
        let doublings = (*n - FREE_FAILURES - 1).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
    }

    /// Remembers a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut failures, |v| v.1, now);
        let e = failures.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= FORGET_AFTER {
            e.0 = 0;
        }
        *e = (e.0 + 1, now);
    }

    /// Forgets `ip`'s failures (it authenticated).
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
    }

    /// True the first time `ip` fails (again after a minute): log it then, not each time.
    pub fn first_log(&self, ip: IpAddr, now: Instant) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut logged, |v| *v, now);
        match logged.get(&ip) {
            Some(at) if now.duration_since(*at) < FORGET_AFTER => false,
            _ => {
                logged.insert(ip, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_with_failures_and_stays_bounded() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert_eq!(t.delay(ip, now), Duration::ZERO);
        let delays: Vec<Duration> = (0..12)
            .map(|_| {
                t.failed(ip, now);
                t.delay(ip, now)
            })
            .collect();
        assert_eq!(delays[..4], [Duration::ZERO, Duration::ZERO, FIRST_DELAY, FIRST_DELAY * 2]);
        assert_eq!(delays[11], MAX_DELAY);
        assert_eq!(t.delay(ip, now + FORGET_AFTER), Duration::ZERO);
        t.succeeded(ip);
        assert_eq!(t.delay(ip, now), Duration::ZERO);
        assert!(t.first_log(ip, now) && !t.first_log(ip, now));
    }
}
