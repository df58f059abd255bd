//! Avatars: uploads checked by content before any job exists, thumbnails made by a
//! worker, served from the database.

use basis_server::jobs::MEDIA_QUEUE;
use image::ImageFormat;
use reqwest::Method;
use serde_json::Value;

use crate::accounts_support::assert_unauthorized;
use crate::helpers::{Engine, TestApp, assert_problem};
use crate::jobs_support::{eventually, picture};
use crate::on_both_engines;

on_both_engines!(
    an_uploaded_avatar_becomes_64_and_256_pixel_thumbnails,
    png_jpeg_and_webp_are_accepted_by_content_whatever_the_header_says,
    uploads_that_are_not_usable_images_are_refused_before_any_job,
    the_avatar_is_404_until_a_worker_has_made_it,
    only_the_owner_or_an_admin_may_change_an_avatar,
    an_upload_whose_enqueue_was_lost_still_gets_its_thumbnails,
);

async fn upload(app: &TestApp, user: &str, token: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.bearer(Method::PUT, &format!("/users/{user}/avatar"), token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// Uploads, asserting 202 with `Location: /jobs/{id}`; returns the job id.
async fn accepted(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["jobId"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/jobs/{id}"));
    id
}

async fn thumbnail(app: &TestApp, user: &str, size: u32) -> reqwest::Response {
    app.get(&format!("/users/{user}/avatar?size={size}")).await
}

async fn an_uploaded_avatar_becomes_64_and_256_pixel_thumbnails(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let job = accepted(
        upload(
            &app,
            &ann.id,
            &ann.access,
            picture(ImageFormat::Png, 640, 480),
        )
        .await,
    )
    .await;
    let done = app.finished_job(&job, &ann.access).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["kind"], "avatar.thumbnails");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["result"]["sizes"], serde_json::json!([64, 256]));

    for size in [64, 256] {
        let response = thumbnail(&app, &ann.id, size).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/png");
        let etag = response.headers()["etag"].clone();
        let bytes = response.bytes().await.unwrap();
        let image = image::load_from_memory(&bytes).expect("a real PNG");
        assert_eq!((image.width(), image.height()), (size, size));
        let again = app
            .client
            .get(app.url(&format!("/users/{}/avatar?size={size}", ann.id)))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
    }
    assert_problem(thumbnail(&app, &ann.id, 100).await, 400).await;

    // A newer upload replaces the thumbnails.
    let old = thumbnail(&app, &ann.id, 64).await.bytes().await.unwrap();
    let job = accepted(
        upload(
            &app,
            &ann.id,
            &ann.access,
            picture(ImageFormat::Png, 50, 90),
        )
        .await,
    )
    .await;
    assert_eq!(app.finished_job(&job, &ann.access).await["status"], "done");
    let new = thumbnail(&app, &ann.id, 64).await.bytes().await.unwrap();
    assert_ne!(old, new);
}

async fn png_jpeg_and_webp_are_accepted_by_content_whatever_the_header_says(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let bo = app.account("bo@example.com").await;
    for format in [ImageFormat::Jpeg, ImageFormat::WebP, ImageFormat::Png] {
        let response = app
            .bearer(Method::PUT, &format!("/users/{}/avatar", bo.id), &bo.access)
            // A wrong header does not matter: the bytes decide.
            .header("content-type", "text/plain")
            .body(picture(format, 120, 80))
            .send()
            .await
            .unwrap();
        let job = accepted(response).await;
        let done = app.finished_job(&job, &bo.access).await;
        assert_eq!(done["status"], "done", "{format:?}: {done}");
    }
    assert_eq!(thumbnail(&app, &bo.id, 256).await.status(), 200);
}

async fn uploads_that_are_not_usable_images_are_refused_before_any_job(engine: Engine) {
    let app = TestApp::spawn_with(&engine, |c| {
        c.jobs.workers = basis_server::jobs::config::Workers::Off;
    })
    .await;
    let cy = app.account("cy@example.com").await;
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    assert_problem(upload(&app, &cy.id, &cy.access, gif).await, 415).await;
    let named_png = b"this is text, even if the client calls it avatar.png".to_vec();
    let response = app
        .bearer(Method::PUT, &format!("/users/{}/avatar", cy.id), &cy.access)
        .header("content-type", "image/png")
        .body(named_png)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    let png = picture(ImageFormat::Png, 200, 200);
    let truncated = png[..png.len() / 2].to_vec();
    assert_problem(upload(&app, &cy.id, &cy.access, truncated).await, 422).await;
    let mut huge = picture(ImageFormat::Png, 16, 16);
    huge.resize(5 * 1024 * 1024 + 1, 0);
    assert_problem(upload(&app, &cy.id, &cy.access, huge).await, 413).await;
    assert_problem(upload(&app, &cy.id, &cy.access, Vec::new()).await, 415).await;
    assert_eq!(
        app.depth(MEDIA_QUEUE).await,
        0,
        "no job for a refused upload"
    );
}

async fn the_avatar_is_404_until_a_worker_has_made_it(engine: Engine) {
    // As in scale-out: `serve --workers off`, and a separate worker.
    let app = TestApp::spawn_with(&engine, |c| {
        c.jobs.workers = basis_server::jobs::config::Workers::Off;
    })
    .await;
    let di = app.account("di@example.com").await;
    let job = accepted(
        upload(
            &app,
            &di.id,
            &di.access,
            picture(ImageFormat::Jpeg, 300, 300),
        )
        .await,
    )
    .await;
    let queued = app.job_status(&job, &di.access).await;
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["attempts"], 0);
    assert!(queued["result"].is_null());
    assert_problem(thumbnail(&app, &di.id, 64).await, 404).await;
    assert_eq!(app.depth(MEDIA_QUEUE).await, 1);

    let worker = app.start_worker();
    assert_eq!(app.finished_job(&job, &di.access).await["status"], "done");
    eventually("the thumbnail", || async {
        (thumbnail(&app, &di.id, 64).await.status() == 200).then_some(())
    })
    .await;
    worker.stop().await;
}

