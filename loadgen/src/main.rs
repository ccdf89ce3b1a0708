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
//! `--max` closes the loop end to end; `--flood` lets each publisher send as fast as its
//! own in-flight window allows (`--count` messages, or for `--duration`), gives the
//! subscribers `--drain` to receive what is still on its way, and fails the run when a
//! message the broker acknowledged never arrived.
//!
//! `--plot` draws the latency percentile curve and the messages delivered per second as
//! SVG; `loadgen plot` overlays runs from the files their `--json` wrote. `--cpus` pins the
//! workers.
//!
//! Exit status: 0 done (and SLO met), 1 SLO failed, 2 could not run (bad flags, broker
//! unreachable, CONNACK or SUBACK refused, descriptor limit too low).

mod args;
mod dial;
mod link;
mod plan;
mod plot;
mod report;
mod roles;
mod stats;
mod worker;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use proto::QoS;

use crate::args::{Args, Command, Scenario};
use crate::plan::Plan;
use crate::report::{check_slo, Params, Percentiles, Summary};
use crate::stats::{histogram, Shared, DONE, RUNNING};

/// Time between "all connected" and the first scheduled message.
const START_DELAY: Duration = Duration::from_millis(100);
/// How often the main thread looks whether the publishers are done.
const TICK: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Plot(p)) = &args.command {
        return match plot::overlay(p) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen plot: {e}");
                ExitCode::from(2)
            }
        };
    }
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
            if let Some(path) = &args.plot {
                if let Err(e) = plot::write_run(&summary, path) {
                    eprintln!("loadgen: {e}");
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
    let slo = slo_of(args, &plan);
    if let Some(slo) = &slo {
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
    // Drain: wait for publishers to finish and subscribers to catch up, for at most
    // --drain after publishing stopped.
    let drain_deadline = shared.now_ns().min(end) + plan.drain.as_nanos() as u64;
    while shared.phase() != DONE && shared.now_ns() < drain_deadline {
        if shared.pubs_done.load(Ordering::Acquire) == plan.pubs.len() {
            let expected = expected_total(&plan, &shared);
            if sum(&shared, |c| c.unique.load(Ordering::Relaxed)) >= expected {
                break;
            }
        }
        std::thread::sleep(TICK);
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
    if let Some(slo) = &slo {
        summary.slo = Some(check_slo(slo, &summary)?);
    }
    if let Some(path) = &args.hgrm {
        std::fs::write(path, report::hgrm(&latency)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(summary)
}

/// The SLO the run is judged by: the one asked for and, for a flood at QoS 1/2, always
/// `acked_loss=0` (unless the SLO given sets acked_loss itself): a broker that acknowledged
/// a message must deliver it.
fn slo_of(args: &Args, plan: &Plan) -> Option<String> {
    let given = args.slo.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let implied = plan.flood && plan.qos != QoS::AtMostOnce;
    match given {
        Some(s) if implied && !s.split(',').any(|t| t.trim().starts_with("acked_loss")) => {
            Some(format!("{s},acked_loss=0"))
        }
        Some(s) => Some(s.to_owned()),
        None => implied.then(|| "acked_loss=0".to_owned()),
    }
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

/// One progress line a second until publishing ends (at `end`, or when every publisher
/// has sent its --count).
fn progress(plan: &Plan, shared: &Shared, end: u64, quiet: bool) {
    let mut total = histogram();
    let (mut last_sent, mut last_recv, mut last_at) = (0, 0, Instant::now());
    let started = Instant::now();
    let npubs = plan.pubs.len();
    while shared.now_ns() < end && shared.phase() != DONE {
        if npubs > 0 && shared.pubs_done.load(Ordering::Acquire) == npubs {
            break;
        }
        let left = Duration::from_nanos(end.saturating_sub(shared.now_ns()));
        std::thread::sleep(left.min(TICK));
        if last_at.elapsed() < Duration::from_secs(1) && shared.now_ns() < end {
            continue;
        }
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
        acked: 0,
        received: 0,
        unique: 0,
        received_rate: 0.0,
        publish_time_s: 0.0,
        delivery_time_s: 0.0,
        expected: 0,
        lost: 0,
        acked_lost: 0,
        duplicates: 0,
        reordered: 0,
        foreign: 0,
        window: 0,
        silent_subscribers: 0,
        latency_us: Percentiles::default(),
        ack_latency_us: Percentiles::default(),
        connect_latency_us: Percentiles::default(),
        connected: 0,
        connect_time_s: 0.0,
        errors: 0,
        error_samples: Vec::new(),
        slo: None,
        percentile_curve: Vec::new(),
        rate_per_second: Vec::new(),
        max_latency_per_second_us: Vec::new(),
        send_lag_per_second_us: Vec::new(),
    }
}

/// Merges one worker's per-second figures into `into` with `op` (sum or max), growing
/// `into` as needed.
fn merge_seconds(into: &mut Vec<u64>, from: &[u64], op: fn(u64, u64) -> u64) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a = op(*a, *b);
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
    let mut unacked = vec![Vec::new(); plan.pubs.len()];
    let mut last_connected = 0;
    let mut per_second: Vec<u64> = Vec::new();
    let mut worst: Vec<u64> = Vec::new();
    let mut lag: Vec<u64> = Vec::new();
    for r in results {
        merge_seconds(&mut per_second, &r.per_second, |a, b| a + b);
        merge_seconds(&mut worst, &r.worst_per_second, u64::max);
        merge_seconds(&mut lag, &r.lag_per_second, u64::max);
        let _ = latency.add(&r.latency);
        let _ = ack.add(&r.ack);
        let _ = connect.add(&r.connect);
        s.connected += r.connected;
        last_connected = last_connected.max(r.last_connected_ns);
        s.error_samples.extend(r.errors);
        subs.extend(r.subs);
        for p in r.pubs {
            s.window = if s.window == 0 { p.window } else { s.window.min(p.window) };
            if let Some(slot) = unacked.get_mut(p.index as usize) {
                *slot = p.unacked;
            }
        }
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
        s.foreign += sub.foreign;
        let should =
            plan.feeds[sub.index as usize].iter().any(|p| shared.published[*p as usize].load(Ordering::Relaxed) > 0);
        if should && sub.unique == 0 && !plan.shared() {
            s.silent_subscribers += 1;
        }
    }
    s.lost = s.expected.saturating_sub(s.unique);
    s.received_rate = s.unique as f64 / secs;
    let published: Vec<u64> = shared.published.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    if plan.qos != QoS::AtMostOnce {
        s.acked = published.iter().sum::<u64>().saturating_sub(unacked.iter().map(|u| u.len() as u64).sum());
        s.acked_lost = stats::acked_lost(&subs, &plan.feeds, plan.shared(), &published, &unacked);
    }
    // A flood or a counted run ends when its publishers are done: its rates are over the
    // time it took, not over the time allowed.
    let go = shared.go_ns.load(Ordering::Relaxed);
    let last_unique = shared.counters.iter().map(|c| c.last_unique_ns.load(Ordering::Relaxed)).max().unwrap_or(0);
    s.publish_time_s =
        Duration::from_nanos(shared.last_sent_ns.load(Ordering::Relaxed).saturating_sub(go)).as_secs_f64();
    s.delivery_time_s = Duration::from_nanos(last_unique.saturating_sub(go)).as_secs_f64();
    if plan.flood || plan.count.is_some() {
        s.sent_rate = if s.publish_time_s > 0.0 { s.sent as f64 / s.publish_time_s } else { 0.0 };
        s.received_rate = if s.delivery_time_s > 0.0 { s.unique as f64 / s.delivery_time_s } else { 0.0 };
    }
    // The seconds publishers published, and any later ones a message arrived in: a quiet
    // drain at the end is no second of zero deliveries.
    let last = per_second.iter().rposition(|n| *n > 0).map_or(0, |i| i + 1);
    let seconds = (s.publish_time_s.ceil() as usize).max(last);
    per_second.truncate(seconds);
    s.rate_per_second = per_second;
    worst.truncate(seconds);
    s.max_latency_per_second_us = worst;
    lag.truncate(seconds);
    s.send_lag_per_second_us = lag;
    s.percentile_curve = plot::curve(&latency);
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
