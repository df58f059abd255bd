//! Generated codes are computed, not stored (migration 0004): links made before the
//! migration still resolve, and an alias can never be mistaken for a generated code.

use basis_server::links::code::CodeBook;
use basis_server::links::input::hash_url;
use basis_store::{ConnectOptions, Store, on_pool};
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::on_both_engines;

on_both_engines!(
    links_made_before_migration_0004_resolve_by_code_and_by_alias,
    an_alias_with_the_shape_of_a_generated_code_is_400,
    an_alias_is_never_reached_through_its_ids_generated_code,
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

async fn links_made_before_migration_0004_resolve_by_code_and_by_alias(engine: Engine) {
    // A database in the shape it had before migration 0004, with rows written the old way:
    // every code in a `code` column, generated or not.
    let dir = tempfile::tempdir().unwrap();
    let url = match engine.fresh_database().await {
        Some(url) => url,
        None => Store::sqlite_url_in(dir.path()),
    };
    let old = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    old.migrate_before(4).await.unwrap();
    let book = CodeBook::new(KEY);
    let held = book.decode("Promo26").unwrap() as i64;
    exec(
        &old,
        "INSERT INTO settings (name, value) VALUES ('code_key', $1)",
        &[json!(format!("{KEY:016x}"))],
    )
    .await;
    let insert = "INSERT INTO links (id, code, long_url, url_hash, created_at, redirect_type, \
                  click_count) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    let plain_url = "https://example.com/plain";
    let rows = [
        // A plain generated link with clicks.
        json!([1, book.encode(1), plain_url, hash_url(plain_url), 5]),
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
