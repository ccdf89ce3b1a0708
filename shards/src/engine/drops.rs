//! Messages given up, by reason: the node's counters ([`Drops`], read through
//! `Node::drops`) and the per-session report that feeds them.
//!
//! Sessions count what they give up in their own `SessionStats` on their shard; each
//! sweep, [`Shard::report_drops`] adds what changed to the node's atomic counters (written
//! once per sweep per shard, never per message) and logs it at most once per
//! [`DROP_LOG_EVERY`] per session.
//!
//! Engine layer; called by the sweep and the session end; `Node::drops` reads the counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::session::{Session, SessionStats};
use super::shard::{NodeShared, Shard};
use crate::metrics::Drops;

impl NodeShared {
    /// The counters now.
    pub fn drops(&self) -> Drops {
        let d = &self.drops;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Drops {
            evicted: r(&self.evicted),
            lost: r(&self.lost),
            queue_cap: r(&d.queue_cap),
            unstored: r(&d.unstored),
            outbox_full: r(&d.outbox_full),
            expired: r(&d.expired),
            oversize: r(&d.oversize),
            stuck: r(&d.stuck),
            slow_consumers: r(&d.slow_consumers),
            held_back: r(&d.held_back),
            shared: r(&d.shared),
        }
    }

    /// Adds what a session gave up since it was last reported.
    fn add_session_drops(&self, now: &SessionStats, before: &SessionStats) {
        let d = &self.drops;
        let add = |a: &AtomicU64, n: u64, b: u64| {
            if n > b {
                a.fetch_add(n - b, Ordering::Relaxed);
            }
        };
        add(&d.queue_cap, now.dropped, before.dropped);
        add(&d.unstored, now.unstored, before.unstored);
        add(&d.outbox_full, now.outbox_full, before.outbox_full);
        add(&d.expired, now.expired, before.expired);
        add(&d.oversize, now.oversize, before.oversize);
        add(&self.lost, now.lost, before.lost);
    }
}

/// How often one session's drops are logged at most.
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

impl Shard {
    /// Adds what `s` gave up since the last report to the node's counters, and logs it,
    /// once per [`DROP_LOG_EVERY`] at most (never per message).
    pub fn report_drops(&self, s: &mut Session, now: Instant) {
        let unchanged = s.reports.as_ref().map_or(SessionStats::default(), |r| r.reported) == s.stats;
        if unchanged {
            return;
        }
        let stats = s.stats;
        let r = s.reports.get_or_insert_with(Default::default);
        self.node.add_session_drops(&stats, &r.reported);
        r.reported = stats;
        if r.logged_at.is_some_and(|t| now.saturating_duration_since(t) < DROP_LOG_EVERY) {
            // Counted now, logged with the next interval's line.
            return;
        }
        let (n, b) = (stats, r.logged);
        if n.dropped + n.unstored + n.outbox_full + n.lost > b.dropped + b.unstored + b.outbox_full + b.lost {
            tracing::info!(
                client_id = %crate::show::short(&s.client_id),
                queue_cap = n.dropped - b.dropped,
                unstored = n.unstored - b.unstored,
                outbox_full = n.outbox_full - b.outbox_full,
                lost = n.lost - b.lost,
                "messages given up for this session"
            );
        }
        r.logged_at = Some(now);
        r.logged = stats;
    }
}