async fn only_the_owner_or_an_admin_may_change_an_avatar(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let ed = app.account("ed@example.com").await;
    let fay = app.account("fay@example.com").await;
    let admin = app
        .account_with_role("root@example.com", basis_auth::role::Role::Admin)
        .await;
    let png = || picture(ImageFormat::Png, 40, 40);
    assert_problem(upload(&app, &ed.id, &fay.access, png()).await, 403).await;
    let anonymous = app
        .client
        .put(app.url(&format!("/users/{}/avatar", ed.id)))
        .body(png())
        .send()
        .await
        .unwrap();
    assert_unauthorized(anonymous).await;
    let job = accepted(upload(&app, &ed.id, &admin.access, png()).await).await;
    assert_eq!(
        app.finished_job(&job, &admin.access).await["status"],
        "done"
    );
    assert_eq!(thumbnail(&app, &ed.id, 64).await.status(), 200);
    // The job belongs to whoever asked: others cannot even see that it exists.
    let hidden = app
        .bearer(Method::GET, &format!("/jobs/{job}"), &fay.access)
        .send()
        .await
        .unwrap();
    assert_problem(hidden, 404).await;
}

async fn an_upload_whose_enqueue_was_lost_still_gets_its_thumbnails(engine: Engine) {
    use basis_server::accounts::avatar::{SWEEP_AFTER_MS, sweep};
    use basis_server::clock::Clock as _;

    let app = TestApp::spawn(&engine).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let now = app.clock.now_ms();
    // Ann's upload was stored and the process died before its job existed anywhere.
    let ann_job = basis_server::jobs::new_id();
    basis_store::avatars::insert_upload(
        &app.state.store,
        &ann.id,
        &ann_job,
        &picture(ImageFormat::Png, 80, 60),
        now,
    )
    .await
    .unwrap();
    // Bob's job got its status row, but the enqueue itself was lost.
    let bob_job = basis_server::jobs::new_id();
    basis_store::avatars::insert_upload(
        &app.state.store,
        &bob.id,
        &bob_job,
        &picture(ImageFormat::Jpeg, 90, 70),
        now,
    )
    .await
    .unwrap();
    basis_store::jobs::create(
        &app.state.store,
        &bob_job,
        "avatar.thumbnails",
        Some(bob.id.as_str()),
        now,
    )
    .await
    .unwrap();

    // Too recent to tell from a job still on its way: left alone.
    assert_eq!(sweep(&app.state).await.unwrap(), 0);
    assert_eq!(thumbnail(&app, &ann.id, 64).await.status(), 404);

    app.clock.advance_ms(SWEEP_AFTER_MS as u64 + 1);
    assert_eq!(sweep(&app.state).await.unwrap(), 2);
    // Swept once, not again until another grace period has passed.
    assert_eq!(sweep(&app.state).await.unwrap(), 0);

    for (user, job, token) in [
        (&ann.id, &ann_job, &ann.access),
        (&bob.id, &bob_job, &bob.access),
    ] {
        let done = app.finished_job(job, token).await;
        assert_eq!(done["status"], "done", "{done}");
        for size in [64, 256] {
            let response = thumbnail(&app, user, size).await;
            assert_eq!(response.status(), 200);
            let image = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
            assert_eq!((image.width(), image.height()), (size, size));
        }
    }
    // Done uploads are gone: nothing is left to sweep, ever.
    app.clock.advance_ms(SWEEP_AFTER_MS as u64 + 1);
    assert_eq!(sweep(&app.state).await.unwrap(), 0);
}
