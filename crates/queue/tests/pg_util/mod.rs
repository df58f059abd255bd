//! A fresh PostgreSQL database per test on the server `BASIS_TEST_POSTGRES_URL` names.

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> Option<String> {
    let Ok(admin) = std::env::var("BASIS_TEST_POSTGRES_URL") else {
        println!("skipped: BASIS_TEST_POSTGRES_URL is not set");
        return None;
    };
    let name = format!("basis_test_{:016x}", rand_id());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to the test server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    let mut url = url::Url::parse(&admin).expect("a URL");
    url.set_path(&name);
    Some(url.to_string())
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
