//! "Log in with …" against a real OpenID provider: the npm package `oidc-provider`, run by
//! `tests/oidc/provider.js` (installed with `npm ci` on first use). Authorization code flow
//! with PKCE, state and nonce; accounts linked by subject or verified email; redirect
//! targets from an allowlist.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use basis_store::on_pool;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    logging_in_with_the_provider_creates_and_then_reuses_one_account,
    a_verified_email_links_an_existing_account_and_an_unverified_one_does_not,
    a_bad_state_or_a_bad_nonce_is_refused,
    redirect_targets_must_be_allow_listed,
    the_sign_in_page_offers_the_provider_and_comes_back_signed_in_to_the_pages,
);

/// A running `oidc-provider`, stopped when dropped.
struct OidcProvider {
    issuer: String,
    _child: Child,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Installs the provider's npm packages once per test process.
fn install() -> &'static Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = provider_dir();
        if dir.join("node_modules/oidc-provider").exists() {
            return Ok(());
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("cannot run npm (Node.js is needed for the OIDC tests): {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("npm ci failed in {}", dir.display()))
    })
}

impl OidcProvider {
    async fn start() -> Self {
        tokio::task::spawn_blocking(install)
            .await
            .unwrap()
            .as_ref()
            .expect("the provider's packages");
        let mut child = Command::new("node")
            .arg("provider.js")
            .current_dir(provider_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("a line") {
                if let Some(issuer) = line.strip_prefix("READY ") {
                    return issuer.to_owned();
                }
            }
            panic!("the provider exited before it was ready")
        });
        let issuer = ready.await.expect("the provider is ready within 30 s");
        // Keep reading so the provider never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer,
            _child: child,
        }
    }
}

async fn spawn(engine: &Engine, provider: &OidcProvider) -> TestApp {
    let issuer = provider.issuer.clone();
    TestApp::spawn_with(engine, move |c| {
        c.auth.oidc_issuer = Some(issuer);
        c.auth.oidc_client_id = Some("basis".into());
        c.auth.oidc_redirect_allowlist = vec!["https://app.example.com".into()];
    })
    .await
}

/// A browser stand-in for the provider's pages: keeps the provider's cookies.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    async fn get(&mut self, app: &TestApp, url: &str) -> reqwest::Response {
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = app
            .client
            .get(url)
            .header("cookie", jar.join("; "))
            .send()
            .await
            .unwrap();
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        response
    }

    /// Starts a login at the app and follows the provider until it sends the browser back
    /// to the app's callback; returns the callback URL.
    async fn authorize(&mut self, app: &TestApp, provider: &OidcProvider, query: &str) -> String {
        let start = app.get(&format!("/auth/oidc/start?{query}")).await;
        assert_eq!(start.status(), 302, "{:?}", start.text().await);
        let mut location = start.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&provider.issuer), "{location}");
        for param in [
            "code_challenge_method=S256",
            "code_challenge=",
            "state=",
            "nonce=",
            "response_type=code",
        ] {
            assert!(location.contains(param), "{param} in {location}");
        }
        let callback = app.url("/auth/oidc/callback");
        for _ in 0..10 {
            if location.starts_with(&callback) {
                return location;
            }
            let url = match location.starts_with('/') {
                true => format!("{}{location}", provider.issuer),
                false => location.clone(),
            };
            let response = self.get(app, &url).await;
            assert!(
                response.status().is_redirection(),
                "{url}: {}",
                response.status()
            );
            location = response.headers()["location"].to_str().unwrap().to_owned();
        }
        panic!("the provider did not send the browser back: {location}")
    }
}

/// Finishes at the callback, returning the session cookie and where it redirects.
async fn finish(app: &TestApp, callback: &str) -> (String, String) {
    let response = app.client.get(callback).send().await.unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    (cookie, location)
}

