//! [`StateStore`]: a small persistent key-value map for one partition's cold structured
//! state (sessions, subscriptions, retained and will messages). Keys and values are opaque
//! bytes; the engine serializes its own structs.
//!
//! Owned by the partition's shard like its log. The whole map lives in memory (`get` never
//! touches a disk); changes are appended to a change log, and [`compact`](StateStore::compact)
//! folds everything into a snapshot so a restart reads one snapshot plus a short log:
//!
//! | file | what |
//! |---|---|
//! | `state.snap` | 24-byte header (magic `RMQSNAP1`, archive length u64, CRC32C u32, 4 zero bytes) + an rkyv archive of generation, next sequence number and the map |
//! | `changes.log` | header naming the generation it follows + put/delete frames (see `changelog.rs`) |
//!
//! Compaction writes `state.snap.tmp`, fsyncs it, renames it over `state.snap`, fsyncs the
//! directory, then does the same for a fresh `changes.log` of the new generation. A crash
//! in between leaves a change log of an older generation next to the new snapshot: it is
//! recognised by its generation and discarded (its changes are in the snapshot).
//!
//! Opening validates the snapshot (CRC, then rkyv's checked access): a damaged snapshot is
//! an error, never an empty state. A torn or corrupt change log tail is cut off and
//! reported, like a segment log's.
//!
//! ```
//! use storage::StateStore;
//!
//! let dir = tempfile::tempdir()?;
//! let (mut store, _) = StateStore::open(dir.path())?;
//! store.put(b"session/c1", b"expiry=3600")?;
//! store.sync()?;
//! drop(store);
//! let (store, recovery) = StateStore::open(dir.path())?;
//! assert_eq!(recovery.entries, 1);
//! assert_eq!(store.get(b"session/c1"), Some(&b"expiry=3600"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::changelog::{self, ChangeLog, Frame, Op, FILE_HEADER_LEN, FRAME_HEADER_LEN};
use crate::error::{Corruption, Error, IoContext, Result};
use crate::record::{u32_at, u64_at, MAX_RECORD_LEN};
use crate::segment::{remove_if_exists, Damage};
use crate::sync::{self, SyncFile, SyncPoint};

const SNAP_MAGIC: &[u8; 8] = b"RMQSNAP1";
const SNAP_HEADER_LEN: usize = 24;
const SNAPSHOT: &str = "state.snap";
const SNAPSHOT_TMP: &str = "state.snap.tmp";
const CHANGES: &str = "changes.log";

/// Tunables of a [`StateStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Largest key. Default 64 KiB: an MQTT topic or client id is at most 65535 bytes.
    pub max_key_bytes: usize,
    /// Largest value. Default 1 MiB + 64 KiB: a retained 1 MiB message with its topic.
    pub max_value_bytes: usize,
    /// Bound on live keys + values held. Default 1 GiB.
    pub max_total_bytes: usize,
    /// Buffered frames are written once they pass this. Default 64 KiB.
    pub write_buffer_bytes: usize,
    /// Compact when the change log passes this many times the snapshot... (see
    /// `compact_min_bytes`). Default 2: a restart reads at most about 3x the live state.
    pub compact_ratio: u64,
    /// ...or this many bytes, whichever is larger. Default 4 MiB: small stores do not
    /// rewrite their snapshot on every change.
    pub compact_min_bytes: u64,
    /// Compact from `put`/`delete` when due. Turn off to run [`StateStore::compact`] on a
    /// schedule of the caller's (it fsyncs, so it blocks).
    pub auto_compact: bool,
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig {
            max_key_bytes: 64 << 10,
            max_value_bytes: (1 << 20) + (64 << 10),
            max_total_bytes: 1 << 30,
            write_buffer_bytes: 64 << 10,
            compact_ratio: 2,
            compact_min_bytes: 4 << 20,
            auto_compact: true,
        }
    }
}

impl StateConfig {
    fn validate(&self) -> Result<()> {
        if self.max_key_bytes == 0
            || self.max_key_bytes.saturating_add(self.max_value_bytes).saturating_add(FRAME_HEADER_LEN) > MAX_RECORD_LEN
        {
            return Err(Error::InvalidConfig("state: max_key_bytes + max_value_bytes must fit in 1 GiB"));
        }
        if self.write_buffer_bytes == 0 || self.compact_ratio == 0 {
            return Err(Error::InvalidConfig("state: write_buffer_bytes and compact_ratio must be positive"));
        }
        Ok(())
    }
}

