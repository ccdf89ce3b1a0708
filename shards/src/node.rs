//! Starting and stopping a node: one pinned glommio executor per shard, the two channel
//! meshes between them, a listening socket per shard and address (SO_REUSEPORT), and the
//! graceful stop.
//!
//! Called by the binary (and by tests) from an ordinary thread; everything after
//! [`Node::start`] runs on the shard threads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use proto::{reason, Protocol};
use socket2::{Domain, Socket, Type};

use crate::config::EngineConfig;
use crate::engine::shard::{Flag, NodeShared, Shard};
use crate::engine::sweep::{SWEEP_EVERY, TICK};
use crate::error::Error;
use crate::front::accept_loop;
use crate::metrics::{ShardSlot, Snapshot};
use crate::net::{CloseCause, Conn};
use crate::route::mesh::{Egress, Ingress};
use crate::route::{Mesh, PartitionTable};
use crate::store::image::SessionImage;
use crate::store::Store;

/// Most shards a node runs: the meshes between them grow with the square of their number
/// (two channels per pair), so past this the channels alone would cost gigabytes.
pub const MAX_SHARDS: usize = 256;
/// Backlog of each listening socket.
const LISTEN_BACKLOG: i32 = 4096;
/// Memory glommio registers for fixed I/O buffers per shard. Kept small: locked memory is
/// often limited (8 MiB here), and glommio falls back to unregistered buffers when it is
/// not available.
const IO_MEMORY: usize = 512 * 1024;
/// How long a stopping shard waits for its connections to flush their goodbyes.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long the shards may take to start and meet each other before the start fails:
/// 20 s, and a second more per shard past 32 (meeting takes longer with more peers,
/// most on a machine with fewer cores than shards).
fn start_limit(shards: usize) -> Duration {
    Duration::from_secs(20) + Duration::from_secs(1) * shards.saturating_sub(32) as u32
}
/// Connections handed to a shard and not yet started: a burst of hand-offs from every
/// shard at once fits; past it a connection is closed (its client reconnects).
const ARRIVALS: usize = 4096;
/// How often a shard wakes while it waits for its peers at start (see `shard_main`).
const JOIN_HEARTBEAT: Duration = Duration::from_millis(25);
/// How long a quiet shard waits in epoll for its next packet before glommio parks it: the
/// gap between two packets under moderate load is shorter, and a park and wake of glommio's
/// reactor costs several `io_uring_enter` (bench/RESULTS.md, 2026-12-02, session 7).
const QUIET_HOLD: Duration = Duration::from_micros(200);

/// A running node.
pub struct Node {
    handles: Vec<ExecutorJoinHandle<()>>,
    shared: Arc<NodeShared>,
    addrs: Vec<SocketAddr>,
    shards: usize,
    /// Held while the node runs: no second node opens the same data directory.
    _lock: Option<std::fs::File>,
    recovery: crate::store::RecoveryReport,
    cfg: Arc<EngineConfig>,
}

/// What one shard starts with, recovered from the data directory.
struct Start {
    parts: HashMap<u32, crate::store::Part>,
    sessions: Vec<SessionImage>,
    retained: Vec<Arc<crate::msg::Message>>,
    /// Interest of restored subscriptions: (filter, origin shard).
    interest: Vec<(String, usize)>,
}

/// Checks that io_uring can be used, so a missing or forbidden io_uring is reported as
/// such and not as a confusing executor failure.
pub fn check_io_uring() -> Result<(), String> {
    // io_uring_params is 120 bytes; zeroed means "defaults".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) with a valid pointer to a zeroed params struct of the
    // kernel's size; the returned descriptor is closed right away.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: closing the descriptor io_uring_setup just returned.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let why = match err.raw_os_error() {
        Some(libc::ENOSYS) => "this kernel has no io_uring (Linux 5.8 or later is needed)",
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring is not permitted here (a container seccomp profile or sysctl kernel.io_uring_disabled)"
        }
        _ => "io_uring_setup failed",
    };
    Err(format!("RingMQ needs io_uring: {why} ({err})"))
}

/// Fails when something already listens on `addr`. SO_REUSEPORT would otherwise let a
/// second broker join the first one's port silently and split its clients between them.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let probe = Socket::new(domain, Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

