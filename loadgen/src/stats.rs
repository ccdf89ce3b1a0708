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
    /// Connections that failed, with why.
    pub errors: Vec<String>,
    /// When the last connection of this worker was up (conn scenario), ns after base.
    pub last_connected_ns: u64,
    /// Connections established.
    pub connected: u64,
}

impl WorkerResult {
    /// An empty result.
    pub fn new() -> Self {
        WorkerResult {
            latency: histogram(),
            ack: histogram(),
            connect: histogram(),
            subs: Vec::new(),
            errors: Vec::new(),
            last_connected_ns: 0,
            connected: 0,
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
    }
}
