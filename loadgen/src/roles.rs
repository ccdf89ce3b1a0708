//! What each client does: publishers on an open-loop schedule (or closed loop with
//! `--max`, or as fast as their own window allows with `--flood`), subscribers checking
//! and acknowledging every message, and idle connections for `conn`.
//!
//! Payload layout (little endian): the run id (4), publisher index (4), sequence (8),
//! scheduled (closed loop, flood: actual) send time in ns after the run's time zero (8),
//! then padding to `--size`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::future::{or, poll_fn, yield_now};
use futures_lite::AsyncReadExt;
use hdrhistogram::Histogram;
use proto::{Ack, Packet, Props, Protocol, Publish, QoS, Subscribe, SubscribeFilter};

use crate::link::{Link, OUTBOX_HIGH};
use crate::plan::{Plan, PubSpec, SubSpec, HEADER};
use crate::stats::{record, PubResult, Shared, SubStats, DONE, RUNNING};

/// Most messages a publisher encodes per wake-up, so one late wake-up cannot build an
/// unbounded burst in memory.
const MAX_BURST: u64 = 1024;
/// How often blocked reads look at the run phase.
const POLL_PHASE: Duration = Duration::from_millis(200);
/// Error messages a worker keeps for the report (the count is always complete).
const MAX_ERROR_SAMPLES: usize = 10;

/// What a worker's clients share.
pub struct Ctx {
    /// The plan.
    pub plan: Arc<Plan>,
    /// Shared run state.
    pub shared: Arc<Shared>,
    /// This worker's index.
    pub worker: usize,
    /// End-to-end latency of measured messages.
    pub latency: RefCell<Histogram<u64>>,
    /// Latency since the last hand-over to the progress reporter.
    pub interval: RefCell<Histogram<u64>>,
    /// Publish-to-ack latency.
    pub ack: RefCell<Histogram<u64>>,
    /// The first error messages of this worker's clients.
    pub errors: RefCell<Vec<String>>,
    /// New messages this worker's subscribers received in each whole second after the
    /// first scheduled publish (the last entry also takes any later ones).
    pub per_second: RefCell<Vec<u64>>,
    /// The longest end-to-end latency (µs) of the messages due in each whole second after
    /// the first scheduled publish, warm-up included: where in the run the tail happened.
    pub worst_per_second: RefCell<Vec<u64>>,
    /// How late (µs) this worker's publishers sent the messages due in each second, at
    /// most: the generator's own delays (or a full QoS 1/2 window), as `worst_per_second`.
    pub lag_per_second: RefCell<Vec<u64>>,
}

impl Ctx {
    fn counters(&self) -> &crate::stats::Counters {
        &self.shared.counters[self.worker]
    }

    /// Counts `n` new messages received at `now` (ns after time zero) in their second.
    fn tally(&self, now: u64, n: u64) {
        let go = self.shared.go_ns.load(Ordering::Relaxed);
        let mut tally = self.per_second.borrow_mut();
        if let Some(last) = tally.len().checked_sub(1) {
            let second = (now.saturating_sub(go) / 1_000_000_000) as usize;
            tally[second.min(last)] += n;
        }
    }

    /// Keeps `ns`, the latency of a message due at `sched`, if it is its second's longest.
    fn worst(&self, sched: u64, ns: u64) {
        self.keep_max(&self.worst_per_second, sched, ns);
    }

    /// Keeps `ns`, how late a message due at `sched` was sent, if it is its second's most.
    fn lag(&self, sched: u64, ns: u64) {
        self.keep_max(&self.lag_per_second, sched, ns);
    }

    fn keep_max(&self, series: &RefCell<Vec<u64>>, sched: u64, ns: u64) {
        let go = self.shared.go_ns.load(Ordering::Relaxed);
        let mut series = series.borrow_mut();
        if let Some(last) = series.len().checked_sub(1) {
            let second = (sched.saturating_sub(go) / 1_000_000_000) as usize;
            let slot = &mut series[second.min(last)];
            *slot = (*slot).max(ns / 1000);
        }
    }

    /// Counts an error and keeps its message if there are few yet.
    fn error(&self, msg: String) {
        self.counters().errors.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.borrow_mut();
        if errors.len() < MAX_ERROR_SAMPLES {
            errors.push(msg);
        }
    }
}

/// The next complete packet in `rbuf`: `None` while more bytes are needed, an error when
/// the broker broke the protocol.
fn next_packet(rbuf: &mut BytesMut, protocol: Protocol) -> Result<Option<Packet>, String> {
    match proto::read(rbuf, protocol, usize::MAX) {
        Ok(p) => Ok(Some(p)),
        Err(proto::Error::Incomplete(_)) => Ok(None),
        Err(e) => Err(format!("undecodable packet from the broker: {e}")),
    }
}

