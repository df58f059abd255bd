//! Secrets: development generates a signing key once (mode 0600) and keeps it; production
//! refuses to start without real keys; keys come from the environment or a file and rotate.

use std::sync::Arc;

use basis_auth::jwt::KeySet;
use basis_server::clock::ManualClock;
use basis_server::{Config, Environment, Server};
use reqwest::Method;

use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

/// The public origin the apps here are configured with.
const ORIGIN: &str = "https://basis.example";

on_both_engines!(
    development_keeps_one_generated_key_readable_by_the_owner_only,
    production_refuses_to_start_without_real_keys,
    keys_from_a_file_rotate_by_kid,
);

async fn development_keeps_one_generated_key_readable_by_the_owner_only(engine: Engine) {
    // A stable public origin: the issuer must not change with the port across restarts.
    let app = TestApp::spawn_with(&engine, |c| c.base_url = Some(ORIGIN.parse().unwrap())).await;
    let path = app.config.data_dir.join("secrets/jwt-keys");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let before = std::fs::read_to_string(&path).unwrap();
    let user = app.account("kept@example.com").await;
    let app = app.restart().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    let me = app
        .bearer(Method::GET, "/auth/me", &user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "tokens survive a restart");
}

async fn production_refuses_to_start_without_real_keys(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = engine.fresh_database().await;
    config.environment = Environment::Production;
    let clock: Arc<ManualClock> = Arc::new(ManualClock::starting_now());
    let err = Server::build_with_clock(config.clone(), clock.clone())
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("BASIS_JWT_KEYS"), "{err:#}");
    assert!(
        !dir.path().join("secrets/jwt-keys").exists(),
        "nothing generated in production"
    );

    config.auth.jwt_keys = Some("prod:c2hvcnQ=".into());
    let err = Server::build_with_clock(config.clone(), clock.clone())
        .await
        .expect_err("too short");
    assert!(format!("{err:#}").contains("32 bytes"), "{err:#}");

    config.auth.jwt_keys = Some(KeySet::generate_spec("prod-1"));
    Server::build_with_clock(config, clock)
        .await
        .expect("starts with a real key");
}

async fn keys_from_a_file_rotate_by_kid(engine: Engine) {
    let keys = tempfile::tempdir().unwrap();
    let old = KeySet::generate_spec("2026-10");
    let new = KeySet::generate_spec("2026-11");
    let file = keys.path().join("jwt-keys");
    std::fs::write(&file, format!("{old}\n")).unwrap();
    let path = file.clone();
    let app = TestApp::spawn_with(&engine, move |c| {
        c.auth.jwt_keys_file = Some(path);
        c.base_url = Some(ORIGIN.parse().unwrap());
    })
    .await;
    let user = app.account("rotate@example.com").await;
    assert!(!app.config.data_dir.join("secrets/jwt-keys").exists());

    // Rotate: the new key signs, the old one still verifies until its tokens expire.
    std::fs::write(&file, format!("{new},{old}")).unwrap();
    let app = app.restart().await;
    let me = app
        .bearer(Method::GET, "/auth/me", &user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let fresh = app
        .login_tokens("rotate@example.com", crate::accounts_support::PASSWORD)
        .await;
    let token = fresh["accessToken"].as_str().unwrap();
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "2026-11");
    assert_eq!(header["alg"], "HS256");

    // Once the old key is dropped, its tokens stop working.
    std::fs::write(&file, &new).unwrap();
    let app = app.restart().await;
    let me = app
        .bearer(Method::GET, "/auth/me", &user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}
