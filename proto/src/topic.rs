//! Topic rules (spec 4.7): validity of PUBLISH topic names and subscription filters,
//! filter matching, and splitting shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0
//! section 4.8.2).
//!
//! These are pure string functions: the codec only enforces what makes a packet malformed
//! (wildcards in a PUBLISH topic); filter validity is the broker's call, answered per filter
//! in SUBACK/UNSUBACK.

const SHARE_PREFIX: &str = "$share/";

/// A PUBLISH topic name: non-empty (V5 may be empty only with a topic alias: the caller checks),
/// valid UTF-8 (already guaranteed by decode), no '+' or '#', no U+0000.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A subscription filter: non-empty; '#' only as the last level and alone in its level;
/// '+' alone in its level; no U+0000. Also accepts `$share/{group}/{filter}` when group is
/// non-empty without '+', '#', '/', U+0000 and filter valid.
pub fn valid_filter(filter: &str) -> bool {
    if filter.starts_with(SHARE_PREFIX) {
        return match parse_shared(filter) {
            Some((group, inner)) => !group.contains(['+', '#', '\0']) && valid_plain_filter(inner),
            None => false,
        };
    }
    valid_plain_filter(filter)
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// Does `filter` match `topic` (spec 4.7): '+' one level, '#' this and all below incl. parent
/// ("a/#" matches "a"); a filter starting with a wildcard does not match a topic starting with '$'.
///
/// `filter` is a plain filter: strip a `$share/{group}/` prefix with [`parse_shared`] first.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits "$share/group/filter" -> Some(("group", "filter")).
///
/// None when `filter` does not start with `$share/`, or the group or the inner filter is
/// empty. The parts are not otherwise validated: use [`valid_filter`] for that.
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || inner.is_empty() {
        return None;
    }
    Some((group, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(valid_topic("a"));
        assert!(valid_topic("/"));
        assert!(valid_topic("sport/tennis/player1"));
        assert!(valid_topic("$SYS/broker/uptime"));
        assert!(valid_topic("a//b "));
        assert!(!valid_topic(""));
        assert!(!valid_topic("sport/+"));
        assert!(!valid_topic("sport/#"));
        assert!(!valid_topic("sport+"));
        assert!(!valid_topic("a\0b"));
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "/",
            "+/+",
            "/+",
            "sport/#",
            "sport/tennis/#",
            "sport/tennis/+",
            "sport/+/player1",
            "+/tennis/#",
            "$SYS/#",
            "a//b",
            "$share/group/a/b",
            "$share/g/#",
            "$share/g/+/x",
            "$share",
            "$shared/x",
        ] {
            assert!(valid_filter(ok), "{ok:?} should be valid");
        }
        for bad in [
            "",
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "#/a",
            "sport+",
            "sport/+tennis",
            "a/b\0",
            "$share/",
            "$share/group",
            "$share/group/",
            "$share//a",
            "$share/gr+oup/a",
            "$share/gr#oup/a",
            "$share/g/a/#/b",
        ] {
            assert!(!valid_filter(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn matching_spec_examples() {
        // 4.7.1.2 multi-level wildcard
        let f = "sport/tennis/player1/#";
        assert!(matches(f, "sport/tennis/player1"));
        assert!(matches(f, "sport/tennis/player1/ranking"));
        assert!(matches(f, "sport/tennis/player1/score/wimbledon"));
        assert!(!matches(f, "sport/tennis/player2"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "sport/tennis"));
        // 4.7.1.3 single-level wildcard
        let f = "sport/tennis/+";
        assert!(matches(f, "sport/tennis/player1"));
        assert!(matches(f, "sport/tennis/player2"));
        assert!(!matches(f, "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("+/tennis/#", "sport/tennis/x/y"));
        assert!(matches("sport/+/player1", "sport/tennis/player1"));
    }

    #[test]
    fn matching_edges() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/#", "ab"));
        assert!(!matches("+", "a/b"));
        assert!(matches("+", "a"));
        assert!(matches("a/+", "a/"));
        assert!(!matches("a/+", "a"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("a/b", "a/c"));
        assert!(!matches("A", "a"));
    }

    #[test]
    fn matching_dollar_topics() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(!matches("+", "$SYS"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS"));
        assert!(matches("$SYS/+", "$SYS/x"));
        assert!(matches("$SYS/x", "$SYS/x"));
        // '$' is only special at the start of the topic.
        assert!(matches("a/+", "a/$x"));
        assert!(matches("#", "a/$x"));
    }

    #[test]
    fn shared() {
        assert_eq!(parse_shared("$share/group/a/b"), Some(("group", "a/b")));
        assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(parse_shared("$share/g+/#"), Some(("g+", "#")));
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share"), None);
        assert_eq!(parse_shared("$share/group"), None);
        assert_eq!(parse_shared("$share/group/"), None);
        assert_eq!(parse_shared("$share//a"), None);
        assert_eq!(parse_shared("$SHARE/g/a"), None);
        assert_eq!(parse_shared("$shared/g/a"), None);
    }
}
