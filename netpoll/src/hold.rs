//! Holding a quiet thread in `epoll_pwait2` instead of handing it to glommio's reactor.
//!
//! Each turn of glommio 0.9's loop re-arms its two preemption timers (about four
//! `io_uring_enter` a turn), and each park adds a `membarrier`, the link of its rings and
//! the cancellations after the wake. A shard serving a packet every few tens of
//! microseconds paid that once or twice per message. With a hold set
//! ([`crate::Poller::hold_when_quiet`]), the pump instead keeps the thread in one turn
//! while there is work, and when a whole pass of the task queue ran none of the thread's
//! counted tasks ([`spawn`]) and no socket is ready, it waits in `epoll_pwait2` for at most
//! the hold before it lets glommio park. What that can delay, and by how much at most:
//!
//! - glommio timers and glommio's own I/O (disk) completions: by the hold while holding,
//!   and by [`TURN`] while busy (the pump leaves the turn at least that often);
//! - a task not spawned through [`spawn`] that was woken by another one: by the hold;
//! - messages from other threads over glommio's channels: not at all when their senders
//!   call [`Nudge::posted`] for them (the receiving thread leaves its hold and its turn for
//!   the reactor to deliver them); by the hold otherwise.
//!
//! Owned by the thread's [`crate::Poller`]; [`Nudge`] is shared with the threads that post
//! work to it.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// The longest the pump keeps the thread in one turn of glommio's loop while busy, so that
/// glommio's timers and completions are seen at least this often.
pub const TURN: Duration = Duration::from_micros(500);

thread_local! {
    /// Polls of this thread's counted tasks so far.
    static PROGRESS: Cell<u64> = const { Cell::new(0) };
}

/// Polls of the calling thread's counted tasks so far: unchanged over a pass of the task
/// queue means none of them was runnable.
pub(crate) fn progress() -> u64 {
    PROGRESS.with(Cell::get)
}

/// A future whose polls count as progress of its thread.
struct Counted<F>(F);

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        PROGRESS.with(|p| p.set(p.get().wrapping_add(1)));
        // SAFETY: structural pinning of the only field; it is never moved out.
        unsafe { self.map_unchecked_mut(|c| &mut c.0) }.poll(cx)
    }
}

/// `fut`, its polls counted as progress of the thread that polls it: while it is
/// runnable, the pump does not hold the thread (see the module documentation).
pub fn counted<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    Counted(fut)
}

/// Spawns `fut` on the calling thread's glommio executor as a [`counted`] task.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> glommio::Task<T> {
    glommio::spawn_local(Counted(fut))
}

/// Work posted to one thread by others (one `Nudge` per receiving thread, shared): counts
/// what was posted and taken, and wakes the thread out of a hold. Posting costs one atomic
/// add and load; an `eventfd` write only while the receiver holds.
#[derive(Debug)]
pub struct Nudge {
    holding: AtomicBool,
    posted: AtomicU64,
    taken: AtomicU64,
    efd: OwnedFd,
}

impl Nudge {
    /// A nudge for one receiving thread (which attaches it with
    /// [`crate::Poller::hold_when_quiet`]).
    pub fn new() -> io::Result<Nudge> {
        // SAFETY: eventfd has no memory arguments; a negative result is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Nudge {
            holding: AtomicBool::new(false),
            posted: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            // SAFETY: a fresh descriptor owned by nobody else.
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// One item was posted to the receiver (call it after the item is in its channel).
    pub fn posted(&self) {
        self.posted.fetch_add(1, Ordering::SeqCst);
        if self.holding.load(Ordering::SeqCst) {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN) already wakes.
            unsafe {
                libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8);
            }
        }
    }

    /// The receiver took `n` posted items (called by the receiving thread only).
    pub fn taken(&self, n: u64) {
        self.taken.fetch_add(n, Ordering::SeqCst);
    }

    /// Posted items the receiver has not taken yet.
    pub(crate) fn pending(&self) -> bool {
        self.posted.load(Ordering::SeqCst) != self.taken.load(Ordering::SeqCst)
    }

    /// Marks the receiver holding (or not). Marking it holding and then finding nothing
    /// pending means every later post writes the eventfd: no post is missed.
    pub(crate) fn set_holding(&self, on: bool) {
        self.holding.store(on, Ordering::SeqCst);
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Empties the eventfd after it woke the receiver.
    pub(crate) fn drain(&self) {
        let mut n = 0u64;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (already empty) is harmless.
        unsafe {
            libc::read(self.efd.as_raw_fd(), (&mut n as *mut u64).cast(), 8);
        }
    }
}
