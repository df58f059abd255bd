//! Server render time of the web pages at realistic sizes: a person with 100 links (20
//! per page), one link with two years of daily statistics (a year shown, the year before
//! drawn behind it) and 10 referrers, a protected link, a blog of 100 posts, a post with
//! 50 comments, and an account with 10 API keys and 10 sessions. Each page is asked for through the
//! whole app in-process (router, middleware, session lookup, database reads, rendering,
//! compression off), so the figure is what a person waits for minus the network; p50 and
//! p95 per page, against the goal of p95 under 5 ms. Then the transferred size of a first
//! view of the home page: HTML, stylesheet and script, compressed as served (goal: under
//! 100 KB).
//!
//! The pages are the tables [`PAGES`] (seen by the person) and [`ADMIN_PAGES`] (seen by an
//! admin of an instance with 100 other accounts, 200 recent 429s, 100 audit events and 20
//! jobs waiting): add a row to measure another.
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
use basis_auth::role::Role;
use basis_ratelimit::http::Rejection;
use basis_server::accounts::users::{NewUser, insert_user};
use basis_server::clock::{Clock, SystemClock};
use basis_server::state::AppState;
use basis_server::{Config, Server};
use basis_store::audit::NewEvent;
use basis_store::links::{ClickBatch, LinkClicks};
use basis_store::users::UserRow;
use tower::ServiceExt as _;

/// What a measured page needs to be asked for.
struct Fixture {
    /// The domain links live on (the default one's name).
    domain: String,
    /// The post with the comments.
    post_id: String,
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
    PageCase {
        name: "blog list (first page of 100 posts)",
        path: |_| "/blog".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "blog post with 50 comments",
        path: |f| format!("/blog/{}", f.post_id),
        status: StatusCode::OK,
    },
    PageCase {
        name: "account (10 API keys, 10 sessions)",
        path: |_| "/account".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "account's API keys (10)",
        path: |_| "/account/keys".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "account's sessions (10)",
        path: |_| "/account/sessions".into(),
        status: StatusCode::OK,
    },
];

/// The admin pages, seen by an admin of an instance with 100 accounts, 200 recent 429s,
/// 100 audit events and 20 jobs waiting.
const ADMIN_PAGES: &[PageCase] = &[
    PageCase {
        name: "admin overview",
        path: |_| "/admin".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "admin users (first 50 of 101)",
        path: |_| "/admin/users".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "admin users, searched",
        path: |_| "/admin/users?q=member-04".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "admin queues",
        path: |_| "/admin/job-queues".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "admin rate limits (200 recent 429s)",
        path: |_| "/admin/rate-limits".into(),
        status: StatusCode::OK,
    },
    PageCase {
        name: "admin audit log (first 50 of 100+)",
        path: |_| "/admin/audit-log".into(),
        status: StatusCode::OK,
    },
];

/// Accounts besides the person and the admin.
const ACCOUNTS: usize = 99;

/// Links the person owns.
const LINKS: usize = 100;
/// Posts on the blog, comments on one of them, API keys and sessions of the person.
const POSTS: usize = 100;
const COMMENTS: usize = 50;
const KEYS: usize = 10;
const SESSIONS: usize = 10;
/// A post's body: a few paragraphs of Markdown with a list, a link and an image.
const POST_BODY: &str = "An opening paragraph that says what the post is about, long enough \
    to be cut for the list's excerpt, with **bold** and *emphasis*.\n\n\
    - a first point\n- a second point, with [a link](https://example.com/more)\n\n\
    ![A chart of the month](/assets/chart.png)\n\n\
    A closing paragraph, as long as the first one, that ends the post in the usual way.";
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

