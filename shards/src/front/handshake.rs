//! Accepting connections: the listener loop every shard runs, the listener's transport
//! (PROXY header, TLS handshake, WebSocket upgrade, all within the connect timeout), the
//! CONNECT handshake (refusals, enhanced authentication, the listener's
//! [`Authenticator`](crate::auth::Authenticator), slow checks on the blocking pool,
//! repeated failures slowed down, and the will's authorization), and the hand-off of the
//! connection to the shard that owns its session, through the routing step.
//!
//! Any shard may accept a connection (SO_REUSEPORT spreads them). It reads until the
//! CONNECT is complete, refuses what must be refused with the right CONNACK, picks the
//! session shard from `hash(client_id)` and hands the transport, in its sendable form
//! (with its TLS and WebSocket state), and the bytes already read to that shard (this one
//! included: the same path).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncReadExt;
use proto::{reason, ConnAck, Connect, Error as ProtoError, Packet, Props, Protocol};

use super::rules::{topic_allowed, MAX_AUTH_ROUNDS};
use crate::auth::{allowed, anonymous, Action, AuthStep, Credentials, OwnedCredentials, Principal, Refusal};
use crate::config::ListenerProtocol;
use crate::engine::Shard;
use crate::metrics::Counters;
use crate::net::tcp::Tcp;
use crate::net::{proxy, reason_props, tls, ws, Admitted, Transport};
use crate::route::mesh::{Handoff, Ingress};
use crate::show::short;
use netpoll::Listener;

/// Bytes asked of the socket per read while waiting for CONNECT.
const HANDSHAKE_READ: usize = 256;

/// A connection's transport during the handshake.
type Stream = Box<dyn Transport>;

/// Accepts connections on listener `index` (of the config's listeners) until the task is
/// dropped.
pub async fn accept_loop(shard: Rc<Shard>, listener: Listener, index: usize) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                netpoll::spawn(handshake(shard.clone(), Box::new(Tcp(stream)), index)).detach();
            }
            Err(e) => {
                if shard.node.stopping() {
                    return;
                }
                // Out of descriptors or a transient error: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads a first packet that must be CONNECT.
/// A CONNECT that could not be decoded: the error, and the protocol level byte if seen.
type BadConnect = (ProtoError, Option<u8>);

async fn read_connect(stream: &mut Stream, buf: &mut BytesMut, max: usize) -> Result<Connect, Option<BadConnect>> {
    loop {
        if let Some(first) = buf.first() {
            if first >> 4 != 1 {
                return Err(Some((ProtoError::Protocol("first packet is not CONNECT"), None)));
            }
        }
        // Seen before decoding: a failed decode consumes the frame.
        let level = connect_level(buf);
        match proto::read(buf, Protocol::V5, max) {
            Ok(Packet::Connect(c)) => return Ok(c),
            Ok(_) => return Err(Some((ProtoError::Protocol("first packet is not CONNECT"), level))),
            Err(ProtoError::Incomplete(_)) => {}
            Err(e) => return Err(Some((e, level))),
        }
        if !read_more(stream, buf).await {
            return Err(None);
        }
    }
}

/// Runs an enhanced authentication exchange after a CONNECT that names a registered
/// method: AUTH 0x18 challenges and the client's AUTH 0x18 answers, until the method
/// accepts (the data for the CONNACK) or refuses (the CONNACK code; None: the connection
/// went away or broke the protocol and is just closed).
async fn authenticate(
    shard: &Shard,
    stream: &mut Stream,
    buf: &mut BytesMut,
    c: &Connect,
) -> Result<Option<Vec<u8>>, Option<u8>> {
    use futures_lite::AsyncWriteExt;
    let name = c.properties.authentication_method.clone().unwrap_or_default();
    let Some(method) = shard.cfg.auth_methods.iter().find(|a| a.name() == name) else {
        return Err(Some(reason::BAD_AUTHENTICATION_METHOD));
    };
    let (mut step, mut state) = method.start(&c.client_id, c.properties.authentication_data.as_deref());
    for _ in 0..MAX_AUTH_ROUNDS {
        let challenge = match step {
            AuthStep::Success(data) => return Ok(data),
            AuthStep::Fail(code) => return Err(Some(code)),
            AuthStep::Continue(challenge) => challenge,
        };
        let props = proto::Properties {
            authentication_method: Some(name.clone()),
            authentication_data: Some(bytes::Bytes::from(challenge)),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        let auth = Packet::Auth(proto::Auth { reason: reason::CONTINUE_AUTHENTICATION, properties: props.into() });
        if auth.write(Protocol::V5, &mut out).is_err() || stream.write_all(&out).await.is_err() {
            return Err(None);
        }
        let answer = loop {
            match proto::read(buf, Protocol::V5, shard.cfg.limits.max_packet_size) {
                Ok(p) => break p,
                Err(ProtoError::Incomplete(_)) => {}
                Err(e) => return Err(Some(e.reason_code().max(reason::MALFORMED_PACKET))),
            }
            if !read_more(stream, buf).await {
                return Err(None);
            }
        };
        step = match answer {
            Packet::Auth(a)
                if a.reason == reason::CONTINUE_AUTHENTICATION
                    && a.properties.authentication_method.as_deref() == Some(name.as_str()) =>
            {
                method.step(&mut state, a.properties.authentication_data.as_deref())
            }
            Packet::Auth(_) => return Err(Some(reason::BAD_AUTHENTICATION_METHOD)),
            _ => return Err(Some(reason::PROTOCOL_ERROR)),
        };
    }
    Err(Some(reason::NOT_AUTHORIZED))
}

/// Appends up to [`HANDSHAKE_READ`] bytes from the socket to `buf`; false when the
/// connection ended or failed.
async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> bool {
    let len = buf.len();
    buf.resize(len + HANDSHAKE_READ, 0);
    match stream.read(&mut buf[len..]).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.truncate(len + n);
            true
        }
    }
}

