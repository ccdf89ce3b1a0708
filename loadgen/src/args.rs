//! Command-line flags and their validation into a [`Plan`](crate::plan::Plan).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Open-loop MQTT load generator: drives any MQTT 3.1.1 or 5.0 broker on a fixed schedule
/// and reports end-to-end latency (from the scheduled send time, so a stalled broker shows
/// up as latency) with loss, duplicate and order checks, and an SLO verdict.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true, disable_help_subcommand = true)]
pub struct Args {
    /// `loadgen plot`: draw runs from their --json files instead of running one.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Scenario: fan-in (many publishers, few subscribers), fan-out (few publishers, many
    /// subscribers), p2p (publisher i -> subscriber i), shared (a $share group), conn
    /// (connection storm).
    #[arg(value_enum, default_value = "fan-in")]
    pub scenario: Scenario,
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883", value_name = "HOST:PORT")]
    pub broker: String,
    /// MQTT over TLS (needs --ca, or --insecure).
    #[arg(long)]
    pub tls: bool,
    /// MQTT over WebSocket (ws://).
    #[arg(long)]
    pub ws: bool,
    /// MQTT over WebSocket over TLS (wss://; needs --ca, or --insecure).
    #[arg(long, conflicts_with_all = ["tls", "ws"])]
    pub wss: bool,
    /// WebSocket request path.
    #[arg(long, default_value = "/mqtt")]
    pub path: String,
    /// PEM CA certificates the broker's certificate is verified against.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (with --key) for brokers that ask for one (mTLS).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Accept any broker certificate (for measuring only).
    #[arg(long)]
    pub insecure: bool,
    /// The name the broker's certificate must carry (default: the host of --broker).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// User name sent in CONNECT.
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Password sent in CONNECT.
    #[arg(long, short = 'P')]
    pub password: Option<String>,
    /// Publishers (default per scenario: fan-in 8, fan-out 1, p2p 10, shared 4).
    #[arg(long, short = 'p')]
    pub publishers: Option<usize>,
    /// Subscribers (default per scenario: fan-in 1, fan-out 100, p2p = publishers, shared 4);
    /// for `conn`, the number of connections.
    #[arg(long, short = 's')]
    pub subscribers: Option<usize>,
    /// Topic of publisher i; `{i}` is replaced by its index.
    #[arg(long, default_value = "loadgen/{i}")]
    pub topic: String,
    /// Filter subscribers use (default: the topic with `{i}` as `+`; for p2p the topic of
    /// the subscriber's own publisher; for shared prefixed with `$share/loadgen/`).
    #[arg(long)]
    pub filter: Option<String>,
    /// QoS of publications and subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Payload size in bytes (at least 24: a header with publisher, sequence and time).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Total publish rate in messages per second, spread evenly over the publishers (not
    /// used by --max and --flood).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Closed loop, to find the maximum sustained rate: each publisher keeps at most
    /// --inflight messages on their way to the subscribers (end to end; QoS 1/2 also at most
    /// --inflight unacknowledged), and sends as soon as there is room.
    #[arg(long, conflicts_with = "flood")]
    pub max: bool,
    /// Flood: each publisher sends as fast as its own connection allows, knowing nothing of
    /// the subscribers: at QoS 1/2 at most --inflight unacknowledged (the next as each
    /// PUBACK/PUBCOMP arrives), at QoS 0 as fast as the socket takes them. A message the
    /// broker acknowledged and a subscriber never received fails the run.
    #[arg(long)]
    pub flood: bool,
    /// Messages a publisher may have out: unacknowledged (QoS 1/2; 5.0: at most the broker's
    /// Receive Maximum), and in --max mode also not yet received by the subscribers.
    #[arg(long, default_value_t = 1000)]
    pub inflight: u16,
    /// Messages each publisher sends; the run ends when all are sent (and delivered, or the
    /// drain time is over), or at --duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// How long to measure, e.g. 10s, 500ms, 1m (default 10s; with --count the most
    /// publishing may take, default 60s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Load before measuring starts (not in the histograms; default 2s, 0 with --count).
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// MQTT version: 3.1.1 or 5.
    #[arg(long, default_value = "3.1.1")]
    pub mqtt: String,
    /// Persistent sessions (clean session 0; 5.0: session expiry 300 s) instead of clean.
    #[arg(long)]
    pub persistent: bool,
    /// Source addresses to spread connections over (comma separated, e.g.
    /// 127.0.0.1,127.0.0.2), past the per-address port limit.
    #[arg(long, value_delimiter = ',')]
    pub source: Vec<IpAddr>,
    /// Worker threads (one executor each; default: the CPUs it may use, or as many as
    /// --cpus lists).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin the worker threads to these CPUs, round-robin (e.g. 1, 0,1 or 1-3); each must be
    /// one the process may run on. Unpinned without it.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Connections opened per second in the `conn` scenario (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub connect_rate: u64,
    /// Keep-alive sent in CONNECT, seconds.
    #[arg(long, default_value_t = 60)]
    pub keep_alive: u16,
    /// How long subscribers may wait for in-flight messages after the last publisher stops.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Service-level objective, e.g. 'p99<=2ms,p99.9<=10ms,loss=0'. Keys: p50 p90 p99
    /// p99.9 p99.99 max (end-to-end latency), ack_p99 ... (publish-to-ack), loss, dup,
    /// reorder, acked_loss (deliveries lost after the broker acknowledged the message), rate
    /// (received msg/s, with >=). The exit status is 1 when it fails. --flood at QoS 1/2
    /// always adds acked_loss=0.
    #[arg(long)]
    pub slo: Option<String>,
    /// Write every figure and parameter as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the end-to-end latency distribution in HdrHistogram's percentile text format.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Draw the run as SVG: the end-to-end latency percentile curve and the delivered
    /// messages per second.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// No progress lines, only the summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Commands other than a run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Overlay runs in one SVG from the files their --json wrote: one line per file in the
    /// latency percentile panel and in the messages-per-second panel.
    Plot(PlotArgs),
}