async fn me(app: &TestApp, cookie: &str) -> Value {
    let response = app
        .client
        .get(app.url("/auth/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn logging_in_with_the_provider_creates_and_then_reuses_one_account(engine: Engine) {
    let provider = OidcProvider::start().await;
    let app = spawn(&engine, &provider).await;
    let callback = Browser::default()
        .authorize(&app, &provider, "redirect=/dashboard&loginHint=alice")
        .await;
    let (cookie, location) = finish(&app, &callback).await;
    assert_eq!(location, "/dashboard");
    let first = me(&app, &cookie).await;
    assert_eq!(first["name"], "Alice Liddell");

    // The same subject again: the same account, and a replayed callback is refused.
    assert_problem(app.client.get(&callback).send().await.unwrap(), 400).await;
    let callback = Browser::default()
        .authorize(&app, &provider, "loginHint=alice")
        .await;
    let (cookie, location) = finish(&app, &callback).await;
    assert_eq!(location, "/");
    assert_eq!(me(&app, &cookie).await["id"], first["id"]);
}

async fn a_verified_email_links_an_existing_account_and_an_unverified_one_does_not(engine: Engine) {
    let provider = OidcProvider::start().await;
    let app = spawn(&engine, &provider).await;
    let alice = app.account("alice@example.com").await;
    app.sign_up("victim@example.com").await;

    let callback = Browser::default()
        .authorize(&app, &provider, "loginHint=alice")
        .await;
    let (cookie, _) = finish(&app, &callback).await;
    assert_eq!(me(&app, &cookie).await["id"], alice.id.as_str());

    let callback = Browser::default()
        .authorize(&app, &provider, "loginHint=mallory")
        .await;
    let response = app.client.get(&callback).send().await.unwrap();
    assert!(response.headers().get("set-cookie").is_none());
    assert_problem(response, 409).await;
}

async fn a_bad_state_or_a_bad_nonce_is_refused(engine: Engine) {
    let provider = OidcProvider::start().await;
    let app = spawn(&engine, &provider).await;

    let callback = Browser::default()
        .authorize(&app, &provider, "loginHint=alice")
        .await;
    let forged = url::Url::parse(&callback).unwrap();
    let mut forged_state = forged.clone();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let value = if k == "state" {
                "forged-state".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    forged_state.query_pairs_mut().clear().extend_pairs(pairs);
    let response = app.client.get(forged_state.as_str()).send().await.unwrap();
    assert!(response.headers().get("set-cookie").is_none());
    assert_problem(response, 400).await;

    // The ID token must carry the nonce this login stored; change the stored one.
    let callback = Browser::default()
        .authorize(&app, &provider, "loginHint=alice")
        .await;
    on_pool!(app.state.store, write, pool => {
        sqlx::query("UPDATE oidc_requests SET nonce = 'not-the-nonce-sent'").execute(pool).await.map(drop)
    })
    .unwrap();
    let response = app.client.get(&callback).send().await.unwrap();
    assert!(response.headers().get("set-cookie").is_none());
    assert_unauthorized(response).await;
}

async fn redirect_targets_must_be_allow_listed(engine: Engine) {
    let provider = OidcProvider::start().await;
    let app = spawn(&engine, &provider).await;
    for target in [
        "https://evil.example/",
        "//evil.example/x",
        "javascript:alert(1)",
        "https://app.example.com.evil.example/",
    ] {
        let query = format!("/auth/oidc/start?redirect={}", urlencode(target));
        assert_problem(app.get(&query).await, 400).await;
    }
    let callback = Browser::default()
        .authorize(
            &app,
            &provider,
            &format!("redirect={}", urlencode("https://app.example.com/home")),
        )
        .await;
    let (_, location) = finish(&app, &callback).await;
    assert_eq!(location, "https://app.example.com/home");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn the_sign_in_page_offers_the_provider_and_comes_back_signed_in_to_the_pages(
    engine: Engine,
) {
    let provider = OidcProvider::start().await;
    let app = spawn(&engine, &provider).await;
    let mut visitor = crate::web_support::Browser::new(&app);
    let signin = visitor.get("/signin?next=%2Faccount").await;
    let start = "/auth/oidc/start?redirect=%2Faccount";
    assert!(
        signin.body.contains(&format!(r#"href="{start}""#)),
        "{}",
        signin.body
    );
    let callback = Browser::default()
        .authorize(&app, &provider, "redirect=%2Faccount&loginHint=alice")
        .await;
    let (cookie, location) = finish(&app, &callback).await;
    assert_eq!(location, "/account");
    let page = app
        .client
        .get(app.url(&location))
        .header("accept", "text/html")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("Alice Liddell"), "{body}");
    assert!(
        body.contains("Your account"),
        "signed in to the pages: {body}"
    );
}
