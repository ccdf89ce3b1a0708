//! The file-backed authenticator and authorizer a listener is configured with:
//! [`ListenerAuth`] (`allow_anonymous`, a password file, the TLS certificate's identity as
//! the user name) and [`FileAuthorizer`] (an ACL file). Both re-read their file on
//! [`Reload::reload`] (SIGHUP, or the file changed); a file that no longer reads keeps the
//! old rules.
//!
//! Built by the binary from the configuration; called by the front's handshake and, for
//! the ACL, wherever the engine authorizes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::acl::AclFile;
use super::jwt::JwtCheck;
use super::passwd::PasswordFile;
use super::{Action, AuthError, Authenticator, Authorizer, Credentials, Principal, Refusal};

/// Something read from files that can be read again while the broker runs.
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// What it is, for the log (`password file /etc/ringmq/passwd`).
    fn what(&self) -> String;
    /// Reads the files again; on an error the old contents stay.
    fn reload(&self) -> Result<(), String>;
    /// True when a file's modification time differs from the last read's.
    fn changed(&self) -> bool;
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A file's parsed contents, replaced whole on reload.
#[derive(Debug)]
struct Watched<T> {
    path: PathBuf,
    current: RwLock<(Arc<T>, Option<SystemTime>)>,
    generation: AtomicU64,
    load: fn(&Path) -> Result<T, AuthError>,
}

impl<T> Watched<T> {
    fn new(path: &Path, load: fn(&Path) -> Result<T, AuthError>) -> Result<Self, AuthError> {
        let value = load(path)?;
        let at = stamp(path);
        Ok(Watched {
            path: path.to_owned(),
            current: RwLock::new((Arc::new(value), at)),
            generation: AtomicU64::new(1),
            load,
        })
    }

    fn get(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    fn reload(&self) -> Result<(), String> {
        let value = (self.load)(&self.path).map_err(|e| e.to_string())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(value), stamp(&self.path));
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn changed(&self) -> bool {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1 != stamp(&self.path)
    }
}

/// A listener's authentication: who may connect through it, and as whom.
#[derive(Debug)]
pub struct ListenerAuth {
    allow_anonymous: bool,
    identity_as_username: bool,
    passwd: Option<Watched<PasswordFile>>,
    jwt: Option<JwtCheck>,
}

impl ListenerAuth {
    /// `allow_anonymous`: clients without a user name are let in; `password_file`: user
    /// names and passwords checked against it (without one, a user name is taken as given,
    /// under `allow_anonymous`); `identity_as_username`: the client certificate's identity
    /// is the user name and no password is asked for.
    pub fn new(
        allow_anonymous: bool,
        password_file: Option<&Path>,
        identity_as_username: bool,
    ) -> Result<Self, AuthError> {
        let passwd = password_file.map(|p| Watched::new(p, PasswordFile::load)).transpose()?;
        Ok(ListenerAuth { allow_anonymous, identity_as_username, passwd, jwt: None })
    }

    /// Also takes JWTs as passwords (a password with two dots is read as one).
    pub fn with_jwt(mut self, check: JwtCheck) -> Self {
        self.jwt = Some(check);
        self
    }

    /// Users in the password file (0 without one).
    pub fn users(&self) -> usize {
        self.passwd.as_ref().map_or(0, |p| p.get().len())
    }
}

impl Authenticator for ListenerAuth {
    fn authenticate(&self, c: &Credentials<'_>) -> Result<Principal, Refusal> {
        let principal = |username: Option<&str>| Principal::new(c.client_id, username, c.peer);
        if self.identity_as_username {
            // As Mosquitto: no certificate identity, no entry; the password is not asked.
            return match c.identity {
                Some(id) => Ok(principal(Some(id))),
                None => Err(Refusal::NotAuthorized),
            };
        }
        if let (Some(check), Some(token)) = (&self.jwt, c.password) {
            if token.iter().filter(|b| **b == b'.').count() == 2 {
                return match check.verify(token, c.client_id, SystemTime::now()) {
                    Ok(v) => {
                        let mut p = principal(Some(&v.username));
                        p.expires = v.expires;
                        p.grants = v.grants;
                        Ok(p)
                    }
                    Err(why) => {
                        tracing::debug!(why, "JWT refused");
                        Err(Refusal::BadCredentials)
                    }
                };
            }
        }
        match (c.username, &self.passwd) {
            (Some(user), Some(file)) => match c.password {
                Some(pw) if file.get().check(user, pw) => Ok(principal(Some(user))),
                _ => Err(Refusal::BadCredentials),
            },
            (user, _) if self.allow_anonymous => Ok(principal(user)),
            (Some(_), None) => Err(Refusal::NotAuthorized),
            (None, _) => Err(Refusal::NotAuthorized),
        }
    }

    fn slow(&self, c: &Credentials<'_>) -> bool {
        match (c.username, &self.passwd) {
            (Some(user), Some(file)) if !self.identity_as_username => file.get().slow(user),
            _ => false,
        }
    }
}

impl Reload for ListenerAuth {
    fn what(&self) -> String {
        self.passwd.as_ref().map_or_else(|| "authentication".into(), |p| format!("password file {}", p.path.display()))
    }

    fn reload(&self) -> Result<(), String> {
        self.passwd.as_ref().map_or(Ok(()), Watched::reload)
    }

    fn changed(&self) -> bool {
        self.passwd.as_ref().is_some_and(Watched::changed)
    }
}

/// A listener's ACL file as an [`Authorizer`].
#[derive(Debug)]
pub struct FileAuthorizer {
    acl: Watched<AclFile>,
}

impl FileAuthorizer {
    /// Reads the ACL file.
    pub fn new(path: &Path) -> Result<Self, AuthError> {
        Ok(FileAuthorizer { acl: Watched::new(path, AclFile::load)? })
    }

    /// Rules read.
    pub fn lines(&self) -> usize {
        self.acl.get().lines()
    }
}

impl Authorizer for FileAuthorizer {
    fn allow(&self, who: &Principal, action: Action, topic: &str) -> bool {
        self.acl.get().allow(who.username.as_deref(), &who.client_id, action, topic)
    }

    fn generation(&self) -> u64 {
        self.acl.generation.load(Ordering::Relaxed)
    }

    fn reads_all(&self, who: &Principal, filter: &str) -> bool {
        self.acl.get().reads_all(who.username.as_deref(), &who.client_id, filter)
    }
}

impl Reload for FileAuthorizer {
    fn what(&self) -> String {
        format!("ACL file {}", self.acl.path.display())
    }

    fn reload(&self) -> Result<(), String> {
        self.acl.reload()
    }

    fn changed(&self) -> bool {
        self.acl.changed()
    }
}