/// Why the broker ended a connection, from its DISCONNECT.
fn disconnected(d: &proto::Disconnect) -> String {
    format!("DISCONNECT from the broker, reason 0x{:02x}", d.reason)
}

/// Waits for the run to start; false if it ended first.
async fn wait_running(shared: &Shared) -> bool {
    loop {
        match shared.phase() {
            RUNNING => return true,
            DONE => return false,
            _ => glommio::timer::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Sleeps until `at` ns after the time zero.
async fn sleep_until(shared: &Shared, at: u64) {
    let now = shared.now_ns();
    if at > now {
        glommio::timer::sleep(Duration::from_nanos(at - now)).await;
    }
}

/// A PUBLISH encoding reused for every message of a publisher: the packet id and the
/// payload header are patched in per message.
struct Template {
    bytes: BytesMut,
    pkid_at: Option<usize>,
    payload_at: usize,
    run: [u8; 4],
}

impl Template {
    fn new(spec: &PubSpec, plan: &Plan) -> Template {
        let publish = Publish {
            dup: false,
            qos: plan.qos,
            retain: false,
            topic: bytes::Bytes::copy_from_slice(spec.topic.as_bytes()),
            pkid: if plan.qos == QoS::AtMostOnce { 0 } else { 1 },
            properties: Props::default(),
            payload: bytes::Bytes::from(vec![0u8; plan.size]),
        };
        let pkid_at = publish.pkid_offset(plan.protocol);
        let mut bytes = BytesMut::new();
        Packet::Publish(publish).write(plan.protocol, &mut bytes).expect("publish template encodes");
        let payload_at = bytes.len() - plan.size;
        Template { bytes, pkid_at, payload_at, run: plan.run.to_le_bytes() }
    }

    fn write(&self, out: &mut BytesMut, index: u32, seq: u64, sched_ns: u64, pkid: u16) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(at) = self.pkid_at {
            out[start + at..start + at + 2].copy_from_slice(&pkid.to_be_bytes());
        }
        let p = start + self.payload_at;
        out[p..p + 4].copy_from_slice(&self.run);
        out[p + 4..p + 8].copy_from_slice(&index.to_le_bytes());
        out[p + 8..p + 16].copy_from_slice(&seq.to_le_bytes());
        out[p + 16..p + HEADER].copy_from_slice(&sched_ns.to_le_bytes());
    }
}

/// Where a packet id of a publisher's window is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SlotState {
    /// Free for the next message.
    #[default]
    Free,
    /// PUBLISH sent, not acknowledged.
    Sent,
    /// QoS 2: PUBREC received (the broker has the message), PUBCOMP not yet.
    Received,
}

/// One packet id of a publisher's window.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Scheduled (open loop) or actual (closed loop, flood) send time, ns after time zero.
    sched: u64,
    /// The message's sequence number.
    seq: u64,
    state: SlotState,
}

/// A publisher's QoS 1/2 window: packet ids `1..=limit`, each with its message, the
/// messages the broker refused, and a waker for room.
struct Window {
    slots: RefCell<Vec<Slot>>,
    limit: u16,
    inflight: Cell<u16>,
    next: Cell<u16>,
    refused: RefCell<Vec<u64>>,
    room: Cell<Option<Waker>>,
}

impl Window {
    /// A window of `limit` packet ids (0 at QoS 0: nothing is ever taken).
    fn new(limit: u16) -> Self {
        Window {
            slots: RefCell::new(vec![Slot::default(); usize::from(limit) + 1]),
            limit,
            inflight: Cell::new(0),
            next: Cell::new(0),
            refused: RefCell::new(Vec::new()),
            room: Cell::new(None),
        }
    }

    fn full(&self) -> bool {
        self.inflight.get() >= self.limit
    }

    /// Takes a free packet id for message `seq`; the window must not be full.
    fn take(&self, sched_ns: u64, seq: u64) -> u16 {
        debug_assert!(!self.full());
        let mut slots = self.slots.borrow_mut();
        loop {
            let id = if self.next.get() >= self.limit { 1 } else { self.next.get() + 1 };
            self.next.set(id);
            let slot = &mut slots[usize::from(id)];
            if slot.state == SlotState::Free {
                *slot = Slot { sched: sched_ns, seq, state: SlotState::Sent };
                self.inflight.set(self.inflight.get() + 1);
                return id;
            }
        }
    }

