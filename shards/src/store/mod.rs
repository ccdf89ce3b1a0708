//! Durable storage on a shard: the segment logs and state stores of the partitions it
//! owns, group commit, and the acknowledgements that wait for it.
//!
//! Layout under the data directory: `meta` (the partition count, fixed at creation),
//! `lock` (held by the running node), and per partition `pNNNNN/log/` (segment log of its
//! topics) and `pNNNNN/state/` (state store: session images `s/{client id}`, retained
//! messages `r/{topic}`).
//!
//! Group commit: appends and state writes only fill buffers. The first one after a commit
//! wakes the shard's commit task, which runs once the shard has nothing else to do, so one
//! commit covers everything done meanwhile: it writes the buffers out, fsyncs them on
//! glommio's blocking pool (`fsync = always`), marks them durable, then sends the
//! acknowledgements (PUBACK/PUBREC, SUBACK of persistent sessions) that waited. With
//! `interval` and `never` acknowledgements go out once the bytes are written to the OS,
//! which survives a crash of the broker; `interval` fsyncs on its own timer.
//!
//! A leaf: synchronous, owned by one shard's `State`; the engine calls it (the commit task
//! lives in `engine::commit`), the node opens it at start.

pub mod image;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel::LocalSender;
use storage::{MemoryLog, SegmentConfig, SegmentLog, StateStore, SyncPoint};

use crate::config::{EngineConfig, Fsync, StorageConfig};
use crate::error::Error;
use crate::msg::{AckTo, Message, Pos, SessionRef};
use image::SessionImage;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Key of a session image.
pub fn session_key(client_id: &str) -> Vec<u8> {
    [b"s/", client_id.as_bytes()].concat()
}

/// Key of a retained message.
pub fn retained_key(topic: &[u8]) -> Vec<u8> {
    [b"r/", topic].concat()
}

/// What one commit must fsync: per partition, its log's and its state store's points.
pub(crate) type Points = Vec<(u32, Option<SyncPoint>, SyncPoint)>;

/// What waits for the next commit.
#[derive(Debug)]
pub enum Deferred {
    /// PUBACK/PUBREC with this reason code.
    Ack(AckTo, u8),
    /// A PUBREC released on the publisher's own shard once its QoS 2 packet id is on disk
    /// (the message itself is durable already).
    Release(AckTo, u8),
    /// A packet to a session on this shard once its state is on disk: the SUBACK of a
    /// persistent subscription, the PUBCOMP that forgets a QoS 2 packet id.
    Packet {
        /// The session (on this shard).
        to: SessionRef,
        /// Its connection.
        conn_id: u64,
        /// The packet.
        packet: proto::Packet,
    },
}

/// One partition's files.
pub struct Part {
    /// Segment log of its topics (when any topic uses the segment engine).
    pub log: Option<SegmentLog>,
    /// Its state store.
    pub state: StateStore,
    /// Next offset of the log when it was opened: replay of restored sessions stops there,
    /// since everything appended later is delivered live.
    pub recovered_next: u64,
    dirty: bool,
}

/// A message held in a partition's memory ring: the same shared message the sessions hold,
/// charged its topic, payload and a fixed overhead. The ring reads the handle's counts:
/// another strong holder is a connected subscriber that has not finished with it (or a
/// copy on its way to one), a weak one an offline session that may come back for it.
#[derive(Debug, Clone)]
pub struct Held(pub Arc<Message>);

impl Held {
    /// Who needs it besides the ring, read once: (held by another, watched by a weak
    /// handle). Either may change at any time on another shard (a holder lets go, a
    /// returning session upgrades its weak handle); a stale reading only makes the ring
    /// wait a retry longer, or evict what only a weak handle watched, as promised.
    fn readers(&self) -> (bool, bool) {
        (Arc::strong_count(&self.0) > 1, Arc::weak_count(&self.0) > 0)
    }

    /// Somebody holds or watches it.
    fn needed(&self) -> bool {
        self.readers() != (false, false)
    }
}

/// What a memory ring did with a message.
#[derive(Debug)]
pub enum Admit {
    /// Kept at this position.
    Kept(Pos),
    /// Full of what connected subscribers still hold, under `backpressure`: wait.
    Full,
    /// Not kept (larger than the whole ring): delivered without a position.
    NotKept,
}

/// Bytes charged per message in a memory ring on top of topic and payload (the message
/// record and its properties).
const HELD_OVERHEAD: usize = 128;

impl storage::Entry for Held {
    fn charge(&self) -> usize {
        self.0.topic.len() + self.0.payload.len() + HELD_OVERHEAD
    }
}

/// Counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    /// Records appended to segment logs.
    pub appended: u64,
    /// Appends or state writes that failed.
    pub write_errors: u64,
    /// Commits run.
    pub commits: u64,
    /// fsync calls that failed (their acknowledgements are not sent).
    pub sync_errors: u64,
    /// fsyncs run (commits and the interval task).
    pub fsyncs: u64,
    /// Time those fsyncs took, microseconds.
    pub fsync_us: u64,
}

/// A shard's storage.
pub struct Store {
    /// The storage configuration.
    pub cfg: StorageConfig,
    /// Partitions this shard owns, when anything persists.
    pub parts: HashMap<u32, Part>,
    /// Memory rings of this shard's partitions (made on first use): QoS 1/2 messages of
    /// `memory` topics that offline sessions may still need.
    pub rings: HashMap<u32, MemoryLog<Held>>,
    pub(crate) deferred: Vec<Deferred>,
    wake: Option<LocalSender<()>>,
    /// Written but not yet fsynced (`fsync = interval`): what the interval task syncs.
    pub(crate) unsynced: Points,
    /// Counters.
    pub stats: StoreStats,
}

impl Default for Store {
    fn default() -> Self {
        Store::memory(StorageConfig::default())
    }
}

impl Store {
    /// A store with nothing on disk (memory only).
    pub fn memory(cfg: StorageConfig) -> Store {
        Store {
            cfg,
            parts: HashMap::new(),
            rings: HashMap::new(),
            deferred: Vec::new(),
            wake: None,
            unsynced: Vec::new(),
            stats: Default::default(),
        }
    }

    /// True when sessions, subscriptions and retained messages persist.
    pub fn persistent(&self) -> bool {
        !self.parts.is_empty()
    }

    /// Installs the commit task's wake-up channel.
    pub fn set_wake(&mut self, wake: LocalSender<()>) {
        self.wake = Some(wake);
    }

    fn poke(&self) {
        if let Some(w) = &self.wake {
            // Full means a wake-up is already pending: that commit will cover this too.
            let _ = w.try_send(());
        }
    }

    /// Appends a message to its partition's segment log.
    pub fn append(&mut self, partition: u32, msg: &Message) -> Result<Pos, Error> {
        let part = self.parts.get_mut(&partition).ok_or(Error::Storage("partition not owned".into()))?;
        let log = part.log.as_mut().ok_or(Error::Storage("no segment log".into()))?;
        let props = msg.properties.to_publish_block().map_err(|e| Error::Storage(e.to_string()))?;
        let flags = storage::record::flags(msg.retain, msg.qos as u8);
        let offset = log
            .append(msg.received / 1000, flags, &msg.topic, &props, &msg.payload)
            .map_err(|e| Error::Storage(e.to_string()))?;
        part.dirty = true;
        self.stats.appended += 1;
        self.poke();
        Ok(Pos::segment(partition, offset))
    }