/// The protocol level byte of a CONNECT whose decoding failed, if it can be seen: after
/// the fixed header and the protocol name, whatever the name's length.
fn connect_level(buf: &[u8]) -> Option<u8> {
    let mut i = 1;
    while *buf.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let body = buf.get(i + 1..)?;
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    body.get(2 + name_len).copied()
}

/// Writes a refusing CONNACK (best effort) before the socket is closed.
async fn refuse(stream: &mut Stream, protocol: Protocol, code: u8) {
    use futures_lite::AsyncWriteExt;
    let mut out = BytesMut::new();
    let properties = if protocol == Protocol::V5 { reason_props(code) } else { Props::default() };
    let ack = Packet::ConnAck(ConnAck { session_present: false, code, properties });
    if ack.write(protocol, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
        let _ = stream.flush().await;
    }
}

/// Refuses a CONNECT that failed to decode. An unknown protocol name or level gets a
/// CONNACK in the form its level names: 0x84 in the 5.0 form from level 5 up, return code 1
/// in the 3.1.1 form (which is 3.1's too) below. Any other error of a 5.0 CONNECT gets its
/// reason code; anything else is just closed.
async fn refuse_bad_connect(stream: &mut Stream, level: Option<u8>, e: &ProtoError) {
    match (e, level) {
        (ProtoError::UnsupportedProtocolVersion(named), _) if *named >= 5 => {
            refuse(stream, Protocol::V5, reason::UNSUPPORTED_PROTOCOL_VERSION).await
        }
        (ProtoError::UnsupportedProtocolVersion(_), _) => {
            refuse(stream, Protocol::V4, reason::V4_UNACCEPTABLE_PROTOCOL_VERSION).await
        }
        (_, Some(5)) => refuse(stream, Protocol::V5, e.reason_code()).await,
        _ => {}
    }
}

/// Why a connection's transport could not be set up, for the count and the log.
enum Failed {
    Proxy(std::io::Error),
    Tls(std::io::Error),
    Ws(ws::Refused),
    TimedOut,
}

