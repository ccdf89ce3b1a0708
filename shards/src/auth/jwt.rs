//! JSON Web Tokens as the CONNECT password: HS256 with a shared secret, RS256 or ES256
//! with a public key (PEM `PUBLIC KEY`); `alg` must be the key's (so `none` and every
//! other is refused), `exp` and `nbf` are checked, the user name is a claim (`sub` by
//! default), the client id may have to equal another, and the optional ACL claims
//! (`publish` and `subscribe` filter lists) become the principal's [`Grants`]. A
//! connection whose token expires is disconnected by the sweep (5.0: 0xA0).
//!
//! Used by [`super::ListenerAuth`]; verification is ring's (constant-time for HMAC).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::SubjectPublicKeyInfoDer;

use super::{acl, Action, AuthError};

/// What the token's ACL claims allow (absent claims: that action is not limited).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// Filters the client may publish to (None: not limited by the token).
    pub publish: Option<Vec<String>>,
    /// Filters the client may subscribe with, and receive from (None: not limited).
    pub subscribe: Option<Vec<String>>,
}

impl Grants {
    /// True when the token allows `action` on `topic` (a filter for subscribing).
    pub fn allow(&self, action: Action, topic: &str) -> bool {
        let (list, subscribe) = match action {
            Action::Publish | Action::Will => (&self.publish, false),
            Action::Subscribe => (&self.subscribe, true),
            Action::Read => (&self.subscribe, false),
        };
        list.as_ref().is_none_or(|filters| {
            filters.iter().any(|f| if subscribe { acl::covers(f, topic) } else { acl::matches(f, topic) })
        })
    }
}

/// The key tokens are verified with.
#[derive(Debug)]
enum Key {
    Hs256(ring::hmac::Key),
    Rs256(Vec<u8>),
    Es256(Vec<u8>),
}

/// A listener's JWT settings, with the key read.
#[derive(Debug)]
pub struct JwtCheck {
    key: Key,
    username_claim: String,
    client_id_claim: Option<String>,
    acl_claims: bool,
}

/// A verified token: who it names, until when, and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The user name claim.
    pub username: String,
    /// `exp`, if the token has one.
    pub expires: Option<SystemTime>,
    /// The ACL claims, when honoured and present.
    pub grants: Option<Arc<Grants>>,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The subjectPublicKey bits of a SubjectPublicKeyInfo: what ring verifies with.
fn spki_key(spki: &[u8]) -> Option<Vec<u8>> {
    let (_, body, _) = crate::der::tlv(spki)?;
    let (_, _, rest) = crate::der::tlv(body)?;
    let (tag, bits, _) = crate::der::tlv(rest)?;
    (tag == 0x03 && bits.first() == Some(&0)).then(|| bits[1..].to_vec())
}

fn string_list(v: &serde_json::Value) -> Option<Vec<String>> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
}