fn default_shards() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The CPUs this process may run on (its affinity mask), in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity(2) fills the zeroed cpu_set_t we own; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..default_shards()).collect();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|c| libc::CPU_ISSET(*c, &set)).collect()
    }
}

/// Sets the node's stop flag when dropped.
struct StopOnExit(Arc<NodeShared>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.0.shutdown.store(true, Ordering::Relaxed);
    }
}

/// Warns about a listener on a non-loopback address with neither TLS nor authentication.
fn warn_if_open(l: &crate::config::ListenerConfig, node_auth: bool) {
    if !l.bind.ip().is_loopback() && l.tls.is_none() && l.authenticator.is_none() && !node_auth {
        tracing::warn!(
            listener = %l.name(),
            "listener on a non-loopback address with neither TLS nor authentication: anyone who reaches it may connect"
        );
    }
}

impl Node {
    /// Binds the listeners and starts the shards.
    pub fn start(mut cfg: EngineConfig) -> Result<Node, Error> {
        // One list of listeners from here on: `listen` first, each judged by index.
        cfg.listeners = cfg.all_listeners();
        cfg.listen.clear();
        let nshards = if cfg.shards == 0 { default_shards() } else { cfg.shards };
        if nshards > MAX_SHARDS {
            return Err(Error::Config(format!("shards = {nshards}: at most {MAX_SHARDS} are supported")));
        }
        if cfg.partitions == 0 || (cfg.partitions as usize) < nshards {
            return Err(Error::Config(format!(
                "partitions = {} must be at least the number of shards ({nshards})",
                cfg.partitions
            )));
        }
        check_io_uring().map_err(|message| Error::Executor { shard: 0, message })?;
        let table = PartitionTable::new(cfg.partitions, nshards);
        let owners: Vec<usize> = (0..table.partitions()).map(|p| table.shard_of_partition(p)).collect();
        let recovered = crate::store::open(&cfg, &owners, nshards)?;
        let lock = recovered.lock;
        let recovery = recovered.report;
        let shared = NodeShared {
            pressure: (0..cfg.partitions).map(|_| Flag::default()).collect(),
            metrics: (0..nshards).map(|_| ShardSlot::default()).collect(),
            listener_connections: cfg.listeners.iter().map(|_| Default::default()).collect(),
            ..Default::default()
        };
        let mut interest: Vec<Vec<(String, usize)>> = vec![Vec::new(); nshards];
        for (origin, images) in recovered.sessions.iter().enumerate() {
            // Shared groups count members online only: none at start.
            let subs = images.iter().flat_map(|i| i.subs.iter()).filter(|(f, _)| !crate::route::is_shared(f));
            for (filter, _) in subs {
                if filter.contains(['+', '#']) {
                    for list in interest.iter_mut() {
                        list.push((filter.clone(), origin));
                    }
                } else {
                    interest[table.shard_of(filter.as_bytes())].push((filter.clone(), origin));
                }
            }
        }
        let mut starts: Vec<Option<Start>> = recovered
            .parts
            .into_iter()
            .zip(recovered.sessions)
            .zip(recovered.retained)
            .zip(interest)
            .map(|(((parts, sessions), retained), interest)| Some(Start { parts, sessions, retained, interest }))
            .collect();
        // One socket per shard and address; port 0 is resolved by the first bind and the
        // others join the same port.
        let mut per_shard: Vec<Vec<(usize, OwnedFd)>> = (0..nshards).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        for (index, l) in cfg.listeners.iter().enumerate() {
            let want = &l.bind;
            warn_if_open(l, cfg.authenticator.is_some());
            ensure_port_free(*want).map_err(|source| Error::Bind { addr: *want, source })?;
            let first = netpoll::listening_socket(*want, LISTEN_BACKLOG)
                .map_err(|source| Error::Bind { addr: *want, source })?;
            let bound = first
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .ok_or_else(|| Error::Config(format!("{want}: not an IP address")))?;
            addrs.push(bound);
            // SAFETY: into_raw_fd hands over ownership of the socket's descriptor.
            per_shard[0].push((index, unsafe { OwnedFd::from_raw_fd(first.into_raw_fd()) }));
            for fds in per_shard.iter_mut().skip(1) {
                let sk = netpoll::listening_socket(bound, LISTEN_BACKLOG)
                    .map_err(|source| Error::Bind { addr: bound, source })?;
                // SAFETY: as above.
                fds.push((index, unsafe { OwnedFd::from_raw_fd(sk.into_raw_fd()) }));
            }
        }
        let shared = Arc::new(shared);
        shared.running.store(nshards, Ordering::Relaxed);
        let cfg = Arc::new(cfg);
        let capacity = cfg.channel_capacity.max(1);
        let ingress = MeshBuilder::<Vec<Ingress>, _>::full(nshards, capacity);
        let egress = MeshBuilder::<Vec<Egress>, _>::full(nshards, capacity);
        let nudges = (0..nshards)
            .map(|_| netpoll::Nudge::new().map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::Executor { shard: 0, message: format!("cannot make the shards' eventfds: {e}") })?;
        let nudges: Arc<[Arc<netpoll::Nudge>]> = nudges.into();
        let cpus = allowed_cpus();
        let mut handles = Vec::with_capacity(nshards);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        for (i, fds) in per_shard.into_iter().enumerate() {
            let placement = match (cfg.pin, cpus.is_empty()) {
                (true, false) => Placement::Fixed(cpus[i % cpus.len()]),
                _ => Placement::Unbound,
            };
            let (cfg, node_shared) = (cfg.clone(), shared.clone());
            let links = Links { ingress: ingress.clone(), egress: egress.clone(), nudges: nudges.clone() };
            let start = starts[i].take().expect("one start per shard");
            let ready = ready_tx.clone();
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("ringmq-shard-{i}"))
                .io_memory(IO_MEMORY)
                // Slow password checks (argon2) run here, on a thread the OS may move off
                // the shard's CPU.
                .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(1))
                .spawn(move || {
                    // A shard that ends for any reason (a panic included) stops the node:
                    // the others cannot serve its partitions.
                    let stop = StopOnExit(node_shared.clone());
                    netpoll::hold::counted(async move {
                        let _stop = stop;
                        shard_main(cfg, node_shared, fds, links, start, ready).await
                    })
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    shared.shutdown.store(true, Ordering::Relaxed);
                    return Err(Error::Executor { shard: i, message: e.to_string() });
                }
            }
        }
        drop(ready_tx);
        let node = Node { handles, shared, addrs, shards: nshards, _lock: lock, recovery, cfg: cfg.clone() };
        // Every shard says it joined the meshes and accepts; one that cannot (its executor
        // failed to start, a peer never joined) stops the node instead of leaving it half up.
        for _ in 0..nshards {
            let why = match ready_rx.recv_timeout(start_limit(nshards)) {
                Ok(Ok(())) => continue,
                Ok(Err(why)) => why,
                Err(_) => format!("a shard did not start within {:?}", start_limit(nshards)),
            };
            node.stop();
            let _ = node.join();
            return Err(Error::Executor { shard: 0, message: why });
        }
        Ok(node)
    }

    /// The bound listen addresses (port 0 resolved), in configuration order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// What the start recovered from the data directory.
    pub fn recovery(&self) -> crate::store::RecoveryReport {
        self.recovery
    }

    /// Number of shards running.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Messages evicted from the memory rings, and offline messages lost to eviction or
    /// retention before their session came back (counted each sweep, 500 ms).
    pub fn offline_counters(&self) -> (u64, u64) {
        (self.shared.evicted.load(Ordering::Relaxed), self.shared.lost.load(Ordering::Relaxed))
    }

    /// Messages given up by the node, by reason, and the flow-control events beside them
    /// (summed from the shards each sweep, 500 ms).
    pub fn drops(&self) -> crate::metrics::Drops {
        self.shared.drops()
    }

    /// The node's metrics: each shard's counters and gauges as it last published them
    /// (every tick, 100 ms), their sum, and the drop counters (every sweep, 500 ms).
    pub fn metrics(&self) -> Snapshot {
        Snapshot::gather(&self.shared.metrics, self.shared.drops())
    }

    /// Open client connections on the node.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Reads the listeners' certificates, password and ACL files again (SIGHUP); with
    /// `only_changed`, just those whose files changed since the last read. Connections stay
    /// up; a file that no longer reads keeps the old contents. Returns what was reloaded
    /// and what failed, with why.
    pub fn reload(&self, only_changed: bool) -> Vec<(String, Result<(), String>)> {
        let mut done = Vec::new();
        for l in &self.cfg.listeners {
            for r in &l.reload {
                if only_changed && !r.changed() {
                    continue;
                }
                let result = r.reload();
                match &result {
                    Ok(()) => tracing::info!(listener = %l.name(), "reloaded {}", r.what()),
                    Err(e) => tracing::warn!(listener = %l.name(), "kept the old {}: {e}", r.what()),
                }
                done.push((r.what(), result));
            }
        }
        done
    }

    /// Open connections per listener, in the order of [`Node::local_addrs`].
    pub fn listener_connections(&self) -> Vec<usize> {
        self.shared.listener_connections.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// Asks every shard to stop: listeners close, 5.0 clients get DISCONNECT 0x8B.
    pub fn stop(&self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
    }

    /// The flag that stops the node when set (for signal handlers).
    pub fn stop_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.shared.shutdown.clone()
    }

    /// Waits for every shard to finish.
    pub fn join(mut self) -> Result<(), Error> {
        let mut result = Ok(());
        for (i, h) in std::mem::take(&mut self.handles).into_iter().enumerate() {
            if h.join().is_err() && result.is_ok() {
                result = Err(Error::ShardPanicked(i));
            }
        }
        result
    }
}

