//! The crate's one error type, [`Error`], and the I/O context helper every module uses.
//!
//! Errors are plain data: a failed system call carries the operation and the path it was
//! about, a record that does not decode says whether it is merely *incomplete* (a torn
//! write: more bytes were expected) or *corrupt* (its CRC or its lengths are wrong), and a
//! refused append says which bound it broke. Nothing here allocates except the path of an
//! I/O error and the reason of a corrupt file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    Io {
        /// What was being done, e.g. `"write segment"`.
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bytes end before the record (or frame) does: a torn write, or a read that
    /// stopped short. At least `needed` more bytes were expected.
    Incomplete {
        /// How many more bytes the length field asks for (at least).
        needed: usize,
    },
    /// The bytes are all there but do not form a valid record: never served.
    Corrupt(Corruption),
    /// A whole file failed validation (snapshot, change log header, index that cannot be
    /// rebuilt). Unlike a torn record tail, this is not repaired silently.
    CorruptFile {
        /// The damaged file.
        path: PathBuf,
        /// Byte position in that file where the damage was found.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// An append larger than the configured maximum record size.
    RecordTooLarge {
        /// Encoded size of the refused record.
        size: usize,
        /// The bound it broke.
        max: usize,
    },
    /// A topic (or state key) longer than the format allows.
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The bound it broke.
        max: usize,
    },
    /// Flag bits outside retain (bit 0) and QoS (bits 1-2, at most 2) were set.
    InvalidFlags(u8),
    /// A configuration value outside its allowed range.
    InvalidConfig(&'static str),
    /// The state store would hold more live bytes than its configured bound.
    StateFull {
        /// Live bytes the store would hold after the refused put.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// An earlier write failed and the files could not be brought back to a known state;
    /// the log or store refuses further writes until it is reopened.
    Failed,
}

/// Why a record (or change-log frame) was judged corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The length field is smaller than a header or larger than the format allows.
    BadLength(u32),
    /// The CRC32C stored in the header does not match the bytes.
    BadCrc {
        /// CRC found in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// The CRC matches but the inner lengths do not add up to the record length.
    BadBounds,
    /// A well-formed record whose offset (or sequence number) is not the one expected at
    /// its place in the file.
    BadOffset {
        /// Offset the file position called for.
        expected: u64,
        /// Offset the record carries.
        found: u64,
    },
    /// A change-log frame with an unknown operation byte.
    BadOp(u8),
}

impl Error {
    /// True for [`Error::Incomplete`]: the bytes stop inside a record (a torn tail).
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Error::Incomplete { .. })
    }

    /// True for [`Error::Corrupt`] and [`Error::CorruptFile`].
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt(_) | Error::CorruptFile { .. })
    }

    pub(crate) fn corrupt_file(path: &Path, position: u64, reason: impl Into<String>) -> Error {
        Error::CorruptFile { path: path.to_path_buf(), position, reason: reason.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Incomplete { needed } => write!(f, "incomplete record: {needed} more bytes needed"),
            Error::Corrupt(c) => write!(f, "corrupt record: {c}"),
            Error::CorruptFile { path, position, reason } => {
                write!(f, "corrupt file {} at byte {position}: {reason}", path.display())
            }
            Error::RecordTooLarge { size, max } => write!(f, "record of {size} bytes exceeds the maximum of {max}"),
            Error::KeyTooLong { len, max } => write!(f, "key or topic of {len} bytes exceeds the maximum of {max}"),
            Error::InvalidFlags(flags) => write!(f, "invalid record flags {flags:#04x}"),
            Error::InvalidConfig(what) => write!(f, "invalid storage configuration: {what}"),
            Error::StateFull { size, max } => write!(f, "state store would hold {size} bytes, over its bound of {max}"),
            Error::Failed => f.write_str("an earlier write failed; reopen to recover"),
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::BadLength(len) => write!(f, "length field {len} out of bounds"),
            Corruption::BadCrc { stored, computed } => {
                write!(f, "crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Corruption::BadBounds => f.write_str("field lengths exceed the record length"),
            Corruption::BadOffset { expected, found } => write!(f, "offset {found} where {expected} was expected"),
            Corruption::BadOp(op) => write!(f, "unknown operation {op}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Attaches an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Turns an `io::Error` into [`Error::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io { op, path: path.to_path_buf(), source })
    }
}
