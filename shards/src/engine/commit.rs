//! The engine's side of group commit: the commit task that writes (and, for
//! `fsync = always`, fsyncs) what the shard's store buffered, the inline commit at the end
//! of a read or a batch for `interval` and `never`, the `interval` fsync task, and the
//! release of what waited for a commit (PUBACK/PUBREC, SUBACK and PUBCOMP of persistent
//! sessions) through the routing step.
//!
//! Runs on the shard owning the store; started by the node.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalReceiver;
use proto::reason;

use super::shard::{Shard, State};
use crate::config::Fsync;
use crate::msg::AckTo;
use crate::net::CloseCause;
use crate::route::mesh::Egress;
use crate::route::Outgoing;
use crate::store::{sync_off_shard, Deferred};

/// fsyncs `points` off the shard and counts it (how many, how long) in the store's stats.
async fn timed_sync(shard: &Shard, points: &crate::store::Points) -> storage::Result<()> {
    let started = Instant::now();
    let r = sync_off_shard(points).await;
    let st = &mut *shard.st.borrow_mut();
    st.store.stats.fsyncs += 1;
    st.store.stats.fsync_us += started.elapsed().as_micros() as u64;
    r
}

/// The commit task of a shard: one commit per wake-up, covering everything since the last.
pub async fn commit_loop(shard: Rc<Shard>, wake: LocalReceiver<()>) {
    while wake.recv().await.is_some() {
        let (points, deferred, written, policy) = {
            let st = &mut *shard.st.borrow_mut();
            let (points, deferred, written) = st.store.flush();
            st.store.stats.commits += 1;
            (points, deferred, written, st.store.cfg.fsync)
        };
        let synced = match policy {
            Fsync::Always if !points.is_empty() => timed_sync(&shard, &points).await.inspect_err(|e| {
                tracing::error!(error = %e, "fsync failed; acknowledgements withheld");
            }),
            _ => Ok(()),
        }
        .is_ok();
        let mut out = shard.outgoing();
        {
            let st = &mut *shard.st.borrow_mut();
            if synced {
                st.store.settle(points);
            } else {
                st.store.stats.sync_errors += 1;
            }
            release(&shard, st, deferred, written && synced, &mut out);
        }
        out.flush(&shard.mesh).await;
    }
}

/// For `fsync = interval` and `never`, where nothing waits for an fsync: writes what was
/// appended out now and releases its acknowledgements into `out`, at the end of a read or
/// of an ingress batch, without the commit task's extra hop. `always` leaves it to the
/// commit task.
pub fn commit_inline(shard: &Shard, out: &mut Outgoing) {
    let st = &mut *shard.st.borrow_mut();
    let store = &mut st.store;
    if store.cfg.fsync == Fsync::Always || store.deferred.is_empty() {
        return;
    }
    let (points, deferred, written) = store.flush();
    store.settle(points);
    release(shard, st, deferred, written, out);
}

/// The `fsync = interval` task: fsyncs what commits wrote since the last one.
pub async fn interval_sync_loop(shard: Rc<Shard>, every: Duration) {
    while !shard.stopping() {
        glommio::timer::sleep(every).await;
        let points = std::mem::take(&mut shard.st.borrow_mut().store.unsynced);
        if points.is_empty() {
            continue;
        }
        match timed_sync(&shard, &points).await {
            Ok(()) => shard.st.borrow_mut().store.mark_durable(&points),
            Err(e) => {
                shard.st.borrow_mut().store.stats.sync_errors += 1;
                tracing::error!(error = %e, "interval fsync failed");
            }
        }
    }
}

/// Sends what waited for a commit through the routing step: acknowledgements grouped per
/// publisher shard (in place for this one). When the commit failed, publishes are refused
/// (5.0: 0x80; 3.1.1: the connection closes) and connections waiting for a SUBACK or
/// PUBCOMP are closed.
fn release(shard: &Shard, st: &mut State, deferred: Vec<Deferred>, ok: bool, out: &mut Outgoing) {
    let mut acks: HashMap<u16, Vec<(AckTo, u8)>> = HashMap::new();
    for d in deferred {
        match d {
            Deferred::Ack(a, code) => {
                let code = if ok { code } else { reason::UNSPECIFIED_ERROR };
                acks.entry(a.to.shard).or_default().push((a, code));
            }
            Deferred::Release(a, code) => {
                let code = if ok { code } else { reason::UNSPECIFIED_ERROR };
                shard.release_ack(st, a, code);
            }
            Deferred::Packet { to, conn_id, packet } => {
                if let Some(conn) =
                    st.session(to.slot, to.generation).and_then(|s| s.conn.clone()).filter(|c| c.id == conn_id)
                {
                    if ok {
                        conn.send(&packet);
                    } else {
                        conn.close(CloseCause::StoreFailed);
                    }
                }
            }
        }
    }
    for (to, acks) in acks {
        shard.to_origin(st, usize::from(to), Egress::Acked(acks), out);
    }
}
