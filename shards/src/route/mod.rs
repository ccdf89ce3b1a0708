//! The route layer: where work goes and how it travels. [`Dest`] names a destination
//! (this shard, another shard; the cluster adds another node), [`Router`] resolves keys
//! and filters to destinations from the partition table ([`partition`]), [`mesh`] holds the
//! typed work that crosses shards, [`batch`] collects it per destination and sends it, and
//! [`ShardSet`] is a set of destination shards of any size.
//!
//! Uses only the leaves; the engine's routing step ([`crate::engine::dispatch`]) and the
//! front use it.

pub mod batch;
pub mod mesh;
pub mod partition;
mod set;

pub use batch::{Mesh, Outgoing};
pub use partition::PartitionTable;
pub use set::ShardSet;

/// Where a piece of work goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// This shard: its handler runs in place, the same one the mesh would run.
    Here,
    /// Another shard of this node, over the meshes.
    Shard(usize),
}

/// One shard's view of where things live: its own index and the partition table.
#[derive(Debug, Clone)]
pub struct Router {
    /// This shard.
    pub id: usize,
    /// Shards on the node.
    pub nshards: usize,
    /// The partition table (a copy per shard).
    pub table: PartitionTable,
}

impl Router {
    /// The router of shard `id` on a node of `nshards` shards over `partitions`.
    pub fn new(id: usize, nshards: usize, partitions: u32) -> Self {
        Router { id, nshards, table: PartitionTable::new(partitions, nshards) }
    }

    /// The destination of work for shard `shard`.
    pub fn dest(&self, shard: usize) -> Dest {
        if shard == self.id {
            Dest::Here
        } else {
            Dest::Shard(shard)
        }
    }

    /// The shard owning `key` (a topic or a client id).
    pub fn owner(&self, key: &[u8]) -> usize {
        self.table.shard_of(key)
    }

    /// The one partition whose topics can match `filter` (its inner filter, for a shared
    /// one), or None for a wildcard filter, which may match topics of every partition.
    pub fn plain_partition(&self, filter: &str) -> Option<u32> {
        let filter = inner(filter);
        (!filter.contains(['+', '#'])).then(|| self.table.partition_of(filter.as_bytes()))
    }

    /// Shards that may own topics matching `filter`: its owner for a plain filter,
    /// every shard for a wildcard one.
    pub fn targets(&self, filter: &str) -> Vec<usize> {
        match self.plain_partition(filter) {
            Some(p) => vec![self.table.shard_of_partition(p)],
            None => (0..self.nshards).collect(),
        }
    }
}

/// The inner filter of a shared subscription, or the filter itself.
pub fn inner(filter: &str) -> &str {
    proto::topic::parse_shared(filter).map_or(filter, |(_, f)| f)
}

/// True for a `$share/...` filter.
pub fn is_shared(filter: &str) -> bool {
    proto::topic::parse_shared(filter).is_some()
}
