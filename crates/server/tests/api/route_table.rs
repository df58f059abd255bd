//! The route table: every route that changes data requires authentication, unless it is
//! listed here as public on purpose. Routes come from `/openapi.json`, so a new route is
//! checked as soon as it is documented.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(every_data_changing_route_needs_authentication_unless_public_on_purpose);

/// Routes that change data without a signed-in caller, and why.
const PUBLIC: &[(&str, &str, &str)] = &[
    ("POST", "/users", "sign-up"),
    ("POST", "/auth/login", "exchanges a password for tokens"),
    (
        "POST",
        "/auth/session",
        "exchanges a password for a session",
    ),
    (
        "POST",
        "/auth/refresh",
        "the refresh token is the credential",
    ),
    (
        "POST",
        "/auth/logout",
        "the refresh token is the credential",
    ),
    (
        "POST",
        "/auth/password-reset",
        "for users who cannot sign in",
    ),
    (
        "POST",
        "/auth/password-reset/confirm",
        "the reset token is the credential",
    ),
    ("POST", "/{code}", "following a password-protected link"),
    (
        "POST",
        "/auth/mfa/verify",
        "the sign-in challenge is the credential",
    ),
    (
        "POST",
        "/auth/mfa/totp/confirm",
        "an enrolment challenge is the credential when not signed in",
    ),
];

async fn every_data_changing_route_needs_authentication_unless_public_on_purpose(engine: Engine) {
    // With anonymous link creation switched off, `/shorten` must be protected too.
    let app = TestApp::spawn_with(&engine, |c| c.auth.require_auth_for_links = true).await;
    let owner = app.account("owner@example.com").await;
    let code = app
        .create_as(&owner.access, "https://example.com/owned")
        .await;
    let key: Value = app
        .bearer(
            Method::POST,
            &format!("/users/{}/api-keys", owner.id),
            &owner.access,
        )
        .json(&json!({"name": "k", "scopes": ["links:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().expect("paths");

    let mut checked = Vec::new();
    for (path, operations) in paths {
        for method in ["post", "put", "patch", "delete"] {
            if operations.get(method).is_none() {
                continue;
            }
            let upper = method.to_uppercase();
            if PUBLIC.iter().any(|(m, p, _)| *m == upper && p == path) {
                continue;
            }
            let concrete = path
                .replace("{code}", &code)
                .replace("{key_id}", key["id"].as_str().unwrap())
                .replace("{id}", &owner.id);
            let response = app
                .client
                .request(
                    Method::from_bytes(upper.as_bytes()).unwrap(),
                    app.url(&concrete),
                )
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                401,
                "{upper} {path} must require authentication"
            );
            assert_unauthorized(response).await;
            checked.push(format!("{upper} {path}"));
        }
    }
    for expected in [
        "POST /shorten",
        "PATCH /links/{code}",
        "DELETE /links/{code}",
        "PATCH /users/{id}",
        "DELETE /users/{id}",
        "POST /users/{id}/password",
        "POST /users/{id}/api-keys",
        "DELETE /users/{id}/api-keys/{key_id}",
        "DELETE /auth/session",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} was not in the route table: {checked:?}"
        );
    }
    // Every public route is still in the table (a stale list would hide a removal).
    for (method, path, _) in PUBLIC {
        let documented = paths
            .get(*path)
            .and_then(|ops| ops.get(method.to_lowercase()));
        assert!(
            documented.is_some(),
            "{method} {path} is listed public but not routed"
        );
    }
}
