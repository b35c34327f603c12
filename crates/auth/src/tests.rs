//! Tokens made and checked in memory, with real keys of every kind.

use super::*;

fn secret_key(kid: &str, secret: &str) -> (AuthKey, SigningKey) {
    (
        AuthKey::secret(kid, secret),
        SigningKey::secret(kid, secret.as_bytes()).unwrap(),
    )
}

fn scope() -> Scope {
    Scope {
        room: Some("room1".into()),
        dialects: Some(vec!["conference".into()]),
        publish: true,
        ..Scope::default()
    }
}

fn token(key: &SigningKey, subject: &str, scope: Scope) -> String {
    mint(key, subject, scope, Duration::from_secs(600)).unwrap()
}

/// Signs claims as they are, for the shapes `mint` never makes.
fn raw_token(key: &SigningKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).unwrap()
}

#[test]
fn an_hs256_token_carries_its_grants() {
    let (key, signer) = secret_key("k1", "s3cret");
    let verifier = Verifier::new(AuthMode::Required, &[key]).unwrap();
    let grants = verifier.verify(&token(&signer, "alice", scope())).unwrap();
    assert_eq!(grants.subject, "alice");
    assert_eq!(
        grants.join.name.as_str(),
        "alice",
        "the name defaults to sub"
    );
    assert_eq!(grants.join.room, Some(RoomGrant::Exact("room1".into())));
    assert_eq!(grants.dialects, Some(vec![DialectKind::Conference]));
    assert!(grants.publish && !grants.subscribe && !grants.pair && !grants.admin);
    assert_eq!(grants.channel, None);
    assert!(grants.check_dialect(DialectKind::Conference).is_ok());
    assert_eq!(
        grants.check_dialect(DialectKind::Pairing),
        Err(AuthError::Forbidden(
            "the token does not grant this dialect"
        ))
    );
    assert!(grants.check_pair().is_err());
    let news = RoomId::parse("news").unwrap();
    assert!(grants.check_channel(&news).is_err());

    let named = Scope {
        name: Some("Alice A.".into()),
        channel: Some("news*".into()),
        dialects: None,
        ..scope()
    };
    let grants = verifier.verify(&token(&signer, "u-17", named)).unwrap();
    assert_eq!(
        grants.join.name.as_str(),
        "Alice A.",
        "sb.name wins over sub"
    );
    assert!(
        grants.check_dialect(DialectKind::Pairing).is_ok(),
        "no list: all"
    );
    assert!(grants.check_channel(&news).is_ok());
}

#[test]
fn rotation_accepts_every_configured_key_and_picks_by_kid_or_iss() {
    let (old, old_signer) = secret_key("2026-01", "old secret");
    let (new, new_signer) = secret_key("2026-02", "new secret");
    let verifier = Verifier::new(AuthMode::Required, &[old, new]).unwrap();
    assert!(verifier.verify(&token(&old_signer, "a", scope())).is_ok());
    assert!(verifier.verify(&token(&new_signer, "b", scope())).is_ok());

    // No kid in the header: the key is the one `iss` names.
    let exp = unix_now() + 60;
    let claims = serde_json::json!({"iss":"2026-02","sub":"c","aud":AUDIENCE,"exp":exp});
    let bare =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &new_signer.key).unwrap();
    assert!(verifier.verify(&bare).is_ok());

    let (_, stranger) = secret_key("2025-12", "retired");
    assert_eq!(
        verifier.verify(&token(&stranger, "d", scope())),
        Err(AuthError::Invalid("signed by an unknown key"))
    );
    let (_, forger) = secret_key("2026-02", "guessed");
    assert_eq!(
        verifier.verify(&token(&forger, "e", scope())),
        Err(AuthError::Invalid("bad signature"))
    );
}

#[test]
fn eddsa_and_es256_keys_verify_their_own_tokens_only() {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let keys = [
        AuthKey::public_key_pem("ed", ed.public_key_pem()),
        AuthKey::public_key_pem("ec", ec.public_key_pem()),
    ];
    let verifier = Verifier::new(AuthMode::Required, &keys).unwrap();
    let ed_signer = SigningKey::private_key_pem("ed", ed.serialize_pem().as_bytes()).unwrap();
    let ec_signer = SigningKey::private_key_pem("ec", ec.serialize_pem().as_bytes()).unwrap();
    assert_eq!(ed_signer.algorithm, Algorithm::EdDSA);
    assert_eq!(ec_signer.algorithm, Algorithm::ES256);
    assert!(verifier.verify(&token(&ed_signer, "a", scope())).is_ok());
    assert!(verifier.verify(&token(&ec_signer, "b", scope())).is_ok());

    // The classic confusion: an HS256 token keyed with the public key's PEM, naming the
    // EdDSA key. The key fixes the algorithm, so it is refused.
    let confused = SigningKey::secret("ed", ed.public_key_pem().as_bytes()).unwrap();
    assert_eq!(
        verifier.verify(&token(&confused, "mallory", scope())),
        Err(AuthError::Invalid("wrong algorithm for its key"))
    );
    // And one key's token presented under the other's id.
    let swapped = SigningKey::private_key_pem("ec", ed.serialize_pem().as_bytes()).unwrap();
    assert!(verifier
        .verify(&token(&swapped, "mallory", scope()))
        .is_err());
}

