//! The broker's configuration: command-line flags, the TOML file, and the checks that turn
//! them into an [`EngineConfig`].
//!
//! Precedence: built-in defaults, then the file (`--config`), then flags. A bad key or value
//! is a [`ConfigError`] naming the key and the file; `main` exits with status 2 on it.
//! The `[storage]` table and its flags are checked in [`storage`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use shards::{EngineConfig, Limits};

pub mod listener;
pub mod storage;

use listener::FileListener;
use storage::FileStorage;

/// A thread-per-core MQTT 3.1.1 and 5.0 broker on io_uring.
///
/// With no arguments it listens on 127.0.0.1:1883 with memory storage and anonymous
/// access, one shard per CPU.
#[derive(Debug, Parser)]
#[command(name = "ringmq", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A command other than running the broker.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on for MQTT over TCP (repeatable). Default 127.0.0.1:1883;
    /// a wider address such as 0.0.0.0:1883 must be asked for explicitly.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// TOML configuration file (see ringmq.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of shards (pinned executors); default: the CPUs this process may use.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Number of partitions topics and sessions hash into (default 64).
    #[arg(long, value_name = "P")]
    pub partitions: Option<u32>,
    /// Do not pin shards to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Log level: error, warn, info, debug or trace (default info, or RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Most client connections at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Largest packet accepted, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_packet_size: Option<usize>,
    /// Storage engine of topics no storage rule matches: memory (default) or segment.
    #[arg(long = "storage", value_name = "ENGINE")]
    pub storage: Option<String>,
    /// Directory of segment logs and persisted state (default ringmq-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// When segment appends reach the disk: always (default), never, interval:Nms or
    /// interval:Ns (N at least 1).
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<String>,
    /// Persist sessions, subscriptions and retained messages even with memory storage.
    #[arg(long)]
    pub persistence: bool,
    /// Do not keep QoS 1/2 messages for offline persistent sessions (rules may still).
    #[arg(long)]
    pub no_offline: bool,
}

/// What the binary does instead of running the broker.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Adds or replaces a user in a password file (argon2id; the file is made if missing).
    /// The password is read from the terminal (asked twice) or from the first line of
    /// standard input. Mosquitto's `$7$` and `$6$` entries in the file are kept as they are.
    Passwd {
        /// The password file (`password_file` of a listener).
        file: PathBuf,
        /// The user name.
        user: String,
    },
}

/// The TOML file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen addresses.
    pub listen: Option<Vec<String>>,
    /// Shards.
    pub shards: Option<usize>,
    /// Partitions.
    pub partitions: Option<u32>,
    /// Pin shards to CPUs.
    pub pin: Option<bool>,
    /// Log level.
    pub log_level: Option<String>,
    /// See [`Settings::huge_pages`].
    pub huge_pages: Option<bool>,
    /// See [`EngineConfig::response_information`].
    pub response_information: Option<String>,
    /// See [`EngineConfig::shared_strategy`]: `round_robin`, `hash_client_id`, `hash_topic`.
    pub shared_subscription_strategy: Option<String>,
    /// Limits.
    #[serde(default)]
    pub limits: FileLimits,
    /// Storage.
    #[serde(default)]
    pub storage: FileStorage,
    /// `[[listener]]` tables.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<FileListener>,
}

/// `[limits]` of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// See [`Limits::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`Limits::max_packet_size`].
    pub max_packet_size: Option<usize>,
    /// See [`Limits::max_inflight`].
    pub max_inflight: Option<u32>,
    /// See [`Limits::max_inflight_burst`].
    pub max_inflight_burst: Option<u32>,
    /// See [`Limits::max_queued_messages`].
    pub max_queued_messages: Option<usize>,
    /// See [`Limits::max_topic_length`].
    pub max_topic_length: Option<usize>,
    /// See [`Limits::max_topic_levels`].
    pub max_topic_levels: Option<usize>,
    /// See [`Limits::max_outbound_buffer`].
    pub max_outbound_buffer: Option<usize>,
    /// See [`Limits::max_outbound_total`].
    pub max_outbound_total: Option<usize>,
    /// See [`Limits::stuck_timeout`], in milliseconds.
    pub stuck_timeout_ms: Option<u64>,
    /// See [`Limits::topic_alias_maximum`].
    pub topic_alias_maximum: Option<u32>,
    /// See [`Limits::connect_timeout`], in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// See [`Limits::server_keep_alive`], in seconds.
    pub server_keep_alive: Option<u32>,
    /// Mosquitto's name for `server_keep_alive`.
    pub max_keepalive: Option<u32>,
    /// See [`Limits::max_session_expiry`], in seconds.
    pub max_session_expiry: Option<u32>,
    /// See [`Limits::max_subscriptions`].
    pub max_subscriptions: Option<usize>,
    /// See [`Limits::max_publish_rate`].
    pub max_publish_rate: Option<u32>,
    /// See [`Limits::max_publish_bytes_rate`].
    pub max_publish_bytes_rate: Option<u64>,
}

