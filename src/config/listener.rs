//! The `[[listener]]` tables of the TOML file, checked into [`ListenerConfig`]s: address,
//! protocol (`mqtt` or `ws`), TLS files, PROXY protocol, connection limit, and the
//! listener's own authentication (`allow_anonymous`, `password_file`,
//! `use_identity_as_username`) and ACL (`acl_file`).
//!
//! Runs once at start-up on the main thread ([`super::settings_from`]); the files are read
//! here, so a missing or broken one is a [`ConfigError::Value`] naming the key
//! (`listener[1].tls.cert`) and what is wrong with the file.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use shards::auth::jwt::JwtCheck;
use shards::auth::{FileAuthorizer, GrantsAuthorizer, ListenerAuth};
use shards::config::{ListenerConfig, ListenerProtocol};
use shards::net::tls::{MinVersion, TlsFiles, TlsSource};
use shards::net::ws::WsSettings;

use super::{bad, ConfigError};

/// One `[[listener]]` of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    /// `ADDR:PORT`.
    pub bind: String,
    /// `"mqtt"` (default) or `"ws"`.
    pub protocol: Option<String>,
    /// WebSocket path (default `/mqtt`).
    pub path: Option<String>,
    /// WebSocket `Origin` values accepted (default: any).
    pub allowed_origins: Option<Vec<String>>,
    /// A PROXY protocol v1/v2 header comes first.
    pub proxy_protocol: Option<bool>,
    /// Connections at once through this listener.
    pub max_connections: Option<usize>,
    /// Clients without a user name may connect (default: true unless a password file or
    /// the certificate identity decides who may).
    pub allow_anonymous: Option<bool>,
    /// A `mosquitto_passwd` (or `ringmq passwd`) file.
    pub password_file: Option<PathBuf>,
    /// A Mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
    /// The client certificate's CN (or first SAN) is the user name; needs `tls.ca` and
    /// `tls.require_client_cert`.
    pub use_identity_as_username: Option<bool>,
    /// `[listener.tls]`.
    pub tls: Option<FileTls>,
    /// `[listener.jwt]`.
    pub jwt: Option<FileJwt>,
}

/// `[listener.jwt]` of the TOML file: JWTs as passwords.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwt {
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// PEM public key (`PUBLIC KEY`): RSA for RS256, P-256 for ES256.
    pub public_key: Option<PathBuf>,
    /// The claim that is the user name (default `sub`).
    pub username_claim: Option<String>,
    /// A claim that must equal the client id (default: none).
    pub client_id_claim: Option<String>,
    /// Honour `publish` and `subscribe` filter-list claims (default true).
    pub acl_claims: Option<bool>,
}

/// `[listener.tls]` of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates for client certificates.
    pub ca: Option<PathBuf>,
    /// Refuse clients without a certificate the CA signed.
    pub require_client_cert: Option<bool>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
}

