//! Accounts: sign-up, policy, public view, profile (IDOR), changes, deletion, admin list,
//! password storage and rehashing.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::{PASSWORD, assert_unauthorized};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    signing_up_returns_201_with_the_user_and_no_secret,
    a_taken_email_is_409_whatever_its_case,
    weak_short_and_oversized_passwords_are_400,
    the_public_view_is_open_and_the_profile_is_for_the_owner_or_an_admin,
    owners_change_their_name_but_only_admins_change_roles,
    deleting_an_account_revokes_its_tokens_and_links,
    only_admins_list_users_page_by_page,
    the_user_list_is_searched_by_name_or_email_and_its_next_link_keeps_the_search,
    stored_hashes_are_argon2id_phc_strings_and_old_ones_are_rehashed_at_login,
    changing_the_password_revokes_refresh_tokens_and_other_sessions,
    the_cached_public_view_follows_every_change,
);

async fn signing_up_returns_201_with_the_user_and_no_secret(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let response = app
        .post_json(
            "/users",
            json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "name": "Ada"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/users/{id}"));
    assert_eq!(body["name"], "Ada");
    assert_eq!(body["role"], "user");
    let text = body.to_string();
    assert!(!text.contains("password") && !text.contains(PASSWORD) && !text.contains("argon2"));
    // The email is normalised.
    let tokens = app.login_tokens("ada@example.com", PASSWORD).await;
    let profile: Value = app
        .bearer(
            Method::GET,
            &format!("/users/{id}/profile"),
            tokens["accessToken"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(profile["email"], "ada@example.com");
}

async fn a_taken_email_is_409_whatever_its_case(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    app.sign_up("bob@example.com").await;
    let response = app
        .post_json(
            "/users",
            json!({"email": "BOB@example.com", "password": PASSWORD, "name": "Bob"}),
        )
        .await;
    assert_problem(response, 409).await;
}

async fn weak_short_and_oversized_passwords_are_400(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    for password in [
        "short".to_owned(),
        "abcabcabcabc".to_owned(),
        "carol@example.com!".to_owned(),
        "x".repeat(10_000),
    ] {
        let response = app
            .post_json(
                "/users",
                json!({"email": "carol@example.com", "password": password, "name": "Carol"}),
            )
            .await;
        let body = assert_problem(response, 400).await;
        assert_eq!(body["errors"][0]["field"], "password", "{body}");
    }
    // 128+ characters and any Unicode are accepted.
    let long = "fjord ünïcødé lantern ".repeat(7);
    let response = app
        .post_json(
            "/users",
            json!({"email": "carol@example.com", "password": long, "name": "Carol"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    // An oversized password at login is 400 before any hashing.
    let response = app
        .post_json(
            "/auth/login",
            json!({"email": "carol@example.com", "password": "y".repeat(5_000)}),
        )
        .await;
    assert_problem(response, 400).await;
    let response = app
        .post_json(
            "/users",
            json!({"email": "not-an-email", "password": PASSWORD, "name": ""}),
        )
        .await;
    let body = assert_problem(response, 400).await;
    let fields: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert!(
        fields.contains(&json!("email")) && fields.contains(&json!("name")),
        "{body}"
    );
}

async fn the_public_view_is_open_and_the_profile_is_for_the_owner_or_an_admin(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let dave = app.account("dave@example.com").await;
    let erin = app.account("erin@example.com").await;
    let admin = app.account_with_role("root@example.com", Role::Admin).await;

    let public: Value = app
        .get(&format!("/users/{}", dave.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["id"], dave.id.as_str());
    assert!(public.get("email").is_none());
    assert_problem(app.get("/users/0000").await, 404).await;

    let path = format!("/users/{}/profile", dave.id);
    assert_unauthorized(app.get(&path).await).await;
    // The guide's IDOR example: another user's profile is 403.
    let response = app
        .bearer(Method::GET, &path, &erin.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    for token in [&dave.access, &admin.access] {
        let response = app.bearer(Method::GET, &path, token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let profile: Value = response.json().await.unwrap();
        assert_eq!(profile["email"], "dave@example.com");
    }
}

async fn owners_change_their_name_but_only_admins_change_roles(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let frank = app.account("frank@example.com").await;
    let admin = app.account_with_role("root@example.com", Role::Admin).await;
    let path = format!("/users/{}", frank.id);

    let response = app
        .bearer(Method::PATCH, &path, &frank.access)
        .json(&json!({"name": "Franklin", "settings": {"theme": "dark"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let profile: Value = response.json().await.unwrap();
    assert_eq!(profile["name"], "Franklin");
    assert_eq!(profile["settings"]["theme"], "dark");

    let response = app
        .bearer(Method::PATCH, &path, &frank.access)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    let response = app
        .bearer(
            Method::PATCH,
            &format!("/users/{}", admin.id),
            &frank.access,
        )
        .json(&json!({"name": "Mallory"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;
    assert_unauthorized(
        app.client
            .patch(app.url(&path))
            .json(&json!({"name": "X"}))
            .send()
            .await
            .unwrap(),
    )
    .await;

    let response = app
        .bearer(Method::PATCH, &path, &admin.access)
        .json(&json!({"role": "moderator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let audit: Value = app
        .bearer(Method::GET, "/admin/audit", &admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let change = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "role.changed")
        .expect("a role.changed event");
    assert_eq!(change["userId"], frank.id.as_str());
    assert!(
        change["detail"]
            .as_str()
            .unwrap()
            .contains("user -> moderator")
    );
    let response = app
        .bearer(Method::PATCH, &path, &admin.access)
        .json(&json!({"role": "root"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
}

async fn deleting_an_account_revokes_its_tokens_and_links(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let gina = app.account("gina@example.com").await;
    let hank = app.account("hank@example.com").await;
    let code = app
        .create_as(&gina.access, "https://example.com/gina")
        .await;
    let path = format!("/users/{}", gina.id);
    assert_problem(
        app.bearer(Method::DELETE, &path, &hank.access)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let response = app
        .bearer(Method::DELETE, &path, &gina.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_problem(app.get(&path).await, 404).await;
    assert_eq!(app.follow(&code).await.status(), 404);
    let response = app
        .post_json("/auth/refresh", json!({"refreshToken": gina.refresh}))
        .await;
    assert_unauthorized(response).await;
    let response = app
        .post_json(
            "/auth/login",
            json!({"email": gina.email, "password": PASSWORD}),
        )
        .await;
    assert_unauthorized(response).await;
}

async fn only_admins_list_users_page_by_page(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let user = app.account("ivy@example.com").await;
    let admin = app.account_with_role("root@example.com", Role::Admin).await;
    app.sign_up("jack@example.com").await;
    assert_unauthorized(app.get("/users").await).await;
    assert_problem(
        app.bearer(Method::GET, "/users", &user.access)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;

    let response = app
        .bearer(Method::GET, "/users?limit=2", &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["link"]
            .to_str()
            .unwrap()
            .contains("rel=\"next\"")
    );
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second: Value = app
        .bearer(
            Method::GET,
            &format!("/users?limit=2&cursor={cursor}"),
            &admin.access,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["nextCursor"], Value::Null);
    let response = app
        .bearer(Method::GET, "/users?limit=1000", &admin.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
}

async fn the_user_list_is_searched_by_name_or_email_and_its_next_link_keeps_the_search(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let admin = app.account_with_role("root@example.com", Role::Admin).await;
    for email in [
        "ivy@example.com",
        "ivor@example.com",
        "jack@example.com",
        "100%_sure@example.com",
    ] {
        app.sign_up(email).await;
    }
    let list = |query: &str| {
        app.bearer(Method::GET, &format!("/users?{query}"), &admin.access)
            .send()
    };
    let emails = |page: &Value| -> Vec<String> {
        let mut found: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_owned())
            .collect();
        found.sort();
        found
    };
    let response = list("q=IV&limit=1").await.unwrap();
    assert_eq!(response.status(), 200);
    let next = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(next.starts_with("</users?q=IV&limit=1&cursor="), "{next}");
    let first: Value = response.json().await.unwrap();
    let cursor = first["nextCursor"].as_str().unwrap();
    let second: Value = list(&format!("q=IV&limit=1&cursor={cursor}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["nextCursor"], Value::Null);
    let mut both = emails(&first);
    both.extend(emails(&second));
    both.sort();
    assert_eq!(both, ["ivor@example.com", "ivy@example.com"]);
    // `%` and `_` are matched as themselves, not as wildcards.
    let literal: Value = list("q=0%25_").await.unwrap().json().await.unwrap();
    assert_eq!(emails(&literal), ["100%_sure@example.com"]);
    let none: Value = list("q=_s%25").await.unwrap().json().await.unwrap();
    assert_eq!(emails(&none), Vec::<String>::new());
    // The admin's name is "Staff".
    let by_name: Value = list("q=sTAf").await.unwrap().json().await.unwrap();
    assert_eq!(emails(&by_name), ["root@example.com"]);
}

async fn stored_hashes_are_argon2id_phc_strings_and_old_ones_are_rehashed_at_login(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let id = app.sign_up("kate@example.com").await;
    let stored = app.stored_password_hash(&id).await;
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );

    // A hash made with weaker, older parameters is replaced at the next login.
    let weak = basis_auth::password::Hasher::new(
        basis_auth::password::HashParams {
            memory_kib: 4096,
            iterations: 1,
            parallelism: 1,
        },
        1,
    )
    .unwrap()
    .hash(PASSWORD.into())
    .await
    .unwrap();
    app.set_password_hash(&id, &weak).await;
    app.login_tokens("kate@example.com", PASSWORD).await;
    let rehashed = app.stored_password_hash(&id).await;
    assert!(
        rehashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{rehashed}"
    );
    assert_ne!(rehashed, weak);
}

async fn changing_the_password_revokes_refresh_tokens_and_other_sessions(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let liam = app.account("liam@example.com").await;
    let (other_cookie, _) = app.session("liam@example.com").await;
    let (cookie, csrf) = app.session("liam@example.com").await;
    let new_password = "seven quiet herons cross the marsh";
    let path = format!("/users/{}/password", liam.id);

    let response = app
        .bearer(Method::POST, &path, &liam.access)
        .json(&json!({"currentPassword": "wrong wrong wrong", "newPassword": new_password}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;

    // The access token below was issued a second before the change.
    app.clock.advance_ms(1_000);
    let response = app
        .client
        .post(app.url(&path))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("origin", app.origin())
        .json(&json!({"currentPassword": PASSWORD, "newPassword": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    assert_unauthorized(
        app.post_json("/auth/refresh", json!({"refreshToken": liam.refresh}))
            .await,
    )
    .await;
    let me = |cookie: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/auth/me"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    assert_unauthorized(me(other_cookie).await).await;
    assert_unauthorized(
        app.bearer(Method::GET, "/auth/me", &liam.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        me(cookie).await.status(),
        200,
        "the session that changed it stays"
    );
    assert_unauthorized(
        app.post_json(
            "/auth/login",
            json!({"email": liam.email, "password": PASSWORD}),
        )
        .await,
    )
    .await;
    app.login_tokens("liam@example.com", new_password).await;
}

impl TestApp {
    async fn stored_password_hash(&self, id: &str) -> String {
        basis_store::users::find(&self.state.store, id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .unwrap()
    }

    async fn set_password_hash(&self, id: &str, hash: &str) {
        basis_store::users::set_password_hash(&self.state.store, id, hash, 0)
            .await
            .unwrap();
    }
}

async fn the_cached_public_view_follows_every_change(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let gina = app.account("gina@example.com").await;
    let admin = app.account_with_role("boss@example.com", Role::Admin).await;
    let path = format!("/users/{}", gina.id);
    let view = || async { app.get(&path).await.json::<Value>().await.unwrap() };
    // Read twice: the second answer comes from the cache.
    assert_eq!(view().await["name"], "Test User");
    assert_eq!(view().await["name"], "Test User");

    let rename = app
        .bearer(Method::PATCH, &path, &gina.access)
        .json(&json!({"name": "Gina"}))
        .send();
    assert_eq!(rename.await.unwrap().status(), 200);
    assert_eq!(
        view().await["name"],
        "Gina",
        "a rename invalidates the cached view"
    );
    let promote = app
        .bearer(Method::PATCH, &path, &admin.access)
        .json(&json!({"role": "moderator"}))
        .send();
    assert_eq!(promote.await.unwrap().status(), 200);
    assert_eq!(view().await["role"], "moderator");

    let delete = app.bearer(Method::DELETE, &path, &gina.access).send();
    assert_eq!(delete.await.unwrap().status(), 204);
    assert_problem(app.get(&path).await, 404).await;
    // The miss is cached too, and a later read still answers 404.
    assert_problem(app.get(&path).await, 404).await;
    let page = app.get("/metrics").await.text().await.unwrap();
    assert!(page.contains(r#"basis_cache_hits_total{namespace="users",tier="l1"}"#));
}
