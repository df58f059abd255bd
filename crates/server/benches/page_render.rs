//! Server render time of the web pages at realistic sizes: a person with 100 links (20
//! per page), one link with two years of daily statistics (a year shown, the year before
//! drawn behind it) and 10 referrers, a protected link. Each page is asked for through the
//! whole app in-process (router, middleware, session lookup, database reads, rendering,
//! compression off), so the figure is what a person waits for minus the network; p50 and
//! p95 per page, against the goal of p95 under 5 ms. Then the transferred size of a first
//! view of the home page: HTML, stylesheet and script, compressed as served (goal: under
//! 100 KB).
//!
//! The pages are the table [`PAGES`]: add a row to measure another.
//!
//! Run: `cargo bench -p basis-server --bench page_render` (results: `bench/RESULTS.md`,
//! "Page render times"). `PAGE_RENDER_ITERATIONS` sets the requests per page (default 500).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use basis_server::clock::{Clock, SystemClock};
use basis_server::{Config, Server};
use basis_store::links::{ClickBatch, LinkClicks};
use tower::ServiceExt as _;

/// What a measured page needs to be asked for.
struct Fixture {
    /// The domain links live on (the default one's name).
    domain: String,
}

/// One page to measure: its name in the results, its address, the status it answers.
struct PageCase {
    name: &'static str,
    path: fn(&Fixture) -> String,
    status: StatusCode,
}

/// The pages measured, signed in as the person who owns the links.
const PAGES: &[PageCase] = &[
    PageCase {
        name: "home (shorten form)",
        path: |_| "/".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "my links (first 20 of 100)",
        path: |_| "/my/links".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "my links, by tag and most clicked",
        path: |_| "/my/links?tag=bench&sort=-clicks".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "link page, 30 days (default)",
        path: |_| "/my/links/year-of-clicks".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "link page, 365 days + bots",
        path: |_| "/my/links/year-of-clicks?period=365&bots=show".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "bulk delete confirmation (20 links)",
        path: |f| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for i in 0..20 {
                query.append_pair("link", &format!("bench-link-{i:03}@{}", f.domain));
            }
            format!("/my/delete-links?{}", query.finish())
        },
        status: StatusCode::OK,
    },
    PageCase {
        name: "protected link's password form",
        path: |_| "/locked-link".into(),
        status: StatusCode::OK,
    },
];

/// Links the person owns.
const LINKS: usize = 100;
const DAY_MS: i64 = 86_400_000;

struct Client {
    app: Router,
    origin: String,
    cookies: Vec<String>,
}