impl Drop for Node {
    /// A node dropped without [`Node::join`] still stops its shards.
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a shard joins to reach the others: both meshes, and every shard's nudge.
struct Links {
    ingress: MeshBuilder<Vec<Ingress>, glommio::channels::channel_mesh::Full>,
    egress: MeshBuilder<Vec<Egress>, glommio::channels::channel_mesh::Full>,
    nudges: Arc<[Arc<netpoll::Nudge>]>,
}

async fn shard_main(
    cfg: Arc<EngineConfig>,
    node: Arc<NodeShared>,
    fds: Vec<(usize, OwnedFd)>,
    links: Links,
    start: Start,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let Links { ingress, egress, nudges } = links;
    let nshards = ingress.nr_peers();
    // While the shards rendezvous, a timer keeps this executor waking: a wake-up from a
    // peer thread that the reactor misses would otherwise leave it parked for good (no
    // other timer is armed yet). The rendezvous is bounded and gives up when stopped.
    let heartbeat = glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(JOIN_HEARTBEAT).await;
        }
    });
    let joined = futures_lite::future::or(async { Some((ingress.join().await, egress.join().await)) }, async {
        let deadline = Instant::now() + start_limit(nshards);
        while !node.stopping() && Instant::now() < deadline {
            glommio::timer::sleep(JOIN_HEARTBEAT).await;
        }
        None
    })
    .await;
    drop(heartbeat);
    let ((itx, mut irx), (etx, mut erx)) = match joined {
        Some((Ok(i), Ok(e))) => (i, e),
        Some((Err(e), _)) | Some((_, Err(e))) => {
            let _ = ready.send(Err(format!("shard could not join the mesh: {e}")));
            return;
        }
        None => {
            let _ = ready.send(Err(format!("the shards did not meet within {:?}", start_limit(nshards))));
            return;
        }
    };
    let id = itx.peer_id();
    debug_assert_eq!(id, etx.peer_id(), "both meshes order peers by executor id");
    // A quiet shard holds its thread in epoll for a moment before glommio parks it; the
    // other shards' batches wake it out of the hold (netpoll's `hold`).
    let own = nudges[id].clone();
    if let Err(e) = netpoll::Poller::local().and_then(|p| p.hold_when_quiet(QUIET_HOLD, Some(own.clone()))) {
        let _ = ready.send(Err(format!("shard {id} cannot set up its poller: {e}")));
        return;
    }
    let shard = Rc::new(Shard::new(id, cfg, node.clone(), Mesh { ingress: itx, egress: etx, nudges }));
    let (wake_tx, wake_rx) = glommio::channels::local_channel::new_bounded(1);
    {
        let st = &mut *shard.st.borrow_mut();
        st.store = Store::memory(shard.cfg.storage.clone());
        st.store.parts = start.parts;
        st.store.set_wake(wake_tx);
        for (filter, origin) in &start.interest {
            shard.apply_interest(st, *origin, filter, 1);
        }
    }
    shard.restore(start.sessions, start.retained);
    let commit = netpoll::spawn(crate::engine::commit::commit_loop(shard.clone(), wake_rx));
    let (kick_tx, kick_rx) = glommio::channels::local_channel::new_bounded(1);
    shard.st.borrow_mut().set_kick(kick_tx);
    let deferred = netpoll::spawn(crate::engine::dispatch::deferred_sends(shard.clone(), kick_rx));
    let (relieve_tx, relieve_rx) = glommio::channels::local_channel::new_bounded(1);
    shard.st.borrow_mut().pressure_kick = Some(relieve_tx);
    let relieve = netpoll::spawn(crate::engine::pressure::relieve_loop(shard.clone(), relieve_rx));
    let (arrivals_tx, arrivals_rx) = glommio::channels::local_channel::new_bounded(ARRIVALS);
    shard.st.borrow_mut().arrivals = Some(arrivals_tx);
    let arrivals = netpoll::spawn(crate::front::arrivals(shard.clone(), arrivals_rx));
    let interval = match shard.cfg.storage.fsync {
        crate::config::Fsync::Interval(every) if shard.st.borrow().store.persistent() => {
            Some(netpoll::spawn(crate::engine::commit::interval_sync_loop(shard.clone(), every)))
        }
        _ => None,
    };
    let mut tasks = Vec::new();
    for (from, rx) in irx.streams() {
        let (shard, own) = (shard.clone(), own.clone());
        tasks.push(netpoll::spawn(async move {
            while let Some(batch) = rx.recv().await {
                own.taken(1);
                shard.on_ingress(from, batch).await;
            }
        }));
    }
    for (_, rx) in erx.streams() {
        let (shard, own) = (shard.clone(), own.clone());
        tasks.push(netpoll::spawn(async move {
            while let Some(batch) = rx.recv().await {
                own.taken(1);
                shard.on_egress(batch);
            }
        }));
    }
    let mut accepts = Vec::with_capacity(fds.len());
    for (index, fd) in fds {
        match netpoll::Listener::new(fd) {
            Ok(listener) => accepts.push(netpoll::spawn(accept_loop(shard.clone(), listener, index))),
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id} cannot listen: {e}")));
                return;
            }
        }
    }
    tracing::debug!(shard = id, "shard running");
    let _ = ready.send(Ok(()));
    drop(ready);
    let mut last_sweep = Instant::now();
    while !node.stopping() {
        glommio::timer::sleep(TICK).await;
        shard.publish_metrics();
        let now = Instant::now();
        if now.duration_since(last_sweep) >= SWEEP_EVERY {
            last_sweep = now;
            let mut out = shard.outgoing();
            shard.sweep(now, &mut out);
            out.flush(&shard.mesh).await;
        }
    }
    // Stop accepting: dropping the accept tasks closes the listeners.
    drop(accepts);
    let conns: Vec<_> = shard.st.borrow().slots.iter().flatten().filter_map(|s| s.conn.clone()).collect();
    let bye = Conn::disconnect(reason::SERVER_SHUTTING_DOWN);
    for c in conns {
        c.close_with(CloseCause::Shutdown, (c.protocol == Protocol::V5).then_some(&bye));
    }
    let deadline = Instant::now() + STOP_GRACE;
    while shard.conns.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    node.running.fetch_sub(1, Ordering::Relaxed);
    // Keep serving the meshes until every shard is done, so no peer waits on us forever.
    while node.running.load(Ordering::Relaxed) > 0 && Instant::now() < deadline + STOP_GRACE {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    drop(tasks);
    drop(interval);
    drop(commit);
    drop(deferred);
    drop(relieve);
    drop(arrivals);
    shard.st.borrow_mut().store.sync_all();
    tracing::debug!(shard = id, "shard stopped");
}
