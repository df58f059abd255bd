//! The checkout saga under crashes: concurrent orders over few products with tight stock,
//! while `basis worker` processes are killed with SIGKILL at random and restarted, and a
//! separate `basis payments-sim` fails a share of its calls and answers some only after the
//! client gave up. Then a checker proves, from the database, that stock + sold = initial for
//! every product, every confirmed order was charged exactly once, every cancelled order's
//! money was voided or refunded, the ledger still sums to zero, no mail went to an order
//! that is not confirmed, and every confirmed order got its mail (through the outbox).
//!
//! The short form (`cargo test`) places `CHECKOUT_CRASH_ORDERS` orders (default 30);
//! `scripts/checkout-crash.sh` runs the long form (200 orders over 10 products).

use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::{Value, json};
use sqlx::Row as _;
use tokio::process::Child;

mod support;

use support::{Basis, basis, call, fresh_postgres_database, postgres_admin_url};

const PASSWORD: &str = "velvet otter juggles nine lanterns";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Flags every process of the drill shares (environment, so `worker` takes them too).
fn drill(dir: &std::path::Path, url: &str, payments: &str) -> tokio::process::Command {
    let mut command = basis(dir, Some(url));
    command
        .env("BASIS_PAYMENTS_URL", payments)
        .env("BASIS_PAYMENTS_TIMEOUT_MS", "400")
        .env("BASIS_SAGA_BACKOFF_MS", "20")
        .env("BASIS_SAGA_MAX_ATTEMPTS", "5")
        .env("BASIS_SAGA_LEASE_MS", "1500")
        .env("BASIS_JOB_LEASE_MS", "1000");
    command
}

