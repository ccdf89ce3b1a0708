//! The plan of a run: which clients exist, what each publishes or subscribes, at what
//! rate, and how many messages each subscriber should receive.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proto::{Protocol, QoS};

use crate::args::{resolve_broker, Args, Scenario};

/// One publisher.
#[derive(Debug, Clone)]
pub struct PubSpec {
    /// Its index (written into every payload).
    pub index: u32,
    /// Client id.
    pub client_id: String,
    /// Topic it publishes to.
    pub topic: String,
}

/// One subscriber.
#[derive(Debug, Clone)]
pub struct SubSpec {
    /// Its index.
    pub index: u32,
    /// Client id.
    pub client_id: String,
    /// Filter it subscribes to.
    pub filter: String,
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario.
    pub scenario: Scenario,
    /// This run's id: in its client ids and at the start of every payload, so a message
    /// of an earlier run that a broker still delivers is not taken for one of ours.
    pub run: u32,
    /// Broker address.
    pub broker: SocketAddr,
    /// How to reach it: TCP, TLS, WebSocket, credentials.
    pub dial: std::sync::Arc<crate::dial::Dial>,
    /// Protocol.
    pub protocol: Protocol,
    /// QoS.
    pub qos: QoS,
    /// Payload size.
    pub size: usize,
    /// Total rate (messages/s), 0 in closed loop.
    pub rate: u64,
    /// Closed loop.
    pub max: bool,
    /// Flood: as fast as each publisher's own window allows, no end-to-end limit.
    pub flood: bool,
    /// Publisher in-flight window.
    pub inflight: u16,
    /// Messages per publisher, when a count bounds the run.
    pub count: Option<u64>,
    /// Measuring time.
    pub duration: Duration,
    /// Warm-up time.
    pub warmup: Duration,
    /// Drain time.
    pub drain: Duration,
    /// Persistent sessions.
    pub persistent: bool,
    /// Keep-alive.
    pub keep_alive: u16,
    /// Source addresses.
    pub sources: Vec<IpAddr>,
    /// Worker threads.
    pub threads: usize,
    /// CPUs the workers are pinned to, round-robin (empty: unpinned).
    pub cpus: Vec<usize>,
    /// Connections per second (conn scenario).
    pub connect_rate: u64,
    /// Publishers.
    pub pubs: Vec<PubSpec>,
    /// Subscribers (for `conn`: the connections).
    pub subs: Vec<SubSpec>,
    /// For each subscriber, the publishers whose messages it should receive (shared: the
    /// group's set, same for every member).
    pub feeds: Vec<Vec<u32>>,
    /// For each publisher, how many subscribers should receive each of its messages.
    pub deliveries: Vec<u64>,
}

/// Most seconds the per-second delivery tally holds; later deliveries count in its last.
const MAX_TALLY_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Smallest payload: run id (4), publisher (4), sequence (8), scheduled time (8).
pub const HEADER: usize = 24;