    /// Keeps a message of a `memory` topic in its partition's ring. What no session needs
    /// any more is released first; if the message still does not fit, the oldest entry
    /// goes (evicted, counted) unless a connected subscriber holds it and its policy is
    /// `backpressure`: then the ring is [`Admit::Full`] and the message must wait.
    pub fn admit(&mut self, partition: u32, msg: &Arc<Message>) -> Admit {
        let cap = self.cfg.memory_bytes;
        let ring = match self.rings.entry(partition) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match MemoryLog::new(cap, cap) {
                Ok(r) => e.insert(r),
                Err(_) => return Admit::NotKept,
            },
        };
        let held = Held(msg.clone());
        let size = storage::Entry::charge(&held);
        if size > cap {
            return Admit::NotKept;
        }
        loop {
            ring.release_while(|h| !h.needed());
            if ring.fits(size) {
                break;
            }
            let Some(front) = ring.front() else { break };
            match front.readers() {
                // Its last reader let go since the release above (on another shard).
                (false, false) => {}
                (true, _) if front.0.backpressure => return Admit::Full,
                _ => {
                    ring.evict_oldest();
                }
            }
        }
        match ring.push_entry(held) {
            Ok(offset) => Admit::Kept(Pos::memory(partition, offset)),
            Err(_) => Admit::NotKept,
        }
    }

    /// Releases what no session needs any more from every memory ring.
    pub fn release_rings(&mut self) {
        for ring in self.rings.values_mut() {
            ring.release_while(|h| !h.needed());
        }
    }

    /// Messages evicted from this shard's memory rings, since start.
    pub fn evicted(&self) -> u64 {
        self.rings.values().map(|r| r.evicted()).sum()
    }

    /// Writes a state value (session image or retained message) of a partition.
    pub fn put(&mut self, partition: u32, key: &[u8], value: Option<&[u8]>) {
        let Some(part) = self.parts.get_mut(&partition) else { return };
        let result = match value {
            Some(v) => part.state.put(key, v),
            None => part.state.delete(key).map(|_| ()),
        };
        if let Err(e) = result {
            self.stats.write_errors += 1;
            tracing::error!(partition, error = %e, "state write failed");
        }
        part.dirty = true;
        self.poke();
    }

    /// Holds `d` until the next commit.
    pub fn defer(&mut self, d: Deferred) {
        self.deferred.push(d);
        self.poke();
    }

    /// Next offsets of this shard's partition logs among `parts`.
    pub fn next_offsets(&self, parts: impl Iterator<Item = u32>) -> Vec<(u32, u64)> {
        parts.filter_map(|p| Some((p, self.parts.get(&p)?.log.as_ref()?.next_offset()))).collect()
    }

    /// Writes every buffer out; returns what an fsync must cover, what waits for it, and
    /// whether every write succeeded (if not, what waits is released as failed).
    pub(crate) fn flush(&mut self) -> (Points, Vec<Deferred>, bool) {
        let mut points = Vec::new();
        let mut ok = true;
        for (p, part) in &mut self.parts {
            if !part.dirty {
                continue;
            }
            part.dirty = false;
            let log = match part.log.as_mut().map(|l| l.flush()).transpose() {
                Ok(l) => l,
                Err(e) => {
                    self.stats.write_errors += 1;
                    tracing::error!(partition = *p, error = %e, "log write failed");
                    ok = false;
                    None
                }
            };
            match part.state.flush() {
                Ok(s) => points.push((*p, log, s)),
                Err(e) => {
                    self.stats.write_errors += 1;
                    tracing::error!(partition = *p, error = %e, "state write failed");
                    ok = false;
                }
            }
        }
        (points, std::mem::take(&mut self.deferred), ok)
    }

    /// After a commit wrote `points` out (and, with `always`, fsynced them): durable now,
    /// or, with `interval`, left for the interval task to fsync.
    pub(crate) fn settle(&mut self, points: Points) {
        match self.cfg.fsync {
            Fsync::Interval(_) => self.unsynced.extend(points),
            Fsync::Always | Fsync::Never => self.mark_durable(&points),
        }
    }

    pub(crate) fn mark_durable(&mut self, points: &Points) {
        for (p, log, state) in points {
            if let Some(part) = self.parts.get_mut(p) {
                if let (Some(l), Some(point)) = (part.log.as_mut(), log) {
                    l.mark_durable(point.upto());
                }
                part.state.mark_durable(state.upto());
            }
        }
    }

    /// Writes and fsyncs everything (at shutdown).
    pub fn sync_all(&mut self) {
        for (p, part) in &mut self.parts {
            if let Some(l) = part.log.as_mut() {
                if let Err(e) = l.sync() {
                    tracing::error!(partition = *p, error = %e, "log sync failed");
                }
            }
            if let Err(e) = part.state.sync() {
                tracing::error!(partition = *p, error = %e, "state sync failed");
            }
        }
    }

    /// Deletes segments past the retention limits.
    pub fn enforce_retention(&mut self) {
        let now = now_ms();
        for (p, part) in &mut self.parts {
            if let Some(l) = part.log.as_mut() {
                match l.enforce_retention(now) {
                    Ok(r) if r.segments > 0 => {
                        tracing::info!(partition = *p, segments = r.segments, bytes = r.bytes, "retention")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(partition = *p, error = %e, "retention failed"),
                }
            }
        }
    }
}

fn sync_points(points: &Points) -> storage::Result<()> {
    for (_, log, state) in points {
        if let Some(l) = log {
            l.sync()?;
        }
        state.sync()?;
    }
    Ok(())
}

/// fdatasyncs `points` on glommio's blocking pool, so the shard keeps serving meanwhile.
pub(crate) async fn sync_off_shard(points: &Points) -> storage::Result<()> {
    let p = points.clone();
    glommio::executor().spawn_blocking(move || sync_points(&p)).await
}

/// What a start recovered from the data directory, in sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Log records found valid.
    pub records: u64,
    /// Persistent sessions found.
    pub sessions: usize,
    /// Retained messages found.
    pub retained: usize,
    /// Bytes cut off damaged log and change-log tails.
    pub truncated_bytes: u64,
    /// Time taken, in milliseconds.
    pub elapsed_ms: u64,
}