/// What [`StateStore::open`] found.
#[derive(Debug, Clone, Default)]
pub struct StateRecovery {
    /// Keys after recovery.
    pub entries: usize,
    /// Generation of the snapshot loaded (0: none yet).
    pub generation: u64,
    /// Size of the snapshot file (0: none).
    pub snapshot_bytes: u64,
    /// Change-log frames replayed on top of it.
    pub replayed: u64,
    /// Bytes cut off a torn or corrupt change-log tail.
    pub truncated_bytes: u64,
    /// Why the change log was cut, if it was.
    pub tail_damage: Option<Damage>,
    /// A change log of an older generation (a compaction interrupted after its snapshot) was
    /// discarded.
    pub stale_log_discarded: bool,
    /// Wall time of the open.
    pub elapsed: Duration,
}

/// The snapshot's content.
#[derive(Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StateData {
    /// Bumped by each compaction; the change log names the one it follows.
    generation: u64,
    /// Sequence number of the next change.
    next_seq: u64,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A persistent key-value map. See the [module docs](self).
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    config: StateConfig,
    data: StateData,
    live_bytes: usize,
    log: ChangeLog,
    snapshot_bytes: u64,
    durable: u64,
    dir_sync: SyncFile,
    /// A compaction failed after its snapshot was renamed into place: the change log in use
    /// no longer matches it.
    failed: bool,
    compactions: u64,
}

