//! Transfers per second and latency with concurrent clients, then the projection's rate.
//!
//! `cargo run --release -p basis-ledger --example ledger_bench -- <database-url> <spread|hot>
//! [clients] [accounts] [seconds]`. Prints one line of `key=value` pairs (bench/ledger.sh
//! collects them). `spread`: each transfer between two random accounts of `accounts`; `hot`:
//! each transfer from a random account into one account, the worst case for row locks.
//!
//! `… -- <database-url> setup <owner-id> [clients] [accounts]` only opens and funds the
//! accounts, owned by `owner-id`, and prints their ids on one line (bench/ledger-http.sh
//! then drives `POST /transfers` through `basis serve`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use basis_ledger::{Currency, Ledger, NewAccount, Projector, SystemClock, TransferRequest};
use basis_store::{ConnectOptions, Store};
use rand::Rng;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .ok_or("usage: ledger_bench <url> <spread|hot> [clients] [accounts] [seconds]")?;
    let hot = args.get(2).map(String::as_str) == Some("hot");
    // `setup <owner>` shifts the other arguments by one.
    let owner = (args.get(2).map(String::as_str) == Some("setup")).then(|| args[3].clone());
    let rest = usize::from(owner.is_some());
    let clients: usize = args.get(3 + rest).map_or(Ok(64), |s| s.parse())?;
    let accounts: usize = args.get(4 + rest).map_or(Ok(10_000), |s| s.parse())?;
    let seconds: u64 = args.get(5 + rest).map_or(Ok(20), |s| s.parse())?;

    let options = ConnectOptions {
        max_connections: clients as u32,
        acquire_timeout: Duration::from_secs(60),
        ..ConnectOptions::default()
    };
    let store = Store::connect(url, &options).await?;
    let ledger = Ledger::new(store, Arc::new(SystemClock));
    ledger.install().await?;
    let usd = Currency::parse("USD")?;

    // Accounts, each funded generously so no transfer is refused for funds.
    let setup = Instant::now();
    let mut ids = Vec::with_capacity(accounts);
    let chunks: Vec<_> = (0..clients.min(accounts))
        .map(|i| {
            let (ledger, usd, owner) = (ledger.clone(), usd.clone(), owner.clone());
            let n = accounts / clients.min(accounts)
                + usize::from(i < accounts % clients.min(accounts));
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(n);
                for _ in 0..n {
                    let new = NewAccount {
                        currency: usd.clone(),
                        name: None,
                        owner_id: owner.clone(),
                        allow_overdraft: false,
                    };
                    let id = ledger.open_account(&new).await?.id;
                    ledger.deposit(id, 1_000_000_000, &usd).await?;
                    mine.push(id);
                }
                Ok::<_, basis_ledger::Error>(mine)
            })
        })
        .collect();
    for chunk in chunks {
        ids.extend(chunk.await??);
    }
    let setup = setup.elapsed();
    if owner.is_some() {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        println!("{}", ids.join(" "));
        return Ok(());
    }
    let ids = Arc::new(ids);

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (ledger, usd, ids) = (ledger.clone(), usd.clone(), ids.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                while Instant::now() < deadline {
                    let (from, to, amount) = {
                        let mut rng = rand::rng();
                        let to = if hot {
                            ids[0]
                        } else {
                            ids[rng.random_range(0..ids.len())]
                        };
                        let mut from = ids[rng.random_range(0..ids.len())];
                        while from == to {
                            from = ids[rng.random_range(0..ids.len())];
                        }
                        (from, to, rng.random_range(1..=100))
                    };
                    let t0 = Instant::now();
                    match ledger
                        .transfer(&TransferRequest::posted(from, to, amount, &usd))
                        .await
                    {
                        Ok(_) => latencies.push(t0.elapsed()),
                        Err(_) => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for w in workers {
        let (l, f) = w.await?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };

    // The projection: every event so far, from a cold start.
    let projector = Projector::new(ledger.clone());
    let p0 = Instant::now();
    let events = projector.catch_up_all(1_000).await?;
    let projection = p0.elapsed();

    println!(
        "engine={} mode={} clients={clients} accounts={accounts} seconds={:.1} transfers={} failures={failures} \
         tps={:.0} p50_ms={:.2} p99_ms={:.2} setup_s={:.1} projected_events={events} projection_events_per_s={:.0}",
        if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        },
        if hot { "hot" } else { "spread" },
        elapsed.as_secs_f64(),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        setup.as_secs_f64(),
        events as f64 / projection.as_secs_f64(),
    );
    Ok(())
}
