//! Storage per link and uncached lookup latency at 1M and 10M links, on SQLite and PostgreSQL.
//!
//! `cargo bench -p basis-server --bench storage`
//!
//! - `BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`): a server
//!   where scratch databases may be created; `BENCH_ENGINES=sqlite` runs one engine.
//! - `BENCH_SIZES=1000000,10000000`: one database per size, each loaded separately.
//! - `BENCH_ROUNDS=7`, `BENCH_LOOKUPS=20000`: lookups are made in rounds that alternate
//!   between the sizes (small, large, small, large, …) after a warm-up, so a burst of load
//!   from another process on this shared machine hits both sizes alike. Each round prints
//!   its percentiles and the load average; the summary takes the median of the rounds.
//! - `BENCH_ALIAS_EVERY=n`: give every n-th link an alias (default: none; the marginal cost
//!   is reported by running with `1`).
//!
//! Rows are written by `links::insert_many`, the code behind the server's `links::insert`,
//! so they have the shape the server writes (migration 0006): a generated code is not
//! stored, so a plain link is its id, creation time, redirect type and target, and every
//! link without an alias is in the reuse index (a reuse candidate). The space counted is
//! `links` and `link_guards` with all their indexes (PostgreSQL), or the whole database
//! file (SQLite). Lookups go through the same repository call as the redirect path
//! (`links::find` with the key the code book derives from the code), past the lookup
//! cache, one at a time, for random existing codes. Each round also times `SELECT 1`, the
//! driver's round trip, which is most of a lookup.

use std::time::{Duration, Instant};

use basis_server::links::code::CodeBook;
use basis_store::links::{self, LinkRow};
use basis_store::{ConnectOptions, Engine, Store, on_pool};
use rand::Rng;

/// Links per `insert_many` call: one transaction of 1,000-row statements.
const LINKS_PER_TRANSACTION: u64 = 20_000;
const WARM_UP: usize = 5_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

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

/// Which links of the load get an alias.
#[derive(Clone, Copy)]
struct Mix {
    alias_every: u64,
}

impl Mix {
    fn alias(&self, id: u64) -> bool {
        self.alias_every > 0 && id.is_multiple_of(self.alias_every)
    }
}

async fn insert_range(store: &Store, mix: Mix, from: u64, to: u64) {
    let now = 1_790_000_000_000i64;
    let mut id = from;
    while id < to {
        let end = to.min(id + LINKS_PER_TRANSACTION);
        let batch: Vec<LinkRow> = (id..end)
            .map(|n| LinkRow {
                id: n as i64,
                alias: mix.alias(n).then(|| format!("campaign-{n}")),
                long_url: long_url(n),
                created_at: now,
                expires_at: None,
                max_clicks: None,
                redirect_type: 301,
                password_hash: None,
                owner_id: None,
                rules: None,
                domain: None,
            })
            .collect();
        links::insert_many(store, &batch)
            .await
            .expect("bulk insert");
        id = end;
    }
}

/// Bytes used by the links (with their guards) and every index on them.
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
                sqlx::query("VACUUM ANALYZE links, link_guards").execute(pool).await?;
                sqlx::query_scalar::<_, i64>(
                    "SELECT pg_total_relation_size('links') + pg_total_relation_size('link_guards')",
                )
                .fetch_one(pool)
                .await
            }
            .await
        })
        .expect("postgres size"),
    }
}

/// Percentiles in microseconds of one round.
#[derive(Clone, Copy, Default)]
struct Round {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    trip_p50: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// `count` lookups of random existing codes; returns their sorted latencies.
async fn lookups(store: &Store, codes: &CodeBook, mix: Mix, n: u64, count: usize) -> Vec<Duration> {
    let mut rng = rand::rng();
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let id = rng.random_range(1..=n);
        let code = if mix.alias(id) {
            format!("campaign-{id}")
        } else {
            codes.encode(id)
        };
        let started = Instant::now();
        let row = links::find(store, codes.key_of(&code))
            .await
            .expect("lookup");
        times.push(started.elapsed());
        assert_eq!(row.map(|r| r.id), Some(id as i64), "{code}");
    }
    times.sort_unstable();
    times
}

/// The median of `SELECT 1` round trips, in microseconds.
async fn round_trip(store: &Store, count: usize) -> f64 {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        store.ping().await.expect("ping");
        times.push(started.elapsed());
    }
    times.sort_unstable();
    percentile(&times, 0.5)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Loaded {
    size: u64,
    store: Store,
    bytes: i64,
    rounds: Vec<Round>,
}

async fn open(url: &str) -> Store {
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
    store
}

