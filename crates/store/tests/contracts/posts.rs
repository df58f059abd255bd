use basis_store::posts::{self, After, PostFields, PostQuery, PostSummaryRow, Sort};
use basis_store::{Error, Store, comments, users};

use crate::harness::account;
use crate::on_both_engines;

on_both_engines!(
    a_post_changes_only_at_the_version_it_was_read,
    deleting_a_post_or_its_author_takes_its_comments,
    lists_filter_and_pages_in_each_order_without_gaps_or_repeats,
    search_matches_words_by_stem_and_ranks_title_matches_first,
);

/// A published post titled `title`, in no category, without tags.
pub fn fields(title: &str, body: &str) -> PostFields {
    PostFields {
        title: title.to_owned(),
        body: body.to_owned(),
        body_html: format!("<p>{body}</p>"),
        category: None,
        tags: Vec::new(),
        status: "published".into(),
    }
}

fn query(sort: Sort) -> PostQuery {
    PostQuery {
        author: None,
        category: None,
        tag: None,
        status: "published".into(),
        search: None,
        sort,
        after: After::Start,
        limit: 100,
    }
}

async fn titles(store: &Store, query: &PostQuery) -> Vec<String> {
    let rows = posts::list(store, query).await.unwrap();
    rows.into_iter().map(|p| p.title).collect()
}

async fn a_post_changes_only_at_the_version_it_was_read(store: &Store) {
    account(store, "a").await;
    let first = PostFields {
        category: Some("rust".into()),
        tags: vec!["web".into(), "async".into()],
        ..fields("First", "hello")
    };
    let id = posts::insert(store, "a", &first, 10).await.unwrap();
    let post = posts::find(store, id).await.unwrap().unwrap();
    assert_eq!(
        (
            post.author_name.as_str(),
            post.category.as_deref(),
            post.version,
            post.created_at,
            post.updated_at,
            post.comment_count,
        ),
        ("name of a", Some("rust"), 1, 10, 10, 0)
    );
    assert_eq!(post.tags, ["async", "web"]);

    let second = PostFields {
        category: Some("go".into()),
        tags: vec!["web".into(), "cli".into()],
        status: "draft".into(),
        ..fields("Second", "bye")
    };
    assert!(posts::replace(store, id, 1, &second, 20).await.unwrap());
    let post = posts::find(store, id).await.unwrap().unwrap();
    assert_eq!(
        (
            post.title.as_str(),
            post.body_html.as_str(),
            post.status.as_str(),
            post.version,
            post.created_at,
            post.updated_at
        ),
        ("Second", "<p>bye</p>", "draft", 2, 10, 20)
    );
    assert_eq!(post.tags, ["cli", "web"]);

    // A writer that read version 1 changes nothing now, tags included.
    assert!(!posts::replace(store, id, 1, &first, 30).await.unwrap());
    assert_eq!(posts::find(store, id).await.unwrap(), Some(post));
    assert!(!posts::replace(store, id + 1, 1, &first, 30).await.unwrap());
    assert!(!posts::delete(store, id, 1).await.unwrap());
    assert!(posts::find(store, id).await.unwrap().is_some());
    assert!(posts::delete(store, id, 2).await.unwrap());
    assert_eq!(posts::find(store, id).await.unwrap(), None);

    let orphan = posts::insert(store, "nobody", &first, 40).await;
    assert!(
        matches!(orphan, Err(Error::MissingReference("author"))),
        "{orphan:?}"
    );
}

async fn deleting_a_post_or_its_author_takes_its_comments(store: &Store) {
    account(store, "a").await;
    account(store, "r").await;
    let doomed = posts::insert(store, "a", &fields("Doomed", "x"), 1)
        .await
        .unwrap();
    let kept = posts::insert(store, "r", &fields("Kept", "y"), 2)
        .await
        .unwrap();
    let mut on_doomed = Vec::new();
    for at in [3, 4] {
        let comment = comments::insert(store, doomed, "r", "nice", at).await;
        on_doomed.push(comment.unwrap().expect("the post exists"));
    }
    let on_kept = comments::insert(store, kept, "a", "mine goes", 5)
        .await
        .unwrap()
        .unwrap();
    let other_on_kept = comments::insert(store, kept, "r", "mine stays", 6)
        .await
        .unwrap()
        .unwrap();
    let post = posts::find(store, doomed).await.unwrap().unwrap();
    assert_eq!(post.comment_count, 2);

    assert!(posts::delete(store, doomed, 1).await.unwrap());
    for id in on_doomed {
        assert_eq!(comments::find(store, id).await.unwrap(), None);
    }
    assert!(comments::find(store, on_kept).await.unwrap().is_some());

    // The author's account goes: their posts and their comments elsewhere go with it.
    let post = posts::insert(store, "a", &fields("Also doomed", "z"), 7)
        .await
        .unwrap();
    assert!(users::delete(store, "a").await.unwrap().is_some());
    assert_eq!(posts::find(store, post).await.unwrap(), None);
    assert_eq!(comments::find(store, on_kept).await.unwrap(), None);
    let kept = posts::find(store, kept).await.unwrap().unwrap();
    assert_eq!(kept.comment_count, 1);
    assert!(
        comments::find(store, other_on_kept)
            .await
            .unwrap()
            .is_some()
    );
}

