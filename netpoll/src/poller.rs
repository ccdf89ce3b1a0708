//! A thread's socket readiness: one edge-triggered epoll instance per thread, every
//! socket of the thread registered in it once, and at most one glommio poll on the epoll
//! descriptor at a time (the pump task). Reads and writes are plain non-blocking syscalls; a
//! socket's task waits here only after one found nothing to read or no room to write.
//!
//! Why not glommio's own streams: glommio 0.9 arms one io_uring poll per read that waits,
//! and creates its rings without `IORING_SETUP_COOP_TASKRUN`, so every completion while
//! the thread runs interrupts it (a reschedule IPI, then the task work) and every wait costs
//! a submission. Measured in RingMQ at 20k QoS 1 messages/s per core: one IPI per message
//! into the shard (see its bench/RESULTS.md). Here a burst of readiness on many sockets
//! costs one epoll callback per packet (no IPI while the thread runs), one poll and one
//! `epoll_wait` per wake of the thread, and an idle socket costs a slot of 56 bytes, not a
//! poll source; its read timeout is a deadline in that slot, not a timer of its own.
//!
//! Owned by its thread ([`Poller::local`]); used by [`crate::Stream`] and
//! [`crate::Listener`], and by anything else that registers a descriptor.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;

use crate::hold::{self, Nudge, TURN};

/// Events harvested per `epoll_wait` call (more are taken by calling again).
const HARVEST: usize = 256;
/// Looks in a row that may skip glommio's reactor while each finds events.
const BUSY_LOOKS: u32 = 8;
/// How often the pump looks for read deadlines that passed (their precision).
const SCAN: Duration = Duration::from_millis(100);

/// One registered socket: who waits for it, and whether it may be ready. Readiness is a
/// hint: set by an event (or at registration), cleared when a syscall finds nothing; a
/// stale or spurious one costs one syscall that returns `EAGAIN`.
#[derive(Default)]
struct Slot {
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// When a waiting read times out (see [`Registration::arm_deadline`]).
    deadline: Option<Instant>,
    readable: bool,
    writable: bool,
    used: bool,
    /// The deadline passed while the read waited; its next poll fails with `TimedOut`.
    timed_out: bool,
}

/// Which way a socket is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Something to read (or the end of the stream).
    Read,
    /// Room to write.
    Write,
}

/// A socket's place in its thread's poller; deregistered when dropped.
#[derive(Debug)]
pub struct Registration {
    pub(crate) poller: Rc<Poller>,
    token: u32,
    fd: RawFd,
}

/// A thread's epoll instance and the slots of its sockets.
pub struct Poller {
    epfd: OwnedFd,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// Slots with a deadline armed: the pump scans for passed ones only while there are.
    pub(crate) deadlines: Cell<usize>,
    /// How long a quiet thread may wait in `epoll_pwait2` before glommio parks it (zero:
    /// never; see [`crate::hold`]).
    hold: Cell<Duration>,
    /// Wakes the thread out of a hold when another thread posts it work.
    nudge: RefCell<Option<Arc<Nudge>>>,
    /// The longest the pump stays in one turn of glommio's loop ([`TURN`]; tests lengthen it).
    turn: Cell<Duration>,
}

/// The epoll token of the nudge's eventfd (slots use small ones).
const NUDGE: u64 = u64::MAX;

/// What one look at the epoll instance found.
#[derive(Default, Clone, Copy)]
struct Look {
    /// Socket events.
    events: usize,
    /// The nudge fired: another thread posted work for the reactor to deliver.
    nudged: bool,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller").field("epfd", &self.epfd.as_raw_fd()).finish()
    }
}

thread_local! {
    /// The thread's poller and the glommio executor its pump runs on.
    static LOCAL: RefCell<Option<(usize, Rc<Poller>)>> = const { RefCell::new(None) };
}

