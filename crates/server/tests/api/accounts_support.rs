//! Helpers for the identity tests: accounts, logins, sessions and crafted requests.

use basis_auth::role::Role;
use basis_server::accounts::users::{NewUser, insert_user};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A password the policy accepts.
pub const PASSWORD: &str = "velvet otter juggles nine lanterns";

/// A signed-in user: id, access token, refresh token.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("a response")
    }

    /// A request with `Authorization: Bearer <token>`.
    pub fn bearer(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Creates a link to `long_url` as the holder of the access token `token`, asserting
    /// 201, and returns its short code.
    pub async fn create_as(&self, token: &str, long_url: &str) -> String {
        let response = self
            .bearer(reqwest::Method::POST, "/shorten", token)
            .json(&json!({"longUrl": long_url}))
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let link: Value = response.json().await.expect("JSON");
        link["shortCode"].as_str().expect("a short code").to_owned()
    }

    /// Signs up `email` with [`PASSWORD`], asserting 201, and returns the user's id.
    pub async fn sign_up(&self, email: &str) -> String {
        let response = self
            .post_json(
                "/users",
                json!({"email": email, "password": PASSWORD, "name": "Test User"}),
            )
            .await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let body: Value = response.json().await.expect("a JSON body");
        body["id"].as_str().expect("an id").to_owned()
    }

    /// Logs in with a password, asserting 200, returning the token pair body.
    pub async fn login_tokens(&self, email: &str, password: &str) -> Value {
        let response = self
            .post_json("/auth/login", json!({"email": email, "password": password}))
            .await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        response.json().await.expect("a JSON body")
    }

    /// Signs up and logs in a user.
    pub async fn account(&self, email: &str) -> Account {
        let id = self.sign_up(email).await;
        let tokens = self.login_tokens(email, PASSWORD).await;
        Account {
            id,
            email: email.to_owned(),
            access: tokens["accessToken"].as_str().expect("a token").to_owned(),
            refresh: tokens["refreshToken"].as_str().expect("a token").to_owned(),
        }
    }

    /// Creates an account with `role` directly (as `basis admin create-user` does) and logs in.
    pub async fn account_with_role(&self, email: &str, role: Role) -> Account {
        let body = NewUser {
            email: email.into(),
            password: PASSWORD.into(),
            name: "Staff".into(),
        };
        let now = self.state.clock.now_ms();
        let user = insert_user(
            &self.state.store,
            self.state.passwords.hasher(),
            now,
            body,
            role,
        )
        .await
        .expect("an account");
        let tokens = self.login_tokens(email, PASSWORD).await;
        Account {
            id: user.id,
            email: email.to_owned(),
            access: tokens["accessToken"].as_str().expect("a token").to_owned(),
            refresh: tokens["refreshToken"].as_str().expect("a token").to_owned(),
        }
    }

    /// Logs in through `POST /auth/session`, returning (`Cookie` header value, CSRF token).
    pub async fn session(&self, email: &str) -> (String, String) {
        let response = self
            .post_json(
                "/auth/session",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let set_cookie = response.headers()["set-cookie"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        let body: Value = response.json().await.expect("a JSON body");
        let pair = set_cookie.split(';').next().expect("a cookie").to_owned();
        (
            pair,
            body["csrfToken"].as_str().expect("a token").to_owned(),
        )
    }

    /// The app's origin, as browsers send it in `Origin`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Decodes the claims of a JWT without checking it.
pub fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Asserts a 401 problem with a `WWW-Authenticate: Bearer…` challenge.
pub async fn assert_unauthorized(response: reqwest::Response) -> Value {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = crate::helpers::assert_problem(response, 401).await;
    assert!(challenge.starts_with("Bearer"), "challenge: {challenge:?}");
    body
}
