//! The front layer: everything that faces a client. Listeners and the CONNECT handshake
//! with its refusals, authentication and hand-off ([`handshake`]); what a client may send
//! ([`rules`]); a connected client on
//! its session's shard: attach, the read loop, every client packet, authorization before
//! routing, will and expiry at close ([`client`]).
//!
//! Uses the engine (sessions, the routing step), the route's work types, and the leaves
//! (transports, auth, metrics); only the node calls it.

pub mod client;
pub mod handshake;
pub mod rules;

pub use client::arrivals;
pub use handshake::accept_loop;
pub use rules::topic_allowed;
