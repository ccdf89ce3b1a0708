//! Outgoing batches: cross-shard work collected per destination and sent as one channel
//! message per destination when flushed, over the shard's [`Mesh`] senders.
//!
//! A connection's reader fills one while it parses everything it has read, then flushes
//! once; an owner shard fills one while it handles an incoming batch. Sending awaits when
//! the destination channel is full, which is the backpressure: the reader stops reading.
//!
//! Route layer: the routing step fills it, the front and the engine flush it.

use std::sync::Arc;

use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};
use netpoll::Nudge;

use super::mesh::{Egress, Ingress};

/// The batch a channel refused to take now (full, or closed: then the waiting send drops
/// it); none if the error carries no batch back.
fn refused<T>(e: GlommioError<Vec<T>>) -> Vec<T> {
    match e {
        GlommioError::WouldBlock(ResourceType::Channel(v)) | GlommioError::Closed(ResourceType::Channel(v)) => v,
        other => {
            tracing::debug!(error = %other, "batch not sent");
            Vec::new()
        }
    }
}

/// A shard's senders of the two meshes, and every shard's nudge (by peer id): each batch
/// sent is posted to its receiver's nudge, which wakes a receiver holding its thread
/// quiet (see netpoll's `hold`) and keeps it from holding while batches wait for it.
pub struct Mesh {
    /// Work towards owners.
    pub ingress: Senders<Vec<Ingress>>,
    /// Results out of owners.
    pub egress: Senders<Vec<Egress>>,
    /// The shards' nudges, by peer id.
    pub nudges: Arc<[Arc<Nudge>]>,
}

/// A batch is sent early once it holds this many messages, so one busy connection cannot
/// build an arbitrarily large batch.
pub const MAX_BATCH: usize = 256;

/// Messages waiting to be sent, per destination shard.
pub struct Outgoing {
    ingress: Vec<Vec<Ingress>>,
    egress: Vec<Vec<Egress>>,
    len: usize,
}

impl Outgoing {
    /// Empty batches for `shards` destinations.
    pub fn new(shards: usize) -> Self {
        Outgoing {
            ingress: (0..shards).map(|_| Vec::new()).collect(),
            egress: (0..shards).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    /// Queues work for owner shard `to`.
    pub fn ingress(&mut self, to: usize, m: Ingress) {
        self.ingress[to].push(m);
        self.len += 1;
    }

    /// Queues a result for shard `to`.
    pub fn egress(&mut self, to: usize, m: Egress) {
        self.egress[to].push(m);
        self.len += 1;
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the batch should be sent before more is added.
    pub fn is_full(&self) -> bool {
        self.len >= MAX_BATCH
    }

    /// Sends every non-empty batch that its channel takes now, without waiting; true when
    /// nothing is left. What a full channel refused stays, in order, for [`flush`](Self::flush)
    /// (Outgoing::flush) to wait for.
    pub fn try_flush(&mut self, mesh: &Mesh) -> bool {
        if self.len == 0 {
            return true;
        }
        self.len = try_send_all(&mut self.egress, &mesh.egress, &mesh.nudges)
            + try_send_all(&mut self.ingress, &mesh.ingress, &mesh.nudges);
        self.len == 0
    }

    /// Sends every non-empty batch, one channel message per destination. Egress goes
    /// first: it never waits on ingress, so draining it first keeps the mesh moving.
    pub async fn flush(&mut self, mesh: &Mesh) {
        if self.len == 0 {
            return;
        }
        self.len = 0;
        send_all(&mut self.egress, &mesh.egress, &mesh.nudges, "egress").await;
        send_all(&mut self.ingress, &mesh.ingress, &mesh.nudges, "ingress").await;
    }
}

/// Offers each non-empty batch to its channel; a refused one stays in place. Returns how
/// many messages are left.
fn try_send_all<T: Send + 'static>(batches: &mut [Vec<T>], senders: &Senders<Vec<T>>, nudges: &[Arc<Nudge>]) -> usize {
    let mut left = 0;
    for (to, batch) in batches.iter_mut().enumerate().filter(|(_, b)| !b.is_empty()) {
        match senders.try_send_to(to, std::mem::take(batch)) {
            Ok(()) => nudges[to].posted(),
            Err(e) => {
                *batch = refused(e);
                left += batch.len();
            }
        }
    }
    left
}

/// Sends each non-empty batch, waiting for room; one whose channel is closed is dropped.
async fn send_all<T: Send + 'static>(
    batches: &mut [Vec<T>],
    senders: &Senders<Vec<T>>,
    nudges: &[Arc<Nudge>],
    mesh: &str,
) {
    for (to, batch) in batches.iter_mut().enumerate().filter(|(_, b)| !b.is_empty()) {
        match senders.send_to(to, std::mem::take(batch)).await {
            Ok(()) => nudges[to].posted(),
            Err(_) => tracing::debug!(to, mesh, "channel closed, batch dropped"),
        }
    }
}
