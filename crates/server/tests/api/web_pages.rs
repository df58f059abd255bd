//! The web pages: a whole journey without JavaScript (plain form posts answered by 303s),
//! the CSP with a fresh nonce on every page, CSRF on every form, escaped output, forms
//! shown again with their problems (422), sign-in and back with no open redirect, cursor
//! pages, QR codes that decode to the short URL, reserved page words, and the 404 page.

use regex::Regex;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;
use crate::web_support::{Browser, Page};

on_both_engines!(
    a_person_signs_up_shortens_sees_the_qr_lists_and_deletes_without_javascript,
    every_page_carries_a_strict_policy_with_a_fresh_nonce_on_its_script,
    a_form_posted_without_its_token_or_from_another_site_is_refused,
    hostile_text_typed_into_fields_comes_back_inert,
    invalid_input_is_shown_again_with_each_problem_beside_its_field,
    a_page_that_needs_sign_in_sends_people_there_and_back_but_never_elsewhere,
    my_links_come_in_cursor_pages,
    a_qr_code_decodes_back_to_the_short_url,
    page_words_are_reserved_aliases_and_a_link_that_holds_one_keeps_working,
    a_missing_page_is_html_for_browsers_and_a_problem_document_for_others,
);

/// The session cookie's name.
const SESSION: &str = "__Host-basis_session";

fn assert_see_other(page: &Page, location: &str) {
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), location);
}

