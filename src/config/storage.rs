//! The `[storage]` table of the TOML file and the storage flags, checked into a
//! [`StorageConfig`].
//!
//! Runs once at start-up on the main thread, before any shard exists: [`super::settings_from`]
//! applies the file's table, then the flags (`--storage`, `--data-dir`, `--fsync`,
//! `--persistence`, `--no-offline`). Engine names and fsync policies are read as strings and
//! parsed here, so a bad one is a [`ConfigError::Value`] naming the full key
//! (`storage.fsync`, `storage.rule[2].filter`; rules count from 0 in file order) or the flag,
//! like every other out-of-range value.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shards::{Engine, Fsync, FullPolicy, StorageConfig, StorageRule};

use super::{bad, Cli, ConfigError};

/// 64 KiB, the smallest segment file and in-memory log: below it a partition would roll a
/// segment or evict its memory log every few messages.
const MIN_LOG_BYTES: u64 = 64 * 1024;
/// 4 GiB, the largest segment file: record positions in a segment's index are u32.
const MAX_SEGMENT_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Seconds in an hour, for `retention_hours`.
const HOUR_SECS: u64 = 3600;

/// `[storage]` of the TOML file, every key optional; see [`StorageConfig`] for the meaning.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStorage {
    /// `"memory"` or `"segment"`: the engine of topics no rule matches.
    pub engine: Option<String>,
    /// Directory of segment logs and persisted state.
    pub data_dir: Option<String>,
    /// `"always"`, `"never"`, `"interval:Nms"` or `"interval:Ns"` (N at least 1).
    pub fsync: Option<String>,
    /// Persist sessions, subscriptions and retained messages even with memory storage.
    pub persistence: Option<bool>,
    /// Keep QoS 1/2 messages for offline persistent sessions.
    pub offline: Option<bool>,
    /// Size at which a segment file is rolled.
    pub segment_bytes: Option<u64>,
    /// Largest log of one partition; absent means no size limit.
    pub retention_bytes: Option<u64>,
    /// Age past which whole segments are deleted; 0 means no age limit.
    pub retention_hours: Option<u64>,
    /// Bytes of the in-memory log of one partition.
    pub memory_bytes: Option<usize>,
    /// `"backpressure"` or `"drop_oldest"`: what a full memory ring does.
    pub when_full: Option<String>,
    /// `[[storage.rule]]` tables, first match wins.
    #[serde(default, rename = "rule")]
    pub rules: Vec<FileRule>,
}

/// One `[[storage.rule]]` of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// Topic filter; wildcards allowed, `$share/...` refused.
    pub filter: String,
    /// `"memory"` or `"segment"` for matching topics.
    pub engine: Option<String>,
    /// Keep matching QoS 1/2 messages for offline persistent sessions.
    pub offline: Option<bool>,
    /// `"backpressure"` or `"drop_oldest"` for matching topics' memory ring.
    pub when_full: Option<String>,
}

/// The memory ring policy named `s`, or what is wrong with it.
fn parse_when_full(s: &str) -> Result<FullPolicy, String> {
    match s {
        "backpressure" => Ok(FullPolicy::Backpressure),
        "drop_oldest" => Ok(FullPolicy::DropOldest),
        _ => Err(format!("{s:?} is not backpressure or drop_oldest")),
    }
}

/// The engine named `s`, or what is wrong with it.
fn parse_engine(s: &str) -> Result<Engine, String> {
    match s {
        "memory" => Ok(Engine::Memory),
        "segment" => Ok(Engine::Segment),
        _ => Err(format!("{s:?} is not memory or segment")),
    }
}