    /// QoS 2: the broker has the message of `pkid` (a repeated PUBREC changes nothing).
    fn received(&self, pkid: u16) {
        if let Some(slot) = self.slots.borrow_mut().get_mut(usize::from(pkid)) {
            if slot.state == SlotState::Sent {
                slot.state = SlotState::Received;
            }
        }
    }

    /// Frees `pkid` (`refused`: the broker answered with a failure reason code, so it never
    /// took the message); returns its send time if it was in use.
    fn free(&self, pkid: u16, refused: bool) -> Option<u64> {
        let slot = {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.get_mut(usize::from(pkid)).filter(|s| s.state != SlotState::Free)?;
            std::mem::take(slot)
        };
        if refused {
            self.refused.borrow_mut().push(slot.seq);
        }
        self.inflight.set(self.inflight.get() - 1);
        if let Some(w) = self.room.take() {
            w.wake();
        }
        Some(slot.sched)
    }

    /// Wakes a publisher waiting for room, so it looks at the clock and the phase again.
    fn nudge(&self) {
        if let Some(w) = self.room.take() {
            w.wake();
        }
    }

    /// Sequence numbers the broker has not acknowledged, or refused, in order.
    fn unacked(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.refused.borrow().clone();
        seqs.extend(self.slots.borrow().iter().filter(|s| s.state == SlotState::Sent).map(|s| s.seq));
        seqs.sort_unstable();
        seqs
    }

    async fn wait_room(&self, link: &Link) {
        poll_fn(|cx| {
            if !self.full() || link.is_closed() {
                return Poll::Ready(());
            }
            self.room.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

/// Reads a publisher's acknowledgements (QoS 1/2), answering PUBREC with PUBREL.
async fn read_acks(ctx: Rc<Ctx>, link: Rc<Link>, window: Rc<Window>) {
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut sock = link.sock.clone();
    sock.set_read_timeout(Some(POLL_PHASE));
    let mut chunk = vec![0u8; 16 * 1024];
    let mut why = None;
    'conn: loop {
        loop {
            let p = match next_packet(&mut rbuf, link.protocol) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    why = Some(e);
                    break 'conn;
                }
            };
            // 5.0 reason codes from 0x80 up: the broker did not take the message.
            let (pkid, refused) = match p {
                Packet::PubAck(a) => (a.pkid, a.reason >= 0x80),
                Packet::PubComp(a) => (a.pkid, false),
                Packet::PubRec(a) if a.reason >= 0x80 => (a.pkid, true),
                Packet::PubRec(a) => {
                    window.received(a.pkid);
                    link.send(&Packet::PubRel(ack(a.pkid)));
                    continue;
                }
                Packet::Disconnect(d) => {
                    why = Some(disconnected(&d));
                    break 'conn;
                }
                _ => continue,
            };
            if let Some(sched) = window.free(pkid, refused) {
                if !refused {
                    ctx.counters().acked.fetch_add(1, Ordering::Relaxed);
                    if sched >= ctx.shared.measure_ns.load(Ordering::Relaxed) {
                        record(&mut ctx.ack.borrow_mut(), ctx.shared.now_ns().saturating_sub(sched));
                    }
                }
            }
        }
        if link.closed_by_us() && window.inflight.get() == 0 {
            break;
        }
        match sock.read(&mut chunk).await {
            Ok(0) => {
                why = Some("connection closed by the broker".to_owned());
                break;
            }
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                if ctx.shared.phase() == DONE {
                    break;
                }
                // A broker that stopped acknowledging must not keep the publisher from
                // seeing the end of the run.
                window.nudge();
            }
            Err(e) => {
                why = Some(format!("read failed: {e}"));
                break;
            }
        }
    }
    // The broker closing after our own DISCONNECT, or at the end, is not an error.
    if let Some(why) = why.filter(|_| ctx.shared.phase() != DONE && !link.closed_by_us()) {
        ctx.error(format!("publisher {}: {why}", link.client_id));
    }
    // Nothing more will be acknowledged: let the publisher stop waiting.
    window.nudge();
}

