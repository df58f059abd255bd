//! Storage per link and uncached lookup latency at 1M and 10M links, on SQLite and PostgreSQL.
//!
//! `cargo bench -p basis-server --bench storage` (set `BENCH_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, to a server where a scratch database may
//! be created; `BENCH_SIZES=1000000,10000000` to change the sizes; `BENCH_ENGINES=sqlite`
//! to run one engine). Lookups go straight to the repository, past the lookup cache, with
//! random codes, one at a time.

use std::time::{Duration, Instant};

use basis_server::links::code::CodeBook;
use basis_store::links::{self};
use basis_store::{ConnectOptions, Engine, Store, on_pool};
use rand::Rng;

const ROWS_PER_INSERT: usize = 1000;
const LOOKUPS: usize = 20_000;

/// A realistic target URL of 50–110 bytes for id `i`.
fn long_url(i: u64) -> String {
    let words = [
        "launch",
        "pricing",
        "quarterly",
        "report",
        "guide",
        "summer",
        "sale",
        "rust",
        "backend",
        "news",
    ];
    let title: Vec<&str> = (0..(2 + i % 6))
        .map(|k| words[((i >> k) as usize + k as usize) % words.len()])
        .collect();
    format!(
        "https://www.example.com/articles/2026/{:02}/{i}/{}?utm_source=mail",
        1 + i % 12,
        title.join("-")
    )
}

async fn insert_range(store: &Store, codes: &CodeBook, from: u64, to: u64) {
    let mut sql = String::from(
        "INSERT INTO links (id, code, long_url, url_hash, created_at, redirect_type) VALUES ",
    );
    for r in 0..ROWS_PER_INSERT {
        let p = r * 5;
        sql.push_str(&format!(
            "{}(${}, ${}, ${}, ${}, ${}, 301)",
            if r == 0 { "" } else { "," },
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5
        ));
    }
    let now = 1_790_000_000_000i64;
    let mut id = from;
    while id < to {
        on_pool!(store, write, pool => {
            async {
                let mut tx = pool.begin().await?;
                for _ in 0..20 {
                    if id >= to {
                        break;
                    }
                    let mut query = sqlx::query(&sql);
                    for k in 0..ROWS_PER_INSERT as u64 {
                        let n = id + k;
                        let url = long_url(n);
                        let hash = basis_server::links::input::hash_url(&url);
                        query = query
                            .bind(n as i64)
                            .bind(codes.encode(n))
                            .bind(url)
                            .bind(hash)
                            .bind(now);
                    }
                    query.execute(&mut *tx).await?;
                    id += ROWS_PER_INSERT as u64;
                }
                tx.commit().await
            }
            .await
        })
        .expect("bulk insert");
    }
}

/// Bytes used by the links table and its indexes.
async fn bytes_used(store: &Store) -> i64 {
    match store.engine() {
        Engine::Sqlite => on_pool!(store, write, pool => {
            async {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
                sqlx::query_scalar::<_, i64>(
                    "SELECT (SELECT page_count FROM pragma_page_count()) * (SELECT page_size FROM pragma_page_size()) \
                     - (SELECT freelist_count FROM pragma_freelist_count()) * (SELECT page_size FROM pragma_page_size())",
                )
                .fetch_one(pool)
                .await
            }
            .await
        })
        .expect("sqlite size"),
        Engine::Postgres => on_pool!(store, write, pool => {
            async {
                sqlx::query("VACUUM ANALYZE links").execute(pool).await?;
                sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size('links')").fetch_one(pool).await
            }
            .await
        })
        .expect("postgres size"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn lookups(store: &Store, codes: &CodeBook, n: u64) -> (f64, f64) {
    let mut rng = rand::rng();
    let mut times = Vec::with_capacity(LOOKUPS);
    for _ in 0..LOOKUPS {
        let code = codes.encode(rng.random_range(1..n));
        let started = Instant::now();
        let row = links::find_by_code(store, &code).await.expect("lookup");
        times.push(started.elapsed());
        assert!(row.is_some());
    }
    times.sort_unstable();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

async fn run(engine: &str, url: &str, sizes: &[u64]) {
    let store = Store::connect(
        url,
        &ConnectOptions {
            max_connections: 4,
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    let codes = CodeBook::new(0x5eed);
    let mut have = 1;
    let mut first: Option<f64> = None;
    for &size in sizes {
        let started = Instant::now();
        insert_range(&store, &codes, have, size + 1).await;
        have = size + 1;
        let load = started.elapsed();
        let bytes = bytes_used(&store).await;
        let (p50, p99) = lookups(&store, &codes, have).await;
        let growth = first.map_or(String::new(), |f| {
            format!(
                "  p50 ×{:.2} vs first size (log n ×{:.2})",
                p50 / f,
                (size as f64).ln() / (sizes[0] as f64).ln()
            )
        });
        first.get_or_insert(p50);
        println!(
            "{engine:<9} {size:>10} links  {:>6.1} bytes/link  lookup p50 {p50:>6.1} µs  p99 {p99:>7.1} µs  (load {:.0}s){growth}",
            bytes as f64 / size as f64,
            load.as_secs_f64()
        );
    }
    store.close().await;
}

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes are numbers"))
        .collect();
    let engines = std::env::var("BENCH_ENGINES").unwrap_or_else(|_| "sqlite,postgres".into());
    let avg_url: f64 = (0..10_000).map(|i| long_url(i).len() as f64).sum::<f64>() / 10_000.0;
    println!("average long URL: {avg_url:.0} bytes; code: 7 bytes");

    if engines.contains("sqlite") {
        let dir = tempfile::tempdir().expect("a temporary directory");
        run("sqlite", &Store::sqlite_url_in(dir.path()), &sizes).await;
    }
    if engines.contains("postgres") {
        let admin = std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("basis_bench_{}", std::process::id());
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create database");
        let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
        run("postgres", &format!("{base}/{name}"), &sizes).await;
        sqlx::query(&format!("DROP DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("drop database");
    }
}
