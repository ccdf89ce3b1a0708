//! The results of a run: the summary table, the JSON document, the `.hgrm` percentile
//! distribution, and the SLO verdict.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::plan::Plan;
use crate::roles::protocol_name;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// 50th.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p99_9: u64,
    /// 99.99th.
    pub p99_99: u64,
    /// Maximum.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }

    fn get(&self, key: &str) -> Option<u64> {
        Some(match key {
            "p50" => self.p50,
            "p90" => self.p90,
            "p99" => self.p99,
            "p99.9" => self.p99_9,
            "p99.99" => self.p99_99,
            "max" => self.max,
            _ => return None,
        })
    }
}

/// Parameters of the run, as reported.
#[derive(Debug, Serialize)]
pub struct Params {
    /// Scenario.
    pub scenario: crate::args::Scenario,
    /// Broker.
    pub broker: String,
    /// What carries MQTT: `tcp`, `tls`, `ws` or `wss`.
    pub transport: &'static str,
    /// MQTT version.
    pub mqtt: &'static str,
    /// QoS.
    pub qos: u8,
    /// Publishers.
    pub publishers: usize,
    /// Subscribers (connections for `conn`).
    pub subscribers: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Target rate (0: closed loop).
    pub rate: u64,
    /// Closed loop.
    pub max: bool,
    /// Flood (each publisher as fast as its own window allows).
    pub flood: bool,
    /// Publisher window (QoS 1/2 unacknowledged; --max also end to end).
    pub inflight: u16,
    /// Messages per publisher, when a count bounds the run.
    pub count: Option<u64>,
    /// Measured seconds (with a count: the most publishing may take).
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Seconds subscribers may wait for what is in flight once publishing stops.
    pub drain_s: f64,
    /// Worker threads.
    pub threads: usize,
    /// Persistent sessions.
    pub persistent: bool,
    /// CPUs the workers were pinned to (--cpus; empty: unpinned).
    pub cpus: Vec<usize>,
}

impl Params {
    /// The parameters of `plan`.
    pub fn of(plan: &Plan) -> Self {
        Params {
            scenario: plan.scenario,
            broker: plan.broker.to_string(),
            transport: match (plan.dial.tls.is_some(), plan.dial.ws.is_some()) {
                (false, false) => "tcp",
                (true, false) => "tls",
                (false, true) => "ws",
                (true, true) => "wss",
            },
            mqtt: protocol_name(plan.protocol),
            qos: plan.qos as u8,
            publishers: plan.pubs.len(),
            subscribers: plan.subs.len(),
            payload: plan.size,
            rate: plan.rate,
            max: plan.max,
            flood: plan.flood,
            inflight: plan.inflight,
            count: plan.count,
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            drain_s: plan.drain.as_secs_f64(),
            threads: plan.threads,
            persistent: plan.persistent,
            cpus: plan.cpus.clone(),
        }
    }
}

