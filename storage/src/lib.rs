//! Storage for RingMQ: the logs a topic owner appends PUBLISHes to, and the small state
//! store that keeps a partition's sessions and retained messages across restarts.
//!
//! Everything here is **synchronous and single-owner**: one shard owns each log and each
//! store and calls it from its executor. Nothing here knows about glommio or any runtime:
//! the only blocking call that matters, `fdatasync`, is handed to the caller as a
//! [`SyncPoint`] that it can run wherever it likes (glommio's `spawn_blocking`), reporting
//! back with `mark_durable`. Reads and writes are plain `pwrite`s and mapped files.
//!
//! | type | engine | survives restart |
//! |---|---|---|
//! | [`SegmentLog`] | a directory of segment files per partition, CRC'd records, sparse index, retention by size and age | yes |
//! | [`MemoryLog`] | a bounded ring of records | no |
//! | [`StateStore`] | a key-value map: rkyv snapshot + change log | yes |
//!
//! Both logs implement [`Log`], so an owner can hold either behind one type.
//!
//! # The record
//!
//! A record is a 31-byte little-endian header (length, CRC32C, offset, timestamp, flags,
//! topic and property lengths) followed by topic, properties and payload; see [`record`].
//! Reads hand out owned [`Record`]s whose fields are `Bytes`.
//!
//! # Durability
//!
//! ```
//! use storage::{Log, SegmentConfig, SegmentLog};
//!
//! let dir = tempfile::tempdir()?;
//! let (mut log, _) = SegmentLog::open(dir.path().join("p017"), SegmentConfig::default())?;
//! for i in 0..3u8 {
//!     log.append(0, storage::record::flags(false, 1), b"a/b", b"", &[i])?;
//! }
//! let point = log.flush()?; // on the shard: write(2), no fsync
//! let moved = std::thread::spawn(move || point.sync().map(|()| point.upto())); // anywhere
//! let upto = moved.join().unwrap()?;
//! log.mark_durable(upto); // back on the shard: ack the QoS 1 publishers below `upto`
//! assert_eq!(log.durable_offset(), 3);
//! assert_eq!(log.read_range(0, 10, 1 << 20)?.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod changelog;
mod config;
mod error;
mod index;
mod log;
mod memory;
pub mod record;
mod recover;
mod segment;
mod state;
pub mod sync;

pub use error::{Corruption, Error, Result};
pub use log::{LogStats, RetentionReport, SegmentConfig, SegmentLog, MAX_INDEX_ENTRIES};
pub use memory::{Entry, MemoryLog};
pub use record::{Record, RecordView};
pub use recover::{Recovery, Truncation};
pub use segment::Damage;
pub use state::{StateConfig, StateRecovery, StateStore};
pub use sync::SyncPoint;

/// What both log engines offer a topic owner.
pub trait Log {
    /// Appends one record and returns its offset.
    fn append(&mut self, timestamp_ms: u64, flags: u8, topic: &[u8], properties: &[u8], payload: &[u8]) -> Result<u64>;
    /// The record at `offset`, if held.
    fn read(&mut self, offset: u64) -> Result<Option<Record>>;
    /// Up to `max_records` records from `from` on, within `max_bytes` (at least one),
    /// appended to `out`; returns how many.
    fn read_range_into(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<usize>;
    /// Oldest offset held.
    fn first_offset(&self) -> u64;
    /// Offset the next append gets.
    fn next_offset(&self) -> u64;
    /// Records below this offset are as durable as the engine promises.
    fn durable_offset(&self) -> u64;

    /// [`read_range_into`](Log::read_range_into) into a new vector.
    fn read_range(&mut self, from: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.read_range_into(from, max_records, max_bytes, &mut out)?;
        Ok(out)
    }
}

impl Log for SegmentLog {
    fn append(&mut self, timestamp_ms: u64, flags: u8, topic: &[u8], properties: &[u8], payload: &[u8]) -> Result<u64> {
        SegmentLog::append(self, timestamp_ms, flags, topic, properties, payload)
    }
    fn read(&mut self, offset: u64) -> Result<Option<Record>> {
        SegmentLog::read(self, offset)
    }
    fn read_range_into(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<usize> {
        SegmentLog::read_range_into(self, from, max_records, max_bytes, out)
    }
    fn first_offset(&self) -> u64 {
        SegmentLog::first_offset(self)
    }
    fn next_offset(&self) -> u64 {
        SegmentLog::next_offset(self)
    }
    fn durable_offset(&self) -> u64 {
        SegmentLog::durable_offset(self)
    }
}

impl Log for MemoryLog {
    fn append(&mut self, timestamp_ms: u64, flags: u8, topic: &[u8], properties: &[u8], payload: &[u8]) -> Result<u64> {
        MemoryLog::append(self, timestamp_ms, flags, topic, properties, payload)
    }
    fn read(&mut self, offset: u64) -> Result<Option<Record>> {
        Ok(MemoryLog::read(self, offset))
    }
    fn read_range_into(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<usize> {
        Ok(MemoryLog::read_range_into(self, from, max_records, max_bytes, out))
    }
    fn first_offset(&self) -> u64 {
        MemoryLog::first_offset(self)
    }
    fn next_offset(&self) -> u64 {
        MemoryLog::next_offset(self)
    }
    fn durable_offset(&self) -> u64 {
        MemoryLog::durable_offset(self)
    }
}