impl Poller {
    /// The calling thread's poller, created (and its pump spawned on the thread's glommio
    /// executor) on first use, and again when a new executor runs on the thread (the pump
    /// of an ended executor is gone; sockets registered under it stay with the old one).
    pub fn local() -> io::Result<Rc<Poller>> {
        let executor = glommio::executor().id();
        if let Some((ex, p)) = LOCAL.with(|l| l.borrow().clone()) {
            if ex == executor {
                return Ok(p);
            }
        }
        // SAFETY: epoll_create1 has no memory arguments; a negative result is an error.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let poller = Rc::new(Poller {
            // SAFETY: `fd` is a fresh descriptor owned by nobody else.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            deadlines: Cell::new(0),
            hold: Cell::new(Duration::ZERO),
            nudge: RefCell::new(None),
            turn: Cell::new(TURN),
        });
        glommio::spawn_local(pump(Rc::downgrade(&poller))).detach();
        LOCAL.with(|l| *l.borrow_mut() = Some((executor, poller.clone())));
        Ok(poller)
    }

    /// Registers `fd` (edge-triggered, both ways); it starts out as possibly ready both
    /// ways, so the first read and write just try.
    pub fn register(self: &Rc<Self>, fd: RawFd) -> io::Result<Registration> {
        let token = match self.free.borrow_mut().pop() {
            Some(t) => t,
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(Slot::default());
                (slots.len() - 1) as u32
            }
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: `ev` outlives the call; epoll_ctl copies it.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            self.free.borrow_mut().push(token);
            return Err(io::Error::last_os_error());
        }
        self.slots.borrow_mut()[token as usize] =
            Slot { readable: true, writable: true, used: true, ..Slot::default() };
        Ok(Registration { poller: self.clone(), token, fd })
    }

    /// Marks every read whose deadline passed as timed out; its waker goes to `woken`.
    fn expire(&self, now: Instant, woken: &mut Vec<Waker>) {
        let mut slots = self.slots.borrow_mut();
        for slot in slots.iter_mut().filter(|s| s.deadline.is_some_and(|d| d <= now)) {
            slot.deadline = None;
            slot.timed_out = true;
            self.deadlines.set(self.deadlines.get() - 1);
            woken.extend(slot.reader.take());
        }
    }

    /// Lets the pump hold this thread, when quiet, in `epoll_pwait2` for up to `hold`
    /// before glommio parks it, and wake out of it when `nudge` is posted to (see
    /// [`crate::hold`]). A zero `hold` turns holding off (the default).
    pub fn hold_when_quiet(&self, hold: Duration, nudge: Option<Arc<Nudge>>) -> io::Result<()> {
        if let Some(n) = &nudge {
            let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: NUDGE };
            // SAFETY: `ev` outlives the call; epoll_ctl copies it.
            if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, n.fd(), &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(old) = self.nudge.replace(nudge) {
            // SAFETY: removing a descriptor the old nudge still holds open.
            unsafe {
                libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, old.fd(), std::ptr::null_mut());
            }
        }
        self.hold.set(hold);
        Ok(())
    }

    /// Whether another thread posted work not yet taken.
    fn posted(&self) -> bool {
        self.nudge.borrow().as_ref().is_some_and(|n| n.pending())
    }

    /// One `epoll_wait`, without waiting or (`wait`) waiting up to that long: marks what is
    /// ready; its wakers go to `woken`.
    fn look(&self, events: &mut [libc::epoll_event], woken: &mut Vec<Waker>, wait: Option<Duration>) -> Look {
        let fd = self.epfd.as_raw_fd();
        let (buf, len) = (events.as_mut_ptr(), events.len() as i32);
        let n = match wait {
            // SAFETY: `events` is a valid buffer of `len` entries for the kernel to fill.
            None => unsafe { libc::epoll_wait(fd, buf, len, 0) },
            Some(d) => {
                let ts = libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ };
                // SAFETY: as above; `ts` outlives the call, no signal mask is given.
                unsafe { libc::epoll_pwait2(fd, buf, len, &ts, std::ptr::null()) }
            }
        };
        let mut look = Look::default();
        if n <= 0 {
            return look;
        }
        let mut slots = self.slots.borrow_mut();
        for ev in &events[..n as usize] {
            if ev.u64 == NUDGE {
                look.nudged = true;
                if let Some(n) = self.nudge.borrow().as_ref() {
                    n.drain();
                }
                continue;
            }
            look.events += 1;
            let Some(slot) = slots.get_mut(ev.u64 as usize).filter(|s| s.used) else { continue };
            let bits = ev.events as i32;
            let hup = bits & (libc::EPOLLHUP | libc::EPOLLERR) != 0;
            if hup || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0 {
                slot.readable = true;
                woken.extend(slot.reader.take());
            }
            if hup || bits & libc::EPOLLOUT != 0 {
                slot.writable = true;
                woken.extend(slot.writer.take());
            }
        }
        look
    }

    /// Holds the quiet thread for up to `hold` and wakes whom the wait found ready (also
    /// when a nudge ended it: socket events may come with one). `None` when the thread must
    /// go back to glommio's reactor instead (work posted by another thread), else what the
    /// wait found.
    fn hold(&self, hold: Duration, events: &mut [libc::epoll_event], woken: &mut Vec<Waker>) -> Option<Look> {
        let nudge = self.nudge.borrow().clone();
        if let Some(n) = &nudge {
            n.set_holding(true);
            if n.pending() {
                n.set_holding(false);
                return None;
            }
        }
        let look = self.look(events, woken, Some(hold));
        if let Some(n) = &nudge {
            n.set_holding(false);
        }
        woken.drain(..).for_each(Waker::wake);
        Some(look).filter(|l| !l.nudged)
    }
}

