//! `loadgen`: an open-loop MQTT load generator for RingMQ and any other MQTT 3.1.1/5.0
//! broker.
//!
//! Publishers send on a fixed schedule (`--rate`, spread over them); every payload carries
//! its publisher, sequence number and *scheduled* send time, so latency is measured from
//! when a message should have left, and a broker that stalls shows up as latency rather
//! than as a slower generator (coordinated omission corrected). Subscribers check loss,
//! duplicates and per-publisher order. Latency goes into HdrHistograms (1 µs resolution,
//! 3 significant digits); `--slo` turns the figures into a verdict and an exit status.
//!
//! Exit status: 0 done (and SLO met), 1 SLO failed, 2 could not run (bad flags, broker
//! unreachable, CONNACK or SUBACK refused, descriptor limit too low).

mod args;
mod link;
mod plan;
mod report;
mod roles;
mod stats;
mod worker;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::args::{Args, Scenario};
use crate::plan::Plan;
use crate::report::{check_slo, Params, Percentiles, Summary};
use crate::stats::{histogram, Shared, DONE, RUNNING};

/// Time between "all connected" and the first scheduled message.
const START_DELAY: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(summary) => {
            print!("{}", report::text(&summary));
            if let Some(path) = &args.json {
                let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
                if let Err(e) = std::fs::write(path, json + "\n") {
                    eprintln!("loadgen: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            match summary.slo {
                Some(v) if !v.passed => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn sum(shared: &Shared, f: impl Fn(&stats::Counters) -> u64) -> u64 {
    shared.counters.iter().map(f).sum()
}

fn run(args: &Args) -> Result<Summary, String> {
    let plan = Arc::new(Plan::from_args(args)?);
    if let Some(slo) = &args.slo {
        // Reject a malformed SLO before spending a run on it.
        let probe = empty_summary(&plan);
        check_slo(slo, &probe)?;
    }
    let shared = Arc::new(Shared::new(plan.threads, plan.pubs.len()));
    let handles = worker::spawn(plan.clone(), shared.clone(), false)?;
    let total = plan.connections();
    // Connect everyone (bounded: 10 s, plus the connect schedule, plus 5 ms per connection
    // for brokers that accept slowly).
    let schedule = (total as u64 * 1000).checked_div(plan.connect_rate).unwrap_or(0);
    let connect_deadline =
        Instant::now() + Duration::from_secs(10) + Duration::from_millis(schedule + 5 * total as u64);
    let conn_started = Instant::now();
    loop {
        let ready = shared.ready.load(Ordering::Acquire);
        let errors = sum(&shared, |c| c.errors.load(Ordering::Relaxed)) as usize;
        if shared.phase() == DONE || ready + errors >= total {
            break;
        }
        if Instant::now() > connect_deadline {
            shared.fail(format!("only {ready} of {total} clients connected within the time allowed"));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let fatal = shared.fatal.lock().map_err(|e| e.to_string())?.clone();
    if let Some(e) = fatal {
        shared.phase.store(DONE, Ordering::Release);
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }
    let connect_time = conn_started.elapsed();
    let go = shared.now_ns() + START_DELAY.as_nanos() as u64;
    let measure = go + plan.warmup.as_nanos() as u64;
    let end = measure + plan.duration.as_nanos() as u64;
    shared.go_ns.store(go, Ordering::Relaxed);
    shared.measure_ns.store(measure, Ordering::Relaxed);
    shared.end_ns.store(end, Ordering::Relaxed);
    shared.phase.store(RUNNING, Ordering::Release);
    progress(&plan, &shared, end, args.quiet);
    // Drain: wait for publishers to finish and subscribers to catch up.
    let drain_deadline = end + plan.drain.as_nanos() as u64;
    while shared.phase() != DONE && shared.now_ns() < drain_deadline {
        if shared.pubs_done.load(Ordering::Acquire) == plan.pubs.len() {
            let expected = expected_total(&plan, &shared);
            if sum(&shared, |c| c.unique.load(Ordering::Relaxed)) >= expected {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.phase.store(DONE, Ordering::Release);
    let mut results = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        results.push(h.join().map_err(|e| format!("worker {i} failed: {e}"))?);
    }
    let fatal = shared.fatal.lock().map_err(|e| e.to_string())?.clone();
    if let Some(e) = fatal {
        return Err(e);
    }
    let (mut summary, latency) = summarize(&plan, &shared, results, connect_time);
    if let Some(slo) = &args.slo {
        summary.slo = Some(check_slo(slo, &summary)?);
    }
    if let Some(path) = &args.hgrm {
        std::fs::write(path, report::hgrm(&latency)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(summary)
}

/// Messages the subscribers should receive, given what each publisher sent.
fn expected_total(plan: &Plan, shared: &Shared) -> u64 {
    let published = |p: u32| shared.published[p as usize].load(Ordering::Acquire);
    if plan.shared() {
        // One group: each message of a publisher the group's filter matches, once.
        plan.feeds.first().map(|f| f.iter().map(|p| published(*p)).sum()).unwrap_or(0)
    } else {
        plan.feeds.iter().map(|f| f.iter().map(|p| published(*p)).sum::<u64>()).sum()
    }
}

/// One progress line a second until publishing ends.
fn progress(plan: &Plan, shared: &Shared, end: u64, quiet: bool) {
    let mut total = histogram();
    let (mut last_sent, mut last_recv, mut last_at) = (0, 0, Instant::now());
    let started = Instant::now();
    while shared.now_ns() < end && shared.phase() != DONE {
        let left = Duration::from_nanos(end.saturating_sub(shared.now_ns()));
        std::thread::sleep(left.min(Duration::from_secs(1)));
        let mut interval = histogram();
        for slot in &shared.interval {
            if let Ok(mut h) = slot.lock() {
                let _ = interval.add(&*h);
                h.reset();
            }
        }
        let _ = total.add(&interval);
        let sent = sum(shared, |c| c.sent.load(Ordering::Relaxed));
        let recv = sum(shared, |c| c.received.load(Ordering::Relaxed));
        let errors = sum(shared, |c| c.errors.load(Ordering::Relaxed));
        let dt = last_at.elapsed().as_secs_f64().max(1e-3);
        if !quiet && plan.scenario != Scenario::Conn && dt >= 0.5 {
            let p99 = |h: &hdrhistogram::Histogram<u64>| {
                if h.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{:.3}ms", h.value_at_quantile(0.99) as f64 / 1000.0)
                }
            };
            eprintln!(
                "[{:>4.0}s] sent {:>9.0}/s  recv {:>9.0}/s  p99 {} (so far {})  errors {}",
                started.elapsed().as_secs_f64(),
                (sent - last_sent) as f64 / dt,
                (recv - last_recv) as f64 / dt,
                p99(&interval),
                p99(&total),
                errors
            );
        }
        (last_sent, last_recv, last_at) = (sent, recv, Instant::now());
    }
}

fn empty_summary(plan: &Plan) -> Summary {
    Summary {
        params: Params::of(plan),
        sent: 0,
        sent_rate: 0.0,
        received: 0,
        unique: 0,
        received_rate: 0.0,
        expected: 0,
        lost: 0,
        duplicates: 0,
        reordered: 0,
        silent_subscribers: 0,
        latency_us: Percentiles::default(),
        ack_latency_us: Percentiles::default(),
        connect_latency_us: Percentiles::default(),
        connected: 0,
        connect_time_s: 0.0,
        errors: 0,
        error_samples: Vec::new(),
        slo: None,
    }
}

/// The summary, and the merged end-to-end latency histogram.
fn summarize(
    plan: &Plan,
    shared: &Shared,
    results: Vec<stats::WorkerResult>,
    connect_time: Duration,
) -> (Summary, hdrhistogram::Histogram<u64>) {
    let mut latency = histogram();
    let mut ack = histogram();
    let mut connect = histogram();
    let mut s = empty_summary(plan);
    let mut subs = Vec::new();
    let mut last_connected = 0;
    for r in results {
        let _ = latency.add(&r.latency);
        let _ = ack.add(&r.ack);
        let _ = connect.add(&r.connect);
        s.connected += r.connected;
        last_connected = last_connected.max(r.last_connected_ns);
        s.error_samples.extend(r.errors);
        subs.extend(r.subs);
    }
    s.error_samples.truncate(5);
    s.sent = sum(shared, |c| c.sent.load(Ordering::Relaxed));
    s.errors = sum(shared, |c| c.errors.load(Ordering::Relaxed));
    let secs = (plan.warmup + plan.duration).as_secs_f64().max(1e-9);
    s.sent_rate = s.sent as f64 / secs;
    s.expected = expected_total(plan, shared);
    for sub in &subs {
        s.received += sub.received;
        s.unique += sub.unique;
        s.duplicates += sub.duplicates;
        s.reordered += sub.reordered;
        let should =
            plan.feeds[sub.index as usize].iter().any(|p| shared.published[*p as usize].load(Ordering::Relaxed) > 0);
        if should && sub.unique == 0 && !plan.shared() {
            s.silent_subscribers += 1;
        }
    }
    s.lost = s.expected.saturating_sub(s.unique);
    s.received_rate = s.unique as f64 / secs;
    s.latency_us = Percentiles::of(&latency);
    s.ack_latency_us = Percentiles::of(&ack);
    s.connect_latency_us = Percentiles::of(&connect);
    if plan.scenario == Scenario::Conn {
        s.connect_time_s = if last_connected > 0 {
            Duration::from_nanos(last_connected).as_secs_f64()
        } else {
            connect_time.as_secs_f64()
        };
    }
    (s, latency)
}
