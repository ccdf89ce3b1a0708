//! Fuzz target `topic`: the topic rules in `proto::topic` on arbitrary UTF-8.
//!
//! The input is split at its first 0xFF byte (never part of UTF-8) into a filter and a
//! topic; without one, the whole input serves as both. None of the functions may panic,
//! and:
//! - `matches` agrees with a second, non-recursive statement of spec 4.7 for every valid
//!   plain filter and valid topic;
//! - a valid topic name matches itself, and is a valid filter unless it starts `$share/`;
//! - `parse_shared` only splits `$share/{group}/{filter}` into its non-empty parts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::topic::{matches, parse_shared, valid_filter, valid_topic};

/// Spec 4.7 stated by level counts: a filter ending in `#` matches a topic with at least the
/// levels before the `#`; any other filter, a topic with as many levels; `+` matches any one
/// level, other levels only themselves; wildcards at the start never match a `$` topic.
fn reference_match(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    let (fixed, rest_allowed) = match filter.split_last() {
        Some((&"#", before)) => (before, true),
        _ => (&filter[..], false),
    };
    let length_ok = if rest_allowed { topic.len() >= fixed.len() } else { topic.len() == fixed.len() };
    length_ok && fixed.iter().zip(&topic).all(|(f, t)| *f == "+" || f == t)
}

fn check_shared(filter: &str) {
    if let Some((group, inner)) = parse_shared(filter) {
        assert!(!group.is_empty() && !inner.is_empty() && !group.contains('/'), "{filter:?}");
        assert_eq!(format!("$share/{group}/{inner}"), filter);
    }
}

fn check(filter: &str, topic: &str) {
    let filter_ok = valid_filter(filter);
    let topic_ok = valid_topic(topic);
    check_shared(filter);
    check_shared(topic);
    // No panics on anything, valid or not.
    let found = matches(filter, topic);
    let _ = (valid_filter(topic), valid_topic(filter), matches(topic, filter));

    if filter_ok {
        assert!(!filter.is_empty() && !filter.contains('\0'), "{filter:?}");
    }
    if topic_ok {
        assert!(matches(topic, topic), "{topic:?} does not match itself");
        if !topic.starts_with("$share/") {
            assert!(valid_filter(topic), "topic {topic:?} is not a valid filter");
        }
    }
    if filter_ok && topic_ok && parse_shared(filter).is_none() {
        assert_eq!(found, reference_match(filter, topic), "filter {filter:?}, topic {topic:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let (filter, topic) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    if let (Ok(filter), Ok(topic)) = (std::str::from_utf8(filter), std::str::from_utf8(topic)) {
        check(filter, topic);
    }
});
