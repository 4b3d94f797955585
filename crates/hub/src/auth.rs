//! Client authentication (JWT, algorithm pinned per key) and room authorization.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{Auth, ConfigError, RoomRule, Rooms};

/// Who a client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`), or `anonymous-<random>`.
    pub sub: String,
    /// When the token expires (seconds since the epoch).
    pub exp: Option<u64>,
    /// Rooms the token grants (`rooms` claim), joined at connect.
    pub rooms: Vec<String>,
    /// No token.
    pub anonymous: bool,
}

/// Why a client was refused: a stable [`code`](AuthError::code) for programs and a short
/// message for people (never the parser's internals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token and anonymous clients are not admitted.
    #[error("a token is required")]
    Missing,
    /// Not a JWT: not three base64url parts, or a header or claims that are not JSON of the
    /// expected shape.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not verify with the key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed (with no leeway at the handshake: the hub would disconnect at once).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim (`sub`, `exp`) is missing, or `aud`/`iss` do not match.
    #[error("the token's claims are not accepted")]
    Claims,
    /// The token's algorithm or `kid` matches no configured key (security: A1).
    #[error("the token's key or algorithm is not accepted")]
    KeyNotAccepted,
}

impl AuthError {
    /// A stable, machine-readable reason: `token_missing`, `token_malformed`,
    /// `token_bad_signature`, `token_expired`, `token_not_yet_valid`, `token_claims`,
    /// `token_key_not_accepted`.
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Malformed => "token_malformed",
            AuthError::BadSignature => "token_bad_signature",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::Claims => "token_claims",
            AuthError::KeyNotAccepted => "token_key_not_accepted",
        }
    }

    /// `{code, message}`, as refusals carry it.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({"code": self.code(), "message": self.to_string()})
    }

    fn from_jwt(e: &jsonwebtoken::errors::Error) -> AuthError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => AuthError::BadSignature,
            K::ExpiredSignature => AuthError::Expired,
            K::ImmatureSignature => AuthError::NotYetValid,
            K::MissingRequiredClaim(_) | K::InvalidAudience | K::InvalidIssuer | K::InvalidSubject => AuthError::Claims,
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => AuthError::KeyNotAccepted,
            _ => AuthError::Malformed,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: Option<u64>,
    #[serde(default)]
    rooms: Vec<String>,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens against the configured keys.
