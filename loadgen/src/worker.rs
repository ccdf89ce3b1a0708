//! Worker threads: one glommio executor each, owning a share of the clients (client `j`
//! belongs to worker `j % threads`). A worker connects its clients, runs them, and hands
//! back its histograms and subscriber records when the run is done.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::args::Scenario;
use crate::link::{connect, Link};
use crate::plan::Plan;
use crate::roles::{await_suback, publisher, subscribe_packet, subscriber, Ctx};
use crate::stats::{histogram, record, Shared, WorkerResult, DONE};

/// glommio's registered I/O memory per worker: small, locked memory is often limited.
const IO_MEMORY: usize = 256 * 1024;
/// How often a worker hands its interval histogram to the progress reporter.
const HANDOVER: Duration = Duration::from_millis(250);

/// Starts `plan.threads` workers: on `plan.cpus` round-robin when given (--cpus), else
/// pinned to CPU `w % cpus` with `pin`, else unbound.
pub fn spawn(plan: Arc<Plan>, shared: Arc<Shared>, pin: bool) -> Result<Vec<ExecutorJoinHandle<WorkerResult>>, String> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (0..plan.threads)
        .map(|w| {
            let (plan, shared) = (plan.clone(), shared.clone());
            let fixed = plan.cpus.get(w % plan.cpus.len().max(1)).copied();
            let placement = match fixed {
                Some(cpu) => Placement::Fixed(cpu),
                None if pin => Placement::Fixed(w % cpus),
                None => Placement::Unbound,
            };
            LocalExecutorBuilder::new(placement)
                .name(&format!("loadgen-{w}"))
                .io_memory(IO_MEMORY)
                .spawn(move || run(plan, shared, w))
                .map_err(|e| match fixed {
                    Some(cpu) => format!("cannot start worker {w} on CPU {cpu}: {e}"),
                    None => format!("cannot start worker {w}: {e} (loadgen needs io_uring)"),
                })
        })
        .collect()
}

fn source(plan: &Plan, j: usize) -> Option<std::net::IpAddr> {
    (!plan.sources.is_empty()).then(|| plan.sources[j % plan.sources.len()])
}

async fn run(plan: Arc<Plan>, shared: Arc<Shared>, w: usize) -> WorkerResult {
    let ctx = Rc::new(Ctx {
        plan: plan.clone(),
        shared: shared.clone(),
        worker: w,
        latency: RefCell::new(histogram()),
        interval: RefCell::new(histogram()),
        ack: RefCell::new(histogram()),
        errors: RefCell::new(Vec::new()),
        per_second: RefCell::new(vec![0; plan.tally_seconds()]),
        worst_per_second: RefCell::new(vec![0; plan.tally_seconds()]),
        lag_per_second: RefCell::new(vec![0; plan.tally_seconds()]),
    });
    let handover = {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(HANDOVER).await;
                let mut mine = ctx.interval.borrow_mut();
                if let Ok(mut slot) = ctx.shared.interval[w].lock() {
                    let _ = slot.add(&*mine);
                }
                mine.reset();
            }
        })
    };
    let mut result = WorkerResult::new();
    if plan.scenario == Scenario::Conn {
        conn_storm(&plan, &shared, w, &mut result).await;
        drop(handover);
        return result;
    }
    let clean = !plan.persistent;
    let threads = plan.threads;
    // Subscribers first, so nothing published is missed.
    let mut sub_tasks = Vec::new();
    for (j, spec) in plan.subs.iter().enumerate().filter(|(j, _)| j % threads == w) {
        let (link, took) = match connect(
            plan.broker,
            source(&plan, j),
            &plan.dial,
            plan.protocol,
            &spec.client_id,
            clean,
            plan.keep_alive,
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                shared.fail(e);
                return result;
            }
        };
        record(&mut result.connect, took.as_nanos() as u64);
        link.send(&subscribe_packet(spec, plan.qos));
        let mut rbuf = BytesMut::with_capacity(4096);
        if let Err(e) = await_suback(&link, spec, &mut rbuf).await {
            shared.fail(e);
            return result;
        }
        shared.ready.fetch_add(1, Ordering::AcqRel);
        sub_tasks.push(glommio::spawn_local(subscriber(ctx.clone(), spec.clone(), link, rbuf)));
    }
    let mut pub_tasks = Vec::new();
    for (j, spec) in plan.pubs.iter().enumerate().filter(|(j, _)| j % threads == w) {
        let src = source(&plan, plan.subs.len() + j);
        let (link, took) =
            match connect(plan.broker, src, &plan.dial, plan.protocol, &spec.client_id, clean, plan.keep_alive).await {
                Ok(l) => l,
                Err(e) => {
                    shared.fail(e);
                    return result;
                }
            };
        record(&mut result.connect, took.as_nanos() as u64);
        shared.ready.fetch_add(1, Ordering::AcqRel);
        pub_tasks.push(glommio::spawn_local(publisher(ctx.clone(), spec.clone(), link)));
    }
    for t in pub_tasks {
        result.pubs.push(t.await);
    }
    for t in sub_tasks {
        result.subs.push(t.await);
    }
    drop(handover);
    result.errors.extend(ctx.errors.take());
    result.latency = ctx.latency.borrow().clone();
    result.ack = ctx.ack.borrow().clone();
    result.per_second = ctx.per_second.take();
    result.worst_per_second = ctx.worst_per_second.take();
    result.lag_per_second = ctx.lag_per_second.take();
    result
}

