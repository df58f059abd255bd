//! Latency of transfers to another bank's ledger, by two-phase commit and by saga, beside a
//! transfer within one bank in the same run, and how long each held its row locks.
//!
//! `cargo run --release -p basis-ledger --example cross_bench -- <home-url> <remote-url>
//! <local|2pc|saga> [clients] [transfers]`. Prints one line of `key=value` pairs
//! (bench/cross-ledger.sh collects them). Each client sends from its own account (so the
//! senders never wait for one another); every transfer of a mode goes through the funding
//! account of each bank, the row both modes must lock.
//!
//! Lock hold: `local` times the one transaction; `2pc` from the first write to the last
//! `COMMIT PREPARED`; `saga` the longest of its three short transactions (the coordinator
//! logs it per transfer in `ledger_cross_transfers.hold_us`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use basis_ledger::{
    CrossLedger, CrossRequest, Currency, Direction, Ledger, Mode, NewAccount, SystemClock,
    TransferRequest,
};
use basis_store::{ConnectOptions, Store};

async fn ledger(url: &str, clients: usize) -> Result<Ledger, Box<dyn std::error::Error>> {
    let options = ConnectOptions {
        max_connections: (clients * 2 + 2) as u32,
        acquire_timeout: Duration::from_secs(60),
        ..ConnectOptions::default()
    };
    let ledger = Ledger::new(Store::connect(url, &options).await?, Arc::new(SystemClock));
    ledger.install().await?;
    Ok(ledger)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cross_bench <home-url> <remote-url> <local|2pc|saga> [clients] [transfers]";
    let (home_url, remote_url, what) = match (args.get(1), args.get(2), args.get(3)) {
        (Some(h), Some(r), Some(w)) => (h.clone(), r.clone(), w.clone()),
        _ => return Err(usage.into()),
    };
    let clients: usize = args.get(4).map_or(Ok(1), |s| s.parse())?;
    let transfers: usize = args.get(5).map_or(Ok(1000), |s| s.parse())?;
    let home = ledger(&home_url, clients).await?;
    let remote = ledger(&remote_url, clients).await?;
    let usd = Currency::parse("USD")?;
    let open = |owner: &str| NewAccount {
        currency: usd.clone(),
        name: None,
        owner_id: Some(owner.into()),
        allow_overdraft: false,
    };
    let receiver = remote.open_account(&open("receiver")).await?.id;
    let local_receiver = home.open_account(&open("receiver")).await?.id;
    let mut senders = Vec::new();
    for _ in 0..clients {
        let id = home.open_account(&open("sender")).await?.id;
        home.deposit(id, 1_000_000_000, &usd).await?;
        senders.push(id);
    }
    let mode = match what.as_str() {
        "2pc" => Some(Mode::TwoPhase),
        "saga" => Some(Mode::Saga),
        "local" => None,
        _ => return Err(usage.into()),
    };
    let cross = CrossLedger::new(
        home.clone(),
        "bench",
        remote.clone(),
        "remote",
        mode.unwrap_or(Mode::Saga),
    )
    .await?;

    let per_client = transfers / clients;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, &from) in senders.iter().enumerate() {
        let (cross, home, usd) = (cross.clone(), home.clone(), usd.clone());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let t = Instant::now();
                let hold = match mode {
                    None => {
                        let req = TransferRequest::posted(from, local_receiver, 1, &usd);
                        home.transfer(&req)
                            .await
                            .map(|_| None)
                            .map_err(|e| e.to_string())?
                    }
                    Some(_) => {
                        let req = CrossRequest {
                            direction: Direction::Outgoing,
                            from,
                            to: receiver,
                            amount: 1,
                            currency: usd.clone(),
                            reference: None,
                            request_key: Some(format!("bench-{c}-{n}")),
                        };
                        let done = cross.transfer(&req).await.map_err(|e| e.to_string())?;
                        done.hold_us
                    }
                };
                let us = t.elapsed().as_micros() as i64;
                samples.push((us, hold.unwrap_or(us)));
            }
            Ok::<_, String>(samples)
        });
    }
    let mut latency = Vec::new();
    let mut hold = Vec::new();
    while let Some(done) = tasks.join_next().await {
        for (us, h) in done?? {
            latency.push(us);
            hold.push(h);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latency.sort_unstable();
    hold.sort_unstable();
    println!(
        "mode={what} clients={clients} transfers={} per_s={:.0} p50_us={} p99_us={} \
         hold_p50_us={} hold_p99_us={}",
        latency.len(),
        latency.len() as f64 / elapsed,
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        percentile(&hold, 0.5),
        percentile(&hold, 0.99),
    );
    Ok(())
}