/// Everything a run found.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Parameters.
    pub params: Params,
    /// PUBLISH packets sent (warm-up included).
    pub sent: u64,
    /// Sent per second over warm-up and measurement (flood or count: over the publishing
    /// time).
    pub sent_rate: f64,
    /// Messages the broker acknowledged to their publishers (QoS 1 PUBACK, QoS 2 PUBREC).
    pub acked: u64,
    /// The smallest publisher window (QoS 1/2): --inflight, or less if the broker's 5.0
    /// Receive Maximum is smaller.
    pub window: u16,
    /// PUBLISH packets received by all subscribers.
    pub received: u64,
    /// Distinct messages received.
    pub unique: u64,
    /// Received per second (distinct) over warm-up and measurement (flood or count: from the
    /// first publish to the last delivery).
    pub received_rate: f64,
    /// Seconds from the first publish to the last.
    pub publish_time_s: f64,
    /// Seconds from the first publish to the last delivery of a new message.
    pub delivery_time_s: f64,
    /// Messages that should have arrived.
    pub expected: u64,
    /// expected - unique.
    pub lost: u64,
    /// Of those, deliveries of messages the broker had acknowledged (QoS 1/2).
    pub acked_lost: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Messages that arrived after a later one of their publisher.
    pub reordered: u64,
    /// Messages received that were not this run's (another run's, another client's), ignored.
    pub foreign: u64,
    /// Subscribers that received nothing though they should have.
    pub silent_subscribers: usize,
    /// End-to-end latency, µs, from the scheduled send time.
    pub latency_us: Percentiles,
    /// Publish-to-ack latency (QoS 1/2), µs.
    pub ack_latency_us: Percentiles,
    /// CONNECT-to-CONNACK latency, µs.
    pub connect_latency_us: Percentiles,
    /// Connections established.
    pub connected: u64,
    /// Time to connect them all (conn scenario), seconds.
    pub connect_time_s: f64,
    /// Errors seen.
    pub errors: u64,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// SLO verdict, when one was given.
    pub slo: Option<Verdict>,
    /// The end-to-end latency distribution for plotting: `[percentile in %, latency µs]`
    /// at points evenly spaced in log10(1/(1-p)), from 0% to 99.999%.
    pub percentile_curve: Vec<(f64, u64)>,
    /// Distinct messages received in each whole second from the first scheduled publish
    /// (warm-up included) to the last publish or the last delivery, whichever is later; the
    /// last second may be partial.
    pub rate_per_second: Vec<u64>,
    /// The longest end-to-end latency (µs) of the messages due in each of those seconds
    /// (by their scheduled publish time, warm-up included): when in the run the tail was.
    pub max_latency_per_second_us: Vec<u64>,
    /// How late (µs) loadgen itself sent the messages due in each of those seconds, at most
    /// (open loop only): a second whose latency spike is matched here was the generator's
    /// (or its machine's) stall, or a full QoS 1/2 window, not the broker's delivery.
    pub send_lag_per_second_us: Vec<u64>,
}

/// The outcome of an SLO check.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The SLO as given.
    pub slo: String,
    /// True when every objective held.
    pub passed: bool,
    /// The objectives that failed, each with the measured figure.
    pub failures: Vec<String>,
}

/// Checks `slo` (e.g. `p99<=2ms,p99.9<=10ms,loss=0,rate>=90000`) against the summary.
pub fn check_slo(slo: &str, s: &Summary) -> Result<Verdict, String> {
    let mut failures = Vec::new();
    for term in slo.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, op, value) = split_term(term)?;
        let (measured, limit, unit) = match key {
            "loss" | "acked_loss" | "dup" | "reorder" => {
                let m = match key {
                    "loss" => s.lost,
                    "acked_loss" => s.acked_lost,
                    "dup" => s.duplicates,
                    _ => s.reordered,
                };
                let v: u64 = value.parse().map_err(|_| format!("SLO {term:?}: {value:?} is not a count"))?;
                (m as f64, v as f64, "")
            }
            "rate" => {
                let v: f64 = value.parse().map_err(|_| format!("SLO {term:?}: {value:?} is not a rate"))?;
                (s.received_rate, v, " msg/s")
            }
            _ => {
                let (pct, key) = match key.strip_prefix("ack_") {
                    Some(k) => (&s.ack_latency_us, k),
                    None => (&s.latency_us, key),
                };
                let m = pct.get(key).ok_or_else(|| format!("SLO {term:?}: unknown key {key:?}"))?;
                (m as f64, parse_latency_us(value).map_err(|e| format!("SLO {term:?}: {e}"))?, " µs")
            }
        };
        let ok = match op {
            "<=" => measured <= limit,
            "<" => measured < limit,
            ">=" => measured >= limit,
            ">" => measured > limit,
            "=" | "==" => measured == limit,
            _ => return Err(format!("SLO {term:?}: unknown operator {op:?}")),
        };
        if !ok {
            failures.push(format!("{term}: measured {measured}{unit}"));
        }
    }
    Ok(Verdict { slo: slo.to_owned(), passed: failures.is_empty(), failures })
}