/// A configuration error, naming the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("config file {file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("{origin}: {key}: {message}")]
    Value {
        /// The file, or "command line".
        origin: String,
        /// The key (`storage.rule[2].filter`) or the flag (`--fsync`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Everything the binary needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine configuration.
    pub engine: EngineConfig,
    /// Log level.
    pub log_level: String,
    /// Let the allocator's memory be backed by transparent huge pages (off by default:
    /// they cost a one-shard broker 12 MiB at start and round every thread's memory up to
    /// 2 MiB; on, saturated QoS 0 delivery gains a few per cent).
    pub huge_pages: bool,
}

fn bad(origin: &str, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Value { origin: origin.to_owned(), key: key.into(), message: message.into() }
}

/// Parses a TOML document (the file's text) into a [`FileConfig`].
pub fn parse_file(text: &str, file: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text)
        .map_err(|e| ConfigError::Parse { file: file.to_owned(), message: e.to_string().trim_end().to_owned() })
}

fn apply_limits(l: &mut Limits, f: &FileLimits, origin: &str) -> Result<(), ConfigError> {
    if let Some(v) = f.max_connections {
        if v == 0 {
            return Err(bad(origin, "limits.max_connections", "must be at least 1"));
        }
        l.max_connections = v;
    }
    if let Some(v) = f.max_packet_size {
        if !(64..=268_435_460).contains(&v) {
            return Err(bad(origin, "limits.max_packet_size", "must be between 64 and 268435460 bytes"));
        }
        l.max_packet_size = v;
    }
    if let Some(v) = f.max_inflight {
        if !(1..=65535).contains(&v) {
            return Err(bad(origin, "limits.max_inflight", "must be between 1 and 65535"));
        }
        l.max_inflight = v as u16;
    }
    if let Some(v) = f.max_inflight_burst {
        if v > 65535 {
            return Err(bad(origin, "limits.max_inflight_burst", "must be between 0 and 65535"));
        }
        l.max_inflight_burst = v as u16;
    }
    if let Some(v) = f.max_queued_messages {
        l.max_queued_messages = v;
    }
    if let Some(v) = f.max_topic_length {
        if !(1..=65535).contains(&v) {
            return Err(bad(origin, "limits.max_topic_length", "must be between 1 and 65535"));
        }
        l.max_topic_length = v;
    }
    if let Some(v) = f.max_topic_levels {
        // A topic or filter of at most 65535 bytes has at most 65536 levels.
        if !(1..=65536).contains(&v) {
            return Err(bad(origin, "limits.max_topic_levels", "must be between 1 and 65536"));
        }
        l.max_topic_levels = v;
    }
    if let Some(v) = f.max_outbound_buffer {
        if v < 1024 {
            return Err(bad(origin, "limits.max_outbound_buffer", "must be at least 1024 bytes"));
        }
        l.max_outbound_buffer = v;
    }
    if let Some(v) = f.max_outbound_total {
        if v < l.max_outbound_buffer {
            let m = format!("must be at least limits.max_outbound_buffer ({})", l.max_outbound_buffer);
            return Err(bad(origin, "limits.max_outbound_total", m));
        }
        l.max_outbound_total = v;
    }
    if let Some(v) = f.stuck_timeout_ms {
        if v < 100 {
            return Err(bad(origin, "limits.stuck_timeout_ms", "must be at least 100"));
        }
        l.stuck_timeout = Duration::from_millis(v);
    }
    if let Some(v) = f.topic_alias_maximum {
        if v > 65535 {
            return Err(bad(origin, "limits.topic_alias_maximum", "must be at most 65535"));
        }
        l.topic_alias_maximum = v as u16;
    }
    if let Some(v) = f.connect_timeout_ms {
        if v == 0 {
            return Err(bad(origin, "limits.connect_timeout_ms", "must be at least 1"));
        }
        l.connect_timeout = Duration::from_millis(v);
    }
    let keep_alive = match (f.server_keep_alive, f.max_keepalive) {
        (Some(_), Some(_)) => {
            return Err(bad(origin, "limits.max_keepalive", "is another name for server_keep_alive: give one of them"))
        }
        (Some(v), None) => Some(("limits.server_keep_alive", v)),
        (None, Some(v)) => Some(("limits.max_keepalive", v)),
        (None, None) => None,
    };
    if let Some((key, v)) = keep_alive {
        if !(1..=65535).contains(&v) {
            return Err(bad(origin, key, "must be between 1 and 65535 seconds (leave it out for no bound)"));
        }
        l.server_keep_alive = Some(v as u16);
    }
    if let Some(v) = f.max_session_expiry {
        l.max_session_expiry = v;
    }
    if let Some(v) = f.max_subscriptions {
        l.max_subscriptions = v;
    }
    if let Some(v) = f.max_publish_rate {
        l.max_publish_rate = v;
    }
    if let Some(v) = f.max_publish_bytes_rate {
        l.max_publish_bytes_rate = v;
    }
    Ok(())
}

