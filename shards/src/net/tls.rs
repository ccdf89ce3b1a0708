//! TLS: a [`Transport`] over another transport (TCP, or anything below it), driven by a
//! rustls [`ServerConnection`] with the ring provider; the handshake ([`accept`]); the
//! listener's certificate, key and CA, reloadable while connections stay up ([`TlsSource`]);
//! and the client certificate's identity ([`identity_of`]).
//!
//! Why not futures-rustls' stream: a connection's TLS state must move between shards at the
//! hand-off (the handshake runs on the accepting shard), and that stream cannot be rebuilt
//! from its parts. Here the detached form is the inner transport's plus the
//! `ServerConnection`, which is `Send`.
//!
//! The reader and the writer of a connection share one transport, and the poller keeps one
//! waiter per direction: a read therefore never writes to the inner transport (its waker
//! would replace the writer's), and a write never reads. Records rustls makes while reading
//! (after the handshake: tickets, key updates) go out with the next write or flush.
//!
//! Used by the front's handshake and by the hand-off's attach.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::{Attach, Detached, Transport};

/// Plaintext rustls buffers for writing before `poll_write` waits for the socket.
const SEND_BUFFER: usize = 64 * 1024;

/// The lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// A listener's TLS settings, as the configuration names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates are verified against.
    pub ca: Option<PathBuf>,
    /// Refuse clients without a certificate the CA signed (needs `ca`).
    pub require_client_cert: bool,
    /// Lowest TLS version accepted.
    pub min_version: MinVersion,
    /// ALPN protocols accepted (`mqtt` for MQTT listeners, `http/1.1` for WebSocket);
    /// a client that offers ALPN without one of them is refused, one that offers none is
    /// served.
    pub alpn: Vec<Vec<u8>>,
}

/// Why a listener's TLS files could not be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File { file: path.display().to_string(), message: message.to_string() }
}

impl TlsFiles {
    /// Reads the files into a rustls server configuration (ring provider).
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_err(&self.cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_err(&self.cert, e))?;
        if certs.is_empty() {
            return Err(file_err(&self.cert, "no CERTIFICATE in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_err(&self.key, e))?;
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| file_err(ca, e))? {
                    roots.add(c.map_err(|e| file_err(ca, e))?).map_err(|e| file_err(ca, e))?;
                }
                if roots.is_empty() {
                    return Err(file_err(ca, "no CERTIFICATE in the file"));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.require_client_cert { verifier } else { verifier.allow_unauthenticated() };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| file_err(ca, e))?)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(format!("{} / {}: {e}", self.cert.display(), self.key.display())))?;
        cfg.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(cfg))
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        let files = [Some(&self.cert), Some(&self.key), self.ca.as_ref()];
        files.iter().flatten().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
    }
}

/// A listener's TLS configuration as it is now: read at each accept, replaced by
/// [`TlsSource::reload`] (SIGHUP, or a file that changed). Connections keep the
/// configuration they were accepted with.
#[derive(Debug)]
pub struct TlsSource {
    files: TlsFiles,
    current: RwLock<(Arc<ServerConfig>, Vec<Option<SystemTime>>)>,
}

impl TlsSource {
    /// Loads the files; an error names the file.
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let cfg = files.load()?;
        let stamps = files.stamps();
        Ok(TlsSource { files, current: RwLock::new((cfg, stamps)) })
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration new connections get.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// Reads the files again; on an error the old configuration stays and the error is
    /// returned (for the log).
    pub fn reload(&self) -> Result<(), TlsError> {
        let cfg = self.files.load()?;
        let stamps = self.files.stamps();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (cfg, stamps);
        Ok(())
    }

    /// True when a file's modification time differs from the last load's.
    pub fn changed(&self) -> bool {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1 != self.files.stamps()
    }
}

