//! Webhooks end to end: a real HTTP receiver on loopback checks every signature, answers
//! 500s to force retries, or never succeeds so the delivery is dead-lettered a day later
//! (the app's manual clock makes the day pass).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use basis_server::clock::Clock as _;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Engine, TestApp, assert_problem};
use crate::jobs_support::eventually;
use crate::on_both_engines;

const SECRET: &str = "whsec-test-0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A webhook endpoint on loopback answering each request with the next of `statuses`
/// (the last one repeats), after `delay` for the first request, and only while its gate is
/// open (it is, unless [`Receiver::close`] shut it).
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    gate: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>, first_delay: Duration) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        let gate = Arc::new(tokio::sync::watch::Sender::new(true));
        let open = gate.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                let statuses = statuses.clone();
                let mut open = open.subscribe();
                async move {
                    let _ = open.wait_for(|open| *open).await;
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(Received {
                            headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        seen.len()
                    };
                    if n == 1 && !first_delay.is_zero() {
                        // A slow receiver: the sender must give up and try again later.
                        tokio::time::sleep(first_delay).await;
                    }
                    let status = statuses[(n - 1).min(statuses.len() - 1)];
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, got, gate }
    }

    /// Holds every request until [`Receiver::open`].
    fn close(&self) {
        self.gate.send_replace(false);
    }

    /// Answers held and later requests.
    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Checks `Basis-Signature` the way a receiver would: HMAC-SHA256 over `t.body`.
fn assert_signed(r: &Received, secret: &str) {
    let header = r.headers["basis-signature"].to_str().unwrap();
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t="), v1.expect("v1="));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "the signature verifies");
    let other = {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"another secret entirely").unwrap();
        mac.update(format!("{t}.{}", r.body).as_bytes());
        mac.finalize().into_bytes()
    };
    assert_ne!(
        v1,
        other.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
}

async fn app_with_webhooks(engine: &Engine, timeout_ms: u64) -> TestApp {
    TestApp::spawn_with(engine, |c| {
        c.webhooks.webhooks_allow_private = true;
        c.webhooks.webhook_timeout_ms = timeout_ms;
        // The tests move the clock by up to a day; a lease shorter than a step would expire
        // under an attempt still finishing, and its second run would send a second request.
        c.jobs.job_lease_ms = 7 * 86_400_000;
    })
    .await
}