/// The `conn` scenario: opens this worker's share of the connections on the schedule
/// `--connect-rate` gives, records each CONNECT->CONNACK time, and holds them all until
/// the run is done.
async fn conn_storm(plan: &Arc<Plan>, shared: &Arc<Shared>, w: usize, result: &mut WorkerResult) {
    let links: Rc<RefCell<Vec<Rc<Link>>>> = Rc::new(RefCell::new(Vec::new()));
    let results: Rc<RefCell<(u64, u64, Vec<String>)>> = Rc::new(RefCell::new((0, 0, Vec::new())));
    let connect_hist = Rc::new(RefCell::new(histogram()));
    let start = shared.now_ns();
    let mut tasks = Vec::new();
    for (j, spec) in plan.subs.iter().enumerate().filter(|(j, _)| j % plan.threads == w) {
        let at = start + (j as u64 * 1_000_000_000).checked_div(plan.connect_rate).unwrap_or(0);
        let (plan, shared, links, results, hist) =
            (plan.clone(), shared.clone(), links.clone(), results.clone(), connect_hist.clone());
        let spec = spec.clone();
        tasks.push(glommio::spawn_local(async move {
            let now = shared.now_ns();
            if at > now {
                glommio::timer::sleep(Duration::from_nanos(at - now)).await;
            }
            match connect(
                plan.broker,
                source(&plan, j),
                &plan.dial,
                plan.protocol,
                &spec.client_id,
                true,
                plan.keep_alive,
            )
            .await
            {
                Ok((link, took)) => {
                    record(&mut hist.borrow_mut(), took.as_nanos() as u64);
                    links.borrow_mut().push(link);
                    let mut r = results.borrow_mut();
                    r.0 += 1;
                    r.1 = r.1.max(shared.now_ns());
                    shared.ready.fetch_add(1, Ordering::AcqRel);
                }
                Err(e) => {
                    shared.counters[w].errors.fetch_add(1, Ordering::Relaxed);
                    let mut r = results.borrow_mut();
                    if r.2.len() < 10 {
                        r.2.push(e);
                    }
                }
            }
        }));
        // Yield between spawns of a large storm so connects start while spawning.
        if tasks.len() % 256 == 0 {
            glommio::executor().yield_task_queue_now().await;
        }
    }
    for t in tasks {
        t.await;
    }
    while shared.phase() != DONE {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    for l in links.borrow().iter() {
        l.close();
    }
    // Let the DISCONNECTs go out.
    glommio::timer::sleep(Duration::from_millis(100)).await;
    let r = results.borrow();
    result.connected = r.0;
    result.last_connected_ns = r.1;
    result.errors = r.2.clone();
    result.connect = connect_hist.borrow().clone();
}
