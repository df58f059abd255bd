//! The link pages: one link's page with its edit form (the API's rules, 422 with each
//! problem beside its field), its statistics drawn as accessible SVG with the previous
//! period and bots apart, the tag filter and the confirmed bulk delete of `/my/links`, and
//! the password form browsers get on a protected link. Browsers and countries are counted
//! from the visit log. Foreign links are 404 pages,
//! forms without their token are refused, hostile text comes back inert.

use regex::Regex;
use serde_json::{Value, json};

use crate::helpers::{CRAWLER, DESKTOP, Engine, PHONE, TestApp, assert_problem};
use crate::on_both_engines;
use crate::web_support::{Browser, Page};

on_both_engines!(
    a_links_page_shows_it_and_its_form_changes_every_field_the_api_can,
    invalid_edits_come_back_with_their_values_and_each_problem_beside_its_field,
    someone_elses_link_or_none_is_the_404_page_and_stays_untouched,
    link_forms_without_their_token_are_refused,
    hostile_text_in_every_field_of_the_link_pages_comes_back_inert,
    statistics_draw_clicks_per_day_against_the_previous_period_with_bots_apart,
    browsers_and_countries_are_counted_from_the_visit_log_with_bots_apart,
    a_link_without_clicks_shows_an_empty_state_and_no_chart,
    my_links_are_filtered_by_tag_and_lead_to_each_links_page,
    chosen_links_are_deleted_together_after_a_confirmation,
    a_browser_gets_a_password_form_for_a_protected_link_and_api_clients_a_problem,
    a_limit_on_password_attempts_counts_the_api_and_the_form_together,
);

const HOSTILE: &str = r#""><script>alert(1)</script>"#;

fn assert_see_other(page: &Page, location: &str) {
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), location);
}

/// Ann, signed up in `browser`, with her API access token.
async fn ann(app: &TestApp, browser: &mut Browser<'_>) -> String {
    browser.sign_up("ann@example.com", "Ann").await;
    let tokens = app
        .login_tokens("ann@example.com", crate::accounts_support::PASSWORD)
        .await;
    tokens["accessToken"].as_str().unwrap().to_owned()
}

/// Signs Ann in again (moving the clock a day on ends a session: it was idle).
async fn sign_in_again(browser: &mut Browser<'_>) {
    let page = browser
        .submit(
            "/signin",
            "/signin",
            &[
                ("email", "ann@example.com"),
                ("password", crate::accounts_support::PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
}

/// Link `code` as its owner reads it through the API (`None`: 404).
async fn api_link(app: &TestApp, token: &str, code: &str) -> Option<Value> {
    let response = app
        .bearer(reqwest::Method::GET, &format!("/links/{code}"), token)
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        200 => Some(response.json().await.unwrap()),
        404 => None,
        other => panic!("reading {code}: {other}"),
    }
}

/// Makes a link with `alias` through the home page's form.
async fn made(browser: &mut Browser<'_>, alias: &str, url: &str) {
    let page = browser.shorten(url, &[("alias", alias)]).await;
    assert_eq!(page.status, 303, "{}", page.body);
}

/// Every field of the edit form, filled in as the page shows it, with `changes` applied.
fn edit_fields<'a>(token: &'a str, changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("csrf", token),
        ("url", "https://example.com/start"),
        ("title", ""),
        ("tags", ""),
        ("expires", ""),
        ("max_clicks", ""),
        ("redirect", "301"),
        ("password", ""),
        ("rules", ""),
    ];
    for (name, value) in changes {
        match fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value,
            None => fields.push((name, value)),
        }
    }
    fields
}