/// The listener's layers over the TCP stream: the PROXY header, TLS, the WebSocket
/// upgrade. Returns the stream to read CONNECT from and the client's address.
async fn prepare(shard: &Shard, mut stream: Stream, listener: usize) -> Result<(Stream, Option<SocketAddr>), Failed> {
    let l = &shard.cfg.listeners[listener];
    let mut peer = stream.peer_addr();
    if l.proxy_protocol {
        if let Some(a) = proxy::read_header(&mut stream).await.map_err(Failed::Proxy)? {
            peer = Some(a);
        }
    }
    if let Some(source) = &l.tls {
        stream = Box::new(tls::accept(stream, source.config()).await.map_err(Failed::Tls)?);
    }
    if let ListenerProtocol::WebSocket(settings) = &l.protocol {
        stream = Box::new(ws::accept(stream, settings).await.map_err(Failed::Ws)?);
    }
    Ok((stream, peer))
}

/// Counts a transport failure and logs it (once a minute per address).
fn transport_failed(shard: &Shard, listener: usize, peer: Option<SocketAddr>, why: Failed) {
    let c = &shard.counters;
    let l = &shard.cfg.listeners[listener];
    let (counter, what) = match &why {
        Failed::Proxy(e) => (&c.proxy_failures, format!("PROXY header: {e}")),
        Failed::Tls(e) => (&c.tls_failures, format!("TLS handshake: {e}")),
        Failed::Ws(r) => (&c.ws_failures, format!("WebSocket upgrade ({}): {}", r.status, r.why)),
        // Counted against TLS when the listener has it, else the upgrade, else the header.
        Failed::TimedOut if l.tls.is_some() => (&c.tls_failures, "TLS handshake: connect timeout".into()),
        Failed::TimedOut if l.protocol != ListenerProtocol::Mqtt => {
            (&c.ws_failures, "WebSocket upgrade: connect timeout".into())
        }
        Failed::TimedOut => (&c.proxy_failures, "PROXY header: connect timeout".into()),
    };
    Counters::bump(counter);
    let first = peer.is_none_or(|p| shard.node.throttle.first_log(p.ip(), Instant::now()));
    if first {
        tracing::info!(listener = %l.name(), peer = ?peer, "connection refused: {what}");
    }
}

/// A client id assigned by the broker, chosen so that this shard owns it.
fn assign_client_id(shard: &Shard) -> String {
    loop {
        let id = format!("ringmq-{}-{}-{:x}", shard.router.id, shard.conn_id(), std::process::id());
        if shard.router.owner(id.as_bytes()) == shard.router.id {
            return id;
        }
    }
}

