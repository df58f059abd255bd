//! Starting the application for a test: a fresh database per test, port 0, a manual clock.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use basis_server::clock::{Clock as _, ManualClock};
use basis_server::state::AppState;
use basis_server::{Config, Server};
use serde_json::Value;
use sqlx::Connection as _;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The database engine a test runs on.
#[derive(Debug, Clone)]
pub enum Engine {
    Sqlite,
    /// The URL of a PostgreSQL server where test databases may be created.
    Postgres(String),
    /// PostgreSQL with the links spread over [`SHARDS`] shard databases of their own (all
    /// on the server of this URL) and the main database as their catalog.
    Sharded(String),
}

/// How many shard databases an [`Engine::Sharded`] app spreads its links over.
pub const SHARDS: usize = 3;

impl Engine {
    /// PostgreSQL, when `BASIS_TEST_POSTGRES_URL` is set; otherwise says so visibly.
    pub fn postgres() -> Option<Self> {
        match std::env::var("BASIS_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Engine::Postgres(url)),
            _ => {
                // Written past the test harness's capture so the skip is always visible.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: BASIS_TEST_POSTGRES_URL is not set"
                );
                None
            }
        }
    }

    /// A database URL of a brand-new, empty database (none for SQLite: the data dir decides).
    pub async fn fresh_database(&self) -> Option<String> {
        let (Engine::Postgres(admin_url) | Engine::Sharded(admin_url)) = self else {
            return None;
        };
        let name = format!("basis_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        let mut url = url::Url::parse(admin_url).expect("a valid PostgreSQL URL");
        url.set_path(&name);
        Some(url.to_string())
    }
}

/// Runs each listed test function once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(engine) = $crate::helpers::Engine::postgres() {
                        super::$name(engine).await
                    }
                }
            )*
        }
    };
}

/// Runs each listed test function on SQLite, on PostgreSQL, and on PostgreSQL with the
/// links spread over [`SHARDS`] shard databases: the API must behave the same whichever
/// way its links are stored.
#[macro_export]
macro_rules! on_every_layout {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_engines!($($name),*);
        mod sharded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some($crate::helpers::Engine::Postgres(url)) =
                        $crate::helpers::Engine::postgres()
                    {
                        super::$name($crate::helpers::Engine::Sharded(url)).await
                    }
                }
            )*
        }
    };
}

/// A running application.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    dir: Arc<TempDir>,
}

impl TestApp {
    pub async fn spawn(engine: &Engine) -> Self {
        Self::spawn_with(engine, |_| {}).await
    }

    /// Starts an app whose configuration `tweak` may adjust.
    pub async fn spawn_with(engine: &Engine, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
        let mut config = Config::with_data_dir(dir.path());
        config.listen = "127.0.0.1:0".parse().expect("an address");
        config.database_url = engine.fresh_database().await;
        if let Engine::Sharded(_) = engine {
            for _ in 0..SHARDS {
                let url = engine.fresh_database().await.expect("a shard database");
                config.shard_urls.push(url);
            }
        }
        config.db_pool_size = 4;
        // Clicks are written only by an explicit flush or a graceful stop, so counts in
        // tests never depend on timing.
        config.click_flush_ms = 3_600_000;
        // Tests send many requests from one address; the rate-limit tests turn rules on.
        config.rate_limits = Some("off".into());
        tweak(&mut config);
        Self::start(config, dir).await
    }

    async fn start(config: Config, dir: Arc<TempDir>) -> Self {
        let clock = Arc::new(ManualClock::starting_now());
        let server = Server::build_with_clock(config.clone(), clock.clone())
            .await
            .expect("the app starts");
        let addr = server.local_addr();
        let state = server.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        // A browser's user agent by default: clients without one are counted as bots.
        let client = reqwest::Client::builder()
            .user_agent(DESKTOP)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self {
            addr,
            client,
            state,
            clock,
            config,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    /// Stops gracefully (flushing clicks) and starts again on the same database.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().expect("an address");
        Self::start(config, self.dir.clone()).await
    }

    /// Stops gracefully and waits until the server has finished.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task").expect("a clean stop");
        }
    }

    /// The app's current time.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        basis_server::clock::to_datetime(self.clock.now_ms())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("a response")
    }

    pub async fn shorten(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/shorten"))
            .json(&body)
            .send()
            .await
            .expect("a response")
    }

    /// Creates a link from `body`, asserting 201, and returns the body.
    pub async fn create(&self, body: Value) -> Value {
        let response = self.shorten(body).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("a JSON body")
    }

    /// Follows a short link with a browser-like user agent, returning the response.
    pub async fn follow(&self, code: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/{code}")))
            .header("user-agent", DESKTOP)
            .send()
            .await
            .expect("a response")
    }

    pub async fn link(&self, code: &str) -> Value {
        let response = self.get(&format!("/links/{code}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("a JSON body")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
pub const PHONE: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
pub const CRAWLER: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// Asserts a problem+json response with `status`, returning its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string());
    body
}
