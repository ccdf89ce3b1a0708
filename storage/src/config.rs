//! The tunables of a segment log ([`SegmentConfig`]) and their bounds: read by the log
//! and by its recovery, so they live below both.

use crate::error::{Error, Result};
use crate::record::{HEADER_LEN, MAX_RECORD_LEN};

/// Most index entries one segment may have: 1 Mi entries = 8 MiB, the bound on one
/// segment's index memory.
pub const MAX_INDEX_ENTRIES: u64 = 1 << 20;

/// Tunables of a [`SegmentLog`](crate::SegmentLog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    /// Roll to a new segment before an append would take the active one past this many
    /// bytes. Default 64 MiB: retention granularity vs. number of files.
    pub segment_bytes: u64,
    /// One index entry per this many bytes of records. Default 4 KiB: a lookup scans at
    /// most about one page, and a 64 MiB segment's index is 128 KiB.
    pub index_interval_bytes: u32,
    /// Largest record `append` accepts, header included. Default 1 MiB + 64 KiB: a 1 MiB
    /// MQTT packet plus topic and properties.
    pub max_record_bytes: usize,
    /// The write buffer is written to the file once it holds this many bytes. Default
    /// 64 KiB: one write call per ~60 records of 1 KiB.
    pub write_buffer_bytes: usize,
    /// Retention by size: delete sealed segments, oldest first, while the log is larger.
    /// `None`: unlimited.
    pub retention_bytes: Option<u64>,
    /// Retention by age: delete a sealed segment once its newest record is older than this.
    /// `None`: unlimited.
    pub retention_ms: Option<u64>,
    /// Sealed segments kept mapped (with their index in memory) at once; the least recently
    /// read is unmapped past it. Default 4: readers usually touch the tail and one backlog.
    pub max_mapped_segments: usize,
}

impl Default for SegmentConfig {
    fn default() -> SegmentConfig {
        SegmentConfig {
            segment_bytes: 64 << 20,
            index_interval_bytes: 4 << 10,
            max_record_bytes: (1 << 20) + (64 << 10),
            write_buffer_bytes: 64 << 10,
            retention_bytes: None,
            retention_ms: None,
            max_mapped_segments: 4,
        }
    }
}

impl SegmentConfig {
    /// Checks every bound; [`SegmentLog::open`](crate::SegmentLog::open) calls it.
    pub fn validate(&self) -> Result<()> {
        if !(HEADER_LEN..=MAX_RECORD_LEN).contains(&self.max_record_bytes) {
            return Err(Error::InvalidConfig("max_record_bytes must be between 31 bytes and 1 GiB"));
        }
        // Positions in the index are u32: the largest segment is segment_bytes plus one record.
        if self.segment_bytes < HEADER_LEN as u64
            || self.segment_bytes.saturating_add(self.max_record_bytes as u64) > u64::from(u32::MAX)
        {
            return Err(Error::InvalidConfig("segment_bytes + max_record_bytes must fit in 4 GiB"));
        }
        if self.index_interval_bytes == 0
            || self.segment_bytes / u64::from(self.index_interval_bytes) > MAX_INDEX_ENTRIES
        {
            return Err(Error::InvalidConfig("index_interval_bytes gives more than 2^20 index entries per segment"));
        }
        if self.write_buffer_bytes == 0 || self.write_buffer_bytes > 64 << 20 {
            return Err(Error::InvalidConfig("write_buffer_bytes must be between 1 byte and 64 MiB"));
        }
        if self.max_mapped_segments == 0 {
            return Err(Error::InvalidConfig("max_mapped_segments must be at least 1"));
        }
        Ok(())
    }
}