/// The fsync policy written `s`, or what is wrong with it.
fn parse_fsync(s: &str) -> Result<Fsync, String> {
    match s {
        "always" => return Ok(Fsync::Always),
        "never" => return Ok(Fsync::Never),
        _ => {}
    }
    let unknown = || format!("{s:?} is not always, never, interval:<N>ms or interval:<N>s");
    let spec = s.strip_prefix("interval:").ok_or_else(unknown)?;
    let (digits, to_duration): (&str, fn(u64) -> Duration) = match spec.strip_suffix("ms") {
        Some(d) => (d, Duration::from_millis),
        None => (spec.strip_suffix('s').ok_or_else(unknown)?, Duration::from_secs),
    };
    // `u64::from_str` also takes a leading '+'; only plain digits are a count here.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    let n: u64 = digits.parse().map_err(|_| format!("{s:?}: the interval is too large"))?;
    if n == 0 {
        return Err(format!("{s:?}: the interval must be at least 1ms"));
    }
    Ok(Fsync::Interval(to_duration(n)))
}

/// Checks a rule's filter: a valid topic filter, not a shared subscription.
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.starts_with("$share/") {
        return Err(format!("{filter:?} is a shared subscription; a rule takes the topic filter alone"));
    }
    if !proto::topic::valid_filter(filter) {
        return Err(format!("{filter:?} is not a valid topic filter"));
    }
    Ok(())
}

/// Applies the file's `[storage]` table; errors name `origin` (the file) and the key.
pub(super) fn apply_file(s: &mut StorageConfig, f: &FileStorage, origin: &str) -> Result<(), ConfigError> {
    if let Some(v) = &f.engine {
        s.engine = parse_engine(v).map_err(|m| bad(origin, "storage.engine", m))?;
    }
    if let Some(v) = &f.data_dir {
        if v.is_empty() {
            return Err(bad(origin, "storage.data_dir", "must not be empty"));
        }
        s.data_dir = PathBuf::from(v);
    }
    if let Some(v) = &f.fsync {
        s.fsync = parse_fsync(v).map_err(|m| bad(origin, "storage.fsync", m))?;
    }
    if let Some(v) = f.persistence {
        s.persistence = v;
    }
    if let Some(v) = f.offline {
        s.offline = v;
    }
    if let Some(v) = f.segment_bytes {
        if !(MIN_LOG_BYTES..=MAX_SEGMENT_BYTES).contains(&v) {
            return Err(bad(origin, "storage.segment_bytes", "must be between 65536 (64 KiB) and 4294967296 (4 GiB)"));
        }
        s.segment_bytes = v;
    }
    if let Some(v) = f.retention_bytes {
        if v == 0 {
            return Err(bad(origin, "storage.retention_bytes", "must not be 0; leave it out for no size limit"));
        }
        if v < s.segment_bytes {
            let m =
                format!("must be at least storage.segment_bytes ({}); leave it out for no size limit", s.segment_bytes);
            return Err(bad(origin, "storage.retention_bytes", m));
        }
        s.retention_bytes = Some(v);
    }
    if let Some(h) = f.retention_hours {
        let secs = h.checked_mul(HOUR_SECS).ok_or_else(|| bad(origin, "storage.retention_hours", "is too large"))?;
        s.retention = (secs > 0).then_some(Duration::from_secs(secs));
    }
    if let Some(v) = f.memory_bytes {
        if (v as u64) < MIN_LOG_BYTES {
            return Err(bad(origin, "storage.memory_bytes", "must be at least 65536 (64 KiB)"));
        }
        s.memory_bytes = v;
    }
    if let Some(v) = &f.when_full {
        s.when_full = parse_when_full(v).map_err(|m| bad(origin, "storage.when_full", m))?;
    }
    let mut rules = Vec::with_capacity(f.rules.len());
    for (i, r) in f.rules.iter().enumerate() {
        check_filter(&r.filter).map_err(|m| bad(origin, format!("storage.rule[{i}].filter"), m))?;
        let engine = match &r.engine {
            Some(e) => Some(parse_engine(e).map_err(|m| bad(origin, format!("storage.rule[{i}].engine"), m))?),
            None => None,
        };
        let when_full = match &r.when_full {
            Some(w) => Some(parse_when_full(w).map_err(|m| bad(origin, format!("storage.rule[{i}].when_full"), m))?),
            None => None,
        };
        if engine.is_none() && r.offline.is_none() && when_full.is_none() {
            return Err(bad(origin, format!("storage.rule[{i}]"), "sets none of engine, offline and when_full"));
        }
        rules.push(StorageRule { filter: r.filter.clone(), engine, offline: r.offline, when_full });
    }
    s.rules = rules;
    Ok(())
}