impl Client {
    fn request(&self, method: &str, path: &str, body: Option<String>) -> Request<Body> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
            .header(header::ORIGIN, &self.origin)
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        if !self.cookies.is_empty() {
            builder = builder.header(header::COOKIE, self.cookies.join("; "));
        }
        let body = match body {
            Some(form) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(form)
            }
            None => Body::empty(),
        };
        builder.body(body).expect("a request")
    }

    /// Sends a request; the status and body, keeping cookies set.
    async fn send(&mut self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.expect("an answer");
        for set in response.headers().get_all(header::SET_COOKIE) {
            let pair = set.to_str().expect("text").split(';').next().unwrap_or("");
            if let Some((name, _)) = pair.split_once('=') {
                self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
                self.cookies.push(pair.to_owned());
            }
        }
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        (status, body.to_vec())
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let (status, body) = self.send(self.request("GET", path, None)).await;
        (status, String::from_utf8(body).expect("UTF-8"))
    }

    /// Posts `fields` with the token of the form at `form_path`.
    async fn submit(
        &mut self,
        form_path: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> StatusCode {
        let (_, page) = self.get(form_path).await;
        let token = page
            .split(r#"name="csrf" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a form token")
            .to_owned();
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", &token);
        for (name, value) in fields {
            form.append_pair(name, value);
        }
        self.send(self.request("POST", action, Some(form.finish())))
            .await
            .0
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let iterations: usize = std::env::var("PAGE_RENDER_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(iterations));
}

async fn run(iterations: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config::with_data_dir(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.rate_limits = Some("off".into());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let server = Server::build_with_clock(config.clone(), clock.clone())
        .await
        .expect("the app builds");
    let state = server.state().clone();
    let app = basis_server::app(state.clone(), &config).expect("the router");
    let mut client = Client {
        app,
        origin: state.base_url.to_string(),
        cookies: Vec::new(),
    };

    // The person, their links, a year of statistics.
    let signed_up = client
        .submit(
            "/signup",
            "/signup",
            &[
                ("email", "bench@example.com"),
                ("name", "Bench"),
                ("password", "velvet otter juggles nine lanterns"),
            ],
        )
        .await;
    assert_eq!(signed_up, StatusCode::SEE_OTHER, "signing up");
    for i in 0..LINKS {
        let alias = format!("bench-link-{i:03}");
        let url = format!("https://example.com/articles/{i}/a-realistic-path?utm_source=bench");
        let made = client
            .submit("/", "/", &[("url", &url), ("alias", &alias)])
            .await;
        assert_eq!(made, StatusCode::SEE_OTHER, "making {alias}");
        if i % 2 == 0 {
            let page = format!("/my/links/{alias}");
            let saved = client
                .submit(
                    &page,
                    &page,
                    &[("url", &url), ("redirect", "301"), ("tags", "bench, news")],
                )
                .await;
            assert_eq!(saved, StatusCode::SEE_OTHER, "tagging {alias}");
        }
    }
    for (alias, password) in [
        ("year-of-clicks", None),
        ("locked-link", Some("open sesame")),
    ] {
        let mut fields = vec![("url", "https://example.com/launch"), ("alias", alias)];
        if let Some(password) = password {
            fields.push(("password", password));
        }
        let made = client.submit("/", "/", &fields).await;
        assert_eq!(made, StatusCode::SEE_OTHER, "making {alias}");
    }
    let key = state.codes.key_of("year-of-clicks");
    let link = basis_store::links::find_counted_in(&state.store, key, None)
        .await
        .expect("a read")
        .expect("the link");
    let today = clock.now_ms().div_euclid(DAY_MS);
    let days: Vec<(i64, i64, i64)> = (0..730)
        .map(|d| (today - d, 20 + (d * 7919) % 180, (d * 31) % 9))
        .collect();
    let humans = days.iter().map(|d| d.1).sum();
    let batch = ClickBatch {
        links: vec![LinkClicks {
            link_id: link.row.id,
            humans,
            days,
            referrers: (0..10)
                .map(|i| (format!("site-{i}.example.org"), 1000 - i * 90))
                .collect(),
            devices: vec![
                ("desktop", 40_000),
                ("mobile", 30_000),
                ("tablet", 3_000),
                ("bot", 2_000),
            ],
        }],
        visits: Vec::new(),
    };
    basis_store::links::apply_clicks(&state.store, &batch)
        .await
        .expect("statistics stored");

    let fixture = Fixture {
        domain: state.domains.default_name().to_owned(),
    };
    println!("| page | p50 (ms) | p95 (ms) | max (ms) | HTML bytes |");
    println!("|---|---:|---:|---:|---:|");
    let mut worst = Duration::ZERO;
    for page in PAGES {
        let path = (page.path)(&fixture);
        let (status, body) = client.get(&path).await;
        assert_eq!(status, page.status, "{}: {body}", page.name);
        // Warm-up: caches, connections, the allocator.
        for _ in 0..iterations / 10 {
            client.get(&path).await;
        }
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let request = client.request("GET", &path, None);
            let started = Instant::now();
            let (status, _) = client.send(request).await;
            times.push(started.elapsed());
            assert_eq!(status, page.status);
        }
        times.sort_unstable();
        let p95 = percentile(&times, 0.95);
        worst = worst.max(p95);
        println!(
            "| {} | {} | {} | {} | {} |",
            page.name,
            ms(percentile(&times, 0.5)),
            ms(p95),
            ms(*times.last().expect("times")),
            body.len()
        );
    }
    println!(
        "\nslowest p95: {} ms ({} the 5 ms goal); {iterations} requests per page",
        ms(worst),
        if worst < Duration::from_millis(5) {
            "within"
        } else {
            "OVER"
        }
    );

    // The first view of the home page, as a new visitor's browser fetches it.
    let mut visitor = Client {
        app: client.app.clone(),
        origin: client.origin.clone(),
        cookies: Vec::new(),
    };
    let (_, home) = visitor.get("/").await;
    let assets: Vec<String> = home
        .split(r#"="/assets/"#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| format!("/assets/{name}"))
        .collect();
    let mut total = 0;
    println!("\n| first view of / | bytes (br) |\n|---|---:|");
    for path in std::iter::once("/".to_owned()).chain(assets) {
        let mut request = visitor.request("GET", &path, None);
        request.headers_mut().insert(
            header::ACCEPT_ENCODING,
            "br, gzip".parse().expect("a header"),
        );
        let (status, body) = visitor.send(request).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        total += body.len();
        println!("| {path} | {} |", body.len());
    }
    println!(
        "| total | {total} |\n\nfirst view: {total} bytes ({} the 100 KB goal)",
        if total < 100 * 1024 { "within" } else { "OVER" }
    );
}
