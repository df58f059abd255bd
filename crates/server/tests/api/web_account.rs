//! The account pages: the password (the current one, the policy, other sessions ended),
//! API keys (shown once, revoked behind a confirmation), sessions (listed with their
//! browser, one or all others ended), the avatar (a multipart upload to the avatar
//! service) and signing out everywhere; someone else's key or session is "not found" and
//! untouched; every form needs its token; what people type comes back inert. Sign-in,
//! its code and reset forms are throttled as the API is: past the limit the form comes
//! back, 429 with `Retry-After`.

use image::ImageFormat;
use regex::Regex;

use crate::accounts_support::PASSWORD;
use crate::helpers::{Engine, TestApp};
use crate::jobs_support::{eventually, picture};
use crate::on_both_engines;
use crate::web_support::{Browser, Page, multipart};

on_both_engines!(
    the_account_page_needs_sign_in_and_shows_who_you_are,
    a_password_change_needs_the_current_one_follows_the_rules_and_ends_other_sessions,
    an_api_key_is_shown_once_works_and_is_revoked_after_a_confirmation,
    sessions_are_listed_with_their_browser_and_ended_one_or_all_others,
    an_avatar_is_uploaded_as_a_multipart_form_and_shown_once_resized,
    signing_out_everywhere_ends_every_session_and_token,
    another_person_s_key_or_session_is_not_found_and_stays,
    every_account_form_needs_its_token,
    too_many_failed_sign_ins_codes_or_resets_bring_the_form_back_with_429,
    a_form_refused_by_the_rate_limiter_is_a_page_for_browsers_and_a_problem_for_clients,
);

const NEW_PASSWORD: &str = "amber kites drift over quiet harbours";

fn assert_see_other(page: &Page, location: &str) {
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), location);
}

