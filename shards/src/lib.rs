//! # shards: RingMQ's per-core engine
//!
//! A node runs N shards, each a glommio executor pinned to one CPU. Topics and client ids
//! hash into `P` partitions; each partition belongs to one shard, and every shard keeps a
//! copy of that table. A shard owns outright:
//!
//! - the **sessions** whose client id hashes into its partitions, and their connections
//!   (a connection accepted elsewhere is handed over after CONNECT);
//! - the **topics** that hash into its partitions: every PUBLISH to such a topic passes
//!   through it (one order per topic) and it keeps their retained messages;
//! - a **local trie** of its sessions' subscriptions and an **interest trie** saying which
//!   shards have subscribers for which filters.
//!
//! A PUBLISH read on its session's shard S goes to the topic owner T (no hop if S == T),
//! which sends one copy to each shard D with matching interest; D hands it to its matching
//! sessions, encoding it once per (protocol, QoS). Shards talk only through two meshes of
//! bounded channels ([`route::mesh::Ingress`], [`route::mesh::Egress`]), in batches.
//!
//! The code is layered, arrows pointing down only: [`node`] (start, stop, wiring) ->
//! [`front`] (listeners, handshake, client packets) -> [`engine`] (owner step, delivery,
//! sessions, shared groups, persistence of state) -> [`route`] (destinations, batches,
//! cross-shard work, partition table) -> leaves ([`net`], [`auth`], [`metrics`],
//! [`store`], [`msg`], [`trie`], [`config`]).
//!
//! Start a node with [`Node::start`]; see `ARCHITECTURE.md` at the repository root for the
//! whole picture.

#![warn(missing_docs)]

// Layers, top down; each may use only those below it (see ARCHITECTURE.md).
pub mod engine;
pub mod front;
pub mod node;
pub mod route;
// Leaves.
pub mod auth;
pub mod config;
pub mod der;
pub mod error;
pub mod metrics;
pub mod msg;
pub mod net;
pub mod show;
pub mod store;
pub mod trie;

pub use auth::{Action, AuthMethod, AuthStep, Authenticator, Authorizer, Credentials, Principal, Refusal};
pub use config::{Engine, EngineConfig, Fsync, FullPolicy, Limits, Placement, StorageConfig, StorageRule};
pub use error::Error;
pub use metrics::{Drops, Snapshot};
pub use node::{check_io_uring, Node};
