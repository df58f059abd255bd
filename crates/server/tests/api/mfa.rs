//! Multi-factor sign-in: enrolment with a QR code, the second step on token and session
//! sign-in, recovery codes (each usable once), replay refused, wrong codes throttled,
//! disabling, roles that must use it; and breached passwords refused.

use basis_auth::role::Role;
use basis_auth::totp;
use basis_server::clock::Clock as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::{Account, PASSWORD, assert_unauthorized};
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    enrolling_then_signing_in_with_a_code_gives_tokens_and_sessions,
    a_code_accepted_once_is_refused_for_the_rest_of_its_window,
    recovery_codes_sign_in_once_each,
    wrong_codes_are_401_and_throttled_like_passwords,
    disabling_needs_a_code_and_ends_the_second_step,
    admins_may_require_mfa_for_a_role_whose_members_must_enrol,
    breached_passwords_are_refused_at_sign_up_change_and_reset_with_422,
);

const FIFTEEN_MINUTES: i64 = 15 * 60 * 1000 + 1;

impl TestApp {
    /// The current code of `secret` on the app's clock.
    fn code(&self, secret: &str) -> String {
        totp::code_at(secret, totp::step_at(self.clock.now_ms())).expect("a base32 secret")
    }

    /// Moves the clock to the start of the next 30-second step (a fresh code).
    fn next_step(&self) {
        let now = self.clock.now_ms();
        let next = (totp::step_at(now) + 1) * totp::STEP_SECONDS * 1000;
        self.clock.advance_ms((next - now) as u64);
    }

    /// Enrols `account` and confirms; returns the secret and the recovery codes.
    async fn enrol(&self, account: &Account) -> (String, Vec<String>) {
        let enrolment = self
            .bearer(Method::POST, "/auth/mfa/totp", &account.access)
            .send()
            .await
            .unwrap();
        assert_eq!(enrolment.status(), 201, "{:?}", enrolment.text().await);
        let enrolment: Value = enrolment.json().await.unwrap();
        let secret = enrolment["secret"].as_str().unwrap().to_owned();
        let confirmed = self
            .bearer(Method::POST, "/auth/mfa/totp/confirm", &account.access)
            .json(&json!({"code": self.code(&secret)}))
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status(), 200, "{:?}", confirmed.text().await);
        let body: Value = confirmed.json().await.unwrap();
        let codes = body["recoveryCodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        // A fresh throttle window and a fresh code for what the test does next.
        self.clock.advance_ms(FIFTEEN_MINUTES as u64);
        (secret, codes)
    }

    /// Logs in with the password, expecting the 202 challenge; returns it.
    async fn challenge(&self, email: &str, path: &str) -> String {
        let response = self
            .post_json(path, json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["mfaRequired"], true);
        assert!(
            body.get("accessToken").is_none(),
            "no tokens before the code"
        );
        body["challenge"].as_str().unwrap().to_owned()
    }

    async fn verify(&self, challenge: &str, code: &str) -> reqwest::Response {
        self.post_json(
            "/auth/mfa/verify",
            json!({"challenge": challenge, "code": code}),
        )
        .await
    }
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.bearer(Method::GET, "/auth/me", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn enrolling_then_signing_in_with_a_code_gives_tokens_and_sessions(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;

    let enrolment = app
        .bearer(Method::POST, "/auth/mfa/totp", &ann.access)
        .send()
        .await
        .unwrap();
    assert_eq!(enrolment.status(), 201);
    let enrolment: Value = enrolment.json().await.unwrap();
    let secret = enrolment["secret"].as_str().unwrap();
    let uri = enrolment["otpauthUri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Basis%3Aann%40example.com?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}")));
    assert!(enrolment["qrSvg"].as_str().unwrap().contains("<svg"));