/// Merges defaults, the file and the flags.
pub fn resolve(cli: &Cli) -> Result<Settings, ConfigError> {
    let (file, origin) = match &cli.config {
        Some(path) => {
            let name = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: name.clone(), source })?;
            (parse_file(&text, &name)?, name)
        }
        None => (FileConfig::default(), "defaults".to_owned()),
    };
    settings_from(&file, &origin, cli)
}

/// Builds settings from a parsed file (named `origin` in errors) and the flags.
pub fn settings_from(file: &FileConfig, origin: &str, cli: &Cli) -> Result<Settings, ConfigError> {
    let mut engine = EngineConfig::default();
    if let Some(list) = &file.listen {
        let mut addrs = Vec::new();
        for a in list {
            addrs.push(
                a.parse().map_err(|_| bad(origin, "listen", format!("{a:?} is not an ADDR:PORT socket address")))?,
            );
        }
        if addrs.is_empty() {
            return Err(bad(origin, "listen", "needs at least one address"));
        }
        engine.listen = addrs;
    }
    if let Some(v) = file.shards {
        if v > shards::node::MAX_SHARDS {
            return Err(bad(
                origin,
                "shards",
                format!("must be at most {} (0 means one per CPU)", shards::node::MAX_SHARDS),
            ));
        }
        engine.shards = v;
    }
    if let Some(v) = file.partitions {
        if !(1..=65536).contains(&v) {
            return Err(bad(origin, "partitions", "must be between 1 and 65536"));
        }
        engine.partitions = v;
    }
    if let Some(v) = file.pin {
        engine.pin = v;
    }
    if let Some(v) = &file.response_information {
        if v.is_empty() || v.len() > 65535 {
            return Err(bad(origin, "response_information", "must be 1 to 65535 bytes"));
        }
        engine.response_information = Some(v.clone());
    }
    if let Some(v) = &file.shared_subscription_strategy {
        engine.shared_strategy = match v.as_str() {
            "round_robin" => shards::config::SharedStrategy::RoundRobin,
            "hash_client_id" => shards::config::SharedStrategy::HashClientId,
            "hash_topic" => shards::config::SharedStrategy::HashTopic,
            _ => {
                return Err(bad(
                    origin,
                    "shared_subscription_strategy",
                    format!("{v:?}: must be round_robin, hash_client_id or hash_topic"),
                ))
            }
        };
    }
    apply_limits(&mut engine.limits, &file.limits, origin)?;
    storage::apply_file(&mut engine.storage, &file.storage, origin)?;
    let mut log_level =
        file.log_level.clone().unwrap_or_else(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));

    let flags = "command line";
    if !cli.listen.is_empty() {
        engine.listen = cli.listen.clone();
    }
    if let Some(v) = cli.shards {
        if v > shards::node::MAX_SHARDS {
            return Err(bad(
                flags,
                "--shards",
                format!("must be at most {} (0 means one per CPU)", shards::node::MAX_SHARDS),
            ));
        }
        engine.shards = v;
    }
    if let Some(v) = cli.partitions {
        if !(1..=65536).contains(&v) {
            return Err(bad(flags, "--partitions", "must be between 1 and 65536"));
        }
        engine.partitions = v;
    }
    if cli.no_pin {
        engine.pin = false;
    }
    if let Some(v) = &cli.log_level {
        log_level = v.clone();
    }
    let from_flags = FileLimits {
        max_connections: cli.max_connections,
        max_packet_size: cli.max_packet_size,
        ..FileLimits::default()
    };
    apply_limits(&mut engine.limits, &from_flags, flags)?;
    storage::apply_flags(&mut engine.storage, cli)?;
    for (i, l) in file.listeners.iter().enumerate() {
        engine.listeners.push(listener::listener(l, i, origin, engine.limits.max_packet_size)?);
    }
    // With `[[listener]]` tables, the default plain listener is there only when asked for.
    if !engine.listeners.is_empty() && file.listen.is_none() && cli.listen.is_empty() {
        engine.listen.clear();
    }
    if parse_level(&log_level).is_none() {
        return Err(bad(origin, "log_level", format!("{log_level:?} is not one of error, warn, info, debug, trace")));
    }
    let shards = if engine.shards == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        engine.shards
    };
    if (engine.partitions as usize) < shards {
        return Err(bad(origin, "partitions", format!("{} is fewer than the {shards} shards", engine.partitions)));
    }
    Ok(Settings { engine, log_level, huge_pages: file.huge_pages.unwrap_or(false) })
}