#[test]
fn times_audience_and_shape_are_checked() {
    let (key, signer) = secret_key("k", "s");
    let verifier = Verifier::new(AuthMode::Required, &[key]).unwrap();
    let now = unix_now();
    let expired = mint_until(&signer, "a", scope(), now - 120).unwrap();
    assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));
    let within_leeway = mint_until(&signer, "a", scope(), now - 5).unwrap();
    assert!(verifier.verify(&within_leeway).is_ok());

    let cases = [
        (
            serde_json::json!({"sub":"a","aud":"elsewhere","exp":now + 60}),
            "not for switchboard (aud)",
        ),
        (
            serde_json::json!({"sub":"a","exp":now + 60}),
            "a required claim is missing (exp, aud, sub)",
        ),
        (
            serde_json::json!({"sub":"a","aud":AUDIENCE}),
            "a required claim is missing (exp, aud, sub)",
        ),
        (
            serde_json::json!({"sub":"a","aud":AUDIENCE,"exp":now + 60,"nbf":now + 600}),
            "not valid yet (nbf)",
        ),
        (
            serde_json::json!({"sub":"","aud":AUDIENCE,"exp":now + 60}),
            "its name (sb.name or sub) is not a valid identifier",
        ),
        (
            serde_json::json!({"sub":"a","aud":AUDIENCE,"exp":now + 60,
                "sb":{"dialects":["conference","telnet"]}}),
            "it names an unknown dialect",
        ),
        (
            serde_json::json!({"sub":"a","aud":AUDIENCE,"exp":now + 60,"sb":{"publish":"yes"}}),
            "malformed",
        ),
    ];
    for (claims, why) in cases {
        assert_eq!(
            verifier.verify(&raw_token(&signer, &claims)),
            Err(AuthError::Invalid(why)),
            "{claims}"
        );
    }
    let good = token(&signer, "a", scope());
    let unsigned = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", // {"alg":"none","typ":"JWT"}
        good.split('.').nth(1).unwrap()
    );
    assert_eq!(
        verifier.verify(&unsigned),
        Err(AuthError::Invalid("malformed"))
    );
    for garbage in ["", "a.b", "a.b.c", "...", &"x".repeat(10_000)] {
        assert!(verifier.verify(garbage).is_err(), "{garbage:.20}");
    }
}

#[test]
fn the_modes_decide_what_a_missing_or_bad_token_means() {
    let (key, signer) = secret_key("k", "s");
    let good = token(&signer, "a", scope());
    let off = Verifier::off();
    assert_eq!(off.admit(None), Ok(None));
    assert_eq!(off.admit(Some("garbage")), Ok(None), "off ignores tokens");
    assert_eq!(off.admit_admin(None), Ok(()));

    let optional = Verifier::new(AuthMode::Optional, std::slice::from_ref(&key)).unwrap();
    assert_eq!(optional.admit(None), Ok(None));
    assert!(optional.admit(Some("garbage")).is_err());
    assert!(optional.admit(Some(&good)).unwrap().is_some());
    assert_eq!(optional.admit_admin(None), Ok(()));

    let required = Verifier::new(AuthMode::Required, &[key]).unwrap();
    assert_eq!(required.admit(None), Err(AuthError::Missing));
    assert!(required.admit(Some(&good)).unwrap().is_some());
    assert_eq!(required.admit_admin(None), Err(AuthError::Missing));
    assert_eq!(
        required.admit_admin(Some(&good)),
        Err(AuthError::Forbidden("the token is not an admin token"))
    );
    let admin = token(
        &signer,
        "ops",
        Scope {
            admin: true,
            ..Scope::default()
        },
    );
    assert_eq!(required.admit_admin(Some(&admin)), Ok(()));
}

#[test]
fn bad_keys_are_refused_at_startup() {
    assert!(matches!(
        Verifier::new(AuthMode::Required, &[]),
        Err(KeyError::NoKeys("required"))
    ));
    assert!(matches!(
        Verifier::new(AuthMode::Optional, &[AuthKey::secret("k", "")]),
        Err(KeyError::EmptySecret(_))
    ));
    assert!(matches!(
        Verifier::new(
            AuthMode::Optional,
            &[AuthKey::public_key_pem("k", "not a pem")]
        ),
        Err(KeyError::BadPem(..))
    ));
    let twice = [AuthKey::secret("k", "a"), AuthKey::secret("k", "b")];
    assert!(matches!(
        Verifier::new(AuthMode::Optional, &twice),
        Err(KeyError::DuplicateKid(_))
    ));
    let printed = format!("{:?}", AuthKey::secret("k", "hunter2"));
    assert!(!printed.contains("hunter2"), "{printed}");
}
