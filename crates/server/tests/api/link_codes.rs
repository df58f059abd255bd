//! Links made before a migration that reshaped `links` keep working: generated codes are
//! computed, not stored (migration 0004), and an alias can never be mistaken for a generated
//! code; options, owners and click counts survive the move of the rare options to
//! `link_guards` and of the count to the per-day rows (migration 0006).

use basis_server::links::code::CodeBook;
use basis_server::passwords::Passwords;
use basis_store::links::url_hash;
use basis_store::{ConnectOptions, Store, on_pool};
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    links_made_before_migration_0004_resolve_by_code_and_by_alias,
    an_alias_with_the_shape_of_a_generated_code_is_400,
    an_alias_is_never_reached_through_its_ids_generated_code,
    links_made_before_migration_0006_keep_their_options_owners_and_counts,
);

const KEY: u64 = 0x5eed_1234;

/// Runs `sql` with `binds` (all integers or text) on the store's write pool.
async fn exec(store: &Store, sql: &str, binds: &[Value]) {
    on_pool!(store, write, pool => {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = match bind {
                Value::Number(n) => query.bind(n.as_i64().unwrap()),
                Value::String(s) => query.bind(s.clone()),
                other => panic!("unsupported bind {other}"),
            };
        }
        query.execute(pool).await.expect(sql);
    });
}

async fn count(store: &Store, sql: &str) -> i64 {
    on_pool!(store, read, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.expect(sql))
}

/// A fresh database (PostgreSQL, or SQLite in `dir`) migrated up to, not including,
/// `version`, with the code key the tests' code book uses; its URL and an open store.
async fn database_before(engine: &Engine, dir: &std::path::Path, version: i64) -> (String, Store) {
    let url = match engine.fresh_database().await {
        Some(url) => url,
        None => Store::sqlite_url_in(dir),
    };
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    store.migrate_before(version).await.unwrap();
    exec(
        &store,
        "INSERT INTO settings (name, value) VALUES ('code_key', $1)",
        &[json!(format!("{KEY:016x}"))],
    )
    .await;
    (url, store)
}