/// Runs one publisher until the end of the run (its --count sent, or the run's end);
/// returns what it sent and what the broker never acknowledged.
pub async fn publisher(ctx: Rc<Ctx>, spec: PubSpec, link: Rc<Link>) -> PubResult {
    let plan = ctx.plan.clone();
    let shared = ctx.shared.clone();
    let template = Template::new(&spec, &plan);
    let acks = plan.qos != QoS::AtMostOnce;
    // Never more unacknowledged than the broker takes (5.0 Receive Maximum).
    let window = Rc::new(Window::new(if acks { plan.inflight.min(link.receive_max) } else { 0 }));
    if acks {
        glommio::spawn_local(read_acks(ctx.clone(), link.clone(), window.clone())).detach();
    }
    let mut result = PubResult { index: spec.index, window: window.limit, ..Default::default() };
    if !wait_running(&shared).await {
        return result;
    }
    let go = shared.go_ns.load(Ordering::Relaxed);
    let end = shared.end_ns.load(Ordering::Relaxed);
    let closed_loop = plan.max || plan.flood;
    // Everyone starts at time zero, so rates measured from it are fair.
    sleep_until(&shared, go).await;
    let npubs = plan.pubs.len() as u64;
    // Open loop: publisher i sends at go + offset + k * interval.
    let interval = if closed_loop { 0 } else { (1_000_000_000 * npubs / plan.rate.max(1)).max(1) };
    let offset = interval * u64::from(spec.index) / npubs.max(1);
    let count = plan.count.unwrap_or(u64::MAX);
    let mut seq: u64 = 0;
    let counters = ctx.counters();
    let fanout = plan.deliveries[spec.index as usize];
    // Closed loop is end-to-end: at most --inflight messages per publisher may be on their
    // way to subscribers, so the rate found is one the broker sustains, not one it buffers
    // or drops. A flood has no such limit: publishers know nothing of their subscribers.
    let e2e_window: u64 = plan.deliveries.iter().sum::<u64>() * u64::from(plan.inflight);
    loop {
        let now = shared.now_ns();
        if now >= end || seq >= count || link.is_closed() || shared.phase() == DONE {
            break;
        }
        if link.queued() >= OUTBOX_HIGH {
            // Socket backpressure: wait for the writer, looking at the clock now and then
            // (a broker that stopped reading must not hold the run past its end).
            or(link.drained_below(OUTBOX_HIGH / 2), glommio::timer::sleep(POLL_PHASE)).await;
            continue;
        }
        if plan.max && fanout > 0 && shared.outstanding() >= e2e_window {
            glommio::timer::sleep(Duration::from_micros(50)).await;
            continue;
        }
        let mut n = 0u64;
        // The first message sent in the burst is the latest one of it.
        let mut late: Option<u64> = None;
        link.push(|out| {
            while n < MAX_BURST && seq < count {
                let sched = if closed_loop { now } else { go + offset + seq * interval };
                if sched > now || sched >= end {
                    break;
                }
                if acks && window.full() {
                    break;
                }
                late.get_or_insert(sched);
                let pkid = if acks { window.take(sched, seq) } else { 0 };
                template.write(out, spec.index, seq, sched, pkid);
                seq += 1;
                n += 1;
                if plan.max && !acks && n >= 64 {
                    break;
                }
            }
        });
        counters.sent.fetch_add(n, Ordering::Relaxed);
        counters.due.fetch_add(n * fanout, Ordering::Relaxed);
        if let Some(sched) = late.filter(|_| !closed_loop) {
            ctx.lag(sched, now.saturating_sub(sched));
        }
        if acks && window.full() {
            window.wait_room(&link).await;
            continue;
        }
        if plan.flood {
            // The outbox has room (QoS 0: the socket took the last burst): let the writer
            // and the subscribers of this thread run, then send more.
            yield_now().await;
            continue;
        }
        if plan.max {
            if !acks {
                or(link.drained_below(1), glommio::timer::sleep(POLL_PHASE)).await;
            }
            continue;
        }
        if n < MAX_BURST {
            sleep_until(&shared, go + offset + seq * interval).await;
        }
    }
    // At QoS 0 nothing reads the socket: a failed write is how a lost connection shows.
    if !acks && link.is_closed() && !link.closed_by_us() && shared.phase() != DONE {
        ctx.error(format!("publisher {}: connection lost", link.client_id));
    }
    shared.published[spec.index as usize].store(seq, Ordering::Release);
    // Publishing time ends when the last publisher stops, blocked or not.
    shared.last_sent_ns.fetch_max(shared.now_ns().min(end), Ordering::Relaxed);
    shared.pubs_done.fetch_add(1, Ordering::AcqRel);
    // Give acknowledgements of the last messages a chance, then close.
    while acks && window.inflight.get() > 0 && shared.phase() != DONE && !link.is_closed() {
        glommio::timer::sleep(POLL_PHASE).await;
    }
    result.sent = seq;
    if acks {
        result.unacked = window.unacked();
    }
    link.close();
    result
}

/// Subscribes; the SUBACK is awaited by the caller through [`subscriber`]'s start.
pub fn subscribe_packet(spec: &SubSpec, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![SubscribeFilter {
            filter: spec.filter.clone(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }],
        properties: Props::default(),
    })
}