/// Flags of `loadgen plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// JSON files written by `loadgen --json`.
    #[arg(required = true, value_name = "JSON")]
    pub files: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Names for the legend, one per file, comma separated (default: the file stems).
    #[arg(long, value_delimiter = ',')]
    pub label: Vec<String>,
    /// Title (default: the labels).
    #[arg(long)]
    pub title: Option<String>,
}

/// CPUs to pin workers to, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses `1`, `0,1`, `1-3` or `0,2-3` into CPU numbers, each once, in the order given.
pub fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let bad = |why: &str| format!("{s:?}: {why} (use e.g. 1, 0,1 or 1-3)");
    let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad(&format!("{:?} is not a CPU number", t.trim())));
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let c = num(part)?;
                (c, c)
            }
        };
        if lo > hi {
            return Err(bad(&format!("range {lo}-{hi} runs backwards")));
        }
        if hi - lo >= 4096 {
            return Err(bad(&format!("range {lo}-{hi} is too long")));
        }
        for c in lo..=hi {
            if !cpus.contains(&c) {
                cpus.push(c);
            }
        }
    }
    Ok(CpuList(cpus))
}

/// The load shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Many publishers, few subscribers with a wildcard.
    FanIn,
    /// Few publishers, many subscribers.
    FanOut,
    /// Publisher i to subscriber i.
    P2p,
    /// Subscribers in one `$share` group: each message to one of them.
    Shared,
    /// Connection storm: connect N clients, measure connect latency, hold them.
    Conn,
}

/// Parses `10s`, `250ms`, `1m`, `500us` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len()));
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 10s or 250ms"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use us, ms, s or m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves the broker address.
pub fn resolve_broker(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("--broker {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--broker {s:?}: no address"))
}
