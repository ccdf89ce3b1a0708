//! Raw sockets speaking packets encoded by rumqttc's 3.1.1 codec, for what the client
//! library cannot express.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// A plain TCP connection to the broker speaking 3.1.1 packets.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    /// Connects a socket.
    pub async fn connect(broker: &TestBroker) -> Raw {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(broker.addr()))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        Raw { stream, buf: BytesMut::new() }
    }

    /// Connects a socket whose receive buffer is `size` bytes (set before connecting, so
    /// the kernel does not grow it).
    pub async fn connect_with_rcvbuf(broker: &TestBroker, size: u32) -> Raw {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(size).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(WAIT, sock.connect(broker.addr()))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        Raw { stream, buf: BytesMut::new() }
    }

    /// Writes bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await.expect("write timed out").expect("write");
    }

    /// Writes a CONNECT.
    pub async fn send_connect(&mut self, c: &rumqttc::mqttbytes::v4::Connect) {
        let mut b = BytesMut::new();
        c.write(&mut b).expect("encode CONNECT");
        self.send_bytes(&b).await;
    }

    /// Writes a SUBSCRIBE.
    pub async fn send_subscribe(&mut self, s: &rumqttc::mqttbytes::v4::Subscribe) {
        let mut b = BytesMut::new();
        s.write(&mut b).expect("encode SUBSCRIBE");
        self.send_bytes(&b).await;
    }

    /// Writes a 5.0 CONNECT encoded by rumqttc's 5.0 codec.
    pub async fn send_connect5(&mut self, id: &str, clean_start: bool, session_expiry: Option<u32>) {
        let mut props = p5::ConnectProperties::new();
        props.session_expiry_interval = session_expiry;
        let c = p5::Connect { keep_alive: 30, client_id: id.to_owned(), clean_start, properties: Some(props) };
        let mut b = BytesMut::new();
        p5::Packet::Connect(c, None, None).write(&mut b).expect("encode 5.0 CONNECT");
        self.send_bytes(&b).await;
    }

    /// The next frame, whatever the protocol version, as (first byte, body); None at end of
    /// stream (a reset counts as the end too).
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for _ in 0..1_000_000 {
            if let Some((header, len)) = frame_len(&self.buf) {
                if self.buf.len() >= header + len {
                    let frame = self.buf.split_to(header + len);
                    return Some((frame[0], frame[header..].to_vec()));
                }
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("raw: no complete packet from the broker within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        panic!("raw: too many reads")
    }

    /// The next packet, or None at end of stream (a reset counts as the end too).
    pub async fn read_packet(&mut self) -> Option<rumqttc::Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for _ in 0..1_000_000 {
            match rumqttc::mqttbytes::v4::read(&mut self.buf, 1 << 24) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("raw: undecodable packet from the broker: {e:?}"),
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("raw: nothing from the broker within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        panic!("raw: too many reads")
    }

    /// Reads until nothing arrived for `quiet` (or the connection closed); returns the
    /// bytes read. Panics past `max_bytes`, or when the reading takes more than a minute.
    pub async fn read_until_quiet(&mut self, quiet: Duration, max_bytes: usize) -> usize {
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut total = self.buf.len();
        self.buf.clear();
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..10_000_000 {
            let until = (tokio::time::Instant::now() + quiet).min(end);
            match tokio::time::timeout_at(until, self.stream.read(&mut chunk)).await {
                Err(_) => {
                    assert!(tokio::time::Instant::now() < end, "raw: still reading after a minute ({total} bytes)");
                    return total;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return total,
                Ok(Ok(n)) => {
                    total += n;
                    assert!(total <= max_bytes, "raw: more than {max_bytes} bytes read");
                }
            }
        }
        panic!("raw: too many reads")
    }

    /// Reads and discards until the broker closes the connection (within `timeout`, at
    /// most `max_bytes`); returns the bytes read.
    pub async fn read_until_closed(&mut self, timeout: Duration, max_bytes: usize) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut total = self.buf.len();
        self.buf.clear();
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..10_000_000 {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("raw: connection still open after {timeout:?} ({total} bytes read)"),
                Ok(Ok(0)) | Ok(Err(_)) => return total,
                Ok(Ok(n)) => {
                    total += n;
                    assert!(
                        total <= max_bytes,
                        "raw: more than {max_bytes} bytes read and the connection is still open"
                    );
                }
            }
        }
        panic!("raw: too many reads")
    }
}

/// (fixed header length, remaining length) of the frame at the start of `buf`, once the
/// fixed header is complete.
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for i in 0..4 {
        let b = *buf.get(1 + i)?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((2 + i, len));
        }
    }
    panic!("raw: remaining length longer than 4 bytes")
}

/// A raw 3.1.1 CONNECT.
pub fn raw_connect4(id: &str, clean_session: bool, keep_alive: u16) -> rumqttc::mqttbytes::v4::Connect {
    let mut c = rumqttc::mqttbytes::v4::Connect::new(id);
    c.clean_session = clean_session;
    c.keep_alive = keep_alive;
    c
}
