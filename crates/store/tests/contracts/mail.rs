use basis_store::mail::{self, CommentNotice};
use basis_store::posts::{self, PostFields};
use basis_store::{Store, comments, users};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    a_mail_is_recorded_as_sent_once,
    a_comment_notice_names_both_authors_until_the_comment_is_gone,
);

async fn a_mail_is_recorded_as_sent_once(store: &Store) {
    assert!(!mail::was_sent(store, "m").await.unwrap());
    mail::mark_sent(store, "m", 1).await.unwrap();
    mail::mark_sent(store, "m", 2).await.unwrap();
    assert!(mail::was_sent(store, "m").await.unwrap());
    assert!(!mail::was_sent(store, "other").await.unwrap());
}

async fn a_comment_notice_names_both_authors_until_the_comment_is_gone(store: &Store) {
    account(store, "writer").await;
    account(store, "reader").await;
    let fields = PostFields {
        title: "On storage".into(),
        body: "text".into(),
        body_html: "<p>text</p>".into(),
        category: None,
        tags: Vec::new(),
        status: "published".into(),
    };
    let post = posts::insert(store, "writer", &fields, 0).await.unwrap();
    let comment = comments::insert(store, post, "reader", "Nice post", 1)
        .await
        .unwrap()
        .expect("the post exists");
    assert_eq!(
        mail::comment_notice(store, comment).await.unwrap(),
        Some(CommentNotice {
            post_id: post,
            title: "On storage".into(),
            post_author: "writer".into(),
            author_email: "writer@example.com".into(),
            comment_author: "reader".into(),
            commenter: "name of reader".into(),
            body: "Nice post".into(),
        })
    );
    users::delete(store, "reader").await.unwrap();
    assert_eq!(mail::comment_notice(store, comment).await.unwrap(), None);
}
