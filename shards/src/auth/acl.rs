//! ACL files in Mosquitto's format, read unchanged: `user NAME` starts a user's rules,
//! `topic [read|write|readwrite|deny] FILTER` grants (or denies) one filter (no access
//! word: readwrite), `pattern ...` is a rule for every client with `%c` (client id) and
//! `%u` (user name) put in, and `topic` lines before any `user` are the anonymous
//! clients'. `#` comments and blank lines are skipped.
//!
//! Judging, as Mosquitto does: a matching `deny` refuses whatever grants; then any rule
//! granting the access allows; nothing else is allowed. PUBLISH and the will need write on
//! the topic; delivery (live or retained) needs read on it; a SUBSCRIBE needs a read rule
//! whose filter covers the whole subscription, and no deny rule covering it (a `#`
//! subscription is allowed under `topic read #` beside `topic deny secret/#`, and delivery
//! then leaves `secret/...` out). Wildcards never match a `$` topic's first level.
//!
//! Used by [`super::FileAuthorizer`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use super::{Action, AuthError};

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, write: bool) -> bool {
        match self {
            Access::ReadWrite => true,
            Access::Read => !write,
            Access::Write => write,
            Access::Deny => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// An ACL file, read.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
    lines: usize,
}

fn parse_rule(rest: &str) -> Result<Rule, &'static str> {
    let rest = rest.trim_start();
    let (word, after) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let access = match word {
        "read" => Some(Access::Read),
        "write" => Some(Access::Write),
        "readwrite" => Some(Access::ReadWrite),
        "deny" => Some(Access::Deny),
        _ => None,
    };
    // The filter is the rest of the line (it may hold spaces).
    let (access, filter) = match access {
        Some(a) if !after.trim().is_empty() => (a, after.trim()),
        Some(_) => return Err("a rule needs a topic filter"),
        None => (Access::ReadWrite, rest.trim()),
    };
    if filter.is_empty() {
        return Err("a rule needs a topic filter");
    }
    if !filter_valid(filter) {
        return Err("not a valid topic filter");
    }
    Ok(Rule { access, filter: filter.to_owned() })
}

fn filter_valid(f: &str) -> bool {
    let levels: Vec<&str> = f.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

impl AclFile {
    /// Reads the file; an unknown line is an error naming the file and the line.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::file(path, None, e))?;
        Self::parse(&text).map_err(|(line, what)| AuthError::file(path, Some(line), what))
    }

    /// Parses the text of an ACL file; Err: the line number and what is wrong.
    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            match word {
                "user" => {
                    let name = rest.trim();
                    if name.is_empty() {
                        return Err((n + 1, "user needs a name"));
                    }
                    acl.users.entry(name.to_owned()).or_default();
                    user = Some(name.to_owned());
                }
                "topic" => {
                    let rule = parse_rule(rest).map_err(|e| (n + 1, e))?;
                    match &user {
                        Some(u) => acl.users.entry(u.clone()).or_default().push(rule),
                        None => acl.anonymous.push(rule),
                    }
                }
                "pattern" => acl.patterns.push(parse_rule(rest).map_err(|e| (n + 1, e))?),
                _ => return Err((n + 1, "expected user, topic or pattern")),
            }
            acl.lines += 1;
        }
        Ok(acl)
    }

    /// Rules read (user, topic and pattern lines).
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// The rules that apply to the client: its own (or the anonymous ones), then the
    /// patterns with `%c` and `%u` put in (those that cannot apply left out).
    fn rules<'a>(
        &'a self,
        username: Option<&'a str>,
        client_id: &'a str,
    ) -> impl Iterator<Item = (Access, Cow<'a, str>)> + 'a {
        let own = match username {
            Some(u) => self.users.get(u).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let own = own.iter().map(|r| (r.access, Cow::Borrowed(r.filter.as_str())));
        let patterns = self
            .patterns
            .iter()
            .filter_map(move |r| Some((r.access, Cow::Owned(substitute(&r.filter, username, client_id)?))));
        own.chain(patterns)
    }

    /// True when the client (`username`, `client_id`) may do `action` with `topic` (a
    /// filter for [`Action::Subscribe`]).
    pub fn allow(&self, username: Option<&str>, client_id: &str, action: Action, topic: &str) -> bool {
        let subscribe = action == Action::Subscribe;
        let write = matches!(action, Action::Publish | Action::Will);
        let mut granted = false;
        for (access, filter) in self.rules(username, client_id) {
            let hit = if subscribe { covers(&filter, topic) } else { matches(&filter, topic) };
            if hit {
                if access == Access::Deny {
                    return false;
                }
                granted |= access.grants(write);
            }
        }
        granted
    }

    /// True when the client may read every topic `filter` matches: a read rule covers it
    /// and no deny rule meets it.
    pub fn reads_all(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let mut covered = false;
        for (access, f) in self.rules(username, client_id) {
            if access == Access::Deny {
                if intersects(&f, filter) {
                    return false;
                }
            } else if access.grants(false) && covers(&f, filter) {
                covered = true;
            }
        }
        covered
    }
}

/// True when some topic name matches both filters.
pub fn intersects(a: &str, b: &str) -> bool {
    let mut x = a.split('/');
    let mut y = b.split('/');
    let mut first = true;
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            // `a/#` also matches `a`.
            (Some("#"), None) | (None, Some("#")) => return true,
            (None, _) | (_, None) => return false,
            // A wildcard first level never meets a `$` topic.
            (Some(l), Some(m)) if first && (is_wild(l) && m.starts_with('$') || is_wild(m) && l.starts_with('$')) => {
                return false
            }
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), _) | (_, Some("+")) => {}
            (Some(l), Some(m)) if l == m => {}
            _ => return false,
        }
        first = false;
    }
}

