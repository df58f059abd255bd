//! The chaos drill: a mixed load (link creates, redirects, blog posts, ledger transfers, and
//! the jobs they make: click batches, webhook deliveries, ledger projections) against two
//! `basis serve` processes and two `basis worker` processes on a PostgreSQL, a Redis and a
//! RabbitMQ of the drill's own, while one fault at a time strikes: a server or a worker
//! killed with SIGKILL and restarted, or Redis, PostgreSQL or RabbitMQ killed and started
//! again. Then a checker proves, from what the clients were told and what is stored:
//!
//! - no acknowledged write is lost: every link answered 201 resolves to its URL, every post
//!   answered 201 reads back, every transfer answered 201 is in the balances, which are
//!   exactly what the acknowledged transfers made of the deposits;
//! - no click is counted twice: a link's stored count never exceeds the redirects its
//!   servers answered, and the clicks answered by servers that were not killed all count
//!   (only a killed server's unflushed buffer, at most one flush interval, may be lost);
//! - no job is lost: every acknowledged link's `link.created` event reaches the webhook
//!   receiver, and the ledger's read models catch up with the balances;
//! - the service answered 5xx only while a dependency was really down (or within
//!   [`RECOVERY`] of its return).
//!
//! The default `cargo test` runs it for 120 s (`BASIS_CHAOS_SECONDS`); `scripts/chaos`
//! runs it for 30 minutes. The drill found, and the code now has fixes for: a deduplication
//! marker naming a job that was never stored, click batches resent under a new id, jobs
//! buried unrun because a dead consumer's prefetched deliveries counted as attempts, and a
//! server whose shutdown hung on a broker call without a deadline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use basis_testkit::{PrivatePostgres, PrivateRabbit, PrivateRedis, stable_port};
use rand::Rng as _;
use rand::seq::SliceRandom as _;
use serde_json::{Value, json};
use tokio::time::Instant;

mod support;

use support::{Basis, access_token, basis, create_user, ready, try_access_token};

const PASSWORD: &str = "storms pass and the ledger stays square";
const EMAIL: &str = "chaos@example.com";
/// What each ledger account starts with.
const DEPOSIT: i64 = 10_000;
const ACCOUNTS: usize = 4;
/// How long after a dependency is back its clients may still fail (a pool finding its dead
/// connections, a reconnect backing off).
const RECOVERY: Duration = Duration::from_secs(5);
/// How long a dependency stays down.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// How long a request may stay without a definite answer before the drill calls it lost.
const RESOLVE_WITHIN: Duration = Duration::from_secs(90);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    Server,
    Worker,
    Redis,
    Postgres,
    Rabbit,
}

const FAULTS: [Fault; 5] = [
    Fault::Server,
    Fault::Worker,
    Fault::Redis,
    Fault::Postgres,
    Fault::Rabbit,
];

/// A dependency's time down: from the kill to the moment it answered again.
#[derive(Debug)]
struct Outage {
    fault: Fault,
    from: Instant,
    until: Instant,
}

/// The servers the clients may use: base URL and incarnation (a number per process started),
/// `None` while one is down.
#[derive(Clone, Default)]
struct Servers(Arc<RwLock<Vec<Option<Live>>>>);

/// A live server: its base URL and incarnation.
type Live = (String, usize);

impl Servers {
    fn pick(&self, hint: usize) -> Option<Live> {
        let all = self.0.read().unwrap();
        (0..all.len()).find_map(|i| all[(hint + i) % all.len()].clone())
    }

    fn set(&self, index: usize, live: Option<Live>) {
        self.0.write().unwrap()[index] = live;
    }
}

/// Everything the clients were told, for the checker.
#[derive(Default)]
struct History {
    /// Acknowledged links: code → long URL.
    links: BTreeMap<String, String>,
    /// Acknowledged posts: id → title.
    posts: BTreeMap<String, String>,
    /// Acknowledged transfers: (from, to, amount).
    transfers: Vec<(i64, i64, i64)>,
    refused_transfers: usize,
    /// Redirects answered, per code and server incarnation.
    redirects: HashMap<String, HashMap<usize, u64>>,
    /// Redirects sent whose answer never came (the server may have counted them), per code.
    unanswered: HashMap<String, u64>,
    /// Every 5xx: when, and what for.
    errors: Vec<(Instant, String)>,
    /// Requests that reached no server (one was being killed) or got no whole answer.
    unreachable: u64,
    /// Of those, the ones sent to a server that may have handled them.
    unknown: u64,
    requests: u64,
}

