//! [`ShardSet`]: a set of shard indexes, the destinations of one message. The first 64
//! shards live inline (no allocation for the common machine); a node with more carries
//! the rest in a boxed tail of words, so the set itself has no fixed cap (the node's is
//! [`crate::node::MAX_SHARDS`]).
//!
//! A leaf of the route layer: the engine's interest tables and deliveries build and walk
//! these sets; nothing in it knows about messages.

/// A set of shard indexes below the node's shard count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSet {
    first: u64,
    more: Box<[u64]>,
}

impl ShardSet {
    /// The empty set for a node of `shards` shards.
    pub fn new(shards: usize) -> Self {
        let words = shards.div_ceil(64).saturating_sub(1);
        ShardSet { first: 0, more: vec![0; words].into_boxed_slice() }
    }

    fn word(&mut self, shard: usize) -> &mut u64 {
        match shard / 64 {
            0 => &mut self.first,
            w => &mut self.more[w - 1],
        }
    }

    /// Adds `shard` (`on`) or removes it.
    pub fn set(&mut self, shard: usize, on: bool) {
        let bit = 1u64 << (shard % 64);
        let w = self.word(shard);
        if on {
            *w |= bit;
        } else {
            *w &= !bit;
        }
    }

    /// True when `shard` is in the set.
    pub fn contains(&self, shard: usize) -> bool {
        let w = match shard / 64 {
            0 => self.first,
            w => self.more.get(w - 1).copied().unwrap_or(0),
        };
        w & (1u64 << (shard % 64)) != 0
    }

    /// Adds every shard of `other` (a set of the same node).
    pub fn union(&mut self, other: &ShardSet) {
        self.first |= other.first;
        for (a, b) in self.more.iter_mut().zip(other.more.iter()) {
            *a |= *b;
        }
    }

    /// Empties the set, keeping its size.
    pub fn clear(&mut self) {
        self.first = 0;
        self.more.iter_mut().for_each(|w| *w = 0);
    }

    /// True when no shard is in the set.
    pub fn is_empty(&self) -> bool {
        self.first == 0 && self.more.iter().all(|w| *w == 0)
    }

    /// The shards in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.first).chain(self.more.iter().copied()).enumerate().flat_map(|(i, mut w)| {
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ShardSet;

    #[test]
    fn sets_past_one_word() {
        let mut a = ShardSet::new(192);
        let mut b = ShardSet::new(192);
        a.set(3, true);
        a.set(70, true);
        b.set(191, true);
        b.set(3, true);
        a.union(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), [3, 70, 191]);
        assert!(a.contains(191) && !a.contains(190));
        a.set(70, false);
        assert_eq!(a.iter().collect::<Vec<_>>(), [3, 191]);
        a.clear();
        assert!(a.is_empty());
        let small = ShardSet::new(2);
        assert!(small.more.is_empty(), "two shards need no allocation");
    }
}