async fn run(engine: &str, urls: &[String], sizes: &[u64], mix: Mix) {
    let codes = CodeBook::new(0x5eed);
    let rounds: usize = env_or("BENCH_ROUNDS", 7);
    let count: usize = env_or("BENCH_LOOKUPS", 20_000);
    let mut loaded = Vec::new();
    for (&size, url) in sizes.iter().zip(urls) {
        let store = open(url).await;
        let started = Instant::now();
        insert_range(&store, mix, 1, size + 1).await;
        let load = started.elapsed();
        let bytes = bytes_used(&store).await;
        println!(
            "{engine:<9} {size:>10} links loaded in {:.0} s, {:.1} bytes/link (load avg {})",
            load.as_secs_f64(),
            bytes as f64 / size as f64,
            load_average()
        );
        lookups(&store, &codes, mix, size, WARM_UP).await;
        loaded.push(Loaded {
            size,
            store,
            bytes,
            rounds: Vec::new(),
        });
    }
    for round in 0..rounds {
        // Alternate the order too, so neither size always runs first.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..loaded.len()).collect()
        } else {
            (0..loaded.len()).rev().collect()
        };
        for i in order {
            let db = &mut loaded[i];
            let times = lookups(&db.store, &codes, mix, db.size, count).await;
            let r = Round {
                p50: percentile(&times, 0.5),
                p90: percentile(&times, 0.9),
                p99: percentile(&times, 0.99),
                p999: percentile(&times, 0.999),
                trip_p50: round_trip(&db.store, count / 4).await,
            };
            println!(
                "  round {round} {:>10}: p50 {:>6.1} p90 {:>6.1} p99 {:>7.1} p99.9 {:>7.1} µs; SELECT 1 p50 {:>5.1} µs (load avg {})",
                db.size,
                r.p50,
                r.p90,
                r.p99,
                r.p999,
                r.trip_p50,
                load_average()
            );
            db.rounds.push(r);
        }
    }
    let first_p50 = median(loaded[0].rounds.iter().map(|r| r.p50).collect());
    let first_net = first_p50 - median(loaded[0].rounds.iter().map(|r| r.trip_p50).collect());
    for db in &loaded {
        let m = |f: fn(&Round) -> f64| median(db.rounds.iter().map(f).collect());
        let (p50, trip) = (m(|r| r.p50), m(|r| r.trip_p50));
        println!(
            "{engine:<9} {:>10} links  {:>6.1} bytes/link  median of {rounds} rounds: p50 {p50:>6.1} p90 {:>6.1} p99 {:>7.1} p99.9 {:>7.1} µs, SELECT 1 {trip:>5.1} µs  p50 ×{:.2}, p50 − round trip ×{:.2} (log n ×{:.2})",
            db.size,
            db.bytes as f64 / db.size as f64,
            m(|r| r.p90),
            m(|r| r.p99),
            m(|r| r.p999),
            p50 / first_p50,
            (p50 - trip) / first_net,
            (db.size as f64).ln() / (loaded[0].size as f64).ln(),
        );
    }
    for db in loaded {
        db.store.close().await;
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes are numbers"))
        .collect();
    let engines = std::env::var("BENCH_ENGINES").unwrap_or_else(|_| "sqlite,postgres".into());
    let mix = Mix {
        alias_every: env_or("BENCH_ALIAS_EVERY", 0),
    };
    let avg_url: f64 = (0..10_000).map(|i| long_url(i).len() as f64).sum::<f64>() / 10_000.0;
    println!(
        "average long URL: {avg_url:.0} bytes; every link without an alias is a reuse candidate; aliases: every {} (0 = none); {} cores, load avg {}",
        mix.alias_every,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    if engines.contains("sqlite") {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let urls: Vec<String> = sizes
            .iter()
            .map(|size| {
                let sub = dir.path().join(size.to_string());
                std::fs::create_dir_all(&sub).expect("a directory");
                Store::sqlite_url_in(&sub)
            })
            .collect();
        run("sqlite", &urls, &sizes, mix).await;
    }
    if engines.contains("postgres") {
        let admin = std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
        let names: Vec<String> = sizes
            .iter()
            .map(|size| format!("basis_bench_{}_{size}", std::process::id()))
            .collect();
        for name in &names {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .expect("create database");
        }
        let urls: Vec<String> = names.iter().map(|n| format!("{base}/{n}")).collect();
        run("postgres", &urls, &sizes, mix).await;
        for name in &names {
            sqlx::query(&format!("DROP DATABASE {name}"))
                .execute(&pool)
                .await
                .expect("drop database");
        }
    }
}
