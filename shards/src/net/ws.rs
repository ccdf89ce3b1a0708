//! MQTT over WebSocket (RFC 6455), server side: the HTTP upgrade ([`accept`], subprotocol
//! `mqtt` or `mqttv3.1`, path and `Origin` checked) and a [`Transport`] that carries the
//! MQTT byte stream in binary frames over another transport (TCP or TLS).
//!
//! Reading unmasks binary and continuation frames into the caller's buffer, so a packet
//! may span frames and a frame may hold several packets. Text frames, unmasked frames,
//! reserved bits and frames or messages larger than the bound are refused with a close
//! frame (1003, 1002, 1009). Pings are answered, closes echoed; like TLS, the read side
//! never waits to write ([`Transport::try_write`]); what the socket does not take goes out
//! with the next write. Writing sends each write as one binary frame.
//!
//! The framing state is plain data, so it moves with the connection at the hand-off.
//! Used by the front's handshake and by the hand-off's attach.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Attach, Detached, Transport};

/// The GUID of RFC 6455's accept key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest upgrade request accepted (request line and headers).
const MAX_REQUEST: usize = 8192;
/// Raw bytes taken from the inner transport per read.
const READ_CHUNK: usize = 4096;
/// Largest payload of one frame the broker sends.
const MAX_OUT_FRAME: usize = 64 * 1024;
/// The subprotocols accepted, in the order preferred.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// A WebSocket listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// The request path (default `/mqtt`).
    pub path: String,
    /// `Origin` values accepted; empty: any (and requests without one).
    pub allowed_origins: Vec<String>,
    /// Largest frame and message payload accepted (the listener's `max_packet_size`).
    pub max_message: usize,
}

/// Why an upgrade was refused: the HTTP status sent, and the reason logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The HTTP status sent (0: none, the connection just ended).
    pub status: u16,
    /// What was wrong.
    pub why: String,
}

fn refused(status: u16, why: impl Into<String>) -> Refused {
    Refused { status, why: why.into() }
}

/// Reads the upgrade request and answers it: 101 with the chosen subprotocol, or an HTTP
/// error (400, 403, 404, 405, 426, 431) and `Err`. Unbounded by itself: the caller bounds
/// it (the connect timeout).
pub async fn accept(mut inner: Box<dyn Transport>, s: &WsSettings) -> Result<Ws, Refused> {
    let mut req = Vec::with_capacity(512);
    let end = loop {
        if let Some(at) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if req.len() >= MAX_REQUEST {
            return Err(answer_error(&mut inner, refused(431, "upgrade request too large")).await);
        }
        let len = req.len();
        req.resize((len + 1024).min(MAX_REQUEST), 0);
        match inner.read(&mut req[len..]).await {
            Ok(0) | Err(_) => return Err(refused(0, "closed before the upgrade request ended")),
            Ok(n) => req.truncate(len + n),
        }
    };
    let rest = req.split_off(end + 4);
    let (protocol, key) = match check_request(&req[..end], s) {
        Ok(v) => v,
        Err(r) => return Err(answer_error(&mut inner, r).await),
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(&key)
    );
    if let Some(p) = protocol {
        answer.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    answer.push_str("\r\n");
    if inner.write_all(answer.as_bytes()).await.is_err() || inner.flush().await.is_err() {
        return Err(refused(0, "closed during the upgrade"));
    }
    let st = Framing { rbuf: rest, max: s.max_message as u64, ..Framing::default() };
    Ok(Ws { inner, st })
}

/// Sends an HTTP error answer, best effort, and gives the refusal back.
async fn answer_error(inner: &mut Box<dyn Transport>, r: Refused) -> Refused {
    let reason = match r.status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        _ => "Request Header Fields Too Large",
    };
    let body = format!("{}\n", r.why);
    let text = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n{body}",
        r.status,
        body.len()
    );
    let _ = inner.write_all(text.as_bytes()).await;
    let _ = inner.flush().await;
    inner.shutdown(Shutdown::Write);
    r
}