/// What a node recovered from its data directory, per shard.
pub struct Recovered {
    /// The totals.
    pub report: RecoveryReport,
    /// Per shard: its partitions.
    pub parts: Vec<HashMap<u32, Part>>,
    /// Per shard: session images of its partitions.
    pub sessions: Vec<Vec<SessionImage>>,
    /// Per shard: retained messages of its partitions.
    pub retained: Vec<Vec<Arc<Message>>>,
    /// The data directory lock, held while the node runs.
    pub lock: Option<File>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// Checks (or writes, for a new directory) the partition count and takes the lock.
fn prepare_dir(dir: &Path, partitions: u32) -> Result<File, Error> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Storage(format!("{}: another ringmq is using this data directory", dir.display())));
    }
    let meta = dir.join("meta");
    match std::fs::read_to_string(&meta) {
        Ok(text) => {
            let stored: Option<u32> =
                text.lines().find_map(|l| l.strip_prefix("partitions = ")).and_then(|v| v.trim().parse().ok());
            match stored {
                Some(p) if p == partitions => {}
                Some(p) => {
                    return Err(Error::Storage(format!(
                        "{}: the data directory was created with {p} partitions, not {partitions}; partitions cannot change",
                        dir.display()
                    )))
                }
                None => return Err(io_err(&meta, "unreadable (expected `partitions = N`)")),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut f = File::create(&meta).map_err(|e| io_err(&meta, e))?;
            writeln!(f, "partitions = {partitions}").and_then(|_| f.sync_all()).map_err(|e| io_err(&meta, e))?;
        }
        Err(e) => return Err(io_err(&meta, e)),
    }
    Ok(lock)
}

/// Opens (and recovers) every partition of the node, grouped by owning shard.
pub fn open(cfg: &EngineConfig, owners: &[usize], nshards: usize) -> Result<Recovered, Error> {
    let s = &cfg.storage;
    let mut rec = Recovered {
        parts: (0..nshards).map(|_| HashMap::new()).collect(),
        sessions: vec![Vec::new(); nshards],
        retained: vec![Vec::new(); nshards],
        lock: None,
        report: RecoveryReport::default(),
    };
    if !s.persistent() {
        return Ok(rec);
    }
    let started = Instant::now();
    rec.lock = Some(prepare_dir(&s.data_dir, owners.len() as u32)?);
    let with_logs = s.engine == crate::config::Engine::Segment
        || s.rules.iter().any(|r| r.engine == Some(crate::config::Engine::Segment));
    let seg = SegmentConfig {
        segment_bytes: s.segment_bytes,
        retention_bytes: s.retention_bytes,
        retention_ms: s.retention.map(|d| d.as_millis() as u64),
        max_record_bytes: cfg.limits.max_packet_size + 64 * 1024,
        ..SegmentConfig::default()
    };
    let (mut records, mut truncated, mut sessions, mut retained) = (0u64, 0u64, 0usize, 0usize);
    let restorer: Arc<str> = Arc::from("");
    for (p, &shard) in (0u32..).zip(owners) {
        let dir: PathBuf = s.data_dir.join(format!("p{p:05}"));
        let log = if with_logs {
            let (log, r) = SegmentLog::open(dir.join("log"), seg.clone()).map_err(|e| io_err(&dir, e))?;
            records += r.records;
            if r.truncated_bytes > 0 {
                tracing::warn!(partition = p, bytes = r.truncated_bytes, cuts = ?r.truncations, "damaged log tail truncated");
            }
            truncated += r.truncated_bytes;
            Some(log)
        } else {
            None
        };
        let (state, r) = StateStore::open(dir.join("state")).map_err(|e| io_err(&dir, e))?;
        if r.truncated_bytes > 0 {
            tracing::warn!(partition = p, bytes = r.truncated_bytes, "damaged state change log tail truncated");
        }
        truncated += r.truncated_bytes;
        for (key, value) in state.iter() {
            if let Some(id) = key.strip_prefix(b"s/") {
                match SessionImage::decode(value) {
                    Ok(img) => {
                        sessions += 1;
                        rec.sessions[shard].push(img);
                    }
                    Err(e) => {
                        tracing::error!(partition = p, client_id = %crate::show::short(&String::from_utf8_lossy(id)), error = %e, "session not restored")
                    }
                }
            } else if key.starts_with(b"r/") {
                match crate::store::image::decode_retained(value, &restorer) {
                    Some(m) => {
                        retained += 1;
                        rec.retained[shard].push(m);
                    }
                    None => tracing::error!(partition = p, "retained message not restored: bad record"),
                }
            }
        }
        let recovered_next = log.as_ref().map_or(0, |l| l.next_offset());
        rec.parts[shard].insert(p, Part { log, state, recovered_next, dirty: false });
    }
    rec.report = RecoveryReport {
        records,
        sessions,
        retained,
        truncated_bytes: truncated,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(
        dir = %s.data_dir.display(),
        partitions = owners.len(),
        records,
        sessions,
        retained,
        truncated_bytes = truncated,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "storage recovered"
    );
    Ok(rec)
}
