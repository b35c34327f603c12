//! TURN REST credentials, the scheme of coturn's `use-auth-secret` (draft-uberti-behave-turn-rest-00):
//! switchboard and the TURN server share a secret, and a credential is the username
//! `<expiry, unix seconds>:<identity>` with the password base64(HMAC-SHA1(secret, username)).
//! The TURN server checks both without asking anyone, and refuses the credential once the
//! expiry has passed.
//!
//! This file owns the secret and the clock: it mints a credential for every `joined` (through
//! the hub's [`IceMinter`] seam, `set_ice_minter`) and for `GET /turn/credentials` (`http.rs`).
//! Who may ask for one is the routes' business.
//!
//! The identity is the peer's name, percent-encoded: every byte but `A-Z a-z 0-9 - . _ ~`
//! becomes `%XX`. So the identity never holds the `:` that separates it from the expiry (TURN
//! servers differ in which `:` they split at), is plain ASCII (STUN usernames are otherwise
//! SASLprep'd, and implementations disagree on that), and maps back to exactly one name. A
//! 128-byte name (the longest allowed) encodes to at most 384 bytes, so the username stays
//! under STUN's 513-byte limit.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use switchboard_core::{IceMinter, PeerName, RawJson, RoomId};

use crate::IceServer;

/// Everything about TURN credentials (`--turn-secret`, `--turn-url`, `--turn-ttl`).
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// The secret shared with the TURN server (coturn's `static-auth-secret`).
    pub secret: TurnSecret,
    /// The TURN server's `turn:`/`turns:` URLs, handed out with every credential.
    pub urls: Vec<String>,
    /// How long a credential stays valid; the TURN server refuses it after that. One hour by
    /// default: ample to set up a call (a later one joins again or asks the route), and a
    /// leaked credential is soon useless.
    pub ttl: Duration,
}

impl TurnConfig {
    /// `--turn-ttl`'s default.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Checks a `--turn-url`: a `turn:` or `turns:` URL with a host.
    pub fn parse_url(text: &str) -> Result<String, String> {
        let url = text.trim();
        let rest = url
            .strip_prefix("turn:")
            .or_else(|| url.strip_prefix("turns:"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with(['?', ':']) => Ok(url.to_owned()),
            _ => Err(format!("{url:?} is not a turn: or turns: URL with a host")),
        }
    }
}

/// The secret shared with the TURN server, ready to sign with. It never shows in logs: its
/// `Debug` output is redacted, so a logged `Config` does not leak it.
#[derive(Clone)]
pub struct TurnSecret(hmac::Key);

impl TurnSecret {
    /// Takes the secret as written (a file's contents are trimmed by the caller).
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("the TURN secret must not be empty".to_owned());
        }
        // SHA-1 because the scheme (and coturn) fixes it: HMAC-SHA1 is still a sound MAC,
        // the weakness of SHA-1 is collisions, which an HMAC does not rest on.
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        Ok(TurnSecret(key))
    }

    /// The password for `username`: base64(HMAC-SHA1(secret, username)), as coturn computes it.
    pub fn password(&self, username: &str) -> String {
        BASE64.encode(hmac::sign(&self.0, username.as_bytes()))
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

/// One minted credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    /// `<expires>:<identity, percent-encoded>`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
}

impl TurnCredential {
    /// A credential for `identity` that the TURN server accepts until `expires` (unix seconds).
    pub fn mint(secret: &TurnSecret, identity: &str, expires: u64) -> Self {
        let username = format!(
            "{expires}:{}",
            utf8_percent_encode(identity, IDENTITY_KEEPS)
        );
        let password = secret.password(&username);
        TurnCredential { username, password }
    }
}

/// Mints credentials with the configured secret, URLs and lifetime, and puts them in the
/// `iceServers` array beside the operator's fixed `--ice-server` entries.
pub(crate) struct TurnMinter {
    secret: TurnSecret,
    urls: Vec<String>,
    ttl: Duration,
    /// The fixed entries, encoded once at start, as the array's opening: `[` or `[{..},{..},`.
    head: String,
}

/// A credential and what it came with, for `GET /turn/credentials`.
pub(crate) struct Minted {
    pub(crate) credential: TurnCredential,
    /// The whole `iceServers` array: the fixed entries, then this credential's.
    pub(crate) ice_servers: String,
}

impl TurnMinter {
    pub(crate) fn new(turn: &TurnConfig, fixed: &[IceServer]) -> Self {
        let mut head =
            serde_json::to_string(fixed).expect("a list of IceServers always serializes");
        head.pop(); // the closing `]`: the minted entry comes last
        if !fixed.is_empty() {
            head.push(',');
        }
        TurnMinter {
            secret: turn.secret.clone(),
            urls: turn.urls.clone(),
            ttl: turn.ttl,
            head,
        }
    }

