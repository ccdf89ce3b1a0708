//! Authentication and authorization seams: who a client is ([`Authenticator`] at CONNECT,
//! answering with a [`Principal`] or a refusal) and what it may do ([`Authorizer`]: publish,
//! subscribe, receive a message, leave a will), plus the 5.0 enhanced authentication hook
//! ([`AuthMethod`]) that runs its challenge exchange before either; a connection's cache
//! of decisions ([`Decisions`]).
//!
//! Their file-backed implementations, Mosquitto-compatible: [`ListenerAuth`] (a
//! listener's `allow_anonymous`, password file and certificate identity; [`passwd`]) and
//! [`FileAuthorizer`] (an ACL file, [`acl`]), both reloadable.
//!
//! A leaf: the front calls these (the handshake before CONNACK, the client path before
//! routing a PUBLISH, accepting a SUBSCRIBE filter), the engine before a delivery; the
//! defaults allow everything. Implementations must not block: they run on a shard (an
//! authenticator says when a check is [`Authenticator::slow`], and the handshake runs it on
//! the shard's blocking pool instead).

pub mod acl;
mod file;
pub mod jwt;
pub mod passwd;
pub mod throttle;

pub use file::{FileAuthorizer, ListenerAuth, Reload};

/// One step of an enhanced authentication exchange (MQTT 5.0, 4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this challenge (AUTH 0x18) and wait for the client's answer.
    Continue(Vec<u8>),
    /// Authenticated; the CONNACK carries this data, if any.
    Success(Option<Vec<u8>>),
    /// Refused with this CONNACK reason code (e.g. 0x87 not authorized).
    Fail(u8),
}

/// An enhanced authentication method: the hook where SCRAM, Kerberos or a custom method
/// plugs in. One instance serves every connection; the state of one exchange is the
/// `Vec<u8>` it returns from `start` and gets back at each `step`. Runs on the accepting
/// shard during the CONNECT handshake (bounded in rounds and by `connect_timeout`), so
/// it must not block.
pub trait AuthMethod: Send + Sync + std::fmt::Debug {
    /// The method's name, as clients send it in the Authentication Method property.
    fn name(&self) -> &str;
    /// First step, from the CONNECT's client id and Authentication Data.
    fn start(&self, client_id: &str, data: Option<&[u8]>) -> (AuthStep, Vec<u8>);
    /// Next step, from the client's AUTH (0x18) Authentication Data.
    fn step(&self, state: &mut Vec<u8>, data: Option<&[u8]>) -> AuthStep;
}

use std::net::SocketAddr;
use std::sync::Arc;

/// What a client presents at CONNECT, for an [`Authenticator`] to judge.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The client id (after the broker assigned one, if the client sent none).
    pub client_id: &'a str,
    /// The User Name field, if present.
    pub username: Option<&'a str>,
    /// The Password field, if present (binary in 5.0).
    pub password: Option<&'a [u8]>,
    /// The client's address (the socket's peer, when the transport knows one).
    pub peer: Option<SocketAddr>,
    /// The 5.0 enhanced authentication method that already succeeded, if any.
    pub method: Option<&'a str>,
    /// Who the client's verified TLS certificate names (its CN, or a SAN), if any.
    pub identity: Option<&'a str>,
}

/// [`Credentials`] that own their parts: what a slow check takes to the blocking pool.
#[derive(Debug, Clone, Default)]
pub struct OwnedCredentials {
    /// See [`Credentials::client_id`].
    pub client_id: String,
    /// See [`Credentials::username`].
    pub username: Option<String>,
    /// See [`Credentials::password`].
    pub password: Option<Vec<u8>>,
    /// See [`Credentials::peer`].
    pub peer: Option<SocketAddr>,
    /// See [`Credentials::method`].
    pub method: Option<String>,
    /// See [`Credentials::identity`].
    pub identity: Option<String>,
}

impl OwnedCredentials {
    /// Copies borrowed credentials.
    pub fn new(c: &Credentials<'_>) -> Self {
        OwnedCredentials {
            client_id: c.client_id.to_owned(),
            username: c.username.map(str::to_owned),
            password: c.password.map(<[u8]>::to_vec),
            peer: c.peer,
            method: c.method.map(str::to_owned),
            identity: c.identity.map(str::to_owned),
        }
    }