/// Measures `pages` as `client` sees them, printing a row each; the slowest p95.
async fn measure(
    client: &mut Client,
    pages: &[PageCase],
    fixture: &Fixture,
    iterations: usize,
) -> Duration {
    let mut worst = Duration::ZERO;
    for page in pages {
        let path = (page.path)(fixture);
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
    worst
}

/// An admin signed in on an instance with [`ACCOUNTS`] more accounts, 200 recent 429s,
/// 100 audit events and 20 jobs waiting.
async fn admin_client(state: &AppState, person: &Client) -> Client {
    let now = state.clock.now_ms();
    for i in 0..ACCOUNTS {
        let user = UserRow {
            id: format!("{:032x}", 0xbe_0000 + i),
            email: format!("member-{i:03}@example.com"),
            name: format!("Member {i:03}"),
            password_hash: None,
            role: "user".into(),
            settings: "{}".into(),
            created_at: now,
            updated_at: now,
        };
        basis_store::users::insert(&state.store, &user)
            .await
            .expect("an account");
    }
    let admin = NewUser {
        email: "admin@example.com".into(),
        password: "velvet otter juggles nine lanterns".into(),
        name: "Admin".into(),
    };
    insert_user(
        &state.store,
        state.passwords.hasher(),
        now,
        admin,
        Role::Admin,
    )
    .await
    .expect("the admin");
    for i in 0..100 {
        let detail = format!("bench event {i}");
        let event = NewEvent {
            at: now - i,
            kind: "login.failed",
            user_id: None,
            ip: Some("192.0.2.1"),
            detail: Some(&detail),
        };
        basis_store::audit::record(&state.store, &event)
            .await
            .expect("an event");
    }
    let post = axum::http::Method::POST;
    for i in 0..200 {
        let subject = format!("ip:198.51.100.{}", i % 50);
        state.rate_limits.rejections.record(
            now - (i as i64) * 15_000,
            &Rejection {
                rule: "link_create",
                subject: &subject,
                method: &post,
                path: "/shorten",
            },
        );
    }
    for i in 0..20 {
        state
            .jobs
            .backend()
            .enqueue(basis_queue::NewJob::new(
                "bench",
                "bench.noop",
                serde_json::json!({ "n": i }),
            ))
            .await
            .expect("a job");
    }
    let mut admin = Client {
        app: person.app.clone(),
        origin: person.origin.clone(),
        cookies: Vec::new(),
    };
    let signed_in = admin
        .submit(
            "/signin",
            "/signin",
            &[
                ("email", "admin@example.com"),
                ("password", "velvet otter juggles nine lanterns"),
            ],
        )
        .await;
    assert_eq!(signed_in, StatusCode::SEE_OTHER, "signing in the admin");
    admin
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

    // The blog: 100 published posts; the newest gets 50 comments.
    for i in 0..POSTS {
        let title = format!("Bench post number {i}");
        let made = client
            .submit(
                "/blog/new",
                "/blog/new",
                &[
                    ("title", &title),
                    ("body", POST_BODY),
                    ("tags", "bench news"),
                    ("status", "published"),
                    ("action", "save"),
                ],
            )
            .await;
        assert_eq!(made, StatusCode::SEE_OTHER, "posting {title}");
    }
    let (_, blog) = client.get("/blog").await;
    let post_id = blog
        .split(r#"<h2><a href="/blog/"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a post listed")
        .to_owned();
    let post_path = format!("/blog/{post_id}");
    let comments_path = format!("{post_path}/comments");
    for i in 0..COMMENTS {
        let body = format!("Comment {i}: a sentence or two of reply, as people write them.");
        let added = client
            .submit(&post_path, &comments_path, &[("body", &body)])
            .await;
        assert_eq!(added, StatusCode::SEE_OTHER, "comment {i}");
    }

    // The account: 10 API keys, and 9 sessions besides this one.
    for i in 0..KEYS {
        let name = format!("deploy key {i}");
        let made = client
            .submit(
                "/account/keys",
                "/account/keys",
                &[("name", &name), ("scope_links_read", "on")],
            )
            .await;
        assert_eq!(made, StatusCode::CREATED, "key {i}");
    }
    let person = basis_store::users::find_by_email(&state.store, "bench@example.com")
        .await
        .expect("a read")
        .expect("the person");
    for i in 1..SESSIONS {
        let agent = format!("Mozilla/5.0 (bench device {i}) Firefox/128.0");
        basis_server::accounts::session::start(&state, &person.id, Some(&agent))
            .await
            .expect("a session");
    }

    let fixture = Fixture {
        domain: state.domains.default_name().to_owned(),
        post_id,
    };
    let mut admin = admin_client(&state, &client).await;
    println!("| page | p50 (ms) | p95 (ms) | max (ms) | HTML bytes |");
    println!("|---|---:|---:|---:|---:|");
    let worst = measure(&mut client, PAGES, &fixture, iterations)
        .await
        .max(measure(&mut admin, ADMIN_PAGES, &fixture, iterations).await);
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
