//! `basis`: the one binary. Parses the command line, sets up logging and hands over to the
//! server crate; every failure at start is one line on stderr and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;

use basis_server::{Config, Server};
use clap::{Parser, Subcommand, ValueEnum};

mod last_seat;
mod sharding_demo;
mod telemetry;

/// Most requests allocate and free many small buffers; mimalloc does that with far less
/// contention and bookkeeping than the system allocator (see bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. mimalloc reserves its memory in
/// large regions, and where the kernel backs anonymous memory with huge pages ("always",
/// as on Debian), every region touched costs 2 MiB of resident memory: an idle server held
/// 22 MB of heap where 7 MB were in use (bench/RESULTS.md, "Footprint"). A heap this small
/// gains nothing from fewer TLB entries.
fn small_pages_only() {
    // Without the switch (an old kernel) the server still runs, only with more memory.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[derive(Debug, Parser)]
#[command(
    name = "basis",
    version,
    about = "A reference backend: URL shortener, blog API, identity and more"
)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        env = "BASIS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,

    /// Trace export.
    #[command(flatten)]
    otlp: telemetry::OtlpArgs,

    #[command(subcommand)]
    command: Command,
}

/// Flags of `basis payments-sim`.
#[derive(Debug, clap::Args)]
struct PaymentsSimArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "BASIS_PAYMENTS_SIM_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    listen: std::net::SocketAddr,
    /// The database holding the ledger (the same one `basis serve` uses).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Directory of the default SQLite database.
    #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Probability (0–1) that a call fails with 503 before doing anything.
    #[arg(long, env = "BASIS_PAYMENTS_SIM_FAILURE_RATE", default_value_t = 0.0)]
    failure_rate: f64,
    /// Milliseconds added before every answer.
    #[arg(long, env = "BASIS_PAYMENTS_SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Probability (0–1) that a call does its work and answers only after `--hang-ms`
    /// (after the client gave up).
    #[arg(long, env = "BASIS_PAYMENTS_SIM_TIMEOUT_RATE", default_value_t = 0.0)]
    timeout_rate: f64,
    /// How long a "timed out" answer is held, in milliseconds.
    #[arg(long, env = "BASIS_PAYMENTS_SIM_HANG_MS", default_value_t = 10_000)]
    hang_ms: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (migrating the database first), with in-process workers unless
    /// `--workers off`.
    Serve(Box<Config>),
    /// Run only the job workers (same configuration as `serve`); SIGTERM stops claiming,
    /// lets running jobs finish within the grace period and releases the rest.
    Worker(Box<WorkerArgs>),
    /// Operator commands for the job queue (`basis queue dlq list|show|replay|purge`).
    Queue {
        #[command(flatten)]
        target: basis_server::queue_cli::QueueTarget,
        #[command(subcommand)]
        command: basis_server::queue_cli::QueueCommand,
    },
    /// Run the payment provider simulator: authorizes, captures and cancels with the ledger's
    /// pending transfers in `--database-url`, failing, lagging and hanging as told.
    PaymentsSim(Box<PaymentsSimArgs>),
    /// Apply pending database migrations and exit.
    Migrate {
        /// Directory of the default SQLite database.
        #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (default: the SQLite file in the data directory).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Write a consistent copy of the database to a file while it serves (SQLite: a
    /// compacted database file; PostgreSQL: `pg_dump` in the custom format).
    Backup {
        /// The file to write (must not exist).
        #[arg(long)]
        to: PathBuf,
        /// Directory of the default SQLite database.
        #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (default: the SQLite file in the data directory).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Restore a backup into an empty data directory (SQLite) or an empty database
    /// (PostgreSQL, through `pg_restore`), then apply newer migrations.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// Directory of the default SQLite database (created if missing).
        #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (default: the SQLite file in the data directory).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Run the load balancer in front of `basis serve` instances (see docs/gateway.md).
    Gateway(Box<basis_gateway::Config>),
    /// The shortener's links: import from another shortener, export with click totals.
    #[command(subcommand)]
    Links(LinksCommand),
    /// Ledger maintenance (`basis ledger rebuild`).
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Show an isolation anomaly and its remedies as a table (creates and drops its own
    /// `ledger_demo_*` tables), or how placement schemes spread and move sharded keys.
    Demo {
        /// Which anomaly.
        #[arg(value_enum)]
        which: DemoKind,
        /// Directory of the default scratch SQLite file (`demo.db`).
        #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (default: the scratch SQLite file).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// `last-seat` only: then sell the last seat over HTTP through this many `basis
        /// serve` processes on the database (2 on PostgreSQL is the scale-out case).
        #[arg(long, default_value_t = 0)]
        servers: usize,
    },
}

/// `basis links …`.
#[derive(Debug, Subcommand)]
enum LinksCommand {
    /// Import links from Shlink (CSV), Kutt (JSON), YOURLS (CSV) or Bitly (CSV) exports,
    /// keeping codes where they are free here and reporting the others. The file is
    /// checked whole first: a fault is reported with its line and nothing is written.
    Import {
        /// The tool the file comes from.
        #[arg(long, value_enum)]
        from: basis_server::links::import::Source,
        /// The export file.
        file: PathBuf,
        /// The account that will own the links (its email or id).
        #[arg(long)]
        owner: String,
        /// The domain the links go on (default: the base URL's host).
        #[arg(long = "to-domain")]
        to_domain: Option<String>,
        /// The server's configuration (database, base URL, domains, URL rules).
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Write an account's links with their click totals as CSV or JSON.
    Export {
        /// The account (its email or id).
        #[arg(long)]
        owner: String,
        /// `csv` or `json`.
        #[arg(long, value_enum, default_value = "csv")]
        format: basis_server::links::dump::Format,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The server's configuration (database, base URL, domains).
        #[command(flatten)]
        config: Box<Config>,
    },
}

/// `basis ledger …`.
#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Replay the whole event feed into fresh read models and compare their hash with the
    /// live ones (run it when no transfers arrive, or the positions will differ).
    Rebuild {
        /// Directory of the default SQLite database.
        #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (default: the SQLite file in the data directory).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
}

/// The anomalies `basis demo` shows.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DemoKind {
    /// Two concurrent $100 withdrawals from $1000.
    LostUpdate,
    /// 100 concurrent buyers for the last seat.
    LastSeat,
    /// A million link ids on 4 then 5 shard databases by range, modulo hash, consistent
    /// hash and logical shards: spread, keys moved, where new ids land (no database used).
    Sharding,
}

/// `basis worker`'s flags: those of `serve`, and where to answer probes and scrapes.
#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address (off when unset; `serve`'s
    /// `--listen` is not used, so a worker can run beside a server with the same settings).
    #[arg(long, env = "BASIS_WORKER_OPS_LISTEN")]
    ops_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an account; the password is read from standard input (never a flag).
    CreateUser {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// The display name (default: the email).
        #[arg(long)]
        name: Option<String>,
        /// `user`, `moderator` or `admin`.
        #[arg(long, default_value = "user")]
        role: String,
        /// Directory of the default SQLite database.
        #[arg(long, env = "BASIS_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (default: the SQLite file in the data directory).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Add a shard database to sharded links and move its share of the logical shards to it
    /// while the service runs; run it again to finish one that was stopped.
    Reshard {
        /// The PostgreSQL database that joins.
        #[arg(long, value_name = "URL")]
        add: String,
        /// The catalog: the main database of the running service.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The shard databases the service runs on now (repeatable, or comma-separated).
        #[arg(long = "shard-url", env = "BASIS_SHARD_URLS", value_delimiter = ',')]
        shard_urls: Vec<String>,
        /// Seconds given to every running instance to reload the shard map before links
        /// move to the new database, and before the moved ones leave the old.
        #[arg(long, default_value_t = 2.0)]
        settle_seconds: f64,
    },
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            let server = Server::build(*config).await?;
            tracing::info!(address = %server.local_addr(), "listening");
            server.run(stop_signal()).await
        }
        Command::Worker(args) => {
            let WorkerArgs { ops_listen, config } = *args;
            basis_server::workers::run_workers(config, ops_listen, stop_signal()).await
        }
        Command::Gateway(config) => basis_gateway::run(*config, stop_signal()).await,
        Command::Queue { target, command } => basis_server::queue_cli::run(target, command).await,
        Command::PaymentsSim(args) => payments_sim(*args).await,
        Command::Migrate {
            data_dir,
            database_url,
        } => {
            std::fs::create_dir_all(&data_dir)?;
            let config = Config {
                database_url,
                ..Config::with_data_dir(&data_dir)
            };
            let store = basis_server::open_store(&config).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Backup {
            to,
            data_dir,
            database_url,
        } => {
            let config = Config {
                database_url,
                ..Config::with_data_dir(&data_dir)
            };
            basis_server::backup::backup(&config, &to).await?;
            tracing::info!(file = %to.display(), "backup written");
            Ok(())
        }
        Command::Restore {
            from,
            data_dir,
            database_url,
        } => {
            std::fs::create_dir_all(&data_dir)?;
            let config = Config {
                database_url,
                ..Config::with_data_dir(&data_dir)
            };
            basis_server::backup::restore(&config, &from).await?;
            tracing::info!(file = %from.display(), "backup restored");
            Ok(())
        }
        Command::Admin(AdminCommand::CreateUser {
            email,
            name,
            role,
            data_dir,
            database_url,
        }) => create_user(email, name, &role, data_dir, database_url).await,
        Command::Admin(AdminCommand::Reshard {
            add,
            database_url,
            shard_urls,
            settle_seconds,
        }) => reshard(add, database_url, shard_urls, settle_seconds).await,
        Command::Links(command) => links_command(command).await,
        Command::Ledger(LedgerCommand::Rebuild {
            data_dir,
            database_url,
        }) => rebuild_ledger(data_dir, database_url).await,
        Command::Demo {
            which,
            data_dir,
            database_url,
            servers,
        } => {
            let name = match which {
                DemoKind::LostUpdate => "lost-update",
                DemoKind::LastSeat => "last-seat",
                DemoKind::Sharding => {
                    anyhow::ensure!(servers == 0, "--servers applies to the last-seat demo only");
                    print!("{}", sharding_demo::report());
                    return Ok(());
                }
            };
            let url = match database_url {
                Some(url) => url,
                None => {
                    std::fs::create_dir_all(&data_dir)?;
                    format!("sqlite://{}", data_dir.join("demo.db").display())
                }
            };
            print!(
                "{}",
                basis_ledger::demo::run(name, &url)
                    .await
                    .map_err(anyhow::Error::msg)?
            );
            if servers > 0 {
                if !matches!(which, DemoKind::LastSeat) {
                    anyhow::bail!("--servers applies to the last-seat demo only");
                }
                print!("{}", last_seat::run(&data_dir, &url, servers).await?);
            }
            Ok(())
        }
    }
}

/// `basis payments-sim`: the payment provider as a separate service.
async fn payments_sim(args: PaymentsSimArgs) -> anyhow::Result<()> {
    for (name, rate) in [
        ("failure", args.failure_rate),
        ("timeout", args.timeout_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "--{name}-rate must be between 0 and 1"
        );
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let config = Config {
        database_url: args.database_url,
        ..Config::with_data_dir(&args.data_dir)
    };
    let store = basis_server::open_store(&config).await?;
    let ledger = basis_ledger::Ledger::new(
        store.clone(),
        std::sync::Arc::new(basis_ledger::SystemClock),
    );
    ledger.install().await?;
    basis_shop::Shop::new(ledger.clone()).install().await?;
    let sim = basis_shop::payments::sim::Simulator::new(
        ledger,
        basis_shop::payments::sim::SimConfig {
            failure_rate: args.failure_rate,
            latency: std::time::Duration::from_millis(args.latency_ms),
            timeout_rate: args.timeout_rate,
            hang: std::time::Duration::from_millis(args.hang_ms),
        },
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "payment simulator listening");
    sim.serve(listener, stop_signal()).await?;
    store.close().await;
    Ok(())
}

/// `basis ledger rebuild`: read models replayed from the events must equal the live ones.
async fn rebuild_ledger(data_dir: PathBuf, database_url: Option<String>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)?;
    let config = Config {
        database_url,
        ..Config::with_data_dir(&data_dir)
    };
    let store = basis_server::open_store(&config).await?;
    let ledger = basis_ledger::Ledger::new(
        store.clone(),
        std::sync::Arc::new(basis_ledger::SystemClock),
    );
    ledger.install().await?;
    let report = basis_ledger::Projector::new(ledger)
        .rebuild_and_compare(1_000)
        .await?;
    store.close().await;
    println!("live      at {} hash {}", report.live.0, report.live.1);
    println!(
        "rebuilt   at {} hash {} ({} events replayed)",
        report.rebuilt.0, report.rebuilt.1, report.replayed
    );
    if report.matches() {
        println!("the rebuilt read models equal the live ones");
        Ok(())
    } else if report.live.0 != report.rebuilt.0 {
        anyhow::bail!("events arrived during the rebuild; run it again when the ledger is quiet")
    } else {
        anyhow::bail!("the rebuilt read models differ from the live ones")
    }
}

/// `basis links import|export`.
async fn links_command(command: LinksCommand) -> anyhow::Result<()> {
    use basis_server::clock::Clock as _;
    use basis_server::links::cli;

    match command {
        LinksCommand::Import {
            from,
            file,
            owner,
            to_domain,
            config,
        } => {
            std::fs::create_dir_all(&config.data_dir)?;
            let now = basis_server::clock::SystemClock.now_ms();
            let report =
                cli::import_file(&config, from, &file, &owner, to_domain.as_deref(), now).await?;
            println!(
                "imported {} links: {} kept their code, {} got a new one",
                report.created,
                report.kept,
                report.conflicts.len()
            );
            for conflict in &report.conflicts {
                println!(
                    "line {}: {} -> {} ({})",
                    conflict.line, conflict.code, conflict.new_code, conflict.reason
                );
            }
            Ok(())
        }
        LinksCommand::Export {
            owner,
            format,
            out,
            config,
        } => {
            let count = match out {
                Some(path) => {
                    let mut file = std::fs::File::create(&path)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                    cli::export_links(&config, &owner, format, &mut file).await?
                }
                None => {
                    let mut stdout = std::io::stdout();
                    cli::export_links(&config, &owner, format, &mut stdout).await?
                }
            };
            tracing::info!(links = count, "links exported");
            Ok(())
        }
    }
}

/// `basis admin reshard --add`: moves the new database's share of the logical shards, with
/// a line of progress per shard on standard error.
async fn reshard(
    add: String,
    database_url: String,
    shard_urls: Vec<String>,
    settle_seconds: f64,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        settle_seconds.is_finite() && settle_seconds >= 0.0,
        "--settle-seconds must be a number of seconds"
    );
    let config = Config {
        database_url: Some(database_url),
        shard_urls,
        ..Config::with_data_dir(std::path::Path::new("."))
    };
    let store = basis_server::open_store(&config).await?;
    let options = basis_store::ConnectOptions {
        max_connections: 4,
        ..basis_store::ConnectOptions::default()
    };
    let summary = basis_store::reshard::add_database(
        &store,
        &add,
        &options,
        std::time::Duration::from_secs_f64(settle_seconds),
        |p| {
            let (shard, links, frozen) = p.last.unwrap_or_default();
            let left = p
                .time_left()
                .map_or_else(|| "?".into(), |t| format!("{:.0} s", t.as_secs_f64()));
            eprintln!(
                "[{:>3}/{}] logical shard {shard:>3}: {links} links, writes held {} ms | \
                 {} links and {} rows moved, {:.0} links/s, {left} left",
                p.shards_done,
                p.shards_total,
                frozen.as_millis(),
                p.links,
                p.rows,
                p.links_per_second(),
            );
        },
    )
    .await;
    store.close().await;
    let summary = summary?;
    println!(
        "shard database {} holds {} logical shards: {} links ({} rows) moved in {:.1} s, \
         writes of one shard held at most {} ms",
        summary.database,
        summary.shards,
        summary.progress.links,
        summary.progress.rows,
        summary.progress.elapsed.as_secs_f64(),
        summary.longest_freeze.as_millis()
    );
    Ok(())
}