    /// Borrows them back.
    pub fn borrow(&self) -> Credentials<'_> {
        Credentials {
            client_id: &self.client_id,
            username: self.username.as_deref(),
            password: self.password.as_deref(),
            peer: self.peer,
            method: self.method.as_deref(),
            identity: self.identity.as_deref(),
        }
    }
}

/// Who a connection is, once authenticated: what an [`Authorizer`] judges by. Kept by
/// the connection's session for its whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The client id.
    pub client_id: Arc<str>,
    /// The user name it authenticated as, if any.
    pub username: Option<Arc<str>>,
    /// Its address at CONNECT (the PROXY protocol's, behind a load balancer).
    pub peer: Option<SocketAddr>,
    /// The listener it connected through (its index in the node's listeners): whose
    /// authorizer judges it.
    pub listener: usize,
    /// When its credentials end (a JWT's `exp`): the connection is closed then (5.0:
    /// DISCONNECT 0xA0).
    pub expires: Option<std::time::SystemTime>,
    /// What its token's ACL claims allow, on top of the listener's authorizer.
    pub grants: Option<Arc<jwt::Grants>>,
}

impl Principal {
    /// A principal with nothing but its client id, user name and address.
    pub fn new(client_id: &str, username: Option<&str>, peer: Option<SocketAddr>) -> Self {
        Principal {
            client_id: Arc::from(client_id),
            username: username.map(Arc::from),
            peer,
            listener: 0,
            expires: None,
            grants: None,
        }
    }
}

/// Why a CONNECT is refused; the front answers it in the client's protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong user name or password: 5.0 CONNACK 0x86, 3.1.1 return code 4.
    BadCredentials,
    /// Known but not allowed to connect: 5.0 CONNACK 0x87, 3.1.1 return code 5.
    NotAuthorized,
}

impl Refusal {
    /// The CONNACK code: a 5.0 reason code, or a 3.1/3.1.1 return code.
    pub fn connack_code(self, v5: bool) -> u8 {
        use proto::reason;
        match (self, v5) {
            (Refusal::BadCredentials, true) => reason::BAD_USER_NAME_OR_PASSWORD,
            (Refusal::NotAuthorized, true) => reason::NOT_AUTHORIZED,
            (Refusal::BadCredentials, false) => reason::V4_BAD_USER_NAME_OR_PASSWORD,
            (Refusal::NotAuthorized, false) => reason::V4_NOT_AUTHORIZED,
        }
    }
}

/// Decides at CONNECT who a client is. Runs on the accepting shard during the handshake,
/// before the hand-off; must answer without blocking.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The principal the connection acts as, or why it is refused.
    fn authenticate(&self, c: &Credentials<'_>) -> Result<Principal, Refusal>;
    /// True when judging `c` takes long (argon2: milliseconds): the handshake then calls
    /// `authenticate` on the shard's blocking pool, a few at a time, not on the shard.
    fn slow(&self, c: &Credentials<'_>) -> bool {
        let _ = c;
        false
    }
}

/// What a principal may do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish to this topic name.
    Publish,
    /// Subscribe with this filter.
    Subscribe,
    /// Receive a message on this topic name (live, shared or retained).
    Read,
    /// Leave a will on this topic name (checked at CONNECT).
    Will,
}

/// Decides what a principal may do. Called on the session's shard per PUBLISH, per
/// SUBSCRIBE filter, per message delivered, and for the will at CONNECT; must answer
/// without blocking. A connection caches its answers ([`Decisions`]) until
/// [`Authorizer::generation`] changes, so an answer must depend only on the principal,
/// the action and the topic.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// True when `who` may do `action` with `topic` (a topic name, or a filter for
    /// [`Action::Subscribe`]).
    fn allow(&self, who: &Principal, action: Action, topic: &str) -> bool;
    /// Changes whenever the rules change (a reload): cached answers are dropped.
    fn generation(&self) -> u64 {
        0
    }
    /// True when `who` may read every topic `filter` matches: its deliveries then need no
    /// check of their own (until the generation changes). False when unsure.
    fn reads_all(&self, who: &Principal, filter: &str) -> bool {
        let _ = (who, filter);
        false
    }
}

/// A subscription judged readable whole at this generation: none of its deliveries is
/// checked one by one. [`NOT_OPEN`] when it was not (or not judged).
pub type Open = u64;