/// Hands the epoll descriptor's events to the slots for as long as the thread keeps the
/// poller, and fails the waiting reads whose deadline passed (every [`SCAN`], while any is
/// armed). Then, without a hold: after a look that found events it yields within the task
/// queue (the tasks it woke run first) and looks again, at most [`BUSY_LOOKS`] times in a
/// row; after a look that found none, or that many, it sleeps on the descriptor through one
/// glommio poll (which completes at once when more came meanwhile). A busy thread so pays
/// one `epoll_wait` per batch of ready sockets instead of a turn of glommio's reactor, which
/// re-arms its timers each turn.
///
/// With a hold ([`Poller::hold_when_quiet`]) it stays in the turn while counted tasks run
/// or sockets are ready, holds the thread in `epoll_pwait2` once neither is the case, and
/// goes back to the reactor when the hold ends quiet, when another thread posted work, or
/// after [`TURN`] (see [`crate::hold`]).
async fn pump(weak: std::rc::Weak<Poller>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; HARVEST];
    // Wakers collected while the slots are borrowed, woken after; kept between looks.
    let mut woken = Vec::new();
    let mut busy = 0;
    let mut scanned = Instant::now();
    // When the pump last came back from glommio's reactor, and the progress seen since.
    let mut turn = Instant::now();
    let mut ran = hold::progress();
    loop {
        let Some(poller) = weak.upgrade() else { return };
        let mut look = Look::default();
        loop {
            let l = poller.look(&mut events, &mut woken, None);
            look.events += l.events;
            look.nudged |= l.nudged;
            if l.events < HARVEST {
                break;
            }
        }
        let timing = poller.deadlines.get() > 0;
        if timing && scanned.elapsed() >= SCAN {
            scanned = Instant::now();
            poller.expire(scanned, &mut woken);
        }
        let woke = !woken.is_empty();
        woken.drain(..).for_each(Waker::wake);
        let hold = poller.hold.get();
        if hold.is_zero() {
            if look.events > 0 && busy < BUSY_LOOKS {
                busy += 1;
                drop(poller);
                futures_lite::future::yield_now().await;
                continue;
            }
            busy = 0;
        } else if !look.nudged
            && turn.elapsed() < poller.turn.get()
            && !poller.posted()
            && !glommio::executor().need_preempt()
        {
            let now = hold::progress();
            let stay = if look.events > 0 || woke || now != ran {
                ran = now;
                true
            } else {
                // Quiet: a whole pass of the queue ran no counted task, no socket is ready.
                poller.hold(hold, &mut events, &mut woken).is_some_and(|l| l.events > 0)
            };
            if stay {
                drop(poller);
                futures_lite::future::yield_now().await;
                continue;
            }
        }
        let epfd = poller.epfd.as_raw_fd();
        drop(poller);
        if timing {
            // Deadlines armed: wake for the next scan even if no socket does.
            let next = SCAN.saturating_sub(scanned.elapsed());
            let ready = async { readable(epfd).await.is_ok() };
            let scan = async {
                glommio::timer::sleep(next).await;
                true
            };
            if !futures_lite::future::or(ready, scan).await {
                return;
            }
        } else if readable(epfd).await.is_err() {
            return;
        }
        turn = Instant::now();
        ran = hold::progress();
    }
}

