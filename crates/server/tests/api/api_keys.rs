//! API keys: shown once, stored hashed, scoped, listed without the secret, revocable,
//! accepted as `Authorization: Bearer` and `X-API-Key`; nobody manages another's keys.

use basis_store::on_pool;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    a_key_is_shown_once_stored_hashed_and_listed_without_its_secret,
    keys_work_as_bearer_and_x_api_key_within_their_scopes,
    a_revoked_key_is_401_at_once,
    nobody_creates_lists_or_revokes_another_users_keys,
);

async fn create_key(app: &TestApp, user: &str, token: &str, scopes: Value) -> reqwest::Response {
    app.bearer(Method::POST, &format!("/users/{user}/api-keys"), token)
        .json(&json!({"name": "script", "scopes": scopes}))
        .send()
        .await
        .unwrap()
}

async fn a_key_is_shown_once_stored_hashed_and_listed_without_its_secret(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let response = create_key(&app, &ann.id, &ann.access, json!(["links:write"])).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("bsk_") && key.len() >= 40);
    assert_eq!(created["scopes"], json!(["links:write"]));

    let stored: Vec<String> = on_pool!(app.state.store, read, pool => {
        sqlx::query_scalar("SELECT key_hash FROM api_keys").fetch_all(pool).await
    })
    .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], key);
    assert!(!stored[0].contains(&key[4..]));

    let list = app
        .bearer(
            Method::GET,
            &format!("/users/{}/api-keys", ann.id),
            &ann.access,
        )
        .send()
        .await
        .unwrap();
    let text = list.text().await.unwrap();
    assert!(!text.contains(key), "the list never shows the secret");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["id"], created["id"]);
    assert_eq!(list[0]["hint"], &key[..10]);

    for scopes in [json!([]), json!(["links:*"])] {
        assert_problem(create_key(&app, &ann.id, &ann.access, scopes).await, 400).await;
    }
}

async fn keys_work_as_bearer_and_x_api_key_within_their_scopes(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let bob = app.account("bob@example.com").await;
    let writer: Value = create_key(&app, &bob.id, &bob.access, json!(["links:write"]))
        .await
        .json()
        .await
        .unwrap();
    let reader: Value = create_key(&app, &bob.id, &bob.access, json!(["links:read"]))
        .await
        .json()
        .await
        .unwrap();
    let writer = writer["key"].as_str().unwrap();
    let reader = reader["key"].as_str().unwrap();

    let response = app
        .bearer(Method::POST, "/shorten", writer)
        .json(&json!({"longUrl": "https://example.com/by-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let link: Value = response.json().await.unwrap();
    let path = format!("/links/{}", link["shortCode"].as_str().unwrap());
    // Owned by the key's user: the user's token manages it.
    assert_eq!(
        app.bearer(Method::GET, &path, &bob.access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let with_header = |key: &str, method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .header("x-api-key", key)
    };
    assert_eq!(
        with_header(reader, Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        with_header(reader, Method::GET, &format!("{path}/stats"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let response = with_header(reader, Method::POST, "/shorten")
        .json(&json!({"longUrl": "https://example.com/nope"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    assert_problem(
        with_header(reader, Method::DELETE, &path)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    // Keys act on resources, never on the account.
    let response = with_header(writer, Method::GET, &format!("/users/{}/profile", bob.id))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    let response = with_header(writer, Method::POST, &format!("/users/{}/api-keys", bob.id))
        .json(&json!({"name": "more", "scopes": ["links:write"]}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    assert_eq!(
        with_header(writer, Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_unauthorized(
        with_header("bsk_not-a-real-key", Method::GET, "/auth/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
}

async fn a_revoked_key_is_401_at_once(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cat = app.account("cat@example.com").await;
    let created: Value = create_key(&app, &cat.id, &cat.access, json!(["links:read"]))
        .await
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        app.bearer(Method::GET, "/auth/me", key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let path = format!(
        "/users/{}/api-keys/{}",
        cat.id,
        created["id"].as_str().unwrap()
    );
    assert_eq!(
        app.bearer(Method::DELETE, &path, &cat.access)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_unauthorized(
        app.bearer(Method::GET, "/auth/me", key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_problem(
        app.bearer(Method::DELETE, &path, &cat.access)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let list: Value = app
        .bearer(
            Method::GET,
            &format!("/users/{}/api-keys", cat.id),
            &cat.access,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));
}

async fn nobody_creates_lists_or_revokes_another_users_keys(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let dan = app.account("dan@example.com").await;
    let eve = app.account("eve@example.com").await;
    let created: Value = create_key(&app, &dan.id, &dan.access, json!(["links:read"]))
        .await
        .json()
        .await
        .unwrap();
    let keys = format!("/users/{}/api-keys", dan.id);
    assert_problem(
        create_key(&app, &dan.id, &eve.access, json!(["links:read"])).await,
        403,
    )
    .await;
    assert_problem(
        app.bearer(Method::GET, &keys, &eve.access)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let one = format!("{keys}/{}", created["id"].as_str().unwrap());
    assert_problem(
        app.bearer(Method::DELETE, &one, &eve.access)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_unauthorized(app.client.get(app.url(&keys)).send().await.unwrap()).await;
    // Eve's own path with Dan's key id does not reach Dan's key either.
    let sneaky = format!(
        "/users/{}/api-keys/{}",
        eve.id,
        created["id"].as_str().unwrap()
    );
    assert_problem(
        app.bearer(Method::DELETE, &sneaky, &eve.access)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}
