//! # ringmq
//!
//! The `ringmq` binary's library half: configuration (flags and TOML) and start-up. The
//! engine itself lives in the `shards` crate and the codec in `proto`; this crate turns
//! a [`config::Settings`] into a running [`Node`].
//!
//! ```no_run
//! let mut engine = ringmq::EngineConfig::default();
//! engine.listen = vec!["127.0.0.1:0".parse().unwrap()];
//! let node = ringmq::Node::start(engine).expect("io_uring available");
//! println!("listening on {}", node.local_addrs()[0]);
//! node.stop();
//! node.join().unwrap();
//! ```

#![warn(missing_docs)]

pub mod config;

pub use shards::metrics::ShardMetrics;
pub use shards::store::RecoveryReport;
pub use shards::{
    check_io_uring, Action, AuthMethod, AuthStep, Authenticator, Authorizer, Credentials, Drops, Engine, EngineConfig,
    Fsync, FullPolicy, Limits, Node, Principal, Refusal, Snapshot, StorageConfig, StorageRule,
};
