//! The typed messages shards send each other, and the message record they carry.
//!
//! Two meshes of bounded channels connect every pair of shards (see ARCHITECTURE.md):
//! *ingress* carries work towards an owner (a PUBLISH to its topic's owner, interest
//! updates, subscription requests, connection hand-offs); *egress* carries results back out
//! (deliveries to shards with subscribers, subscription replies). Egress receivers never
//! send to another shard, so a full channel can stall a sender but never deadlock the mesh.
//! Messages travel in batches (`Vec<_>`), one batch per destination per flush.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proto::{Connect, Props, QoS};

/// An application message as routed between shards: encoded once per
/// (protocol version, QoS) at each delivering shard, shared by reference everywhere else.
#[derive(Debug)]
pub struct Message {
    /// Topic name (valid UTF-8, no wildcards).
    pub topic: Bytes,
    /// Payload, a zero-copy slice of the publisher's read buffer.
    pub payload: Bytes,
    /// QoS the publisher sent it with.
    pub qos: QoS,
    /// Retain flag as published.
    pub retain: bool,
    /// 5.0 properties forwarded to subscribers (no topic alias, no subscription ids);
    /// one null pointer when empty, which keeps the record small on the hot path.
    pub properties: Props,
    /// Client id of the publisher (for No Local).
    pub publisher: Arc<str>,
    /// When the broker received it.
    pub received: Instant,
}

/// Names a session on its shard; `generation` tells a reused slot from the session a
/// request was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    /// Shard owning the session.
    pub shard: u16,
    /// Slot in that shard's session table.
    pub slot: u32,
    /// Generation of the session in that slot.
    pub generation: u64,
}

/// One filter of a subscription request sent to a shard that may own matching topics.
#[derive(Debug)]
pub struct InterestItem {
    /// Index of the filter in the SUBSCRIBE packet.
    pub index: u16,
    /// The filter.
    pub filter: String,
    /// A new subscription: add one to the sending shard's count for this filter.
    pub add_interest: bool,
    /// Send back the retained messages matching it.
    pub want_retained: bool,
}

/// A connection whose session lives on another shard, moved there after CONNECT.
#[derive(Debug)]
pub struct Handoff {
    /// The socket.
    pub fd: OwnedFd,
    /// The CONNECT packet already read.
    pub connect: Box<Connect>,
    /// Bytes read after the CONNECT.
    pub rest: Bytes,
    /// The connection's place under the node's connection limit.
    pub admitted: crate::accept::Admitted,
}

/// Work sent towards an owner shard.
#[derive(Debug)]
pub enum Ingress {
    /// A PUBLISH for a topic the receiver owns.
    Publish(Arc<Message>),
    /// Subscription filters: record interest and/or return retained messages.
    Subscribe {
        /// The subscribing session.
        from: SessionRef,
        /// Request number within that session.
        req: u32,
        /// The filters concerning the receiver.
        items: Vec<InterestItem>,
    },
    /// A subscription of the origin shard to `filter` ended: subtract one from its count.
    Unsubscribe {
        /// The origin shard.
        origin: u16,
        /// The filter.
        filter: String,
    },
    /// A connection for a session the receiver owns.
    Handoff(Handoff),
}

/// Results sent out from an owner shard.
#[derive(Debug)]
pub enum Egress {
    /// A message for the receiver's local subscribers.
    Deliver(Arc<Message>),
    /// The reply to an [`Ingress::Subscribe`].
    SubscribeDone {
        /// The subscribing session.
        to: SessionRef,
        /// Its request number.
        req: u32,
        /// Retained messages, each with the index of the filter it matched.
        retained: Vec<(u16, Arc<Message>)>,
    },
}
