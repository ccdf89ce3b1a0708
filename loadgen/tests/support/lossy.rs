//! A broker that loses messages, to show that loadgen notices: it answers CONNECT,
//! SUBSCRIBE (granting QoS 0), PINGREQ, and every PUBLISH (PUBACK, or PUBREC then
//! PUBCOMP), and forwards each PUBLISH to its subscribers at QoS 0, except every
//! `every`-th one it receives, which it drops: after acknowledging it as usual
//! ([`Loss::AfterAck`]), or refusing it with the 5.0 reason code 0x97 ([`Loss::Refused`]).
//!
//! One thread per connection on blocking sockets with short read timeouts, so that
//! [`Lossy`]'s drop stops and joins everything within a few reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto::{Ack, ConnAck, Packet, Props, Protocol, Publish, QoS, SubAck};

/// How long a connection thread blocks in a read before it looks at the stop flag.
const READ_WAIT: Duration = Duration::from_millis(50);
/// 5.0 reason code: quota exceeded.
const QUOTA_EXCEEDED: u8 = 0x97;

/// What happens to the messages the broker loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Acknowledged like every other, then dropped: the failure loadgen must catch.
    AfterAck,
    /// Refused in the acknowledgement (5.0 only), then dropped: not the broker's fault.
    Refused,
}

/// A connection's sending side; every writer locks it, so frames never interleave.
type Out = Arc<Mutex<TcpStream>>;

struct State {
    every: u64,
    loss: Loss,
    stop: AtomicBool,
    /// PUBLISH packets received so far, from every publisher.
    received: AtomicU64,
    subscribers: Mutex<Vec<(Out, Protocol)>>,
}

/// The running broker; stopped and joined on drop.
pub struct Lossy {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl Lossy {
    /// Starts a broker on a loopback port that loses every `every`-th PUBLISH.
    pub fn start(every: u64, loss: Loss) -> Lossy {
        assert!(every > 0);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local address");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let state = Arc::new(State {
            every,
            loss,
            stop: AtomicBool::new(false),
            received: AtomicU64::new(0),
            subscribers: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let st = st.clone();
                        conns.push(std::thread::spawn(move || serve(stream, &st)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Lossy { addr, state, accept: Some(accept) }
    }

    /// PUBLISH packets received so far.
    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::Relaxed)
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn encode(p: &Packet, protocol: Protocol, out: &mut BytesMut) {
    p.write(protocol, out).expect("the lossy broker encodes what it sends");
}

fn send(out: &Out, bytes: &[u8]) {
    if !bytes.is_empty() {
        if let Ok(mut s) = out.lock() {
            let _ = s.write_all(bytes);
        }
    }
}

fn ack(pkid: u16, reason: u8) -> Ack {
    Ack { pkid, reason, properties: Props::default() }
}

/// Serves one connection until it ends or the broker stops. Replies and forwards of one
/// read go out in one write per connection.
fn serve(mut stream: TcpStream, st: &State) {
    let _ = stream.set_read_timeout(Some(READ_WAIT));
    let _ = stream.set_nodelay(true);
    let out: Out = match stream.try_clone() {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(_) => return,
    };
    let mut protocol = Protocol::V4;
    let mut rbuf = BytesMut::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let (mut reply, mut fwd4, mut fwd5) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
    while !st.stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        let mut end = false;
        loop {
            let p = match proto::read(&mut rbuf, protocol, usize::MAX) {
                Ok(p) => p,
                Err(proto::Error::Incomplete(_)) => break,
                Err(_) => {
                    end = true;
                    break;
                }
            };
            match p {
                Packet::Connect(c) => {
                    protocol = c.protocol;
                    let connack = ConnAck { session_present: false, code: 0, properties: Props::default() };
                    encode(&Packet::ConnAck(connack), protocol, &mut reply);
                }
                Packet::Subscribe(s) => {
                    let codes = vec![0; s.filters.len()];
                    let suback = SubAck { pkid: s.pkid, codes, properties: Props::default() };
                    let mut b = BytesMut::new();
                    encode(&Packet::SubAck(suback), protocol, &mut b);
                    // Registered under the lock that forwards take, so the SUBACK precedes them.
                    let mut subs = st.subscribers.lock().expect("subscriber list");
                    send(&out, &reply);
                    reply.clear();
                    send(&out, &b);
                    subs.push((out.clone(), protocol));
                }
                Packet::Publish(p) => {
                    let n = st.received.fetch_add(1, Ordering::Relaxed) + 1;
                    let lose = n.is_multiple_of(st.every);
                    let reason = if lose && st.loss == Loss::Refused { QUOTA_EXCEEDED } else { 0 };
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => encode(&Packet::PubAck(ack(p.pkid, reason)), protocol, &mut reply),
                        QoS::ExactlyOnce => encode(&Packet::PubRec(ack(p.pkid, reason)), protocol, &mut reply),
                    }
                    if !lose {
                        let forward = Packet::Publish(Publish {
                            dup: false,
                            qos: QoS::AtMostOnce,
                            retain: false,
                            topic: p.topic,
                            pkid: 0,
                            properties: Props::default(),
                            payload: Bytes::copy_from_slice(&p.payload),
                        });
                        encode(&forward, Protocol::V4, &mut fwd4);
                        encode(&forward, Protocol::V5, &mut fwd5);
                    }
                }
                Packet::PubRel(a) => encode(&Packet::PubComp(ack(a.pkid, 0)), protocol, &mut reply),
                Packet::PingReq => encode(&Packet::PingResp, protocol, &mut reply),
                Packet::Disconnect(_) => end = true,
                _ => {}
            }
            if end {
                break;
            }
        }
        send(&out, &reply);
        reply.clear();
        if !fwd4.is_empty() {
            for (sub, p) in st.subscribers.lock().expect("subscriber list").iter() {
                send(sub, if *p == Protocol::V5 { &fwd5 } else { &fwd4 });
            }
            fwd4.clear();
            fwd5.clear();
        }
        if end {
            return;
        }
    }
}
