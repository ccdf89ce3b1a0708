//! A session's positions in the logs: its cursors per partition (what the client has
//! acknowledged, for the image), the replay plan of what it parked or missed (asked of
//! the owners page by page), and going offline (queued messages parked, pins weakened).
//!
//! Part of [`super::Session`]; called by the engine's persistence and the front's close.

use std::sync::Arc;

use std::collections::VecDeque;

use super::{Inflight, Parked, PartCursor, Pin, Queued, Session, HOLD};
use crate::config::Engine;
use proto::QoS;

use crate::msg::ReplayPart;

/// Most matching records one replay answer carries, over all its partitions: as many as a
/// session holds as copies, and at most the `max_queued_messages` cap (0: none).
pub fn replay_page(max_queued: usize) -> usize {
    match max_queued {
        0 => HOLD,
        cap => cap.clamp(1, HOLD),
    }
}

impl Session {
    /// Starts cursors of partitions not yet tracked at the given next offsets (a new
    /// subscription: nothing older concerns it).
    pub fn start_cursors(&mut self, offsets: &[(u32, u64)]) {
        if !self.persist {
            return;
        }
        for &(p, next) in offsets {
            self.cursors.entry(p).or_insert(PartCursor { seen: next, ..Default::default() });
        }
        self.dirty = true;
    }

    /// Cursors as read back at start; the partitions are replayed when the client returns.
    pub fn restore_cursors(&mut self, cursors: &[(u32, u64, Vec<u64>)]) {
        let mut plan = Vec::with_capacity(cursors.len());
        for (p, seen, pending) in cursors {
            let c = PartCursor { seen: *seen, held: Some((*seen, pending.clone())), ..Default::default() };
            self.cursors.insert(*p, c);
            plan.push(ReplayPart {
                partition: *p,
                engine: Engine::Segment,
                from: Some(*seen),
                pending: pending.clone(),
            });
        }
        self.replay_plan = Some(plan);
    }

    /// Outbound QoS 2 exchanges in the release phase at the last stop: PUBREL is resent
    /// on reconnect, and their packet ids stay taken until PUBCOMP.
    pub fn restore_releasing(&mut self, ids: &[u16]) {
        for &id in ids {
            if self.inflight.insert(id, Inflight::Release).is_none() {
                self.inflight_order.push_back(id);
            }
        }
    }

    /// The replay to ask the owners for now: what was planned (restored cursors, later
    /// pages), else the next run of parked segment-log positions (at most [`HOLD`]; they
    /// go after what is still queued from earlier pages, ahead of anything live).
    pub fn take_replay(&mut self) -> Option<Vec<ReplayPart>> {
        if self.replay_plan.is_none() && self.replay_waiting == 0 {
            self.unpark_ring();
            let mut parts: Vec<ReplayPart> = Vec::new();
            while parts.iter().map(|p| p.pending.len()).sum::<usize>() < HOLD {
                let Some(Parked::Log(pos)) = self.parked.front() else { break };
                let pos = *pos;
                self.parked.pop_front();
                match parts.iter_mut().find(|p| p.partition == pos.partition && p.engine == pos.engine) {
                    Some(p) => p.pending.push(pos.offset),
                    None => parts.push(ReplayPart {
                        partition: pos.partition,
                        engine: pos.engine,
                        from: None,
                        pending: vec![pos.offset],
                    }),
                }
            }
            if !parts.is_empty() {
                // Parked messages are newer than everything queued: the answer goes behind
                // it (and ahead of anything queued meanwhile).
                self.replay_front = self.queue.len();
                self.replay_plan = Some(parts);
            }
        }
        self.replay_plan.take()
    }

    /// Moves parked memory-ring messages at the front of `parked` to the back of the queue
    /// (everything queued is older: a message is parked only behind a long queue or other
    /// parked ones), while the queue has room: no owner needs asking, the handle holds
    /// them. One the ring gave up meanwhile is counted as lost.
    pub(super) fn unpark_ring(&mut self) {
        while self.queue.len() < HOLD {
            let Some(Parked::Ring(pin, pos)) = self.parked.front() else { break };
            let (msg, pos) = (pin.get(), *pos);
            self.parked.pop_front();
            let Some(msg) = msg else {
                self.stats.lost += 1;
                continue;
            };
            let Some((qos, retain, sub_ids)) = self.matching(&msg) else { continue };
            if qos == QoS::AtMostOnce {
                continue;
            }
            self.queue.push_back(Queued { msg, qos, retain, sub_ids, pos: Some(pos), shared: None });
        }
    }

    /// The replay was asked of `owners` shards.
    pub fn replay_asked(&mut self, owners: usize) {
        self.replay_waiting += owners;
    }

    /// One owner answered the replay, leaving `rest` for a next page; once every page is
    /// in, the cursors may move on.
    pub fn replay_answered(&mut self, rest: Vec<ReplayPart>, lost: u64) {
        self.replay_waiting = self.replay_waiting.saturating_sub(1);
        self.stats.lost += lost;
        if !rest.is_empty() {
            self.replay_plan.get_or_insert_with(Vec::new).extend(rest);
        }
        self.dirty = true;
        if self.replay_waiting == 0 && self.replay_plan.is_none() {
            for c in self.cursors.values_mut() {
                c.held = None;
            }
        }
        self.pump();
    }

    /// A replay was planned and not every page is in: live messages wait.
    pub fn replay_incomplete(&self) -> bool {
        self.replay_plan.is_some() || self.replay_waiting > 0
    }

    /// Online, with replay pages or parked segment-log positions left, no answer awaited,
    /// and the queue short enough for another page. Under a `max_queued_messages` cap, a
    /// page of a restored session's plan is asked for only once the previous page's
    /// messages left the queue for the window: its messages come on top of what is queued
    /// (parked positions taken into a page were counted already), and the cap would drop
    /// what the previous page still had waiting.
    pub fn wants_replay_page(&self, max_queued: usize) -> bool {
        self.conn.is_some()
            && self.replay_waiting == 0
            && self.replay_front < HOLD / 2
            && match &self.replay_plan {
                Some(_) => max_queued == 0 || self.replay_front + replay_page(max_queued) <= max_queued,
                None => matches!(self.parked.front(), Some(Parked::Log(_))),
            }
    }

    /// The client went away (the session stays): what it waited for and held no longer
    /// holds the memory rings' publishers back. Queued messages kept in a log are parked
    /// (a ring's as watched handles), in-flight ones from a ring become copies of their own.
    pub fn went_offline(&mut self) {
        let mut back = VecDeque::new();
        let mut kept = VecDeque::new();
        for q in std::mem::take(&mut self.queue) {
            match q.pos {
                Some(pos) if q.shared.is_none() => back.push_back(match pos.engine {
                    Engine::Memory => Parked::Ring(Pin::Weak(Arc::downgrade(&q.msg)), pos),
                    Engine::Segment => Parked::Log(pos),
                }),
                _ => kept.push_back(q),
            }
        }
        self.queue = kept;
        self.replay_front = 0;
        for p in self.parked.iter_mut() {
            if let Parked::Ring(pin, _) = p {
                pin.weaken();
            }
        }
        while let Some(p) = back.pop_back() {
            self.parked.push_front(p);
        }
        for i in self.inflight.values_mut() {
            if let Inflight::Publish(q) = i {
                if q.pos.is_some_and(|p| p.engine == Engine::Memory) {
                    q.msg = q.msg.detached();
                }
            }
        }
    }
}
