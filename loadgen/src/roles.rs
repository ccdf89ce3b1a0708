//! What each client does: publishers on an open-loop schedule (or closed loop with
//! `--max`), subscribers checking every message, and idle connections for `conn`.
//!
//! Payload layout (little endian): magic `LG01` (4), publisher index (4), sequence (8),
//! scheduled send time in ns after the run's time zero (8), then padding to `--size`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{future::poll_fn, AsyncReadExt};
use hdrhistogram::Histogram;
use proto::{Ack, Packet, Props, Protocol, Publish, QoS, Subscribe, SubscribeFilter};

use crate::link::{Link, OUTBOX_HIGH};
use crate::plan::{Plan, PubSpec, SubSpec, HEADER};
use crate::stats::{record, Shared, SubStats, DONE, RUNNING};

/// Marks our payloads.
pub const MAGIC: &[u8; 4] = b"LG01";
/// Most messages a publisher encodes per wake-up, so one late wake-up cannot build an
/// unbounded burst in memory.
const MAX_BURST: u64 = 1024;
/// How often blocked reads look at the run phase.
const POLL_PHASE: Duration = Duration::from_millis(200);

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
}

impl Ctx {
    fn counters(&self) -> &crate::stats::Counters {
        &self.shared.counters[self.worker]
    }
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
        Template { bytes, pkid_at, payload_at }
    }

    fn write(&self, out: &mut BytesMut, index: u32, seq: u64, sched_ns: u64, pkid: u16) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(at) = self.pkid_at {
            out[start + at..start + at + 2].copy_from_slice(&pkid.to_be_bytes());
        }
        let p = start + self.payload_at;
        out[p..p + 4].copy_from_slice(MAGIC);
        out[p + 4..p + 8].copy_from_slice(&index.to_le_bytes());
        out[p + 8..p + 16].copy_from_slice(&seq.to_le_bytes());
        out[p + 16..p + HEADER].copy_from_slice(&sched_ns.to_le_bytes());
    }
}

/// A publisher's QoS 1/2 window: scheduled time per packet id, and a waker for room.
struct Window {
    sched: RefCell<Vec<u64>>,
    used: RefCell<Vec<bool>>,
    inflight: Cell<u16>,
    next: Cell<u16>,
    room: Cell<Option<Waker>>,
}

impl Window {
    fn new() -> Self {
        Window {
            sched: RefCell::new(vec![0; 65536]),
            used: RefCell::new(vec![false; 65536]),
            inflight: Cell::new(0),
            next: Cell::new(0),
            room: Cell::new(None),
        }
    }

    fn take(&self, sched_ns: u64) -> u16 {
        let mut used = self.used.borrow_mut();
        loop {
            let id = self.next.get().wrapping_add(1).max(1);
            self.next.set(id);
            if !used[usize::from(id)] {
                used[usize::from(id)] = true;
                self.sched.borrow_mut()[usize::from(id)] = sched_ns;
                self.inflight.set(self.inflight.get() + 1);
                return id;
            }
        }
    }

    /// Frees `pkid`; returns its scheduled time if it was in use.
    fn free(&self, pkid: u16) -> Option<u64> {
        let mut used = self.used.borrow_mut();
        if !std::mem::replace(&mut used[usize::from(pkid)], false) {
            return None;
        }
        self.inflight.set(self.inflight.get() - 1);
        if let Some(w) = self.room.take() {
            w.wake();
        }
        Some(self.sched.borrow()[usize::from(pkid)])
    }

