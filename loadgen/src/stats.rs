//! What a run measures: counters the progress line reads while the run goes, histograms
//! each worker keeps to itself and hands over at the end, and the per-publisher sequence
//! tracking that finds lost, duplicated and reordered messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Highest latency the histograms hold, in microseconds (one hour).
const MAX_US: u64 = 3_600_000_000;
/// Missing sequence numbers remembered per (subscriber, publisher) to tell a late message
/// from a duplicate; past it, late messages count as duplicates.
const MAX_MISSING: usize = 100_000;

/// A histogram of microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Run phases.
pub const CONNECTING: u8 = 0;
/// Publishers publish.
pub const RUNNING: u8 = 1;
/// Everyone disconnects.
pub const DONE: u8 = 2;

/// Counters of one worker thread, read by the progress reporter. On their own cache line
/// so two workers never share one.
#[repr(align(128))]
#[derive(Default)]
pub struct Counters {
    /// PUBLISH packets written.
    pub sent: AtomicU64,
    /// Deliveries those packets should cause (sent x matching subscribers).
    pub due: AtomicU64,
    /// PUBLISH packets received by subscribers.
    pub received: AtomicU64,
    /// Unique messages received (not duplicates).
    pub unique: AtomicU64,
    /// Acknowledgements received by publishers.
    pub acked: AtomicU64,
    /// Errors (connection lost, refused...).
    pub errors: AtomicU64,
    /// When a subscriber of this worker last received a new message, ns after `base`.
    pub last_unique_ns: AtomicU64,
}

/// State shared by the main thread and the workers.
pub struct Shared {
    /// Time zero of every timestamp in payloads.
    pub base: Instant,
    /// Phase (CONNECTING, RUNNING, DONE).
    pub phase: AtomicU8,
    /// Publishing starts, ns after `base`.
    pub go_ns: AtomicU64,
    /// Measurement starts (after warm-up), ns after `base`.
    pub measure_ns: AtomicU64,
    /// Publishing ends, ns after `base`.
    pub end_ns: AtomicU64,
    /// Clients connected (and subscribed).
    pub ready: AtomicUsize,
    /// Publishers finished.
    pub pubs_done: AtomicUsize,
    /// Messages each publisher sent (final once it is done).
    pub published: Vec<AtomicU64>,
    /// When the last publisher stopped publishing, ns after `base`.
    pub last_sent_ns: AtomicU64,
    /// Per-worker counters.
    pub counters: Vec<Counters>,
    /// Per-worker end-to-end latency histogram of the current progress interval.
    pub interval: Vec<Mutex<Histogram<u64>>>,
    /// First fatal error.
    pub fatal: Mutex<Option<String>>,
}

impl Shared {
    /// State for `workers` threads and `pubs` publishers.
    pub fn new(workers: usize, pubs: usize) -> Self {
        Shared {
            base: Instant::now(),
            phase: AtomicU8::new(CONNECTING),
            go_ns: AtomicU64::new(u64::MAX),
            measure_ns: AtomicU64::new(u64::MAX),
            end_ns: AtomicU64::new(u64::MAX),
            ready: AtomicUsize::new(0),
            pubs_done: AtomicUsize::new(0),
            published: (0..pubs).map(|_| AtomicU64::new(0)).collect(),
            last_sent_ns: AtomicU64::new(0),
            counters: (0..workers).map(|_| Counters::default()).collect(),
            interval: (0..workers).map(|_| Mutex::new(histogram())).collect(),
            fatal: Mutex::new(None),
        }
    }

    /// Nanoseconds since `base`.
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The current phase.
    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Deliveries due and not yet seen by a subscriber, over the whole run.
    pub fn outstanding(&self) -> u64 {
        let due: u64 = self.counters.iter().map(|c| c.due.load(Ordering::Relaxed)).sum();
        let seen: u64 = self.counters.iter().map(|c| c.unique.load(Ordering::Relaxed)).sum();
        due.saturating_sub(seen)
    }

    /// Records the first fatal error; the run stops.
    pub fn fail(&self, msg: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(msg);
        }
        self.phase.store(DONE, Ordering::Release);
    }
}