pub struct Verifier {
    keys: Vec<Key>,
    anonymous: bool,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("keys", &self.keys.len()).field("anonymous", &self.anonymous).finish()
    }
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Verifier {
    /// Loads the keys.
    pub fn new(cfg: &Auth) -> Result<Verifier, ConfigError> {
        let mut keys = Vec::new();
        for k in &cfg.jwt_keys {
            let (alg, key) = match k.alg.as_str() {
                "HS256" => (Algorithm::HS256, DecodingKey::from_secret(k.secret.as_deref().unwrap_or("").as_bytes())),
                "RS256" | "ES256" => {
                    let path = k.public_key_file.clone().unwrap_or_default();
                    let pem = std::fs::read(&path).map_err(|e| ConfigError::File {
                        field: "auth.jwt_keys.public_key_file",
                        path: path.display().to_string(),
                        err: e.to_string(),
                    })?;
                    let parsed = if k.alg == "RS256" {
                        DecodingKey::from_rsa_pem(&pem).map(|d| (Algorithm::RS256, d))
                    } else {
                        DecodingKey::from_ec_pem(&pem).map(|d| (Algorithm::ES256, d))
                    };
                    parsed.map_err(|e| ConfigError::Invalid {
                        field: "auth.jwt_keys.public_key_file",
                        why: e.to_string(),
                    })?
                }
                other => {
                    return Err(ConfigError::Invalid {
                        field: "auth.jwt_keys.alg",
                        why: format!("{other:?} not supported"),
                    })
                }
            };
            keys.push(Key { kid: k.kid.clone(), alg, key });
        }
        Ok(Verifier {
            keys,
            anonymous: cfg.anonymous,
            audience: cfg.audience.clone(),
            issuer: cfg.issuer.clone(),
            leeway: cfg.leeway_s,
        })
    }

    /// Checks a token, or admits an anonymous client when there is none and that is allowed.
    pub fn identify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match token.filter(|t| !t.is_empty()) {
            Some(t) => self.verify(t),
            None if self.anonymous => Ok(Identity {
                sub: format!("anonymous-{:016x}", rand::random::<u64>()),
                exp: None,
                rooms: Vec::new(),
                anonymous: true,
            }),
            None => Err(AuthError::Missing),
        }
    }

    /// Verifies a token: the header's `kid` must name a key (if given) and its `alg` must be
    /// that key's algorithm; `exp` and `sub` are required (security: A1).
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::from_jwt(&e))?;
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())).collect(),
            None => self.keys.iter().collect(),
        };
        let mut last = AuthError::KeyNotAccepted;
        for k in candidates.into_iter().filter(|k| k.alg == header.alg) {
            let mut v = Validation::new(k.alg);
            v.algorithms = vec![k.alg];
            v.leeway = self.leeway;
            v.set_required_spec_claims(&["exp", "sub"]);
            match &self.audience {
                Some(a) => v.set_audience(&[a]),
                None => v.validate_aud = false,
            }
            if let Some(i) = &self.issuer {
                v.set_issuer(&[i]);
            }
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) => {
                    let c = data.claims;
                    // The leeway allows for clock skew on `nbf`, but a token already past its
                    // `exp` would be disconnected the moment it is admitted: refuse it now.
                    if c.exp.is_some_and(|exp| exp <= now_s()) {
                        return Err(AuthError::Expired);
                    }
                    return Ok(Identity { sub: c.sub, exp: c.exp, rooms: c.rooms, anonymous: false });
                }
                Err(e) => last = AuthError::from_jwt(&e),
            }
        }
        Err(last)
    }
}

/// Room authorization from the `[rooms]` rules (security: A5).
#[derive(Debug, Clone)]
pub struct RoomPolicy {
    rules: Vec<RoomRule>,
    /// Rooms per client.
    pub max_rooms: usize,
    max_name: usize,
}

/// What a client asks to do with a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomAction {
    /// Join (subscribe).
    Join,
    /// Publish.
    Publish,
}

impl RoomPolicy {
    /// From the config.
    pub fn new(cfg: &Rooms) -> Self {
        RoomPolicy { rules: cfg.rules.clone(), max_rooms: cfg.max_rooms_per_client, max_name: cfg.max_room_name }
    }

    /// Whether `room` is a usable room name; `Err` says what is wrong with it.
    pub fn check_name(&self, room: &str) -> Result<(), String> {
        if room.is_empty() {
            return Err("no room given".into());
        }
        if room.len() > self.max_name {
            return Err(format!(
                "the room name is {} bytes, longer than {} (rooms.max_room_name)",
                room.len(),
                self.max_name
            ));
        }
        if room.chars().any(char::is_control) {
            return Err("the room name contains control characters".into());
        }
        Ok(())
    }

    /// Whether `who` may do `action` on `room`. Rooms granted by the token's `rooms` claim
    /// may always be joined.
    pub fn allows(&self, who: &Identity, room: &str, action: RoomAction) -> bool {
        if room.is_empty() || room.len() > self.max_name || room.chars().any(char::is_control) {
            return false;
        }
        if action == RoomAction::Join && who.rooms.iter().any(|r| r == room) {
            return true;
        }
        for r in &self.rules {
            let pattern = r.pattern.replace("{sub}", &who.sub);
            let matched = match pattern.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => room == pattern,
            };
            if matched {
                return match action {
                    RoomAction::Join => r.join,
                    RoomAction::Publish => r.publish,
                };
            }
        }
        false
    }
}

