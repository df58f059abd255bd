//! Two-step sign-in in the pages: enrolling on `/account/two-step` (the QR code made on the
//! server from the `otpauth://` URI, the key as text, a first code, the recovery codes
//! shown once), the sign-in's second page carrying the API's challenge and never the
//! password, wrong, replayed and used recovery codes refused beside the field, a challenge
//! that expires, and turning it off with a code. A role that requires it (the admin's
//! policy) enrols on its own page before anything else, then goes where it was going.

use basis_auth::role::Role;
use basis_auth::totp;
use basis_server::clock::Clock as _;
use regex::Regex;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::PASSWORD;
use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;
use crate::web_support::{Browser, Page};

on_both_engines!(
    a_person_enrols_on_the_account_page_and_signs_in_with_a_code_on_a_second_page,
    recovery_codes_sign_in_once_and_a_pending_sign_in_expires,
    turning_two_step_sign_in_off_needs_a_code,
    a_role_that_requires_two_step_sign_in_enrols_before_anything_else_then_goes_on,
);

const EMAIL: &str = "ann@example.com";

fn code_now(app: &TestApp, secret: &str) -> String {
    totp::code_at(secret, totp::step_at(app.clock.now_ms())).expect("a base32 secret")
}

/// The start of the next 30-second step: a fresh code.
fn next_step(app: &TestApp) {
    let now = app.clock.now_ms();
    let next = (totp::step_at(now) + 1) * totp::STEP_SECONDS * 1000;
    app.clock.advance_ms((next - now) as u64);
}

fn captured(page: &Page, pattern: &str) -> String {
    Regex::new(pattern)
        .unwrap()
        .captures(&page.body)
        .unwrap_or_else(|| panic!("{pattern} in {}", page.body))[1]
        .to_owned()
}

