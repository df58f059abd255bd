//! "New comment on your post": a comment enqueues one mail to the post's author, sent over
//! real SMTP by a worker; none for the author's own comments; a redelivery sends nothing.

use basis_queue::JobStatus;
use basis_server::jobs::mail;

use crate::blog_support::post;
use crate::helpers::{Engine, TestApp};
use crate::jobs_support::backend;
use crate::on_both_engines;
use crate::smtp_sink::SmtpSink;

on_both_engines!(a_comment_mails_the_post_s_author_once_and_never_for_their_own);

async fn a_comment_mails_the_post_s_author_once_and_never_for_their_own(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(&engine, move |c| c.auth.smtp_url = Some(url)).await;
    let cast = app.cast().await;
    let created = app.new_post(&cast.author, post("Queues in practice")).await;
    let post_id = created["id"].as_str().unwrap();

    app.new_comment(&cast.author, post_id, "Replying to myself")
        .await;
    let comment = app
        .new_comment(&cast.other, post_id, "Which backend did you pick?")
        .await;
    // The first mail is about the other user's comment: the author's own made none.
    let delivered = sink.next().await;
    assert_eq!(delivered.to, vec!["author@example.com".to_owned()]);
    assert!(
        delivered
            .data
            .contains("Subject: New comment on \"Queues in practice\"")
    );
    assert!(delivered.data.contains("Which backend did you pick?"));
    assert!(!delivered.data.contains("Replying to myself"));

    // Delivered again (as after a crash before the acknowledgement): no second mail.
    let comment_id: i64 = comment["id"].as_str().unwrap().parse().unwrap();
    let again = backend(&app)
        .enqueue(mail::new_comment_job(comment_id, "http://basis.example"))
        .await
        .unwrap();
    assert_eq!(app.backend_job_finished(&again.id).await, JobStatus::Done);
    assert!(sink.mail.try_recv().is_err(), "a second mail was sent");
}