    // Until confirmed, signing in needs no code.
    app.login_tokens("ann@example.com", PASSWORD).await;
    // A wrong first code does not turn it on.
    let wrong = app
        .bearer(Method::POST, "/auth/mfa/totp/confirm", &ann.access)
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_unauthorized(wrong).await;
    let confirmed = app
        .bearer(Method::POST, "/auth/mfa/totp/confirm", &ann.access)
        .json(&json!({"code": app.code(secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let codes: Value = confirmed.json().await.unwrap();
    let codes = codes["recoveryCodes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let unique: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), 10);
    // Enrolling again while on is a conflict.
    let again = app
        .bearer(Method::POST, "/auth/mfa/totp", &ann.access)
        .send()
        .await
        .unwrap();
    assert_problem(again, 409).await;
    app.clock.advance_ms(FIFTEEN_MINUTES as u64);

    // Token sign-in: 202 with a challenge, then tokens for the code.
    let challenge = app.challenge("ann@example.com", "/auth/login").await;
    let done = app.verify(&challenge, &app.code(secret)).await;
    assert_eq!(done.status(), 200, "{:?}", done.text().await);
    let pair: Value = done.json().await.unwrap();
    assert_eq!(
        me_status(&app, pair["accessToken"].as_str().unwrap()).await,
        200
    );
    // A challenge is spent by its sign-in.
    app.next_step();
    assert_unauthorized(app.verify(&challenge, &app.code(secret)).await).await;

    // Session sign-in: 202, then the cookie for the code.
    app.next_step();
    let challenge = app.challenge("ann@example.com", "/auth/session").await;
    let done = app.verify(&challenge, &app.code(secret)).await;
    assert_eq!(done.status(), 201, "{:?}", done.text().await);
    let cookie = done.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let session = app
        .client
        .get(app.url("/auth/session"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);

    // The state, as the owner sees it.
    // (The first token has expired meanwhile: the one from the second step is fresh.)
    let status: Value = app
        .bearer(
            Method::GET,
            "/auth/mfa",
            pair["accessToken"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["enabled"], true);
    assert_eq!(status["recoveryCodesLeft"], 10);

    // Expired challenges are refused.
    let challenge = app.challenge("ann@example.com", "/auth/login").await;
    app.clock.advance_ms(5 * 60 * 1000 + 1);
    assert_unauthorized(app.verify(&challenge, &app.code(secret)).await).await;
}

async fn a_code_accepted_once_is_refused_for_the_rest_of_its_window(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let bea = app.account("bea@example.com").await;
    let (secret, _) = app.enrol(&bea).await;
    let code = app.code(&secret);
    let first = app.challenge("bea@example.com", "/auth/login").await;
    assert_eq!(app.verify(&first, &code).await.status(), 200);
    // Someone who saw the code uses it again at once, with a challenge of their own.
    let second = app.challenge("bea@example.com", "/auth/login").await;
    assert_unauthorized(app.verify(&second, &code).await).await;
    // Still refused while it would be inside the skew window.
    app.clock.advance_ms(29_000);
    assert_unauthorized(app.verify(&second, &code).await).await;
    // The next step's code works on the same challenge.
    app.next_step();
    assert_eq!(app.verify(&second, &app.code(&secret)).await.status(), 200);
}

async fn recovery_codes_sign_in_once_each(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cy = app.account("cy@example.com").await;
    let (_, codes) = app.enrol(&cy).await;

    let challenge = app.challenge("cy@example.com", "/auth/login").await;
    let done = app.verify(&challenge, &codes[0]).await;
    assert_eq!(done.status(), 200);
    let pair: Value = done.json().await.unwrap();

    let challenge = app.challenge("cy@example.com", "/auth/login").await;
    assert_unauthorized(app.verify(&challenge, &codes[0]).await).await;
    // Typed the way people copy them: upper case, spaces for dashes.
    let typed = codes[1].to_uppercase().replace('-', " ");
    assert_eq!(app.verify(&challenge, &typed).await.status(), 200);

    let status: Value = app
        .bearer(
            Method::GET,
            "/auth/mfa",
            pair["accessToken"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["recoveryCodesLeft"], 8);
}

async fn wrong_codes_are_401_and_throttled_like_passwords(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let dee = app.account("dee@example.com").await;
    let (secret, _) = app.enrol(&dee).await;
    let challenge = app.challenge("dee@example.com", "/auth/login").await;
    let right = app.code(&secret);
    let wrong = if right == "123456" {
        "654321"
    } else {
        "123456"
    };
    for _ in 0..5 {
        assert_unauthorized(app.verify(&challenge, wrong).await).await;
    }
    // Even the right code waits now.
    let throttled = app.verify(&challenge, &right).await;
    let retry_after = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_problem(throttled, 429).await;
    assert!(retry_after.parse::<u64>().unwrap() > 0);
    // Garbage is 401 too (after the window), never 5xx.
    app.clock.advance_ms(FIFTEEN_MINUTES as u64);
    let challenge = app.challenge("dee@example.com", "/auth/login").await;
    assert_unauthorized(app.verify(&challenge, "not a code at all").await).await;
    assert_unauthorized(app.verify("no-such-challenge", &app.code(&secret)).await).await;
    assert_eq!(
        app.verify(&challenge, &app.code(&secret)).await.status(),
        200
    );
}

async fn disabling_needs_a_code_and_ends_the_second_step(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let eve = app.account("eve@example.com").await;
    let (secret, _) = app.enrol(&eve).await;
    // A fresh token (the first one expired while the clock moved on).
    let challenge = app.challenge("eve@example.com", "/auth/login").await;
    let pair: Value = app
        .verify(&challenge, &app.code(&secret))
        .await
        .json()
        .await
        .unwrap();
    let token = pair["accessToken"].as_str().unwrap();
    app.next_step();
    let wrong = app
        .bearer(Method::POST, "/auth/mfa/totp/disable", token)
        .json(&json!({"code": "abcd-efgh-ijkl-mnop"}))
        .send()
        .await
        .unwrap();
    assert_unauthorized(wrong).await;
    let anonymous = app
        .post_json("/auth/mfa/totp/disable", json!({"code": app.code(&secret)}))
        .await;
    assert_unauthorized(anonymous).await;
    let off = app
        .bearer(Method::POST, "/auth/mfa/totp/disable", token)
        .json(&json!({"code": app.code(&secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 204);
    // Signing in is one step again.
    app.login_tokens("eve@example.com", PASSWORD).await;
}

async fn admins_may_require_mfa_for_a_role_whose_members_must_enrol(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let root = app.account_with_role("root@example.com", Role::Admin).await;
    let moe = app
        .account_with_role("moe@example.com", Role::Moderator)
        .await;

    // Only admins set the policy, and only with real roles.
    let by_moderator = app
        .bearer(Method::PUT, "/admin/mfa-policy", &moe.access)
        .json(&json!({"requiredRoles": ["moderator"]}))
        .send()
        .await
        .unwrap();
    assert_problem(by_moderator, 403).await;
    let unknown = app
        .bearer(Method::PUT, "/admin/mfa-policy", &root.access)
        .json(&json!({"requiredRoles": ["wizard"]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(unknown, 400).await;
    assert_eq!(body["errors"][0]["field"], "requiredRoles");
    let set = app
        .bearer(Method::PUT, "/admin/mfa-policy", &root.access)
        .json(&json!({"requiredRoles": ["moderator", "moderator"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let policy: Value = app
        .bearer(Method::GET, "/admin/mfa-policy", &root.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["requiredRoles"], json!(["moderator"]));

    // A moderator without MFA is refused with a clear problem and an enrolment challenge.
    let refused = app
        .post_json(
            "/auth/login",
            json!({"email": "moe@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let body = assert_problem(refused, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("enrol"), "{body}");
    let challenge = body["challenge"].as_str().unwrap();
    // Admins, not in the list, sign in as before.
    app.login_tokens("root@example.com", PASSWORD).await;

    // The challenge enrols without a token, and does not sign in by itself.
    let enrolment = app
        .post_json("/auth/mfa/totp", json!({"challenge": challenge}))
        .await;
    assert_eq!(enrolment.status(), 201);
    let secret = enrolment.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_unauthorized(app.verify(challenge, &app.code(&secret)).await).await;
    let confirmed = app
        .post_json(
            "/auth/mfa/totp/confirm",
            json!({"challenge": challenge, "code": app.code(&secret)}),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    // A made-up challenge enrols no one.
    assert_unauthorized(
        app.post_json("/auth/mfa/totp", json!({"challenge": "made-up"}))
            .await,
    )
    .await;

    app.clock.advance_ms(FIFTEEN_MINUTES as u64);
    let challenge = app.challenge("moe@example.com", "/auth/login").await;
    let done = app.verify(&challenge, &app.code(&secret)).await;
    assert_eq!(done.status(), 200);
}

async fn breached_passwords_are_refused_at_sign_up_change_and_reset_with_422(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    // Long enough for the length rule, and on the shipped list (in any case).
    for breached in ["1qaz2wsx3edc", "1QAZ2WSX3EDC", "qwertyuiop123"] {
        let response = app
            .post_json(
                "/users",
                json!({"email": "fay@example.com", "password": breached, "name": "Fay"}),
            )
            .await;
        let body = assert_problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], "password", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("breach")
        );
    }
    let fay = app.account("fay@example.com").await;
    let change = app
        .bearer(
            Method::POST,
            &format!("/users/{}/password", fay.id),
            &fay.access,
        )
        .json(&json!({"currentPassword": PASSWORD, "newPassword": "password1234"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(change, 422).await;
    assert_eq!(body["errors"][0]["field"], "password");
    // The old password still works.
    app.login_tokens("fay@example.com", PASSWORD).await;
}
