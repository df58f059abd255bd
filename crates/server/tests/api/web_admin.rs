//! The admin pages: each one for an admin, the 403 page for anyone else and sign-in first
//! for nobody; a role changed through the page and audited as the API does; dead letters
//! shown, replayed and purged through the pages; a 429 on the rate-limit page; and names
//! stored with markup shown escaped.

use basis_auth::role::Role;
use basis_queue::{JobStatus, NewJob};
use basis_server::jobs::CLICKS_QUEUE;
use basis_server::links::click_batches::APPLY_CLICKS;
use serde_json::json;

use crate::accounts_support::PASSWORD;
use crate::helpers::{Engine, TestApp};
use crate::jobs_support::backend;
use crate::on_both_engines;
use crate::web_support::{Browser, Page};

on_both_engines!(
    an_admin_sees_every_admin_page_and_others_are_refused,
    an_admin_changes_a_role_through_the_page_and_the_audit_log_records_it,
    a_dead_letter_is_shown_replayed_and_purged_through_the_pages,
    markup_in_a_user_s_name_comes_back_escaped_on_the_admin_pages,
);

/// Every admin page.
const PAGES: [&str; 5] = [
    "/admin",
    "/admin/users",
    "/admin/job-queues",
    "/admin/rate-limits",
    "/admin/audit-log",
];

/// A browser signed in as a new account with `role`.
async fn signed_in<'a>(app: &'a TestApp, email: &str, role: Role) -> Browser<'a> {
    app.account_with_role(email, role).await;
    let mut browser = Browser::new(app);
    let signed = browser.sign_in_as(email, PASSWORD, "Admin/1.0").await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    browser
}

fn assert_ok(page: &Page, path: &str) {
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    assert!(page.is_html(), "{path}");
}

