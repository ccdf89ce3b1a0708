//! A topic trie: subscription filters (with `+` and `#`) stored level by level, matched
//! against concrete topic names.
//!
//! Owned by one shard and never shared. The same structure serves two indexes:
//! the shard's *local* subscriptions (filter -> sessions on this shard) and its *interest*
//! table (filter -> bitmask of shards with at least one subscriber). Matching follows
//! MQTT 4.7: `+` matches exactly one level, `#` matches the parent level and everything
//! below it, and a filter starting with a wildcard never matches a topic starting with `$`.
//!
//! Every walk (insert, lookup, update and prune, match, drop) is a loop, never a recursion
//! per level: a filter with as many levels as `max_topic_length` allows costs heap, not
//! stack.
//!
//! A leaf: the engine's local and interest tries.

use std::collections::HashMap;

/// Children are keyed by level with a randomly seeded hasher: as resistant to flooding
/// as std's SipHash, and several times faster on the short keys topic levels are.
type Children<V> = HashMap<Box<[u8]>, Node<V>, ahash::RandomState>;

/// A trie of filters, each holding a value `V`.
pub struct TopicTrie<V> {
    root: Node<V>,
    len: usize,
}

impl<V> std::fmt::Debug for TopicTrie<V> {
    /// The size only: a derived form would recurse once per level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicTrie").field("len", &self.len).finish_non_exhaustive()
    }
}

struct Node<V> {
    children: Children<V>,
    plus: Option<Box<Node<V>>>,
    /// Value of the filter that ends in `#` at this node.
    hash: Option<V>,
    /// Value of the filter that ends exactly at this node.
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node { children: Children::default(), plus: None, hash: None, value: None }
    }
}

impl<V> Node<V> {
    /// Links to child nodes.
    fn links(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    fn holds(&self) -> bool {
        self.hash.is_some() || self.value.is_some()
    }

    /// The child one filter level (`+` or a name) leads to.
    fn child(&self, level: &str) -> Option<&Node<V>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level.as_bytes())
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level.as_bytes())
        }
    }

    /// Moves the children onto `stack`.
    fn take_children(&mut self, stack: &mut Vec<Node<V>>) {
        stack.extend(self.children.drain().map(|(_, child)| child));
        stack.extend(self.plus.take().map(|plus| *plus));
    }
}

impl<V> Drop for Node<V> {
    /// Takes the subtree apart in a loop: a derived drop recurses once per level. The
    /// nodes popped here are childless by the time they drop, so their drop returns at once.
    fn drop(&mut self) {
        if self.links() == 0 {
            return;
        }
        let mut stack = Vec::new();
        self.take_children(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.take_children(&mut stack);
        }
    }
}

/// The levels leading to the node of `filter`, and whether its value is that node's `#`
/// value (the filter ends in `#`).
fn path(filter: &str) -> (impl Iterator<Item = &str> + Clone, bool) {
    let (prefix, hash) = match filter.strip_suffix('#') {
        Some("") => (None, true),
        Some(p) if p.ends_with('/') => (Some(&p[..p.len() - 1]), true),
        _ => (Some(filter), false),
    };
    (prefix.into_iter().flat_map(|p| p.split('/')), hash)
}

/// Branches a match has still to walk, last in first out: a few in place, more on the
/// heap, so a common match allocates nothing.
struct Branches<T> {
    near: [Option<T>; 8],
    len: usize,
    far: Vec<T>,
}

impl<T: Copy> Branches<T> {
    fn new() -> Self {
        Branches { near: [None; 8], len: 0, far: Vec::new() }
    }

    fn push(&mut self, t: T) {
        match self.near.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(t);
                self.len += 1;
            }
            None => self.far.push(t),
        }
    }

    fn pop(&mut self) -> Option<T> {
        if let Some(t) = self.far.pop() {
            return Some(t);
        }
        self.len = self.len.checked_sub(1)?;
        self.near[self.len].take()
    }
}

impl<V> Default for TopicTrie<V> {
    fn default() -> Self {
        TopicTrie { root: Node::default(), len: 0 }
    }
}

