//! Shared subscriptions: `$share/{group}/{filter}`, each matching message to exactly one
//! member of the group.
//!
//! A group is named by its whole filter string (the *key*, `$share/g/f`): the same group
//! name over two filters is two groups. Members are connected sessions only; a member
//! joins when it subscribes (or reconnects with the subscription in its session) and
//! leaves when it unsubscribes, disconnects or its session ends.
//!
//! Two levels, like the rest of the routing:
//! - **Owner** (every shard that may own matching topics): the interest entry of the inner
//!   filter holds, per group, how many members each shard has ([`Group`](super::interest::Group)). For each
//!   message the owner picks one member index out of the total by the configured strategy
//!   (round robin, hash of the publisher's client id, hash of the topic) and sends the
//!   message to the shard holding that index with the index local to it
//!   ([`crate::route::mesh::Egress::DeliverShared`]).
//! - **Member shard**: its members of the group in joining order (`State::shared`); the
//!   local index picks one (modulo their current number).
//!
//! A member that leaves while it holds messages of the group (in flight, queued) hands
//! them back to the owner (`Ingress::Reshare`), which picks another member. So does a
//! shard that receives a pick after its last member left (the owner's counts were behind):
//! egress handlers never send, so those wait in `State::reshare` (bounded) for the next
//! flush. A message is handed round at most [`MAX_HOPS`] times, then dropped and counted.
//!
//! Engine layer: `impl Shard` for shared groups; called by the front (subscribe, leave),
//! the routing step's handlers and the session end.

use std::sync::Arc;

use super::interest::LocalSub;
use super::session::{EncodeCache, Queued};
use super::shard::{Shard, State};
use crate::msg::{Message, Pos, SubOptions};
use crate::route::is_shared;
use crate::route::mesh::{Egress, Ingress, Reshare};
use crate::route::Outgoing;

/// Most times one message is handed from a leaving member to another.
pub const MAX_HOPS: u8 = 4;
/// Most messages waiting on a shard to be handed back to their owners.
pub const MAX_RESHARE: usize = 65_536;

impl Shard {
    /// Makes the session in `slot` a member of group `key` here (or updates its options).
    /// Returns true when it is new: the owners must then count one more member here.
    pub fn add_member(&self, st: &mut State, slot: u32, key: &str, opts: SubOptions) -> bool {
        LocalSub::upsert(st.shared.entry(Arc::from(key)).or_default(), slot, opts, crate::auth::NOT_OPEN)
    }

    /// Adds the session in `slot` to the groups of its shared subscriptions it is not a
    /// member of (a client back online); the owners count it.
    pub fn join_groups(&self, st: &mut State, slot: u32, out: &mut Outgoing) {
        let Some(Some(s)) = st.slots.get(slot as usize) else { return };
        let keys: Vec<(String, SubOptions)> =
            s.subs.iter().filter(|(f, _)| is_shared(f)).map(|(f, o)| (f.clone(), *o)).collect();
        for (key, opts) in keys {
            if self.add_member(st, slot, &key, opts) {
                self.send_interest(st, &key, 1, out);
            }
        }
    }

    /// Removes the session in `slot` from group `key` here, if it is a member; the owners
    /// count one member less.
    pub fn leave_group(&self, st: &mut State, slot: u32, key: &str, out: &mut Outgoing) {
        let Some(members) = st.shared.get_mut(key) else { return };
        let before = members.len();
        members.retain(|m| m.slot != slot);
        if members.len() == before {
            return;
        }
        if members.is_empty() {
            st.shared.remove(key);
        }
        self.send_interest(st, key, -1, out);
    }

    /// The client of the session in `slot` went away: it leaves every group, and what it
    /// holds of them (in flight, queued) goes back to the owners for other members.
    pub fn leave_groups(&self, st: &mut State, slot: u32, out: &mut Outgoing) {
        let Some(Some(s)) = st.slots.get(slot as usize) else { return };
        let keys: Vec<String> = s.subs.keys().filter(|f| is_shared(f)).cloned().collect();
        for key in &keys {
            self.leave_group(st, slot, key, out);
        }
        let Some(Some(s)) = st.slots.get_mut(slot as usize) else { return };
        for q in s.take_shared() {
            let Some(key) = q.shared else { continue };
            self.reshare(st, Reshare { msg: q.msg, pos: q.pos, key, hops: 0 }, out);
        }
    }

    /// Hands a message of group `key` to its owner for another member (in place when
    /// this shard owns it).
    pub fn reshare(&self, st: &mut State, r: Reshare, out: &mut Outgoing) {
        if r.hops >= MAX_HOPS {
            st.stats.shared_dropped += 1;
            return;
        }
        let owner = self.router.owner(&r.msg.topic);
        self.to_owner(st, owner, Ingress::Reshare(r), out);
    }

    /// The owner's part of a hand-back: another pick in the group.
    pub fn pick_again(&self, st: &mut State, r: Reshare, out: &mut Outgoing) {
        let strategy = self.cfg.shared_strategy;
        let pick = st
            .interest
            .get_mut(crate::route::inner(&r.key))
            .and_then(|i| i.groups.iter().find(|g| g.key == r.key))
            .and_then(|g| g.pick(strategy, &r.msg));
        let Some((d, index)) = pick else {
            st.stats.shared_dropped += 1;
            return;
        };
        let picks = vec![(r.key, index)];
        self.to_origin(st, d, Egress::DeliverShared { msg: r.msg, pos: r.pos, picks, hops: r.hops + 1 }, out);
    }

    /// A member shard's part: each pick to one local member of its group; a pick for a
    /// group without members here any more goes back to the owner (at the next flush).
    pub fn deliver_shared(
        &self,
        st: &mut State,
        msg: &Arc<Message>,
        pos: Option<Pos>,
        picks: Vec<(Arc<str>, u32)>,
        hops: u8,
    ) {
        let max_queued = self.cfg.limits.max_queued_messages;
        let mut cache = EncodeCache::default();
        for (key, index) in picks {
            let member = st.shared.get(&key).filter(|m| !m.is_empty()).map(|m| m[index as usize % m.len()]);
            let session = member.and_then(|m| Some((m.opts, st.slots.get_mut(m.slot as usize)?.as_mut()?)));
            let Some((opts, session)) = session.filter(|(_, s)| s.conn.is_some()) else {
                if st.reshare.len() < MAX_RESHARE {
                    st.reshare.push(Reshare { msg: msg.clone(), pos, key, hops });
                    st.kick();
                } else {
                    st.stats.shared_dropped += 1;
                }
                continue;
            };
            // Picked, and not allowed to read it: given up for the group, and counted.
            if !session.may(&self.cfg, crate::auth::Action::Read, &msg.topic) {
                crate::metrics::Counters::bump(&self.counters.acl_denied);
                continue;
            }
            st.stats.delivered += 1;
            cache.reset();
            let q = Queued {
                msg: msg.clone(),
                qos: msg.qos.min(opts.qos),
                retain: opts.retain_as_published && msg.retain,
                sub_ids: opts.sub_id.into_iter().collect(),
                pos,
                shared: Some(key),
            };
            session.deliver(q, &mut cache, max_queued);
        }
    }

    /// Sends the hand-backs that waited on this shard (from the egress handler, which
    /// never sends).
    pub fn flush_reshare(&self, st: &mut State, out: &mut Outgoing) {
        for r in std::mem::take(&mut st.reshare) {
            self.reshare(st, r, out);
        }
    }
}
