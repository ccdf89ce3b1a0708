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
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;

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

    /// One `epoll_wait` without waiting: marks what is ready, its wakers go to `woken`.
    /// Returns how many events there were.
    fn harvest(&self, events: &mut [libc::epoll_event], woken: &mut Vec<Waker>) -> usize {
        // SAFETY: `events` is a valid buffer of `events.len()` entries for the kernel to fill.
        let n = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, 0) };
        if n <= 0 {
            return 0;
        }
        let mut slots = self.slots.borrow_mut();
        for ev in &events[..n as usize] {
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
        n as usize
    }
}

/// Hands the epoll descriptor's events to the slots for as long as the thread keeps the
/// poller, and fails the waiting reads whose deadline passed (every [`SCAN`], while any is
/// armed). After a look that found events it yields within the task queue (the tasks it
/// woke run first) and looks again, at most [`BUSY_LOOKS`] times in a row; after a look
/// that found none, or that many, it sleeps on the descriptor through one glommio poll
/// (which completes at once when more came meanwhile). A busy thread so pays one
/// `epoll_wait` per batch of ready sockets instead of a turn of glommio's reactor, which
/// re-arms its timers each turn, and the reactor still turns at least every
/// [`BUSY_LOOKS`] batches for timers and cross-thread channels.
async fn pump(weak: std::rc::Weak<Poller>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; HARVEST];
    // Wakers collected while the slots are borrowed, woken after; kept between looks.
    let mut woken = Vec::new();
    let mut busy = 0;
    let mut scanned = Instant::now();
    loop {
        let Some(poller) = weak.upgrade() else { return };
        let mut found = 0;
        loop {
            let n = poller.harvest(&mut events, &mut woken);
            found += n;
            if n < HARVEST {
                break;
            }
        }
        let timing = poller.deadlines.get() > 0;
        if timing && scanned.elapsed() >= SCAN {
            scanned = Instant::now();
            poller.expire(scanned, &mut woken);
        }
        woken.drain(..).for_each(Waker::wake);
        let epfd = poller.epfd.as_raw_fd();
        drop(poller);
        if found > 0 && busy < BUSY_LOOKS {
            busy += 1;
            futures_lite::future::yield_now().await;
            continue;
        }
        busy = 0;
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
    /// (to within [`SCAN`]). One deadline per socket, kept in its slot: no timer each.
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