async fn a_person_signs_up_shortens_sees_the_qr_lists_and_deletes_without_javascript(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let welcome = browser.sign_up("ann@example.com", "Ann").await;
    assert_eq!(welcome.location(), "/my/links");
    assert!(browser.has_cookie(SESSION), "signing up signs in");
    let empty = browser.get("/my/links").await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("Signed in as Ann"), "{}", empty.body);
    assert!(empty.body.contains("You have no links yet"));

    let made = browser
        .shorten(
            "https://example.com/launch",
            &[
                ("alias", "launch-day"),
                ("redirect", "302"),
                ("max_clicks", "10"),
            ],
        )
        .await;
    assert_see_other(&made, "/?created=launch-day");
    let shown = browser.get(made.location()).await;
    assert_eq!(shown.status, 200);
    let short_url = app.url("/launch-day");
    assert!(
        shown.body.contains(&format!(r#"value="{short_url}""#)),
        "{}",
        shown.body
    );
    assert!(shown.body.contains(&format!(r#"data-copy="{short_url}""#)));
    assert!(shown.body.contains(r#"src="/launch-day/qr.svg""#));
    assert!(shown.body.contains(r#"href="/launch-day/qr.png""#));
    // Someone else asking for the same result sees no link.
    let stranger = Browser::new(&app).get("/?created=launch-day").await;
    assert!(
        !stranger.body.contains("Your short link"),
        "{}",
        stranger.body
    );

    // The API sees what the form made, owned by Ann.
    let tokens = app
        .login_tokens("ann@example.com", crate::accounts_support::PASSWORD)
        .await;
    let ann = tokens["accessToken"].as_str().unwrap();
    let read = || {
        app.bearer(reqwest::Method::GET, "/links/launch-day", ann)
            .send()
    };
    let link: Value = read().await.unwrap().json().await.unwrap();
    assert_eq!(link["longUrl"], "https://example.com/launch");
    assert_eq!(link["redirectType"], 302);
    assert_eq!(link["maxClicks"], 10);

    let listed = browser.get("/my/links").await;
    assert!(
        listed.body.contains("https://example.com/launch"),
        "{}",
        listed.body
    );
    let confirm = browser.get("/my/links/launch-day/delete").await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("Delete this link?"),
        "{}",
        confirm.body
    );
    assert_eq!(
        read().await.unwrap().status(),
        200,
        "asking deletes nothing"
    );
    let token = confirm.token();
    let deleted = browser
        .post("/my/links/launch-day/delete", &[("csrf", &token)])
        .await;
    assert_see_other(&deleted, "/my/links?deleted=launch-day");
    assert_eq!(read().await.unwrap().status(), 404);
    let after = browser.get(deleted.location()).await;
    assert!(after.body.contains("Deleted launch-day."), "{}", after.body);

    let token = after.token();
    let out = browser.post("/signout", &[("csrf", &token)]).await;
    assert_see_other(&out, "/");
    assert!(!browser.has_cookie(SESSION), "the cookie is cleared");
    let gone = browser.get("/my/links").await;
    assert_eq!(gone.status, 303);

    // Signing in again through the page.
    let again = browser
        .submit(
            "/signin",
            "/signin",
            &[
                ("email", "ann@example.com"),
                ("password", crate::accounts_support::PASSWORD),
            ],
        )
        .await;
    assert_see_other(&again, "/my/links");
    assert_eq!(browser.get("/my/links").await.status, 200);
}

/// The nonce of a page's policy, checked to be the one its script carries.
fn nonce_of(page: &Page) -> String {
    assert!(page.is_html(), "{:?}", page.headers);
    let policy = page.policy();
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    let nonce = Regex::new(r"script-src 'nonce-([A-Za-z0-9+/=]{22,})'")
        .unwrap()
        .captures(policy)
        .unwrap_or_else(|| panic!("no script nonce in {policy}"))[1]
        .to_owned();
    let scripts: Vec<_> = page.body.match_indices("<script").collect();
    assert!(!scripts.is_empty(), "the page has its script");
    assert_eq!(
        page.body.matches(&format!(r#"nonce="{nonce}""#)).count(),
        scripts.len(),
        "every script carries the response's nonce"
    );
    assert!(!page.body.contains(" style="), "no inline style");
    nonce
}

async fn every_page_carries_a_strict_policy_with_a_fresh_nonce_on_its_script(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let mut nonces = Vec::new();
    for path in ["/", "/signin", "/signup", "/no/such/page"] {
        nonces.push(nonce_of(&browser.get(path).await));
    }
    let invalid = browser.shorten("not a url", &[]).await;
    assert_eq!(invalid.status, 422);
    nonces.push(nonce_of(&invalid));
    let refused = browser.post("/", &[("url", "https://example.com/")]).await;
    assert_eq!(refused.status, 403);
    nonces.push(nonce_of(&refused));
    browser.sign_up("pat@example.com", "Pat").await;
    let made = browser
        .shorten("https://example.com/p", &[("alias", "pats")])
        .await;
    for path in [made.location(), "/my/links", "/my/links/pats/delete"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.headers["cache-control"], "no-store", "{path}");
        assert_eq!(page.headers["x-frame-options"], "DENY", "{path}");
        nonces.push(nonce_of(&page));
    }
    let mut unique = nonces.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        nonces.len(),
        "a nonce is never reused: {nonces:?}"
    );

    // The page's own assets: hashed names, cached for a year.
    let home = browser.get("/").await;
    let stylesheet = Regex::new(r#"href="(/assets/app\.[0-9a-f]{16}\.css)""#)
        .unwrap()
        .captures(&home.body)
        .expect("a hashed stylesheet")[1]
        .to_owned();
    let css = app.get(&stylesheet).await;
    assert_eq!(css.status(), 200);
    assert_eq!(
        css.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        css.text()
            .await
            .unwrap()
            .contains("prefers-color-scheme: dark")
    );
    assert_eq!(
        app.get("/assets/app.0000000000000000.css").await.status(),
        404
    );
}

async fn a_form_posted_without_its_token_or_from_another_site_is_refused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let home = browser.get("/").await;
    let token = home.token();

    // Before sign-in: the forms' own cookie token.
    let without = browser
        .post(
            "/",
            &[("url", "https://example.com/a"), ("alias", "no-token")],
        )
        .await;
    assert_eq!(without.status, 403, "{}", without.body);
    assert!(without.is_html());
    let wrong = browser
        .post(
            "/",
            &[
                ("csrf", "x".repeat(43).as_str()),
                ("url", "https://example.com/a"),
                ("alias", "no-token"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let elsewhere = browser
        .post_from(
            "/",
            &[
                ("csrf", &token),
                ("url", "https://example.com/a"),
                ("alias", "no-token"),
            ],
            "https://evil.example",
        )
        .await;
    assert_eq!(elsewhere.status, 403);
    assert_eq!(
        app.get("/links/no-token").await.status(),
        404,
        "nothing was made"
    );
    // A browser that never loaded a form has no token cookie: its post is refused too.
    let mut stranger = Browser::new(&app);
    let blind = stranger
        .post(
            "/signin",
            &[
                ("csrf", &token),
                ("email", "a@example.com"),
                ("password", "x"),
            ],
        )
        .await;
    assert_eq!(blind.status, 403);
    let made = browser
        .post(
            "/",
            &[
                ("csrf", &token),
                ("url", "https://example.com/a"),
                ("alias", "with-token"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);

    // Signed in: the session's token.
    browser.sign_up("sam@example.com", "Sam").await;
    let mine = browser
        .shorten("https://example.com/b", &[("alias", "keep-me")])
        .await;
    assert_eq!(mine.status, 303);
    let refused = browser.post("/my/links/keep-me/delete", &[]).await;
    assert_eq!(refused.status, 403);
    let old_token = browser
        .post("/my/links/keep-me/delete", &[("csrf", &token)])
        .await;
    assert_eq!(
        old_token.status, 403,
        "the pre-sign-in token is not the session's"
    );
    let session_token = browser.get("/my/links").await.token();
    let cross = browser
        .post_from(
            "/my/links/keep-me/delete",
            &[("csrf", &session_token)],
            "https://evil.example",
        )
        .await;
    assert_eq!(cross.status, 403);
    let sign_out = browser.post("/signout", &[]).await;
    assert_eq!(sign_out.status, 403, "signing out needs the token too");
    assert_eq!(
        app.get("/keep-me").await.status(),
        301,
        "nothing was deleted"
    );
    assert!(browser.has_cookie(SESSION));
}

async fn hostile_text_typed_into_fields_comes_back_inert(engine: Engine) {
    const HOSTILE: &str = r#""><script>alert(1)</script><img src=x onerror=alert(2)>"#;
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let assert_inert = |page: &Page| {
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{}",
            page.body
        );
    };
    // Shown back in the form, in every field that is echoed.
    let shorten = browser
        .shorten(
            HOSTILE,
            &[
                ("alias", HOSTILE),
                ("max_clicks", HOSTILE),
                ("expires", HOSTILE),
            ],
        )
        .await;
    assert_eq!(shorten.status, 422);
    assert_inert(&shorten);
    let sign_up = browser
        .submit(
            "/signup",
            "/signup",
            &[("email", HOSTILE), ("name", "Eve"), ("password", "short")],
        )
        .await;
    assert_eq!(sign_up.status, 422);
    assert_inert(&sign_up);
    let sign_in = browser
        .submit(
            "/signin",
            "/signin",
            &[("email", HOSTILE), ("password", "whatever it is")],
        )
        .await;
    assert_eq!(sign_in.status, 422);
    assert!(!sign_in.body.contains("<script>alert"), "{}", sign_in.body);
    // Stored, then shown on every page: a name, and a search.
    browser.sign_up("eve@example.com", HOSTILE).await;
    let listed = browser.get("/my/links").await;
    assert_inert(&listed);
    let searched = browser
        .get(&format!(
            "/my/links?q={}",
            url::form_urlencoded::byte_serialize(HOSTILE.as_bytes()).collect::<String>()
        ))
        .await;
    assert_inert(&searched);
    // A next= that tries to break out of its attribute.
    let next = Browser::new(&app)
        .get("/signin?next=/%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert!(!next.body.contains("<script>alert"), "{}", next.body);
}

async fn invalid_input_is_shown_again_with_each_problem_beside_its_field(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let page = browser
        .shorten(
            "example.com/no-scheme",
            &[
                ("alias", "ab"),
                ("max_clicks", "0"),
                ("expires", "2001-01-01T00:00"),
                ("redirect", "303"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    for field in ["url", "alias", "max_clicks", "expires", "redirect"] {
        let marked = Regex::new(&format!(
            r#"id="f-{field}"[^>]*aria-invalid="true"[^>]*aria-describedby="[^"]*f-{field}-error""#
        ))
        .unwrap();
        assert!(
            marked.is_match(&page.body),
            "{field} is marked in {}",
            page.body
        );
        assert!(
            page.body.contains(&format!(r#"id="f-{field}-error""#)),
            "{field}"
        );
    }
    assert!(
        page.body.contains(r#"value="example.com/no-scheme""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"value="ab""#));
    assert!(page.body.contains("must be 3 to 64 characters long"));
    assert!(page.body.contains("must be in the future"));
    assert!(page.body.contains(r#"role="alert""#));
    // A field without a problem is not marked.
    let fine = browser
        .shorten("https://example.com/ok", &[("alias", "x!")])
        .await;
    assert_eq!(fine.status, 422);
    assert!(
        !Regex::new(r#"id="f-url"[^>]*aria-invalid"#)
            .unwrap()
            .is_match(&fine.body)
    );
    assert!(fine.body.contains(r#"value="https://example.com/ok""#));

    // A taken alias is a problem of the alias field.
    browser
        .shorten("https://example.com/1", &[("alias", "taken")])
        .await;
    let taken = browser
        .shorten("https://example.com/2", &[("alias", "taken")])
        .await;
    assert_eq!(taken.status, 422);
    assert!(
        Regex::new(r#"id="f-alias"[^>]*aria-invalid="true""#)
            .unwrap()
            .is_match(&taken.body)
    );

    let sign_up = browser
        .submit(
            "/signup",
            "/signup",
            &[
                ("email", "not-an-email"),
                ("name", "Zed"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(sign_up.status, 422);
    assert!(
        Regex::new(r#"id="f-email"[^>]*aria-invalid="true""#)
            .unwrap()
            .is_match(&sign_up.body)
    );
    assert!(sign_up.body.contains(r#"value="Zed""#), "the name is kept");
    assert!(
        !sign_up.body.contains(r#"value="short""#),
        "a password is never echoed"
    );
    browser.sign_up("zed@example.com", "Zed").await;
    let mut other = Browser::new(&app);
    let duplicate = other
        .submit(
            "/signup",
            "/signup",
            &[
                ("email", "zed@example.com"),
                ("name", "Zed"),
                ("password", crate::accounts_support::PASSWORD),
            ],
        )
        .await;
    assert_eq!(duplicate.status, 422);
    assert!(duplicate.body.contains("an account with this email exists"));

    let wrong = other
        .submit(
            "/signin",
            "/signin",
            &[
                ("email", "zed@example.com"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("The email or password is not correct."));
    assert!(wrong.body.contains(r#"value="zed@example.com""#));
}

async fn a_page_that_needs_sign_in_sends_people_there_and_back_but_never_elsewhere(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    Browser::new(&app).sign_up("kim@example.com", "Kim").await;
    let mut browser = Browser::new(&app);
    let sent = browser.get("/my/links?q=docs&sort=-clicks").await;
    assert_see_other(
        &sent,
        "/signin?next=%2Fmy%2Flinks%3Fq%3Ddocs%26sort%3D-clicks",
    );
    let form = browser.get(sent.location()).await;
    assert!(
        form.body
            .contains(r#"name="next" value="/my/links?q=docs&amp;sort=-clicks""#),
        "{}",
        form.body
    );
    let token = form.token();
    let next = "/my/links?q=docs&sort=-clicks";
    let back = browser
        .post(
            "/signin",
            &[
                ("csrf", &token),
                ("email", "kim@example.com"),
                ("password", crate::accounts_support::PASSWORD),
                ("next", next),
            ],
        )
        .await;
    assert_see_other(&back, "/my/links?q=docs&sort=-clicks");
    assert_eq!(
        browser.get("/my/links?q=docs&sort=-clicks").await.status,
        200
    );

    let hostile = [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\r\nSet-Cookie: x=y",
    ];
    // Posted with the sign-in form (three tries: the login throttle allows five in all).
    for next in &hostile[..3] {
        let mut fresh = Browser::new(&app);
        let token = fresh.get("/signin").await.token();
        let landed = fresh
            .post(
                "/signin",
                &[
                    ("csrf", &token),
                    ("email", "kim@example.com"),
                    ("password", crate::accounts_support::PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_see_other(&landed, "/my/links");
    }
    // Given to the page when already signed in, which sends people on at once.
    for next in hostile {
        let query: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let page = browser.get(&format!("/signin?next={query}")).await;
        assert_see_other(&page, "/my/links");
        let page = browser.get(&format!("/signup?next={query}")).await;
        assert_see_other(&page, "/my/links");
    }
    // And never written into the form.
    let mut anonymous = Browser::new(&app);
    let form = anonymous.get("/signin?next=%2F%2Fevil.example%2F").await;
    assert!(!form.body.contains("evil.example"), "{}", form.body);

    // A session idle past its 30 minutes sends the person to sign in again, and back.
    app.clock.advance_ms(31 * 60 * 1000);
    let expired = browser.get("/my/links").await;
    assert_see_other(&expired, "/signin?next=%2Fmy%2Flinks");
}

async fn my_links_come_in_cursor_pages(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    browser.sign_up("lee@example.com", "Lee").await;
    for n in 0..23 {
        let made = browser
            .shorten(&format!("https://example.com/{n}"), &[])
            .await;
        assert_eq!(made.status, 303);
        // Distinct creation times, so the order is the order of making.
        app.clock.advance_ms(1000);
    }
    let first = browser.get("/my/links").await;
    let rows = |page: &Page| page.body.matches("<tr>").count() - 1;
    assert_eq!(rows(&first), 20);
    assert!(first.body.contains("https://example.com/22"));
    assert!(!first.body.contains("https://example.com/2<"));
    let next = Regex::new(r#"href="(/my/links\?cursor=[^"]+)" rel="next""#)
        .unwrap()
        .captures(&first.body)
        .expect("a next page")[1]
        .replace("&amp;", "&");
    let second = browser.get(&next).await;
    assert_eq!(rows(&second), 3);
    for n in 0..3 {
        assert!(
            second.body.contains(&format!("https://example.com/{n}<")),
            "{n}"
        );
    }
    assert!(!second.body.contains(r#"rel="next""#));
    let broken = browser.get("/my/links?cursor=not-a-cursor").await;
    assert_eq!(broken.status, 422);
    assert!(broken.body.contains("Start again"));
    // Another person sees none of them.
    let mut other = Browser::new(&app);
    other.sign_up("mo@example.com", "Mo").await;
    let theirs = other.get("/my/links").await;
    assert!(!theirs.body.contains("https://example.com/1"));
}

async fn a_qr_code_decodes_back_to_the_short_url(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({"longUrl": "https://example.com/printed"}))
        .await;
    let code = link["shortCode"].as_str().unwrap();
    let short_url = link["shortUrl"].as_str().unwrap();

    let png = app.get(&format!("/{code}/qr.png")).await;
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    let bytes = png.bytes().await.unwrap();
    let image = image::load_from_memory(&bytes).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        image.width() as usize,
        image.height() as usize,
        |x, y| image.get_pixel(x as u32, y as u32)[0],
    );
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one code in the image");
    let (_, content) = grids[0].decode().expect("a readable code");
    assert_eq!(content, short_url);

    let svg = app.get(&format!("/{code}/qr.svg")).await;
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert_eq!(
        svg.headers()["content-security-policy"],
        "default-src 'none'"
    );
    let text = svg.text().await.unwrap();
    assert!(text.contains("<svg") && !text.contains("<script"), "{text}");

    // The link's preview page is HTML too, under a policy that allows nothing.
    let preview = Browser::new(&app).get(&format!("/{code}+")).await;
    assert!(preview.is_html());
    assert!(
        preview.policy().starts_with("default-src 'none'"),
        "{}",
        preview.policy()
    );
    assert!(preview.policy().contains("frame-ancestors 'none'"));

    assert_problem(app.get("/nothing1/qr.png").await, 404).await;
    assert_problem(app.get("/nothing1/qr.svg").await, 404).await;
    // Deleted: no code any more.
    assert_eq!(
        app.client
            .delete(app.url(&format!("/links/{code}")))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(app.get(&format!("/{code}/qr.png")).await.status(), 404);
}

async fn page_words_are_reserved_aliases_and_a_link_that_holds_one_keeps_working(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    for word in [
        "signin", "signup", "signout", "account", "blog", "reset", "admin", "Assets",
    ] {
        let response = app
            .shorten(json!({"longUrl": "https://example.com/", "customAlias": word}))
            .await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], "customAlias", "{word}");
    }
    // Links that took these words before they were reserved, written as an older release did.
    let old = |id: i64, alias: &str| basis_store::links::LinkRow {
        id,
        alias: Some(alias.to_owned()),
        long_url: format!("https://example.com/{alias}"),
        created_at: 0,
        expires_at: None,
        max_clicks: None,
        redirect_type: 301,
        password_hash: None,
        owner_id: None,
        rules: None,
        domain: None,
    };
    basis_store::links::insert_many(
        &app.state.store,
        &[
            old(9_000_000_001, "docs"),
            old(9_000_000_002, "signin"),
            old(9_000_000_003, "blog"),
        ],
    )
    .await
    .unwrap();
    // No page takes /docs: it still redirects.
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 301);
    assert_eq!(docs.headers()["location"], "https://example.com/docs");
    // /blog is a page now; its link lives on under its code.
    let blog = Browser::new(&app).get("/blog").await;
    assert!(blog.body.contains("<h1>Blog</h1>"), "{}", blog.body);
    let link = app.get("/links/blog").await;
    assert_eq!(link.status(), 200);
    // /signin is the page now, but the link is still there under its code.
    let page = Browser::new(&app).get("/signin").await;
    assert!(page.body.contains("<h1>Sign in</h1>"), "{}", page.body);
    let link = app.get("/links/signin").await;
    assert_eq!(link.status(), 200);
    let link: Value = link.json().await.unwrap();
    assert_eq!(link["longUrl"], "https://example.com/signin");
    let preview = app.get("/signin+").await;
    assert_eq!(preview.status(), 200);
    assert_eq!(app.get("/signin/qr.svg").await.status(), 200);
}

async fn a_missing_page_is_html_for_browsers_and_a_problem_document_for_others(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    for path in ["/no/such/page", "/nosuchcode", "/links/nosuchcode"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(page.is_html(), "{path}: {:?}", page.headers);
        assert!(page.body.contains("Page not found"), "{path}");
        nonce_of(&page);
        assert_problem(app.get(path).await, 404).await;
        let api = app
            .client
            .get(app.url(path))
            .header("accept", "application/json, text/html")
            .send()
            .await
            .unwrap();
        assert_problem(api, 404).await;
    }
}
