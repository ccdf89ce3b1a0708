//! `clientgen`: the second load generator, built on a real client library (rumqttc on
//! tokio), so that a figure found with loadgen can be checked with a generator that shares
//! none of loadgen's code, runtime or I/O model (epoll, not io_uring).
//!
//! It runs three shapes at a fixed total rate (`--scenario`): `p2p` (`--publishers`
//! publishers, each with its own subscriber on its own topic), `fan-in` (the publishers on
//! topics of their own, `--subscribers` subscribers to all of them through a wildcard) and
//! `fan-out` (the publishers on one topic, every subscriber on it). Publishers publish open
//! loop on a schedule (publisher `i` sends its `k`-th message at `start + offset_i + k *
//! period`), each as fast as rumqttc's own in-flight window allows. A message carries the
//! time it was due, its sequence number and its publisher;
//! the latency recorded is delivery time minus due time, so a generator or broker that
//! falls behind shows as latency, not as a lower rate (no coordinated omission). Messages
//! due in the warm-up are delivered but not recorded.
//!
//! One thread (tokio's current-thread runtime), so `taskset -c N clientgen ...` pins all of
//! it. At the end it prints one line of figures and, with `--json FILE`, writes them with
//! the same `latency_us` keys as loadgen's JSON (`p50`, `p99`, `p99_9`, ... in µs).
//!
//! `cargo run -p bench --release --bin clientgen -- --broker 127.0.0.1:1883 --publishers 10 \
//!  --qos 1 --rate 20000 --duration 10`

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Parser, Debug)]
#[command(name = "clientgen", about = "p2p MQTT load at a fixed rate through rumqttc, with end-to-end latency")]
struct Args {
    /// Broker address, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// p2p, fan-in or fan-out.
    #[arg(long, default_value = "p2p")]
    scenario: String,
    /// Publishers (for p2p also the number of subscribers, one per publisher).
    #[arg(long, alias = "pairs", default_value_t = 10)]
    publishers: usize,
    /// Subscribers (fan-in and fan-out).
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// QoS of the publishes and the subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// Payload bytes (at least 20: the due time, the sequence number, the publisher).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second over all publishers.
    #[arg(long, default_value_t = 20000)]
    rate: u64,
    /// Seconds of measured load (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// rumqttc's in-flight window per publisher (its default is 100).
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Seconds to wait after the last publish for the subscribers to receive the rest.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<String>,
}

/// What the subscribers saw, shared by the tasks of the one thread.
struct Seen {
    latency: Histogram<u64>,
    received: u64,
    /// Next sequence number expected per subscriber and publisher (a gap is a loss, a
    /// repeat a duplicate).
    next: Vec<Vec<u64>>,
    lost: u64,
    duplicates: u64,
    /// Messages a subscriber should not have had (a broker routing by something else).
    foreign: u64,
}

fn qos_of(q: u8) -> Result<QoS, String> {
    match q {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        _ => Err(format!("--qos {q}: must be 0, 1 or 2")),
    }
}

fn options(args: &Args, id: String) -> Result<MqttOptions, String> {
    let (host, port) =
        args.broker.rsplit_once(':').ok_or_else(|| format!("--broker {}: not host:port", args.broker))?;
    let port: u16 = port.parse().map_err(|_| format!("--broker {}: bad port", args.broker))?;
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(args.inflight.max(1));
    o.set_max_packet_size(1 << 20, 1 << 20);
    Ok(o)
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    if let Err(e) = local.block_on(&rt, run(args)) {
        eprintln!("clientgen: {e}");
        std::process::exit(2);
    }
}

/// Which shape, and who gets what in it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    P2p,
    FanIn,
    FanOut,
}

impl Shape {
    fn parse(s: &str) -> Result<Shape, String> {
        match s {
            "p2p" => Ok(Shape::P2p),
            "fan-in" => Ok(Shape::FanIn),
            "fan-out" => Ok(Shape::FanOut),
            _ => Err(format!("--scenario {s}: p2p, fan-in or fan-out")),
        }
    }

    /// Whether subscriber `sub` is to receive publisher `publisher`'s messages.
    fn expects(self, sub: usize, publisher: usize) -> bool {
        self != Shape::P2p || sub == publisher
    }
}

