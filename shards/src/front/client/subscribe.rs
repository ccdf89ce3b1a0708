//! SUBSCRIBE and UNSUBSCRIBE of a connection: options and limits checked per filter, the
//! local trie (or a shared group's members) updated at once, and the shards that may own
//! matching topics asked to count the new interest and send retained messages; the SUBACK
//! goes out when the last of them has answered (after the image is on disk, for a
//! persistent session).
//!
//! Front layer: part of the client path.

use proto::{reason, Packet, Props, SubAck, Subscribe, UnsubAck, Unsubscribe};

use super::Client;
use crate::auth::{allowed, Action};
use crate::engine::session::PendingSubscribe;
use crate::front::rules::filter_allowed;
use crate::msg::{SessionRef, SubOptions};
use crate::route::mesh::{Ingress, InterestItem};

impl Client {
    pub(super) fn on_subscribe(&mut self, s: Subscribe) {
        let v5 = self.v5();
        let refused = if v5 { reason::TOPIC_FILTER_INVALID } else { reason::V4_SUBACK_FAILURE };
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut granted = Vec::with_capacity(s.filters.len());
        let mut items: Vec<Vec<InterestItem>> = (0..self.shard.router.nshards).map(|_| Vec::new()).collect();
        let shard = self.shard.clone();
        let mut guard = shard.st.borrow_mut();
        let st = &mut *guard;
        let Some(session) = st.session(self.slot, self.generation) else { return };
        let req = session.next_req;
        session.next_req = session.next_req.wrapping_add(1);
        for (i, f) in s.filters.into_iter().enumerate() {
            if !filter_allowed(&shard.cfg.limits, &f.filter) {
                codes.push(refused);
                granted.push(None);
                continue;
            }
            if !allowed(
                self.shard.cfg.authorizer_for(self.principal.listener),
                Some(&self.principal),
                Action::Subscribe,
                f.filter.as_bytes(),
            ) {
                crate::metrics::Counters::bump(&self.shard.counters.acl_denied);
                tracing::debug!(client_id = %crate::show::short(&self.principal.client_id), filter = %crate::show::short(&f.filter), "subscription not authorized");
                codes.push(if v5 { reason::NOT_AUTHORIZED } else { reason::V4_SUBACK_FAILURE });
                granted.push(None);
                continue;
            }
            let opts = SubOptions {
                qos: f.qos,
                no_local: v5 && f.no_local,
                retain_as_published: v5 && f.retain_as_published,
                sub_id,
            };
            let Some(session) = st.session(self.slot, self.generation) else { return };
            if session.subs.len() >= shard.cfg.limits.max_subscriptions && !session.subs.contains_key(&f.filter) {
                codes.push(if v5 { reason::QUOTA_EXCEEDED } else { reason::V4_SUBACK_FAILURE });
                granted.push(None);
                continue;
            }
            let existed = session.subs.insert(f.filter.clone(), opts).is_some();
            let shared = crate::route::is_shared(&f.filter);
            // A shared group's member: counted by the owners through this request, like
            // a new subscription, so the SUBACK still means "from now on".
            let new_member = shared && shard.add_member(st, self.slot, &f.filter, opts);
            if !shared {
                let open =
                    crate::auth::open(shard.cfg.authorizer_for(self.principal.listener), &self.principal, &f.filter);
                shard.add_local(st, self.slot, &f.filter, opts, open);
            }
            let want_retained = match f.retain_handling {
                // Retained messages are never sent to shared subscriptions.
                _ if shared => false,
                0 => true,
                1 => !existed,
                _ => false,
            };
            let add_interest = if shared { new_member } else { !existed };
            if add_interest || want_retained {
                for t in shard.router.targets(&f.filter) {
                    items[t].push(InterestItem {
                        index: i as u16,
                        filter: f.filter.clone(),
                        add_interest,
                        want_retained,
                    });
                }
            }
            codes.push(f.qos as u8);
            granted.push(Some(opts));
        }
        let remaining = items.iter().filter(|i| !i.is_empty()).count();
        if remaining == 0 {
            let properties = self.conn.suback_props(&codes);
            self.conn.send(&Packet::SubAck(SubAck { pkid: s.pkid, codes, properties }));
            return;
        }
        let Some(session) = st.session(self.slot, self.generation) else { return };
        session.pending_subs.insert(
            req,
            PendingSubscribe { pkid: s.pkid, codes, granted, remaining, retained: Vec::new(), conn_id: self.conn.id },
        );
        let from = SessionRef { shard: shard.router.id as u16, slot: self.slot, generation: self.generation };
        for (t, its) in items.into_iter().enumerate() {
            if !its.is_empty() {
                shard.to_owner(st, t, Ingress::Subscribe { from, req, items: its }, &mut self.out);
            }
        }
    }

    pub(super) fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let shard = self.shard.clone();
        let st = &mut *shard.st.borrow_mut();
        let mut codes = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            let existed = st.session(self.slot, self.generation).is_some_and(|s| s.subs.remove(f).is_some());
            if existed {
                shard.remove_local(st, self.slot, f, &mut self.out);
            }
            codes.push(if existed { reason::SUCCESS } else { reason::NO_SUBSCRIPTION_EXISTED });
        }
        if !self.v5() {
            codes.clear();
        }
        shard.persist_session(st, self.slot);
        self.conn.send(&Packet::UnsubAck(UnsubAck { pkid: u.pkid, codes, properties: Props::default() }));
    }
}