impl<V> TopicTrie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of filters stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no filter is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value stored for `filter`, created with `init` when absent.
    pub fn entry(&mut self, filter: &str, init: impl FnOnce() -> V) -> &mut V {
        let (levels, hash) = path(filter);
        let mut node = &mut self.root;
        for level in levels {
            node = if level == "+" {
                node.plus.get_or_insert_with(Default::default)
            } else {
                node.children.entry(level.as_bytes().into()).or_default()
            };
        }
        let slot = if hash { &mut node.hash } else { &mut node.value };
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(init)
    }

    /// The value stored for `filter`, if any.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut V> {
        let (levels, hash) = path(filter);
        let mut node = &mut self.root;
        for level in levels {
            node = node.child_mut(level)?;
        }
        if hash {
            node.hash.as_mut()
        } else {
            node.value.as_mut()
        }
    }

    /// Applies `edit` to the value of `filter`; when it returns true the value is removed
    /// and empty nodes on the way are pruned. Returns None when the filter is absent.
    pub fn update(&mut self, filter: &str, edit: impl FnOnce(&mut V) -> bool) -> Option<bool> {
        let (levels, hash) = path(filter);
        let mut node = &mut self.root;
        for level in levels.clone() {
            node = node.child_mut(level)?;
        }
        let slot = if hash { &mut node.hash } else { &mut node.value };
        if !edit(slot.as_mut()?) {
            return Some(false);
        }
        *slot = None;
        self.len -= 1;
        self.prune(levels);
        Some(true)
    }

    /// Cuts off the empty end of the branch along `levels`: the longest run of nodes down
    /// to its last one that hold nothing but the link to the next.
    fn prune<'f>(&mut self, levels: impl Iterator<Item = &'f str> + Clone) {
        // First walk: the depth of the parent whose link to cut.
        let mut cut = None;
        let mut node = &self.root;
        let mut walk = levels.clone().enumerate().peekable();
        while let Some((depth, level)) = walk.next() {
            let Some(child) = node.child(level) else { return };
            let last = walk.peek().is_none();
            let bare = !child.holds() && child.links() == usize::from(!last);
            cut = match (bare, cut) {
                (false, _) => None,
                (true, None) => Some(depth),
                (true, kept) => kept,
            };
            node = child;
        }
        let Some(cut) = cut else { return };
        // Second walk: down to that parent; the cut branch drops in a loop (see Node::drop).
        let mut levels = levels;
        let mut node = &mut self.root;
        for level in levels.by_ref().take(cut) {
            let Some(child) = node.child_mut(level) else { return };
            node = child;
        }
        match levels.next() {
            Some("+") => node.plus = None,
            Some(level) => drop(node.children.remove(level.as_bytes())),
            None => {}
        }
    }

    /// Calls `visit` with the value of every filter matching `topic`.
    ///
    /// A depth-first walk: at each node the `+` branch is walked before the named one,
    /// and the branch not taken waits in `Branches`. `rest` is what is left of the topic,
    /// `None` once every level is consumed; levels are cut off the front as the walk
    /// descends, so a match never splits the whole topic.
    pub fn matches<'a>(&'a self, topic: &[u8], mut visit: impl FnMut(&'a V)) {
        // A topic starting with `$` is shielded from the root's wildcards.
        let mut shielded = topic.first() == Some(&b'$');
        let mut pending = Branches::new();
        let mut next = Some((&self.root, Some(topic)));
        while let Some((node, rest)) = next.take().or_else(|| pending.pop()) {
            if !shielded {
                if let Some(v) = &node.hash {
                    visit(v);
                }
            }
            let Some(rest) = rest else {
                if let Some(v) = &node.value {
                    visit(v);
                }
                continue;
            };
            let (level, rest) = match rest.iter().position(|&b| b == b'/') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            let plus = if shielded { None } else { node.plus.as_deref() };
            shielded = false;
            next = match (plus, node.children.get(level)) {
                (Some(plus), Some(named)) => {
                    pending.push((named, rest));
                    Some((plus, rest))
                }
                (one, other) => one.or(other).map(|n| (n, rest)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(trie: &TopicTrie<u32>, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        trie.matches(topic.as_bytes(), |v| out.push(*v));
        out.sort();
        out
    }

    #[test]
    fn wildcards_and_dollar_topics() {
        let mut t = TopicTrie::new();
        *t.entry("a/b", || 0) = 1;
        *t.entry("a/+", || 0) = 2;
        *t.entry("a/#", || 0) = 3;
        *t.entry("#", || 0) = 4;
        *t.entry("+/b", || 0) = 5;
        *t.entry("$SYS/#", || 0) = 6;
        assert_eq!(matched(&t, "a/b"), vec![1, 2, 3, 4, 5]);
        assert_eq!(matched(&t, "a"), vec![3, 4]);
        assert_eq!(matched(&t, "a/c/d"), vec![3, 4]);
        assert_eq!(matched(&t, "$SYS/b"), vec![6]);
        assert_eq!(matched(&t, "$SYS"), vec![6]);
        assert_eq!(matched(&t, "a/"), vec![2, 3, 4]);
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn update_removes_and_prunes() {
        let mut t = TopicTrie::new();
        *t.entry("a/+/c", || 0) = 1;
        *t.entry("a/#", || 0) = 2;
        assert_eq!(t.update("a/+/c", |_| true), Some(true));
        assert_eq!(t.update("a/+/c", |_| true), None);
        assert_eq!(matched(&t, "a/b/c"), vec![2]);
        assert_eq!(
            t.update("a/#", |v| {
                *v = 7;
                false
            }),
            Some(false)
        );
        assert_eq!(matched(&t, "a/b/c"), vec![7]);
        assert_eq!(t.update("a/#", |_| true), Some(true));
        assert!(t.is_empty());
        assert!(t.root.links() == 0 && !t.root.holds());
    }

    #[test]
    fn prune_keeps_what_others_still_use() {
        let mut t = TopicTrie::new();
        for (f, v) in [("a/b/c/d", 1), ("a/b", 2), ("a/+/c", 3), ("a/b/#", 4), ("/#", 5)] {
            *t.entry(f, || 0) = v;
        }
        assert_eq!(t.update("a/b/c/d", |_| true), Some(true));
        assert_eq!(matched(&t, "a/b"), vec![2, 4]);
        assert_eq!(matched(&t, "a/b/c"), vec![3, 4]);
        assert_eq!(t.update("a/b", |_| true), Some(true));
        assert_eq!(matched(&t, "a/b/c"), vec![3, 4]);
        assert_eq!(t.update("a/b/#", |_| true), Some(true));
        assert_eq!(matched(&t, "a/b/c"), vec![3]);
        assert_eq!(matched(&t, "/x"), vec![5]);
        assert_eq!(t.update("a/+/c", |_| true), Some(true));
        assert_eq!(t.update("/#", |_| true), Some(true));
        assert!(t.is_empty());
        assert!(t.root.links() == 0 && !t.root.holds(), "every branch pruned");
    }

    #[test]
    fn many_pending_branches_all_match() {
        // Every combination of `+` and the name over 12 levels: 4096 filters, all matching,
        // so the walk keeps far more than 8 branches waiting.
        let mut t = TopicTrie::new();
        for mask in 0u32..4096 {
            let f: Vec<String> =
                (0..12).map(|i| if mask & (1 << i) != 0 { "+".to_owned() } else { format!("l{i}") }).collect();
            *t.entry(&f.join("/"), || 0) = mask;
        }
        let topic: Vec<String> = (0..12).map(|i| format!("l{i}")).collect();
        assert_eq!(matched(&t, &topic.join("/")), (0..4096).collect::<Vec<_>>());
    }

    /// Issue 10: walks are loops, so 100 000 levels run on a 256 KiB stack.
    #[test]
    fn deep_filters_need_no_stack_issue_10() {
        let run = || {
            let topic = vec!["a"; 100_000].join("/");
            let plus: Vec<&str> = (0..100_000).map(|i| if i % 2 == 0 { "a" } else { "+" }).collect();
            let plus = plus.join("/");
            let hash = format!("{}/#", vec!["a"; 99_999].join("/"));
            let mut t = TopicTrie::new();
            for (i, f) in [&topic, &plus, &hash].into_iter().enumerate() {
                *t.entry(f, || 0) = i as u32 + 1;
            }
            assert_eq!(matched(&t, &topic), vec![1, 2, 3]);
            assert_eq!(t.get_mut(&plus).copied(), Some(2));
            assert_eq!(t.update(&topic, |_| true), Some(true));
            assert_eq!(matched(&t, &topic), vec![2, 3]);
            // Dropped with two deep branches left.
            drop(t);
        };
        std::thread::Builder::new().stack_size(256 * 1024).spawn(run).unwrap().join().unwrap();
    }

    #[test]
    fn deep_topics_spill_to_heap() {
        let mut t = TopicTrie::new();
        let deep: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let topic = deep.join("/");
        *t.entry(&topic, || 0) = 9;
        *t.entry("0/#", || 0) = 8;
        assert_eq!(matched(&t, &topic), vec![8, 9]);
    }
}