async fn run(args: Args) -> Result<(), String> {
    let qos = qos_of(args.qos)?;
    let shape = Shape::parse(&args.scenario)?;
    if args.size < 20 {
        return Err(format!("--size {}: at least 20 bytes", args.size));
    }
    if args.publishers == 0 || args.rate == 0 || args.subscribers == 0 {
        return Err("--publishers, --subscribers and --rate must be above 0".into());
    }
    let npubs = args.publishers;
    let nsubs = if shape == Shape::P2p { npubs } else { args.subscribers };
    let run_id = std::process::id();
    let seen = Rc::new(RefCell::new(Seen {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        received: 0,
        next: vec![vec![0; npubs]; nsubs],
        lost: 0,
        duplicates: 0,
        foreign: 0,
    }));
    let epoch = Instant::now();
    let total = args.warmup + args.duration;
    let period = Duration::from_nanos(1_000_000_000 * npubs as u64 / args.rate);
    let per_pub = total * args.rate / npubs as u64;
    let warm_seq = args.warmup * args.rate / npubs as u64;
    let topics: Rc<Vec<String>> = Rc::new(
        (0..npubs)
            .map(|i| match shape {
                Shape::FanOut => format!("clientgen/{run_id}/0"),
                _ => format!("clientgen/{run_id}/{i}"),
            })
            .collect(),
    );

    // Subscribers first, each acknowledged by its SUBACK before any publisher starts.
    let mut subs = Vec::new();
    for j in 0..nsubs {
        let filter = match shape {
            Shape::P2p => topics[j].clone(),
            Shape::FanIn => format!("clientgen/{run_id}/+"),
            Shape::FanOut => topics[0].clone(),
        };
        let (client, mut el) = AsyncClient::new(options(&args, format!("clientgen-sub-{run_id}-{j}"))?, 16);
        client.subscribe(&filter, qos).await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline.into(), el.poll()).await;
            match ev {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("subscriber {j}: {e}")),
                Err(_) => return Err(format!("subscriber {j}: no SUBACK within 10 s")),
            }
        }
        let (seen, topics) = (seen.clone(), topics.clone());
        subs.push(tokio::task::spawn_local(async move {
            let _client = client;
            while let Ok(ev) = el.poll().await {
                let Event::Incoming(Packet::Publish(p)) = ev else { continue };
                let at = epoch.elapsed().as_nanos() as u64;
                let mut s = seen.borrow_mut();
                let from = (p.payload.len() >= 20)
                    .then(|| u32::from_le_bytes(p.payload[16..20].try_into().expect("4 bytes")) as usize)
                    .filter(|&i| i < npubs && shape.expects(j, i) && p.topic == topics[i]);
                let Some(i) = from else {
                    s.foreign += 1;
                    continue;
                };
                let due = u64::from_le_bytes(p.payload[0..8].try_into().expect("8 bytes"));
                let seq = u64::from_le_bytes(p.payload[8..16].try_into().expect("8 bytes"));
                s.received += 1;
                let next = s.next[j][i];
                if seq < next {
                    s.duplicates += 1;
                    continue;
                }
                s.lost += seq - next;
                s.next[j][i] = seq + 1;
                if seq >= warm_seq {
                    let us = (at.saturating_sub(due) / 1000).max(1);
                    let _ = s.latency.record(us);
                }
            }
        }));
    }

    let mut pubs = Vec::new();
    for i in 0..npubs {
        let topic = topics[i].clone();
        let (client, mut el) = AsyncClient::new(options(&args, format!("clientgen-pub-{run_id}-{i}"))?, 64);
        tokio::task::spawn_local(async move { while el.poll().await.is_ok() {} });
        let size = args.size;
        let offset = period * i as u32 / npubs as u32;
        pubs.push(tokio::task::spawn_local(async move {
            let start = epoch + Duration::from_millis(200) + offset;
            let mut payload = vec![0u8; size];
            payload[16..20].copy_from_slice(&(i as u32).to_le_bytes());
            for k in 0..per_pub {
                let due = start + period * k as u32;
                tokio::time::sleep_until(due.into()).await;
                payload[0..8].copy_from_slice(&((due - epoch).as_nanos() as u64).to_le_bytes());
                payload[8..16].copy_from_slice(&k.to_le_bytes());
                if client.publish(&topic, qos, false, payload.clone()).await.is_err() {
                    return k;
                }
            }
            per_pub
        }));
    }
    let mut sent = 0u64;
    for p in pubs {
        sent += p.await.map_err(|e| e.to_string())?;
    }
    // Every subscriber expects every message of each publisher it follows.
    let expected = sent * (0..nsubs).map(|j| (0..npubs).filter(|&i| shape.expects(j, i)).count() as u64).sum::<u64>()
        / npubs as u64;
    let published = epoch.elapsed();
    let drain_until = Instant::now() + Duration::from_secs(args.drain);
    while seen.borrow().received - seen.borrow().duplicates < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for s in subs {
        s.abort();
    }
    let s = seen.borrow();
    // What never came is lost too (for QoS 0 a loss the broker may take; reported either way).
    let missing: u64 = (0..nsubs)
        .flat_map(|j| (0..npubs).map(move |i| (j, i)))
        .filter(|&(j, i)| shape.expects(j, i))
        .map(|(j, i)| per_pub - s.next[j][i].min(per_pub))
        .sum();
    let lost = s.lost + missing;
    let h = &s.latency;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let rate = s.received as f64 / (published.as_secs_f64() - 0.2).max(0.001);
    println!(
        "clientgen: sent {sent} expected {expected} received {} lost {lost} duplicates {} foreign {} ({rate:.0} msg/s) latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        s.received,
        s.duplicates,
        s.foreign,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
    if let Some(path) = &args.json {
        let json = format!(
            "{{\"params\":{{\"scenario\":\"{}\",\"generator\":\"clientgen\",\"publishers\":{npubs},\"subscribers\":{nsubs},\"qos\":{},\"rate\":{}}},\
             \"sent\":{sent},\"expected\":{expected},\"received\":{},\"unique\":{},\"lost\":{lost},\"duplicates\":{},\"foreign\":{},\"received_rate\":{rate:.0},\
             \"latency_us\":{{\"count\":{},\"mean\":{:.1},\"p50\":{},\"p90\":{},\"p99\":{},\"p99_9\":{},\"p99_99\":{},\"max\":{}}}}}\n",
            args.scenario,
            args.qos,
            args.rate,
            s.received,
            s.received - s.duplicates,
            s.duplicates,
            s.foreign,
            h.len(),
            h.mean(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max()
        );
        std::fs::write(path, json).map_err(|e| format!("{path}: {e}"))?;
    }
    if lost > 0 && args.qos > 0 {
        std::process::exit(1);
    }
    Ok(())
}