/// Waits until `fd` is readable through glommio's reactor: a glommio stream made on a
/// duplicate of the descriptor arms one poll for reading as it is made, and its first
/// read returns (with `ENOTSOCK`, the descriptor not being a socket) once that poll fired.
/// glommio 0.9 has no public way to wait for a descriptor that is not its own.
async fn readable(fd: RawFd) -> io::Result<()> {
    // SAFETY: dup(2) of a descriptor the caller keeps open; the duplicate is owned below.
    let dup = unsafe { libc::dup(fd) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else; the stream closes it.
    let mut probe = unsafe { glommio::net::TcpStream::from_raw_fd(dup) };
    let _ = probe.read(&mut [0u8; 1]).await;
    Ok(())
}

impl Registration {
    /// Whether the socket may be ready `way`; when not, `cx` is woken once it may be.
    pub fn poll_ready(&self, way: Way, cx: &Context<'_>) -> Poll<()> {
        let mut slots = self.poller.slots.borrow_mut();
        let slot = &mut slots[self.token as usize];
        let (ready, waiter) = match way {
            Way::Read => (slot.readable, &mut slot.reader),
            Way::Write => (slot.writable, &mut slot.writer),
        };
        if ready {
            return Poll::Ready(());
        }
        match waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// A syscall found nothing to read (or no room to write): wait for the next edge.
    pub fn clear(&self, way: Way) {
        let mut slots = self.poller.slots.borrow_mut();
        let slot = &mut slots[self.token as usize];
        match way {
            Way::Read => slot.readable = false,
            Way::Write => slot.writable = false,
        }
    }

    /// A read starts waiting: unless one is armed already, it times out `limit` from now
    /// (to within the pump's 100 ms scan). One deadline per socket, kept in its slot: no timer each.
    pub fn arm_deadline(&self, limit: Duration) {
        let mut slots = self.poller.slots.borrow_mut();
        let slot = &mut slots[self.token as usize];
        if slot.deadline.is_none() && !slot.timed_out {
            slot.deadline = Some(Instant::now() + limit);
            self.poller.deadlines.set(self.poller.deadlines.get() + 1);
        }
    }

    /// Something was read (or the timeout changed): no deadline, no pending time-out.
    pub fn disarm_deadline(&self) {
        let mut slots = self.poller.slots.borrow_mut();
        let slot = &mut slots[self.token as usize];
        slot.timed_out = false;
        if slot.deadline.take().is_some() {
            self.poller.deadlines.set(self.poller.deadlines.get() - 1);
        }
    }

    /// Whether the deadline passed while the read waited (once: it is cleared).
    pub fn take_timed_out(&self) -> bool {
        let mut slots = self.poller.slots.borrow_mut();
        std::mem::take(&mut slots[self.token as usize].timed_out)
    }

    /// Marks the socket ready both ways and wakes its waiters (after a local shutdown, so
    /// that they see it at once).
    pub fn wake_all(&self) {
        let (r, w) = {
            let mut slots = self.poller.slots.borrow_mut();
            let slot = &mut slots[self.token as usize];
            slot.readable = true;
            slot.writable = true;
            (slot.reader.take(), slot.writer.take())
        };
        r.into_iter().chain(w).for_each(Waker::wake);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: removing a descriptor the owner still holds open; an error (already
        // closed elsewhere) only means there is nothing to remove.
        unsafe {
            libc::epoll_ctl(self.poller.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, self.fd, std::ptr::null_mut());
        }
        let old = std::mem::take(&mut self.poller.slots.borrow_mut()[self.token as usize]);
        if old.deadline.is_some() {
            self.poller.deadlines.set(self.poller.deadlines.get() - 1);
        }
        self.poller.free.borrow_mut().push(self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .expect("an executor")
            .join()
            .expect("the test body");
    }

    /// Waits for `way` on `reg`, bounded: a missed wake-up fails instead of hanging.
    async fn ready(reg: &Registration, way: Way) {
        let wait = futures_lite::future::poll_fn(|cx| reg.poll_ready(way, cx));
        let limit = async {
            glommio::timer::sleep(Duration::from_secs(10)).await;
            panic!("no {way:?} readiness within 10 s");
        };
        futures_lite::future::or(wait, limit).await;
    }

    #[test]
    fn a_cleared_socket_wakes_on_the_next_arrival_and_slots_are_reused() {
        run(|| async {
            let poller = Poller::local().unwrap();
            let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            b.set_nonblocking(true).unwrap();
            let reg = poller.register(b.as_raw_fd()).unwrap();
            // Fresh: ready both ways without any event.
            ready(&reg, Way::Read).await;
            reg.clear(Way::Read);
            let waker_only =
                futures_lite::future::poll_once(futures_lite::future::poll_fn(|cx| reg.poll_ready(Way::Read, cx)));
            assert!(waker_only.await.is_none(), "cleared: not ready until an edge");
            // Data arrives from another thread: the pump wakes the waiting task.
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                a.write_all(b"hi").unwrap();
                a
            });
            ready(&reg, Way::Read).await;
            let mut buf = [0u8; 8];
            assert_eq!((&b).read(&mut buf).unwrap(), 2);
            let mut a = writer.join().unwrap();
            let token = reg.token;
            drop(reg);
            // The freed slot is the next one handed out, and starts ready again.
            let (_c, d) = std::os::unix::net::UnixStream::pair().unwrap();
            let reg2 = poller.register(d.as_raw_fd()).unwrap();
            assert_eq!(reg2.token, token);
            ready(&reg2, Way::Write).await;
            a.write_all(b"x").unwrap();
        });
    }

    #[test]
    fn a_second_executor_on_the_same_thread_gets_a_poller_with_a_pump() {
        std::thread::spawn(|| {
            for round in 0..2 {
                glommio::LocalExecutor::default().run(async move {
                    let poller = Poller::local().unwrap();
                    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                    b.set_nonblocking(true).unwrap();
                    let reg = poller.register(b.as_raw_fd()).unwrap();
                    reg.clear(Way::Read);
                    a.write_all(b"x").unwrap();
                    // Only a running pump marks it ready again (bounded: panics past 10 s).
                    ready(&reg, Way::Read).await;
                    assert_eq!((&b).read(&mut [0u8; 4]).unwrap(), 1, "round {round}");
                });
            }
        })
        .join()
        .expect("both executors were served");
    }

    /// A waker that records that it was woken.
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_nudge_that_ends_a_hold_does_not_lose_the_socket_events_that_came_with_it() {
        run(|| async {
            let poller = Poller::local().unwrap();
            let nudge = Arc::new(Nudge::new().unwrap());
            poller.hold_when_quiet(Duration::from_secs(20), Some(nudge.clone())).unwrap();
            let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            b.set_nonblocking(true).unwrap();
            let reg = poller.register(b.as_raw_fd()).unwrap();
            reg.clear(Way::Read);
            let flag = Arc::new(Flag(false.into()));
            let waker = Waker::from(flag.clone());
            assert!(reg.poll_ready(Way::Read, &Context::from_waker(&waker)).is_pending());
            // Data and a nudge both ready when the hold starts: one epoll_pwait2 returns both.
            a.write_all(b"x").unwrap();
            nudge.set_holding(true);
            nudge.posted();
            nudge.taken(1);
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 8];
            let mut woken = Vec::new();
            assert!(
                poller.hold(Duration::from_secs(20), &mut events, &mut woken).is_none(),
                "nudged: back to the reactor"
            );
            assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "the reader was woken too");
            poller.hold_when_quiet(Duration::ZERO, None).unwrap();
        });
    }

    #[test]
    fn a_hold_ends_when_another_thread_nudges() {
        let nudge = Arc::new(Nudge::new().unwrap());
        let poster = nudge.clone();
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        // glommio's preemption timer (an io_uring timeout) would end a hold early.
        let receiver = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .preempt_timer(Duration::from_secs(60))
            .spawn(move || {
                crate::hold::counted(async move {
                    let poller = Poller::local().unwrap();
                    poller.hold_when_quiet(Duration::from_secs(20), Some(nudge.clone())).unwrap();
                    // One turn as long as the test: the pump holds at once, not after it left.
                    poller.turn.set(Duration::from_secs(60));
                    let reg = poller.register(b.as_raw_fd()).unwrap();
                    reg.clear(Way::Read);
                    let start = Instant::now();
                    // Due while the pump holds (from the byte below on); glommio fires it only
                    // once the pump lets the reactor turn: at the nudge, or after 20 s.
                    glommio::timer::sleep(Duration::from_millis(300)).await;
                    let waited = start.elapsed();
                    nudge.taken(1);
                    poller.hold_when_quiet(Duration::ZERO, None).unwrap();
                    drop(reg);
                    waited
                })
            })
            .unwrap();
        // A byte no task waits for: the pump wakes, finds nothing else to do, and holds.
        std::thread::sleep(Duration::from_millis(100));
        a.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        poster.posted();
        let waited = receiver.join().unwrap();
        assert!(
            waited < Duration::from_secs(10),
            "the nudge did not end the 20 s hold: the timer fired after {waited:?}"
        );
    }

    #[test]
    fn counted_tasks_that_wake_each_other_are_not_held() {
        // glommio's preemption timer (an io_uring timeout) would end a hold early.
        let took = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .preempt_timer(Duration::from_secs(60))
            .spawn(|| {
                crate::hold::counted(async {
                    let poller = Poller::local().unwrap();
                    poller.hold_when_quiet(Duration::from_secs(5), None).unwrap();
                    poller.turn.set(Duration::from_secs(60));
                    // Ping over a socket (the pump wakes the echo), pong over a local channel
                    // (the echo wakes this task, queued behind the pump).
                    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                    b.set_nonblocking(true).unwrap();
                    let (pong_tx, pong_rx) = glommio::channels::local_channel::new_bounded::<u8>(1);
                    let echo = crate::hold::spawn(async move {
                        let reg = poller.register(b.as_raw_fd()).unwrap();
                        let mut buf = [0u8; 1];
                        loop {
                            match (&b).read(&mut buf) {
                                Ok(0) => break,
                                Ok(_) => {
                                    if pong_tx.send(buf[0]).await.is_err() {
                                        break;
                                    }
                                }
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                    reg.clear(Way::Read);
                                    ready(&reg, Way::Read).await;
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                        poller.hold_when_quiet(Duration::ZERO, None).unwrap();
                    });
                    let start = Instant::now();
                    for n in 0..5u8 {
                        a.write_all(&[n]).unwrap();
                        assert_eq!(pong_rx.recv().await, Some(n));
                    }
                    let took = start.elapsed();
                    drop(a);
                    echo.await;
                    took
                })
            })
            .unwrap()
            .join()
            .unwrap();
        // Held with a task runnable, each round trip would wait out the 5 s hold.
        assert!(
            took < Duration::from_millis(2500),
            "5 round trips took {took:?}: held while a counted task was runnable"
        );
    }

    #[test]
    fn a_full_socket_wakes_its_writer_once_the_peer_reads() {
        run(|| async {
            let poller = Poller::local().unwrap();
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let reg = poller.register(a.as_raw_fd()).unwrap();
            let chunk = [7u8; 4096];
            let mut sent = 0usize;
            loop {
                match (&a).write(&chunk) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            reg.clear(Way::Write);
            let reader = std::thread::spawn(move || {
                let mut buf = vec![0u8; sent];
                b.read_exact(&mut buf).unwrap();
                b
            });
            ready(&reg, Way::Write).await;
            assert!((&a).write(&chunk).unwrap() > 0);
            drop(reader.join().unwrap());
        });
    }
}
