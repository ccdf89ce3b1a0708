//! A session's subscriptions on its shard: the local trie entries, the interest counts
//! sent to the shards that may own matching topics, and the end of a session (its
//! subscriptions withdrawn, its shared groups left, its slot freed).
//!
//! Runs on the session's shard; counts reach the owners through the routing step.

use std::time::Instant;

use super::interest::LocalSub;
use super::session::Session;
use super::shard::{Shard, State};
use crate::msg::SubOptions;
use crate::route::mesh::Ingress;
use crate::route::Outgoing;

impl Shard {
    /// Adds (or updates the options of) a local subscription.
    pub fn add_local(&self, st: &mut State, slot: u32, filter: &str, opts: SubOptions, open: crate::auth::Open) {
        LocalSub::upsert(st.local.entry(filter, Vec::new), slot, opts, open);
    }

    /// Judges the session's subscriptions again at their next delivery, one by one (its
    /// principal changed).
    pub fn close_local(&self, st: &mut State, slot: u32) {
        let Some(Some(s)) = st.slots.get(slot as usize) else { return };
        let filters: Vec<String> = s.subs.keys().filter(|f| !crate::route::is_shared(f)).cloned().collect();
        for f in filters {
            st.local.update(&f, |subs| {
                for l in subs.iter_mut().filter(|l| l.slot == slot) {
                    l.open = crate::auth::NOT_OPEN;
                }
                false
            });
        }
    }

    /// Removes a local subscription and withdraws its count from the shards that may own
    /// matching topics.
    pub fn remove_local(&self, st: &mut State, slot: u32, filter: &str, out: &mut Outgoing) {
        if crate::route::is_shared(filter) {
            self.leave_group(st, slot, filter, out);
            return;
        }
        st.local.update(filter, |subs| {
            subs.retain(|s| s.slot != slot);
            subs.is_empty()
        });
        self.send_interest(st, filter, -1, out);
    }

    /// Adds `delta` to this shard's count for `filter` (its member count, for a shared
    /// group) at every shard that may own matching topics.
    pub fn send_interest(&self, st: &mut State, filter: &str, delta: i64, out: &mut Outgoing) {
        for t in self.router.targets(filter) {
            self.to_owner(
                st,
                t,
                Ingress::Interest { origin: self.router.id as u16, filter: filter.to_owned(), delta },
                out,
            );
        }
    }

    /// Ends a session: its subscriptions go (what it held of shared groups goes to other
    /// members), its slot is freed.
    pub fn end_session(&self, st: &mut State, slot: u32, out: &mut Outgoing) -> Option<Session> {
        self.leave_groups(st, slot, out);
        let mut session = st.slots.get_mut(slot as usize)?.take()?;
        self.report_drops(&mut session, Instant::now());
        for filter in session.subs.keys() {
            self.remove_local(st, slot, filter, out);
        }
        if st.sessions.get(&session.client_id) == Some(&slot) {
            st.sessions.remove(&session.client_id);
        }
        if session.persist {
            self.forget_session(st, &session.client_id);
        }
        st.free.push(slot);
        Some(*session)
    }
}
