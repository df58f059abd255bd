//! Backup while serving, restore into an empty place, and everything is there.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp};
use crate::ledger_support::{deposit, expect, open, transfer};
use crate::on_both_engines;

on_both_engines!(a_restored_backup_holds_every_link_post_account_and_transfer);

async fn a_restored_backup_holds_every_link_post_account_and_transfer(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let admin = app
        .account_with_role("admin@example.com", Role::Admin)
        .await;
    let alice = app.account("alice@example.com").await;
    let bob = app.account("bob@example.com").await;
    let mut codes = Vec::new();
    for i in 0..5 {
        codes.push(
            app.create_as(&alice.access, &format!("https://example.com/b/{i}"))
                .await,
        );
    }
    let post = app
        .new_post(&alice, crate::blog_support::post("Kept safe"))
        .await;
    let a = open(&app, &alice, "USD").await;
    let b = open(&app, &bob, "USD").await;
    deposit(&app, &admin, a, 1_000).await;
    let moved = expect(
        transfer(
            &app,
            &alice,
            "kept",
            json!({"from": a, "to": b, "amount": 250, "currency": "USD"}),
        )
        .await,
        201,
    )
    .await;

    // Taken while the server is running.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("basis.backup");
    basis_server::backup::backup(&app.config, &file)
        .await
        .expect("a backup");
    assert!(
        basis_server::backup::backup(&app.config, &file)
            .await
            .is_err(),
        "a backup never overwrites a file"
    );

    // Restored into a fresh data directory or database, then served.
    let restored = TestApp::spawn_with(&engine, |_| {}).await;
    let mut config = restored.config.clone();
    drop(restored);
    let target = tempfile::tempdir().unwrap();
    config.data_dir = target.path().to_path_buf();
    config.database_url = engine.fresh_database().await;
    basis_server::backup::restore(&config, &file)
        .await
        .expect("a restore");
    assert!(
        basis_server::backup::restore(&config, &file).await.is_err(),
        "a restore refuses a database that is not empty"
    );
    let copy = TestApp::spawn_with(&engine, |c| {
        c.data_dir = config.data_dir.clone();
        c.database_url = config.database_url.clone();
    })
    .await;

    for (i, code) in codes.iter().enumerate() {
        let followed = copy.follow(code).await;
        assert_eq!(
            followed
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok()),
            Some(format!("https://example.com/b/{i}").as_str()),
            "link {code}"
        );
    }
    let logged_in = copy
        .login_tokens("alice@example.com", crate::accounts_support::PASSWORD)
        .await;
    let token = logged_in["accessToken"].as_str().unwrap();
    for email in ["bob@example.com", "admin@example.com"] {
        copy.login_tokens(email, crate::accounts_support::PASSWORD)
            .await;
    }
    let read = copy
        .bearer(
            Method::GET,
            &format!("/posts/{}", post["id"].as_str().unwrap()),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["title"], "Kept safe");
    let transfer = copy
        .bearer(Method::GET, &format!("/transfers/{}", moved["id"]), token)
        .send()
        .await
        .unwrap();
    assert_eq!(transfer.status(), 200);
    let transfer: Value = transfer.json().await.unwrap();
    assert_eq!(transfer["amount"], 250);
}
