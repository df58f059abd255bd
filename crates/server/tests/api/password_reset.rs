//! Password reset over real SMTP: the same 202 either way, a single-use token valid one
//! hour, a new password that revokes every session and refresh token, and a limit of three
//! requests per hour.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::{PASSWORD, assert_unauthorized};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;
use crate::smtp_sink::SmtpSink;

on_both_engines!(
    a_reset_mail_carries_a_single_use_token_that_revokes_old_credentials,
    unknown_emails_get_the_same_202_and_no_mail,
    reset_tokens_expire_after_an_hour_and_requests_are_limited,
);

const NEW_PASSWORD: &str = "amber kites drift over quiet harbours";

async fn spawn(engine: &Engine, sink: &SmtpSink) -> TestApp {
    let url = sink.url();
    TestApp::spawn_with(engine, move |c| c.auth.smtp_url = Some(url)).await
}

/// The token in a reset mail: the `token` parameter of its link.
pub fn token_in(mail: &str) -> String {
    let link = reset_link_in(mail);
    let url = url::Url::parse(&link).unwrap_or_else(|e| panic!("{link}: {e}"));
    url.query_pairs()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("a token in {link}"))
}

/// The link in a reset mail: the line that points at the new-password page.
pub fn reset_link_in(mail: &str) -> String {
    readable(mail)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http") && l.contains("/reset/new?token="))
        .unwrap_or_else(|| panic!("a reset link in {mail}"))
        .to_owned()
}

/// The mail as its reader sees it: a quoted-printable body (what lettre picks when a line,
/// such as the link's, is longer than 76 characters) decoded.
pub fn readable(mail: &str) -> String {
    if !mail.contains("Content-Transfer-Encoding: quoted-printable") {
        return mail.to_owned();
    }
    let mut joined = String::new();
    for line in mail.lines() {
        match line.strip_suffix('=') {
            Some(soft) => joined.push_str(soft),
            None => {
                joined.push_str(line);
                joined.push('\n');
            }
        }
    }
    let mut out = Vec::with_capacity(joined.len());
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn confirm(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/auth/password-reset/confirm",
        json!({"token": token, "password": password}),
    )
    .await
}

async fn a_reset_mail_carries_a_single_use_token_that_revokes_old_credentials(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let app = spawn(&engine, &sink).await;
    let ann = app.account("ann@example.com").await;
    let (cookie, _) = app.session("ann@example.com").await;

    let response = app
        .post_json("/auth/password-reset", json!({"email": "ANN@example.com"}))
        .await;
    assert_eq!(response.status(), 202);
    let mail = sink.next().await;
    assert_eq!(mail.to, vec!["ann@example.com".to_owned()]);
    assert!(mail.data.contains("Subject: Reset your Basis password"));
    let token = token_in(&mail.data);

    // A weak password (400) and a breached one (422) are refused and leave the token usable.
    assert_problem(confirm(&app, &token, "abcabcabcabc").await, 400).await;
    assert_problem(confirm(&app, &token, "password1234").await, 422).await;
    // The access token was issued a second before the reset.
    app.clock.advance_ms(1_000);
    assert_eq!(confirm(&app, &token, NEW_PASSWORD).await.status(), 204);
    assert_problem(confirm(&app, &token, NEW_PASSWORD).await, 400).await;

    assert_unauthorized(
        app.post_json("/auth/refresh", json!({"refreshToken": ann.refresh}))
            .await,
    )
    .await;
    let me = app
        .client
        .get(app.url("/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_unauthorized(me).await;
    assert_unauthorized(
        app.bearer(Method::GET, "/auth/me", &ann.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_unauthorized(
        app.post_json(
            "/auth/login",
            json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    let tokens = app.login_tokens("ann@example.com", NEW_PASSWORD).await;
    let me = app
        .bearer(
            Method::GET,
            "/auth/me",
            tokens["accessToken"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

async fn unknown_emails_get_the_same_202_and_no_mail(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let app = spawn(&engine, &sink).await;
    app.sign_up("bob@example.com").await;
    let unknown = app
        .post_json(
            "/auth/password-reset",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(unknown.status(), 202);
    let unknown: Value = unknown.json().await.unwrap();
    let known = app
        .post_json("/auth/password-reset", json!({"email": "bob@example.com"}))
        .await;
    assert_eq!(known.status(), 202);
    let known: Value = known.json().await.unwrap();
    assert_eq!(unknown, known);
    // The first (and only) mail is Bob's: nothing went to the unknown address.
    assert_eq!(sink.next().await.to, vec!["bob@example.com".to_owned()]);
    assert!(sink.mail.try_recv().is_err());
    assert_problem(confirm(&app, "made-up", NEW_PASSWORD).await, 400).await;
}

async fn reset_tokens_expire_after_an_hour_and_requests_are_limited(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let app = spawn(&engine, &sink).await;
    app.sign_up("cy@example.com").await;
    let request = || app.post_json("/auth/password-reset", json!({"email": "cy@example.com"}));
    assert_eq!(request().await.status(), 202);
    let token = token_in(&sink.next().await.data);
    assert_eq!(request().await.status(), 202);
    assert_eq!(request().await.status(), 202);
    let limited = request().await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429).await;

    app.clock.advance_ms(60 * 60 * 1000);
    assert_problem(confirm(&app, &token, NEW_PASSWORD).await, 400).await;
    assert_eq!(request().await.status(), 202, "a new hour, a new allowance");
}