fn split_term(term: &str) -> Result<(&str, &str, &str), String> {
    for op in ["<=", ">=", "==", "<", ">", "="] {
        if let Some(i) = term.find(op) {
            return Ok((term[..i].trim(), op, term[i + op.len()..].trim()));
        }
    }
    Err(format!("SLO term {term:?}: expected KEY<=VALUE, KEY>=VALUE or KEY=VALUE"))
}

/// `2ms`, `500us`, `1s`, or a number of microseconds.
fn parse_latency_us(v: &str) -> Result<f64, String> {
    let d = crate::args::parse_duration(v)?;
    Ok(if v.chars().all(|c| c.is_ascii_digit() || c == '.') {
        v.parse::<f64>().map_err(|e| e.to_string())?
    } else {
        d.as_secs_f64() * 1e6
    })
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The summary as a text table.
pub fn text(s: &Summary) -> String {
    let p = &s.params;
    let mut o = String::new();
    let load = match (p.max, p.flood, p.qos) {
        (true, _, _) => "closed loop (--max)".to_owned(),
        (_, true, 0) => "flood".to_owned(),
        (_, true, _) => format!("flood (--inflight {})", p.inflight),
        _ => format!("{} msg/s open loop", p.rate),
    };
    let time = match p.count {
        Some(n) => format!("{n} msg/publisher (at most {}s)", p.duration_s),
        None => format!("{}s + {}s warm-up", p.duration_s, p.warmup_s),
    };
    let _ = writeln!(
        o,
        "{:?} | MQTT {} QoS {} | {} pub -> {} sub | {} B | {} | {} | {} threads | {}://{}",
        p.scenario, p.mqtt, p.qos, p.publishers, p.subscribers, p.payload, load, time, p.threads, p.transport, p.broker
    );
    if p.publishers > 0 {
        let _ = writeln!(o, "sent      {:>12}  {:>12.0} msg/s", s.sent, s.sent_rate);
        if p.qos > 0 {
            let _ = writeln!(
                o,
                "acked     {:>12}  lost after ack {}  (window {} per publisher)",
                s.acked, s.acked_lost, s.window
            );
        }
        let _ = writeln!(o, "received  {:>12}  {:>12.0} msg/s (distinct)", s.unique, s.received_rate);
        let _ = writeln!(
            o,
            "expected  {:>12}  lost {}  duplicates {}  reordered {}{}",
            s.expected,
            s.lost,
            s.duplicates,
            s.reordered,
            if s.silent_subscribers > 0 {
                format!("  silent subscribers {}", s.silent_subscribers)
            } else {
                String::new()
            }
        );
        let _ = writeln!(o, "latency (ms)      count      p50      p90      p99    p99.9   p99.99      max");
        let mut row = |name: &str, q: &Percentiles| {
            let _ = writeln!(
                o,
                "{name:<14}{:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                q.count,
                ms(q.p50),
                ms(q.p90),
                ms(q.p99),
                ms(q.p99_9),
                ms(q.p99_99),
                ms(q.max)
            );
        };
        row("end-to-end", &s.latency_us);
        if s.ack_latency_us.count > 0 {
            row("publish->ack", &s.ack_latency_us);
        }
    } else {
        let rate = if s.connect_time_s > 0.0 { s.connected as f64 / s.connect_time_s } else { 0.0 };
        let each = match p.transport {
            "tls" | "wss" => ", each with a TLS handshake",
            _ => "",
        };
        let _ = writeln!(
            o,
            "connected {} of {} in {:.3} s ({:.0} connections/s{each})",
            s.connected, p.subscribers, s.connect_time_s, rate
        );
        let q = &s.connect_latency_us;
        let _ = writeln!(
            o,
            "connect (ms)  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(q.p50),
            ms(q.p90),
            ms(q.p99),
            ms(q.p99_9),
            ms(q.max)
        );
    }
    if s.foreign > 0 {
        let _ = writeln!(o, "ignored   {:>12}  messages not of this run", s.foreign);
    }
    if s.errors > 0 {
        let _ = writeln!(o, "errors    {}  e.g. {}", s.errors, s.error_samples.join("; "));
    }
    if let Some(v) = &s.slo {
        if v.passed {
            let _ = writeln!(o, "SLO {}: PASS", v.slo);
        } else {
            let _ = writeln!(o, "SLO {}: FAIL ({})", v.slo, v.failures.join("; "));
        }
    }
    o
}

/// The histogram in HdrHistogram's percentile-distribution text format (values in ms).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut count = 0u64;
    for v in h.iter_quantiles(5) {
        count += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / 1000.0;
        if q < 1.0 {
            let _ = writeln!(o, "{value:>12.3} {q:>14.12} {count:>10} {:>14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(o, "{value:>12.3} {q:>14.12} {count:>10}");
        }
    }
    let _ = writeln!(o, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", h.mean() / 1000.0, h.stdev() / 1000.0);
    let _ = writeln!(o, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64 / 1000.0, h.len());
    let sub_buckets = (2 * 10u64.pow(h.sigfig().into())).next_power_of_two();
    let _ = writeln!(o, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), sub_buckets);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p99: u64, lost: u64) -> Summary {
        let args = <crate::args::Args as clap::Parser>::parse_from(["loadgen", "--broker", "127.0.0.1:1"]);
        let plan = Plan::from_args(&args).unwrap();
        Summary {
            params: Params::of(&plan),
            sent: 0,
            sent_rate: 0.0,
            acked: 0,
            received: 0,
            unique: 0,
            received_rate: 95_000.0,
            publish_time_s: 0.0,
            delivery_time_s: 0.0,
            expected: 0,
            lost,
            acked_lost: lost / 2,
            duplicates: 0,
            reordered: 0,
            foreign: 0,
            window: 0,
            silent_subscribers: 0,
            latency_us: Percentiles { p99, p99_9: p99 * 3, ..Default::default() },
            ack_latency_us: Percentiles::default(),
            connect_latency_us: Percentiles::default(),
            connected: 0,
            connect_time_s: 0.0,
            errors: 0,
            error_samples: vec![],
            slo: None,
            percentile_curve: vec![],
            rate_per_second: vec![],
            max_latency_per_second_us: vec![],
            send_lag_per_second_us: vec![],
        }
    }

    #[test]
    fn slo_passes_and_fails_with_the_breaking_figure() {
        let v = check_slo("p99<=2ms, p99.9<=10ms, loss=0, rate>=90000", &summary(1500, 0)).unwrap();
        assert!(v.passed, "{v:?}");
        let v = check_slo("p99<=2ms,loss=0", &summary(2500, 3)).unwrap();
        assert!(!v.passed);
        assert_eq!(v.failures, vec!["p99<=2ms: measured 2500 µs".to_owned(), "loss=0: measured 3".to_owned()]);
        let v = check_slo("acked_loss=0", &summary(1500, 4)).unwrap();
        assert_eq!(v.failures, vec!["acked_loss=0: measured 2".to_owned()]);
        assert!(check_slo("acked_loss=0", &summary(1500, 1)).unwrap().passed, "1 lost, none after an ack");
        assert!(check_slo("p42<=1ms", &summary(1, 0)).is_err());
        assert!(check_slo("p99 about 1ms", &summary(1, 0)).is_err());
    }

    #[test]
    fn hgrm_has_the_standard_shape() {
        let mut h = crate::stats::histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let t = hgrm(&h);
        assert!(t.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(t.contains("#[Max     =        1.000, Total count    =         1000]"), "{t}");
        let last_data = t.lines().rfind(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
        assert!(last_data.contains("1.000000000000"), "{last_data}");
    }
}
