//! [`MemoryLog`]: the `memory` storage engine, a bounded ring of entries with offsets.
//!
//! Same logical API as [`SegmentLog`](crate::SegmentLog) (append returns an offset; read
//! one or a range; first and next offset), owned by one shard like it, but nothing reaches
//! a disk: the durable offset is always the next offset, and a restart starts empty. When
//! an append would take the ring past `max_bytes`, the oldest entries are evicted (and
//! counted by [`evicted`](MemoryLog::evicted)), so `first_offset` moves forward.
//!
//! The ring holds any [`Entry`]: a [`Record`] (charged its encoded length, header included,
//! the size the segment log would write, so one byte budget means the same in both
//! engines), or the broker's own shared message handle, which keeps one copy of a message
//! for both the ring and the sessions that still hold it.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::record::{self, Record, RecordView};

/// What a [`MemoryLog`] holds: cheap to clone (shared bytes), with a size to charge.
pub trait Entry: Clone {
    /// Bytes charged against the ring's bound.
    fn charge(&self) -> usize;
}

impl Entry for Record {
    fn charge(&self) -> usize {
        self.encoded_len()
    }
}

/// A bounded in-memory log. See the [module docs](self).
#[derive(Debug)]
pub struct MemoryLog<T: Entry = Record> {
    records: VecDeque<T>,
    /// Offset of `records[0]` (or of the next append when empty).
    first: u64,
    bytes: usize,
    max_bytes: usize,
    max_record_bytes: usize,
    evicted: u64,
}

impl<T: Entry> MemoryLog<T> {
    /// An empty ring holding at most `max_bytes` of entries, each at most
    /// `max_record_bytes` (which must not exceed `max_bytes`; for records, at least the
    /// 31-byte header).
    pub fn new(max_bytes: usize, max_record_bytes: usize) -> Result<Self> {
        Self::starting_at(0, max_bytes, max_record_bytes)
    }

    /// Like [`new`](MemoryLog::new) but the first append gets `offset` (for a log that
    /// continues offsets handed out before, e.g. by a previous incarnation).
    pub fn starting_at(offset: u64, max_bytes: usize, max_record_bytes: usize) -> Result<Self> {
        if max_record_bytes < record::HEADER_LEN || max_record_bytes > max_bytes {
            return Err(Error::InvalidConfig("memory log: need 31 <= max_record_bytes <= max_bytes"));
        }
        Ok(MemoryLog { records: VecDeque::new(), first: offset, bytes: 0, max_bytes, max_record_bytes, evicted: 0 })
    }

    /// Appends an entry and returns its offset, evicting the oldest past the byte bound.
    pub fn push_entry(&mut self, entry: T) -> Result<u64> {
        let size = entry.charge();
        if size > self.max_record_bytes {
            return Err(Error::RecordTooLarge { size, max: self.max_record_bytes });
        }
        while !self.fits(size) && self.evict_oldest() {}
        let offset = self.next_offset();
        self.bytes += size;
        self.records.push_back(entry);
        Ok(offset)
    }

    /// Drops entries from the front while `free` says nobody needs them any more (not
    /// counted as evicted: they were consumed). Returns how many were dropped.
    pub fn release_while(&mut self, mut free: impl FnMut(&T) -> bool) -> usize {
        let mut n = 0;
        while let Some(front) = self.records.front() {
            if !free(front) {
                break;
            }
            self.bytes -= front.charge();
            self.records.pop_front();
            self.first += 1;
            n += 1;
        }
        if self.records.is_empty() && self.records.capacity() > 1024 {
            // A burst is over: its slots go back too.
            self.records = VecDeque::new();
        }
        n
    }

    /// True when an entry charged `size` fits without evicting anything.
    pub fn fits(&self, size: usize) -> bool {
        self.bytes + size <= self.max_bytes
    }

    /// The oldest entry, if any.
    pub fn front(&self) -> Option<&T> {
        self.records.front()
    }