struct Load {
    client: reqwest::Client,
    /// The access token, renewed by signing in again when a server answers 401 (it lives 15
    /// minutes; the long drill runs 30).
    token: RwLock<String>,
    servers: Servers,
    accounts: Vec<i64>,
    history: Mutex<History>,
}

impl Load {
    fn token(&self) -> String {
        self.token.read().unwrap().clone()
    }

    /// Signs in again on `base`; the old token stays when that fails (a dependency down).
    async fn renew_token(&self, base: &str) {
        if let Some(token) = try_access_token(&self.client, base, EMAIL, PASSWORD).await {
            *self.token.write().unwrap() = token;
        }
    }

    /// Sends `request` (built for a base URL) to a live server; `None` when none answered
    /// (with `what` counted as unknown when the server may have handled it).
    async fn send<F>(&self, hint: usize, what: &str, build: F) -> Option<(u16, Value, usize)>
    where
        F: FnOnce(&str) -> reqwest::RequestBuilder,
    {
        let (base, incarnation) = self.servers.pick(hint)?;
        let sent = build(&base).send().await;
        let response = {
            let mut history = self.history.lock().unwrap();
            history.requests += 1;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    history.unreachable += 1;
                    if !error.is_connect() {
                        history.unknown += 1;
                        if let Some(code) = what.strip_prefix("redirect ") {
                            *history.unanswered.entry(code.to_owned()).or_default() += 1;
                        }
                    }
                    return None;
                }
            };
            if response.status().is_server_error() {
                let what = format!("{what}: {}", response.status().as_u16());
                history.errors.push((Instant::now(), what));
            }
            response
        };
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        if status == 401 {
            // The token ran out: this request is not acknowledged, the next ones carry a new one.
            self.renew_token(&base).await;
        }
        Some((status, body, incarnation))
    }

    async fn create_link(&self, client: usize, n: usize) {
        let url = format!("https://example.com/chaos/{client}/{n}");
        let answer = self
            .send(client, "create", |base| {
                self.client
                    .post(format!("{base}/shorten"))
                    .bearer_auth(self.token())
                    .json(&json!({"longUrl": url}))
            })
            .await;
        if let Some((201, body, _)) = answer {
            let code = body["shortCode"].as_str().expect("a short code").to_owned();
            self.history.lock().unwrap().links.insert(code, url);
        }
    }

    async fn redirect(&self, client: usize) {
        let code = {
            let history = self.history.lock().unwrap();
            if history.links.is_empty() {
                return;
            }
            let i = rand::rng().random_range(0..history.links.len());
            history.links.keys().nth(i).cloned().expect("a code")
        };
        let answer = self
            .send(client, &format!("redirect {code}"), |base| {
                self.client.get(format!("{base}/{code}"))
            })
            .await;
        if let Some((status, _, incarnation)) = answer
            && (300..400).contains(&status)
        {
            let mut history = self.history.lock().unwrap();
            *history
                .redirects
                .entry(code)
                .or_default()
                .entry(incarnation)
                .or_default() += 1;
        }
    }

    async fn write_post(&self, client: usize, n: usize) {
        let title = format!("storm report {client}-{n}");
        let answer = self
            .send(client, "post", |base| {
                self.client
                    .post(format!("{base}/posts"))
                    .bearer_auth(self.token())
                    .json(&json!({"title": title, "body": "All **quiet**."}))
            })
            .await;
        if let Some((201, body, _)) = answer {
            let id = body["id"].as_str().expect("a post id").to_owned();
            self.history.lock().unwrap().posts.insert(id, title);
        }
    }

    /// A transfer, sent again with its `Idempotency-Key` until the answer is definite.
    async fn transfer(&self, client: usize, n: usize) {
        let (from, to, amount) = {
            let mut rng = rand::rng();
            let from = rng.random_range(0..self.accounts.len());
            let to = (from + rng.random_range(1..self.accounts.len())) % self.accounts.len();
            (
                self.accounts[from],
                self.accounts[to],
                rng.random_range(1..=500),
            )
        };
        let key = format!("chaos-{client}-{n}");
        let body =
            json!({"from": from, "to": to, "amount": amount, "currency": "USD", "reference": key});
        let (status, _) = self
            .post_once(client, "transfer", "/transfers", &key, &body)
            .await;
        let mut history = self.history.lock().unwrap();
        if status == 201 {
            history.transfers.push((from, to, amount));
        } else {
            history.refused_transfers += 1;
        }
    }

    /// `POST path` with `key` until a definite answer: 201 or 422.
    async fn post_once(
        &self,
        hint: usize,
        what: &str,
        path: &str,
        key: &str,
        body: &Value,
    ) -> (u16, Value) {
        let deadline = Instant::now() + RESOLVE_WITHIN;
        let mut pause = tokio::time::interval(Duration::from_millis(50));
        let mut hint = hint;
        let mut last = String::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "{key}: no definite answer within {RESOLVE_WITHIN:?}; the last was {last}"
            );
            let answer = self
                .send(hint, what, |base| {
                    self.client
                        .post(format!("{base}{path}"))
                        .bearer_auth(self.token())
                        .header("idempotency-key", key)
                        .json(body)
                })
                .await;
            match answer {
                Some((status @ (201 | 422), body, _)) => return (status, body),
                Some((status, body, _)) => last = format!("{status} {body}"),
                None => hint += 1,
            }
            pause.tick().await;
        }
    }
}