/// Order tracking of one publisher's messages at one subscriber.
#[derive(Debug, Default)]
struct Track {
    next: u64,
    missing: BTreeSet<u64>,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct SubStats {
    /// Subscriber index.
    pub index: u32,
    /// PUBLISH packets received.
    pub received: u64,
    /// Distinct messages.
    pub unique: u64,
    /// Messages received twice or more.
    pub duplicates: u64,
    /// Messages that arrived after a later one of the same publisher.
    pub reordered: u64,
    /// Messages not from this run (other payload format or publisher).
    pub foreign: u64,
    /// Distinct messages per publisher.
    pub per_pub: HashMap<u32, u64>,
    tracks: HashMap<u32, Track>,
}

impl SubStats {
    /// A fresh record for subscriber `index`.
    pub fn new(index: u32) -> Self {
        SubStats { index, ..Default::default() }
    }

    /// Accounts one message; returns true when it is new.
    pub fn see(&mut self, publisher: u32, seq: u64) -> bool {
        self.received += 1;
        let t = self.tracks.entry(publisher).or_default();
        let new = if seq == t.next {
            t.next += 1;
            true
        } else if seq > t.next {
            if t.missing.len() + (seq - t.next) as usize <= MAX_MISSING {
                t.missing.extend(t.next..seq);
            }
            t.next = seq + 1;
            true
        } else if t.missing.remove(&seq) {
            self.reordered += 1;
            true
        } else {
            false
        };
        if new {
            self.unique += 1;
            *self.per_pub.entry(publisher).or_default() += 1;
        } else {
            self.duplicates += 1;
        }
        new
    }

    /// True when message `seq` of `publisher` arrived. A gap too long to remember (past
    /// `MAX_MISSING`) reads as arrived, so a loss count built on it errs towards more loss.
    pub fn has(&self, publisher: u32, seq: u64) -> bool {
        self.tracks.get(&publisher).is_some_and(|t| seq < t.next && !t.missing.contains(&seq))
    }

    /// Distinct messages of `publisher` that arrived.
    pub fn distinct_of(&self, publisher: u32) -> u64 {
        self.per_pub.get(&publisher).copied().unwrap_or(0)
    }
}

/// What one publisher hands back at the end.
#[derive(Debug, Default)]
pub struct PubResult {
    /// Publisher index.
    pub index: u32,
    /// Messages sent.
    pub sent: u64,
    /// Its QoS 1/2 window: --inflight, or the broker's smaller Receive Maximum (0 at QoS 0).
    pub window: u16,
    /// Sequence numbers the broker never acknowledged (QoS 1 PUBACK, QoS 2 PUBREC): still
    /// in the window when the publisher stopped. Empty at QoS 0.
    pub unacked: Vec<u64>,
}

/// Deliveries lost although the broker had acknowledged the message to its publisher: for
/// every (subscriber, publisher) pair, the messages that did not arrive minus those that
/// were never acknowledged. With `shared`, the subscribers are one group that should see
/// each message once. `published` and `unacked` are indexed by publisher. Only meaningful
/// at QoS 1/2: at QoS 0 nothing is acknowledged.
pub fn acked_lost(subs: &[SubStats], feeds: &[Vec<u32>], shared: bool, published: &[u64], unacked: &[Vec<u64>]) -> u64 {
    let pending = |p: u32| unacked.get(p as usize).map(Vec::as_slice).unwrap_or(&[]);
    let sent = |p: u32| published.get(p as usize).copied().unwrap_or(0);
    if shared {
        let Some(feed) = feeds.first() else { return 0 };
        return feed
            .iter()
            .map(|&p| {
                let arrived: u64 = subs.iter().map(|s| s.distinct_of(p)).sum();
                let never_acked = pending(p).iter().filter(|&&q| !subs.iter().any(|s| s.has(p, q))).count();
                sent(p).saturating_sub(arrived).saturating_sub(never_acked as u64)
            })
            .sum();
    }
    subs.iter()
        .map(|s| {
            let feed = feeds.get(s.index as usize).map(Vec::as_slice).unwrap_or(&[]);
            feed.iter()
                .map(|&p| {
                    let never_acked = pending(p).iter().filter(|&&q| !s.has(p, q)).count();
                    sent(p).saturating_sub(s.distinct_of(p)).saturating_sub(never_acked as u64)
                })
                .sum::<u64>()
        })
        .sum()
}

/// What one worker hands back at the end.
pub struct WorkerResult {
    /// End-to-end latency (µs) of measured messages.
    pub latency: Histogram<u64>,
    /// Publish-to-ack latency (µs) of measured QoS 1/2 messages.
    pub ack: Histogram<u64>,
    /// CONNECT-to-CONNACK latency (µs).
    pub connect: Histogram<u64>,
    /// Subscribers' records.
    pub subs: Vec<SubStats>,
    /// Publishers' records.
    pub pubs: Vec<PubResult>,
    /// Connections that failed, with why.
    pub errors: Vec<String>,
    /// When the last connection of this worker was up (conn scenario), ns after base.
    pub last_connected_ns: u64,
    /// Connections established.
    pub connected: u64,
    /// New messages received in each whole second after the first scheduled publish.
    pub per_second: Vec<u64>,
    /// The longest latency (µs) of the messages due in each whole second, as `per_second`.
    pub worst_per_second: Vec<u64>,
    /// How late (µs) messages due in each whole second were sent, at most.
    pub lag_per_second: Vec<u64>,
}

impl WorkerResult {
    /// An empty result.
    pub fn new() -> Self {
        WorkerResult {
            latency: histogram(),
            ack: histogram(),
            connect: histogram(),
            subs: Vec::new(),
            pubs: Vec::new(),
            errors: Vec::new(),
            last_connected_ns: 0,
            connected: 0,
            per_second: Vec::new(),
            worst_per_second: Vec::new(),
            lag_per_second: Vec::new(),
        }
    }
}

impl Default for WorkerResult {
    fn default() -> Self {
        Self::new()
    }
}

/// Records a latency in microseconds, saturating at the histogram's top.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let us = (ns / 1000).clamp(1, MAX_US);
    let _ = h.record(us);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_tracking_tells_loss_reorder_and_duplicates_apart() {
        let mut s = SubStats::new(0);
        for seq in [0, 1, 3, 2, 2, 5, 6, 6] {
            s.see(7, seq);
        }
        assert_eq!(s.received, 8);
        assert_eq!(s.unique, 6, "0 1 2 3 5 6");
        assert_eq!(s.reordered, 1, "2 arrived after 3");
        assert_eq!(s.duplicates, 2, "2 and 6 again");
        assert_eq!(s.per_pub[&7], 6);
        assert!(s.has(7, 2) && s.has(7, 6) && !s.has(7, 4) && !s.has(7, 7) && !s.has(8, 0));
    }