fn is_wild(level: &str) -> bool {
    level == "+" || level == "#"
}

/// A pattern's filter with `%c` and `%u` put in; None when it cannot apply (no user name
/// for `%u`, or a value that would widen the filter: `/`, `+`, `#`).
fn substitute(filter: &str, username: Option<&str>, client_id: &str) -> Option<String> {
    let unsafe_value = |v: &str| v.contains(['/', '+', '#']);
    let mut out = filter.to_owned();
    if out.contains("%c") {
        if unsafe_value(client_id) {
            return None;
        }
        out = out.replace("%c", client_id);
    }
    if out.contains("%u") {
        let u = username.filter(|u| !unsafe_value(u))?;
        out = out.replace("%u", u);
    }
    Some(out)
}

/// True when topic name `topic` matches `filter` (wildcards do not match a first level
/// starting with `$`).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    let mut first = true;
    loop {
        match (f.next(), t.next()) {
            (Some("#"), Some(l)) => return !(first && l.starts_with('$')),
            (Some("#"), None) => return true,
            (Some("+"), Some(l)) if !(first && l.starts_with('$')) => {}
            (Some(a), Some(b)) if a == b && a != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// True when every topic matching filter `sub` also matches filter `rule`.
pub fn covers(rule: &str, sub: &str) -> bool {
    let mut r = rule.split('/');
    let mut s = sub.split('/');
    let mut first = true;
    loop {
        match (r.next(), s.next()) {
            // A root wildcard does not reach `$` topics, and a `$` subscription does not
            // reach past them either.
            (Some("#"), Some(l)) => return !(first && l.starts_with('$')),
            (Some("#"), None) => return true,
            (Some("+"), Some(l)) if l != "#" && !(first && l.starts_with('$')) => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_covering_follow_the_topic_rules() {
        assert!(matches("a/+/c", "a/b/c") && !matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a") && matches("a/#", "a/b/c") && matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x") && !matches("+/x", "$SYS/x") && matches("$SYS/#", "$SYS/x"));
        assert!(covers("a/#", "a/+/c") && covers("a/+/c", "a/b/c") && covers("#", "#"));
        assert!(!covers("a/+", "a/#") && !covers("a/b", "a/+") && !covers("#", "$SYS/#"));
        assert!(covers("$SYS/#", "$SYS/broker/+") && covers("a/#", "a"));
    }

    #[test]
    fn filters_meet_when_a_topic_matches_both() {
        assert!(
            intersects("a/#", "a/+/c") && intersects("a/+", "+/b") && intersects("#", "x") && intersects("a/#", "a")
        );
        assert!(!intersects("a/b", "a/c") && !intersects("a/+", "a/b/c") && !intersects("#", "$SYS/x"));
        assert!(intersects("$SYS/#", "$SYS/+") && !intersects("+/x", "$SYS/x"));
        let acl = AclFile::parse("user u\ntopic read s/#\ntopic deny s/secret/#\ntopic read t/#\n").unwrap();
        assert!(acl.reads_all(Some("u"), "c", "t/+") && acl.reads_all(Some("u"), "c", "s/open/#"));
        assert!(
            !acl.reads_all(Some("u"), "c", "s/#")
                && !acl.reads_all(Some("u"), "c", "#")
                && !acl.reads_all(None, "c", "t/#")
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        assert_eq!(AclFile::parse("topic read a\nfrobnicate x\n").err(), Some((2, "expected user, topic or pattern")));
        assert_eq!(AclFile::parse("user\n").err().map(|e| e.0), Some(1));
        assert_eq!(AclFile::parse("topic read a/#/b\n").err().map(|e| e.0), Some(1));
        assert_eq!(AclFile::parse("topic read\n").err().map(|e| e.0), Some(1));
    }
}
