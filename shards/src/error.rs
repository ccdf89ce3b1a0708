//! The engine's error type.
//!
//! A leaf: returned by `Node::start` and the store.

use std::io;

/// Errors starting or running the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A shard executor could not start.
    #[error("cannot start shard {shard}: {message}")]
    Executor {
        /// The shard.
        shard: usize,
        /// Why.
        message: String,
    },
    /// A shard stopped with a panic.
    #[error("shard {0} panicked")]
    ShardPanicked(usize),
    /// A configuration value is out of range.
    #[error("invalid engine setting: {0}")]
    Config(String),
    /// The data directory or a log could not be used.
    #[error("storage: {0}")]
    Storage(String),
}
