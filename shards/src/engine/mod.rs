//! The engine layer: a shard's state and what it does with work, wherever the work came
//! from. The shard ([`shard`]: its state, the node-wide flags), the routing step and its
//! handlers ([`dispatch`]), the owner step ([`owner`]), delivery ([`deliver`]), sessions
//! ([`session`]) and their subscriptions ([`subscriptions`]), interest counts
//! ([`interest`]), shared groups ([`shared`]), backpressure at full rings ([`pressure`]),
//! persistence of state ([`persist`], [`commit`]), drops ([`drops`]) and the periodic
//! sweep ([`sweep`]).
//!
//! Uses the route (to send work) and the leaves; the front and the node call it.
//! Modules that add methods to [`shard::Shard`] import it; `shard` imports none of them.

pub mod commit;
pub mod deliver;
pub mod dispatch;
pub mod drops;
pub mod interest;
pub mod owner;
pub mod persist;
pub mod pressure;
pub mod session;
pub mod shard;
pub mod shared;
pub mod subscriptions;
pub mod sweep;

pub use shard::{NodeShared, Shard, State};
