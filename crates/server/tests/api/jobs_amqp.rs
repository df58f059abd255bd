//! The product's jobs with RabbitMQ as the queue (`--queue-url amqp://…`): the data stays
//! in SQLite, the jobs go through the broker, and status, once-only effects and dead
//! letters behave as on the SQL queues. Runs when `BASIS_TEST_AMQP_URL` is set; each test
//! uses its own namespace of broker objects.

use std::io::Write as _;

use basis_queue::NewJob;
use basis_server::jobs::CLICKS_QUEUE;
use basis_server::links::click_batches::{APPLY_CLICKS, ClickBatchJob, LinkCounts};
use image::ImageFormat;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp};
use crate::jobs_support::{backend, eventually, picture};

async fn on_rabbitmq() -> Option<TestApp> {
    on_rabbitmq_with(|_| {}).await
}

/// An app on SQLite whose queue is RabbitMQ (a namespace of its own), with the
/// configuration `tweak` adjusts; `None`, after a visible line, without a broker.
pub(crate) async fn on_rabbitmq_with(
    tweak: impl FnOnce(&mut basis_server::Config),
) -> Option<TestApp> {
    on_rabbitmq_over(&Engine::Sqlite, tweak).await
}

/// [`on_rabbitmq_with`] with the data on `engine` (on PostgreSQL the queue keeps its
/// deduplication keys there rather than in the broker).
pub(crate) async fn on_rabbitmq_over(
    engine: &Engine,
    tweak: impl FnOnce(&mut basis_server::Config),
) -> Option<TestApp> {
    let Some(url) = std::env::var("BASIS_TEST_AMQP_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        let _ = writeln!(std::io::stderr(), "skipped: BASIS_TEST_AMQP_URL is not set");
        return None;
    };
    let namespace = format!("basis_test_{:016x}", rand::random::<u64>());
    let queue_url = format!("{url}?namespace={namespace}");
    Some(
        TestApp::spawn_with(engine, move |c| {
            c.jobs.queue_url = Some(queue_url);
            tweak(c);
        })
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_and_exports_run_through_rabbitmq_with_their_status() {
    let Some(app) = on_rabbitmq().await else {
        return;
    };
    assert_eq!(backend(&app).name(), "amqp");
    let ann = app.account("ann@example.com").await;
    let upload = app
        .bearer(
            Method::PUT,
            &format!("/users/{}/avatar", ann.id),
            &ann.access,
        )
        .body(picture(ImageFormat::Png, 100, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 202);
    let job = upload.json::<Value>().await.unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.finished_job(&job, &ann.access).await["status"], "done");
    let thumb = app.get(&format!("/users/{}/avatar?size=64", ann.id)).await;
    assert_eq!(thumb.status(), 200);

    let code = app.create_as(&ann.access, "https://example.com/amqp").await;
    for _ in 0..2 {
        assert_eq!(app.follow(&code).await.status(), 301);
    }
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(20))
            .await
    );
    let started = app
        .bearer(Method::POST, &format!("/links/{code}/exports"), &ann.access)
        .send()
        .await
        .unwrap();
    let job = started.json::<Value>().await.unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app.finished_job(&job, &ann.access).await;
    let url = done["result"]["downloadUrl"].as_str().unwrap();
    let csv = app
        .bearer(Method::GET, url, &ann.access)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let today = app.clock_now().format("%Y-%m-%d").to_string();
    assert!(
        csv.lines().any(|l| l == format!("day,{today},2,0")),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_batch_delivered_twice_through_rabbitmq_is_counted_once() {
    let Some(app) = on_rabbitmq().await else {
        return;
    };
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = basis_store::links::find(&app.state.store, app.state.codes.key_of(&code))
        .await
        .unwrap()
        .unwrap()
        .id;
    let day = app.state.clock.now_ms() / 86_400_000;
    let batch = ClickBatchJob {
        batch: "twice-through-the-broker".into(),
        links: vec![LinkCounts {
            link: id,
            humans: 4,
            days: vec![(day, 4, 0)],
            referrers: vec![],
            devices: vec![("mobile".into(), 4)],
        }],
        visits: String::new(),
    };
    let payload = serde_json::to_value(&batch).unwrap();
    for _ in 0..2 {
        backend(&app)
            .enqueue(NewJob::new(CLICKS_QUEUE, APPLY_CLICKS, payload.clone()))
            .await
            .unwrap();
    }
    eventually("both deliveries to be processed", || async {
        (app.depth(CLICKS_QUEUE).await == 0 && app.link(&code).await["clickCount"] == 4)
            .then_some(())
    })
    .await;
    let stats: Value = app
        .get(&format!("/links/{code}/stats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["devices"]["mobile"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_dead_letters_are_listed_and_purged_by_admins() {
    let Some(app) = on_rabbitmq().await else {
        return;
    };
    let admin = app
        .account_with_role("root@example.com", basis_auth::role::Role::Admin)
        .await;
    backend(&app)
        .enqueue(NewJob::new(CLICKS_QUEUE, APPLY_CLICKS, json!("poison")))
        .await
        .unwrap();
    let dead = eventually("the poison message in the dead letters", || async {
        let list: Value = app
            .bearer(Method::GET, "/admin/queues/dead", &admin.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], APPLY_CLICKS);
    assert!(
        dead[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("deserialise")
    );
    let purged = app
        .bearer(Method::DELETE, "/admin/queues/dead", &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.json::<Value>().await.unwrap()["purged"], 1);
}
