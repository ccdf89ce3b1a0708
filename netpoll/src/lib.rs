//! Socket readiness for thread-per-core programs on glommio: each thread's sockets are
//! registered once in the thread's edge-triggered epoll instance ([`Poller`]), reads and
//! writes are plain non-blocking syscalls, and the thread waits for readiness through one
//! glommio poll on the epoll descriptor, however many sockets it serves. [`Stream`] and
//! [`Listener`] are TCP on it.
//!
//! Why: glommio 0.9's streams arm one io_uring poll per read that waits, on rings made
//! without `IORING_SETUP_COOP_TASKRUN`, so each completion that arrives while the thread
//! runs interrupts it (a reschedule IPI, then the task work). Under load that is one IPI
//! per packet; here it is none while the thread runs, and one poll per wake.
//!
//! A thread may also let its pump hold it in `epoll_pwait2` while quiet instead of handing
//! it to glommio's reactor at once ([`hold`]): fewer turns of glommio's loop, whose timers
//! are re-armed every turn.
//!
//! Used by the broker's transports (`shards::net::tcp`), loadgen's connections and the
//! benchmark relay. Knows nothing of MQTT.

#![warn(missing_docs)]

pub mod hold;
mod poller;
mod tcp;

pub use hold::{spawn, Nudge};
pub use poller::{Poller, Registration, Way};
pub use tcp::{listening_socket, Listener, Stream};