impl Plan {
    /// Builds the plan from the flags.
    pub fn from_args(a: &Args) -> Result<Plan, String> {
        let protocol = match a.mqtt.as_str() {
            "3.1.1" | "311" | "4" => Protocol::V4,
            "5" | "5.0" => Protocol::V5,
            other => return Err(format!("--mqtt {other:?}: use 3.1.1 or 5")),
        };
        let qos = QoS::from_u8(a.qos).ok_or_else(|| format!("--qos {}: use 0, 1 or 2", a.qos))?;
        if a.size < HEADER {
            return Err(format!("--size {}: at least {HEADER} bytes are needed for the header", a.size));
        }
        if !a.max && !a.flood && a.rate == 0 && a.scenario != Scenario::Conn {
            return Err("--rate 0: give a rate, or --max for closed loop, or --flood".into());
        }
        if a.inflight == 0 {
            return Err("--inflight must be at least 1".into());
        }
        if a.count == Some(0) {
            return Err("--count must be at least 1".into());
        }
        if a.scenario == Scenario::Conn && (a.flood || a.count.is_some()) {
            return Err("conn has no publishers: --flood and --count do not apply".into());
        }
        let (dp, ds) = match a.scenario {
            Scenario::FanIn => (8, 1),
            Scenario::FanOut => (1, 100),
            Scenario::P2p => (10, 0),
            Scenario::Shared => (4, 4),
            Scenario::Conn => (0, 1000),
        };
        let npubs = if a.scenario == Scenario::Conn { 0 } else { a.publishers.unwrap_or(dp) };
        let nsubs = match a.scenario {
            Scenario::P2p => a.subscribers.unwrap_or(npubs),
            _ => a.subscribers.unwrap_or(ds),
        };
        if a.scenario == Scenario::P2p && nsubs != npubs {
            return Err(format!("p2p needs as many subscribers as publishers ({npubs}), not {nsubs}"));
        }
        if a.scenario != Scenario::Conn && npubs == 0 {
            return Err("at least one publisher is needed".into());
        }
        if !a.topic.contains("{i}") && a.scenario == Scenario::P2p {
            return Err("p2p needs `{i}` in --topic so each pair has its own topic".into());
        }
        let cpus = match &a.cpus {
            Some(list) => check_cpus(&list.0)?,
            None => Vec::new(),
        };
        // Before building anything per client: a million-client typo fails here, fast.
        check_fd_limit(npubs + nsubs)?;
        let run = run_id();
        let pubs: Vec<PubSpec> = (0..npubs as u32)
            .map(|i| PubSpec {
                index: i,
                client_id: format!("lg{run:x}-p{i}"),
                topic: a.topic.replace("{i}", &i.to_string()),
            })
            .collect();
        for p in &pubs {
            if !proto::topic::valid_topic(&p.topic) {
                return Err(format!("--topic: {:?} is not a valid topic name", p.topic));
            }
        }
        let wildcard = a.topic.replace("{i}", "+");
        let subs: Vec<SubSpec> = (0..nsubs as u32)
            .map(|i| {
                let filter = match (&a.filter, a.scenario) {
                    (Some(f), _) => f.replace("{i}", &i.to_string()),
                    (None, Scenario::P2p) => a.topic.replace("{i}", &i.to_string()),
                    (None, Scenario::Shared) => format!("$share/loadgen/{wildcard}"),
                    (None, _) => wildcard.clone(),
                };
                SubSpec { index: i, client_id: format!("lg{run:x}-s{i}"), filter }
            })
            .collect();
        let mut feeds = Vec::with_capacity(subs.len());
        for s in &subs {
            if a.scenario != Scenario::Conn && !proto::topic::valid_filter(&s.filter) {
                return Err(format!("--filter: {:?} is not a valid filter", s.filter));
            }
            let plain = proto::topic::parse_shared(&s.filter).map(|(_, f)| f).unwrap_or(&s.filter);
            feeds.push(pubs.iter().filter(|p| proto::topic::matches(plain, &p.topic)).map(|p| p.index).collect());
        }
        let shared = subs.first().is_some_and(|s| proto::topic::parse_shared(&s.filter).is_some());
        let deliveries = pubs
            .iter()
            .map(|p| {
                let n = feeds.iter().filter(|f: &&Vec<u32>| f.contains(&p.index)).count() as u64;
                if shared {
                    n.min(1)
                } else {
                    n
                }
            })
            .collect();
        let threads = match (a.threads, cpus.len()) {
            (Some(n), _) => n,
            (None, 0) => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            (None, n) => n,
        };
        Ok(Plan {
            scenario: a.scenario,
            run,
            broker: resolve_broker(&a.broker)?,
            dial: std::sync::Arc::new(crate::dial::Dial::from_args(crate::dial::DialFlags {
                tls: a.tls || a.wss,
                ws: a.ws || a.wss,
                path: &a.path,
                ca: a.ca.as_deref(),
                cert: a.cert.as_deref().zip(a.key.as_deref()),
                insecure: a.insecure,
                server_name: a
                    .server_name
                    .as_deref()
                    .unwrap_or_else(|| a.broker.rsplit_once(':').map_or(&a.broker, |(h, _)| h)),
                username: a.username.clone(),
                password: a.password.clone(),
            })?),
            protocol,
            qos,
            size: a.size,
            rate: if a.max || a.flood { 0 } else { a.rate },
            max: a.max,
            flood: a.flood,
            inflight: a.inflight,
            count: a.count,
            // A counted run measures every message and needs room to send them all.
            duration: a.duration.unwrap_or(Duration::from_secs(if a.count.is_some() { 60 } else { 10 })),
            warmup: a.warmup.unwrap_or(if a.count.is_some() { Duration::ZERO } else { Duration::from_secs(2) }),
            drain: a.drain,
            persistent: a.persistent,
            keep_alive: a.keep_alive,
            sources: a.source.clone(),
            threads: threads.max(1),
            cpus,
            connect_rate: a.connect_rate,
            pubs,
            subs,
            feeds,
            deliveries,
        })
    }

    /// Connections the run opens.
    pub fn connections(&self) -> usize {
        self.pubs.len() + self.subs.len()
    }

    /// True for the `$share` scenario (or a `$share` filter): members split the messages.
    pub fn shared(&self) -> bool {
        self.subs.first().is_some_and(|s| proto::topic::parse_shared(&s.filter).is_some())
    }

    /// Whole seconds the per-second delivery tally has room for: warm-up, measuring and
    /// drain, plus slack for the start and the stop (at most a week).
    pub fn tally_seconds(&self) -> usize {
        let secs = (self.warmup + self.duration + self.drain).as_secs_f64().ceil();
        (secs.min(MAX_TALLY_SECONDS) as usize) + 2
    }
}

/// A short id that keeps the client ids and the messages of concurrent or successive runs
/// apart.
fn run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// The CPUs this process may run on (its sched_getaffinity mask); None when the kernel
/// does not say.
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain bits; all zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity(2) fills the set we own, of the size we give.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // SAFETY: every index is below CPU_SETSIZE, inside the set.
    Some((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// `0-3,6` for `[0, 1, 2, 3, 6]` (sorted input).
fn ranges(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    out.join(",")
}

/// Checks `--cpus` against the CPUs the process may run on.
fn check_cpus(cpus: &[usize]) -> Result<Vec<usize>, String> {
    let given = || cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let Some(allowed) = allowed_cpus() else {
        return Err(format!("--cpus {}: cannot read the CPUs this process may use", given()));
    };
    let outside: Vec<usize> = cpus.iter().copied().filter(|c| !allowed.contains(c)).collect();
    if !outside.is_empty() {
        return Err(format!(
            "--cpus {}: this process may not run on CPU {} (it may use CPUs {})",
            given(),
            outside.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
            ranges(&allowed)
        ));
    }
    Ok(cpus.to_vec())
}

/// Checks the descriptor limit against the connections asked for.
pub fn check_fd_limit(connections: usize) -> Result<(), String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Ok(());
    }
    // Descriptors for the runtime itself (io_uring rings, eventfds, stdio, output files).
    let needed = connections as u64 + 64;
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < needed {
        return Err(format!(
            "{connections} connections need about {needed} file descriptors but the limit (ulimit -n) is {}; raise it (ulimit -n {needed}) or use fewer clients",
            lim.rlim_cur
        ));
    }
    Ok(())
}