async fn handshake(shard: Rc<Shard>, mut stream: Stream, listener: usize) {
    let limits = &shard.cfg.limits;
    stream.set_read_timeout(Some(limits.connect_timeout));
    let socket_peer = stream.peer_addr();
    let layered = {
        let l = &shard.cfg.listeners[listener];
        l.proxy_protocol || l.tls.is_some() || l.protocol != ListenerProtocol::Mqtt
    };
    let mut peer = socket_peer;
    if layered {
        // Boxed: only layered listeners pay for the state of their handshakes.
        let ready = Box::pin(prepare(&shard, stream, listener));
        let bound = async {
            glommio::timer::sleep(limits.connect_timeout).await;
            Err(Failed::TimedOut)
        };
        match futures_lite::future::or(ready, bound).await {
            Ok((s, p)) => (stream, peer) = (s, p),
            Err(why) => return transport_failed(&shard, listener, socket_peer, why),
        }
    }
    let mut buf = BytesMut::with_capacity(HANDSHAKE_READ);
    let refused = || Counters::bump(&shard.counters.connections_refused);
    // The CONNECT is kept boxed and read in a boxed future: a handshake's task stays small
    // while thousands of clients connect at once.
    let mut connect = match Box::pin(read_connect(&mut stream, &mut buf, limits.max_packet_size)).await {
        Ok(c) => Box::new(c),
        Err(Some((e, level))) => {
            tracing::debug!(error = %e, "bad CONNECT");
            refused();
            refuse_bad_connect(&mut stream, level, &e).await;
            return;
        }
        Err(None) => return,
    };
    let v5 = connect.protocol == Protocol::V5;
    let l = &shard.cfg.listeners[listener];
    let (admitted, before, on_listener) =
        Admitted::count(&shard.node.connections, shard.node.listener_connections.get(listener));
    let listener_full = l.max_connections.is_some_and(|max| on_listener >= max);
    if before >= limits.max_connections || listener_full {
        let limit = if listener_full { l.max_connections.unwrap_or_default() } else { limits.max_connections };
        tracing::info!(listener = %l.name(), limit, "connection refused: limit reached");
        refused();
        let code = if v5 { reason::QUOTA_EXCEEDED } else { reason::V4_SERVER_UNAVAILABLE };
        refuse(&mut stream, connect.protocol, code).await;
        return;
    }
    if let Some(code) = refusal(&shard, &connect) {
        tracing::debug!(client_id = %short(&connect.client_id), code, "CONNECT refused");
        refused();
        refuse(&mut stream, connect.protocol, code).await;
        return;
    }
    if v5 && connect.properties.authentication_method.is_some() {
        // Boxed: rare, and its state should not make every handshake larger.
        match Box::pin(authenticate(&shard, &mut stream, &mut buf, &connect)).await {
            Ok(data) => connect.properties.authentication_data = data.map(bytes::Bytes::from),
            Err(Some(code)) => {
                tracing::info!(client_id = %short(&connect.client_id), code, "authentication failed");
                refused();
                refuse(&mut stream, Protocol::V5, code).await;
                return;
            }
            Err(None) => return,
        }
    }
    let mut assigned = false;
    if connect.client_id.is_empty() {
        connect.client_id = assign_client_id(&shard);
        assigned = true;
    }
    let identity = stream.identity();
    let principal = match Box::pin(admit(&shard, &connect, peer, identity.as_deref(), listener)).await {
        Ok(p) => p,
        Err(code) => {
            tracing::info!(client_id = %short(&connect.client_id), peer = ?peer, code, "CONNECT not authorized");
            refused();
            refuse(&mut stream, connect.protocol, code).await;
            return;
        }
    };
    Counters::bump(&shard.counters.connections_accepted);
    let target = shard.router.owner(connect.client_id.as_bytes());
    let rest = buf.split().freeze();
    let stream = match stream.detach() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "connection could not be handed over");
            return;
        }
    };
    let h = Box::new(Handoff { stream, connect, rest, admitted, assigned, principal });
    let mut out = shard.outgoing();
    shard.to_owner(&mut shard.st.borrow_mut(), target, Ingress::Handoff(h), &mut out);
    out.flush(&shard.mesh).await;
}

