//! Who is interested in what, as counts: a shard's local subscriptions ([`LocalSub`]), an
//! owner's interest entry per filter ([`Interest`]: subscriptions per origin shard and the
//! set of shards with any), and a shared group's members per shard ([`Group`], with the
//! pick of one member per message).
//!
//! Plain data of the engine, kept in its [`State`](super::shard::State); the owner step
//! and the subscription service update and read it.

use std::cell::Cell;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crate::config::SharedStrategy;
use crate::msg::{Message, SubOptions};
use crate::route::ShardSet;

/// One group as an owner sees it: members per shard.
#[derive(Debug)]
pub struct Group {
    /// `$share/{group}/{filter}`.
    pub key: Arc<str>,
    counts: Box<[i64]>,
    next: Cell<u64>,
}

impl Group {
    /// A group with no members yet.
    pub fn new(key: Arc<str>, shards: usize) -> Group {
        Group { key, counts: vec![0; shards].into_boxed_slice(), next: Cell::new(0) }
    }

    /// Adds `delta` to `origin`'s member count. Returns true when no shard counts any.
    pub fn apply(&mut self, origin: usize, delta: i64) -> bool {
        self.counts[origin] += delta;
        self.counts.iter().all(|c| *c == 0)
    }

    /// The member a message goes to: (shard, index among that shard's members), or None
    /// without members.
    pub fn pick(&self, strategy: SharedStrategy, msg: &Message) -> Option<(usize, u32)> {
        let total: i64 = self.counts.iter().filter(|c| **c > 0).sum();
        if total <= 0 {
            return None;
        }
        let n = match strategy {
            SharedStrategy::RoundRobin => {
                let n = self.next.get();
                self.next.set(n.wrapping_add(1));
                n
            }
            SharedStrategy::HashClientId => hash(&*msg.publisher),
            SharedStrategy::HashTopic => hash(&msg.topic[..]),
        };
        let mut at = (n % total as u64) as i64;
        for (shard, &c) in self.counts.iter().enumerate() {
            if c <= 0 {
                continue;
            }
            if at < c {
                return Some((shard, at as u32));
            }
            at -= c;
        }
        None
    }
}

fn hash(v: &(impl Hash + ?Sized)) -> u64 {
    // Fixed keys: the same client id or topic lands on the same member on every shard.
    ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(v)
}
/// One local subscription in the trie.
#[derive(Debug, Clone, Copy)]
pub struct LocalSub {
    /// Session slot.
    pub slot: u32,
    /// Its options.
    pub opts: SubOptions,
    /// Judged readable whole at this authorizer generation (see [`crate::auth::Open`]).
    pub open: crate::auth::Open,
}

impl LocalSub {
    /// Sets the options of `slot`'s entry in `subs`, adding it if absent; true if added.
    pub fn upsert(subs: &mut Vec<LocalSub>, slot: u32, opts: SubOptions, open: crate::auth::Open) -> bool {
        match subs.iter_mut().find(|s| s.slot == slot) {
            Some(s) => {
                s.opts = opts;
                s.open = open;
                false
            }
            None => {
                subs.push(LocalSub { slot, opts, open });
                true
            }
        }
    }
}

/// Interest in one filter, as seen by a shard that may own matching topics: how many
/// subscriptions each origin shard holds. Updates are +1/-1 per subscription, so they
/// commute: batches from different connections of one origin may arrive in any order and
/// the count still ends right.
#[derive(Debug)]
pub struct Interest {
    /// Shards with a positive count.
    pub shards: ShardSet,
    counts: Box<[i64]>,
    /// Shared subscription groups over this filter, with their members per shard.
    pub groups: Vec<Group>,
}

impl Interest {
    /// No interest yet, on a node of `shards` shards.
    pub fn new(shards: usize) -> Self {
        Interest { shards: ShardSet::new(shards), counts: vec![0; shards].into_boxed_slice(), groups: Vec::new() }
    }

    /// Adds `delta` to `origin`'s count. Returns true when the entry is now empty.
    pub fn apply(&mut self, origin: usize, delta: i64) -> bool {
        self.counts[origin] += delta;
        self.shards.set(origin, self.counts[origin] > 0);
        self.is_empty()
    }

    /// Adds `delta` to `origin`'s member count of group `key`. Returns true when the
    /// entry is now empty.
    pub fn apply_shared(&mut self, key: &str, origin: usize, delta: i64) -> bool {
        let shards = self.counts.len();
        let at = match self.groups.iter().position(|g| &*g.key == key) {
            Some(at) => at,
            None => {
                self.groups.push(Group::new(Arc::from(key), shards));
                self.groups.len() - 1
            }
        };
        if self.groups[at].apply(origin, delta) {
            self.groups.swap_remove(at);
        }
        self.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.counts.iter().all(|c| *c == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Interest;

    fn members(i: &Interest) -> Vec<usize> {
        i.shards.iter().collect()
    }

    #[test]
    fn interest_counts_commute() {
        // Unsubscribe of one client overtaking the subscribe of another on the same origin.
        let mut i = Interest::new(3);
        assert!(!i.apply(1, -1), "a negative count is kept, not dropped");
        assert!(members(&i).is_empty());
        assert!(i.apply(1, 1), "back to zero: empty");
        assert!(members(&i).is_empty());
        assert!(!i.apply(1, 1));
        assert_eq!(members(&i), [1]);
        assert!(!i.apply(2, 1));
        assert_eq!(members(&i), [1, 2]);
        assert!(!i.apply(1, -1));
        assert_eq!(members(&i), [2]);
        assert!(i.apply(2, -1));
        assert!(members(&i).is_empty());
    }

    #[test]
    fn interest_past_64_shards() {
        let mut i = Interest::new(130);
        for origin in [0, 63, 64, 100, 129] {
            assert!(!i.apply(origin, 1));
        }
        assert_eq!(members(&i), [0, 63, 64, 100, 129]);
        i.apply(64, -1);
        assert_eq!(members(&i), [0, 63, 100, 129]);
    }
}
