//! Every broken or forged access token is a 401 problem, never a 500 and never accepted.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use basis_auth::jwt::KeySet;
use basis_auth::role::Role;
use reqwest::Method;
use serde_json::json;

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(forged_malformed_and_expired_tokens_are_401);

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// HMAC-SHA256 by hand would need another crate; a valid HS256 token from a key set with
/// the given key and claims does the same job.
fn sign_with(spec: &str, issuer: &str, audience: &str, user: &str, now: i64) -> String {
    KeySet::parse(spec, issuer, audience)
        .unwrap()
        .issue(user, Role::Admin, now)
        .unwrap()
        .0
}

async fn forged_malformed_and_expired_tokens_are_401(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let victim = app.account("victim@example.com").await;
    let spec = std::fs::read_to_string(app.config.data_dir.join("secrets/jwt-keys")).unwrap();
    let spec = spec.trim();
    let (kid, secret) = spec.split_once(':').unwrap();
    let now = app.state.clock.now_ms() / 1000;
    let issuer = app.origin();
    let good = sign_with(spec, &issuer, "basis-api", &victim.id, now);

    let claims = json!({"sub": victim.id, "role": "admin", "iat": now, "exp": now + 900,
        "jti": "x", "iss": issuer, "aud": "basis-api"});
    let other_key = KeySet::generate_spec(kid);
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&claims)
    );
    let none_upper = format!(
        "{}.{}.",
        b64(&json!({"alg": "None", "kid": kid})),
        b64(&claims)
    );
    // Algorithm confusion: an RS256 header over a body signed with our secret as if it
    // were a public key; and an HS384 one. Only HS256 is accepted.
    let confusion = {
        let header = b64(&json!({"alg": "RS256", "typ": "JWT", "kid": kid}));
        let sig = good.rsplit('.').next().unwrap();
        format!("{header}.{}.{sig}", b64(&claims))
    };
    let hs384 = {
        let header = b64(&json!({"alg": "HS384", "kid": kid}));
        format!(
            "{header}.{}.{}",
            b64(&claims),
            URL_SAFE_NO_PAD.encode(STANDARD.decode(secret).unwrap())
        )
    };
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = b64(
            &json!({"sub": "someone-else", "role": "admin", "iat": now, "exp": now + 900,
            "jti": "y", "iss": issuer, "aud": "basis-api"}),
        );
        parts.join(".")
    };
    let unknown_kid = sign_with(
        &KeySet::generate_spec("other-kid"),
        &issuer,
        "basis-api",
        &victim.id,
        now,
    );
    let cases = [
        ("garbage", "not-a-token".to_owned()),
        ("two parts", "abc.def".to_owned()),
        ("bad base64", "!!!.???.***".to_owned()),
        ("empty", String::new()),
        (
            "expired",
            sign_with(spec, &issuer, "basis-api", &victim.id, now - 901),
        ),
        (
            "issued in the future",
            sign_with(spec, &issuer, "basis-api", &victim.id, now + 3600),
        ),
        (
            "wrong signature",
            sign_with(&other_key, &issuer, "basis-api", &victim.id, now),
        ),
        ("tampered payload", tampered),
        ("alg none", none),
        ("alg None", none_upper),
        ("RS256 confusion", confusion),
        ("HS384", hs384),
        (
            "wrong issuer",
            sign_with(spec, "https://evil.example", "basis-api", &victim.id, now),
        ),
        (
            "wrong audience",
            sign_with(spec, &issuer, "another-api", &victim.id, now),
        ),
        ("unknown kid", unknown_kid),
    ];
    for (name, token) in cases {
        let response = app
            .client
            .get(app.url("/auth/me"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{name}: {challenge}");
        assert_unauthorized(response).await;
    }
    // Other schemes and junk headers are 401 too; the good token works.
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Token abc"] {
        let response = app
            .client
            .get(app.url("/auth/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_unauthorized(response).await;
    }
    assert_eq!(
        app.bearer(Method::GET, "/auth/me", &good)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
