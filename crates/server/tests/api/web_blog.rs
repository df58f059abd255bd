//! The blog's pages: the list with its filters, search and Newer/Older pages; a post with
//! its sanitised body and comments (drafts and missing posts are the 404 page, except for
//! their author); the comment form; the editor with its preview, its 422s and its refusal
//! of a stale edit; who may write and edit; moderators deleting comments; CSRF on every
//! form; hostile text in every field coming back inert; every image in a post with a
//! text alternative.

use regex::Regex;
use serde_json::{Value, json};

use crate::accounts_support::PASSWORD;
use crate::blog_support::post;
use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;
use crate::web_support::{Browser, Page};

on_both_engines!(
    the_blog_lists_published_posts_newest_first_with_excerpts_tags_and_filters,
    blog_pages_go_older_and_back_newer_by_cursor,
    a_post_shows_its_sanitised_body_and_comments_and_a_draft_only_to_its_author,
    a_signed_in_person_comments_and_a_bad_comment_comes_back_with_its_text,
    blog_forms_without_their_token_are_refused,
    an_author_previews_saves_and_edits_a_post_and_a_stale_edit_is_refused,
    the_editor_shows_empty_or_bad_fields_again_with_422_and_the_values_kept,
    people_who_may_not_write_or_edit_a_post_are_refused,
    moderators_delete_any_comment_and_others_only_their_own,
    authors_and_moderators_delete_a_post_behind_a_confirmation,
    hostile_text_in_every_blog_field_comes_back_inert,
    every_image_in_a_post_has_its_alt_text_or_its_files_name,
);

const HOSTILE: &str = r#""><script>alert(1)</script><img src=x onerror=alert(2)>"#;

