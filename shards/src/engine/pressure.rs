//! Backpressure at a full memory ring (`when_full = "backpressure"`): the messages that
//! wait at the owner, the per-partition flags publishers read, and the task that admits
//! the waiting messages as the ring frees up.
//!
//! Runs on the partition's owner shard, except [`Shard::must_wait`], which every session
//! shard calls per QoS 1/2 publish (one relaxed load while no ring anywhere is full).
//!
//! Engine layer; the node starts `relieve_loop`.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::local_channel::LocalReceiver;

use super::shard::{Shard, State};
use crate::msg::{AckTo, Message};
use crate::route::Outgoing;
use crate::store::Admit;

impl Shard {
    /// A full ring under `backpressure`: the message waits at its owner (its publisher's
    /// acknowledgement with it, if it was not sent yet), and publishers to the partition
    /// are told to wait for their acknowledgements from now on, until the slowest
    /// connected subscriber moves on ([`relieve`](Shard::relieve)).
    pub(crate) fn hold_back(&self, st: &mut State, partition: u32, msg: Arc<Message>, ack: Option<AckTo>) {
        st.waiting.entry(partition).or_default().push_back((msg, ack));
        if let Some(flag) = self.node.pressure.get(partition as usize) {
            if !flag.0.swap(true, Ordering::Relaxed) {
                self.node.pressured.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(partition, "memory ring full: publishers wait");
            }
        }
        st.stats.held_back += 1;
        if let Some(k) = &st.pressure_kick {
            let _ = k.try_send(());
        }
    }

    /// Admits what waits at full rings as they free up, in order; a partition whose
    /// queue empties lets its publishers go. Returns true while anything still waits.
    pub fn relieve(&self, st: &mut State, out: &mut Outgoing) -> bool {
        let parts: Vec<u32> = st.waiting.keys().copied().collect();
        for partition in parts {
            loop {
                let next = {
                    let Some(w) = st.waiting.get_mut(&partition) else { break };
                    let Some((msg, _)) = w.front() else {
                        st.waiting.remove(&partition);
                        if let Some(flag) = self.node.pressure.get(partition as usize) {
                            flag.0.store(false, Ordering::Relaxed);
                            self.node.pressured.fetch_sub(1, Ordering::Relaxed);
                        }
                        break;
                    };
                    let pos = match st.store.admit(partition, msg) {
                        Admit::Full => break,
                        Admit::Kept(p) => Some(p),
                        Admit::NotKept => None,
                    };
                    w.pop_front().map(|(msg, ack)| (msg, ack, pos))
                };
                let Some((msg, ack, pos)) = next else { break };
                self.publish_at_owner(st, msg, ack, partition, pos, out);
            }
        }
        !st.waiting.is_empty()
    }

    /// True when publishes to `topic` must wait for their owner to acknowledge them: its
    /// partition's memory ring is full under `backpressure` (one relaxed load when no
    /// ring anywhere is).
    pub fn must_wait(&self, topic: &[u8]) -> bool {
        self.node.pressured.load(Ordering::Relaxed) > 0
            && self
                .node
                .pressure
                .get(self.router.table.partition_of(topic) as usize)
                .is_some_and(|f| f.0.load(Ordering::Relaxed))
    }
}

/// How often an owner with messages waiting at full memory rings looks again: the
/// subscribers that free the rings run anywhere and nothing wakes the owner for it.
const RELIEVE_EVERY: Duration = Duration::from_millis(1);

/// Admits the messages waiting at this shard's full memory rings as the rings free up
/// (see [`Shard::relieve`]); asleep while nothing waits.
pub async fn relieve_loop(shard: Rc<Shard>, wake: LocalReceiver<()>) {
    while wake.recv().await.is_some() {
        loop {
            glommio::timer::sleep(RELIEVE_EVERY).await;
            let mut out = shard.outgoing();
            let more = shard.relieve(&mut shard.st.borrow_mut(), &mut out);
            crate::engine::commit::commit_inline(&shard, &mut out);
            out.flush(&shard.mesh).await;
            if !more || shard.stopping() {
                break;
            }
        }
    }
}
