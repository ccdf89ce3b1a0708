//! The shard's side of persistence: writing session images and retained messages, the
//! acknowledgements released by a commit, restoring state at start, and replaying
//! partition logs to sessions restored after a restart.
//!
//! A persistent session's image names what it still has to receive by a cursor per
//! partition log (every message below it was acknowledged by the client). After a restart
//! the session's shard asks each owner for the records between the cursor and the end of
//! the log as it was recovered (everything appended later is delivered live, since interest
//! is restored before the listeners open); duplicates are possible, as QoS 1 allows.
//!
//! Engine layer: `impl Shard` for persistence; called by the front at connect and
//! disconnect, by the handlers of the routing step, and by the sweep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{Protocol, QoS};

use super::session::{replay_page, PendingWill, Queued};
use super::shard::{Shard, State};
use crate::config::FullPolicy;
use crate::msg::{AckTo, Message, Pos, ReplayItem, ReplayPart, SessionRef};
use crate::route::mesh::Ingress;
use crate::route::Outgoing;
use crate::store::image::{message_from_record, SessionImage};
use crate::store::{now_ms, retained_key, session_key};

/// Most bytes read per partition per replay answer, so one answer never stalls the owner.
const REPLAY_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// Messages read back for a replay.
pub type Replay = Vec<ReplayItem>;

impl Shard {
    /// Marks a new message with its topic's storage placement (segment log or not,
    /// offline or not), per the rules; the common all-memory setup skips the matching.
    pub fn placed(&self, mut msg: Arc<Message>) -> Arc<Message> {
        let cfg = &self.cfg.storage;
        if cfg.rules.is_empty()
            && cfg.engine == crate::config::Engine::Memory
            && cfg.offline
            && cfg.when_full == FullPolicy::Backpressure
        {
            return msg;
        }
        let placement = std::str::from_utf8(&msg.topic).map_or_else(|_| cfg.placement(""), |t| cfg.placement(t));
        if let Some(m) = Arc::get_mut(&mut msg) {
            m.place(placement);
        }
        msg
    }

    /// A publish is durable (or failed): its PUBACK/PUBREC goes out on the publisher's
    /// connection, in order with the others.
    /// For a QoS 2 publish of a persistent session, the packet id is written first (now
    /// that the message is durable) and the PUBREC waits for this shard's next commit.
    pub fn acked(&self, st: &mut State, a: AckTo, code: u8) {
        let persist = st.session(a.to.slot, a.to.generation).is_some_and(|s| s.persist);
        if persist && a.qos == QoS::ExactlyOnce && code < 0x80 {
            self.persist_session(st, a.to.slot);
            st.store.defer(crate::store::Deferred::Release(a, code));
            return;
        }
        self.release_ack(st, a, code);
    }

    /// Sends a PUBACK/PUBREC that waited, in order with the connection's others.
    pub fn release_ack(&self, st: &mut State, a: AckTo, code: u8) {
        if let Some(conn) = st.session(a.to.slot, a.to.generation).and_then(|s| s.conn.clone()) {
            if conn.id == a.conn_id {
                conn.ack_ready(a.pkid, code);
            }
        }
    }

    /// Updates (and persists) the retained message of a topic this shard owns.
    pub fn store_retained(&self, st: &mut State, partition: u32, msg: &Arc<Message>) {
        let key = retained_key(&msg.topic);
        if msg.payload.is_empty() {
            if st.retained.remove(&msg.topic).is_some() {
                st.store.put(partition, &key, None);
            }
            return;
        }
        // A copy of its own: the retained store is no reader of the memory ring's message.
        st.retained.insert(msg.topic.clone(), msg.detached());
        if st.store.persistent() {
            match crate::store::image::encode_retained(msg, msg.received / 1000) {
                Ok(v) => st.store.put(partition, &key, Some(&v)),
                Err(e) => tracing::error!(error = %e, "retained message not persisted"),
            }
        }
    }

    /// Writes the image of the session in `slot` (if it persists).
    pub fn persist_session(&self, st: &mut State, slot: u32) {
        let Some(Some(s)) = st.slots.get_mut(slot as usize) else { return };
        if !s.persist {
            return;
        }
        s.dirty = false;
        let image = s.image(now_ms());
        let partition = self.router.table.partition_of(s.client_id.as_bytes());
        st.store.put(partition, &session_key(&image.client_id), Some(&image.encode()));
    }

    /// Removes the image of a session that stopped persisting (clean start, expiry 0).
    pub fn forget_session(&self, st: &mut State, client_id: &str) {
        if st.store.persistent() {
            st.store.put(self.router.table.partition_of(client_id.as_bytes()), &session_key(client_id), None);
        }
    }