/// Starts enrolling on the account page; the page that shows the QR code and the key.
async fn start_enrolling(browser: &mut Browser<'_>) -> (Page, String) {
    let page = browser
        .submit("/account/two-step", "/account/two-step/start", &[])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let secret = captured(&page, r#"<code class="secret">([A-Z2-7]+)</code>"#);
    (page, secret)
}

/// Enrols through the pages; the secret and the recovery codes.
async fn enrol(app: &TestApp, browser: &mut Browser<'_>) -> (String, Vec<String>) {
    let (page, secret) = start_enrolling(browser).await;
    let done = browser
        .post(
            "/account/two-step/confirm",
            &[("csrf", &page.token()), ("code", &code_now(app, &secret))],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes: Vec<String> = Regex::new(r"<li><code>([^<]+)</code></li>")
        .unwrap()
        .captures_iter(&done.body)
        .map(|c| c[1].to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{}", done.body);
    next_step(app);
    (secret, codes)
}

async fn sign_out(browser: &mut Browser<'_>) {
    let out = browser.submit("/account", "/signout", &[]).await;
    assert_eq!(out.status, 303);
}

/// Signs in with the password; the second page, asserting what it carries.
async fn password_step(browser: &mut Browser<'_>, next: Option<&str>) -> Page {
    let mut fields = vec![("email", EMAIL), ("password", PASSWORD)];
    fields.extend(next.map(|n| ("next", n)));
    let page = browser.submit("/signin", "/signin", &fields).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Enter your code"));
    assert!(page.body.contains(r#"action="/signin/code""#));
    assert!(!page.body.contains(PASSWORD), "the password is not carried");
    page
}

async fn code_step(browser: &mut Browser<'_>, page: &Page, code: &str) -> Page {
    let challenge = captured(page, r#"name="challenge" value="([^"]+)""#);
    let mut fields = vec![
        ("csrf", page.token()),
        ("challenge", challenge),
        ("code", code.to_owned()),
    ];
    if page.body.contains(r#"name="next""#) {
        fields.push(("next", captured(page, r#"name="next" value="([^"]+)""#)));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.post("/signin/code", &fields).await
}

async fn a_person_enrols_on_the_account_page_and_signs_in_with_a_code_on_a_second_page(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let mut ann = Browser::new(&app);
    ann.sign_up(EMAIL, "Ann").await;
    assert!(
        ann.get("/account/two-step")
            .await
            .body
            .contains("is <strong>off</strong>")
    );
    assert_eq!(
        ann.get("/account/two-step/qr.svg").await.status,
        404,
        "nothing pending"
    );

    let (page, secret) = start_enrolling(&mut ann).await;
    assert!(page.body.contains(r#"src="/account/two-step/qr.svg""#));
    // The QR code is the otpauth URI of this secret and account, made on the server.
    let qr = ann.get("/account/two-step/qr.svg").await;
    assert_eq!(qr.status, 200);
    assert_eq!(qr.headers["content-type"], "image/svg+xml");
    assert_eq!(qr.headers["cache-control"], "no-store");
    let expected = totp::qr_svg(&totp::otpauth_uri(&secret, "Basis", EMAIL)).unwrap();
    assert_eq!(qr.body, expected);

    let wrong = ann
        .post(
            "/account/two-step/confirm",
            &[("csrf", &page.token()), ("code", "000000")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains(r#"id="f-code-error""#));
    assert!(wrong.body.contains(&secret), "the same key, to try again");
    let done = ann
        .post(
            "/account/two-step/confirm",
            &[("csrf", &page.token()), ("code", &code_now(&app, &secret))],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("shown only now"));
    assert!(
        ann.get("/account/two-step")
            .await
            .body
            .contains("is <strong>on</strong>")
    );
    next_step(&app);

    sign_out(&mut ann).await;
    let second = password_step(&mut ann, Some("/account/keys")).await;
    assert_eq!(
        ann.get("/account").await.status,
        303,
        "the password alone does not sign in"
    );
    let refused = code_step(&mut ann, &second, "123456").await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains(r#"id="f-code-error""#));
    let signed_in = code_step(&mut ann, &refused, &code_now(&app, &secret)).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), "/account/keys");
    assert_eq!(ann.get("/account").await.status, 200);

    // The same code again, in its window, on a new sign-in: refused.
    let mut other = Browser::new(&app);
    let second = password_step(&mut other, None).await;
    let replayed = code_step(&mut other, &second, &code_now(&app, &secret)).await;
    assert_eq!(replayed.status, 422);
}

async fn recovery_codes_sign_in_once_and_a_pending_sign_in_expires(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut ann = Browser::new(&app);
    ann.sign_up(EMAIL, "Ann").await;
    let (_, codes) = enrol(&app, &mut ann).await;
    sign_out(&mut ann).await;

    let second = password_step(&mut ann, None).await;
    let recovered = code_step(&mut ann, &second, &codes[0]).await;
    assert_eq!(recovered.status, 303, "{}", recovered.body);
    assert_eq!(recovered.location(), "/my/links");
    sign_out(&mut ann).await;
    let second = password_step(&mut ann, None).await;
    let used = code_step(&mut ann, &second, &codes[0]).await;
    assert_eq!(used.status, 422, "a recovery code works once");
    assert!(used.body.contains(r#"id="f-code-error""#));

    // A pending sign-in lasts five minutes.
    let second = password_step(&mut ann, None).await;
    app.clock.advance_ms(5 * 60 * 1000 + 1);
    let late = code_step(&mut ann, &second, &codes[1]).await;
    assert_eq!(late.status, 422);
    assert!(late.body.contains("Sign in again"));
    assert_eq!(ann.get("/account").await.status, 303);

    // The code form needs its token, and a made-up challenge gets nowhere.
    let forged = ann
        .post("/signin/code", &[("challenge", "x"), ("code", &codes[1])])
        .await;
    assert_eq!(forged.status, 403);
    let token = ann.get("/signin").await.token();
    let made_up = ann
        .post(
            "/signin/code",
            &[
                ("csrf", &token),
                ("challenge", "made-up"),
                ("code", &codes[1]),
            ],
        )
        .await;
    assert_eq!(made_up.status, 422);
    assert!(made_up.body.contains("Sign in again"));
}

async fn turning_two_step_sign_in_off_needs_a_code(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut ann = Browser::new(&app);
    ann.sign_up(EMAIL, "Ann").await;
    let (secret, _) = enrol(&app, &mut ann).await;
    let wrong = ann
        .submit(
            "/account/two-step",
            "/account/two-step/disable",
            &[("code", "<b>1</b>")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains(r#"id="f-code-error""#));
    assert!(!wrong.body.contains("<b>1</b>"));
    let off = ann
        .submit(
            "/account/two-step",
            "/account/two-step/disable",
            &[("code", &code_now(&app, &secret))],
        )
        .await;
    assert_eq!(off.status, 303);
    assert_eq!(off.location(), "/account?done=mfa-off");
    sign_out(&mut ann).await;
    let plain = ann
        .submit(
            "/signin",
            "/signin",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(plain.status, 303, "one step again");
}

async fn a_role_that_requires_two_step_sign_in_enrols_before_anything_else_then_goes_on(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let root = app.account_with_role("root@example.com", Role::Admin).await;
    app.account_with_role("moe@example.com", Role::Moderator)
        .await;
    let set = app
        .bearer(Method::PUT, "/admin/mfa-policy", &root.access)
        .json(&json!({"requiredRoles": ["moderator"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);

    // The password is right: no session yet, but the enrolment page, then `next`.
    let mut moe = Browser::new(&app);
    let fields = [
        ("email", "moe@example.com"),
        ("password", PASSWORD),
        ("next", "/account/keys"),
    ];
    let signed = moe.submit("/signin", "/signin", &fields).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location(), "/signin/two-step?next=%2Faccount%2Fkeys");
    assert!(moe.has_cookie("__Host-basis_enrol"));
    assert!(
        !moe.has_cookie("__Host-basis_session"),
        "no session before the app"
    );

    // Every other page sends Moe back there, remembering where he was going.
    for (path, back) in [
        ("/", "%2F"),
        ("/my/links?tag=x", "%2Fmy%2Flinks%3Ftag%3Dx"),
        ("/account", "%2Faccount"),
        ("/blog", "%2Fblog"),
    ] {
        let page = moe.get(path).await;
        assert_eq!(page.status, 303, "{path}: {}", page.body);
        assert_eq!(page.location(), format!("/signin/two-step?next={back}"));
    }

    let page = moe.get("/signin/two-step?next=%2Faccount%2Fkeys").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"src="/signin/two-step/qr.svg""#));
    let secret = captured(&page, r#"<code class="secret">([A-Z2-7]+)</code>"#);
    // Seen again, the page shows the same key: the app may already hold it.
    let again = moe.get("/signin/two-step?next=%2Faccount%2Fkeys").await;
    assert!(again.body.contains(&secret), "{}", again.body);
    let qr = moe.get("/signin/two-step/qr.svg").await;
    assert_eq!(qr.status, 200);
    assert_eq!(qr.headers["cache-control"], "no-store");
    let expected = totp::qr_svg(&totp::otpauth_uri(&secret, "Basis", "moe@example.com")).unwrap();
    assert_eq!(qr.body, expected);

    // A wrong code: the form again with the problem beside the field, still no session.
    let right = code_now(&app, &secret);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let refused = moe
        .post(
            "/signin/two-step",
            &[
                ("csrf", &page.token()),
                ("code", &wrong),
                ("next", "/account/keys"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains(r#"id="f-code-error""#));
    assert!(refused.body.contains(&secret));
    assert!(!moe.has_cookie("__Host-basis_session"));

    // The app's real code turns it on, signs in and shows the recovery codes once.
    let done = moe
        .post(
            "/signin/two-step",
            &[
                ("csrf", &page.token()),
                ("code", &right),
                ("next", "/account/keys"),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = Regex::new(r"<li><code>([^<]+)</code></li>")
        .unwrap()
        .captures_iter(&done.body)
        .count();
    assert_eq!(codes, 10, "{}", done.body);
    assert!(
        done.body.contains(r#"href="/account/keys""#),
        "{}",
        done.body
    );
    assert!(moe.has_cookie("__Host-basis_session"));
    assert!(!moe.has_cookie("__Host-basis_enrol"));
    let keys = moe.get("/account/keys").await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    assert_eq!(moe.get("/my/links").await.status, 200);

    // The API agrees: the next sign-in asks for a code.
    let refused = app
        .post_json(
            "/auth/login",
            json!({"email": "moe@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(refused.status(), 202, "now a code is asked for");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["mfaRequired"], true);

    // Signing in on the web again is the two-step sign-in.
    next_step(&app);
    let mut later = Browser::new(&app);
    let page = later
        .submit(
            "/signin",
            "/signin",
            &[("email", "moe@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"action="/signin/code""#));
}
