//! The one routing step and the handlers it runs: [`Shard::dispatch`] resolves where a
//! piece of work goes ([`Dest`]: this shard or another; the cluster adds another node)
//! and either runs its handler in place or queues it for the meshes. The mesh receivers
//! run the very same handlers ([`Shard::handle_ingress`], [`Shard::handle_egress`]), so a
//! local short-cut and a hop behave alike. Also the task that sends what egress handlers
//! (which never send) left to do.
//!
//! Every engine and front path that sends work anywhere calls `dispatch`, through one of
//! its two typed doors: [`Shard::to_owner`] (ingress: towards an owner) and
//! [`Shard::to_origin`] (egress: results out of an owner).

use std::rc::Rc;

use glommio::channels::local_channel::LocalReceiver;

use super::shard::{Shard, State};
use crate::route::mesh::{Egress, Handoff, Ingress};
use crate::route::{Dest, Outgoing};

/// A piece of work for some shard.
#[derive(Debug)]
pub enum Work {
    /// Towards an owner.
    In(Ingress),
    /// Out of an owner: never sends further.
    Out(Egress),
}

impl Shard {
    /// The routing step: work for shard `to` runs here, in place, when that is this
    /// shard, and is queued in `out` for the meshes otherwise.
    pub fn dispatch(&self, st: &mut State, to: usize, work: Work, out: &mut Outgoing) {
        match (self.router.dest(to), work) {
            (Dest::Here, Work::In(m)) => self.handle_ingress(st, self.router.id, m, out),
            (Dest::Here, Work::Out(m)) => self.handle_egress(st, m),
            (Dest::Shard(d), Work::In(m)) => out.ingress(d, m),
            (Dest::Shard(d), Work::Out(m)) => out.egress(d, m),
        }
    }

    /// Dispatches work towards the owner shard `to`.
    pub fn to_owner(&self, st: &mut State, to: usize, m: Ingress, out: &mut Outgoing) {
        self.dispatch(st, to, Work::In(m), out);
    }

    /// Dispatches a result to shard `to`.
    pub fn to_origin(&self, st: &mut State, to: usize, m: Egress, out: &mut Outgoing) {
        self.dispatch(st, to, Work::Out(m), out);
    }

    /// Handles one piece of work towards this shard as owner, from shard `from` (this
    /// shard itself for a local short-cut). Results go back through the routing step.
    pub fn handle_ingress(&self, st: &mut State, from: usize, m: Ingress, out: &mut Outgoing) {
        match m {
            Ingress::Publish(msg, ack) => self.accept_at_owner(st, msg, ack, out),
            Ingress::Subscribe { from: who, req, items } => {
                let (retained, offsets) = self.serve_subscribe(st, from, &items);
                let done = Egress::SubscribeDone { to: who, req, retained, offsets };
                self.to_origin(st, usize::from(who.shard), done, out);
            }
            Ingress::Replay { to, parts, filters } => {
                let (msgs, rest, lost) = self.serve_replay(st, &parts, &filters);
                self.to_origin(st, usize::from(to.shard), Egress::Replayed { to, msgs, rest, lost }, out);
            }
            Ingress::Interest { origin, filter, delta } => self.apply_interest(st, usize::from(origin), &filter, delta),
            Ingress::Reshare(r) => self.pick_again(st, r, out),
            Ingress::Handoff(h) => self.arrive(st, h),
        }
    }

    /// Handles one result sent to this shard. Never sends to another shard.
    pub fn handle_egress(&self, st: &mut State, m: Egress) {
        match m {
            Egress::Deliver(msg, pos) => self.deliver_local(st, &msg, pos),
            Egress::DeliverShared { msg, pos, picks, hops } => self.deliver_shared(st, &msg, pos, picks, hops),
            Egress::SubscribeDone { to, req, retained, offsets } => {
                self.subscribe_answered(st, to, req, retained, offsets)
            }
            Egress::Acked(acks) => {
                for (a, code) in acks {
                    self.acked(st, a, code);
                }
            }
            Egress::Replayed { to, msgs, rest, lost } => self.replayed(st, to, msgs, rest, lost),
        }
    }

    /// A connection for one of this shard's sessions: queued for the front, which runs
    /// it. When the queue is full the connection is closed (its client reconnects).
    fn arrive(&self, st: &mut State, h: Box<Handoff>) {
        let Some(arrivals) = &st.arrivals else { return };
        if let Err(e) = arrivals.try_send(h) {
            tracing::warn!(error = %e, "connection hand-off queue full: connection closed");
        }
    }

    /// Handles one batch from the ingress mesh.
    pub async fn on_ingress(self: &Rc<Self>, from: usize, batch: Vec<Ingress>) {
        let mut out = self.outgoing();
        for m in batch {
            self.handle_ingress(&mut self.st.borrow_mut(), from, m, &mut out);
            if out.is_full() {
                out.flush(&self.mesh).await;
            }
        }
        crate::engine::commit::commit_inline(self, &mut out);
        out.flush(&self.mesh).await;
    }

    /// Handles one batch from the egress mesh.
    pub fn on_egress(&self, batch: Vec<Egress>) {
        let st = &mut *self.st.borrow_mut();
        for m in batch {
            self.handle_egress(st, m);
        }
    }
}

/// Sends what handlers that must not send (the egress handler) left to do: shared-group
/// messages to hand back, and the next replay page of sessions whose last page came back
/// with nothing left to send (so a replay that scans past records of other topics moves on
/// at once instead of a page per sweep).
pub async fn deferred_sends(shard: Rc<Shard>, wake: LocalReceiver<()>) {
    while wake.recv().await.is_some() {
        let mut out = shard.outgoing();
        {
            let st = &mut *shard.st.borrow_mut();
            shard.flush_reshare(st, &mut out);
            for slot in std::mem::take(&mut st.replay_now) {
                let max_queued = shard.cfg.limits.max_queued_messages;
                let wants = st
                    .slots
                    .get(slot as usize)
                    .is_some_and(|s| s.as_ref().is_some_and(|s| s.wants_replay_page(max_queued)));
                if wants {
                    shard.request_replay(st, slot, &mut out);
                }
            }
        }
        out.flush(&shard.mesh).await;
    }
}
