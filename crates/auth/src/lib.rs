//! Access tokens: who may connect, and to what (`../shared/spec/auth.md`).
//!
//! A token is a JWT signed with one of the operator's keys: an HS256 secret or an EdDSA/ES256
//! key pair, each under a key id so keys can be rotated (several are accepted at once). The
//! [`Verifier`] checks a token's signature with an explicit algorithm per key (never `none`),
//! its `exp` (required, 30 s leeway), `nbf` and `aud` (`switchboard`), and turns its `sb`
//! claim into [`Grants`]. [`mint`] makes tokens (`switchboard token`).
//!
//! The JWT crate has changed its API three times in a year; this crate is the only place that
//! knows it. A token is never part of an error message or a log line.
#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use switchboard_core::{DialectKind, Grant, PeerName, RoomGrant, RoomId};

/// The audience every token must name.
pub const AUDIENCE: &str = "switchboard";

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(30);

/// The longest token looked at. A JWT with the `sb` claim is a few hundred bytes; this bounds
/// the work an unauthenticated client can ask for.
const MAX_TOKEN_BYTES: usize = 4096;

/// How tokens are required (`--auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Tokens are ignored: anyone may connect, as the seed servers allow.
    #[default]
    Off,
    /// A token, when present, must be valid and its grants apply; without one, no limits.
    Optional,
    /// Every socket needs a valid token, and the stats API, dashboard and metrics an admin one.
    Required,
}

impl AuthMode {
    /// Whether tokens are looked at.
    pub fn is_on(self) -> bool {
        self != AuthMode::Off
    }
}

/// One key that signs tokens, under its key id.
#[derive(Clone)]
pub struct AuthKey {
    kid: String,
    material: Material,
}

#[derive(Clone)]
enum Material {
    /// An HS256 shared secret.
    Secret(Vec<u8>),
    /// A PEM public key (SPKI): Ed25519 for EdDSA or P-256 for ES256.
    PublicKey(Vec<u8>),
}

impl AuthKey {
    /// An HS256 secret (`--auth-secret KID=SECRET`).
    pub fn secret(kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        AuthKey {
            kid: kid.into(),
            material: Material::Secret(secret.into()),
        }
    }

    /// A PEM public key, Ed25519 or P-256 (`--auth-public-key KID=PEM_PATH`).
    pub fn public_key_pem(kid: impl Into<String>, pem: impl Into<Vec<u8>>) -> Self {
        AuthKey {
            kid: kid.into(),
            material: Material::PublicKey(pem.into()),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Never prints key material.
impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.material {
            Material::Secret(_) => "HS256 secret (redacted)",
            Material::PublicKey(_) => "public key",
        };
        write!(f, "{}: {kind}", self.kid)
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The secret is empty (the JWT crate refuses those; so do we, up front).
    #[error("key {0}: the secret is empty")]
    EmptySecret(String),
    /// The PEM is neither an Ed25519 nor a P-256 key of the expected kind.
    #[error("key {0}: not an Ed25519 or P-256 {1} key in PEM")]
    BadPem(String, &'static str),
    /// Two keys under one id.
    #[error("key id {0} is given twice")]
    DuplicateKid(String),
    /// Tokens are required or optional, but no key checks them.
    #[error("--auth {0} needs at least one --auth-secret or --auth-public-key")]
    NoKeys(&'static str),
}

/// Why a request is refused. The text is safe to send and to log: it never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is required.
    #[error("a token is required")]
    Missing,
    /// The token's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// Malformed, badly signed, for another audience, not yet valid, or signed by a key this
    /// server does not know; the text says which.
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
    /// A valid token that does not grant this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
}

impl AuthError {
    /// The label `/metrics` counts it under.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::Invalid(_) => "invalid",
            AuthError::Forbidden(_) => "forbidden",
        }
    }

    /// Whether it is a missing or bad token (HTTP 401), rather than a good token that does
    /// not reach this far (403).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, AuthError::Forbidden(_))
    }
}

/// What a valid token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// The token's subject.
    pub subject: String,
    /// The rooms and the name the hub holds joins to.
    pub join: Arc<Grant>,
    /// The dialects the token may connect with; `None`: all.
    pub dialects: Option<Vec<DialectKind>>,
    /// SFU `produce`.
    pub publish: bool,
    /// SFU `consume`.
    pub subscribe: bool,
    /// The broadcast channels it may subscribe to (exact or `prefix*`); `None`: none.
    pub channel: Option<RoomGrant>,
    /// `/pairing`.
    pub pair: bool,
    /// The stats API, the dashboard and metrics when tokens are required.
    pub admin: bool,
    /// When the token expires (seconds since the epoch).
    pub expires: u64,
}

