//! A topic trie: subscription filters (with `+` and `#`) stored level by level, matched
//! against concrete topic names.
//!
//! Owned by one shard and never shared. The same structure serves two indexes:
//! the shard's *local* subscriptions (filter -> sessions on this shard) and its *interest*
//! table (filter -> bitmask of shards with at least one subscriber). Matching follows
//! MQTT 4.7: `+` matches exactly one level, `#` matches the parent level and everything
//! below it, and a filter starting with a wildcard never matches a topic starting with `$`.

use std::collections::HashMap;

/// Children are keyed by level with a randomly seeded hasher: as resistant to flooding
/// as std's SipHash, and several times faster on the short keys topic levels are.
type Children<V> = HashMap<Box<[u8]>, Node<V>, ahash::RandomState>;

/// A trie of filters, each holding a value `V`.
#[derive(Debug)]
pub struct TopicTrie<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Debug)]
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
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.hash.is_none() && self.value.is_none()
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
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            let last = levels.peek().is_none();
            if level == "#" && last {
                if node.hash.is_none() {
                    self.len += 1;
                }
                return node.hash.get_or_insert_with(init);
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Default::default)
            } else {
                node.children.entry(level.as_bytes().into()).or_default()
            };
        }
        if node.value.is_none() {
            self.len += 1;
        }
        node.value.get_or_insert_with(init)
    }

    /// The value stored for `filter`, if any.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.hash.as_mut();
            }
            node = if level == "+" { node.plus.as_deref_mut()? } else { node.children.get_mut(level.as_bytes())? };
        }
        node.value.as_mut()
    }

    /// Applies `edit` to the value of `filter`; when it returns true the value is removed
    /// and empty nodes on the way are pruned. Returns None when the filter is absent.
    pub fn update(&mut self, filter: &str, edit: impl FnOnce(&mut V) -> bool) -> Option<bool> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = Self::update_at(&mut self.root, &levels, edit)?;
        if removed {
            self.len -= 1;
        }
        Some(removed)
    }

    fn update_at(node: &mut Node<V>, levels: &[&str], edit: impl FnOnce(&mut V) -> bool) -> Option<bool> {
        let Some((level, rest)) = levels.split_first() else {
            let value = node.value.as_mut()?;
            let remove = edit(value);
            if remove {
                node.value = None;
            }
            return Some(remove);
        };
        if *level == "#" && rest.is_empty() {
            let value = node.hash.as_mut()?;
            let remove = edit(value);
            if remove {
                node.hash = None;
            }
            return Some(remove);
        }
        if *level == "+" {
            let child = node.plus.as_deref_mut()?;
            let removed = Self::update_at(child, rest, edit)?;
            if child.is_empty() {
                node.plus = None;
            }
            Some(removed)
        } else {
            let child = node.children.get_mut(level.as_bytes())?;
            let removed = Self::update_at(child, rest, edit)?;
            if child.is_empty() {
                node.children.remove(level.as_bytes());
            }
            Some(removed)
        }
    }

    /// Calls `visit` with the value of every filter matching `topic`.
    pub fn matches<'a>(&'a self, topic: &[u8], mut visit: impl FnMut(&'a V)) {
        let dollar = topic.first() == Some(&b'$');
        Self::match_at(&self.root, Some(topic), true, dollar, &mut visit);
    }

    /// `rest` is what is left of the topic, `None` once every level is consumed; levels are
    /// cut off the front as the walk descends, so a match never splits the whole topic.
    fn match_at<'a>(node: &'a Node<V>, rest: Option<&[u8]>, first: bool, dollar: bool, visit: &mut impl FnMut(&'a V)) {
        let shielded = first && dollar;
        if !shielded {
            if let Some(v) = &node.hash {
                visit(v);
            }
        }
        let Some(rest) = rest else {
            if let Some(v) = &node.value {
                visit(v);
            }
            return;
        };
        let (level, rest) = match rest.iter().position(|&b| b == b'/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if !shielded {
            if let Some(plus) = &node.plus {
                Self::match_at(plus, rest, false, dollar, visit);
            }
        }
        if let Some(child) = node.children.get(level) {
            Self::match_at(child, rest, false, dollar, visit);
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
        assert!(t.root.is_empty());
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