/// The tracing level named by `s`.
pub fn parse_level(s: &str) -> Option<tracing::Level> {
    s.trim().parse().ok()
}

/// Reads and checks a config file; used by `--check-config` style callers and tests.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let cli = Cli {
        command: None,
        listen: vec![],
        config: Some(path.to_owned()),
        shards: None,
        partitions: None,
        no_pin: false,
        log_level: None,
        max_connections: None,
        max_packet_size: None,
        storage: None,
        data_dir: None,
        fsync: None,
        persistence: false,
        no_offline: false,
    };
    resolve(&cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Cli {
        Cli::parse_from(["ringmq"])
    }

    #[test]
    fn defaults_listen_on_loopback_1883() {
        let s = settings_from(&FileConfig::default(), "defaults", &cli()).expect("defaults are valid");
        assert_eq!(s.engine.listen, vec!["127.0.0.1:1883".parse::<SocketAddr>().unwrap()]);
        assert_eq!(s.engine.partitions, 64);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = parse_file("max_conections = 5\n", "ringmq.toml").unwrap_err().to_string();
        assert!(e.contains("ringmq.toml") && e.contains("max_conections"), "{e}");
        let e = parse_file("[limits]\nmax_inflight = \"many\"\n", "b.toml").unwrap_err().to_string();
        assert!(e.contains("b.toml") && e.contains("max_inflight"), "{e}");
    }

    #[test]
    fn bad_value_names_key_and_file() {
        let f = parse_file("[limits]\nmax_inflight = 0\n", "c.toml").unwrap();
        let e = settings_from(&f, "c.toml", &cli()).unwrap_err().to_string();
        assert_eq!(e, "c.toml: limits.max_inflight: must be between 1 and 65535");
        let f = parse_file("[limits]\nmax_inflight_burst = 70000\n", "e.toml").unwrap();
        let e = settings_from(&f, "e.toml", &cli()).unwrap_err().to_string();
        assert_eq!(e, "e.toml: limits.max_inflight_burst: must be between 0 and 65535");
        let f = parse_file("[limits]\nmax_inflight_burst = 0\n", "f.toml").unwrap();
        assert_eq!(settings_from(&f, "f.toml", &cli()).unwrap().engine.limits.max_inflight_burst, 0);
        let f = parse_file("listen = [\"nowhere\"]\n", "d.toml").unwrap();
        let e = settings_from(&f, "d.toml", &cli()).unwrap_err().to_string();
        assert!(e.starts_with("d.toml: listen:"), "{e}");
    }

    #[test]
    fn example_file_is_valid_and_matches_defaults() {
        let f = parse_file(include_str!("../ringmq.example.toml"), "ringmq.example.toml").expect("example parses");
        let s = settings_from(&f, "ringmq.example.toml", &cli()).expect("example is valid");
        let d = settings_from(&FileConfig::default(), "defaults", &cli()).unwrap();
        assert_eq!(format!("{:?}", s.engine), format!("{:?}", d.engine));
        assert_eq!(s.engine.storage, shards::StorageConfig::default());
        // Every storage key is shown live except retention_bytes, whose default is "absent".
        let st = &f.storage;
        assert!(st.engine.is_some() && st.data_dir.is_some() && st.fsync.is_some(), "{st:?}");
        assert!(st.persistence.is_some() && st.offline.is_some() && st.segment_bytes.is_some(), "{st:?}");
        assert!(st.retention_hours.is_some() && st.memory_bytes.is_some(), "{st:?}");
    }

    #[test]
    fn server_keep_alive_and_its_mosquitto_name() {
        let f = parse_file("[limits]\nserver_keep_alive = 30\n", "j.toml").unwrap();
        assert_eq!(settings_from(&f, "j.toml", &cli()).unwrap().engine.limits.server_keep_alive, Some(30));
        let f = parse_file("[limits]\nmax_keepalive = 45\n", "k.toml").unwrap();
        assert_eq!(settings_from(&f, "k.toml", &cli()).unwrap().engine.limits.server_keep_alive, Some(45));
        let f = parse_file("[limits]\nmax_keepalive = 0\n", "l.toml").unwrap();
        let e = settings_from(&f, "l.toml", &cli()).unwrap_err().to_string();
        assert!(e.starts_with("l.toml: limits.max_keepalive: must be between 1 and 65535"), "{e}");
        let f = parse_file("[limits]\nserver_keep_alive = 1\nmax_keepalive = 2\n", "m.toml").unwrap();
        let e = settings_from(&f, "m.toml", &cli()).unwrap_err().to_string();
        assert!(e.starts_with("m.toml: limits.max_keepalive: is another name"), "{e}");
    }

    #[test]
    fn topic_levels_are_capped() {
        let f = parse_file("[limits]\nmax_topic_length = 65535\nmax_topic_levels = 65536\n", "h.toml").unwrap();
        assert_eq!(settings_from(&f, "h.toml", &cli()).unwrap().engine.limits.max_topic_levels, 65536);
        let f = parse_file("[limits]\nmax_topic_levels = 65537\n", "i.toml").unwrap();
        let e = settings_from(&f, "i.toml", &cli()).unwrap_err().to_string();
        assert_eq!(e, "i.toml: limits.max_topic_levels: must be between 1 and 65536");
    }

    #[test]
    fn shared_subscription_strategy_is_checked() {
        let f = parse_file("shared_subscription_strategy = \"hash_topic\"\n", "f.toml").unwrap();
        let s = settings_from(&f, "f.toml", &cli()).unwrap();
        assert_eq!(s.engine.shared_strategy, shards::config::SharedStrategy::HashTopic);
        let f = parse_file("shared_subscription_strategy = \"random\"\n", "g.toml").unwrap();
        let e = settings_from(&f, "g.toml", &cli()).unwrap_err().to_string();
        assert!(e.starts_with("g.toml: shared_subscription_strategy: \"random\""), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let f = parse_file("listen = [\"127.0.0.1:2000\"]\nshards = 1\n[limits]\nmax_connections = 10\n", "e.toml")
            .unwrap();
        let c = Cli::parse_from(["ringmq", "--listen", "127.0.0.1:3000", "--max-connections", "20"]);
        let s = settings_from(&f, "e.toml", &c).unwrap();
        assert_eq!(s.engine.listen, vec!["127.0.0.1:3000".parse::<SocketAddr>().unwrap()]);
        assert_eq!(s.engine.limits.max_connections, 20);
        assert_eq!(s.engine.shards, 1);
    }

    #[test]
    fn listener_tables_are_checked_naming_the_listener_key_and_file() {
        let err =
            |text: &str| settings_from(&parse_file(text, "l.toml").unwrap(), "l.toml", &cli()).unwrap_err().to_string();
        let e =
            err("[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"quic\"\n");
        assert!(e.starts_with("l.toml: listener[1].protocol:"), "{e}");
        let e = err("[[listener]]\nbind = \"nowhere\"\n");
        assert!(e.starts_with("l.toml: listener[0].bind:"), "{e}");
        let e = err(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert = \"/no/such.pem\"\nkey = \"/no/such.key\"\n",
        );
        assert!(e.starts_with("l.toml: listener[0].tls:") && e.contains("/no/such.pem"), "{e}");
        let e = err("[[listener]]\nbind = \"127.0.0.1:0\"\npath = \"/mqtt\"\n");
        assert!(e.starts_with("l.toml: listener[0].path:"), "{e}");
        let e = err("[[listener]]\nbind = \"127.0.0.1:0\"\nuse_identity_as_username = true\n");
        assert!(e.starts_with("l.toml: listener[0].use_identity_as_username:"), "{e}");
        let e = err("[[listener]]\nbind = \"127.0.0.1:0\"\npassword_file = \"/no/passwd\"\n");
        assert!(e.starts_with("l.toml: listener[0].password_file:") && e.contains("/no/passwd"), "{e}");
        // Listeners replace the default one unless `listen` asks for it.
        let f = parse_file("[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n", "l.toml").unwrap();
        let s = settings_from(&f, "l.toml", &cli()).unwrap();
        assert!(s.engine.listen.is_empty() && s.engine.listeners.len() == 1);
    }
}