/// Applies the storage flags over the file; errors name the flag.
pub(super) fn apply_flags(s: &mut StorageConfig, cli: &Cli) -> Result<(), ConfigError> {
    let flags = "command line";
    if let Some(v) = &cli.storage {
        s.engine = parse_engine(v).map_err(|m| bad(flags, "--storage", m))?;
    }
    if let Some(v) = &cli.data_dir {
        if v.as_os_str().is_empty() {
            return Err(bad(flags, "--data-dir", "must not be empty"));
        }
        s.data_dir = v.clone();
    }
    if let Some(v) = &cli.fsync {
        s.fsync = parse_fsync(v).map_err(|m| bad(flags, "--fsync", m))?;
    }
    if cli.persistence {
        s.persistence = true;
    }
    if cli.no_offline {
        s.offline = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{parse_file, settings_from};

    /// The storage settings of `toml` read as file `file`, with `flags` on the command line.
    fn storage(toml: &str, file: &str, flags: &[&str]) -> Result<StorageConfig, String> {
        let f = parse_file(toml, file).map_err(|e| e.to_string())?;
        let cli = Cli::parse_from(std::iter::once("ringmq").chain(flags.iter().copied()));
        settings_from(&f, file, &cli).map(|s| s.engine.storage).map_err(|e| e.to_string())
    }

    /// The error of a storage table that should be refused.
    fn refused(toml: &str) -> String {
        storage(toml, "s.toml", &[]).expect_err("should be refused")
    }

    #[test]
    fn absent_table_keeps_defaults() {
        assert_eq!(storage("", "s.toml", &[]).unwrap(), StorageConfig::default());
        assert_eq!(storage("[storage]\n", "s.toml", &[]).unwrap(), StorageConfig::default());
    }

    #[test]
    fn every_key_is_read() {
        let toml = "[storage]\nengine = \"segment\"\ndata_dir = \"/var/lib/ringmq\"\nfsync = \"never\"\n\
                    persistence = true\noffline = false\nsegment_bytes = 1048576\nretention_bytes = 10485760\n\
                    retention_hours = 24\nmemory_bytes = 65536\n";
        let s = storage(toml, "s.toml", &[]).unwrap();
        assert_eq!(s.engine, Engine::Segment);
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/ringmq"));
        assert_eq!(s.fsync, Fsync::Never);
        assert!(s.persistence);
        assert!(!s.offline);
        assert_eq!(s.segment_bytes, 1024 * 1024);
        assert_eq!(s.retention_bytes, Some(10 * 1024 * 1024));
        assert_eq!(s.retention, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(s.memory_bytes, 64 * 1024);
        assert!(s.rules.is_empty());
    }

    #[test]
    fn fsync_variants() {
        let fsync = |v: &str| storage(&format!("[storage]\nfsync = \"{v}\"\n"), "s.toml", &[]).map(|s| s.fsync);
        assert_eq!(fsync("always"), Ok(Fsync::Always));
        assert_eq!(fsync("never"), Ok(Fsync::Never));
        assert_eq!(fsync("interval:5ms"), Ok(Fsync::Interval(Duration::from_millis(5))));
        assert_eq!(fsync("interval:1s"), Ok(Fsync::Interval(Duration::from_secs(1))));
        assert_eq!(fsync("interval:1500ms"), Ok(Fsync::Interval(Duration::from_millis(1500))));
        for bad in ["sometimes", "Always", "interval:", "interval:5", "interval:ms", "interval:+5ms", "interval:5us"] {
            let e = fsync(bad).expect_err(bad);
            assert!(e.starts_with("s.toml: storage.fsync: ") && e.contains("interval:<N>ms"), "{e}");
        }
    }

    #[test]
    fn retention_hours_zero_means_no_age_limit() {
        assert_eq!(storage("[storage]\nretention_hours = 0\n", "s.toml", &[]).unwrap().retention, None);
        let week = StorageConfig::default().retention;
        assert_eq!(storage("[storage]\nretention_hours = 168\n", "s.toml", &[]).unwrap().retention, week);
    }

    #[test]
    fn rules_keep_file_order_and_both_fields() {
        let toml = "[storage]\n[[storage.rule]]\nfilter = \"devices/+/telemetry\"\nengine = \"segment\"\n\
                    offline = false\n[[storage.rule]]\nfilter = \"cmd/#\"\noffline = true\n\
                    [[storage.rule]]\nfilter = \"#\"\nengine = \"memory\"\n";
        let s = storage(toml, "s.toml", &[]).unwrap();
        let rule =
            |filter: &str, engine, offline| StorageRule { filter: filter.to_owned(), engine, offline, when_full: None };
        assert_eq!(
            s.rules,
            vec![
                rule("devices/+/telemetry", Some(Engine::Segment), Some(false)),
                rule("cmd/#", None, Some(true)),
                rule("#", Some(Engine::Memory), None),
            ]
        );
    }

    #[test]
    fn when_full_broker_wide_and_per_rule() {
        let toml = "[storage]\nwhen_full = \"drop_oldest\"\n[[storage.rule]]\nfilter = \"orders/#\"\n\
                    when_full = \"backpressure\"\n";
        let s = storage(toml, "s.toml", &[]).unwrap();
        assert_eq!(s.when_full, FullPolicy::DropOldest);
        assert_eq!(s.rules[0].when_full, Some(FullPolicy::Backpressure));
        assert_eq!(s.placement("orders/1").when_full, FullPolicy::Backpressure);
        assert_eq!(s.placement("metrics/1").when_full, FullPolicy::DropOldest);
        assert_eq!(StorageConfig::default().when_full, FullPolicy::Backpressure);
        assert_eq!(
            refused("[storage]\nwhen_full = \"block\"\n"),
            "s.toml: storage.when_full: \"block\" is not backpressure or drop_oldest"
        );
        assert!(refused("[[storage.rule]]\nfilter = \"a\"\nwhen_full = \"x\"\n")
            .starts_with("s.toml: storage.rule[0].when_full: "));
    }

    #[test]
    fn a_segment_rule_makes_storage_persistent() {
        let toml = "[[storage.rule]]\nfilter = \"devices/+/telemetry\"\nengine = \"segment\"\n";
        let s = storage(toml, "s.toml", &[]).unwrap();
        assert_eq!(s.engine, Engine::Memory);
        assert!(!s.persistence);
        assert!(s.persistent());
        assert!(!storage("[[storage.rule]]\nfilter = \"a\"\noffline = false\n", "s.toml", &[]).unwrap().persistent());
    }

    #[test]
    fn bad_values_name_key_and_file() {
        assert_eq!(
            refused("[storage]\nengine = \"disk\"\n"),
            "s.toml: storage.engine: \"disk\" is not memory or segment"
        );
        assert_eq!(
            refused("[storage]\nfsync = \"interval:0ms\"\n"),
            "s.toml: storage.fsync: \"interval:0ms\": the interval must be at least 1ms"
        );
        assert!(refused("[storage]\nfsync = \"interval:0s\"\n").starts_with("s.toml: storage.fsync: "));
        assert!(refused("[storage]\nfsync = \"weekly\"\n").starts_with("s.toml: storage.fsync: \"weekly\" is not"));
        assert!(refused("[storage]\ndata_dir = \"\"\n").starts_with("s.toml: storage.data_dir: "));
        assert!(refused("[storage]\nsegment_bytes = 65535\n").starts_with("s.toml: storage.segment_bytes: "));
        assert!(refused("[storage]\nsegment_bytes = 4294967297\n").starts_with("s.toml: storage.segment_bytes: "));
        assert!(refused("[storage]\nmemory_bytes = 1024\n").starts_with("s.toml: storage.memory_bytes: "));
        let e = refused("[storage]\nretention_bytes = 0\n");
        assert!(e.starts_with("s.toml: storage.retention_bytes: ") && e.contains("leave it out"), "{e}");
        let e = refused("[storage]\nsegment_bytes = 1048576\nretention_bytes = 1048575\n");
        assert!(e.starts_with("s.toml: storage.retention_bytes: must be at least storage.segment_bytes (1048576)"));
        assert!(refused("[storage]\nretention_hours = 9223372036854775807\n").contains("storage.retention_hours"));
    }

    #[test]
    fn bad_rules_name_the_rule() {
        let rules = "[[storage.rule]]\nfilter = \"a/b\"\nengine = \"segment\"\n[[storage.rule]]\n";
        assert_eq!(
            refused(&format!("{rules}filter = \"a/#/b\"\nengine = \"segment\"\n")),
            "s.toml: storage.rule[1].filter: \"a/#/b\" is not a valid topic filter"
        );
        let e = refused(&format!("{rules}filter = \"$share/g/a/#\"\noffline = false\n"));
        assert!(e.starts_with("s.toml: storage.rule[1].filter: ") && e.contains("shared subscription"), "{e}");
        assert!(refused(&format!("{rules}filter = \"\"\noffline = false\n")).contains("storage.rule[1].filter"));
        assert_eq!(
            refused(&format!("{rules}filter = \"a/c\"\n")),
            "s.toml: storage.rule[1]: sets none of engine, offline and when_full"
        );
        assert_eq!(
            refused(&format!("{rules}filter = \"a/c\"\nengine = \"tape\"\n")),
            "s.toml: storage.rule[1].engine: \"tape\" is not memory or segment"
        );
    }

    #[test]
    fn unknown_or_mistyped_keys_are_parse_errors() {
        for toml in [
            "[storage]\nengnie = \"segment\"\n",
            "[storage]\nfsync_interval_ms = 5\n",
            "[storage]\npersistence = \"yes\"\n",
            "[[storage.rule]]\nengine = \"segment\"\n",
            "[[storage.rule]]\nfilter = \"a\"\noffline = true\npriority = 1\n",
        ] {
            let e = parse_file(toml, "p.toml").expect_err(toml);
            assert!(matches!(e, ConfigError::Parse { .. }) && e.to_string().starts_with("config file p.toml: "), "{e}");
        }
    }

    #[test]
    fn flags_override_file() {
        let toml = "[storage]\nengine = \"memory\"\ndata_dir = \"/file\"\nfsync = \"always\"\n\
                    persistence = false\noffline = true\n";
        let flags =
            ["--storage", "segment", "--data-dir", "/x", "--fsync", "interval:5ms", "--persistence", "--no-offline"];
        let s = storage(toml, "s.toml", &flags).unwrap();
        assert_eq!(s.engine, Engine::Segment);
        assert_eq!(s.data_dir, PathBuf::from("/x"));
        assert_eq!(s.fsync, Fsync::Interval(Duration::from_millis(5)));
        assert!(s.persistence);
        assert!(!s.offline);
        // Without the flags the file's values stand.
        let s = storage(toml, "s.toml", &[]).unwrap();
        assert_eq!((s.engine, s.fsync, s.persistence, s.offline), (Engine::Memory, Fsync::Always, false, true));
        assert_eq!(s.data_dir, PathBuf::from("/file"));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = storage("", "s.toml", &["--fsync", "interval:0ms"]).unwrap_err();
        assert_eq!(e, "command line: --fsync: \"interval:0ms\": the interval must be at least 1ms");
        let e = storage("", "s.toml", &["--storage", "disk"]).unwrap_err();
        assert_eq!(e, "command line: --storage: \"disk\" is not memory or segment");
        // clap already refuses `--data-dir ""`; a `Cli` built in code is checked here.
        let mut cli = Cli::parse_from(["ringmq"]);
        cli.data_dir = Some(PathBuf::new());
        let e = settings_from(&Default::default(), "s.toml", &cli).unwrap_err().to_string();
        assert_eq!(e, "command line: --data-dir: must not be empty");
    }
}