    /// The TURN URLs a credential is for.
    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// How long a credential lives, in whole seconds.
    pub(crate) fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A credential for `identity` that expires one TTL after `now`.
    pub(crate) fn credential(&self, identity: &str, now: SystemTime) -> Minted {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let credential =
            TurnCredential::mint(&self.secret, identity, now.saturating_add(self.ttl_secs()));
        let entry = Entry {
            urls: &self.urls,
            username: &credential.username,
            credential: &credential.password,
        };
        let mut ice_servers = self.head.clone();
        let entry = serde_json::to_string(&entry).expect("strings and a list of them serialize");
        ice_servers.push_str(&entry);
        ice_servers.push(']');
        Minted {
            credential,
            ice_servers,
        }
    }
}

impl IceMinter for TurnMinter {
    fn mint(&self, _room: &RoomId, name: &PeerName) -> RawJson {
        RawJson::new(
            &self
                .credential(name.as_str(), SystemTime::now())
                .ice_servers,
        )
    }
}

/// A browser's `RTCIceServer` for one credential, borrowed for encoding.
#[derive(Serialize)]
struct Entry<'a> {
    urls: &'a [String],
    username: &'a str,
    credential: &'a str,
}

/// RFC 3986's unreserved characters stay; everything else in an identity is percent-encoded.
const IDENTITY_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> TurnSecret {
        TurnSecret::new("north-by-northwest").unwrap()
    }

    /// The vectors were computed apart from this code, with OpenSSL:
    /// `printf %s "$username" | openssl dgst -sha1 -hmac north-by-northwest -binary | base64`.
    #[test]
    fn mints_the_coturn_password_for_known_vectors() {
        let alice = TurnCredential::mint(&secret(), "alice", 1_700_000_000);
        assert_eq!(alice.username, "1700000000:alice");
        assert_eq!(alice.password, "5m64LUXtG57MAUpPx9cEXIbWpLU=");
        let odd = TurnCredential::mint(&secret(), "a:b é", 1_700_003_600);
        assert_eq!(odd.username, "1700003600:a%3Ab%20%C3%A9");
        assert_eq!(odd.password, "CNTom97DvAPiRxGtbJg/REAhb8U=");
    }

    #[test]
    fn identities_keep_unreserved_characters_only() {
        let credential = TurnCredential::mint(&secret(), "Ab9-._~/%:?", 1);
        assert_eq!(credential.username, "1:Ab9-._~%2F%25%3A%3F");
    }

    #[test]
    fn joined_gets_the_fixed_entries_then_a_credential_valid_for_the_ttl() {
        let turn = TurnConfig {
            secret: secret(),
            urls: vec!["turn:127.0.0.1:3478?transport=udp".to_owned()],
            ttl: Duration::from_secs(600),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let bare = TurnMinter::new(&turn, &[]).credential("bob", now);
        assert_eq!(bare.credential.username, "1700000600:bob");
        let password = secret().password("1700000600:bob");
        assert_eq!(
            bare.ice_servers,
            format!(
                r#"[{{"urls":["turn:127.0.0.1:3478?transport=udp"],"username":"1700000600:bob","credential":"{password}"}}]"#
            )
        );
        let stun = IceServer::parse("stun:127.0.0.1:3478").unwrap();
        let both = TurnMinter::new(&turn, &[stun]).credential("bob", now);
        let value: serde_json::Value = serde_json::from_str(&both.ice_servers).unwrap();
        assert_eq!(
            value[0],
            serde_json::json!({"urls": ["stun:127.0.0.1:3478"]})
        );
        assert_eq!(value[1]["username"], "1700000600:bob");
        assert_eq!(value.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let turn = TurnConfig {
            secret: secret(),
            urls: vec!["turn:x".to_owned()],
            ttl: TurnConfig::DEFAULT_TTL,
        };
        let shown = format!("{turn:?}");
        assert!(!shown.contains("north"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn turn_urls_are_checked() {
        assert!(TurnConfig::parse_url("turn:turn.example.com:3478?transport=udp").is_ok());
        assert!(TurnConfig::parse_url("turns:turn.example.com:5349").is_ok());
        for bad in ["stun:x:3478", "turn:", "turn::3478", "http://x", ""] {
            assert!(TurnConfig::parse_url(bad).is_err(), "{bad}");
        }
        assert!(TurnSecret::new("").is_err());
    }
}