async fn an_admin_sees_every_admin_page_and_others_are_refused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    for path in PAGES {
        let page = admin.get(path).await;
        assert_ok(&page, path);
        // The layout links the admin pages for admins.
        assert!(
            page.body.contains(r#"<a href="/admin">Admin</a>"#),
            "{path}"
        );
    }
    let overview = admin.get("/admin").await;
    for shown in [
        "store",
        "queue",
        "cache links",
        "cache users",
        "Refused, last hour",
    ] {
        assert!(overview.body.contains(shown), "{shown}: {}", overview.body);
    }
    assert!(
        !overview.body.contains("<strong>down</strong>"),
        "{}",
        overview.body
    );
    let limits = admin.get("/admin/rate-limits").await;
    assert!(limits.body.contains("Requests refused per minute"));

    let mut moderator = signed_in(&app, "mod@example.com", Role::Moderator).await;
    for path in PAGES {
        let page = moderator.get(path).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
        assert!(page.is_html(), "{path}");
        assert!(page.body.contains("Admins only"), "{path}");
        assert!(
            !page.body.contains(r#"<a href="/admin">Admin</a>"#),
            "no admin link for others"
        );
    }
    let mut nobody = Browser::new(&app);
    for path in PAGES {
        let page = nobody.get(path).await;
        assert_eq!(page.status, 303, "{path}");
        let back = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", path)
            .finish();
        assert_eq!(page.location(), format!("/signin?{back}"));
    }
}

async fn an_admin_changes_a_role_through_the_page_and_the_audit_log_records_it(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;

    let found = admin.get("/admin/users?q=ANN%40").await;
    assert_ok(&found, "search");
    assert!(found.body.contains("ann@example.com"), "{}", found.body);
    assert!(!found.body.contains("bob@example.com"), "{}", found.body);

    let action = format!("/admin/users/{}/role", ann.id);
    let changed = admin
        .submit("/admin/users", &action, &[("role", "moderator")])
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert_eq!(
        changed.location(),
        format!("/admin/users?changed={}", ann.id)
    );
    let stored = basis_store::users::find(&app.state.store, &ann.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.role, "moderator");
    let after = admin.get(changed.location()).await;
    assert!(after.body.contains("is now moderator"), "{}", after.body);
    // Bob is untouched.
    let bob_row = basis_store::users::find(&app.state.store, &bob.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob_row.role, "user");

    // Recorded as `PATCH /users/{id}` records it, and shown on the audit page.
    let events = basis_store::audit::list(&app.state.store, i64::MAX, 50)
        .await
        .unwrap();
    let event = events
        .iter()
        .find(|e| e.kind == "role.changed")
        .expect("a role.changed event");
    assert_eq!(event.user_id.as_deref(), Some(ann.id.as_str()));
    assert!(
        event
            .detail
            .as_deref()
            .unwrap()
            .contains("user -> moderator"),
        "{event:?}"
    );
    let audit = admin.get("/admin/audit-log").await;
    assert!(audit.body.contains("role.changed"), "{}", audit.body);
    assert!(
        audit.body.contains("user -&gt; moderator"),
        "{}",
        audit.body
    );

    // A post without the token changes nothing.
    let forged = admin.post(&action, &[("role", "admin")]).await;
    assert_eq!(forged.status, 403);
    // Nor does one from a non-admin, with a valid token of their own.
    let mut other = signed_in(&app, "mod@example.com", Role::Moderator).await;
    let token = other.get("/account").await.token();
    let refused = other
        .post(&action, &[("csrf", token.as_str()), ("role", "admin")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let stored = basis_store::users::find(&app.state.store, &ann.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.role, "moderator");
}

async fn a_dead_letter_is_shown_replayed_and_purged_through_the_pages(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    // A payload the handler cannot read goes to the dead letters at once.
    let poison = backend(&app)
        .enqueue(NewJob::new(
            CLICKS_QUEUE,
            APPLY_CLICKS,
            json!({"not": "<a batch>"}),
        ))
        .await
        .unwrap();
    assert_eq!(app.backend_job_finished(&poison.id).await, JobStatus::Dead);

    let queues = admin.get("/admin/job-queues").await;
    assert_ok(&queues, "queues");
    let link = format!("/admin/job-queues/dead/{}", poison.id.0);
    assert!(queues.body.contains(&link), "{}", queues.body);
    assert!(queues.body.contains("Dead letters per queue"));

    let shown = admin.get(&link).await;
    assert_ok(&shown, &link);
    assert!(shown.body.contains("deserialise"), "{}", shown.body);
    assert!(shown.body.contains("&lt;a batch&gt;"), "{}", shown.body);
    assert!(shown.body.contains(APPLY_CLICKS));

    let replayed = admin.submit(&link, &format!("{link}/replay"), &[]).await;
    assert_eq!(replayed.status, 303, "{}", replayed.body);
    assert_eq!(replayed.location(), "/admin/job-queues?replayed=1");
    // Still poison: back in the dead letters once it has run again.
    assert_eq!(app.backend_job_finished(&poison.id).await, JobStatus::Dead);

    let confirm_path = format!("/admin/job-queues/purge?queue={CLICKS_QUEUE}");
    let confirm = admin.get(&confirm_path).await;
    assert_ok(&confirm, "purge confirmation");
    assert!(
        confirm
            .body
            .contains("Delete <strong>1</strong> dead letter"),
        "{}",
        confirm.body
    );
    // Asking purges nothing.
    let still = backend(&app).dead_letters(None, 10).await.unwrap();
    assert_eq!(still.len(), 1);

    let purged = admin.submit(&confirm_path, &confirm_path, &[]).await;
    assert_eq!(purged.status, 303, "{}", purged.body);
    assert_eq!(purged.location(), "/admin/job-queues?purged=1");
    assert!(
        backend(&app)
            .dead_letters(None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let after = admin.get(purged.location()).await;
    assert!(
        after.body.contains("Purged 1 dead letter."),
        "{}",
        after.body
    );
    assert!(after.body.contains("No dead letter."), "{}", after.body);
    // A replay of what is gone is "not found".
    let token = after.token();
    let gone = admin
        .post(&format!("{link}/replay"), &[("csrf", token.as_str())])
        .await;
    assert_eq!(gone.status, 404);
}

async fn markup_in_a_user_s_name_comes_back_escaped_on_the_admin_pages(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let mut mallory = Browser::new(&app);
    mallory
        .sign_up("mallory@example.com", "<script>alert(1)</script>")
        .await;
    let users = admin.get("/admin/users").await;
    assert_ok(&users, "users");
    assert!(
        users.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        users.body
    );
    assert!(!users.body.contains("<script>alert"), "{}", users.body);
}

/// Rules allowing two link creations a minute per client.
fn two_creates_per_minute(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("rules.toml");
    std::fs::write(
        &path,
        r#"
[[rules]]
name = "link_create"
methods = ["POST"]
paths = ["/shorten"]
key = "client"
algorithm = "gcra"
limit = 2
period = "1m"
"#,
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_refused_request_shows_on_the_rate_limit_page_without_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let rules = two_creates_per_minute(dir.path());
    let app = TestApp::spawn_with(&Engine::Sqlite, |c| {
        c.rate_limits = None;
        c.rate_limit_config = Some(rules.clone());
    })
    .await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let before = admin.get("/admin/rate-limits").await;
    assert_ok(&before, "rate limits");
    assert!(before.body.contains("link_create"), "the rule is listed");
    assert!(
        before.body.contains("No request refused"),
        "{}",
        before.body
    );

    let mut statuses = Vec::new();
    for i in 0..3 {
        let response = app
            .shorten(json!({"longUrl": format!("https://example.com/{i}")}))
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 429]);

    let after = admin.get("/admin/rate-limits").await;
    assert_ok(&after, "rate limits");
    assert!(!after.body.contains("No request refused"), "{}", after.body);
    assert!(after.body.contains("POST /shorten"), "{}", after.body);
    assert!(after.body.contains("ip:#"), "the address as a digest");
    assert!(!after.body.contains("127.0.0.1"), "{}", after.body);
    let overview = admin.get("/admin").await;
    assert!(
        overview
            .body
            .contains("<dt>Refused, last hour</dt><dd>1</dd>"),
        "{}",
        overview.body
    );
}
