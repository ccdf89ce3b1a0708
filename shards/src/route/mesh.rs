//! The typed work shards send each other over the two meshes of bounded channels (see
//! ARCHITECTURE.md): *ingress* carries work towards an owner (a PUBLISH to its topic's
//! owner, interest updates, subscription requests, connection hand-offs); *egress* carries
//! results back out (deliveries to shards with subscribers, subscription replies).
//! Egress receivers never send to another shard, so a full channel can stall a sender but
//! never deadlock the mesh. Work travels in batches (`Vec<_>`), one batch per destination
//! per flush ([`super::batch::Outgoing`]).
//!
//! Built by the engine and the front; carried by [`super::batch`]; handled by the engine's
//! dispatch.

use std::sync::Arc;

use bytes::Bytes;
use proto::{Connect, QoS};

use crate::auth::Principal;
use crate::msg::{AckTo, Message, Pos, ReplayItem, ReplayPart, SessionRef};
use crate::net::{Admitted, Detached};

/// Work sent towards an owner shard.
#[derive(Debug)]
pub enum Ingress {
    /// A PUBLISH for a topic the receiver owns, with its acknowledgement when that waits
    /// for the append.
    Publish(Arc<Message>, Option<AckTo>),
    /// Read back records of `parts` (owned by the receiver) for a session: those it was
    /// handed while offline, or, restored after a restart, those written before the restart
    /// that match `filters`.
    Replay {
        /// The session.
        to: SessionRef,
        /// Partitions and where to start.
        parts: Vec<ReplayPart>,
        /// The session's filters with their granted QoS.
        filters: Vec<(String, QoS)>,
    },
    /// Subscription filters: record interest and/or return retained messages.
    Subscribe {
        /// The subscribing session.
        from: SessionRef,
        /// Request number within that session.
        req: u32,
        /// The filters concerning the receiver.
        items: Vec<InterestItem>,
    },
    /// The origin shard's count of subscriptions to `filter` (or of members of the shared
    /// group `filter`) changes by `delta`: a subscription ended (-1), a shared group's
    /// member left (-1) or came back online (+1).
    Interest {
        /// The origin shard.
        origin: u16,
        /// The filter.
        filter: String,
        /// +1 or -1.
        delta: i64,
    },
    /// A message of a shared group handed back by a member that left: pick another.
    Reshare(Reshare),
    /// A connection for a session the receiver owns (boxed: rare, and large next to the
    /// PUBLISHes that fill the batches).
    Handoff(Box<Handoff>),
}

/// Results sent out from an owner shard.
#[derive(Debug)]
pub enum Egress {
    /// A message for the receiver's local subscribers, with its log position if stored.
    Deliver(Arc<Message>, Option<Pos>),
    /// A message for members of shared groups on the receiver: per group, the index of
    /// the member among the receiver's members.
    DeliverShared {
        /// The message.
        msg: Arc<Message>,
        /// Its log position.
        pos: Option<Pos>,
        /// (group key `$share/g/f`, member index).
        picks: Vec<(Arc<str>, u32)>,
        /// Times it was handed round already.
        hops: u8,
    },
    /// The reply to an [`Ingress::Subscribe`].
    SubscribeDone {
        /// The subscribing session.
        to: SessionRef,
        /// Its request number.
        req: u32,
        /// Retained messages, each with the index of the filter it matched.
        retained: Vec<(u16, Arc<Message>)>,
        /// Next offsets of the replier's partition logs that may hold matching topics:
        /// where a new persistent subscription's cursors start.
        offsets: Vec<(u32, u64)>,
    },
    /// Appends are durable (reason code 0) or failed: acknowledge these publishes.
    Acked(Vec<(AckTo, u8)>),
    /// Records read back for an [`Ingress::Replay`].
    Replayed {
        /// The session.
        to: SessionRef,
        /// Messages with their positions, in log order per partition.
        msgs: Vec<ReplayItem>,
        /// Where the owner stopped, for the next page.
        rest: Vec<ReplayPart>,
        /// Records asked for by offset that the log no longer holds (evicted from the
        /// memory ring, or deleted by retention).
        lost: u64,
    },
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

/// A connection after its CONNECT, on its way to the shard that owns its session (that
/// may be the shard that accepted it: the hand-off then goes through the same step).
#[derive(Debug)]
pub struct Handoff {
    /// The connection's transport in its sendable form (for TCP the socket; a transport
    /// with state of its own carries it here).
    pub stream: Detached,
    /// The CONNECT packet already read.
    pub connect: Box<Connect>,
    /// Bytes read after the CONNECT.
    pub rest: Bytes,
    /// The connection's place under the node's connection limit.
    pub admitted: Admitted,
    /// The client id was assigned by the broker (5.0: told in the CONNACK).
    pub assigned: bool,
    /// Who the connection authenticated as.
    pub principal: Principal,
}

/// A message to hand back to its owner for another member of `key`.
#[derive(Debug)]
pub struct Reshare {
    /// The message.
    pub msg: Arc<Message>,
    /// Its log position.
    pub pos: Option<Pos>,
    /// The group.
    pub key: Arc<str>,
    /// Times it was handed round already.
    pub hops: u8,
}