/// The key shown on the page that answers the new-key form.
fn shown_key(page: &Page) -> String {
    let field = Regex::new(r#"id="new-key" type="text" readonly value="([^"]+)""#).unwrap();
    field
        .captures(&page.body)
        .unwrap_or_else(|| panic!("no key in {}", page.body))[1]
        .to_owned()
}

async fn me_with_key(app: &TestApp, key: &str) -> u16 {
    app.client
        .get(app.url("/auth/me"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The revoke path of the first key listed on `/account/keys`.
fn revoke_path(page: &Page) -> String {
    let link = Regex::new(r#"href="(/account/keys/[^"/]+/revoke)""#).unwrap();
    link.captures(&page.body)
        .unwrap_or_else(|| panic!("no revoke link in {}", page.body))[1]
        .to_owned()
}

/// The digests naming the sessions listed on `/account/sessions`.
fn session_names(page: &Page) -> Vec<String> {
    let field = Regex::new(r#"name="session" value="([^"]+)""#).unwrap();
    field
        .captures_iter(&page.body)
        .map(|c| c[1].to_owned())
        .collect()
}

async fn the_account_page_needs_sign_in_and_shows_who_you_are(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut stranger = Browser::new(&app);
    let gated = stranger.get("/account").await;
    assert_see_other(&gated, "/signin?next=%2Faccount");
    let signin = stranger.get("/signin").await;
    assert!(
        !signin.body.contains("/auth/oidc/start"),
        "no provider, no provider button"
    );

    let mut ann = Browser::new(&app);
    ann.sign_up("ann@example.com", "Ann <b>Smith</b>").await;
    let links = ann.get("/my/links").await;
    assert!(
        links.body.contains(r#"<a href="/account">Account</a>"#),
        "the header links to it"
    );
    let page = ann.get("/account").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ann@example.com"));
    assert!(
        page.body.contains("Ann &lt;b&gt;Smith&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>Smith"));
    for link in [
        "/account/password",
        "/account/keys",
        "/account/sessions",
        "/account/avatar",
    ] {
        assert!(page.body.contains(&format!(r#"href="{link}""#)), "{link}");
        assert_eq!(ann.get(link).await.status, 200, "{link}");
    }
}

async fn a_password_change_needs_the_current_one_follows_the_rules_and_ends_other_sessions(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let mut here = Browser::new(&app);
    here.sign_up("ann@example.com", "Ann").await;
    let mut elsewhere = Browser::new(&app);
    let signed_in = elsewhere
        .sign_in_as("ann@example.com", PASSWORD, "Other/1.0")
        .await;
    assert_eq!(signed_in.status, 303);

    let change = |current: &'static str, new: &'static str| {
        [("current_password", current), ("new_password", new)]
    };
    let wrong = here
        .submit(
            "/account/password",
            "/account/password",
            &change("not my password at all", NEW_PASSWORD),
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(
        wrong.body.contains("Current password is not correct."),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains(r#"id="f-current_password-error""#));

    for (new, problem) in [
        ("abcabcabcabc", "New password is too easy to guess"),
        ("password1234", "exposed in data breaches"),
        ("short", "New password must be at least"),
    ] {
        let refused = here
            .submit(
                "/account/password",
                "/account/password",
                &change(PASSWORD, new),
            )
            .await;
        assert_eq!(refused.status, 422, "{new}");
        assert!(
            refused.body.contains(r#"id="f-new_password-error""#),
            "{new}"
        );
        assert!(refused.body.contains(problem), "{new}: {}", refused.body);
    }
    // Nothing changed yet: the other session lives.
    assert_eq!(elsewhere.get("/account").await.status, 200);

    let changed = here
        .submit(
            "/account/password",
            "/account/password",
            &change(PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_see_other(&changed, "/account?done=password");
    assert!(
        here.get("/account?done=password")
            .await
            .body
            .contains("Your password is changed")
    );
    assert_eq!(
        elsewhere.get("/account").await.status,
        303,
        "other sessions end"
    );
    let old = Browser::new(&app)
        .sign_in_as("ann@example.com", PASSWORD, "Old/1.0")
        .await;
    assert_eq!(old.status, 422);
    let new = Browser::new(&app)
        .sign_in_as("ann@example.com", NEW_PASSWORD, "New/1.0")
        .await;
    assert_eq!(new.status, 303);
}

async fn an_api_key_is_shown_once_works_and_is_revoked_after_a_confirmation(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut ann = Browser::new(&app);
    ann.sign_up("ann@example.com", "Ann").await;

    // No name and no scope: the form again, each problem beside its field, the name escaped.
    let refused = ann
        .submit("/account/keys", "/account/keys", &[("name", "  ")])
        .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.body.contains(r#"id="f-name-error""#),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(r#"id="f-scopes-error""#),
        "{}",
        refused.body
    );

    let hostile = "<img src=x onerror=alert(1)>";
    let made = ann
        .submit(
            "/account/keys",
            "/account/keys",
            &[("name", hostile), ("scope_links_read", "on")],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert!(!made.body.contains(hostile));
    assert!(made.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    let key = shown_key(&made);
    assert_eq!(me_with_key(&app, &key).await, 200);

    let listed = ann.get("/account/keys").await;
    assert!(!listed.body.contains(&key), "the key is shown only once");
    assert!(
        listed.body.contains(&key[..10]),
        "its first characters tell it apart"
    );
    assert!(listed.body.contains("links:read"));

    let path = revoke_path(&listed);
    let confirm = ann.get(&path).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Revoke this key?"));
    assert_eq!(me_with_key(&app, &key).await, 200, "asking revokes nothing");
    let token = confirm.token();
    let revoked = ann.post(&path, &[("csrf", &token)]).await;
    assert_see_other(&revoked, "/account/keys?done=revoked");
    assert_eq!(me_with_key(&app, &key).await, 401);
    assert!(!ann.get("/account/keys").await.body.contains(&key[..10]));
    assert_eq!(ann.post(&path, &[("csrf", &token)]).await.status, 404);
}

async fn sessions_are_listed_with_their_browser_and_ended_one_or_all_others(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    Browser::new(&app).sign_up("ann@example.com", "Ann").await;
    let mut laptop = Browser::new(&app);
    laptop
        .sign_in_as(
            "ann@example.com",
            PASSWORD,
            "Mozilla/5.0 (X11; Linux) Firefox/140.0",
        )
        .await;
    let mut phone = Browser::new(&app);
    phone
        .sign_in_as(
            "ann@example.com",
            PASSWORD,
            "Mozilla/5.0 <script>x</script> Safari/605",
        )
        .await;
    let mut tablet = Browser::new(&app);
    tablet
        .sign_in_as("ann@example.com", PASSWORD, "Tablet/2.0")
        .await;

    let listed = laptop.get("/account/sessions").await;
    assert_eq!(listed.status, 200);
    assert!(listed.body.contains("Firefox/140.0"), "{}", listed.body);
    assert!(listed.body.contains("(this browser)"));
    assert!(listed.body.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(!listed.body.contains("<script>x"));
    // Sign-up, phone and tablet can be ended from here; this browser is not offered.
    let names = session_names(&listed);
    assert_eq!(names.len(), 3, "{}", listed.body);

    // End the phone's session: the one listed with its agent.
    let phone_row = listed
        .body
        .split("<tr>")
        .find(|row| row.contains("&lt;script&gt;"))
        .expect("the phone's row");
    let phone_name = session_names(&Page {
        status: 200,
        headers: listed.headers.clone(),
        body: phone_row.to_owned(),
    })
    .remove(0);
    let ended = laptop
        .post(
            "/account/sessions/end",
            &[("csrf", &listed.token()), ("session", &phone_name)],
        )
        .await;
    assert_see_other(&ended, "/account/sessions?done=ended");
    assert_eq!(
        phone.get("/account").await.status,
        303,
        "the phone is signed out"
    );
    assert_eq!(tablet.get("/account").await.status, 200);

    let others = laptop
        .submit("/account/sessions", "/account/sessions/end-others", &[])
        .await;
    assert_see_other(&others, "/account/sessions?done=others");
    assert_eq!(tablet.get("/account").await.status, 303);
    let left = laptop.get("/account/sessions").await;
    assert_eq!(left.status, 200);
    assert!(session_names(&left).is_empty(), "only this browser is left");
}

async fn an_avatar_is_uploaded_as_a_multipart_form_and_shown_once_resized(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut ann = Browser::new(&app);
    ann.sign_up("ann@example.com", "Ann").await;
    let form = ann.get("/account/avatar").await;
    assert!(form.body.contains(r#"enctype="multipart/form-data""#));
    assert!(form.body.contains("No picture yet."));
    let csrf = form.token();

    let (kind, body) = multipart(
        &[("csrf", &csrf)],
        ("avatar", "notes.png", b"just some text"),
    );
    let refused = ann.post_raw("/account/avatar", &kind, body, &[]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains(r#"id="f-avatar-error""#));
    assert!(refused.body.contains("PNG, JPEG or WebP"));

    let (kind, body) = multipart(
        &[],
        ("avatar", "me.png", &picture(ImageFormat::Png, 300, 200)),
    );
    let forged = ann.post_raw("/account/avatar", &kind, body, &[]).await;
    assert_eq!(forged.status, 403, "no token, no upload");

    let (kind, body) = multipart(
        &[("csrf", &csrf)],
        ("avatar", "me.png", &picture(ImageFormat::Png, 300, 200)),
    );
    let uploaded = ann.post_raw("/account/avatar", &kind, body, &[]).await;
    assert_see_other(&uploaded, "/account/avatar?done=avatar");
    let tokens = app.login_tokens("ann@example.com", PASSWORD).await;
    let id = crate::accounts_support::claims(tokens["accessToken"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the thumbnails", || async {
        let thumbnail = app.get(&format!("/users/{id}/avatar?size=64")).await;
        (thumbnail.status() == 200).then_some(())
    })
    .await;
    let page = ann.get("/account/avatar?done=avatar").await;
    assert!(page.body.contains("Your picture is uploaded"));
    let src = Regex::new(r#"src="(/users/[^"]+/avatar\?size=256&amp;v=[^"]+)""#)
        .unwrap()
        .captures(&page.body)
        .unwrap_or_else(|| panic!("an image in {}", page.body))[1]
        .replace("&amp;", "&");
    let image = app.get(&src).await;
    assert_eq!(image.status(), 200);
    let image = image::load_from_memory(&image.bytes().await.unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (256, 256));
}

async fn signing_out_everywhere_ends_every_session_and_token(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut here = Browser::new(&app);
    here.sign_up("ann@example.com", "Ann").await;
    let mut there = Browser::new(&app);
    there
        .sign_in_as("ann@example.com", PASSWORD, "There/1.0")
        .await;
    let tokens = app.login_tokens("ann@example.com", PASSWORD).await;
    app.clock.advance_ms(1_000);

    let out = here
        .submit("/account", "/account/sign-out-everywhere", &[])
        .await;
    assert_see_other(&out, "/");
    assert_eq!(here.get("/account").await.status, 303);
    assert_eq!(there.get("/account").await.status, 303);
    let refreshed = app
        .client
        .post(app.url("/auth/refresh"))
        .json(&serde_json::json!({"refreshToken": tokens["refreshToken"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 401);
}

async fn another_person_s_key_or_session_is_not_found_and_stays(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut ann = Browser::new(&app);
    ann.sign_up("ann@example.com", "Ann").await;
    let mut ann_phone = Browser::new(&app);
    ann_phone
        .sign_in_as("ann@example.com", PASSWORD, "Phone/1.0")
        .await;
    let made = ann
        .submit(
            "/account/keys",
            "/account/keys",
            &[("name", "ci"), ("scope_profile_read", "on")],
        )
        .await;
    let key = shown_key(&made);
    let path = revoke_path(&ann.get("/account/keys").await);
    let ann_sessions = session_names(&ann.get("/account/sessions").await);
    assert_eq!(ann_sessions.len(), 1);

    let mut bob = Browser::new(&app);
    bob.sign_up("bob@example.com", "Bob").await;
    assert_eq!(bob.get(&path).await.status, 404);
    let token = bob.get("/account").await.token();
    assert_eq!(bob.post(&path, &[("csrf", &token)]).await.status, 404);
    let end = bob
        .post(
            "/account/sessions/end",
            &[("csrf", &token), ("session", &ann_sessions[0])],
        )
        .await;
    assert_eq!(end.status, 404);
    assert_eq!(me_with_key(&app, &key).await, 200, "Ann's key still works");
    assert_eq!(
        ann_phone.get("/account").await.status,
        200,
        "Ann's session lives"
    );
}

async fn every_account_form_needs_its_token(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut ann = Browser::new(&app);
    ann.sign_up("ann@example.com", "Ann").await;
    for (path, fields) in [
        (
            "/account/password",
            vec![
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        ),
        (
            "/account/keys",
            vec![("name", "k"), ("scope_links_read", "on")],
        ),
        ("/account/sessions/end-others", vec![]),
        ("/account/sign-out-everywhere", vec![]),
    ] {
        let refused = ann.post(path, &fields).await;
        assert_eq!(refused.status, 403, "{path}");
        let token = ann.get("/account").await.token();
        let mut with_token = vec![("csrf", token.as_str())];
        with_token.extend_from_slice(&fields);
        let foreign = ann
            .post_from(path, &with_token, "https://evil.example")
            .await;
        assert_eq!(foreign.status, 403, "{path} from another site");
    }
    // Nothing happened: still signed in with the old password, no key made.
    assert_eq!(ann.get("/account").await.status, 200);
    assert!(
        ann.get("/account/keys")
            .await
            .body
            .contains("You have no API keys.")
    );
}

/// Asserts a throttled form: an HTML 429 that says when to try again (at most `max` s).
fn assert_throttled(page: &Page, action: &str, max: u64) {
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.is_html(), "{:?}", page.headers);
    let retry: u64 = page.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=max).contains(&retry), "Retry-After {retry}");
    assert!(
        page.body.contains(&format!(r#"action="{action}""#)),
        "the form again: {}",
        page.body
    );
    assert!(page.body.contains("wait") || page.body.contains("Wait"));
}

async fn too_many_failed_sign_ins_codes_or_resets_bring_the_form_back_with_429(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    Browser::new(&app).sign_up("ann@example.com", "Ann").await;
    Browser::new(&app).sign_up("bob@example.com", "Bob").await;
    let wrong = [
        ("email", "ann@example.com"),
        ("password", "not the password"),
    ];

    // Five wrong passwords are each "not correct"; the sixth try is throttled, even with
    // the right password, and the form comes back with the email kept.
    let mut mallory = Browser::new(&app);
    for _ in 0..5 {
        let page = mallory.submit("/signin", "/signin", &wrong).await;
        assert_eq!(page.status, 422, "{}", page.body);
    }
    let right = [("email", "ann@example.com"), ("password", PASSWORD)];
    let page = mallory.submit("/signin", "/signin", &right).await;
    assert_throttled(&page, "/signin", 15 * 60);
    assert!(
        page.body.contains("Too many sign-in attempts"),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"value="ann@example.com""#));
    assert!(!mallory.has_cookie("__Host-basis_session"));
    // Another account from the same address is not held back.
    let bob = [("email", "bob@example.com"), ("password", PASSWORD)];
    assert_eq!(mallory.submit("/signin", "/signin", &bob).await.status, 303);
    // Past the window, Ann signs in.
    app.clock.advance_ms(15 * 60 * 1000 + 1);
    let mut ann = Browser::new(&app);
    assert_eq!(ann.submit("/signin", "/signin", &right).await.status, 303);

    // Reset mails: three an hour per address, then the form again.
    let mut someone = Browser::new(&app);
    for _ in 0..3 {
        let page = someone
            .submit("/reset", "/reset", &[("email", "ann@example.com")])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
    }
    let page = someone
        .submit("/reset", "/reset", &[("email", "ann@example.com")])
        .await;
    assert_throttled(&page, "/reset", 60 * 60);
    assert!(page.body.contains(r#"id="f-email-error""#), "{}", page.body);

    // Codes of the sign-in's second step: throttled per account.
    let start = ann
        .submit("/account/two-step", "/account/two-step/start", &[])
        .await;
    let secret = Regex::new(r#"<code class="secret">([A-Z2-7]+)</code>"#)
        .unwrap()
        .captures(&start.body)
        .unwrap_or_else(|| panic!("a key in {}", start.body))[1]
        .to_owned();
    let code = |app: &TestApp| {
        use basis_server::clock::Clock as _;
        let now = app.clock.now_ms();
        basis_auth::totp::code_at(&secret, basis_auth::totp::step_at(now)).unwrap()
    };
    let on = ann
        .post(
            "/account/two-step/confirm",
            &[("csrf", &start.token()), ("code", &code(&app))],
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.body);
    app.clock.advance_ms(15 * 60 * 1000 + 1);
    let right_code = code(&app);
    let wrong_code = format!(
        "{:06}",
        (right_code.parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let mut guesser = Browser::new(&app);
    let mut page = guesser.submit("/signin", "/signin", &right).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let challenge = Regex::new(r#"name="challenge" value="([^"]+)""#).unwrap();
    for attempt in 0..6 {
        let sent = challenge.captures(&page.body).unwrap()[1].to_owned();
        page = guesser
            .post(
                "/signin/code",
                &[
                    ("csrf", &page.token()),
                    ("challenge", &sent),
                    ("code", &wrong_code),
                ],
            )
            .await;
        if attempt < 5 {
            assert_eq!(page.status, 422, "{}", page.body);
        }
    }
    assert_throttled(&page, "/signin/code", 15 * 60);
    assert!(page.body.contains("tried too many times"), "{}", page.body);
}

async fn a_form_refused_by_the_rate_limiter_is_a_page_for_browsers_and_a_problem_for_clients(
    engine: Engine,
) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rate-limits.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"login\"\nmethods = [\"POST\"]\npaths = [\"/signin\"]\n\
         key = \"ip\"\nalgorithm = \"sliding_log\"\nlimit = 2\nperiod = \"15m\"\n",
    )
    .unwrap();
    let app = TestApp::spawn_with(&engine, |c| {
        c.rate_limits = None;
        c.rate_limit_config = Some(rules.clone());
    })
    .await;
    let mut browser = Browser::new(&app);
    let wrong = [
        ("email", "ann@example.com"),
        ("password", "not the password"),
    ];
    for _ in 0..2 {
        assert_eq!(
            browser.submit("/signin", "/signin", &wrong).await.status,
            422
        );
    }
    let page = browser.submit("/signin", "/signin", &wrong).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.is_html(), "{:?}", page.headers);
    assert!(page.body.contains("Too many attempts"), "{}", page.body);
    let retry: u64 = page.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    assert!(
        page.headers.contains_key("x-ratelimit-limit"),
        "{:?}",
        page.headers
    );
    // A client that does not ask for HTML gets the problem document, as before.
    let response = app
        .client
        .post(app.url("/signin"))
        .header("accept", "application/json")
        .form(&wrong)
        .send()
        .await
        .unwrap();
    let problem = crate::helpers::assert_problem(response, 429).await;
    assert!(problem["retryAfter"].as_u64().unwrap() >= 1, "{problem}");
}
