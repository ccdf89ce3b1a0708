//! Password files as `mosquitto_passwd` writes them, read unchanged: one `user:hash` per
//! line, the hash `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512, Mosquitto 2.0's),
//! `$6$SALT$HASH` (SHA-512 of password and salt, Mosquitto 1.x's), or a PHC
//! `$argon2id$...` string. New entries are argon2id ([`hash_password`], [`set_entry`]:
//! `ringmq passwd`).
//!
//! Checking is constant-time in the hash. argon2 takes milliseconds, so an entry that is
//! argon2 is [`PasswordFile::slow`]: the handshake checks it on the shard's blocking pool,
//! not on the shard. Used by [`super::ListenerAuth`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;

use super::AuthError;

/// One user's stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stored {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 { iterations: NonZeroU32, salt: Vec<u8>, hash: Vec<u8> },
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    Argon2(String),
}

/// A password file, read.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    path: PathBuf,
    users: HashMap<String, Stored>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn parse_hash(h: &str) -> Option<Stored> {
    if h.starts_with("$argon2") {
        return PasswordHash::new(h).ok().map(|_| Stored::Argon2(h.to_owned()));
    }
    let parts: Vec<&str> = h.split('$').collect();
    match parts.as_slice() {
        ["", "7", iterations, salt, hash] => {
            Some(Stored::Pbkdf2 { iterations: iterations.parse().ok()?, salt: b64(salt)?, hash: b64(hash)? })
        }
        ["", "6", salt, hash] => Some(Stored::Sha512 { salt: b64(salt)?, hash: b64(hash)? }),
        _ => None,
    }
}

/// Equal in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

impl PasswordFile {
    /// Reads the file; a line that is neither empty, a `#` comment nor `user:hash` with a
    /// hash of a known form is an error naming the file and the line.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::file(path, None, e))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(AuthError::file(path, Some(n + 1), "expected user:hash"));
            };
            let Some(stored) = parse_hash(hash) else {
                return Err(AuthError::file(path, Some(n + 1), "unknown password hash (want $7$, $6$ or $argon2id$)"));
            };
            users.insert(user.to_owned(), stored);
        }
        Ok(PasswordFile { path: path.to_owned(), users })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when it has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// True when checking this user's password is slow (argon2: milliseconds).
    pub fn slow(&self, user: &str) -> bool {
        matches!(self.users.get(user), Some(Stored::Argon2(_)))
    }

    /// True when `password` is `user`'s.
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            None => false,
            Some(Stored::Pbkdf2 { iterations, salt, hash }) => {
                ring::pbkdf2::verify(ring::pbkdf2::PBKDF2_HMAC_SHA512, *iterations, salt, password, hash).is_ok()
            }
            Some(Stored::Sha512 { salt, hash }) => {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                same(ctx.finish().as_ref(), hash)
            }
            Some(Stored::Argon2(phc)) => {
                PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password, &h).is_ok())
            }
        }
    }
}

/// A new argon2id entry's hash for `password` (argon2's default parameters, a random salt).
pub fn hash_password(password: &[u8]) -> Result<String, AuthError> {
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| AuthError::Other("no random numbers for the salt".into()))?;
    let salt = SaltString::encode_b64(&raw).map_err(|e| AuthError::Other(e.to_string()))?;
    let hash = argon2::Argon2::default().hash_password(password, &salt).map_err(|e| AuthError::Other(e.to_string()))?;
    Ok(hash.to_string())
}

/// Adds `user` to the file (made if missing) or replaces its entry, keeping every other
/// line as it was; written to a temporary file and renamed over the old one.
pub fn set_entry(path: &Path, user: &str, password: &[u8]) -> Result<(), AuthError> {
    if user.is_empty() || user.contains(':') || user.contains('\n') {
        return Err(AuthError::Other(format!("user name {user:?}: not empty, no ':' or newline")));
    }
    let hash = hash_password(password)?;
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(AuthError::file(path, None, e)),
    };
    let mut out = String::new();
    let mut replaced = false;
    for line in old.lines() {
        if line.split_once(':').is_some_and(|(u, _)| u == user) {
            if !replaced {
                out.push_str(&format!("{user}:{hash}\n"));
                replaced = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !replaced {
        out.push_str(&format!("{user}:{hash}\n"));
    }
    let tmp = path.with_extension("tmp-ringmq");
    std::fs::write(&tmp, out).map_err(|e| AuthError::file(&tmp, None, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AuthError::file(path, None, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hash_form_checks_its_password_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("ringmq-passwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // $6$: SHA-512("secret" || salt), made here the way Mosquitto 1.x made it.
        let salt = b"0123456789ab";
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
        ctx.update(b"secret");
        ctx.update(salt);
        let e = base64::engine::general_purpose::STANDARD;
        let six = format!("$6${}${}", e.encode(salt), e.encode(ctx.finish().as_ref()));
        let mut seven = [0u8; 64];
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA512, NonZeroU32::new(101).unwrap(), salt, b"pw7", &mut seven);
        let seven = format!("$7$101${}${}", e.encode(salt), e.encode(seven));
        let file = dir.join("passwd");
        std::fs::write(&file, format!("# users\nold:{six}\nnew:{seven}\n")).unwrap();
        set_entry(&file, "argon", b"pwA").unwrap();
        let f = PasswordFile::load(&file).unwrap();
        assert_eq!(f.len(), 3);
        assert!(f.check("old", b"secret") && !f.check("old", b"Secret"));
        assert!(f.check("new", b"pw7") && !f.check("new", b"pw"));
        assert!(f.check("argon", b"pwA") && !f.check("argon", b"pwB"));
        assert!(f.slow("argon") && !f.slow("new"));
        assert!(!f.check("nobody", b"secret"));
        set_entry(&file, "old", b"changed").unwrap();
        let f = PasswordFile::load(&file).unwrap();
        assert!(f.check("old", b"changed") && !f.check("old", b"secret") && f.check("new", b"pw7"));
        std::fs::write(&file, "user:plaintext\n").unwrap();
        let err = PasswordFile::load(&file).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