/// Checks one `[[listener]]` (the `i`-th, from 0) of file `origin`.
pub fn listener(
    f: &FileListener,
    i: usize,
    origin: &str,
    max_packet_size: usize,
) -> Result<ListenerConfig, ConfigError> {
    let key = |k: &str| format!("listener[{i}].{k}");
    let bind = f
        .bind
        .parse()
        .map_err(|_| bad(origin, key("bind"), format!("{:?} is not an ADDR:PORT socket address", f.bind)))?;
    let mut l = ListenerConfig::plain(bind);
    l.protocol = match f.protocol.as_deref().unwrap_or("mqtt") {
        "mqtt" => ListenerProtocol::Mqtt,
        "ws" | "websocket" => {
            let path = f.path.clone().unwrap_or_else(|| "/mqtt".into());
            if !path.starts_with('/') {
                return Err(bad(origin, key("path"), format!("{path:?} must start with /")));
            }
            let allowed_origins = f.allowed_origins.clone().unwrap_or_default();
            ListenerProtocol::WebSocket(WsSettings { path, allowed_origins, max_message: max_packet_size })
        }
        other => return Err(bad(origin, key("protocol"), format!("{other:?}: must be mqtt or ws"))),
    };
    if l.protocol == ListenerProtocol::Mqtt && (f.path.is_some() || f.allowed_origins.is_some()) {
        let k = if f.path.is_some() { "path" } else { "allowed_origins" };
        return Err(bad(origin, key(k), "only for protocol = \"ws\""));
    }
    l.proxy_protocol = f.proxy_protocol.unwrap_or(false);
    if let Some(n) = f.max_connections {
        if n == 0 {
            return Err(bad(origin, key("max_connections"), "must be at least 1"));
        }
        l.max_connections = Some(n);
    }
    let identity = f.use_identity_as_username.unwrap_or(false);
    if let Some(t) = &f.tls {
        let min_version = match t.min_version.as_deref() {
            None | Some("1.2") => MinVersion::Tls12,
            Some("1.3") => MinVersion::Tls13,
            Some(v) => return Err(bad(origin, key("tls.min_version"), format!("{v:?}: must be \"1.2\" or \"1.3\""))),
        };
        let require = t.require_client_cert.unwrap_or(false);
        if require && t.ca.is_none() {
            return Err(bad(origin, key("tls.require_client_cert"), "needs tls.ca to verify client certificates"));
        }
        let alpn: &[u8] = if l.protocol == ListenerProtocol::Mqtt { b"mqtt" } else { b"http/1.1" };
        let files = TlsFiles {
            cert: t.cert.clone(),
            key: t.key.clone(),
            ca: t.ca.clone(),
            require_client_cert: require,
            min_version,
            alpn: vec![alpn.to_vec()],
        };
        let source = Arc::new(TlsSource::new(files).map_err(|e| bad(origin, key("tls"), e.to_string()))?);
        l.reload.push(source.clone());
        l.tls = Some(source);
    }
    if identity && f.tls.as_ref().is_none_or(|t| t.ca.is_none()) {
        return Err(bad(origin, key("use_identity_as_username"), "needs tls.ca (client certificates)"));
    }
    let anonymous = f.allow_anonymous.unwrap_or(f.password_file.is_none() && f.jwt.is_none() && !identity);
    if f.password_file.is_some() || f.jwt.is_some() || identity || !anonymous {
        let mut auth = ListenerAuth::new(anonymous, f.password_file.as_deref(), identity)
            .map_err(|e| bad(origin, key("password_file"), e.to_string()))?;
        if let Some(j) = &f.jwt {
            if j.secret.is_some() == j.public_key.is_some() {
                return Err(bad(
                    origin,
                    key("jwt"),
                    "needs exactly one of secret (HS256) and public_key (RS256, ES256)",
                ));
            }
            let claim = j.username_claim.as_deref().unwrap_or("sub");
            let check = JwtCheck::new(
                j.secret.as_deref(),
                j.public_key.as_deref(),
                claim,
                j.client_id_claim.as_deref(),
                j.acl_claims.unwrap_or(true),
            )
            .map_err(|e| bad(origin, key("jwt"), e.to_string()))?;
            auth = auth.with_jwt(check);
        }
        let auth = Arc::new(auth);
        l.reload.push(auth.clone());
        l.authenticator = Some(auth);
    }
    if let Some(acl) = &f.acl_file {
        let a = Arc::new(FileAuthorizer::new(acl).map_err(|e| bad(origin, key("acl_file"), e.to_string()))?);
        l.reload.push(a.clone());
        l.authorizer = Some(a);
    }
    // A token's ACL claims narrow what the listener's ACL (if any) allows.
    if f.jwt.as_ref().is_some_and(|j| j.acl_claims.unwrap_or(true)) {
        let inner = l.authorizer.take();
        l.authorizer = Some(Arc::new(GrantsAuthorizer(inner)));
    }
    Ok(l)
}