impl Grants {
    /// Whether the token may connect with `dialect`.
    pub fn check_dialect(&self, dialect: DialectKind) -> Result<(), AuthError> {
        match &self.dialects {
            Some(allowed) if !allowed.contains(&dialect) => Err(AuthError::Forbidden(
                "the token does not grant this dialect",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the token may subscribe to broadcast `channel`.
    pub fn check_channel(&self, channel: &RoomId) -> Result<(), AuthError> {
        if self
            .channel
            .as_ref()
            .is_some_and(|rule| rule.allows(channel.as_str()))
        {
            Ok(())
        } else {
            Err(AuthError::Forbidden(
                "the token does not grant this channel",
            ))
        }
    }

    /// Whether the token may pair (`/pairing`).
    pub fn check_pair(&self) -> Result<(), AuthError> {
        if self.pair {
            Ok(())
        } else {
            Err(AuthError::Forbidden("the token does not grant pairing"))
        }
    }

    /// Whether the token may use the admin routes.
    pub fn check_admin(&self) -> Result<(), AuthError> {
        if self.admin {
            Ok(())
        } else {
            Err(AuthError::Forbidden("the token is not an admin token"))
        }
    }
}

/// The claims switchboard reads. Unknown claims are ignored, so issuers may add their own.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    sub: String,
    /// A string or a list of them; checked by the JWT crate (absent: refused as missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
    /// Optional only so that a missing one is reported as missing: validation requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default)]
    sb: Scope,
}

/// The `sb` claim: switchboard's grants. Every grant defaults to "not granted".
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scope {
    /// A room id, `prefix*`, or `*` for every room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The peer's name; the token's `sub` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Dialect names (`conference`, `room-relay`, `query-rooms`, `pairing`, `broadcast`);
    /// absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialects: Option<Vec<String>>,
    /// SFU `produce`.
    pub publish: bool,
    /// SFU `consume`.
    pub subscribe: bool,
    /// A broadcast channel, `prefix*` or `*`.
    pub channel: Option<String>,
    /// `/pairing`.
    pub pair: bool,
    /// The admin routes.
    pub admin: bool,
}

/// Checks tokens against the configured keys.
pub struct Verifier {
    mode: AuthMode,
    keys: HashMap<String, Checker>,
}

struct Checker {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("Verifier")
            .field("mode", &self.mode)
            .field("keys", &kids)
            .finish()
    }
}

impl Verifier {
    /// A verifier for `mode` with `keys`. Off needs none; the others need at least one.
    pub fn new(mode: AuthMode, keys: &[AuthKey]) -> Result<Self, KeyError> {
        match mode {
            AuthMode::Optional if keys.is_empty() => return Err(KeyError::NoKeys("optional")),
            AuthMode::Required if keys.is_empty() => return Err(KeyError::NoKeys("required")),
            _ => {}
        }
        let mut checkers = HashMap::new();
        for key in keys {
            let (decoding, algorithm) = decoding_key(key)?;
            let mut validation = Validation::new(algorithm);
            validation.leeway = LEEWAY.as_secs();
            validation.validate_nbf = true;
            validation.set_audience(&[AUDIENCE]);
            validation.set_required_spec_claims(&["exp", "aud", "sub"]);
            let checker = Checker {
                key: decoding,
                validation,
            };
            if checkers.insert(key.kid.clone(), checker).is_some() {
                return Err(KeyError::DuplicateKid(key.kid.clone()));
            }
        }
        Ok(Verifier {
            mode,
            keys: checkers,
        })
    }

    /// A verifier that lets everyone in (`--auth off`).
    pub fn off() -> Self {
        Verifier {
            mode: AuthMode::Off,
            keys: HashMap::new(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// What a connection with `token` (if it brought one) may do: `None` means no limits
    /// (tokens off, or optional and none given).
    pub fn admit(&self, token: Option<&str>) -> Result<Option<Grants>, AuthError> {
        match (self.mode, token) {
            (AuthMode::Off, _) | (AuthMode::Optional, None) => Ok(None),
            (AuthMode::Required, None) => Err(AuthError::Missing),
            (_, Some(token)) => self.verify(token).map(Some),
        }
    }

    /// Whether `token` opens the admin routes: always when tokens are not required.
    pub fn admit_admin(&self, token: Option<&str>) -> Result<(), AuthError> {
        if self.mode != AuthMode::Required {
            return Ok(());
        }
        self.verify(token.ok_or(AuthError::Missing)?)?.check_admin()
    }

    /// Checks `token` whatever the mode: its key, signature, times and audience, then its
    /// grants' shape.
    pub fn verify(&self, token: &str) -> Result<Grants, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("too long"));
        }
        let kid = self.kid_of(token)?;
        let checker = self
            .keys
            .get(&kid)
            .ok_or(AuthError::Invalid("signed by an unknown key"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &checker.key, &checker.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("wrong algorithm for its key"),
                ErrorKind::InvalidAudience => AuthError::Invalid("not for switchboard (aud)"),
                ErrorKind::ImmatureSignature => AuthError::Invalid("not valid yet (nbf)"),
                ErrorKind::MissingRequiredClaim(_) => {
                    AuthError::Invalid("a required claim is missing (exp, aud, sub)")
                }
                _ => AuthError::Invalid("malformed"),
            })?;
        grants(data.claims)
    }

    /// The key a token names: the header's `kid`, else its `iss` (the contract's key id),
    /// else the one key there is.
    fn kid_of(&self, token: &str) -> Result<String, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed"))?;
        if let Some(kid) = header.kid {
            return Ok(kid);
        }
        #[derive(Deserialize)]
        struct Issuer {
            iss: Option<String>,
        }
        // Only to find the key: everything is checked once the key is known.
        let issuer: Issuer = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| AuthError::Invalid("malformed"))?;
        if let Some(iss) = issuer.iss {
            return Ok(iss);
        }
        match self.keys.keys().next() {
            Some(only) if self.keys.len() == 1 => Ok(only.clone()),
            _ => Err(AuthError::Invalid("names no key (kid or iss)")),
        }
    }
}

