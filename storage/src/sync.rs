//! [`SyncPoint`]: the files a log or state store has written since it was last known to be
//! durable, handed out by `flush()` so the caller can run the blocking `fdatasync` where it
//! likes (a shard runs it through glommio's `spawn_blocking`) and then report back with
//! `mark_durable(upto)`.
//!
//! The protocol, the same for [`SegmentLog`](crate::SegmentLog) and
//! [`StateStore`](crate::StateStore):
//!
//! 1. `let point = log.flush()?;` writes the write buffer to the file (no fsync).
//! 2. `point.sync()?;` anywhere, on any thread: `fdatasync` of every file in it, and
//!    `fsync` of the directory when a file was created in it since the last durable point.
//! 3. `log.mark_durable(point.upto());` back on the owner: everything below `upto` is on disk.
//!
//! Several points may be in flight at once (group commit); `mark_durable` only moves the
//! durable bound forward. A point that is dropped unsynced loses nothing: the files stay
//! pending and the next point lists them again.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::error::{IoContext, Result};

/// One file to sync, with its path for error messages.
#[derive(Debug, Clone)]
pub(crate) struct SyncFile {
    pub(crate) file: Arc<File>,
    pub(crate) path: Arc<Path>,
    /// A directory: synced with `fsync` (its entries), not `fdatasync`.
    pub(crate) dir: bool,
}

/// Files to sync before records below [`upto`](SyncPoint::upto) may be called durable.
/// `Send`, so the blocking [`sync`](SyncPoint::sync) can run on another thread.
#[derive(Debug, Clone)]
#[must_use = "a sync point does nothing until sync() runs and mark_durable() is told"]
pub struct SyncPoint {
    pub(crate) files: Vec<SyncFile>,
    pub(crate) upto: u64,
}

impl SyncPoint {
    /// The next offset (or sequence number) at the time of the flush: once
    /// [`sync`](SyncPoint::sync) returns, every record below it is on disk.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Nothing to sync: everything below `upto` was already durable.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// How many files (directories included) [`sync`](SyncPoint::sync) will sync.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Blocking: `fdatasync` of each file, `fsync` of each directory, in order (files
    /// first, so a new segment's entry is made durable after its contents).
    pub fn sync(&self) -> Result<()> {
        for f in self.files.iter().filter(|f| !f.dir) {
            f.file.sync_data().ctx("fdatasync", &f.path)?;
        }
        for f in self.files.iter().filter(|f| f.dir) {
            f.file.sync_all().ctx("fsync directory", &f.path)?;
        }
        Ok(())
    }
}

/// Files that must be synced before the durable bound passes their `until`, kept by a log
/// or store until `mark_durable` passes them. Bounded: one entry per segment rolled since
/// the last durable point (dropped when retention deletes the segment) and at most one
/// directory entry.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    files: Vec<(SyncFile, u64)>,
    dir: Option<(SyncFile, u64)>,
}

impl Pending {
    /// A file the next sync points must include until the durable bound reaches `until`.
    pub(crate) fn push_file(&mut self, file: SyncFile, until: u64) {
        self.files.push((file, until));
    }

    /// The directory must be synced before the durable bound reaches `until`.
    pub(crate) fn push_dir(&mut self, dir: SyncFile, until: u64) {
        let until = self.dir.as_ref().map_or(until, |(_, u)| until.max(*u));
        self.dir = Some((dir, until));
    }

    /// Drops the entries a durable bound of `durable` covers.
    pub(crate) fn release(&mut self, durable: u64) {
        self.files.retain(|(_, until)| *until > durable);
        if self.dir.as_ref().is_some_and(|(_, until)| *until <= durable) {
            self.dir = None;
        }
    }

    /// Forgets a file that was deleted: there is nothing left of it to make durable.
    pub(crate) fn forget(&mut self, path: &Path) {
        self.files.retain(|(f, _)| &*f.path != path);
    }

    /// Adds the pending files to `files`.
    pub(crate) fn extend_into(&self, files: &mut Vec<SyncFile>) {
        files.extend(self.files.iter().chain(&self.dir).map(|(f, _)| f.clone()));
    }
}

/// Opens a directory so it can be synced.
pub(crate) fn open_dir(path: &Path) -> Result<SyncFile> {
    let file = File::open(path).ctx("open directory", path)?;
    Ok(SyncFile { file: Arc::new(file), path: Arc::from(path), dir: true })
}