/// Checks an upgrade request's head; Ok: the subprotocol to answer with and the key.
fn check_request(head: &[u8], s: &WsSettings) -> Result<(Option<&'static str>, String), Refused> {
    let head = std::str::from_utf8(head).map_err(|_| refused(400, "request is not text"))?;
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(refused(400, "not an HTTP/1.1 request"));
    }
    if method != Some("GET") {
        return Err(refused(405, "a WebSocket upgrade is a GET"));
    }
    let path = target.unwrap_or_default().split('?').next().unwrap_or_default();
    if path != s.path {
        return Err(refused(404, format!("no WebSocket endpoint at {path} (it is at {})", s.path)));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(refused(426, "not a WebSocket upgrade request"));
    }
    if header("sec-websocket-version") != Some("13") {
        return Err(refused(426, "WebSocket version 13 only"));
    }
    let key = header("sec-websocket-key").unwrap_or_default();
    let valid = base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|k| k.len() == 16);
    if !valid {
        return Err(refused(400, "missing or malformed Sec-WebSocket-Key"));
    }
    if !s.allowed_origins.is_empty() {
        let origin = header("origin").unwrap_or_default();
        if !s.allowed_origins.iter().any(|o| o == origin) {
            return Err(refused(403, format!("origin {origin:?} is not allowed")));
        }
    }
    let protocol = match header("sec-websocket-protocol") {
        None => None,
        Some(offered) => {
            let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
            let chosen = SUBPROTOCOLS.iter().find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
            match chosen {
                Some(p) => Some(*p),
                None => return Err(refused(400, format!("subprotocol {offered:?}: only mqtt and mqttv3.1"))),
            }
        }
    };
    Ok((protocol, key.to_owned()))
}

/// `Sec-WebSocket-Accept` for a client's key.
fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// The framing state of one connection: plain data, so it moves with it.
#[derive(Debug, Default)]
struct Framing {
    /// Raw bytes read and not yet decoded, from `rpos`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Payload bytes left in the current data frame, its mask and where in the mask.
    left: u64,
    mask: [u8; 4],
    moff: usize,
    /// Inside a fragmented message (a continuation must follow), and its size so far.
    fragmented: bool,
    message: u64,
    /// Largest frame or message payload.
    max: u64,
    /// Frame bytes to send, from `opos`: the current data frame's rest and control frames.
    out: Vec<u8>,
    opos: usize,
    /// A close frame was received or sent: reads end.
    closed: bool,
    close_sent: bool,
}

/// What decoding the next frame header found.
enum Next {
    /// A data frame: its payload follows.
    Data,
    /// A control frame, handled (a close ends the reads).
    Control,
    /// Too few bytes buffered.
    More,
}

/// A decoded frame header.
struct Header {
    fin: bool,
    opcode: u8,
    len: u64,
    mask: [u8; 4],
    size: usize,
}

/// Decodes a header; Ok(None): more bytes needed; Err: the close code refusing it.
fn header(b: &[u8]) -> Result<Option<Header>, u16> {
    if b.len() < 2 {
        return Ok(None);
    }
    let (fin, rsv, opcode) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0f);
    if rsv != 0 {
        return Err(1002);
    }
    if b[1] & 0x80 == 0 {
        // Every client frame is masked (RFC 6455, 5.1).
        return Err(1002);
    }
    let (len, at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")), 10),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    if b.len() < at + 4 {
        return Ok(None);
    }
    let mask = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    Ok(Some(Header { fin, opcode, len, mask, size: at + 4 }))
}

fn unmask(data: &mut [u8], mask: [u8; 4], from: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(from + i) % 4];
    }
}

/// Appends one unmasked server frame.
fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// A WebSocket connection on its shard.
pub struct Ws {
    inner: Box<dyn Transport>,
    st: Framing,
}

fn protocol_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {what}"))
}

impl Ws {
    /// Queues a close frame (once) and sends what it can now.
    fn close_with(&mut self, code: u16) {
        if !self.st.close_sent {
            self.st.close_sent = true;
            frame(&mut self.st.out, 0x8, &code.to_be_bytes());
        }
        self.st.closed = true;
        self.send_now();
    }

    /// Sends queued frame bytes without waiting (the read side's answers).
    fn send_now(&mut self) {
        while self.st.opos < self.st.out.len() {
            match self.inner.try_write(&self.st.out[self.st.opos..]) {
                Ok(n) if n > 0 => self.st.opos += n,
                _ => return,
            }
        }
        self.st.out.clear();
        self.st.opos = 0;
    }