async fn a_links_page_shows_it_and_its_form_changes_every_field_the_api_can(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let token = ann(&app, &mut browser).await;
    made(&mut browser, "start-here", "https://example.com/start").await;

    let list = browser.get("/my/links").await;
    assert!(
        list.body.contains(r#"href="/my/links/start-here?domain="#),
        "the list leads to the link's page: {}",
        list.body
    );
    let page = browser.get("/my/links/start-here").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let short_url = app.url("/start-here");
    assert!(page.body.contains(&format!(r#"data-copy="{short_url}""#)));
    assert!(page.body.contains(r#"src="/start-here/qr.svg""#));
    assert!(page.body.contains(r#"value="https://example.com/start""#));
    assert!(page.body.contains("Click limit"));
    assert!(page.body.contains(r#"action="/my/links/start-here""#));

    let csrf = page.token();
    let rules = r#"{"split":[{"url":"https://a.example/","weight":1},{"url":"https://b.example/","weight":3}]}"#;
    let saved = browser
        .post(
            "/my/links/start-here",
            &edit_fields(
                &csrf,
                &[
                    ("url", "https://example.com/moved"),
                    ("title", "Launch page"),
                    ("tags", "news, launch"),
                    ("expires", "2099-06-30T12:00"),
                    ("max_clicks", "50"),
                    ("redirect", "302"),
                    ("password", "open sesame"),
                    ("rules", rules),
                ],
            ),
        )
        .await;
    assert_see_other(&saved, "/my/links/start-here?saved=1");
    let link = api_link(&app, &token, "start-here").await.unwrap();
    assert_eq!(link["longUrl"], "https://example.com/moved");
    assert_eq!(link["title"], "Launch page");
    assert_eq!(link["tags"], json!(["launch", "news"]));
    assert_eq!(link["expiresAt"], "2099-06-30T12:00:00Z");
    assert_eq!(link["maxClicks"], 50);
    assert_eq!(link["redirectType"], 302);
    assert_eq!(link["passwordProtected"], true);
    assert_eq!(link["rules"]["split"][1]["weight"], 3);

    let shown = browser.get(saved.location()).await;
    assert!(shown.body.contains("Saved."), "{}", shown.body);
    assert!(shown.body.contains(r#"value="2099-06-30T12:00""#));
    assert!(shown.body.contains("Remove the password"));

    // Clearing: blank fields remove the expiry, the limit, the title, the tags and the
    // rules; the box removes the password. A blank password keeps it otherwise.
    let cleared = browser
        .post(
            "/my/links/start-here",
            &edit_fields(
                &shown.token(),
                &[
                    ("url", "https://example.com/moved"),
                    ("remove_password", "on"),
                ],
            ),
        )
        .await;
    assert_see_other(&cleared, "/my/links/start-here?saved=1");
    let link = api_link(&app, &token, "start-here").await.unwrap();
    assert_eq!(link["passwordProtected"], false);
    assert_eq!(link["expiresAt"], Value::Null);
    assert_eq!(link["maxClicks"], Value::Null);
    assert_eq!(link["title"], Value::Null);
    assert_eq!(link["tags"], json!([]));
    assert!(link.get("rules").is_none(), "{link}");
    assert_eq!(link["redirectType"], 301);
}

async fn invalid_edits_come_back_with_their_values_and_each_problem_beside_its_field(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let token = ann(&app, &mut browser).await;
    made(&mut browser, "steady", "https://example.com/start").await;
    let csrf = browser.get("/my/links/steady").await.token();
    let page = browser
        .post(
            "/my/links/steady",
            &edit_fields(
                &csrf,
                &[
                    ("url", "ftp://example.com/file"),
                    ("max_clicks", "0"),
                    ("expires", "next tuesday"),
                    ("rules", "{not json"),
                    ("title", "Kept title"),
                ],
            ),
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    for id in ["f-url", "f-max_clicks", "f-expires"] {
        let marked = Regex::new(&format!(r#"id="{id}"[^>]*aria-invalid="true""#)).unwrap();
        assert!(marked.is_match(&page.body), "{id} is marked: {}", page.body);
        assert!(page.body.contains(&format!(r#"id="{id}-error""#)), "{id}");
    }
    assert!(page.body.contains(r#"id="f-rules-error""#), "{}", page.body);
    assert!(
        page.body.contains("Click limit must be at least 1."),
        "{}",
        page.body
    );
    // What was typed is shown back.
    assert!(page.body.contains(r#"value="ftp://example.com/file""#));
    assert!(page.body.contains(r#"value="next tuesday""#));
    assert!(page.body.contains(r#"value="Kept title""#));
    assert!(page.body.contains("{not json</textarea>"), "{}", page.body);
    // Nothing changed.
    let link = api_link(&app, &token, "steady").await.unwrap();
    assert_eq!(link["longUrl"], "https://example.com/start");
    assert_eq!(link["title"], Value::Null);

    // Rules that parse but cannot work are the API's 422, shown at the rules field.
    let page = browser
        .post(
            "/my/links/steady",
            &edit_fields(
                &csrf,
                &[(
                    "rules",
                    r#"{"split":[{"url":"https://a.example/","weight":0}]}"#,
                )],
            ),
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(
        page.body
            .contains("the weights must sum to a positive number"),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"aria-invalid="true""#));
}

async fn someone_elses_link_or_none_is_the_404_page_and_stays_untouched(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut owner = Browser::new(&app);
    let token = ann(&app, &mut owner).await;
    made(&mut owner, "anns-link", "https://example.com/ann").await;
    let mut bob = Browser::new(&app);
    bob.sign_up("bob@example.com", "Bob").await;

    for path in ["/my/links/anns-link", "/my/links/nothing-here"] {
        let page = bob.get(path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(page.is_html());
        assert!(page.body.contains("Page not found"));
        assert!(!page.body.contains("example.com/ann"), "{}", page.body);
    }
    let anns = owner.get("/my/links").await;
    let selection = Regex::new(r#"name="link" value="([^"]+)""#).unwrap();
    let chosen = selection.captures(&anns.body).unwrap()[1].to_owned();
    let csrf = bob.get("/my/links").await.token();
    let tried = bob
        .post(
            "/my/links/anns-link",
            &edit_fields(&csrf, &[("url", "https://evil.example/")]),
        )
        .await;
    assert_eq!(tried.status, 404, "{}", tried.body);
    // Bulk: a selection holding Ann's link is refused.
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("link", &chosen)
        .finish();
    let asked = bob.get(&format!("/my/delete-links?{query}")).await;
    assert_eq!(asked.status, 404, "{}", asked.body);
    let tried = bob
        .post("/my/delete-links", &[("csrf", &csrf), ("links", &chosen)])
        .await;
    assert_eq!(tried.status, 404, "{}", tried.body);
    let link = api_link(&app, &token, "anns-link")
        .await
        .expect("still there");
    assert_eq!(link["longUrl"], "https://example.com/ann");
    // Signed out, the page sends people to sign in first.
    let stranger = Browser::new(&app).get("/my/links/anns-link").await;
    assert_eq!(stranger.status, 303);
    assert!(stranger.location().starts_with("/signin?next="));
}

async fn link_forms_without_their_token_are_refused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let token = ann(&app, &mut browser).await;
    made(&mut browser, "guarded-link", "https://example.com/start").await;
    let page = browser.get("/my/links").await;
    let selection = Regex::new(r#"name="link" value="([^"]+)""#).unwrap();
    let chosen = selection.captures(&page.body).unwrap()[1].to_owned();

    let fields = edit_fields("", &[("url", "https://example.com/moved")]);
    let without: Vec<_> = fields.into_iter().filter(|(n, _)| *n != "csrf").collect();
    let edit = browser.post("/my/links/guarded-link", &without).await;
    assert_eq!(edit.status, 403, "{}", edit.body);
    let bulk = browser
        .post("/my/delete-links", &[("links", chosen.as_str())])
        .await;
    assert_eq!(bulk.status, 403, "{}", bulk.body);
    // From another site, even with the token.
    let csrf = page.token();
    let foreign = browser
        .post_from(
            "/my/delete-links",
            &[("csrf", &csrf), ("links", &chosen)],
            "https://evil.example",
        )
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let link = api_link(&app, &token, "guarded-link")
        .await
        .expect("not deleted");
    assert_eq!(link["longUrl"], "https://example.com/start");
}

async fn hostile_text_in_every_field_of_the_link_pages_comes_back_inert(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    ann(&app, &mut browser).await;
    made(&mut browser, "target", "https://example.com/start").await;
    let csrf = browser.get("/my/links/target").await.token();
    // Every field hostile: refused, and every value shown back as text.
    let fields = [
        "url",
        "title",
        "tags",
        "expires",
        "max_clicks",
        "redirect",
        "rules",
    ];
    let mut hostile: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    hostile.extend(fields.iter().map(|name| (*name, HOSTILE)));
    hostile.push(("password", HOSTILE));
    let page = browser.post("/my/links/target", &hostile).await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
    assert!(
        page.body.contains("&lt;script&gt;alert(1)"),
        "{}",
        page.body
    );
    // A hostile title is accepted and shown as text on the page and in the list.
    let saved = browser
        .post(
            "/my/links/target",
            &edit_fields(&csrf, &[("title", HOSTILE)]),
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    for path in ["/my/links/target", "/my/links?q=%22%3E%3Cscript%3E"] {
        let page = browser.get(path).await;
        assert!(
            !page.body.contains("<script>alert(1)"),
            "{path}: {}",
            page.body
        );
    }
    let page = browser.get("/my/links/target").await;
    assert!(
        page.body
            .contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    // Hostile search, tag and bulk choices are shown as text too.
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", HOSTILE)
        .append_pair("tag", HOSTILE)
        .finish();
    let list = browser.get(&format!("/my/links?{query}")).await;
    assert!(!list.body.contains("<script>alert(1)"), "{}", list.body);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("link", &format!("{HOSTILE}@127.0.0.1"))
        .finish();
    let bulk = browser.get(&format!("/my/delete-links?{query}")).await;
    assert_eq!(bulk.status, 404);
    assert!(!bulk.body.contains("<script>alert(1)"), "{}", bulk.body);
}

/// Follows `code` once with `agent` and `referer`.
async fn click(app: &TestApp, code: &str, agent: &str, referer: Option<&str>) {
    let mut request = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("user-agent", agent);
    if let Some(referer) = referer {
        request = request.header("referer", referer);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 301);
}

async fn statistics_draw_clicks_per_day_against_the_previous_period_with_bots_apart(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    ann(&app, &mut browser).await;
    made(&mut browser, "counted-link", "https://example.com/start").await;
    // Two clicks ten days ago (in the previous 7-day period), three today and a bot.
    click(
        &app,
        "counted-link",
        DESKTOP,
        Some("https://news.example/a"),
    )
    .await;
    click(&app, "counted-link", DESKTOP, None).await;
    app.state.clicks.flush().await.unwrap();
    app.clock.advance_ms(10 * 86_400_000);
    sign_in_again(&mut browser).await;
    click(&app, "counted-link", PHONE, Some("https://news.example/b")).await;
    click(&app, "counted-link", PHONE, Some("https://social.example/")).await;
    click(&app, "counted-link", DESKTOP, None).await;
    click(&app, "counted-link", CRAWLER, Some("https://spam.example/")).await;

    let page = browser.get("/my/links/counted-link?period=7").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("<figure"), "{body}");
    assert!(
        body.contains(
            "<figcaption>Clicks per day, last 7 days, with the 7 days before</figcaption>"
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"role="img" aria-label="Line chart of clicks per day over the last 7 days: 3 in all, at most 3 on one day, against 2 in the 7 days before.""#),
        "{body}"
    );
    // The data table behind the chart: a row per day, today's with 3 clicks.
    let today = app.clock_now().format("%Y-%m-%d").to_string();
    assert!(
        body.contains(&format!("<td>{today}</td><td>3</td>")),
        "{body}"
    );
    assert_eq!(body.matches("<summary>Data table").count(), 3, "{body}");
    // Referrers and devices, people only: the crawler's referrer and device are not shown.
    assert!(body.contains(r#"aria-label="Bar chart of the 2 referring sites with the most clicks; first news.example with 2.""#), "{body}");
    assert!(!body.contains("spam.example"), "{body}");
    assert!(
        body.contains("Bar chart of clicks per device: desktop 3, mobile 2."),
        "{body}"
    );
    // Without the visit log there are no browsers or countries to count, and it is said.
    assert!(
        body.contains("counted from the visit log, which is off on this server"),
        "{body}"
    );
    // The period and bot choices are links; the chosen period is marked.
    assert!(
        body.contains(r#"href="/my/links/counted-link?period=7#stats" aria-current="true""#),
        "{body}"
    );
    assert!(
        body.contains(r#"href="/my/links/counted-link?period=365#stats""#),
        "{body}"
    );
    assert!(
        body.contains(r#"href="/my/links/counted-link?period=7&amp;bots=show#stats""#),
        "{body}"
    );

    let with_bots = browser
        .get("/my/links/counted-link?period=7&bots=show")
        .await;
    let body = &with_bots.body;
    assert!(
        body.contains("against 2 in the 7 days before, with 1 bot clicks."),
        "{body}"
    );
    assert!(
        body.contains("Bar chart of clicks per device: desktop 3, mobile 2, bot 1."),
        "{body}"
    );
    assert!(body.contains("Hide bots"), "{body}");
    assert!(
        body.contains(&format!("<td>{today}</td><td>3</td><td>1</td>")),
        "{body}"
    );

    // Thirty days hold both days' clicks; an unknown period is thirty days.
    for path in [
        "/my/links/counted-link?period=30",
        "/my/links/counted-link?period=11",
    ] {
        let page = browser.get(path).await;
        assert!(
            page.body
                .contains("over the last 30 days: 5 in all, at most 3 on one day, against 0"),
            "{path}: {}",
            page.body
        );
    }
}

/// Firefox on a desktop.
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

async fn browsers_and_countries_are_counted_from_the_visit_log_with_bots_apart(engine: Engine) {
    // The test client is in France; as a trusted proxy it may say a visitor is in Japan.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("countries.mmdb");
    std::fs::write(
        &db,
        basis_testkit::mmdb::country_db(&[
            ("127.0.0.0".parse().unwrap(), 8, "FR"),
            ("::1".parse().unwrap(), 128, "FR"),
            ("198.51.100.0".parse().unwrap(), 24, "JP"),
        ]),
    )
    .unwrap();
    let rules = dir.path().join("rate-limits.toml");
    std::fs::write(&rules, "trusted_proxies = [\"127.0.0.1\", \"::1\"]\n").unwrap();
    let app = TestApp::spawn_with(&engine, |c| {
        c.visit_log_days = Some(30);
        c.geoip_db = Some(db.clone());
        c.rate_limit_config = Some(rules.clone());
    })
    .await;
    let mut browser = Browser::new(&app);
    ann(&app, &mut browser).await;
    made(&mut browser, "where-from", "https://example.com/start").await;
    // A visit of the previous period, which this one's counts leave out.
    click(&app, "where-from", FIREFOX, None).await;
    app.state.clicks.flush().await.unwrap();
    app.clock.advance_ms(10 * 86_400_000);
    sign_in_again(&mut browser).await;
    click(&app, "where-from", DESKTOP, None).await;
    click(&app, "where-from", DESKTOP, Some("https://news.example/")).await;
    let from_japan = app
        .client
        .get(app.url("/where-from"))
        .header("user-agent", FIREFOX)
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(from_japan.status(), 301);
    click(&app, "where-from", CRAWLER, None).await;
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(10))
            .await
    );

    let page = browser.get("/my/links/where-from?period=7").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(
        body.contains("<figcaption>Browsers, last 7 days (people only)</figcaption>"),
        "{body}"
    );
    assert!(
        body.contains(r#"aria-label="Bar chart of visits per browser over the last 7 days: chrome 2, firefox 1.""#),
        "{body}"
    );
    assert!(
        body.contains(
            r#"aria-label="Bar chart of visits per country over the last 7 days: FR 2, JP 1.""#
        ),
        "{body}"
    );
    // The numbers are in the table behind each chart too.
    assert!(body.contains("<td>chrome</td><td>2</td>"), "{body}");
    assert!(body.contains("<td>JP</td><td>1</td>"), "{body}");
    assert_eq!(body.matches("<summary>Data table").count(), 5, "{body}");

    // Bots shown: the crawler is its own bar, not one of the browsers or countries.
    let page = browser.get("/my/links/where-from?period=7&bots=show").await;
    let body = &page.body;
    assert!(
        body.contains(
            "Bar chart of visits per browser over the last 7 days: chrome 2, firefox 1, bot 1."
        ),
        "{body}"
    );
    assert!(
        body.contains("Bar chart of visits per country over the last 7 days: FR 2, JP 1, bot 1."),
        "{body}"
    );
    assert!(
        body.contains("<figcaption>Countries, last 7 days (bots included)</figcaption>"),
        "{body}"
    );

    // Thirty days hold the earlier Firefox visit as well.
    let page = browser.get("/my/links/where-from?period=30").await;
    assert!(
        page.body
            .contains("over the last 30 days: chrome 2, firefox 2."),
        "{}",
        page.body
    );
}

async fn a_link_without_clicks_shows_an_empty_state_and_no_chart(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    ann(&app, &mut browser).await;
    made(&mut browser, "quiet-one", "https://example.com/start").await;
    let page = browser.get("/my/links/quiet-one").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("No clicks yet."), "{}", page.body);
    assert!(!page.body.contains("<svg"), "{}", page.body);
    assert!(!page.body.contains("<figure"), "{}", page.body);
    // A click long ago: the recent periods are quiet, said so instead of a flat chart.
    click(&app, "quiet-one", DESKTOP, None).await;
    app.clock.advance_ms(40 * 86_400_000);
    sign_in_again(&mut browser).await;
    let page = browser.get("/my/links/quiet-one?period=7").await;
    assert!(
        page.body.contains("No clicks in the last 14 days."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Line chart"), "{}", page.body);
    assert!(
        page.body
            .contains("Bar chart of clicks per device: desktop 1.")
    );
}

async fn my_links_are_filtered_by_tag_and_lead_to_each_links_page(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    ann(&app, &mut browser).await;
    made(&mut browser, "tagged-one", "https://example.com/one").await;
    made(&mut browser, "plain-two", "https://example.com/two").await;
    let csrf = browser.get("/my/links/tagged-one").await.token();
    let saved = browser
        .post(
            "/my/links/tagged-one",
            &edit_fields(
                &csrf,
                &[("url", "https://example.com/one"), ("tags", "promo")],
            ),
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);

    let all = browser.get("/my/links").await;
    assert!(all.body.contains("example.com/one") && all.body.contains("example.com/two"));
    let promo = browser.get("/my/links?tag=promo").await;
    assert_eq!(promo.status, 200);
    assert!(promo.body.contains("example.com/one"), "{}", promo.body);
    assert!(!promo.body.contains("example.com/two"), "{}", promo.body);
    assert!(
        promo
            .body
            .contains(r#"name="tag" type="text" value="promo""#),
        "{}",
        promo.body
    );
    let none = browser.get("/my/links?tag=absent").await;
    assert!(none.body.contains("No link matches."), "{}", none.body);
    // A tag the API refuses is named beside the field, 422.
    let bad = browser.get("/my/links?tag=a%20b%20c%2Fd").await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains(r#"id="f-tag-error""#), "{}", bad.body);
    // The link's page links its tags to the filtered list.
    let page = browser.get("/my/links/tagged-one").await;
    assert!(
        page.body.contains(r#"href="/my/links?tag=promo""#),
        "{}",
        page.body
    );
}

async fn chosen_links_are_deleted_together_after_a_confirmation(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut browser = Browser::new(&app);
    let token = ann(&app, &mut browser).await;
    for alias in ["first-one", "second-one", "third-one"] {
        made(&mut browser, alias, &format!("https://example.com/{alias}")).await;
    }
    let list = browser.get("/my/links").await;
    assert!(list.body.contains("Delete selected"), "{}", list.body);
    let selection = Regex::new(r#"name="link" value="([^"]+)""#).unwrap();
    let values: Vec<String> = selection
        .captures_iter(&list.body)
        .map(|c| c[1].to_owned())
        .collect();
    assert_eq!(values.len(), 3, "{}", list.body);
    let chosen: Vec<&String> = values
        .iter()
        .filter(|v| v.starts_with("first-one@") || v.starts_with("third-one@"))
        .collect();
    let query = chosen
        .iter()
        .fold(
            url::form_urlencoded::Serializer::new(String::new()),
            |mut q, v| {
                q.append_pair("link", v);
                q
            },
        )
        .finish();
    let asked = browser.get(&format!("/my/delete-links?{query}")).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(
        asked.body.contains("Delete these 2 links?"),
        "{}",
        asked.body
    );
    assert!(asked.body.contains("https://example.com/first-one"));
    assert!(asked.body.contains("https://example.com/third-one"));
    assert!(!asked.body.contains("https://example.com/second-one"));
    assert!(
        api_link(&app, &token, "first-one").await.is_some(),
        "asking deletes nothing"
    );
    let hidden = Regex::new(r#"name="links" value="([^"]+)""#).unwrap();
    let links = hidden.captures(&asked.body).unwrap()[1].to_owned();
    let done = browser
        .post(
            "/my/delete-links",
            &[("csrf", &asked.token()), ("links", &links)],
        )
        .await;
    assert_see_other(&done, "/my/links?removed=2");
    assert!(api_link(&app, &token, "first-one").await.is_none());
    assert!(api_link(&app, &token, "third-one").await.is_none());
    assert!(api_link(&app, &token, "second-one").await.is_some());
    let after = browser.get(done.location()).await;
    assert!(after.body.contains("Deleted 2 links."), "{}", after.body);

    // A selection with a missing link deletes nothing, not even the present one.
    let second = values
        .iter()
        .find(|v| v.starts_with("second-one@"))
        .unwrap();
    let missing = second.replace("second-one", "first-one");
    let both = format!("{second} {missing}");
    let refused = browser
        .post(
            "/my/delete-links",
            &[("csrf", &asked.token()), ("links", &both)],
        )
        .await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert!(
        refused.body.contains("Nothing was deleted."),
        "{}",
        refused.body
    );
    assert!(api_link(&app, &token, "second-one").await.is_some());
    // Nothing chosen: said so.
    let empty = browser.get("/my/delete-links").await;
    assert_eq!(empty.status, 422, "{}", empty.body);
}

async fn a_browser_gets_a_password_form_for_a_protected_link_and_api_clients_a_problem(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let link = app
        .create(json!({"longUrl": "https://example.com/secret", "password": "open sesame"}))
        .await;
    let code = link["shortCode"].as_str().unwrap().to_owned();
    let path = format!("/{code}");

    // API clients keep the problem document.
    assert_problem(app.get(&path).await, 401).await;
    let mut browser = Browser::new(&app);
    let page = browser.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.is_html());
    assert!(
        page.body.contains("This link needs a password"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!(r#"action="{path}""#)),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"type="password""#));
    assert!(
        !page.body.contains("example.com/secret"),
        "the target stays hidden"
    );
    assert!(
        page.headers.get("www-authenticate").is_none(),
        "no browser dialog"
    );
    assert!(page.policy().contains("frame-ancestors 'none'"));
    // The form's redirect leaves the site, which `form-action` must allow (on this page only).
    assert!(
        page.policy().contains("form-action 'self' https: http:"),
        "{}",
        page.policy()
    );
    assert!(!page.policy().contains("unsafe-inline"));

    let csrf = page.token();
    let wrong = browser
        .post(&path, &[("csrf", &csrf), ("password", "guess")])
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(
        wrong.body.contains("That password is not right."),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains(r#"aria-invalid="true""#));
    let untokened = browser.post(&path, &[("password", "open sesame")]).await;
    assert_eq!(untokened.status, 403, "{}", untokened.body);
    let right = browser
        .post(&path, &[("csrf", &csrf), ("password", "open sesame")])
        .await;
    assert_see_other(&right, "https://example.com/secret");
    // Only the successful visit counts, as on the API's path.
    assert_eq!(app.link(&code).await["clickCount"], 1);
    // A plain link still redirects a browser at once.
    let plain = app
        .create(json!({"longUrl": "https://example.com/open"}))
        .await;
    let open = browser
        .get(&format!("/{}", plain["shortCode"].as_str().unwrap()))
        .await;
    assert_eq!(open.status, 301);
}

async fn a_limit_on_password_attempts_counts_the_api_and_the_form_together(engine: Engine) {
    // A rule on posts to a short link: the password form posts where the API does, so one
    // allowance covers both. (`POST /shorten` matches it too: the link's creation is the
    // first of the four posts allowed.)
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"link_password\"\nmethods = [\"POST\"]\npaths = [\"/{code}\"]\n\
         key = \"ip\"\nalgorithm = \"sliding_log\"\nlimit = 4\nperiod = \"15m\"\n",
    )
    .unwrap();
    let app = TestApp::spawn_with(&engine, |c| {
        c.rate_limits = None;
        c.rate_limit_config = Some(rules.clone());
    })
    .await;
    let link = app
        .create(json!({"longUrl": "https://example.com/secret", "password": "open sesame"}))
        .await;
    let path = format!("/{}", link["shortCode"].as_str().unwrap());
    let api_attempt = || {
        app.client
            .post(app.url(&path))
            .form(&[("password", "guess")])
            .send()
    };
    assert_eq!(api_attempt().await.unwrap().status(), 401);
    assert_eq!(api_attempt().await.unwrap().status(), 401);
    let mut browser = Browser::new(&app);
    let csrf = browser.get(&path).await.token();
    let wrong = browser
        .post(&path, &[("csrf", &csrf), ("password", "guess")])
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    // The allowance is spent, for the right password too, whichever way it comes.
    let limited = browser
        .post(&path, &[("csrf", &csrf), ("password", "open sesame")])
        .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(api_attempt().await.unwrap().status(), 429);
}