async fn links_made_before_migration_0004_resolve_by_code_and_by_alias(engine: Engine) {
    // A database in the shape it had before migration 0004, with rows written the old way:
    // every code in a `code` column, generated or not.
    let dir = tempfile::tempdir().unwrap();
    let (url, old) = database_before(&engine, dir.path(), 4).await;
    let book = CodeBook::new(KEY);
    let held = book.decode("Promo26").unwrap() as i64;
    let insert = "INSERT INTO links (id, code, long_url, url_hash, created_at, redirect_type, \
                  click_count) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    let plain_url = "https://example.com/plain";
    let rows = [
        // A plain generated link with clicks.
        json!([1, book.encode(1), plain_url, url_hash(plain_url), 5]),
        // An ordinary alias.
        json!([2, "old-alias", "https://example.com/aliased", null, 0]),
        // An alias of exactly seven letters and digits: the shape of a generated code.
        json!([3, "Promo26", "https://example.com/promo", null, 0]),
        // A generated link with a 302.
        json!([4, book.encode(4), "https://example.com/found", null, 0]),
    ];
    for row in &rows {
        let r = row.as_array().unwrap();
        let hash = r[3].as_i64();
        let status = if r[0] == 4 { 302 } else { 301 };
        on_pool!(old, write, pool => {
            sqlx::query(insert)
                .bind(r[0].as_i64().unwrap())
                .bind(r[1].as_str().unwrap())
                .bind(r[2].as_str().unwrap())
                .bind(hash)
                .bind(1_700_000_000_000i64)
                .bind(status)
                .bind(r[4].as_i64().unwrap())
                .execute(pool)
                .await
                .unwrap();
        });
    }
    exec(
        &old,
        "INSERT INTO link_daily_clicks (link_id, day, clicks, bot_clicks) VALUES (1, 19700, 5, 2)",
        &[],
    )
    .await;
    exec(
        &old,
        "INSERT INTO link_referrers (link_id, host, clicks) VALUES (1, 'news.example', 4)",
        &[],
    )
    .await;
    // The next id the sequence hands out is the one "Promo26" decodes to.
    exec(
        &old,
        "UPDATE id_sequences SET next_value = $1 WHERE name = 'links'",
        &[json!(held)],
    )
    .await;
    old.close().await;

    // The app applies 0004 and settles the codes SQL could not classify.
    let app = TestApp::spawn_with(&engine, |c| c.database_url = Some(url.clone())).await;
    let store = &app.state.store;
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM links_pending_codes").await,
        0
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM links WHERE alias IS NOT NULL").await,
        2
    );

    let plain_code = book.encode(1);
    let response = app.follow(&plain_code).await;
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], plain_url);
    let stats: Value = app
        .get(&format!("/links/{plain_code}/stats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["shortCode"], plain_code);
    assert_eq!(stats["totalClicks"], 6, "5 stored and the one just made");
    assert_eq!(stats["botClicks"], 2);
    assert_eq!(stats["topReferrers"][0]["host"], "news.example");

    for (code, target, status) in [
        ("old-alias", "https://example.com/aliased", 301),
        ("Promo26", "https://example.com/promo", 301),
        (book.encode(4).as_str(), "https://example.com/found", 302),
    ] {
        let response = app.follow(code).await;
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(response.headers()["location"], target, "{code}");
        assert_eq!(app.link(code).await["shortCode"], code);
    }
    // An aliased link is reached only by its alias.
    assert_problem(app.follow(&book.encode(3)).await, 404).await;

    // Plain links made before the migration stay reuse candidates.
    let response = app
        .shorten(json!({"longUrl": plain_url, "reuse": true}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["shortCode"],
        plain_code
    );

    // The id "Promo26" decodes to is skipped, so no generated code ever equals it.
    let fresh = app
        .create(json!({"longUrl": "https://example.com/new"}))
        .await;
    assert_ne!(fresh["shortCode"], "Promo26");
    assert_eq!(
        book.decode(fresh["shortCode"].as_str().unwrap()),
        Some(held as u64 + 1)
    );
    assert_eq!(
        app.follow("Promo26").await.headers()["location"],
        "https://example.com/promo"
    );

    // The aggregates' foreign keys were rebuilt: deleting a link removes its counters.
    let response = app
        .client
        .delete(app.url(&format!("/links/{plain_code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM link_daily_clicks").await,
        0
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM link_referrers").await, 0);

    // A restart finds nothing left to settle and still holds the old alias's id.
    let app = app.restart().await;
    assert_eq!(
        app.follow("Promo26").await.headers()["location"],
        "https://example.com/promo"
    );
    assert!(app.state.codes.is_held(held as u64));
}

async fn an_alias_with_the_shape_of_a_generated_code_is_400(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let generated = app
        .create(json!({"longUrl": "https://example.com/g"}))
        .await;
    // Seven letters and digits, including a live generated code: refused, naming the field.
    for alias in [
        "Promo26",
        "abcdefg",
        generated["shortCode"].as_str().unwrap(),
    ] {
        let body = assert_problem(
            app.shorten(json!({"longUrl": "https://example.com/", "customAlias": alias}))
                .await,
            400,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "customAlias", "{alias}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("generated code")
        );
    }
    // Any other length, or a '-' or '_', is fine.
    for alias in ["Promo-26", "Promo_26", "Promo2026", "Promo2"] {
        let link = app
            .create(
                json!({"longUrl": format!("https://example.com/{alias}"), "customAlias": alias}),
            )
            .await;
        assert_eq!(link["shortCode"], alias);
        let response = app.follow(alias).await;
        assert_eq!(
            response.headers()["location"],
            format!("https://example.com/{alias}")
        );
    }
    let response = app.follow(generated["shortCode"].as_str().unwrap()).await;
    assert_eq!(response.headers()["location"], "https://example.com/g");
}

async fn an_alias_is_never_reached_through_its_ids_generated_code(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let aliased = app
        .create(json!({"longUrl": "https://example.com/a", "customAlias": "my-alias"}))
        .await;
    let row = basis_store::links::find(
        &app.state.store,
        basis_store::links::LinkKey::Alias("my-alias"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(aliased["shortCode"], "my-alias");
    let generated_form = app.state.codes.encode(row.id as u64);
    assert_problem(app.follow(&generated_form).await, 404).await;
    assert_problem(app.get(&format!("/links/{generated_form}")).await, 404).await;
}

/// A row in the shape `links` had from migration 0004 to 0005.
struct OldLink {
    id: i64,
    url: &'static str,
    alias: Option<&'static str>,
    /// Set only on links made with `"reuse": true` back then.
    url_hash: Option<i64>,
    redirect_type: i32,
    click_count: i64,
    expires_at: Option<i64>,
    max_clicks: Option<i64>,
    password_hash: Option<String>,
    owner_id: Option<&'static str>,
}

impl OldLink {
    fn plain(id: i64, url: &'static str, click_count: i64) -> Self {
        Self {
            id,
            url,
            alias: None,
            url_hash: None,
            redirect_type: 301,
            click_count,
            expires_at: None,
            max_clicks: None,
            password_hash: None,
            owner_id: None,
        }
    }
}

async fn links_made_before_migration_0006_keep_their_options_owners_and_counts(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (url, old) = database_before(&engine, dir.path(), 6).await;
    let book = CodeBook::new(KEY);
    let now = chrono::Utc::now().timestamp_millis();
    let today = now.div_euclid(86_400_000);
    let password_hash = Passwords::default()
        .hash("open sesame".into())
        .await
        .unwrap();
    let rows = [
        // Plain, made without `reuse`: no hash, so it was no reuse candidate.
        OldLink::plain(1, "https://example.com/plain", 5),
        // Plain, made with `reuse`; its count has no per-day rows behind it.
        OldLink {
            url_hash: Some(url_hash("https://example.com/reused")),
            ..OldLink::plain(2, "https://example.com/reused", 7)
        },
        // Every guard: expiry, click limit, password.
        OldLink {
            redirect_type: 302,
            expires_at: Some(now + 86_400_000),
            max_clicks: Some(3),
            password_hash: Some(password_hash),
            ..OldLink::plain(3, "https://example.com/guarded", 2)
        },
        // An owner's alias to the same URL as link 1.
        OldLink {
            alias: Some("kept-alias"),
            owner_id: Some("user-1"),
            ..OldLink::plain(4, "https://example.com/plain", 0)
        },
        // A stored count below its per-day rows: the count shown is kept as it was.
        OldLink::plain(5, "https://example.com/low", 1),
    ];
    for link in &rows {
        on_pool!(old, write, pool => {
            sqlx::query(
                "INSERT INTO links (id, created_at, click_count, redirect_type, long_url, alias, \
                 url_hash, expires_at, max_clicks, password_hash, owner_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(link.id)
            .bind(1_700_000_000_000i64)
            .bind(link.click_count)
            .bind(link.redirect_type)
            .bind(link.url)
            .bind(link.alias)
            .bind(link.url_hash)
            .bind(link.expires_at)
            .bind(link.max_clicks)
            .bind(&link.password_hash)
            .bind(link.owner_id)
            .execute(pool)
            .await
            .unwrap();
        });
    }
    // (link, day, human clicks, bot clicks): link 1's 5 and link 3's 2 as per-day rows.
    for (link, day, clicks, bots) in [
        (1, today - 2, 3, 1),
        (1, today - 1, 2, 0),
        (3, today - 1, 2, 0),
        (5, today - 1, 3, 0),
    ] {
        exec(
            &old,
            "INSERT INTO link_daily_clicks (link_id, day, clicks, bot_clicks) VALUES ($1, $2, $3, $4)",
            &[json!(link), json!(day), json!(clicks), json!(bots)],
        )
        .await;
    }
    exec(
        &old,
        "INSERT INTO link_referrers (link_id, host, clicks) VALUES (1, 'news.example', 4)",
        &[],
    )
    .await;
    exec(
        &old,
        "UPDATE id_sequences SET next_value = 6 WHERE name = 'links'",
        &[],
    )
    .await;
    old.close().await;

    // The app applies 0006 (and, on SQLite, hashes the URLs it found unhashed).
    let app = TestApp::spawn_with(&engine, |c| c.database_url = Some(url.clone())).await;
    let store = &app.state.store;
    let code = |id: u64| book.encode(id);

    // Click counts read as before, per day and in total; bots stay apart.
    assert_eq!(app.link(&code(1)).await["clickCount"], 5);
    let stats: Value = app
        .get(&format!("/links/{}/stats", code(1)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totalClicks"], 5);
    assert_eq!(stats["botClicks"], 1);
    assert_eq!(stats["topReferrers"][0]["host"], "news.example");
    let per_day: Vec<(i64, i64)> = stats["clicksPerDay"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["clicks"].as_i64().unwrap(),
                d["botClicks"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_day, [(2, 0), (3, 1)]);
    assert_eq!(app.link(&code(2)).await["clickCount"], 7);
    let stats: Value = app
        .get(&format!("/links/{}/stats", code(2)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totalClicks"], 7);
    assert_eq!(
        stats["clicksPerDay"],
        json!([]),
        "carried clicks have no day"
    );
    assert_eq!(app.link(&code(5)).await["clickCount"], 1);

    // New clicks add to the carried ones, before and after they are flushed.
    app.follow(&code(2)).await;
    assert_eq!(app.link(&code(2)).await["clickCount"], 8);
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(10))
            .await
    );
    assert_eq!(app.link(&code(2)).await["clickCount"], 8);

    // Both plain links are reuse candidates now, the one made without `reuse` too; the
    // alias to the same URL as link 1 is not.
    for (url, id) in [
        ("https://example.com/plain", 1),
        ("https://example.com/reused", 2),
    ] {
        let response = app.shorten(json!({"longUrl": url, "reuse": true})).await;
        assert_eq!(response.status(), 200, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["shortCode"], code(id), "{url}");
    }

    // The guarded link keeps every guard: not reused, password asked, limit counted
    // from its stored clicks, expiry and redirect type shown.
    let response = app
        .shorten(json!({"longUrl": "https://example.com/guarded", "reuse": true}))
        .await;
    assert_eq!(response.status(), 201);
    let guarded = app.link(&code(3)).await;
    assert_eq!(guarded["passwordProtected"], true);
    assert_eq!(guarded["maxClicks"], 3);
    assert_eq!(guarded["redirectType"], 302);
    assert_eq!(guarded["clickCount"], 2);
    assert_eq!(
        guarded["expiresAt"],
        json!(basis_server::clock::to_datetime(now + 86_400_000))
    );
    assert_problem(app.follow(&code(3)).await, 401).await;
    let with_password = || {
        app.client
            .get(app.url(&format!("/{}", code(3))))
            .header("x-link-password", "open sesame")
            .send()
    };
    assert_eq!(with_password().await.unwrap().status(), 302);
    assert_problem(with_password().await.unwrap(), 410).await;

    // The alias and its owner are kept.
    let aliased = basis_store::links::find(store, basis_store::links::LinkKey::Alias("kept-alias"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aliased.id, 4);
    assert_eq!(aliased.owner_id.as_deref(), Some("user-1"));

    // The foreign keys were rebuilt: deleting a link removes its guards and counters.
    let response = app
        .client
        .delete(app.url(&format!("/links/{}", code(3))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(count(store, "SELECT COUNT(*) FROM link_guards").await, 0);
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM link_daily_clicks WHERE link_id = 3"
        )
        .await,
        0
    );
    if matches!(engine, Engine::Sqlite) {
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM links_pending_hashes").await,
            0
        );
    }
}