fn decoding_key(key: &AuthKey) -> Result<(DecodingKey, Algorithm), KeyError> {
    match &key.material {
        Material::Secret(secret) if secret.is_empty() => {
            Err(KeyError::EmptySecret(key.kid.clone()))
        }
        Material::Secret(secret) => DecodingKey::from_secret(secret)
            .map(|decoding| (decoding, Algorithm::HS256))
            .map_err(|_| KeyError::EmptySecret(key.kid.clone())),
        Material::PublicKey(pem) => DecodingKey::from_ed_pem(pem)
            .map(|decoding| (decoding, Algorithm::EdDSA))
            .or_else(|_| DecodingKey::from_ec_pem(pem).map(|decoding| (decoding, Algorithm::ES256)))
            .map_err(|_| KeyError::BadPem(key.kid.clone(), "public")),
    }
}

/// Reads the claims into grants: the name must be a valid identifier, dialects known ones.
fn grants(claims: Claims) -> Result<Grants, AuthError> {
    let Claims { sub, exp, sb, .. } = claims;
    let name = PeerName::parse(sb.name.as_deref().unwrap_or(&sub))
        .map_err(|_| AuthError::Invalid("its name (sb.name or sub) is not a valid identifier"))?;
    let dialects = match sb.dialects {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|name| DialectKind::from_name(name))
                .collect::<Option<Vec<_>>>()
                .ok_or(AuthError::Invalid("it names an unknown dialect"))?,
        ),
    };
    Ok(Grants {
        subject: sub,
        join: Arc::new(Grant {
            room: sb.room.as_deref().map(RoomGrant::parse),
            name,
        }),
        dialects,
        publish: sb.publish,
        subscribe: sb.subscribe,
        channel: sb.channel.as_deref().map(RoomGrant::parse),
        pair: sb.pair,
        admin: sb.admin,
        expires: exp.unwrap_or_default(),
    })
}

/// A key that signs tokens: an HS256 secret or a PEM private key (Ed25519 or P-256, PKCS#8).
pub struct SigningKey {
    kid: String,
    key: EncodingKey,
    algorithm: Algorithm,
}

impl SigningKey {
    /// An HS256 secret.
    pub fn secret(kid: impl Into<String>, secret: &[u8]) -> Result<Self, KeyError> {
        let kid = kid.into();
        if secret.is_empty() {
            return Err(KeyError::EmptySecret(kid));
        }
        let key =
            EncodingKey::from_secret(secret).map_err(|_| KeyError::EmptySecret(kid.clone()))?;
        Ok(SigningKey {
            kid,
            key,
            algorithm: Algorithm::HS256,
        })
    }

    /// A PEM private key: Ed25519 signs EdDSA tokens, P-256 ES256 ones.
    pub fn private_key_pem(kid: impl Into<String>, pem: &[u8]) -> Result<Self, KeyError> {
        let kid = kid.into();
        let (key, algorithm) = EncodingKey::from_ed_pem(pem)
            .map(|key| (key, Algorithm::EdDSA))
            .or_else(|_| EncodingKey::from_ec_pem(pem).map(|key| (key, Algorithm::ES256)))
            .map_err(|_| KeyError::BadPem(kid.clone(), "private"))?;
        Ok(SigningKey {
            kid,
            key,
            algorithm,
        })
    }
}

/// Makes a token for `subject` with `scope`, valid for `ttl` from now.
pub fn mint(
    key: &SigningKey,
    subject: &str,
    scope: Scope,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    mint_until(
        key,
        subject,
        scope,
        unix_now().saturating_add(ttl.as_secs()),
    )
}

/// Makes a token for `subject` with `scope` that expires at `exp` (seconds since the epoch;
/// a past one makes an expired token, for tests).
pub fn mint_until(
    key: &SigningKey,
    subject: &str,
    scope: Scope,
    exp: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        iss: Some(key.kid.clone()),
        sub: subject.to_owned(),
        aud: Some(AUDIENCE.into()),
        exp: Some(exp),
        iat: Some(unix_now()),
        nbf: None,
        sb: scope,
    };
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.key)
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests;