/// Compares secrets in constant time (security: A4).
pub fn secret_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Length is not secret; the bytes are compared without early exit.
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::config::JwtKey;

    const SECRET: &str = "0123456789abcdef-test-secret";

    fn verifier() -> Verifier {
        let cfg = Auth {
            anonymous: false,
            jwt_keys: vec![JwtKey {
                kid: None,
                alg: "HS256".into(),
                secret: Some(SECRET.into()),
                public_key_file: None,
            }],
            audience: None,
            issuer: None,
            leeway_s: 0,
        };
        Verifier::new(&cfg).unwrap()
    }

    fn token(alg: Algorithm, claims: serde_json::Value, key: &[u8]) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
    }

    #[test]
    fn a1_alg_none_wrong_alg_and_unknown_kid_are_refused() {
        let v = verifier();
        let ok =
            token(Algorithm::HS256, json!({"sub": "u1", "exp": now_s() + 60, "rooms": ["chat:x"]}), SECRET.as_bytes());
        assert_eq!(v.verify(&ok).unwrap().rooms, vec!["chat:x".to_string()]);
        // alg: none (unsigned).
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"sub":"u1","exp":{}}}"#, now_s() + 60))
        );
        assert!(v.verify(&none).is_err());
        // Another algorithm than the key's (HS384 with the same secret).
        let other = token(Algorithm::HS384, json!({"sub": "u1", "exp": now_s() + 60}), SECRET.as_bytes());
        assert_eq!(v.verify(&other), Err(AuthError::KeyNotAccepted));
        // A kid no key has.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rogue".into());
        let kid = encode(&h, &json!({"sub": "u1", "exp": now_s() + 60}), &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap();
        assert_eq!(v.verify(&kid), Err(AuthError::KeyNotAccepted));
        // Wrong signature, expired, no exp, no sub.
        assert!(v
            .verify(&token(Algorithm::HS256, json!({"sub": "u1", "exp": now_s() + 60}), b"another-secret-0123456"))
            .is_err());
        assert!(v
            .verify(&token(Algorithm::HS256, json!({"sub": "u1", "exp": now_s() - 10}), SECRET.as_bytes()))
            .is_err());
        assert!(v.verify(&token(Algorithm::HS256, json!({"sub": "u1"}), SECRET.as_bytes())).is_err());
        assert!(v.verify(&token(Algorithm::HS256, json!({"exp": now_s() + 60}), SECRET.as_bytes())).is_err());
        assert_eq!(v.identify(None), Err(AuthError::Missing));
    }

    #[test]
    fn a5_room_rules() {
        let p = RoomPolicy::new(&crate::config::Config::load(None, &Default::default()).unwrap().rooms);
        let u = Identity { sub: "alice".into(), exp: None, rooms: vec!["vip".into()], anonymous: false };
        assert!(p.allows(&u, "chat:lobby", RoomAction::Join));
        assert!(p.allows(&u, "chat:lobby", RoomAction::Publish));
        assert!(p.allows(&u, "user:alice", RoomAction::Join));
        assert!(!p.allows(&u, "user:bob", RoomAction::Join));
        assert!(!p.allows(&u, "user:alice", RoomAction::Publish));
        assert!(p.allows(&u, "news", RoomAction::Join));
        assert!(!p.allows(&u, "news", RoomAction::Publish));
        assert!(p.allows(&u, "vip", RoomAction::Join));
        assert!(!p.allows(&u, "secret", RoomAction::Join));
        assert!(!p.allows(&u, &format!("chat:{}", "x".repeat(200)), RoomAction::Join));
    }

    #[test]
    fn a4_secret_compare() {
        assert!(secret_eq("abcdefghijklmnop", "abcdefghijklmnop"));
        assert!(!secret_eq("abcdefghijklmnop", "abcdefghijklmnoq"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