/// Who the client is (by the listener's [`Authenticator`](crate::auth::Authenticator), or
/// as it says) and whether it may leave its will; Err: the CONNACK code refusing it.
/// Addresses that failed repeatedly wait first; slow checks run on the blocking pool.
async fn admit(
    shard: &Shard,
    c: &Connect,
    peer: Option<SocketAddr>,
    identity: Option<&str>,
    listener: usize,
) -> Result<Principal, u8> {
    let v5 = c.protocol == Protocol::V5;
    let creds = Credentials {
        client_id: &c.client_id,
        username: c.username.as_deref(),
        password: c.password.as_deref(),
        peer,
        method: c.properties.authentication_method.as_deref(),
        identity,
    };
    let mut principal = match shard.cfg.authenticator_for(listener) {
        Some(a) => {
            let ip = peer.map(|p| p.ip());
            if let Some(ip) = ip {
                let wait = shard.node.throttle.delay(ip, Instant::now());
                if !wait.is_zero() {
                    glommio::timer::sleep(wait).await;
                }
            }
            let verdict = if a.slow(&creds) {
                // A turn within the connect timeout, or the server is busy: a storm of
                // slow checks queues no longer than that.
                let turn = async { Some(shard.slow_auth.acquire_permit(1).await) };
                let busy = async {
                    glommio::timer::sleep(shard.cfg.limits.connect_timeout).await;
                    None
                };
                let Some(_turn) = futures_lite::future::or(turn, busy).await else {
                    tracing::info!(client_id = %short(&c.client_id), peer = ?peer, "CONNECT refused: too many password checks waiting");
                    return Err(if v5 { reason::SERVER_BUSY } else { reason::V4_SERVER_UNAVAILABLE });
                };
                let (a, owned) = (a.clone(), OwnedCredentials::new(&creds));
                glommio::executor().spawn_blocking(move || a.authenticate(&owned.borrow())).await
            } else {
                a.authenticate(&creds)
            };
            match verdict {
                Ok(p) => {
                    if let Some(ip) = ip {
                        shard.node.throttle.succeeded(ip);
                    }
                    p
                }
                Err(r) => {
                    Counters::bump(&shard.counters.auth_failures);
                    if let Some(ip) = ip {
                        shard.node.throttle.failed(ip, Instant::now());
                    }
                    let what =
                        if r == Refusal::BadCredentials { "bad user name or password" } else { "not authorized" };
                    tracing::info!(client_id = %short(&c.client_id), peer = ?peer, listener = %shard.cfg.listeners[listener].name(), "authentication failed: {what}");
                    return Err(r.connack_code(v5));
                }
            }
        }
        None => anonymous(&creds),
    };
    // The session is found by the CONNECT's client id, whatever the authenticator says.
    if *principal.client_id != *c.client_id {
        principal.client_id = Arc::from(c.client_id.as_str());
    }
    principal.listener = listener;
    principal.peer = peer;
    if let Some(w) = &c.will {
        if !allowed(shard.cfg.authorizer_for(listener), Some(&principal), Action::Will, &w.topic) {
            Counters::bump(&shard.counters.acl_denied);
            return Err(if v5 { reason::NOT_AUTHORIZED } else { reason::V4_NOT_AUTHORIZED });
        }
    }
    Ok(principal)
}

/// The CONNACK code refusing this CONNECT, if it must be refused.
fn refusal(shard: &Shard, c: &Connect) -> Option<u8> {
    let v5 = c.protocol == Protocol::V5;
    // 3.1 has no empty client id (Mosquitto refuses it too); one longer than the 23
    // characters of its spec is accepted, as Mosquitto does.
    if c.client_id.is_empty() && !v5 && (!c.clean_start || c.mqtt31) {
        return Some(reason::V4_IDENTIFIER_REJECTED);
    }
    // A 3.1/3.1.1 client cannot be told a shorter keep-alive: one asking for more than
    // `server_keep_alive`, or for none, is refused as Mosquitto refuses it (return code 2).
    if let (false, Some(max)) = (v5, shard.cfg.limits.server_keep_alive) {
        if c.keep_alive == 0 || c.keep_alive > max {
            tracing::info!(client_id = %short(&c.client_id), keep_alive = c.keep_alive, max, "keep-alive above server_keep_alive");
            return Some(reason::V4_IDENTIFIER_REJECTED);
        }
    }
    if let (true, Some(m)) = (v5, &c.properties.authentication_method) {
        if !shard.cfg.auth_methods.iter().any(|a| a.name() == m) {
            return Some(reason::BAD_AUTHENTICATION_METHOD);
        }
    }
    if let Some(w) = &c.will {
        let topic_ok = std::str::from_utf8(&w.topic).is_ok_and(|t| topic_allowed(&shard.cfg.limits, t));
        if !topic_ok {
            return Some(if v5 { reason::TOPIC_NAME_INVALID } else { reason::V4_NOT_AUTHORIZED });
        }
        // A will said to be UTF-8 that is not (5.0, 3.1.3.2.3).
        if v5 && w.properties.payload_format_indicator == Some(1) && std::str::from_utf8(&w.payload).is_err() {
            return Some(reason::PAYLOAD_FORMAT_INVALID);
        }
    }
    None
}