/// Reads from a transport inside a poll: `Pending` becomes `WouldBlock` for rustls.
struct ReadIo<'a, 'b>(&'a mut dyn Transport, &'a mut Context<'b>);

impl Read for ReadIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.0).poll_read(self.1, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Writes to a transport inside a poll, as [`ReadIo`] reads.
struct WriteIo<'a, 'b>(&'a mut dyn Transport, &'a mut Context<'b>);

impl Write for WriteIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.0).poll_write(self.1, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes to a transport from the read side: [`Transport::try_write`].
struct TryWriteIo<'a>(&'a mut dyn Transport);

impl Write for TryWriteIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS connection on its shard.
pub struct Tls {
    inner: Box<dyn Transport>,
    conn: Box<ServerConnection>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("peer", &self.inner.peer_addr()).finish_non_exhaustive()
    }
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Tls {
    /// Sends every record rustls has queued; `Pending` while the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut WriteIo(&mut *self.inner, cx)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends queued records without waiting (see [`Transport::try_write`]); what the
    /// socket does not take waits for the next write or flush.
    fn send_now(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut TryWriteIo(&mut *self.inner)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and processes one batch of records; `Ok(false)` at the end of the stream.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        match self.conn.read_tls(&mut ReadIo(&mut *self.inner, cx)) {
            Ok(0) => Poll::Ready(Ok(false)),
            Ok(_) => match self.conn.process_new_packets() {
                Ok(_) => Poll::Ready(Ok(true)),
                Err(e) => Poll::Ready(Err(tls_err(e))),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// The protocol version negotiated.
    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }
}

/// Runs the server side of a TLS handshake over `inner`. Unbounded by itself: the caller
/// bounds it (the connect timeout). On a failure rustls' alert is sent, best effort.
pub async fn accept(inner: Box<dyn Transport>, config: Arc<ServerConfig>) -> io::Result<Tls> {
    let conn = ServerConnection::new(config).map_err(tls_err)?;
    let mut tls = Tls { inner, conn: Box::new(conn) };
    tls.conn.set_buffer_limit(Some(SEND_BUFFER));
    let mut failed = None;
    while tls.conn.is_handshaking() && failed.is_none() {
        if tls.conn.wants_write() {
            futures_lite::future::poll_fn(|cx| tls.poll_send(cx)).await?;
            continue;
        }
        match futures_lite::future::poll_fn(|cx| tls.poll_receive(cx)).await {
            Ok(true) => {}
            Ok(false) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the TLS handshake")),
            Err(e) => failed = Some(e),
        }
    }
    // The last flight (or the alert that ends a failed handshake, and TLS 1.3's tickets).
    let sent = futures_lite::future::poll_fn(|cx| tls.poll_send(cx)).await;
    match failed {
        Some(e) => Err(e),
        None => sent.map(|_| tls),
    }
}

impl Transport for Tls {
    fn set_read_timeout(&mut self, d: Option<Duration>) {
        self.inner.set_read_timeout(d);
    }

    fn shutdown(&mut self, how: Shutdown) {
        if how != Shutdown::Read {
            // close_notify, best effort: the writer calls this after its last packet, and
            // nothing else waits to write.
            self.conn.send_close_notify();
            let _ = self.send_now();
        }
        self.inner.shutdown(how);
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr()
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.send_now()?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn identity(&self) -> Option<String> {
        self.conn.peer_certificates().and_then(|c| c.first()).and_then(|c| identity_of(c))
    }

    fn detach(self: Box<Self>) -> io::Result<Detached> {
        let Tls { inner, conn } = *self;
        Ok(Detached(Box::new(TlsParts { inner: inner.detach()?, conn })))
    }
}

impl AsyncRead for Tls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        loop {
            match me.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the end of the stream for MQTT.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            match me.poll_receive(cx) {
                Poll::Ready(Ok(true)) => {
                    // What the records read call for (a key update's answer, say).
                    if me.conn.wants_write() {
                        me.send_now()?;
                    }
                }
                Poll::Ready(Ok(false)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Err(e)) => {
                    // The alert that says why, best effort.
                    let _ = me.send_now();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for Tls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            let n = me.conn.writer().write(buf)?;
            // Push out what fits; the rest goes with the next write or the flush.
            let sent = me.poll_send(cx);
            if n > 0 {
                if let Poll::Ready(Err(e)) = sent {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(n));
            }
            // rustls' buffer is full: wait for the socket to take some.
            match sent {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|_| 0)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match me.poll_send(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut *me.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        me.conn.send_close_notify();
        match me.poll_send(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut *me.inner).poll_close(cx),
            other => other,
        }
    }
}

/// A TLS connection between shards: the inner transport's detached form and the
/// rustls state.
#[derive(Debug)]
struct TlsParts {
    inner: Detached,
    conn: Box<ServerConnection>,
}

impl Attach for TlsParts {
    fn attach(self: Box<Self>) -> io::Result<Box<dyn Transport>> {
        let TlsParts { inner, conn } = *self;
        Ok(Box::new(Tls { inner: inner.attach()?, conn }))
    }
}

/// The identity of a client certificate, as Mosquitto's `use_identity_as_username` takes
/// it: the subject's Common Name, or else the first DNS or e-mail Subject Alternative
/// Name. None when the certificate has neither (or does not parse).
pub fn identity_of(cert: &[u8]) -> Option<String> {
    super::x509::common_name(cert).or_else(|| super::x509::first_san(cert))
}

impl crate::auth::Reload for TlsSource {
    fn what(&self) -> String {
        format!("TLS certificate {}", self.files.cert.display())
    }

    fn reload(&self) -> Result<(), String> {
        TlsSource::reload(self).map_err(|e| e.to_string())
    }

    fn changed(&self) -> bool {
        TlsSource::changed(self)
    }
}