/// The drill's engines and processes.
struct Cluster {
    dir: tempfile::TempDir,
    postgres: PrivatePostgres,
    redis: PrivateRedis,
    rabbit: PrivateRabbit,
    database_url: String,
    servers: Vec<Option<Basis>>,
    workers: Vec<Option<Basis>>,
    /// How many server processes have been started (the next incarnation's number).
    incarnations: usize,
    /// Incarnations that were killed (their unflushed clicks may be lost).
    killed: HashSet<usize>,
    incarnation_of: Vec<usize>,
}

impl Cluster {
    /// `basis` with the drill's engines.
    fn command(&self) -> tokio::process::Command {
        let mut command = basis(self.dir.path(), Some(&self.database_url));
        command
            .env("REDIS_URL", self.redis.url())
            .env("BASIS_QUEUE_URL", self.rabbit.url())
            .env("BASIS_WEBHOOKS_ALLOW_PRIVATE", "true")
            .env("BASIS_JOB_LEASE_MS", "3000");
        command
    }

    async fn start_server(&mut self) -> (Basis, usize) {
        let mut command = self.command();
        command.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--click-flush-ms",
            "200",
            "--workers",
            "off",
            "--request-timeout-ms",
            "2000",
            // One public origin (the tokens' issuer), as behind a load balancer.
            "--base-url",
            "http://chaos.test",
        ]);
        let server = Basis::listening(command).await;
        self.incarnations += 1;
        (server, self.incarnations)
    }

    async fn start_worker(&self) -> Basis {
        let mut command = self.command();
        command.args(["worker", "--ops-listen", "127.0.0.1:0"]);
        Basis::listening(command).await
    }

    /// Strikes with `fault`; answers the outage of a dependency it took down.
    async fn strike(&mut self, fault: Fault, servers: &Servers) -> Option<Outage> {
        let from = Instant::now();
        match fault {
            Fault::Server => {
                let i = rand::rng().random_range(0..self.servers.len());
                servers.set(i, None);
                let victim = self.servers[i].take().expect("a running server");
                self.killed.insert(self.incarnation_of[i]);
                victim.kill().await;
                let (server, incarnation) = self.start_server().await;
                servers.set(i, Some((server.url(""), incarnation)));
                self.incarnation_of[i] = incarnation;
                self.servers[i] = Some(server);
                return None;
            }
            Fault::Worker => {
                let i = rand::rng().random_range(0..self.workers.len());
                self.workers[i]
                    .take()
                    .expect("a running worker")
                    .kill()
                    .await;
                self.workers[i] = Some(self.start_worker().await);
                return None;
            }
            Fault::Redis => {
                self.redis.stop();
                tokio::time::sleep(DOWN_FOR).await;
                self.redis.start_again().await;
            }
            Fault::Postgres => {
                self.postgres.crash();
                tokio::time::sleep(DOWN_FOR).await;
                self.postgres.start_again().await;
            }
            Fault::Rabbit => {
                self.rabbit.kill();
                tokio::time::sleep(DOWN_FOR).await;
                self.rabbit.start_again().await;
            }
        }
        Some(Outage {
            fault,
            from,
            until: Instant::now(),
        })
    }
}

/// Receives webhook deliveries and keeps the long URL of each `link.created` event.
async fn webhook_receiver() -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    let created: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let seen = created.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if event["type"] == "link.created"
                    && let Some(url) = event["data"]["longUrl"].as_str()
                {
                    *seen.lock().unwrap().entry(url.to_owned()).or_default() += 1;
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, created)
}