    async fn wait_room(&self, limit: u16, link: &Link) {
        poll_fn(|cx| {
            if self.inflight.get() < limit || link.is_closed() {
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
    loop {
        while let Ok(p) = proto::read(&mut rbuf, link.protocol, usize::MAX) {
            let (pkid, done) = match p {
                Packet::PubAck(a) => (a.pkid, true),
                Packet::PubComp(a) => (a.pkid, true),
                Packet::PubRec(a) => {
                    link.send(&Packet::PubRel(Ack { pkid: a.pkid, reason: 0, properties: Props::default() }));
                    (a.pkid, false)
                }
                _ => continue,
            };
            if done {
                if let Some(sched) = window.free(pkid) {
                    ctx.counters().acked.fetch_add(1, Ordering::Relaxed);
                    if sched >= ctx.shared.measure_ns.load(Ordering::Relaxed) {
                        record(&mut ctx.ack.borrow_mut(), ctx.shared.now_ns().saturating_sub(sched));
                    }
                }
            }
        }
        if link.is_closed() && window.inflight.get() == 0 {
            return;
        }
        match sock.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                if ctx.shared.phase() == DONE {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    // The broker closing after our own DISCONNECT is not an error.
    if ctx.shared.phase() != DONE && !link.is_closed() {
        ctx.counters().errors.fetch_add(1, Ordering::Relaxed);
    }
    // Nothing more will be acknowledged: let the publisher stop waiting.
    if let Some(w) = window.room.take() {
        w.wake();
    }
}

/// Runs one publisher until the end of the run; returns how many messages it sent.
pub async fn publisher(ctx: Rc<Ctx>, spec: PubSpec, link: Rc<Link>) -> u64 {
    let plan = ctx.plan.clone();
    let shared = ctx.shared.clone();
    let template = Template::new(&spec, &plan);
    let window = Rc::new(Window::new());
    let acks = plan.qos != QoS::AtMostOnce;
    if acks {
        glommio::spawn_local(read_acks(ctx.clone(), link.clone(), window.clone())).detach();
    }
    if !wait_running(&shared).await {
        return 0;
    }
    let go = shared.go_ns.load(Ordering::Relaxed);
    let end = shared.end_ns.load(Ordering::Relaxed);
    let npubs = plan.pubs.len() as u64;
    // Open loop: publisher i sends at go + offset + k * interval.
    let interval = if plan.max { 0 } else { (1_000_000_000 * npubs / plan.rate.max(1)).max(1) };
    let offset = interval * u64::from(spec.index) / npubs.max(1);
    let mut seq: u64 = 0;
    let counters = ctx.counters();
    let fanout = plan.deliveries[spec.index as usize];
    // Closed loop is end-to-end: at most --inflight messages per publisher may be on their
    // way to subscribers, so the rate found is one the broker sustains, not one it buffers
    // or drops.
    let e2e_window: u64 = plan.deliveries.iter().sum::<u64>() * u64::from(plan.inflight);
    loop {
        let now = shared.now_ns();
        if now >= end || link.is_closed() || shared.phase() == DONE {
            break;
        }
        if plan.max && fanout > 0 && shared.outstanding() >= e2e_window {
            glommio::timer::sleep(Duration::from_micros(50)).await;
            continue;
        }
        let mut n = 0u64;
        link.push(|out| {
            while n < MAX_BURST {
                let sched = if plan.max { now } else { go + offset + seq * interval };
                if sched > now || sched >= end {
                    break;
                }
                if acks && window.inflight.get() >= plan.inflight {
                    break;
                }
                let pkid = if acks { window.take(sched) } else { 0 };
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
        if link.queued() >= OUTBOX_HIGH {
            link.drained_below(OUTBOX_HIGH / 2).await;
        }
        if acks && window.inflight.get() >= plan.inflight {
            window.wait_room(plan.inflight, &link).await;
            continue;
        }
        if plan.max {
            if !acks {
                link.drained_below(1).await;
            }
            continue;
        }
        if n < MAX_BURST {
            sleep_until(&shared, go + offset + seq * interval).await;
        }
    }
    shared.published[spec.index as usize].store(seq, Ordering::Release);
    shared.pubs_done.fetch_add(1, Ordering::AcqRel);
    // Give acknowledgements of the last messages a chance, then close.
    while acks && window.inflight.get() > 0 && shared.phase() != DONE && !link.is_closed() {
        glommio::timer::sleep(POLL_PHASE).await;
    }
    link.close();
    seq
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
    let mut sock = link.sock.clone();
    sock.set_read_timeout(Some(POLL_PHASE));
    let mut chunk = vec![0u8; 64 * 1024];
    let mut measure = shared.measure_ns.load(Ordering::Relaxed);
    loop {
        let mut got = 0u64;
        let mut fresh = 0u64;
        let now = shared.now_ns();
        {
            let mut lat = ctx.latency.borrow_mut();
            let mut interval = ctx.interval.borrow_mut();
            while let Ok(p) = proto::read(&mut rbuf, link.protocol, usize::MAX) {
                let Packet::Publish(p) = p else {
                    if let Packet::PubRel(a) = p {
                        link.send(&Packet::PubComp(Ack { pkid: a.pkid, reason: 0, properties: Props::default() }));
                    }
                    continue;
                };
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => link.send(&Packet::PubAck(ack(p.pkid))),
                    QoS::ExactlyOnce => link.send(&Packet::PubRec(ack(p.pkid))),
                }
                got += 1;
                let b = &p.payload;
                if b.len() < HEADER || &b[..4] != MAGIC {
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
                if sched >= measure {
                    let ns = now.saturating_sub(sched);
                    record(&mut lat, ns);
                    record(&mut interval, ns);
                }
            }
        }
        if got > 0 {
            counters.received.fetch_add(got, Ordering::Relaxed);
            counters.unique.fetch_add(fresh, Ordering::Relaxed);
        }
        if shared.phase() == DONE {
            break;
        }
        match sock.read(&mut chunk).await {
            Ok(0) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
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