/// See [`Open`].
pub const NOT_OPEN: Open = u64::MAX;

/// Judges a new subscription: the authorizer's generation if `who` may read every topic
/// of `filter`, else [`NOT_OPEN`].
pub fn open(authorizer: Option<&Arc<dyn Authorizer>>, who: &Principal, filter: &str) -> Open {
    match authorizer {
        Some(a) if a.reads_all(who, filter) => a.generation(),
        _ => NOT_OPEN,
    }
}

/// Answers a connection has had, by topic and action, for the authorizer's generation:
/// the hot path asks the authorizer once per topic. Bounded: past [`Decisions::CAP`]
/// topics it starts over.
#[derive(Debug, Default)]
pub struct Decisions {
    generation: u64,
    /// Per topic, two bits per action: known, allowed.
    map: std::collections::HashMap<Box<[u8]>, u8, ahash::RandomState>,
}

impl Decisions {
    /// Most topics kept.
    pub const CAP: usize = 256;

    /// [`allowed`], remembered.
    pub fn allowed(
        &mut self,
        authorizer: Option<&Arc<dyn Authorizer>>,
        who: Option<&Principal>,
        action: Action,
        topic: &[u8],
    ) -> bool {
        let Some(a) = authorizer else { return true };
        let generation = a.generation();
        if generation != self.generation {
            self.map.clear();
            self.generation = generation;
        }
        let shift = 2 * action as u8;
        if let Some(bits) = self.map.get(topic) {
            if bits >> shift & 1 == 1 {
                return bits >> shift & 2 == 2;
            }
        }
        let v = allowed(authorizer, who, action, topic);
        if self.map.len() >= Self::CAP && !self.map.contains_key(topic) {
            self.map.clear();
        }
        *self.map.entry(Box::from(topic)).or_default() |= (1 | (u8::from(v) << 1)) << shift;
        v
    }
}

/// Why a password or ACL file could not be used: names the file and, when it can, the
/// line.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A file could not be read, or a line of it is wrong.
    #[error("{file}{}: {message}", .line.map(|l| format!(", line {l}")).unwrap_or_default())]
    File {
        /// The file.
        file: String,
        /// The line (1-based), when one is wrong.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Anything else (no randomness for a salt, a bad user name).
    #[error("{0}")]
    Other(String),
}

impl AuthError {
    fn file(path: &std::path::Path, line: Option<usize>, message: impl std::fmt::Display) -> Self {
        AuthError::File { file: path.display().to_string(), line, message: message.to_string() }
    }
}

/// True when `who` may do `action` with `topic` by `authorizer` (always without one; never
/// for a topic that is not UTF-8, which the codec does not let through anyway).
pub fn allowed(
    authorizer: Option<&Arc<dyn Authorizer>>,
    who: Option<&Principal>,
    action: Action,
    topic: &[u8],
) -> bool {
    let (Some(a), Some(who)) = (authorizer, who) else { return authorizer.is_none() };
    std::str::from_utf8(topic).is_ok_and(|t| a.allow(who, action, t))
}

/// The principal of a connection no [`Authenticator`] judged: its client id and the
/// user name it gave.
pub fn anonymous(c: &Credentials<'_>) -> Principal {
    Principal::new(c.client_id, c.username, c.peer)
}

/// Checks a principal's token grants before an inner authorizer (the listener's ACL
/// file, if any): both must allow. Installed on listeners whose JWTs carry ACL claims.
#[derive(Debug)]
pub struct GrantsAuthorizer(pub Option<Arc<dyn Authorizer>>);

impl Authorizer for GrantsAuthorizer {
    fn allow(&self, who: &Principal, action: Action, topic: &str) -> bool {
        who.grants.as_ref().is_none_or(|g| g.allow(action, topic))
            && self.0.as_ref().is_none_or(|a| a.allow(who, action, topic))
    }

    fn generation(&self) -> u64 {
        self.0.as_ref().map_or(0, |a| a.generation())
    }

    fn reads_all(&self, who: &Principal, filter: &str) -> bool {
        let granted = who
            .grants
            .as_ref()
            .is_none_or(|g| g.subscribe.as_ref().is_none_or(|l| l.iter().any(|f| acl::covers(f, filter))));
        granted && self.0.as_ref().is_none_or(|a| a.reads_all(who, filter))
    }
}