    /// Evicts the oldest entry (counted by [`evicted`](MemoryLog::evicted)); false when empty.
    pub fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.records.pop_front() else { return false };
        self.bytes -= old.charge();
        self.first += 1;
        self.evicted += 1;
        true
    }

    /// Oldest offset still held.
    pub fn first_offset(&self) -> u64 {
        self.first
    }

    /// Offset the next append gets.
    pub fn next_offset(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    /// Always [`next_offset`](MemoryLog::next_offset): the memory engine promises nothing more.
    pub fn durable_offset(&self) -> u64 {
        self.next_offset()
    }

    /// Entries evicted to stay within the byte bound, since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bytes charged for what is held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Holds no entry.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The entry at `offset` (a cheap clone), or `None` if evicted or not yet written.
    pub fn read(&self, offset: u64) -> Option<T> {
        let i = offset.checked_sub(self.first)?;
        self.records.get(usize::try_from(i).ok()?).cloned()
    }

    /// Up to `max_records` entries from `from` on (from the first offset if `from` was
    /// evicted), stopping before `max_bytes` would be passed but always at least one.
    pub fn read_range_into(&self, from: u64, max_records: usize, max_bytes: usize, out: &mut Vec<T>) -> usize {
        let start = from.saturating_sub(self.first);
        let Ok(start) = usize::try_from(start) else { return 0 };
        let mut count = 0;
        let mut bytes = 0;
        for entry in self.records.iter().skip(start).take(max_records) {
            let len = entry.charge();
            if count > 0 && bytes + len > max_bytes {
                break;
            }
            out.push(entry.clone());
            count += 1;
            bytes += len;
            if bytes >= max_bytes {
                break;
            }
        }
        count
    }

    /// [`read_range_into`](MemoryLog::read_range_into) into a new vector.
    pub fn read_range(&self, from: u64, max_records: usize, max_bytes: usize) -> Vec<T> {
        let mut out = Vec::new();
        self.read_range_into(from, max_records, max_bytes, &mut out);
        out
    }
}

impl MemoryLog<Record> {
    /// Appends a record copied from borrowed parts (one allocation) and returns its offset.
    pub fn append(
        &mut self,
        timestamp_ms: u64,
        flags: u8,
        topic: &[u8],
        properties: &[u8],
        payload: &[u8],
    ) -> Result<u64> {
        let view = RecordView { offset: self.next_offset(), timestamp_ms, flags, topic, properties, payload };
        Self::check(&view)?;
        self.push_entry(view.to_record())
    }

    /// Appends a record from shared `Bytes` without copying them and returns its offset.
    pub fn push(
        &mut self,
        timestamp_ms: u64,
        flags: u8,
        topic: Bytes,
        properties: Bytes,
        payload: Bytes,
    ) -> Result<u64> {
        let record = Record { offset: self.next_offset(), timestamp_ms, flags, topic, properties, payload };
        Self::check(&record.view())?;
        self.push_entry(record)
    }

    fn check(view: &RecordView<'_>) -> Result<()> {
        record::check_flags(view.flags)?;
        if view.topic.len() > u16::MAX as usize {
            return Err(Error::KeyTooLong { len: view.topic.len(), max: u16::MAX as usize });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_past_the_byte_bound() {
        // Each record: 31 header + 1 topic + 9 payload = 41 bytes; room for 3.
        let mut log = MemoryLog::new(130, 64).unwrap();
        for i in 0..5u64 {
            assert_eq!(log.append(i, 0, b"t", b"", format!("payload-{i}").as_bytes()).unwrap(), i);
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.evicted(), 2);
        assert_eq!(log.first_offset(), 2);
        assert_eq!(log.next_offset(), 5);
        assert_eq!(log.bytes(), 123);
        assert!(log.read(1).is_none());
        assert_eq!(&log.read(2).unwrap().payload[..], b"payload-2");
        assert!(log.read(5).is_none());
    }

    #[test]
    fn released_entries_are_not_counted_as_evicted() {
        let mut log = MemoryLog::new(130, 64).unwrap();
        for i in 0..3u64 {
            log.append(i, 0, b"t", b"", format!("payload-{i}").as_bytes()).unwrap();
        }
        assert!(!log.fits(41));
        assert_eq!(log.release_while(|r| r.timestamp_ms < 2), 2);
        assert_eq!((log.first_offset(), log.len(), log.evicted(), log.bytes()), (2, 1, 0, 41));
        assert!(log.fits(41));
        assert!(log.evict_oldest());
        assert_eq!((log.first_offset(), log.evicted(), log.bytes()), (3, 1, 0));
        assert!(!log.evict_oldest());
    }
}
