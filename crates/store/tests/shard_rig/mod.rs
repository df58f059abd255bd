//! What the shard tests share: fresh databases on the shared PostgreSQL server, a catalog
//! opened over shard databases, links to insert and the raw contents of one database.

#![allow(dead_code)]

use std::time::Duration;

use basis_store::links::{LinkQuery, LinkRow, LinkSort};
use basis_store::{ConnectOptions, Pools, Store};

/// The shared server's admin URL, or `None` (the test then passes without running).
pub fn admin_url() -> Option<String> {
    std::env::var("BASIS_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// The URL of database `name` on the server of `admin`.
pub fn database_url(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

pub async fn execute(url: &str, sql: &str) {
    let store = Store::connect(url, &ConnectOptions::default())
        .await
        .expect("connect");
    match store.pools() {
        Pools::Postgres { write, .. } => {
            sqlx::query(sql).execute(write).await.expect(sql);
        }
        Pools::Sqlite { .. } => unreachable!(),
    }
    store.close().await;
}

/// Fresh, empty databases on the shared server, dropped when the test's [`Databases`] is.
pub struct Databases {
    pub admin: String,
    pub names: Vec<String>,
}

impl Databases {
    pub async fn new(admin: &str, count: usize) -> Self {
        let mut names = Vec::new();
        for _ in 0..count {
            let name = format!("basis_shard_test_{:016x}", rand::random::<u64>());
            execute(admin, &format!("CREATE DATABASE {name}")).await;
            names.push(name);
        }
        Self {
            admin: admin.to_owned(),
            names,
        }
    }

    pub fn url(&self, index: usize) -> String {
        database_url(&self.admin, &self.names[index])
    }

    pub async fn drop_all(self) {
        for name in &self.names {
            execute(
                &self.admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
}

pub fn options() -> ConnectOptions {
    ConnectOptions {
        acquire_timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    }
}

/// The catalog at `catalog`, migrated, with the links on `shards`.
pub async fn open(catalog: &str, shards: &[String]) -> basis_store::Result<Store> {
    let store = Store::connect(catalog, &options()).await?;
    store.migrate().await?;
    store.with_link_shards(shards, &options()).await
}

pub fn link(id: i64, alias: Option<&str>, owner: &str) -> LinkRow {
    LinkRow {
        id,
        alias: alias.map(str::to_owned),
        long_url: format!("https://example.com/{id}"),
        created_at: id,
        expires_at: None,
        max_clicks: None,
        redirect_type: 301,
        password_hash: None,
        owner_id: Some(owner.to_owned()),
        rules: None,
        domain: None,
    }
}

/// The ids of the links stored in `store` itself (one database, not routed).
pub async fn ids_in(store: &Store) -> Vec<i64> {
    match store.pools() {
        Pools::Postgres { write, .. } => sqlx::query_scalar("SELECT id FROM links ORDER BY id")
            .fetch_all(write)
            .await
            .expect("read links"),
        Pools::Sqlite { .. } => unreachable!(),
    }
}

pub fn page(owner: &str, limit: i64) -> LinkQuery {
    LinkQuery {
        owner_id: owner.to_owned(),
        search: None,
        search_id: None,
        tag: None,
        domain: None,
        sort: LinkSort::NewestFirst,
        after: None,
        limit,
    }
}