/// Reads until SUBACK; an error if it refuses the filter.
pub async fn await_suback(link: &Link, spec: &SubSpec, rbuf: &mut BytesMut) -> Result<(), String> {
    let mut sock = link.sock.clone();
    sock.set_read_timeout(Some(Duration::from_secs(10)));
    let mut chunk = [0u8; 1024];
    loop {
        match proto::read(rbuf, link.protocol, usize::MAX) {
            Ok(Packet::SubAck(a)) => {
                return match a.codes.first() {
                    Some(c) if *c < 0x80 => Ok(()),
                    other => Err(format!("{}: SUBSCRIBE {:?} refused: {other:?}", spec.client_id, spec.filter)),
                };
            }
            Ok(_) => continue,
            Err(proto::Error::Incomplete(_)) => {}
            Err(e) => return Err(format!("{}: bad SUBACK: {e}", spec.client_id)),
        }
        match sock.read(&mut chunk).await {
            Ok(0) => return Err(format!("{}: closed before SUBACK", spec.client_id)),
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{}: no SUBACK: {e}", spec.client_id)),
        }
    }
}

/// Runs one subscriber until the run is done; returns what it saw.
pub async fn subscriber(ctx: Rc<Ctx>, spec: SubSpec, link: Rc<Link>, mut rbuf: BytesMut) -> SubStats {
    let mut stats = SubStats::new(spec.index);
    let shared = ctx.shared.clone();
    let counters = ctx.counters();
    let npubs = ctx.plan.pubs.len() as u32;
    let run = ctx.plan.run.to_le_bytes();
    let mut sock = link.sock.clone();
    sock.set_read_timeout(Some(POLL_PHASE));
    let mut chunk = vec![0u8; 64 * 1024];
    let mut measure = shared.measure_ns.load(Ordering::Relaxed);
    let mut why = None;
    loop {
        let mut got = 0u64;
        let mut fresh = 0u64;
        let now = shared.now_ns();
        {
            let mut lat = ctx.latency.borrow_mut();
            let mut interval = ctx.interval.borrow_mut();
            loop {
                let p = match next_packet(&mut rbuf, link.protocol) {
                    Ok(Some(Packet::Publish(p))) => p,
                    Ok(Some(Packet::PubRel(a))) => {
                        link.send(&Packet::PubComp(ack(a.pkid)));
                        continue;
                    }
                    Ok(Some(Packet::Disconnect(d))) => {
                        why = Some(disconnected(&d));
                        break;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        why = Some(e);
                        break;
                    }
                };
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => link.send(&Packet::PubAck(ack(p.pkid))),
                    QoS::ExactlyOnce => link.send(&Packet::PubRec(ack(p.pkid))),
                }
                got += 1;
                let b = &p.payload;
                if b.len() < HEADER || b[..4] != run {
                    stats.foreign += 1;
                    continue;
                }
                let publisher = u32::from_le_bytes(b[4..8].try_into().unwrap_or_default());
                let seq = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
                let sched = u64::from_le_bytes(b[16..24].try_into().unwrap_or_default());
                if publisher >= npubs {
                    stats.foreign += 1;
                    continue;
                }
                if stats.see(publisher, seq) {
                    fresh += 1;
                }
                if measure == u64::MAX {
                    measure = shared.measure_ns.load(Ordering::Relaxed);
                }
                let ns = now.saturating_sub(sched);
                ctx.worst(sched, ns);
                if sched >= measure {
                    record(&mut lat, ns);
                    record(&mut interval, ns);
                }
            }
        }
        if got > 0 {
            counters.received.fetch_add(got, Ordering::Relaxed);
            counters.unique.fetch_add(fresh, Ordering::Relaxed);
        }
        if fresh > 0 {
            counters.last_unique_ns.fetch_max(now, Ordering::Relaxed);
            ctx.tally(now, fresh);
        }
        if shared.phase() == DONE || why.is_some() {
            break;
        }
        match sock.read(&mut chunk).await {
            Ok(0) => why = Some("connection closed by the broker".to_owned()),
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => why = Some(format!("read failed: {e}")),
        }
    }
    if let Some(why) = why {
        ctx.error(format!("subscriber {}: {why}", spec.client_id));
    }
    link.close();
    stats
}

fn ack(pkid: u16) -> Ack {
    Ack { pkid, reason: 0, properties: Props::default() }
}

/// The protocol's name for reports.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V4 => "3.1.1",
        Protocol::V5 => "5.0",
    }
}