/// A browser signed in as `email` (an account made with the tests' password).
async fn signed_in<'a>(app: &'a TestApp, email: &str) -> Browser<'a> {
    let mut browser = Browser::new(app);
    let page = browser
        .submit(
            "/signin",
            "/signin",
            &[("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    browser
}

/// The `href` of the link marked `rel`, unescaped.
fn link(page: &Page, rel: &str) -> Option<String> {
    let pattern = Regex::new(&format!(r#"href="([^"]+)" rel="{rel}""#)).unwrap();
    pattern
        .captures(&page.body)
        .map(|c| c[1].replace("&amp;", "&"))
}

/// The titles of the posts listed, in order.
fn titles(page: &Page) -> Vec<String> {
    let pattern = Regex::new(r#"<h2><a href="/blog/\d+">([^<]*)</a></h2>"#).unwrap();
    pattern
        .captures_iter(&page.body)
        .map(|c| c[1].to_owned())
        .collect()
}

fn assert_inert(page: &Page) {
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("<img src=x"), "{}", page.body);
    assert!(!page.body.contains("onerror=alert(2)>"), "{}", page.body);
}

fn post_with(title: &str, body: &str, tags: &[&str], status: &str) -> Value {
    json!({ "title": title, "body": body, "tags": tags, "status": status })
}

async fn the_blog_lists_published_posts_newest_first_with_excerpts_tags_and_filters(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    app.new_post(
        &cast.author,
        post_with(
            "Caching at the edge",
            "Keep **hot** keys close to readers.",
            &["cache"],
            "published",
        ),
    )
    .await;
    app.clock.advance_ms(1000);
    app.new_post(
        &cast.other,
        post_with(
            "Queues that never lose",
            "Leases and retries.",
            &["queue", "rust"],
            "published",
        ),
    )
    .await;
    app.clock.advance_ms(1000);
    app.new_post(
        &cast.author,
        post_with("Secret plans", "Not yet.", &["rust"], "draft"),
    )
    .await;

    let mut visitor = Browser::new(&app);
    let all = visitor.get("/blog").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        titles(&all),
        ["Queues that never lose", "Caching at the edge"],
        "newest first, no draft"
    );
    assert!(
        all.body.contains("Keep hot keys close to readers."),
        "the excerpt is plain text: {}",
        all.body
    );
    assert!(all.body.contains(r#"href="/blog?tag=queue""#));
    assert!(
        all.body
            .contains(&format!(r#"href="/blog?author={}""#, cast.author.id))
    );
    assert!(
        !all.body.contains("Write a post"),
        "no editor link for visitors"
    );

    let tagged = visitor.get("/blog?tag=rust").await;
    assert_eq!(titles(&tagged), ["Queues that never lose"]);
    assert!(tagged.body.contains("tagged “rust”"), "{}", tagged.body);
    let by_author = visitor
        .get(&format!("/blog?author={}", cast.author.id))
        .await;
    assert_eq!(titles(&by_author), ["Caching at the edge"]);
    let searched = visitor.get("/blog?q=retries").await;
    assert_eq!(titles(&searched), ["Queues that never lose"]);
    let none = visitor.get("/blog?q=nothing+like+this").await;
    assert_eq!(none.status, 200);
    assert!(titles(&none).is_empty());
    assert!(none.body.contains("No post matches."), "{}", none.body);
    let bad = visitor.get("/blog?cursor=not-a-cursor").await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("cannot be listed"), "{}", bad.body);

    // Drafts: one's own, after signing in.
    let drafts = visitor.get("/blog?status=draft").await;
    assert_eq!(drafts.status, 303);
    let mut author = signed_in(&app, &cast.author.email).await;
    let mine = author.get("/blog?status=draft").await;
    assert_eq!(titles(&mine), ["Secret plans"]);
    let theirs = signed_in(&app, &cast.other.email)
        .await
        .get("/blog?status=draft")
        .await;
    assert!(titles(&theirs).is_empty(), "{}", theirs.body);
    let listed = author.get("/blog").await;
    assert!(listed.body.contains(r#"href="/blog/new""#));
}

async fn blog_pages_go_older_and_back_newer_by_cursor(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    for n in 1..=23 {
        app.new_post(&cast.author, post(&format!("Post {n:02}")))
            .await;
        app.clock.advance_ms(1000);
    }
    let mut visitor = Browser::new(&app);
    let first = visitor.get("/blog").await;
    let expected = |from: u32, to: u32| -> Vec<String> {
        (to..=from).rev().map(|n| format!("Post {n:02}")).collect()
    };
    assert_eq!(titles(&first), expected(23, 14));
    assert_eq!(
        link(&first, "prev"),
        None,
        "the first page has no newer one"
    );
    let second = visitor.get(&link(&first, "next").expect("older")).await;
    assert_eq!(titles(&second), expected(13, 4));
    let third = visitor.get(&link(&second, "next").expect("older")).await;
    assert_eq!(titles(&third), expected(3, 1));
    assert_eq!(link(&third, "next"), None, "the last page has no older one");
    let back = visitor.get(&link(&third, "prev").expect("newer")).await;
    assert_eq!(titles(&back), expected(13, 4));
    let top = visitor.get(&link(&back, "prev").expect("newer")).await;
    assert_eq!(titles(&top), expected(23, 14));
    assert_eq!(
        link(&top, "prev"),
        None,
        "back at the newest: no newer page"
    );
    assert!(link(&top, "next").is_some());

    // The filters ride along.
    let tagged = visitor.get("/blog?tag=rust").await;
    let older = link(&tagged, "next").expect("older");
    assert!(older.contains("tag=rust"), "{older}");
}

async fn a_post_shows_its_sanitised_body_and_comments_and_a_draft_only_to_its_author(
    engine: Engine,
) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let made = app
        .new_post(
            &cast.author,
            post_with(
                "Safe Markdown",
                "**bold** <script>alert(1)</script> [click](javascript:alert(3)) \
                 <img src=x onerror=alert(2)> <a href=\"javascript:alert(4)\">raw</a>",
                &["rust"],
                "published",
            ),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    app.new_comment(&cast.other, id, "First!\nSecond line <b>not bold</b>")
        .await;
    let mut visitor = Browser::new(&app);
    let page = visitor.get(&format!("/blog/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>Safe Markdown</h1>"));
    assert!(page.body.contains("<strong>bold</strong>"), "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("javascript:"), "{}", page.body);
    assert!(!page.body.contains("onerror"), "{}", page.body);
    assert!(page.body.contains("Comments (1)"));
    assert!(
        page.body
            .contains("Second line &lt;b&gt;not bold&lt;/b&gt;"),
        "a comment is text: {}",
        page.body
    );
    assert!(
        page.body.contains(r#"href="/signin?next=%2Fblog%2F"#),
        "visitors are asked to sign in to comment"
    );
    assert!(!page.body.contains("Post comment"));
    assert!(!page.body.contains("Delete comment"));

    let draft = app
        .new_post(
            &cast.author,
            post_with("Unfinished", "Draft text.", &[], "draft"),
        )
        .await;
    let draft_path = format!("/blog/{}", draft["id"].as_str().unwrap());
    assert_eq!(visitor.get(&draft_path).await.status, 404);
    let mut other = signed_in(&app, &cast.other.email).await;
    let hidden = other.get(&draft_path).await;
    assert_eq!(hidden.status, 404);
    assert!(!hidden.body.contains("Unfinished"));
    let mut author = signed_in(&app, &cast.author.email).await;
    let shown = author.get(&draft_path).await;
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains("This is a draft"));
    assert!(shown.body.contains(&format!(r#"href="{draft_path}/edit""#)));
    let admin = signed_in(&app, &cast.admin.email)
        .await
        .get(&draft_path)
        .await;
    assert_eq!(admin.status, 200, "admins see drafts, as in the API");

    for missing in ["/blog/999999", "/blog/abc", "/blog/0"] {
        let page = visitor.get(missing).await;
        assert_eq!(page.status, 404, "{missing}");
        assert!(page.is_html() && page.body.contains("Page not found"));
    }
}

async fn a_signed_in_person_comments_and_a_bad_comment_comes_back_with_its_text(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let made = app.new_post(&cast.author, post("Comment on me")).await;
    let path = format!("/blog/{}", made["id"].as_str().unwrap());
    let action = format!("{path}/comments");
    let mut other = signed_in(&app, &cast.other.email).await;
    let form = other.get(&path).await;
    assert!(
        form.body.contains(r#"<textarea id="f-body" name="body""#),
        "{}",
        form.body
    );

    let sent = other
        .submit(&path, &action, &[("body", "  Very helpful, thanks.  ")])
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(sent.location(), format!("{path}#comments"));
    let shown = other.get(&path).await;
    assert!(shown.body.contains("Very helpful, thanks."));
    assert!(shown.body.contains("Comments (1)"));
    let (_, listed) = app
        .get_json(
            &format!("/posts/{}/comments", made["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(listed["items"][0]["body"], "Very helpful, thanks.");

    let long = "x".repeat(5001);
    let too_long = other.submit(&path, &action, &[("body", &long)]).await;
    assert_eq!(too_long.status, 422, "{}", too_long.body);
    assert!(too_long.body.contains(&long), "the text is kept");
    assert!(too_long.body.contains(r#"aria-invalid="true""#));
    assert!(
        too_long.body.contains("must be 1 to 5000 characters"),
        "{}",
        too_long.body
    );
    let blank = other.submit(&path, &action, &[("body", "   ")]).await;
    assert_eq!(blank.status, 422);
    assert!(blank.body.contains(r#"id="f-body-error""#));

    let missing = other
        .submit(&path, "/blog/999999/comments", &[("body", "Hello?")])
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.body.contains("Page not found"));

    // A visitor who is not signed in is sent to sign in, and nothing is stored.
    let mut visitor = Browser::new(&app);
    // (The post's page has no form for them: a token from the sign-in page.)
    let anonymous = visitor
        .submit("/signin", &action, &[("body", "Drive-by")])
        .await;
    assert_eq!(anonymous.status, 303);
    assert!(anonymous.location().starts_with("/signin?next="));
    let (_, listed) = app
        .get_json(
            &format!("/posts/{}/comments", made["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

async fn blog_forms_without_their_token_are_refused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let made = app.new_post(&cast.author, post("Guarded")).await;
    let id = made["id"].as_str().unwrap();
    let comment = app.new_comment(&cast.other, id, "Keep me").await;
    let mut author = signed_in(&app, &cast.author.email).await;
    author.get("/blog").await;
    let posts = [
        (
            "/blog/new".to_owned(),
            vec![("title", "T"), ("body", "B"), ("action", "save")],
        ),
        (
            format!("/blog/{id}/edit"),
            vec![("title", "T"), ("body", "B"), ("action", "save")],
        ),
        (format!("/blog/{id}/comments"), vec![("body", "No token")]),
        (
            format!(
                "/blog/{id}/comments/{}/delete",
                comment["id"].as_str().unwrap()
            ),
            vec![],
        ),
        (format!("/blog/{id}/delete"), vec![("version", "1")]),
    ];
    for (path, fields) in &posts {
        let page = author.post(path, fields).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
        assert!(page.body.contains("This form has expired"));
    }
    let token = author.get("/blog/new").await.token();
    let cross = author
        .post_from(
            "/blog/new",
            &[
                ("csrf", &token),
                ("title", "T"),
                ("body", "B"),
                ("action", "save"),
            ],
            "https://evil.example",
        )
        .await;
    assert_eq!(cross.status, 403);
    let (_, listed) = app.get_json("/posts", None).await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing was made"
    );
    let (_, post) = app.get_json(&format!("/posts/{id}"), None).await;
    assert_eq!(post["title"], "Guarded");
    assert_eq!(post["commentCount"], 1);
}

async fn an_author_previews_saves_and_edits_a_post_and_a_stale_edit_is_refused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let mut author = signed_in(&app, &cast.author.email).await;
    let new = author.get("/blog/new").await;
    assert_eq!(new.status, 200);
    assert!(new.body.contains(r#"value="preview""#) && new.body.contains(r#"value="save""#));

    let fields = [
        ("title", "Hello, blog"),
        (
            "body",
            "Some **strong** words.\n\n<script>alert(1)</script>",
        ),
        ("category", "Notes"),
        ("tags", "rust, Web"),
        ("status", "published"),
    ];
    let mut preview_fields = fields.to_vec();
    preview_fields.push(("action", "preview"));
    let preview = author
        .submit("/blog/new", "/blog/new", &preview_fields)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview.body.contains("<strong>strong</strong>"),
        "{}",
        preview.body
    );
    assert!(!preview.body.contains("<script>alert"), "{}", preview.body);
    assert!(
        preview.body.contains(r#"value="Hello, blog""#),
        "the form is kept"
    );
    assert!(
        preview.body.contains("Some **strong** words."),
        "the Markdown is kept"
    );
    assert!(preview.body.contains(r#"value="rust, Web""#));
    let (_, none) = app.get_json("/posts", None).await;
    assert!(
        none["items"].as_array().unwrap().is_empty(),
        "a preview saves nothing"
    );

    let mut save_fields = fields.to_vec();
    save_fields.push(("action", "save"));
    let saved = author.submit("/blog/new", "/blog/new", &save_fields).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let path = saved.location().to_owned();
    let id = path.strip_prefix("/blog/").expect("a post path").to_owned();
    let (_, stored) = app.get_json(&format!("/posts/{id}"), None).await;
    assert_eq!(stored["title"], "Hello, blog");
    assert_eq!(stored["tags"], json!(["rust", "web"]));
    assert_eq!(stored["category"], "notes");
    assert_eq!(stored["status"], "published");
    let shown = author.get(&path).await;
    assert!(shown.body.contains("<strong>strong</strong>"));
    assert!(
        author
            .get("/blog?tag=web")
            .await
            .body
            .contains("Hello, blog")
    );

    // Edit: the form opens with the post, and saves over it.
    let edit_path = format!("{path}/edit");
    let edit = author.get(&edit_path).await;
    assert_eq!(edit.status, 200);
    assert!(edit.body.contains(r#"value="Hello, blog""#));
    assert!(edit.body.contains(r#"value="rust, web""#));
    assert!(edit.body.contains(r#"name="version""#));
    let version = Regex::new(r#"name="version" value="(\d+)""#)
        .unwrap()
        .captures(&edit.body)
        .unwrap()[1]
        .to_owned();
    let token = edit.token();
    let edited = author
        .post(
            &edit_path,
            &[
                ("csrf", &token),
                ("version", &version),
                ("title", "Hello again"),
                ("body", "New words."),
                ("tags", "rust"),
                ("status", "published"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(edited.status, 303, "{}", edited.body);
    assert_eq!(edited.location(), path);
    let (_, stored) = app.get_json(&format!("/posts/{id}"), None).await;
    assert_eq!(stored["title"], "Hello again");
    assert_eq!(
        stored["category"],
        Value::Null,
        "the emptied category is cleared"
    );

    // A save over a version that changed meanwhile is refused, the text kept.
    let edit = author.get(&edit_path).await;
    let version = Regex::new(r#"name="version" value="(\d+)""#)
        .unwrap()
        .captures(&edit.body)
        .unwrap()[1]
        .to_owned();
    let changed = app
        .merge_patch(
            &format!("/posts/{id}"),
            &cast.author,
            json!({"title": "Changed elsewhere"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let stale = author
        .post(
            &edit_path,
            &[
                ("csrf", &edit.token()),
                ("version", &version),
                ("title", "My stale title"),
                ("body", "My stale words."),
                ("status", "published"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(
        stale
            .body
            .contains("was changed after you opened the editor")
    );
    assert!(stale.body.contains(r#"value="My stale title""#));
    assert!(stale.body.contains("My stale words."));
    let (_, stored) = app.get_json(&format!("/posts/{id}"), None).await;
    assert_eq!(
        stored["title"], "Changed elsewhere",
        "nothing was overwritten"
    );
    let no_version = author
        .post(
            &edit_path,
            &[
                ("csrf", &edit.token()),
                ("title", "T"),
                ("body", "B"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(no_version.status, 409);
}

async fn the_editor_shows_empty_or_bad_fields_again_with_422_and_the_values_kept(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let mut author = signed_in(&app, &cast.author.email).await;
    for action in ["save", "preview"] {
        let empty = author
            .submit(
                "/blog/new",
                "/blog/new",
                &[
                    ("title", "  "),
                    ("body", ""),
                    ("category", "kept-category"),
                    ("tags", "ok, not ok!"),
                    ("action", action),
                ],
            )
            .await;
        assert_eq!(empty.status, 422, "{action}: {}", empty.body);
        for id in ["f-title", "f-body", "f-tags"] {
            let marked = Regex::new(&format!(r#"id="{id}"[^>]*aria-invalid="true""#)).unwrap();
            assert!(
                marked.is_match(&empty.body),
                "{action}: {id} not marked: {}",
                empty.body
            );
            assert!(empty.body.contains(&format!(r#"id="{id}-error""#)));
        }
        assert!(
            empty.body.contains("Title must be 1 to 200 characters."),
            "{}",
            empty.body
        );
        assert!(empty.body.contains(r#"value="kept-category""#));
        assert!(empty.body.contains(r#"value="ok, not ok!""#));
        assert!(!empty.body.contains(r#"id="preview-heading""#));
    }
    let too_many: String = (0..11).map(|n| format!("t{n},")).collect();
    let many = author
        .submit(
            "/blog/new",
            "/blog/new",
            &[
                ("title", "T"),
                ("body", "B"),
                ("tags", &too_many),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(many.status, 422);
    assert!(many.body.contains("at most 10 tags"), "{}", many.body);
    let bad_status = author
        .submit(
            "/blog/new",
            "/blog/new",
            &[
                ("title", "T"),
                ("body", "B"),
                ("status", "secret"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(bad_status.status, 422);
    assert!(
        bad_status
            .body
            .contains("Visibility must be draft or published.")
    );
    let (_, none) = app
        .get_json("/posts?status=draft", Some(&cast.author))
        .await;
    assert!(
        none["items"].as_array().unwrap().is_empty(),
        "nothing was saved"
    );
}

async fn people_who_may_not_write_or_edit_a_post_are_refused(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let published = app.new_post(&cast.author, post("Mine")).await;
    let draft = app
        .new_post(
            &cast.author,
            post_with("Mine, unfinished", "Text.", &[], "draft"),
        )
        .await;
    let edit_published = format!("/blog/{}/edit", published["id"].as_str().unwrap());
    let edit_draft = format!("/blog/{}/edit", draft["id"].as_str().unwrap());

    // Nobody signed in: sent to sign in, and back.
    let mut visitor = Browser::new(&app);
    let new = visitor.get("/blog/new").await;
    assert_eq!(new.status, 303);
    assert_eq!(new.location(), "/signin?next=%2Fblog%2Fnew");
    let edit = visitor.get(&edit_published).await;
    assert_eq!(edit.status, 303);
    let blind = visitor
        .submit(
            "/signin",
            "/blog/new",
            &[("title", "T"), ("body", "B"), ("action", "save")],
        )
        .await;
    assert_eq!(blind.status, 303);
    assert!(blind.location().starts_with("/signin?next="));
    assert!(
        !visitor
            .get("/blog")
            .await
            .body
            .contains(r#"href="/blog/new""#)
    );

    // Someone else: a published post is theirs to read, not to edit (403); a draft is 404.
    let mut other = signed_in(&app, &cast.other.email).await;
    let refused = other.get(&edit_published).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("You may not edit this post"));
    assert!(
        !other
            .get(&format!("/blog/{}", published["id"].as_str().unwrap()))
            .await
            .body
            .contains("/edit\"")
    );
    let posted = other
        .submit(
            &edit_published,
            &edit_published,
            &[("title", "Taken over"), ("body", "B"), ("action", "save")],
        )
        .await;
    assert_eq!(posted.status, 403);
    let (_, stored) = app
        .get_json(
            &format!("/posts/{}", published["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(stored["title"], "Mine");
    assert_eq!(other.get(&edit_draft).await.status, 404);
    assert_eq!(other.get("/blog/999999/edit").await.status, 404);
    // A moderator moderates comments but does not edit others' posts (the API's rule).
    let moderator = signed_in(&app, &cast.moderator.email)
        .await
        .get(&edit_published)
        .await;
    assert_eq!(moderator.status, 403);
    // Admins may edit anything.
    let mut admin = signed_in(&app, &cast.admin.email).await;
    assert_eq!(admin.get(&edit_published).await.status, 200);
    assert_eq!(admin.get(&edit_draft).await.status, 200);
}

async fn moderators_delete_any_comment_and_others_only_their_own(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let made = app.new_post(&cast.author, post("Moderated")).await;
    let id = made["id"].as_str().unwrap();
    let path = format!("/blog/{id}");
    let rude = app.new_comment(&cast.other, id, "A rude remark").await;
    let rude_delete = format!("{path}/comments/{}/delete", rude["id"].as_str().unwrap());
    let kind = app.new_comment(&cast.author, id, "A kind reply").await;
    let kind_delete = format!("{path}/comments/{}/delete", kind["id"].as_str().unwrap());

    // The post's author may delete their own comment, not someone else's.
    let mut author = signed_in(&app, &cast.author.email).await;
    let page = author.get(&path).await;
    assert!(page.body.contains(&format!(r#"action="{kind_delete}""#)));
    assert!(!page.body.contains(&format!(r#"action="{rude_delete}""#)));
    let refused = author.submit(&path, &rude_delete, &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // A moderator sees a delete button on every comment, and uses it.
    let mut moderator = signed_in(&app, &cast.moderator.email).await;
    let page = moderator.get(&path).await;
    assert!(page.body.contains(&format!(r#"action="{rude_delete}""#)));
    assert!(page.body.contains(&format!(r#"action="{kind_delete}""#)));
    let deleted = moderator.submit(&path, &rude_delete, &[]).await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(deleted.location(), format!("{path}?deleted=1#comments"));
    let after = moderator.get(deleted.location()).await;
    assert!(after.body.contains("The comment was deleted."));
    assert!(!after.body.contains("A rude remark"));
    assert!(after.body.contains("A kind reply"));
    let (status, _) = app
        .get_json(&format!("/comments/{}", rude["id"].as_str().unwrap()), None)
        .await;
    assert_eq!(status, 404);
    let again = moderator.submit(&path, &rude_delete, &[]).await;
    assert_eq!(again.status, 404, "a comment deleted twice is gone");
    // A comment of another post cannot be deleted through this post's page.
    let elsewhere = app.new_post(&cast.other, post("Elsewhere")).await;
    let wrong = moderator
        .submit(
            &path,
            &format!(
                "/blog/{}/comments/{}/delete",
                elsewhere["id"].as_str().unwrap(),
                kind["id"].as_str().unwrap()
            ),
            &[],
        )
        .await;
    assert_eq!(wrong.status, 404);
    // The comment's own author deletes it.
    let own = author.submit(&path, &kind_delete, &[]).await;
    assert_eq!(own.status, 303);
    let (_, listed) = app.get_json(&format!("/posts/{id}/comments"), None).await;
    assert!(listed["items"].as_array().unwrap().is_empty());
}

async fn authors_and_moderators_delete_a_post_behind_a_confirmation(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let made = app.new_post(&cast.author, post("Short-lived")).await;
    let id = made["id"].as_str().unwrap().to_owned();
    app.new_comment(&cast.other, &id, "Goes with it").await;
    let path = format!("/blog/{id}");
    let delete = format!("{path}/delete");
    let version = Regex::new(r#"name="version" value="(\d+)""#).unwrap();

    // Someone else sees no delete button and is refused.
    let mut other = signed_in(&app, &cast.other.email).await;
    assert!(
        !other
            .get(&path)
            .await
            .body
            .contains(&format!(r#"href="{delete}""#))
    );
    assert_eq!(other.get(&delete).await.status, 403);
    let refused = other.submit(&path, &delete, &[("version", "1")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        Browser::new(&app).get(&delete).await.status,
        303,
        "sign in first"
    );

    // A confirmation, which a change made meanwhile makes stale.
    let mut moderator = signed_in(&app, &cast.moderator.email).await;
    assert!(
        moderator
            .get(&path)
            .await
            .body
            .contains(&format!(r#"href="{delete}""#))
    );
    let asked = moderator.get(&delete).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(
        asked.body.contains("Its comment is deleted with it."),
        "{}",
        asked.body
    );
    let shown_version = version.captures(&asked.body).unwrap()[1].to_owned();
    let changed = app
        .merge_patch(
            &format!("/posts/{id}"),
            &cast.author,
            json!({"title": "Edited meanwhile"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let stale = moderator
        .post(
            &delete,
            &[("csrf", &asked.token()), ("version", &shown_version)],
        )
        .await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert_eq!(
        app.get_json(&format!("/posts/{id}"), None).await.0,
        200,
        "not deleted"
    );

    let asked = moderator.get(&delete).await;
    let current = version.captures(&asked.body).unwrap()[1].to_owned();
    let deleted = moderator
        .post(&delete, &[("csrf", &asked.token()), ("version", &current)])
        .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(deleted.location(), "/blog?deleted=1");
    assert!(
        moderator
            .get(deleted.location())
            .await
            .body
            .contains("The post was deleted.")
    );
    assert_eq!(app.get_json(&format!("/posts/{id}"), None).await.0, 404);
    assert_eq!(moderator.get(&path).await.status, 404);

    // An author deletes their own draft; nobody else even finds it.
    let draft = app
        .new_post(
            &cast.author,
            post_with("Draft to drop", "Text.", &[], "draft"),
        )
        .await;
    let draft_delete = format!("/blog/{}/delete", draft["id"].as_str().unwrap());
    assert_eq!(moderator.get(&draft_delete).await.status, 404);
    let mut author = signed_in(&app, &cast.author.email).await;
    let asked = author.get(&draft_delete).await;
    let current = version.captures(&asked.body).unwrap()[1].to_owned();
    let deleted = author
        .post(
            &draft_delete,
            &[("csrf", &asked.token()), ("version", &current)],
        )
        .await;
    assert_eq!(deleted.status, 303);
    let (status, _) = app
        .get_json(
            &format!("/posts/{}", draft["id"].as_str().unwrap()),
            Some(&cast.author),
        )
        .await;
    assert_eq!(status, 404);
}

async fn hostile_text_in_every_blog_field_comes_back_inert(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let mut eve = Browser::new(&app);
    eve.sign_up("eve@example.com", HOSTILE).await;
    // Shown back by the editor: a preview, and a refusal (the tag is not a tag).
    let fields = [
        ("title", HOSTILE),
        ("body", HOSTILE),
        ("category", HOSTILE),
        ("tags", HOSTILE),
        ("status", "published"),
    ];
    let mut refused = fields.to_vec();
    refused.push(("action", "save"));
    let page = eve.submit("/blog/new", "/blog/new", &refused).await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert_inert(&page);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let mut preview = fields.to_vec();
    preview.retain(|(name, _)| *name != "tags" && *name != "category");
    preview.push(("action", "preview"));
    let page = eve.submit("/blog/new", "/blog/new", &preview).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_inert(&page);
    // Stored, then shown on the list, the post, the editor and in comments.
    let mut save = fields.to_vec();
    save.retain(|(name, _)| *name != "tags" && *name != "category");
    save.extend([("tags", "safe"), ("action", "save")]);
    let saved = eve.submit("/blog/new", "/blog/new", &save).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let path = saved.location().to_owned();
    let commented = eve
        .submit(&path, &format!("{path}/comments"), &[("body", HOSTILE)])
        .await;
    assert_eq!(commented.status, 303);
    let long = format!("{HOSTILE}{}", "x".repeat(5000));
    let refused_comment = eve
        .submit(&path, &format!("{path}/comments"), &[("body", &long)])
        .await;
    assert_eq!(refused_comment.status, 422);
    assert_inert(&refused_comment);
    let searched = format!(
        "/blog?q={}&tag={}",
        url::form_urlencoded::byte_serialize(HOSTILE.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(HOSTILE.as_bytes()).collect::<String>()
    );
    for shown in ["/blog", &path, &format!("{path}/edit"), &searched] {
        let page = eve.get(shown).await;
        assert!(page.status < 500, "{shown}: {}", page.status);
        assert_inert(&page);
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{shown}: {}",
            page.body
        );
    }
    let mut visitor = Browser::new(&app);
    let page = visitor.get(&path).await;
    assert_inert(&page);
    assert!(page.policy().contains("script-src 'nonce-"));
}

async fn every_image_in_a_post_has_its_alt_text_or_its_files_name(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let cast = app.cast().await;
    let made = app
        .new_post(
            &cast.author,
            post_with(
                "Animals",
                "![A red fox](/pics/fox.png)\n\n![](https://img.example/birds/owl.jpg?w=200)\n\n\
                 <img src=\"/pics/cat.gif\"> <img src=\"/pics/dog.webp\" alt=\"\">",
                &[],
                "published",
            ),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    let page = Browser::new(&app).get(&format!("/blog/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let images: Vec<String> = Regex::new(r"<img [^>]*>")
        .unwrap()
        .find_iter(&page.body)
        .map(|m| m.as_str().to_owned())
        .collect();
    assert_eq!(images.len(), 4, "{}", page.body);
    let alt = Regex::new(r#" alt="([^"]+)""#).unwrap();
    let alts: Vec<String> = images
        .iter()
        .map(|img| {
            alt.captures(img)
                .unwrap_or_else(|| panic!("no alt text: {img}"))[1]
                .to_owned()
        })
        .collect();
    assert_eq!(alts, ["A red fox", "owl.jpg", "cat.gif", "dog.webp"]);
    // The API's rendering is the same.
    assert!(
        made["bodyHtml"]
            .as_str()
            .unwrap()
            .contains(r#"alt="cat.gif""#),
        "{made}"
    );
}