    fn saw(index: u32, publisher: u32, seqs: impl IntoIterator<Item = u64>) -> SubStats {
        let mut s = SubStats::new(index);
        for q in seqs {
            s.see(publisher, q);
        }
        s
    }

    #[test]
    fn acked_loss_counts_only_acknowledged_messages_that_never_arrived() {
        // Publisher 0 sent 0..10; 8 and 9 were never acknowledged.
        let published = [10];
        let unacked = [vec![8, 9]];
        let feeds = [vec![0], vec![0]];
        // Everything but the unacknowledged tail arrived: nothing acknowledged is lost.
        let subs = [saw(0, 0, 0..8), saw(1, 0, 0..10)];
        assert_eq!(acked_lost(&subs, &feeds, false, &published, &unacked), 0);
        // Subscriber 1 misses 3 (acknowledged) and 9 (not): one acknowledged loss. Subscriber
        // 0 received 9 but not 8: the missing one was never acknowledged.
        let subs = [saw(0, 0, (0..8).chain([9])), saw(1, 0, (0..9).filter(|q| *q != 3))];
        assert_eq!(acked_lost(&subs, &feeds, false, &published, &unacked), 1);
        // A subscriber that received nothing lost every acknowledged message.
        let subs = [saw(0, 0, 0..10), SubStats::new(1)];
        assert_eq!(acked_lost(&subs, &feeds, false, &published, &unacked), 8);
    }

    #[test]
    fn acked_loss_of_a_shared_group_counts_each_message_once() {
        let published = [6, 4];
        let unacked = [vec![5], vec![]];
        let feeds = [vec![0, 1], vec![0, 1]];
        // The members split publisher 0's messages 0..5 and publisher 1's 0..4; 5 was never
        // acknowledged.
        let mut a = saw(0, 0, [0, 2, 4]);
        a.see(1, 0);
        a.see(1, 1);
        let mut b = saw(1, 0, [1, 3]);
        b.see(1, 2);
        b.see(1, 3);
        assert_eq!(acked_lost(&[a, b], &feeds, true, &published, &unacked), 0);
        // Publisher 1's message 2 went nowhere.
        let mut a = saw(0, 0, [0, 2, 4]);
        a.see(1, 0);
        a.see(1, 1);
        let mut b = saw(1, 0, [1, 3]);
        b.see(1, 3);
        assert_eq!(acked_lost(&[a, b], &feeds, true, &published, &unacked), 1);
    }
}
