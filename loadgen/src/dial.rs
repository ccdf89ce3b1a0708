//! How loadgen reaches a broker: TCP (from a source address), then TLS (rustls through
//! futures-rustls, ring provider) and/or WebSocket (RFC 6455, subprotocol `mqtt`), and the
//! user name and password its CONNECTs carry; so it measures any broker's TLS and
//! WebSocket cost as well as its plain TCP.
//!
//! Built once from the flags ([`Dial::from_args`]); [`open`] is called per connection by
//! `link::connect`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::rustls;
use netpoll::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A connection's byte stream, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Unpin {
    /// Bounds each read (the CONNACK wait, the drain).
    fn set_read_timeout(&mut self, d: Option<Duration>);
}

impl Io for Stream {
    fn set_read_timeout(&mut self, d: Option<Duration>) {
        Stream::set_read_timeout(self, d);
    }
}

impl Io for futures_rustls::client::TlsStream<Box<dyn Io>> {
    fn set_read_timeout(&mut self, d: Option<Duration>) {
        self.get_mut().0.set_read_timeout(d);
    }
}

/// The transport settings of a run.
pub struct Dial {
    /// TLS, and the name the server's certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// WebSocket: the request path and the Host header.
    pub ws: Option<(String, String)>,
    /// CONNECT's user name.
    pub username: Option<String>,
    /// CONNECT's password.
    pub password: Option<String>,
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial")
            .field("tls", &self.tls.as_ref().map(|(_, n)| n))
            .field("ws", &self.ws)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the flags ask of the transport.
pub struct DialFlags<'a> {
    /// `--tls` (or `--wss`).
    pub tls: bool,
    /// `--ws` (or `--wss`).
    pub ws: bool,
    /// `--path`.
    pub path: &'a str,
    /// `--ca`.
    pub ca: Option<&'a Path>,
    /// `--cert` and `--key`.
    pub cert: Option<(&'a Path, &'a Path)>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--server-name`, else the broker's host.
    pub server_name: &'a str,
    /// `--username`, `--password`.
    pub username: Option<String>,
    /// See `username`.
    pub password: Option<String>,
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

impl Dial {
    /// Checks the flags and reads the certificate files.
    pub fn from_args(f: DialFlags<'_>) -> Result<Dial, String> {
        let tls = if f.tls {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?;
            let builder = if f.insecure {
                builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            } else {
                let mut roots = rustls::RootCertStore::empty();
                let Some(ca) = f.ca else { return Err("--tls needs --ca FILE (or --insecure)".into()) };
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| pem_err(ca, e))? {
                    roots.add(c.map_err(|e| pem_err(ca, e))?).map_err(|e| pem_err(ca, e))?;
                }
                builder.with_root_certificates(roots)
            };
            let mut cfg = match f.cert {
                Some((cert, key)) => {
                    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                        .map_err(|e| pem_err(cert, e))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| pem_err(cert, e))?;
                    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
                    builder.with_client_auth_cert(chain, key).map_err(|e| format!("--cert/--key: {e}"))?
                }
                None => builder.with_no_client_auth(),
            };
            cfg.alpn_protocols = vec![if f.ws { b"http/1.1".to_vec() } else { b"mqtt".to_vec() }];
            let name = ServerName::try_from(f.server_name.to_owned()).map_err(|e| format!("--server-name: {e}"))?;
            Some((Arc::new(cfg), name))
        } else {
            None
        };
        let ws = f.ws.then(|| (f.path.to_owned(), f.server_name.to_owned()));
        Ok(Dial { tls, ws, username: f.username, password: f.password })
    }
}

/// Accepts any server certificate (`--insecure`): for measuring, never for real data.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to `broker` (from `source`) and sets up TLS and WebSocket as `dial` says.
pub async fn open(broker: SocketAddr, source: Option<IpAddr>, dial: &Dial) -> Result<Box<dyn Io>, String> {
    let domain = if broker.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let sk = socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        sk.bind(&SocketAddr::new(ip, 0).into()).map_err(|e| format!("bind source {ip}: {e}"))?;
    }
    sk.connect(&broker.into()).map_err(|e| format!("broker unreachable at {broker}: {e}"))?;
    let _ = sk.set_nodelay(true);
    // SAFETY: into_raw_fd hands over ownership of the connected socket's descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(sk.into_raw_fd()) };
    let mut io: Box<dyn Io> = Box::new(Stream::new(fd).map_err(|e| format!("socket: {e}"))?);
    if let Some((cfg, name)) = &dial.tls {
        let connector = futures_rustls::TlsConnector::from(cfg.clone());
        io = Box::new(connector.connect(name.clone(), io).await.map_err(|e| format!("TLS handshake: {e}"))?);
    }
    if let Some((path, host)) = &dial.ws {
        io = Box::new(upgrade(io, host, path).await?);
    }
    Ok(io)
}

/// Sends the WebSocket upgrade request and reads the 101 answer.
async fn upgrade(mut io: Box<dyn Io>, host: &str, path: &str) -> Result<WsClient, String> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: bG9hZGdlbi1yaW5nbXEtMQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    io.write_all(req.as_bytes()).await.map_err(|e| format!("WebSocket upgrade: {e}"))?;
    io.flush().await.map_err(|e| format!("WebSocket upgrade: {e}"))?;
    io.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || io.read(&mut b).await.map_err(|e| format!("WebSocket upgrade: {e}"))? == 0 {
            return Err("WebSocket upgrade: no answer".into());
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("WebSocket upgrade refused: {}", head.lines().next().unwrap_or_default()));
    }
    Ok(WsClient { inner: io, left: 0, hbuf: Vec::new(), skip: 0, out: Vec::new(), opos: 0, mask: 0x9e37_79b9 })
}

/// The client side of RFC 6455 framing: each write one masked binary frame; reads take
/// binary and continuation payloads, skip pings, pongs and text, end at a close.
struct WsClient {
    inner: Box<dyn Io>,
    /// Payload bytes left in the current data frame.
    left: u64,
    /// A header being read.
    hbuf: Vec<u8>,
    /// Payload bytes of a control frame still to skip.
    skip: u64,
    /// The frame being written, from `opos`.
    out: Vec<u8>,
    opos: usize,
    /// The next mask (any value will do for measuring; it changes per frame).
    mask: u32,
}

impl Io for WsClient {
    fn set_read_timeout(&mut self, d: Option<Duration>) {
        self.inner.set_read_timeout(d);
    }
}

impl WsClient {
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.opos < self.out.len() {
            match Pin::new(&mut *self.inner).poll_write(cx, &self.out[self.opos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.opos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.opos = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for WsClient {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        loop {
            if me.left > 0 && me.skip == 0 {
                let want = buf.len().min(me.left.min(usize::MAX as u64) as usize);
                return match Pin::new(&mut *me.inner).poll_read(cx, &mut buf[..want]) {
                    Poll::Ready(Ok(n)) => {
                        me.left -= n as u64;
                        Poll::Ready(Ok(n))
                    }
                    other => other,
                };
            }
            if me.skip > 0 {
                let mut sink = [0u8; 128];
                let want = sink.len().min(me.skip as usize);
                match Pin::new(&mut *me.inner).poll_read(cx, &mut sink[..want]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                    Poll::Ready(Ok(n)) => me.skip -= n as u64,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            // A header: 2 bytes, then its extended length (server frames are unmasked).
            let need = match me.hbuf.get(1).map(|b| b & 0x7f) {
                None => 2,
                Some(126) => 4,
                Some(127) => 10,
                Some(_) => 2,
            };
            if me.hbuf.len() < need {
                let mut b = [0u8; 10];
                let want = need - me.hbuf.len();
                match Pin::new(&mut *me.inner).poll_read(cx, &mut b[..want]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                    Poll::Ready(Ok(n)) => me.hbuf.extend_from_slice(&b[..n]),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            let h = std::mem::take(&mut me.hbuf);
            let len = match h[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                127 => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
                n => u64::from(n),
            };
            match h[0] & 0x0f {
                0x0 | 0x2 => me.left = len,
                0x8 => return Poll::Ready(Ok(0)),
                _ => me.skip = len,
            }
            if len == 0 {
                me.left = 0;
                me.skip = 0;
            }
        }
    }
}

impl AsyncWrite for WsClient {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match me.poll_out(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|_| 0)),
        }
        let n = buf.len().min(64 * 1024);
        me.mask = me.mask.rotate_left(5) ^ 0x2545_f491;
        let mask = me.mask.to_be_bytes();
        me.out.push(0x82);
        match n {
            n if n < 126 => me.out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                me.out.push(0x80 | 126);
                me.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                me.out.push(0x80 | 127);
                me.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        me.out.extend_from_slice(&mask);
        me.out.extend(buf[..n].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
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
        match me.poll_out(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut *me.inner).poll_close(cx),
            other => other,
        }
    }
}