async fn lists_filter_and_pages_in_each_order_without_gaps_or_repeats(store: &Store) {
    account(store, "a").await;
    account(store, "b").await;
    // (title, author, created_at, category, tag, status): "C" and "E" share a creation time.
    let rows = [
        ("C", "a", 20, Some("rust"), "web", "published"),
        ("A", "b", 10, Some("rust"), "cli", "published"),
        ("E", "a", 20, None, "web", "published"),
        ("B", "b", 30, Some("go"), "web", "published"),
        ("D", "a", 40, Some("rust"), "web", "draft"),
    ];
    for (title, author, at, category, tag, status) in rows {
        let post = PostFields {
            category: category.map(str::to_owned),
            tags: vec![tag.to_owned()],
            status: status.to_owned(),
            ..fields(title, "body")
        };
        posts::insert(store, author, &post, at).await.unwrap();
    }
    // Equal creation times fall back to the id: E came after C.
    assert_eq!(
        titles(store, &query(Sort::NewestFirst)).await,
        ["B", "E", "C", "A"]
    );
    assert_eq!(
        titles(store, &query(Sort::OldestFirst)).await,
        ["A", "C", "E", "B"]
    );
    assert_eq!(
        titles(store, &query(Sort::TitleAsc)).await,
        ["A", "B", "C", "E"]
    );
    assert_eq!(
        titles(store, &query(Sort::TitleDesc)).await,
        ["E", "C", "B", "A"]
    );

    let filtered = |f: fn(&mut PostQuery)| {
        let mut q = query(Sort::TitleAsc);
        f(&mut q);
        q
    };
    let by_author = filtered(|q| q.author = Some("a".into()));
    assert_eq!(titles(store, &by_author).await, ["C", "E"]);
    let in_category = filtered(|q| q.category = Some("rust".into()));
    assert_eq!(titles(store, &in_category).await, ["A", "C"]);
    let tagged = filtered(|q| q.tag = Some("web".into()));
    assert_eq!(titles(store, &tagged).await, ["B", "C", "E"]);
    let drafts = filtered(|q| q.status = "draft".into());
    assert_eq!(titles(store, &drafts).await, ["D"]);
    let all = posts::list(store, &by_author).await.unwrap();
    assert_eq!(all[0].tags, ["web"]);

    // Pages of two, each starting after the last item of the one before.
    for sort in [
        Sort::NewestFirst,
        Sort::OldestFirst,
        Sort::TitleAsc,
        Sort::TitleDesc,
    ] {
        let whole = titles(store, &query(sort)).await;
        let mut paged = Vec::new();
        let mut page = PostQuery {
            limit: 2,
            ..query(sort)
        };
        loop {
            let rows: Vec<PostSummaryRow> = posts::list(store, &page).await.unwrap();
            let Some(last) = rows.last() else { break };
            page.after = match sort {
                Sort::TitleAsc | Sort::TitleDesc => After::Title {
                    title: last.title.clone(),
                    id: last.id,
                },
                _ => After::Date {
                    created_at: last.created_at,
                    id: last.id,
                },
            };
            paged.extend(rows.into_iter().map(|p| p.title));
        }
        assert_eq!(paged, whole, "{sort:?}");
    }
}

async fn search_matches_words_by_stem_and_ranks_title_matches_first(store: &Store) {
    account(store, "a").await;
    let rows = [
        // Inserted first, so an order by id alone would put it last.
        ("Running shoes", "a review", "published"),
        (
            "Gardening notes",
            "the hose keeps running all night",
            "published",
        ),
        ("Cooking", "nothing to see", "published"),
        ("Running draft", "unfinished", "draft"),
    ];
    for (title, body, status) in rows {
        let post = PostFields {
            status: status.into(),
            ..fields(title, body)
        };
        posts::insert(store, "a", &post, 1).await.unwrap();
    }
    let search = |text: &str, after| PostQuery {
        search: Some(text.into()),
        after,
        ..query(Sort::Relevance)
    };
    // "runs" finds "running" by its stem; the title match ranks above the body match.
    assert_eq!(
        titles(store, &search("runs", After::Start)).await,
        ["Running shoes", "Gardening notes"]
    );
    let second = PostQuery {
        limit: 1,
        ..search("runs", After::Offset(1))
    };
    assert_eq!(titles(store, &second).await, ["Gardening notes"]);
    // Every word must match.
    assert_eq!(
        titles(store, &search("running hose", After::Start)).await,
        ["Gardening notes"]
    );
    // Operators and punctuation are plain text: no error, and nothing to look for.
    assert!(
        titles(store, &search("' -- ;", After::Start))
            .await
            .is_empty()
    );
    // The index follows edits.
    let id = posts::list(store, &search("cooking", After::Start))
        .await
        .unwrap()[0]
        .id;
    assert!(
        posts::replace(store, id, 1, &fields("Baking", "bread"), 2)
            .await
            .unwrap()
    );
    assert!(
        titles(store, &search("cooking", After::Start))
            .await
            .is_empty()
    );
    assert_eq!(
        titles(store, &search("bread", After::Start)).await,
        ["Baking"]
    );
}
