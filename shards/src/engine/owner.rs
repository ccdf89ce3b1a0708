//! The owner step: what the shard owning a topic's partition does with each PUBLISH (its
//! memory ring's admission, the segment log append, the retained store, the match in the
//! interest trie and one copy to each shard with interest, the shared-group picks), and
//! its side of a SUBSCRIBE (counting the origin's interest, collecting retained messages).
//!
//! Runs on the owner; reached only through the routing step ([`super::dispatch`]).

use std::sync::Arc;

use proto::QoS;

use super::interest::Interest;
use super::shard::{Retained, Shard, State};
use crate::msg::{AckTo, Message, Pos};
use crate::route::mesh::{Egress, Ingress, InterestItem};
use crate::route::Outgoing;
use crate::store::{Admit, Deferred};

impl Shard {
    /// Routes a message to its topic's owner (in place when that is this shard). `ack` is
    /// the publisher's acknowledgement when it waits for the owner's append.
    pub fn route(&self, st: &mut State, msg: Arc<Message>, ack: Option<AckTo>, out: &mut Outgoing) {
        let owner = self.router.owner(&msg.topic);
        self.to_owner(st, owner, Ingress::Publish(msg, ack), out);
    }

    /// The owner's part of a PUBLISH: log append (segment topics) or memory ring (QoS 1/2
    /// of `memory` topics that offline sessions keep), retained store, then one copy to
    /// each shard with interest.
    pub fn accept_at_owner(&self, st: &mut State, msg: Arc<Message>, ack: Option<AckTo>, out: &mut Outgoing) {
        let in_ring = !msg.durable && msg.offline && msg.qos != QoS::AtMostOnce;
        // Hashed again only when storage needs it: the QoS 0 path skips it.
        let partition =
            if msg.durable || msg.retain || in_ring { self.router.table.partition_of(&msg.topic) } else { 0 };
        let mut pos = None;
        if in_ring {
            if let Some(w) = st.waiting.get_mut(&partition) {
                // Others wait before it: behind them, in order.
                w.push_back((msg, ack));
                return;
            }
            match st.store.admit(partition, &msg) {
                Admit::Kept(p) => pos = Some(p),
                Admit::NotKept => {}
                Admit::Full => {
                    self.hold_back(st, partition, msg, ack);
                    return;
                }
            }
        }
        self.publish_at_owner(st, msg, ack, partition, pos, out);
    }

    /// The owner's part of a PUBLISH once its ring has taken it (or it needs none): log
    /// append (segment topics), acknowledgement, retained store, then one copy to each
    /// shard with interest.
    pub(crate) fn publish_at_owner(
        &self,
        st: &mut State,
        msg: Arc<Message>,
        ack: Option<AckTo>,
        partition: u32,
        mut pos: Option<Pos>,
        out: &mut Outgoing,
    ) {
        st.stats.published += 1;
        let mut code = proto::reason::SUCCESS;
        if msg.durable {
            match st.store.append(partition, &msg) {
                Ok(p) => pos = Some(p),
                Err(e) => {
                    tracing::error!(error = %e, "append failed");
                    st.store.stats.write_errors += 1;
                    code = proto::reason::UNSPECIFIED_ERROR;
                }
            }
        }
        if msg.retain && code == proto::reason::SUCCESS {
            self.store_retained(st, partition, &msg);
        }
        let mut fanout = std::mem::take(&mut st.fanout);
        fanout.clear();
        let mut picks: Vec<(usize, Arc<str>, u32)> = Vec::new();
        let strategy = self.cfg.shared_strategy;
        st.interest.matches(&msg.topic, |i| {
            fanout.union(&i.shards);
            for g in &i.groups {
                if let Some((d, index)) = g.pick(strategy, &msg) {
                    picks.push((d, g.key.clone(), index));
                }
            }
        });
        if let Some(a) = ack {
            // Known here and free to say: this acknowledgement waited for its owner
            // anyway (a segment topic's commit, or a full memory ring).
            let nobody = code == proto::reason::SUCCESS && fanout.is_empty() && picks.is_empty();
            st.store.defer(Deferred::Ack(a, if nobody { proto::reason::NO_MATCHING_SUBSCRIBERS } else { code }));
        }
        if !picks.is_empty() {
            self.send_picks(st, &msg, pos, picks, out);
        }
        // The last destination takes the message itself: a fan-in to one shard touches its
        // reference count no more than the owner's own drop would.
        let mut last = None;
        for d in fanout.iter() {
            if let Some(prev) = last.replace(d) {
                self.to_origin(st, prev, Egress::Deliver(msg.clone(), pos), out);
            }
        }
        st.fanout = fanout;
        if let Some(d) = last {
            self.to_origin(st, d, Egress::Deliver(msg, pos), out);
        }
    }

    /// Sends a message to the shards of the members its owner picked, one copy per shard.
    fn send_picks(
        &self,
        st: &mut State,
        msg: &Arc<Message>,
        pos: Option<Pos>,
        mut picks: Vec<(usize, Arc<str>, u32)>,
        out: &mut Outgoing,
    ) {
        picks.sort_by_key(|p| p.0);
        let mut it = picks.into_iter().peekable();
        while let Some((d, key, index)) = it.next() {
            let mut mine = vec![(key, index)];
            while let Some((_, key, index)) = it.next_if(|p| p.0 == d) {
                mine.push((key, index));
            }
            self.to_origin(st, d, Egress::DeliverShared { msg: msg.clone(), pos, picks: mine, hops: 0 }, out);
        }
    }

    /// The owner's part of a SUBSCRIBE: record the origin's interest and collect retained
    /// messages matching the filters.
    pub fn serve_subscribe(
        &self,
        st: &mut State,
        origin: usize,
        items: &[InterestItem],
    ) -> (Retained, Vec<(u32, u64)>) {
        let mut retained = Vec::new();
        // Partitions whose logs may hold topics matching any of the filters.
        let mut parts = std::collections::BTreeSet::new();
        for item in items {
            if st.store.persistent() {
                match self.router.plain_partition(&item.filter) {
                    Some(p) => {
                        parts.insert(p);
                    }
                    None => parts.extend(self.router.table.owned_by(self.router.id)),
                }
            }
            if item.add_interest {
                self.apply_interest(st, origin, &item.filter, 1);
            }
            if item.want_retained {
                let now = crate::msg::now_us();
                if item.filter.contains(['+', '#']) {
                    for (topic, msg) in &st.retained {
                        if !msg.expired(now)
                            && std::str::from_utf8(topic).is_ok_and(|t| proto::topic::matches(&item.filter, t))
                        {
                            retained.push((item.index, msg.clone()));
                        }
                    }
                } else if let Some(msg) = st.retained.get(item.filter.as_bytes()).filter(|m| !m.expired(now)) {
                    retained.push((item.index, msg.clone()));
                }
            }
        }
        let offsets = st.store.next_offsets(parts.into_iter());
        (retained, offsets)
    }

    /// Changes `origin`'s subscription count for `filter` (member count, for a shared
    /// group) by `delta`.
    pub fn apply_interest(&self, st: &mut State, origin: usize, filter: &str, delta: i64) {
        let n = self.router.nshards;
        match proto::topic::parse_shared(filter) {
            Some((_, inner)) => {
                st.interest.entry(inner, || Interest::new(n));
                st.interest.update(inner, |i| i.apply_shared(filter, origin, delta));
            }
            None => {
                st.interest.entry(filter, || Interest::new(n));
                st.interest.update(filter, |i| i.apply(origin, delta));
            }
        }
    }
}
