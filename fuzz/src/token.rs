//! The `token` fuzz target: access tokens are the first thing an unauthenticated client sends,
//! checked by `switchboard_auth::Verifier`. Shared by the fuzz target and by the regression
//! replay in `crates/auth/tests/fuzz_regressions.rs` (which includes this file).
//!
//! The first byte picks what the rest is:
//! - even: a whole token, as a client would send it (header, claims and signature all
//!   attacker-made; nearly always refused at the signature, which is the point: that path
//!   must never panic either);
//! - odd: the claims of a token this fuzzer signs with the verifier's own key, so that the
//!   claim checks and the grant parsing behind the signature are reached.
//!
//! Checked: nothing panics; a token that passes has `aud` switchboard, a future-enough `exp`,
//! and a name that is a valid identifier (the hub relies on it).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::value::RawValue;
use switchboard_auth::{AuthKey, AuthMode, Verifier};
use switchboard_core::PeerName;

/// The fuzzer's HS256 key.
const SECRET: &[u8] = b"fuzzing secret";
/// `{"alg":"HS256","typ":"JWT","kid":"fuzz"}`
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"fuzz"}"#;

/// Checks one input; true if the token passed.
pub fn check_token(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let verifier = Verifier::new(AuthMode::Required, &[AuthKey::secret("fuzz", SECRET)])
        .expect("a fixed valid key");
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        sign(rest)
    };
    let Ok(grants) = verifier.verify(&token) else {
        return false;
    };
    if mode % 2 == 0 {
        return true;
    }
    // Lossily: serde skips an unknown claim without checking that its strings are UTF-8, nor
    // that a `\u` escape in it is a whole character (a lone surrogate, `"\ud800"`, which
    // `serde_json::Value` refuses), and such a token is fine: the claims switchboard reads are
    // checked. So only the top level is read here, each claim kept as raw JSON.
    let text = String::from_utf8_lossy(rest);
    let top: HashMap<String, &RawValue> =
        serde_json::from_str(&text).expect("claims that passed are a JSON object");
    let aud: serde_json::Value = top.get("aud").map_or(serde_json::Value::Null, |raw| {
        serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null)
    });
    let claims = &text;
    let aud_ok = match &aud {
        serde_json::Value::String(aud) => aud == "switchboard",
        serde_json::Value::Array(auds) => auds.iter().any(|aud| aud == "switchboard"),
        _ => false,
    };
    assert!(aud_ok, "a token for another audience passed: {claims}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    assert!(
        grants.expires + 60 >= now,
        "an expired token passed: {claims}"
    );
    assert!(
        PeerName::parse(grants.join.name.as_str()).is_ok(),
        "a token with an invalid name passed: {claims}"
    );
    true
}

/// A token with `claims` as its payload, signed with the fuzzer's key.
fn sign(claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let signature = hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}
