//! Background jobs: click batches and mail applied once however often they are delivered,
//! job status for owners and admins only, the queue's metrics, and the dead letters.

use basis_queue::{JobStatus, NewJob};
use basis_server::jobs::{CLICKS_QUEUE, mail};
use basis_server::links::click_batches::{APPLY_CLICKS, ClickBatchJob, LinkCounts};
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::jobs_support::backend;
use crate::on_both_engines;
use crate::smtp_sink::SmtpSink;

on_both_engines!(
    a_click_batch_delivered_twice_is_counted_once,
    clicks_are_counted_exactly_while_their_batch_waits_for_a_worker,
    a_mail_job_delivered_twice_sends_one_mail,
    a_job_s_status_is_for_its_owner_and_admins_only,
    the_queue_s_metrics_are_on_the_metrics_page,
    admins_list_show_replay_and_purge_dead_letters,
);

async fn link_id(app: &TestApp, code: &str) -> i64 {
    basis_store::links::find(&app.state.store, app.state.codes.key_of(code))
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn a_click_batch_delivered_twice_is_counted_once(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let day = app.state.clock.now_ms() / 86_400_000;
    let batch = ClickBatchJob {
        batch: "redelivered-batch".into(),
        links: vec![LinkCounts {
            link: link_id(&app, &code).await,
            humans: 5,
            days: vec![(day, 5, 2)],
            referrers: vec![("news.example".into(), 5)],
            devices: vec![("desktop".into(), 5), ("bot".into(), 2)],
        }],
        visits: String::new(),
    };
    let payload = serde_json::to_value(&batch).unwrap();
    // Two deliveries of one batch, as after a crash between applying and acknowledging.
    for _ in 0..2 {
        let job = backend(&app)
            .enqueue(NewJob::new(CLICKS_QUEUE, APPLY_CLICKS, payload.clone()))
            .await
            .unwrap();
        assert_eq!(app.backend_job_finished(&job.id).await, JobStatus::Done);
    }
    let stats: Value = app
        .get(&format!("/links/{code}/stats"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totalClicks"], 5);
    assert_eq!(stats["botClicks"], 2);
    assert_eq!(stats["clicksPerDay"][0]["clicks"], 5);
    assert_eq!(stats["topReferrers"][0]["clicks"], 5);
    assert_eq!(stats["devices"]["desktop"], 5);
    assert_eq!(app.link(&code).await["clickCount"], 5);
}

async fn clicks_are_counted_exactly_while_their_batch_waits_for_a_worker(engine: Engine) {
    let mut app = TestApp::spawn_with(&engine, |c| {
        c.jobs.workers = basis_server::jobs::config::Workers::Off;
    })
    .await;
    let code = app
        .create(json!({"longUrl": "https://example.com/", "maxClicks": 4}))
        .await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.follow(&code).await.status(), 301);
    }
    app.state.clicks.flush().await.unwrap();
    // Enqueued, not applied: neither lost from the count nor counted twice.
    assert_eq!(app.depth(CLICKS_QUEUE).await, 1);
    assert_eq!(app.link(&code).await["clickCount"], 3);
    let worker = app.start_worker();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(20))
            .await
    );
    worker.stop().await;
    assert_eq!(app.link(&code).await["clickCount"], 3);
    assert_eq!(app.follow(&code).await.status(), 301);
    assert_problem(app.follow(&code).await, 410).await;
    app.stop().await;
}

async fn a_mail_job_delivered_twice_sends_one_mail(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(&engine, move |c| c.auth.smtp_url = Some(url)).await;
    let ann = app.account("ann@example.com").await;
    let job = mail::reset_job(&ann.id, "http://basis.example");
    for _ in 0..2 {
        let enqueued = backend(&app).enqueue(job.clone()).await.unwrap();
        assert_eq!(
            app.backend_job_finished(&enqueued.id).await,
            JobStatus::Done
        );
    }
    let delivered = sink.next().await;
    assert_eq!(delivered.to, vec!["ann@example.com".to_owned()]);
    let link = crate::password_reset::reset_link_in(&delivered.data);
    assert!(
        link.starts_with("http://basis.example/reset/new?token="),
        "{link}"
    );
    assert!(sink.mail.try_recv().is_err(), "a second mail was sent");
}

