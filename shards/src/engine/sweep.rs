//! The shard's periodic work (every [`SWEEP_EVERY`]): expired sessions end, delayed wills
//! are published, stuck clients are closed, drops are reported, dirty images written, the
//! memory rings released, the next replay pages asked for; and the node's metrics slot of
//! this shard brought up to date (every tick).
//!
//! Called by the node's tick loop on the shard's own thread.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::shard::{Gauges, Shard};
use crate::metrics::ShardMetrics;
use crate::net::{CloseCause, Conn};
use crate::route::Outgoing;

/// How often a shard checks for shutdown and publishes its metrics.
pub const TICK: Duration = Duration::from_millis(100);
/// How often a shard walks its sessions for expiry and delayed wills: the precision of
/// both (they are given in whole seconds).
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl Shard {
    /// Periodic work: expired sessions end, delayed wills are published.
    pub fn sweep(&self, now: Instant, out: &mut Outgoing) {
        let st = &mut *self.st.borrow_mut();
        let mut wills = Vec::new();
        let mut ended = Vec::new();
        let stuck_after = self.cfg.limits.stuck_timeout;
        let wall = std::time::SystemTime::now();
        let mut gauges = Gauges::default();
        for (slot, s) in st.slots.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            self.report_drops(s, now);
            gauges.subscriptions += s.subs.len() as u64;
            gauges.queued += (s.queue.len() + s.parked.len()) as u64;
            if let Some(c) = &s.conn {
                gauges.online += 1;
                c.trim_idle();
                if s.stuck(now, stuck_after) {
                    // Messages in flight and not one acknowledged for the stuck timeout.
                    c.close(CloseCause::Stuck);
                }
                if s.principal.as_ref().and_then(|p| p.expires).is_some_and(|t| t <= wall) {
                    let bye = Conn::disconnect(proto::reason::MAXIMUM_CONNECT_TIME);
                    c.close_with(CloseCause::Expired, (c.protocol == proto::Protocol::V5).then_some(&bye));
                }
                continue;
            }
            gauges.offline += 1;
            if s.will.as_ref().is_some_and(|w| w.at <= now) {
                wills.extend(s.will.take().map(|w| w.msg));
                s.will_image = None;
                s.dirty = true;
            }
            if s.expires_at.is_some_and(|t| t <= now) {
                ended.push(slot as u32);
            }
        }
        st.gauges = gauges;
        for slot in ended {
            if let Some(s) = self.end_session(st, slot, out) {
                tracing::info!(client_id = %crate::show::short(&s.client_id), "session expired");
                wills.extend(s.will.map(|w| w.msg));
            }
        }
        self.persist_dirty(st);
        st.store.release_rings();
        let evicted = st.store.evicted();
        self.node.evicted.fetch_add(evicted - st.evicted_reported, Ordering::Relaxed);
        st.evicted_reported = evicted;
        let (now_s, before) = (st.stats, st.reported);
        let d = &self.node.drops;
        d.stuck.fetch_add(now_s.stuck - before.stuck, Ordering::Relaxed);
        d.slow_consumers.fetch_add(now_s.slow_consumers - before.slow_consumers, Ordering::Relaxed);
        d.held_back.fetch_add(now_s.held_back - before.held_back, Ordering::Relaxed);
        d.shared.fetch_add(now_s.shared_dropped - before.shared_dropped, Ordering::Relaxed);
        st.reported = now_s;
        // Next pages of replays, for online sessions that sent the previous page out.
        let max_queued = self.cfg.limits.max_queued_messages;
        let more: Vec<u32> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| s.wants_replay_page(max_queued)).map(|_| i as u32))
            .collect();
        for slot in more {
            self.request_replay(st, slot, out);
        }
        for w in wills {
            self.route(st, w, None, out);
        }
    }

    /// Publishes this shard's metrics into its slot of the node (every tick).
    pub fn publish_metrics(&self) {
        let Some(slot) = self.node.metrics.get(self.router.id) else { return };
        let st = self.st.borrow();
        let (c, o, g, ss, store) = (&self.counters, &self.outbox, &st.gauges, &st.stats, &st.store.stats);
        slot.store(ShardMetrics {
            connections: self.conns.get() as u64,
            connections_accepted: c.connections_accepted.get(),
            connections_refused: c.connections_refused.get(),
            tls_failures: c.tls_failures.get(),
            ws_failures: c.ws_failures.get(),
            proxy_failures: c.proxy_failures.get(),
            auth_failures: c.auth_failures.get(),
            acl_denied: c.acl_denied.get(),
            sessions_online: g.online,
            sessions_offline: g.offline,
            subscriptions: g.subscriptions,
            retained: st.retained.len() as u64,
            queued: g.queued,
            received_qos0: c.received[0].get(),
            received_qos1: c.received[1].get(),
            received_qos2: c.received[2].get(),
            received_bytes: c.received_bytes.get(),
            sent_qos0: o.sent[0].get(),
            sent_qos1: o.sent[1].get(),
            sent_qos2: o.sent[2].get(),
            sent_bytes: o.written.get(),
            published: ss.published,
            delivered: ss.delivered,
            appends: store.appended,
            commits: store.commits,
            fsyncs: store.fsyncs,
            fsync_us: store.fsync_us,
            write_errors: store.write_errors,
            sync_errors: store.sync_errors,
            evicted: st.store.evicted(),
            protocol_errors: ss.protocol_errors,
        });
    }
}
