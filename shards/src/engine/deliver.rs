//! Delivery on a shard with interest: a message to every local session whose
//! subscriptions match it (once per session, merged options, encoded once per fan-out),
//! the answer to a subscription request (the SUBACK with the last answer, then the
//! retained messages), and a session's local subscriptions and their interest counts at
//! the owners, up to the end of a session.
//!
//! Runs on the session's shard; the owners' answers reach it through the routing step.

use std::sync::Arc;

use proto::{Packet, QoS, SubAck};

use super::session::{EncodeCache, Queued, Session};
use super::shard::{Shard, State};
use crate::auth::Action;
use crate::msg::{Message, Pos, SessionRef, SubOptions};
use crate::store::Deferred;

impl Shard {
    /// Hands a message to every local session with a matching subscription: once per
    /// session, with the highest granted QoS and every matching subscription id.
    pub fn deliver_local(&self, st: &mut State, msg: &Arc<Message>, pos: Option<Pos>) {
        let mut subs = std::mem::take(&mut st.scratch);
        subs.clear();
        st.local.matches(&msg.topic, |v| subs.extend_from_slice(v));
        subs.sort_by_key(|s| s.slot);
        let max_queued = self.cfg.limits.max_queued_messages;
        let mut cache = std::mem::take(&mut st.cache);
        cache.reset();
        let mut i = 0;
        while i < subs.len() {
            let slot = subs[i].slot;
            let mut qos: Option<QoS> = None;
            let mut rap = false;
            let mut sub_ids = Vec::new();
            let mut open = crate::auth::NOT_OPEN;
            while i < subs.len() && subs[i].slot == slot {
                let o = subs[i].opts;
                if subs[i].open != crate::auth::NOT_OPEN {
                    open = subs[i].open;
                }
                i += 1;
                if o.no_local {
                    let own = st.slots[slot as usize].as_ref().is_some_and(|s| *s.client_id == *msg.publisher);
                    if own {
                        continue;
                    }
                }
                qos = Some(qos.map_or(o.qos, |q| q.max(o.qos)));
                rap |= o.retain_as_published;
                sub_ids.extend(o.sub_id);
            }
            let (Some(granted), Some(Some(session))) = (qos, st.slots.get_mut(slot as usize)) else {
                continue;
            };
            // A wildcard subscription never brings a topic the session may not read (one
            // judged readable whole at this generation needs no look).
            let judged = open != crate::auth::NOT_OPEN && session.generation(&self.cfg) == Some(open);
            if !judged && !session.may(&self.cfg, Action::Read, &msg.topic) {
                crate::metrics::Counters::bump(&self.counters.acl_denied);
                continue;
            }
            st.stats.delivered += 1;
            let q = Queued {
                msg: msg.clone(),
                qos: msg.qos.min(granted),
                retain: rap && msg.retain,
                sub_ids,
                pos,
                shared: None,
            };
            session.deliver(q, &mut cache, max_queued);
        }
        st.scratch = subs;
        st.cache = cache;
    }

    /// An owner answered a subscription request; the SUBACK goes out with the last answer.
    pub fn subscribe_answered(
        &self,
        st: &mut State,
        to: SessionRef,
        req: u32,
        retained: Vec<(u16, Arc<Message>)>,
        offsets: Vec<(u32, u64)>,
    ) {
        let max_queued = self.cfg.limits.max_queued_messages;
        let Some(session) = st.session(to.slot, to.generation) else { return };
        session.start_cursors(&offsets);
        let Some(pending) = session.pending_subs.get_mut(&req) else { return };
        pending.retained.extend(retained);
        pending.remaining = pending.remaining.saturating_sub(1);
        if pending.remaining > 0 {
            return;
        }
        let Some(pending) = session.pending_subs.remove(&req) else { return };
        let properties = session.conn.as_ref().map_or_else(Default::default, |c| c.suback_props(&pending.codes));
        let suback = Packet::SubAck(SubAck { pkid: pending.pkid, codes: pending.codes, properties });
        let conn_id = pending.conn_id;
        if session.persist {
            // The SUBACK waits until the subscription (and where its cursors start) is on
            // disk: once a client has it, a restart does not lose what it subscribed to.
            self.persist_session(st, to.slot);
            st.store.defer(Deferred::Packet { to, conn_id, packet: suback });
        } else if let Some(conn) = session.conn.as_ref().filter(|c| c.id == conn_id) {
            conn.send(&suback);
        }
        let Some(session) = st.session(to.slot, to.generation) else { return };
        self.deliver_retained(session, pending.retained, &pending.granted, max_queued);
    }

    /// Retained messages answering a SUBSCRIBE, each by the options granted to its filter
    /// and only if the session may read it.
    fn deliver_retained(
        &self,
        session: &mut Session,
        retained: Vec<(u16, Arc<Message>)>,
        granted: &[Option<SubOptions>],
        max_queued: usize,
    ) {
        let mut cache = EncodeCache::default();
        for (index, msg) in retained {
            let Some(Some(opts)) = granted.get(usize::from(index)) else { continue };
            if !session.may(&self.cfg, Action::Read, &msg.topic) {
                crate::metrics::Counters::bump(&self.counters.acl_denied);
                continue;
            }
            cache.reset();
            let q = Queued {
                qos: msg.qos.min(opts.qos),
                retain: true,
                sub_ids: opts.sub_id.into_iter().collect(),
                msg,
                pos: None,
                shared: None,
            };
            session.deliver(q, &mut cache, max_queued);
        }
    }
}
