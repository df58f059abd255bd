//! The password-reset pages over the real SMTP sink: ask on `/reset`, read the mail,
//! follow its link, choose a password (weak and breached ones refused beside the field),
//! sign in with it. The link's token is neither cached nor passed on, works once, for an
//! hour, and the page answers the same whether or not an account uses the email.

use regex::Regex;

use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;
use crate::password_reset::reset_link_in;
use crate::smtp_sink::SmtpSink;
use crate::web_support::{Browser, Page};

on_both_engines!(
    a_forgotten_password_is_reset_through_the_mailed_link_and_signs_in,
    the_request_page_says_the_same_for_unknown_emails_and_checks_its_form,
    an_expired_or_used_link_gets_a_friendly_page_and_changes_nothing,
);

const NEW_PASSWORD: &str = "amber kites drift over quiet harbours";

async fn spawn(engine: &Engine, sink: &SmtpSink) -> TestApp {
    let url = sink.url();
    TestApp::spawn_with(engine, move |c| c.auth.smtp_url = Some(url)).await
}

/// The path and query of a mailed link (the sink's app is the link's origin).
fn local(link: &str) -> String {
    let url = url::Url::parse(link).expect("an absolute link");
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

/// The value of the hidden reset-token field.
fn hidden_token(page: &Page) -> String {
    let field = Regex::new(r#"type="hidden" name="token" value="([^"]+)""#).unwrap();
    field
        .captures(&page.body)
        .unwrap_or_else(|| panic!("no token field in {}", page.body))[1]
        .to_owned()
}

async fn ask_for_a_link(browser: &mut Browser<'_>, email: &str) -> Page {
    browser
        .submit("/reset", "/reset", &[("email", email)])
        .await
}

async fn a_forgotten_password_is_reset_through_the_mailed_link_and_signs_in(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let app = spawn(&engine, &sink).await;
    let mut ann = Browser::new(&app);
    ann.sign_up("ann@example.com", "Ann").await;
    assert_eq!(ann.get("/my/links").await.status, 200);

    let mut forgetful = Browser::new(&app);
    let signin = forgetful.get("/signin").await;
    assert!(signin.body.contains(r#"href="/reset""#), "{}", signin.body);
    let asked = ask_for_a_link(&mut forgetful, "  ANN@example.com ").await;
    assert_eq!(asked.status, 303, "{}", asked.body);
    assert_eq!(asked.location(), "/reset?sent=1");
    let sent = forgetful.get(asked.location()).await;
    assert!(
        sent.body.contains("a reset link is on its way"),
        "{}",
        sent.body
    );

    let mail = sink.next().await;
    assert_eq!(mail.to, vec!["ann@example.com".to_owned()]);
    let link = reset_link_in(&mail.data);
    assert!(link.starts_with(&app.url("/reset/new?token=")), "{link}");
    assert!(
        !mail.data.contains("/auth/password-reset/confirm"),
        "people get a page, not an API call: {}",
        mail.data
    );

    let form = forgetful.get(&local(&link)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.headers["referrer-policy"], "same-origin");
    assert_eq!(form.headers["cache-control"], "no-store");
    let token = hidden_token(&form);
    assert!(link.ends_with(&token), "the field holds the link's token");
    assert!(
        form.body.contains(r#"action="/reset/new""#),
        "the form posts to the bare path: {}",
        form.body
    );
    assert_eq!(
        form.body.matches(&token).count(),
        1,
        "the token is only in its hidden field"
    );

    // Weak, then breached: the form again, the problem beside the field, the token kept.
    let csrf = form.token();
    for (password, problem) in [
        ("abcabcabcabc", "New password is too easy to guess"),
        ("password1234", "exposed in data breaches"),
    ] {
        let refused = forgetful
            .post(
                "/reset/new",
                &[("csrf", &csrf), ("token", &token), ("password", password)],
            )
            .await;
        assert_eq!(refused.status, 422, "{password}: {}", refused.body);
        assert_eq!(refused.headers["referrer-policy"], "same-origin");
        assert!(refused.body.contains(r#"aria-invalid="true""#));
        assert!(refused.body.contains(r#"id="f-password-error""#));
        assert!(refused.body.contains(problem), "{}", refused.body);
        assert_eq!(hidden_token(&refused), token);
    }

    let done = forgetful
        .post(
            "/reset/new",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/reset/done");
    let done = forgetful.get("/reset/done").await;
    assert!(done.body.contains("Your password is changed"));

    // Ann's old session ended with the old password.
    let ended = ann.get("/my/links").await;
    assert_eq!(ended.status, 303);
    assert!(ended.location().starts_with("/signin"));

    let old = forgetful
        .submit(
            "/signin",
            "/signin",
            &[
                ("email", "ann@example.com"),
                ("password", crate::accounts_support::PASSWORD),
            ],
        )
        .await;
    assert_eq!(old.status, 422, "the old password no longer works");
    let signed_in = forgetful
        .submit(
            "/signin",
            "/signin",
            &[("email", "ann@example.com"), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(forgetful.get("/my/links").await.status, 200);

    // The link worked once.
    let again = forgetful.get(&local(&link)).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("This link no longer works"));
}

async fn the_request_page_says_the_same_for_unknown_emails_and_checks_its_form(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let app = spawn(&engine, &sink).await;
    Browser::new(&app).sign_up("bob@example.com", "Bob").await;
    let mut visitor = Browser::new(&app);

    let unknown = ask_for_a_link(&mut visitor, "nobody@example.com").await;
    let known = ask_for_a_link(&mut visitor, "bob@example.com").await;
    assert_eq!(unknown.status, 303);
    assert_eq!(
        (unknown.status, unknown.location()),
        (known.status, known.location())
    );
    // The first mail is Bob's: nothing went to the unknown address.
    assert_eq!(sink.next().await.to, vec!["bob@example.com".to_owned()]);
    assert!(sink.mail.try_recv().is_err());

    // Not an email: the form again, with the problem beside the field, escaped.
    let hostile = "<script>alert(1)</script>";
    let refused = ask_for_a_link(&mut visitor, hostile).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains(r#"aria-invalid="true""#));
    assert!(refused.body.contains("Email must be an email address."));
    assert!(!refused.body.contains(hostile), "{}", refused.body);
    assert!(refused.body.contains("&lt;script&gt;"));

    // Without the form's token, nothing is sent.
    let forged = visitor
        .post("/reset", &[("email", "bob@example.com")])
        .await;
    assert_eq!(forged.status, 403);
    let forged = visitor
        .post(
            "/reset/new",
            &[
                ("token", "made-up-token-of-enough-length"),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(sink.mail.try_recv().is_err());
}

async fn an_expired_or_used_link_gets_a_friendly_page_and_changes_nothing(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let app = spawn(&engine, &sink).await;
    let mut cy = Browser::new(&app);
    cy.sign_up("cy@example.com", "Cy").await;
    let mut visitor = Browser::new(&app);
    ask_for_a_link(&mut visitor, "cy@example.com").await;
    let link = reset_link_in(&sink.next().await.data);
    let form = visitor.get(&local(&link)).await;
    assert_eq!(form.status, 200);
    let (csrf, token) = (form.token(), hidden_token(&form));

    app.clock.advance_ms(60 * 60 * 1000);
    let expired = visitor.get(&local(&link)).await;
    assert_eq!(expired.status, 410);
    assert_eq!(expired.headers["referrer-policy"], "same-origin");
    assert!(
        expired.body.contains(r#"href="/reset""#),
        "a way to a new link"
    );
    let late = visitor
        .post(
            "/reset/new",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(late.status, 422);
    assert!(late.body.contains("This link no longer works"));
    // Nothing changed: Cy's password is the old one, and a made-up link is refused alike.
    let old = cy
        .submit(
            "/signin",
            "/signin",
            &[
                ("email", "cy@example.com"),
                ("password", crate::accounts_support::PASSWORD),
            ],
        )
        .await;
    assert_eq!(old.status, 303, "{}", old.body);
    let made_up = visitor
        .get("/reset/new?token=not-a-token-we-ever-made")
        .await;
    assert_eq!(made_up.status, 410);
    assert_eq!(visitor.get("/reset/new").await.status, 410);
}