impl JwtCheck {
    /// `secret` for HS256, or `public_key` (a PEM file; RSA for RS256, P-256 for ES256).
    pub fn new(
        secret: Option<&str>,
        public_key: Option<&Path>,
        username_claim: &str,
        client_id_claim: Option<&str>,
        acl_claims: bool,
    ) -> Result<Self, AuthError> {
        let key = match (secret, public_key) {
            (Some(s), None) if !s.is_empty() => Key::Hs256(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes())),
            (None, Some(p)) => {
                let spki = SubjectPublicKeyInfoDer::from_pem_file(p).map_err(|e| AuthError::file(p, None, e))?;
                let der = spki.as_ref();
                let bits = spki_key(der).ok_or_else(|| AuthError::file(p, None, "not a public key"))?;
                // The algorithm's OID: rsaEncryption (1.2.840.113549.1.1.1) or
                // id-ecPublicKey (1.2.840.10045.2.1).
                let rsa = der.windows(9).any(|w| w == [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]);
                let ec = der.windows(7).any(|w| w == [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
                match (rsa, ec) {
                    (true, _) => Key::Rs256(bits),
                    (_, true) => Key::Es256(bits),
                    _ => return Err(AuthError::file(p, None, "neither an RSA nor an EC public key")),
                }
            }
            _ => return Err(AuthError::Other("a JWT check needs one of secret and public_key".into())),
        };
        Ok(JwtCheck {
            key,
            username_claim: username_claim.to_owned(),
            client_id_claim: client_id_claim.map(str::to_owned),
            acl_claims,
        })
    }

    /// Verifies `token` for `client_id` at `now`; Err: why not (for the log).
    pub fn verify(&self, token: &[u8], client_id: &str, now: SystemTime) -> Result<Verified, &'static str> {
        let token = std::str::from_utf8(token).map_err(|_| "not text")?;
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("not three parts");
        };
        let header: serde_json::Value =
            serde_json::from_slice(&b64url(h).ok_or("header not base64url")?).map_err(|_| "header not JSON")?;
        let alg = header["alg"].as_str().unwrap_or_default();
        let want = match self.key {
            Key::Hs256(_) => "HS256",
            Key::Rs256(_) => "RS256",
            Key::Es256(_) => "ES256",
        };
        if alg != want {
            return Err("alg is not the configured key's");
        }
        let sig = b64url(sig).ok_or("signature not base64url")?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let ok = match &self.key {
            Key::Hs256(k) => ring::hmac::verify(k, signed, &sig).is_ok(),
            Key::Rs256(k) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k).verify(signed, &sig).is_ok(),
            Key::Es256(k) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k).verify(signed, &sig).is_ok(),
        };
        if !ok {
            return Err("bad signature");
        }
        let claims: serde_json::Value =
            serde_json::from_slice(&b64url(p).ok_or("claims not base64url")?).map_err(|_| "claims not JSON")?;
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let exp = claims.get("exp").map(|v| v.as_f64().ok_or("exp is not a number")).transpose()?;
        if exp.is_some_and(|e| e <= secs) {
            return Err("expired");
        }
        if let Some(nbf) = claims.get("nbf") {
            if nbf.as_f64().ok_or("nbf is not a number")? > secs {
                return Err("not valid yet (nbf)");
            }
        }
        let username = claims[self.username_claim.as_str()].as_str().ok_or("no user name claim")?.to_owned();
        if let Some(c) = &self.client_id_claim {
            if claims[c.as_str()].as_str() != Some(client_id) {
                return Err("the client id claim is not the client id");
            }
        }
        let grants = self.acl_claims.then(|| Grants {
            publish: claims.get("publish").and_then(string_list),
            subscribe: claims.get("subscribe").and_then(string_list),
        });
        let grants = grants.filter(|g| g.publish.is_some() || g.subscribe.is_some()).map(Arc::new);
        let expires = exp.map(|e| UNIX_EPOCH + Duration::from_secs_f64(e.max(0.0)));
        Ok(Verified { username, expires, grants })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(secret: &str, header: &str, claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signed = format!("{}.{}", e.encode(header), e.encode(claims));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        format!("{signed}.{}", e.encode(ring::hmac::sign(&key, signed.as_bytes()).as_ref()))
    }

    #[test]
    fn hs256_tokens_are_checked_for_signature_alg_and_time() {
        let check = JwtCheck::new(Some("s3cret"), None, "sub", Some("cid"), true).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let good = hs256("s3cret", h, r#"{"sub":"dev","cid":"c1","exp":1000100,"publish":["d/#"]}"#);
        let v = check.verify(good.as_bytes(), "c1", now).unwrap();
        assert_eq!(v.username, "dev");
        assert_eq!(v.expires, Some(UNIX_EPOCH + Duration::from_secs(1_000_100)));
        let g = v.grants.unwrap();
        assert!(g.allow(Action::Publish, "d/x") && !g.allow(Action::Publish, "e/x") && g.allow(Action::Subscribe, "#"));
        let err = |t: &str, id: &str| check.verify(t.as_bytes(), id, now).unwrap_err();
        assert_eq!(err(&good, "c2"), "the client id claim is not the client id");
        assert_eq!(err(&hs256("other", h, r#"{"sub":"dev","cid":"c1"}"#), "c1"), "bad signature");
        assert_eq!(
            err(&hs256("s3cret", r#"{"alg":"none"}"#, r#"{"sub":"dev","cid":"c1"}"#), "c1"),
            "alg is not the configured key's"
        );
        assert_eq!(err(&hs256("s3cret", h, r#"{"sub":"dev","cid":"c1","exp":999999}"#), "c1"), "expired");
        assert_eq!(err(&hs256("s3cret", h, r#"{"sub":"dev","cid":"c1","nbf":1000500}"#), "c1"), "not valid yet (nbf)");
        assert_eq!(err("a.b", "c1"), "not three parts");
    }
}