/// Writes through to `inner`, keeping a CRC32C and a count of what passed.
struct CrcWriter<W> {
    inner: W,
    crc: u32,
    len: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads and validates a snapshot file.
fn load_snapshot(path: &Path) -> Result<Option<(StateData, u64)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("open snapshot", path),
    };
    let size = file.metadata().ctx("stat snapshot", path)?.len();
    let mut header = [0u8; SNAP_HEADER_LEN];
    if size < SNAP_HEADER_LEN as u64 {
        return Err(Error::corrupt_file(path, 0, "shorter than its header"));
    }
    file.read_exact(&mut header).ctx("read snapshot", path)?;
    if &header[..8] != SNAP_MAGIC {
        return Err(Error::corrupt_file(path, 0, "bad magic"));
    }
    let len = u64_at(&header, 8);
    if len != size - SNAP_HEADER_LEN as u64 {
        return Err(Error::corrupt_file(path, 8, format!("archive of {len} bytes in a file of {size}")));
    }
    let len = usize::try_from(len).map_err(|_| Error::corrupt_file(path, 8, "archive larger than memory"))?;
    let mut archive = AlignedVec::<16>::with_capacity(len);
    archive.resize(len, 0);
    file.read_exact(archive.as_mut_slice()).ctx("read snapshot", path)?;
    let stored = u32_at(&header, 16);
    let computed = crc32c::crc32c(&archive);
    if stored != computed {
        return Err(Error::corrupt_file(
            path,
            SNAP_HEADER_LEN as u64,
            format!("crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    let archived = rkyv::access::<ArchivedStateData, rancor::Error>(&archive)
        .map_err(|e| Error::corrupt_file(path, SNAP_HEADER_LEN as u64, format!("invalid archive: {e}")))?;
    let data = rkyv::deserialize::<StateData, rancor::Error>(archived)
        .map_err(|e| Error::corrupt_file(path, SNAP_HEADER_LEN as u64, format!("cannot deserialize: {e}")))?;
    Ok(Some((data, size)))
}

/// Writes `data` to `tmp` (streamed through rkyv, CRC'd), fsyncs it and renames it to
/// `path`. Returns the file size. The caller syncs the directory.
fn write_snapshot(data: &StateData, tmp: &Path, path: &Path) -> Result<u64> {
    let mut file = File::create(tmp).ctx("create snapshot", tmp)?;
    file.write_all(&[0u8; SNAP_HEADER_LEN]).ctx("write snapshot", tmp)?;
    let (crc, len) = {
        let writer = CrcWriter { inner: BufWriter::with_capacity(256 << 10, &mut file), crc: 0, len: 0 };
        let io = rkyv::ser::writer::IoWriter::new(writer);
        let CrcWriter { inner, crc, len } = rkyv::api::high::to_bytes_in::<_, rancor::Error>(data, io)
            .map_err(|e| Error::Io {
                op: "serialize snapshot",
                path: tmp.to_path_buf(),
                source: std::io::Error::other(e),
            })?
            .into_inner();
        inner.into_inner().map_err(|e| e.into_error()).ctx("write snapshot", tmp)?;
        (crc, len)
    };
    let mut header = [0u8; SNAP_HEADER_LEN];
    header[..8].copy_from_slice(SNAP_MAGIC);
    header[8..16].copy_from_slice(&len.to_le_bytes());
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    file.seek(SeekFrom::Start(0)).ctx("write snapshot", tmp)?;
    file.write_all(&header).ctx("write snapshot", tmp)?;
    file.sync_all().ctx("fsync snapshot", tmp)?;
    fs::rename(tmp, path).ctx("rename snapshot", path)?;
    Ok(SNAP_HEADER_LEN as u64 + len)
}

/// Replays the change log at `path` onto `data`; truncates a bad tail. Returns the log
/// (positioned after the last good frame) or `None` if it belongs to an older generation.
fn replay(path: &Path, data: &mut StateData, buf_cap: usize, report: &mut StateRecovery) -> Result<Option<ChangeLog>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("open change log", path),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ctx("read change log", path)?;
    let Some(generation) = changelog::parse_header(&bytes) else {
        return Err(Error::corrupt_file(path, 0, "bad change log header"));
    };
    if generation < data.generation {
        report.stale_log_discarded = true;
        return Ok(None);
    }
    if generation > data.generation {
        return Err(Error::corrupt_file(
            path,
            8,
            format!("change log follows generation {generation} but the snapshot is generation {}", data.generation),
        ));
    }
    let mut pos = FILE_HEADER_LEN as usize;
    while pos < bytes.len() {
        let frame = match changelog::decode(&bytes[pos..]) {
            Ok(f) if f.seq == data.next_seq => f,
            Ok(f) => {
                report.tail_damage =
                    Some(Damage::Corrupt(Corruption::BadOffset { expected: data.next_seq, found: f.seq }));
                break;
            }
            Err(Error::Incomplete { .. }) => {
                report.tail_damage = Some(Damage::Torn);
                break;
            }
            Err(Error::Corrupt(c)) => {
                report.tail_damage = Some(Damage::Corrupt(c));
                break;
            }
            Err(_) => {
                report.tail_damage = Some(Damage::Corrupt(Corruption::BadBounds));
                break;
            }
        };
        match frame.op {
            Op::Put => {
                data.entries.insert(frame.key.to_vec(), frame.value.to_vec());
            }
            Op::Delete => {
                data.entries.remove(frame.key);
            }
        }
        data.next_seq += 1;
        report.replayed += 1;
        pos += frame.encoded_len();
    }
    if pos < bytes.len() {
        file.set_len(pos as u64).ctx("truncate change log", path)?;
        report.truncated_bytes = (bytes.len() - pos) as u64;
    }
    file.sync_data().ctx("fdatasync", path)?;
    Ok(Some(ChangeLog::opened(file, path, pos as u64, buf_cap)))
}

impl StateStore {
    /// Opens (or creates) the store in `dir` with the default [`StateConfig`].
    pub fn open(dir: impl AsRef<Path>) -> Result<(StateStore, StateRecovery)> {
        StateStore::open_with(dir, StateConfig::default())
    }

    /// Opens (or creates) the store in `dir`: loads the snapshot (an error if it is
    /// damaged), replays the change log (cutting off a torn or corrupt tail).
    pub fn open_with(dir: impl AsRef<Path>, config: StateConfig) -> Result<(StateStore, StateRecovery)> {
        let started = Instant::now();
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).ctx("create state directory", &dir)?;
        remove_if_exists(&dir.join(SNAPSHOT_TMP))?;
        remove_if_exists(&dir.join(CHANGES).with_extension("log.tmp"))?;
        let mut report = StateRecovery::default();
        let (mut data, snapshot_bytes) = load_snapshot(&dir.join(SNAPSHOT))?.unwrap_or_default();
        report.generation = data.generation;
        report.snapshot_bytes = snapshot_bytes;
        let changes = dir.join(CHANGES);
        let dir_sync = sync::open_dir(&dir)?;
        let log = match replay(&changes, &mut data, config.write_buffer_bytes, &mut report)? {
            Some(log) => log,
            None => ChangeLog::create(&changes, data.generation, config.write_buffer_bytes)?,
        };
        dir_sync.file.sync_all().ctx("fsync directory", &dir)?;
        let live_bytes = data.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        report.entries = data.entries.len();
        report.elapsed = started.elapsed();
        let durable = data.next_seq;
        let store = StateStore {
            dir,
            config,
            data,
            live_bytes,
            log,
            snapshot_bytes,
            durable,
            dir_sync,
            failed: false,
            compactions: 0,
        };
        Ok((store, report))
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.data.entries.get(key).map(Vec::as_slice)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.data.entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn iter_prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.data
            .entries
            .range(prefix.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.entries.len()
    }

    /// Holds no key.
    pub fn is_empty(&self) -> bool {
        self.data.entries.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Bytes of the change log, buffered ones included.
    pub fn log_bytes(&self) -> u64 {
        self.log.len()
    }

    /// Size of the current snapshot file (0 before the first compaction).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
    }

    /// Compactions run since open.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// Sequence number the next change gets.
    pub fn next_seq(&self) -> u64 {
        self.data.next_seq
    }

    /// Every change below this sequence number is on disk.
    pub fn durable_seq(&self) -> u64 {
        self.durable
    }

    fn check_failed(&self) -> Result<()> {
        if self.failed || self.log.failed {
            return Err(Error::Failed);
        }
        Ok(())
    }

    /// Due for compaction: the change log is over `compact_ratio` x the snapshot and over
    /// `compact_min_bytes`.
    pub fn needs_compaction(&self) -> bool {
        let threshold =
            self.config.compact_min_bytes.max(self.config.compact_ratio.saturating_mul(self.snapshot_bytes));
        self.log.len() > threshold
    }

    /// Work every change does first: refuse after a failure, compact if due, make room in
    /// the write buffer. An error here leaves the store as it was.
    fn before_change(&mut self) -> Result<()> {
        self.check_failed()?;
        if self.config.auto_compact && self.needs_compaction() {
            self.compact()?;
        }
        if self.log.buffered() >= self.config.write_buffer_bytes {
            self.log.flush()?;
        }
        Ok(())
    }

    /// Sets `key` to `value`. Buffered until the write buffer fills or
    /// [`flush`](StateStore::flush); durable after a synced [`SyncPoint`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if key.len() > self.config.max_key_bytes {
            return Err(Error::KeyTooLong { len: key.len(), max: self.config.max_key_bytes });
        }
        if value.len() > self.config.max_value_bytes {
            return Err(Error::RecordTooLarge { size: value.len(), max: self.config.max_value_bytes });
        }
        let old = self.data.entries.get(key).map_or(0, |v| key.len() + v.len());
        let size = self.live_bytes - old + key.len() + value.len();
        if size > self.config.max_total_bytes {
            return Err(Error::StateFull { size, max: self.config.max_total_bytes });
        }
        self.before_change()?;
        self.log.push(&Frame { seq: self.data.next_seq, op: Op::Put, key, value });
        self.data.next_seq += 1;
        self.data.entries.insert(key.to_vec(), value.to_vec());
        self.live_bytes = size;
        Ok(())
    }

    /// Removes `key`; returns whether it was there (nothing is logged if it was not).
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        if !self.data.entries.contains_key(key) {
            return Ok(false);
        }
        self.before_change()?;
        self.log.push(&Frame { seq: self.data.next_seq, op: Op::Delete, key, value: &[] });
        self.data.next_seq += 1;
        if let Some(v) = self.data.entries.remove(key) {
            self.live_bytes -= key.len() + v.len();
        }
        Ok(true)
    }

    /// Writes buffered changes to the change log (no fsync) and returns what to sync.
    pub fn flush(&mut self) -> Result<SyncPoint> {
        self.check_failed()?;
        self.log.flush()?;
        let files = if self.durable < self.data.next_seq { vec![self.log.sync_file()] } else { Vec::new() };
        Ok(SyncPoint { files, upto: self.data.next_seq })
    }

    /// Changes below `upto` are on disk. Never moves backwards.
    pub fn mark_durable(&mut self, upto: u64) {
        self.durable = self.durable.max(upto.min(self.data.next_seq));
    }

    /// Flush, sync on this thread, mark durable.
    pub fn sync(&mut self) -> Result<u64> {
        let point = self.flush()?;
        point.sync()?;
        self.mark_durable(point.upto());
        Ok(self.durable)
    }

    /// Writes the whole map as a new snapshot and starts an empty change log, so a restart
    /// reads no history. Blocking (two fsyncs of files, two of the directory). Afterwards
    /// every change so far is durable.
    pub fn compact(&mut self) -> Result<()> {
        self.check_failed()?;
        let snapshot = self.dir.join(SNAPSHOT);
        self.data.generation += 1;
        let written = write_snapshot(&self.data, &self.dir.join(SNAPSHOT_TMP), &snapshot);
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                self.data.generation -= 1;
                return Err(e);
            }
        };
        // From here on the snapshot on disk is the new generation: a change log of the old
        // one would be ignored at the next open, so failing to replace it is fatal.
        let replaced = self
            .dir_sync
            .file
            .sync_all()
            .ctx("fsync directory", &self.dir)
            .and_then(|()| {
                ChangeLog::create(&self.dir.join(CHANGES), self.data.generation, self.config.write_buffer_bytes)
            })
            .and_then(|log| self.dir_sync.file.sync_all().ctx("fsync directory", &self.dir).map(|()| log));
        match replaced {
            Ok(log) => {
                self.log = log;
                self.snapshot_bytes = size;
                self.durable = self.data.next_seq;
                self.compactions += 1;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

impl Drop for StateStore {
    /// Best effort: buffered changes reach the change log file (not the disk).
    fn drop(&mut self) {
        if !self.failed && !self.log.failed {
            let _ = self.log.flush();
        }
    }
}