/// Where the `link.created` event of `url` stands in the database: still in the outbox, or
/// its delivery rows (status, attempts, next attempt, last error).
async fn event_trail(database_url: &str, url: &str) -> String {
    use sqlx::Connection as _;
    let Ok(mut db) = sqlx::PgConnection::connect(database_url).await else {
        return format!("{url}: the database does not answer");
    };
    let pattern = format!("%{url}\"%");
    let outbox: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, xid::text FROM outbox WHERE payload LIKE $1")
            .bind(&pattern)
            .fetch_all(&mut db)
            .await
            .unwrap_or_default();
    let deliveries: Vec<(i64, i64, String, i32, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, event_id, status, attempts, next_attempt_at, last_error \
         FROM webhook_deliveries WHERE body LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&mut db)
    .await
    .unwrap_or_default();
    format!("{url}: outbox rows (id, xid) {outbox:?}; deliveries {deliveries:?}")
}

/// Polls `check` every 200 ms until it answers `None` (all good) or `within` passes; then
/// panics with the last complaint ([`drains`] with nothing that could shrink).
async fn settles<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    drains(within, || {
        let answer = check();
        async move { answer.await.map(|complaint| (0, complaint)) }
    })
    .await;
}

/// Polls `check` every 200 ms until it answers `None` (nothing left); panics with the last
/// complaint once what is left (the count it answers) has not shrunk for `stall`, or after
/// ten minutes in all.
async fn drains<F, Fut>(stall: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<(usize, String)>>,
{
    let give_up = Instant::now() + Duration::from_secs(600);
    let mut least = usize::MAX;
    let mut moved = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        poll.tick().await;
        let Some((left, complaint)) = check().await else {
            return;
        };
        if left < least {
            least = left;
            moved = Instant::now();
        }
        assert!(
            moved.elapsed() < stall && Instant::now() < give_up,
            "{complaint}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_while_processes_and_engines_are_killed() {
    let seconds = setting("BASIS_CHAOS_SECONDS", 120);
    let clients = setting("BASIS_CHAOS_CLIENTS", 8) as usize;
    let every = Duration::from_millis(setting("BASIS_CHAOS_EVERY_MS", 3000));
    let Some(postgres) = PrivatePostgres::crash_safe().await else {
        return;
    };
    let Some(redis) = PrivateRedis::start(stable_port()).await else {
        return;
    };
    let Some(rabbit) = PrivateRabbit::start().await else {
        return;
    };
    let database_url = postgres.create_database("basis");
    let mut cluster = Cluster {
        dir: tempfile::tempdir().unwrap(),
        postgres,
        redis,
        rabbit,
        database_url,
        servers: Vec::new(),
        workers: Vec::new(),
        incarnations: 0,
        killed: HashSet::new(),
        incarnation_of: Vec::new(),
    };
    create_user(
        cluster.dir.path(),
        Some(&cluster.database_url),
        EMAIL,
        "admin",
        PASSWORD,
    )
    .await;
    let servers = Servers::default();
    for _ in 0..2 {
        let (server, incarnation) = cluster.start_server().await;
        servers
            .0
            .write()
            .unwrap()
            .push(Some((server.url(""), incarnation)));
        cluster.incarnation_of.push(incarnation);
        cluster.servers.push(Some(server));
        let worker = cluster.start_worker().await;
        cluster.workers.push(Some(worker));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(support::BROWSER)
        .build()
        .unwrap();
    let (base, _) = servers.pick(0).unwrap();
    ready(&http, &base, Duration::from_secs(30)).await;
    let token = access_token(&http, &base, EMAIL, PASSWORD).await;
    let (hook_url, hooked) = webhook_receiver().await;
    let registered = http
        .post(format!("{base}/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": hook_url, "events": ["link.created"], "secret": "chaos drill hook secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201, "{:?}", registered.text().await);

    let mut load = Load {
        client: http.clone(),
        token: RwLock::new(token),
        servers: servers.clone(),
        accounts: Vec::new(),
        history: Mutex::new(History::default()),
    };
    for i in 0..ACCOUNTS {
        let opened = http
            .post(format!("{base}/accounts"))
            .bearer_auth(load.token())
            .json(&json!({"currency": "USD", "name": format!("chaos {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 201);
        let id = opened.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        let (status, deposit) = load
            .post_once(
                0,
                "deposit",
                &format!("/accounts/{id}/deposits"),
                &format!("deposit-{id}"),
                &json!({"amount": DEPOSIT}),
            )
            .await;
        assert_eq!(status, 201, "{deposit}");
        load.accounts.push(id);
    }
    let load = Arc::new(load);

    // The load.
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let load = load.clone();
        tasks.spawn(async move {
            let mut n = 0;
            while Instant::now() < end {
                let roll = rand::rng().random_range(0..100);
                match roll {
                    0..45 => load.redirect(c).await,
                    45..70 => load.create_link(c, n).await,
                    70..80 => load.write_post(c, n).await,
                    _ => load.transfer(c, n).await,
                }
                n += 1;
            }
        });
    }

    // The faults: every kind in turn (in a shuffled order each round), one at a time.
    let mut outages = Vec::new();
    let mut struck: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut round = Vec::new();
    loop {
        tokio::time::sleep(every).await;
        if Instant::now() + every >= end {
            break;
        }
        if round.is_empty() {
            round = FAULTS.to_vec();
            round.shuffle(&mut rand::rng());
        }
        let fault = round.pop().expect("a fault");
        *struck.entry(fault).or_default() += 1;
        if let Some(outage) = cluster.strike(fault, &servers).await {
            outages.push(outage);
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client panicked");
    }
    let history = std::mem::take(&mut *load.history.lock().unwrap());

    // Graceful stops: the servers hand their last clicks to the queue on the way out.
    let survivors: Vec<usize> = cluster.incarnation_of.clone();
    for server in cluster.servers.iter_mut() {
        let status = server.take().expect("a server").terminate().await;
        assert!(status.success(), "a server stops cleanly on SIGTERM");
    }
    let (reader, _) = cluster.start_server().await;
    let base = reader.url("");
    ready(&http, &base, Duration::from_secs(30)).await;
    // A token of its own for the checks, however long the drill ran; the checks of a long
    // drill outlast a token too, so a 401 signs in again and asks once more.
    load.renew_token(&base).await;
    let read = |path: String| {
        let http = http.clone();
        let load = &load;
        let base = base.clone();
        async move {
            let mut renewed = false;
            loop {
                let response = http
                    .get(&path)
                    .bearer_auth(load.token())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                if status == 401 && !renewed {
                    load.renew_token(&base).await;
                    renewed = true;
                    continue;
                }
                return (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                );
            }
        }
    };

    // 1. Every acknowledged link resolves to its URL; every acknowledged post reads back.
    for (code, url) in &history.links {
        let (status, link) = read(format!("{base}/links/{code}")).await;
        assert_eq!(status, 200, "acknowledged link {code} is gone: {link}");
        assert_eq!(link["longUrl"], url.as_str(), "{code}");
    }
    for (id, title) in &history.posts {
        let (status, post) = read(format!("{base}/posts/{id}")).await;
        assert_eq!(status, 200, "acknowledged post {id} is gone: {post}");
        assert_eq!(post["title"], title.as_str(), "{id}");
    }

    // 2. The balances are exactly what the acknowledged transfers made; money is conserved.
    let mut expected: BTreeMap<i64, i64> = load.accounts.iter().map(|a| (*a, DEPOSIT)).collect();
    for (from, to, amount) in &history.transfers {
        *expected.get_mut(from).unwrap() -= amount;
        *expected.get_mut(to).unwrap() += amount;
    }
    let (_, page) = read(format!("{base}/accounts?limit=100")).await;
    let balances: BTreeMap<i64, i64> = page["items"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| Some((a["id"].as_i64()?, a["balance"].as_i64()?)))
        .collect();
    assert_eq!(balances, expected, "balances after the drill");
    assert_eq!(
        balances.values().sum::<i64>(),
        DEPOSIT * ACCOUNTS as i64,
        "money is conserved"
    );

    // 3. No job lost: the read models catch up, every link.created event is delivered, and
    // every click a surviving server answered is stored, none twice.
    let (read, expected, base) = (&read, &expected, &base);
    settles(Duration::from_secs(60), move || async move {
        for (account, balance) in expected {
            let (_, view) = read(format!("{base}/accounts/{account}")).await;
            if view["balance"] != *balance {
                return Some(format!("account {account}'s read model is at {view}"));
            }
        }
        None
    })
    .await;
    // Nothing was dead-lettered: every job ran to its end, however often its process or its
    // broker died under it.
    for queue in ["webhooks", "clicks", "events.webhooks", "ledger"] {
        let (status, dead) =
            read(format!("{base}/admin/queues/dead?queue={queue}&limit=100")).await;
        assert_eq!(status, 200, "{dead}");
        let items = dead["items"].as_array().expect("items");
        assert!(items.is_empty(), "dead letters on {queue}: {items:#?}");
    }
    let (links, database_url) = (&history.links, &cluster.database_url);
    let hooked = &hooked;
    // Every event arrives: a backlog of deliveries may take a while to drain (a faster
    // machine makes more links), so the drill waits while it shrinks and fails when it
    // stalls for a minute.
    drains(Duration::from_secs(60), move || async move {
        let missing: Vec<String> = {
            let hooked = hooked.lock().unwrap();
            links
                .values()
                .filter(|url| !hooked.contains_key(*url))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return None;
        }
        let mut trail = Vec::new();
        for url in missing.iter().take(3) {
            trail.push(event_trail(database_url, url).await);
        }
        let complaint = format!(
            "{} of {} link.created events never arrived: {trail:#?}",
            missing.len(),
            links.len(),
        );
        Some((missing.len(), complaint))
    })
    .await;
    let bounds: BTreeMap<&String, (u64, u64)> = history
        .redirects
        .iter()
        .map(|(code, by)| {
            // Redirects whose answer was lost may have been counted: at most that many more.
            let answered: u64 =
                by.values().sum::<u64>() + history.unanswered.get(code).copied().unwrap_or(0);
            let kept: u64 = by
                .iter()
                .filter(|(incarnation, _)| !cluster.killed.contains(incarnation))
                .map(|(_, n)| n)
                .sum();
            (code, (kept, answered))
        })
        .collect();
    let bounds_ref = &bounds;
    let counts = move || async move {
        let mut stored = BTreeMap::new();
        for code in bounds_ref.keys() {
            let (_, link) = read(format!("{base}/links/{code}")).await;
            stored.insert(*code, link["clickCount"].as_u64().expect("a click count"));
        }
        stored
    };
    let counts = &counts;
    settles(Duration::from_secs(60), move || async move {
        let stored = counts().await;
        for (code, (kept, answered)) in bounds_ref {
            let count = stored[code];
            assert!(
                count <= *answered,
                "{code} counted {count} clicks for {answered} redirects"
            );
            if count < *kept {
                return Some(format!(
                    "{code} counts {count} clicks; servers that were never killed answered {kept}"
                ));
            }
        }
        None
    })
    .await;
    // Settled: a click batch delivered twice (a worker killed before its ack) would show as
    // a count over the redirects answered.
    let before = counts().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = counts().await;
    assert_eq!(before, stored, "the click counts have settled");
    let lost: u64 = bounds
        .iter()
        .map(|(code, (_, answered))| answered - stored[code])
        .sum();
    let answered: u64 = bounds.values().map(|(_, answered)| answered).sum();

    // 4. 5xx only while a dependency was down, or within RECOVERY of its return.
    let stray: Vec<String> = history
        .errors
        .iter()
        .filter(|(at, _)| {
            !outages
                .iter()
                .any(|o| o.from <= *at && *at <= o.until + RECOVERY)
        })
        .map(|(at, what)| format!("{what} at {:?}", at.duration_since(started)))
        .collect();
    assert!(
        stray.is_empty(),
        "5xx with every dependency up: {stray:?}; outages: {:?}",
        outages
            .iter()
            .map(|o| (
                o.fault,
                o.from.duration_since(started),
                o.until.duration_since(started)
            ))
            .collect::<Vec<_>>()
    );

    let down: Duration = outages.iter().map(|o| o.until - o.from).sum();
    eprintln!(
        "chaos drill, {seconds} s, {clients} clients: {} requests ({} unreachable, {} of them unanswered, {} answered 5xx \
         during {:.1} s of outages); faults {struck:?}; acknowledged {} links, {} posts, {} transfers \
         ({} refused); {answered} redirects (with those unanswered), {lost} clicks not stored (a killed server's buffer, an unanswered redirect); servers alive at the end {survivors:?}",
        history.requests,
        history.unreachable,
        history.unknown,
        history.errors.len(),
        down.as_secs_f64(),
        history.links.len(),
        history.posts.len(),
        history.transfers.len(),
        history.refused_transfers,
    );
    assert!(
        !history.links.is_empty() && !history.transfers.is_empty(),
        "the load ran"
    );
    assert!(
        struck.len() == FAULTS.len() || seconds < 20,
        "every kind of fault struck: {struck:?}"
    );
    for worker in cluster.workers.iter_mut().flatten() {
        worker.signal("TERM");
    }
    reader.terminate().await;
}