/// `basis admin create-user`: the way to make the first admin.
async fn create_user(
    email: String,
    name: Option<String>,
    role: &str,
    data_dir: PathBuf,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    use basis_server::clock::Clock as _;
    use basis_server::error::ApiError;

    let role = role.parse().map_err(anyhow::Error::msg)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("password for {email}: ");
    }
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    std::fs::create_dir_all(&data_dir)?;
    let config = Config {
        database_url,
        ..Config::with_data_dir(&data_dir)
    };
    let store = basis_server::open_store(&config).await?;
    let body = basis_server::accounts::users::NewUser {
        name: name.unwrap_or_else(|| email.clone()),
        email,
        password,
    };
    let hasher = basis_server::passwords::Passwords::default();
    let now = basis_server::clock::SystemClock.now_ms();
    let created =
        basis_server::accounts::users::insert_user(&store, hasher.hasher(), now, body, role).await;
    store.close().await;
    match created {
        Ok(user) => {
            println!("{}", user.id);
            tracing::info!(id = %user.id, email = %user.email, role = %user.role, "account created");
            Ok(())
        }
        Err(ApiError::Invalid(errors) | ApiError::UnprocessableFields(errors)) => {
            let problems: Vec<_> = errors
                .iter()
                .map(|e| format!("{} {}", e.field, e.message))
                .collect();
            anyhow::bail!("{}", problems.join("; "))
        }
        Err(other) => Err(other.into()),
    }
}

fn main() -> ExitCode {
    small_pages_only();
    let cli = Cli::parse();
    let telemetry = match telemetry::init(cli.log_format, &cli.otlp) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Background tasks end with the runtime; then the spans they finished are flushed.
    drop(runtime);
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
