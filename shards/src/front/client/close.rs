//! The end of a connection on its session's shard: the reason told to a 5.0 client, the
//! close counted by cause, the will published or parked for its delay, and the session
//! ended (expiry 0) or kept offline until its expiry.
//!
//! Front layer: part of the client path, after its read loop.

use std::time::{Duration, Instant};

use proto::reason;

use super::{Client, End};
use crate::engine::session::PendingWill;
use crate::net::{CloseCause, Conn};
use crate::show::short;

impl Client {
    /// After the read loop: tell the client why (5.0), publish or park the will, and end
    /// or park the session.
    pub(super) async fn finish(&mut self, end: End) {
        let code = match end {
            End::KeepAlive => Some(reason::KEEP_ALIVE_TIMEOUT),
            End::Violation(c) => Some(c),
            _ => None,
        };
        match code {
            Some(c) if self.v5() => {
                let bye = Conn::disconnect(c);
                self.conn.close_with(CloseCause::ReaderDone, Some(&bye));
            }
            _ => self.conn.close(CloseCause::ReaderDone),
        }
        if matches!(end, End::Violation(_)) {
            self.shard.st.borrow_mut().stats.protocol_errors += 1;
        }
        match self.conn.close_cause() {
            Some(CloseCause::SlowConsumer) => {
                self.shard.st.borrow_mut().stats.slow_consumers += 1;
                tracing::info!(client_id = %short(&self.principal.client_id), "subscriber disconnected: outbound buffer past twice its bound");
            }
            Some(CloseCause::Stuck) => {
                self.shard.st.borrow_mut().stats.stuck += 1;
                let secs = self.shard.cfg.limits.stuck_timeout.as_secs_f64();
                tracing::info!(client_id = %short(&self.principal.client_id), secs, "stuck client disconnected: no progress");
            }
            Some(CloseCause::Expired) => {
                tracing::info!(client_id = %short(&self.principal.client_id), "client disconnected: its token expired");
            }
            _ => {}
        }
        let publish_will = match end {
            End::Disconnect(r) => r == reason::DISCONNECT_WITH_WILL,
            _ => true,
        };
        let will = if publish_will { self.will.take() } else { None };
        let now = Instant::now();
        let mut wills = Vec::new();
        {
            let shard = self.shard.clone();
            let st = &mut *shard.st.borrow_mut();
            let owner = st
                .session(self.slot, self.generation)
                .is_some_and(|s| s.conn.as_ref().is_some_and(|c| c.id == self.conn.id));
            if owner {
                // Gone from its shared groups; what it held of them goes to other members.
                shard.leave_groups(st, self.slot, &mut self.out);
                let Some(s) = st.session(self.slot, self.generation) else { return };
                s.conn = None;
                s.went_offline();
                let expiry = s.expiry;
                if expiry == 0 {
                    wills.extend(will.map(|w| w.0));
                    if let Some(ended) = shard.end_session(st, self.slot, &mut self.out) {
                        wills.extend(ended.will.map(|w| w.msg));
                    }
                } else {
                    match will {
                        Some((msg, 0)) => wills.push(msg),
                        Some((msg, delay)) => {
                            s.will = Some(PendingWill { msg, at: now + Duration::from_secs(u64::from(delay)) })
                        }
                        None => {}
                    }
                    s.expires_at = (expiry != u32::MAX).then(|| now + Duration::from_secs(u64::from(expiry)));
                    // A will published (or dropped by a normal DISCONNECT) is not restored.
                    if s.will.is_none() {
                        s.will_image = None;
                    }
                    if s.persist {
                        shard.persist_session(st, self.slot);
                    }
                }
            } else if let Some((msg, delay)) = will {
                // Taken over: the will goes unless a delay lets the new connection cancel it,
                // which only works when the session lives on.
                let continued = st.session(self.slot, self.generation).is_some();
                if delay == 0 || !continued {
                    wills.push(msg);
                }
            }
        }
        for w in wills {
            self.shard.route(&mut self.shard.st.borrow_mut(), w, None, &mut self.out);
        }
        self.flush().await;
        tracing::info!(client_id = %short(&self.principal.client_id), reason = ?end, "client disconnected");
    }
}
