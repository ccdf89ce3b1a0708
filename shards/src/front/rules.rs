//! The front's rules on what a client sends, shared by the handshake and the client
//! path: topic names and filters within the configured limits and the topic rules, and
//! the bound on one enhanced authentication exchange.

use crate::config::Limits;

/// Most challenge rounds of one enhanced authentication exchange (at CONNECT, and each
/// re-authentication).
pub const MAX_AUTH_ROUNDS: usize = 8;

/// True when `topic` passes the configured length and level limits and the topic rules.
pub fn topic_allowed(limits: &Limits, topic: &str) -> bool {
    topic.len() <= limits.max_topic_length
        && topic.split('/').count() <= limits.max_topic_levels
        && proto::topic::valid_topic(topic)
}

/// The limits part of [`topic_allowed`] for a topic the codec already validated (UTF-8,
/// no wildcards, no U+0000): no second UTF-8 pass on the hot path.
pub fn topic_within_limits(limits: &Limits, topic: &[u8]) -> bool {
    !topic.is_empty()
        && topic.len() <= limits.max_topic_length
        && topic.iter().filter(|b| **b == b'/').count() < limits.max_topic_levels
}

/// True when `filter` passes the configured length and level limits and the filter rules.
pub fn filter_allowed(limits: &Limits, filter: &str) -> bool {
    filter.len() <= limits.max_topic_length
        && filter.split('/').count() <= limits.max_topic_levels
        && proto::topic::valid_filter(filter)
}