async fn register(app: &TestApp, token: &str, url: &str, events: &[&str]) -> String {
    let response = app
        .bearer(Method::POST, "/webhooks", token)
        .json(&json!({"url": url, "events": events, "secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/webhooks/{}", body["id"].as_str().unwrap())
    );
    assert!(
        body.get("secret").is_none(),
        "the secret is never shown back"
    );
    body["id"].as_str().unwrap().to_owned()
}

async fn deliveries(app: &TestApp, token: &str, hook: &str) -> Vec<Value> {
    let response = app
        .bearer(Method::GET, &format!("/webhooks/{hook}/deliveries"), token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

/// Waits until the only delivery of `hook` has recorded `attempts` attempts.
async fn after_attempt(app: &TestApp, token: &str, hook: &str, attempts: i64) -> Value {
    eventually(&format!("attempt {attempts}"), || async {
        let list = deliveries(app, token, hook).await;
        list.first().filter(|d| d["attempts"] == attempts).cloned()
    })
    .await
}

async fn deliveries_are_signed_and_retried_after_500s(engine: Engine) {
    let receiver = Receiver::start(vec![500, 503, 200], Duration::ZERO).await;
    let app = app_with_webhooks(&engine, 5_000).await;
    let ann = app.account("ann@example.com").await;
    let hook = register(&app, &ann.access, &receiver.url, &["link.created"]).await;
    let code = app
        .create_as(&ann.access, "https://example.com/hooked")
        .await;

    let first = after_attempt(&app, &ann.access, &hook, 1).await;
    assert_eq!(first["status"], "pending");
    assert_eq!(first["lastStatus"], 500);
    assert_eq!(first["type"], "link.created");
    app.clock.advance(Duration::from_secs(31));
    let second = after_attempt(&app, &ann.access, &hook, 2).await;
    assert_eq!(second["lastStatus"], 503);
    app.clock.advance(Duration::from_secs(61));
    let third = after_attempt(&app, &ann.access, &hook, 3).await;
    assert_eq!(third["status"], "delivered");
    assert_eq!(third["lastStatus"], 200);

    let got = receiver.received();
    assert_eq!(got.len(), 3, "one request per attempt");
    for r in &got {
        assert_signed(r, SECRET);
        assert_eq!(r.headers["basis-event"], "link.created");
        assert_eq!(
            r.headers["basis-delivery"],
            got[0].headers["basis-delivery"]
        );
        assert_eq!(r.body, got[0].body, "every attempt sends the same body");
    }
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "link.created");
    assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(body["data"]["longUrl"], "https://example.com/hooked");
    assert!(body["data"].get("ownerId").is_none());
    assert_eq!(third["eventId"], body["id"]);
    // The link exists and nobody else hears about it.
    assert_eq!(app.follow(&code).await.status(), 301);
}

async fn a_delivery_failing_for_a_day_is_dead_lettered(engine: Engine) {
    let receiver = Receiver::start(vec![500], Duration::ZERO).await;
    let app = app_with_webhooks(&engine, 5_000).await;
    let ann = app.account("ann@example.com").await;
    let hook = register(
        &app,
        &ann.access,
        &receiver.url,
        &["link.created", "link.deleted"],
    )
    .await;
    app.create_as(&ann.access, "https://example.com/doomed")
        .await;
    let mut attempts = 1;
    let mut token = ann.access.clone();
    let last = loop {
        // Six hours pass per turn: sign in again, the access token has expired.
        let tokens = app
            .login_tokens("ann@example.com", crate::accounts_support::PASSWORD)
            .await;
        token = tokens["accessToken"].as_str().unwrap_or(&token).to_owned();
        let d = after_attempt(&app, &token, &hook, attempts).await;
        if d["status"] != "pending" {
            break d;
        }
        assert!(attempts < 30, "still retrying after {attempts} attempts");
        // Six hours: the longest backoff, so each turn makes exactly one attempt.
        app.clock.advance(Duration::from_secs(6 * 3600));
        attempts += 1;
    };
    assert_eq!(last["status"], "dead");
    assert!(last["nextAttemptAt"].is_null());
    assert!(last["finishedAt"].is_string());
    assert!(last["lastError"].as_str().unwrap().contains("500"));
    // The fifth attempt, at 24 h, was the last: a day after the event, not one more.
    assert_eq!(attempts, 5);
    assert_eq!(receiver.received().len(), 5);
    for r in receiver.received() {
        assert_signed(&r, SECRET);
    }
}

async fn a_slow_receiver_is_timed_out_and_retried(engine: Engine) {
    let receiver = Receiver::start(vec![200], Duration::from_secs(3)).await;
    let app = app_with_webhooks(&engine, 300).await;
    let ann = app.account("ann@example.com").await;
    let hook = register(&app, &ann.access, &receiver.url, &["link.created"]).await;
    app.create_as(&ann.access, "https://example.com/slow").await;
    let first = after_attempt(&app, &ann.access, &hook, 1).await;
    assert_eq!(first["status"], "pending");
    assert!(first["lastStatus"].is_null());
    assert!(
        first["lastError"]
            .as_str()
            .unwrap()
            .contains("no answer within")
    );
    app.clock.advance(Duration::from_secs(31));
    let second = after_attempt(&app, &ann.access, &hook, 2).await;
    assert_eq!(second["status"], "delivered");
}

async fn clicks_are_batched_into_one_delivery_per_link_per_flush(engine: Engine) {
    let receiver = Receiver::start(vec![200], Duration::ZERO).await;
    let app = app_with_webhooks(&engine, 5_000).await;
    let ann = app.account("ann@example.com").await;
    let hook = register(&app, &ann.access, &receiver.url, &["link.clicked"]).await;
    let hot = app.create_as(&ann.access, "https://example.com/hot").await;
    let cold = app.create_as(&ann.access, "https://example.com/cold").await;
    for _ in 0..25 {
        assert_eq!(app.follow(&hot).await.status(), 301);
    }
    assert_eq!(app.follow(&cold).await.status(), 301);
    app.state.clicks.flush().await.unwrap();
    let list = eventually("two deliveries", || async {
        let list = deliveries(&app, &ann.access, &hook).await;
        (list.len() == 2 && list.iter().all(|d| d["status"] == "delivered")).then_some(list)
    })
    .await;
    let mut clicks: Vec<i64> = list
        .iter()
        .map(|d| d["body"]["data"]["clicks"].as_i64().unwrap())
        .collect();
    clicks.sort_unstable();
    assert_eq!(clicks, [1, 25], "one delivery per link for the whole flush");
    assert_eq!(receiver.received().len(), 2);
    assert!(list.iter().all(|d| d["type"] == "link.clicked"));
}

async fn a_redelivered_event_makes_one_delivery(engine: Engine) {
    let app = app_with_webhooks(&engine, 5_000).await;
    let ann = app.account("ann@example.com").await;
    let receiver = Receiver::start(vec![200], Duration::ZERO).await;
    let hook = register(&app, &ann.access, &receiver.url, &["link.deleted"]).await;
    // The same event reaches the queue twice, as after a relay crash between its publish and
    // its delete.
    let event = json!({
        "id": 1_000_001, "kind": "link.deleted", "aggregate": "link:77",
        "at": app.clock.now_ms(), "data": {"linkId": 77, "ownerId": ann.id},
    });
    let backend = app.state.jobs.backend();
    for _ in 0..2 {
        let groups = backend
            .publish(
                basis_server::outbox::EVENTS_TOPIC,
                "link.deleted",
                event.clone(),
            )
            .await
            .unwrap();
        assert_eq!(
            groups, 1,
            "the webhooks group only: the confirmation mail's takes `order.completed` alone"
        );
    }
    let list = eventually("the delivery", || async {
        let list = deliveries(&app, &ann.access, &hook).await;
        (list.first().is_some_and(|d| d["status"] == "delivered")).then_some(list)
    })
    .await;
    // Both copies have been handled once the queue is empty.
    eventually("both copies consumed", || async {
        let stats = backend.stats().await.unwrap();
        stats
            .iter()
            .all(|q| q.queue != "events.webhooks" || (q.depth == 0 && q.running == 0))
            .then_some(())
    })
    .await;
    assert_eq!(deliveries(&app, &ann.access, &hook).await.len(), 1);
    assert_eq!(list[0]["eventId"], "evt_1000001");
    assert_eq!(receiver.received().len(), 1);
}

async fn bad_registrations_get_422_naming_the_field(engine: Engine) {
    // Private addresses are refused by default.
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let post = |body: Value| {
        app.bearer(Method::POST, "/webhooks", &ann.access)
            .json(&body)
            .send()
    };
    let field_of = |problem: &Value| problem["errors"][0]["field"].as_str().unwrap().to_owned();
    for (body, field) in [
        (
            json!({"url": "http://127.0.0.1:9/hook", "events": ["link.created"], "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": "http://[::1]/hook", "events": ["link.created"], "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["link.created"], "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": "ftp://example.com/hook", "events": ["link.created"], "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["link.created"], "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": "https://8.8.8.8/hook", "events": [], "secret": SECRET}),
            "events",
        ),
        (
            json!({"url": "https://8.8.8.8/hook", "events": ["link.exploded"], "secret": SECRET}),
            "events[0]",
        ),
        (
            json!({"url": "https://8.8.8.8/hook", "events": ["link.created"], "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": "https://8.8.8.8/hook", "events": ["link.created"]}),
            "secret",
        ),
    ] {
        let problem = assert_problem(post(body.clone()).await.unwrap(), 422).await;
        assert_eq!(field_of(&problem), field, "{body}");
    }
    // Nothing was stored.
    let list = app
        .bearer(Method::GET, "/webhooks", &ann.access)
        .send()
        .await
        .unwrap();
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    // Anonymous callers and other users.
    let anonymous = app
        .client
        .post(app.url("/webhooks"))
        .json(&json!({"url": "https://8.8.8.8/hook", "events": ["link.created"], "secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let hook = register(&app, &ann.access, "https://8.8.8.8/hook", &["link.created"]).await;
    let bob = app.account("bob@example.com").await;
    for method in [Method::GET, Method::DELETE] {
        let r = app
            .bearer(method, &format!("/webhooks/{hook}"), &bob.access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = app
        .bearer(Method::GET, &format!("/webhooks/{hook}"), &ann.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .bearer(Method::DELETE, &format!("/webhooks/{hook}"), &ann.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .bearer(Method::GET, &format!("/webhooks/{hook}"), &ann.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

on_both_engines!(
    deliveries_are_signed_and_retried_after_500s,
    a_delivery_failing_for_a_day_is_dead_lettered,
    a_slow_receiver_is_timed_out_and_retried,
    clicks_are_batched_into_one_delivery_per_link_per_flush,
    a_redelivered_event_makes_one_delivery,
    bad_registrations_get_422_naming_the_field,
    a_delivery_whose_job_a_crash_lost_is_enqueued_again_by_the_sweep,
    a_delivery_claimed_by_a_worker_that_died_is_attempted_once_its_lease_ends,
);

/// With the links on shard databases, their events are in the shards' outboxes: each has its
/// relay, and the webhooks (in the catalog) still hear of every link's creation and clicks.
mod sharded {
    use crate::helpers::Engine;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_are_signed_and_retried_after_500s() {
        if let Some(Engine::Postgres(url)) = Engine::postgres() {
            super::deliveries_are_signed_and_retried_after_500s(Engine::Sharded(url)).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clicks_are_batched_into_one_delivery_per_link_per_flush() {
        if let Some(Engine::Postgres(url)) = Engine::postgres() {
            super::clicks_are_batched_into_one_delivery_per_link_per_flush(Engine::Sharded(url))
                .await
        }
    }
}

/// A pending delivery of a `link.deleted` event to `ann`'s endpoints, written as the
/// fan-out writes it, with no job enqueued: the state a process leaves when it dies between
/// the fan-out's commit and the enqueue. Returns the delivery's id.
async fn orphan_delivery(app: &TestApp, owner: &str, event_id: i64) -> i64 {
    let body =
        json!({"id": format!("evt_{event_id}"), "type": "link.deleted", "data": {"linkId": 9}});
    let pending = basis_store::webhooks::fan_out(
        &app.state.store,
        basis_server::webhooks::jobs::GROUP,
        event_id,
        "link.deleted",
        owner,
        &body.to_string(),
        app.clock.now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(pending.len(), 1, "one endpoint subscribed");
    pending[0].0
}

async fn stored_delivery(app: &TestApp, id: i64) -> basis_store::webhooks::Delivery {
    basis_store::webhooks::delivery(&app.state.store, id)
        .await
        .unwrap()
        .expect("the delivery")
        .0
}

async fn sweep(app: &TestApp) -> usize {
    basis_server::webhooks::jobs::sweep(&app.state.store, &app.state.webhooks, app.clock.now_ms())
        .await
        .unwrap()
}

async fn a_delivery_whose_job_a_crash_lost_is_enqueued_again_by_the_sweep(engine: Engine) {
    let receiver = Receiver::start(vec![200], Duration::ZERO).await;
    let app = app_with_webhooks(&engine, 5_000).await;
    let ann = app.account("ann@example.com").await;
    register(&app, &ann.access, &receiver.url, &["link.deleted"]).await;
    let id = orphan_delivery(&app, &ann.id, 3_000_001).await;

    // Due, but not overdue long enough for its job to be taken for lost.
    assert_eq!(sweep(&app).await, 0);
    app.clock
        .advance(basis_server::webhooks::jobs::SWEEP_AFTER - Duration::from_secs(1));
    assert_eq!(sweep(&app).await, 0);
    assert_eq!(stored_delivery(&app, id).await.attempts, 0);

    app.clock.advance(Duration::from_secs(2));
    assert_eq!(sweep(&app).await, 1, "the lost attempt is enqueued again");
    let delivered = eventually("the swept delivery", || async {
        let d = stored_delivery(&app, id).await;
        (d.status == "delivered").then_some(d)
    })
    .await;
    assert_eq!(delivered.attempts, 1);
    assert_eq!(sweep(&app).await, 0, "nothing pending is left to sweep");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_signed(&got[0], SECRET);
}

async fn a_delivery_claimed_by_a_worker_that_died_is_attempted_once_its_lease_ends(engine: Engine) {
    let receiver = Receiver::start(vec![200], Duration::ZERO).await;
    // A first process without workers: this test plays its worker, which claims the
    // delivery's attempt and dies without finishing or releasing it.
    let mut app = TestApp::spawn_with(&engine, |c| {
        c.webhooks.webhooks_allow_private = true;
        c.jobs.workers = basis_server::jobs::config::Workers::Off;
    })
    .await;
    let ann = app.account("ann@example.com").await;
    register(&app, &ann.access, &receiver.url, &["link.deleted"]).await;
    let id = orphan_delivery(&app, &ann.id, 3_000_002).await;
    let backend = app.state.jobs.backend().clone();
    backend
        .enqueue(basis_server::webhooks::jobs::attempt_job(
            id,
            0,
            app.clock.now_ms(),
        ))
        .await
        .unwrap();
    // A long lease, so that the delivery is overdue for the sweep while it lasts.
    let lease = basis_server::webhooks::jobs::SWEEP_AFTER + Duration::from_secs(300);
    let claimed = backend
        .claim(basis_server::webhooks::jobs::QUEUE, lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    drop(claimed);

    // The next process runs workers. While the dead worker's lease lasts, the job is
    // neither run nor doubled by the sweep (its deduplication key is still held).
    app.config.jobs.workers = basis_server::jobs::config::Workers::On;
    let app = app.restart().await;
    app.clock
        .advance(basis_server::webhooks::jobs::SWEEP_AFTER + Duration::from_secs(1));
    assert_eq!(
        sweep(&app).await,
        0,
        "the leased job still holds the attempt"
    );
    assert_eq!(stored_delivery(&app, id).await.attempts, 0);
    assert!(receiver.received().is_empty());

    // Once the lease has run out, a live worker claims the job and makes the attempt.
    app.clock.advance(Duration::from_secs(300));
    let delivered = eventually("the attempt after the lease", || async {
        let d = stored_delivery(&app, id).await;
        (d.status == "delivered").then_some(d)
    })
    .await;
    assert_eq!(delivered.attempts, 1, "one attempt, recorded once");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_go_through_rabbitmq_and_the_sweep_keeps_to_its_deduplication_keys() {
    sweep_through_rabbitmq(&Engine::Sqlite).await;
}

/// The same with the data, and so the queue's deduplication keys, on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_go_through_rabbitmq_and_the_sweep_keeps_to_keys_held_in_postgres() {
    let Some(engine) = Engine::postgres() else {
        return;
    };
    sweep_through_rabbitmq(&engine).await;
}

async fn sweep_through_rabbitmq(engine: &Engine) {
    let Some(app) = crate::jobs_amqp::on_rabbitmq_over(engine, |c| {
        c.webhooks.webhooks_allow_private = true;
    })
    .await
    else {
        return;
    };
    assert_eq!(app.state.jobs.backend().name(), "amqp");
    let receiver = Receiver::start(vec![200], Duration::ZERO).await;
    let ann = app.account("ann@example.com").await;
    let hook = register(
        &app,
        &ann.access,
        &receiver.url,
        &["link.created", "link.deleted"],
    )
    .await;

    // The outbox event crosses the broker's topic, the attempt its work queue.
    app.create_as(&ann.access, "https://example.com/by-rabbit")
        .await;
    let created = after_attempt(&app, &ann.access, &hook, 1).await;
    assert_eq!(created["status"], "delivered");
    assert_eq!(created["type"], "link.created");
    assert_signed(&receiver.received()[0], SECRET);

    // A delivery whose job a crash lost: swept once overdue, and only once, since the
    // swept job holds the attempt's key on the broker until it is done. The receiver holds
    // the attempt meanwhile: a job already done has given its key back, and a sweep that
    // read the delivery as pending just before would rightly enqueue again (a no-op job).
    let id = orphan_delivery(&app, &ann.id, 3_000_003).await;
    app.clock
        .advance(basis_server::webhooks::jobs::SWEEP_AFTER + Duration::from_secs(1));
    receiver.close();
    let first = sweep(&app).await;
    let second = sweep(&app).await;
    if let basis_store::Pools::Postgres { write, .. } = app.state.store.pools() {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue_amqp_keys WHERE marker LIKE '%.webhook-delivery:' || $1 || ':%'",
        )
        .bind(id.to_string())
        .fetch_one(write)
        .await
        .unwrap();
        assert_eq!(held, 1, "the swept attempt's key is a row in PostgreSQL");
    }
    receiver.open();
    assert_eq!(first, 1);
    assert_eq!(second, 0, "{first} then {second}");
    let delivered = eventually("the swept delivery", || async {
        let d = stored_delivery(&app, id).await;
        (d.status == "delivered").then_some(d)
    })
    .await;
    assert_eq!(delivered.attempts, 1);
    assert_eq!(receiver.received().len(), 2);
}
