//! A fresh, migrated store per case on each engine, and the rows most cases start from.

use std::io::Write as _;
use std::sync::Once;

use basis_store::users::UserRow;
use basis_store::{ConnectOptions, Store};
use tempfile::TempDir;

/// A migrated store and what keeps its database alive.
pub struct Db {
    /// The store.
    pub store: Store,
    _dir: Option<TempDir>,
    /// The PostgreSQL server's admin URL and the test's databases on it (the catalog and,
    /// when links are sharded, the shard databases).
    postgres: Option<(String, Vec<String>)>,
}

/// A store on a new SQLite file.
pub async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::connect(
        &Store::sqlite_url_in(dir.path()),
        &ConnectOptions::default(),
    )
    .await
    .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    Db {
        store,
        _dir: Some(dir),
        postgres: None,
    }
}

/// A store on a new PostgreSQL database, or `None` (said once, visibly) when
/// `BASIS_TEST_POSTGRES_URL` is not set.
pub async fn postgres() -> Option<Db> {
    let (admin, name) = new_database().await?;
    let store = Store::connect(&database_url(&admin, &name), &ConnectOptions::default())
        .await
        .expect("connect to the test database");
    Some(Db {
        store,
        _dir: None,
        postgres: Some((admin, vec![name])),
    })
}

/// A store on a new PostgreSQL catalog whose links live on `shards` new shard databases,
/// or `None` when `BASIS_TEST_POSTGRES_URL` is not set.
pub async fn sharded(shards: usize) -> Option<Db> {
    let (admin, catalog) = new_database().await?;
    let mut names = vec![catalog.clone()];
    for _ in 0..shards {
        names.push(new_database().await?.1);
    }
    let urls: Vec<String> = names[1..]
        .iter()
        .map(|name| database_url(&admin, name))
        .collect();
    let store = Store::connect(&database_url(&admin, &catalog), &ConnectOptions::default())
        .await
        .expect("connect to the catalog")
        .with_link_shards(&urls, &ConnectOptions::default())
        .await
        .expect("open the shard databases");
    Some(Db {
        store,
        _dir: None,
        postgres: Some((admin, names)),
    })
}

/// A new, migrated PostgreSQL database: the admin URL and the database's name.
async fn new_database() -> Option<(String, String)> {
    let admin = match std::env::var("BASIS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            static SAID: Once = Once::new();
            // Written past the test harness's capture so the skip is always visible.
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: BASIS_TEST_POSTGRES_URL is not set; the store contracts ran on SQLite only"
                );
            });
            return None;
        }
    };
    // Migrating once and copying the result is several times faster than migrating per case.
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let template = TEMPLATE
        .get_or_init(|| async {
            let name = format!("basis_test_template_{:016x}", rand::random::<u64>());
            admin_statement(&admin, &format!("CREATE DATABASE {name}")).await;
            let store = Store::connect(&database_url(&admin, &name), &ConnectOptions::default())
                .await
                .expect("connect to the template database");
            store.migrate().await.expect("migrate PostgreSQL");
            store.close().await;
            // A database is copied only once nobody is connected to it; closed connections
            // leave the server a moment after the pool lets them go.
            for _ in 0..100 {
                if sessions_on(&admin, &name).await == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            name
        })
        .await;
    let name = format!("basis_test_{:016x}", rand::random::<u64>());
    admin_statement(
        &admin,
        &format!("CREATE DATABASE {name} TEMPLATE {template}"),
    )
    .await;
    Some((admin, name))
}

impl Db {
    /// Closes the store and drops a PostgreSQL test database (a failed case leaves its
    /// database, and every run its template, for `scripts/services.sh` to drop later).
    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin, names)) = &self.postgres {
            for name in names {
                admin_statement(
                    admin,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await;
            }
        }
    }
}

/// How many sessions are connected to database `name`.
async fn sessions_on(admin: &str, name: &str) -> i64 {
    let admin = Store::connect(admin, &ConnectOptions::default())
        .await
        .expect("connect to PostgreSQL");
    let count = match admin.pools() {
        basis_store::Pools::Postgres { write, .. } => {
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .fetch_one(write)
                .await
                .expect("count sessions")
        }
        basis_store::Pools::Sqlite { .. } => unreachable!("a PostgreSQL URL"),
    };
    admin.close().await;
    count
}

fn database_url(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).expect("a PostgreSQL URL");
    url.set_path(name);
    url.to_string()
}

async fn admin_statement(admin: &str, sql: &str) {
    let admin = Store::connect(admin, &ConnectOptions::default())
        .await
        .expect("connect to PostgreSQL");
    match admin.pools() {
        basis_store::Pools::Postgres { write, .. } => {
            sqlx::query(sql).execute(write).await.expect(sql);
        }
        basis_store::Pools::Sqlite { .. } => unreachable!("a PostgreSQL URL"),
    }
    admin.close().await;
}

/// Runs each listed case on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::harness::sqlite().await;
                    super::$name(&db.store).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::harness::postgres().await {
                        super::$name(&db.store).await;
                        db.finish().await;
                    }
                }
            )*
        }
    };
}

/// Runs each listed case on SQLite, on PostgreSQL, and on a PostgreSQL catalog with the
/// links on one and on three shard databases: the cases of the links' repositories, which
/// must keep their rules whether the links are in one database or spread over several.
#[macro_export]
macro_rules! on_every_layout {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_engines!($($name),*);
        mod one_shard {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::harness::sharded(1).await {
                        super::$name(&db.store).await;
                        db.finish().await;
                    }
                }
            )*
        }
        mod three_shards {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::harness::sharded(3).await {
                        super::$name(&db.store).await;
                        db.finish().await;
                    }
                }
            )*
        }
    };
}

/// An account with this id and email, made at time 0.
pub fn user(id: &str, email: &str) -> UserRow {
    UserRow {
        id: id.to_owned(),
        email: email.to_owned(),
        name: format!("name of {id}"),
        password_hash: Some("old-hash".into()),
        role: "user".into(),
        settings: "{}".into(),
        created_at: 0,
        updated_at: 0,
    }
}

/// Stores an account with this id (`<id>@example.com`) and returns it.
pub async fn account(store: &Store, id: &str) -> UserRow {
    let user = user(id, &format!("{id}@example.com"));
    basis_store::users::insert(store, &user)
        .await
        .expect("insert an account");
    user
}
