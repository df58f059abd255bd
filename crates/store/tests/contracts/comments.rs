use basis_store::comments::{self, CommentRow};
use basis_store::{Error, Store, posts};

use crate::harness::account;
use crate::on_both_engines;
use crate::posts::fields;

on_both_engines!(
    comments_are_listed_oldest_first_after_the_cursor,
    a_comment_changes_only_at_the_version_it_was_read,
);

async fn post(store: &Store) -> i64 {
    account(store, "a").await;
    posts::insert(store, "a", &fields("Post", "body"), 0)
        .await
        .unwrap()
}

async fn comments_are_listed_oldest_first_after_the_cursor(store: &Store) {
    let post = post(store).await;
    let other = posts::insert(store, "a", &fields("Other", "body"), 0)
        .await
        .unwrap();
    let mut ids = Vec::new();
    // The second and third share a creation time: the id breaks the tie.
    for (at, body) in [(20, "b"), (10, "a"), (20, "c"), (30, "d")] {
        let id = comments::insert(store, post, "a", body, at).await.unwrap();
        ids.push(id.expect("the post exists"));
    }
    comments::insert(store, other, "a", "elsewhere", 5)
        .await
        .unwrap();
    let bodies = |rows: &[CommentRow]| rows.iter().map(|c| c.body.clone()).collect::<Vec<_>>();

    let first = comments::list(store, post, None, 2).await.unwrap();
    assert_eq!(bodies(&first), ["a", "b"]);
    assert_eq!(first[0].author_name, "name of a");
    let last = &first[1];
    let rest = comments::list(store, post, Some((last.created_at, last.id)), 10)
        .await
        .unwrap();
    assert_eq!(bodies(&rest), ["c", "d"]);
    let end = rest.last().unwrap();
    assert!(
        comments::list(store, post, Some((end.created_at, end.id)), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A post that is gone takes no comment; an author that is gone is refused by name.
    assert_eq!(
        comments::insert(store, post + other, "a", "late", 40)
            .await
            .unwrap(),
        None
    );
    let orphan = comments::insert(store, post, "nobody", "hi", 40).await;
    assert!(
        matches!(orphan, Err(Error::MissingReference("author"))),
        "{orphan:?}"
    );
}

async fn a_comment_changes_only_at_the_version_it_was_read(store: &Store) {
    let post = post(store).await;
    let id = comments::insert(store, post, "a", "first", 1)
        .await
        .unwrap()
        .unwrap();
    assert!(comments::replace(store, id, 1, "second", 2).await.unwrap());
    let comment = comments::find(store, id).await.unwrap().unwrap();
    assert_eq!(
        (
            comment.body.as_str(),
            comment.version,
            comment.created_at,
            comment.updated_at
        ),
        ("second", 2, 1, 2)
    );
    // A writer that read version 1 changes nothing now.
    assert!(!comments::replace(store, id, 1, "stale", 3).await.unwrap());
    assert_eq!(comments::find(store, id).await.unwrap(), Some(comment));
    assert!(!comments::delete(store, id, 1).await.unwrap());
    assert!(comments::delete(store, id, 2).await.unwrap());
    assert_eq!(comments::find(store, id).await.unwrap(), None);
    assert!(!comments::replace(store, id, 2, "gone", 4).await.unwrap());
}