    /// Writes the images of sessions whose cursors moved (from the sweep).
    pub fn persist_dirty(&self, st: &mut State) {
        if !st.store.persistent() {
            return;
        }
        let dirty: Vec<u32> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| s.dirty && s.persist).map(|_| i as u32))
            .collect();
        for slot in dirty {
            self.persist_session(st, slot);
        }
        st.store.enforce_retention();
    }

    /// An owner's answer to a replay: records of its partitions asked for by offset (a
    /// session's parked messages, or those a restored session had not acknowledged), and,
    /// for a restored session, the records from its cursor to the end of the log as
    /// recovered whose topic matches one of the filters. One answer is a page (bounded in
    /// records and bytes per partition); what is left comes back as the parts to ask for
    /// next. Also returns how many records asked for by offset the logs no longer hold.
    pub fn serve_replay(
        &self,
        st: &mut State,
        parts: &[ReplayPart],
        filters: &[(String, QoS)],
    ) -> (Replay, Vec<ReplayPart>, u64) {
        // One page for the whole answer: what the session's queue takes at once (the rest
        // is asked for as it drains).
        let mut budget = replay_page(self.cfg.limits.max_queued_messages);
        let mut out = Vec::new();
        let mut rest = Vec::new();
        let mut lost = 0u64;
        for rp in parts {
            let (now, later) = rp.pending.split_at(rp.pending.len().min(budget));
            budget -= now.len();
            if !later.is_empty() {
                rest.push(ReplayPart { pending: later.to_vec(), ..rp.clone() });
            }
            let Some(part) = st.store.parts.get_mut(&rp.partition) else {
                lost += now.len() as u64;
                continue;
            };
            let until = part.recovered_next;
            let Some(log) = part.log.as_mut() else {
                lost += now.len() as u64;
                continue;
            };
            let publisher: Arc<str> = Arc::from("");
            let cfg = &st.store.cfg;
            let keep = |r: &storage::Record, scanned: bool, out: &mut Replay| -> bool {
                let Ok(topic) = std::str::from_utf8(&r.topic) else { return false };
                if r.qos() == 0 || !filters.iter().any(|(f, _)| proto::topic::matches(f, topic)) {
                    return false;
                }
                let placement = cfg.placement(topic);
                if !placement.offline {
                    return false;
                }
                let Some(msg) = message_from_record(r, &publisher, r.retain(), placement) else {
                    return false;
                };
                out.push(ReplayItem { msg, pos: Pos::segment(rp.partition, r.offset), scanned });
                true
            };
            for &off in now {
                match log.read(off) {
                    Ok(Some(r)) => {
                        keep(&r, false, &mut out);
                    }
                    Ok(None) => lost += 1,
                    Err(e) => {
                        lost += 1;
                        tracing::error!(partition = rp.partition, offset = off, error = %e, "replay read failed");
                    }
                }
            }
            // A restored session's tail: scanned once every single record is served.
            let Some(start) = rp.from.filter(|_| later.is_empty()) else { continue };
            if budget == 0 {
                rest.push(ReplayPart { from: Some(start), pending: Vec::new(), ..rp.clone() });
                continue;
            }
            let mut from = start.max(log.first_offset());
            if from > start {
                tracing::warn!(
                    partition = rp.partition,
                    from = start,
                    first = from,
                    "replay: records deleted by retention"
                );
            }
            let (mut matched, mut scanned) = (0usize, 0usize);
            while from < until {
                if matched >= budget || scanned >= REPLAY_PAGE_BYTES {
                    rest.push(ReplayPart { from: Some(from), pending: Vec::new(), ..rp.clone() });
                    break;
                }
                let want = usize::try_from(until - from).unwrap_or(usize::MAX).min(1024);
                let records = match log.read_range(from, want, 4 * 1024 * 1024) {
                    Ok(r) if !r.is_empty() => r,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(partition = rp.partition, offset = from, error = %e, "replay read failed");
                        break;
                    }
                };
                let before = from;
                for r in records.iter().filter(|r| r.offset < until) {
                    if matched >= budget {
                        break;
                    }
                    from = r.offset + 1;
                    scanned += r.encoded_len();
                    if keep(r, true, &mut out) {
                        matched += 1;
                    }
                }
                if from == before {
                    break;
                }
            }
            budget -= matched;
        }
        (out, rest, lost)
    }

    /// Records read back for a session: queued ahead of live messages (a restored
    /// session's scan skips what it already has pending). What the owner left for a next
    /// page is asked for by the sweep once the session's queue has room.
    pub fn replayed(&self, st: &mut State, to: SessionRef, msgs: Replay, rest: Vec<ReplayPart>, lost: u64) {
        let max_queued = self.cfg.limits.max_queued_messages;
        let Some(session) = st.session(to.slot, to.generation) else { return };
        let mut older = Vec::with_capacity(msgs.len());
        for ReplayItem { msg, pos, scanned } in msgs {
            if scanned && session.has_pending(pos) {
                continue;
            }
            let Some((qos, retain, sub_ids)) = session.matching(&msg) else { continue };
            if qos == QoS::AtMostOnce {
                continue;
            }
            older.push(Queued { msg, qos, retain, sub_ids, pos: Some(pos), shared: None });
        }
        session.requeue_older(older, max_queued);
        session.replay_answered(rest, lost);
        if session.wants_replay_page(max_queued) {
            st.replay_soon(to.slot);
        }
    }

    /// A returning session asks the owners for its parked messages (and, restored at
    /// start, for what it may have missed before the restart); later pages likewise.
    pub fn request_replay(&self, st: &mut State, slot: u32, out: &mut Outgoing) {
        let Some(Some(s)) = st.slots.get_mut(slot as usize) else { return };
        let Some(plan) = s.take_replay() else { return };
        let to = SessionRef { shard: self.router.id as u16, slot, generation: s.generation };
        let filters: Vec<(String, QoS)> = s.subs.iter().map(|(f, o)| (f.clone(), o.qos)).collect();
        let mut per_shard: HashMap<usize, Vec<ReplayPart>> = HashMap::new();
        for part in plan {
            per_shard.entry(self.router.table.shard_of_partition(part.partition)).or_default().push(part);
        }
        s.replay_asked(per_shard.len());
        if per_shard.is_empty() {
            s.replay_answered(Vec::new(), 0);
        }
        for (shard, parts) in per_shard {
            self.to_owner(st, shard, Ingress::Replay { to, parts, filters: filters.clone() }, out);
        }
    }

    /// Rebuilds this shard's sessions and retained messages from what storage recovered.
    /// Interest for the restored subscriptions is set up by the node before any shard
    /// accepts connections.
    pub fn restore(&self, sessions: Vec<SessionImage>, retained: Vec<Arc<Message>>) {
        let st = &mut *self.st.borrow_mut();
        for m in retained {
            st.retained.insert(m.topic.clone(), m);
        }
        let now_wall = now_ms();
        let now = Instant::now();
        for img in sessions {
            let protocol = if img.protocol == 5 { Protocol::V5 } else { Protocol::V4 };
            // 0: it was online when the broker stopped; its expiry counts from now.
            let away = match img.offline_since_ms {
                0 => Duration::ZERO,
                t => Duration::from_millis(now_wall.saturating_sub(t)),
            };
            let left = if img.expiry == u32::MAX {
                None
            } else {
                match Duration::from_secs(u64::from(img.expiry)).checked_sub(away) {
                    Some(d) if !d.is_zero() => Some(d),
                    _ => {
                        tracing::info!(client_id = %crate::show::short(&img.client_id), "session expired while the broker was down");
                        self.forget_session(st, &img.client_id);
                        continue;
                    }
                }
            };
            let client_id: Arc<str> = Arc::from(img.client_id.as_str());
            let slot = st.insert_session(client_id.clone(), protocol);
            // Shared groups: a member only once its client is back.
            for (filter, opts) in img.subs.iter().filter(|(f, _)| !crate::route::is_shared(f)) {
                self.add_local(st, slot, filter, *opts, crate::auth::NOT_OPEN);
            }
            let Some(Some(s)) = st.slots.get_mut(slot as usize) else { continue };
            s.expiry = img.expiry;
            s.expires_at = left.map(|d| now + d);
            s.persist = true;
            s.subs = img.subs.iter().cloned().collect();
            s.incoming_qos2 = img.incoming_qos2.iter().copied().collect();
            s.restore_releasing(&img.releasing);
            s.restore_cursors(&img.cursors);
            // Its deliveries are judged as its last connection was until it is back.
            if let Some((user, listener)) = &img.principal {
                let mut p = crate::auth::Principal::new(&img.client_id, user.as_deref(), None);
                p.listener = usize::from(*listener);
                s.principal = Some(Arc::new(p));
            }
            if let Some(w) = &img.will {
                let record = storage::Record {
                    offset: 0,
                    timestamp_ms: 0,
                    flags: storage::record::flags(w.retain, w.qos as u8),
                    topic: w.topic.clone(),
                    properties: w.properties.clone(),
                    payload: w.payload.clone(),
                };
                let cfg = &st.store.cfg;
                let placement = std::str::from_utf8(&w.topic).map_or_else(|_| cfg.placement(""), |t| cfg.placement(t));
                if let Some(msg) = message_from_record(&record, &client_id, w.retain, placement) {
                    let at = now + Duration::from_secs(u64::from(w.delay)).saturating_sub(away);
                    s.will = Some(PendingWill { msg, at });
                }
            }
        }
    }
}