    /// Sends queued frame bytes; `Pending` while the socket is full.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.st.opos < self.st.out.len() {
            match Pin::new(&mut *self.inner).poll_write(cx, &self.st.out[self.st.opos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.st.opos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.st.out.clear();
        self.st.opos = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads more raw bytes into the buffer; `Ok(false)` at the end of the stream. The
    /// buffer holds only what was read (an idle connection keeps none).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let st = &mut self.st;
        if st.rpos > 0 {
            st.rbuf.drain(..st.rpos);
            st.rpos = 0;
        }
        let mut chunk = [0u8; READ_CHUNK];
        match Pin::new(&mut *self.inner).poll_read(cx, &mut chunk) {
            Poll::Ready(Ok(n)) => {
                st.rbuf.extend_from_slice(&chunk[..n]);
                Poll::Ready(Ok(n > 0))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Gives the read buffer back once everything in it was decoded.
    fn release(&mut self) {
        if self.st.rpos == self.st.rbuf.len() {
            self.st.rbuf = Vec::new();
            self.st.rpos = 0;
        }
    }

    /// Decodes the next header and acts on control frames.
    fn next_frame(&mut self) -> io::Result<Next> {
        let h = match header(&self.st.rbuf[self.st.rpos..]) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Next::More),
            Err(code) => return Err(self.refuse(code, "malformed frame")),
        };
        match h.opcode {
            0x0 | 0x2 => {
                let continuation = h.opcode == 0x0;
                if continuation != self.st.fragmented {
                    return Err(self.refuse(1002, "continuation out of place"));
                }
                let message = if continuation { self.st.message + h.len } else { h.len };
                if h.len > self.st.max || message > self.st.max {
                    return Err(self.refuse(1009, "frame or message larger than max_packet_size"));
                }
                let st = &mut self.st;
                st.message = message;
                st.fragmented = !h.fin;
                st.rpos += h.size;
                st.left = h.len;
                st.mask = h.mask;
                st.moff = 0;
                Ok(Next::Data)
            }
            // MQTT over WebSocket is binary only (MQTT 5.0, 6.0).
            0x1 => Err(self.refuse(1003, "text frame")),
            0x8..=0xa => {
                if !h.fin || h.len > 125 {
                    return Err(self.refuse(1002, "control frame fragmented or too long"));
                }
                let (from, len) = (self.st.rpos + h.size, h.len as usize);
                if self.st.rbuf.len() < from + len {
                    return Ok(Next::More);
                }
                let mut payload = self.st.rbuf[from..from + len].to_vec();
                self.st.rpos = from + len;
                unmask(&mut payload, h.mask, 0);
                match h.opcode {
                    0x9 => {
                        // Behind any data frame still being sent, never inside it.
                        frame(&mut self.st.out, 0xa, &payload);
                        self.send_now();
                    }
                    0x8 => {
                        let code = payload.get(..2).map_or(1000, |c| u16::from_be_bytes([c[0], c[1]]));
                        self.close_with(code);
                    }
                    _ => {}
                }
                Ok(Next::Control)
            }
            _ => Err(self.refuse(1002, "unknown opcode")),
        }
    }

    /// Closes with `code` and gives the error that ends the reads.
    fn refuse(&mut self, code: u16, what: &str) -> io::Error {
        self.close_with(code);
        protocol_error(what)
    }
}

impl Transport for Ws {
    fn set_read_timeout(&mut self, d: Option<Duration>) {
        self.inner.set_read_timeout(d);
    }

    fn shutdown(&mut self, how: Shutdown) {
        if how != Shutdown::Read && !self.st.close_sent {
            self.st.close_sent = true;
            frame(&mut self.st.out, 0x8, &1000u16.to_be_bytes());
            self.send_now();
        }
        self.inner.shutdown(how);
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr()
    }

    fn identity(&self) -> Option<String> {
        self.inner.identity()
    }

    fn detach(self: Box<Self>) -> io::Result<Detached> {
        let Ws { inner, st } = *self;
        Ok(Detached(Box::new(WsParts { inner: inner.detach()?, st })))
    }
}

impl AsyncRead for Ws {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if me.st.closed {
                return Poll::Ready(Ok(0));
            }
            if me.st.left > 0 {
                let st = &mut me.st;
                let want = buf.len().min(usize::try_from(st.left).unwrap_or(usize::MAX));
                let avail = st.rbuf.len() - st.rpos;
                let n = if avail > 0 {
                    let n = want.min(avail);
                    buf[..n].copy_from_slice(&st.rbuf[st.rpos..st.rpos + n]);
                    st.rpos += n;
                    n
                } else {
                    // Nothing buffered: the payload goes straight into the caller's buffer.
                    match Pin::new(&mut *me.inner).poll_read(cx, &mut buf[..want]) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                        Poll::Ready(Ok(n)) => n,
                        other => return other,
                    }
                };
                let st = &mut me.st;
                unmask(&mut buf[..n], st.mask, st.moff);
                st.moff = (st.moff + n) % 4;
                st.left -= n as u64;
                me.release();
                return Poll::Ready(Ok(n));
            }
            match me.next_frame() {
                Ok(Next::Data) => continue,
                Ok(Next::Control) => {
                    me.release();
                    continue;
                }
                Ok(Next::More) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match me.poll_fill(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for Ws {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match me.poll_out(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|_| 0)),
        }
        let n = buf.len().min(MAX_OUT_FRAME);
        frame(&mut me.st.out, 0x2, &buf[..n]);
        if let Poll::Ready(Err(e)) = me.poll_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match me.poll_out(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut *me.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.st.close_sent {
            me.st.close_sent = true;
            frame(&mut me.st.out, 0x8, &1000u16.to_be_bytes());
        }
        match me.poll_out(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut *me.inner).poll_close(cx),
            other => other,
        }
    }
}

/// A WebSocket connection between shards: the inner transport's detached form and the
/// framing state.
#[derive(Debug)]
struct WsParts {
    inner: Detached,
    st: Framing,
}

impl Attach for WsParts {
    fn attach(self: Box<Self>) -> io::Result<Box<dyn Transport>> {
        let WsParts { inner, st } = *self;
        Ok(Box::new(Ws { inner: inner.attach()?, st }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    fn settings() -> WsSettings {
        WsSettings { path: "/mqtt".into(), allowed_origins: vec![], max_message: 1024 }
    }

    #[test]
    fn an_upgrade_is_checked_for_path_version_key_and_subprotocol() {
        let ok = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqttv3.1, mqtt";
        let (p, _) = check_request(ok.as_bytes(), &settings()).expect("accepted");
        assert_eq!(p, Some("mqtt"));
        let status = |req: &str| check_request(req.as_bytes(), &settings()).err().map(|r| r.status);
        assert_eq!(status(&ok.replace("/mqtt ", "/other ")), Some(404));
        assert_eq!(status(&ok.replace("Upgrade: websocket\r\n", "")), Some(426));
        assert_eq!(status(&ok.replace("Version: 13", "Version: 8")), Some(426));
        assert_eq!(status(&ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")), Some(400));
        assert_eq!(status(&ok.replace("mqttv3.1, mqtt", "chat")), Some(400));
        assert_eq!(status(&ok.replace("GET", "POST")), Some(405));
        let mut only = settings();
        only.allowed_origins = vec!["https://app.example".into()];
        let with_origin = format!("{ok}\r\nOrigin: https://evil.example");
        assert_eq!(check_request(with_origin.as_bytes(), &only).err().map(|r| r.status), Some(403));
        let good = format!("{ok}\r\nOrigin: https://app.example");
        assert!(check_request(good.as_bytes(), &only).is_ok());
    }

    #[test]
    fn headers_need_the_mask_and_no_reserved_bits() {
        assert_eq!(header(&[0x82, 0x05]).err(), Some(1002));
        assert_eq!(header(&[0xc2, 0x85, 0, 0, 0, 0]).err(), Some(1002));
        let h = header(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.len, h.size, h.mask), (256, 8, [1, 2, 3, 4]));
        assert!(header(&[0x82, 0xff, 0, 0]).unwrap().is_none());
    }
}