fn worker(dir: &std::path::Path, url: &str, payments: &str) -> Child {
    drill(dir, url, payments)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkouts_survive_workers_killed_at_random_and_a_failing_provider() {
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let orders = env_or("CHECKOUT_CRASH_ORDERS", 30);
    let products = env_or("CHECKOUT_CRASH_PRODUCTS", 4);
    let workers = env_or("CHECKOUT_CRASH_WORKERS", 2);
    let url = fresh_postgres_database(&admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    // The admin first (the store's migrations run with it), then the provider, then the API.
    let mut create = std::process::Command::new(env!("CARGO_BIN_EXE_basis"));
    let mut child = create
        .args([
            "admin",
            "create-user",
            "--email",
            "admin@example.com",
            "--role",
            "admin",
            "--database-url",
            &url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{PASSWORD}\n").as_bytes(),
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let sim_port = free_port();
    let payments = format!("http://127.0.0.1:{sim_port}");
    let _sim = basis(dir.path(), Some(&url))
        .args(["payments-sim", "--listen", &format!("127.0.0.1:{sim_port}")])
        .args([
            "--failure-rate",
            "0.2",
            "--timeout-rate",
            "0.05",
            "--hang-ms",
            "800",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Basis::serve(
        dir.path(),
        Some(&url),
        &["--workers", "off", "--payments-url", &payments],
    )
    .await;
    for _ in 0..200 {
        if client
            .get(format!("{payments}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let login = |email: &'static str| {
        let client = client.clone();
        let url = server.url("/auth/login");
        async move {
            let body: Value = client
                .post(url)
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["accessToken"].as_str().expect("a token").to_owned()
        }
    };
    let admin = login("admin@example.com").await;
    let mut stock = Vec::new();
    for i in 0..products {
        let body = json!({"name": format!("p{i}"), "price": 100 + i as i64, "currency": "USD", "stock": 3});
        let (status, p) = call(
            &client,
            reqwest::Method::POST,
            server.url("/products"),
            &admin,
            None,
            body,
        )
        .await;
        assert_eq!(status, 201, "{p}");
        stock.push((p["id"].as_i64().unwrap(), 3_i64));
    }
    let mut buyers = Vec::new();
    for (i, email) in [
        "b0@example.com",
        "b1@example.com",
        "b2@example.com",
        "b3@example.com",
    ]
    .into_iter()
    .enumerate()
    {
        let signup = client
            .post(server.url("/users"))
            .json(&json!({"email": email, "password": PASSWORD, "name": format!("buyer {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), 201);
        let token = login(email).await;
        let (_, account) = call(
            &client,
            reqwest::Method::POST,
            server.url("/accounts"),
            &token,
            None,
            json!({"currency": "USD"}),
        )
        .await;
        let account = account["id"].as_i64().unwrap();
        // Enough for some orders, not all: some are refused by the provider's ledger.
        let path = server.url(&format!("/accounts/{account}/deposits"));
        let (status, _) = call(
            &client,
            reqwest::Method::POST,
            path,
            &admin,
            Some(&format!("d{i}")),
            json!({"amount": 1_500}),
        )
        .await;
        assert_eq!(status, 201);
        buyers.push((token, account));
    }

    // Workers, and the killer.
    let mut pool: Vec<Child> = (0..workers)
        .map(|_| worker(dir.path(), &url, &payments))
        .collect();
    let (stop_killing, mut stopped) = tokio::sync::watch::channel(false);
    let killer = {
        let (dir, url, payments) = (dir.path().to_owned(), url.clone(), payments.clone());
        tokio::spawn(async move {
            let mut kills = 0;
            loop {
                let pause = rand::rng().random_range(150..600);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(pause)) => {}
                    _ = stopped.changed() => break,
                }
                let victim = rand::rng().random_range(0..pool.len());
                let _ = pool[victim].start_kill(); // SIGKILL
                let _ = pool[victim].wait().await;
                kills += 1;
                pool[victim] = worker(&dir, &url, &payments);
            }
            (kills, pool)
        })
    };

    // The orders, all at once.
    let mut placed = tokio::task::JoinSet::new();
    for n in 0..orders {
        let (token, account) = buyers[n % buyers.len()].clone();
        let (product, _) = stock[rand::rng().random_range(0..stock.len())];
        let quantity = rand::rng().random_range(1..=2);
        let client = client.clone();
        let url = server.url("/orders");
        placed.spawn(async move {
            let body = json!({"items": [{"productId": product, "quantity": quantity}], "paymentAccount": account});
            let key = format!("crash-{n}");
            let (status, order) = call(&client, reqwest::Method::POST, url, &token, Some(&key), body).await;
            (status, order)
        });
    }
    let mut accepted = 0;
    while let Some(result) = placed.join_next().await {
        let (status, order) = result.unwrap();
        // 422: the stock was already gone when the order was checked.
        assert!(status == 202 || status == 422, "{status} {order}");
        accepted += usize::from(status == 202);
    }

    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let started = Instant::now();
    let open = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM shop_sagas WHERE status IN ('running', 'compensating')",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    // Kill for a while longer, then let the survivors finish.
    while started.elapsed() < Duration::from_secs(4) && open().await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_killing.send(true);
    let (kills, _pool) = killer.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while open().await > 0 {
        assert!(
            Instant::now() < deadline,
            "sagas still open after two minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The checker.
    let summary: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM shop_orders GROUP BY status ORDER BY status")
            .fetch_all(&db)
            .await
            .unwrap();
    eprintln!(
        "checkout drill: {orders} orders sent, {accepted} accepted, {kills} workers killed, outcome {summary:?}"
    );
    let total: i64 = summary.iter().map(|s| s.1).sum();
    assert_eq!(total as usize, accepted);
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shop_orders o JOIN shop_sagas s ON s.id = o.id WHERE NOT \
         ((o.status = 'confirmed' AND s.status = 'completed') OR (o.status = 'cancelled' AND s.status = 'compensated'))",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        mismatched, 0,
        "every order confirmed with a completed saga or cancelled with a compensated one"
    );
    for (product, initial) in &stock {
        let row = sqlx::query(
            "SELECT p.stock, COALESCE((SELECT sum(i.quantity) FROM shop_order_items i JOIN shop_orders o ON o.id = i.order_id \
             WHERE o.status = 'confirmed' AND i.product_id = p.id), 0)::BIGINT AS sold FROM shop_products p WHERE p.id = $1",
        )
        .bind(product)
        .fetch_one(&db)
        .await
        .unwrap();
        let (left, sold): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            left + sold,
            *initial,
            "product {product}: stock {left} + sold {sold}"
        );
    }
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shop_reservations r JOIN shop_orders o ON o.id = r.order_id \
         WHERE (o.status = 'cancelled') = (r.released_at IS NULL)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        held, 0,
        "confirmed orders hold their reservations, cancelled ones released them"
    );
    // Every confirmed order: its authorization captured, its transfer posted once for the
    // total, never refunded.
    let bad_confirmed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shop_orders o LEFT JOIN shop_payments p ON p.idem_key = 'order:' || o.id || ':authorize' \
         LEFT JOIN ledger_transfers t ON t.id = p.transfer_id WHERE o.status = 'confirmed' AND NOT \
         (p.status = 'captured' AND t.status = 'posted' AND t.posted_amount = o.total \
          AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.reference = 'refund:' || p.id))",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        bad_confirmed, 0,
        "every confirmed order charged exactly once"
    );
    // Every cancelled order: nothing authorized, or voided, or posted and refunded in full.
    let bad_cancelled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shop_orders o LEFT JOIN shop_payments p ON p.idem_key = 'order:' || o.id || ':authorize' \
         LEFT JOIN ledger_transfers t ON t.id = p.transfer_id WHERE o.status = 'cancelled' AND NOT \
         (p.id IS NULL OR (p.status = 'cancelled' AND t.id IS NULL) OR (p.status = 'voided' AND t.status = 'voided') \
          OR (p.status = 'refunded' AND t.status = 'posted' AND (SELECT count(*) FROM ledger_transfers r \
              WHERE r.reference = 'refund:' || p.id AND r.status = 'posted' AND r.amount = t.posted_amount) = 1))",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        bad_cancelled, 0,
        "every cancelled order's payment voided or refunded once"
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_transfers WHERE status = 'pending'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(pending, 0, "no money left reserved");
    let sums: Vec<i64> =
        sqlx::query_scalar("SELECT sum(balance)::BIGINT FROM ledger_accounts GROUP BY currency")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(
        sums.iter().all(|s| *s == 0),
        "balances sum to zero per currency: {sums:?}"
    );
    let shop_balance: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(balance), 0)::BIGINT FROM ledger_accounts WHERE name LIKE 'shop:%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let sold_total: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(total), 0)::BIGINT FROM shop_orders WHERE status = 'confirmed'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        shop_balance, sold_total,
        "the shop holds exactly what confirmed orders paid"
    );
    let stray_mail: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shop_mails m JOIN shop_orders o ON o.id = m.order_id WHERE o.status <> 'confirmed'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(stray_mail, 0, "no mail for an order that is not confirmed");
    // Every confirmed order gets its mail (at least once, through the outbox), and its
    // event is recorded once by the mail consumer.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (unsent, recorded, confirmed): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM shop_orders o LEFT JOIN shop_mails m ON m.order_id = o.id \
                     WHERE o.status = 'confirmed' AND m.sent_at IS NULL), \
                    (SELECT count(*) FROM processed_events WHERE consumer = 'shop-mail'), \
                    (SELECT count(*) FROM shop_orders WHERE status = 'confirmed')",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if unsent == 0 {
            assert_eq!(
                recorded, confirmed,
                "one recorded mail event per confirmed order"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unsent} confirmed orders still without their mail after a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}