async fn a_job_s_status_is_for_its_owner_and_admins_only(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let admin = app
        .account_with_role("root@example.com", basis_auth::role::Role::Admin)
        .await;
    let code = app.create_as(&ann.access, "https://example.com/mine").await;
    let started = app
        .bearer(Method::POST, &format!("/links/{code}/exports"), &ann.access)
        .send()
        .await
        .unwrap();
    let id = started.json::<Value>().await.unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = app.finished_job(&id, &ann.access).await;
    assert_eq!(job["id"], id.as_str());
    for key in ["id", "kind", "status", "attempts", "result"] {
        assert!(job.get(key).is_some(), "{key} missing from {job}");
    }
    assert_eq!(app.job_status(&id, &admin.access).await["status"], "done");
    let path = format!("/jobs/{id}");
    let others = app
        .bearer(Method::GET, &path, &bob.access)
        .send()
        .await
        .unwrap();
    assert_problem(others, 404).await;
    assert_unauthorized(app.get(&path).await).await;
    let unknown = app
        .bearer(Method::GET, "/jobs/0123456789abcdef", &admin.access)
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404).await;
}

async fn the_queue_s_metrics_are_on_the_metrics_page(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.follow(&code).await.status(), 301);
    app.state.clicks.flush().await.unwrap();
    assert!(
        app.state
            .clicks
            .drain(std::time::Duration::from_secs(20))
            .await
    );
    let page = app.get("/metrics").await.text().await.unwrap();
    assert!(
        page.contains("queue_jobs_total{") && page.contains("queue=\"clicks\""),
        "{page}"
    );
    assert!(page.contains("queue_processing_seconds"), "{page}");
    assert!(page.contains("queue_depth{"), "{page}");
}

async fn admins_list_show_replay_and_purge_dead_letters(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let admin = app
        .account_with_role("root@example.com", basis_auth::role::Role::Admin)
        .await;
    let user = app.account("user@example.com").await;
    // A payload the handler cannot read: a poison message goes to the dead letters at once.
    let poison = backend(&app)
        .enqueue(NewJob::new(
            CLICKS_QUEUE,
            APPLY_CLICKS,
            json!({"not": "a batch"}),
        ))
        .await
        .unwrap();
    assert_eq!(app.backend_job_finished(&poison.id).await, JobStatus::Dead);

    let get = |path: &str, token: &str| app.bearer(Method::GET, path, token).send();
    assert_problem(get("/admin/queues/dead", &user.access).await.unwrap(), 403).await;
    assert_unauthorized(app.get("/admin/queues").await).await;

    let queues: Value = get("/admin/queues", &admin.access)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clicks = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == CLICKS_QUEUE)
        .expect("the clicks queue")
        .clone();
    assert_eq!(clicks["dead"], 1);

    let list: Value = get("/admin/queues/dead?queue=clicks", &admin.access)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, poison.id.0);
    assert!(
        items[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("deserialise")
    );

    let shown: Value = get(&format!("/admin/queues/dead/{id}"), &admin.access)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["payload"], json!({"not": "a batch"}));
    assert_eq!(shown["kind"], APPLY_CLICKS);
    assert_problem(
        get("/admin/queues/dead/999999", &admin.access)
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(
        get("/admin/queues/dead?limit=0", &admin.access)
            .await
            .unwrap(),
        400,
    )
    .await;

    let replay = app
        .bearer(
            Method::POST,
            &format!("/admin/queues/dead/{id}/replay"),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    // Still poison: it comes back to the dead letters with its reason.
    assert_eq!(app.backend_job_finished(&poison.id).await, JobStatus::Dead);

    let purge = app
        .bearer(
            Method::DELETE,
            "/admin/queues/dead?queue=clicks",
            &admin.access,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    assert_eq!(purge.json::<Value>().await.unwrap()["purged"], 1);
    let list: Value = get("/admin/queues/dead", &admin.access)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
}
