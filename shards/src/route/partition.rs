//! Partitions: the unit of ownership. Topics and client ids hash into `P` partitions and
//! every shard holds a full copy of the table `partition -> shard`, so any shard routes
//! without asking another.
//!
//! Route layer: held by each shard's `Router`; the node uses it at start to place
//! partitions.

/// FNV-1a, 64-bit: stable across runs and builds (partition assignment must not change
/// when the binary does, since later it names on-disk partitions).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The partition table: a copy lives on every shard.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    owners: Vec<u16>,
}

impl PartitionTable {
    /// Spreads `partitions` round-robin over `shards`.
    pub fn new(partitions: u32, shards: usize) -> Self {
        let owners = (0..partitions).map(|p| (p as usize % shards) as u16).collect();
        PartitionTable { owners }
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The partition of a topic or client id.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        (hash(key) % self.owners.len() as u64) as u32
    }

    /// The shard owning the partition of `key`.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        usize::from(self.owners[self.partition_of(key) as usize])
    }

    /// The shard owning partition `p`.
    pub fn shard_of_partition(&self, p: u32) -> usize {
        usize::from(self.owners[p as usize])
    }

    /// The partitions shard `shard` owns.
    pub fn owned_by(&self, shard: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.partitions()).filter(move |p| self.shard_of_partition(*p) == shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_owns_partitions_and_lookup_is_stable() {
        let t = PartitionTable::new(64, 3);
        let mut seen = [0; 3];
        for p in 0..64u32 {
            seen[usize::from(t.owners[p as usize])] += 1;
        }
        assert!(seen.iter().all(|n| *n >= 21));
        assert_eq!(t.shard_of(b"devices/1"), t.shard_of(b"devices/1"));
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(t.partition_of(b"a"), t.partition_of(b"b"));
    }
}
