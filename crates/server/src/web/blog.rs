//! `/blog`: the published posts, newest first, filtered by tag or author and searched, in
//! cursor pages with Newer and Older links (and, for a signed-in person, their drafts);
//! `/blog/{id}`: one post with its comments, a comment form for signed-in people and a
//! delete button on each comment for those the API lets delete it (its author, moderators
//! and admins).
//!
//! Everything goes through the blog API's own rules: the list through
//! [`posts::api::find_page`], a post through [`posts::api::visible_post`] (a draft is a 404
//! for everyone but its author and admins), comments through [`comments::api::add_comment`]
//! and [`comments::api::deletable`].
//!
//! A post's body is the HTML the API rendered from its Markdown and sanitised when it was
//! written; it is put through the same sanitiser again here before it is spliced into the
//! page, so a row that reached the database some other way (a restore, a migration) cannot
//! bring a script with it. Every other value, comments included, is text that maud escapes.
//!
//! [`posts::api::find_page`]: crate::blog::posts::api::find_page
//! [`posts::api::visible_post`]: crate::blog::posts::api::visible_post
//! [`comments::api::add_comment`]: crate::blog::comments::api::add_comment
//! [`comments::api::deletable`]: crate::blog::comments::api::deletable

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_store::comments::CommentRow;
use basis_store::posts::{BODY_START_CHARS, PostRow, PostSummaryRow, Sort};
use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::forms::{Field, FormErrors, optional, sentence, token};
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::blog::comments::api::{add_comment, comments_page, deletable, may_delete};
use crate::blog::comments::{CommentInput, MAX_COMMENT_CHARS};
use crate::blog::posts::api::{find_page, visible_post};
use crate::blog::posts::list::{PageParams, PostListParams, post_cursor};
use crate::clock::to_datetime;
use crate::error::ApiError;
use crate::http::rest::parse_id;
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Posts per page.
const PAGE_SIZE: &str = "10";
/// Comments per page of a post.
const COMMENTS_PER_PAGE: &str = "50";
/// The longest excerpt, in characters.
const EXCERPT_CHARS: usize = 240;

/// The query of `/blog`.
#[derive(Debug, Default, Deserialize)]
pub struct BlogQuery {
    /// Search text.
    pub q: Option<String>,
    /// Only posts with this tag.
    pub tag: Option<String>,
    /// Only posts by this user id.
    pub author: Option<String>,
    /// `draft`: the visitor's own drafts.
    pub status: Option<String>,
    /// The page after this cursor (older posts).
    pub cursor: Option<String>,
    /// The page before this cursor (newer posts).
    pub before: Option<String>,
}

impl BlogQuery {
    fn drafts(&self) -> bool {
        optional(&self.status) == Some("draft")
    }

    /// `/blog` with this query's filters and `extra` pairs.
    fn link(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        let filters = [
            ("q", optional(&self.q)),
            ("tag", optional(&self.tag)),
            ("author", optional(&self.author)),
            ("status", optional(&self.status)),
        ];
        for (name, value) in filters {
            if let Some(value) = value {
                pairs.append_pair(name, value);
            }
        }
        for (name, value) in extra {
            pairs.append_pair(name, value);
        }
        let query = pairs.finish();
        if query.is_empty() {
            paths::BLOG.to_owned()
        } else {
            format!("{}?{query}", paths::BLOG)
        }
    }
}

/// `/blog?tag=…`.
fn tag_link(tag: &str) -> String {
    BlogQuery {
        tag: Some(tag.to_owned()),
        ..BlogQuery::default()
    }
    .link(&[])
}

/// `/blog?author=…`.
fn author_link(author_id: &str) -> String {
    BlogQuery {
        author: Some(author_id.to_owned()),
        ..BlogQuery::default()
    }
    .link(&[])
}

/// `/blog/{id}`.
pub fn post_path(id: i64) -> String {
    format!("{}/{id}", paths::BLOG)
}

fn date(ms: i64) -> Markup {
    let at: DateTime<Utc> = to_datetime(ms);
    html! { time datetime=(at.to_rfc3339()) { (at.format("%-d %B %Y")) } }
}

/// A few sentences of plain text from the start of a Markdown body: the words only (raw
/// HTML, images and link targets are left out), cut at a word.
pub fn excerpt(markdown_start: &str) -> String {
    use pulldown_cmark::{Event, Parser, TagEnd};
    let mut text = String::new();
    for event in Parser::new(markdown_start) {
        match event {
            Event::Text(words) | Event::Code(words) => text.push_str(&words),
            Event::SoftBreak
            | Event::HardBreak
            | Event::End(TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item) => {
                text.push(' ');
            }
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = String::new();
    let mut cut = markdown_start.chars().count() >= BODY_START_CHARS as usize;
    for word in words {
        if out.chars().count() + word.chars().count() + 1 > EXCERPT_CHARS {
            cut = true;
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if cut {
        out.push('…');
    }
    out
}

fn tags(tags: &[String]) -> Markup {
    html! {
        @if !tags.is_empty() {
            ul.tags aria-label="Tags" {
                @for tag in tags {
                    li { a href=(tag_link(tag)) { "#" (tag) } }
                }
            }
        }
    }
}

fn summary(post: &PostSummaryRow) -> Markup {
    let path = post_path(post.id);
    html! {
        article.post-summary {
            h2 { a href=(path) { (post.title) } }
            p.meta {
                "By " a href=(author_link(&post.author_id)) { (post.author_name) }
                " · " (date(post.created_at))
                " · " (post.comment_count) @if post.comment_count == 1 { " comment" } @else { " comments" }
                @if post.status == "draft" { " · " span.badge { "Draft" } }
            }
            @let text = excerpt(&post.body_start);
            @if !text.is_empty() { p { (text) } }
            (tags(&post.tags))
        }
    }
}

fn filter_form(query: &BlogQuery) -> Markup {
    html! {
        form.search method="get" action=(paths::BLOG) role="search" {
            @if let Some(author) = optional(&query.author) { input type="hidden" name="author" value=(author); }
            @if query.drafts() { input type="hidden" name="status" value="draft"; }
            (Field::new("q", "Search posts", optional(&query.q).unwrap_or_default()).kind("search").render(&FormErrors::none()))
            (Field::new("tag", "Tag", optional(&query.tag).unwrap_or_default()).render(&FormErrors::none()))
            button.secondary type="submit" { "Show" }
        }
    }
}

/// What the list shows: the rows, newest first, and the links to the pages around it.
struct Listing {
    rows: Vec<PostSummaryRow>,
    newer: Option<String>,
    older: Option<String>,
}

/// A page of posts, newest first. The API's cursors only go forward, so the page before
/// a post is read in the other order (oldest first, after that post) and turned round.
async fn listing(
    state: &AppState,
    caller: &Caller,
    query: &BlogQuery,
) -> Result<Listing, ApiError> {
    let backwards = optional(&query.before);
    let params = PostListParams {
        author: if query.drafts() {
            None
        } else {
            optional(&query.author).map(str::to_owned)
        },
        tag: optional(&query.tag).map(str::to_owned),
        status: query.drafts().then(|| "draft".to_owned()),
        q: optional(&query.q).map(str::to_owned),
        sort: Some(if backwards.is_some() { "date" } else { "-date" }.to_owned()),
        limit: Some(PAGE_SIZE.to_owned()),
        cursor: backwards.or(optional(&query.cursor)).map(str::to_owned),
        ..PostListParams::default()
    };
    let found = find_page(state, caller, params, None).await?;
    let mut rows = found.rows;
    let older_cursor = |row: &PostSummaryRow| {
        post_cursor(Sort::NewestFirst, row.created_at, &row.title, row.id, 0)
    };
    let newer_cursor = |row: &PostSummaryRow| {
        post_cursor(Sort::OldestFirst, row.created_at, &row.title, row.id, 0)
    };
    let (newer, older) = if backwards.is_some() {
        rows.reverse();
        (
            found.next_cursor.and(rows.first().map(newer_cursor)),
            rows.last().map(older_cursor),
        )
    } else {
        (
            optional(&query.cursor).and(rows.first().map(newer_cursor)),
            found.next_cursor,
        )
    };
    Ok(Listing {
        newer: newer.map(|c| query.link(&[("before", &c)])),
        older: older.map(|c| query.link(&[("cursor", &c)])),
        rows,
    })
}

/// `GET /blog`.
pub async fn list(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    query: Result<Query<BlogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    if query.drafts() && visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let (listing, problem) = match listing(&state, &visitor.caller(), &query).await {
        Ok(listing) => (listing, None),
        Err(ApiError::Invalid(errors) | ApiError::UnprocessableFields(errors)) => (
            Listing {
                rows: Vec::new(),
                newer: None,
                older: None,
            },
            errors
                .into_iter()
                .next()
                .map(|e| sentence(&e.field, &e.message)),
        ),
        Err(err) => return page::failure(&visitor, err),
    };
    let title = if query.drafts() {
        "Your drafts"
    } else {
        "Blog"
    };
    let filtered = optional(&query.q).is_some()
        || optional(&query.tag).is_some()
        || optional(&query.author).is_some();
    let author_name = optional(&query.author)
        .and(listing.rows.first())
        .map(|row| row.author_name.as_str());
    let status = if problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let main = html! {
        @if let Some(user) = &visitor.user {
            p.actions {
                a.button href=(paths::BLOG_NEW) { "Write a post" }
                @if query.drafts() { a href=(paths::BLOG) { "Published posts" } }
                @else { a href=(format!("{}?status=draft", paths::BLOG)) { "Your drafts" } }
                span.skip { " (signed in as " (user.name) ")" }
            }
        }
        @if let Some(problem) = &problem {
            div.problem role="alert" { p { "These posts cannot be listed (" (problem) "). " a href=(paths::BLOG) { "Start again" } } }
        }
        (filter_form(&query))
        @if filtered {
            p.muted role="status" {
                "Showing posts"
                @if let Some(tag) = optional(&query.tag) { " tagged “" (tag) "”" }
                @if optional(&query.author).is_some() { " by " (author_name.unwrap_or("this author")) }
                @if let Some(q) = optional(&query.q) { " matching “" (q) "”" }
                ". " a href=(if query.drafts() { format!("{}?status=draft", paths::BLOG) } else { paths::BLOG.to_owned() }) { "Show all" }
            }
        }
        @if listing.rows.is_empty() && problem.is_none() {
            div.panel {
                @if filtered { p { "No post matches." } }
                @else if query.drafts() { p { "You have no drafts." } }
                @else { p { "Nothing has been published yet." } }
            }
        }
        @for post in &listing.rows { (summary(post)) }
        @if listing.newer.is_some() || listing.older.is_some() {
            nav.pager aria-label="Pages" {
                @if let Some(newer) = &listing.newer { a.button.secondary href=(newer) rel="prev" { "Newer posts" } }
                @if let Some(older) = &listing.older { a.button.secondary href=(older) rel="next" { "Older posts" } }
            }
        }
    };
    page::render(Some(&visitor), status, title, main)
}

/// The query of `/blog/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct PostQuery {
    /// Where the page of comments starts.
    pub comments: Option<String>,
    /// Set after a comment was deleted, to say so.
    pub deleted: Option<String>,
}

csrf_forms!(CommentForm, DeleteCommentForm);

/// The comment form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct CommentForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The comment's text.
    #[serde(default)]
    pub body: String,
}

/// The delete button's form.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteCommentForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

fn comment(visitor: &Visitor, post: &PostRow, comment: &CommentRow) -> Markup {
    let caller = visitor.caller();
    html! {
        li.comment id=(format!("comment-{}", comment.id)) {
            p.meta { strong { (comment.author_name) } " · " (date(comment.created_at)) }
            p.comment-body { (comment.body) }
            @if may_delete(&caller, &comment.author_id) {
                form.inline method="post" action=(format!("{}/comments/{}/delete", post_path(post.id), comment.id)) {
                    (token(&visitor.csrf))
                    button.link type="submit" { "Delete comment" span.skip { " by " (comment.author_name) } }
                }
            }
        }
    }
}

fn comment_form(visitor: &Visitor, post: &PostRow, text: &str, errors: &FormErrors) -> Markup {
    let error = errors.get("body");
    html! {
        @if visitor.user.is_some() {
            form.panel #comment-form method="post" action=(format!("{}/comments", post_path(post.id))) novalidate {
                (token(&visitor.csrf))
                div.field {
                    label for="f-body" { "Your comment" }
                    p.hint #f-body-hint { "Plain text, up to " (MAX_COMMENT_CHARS) " characters." }
                    textarea #f-body name="body" rows="5" required
                        aria-invalid=[error.map(|_| "true")]
                        aria-describedby=(if error.is_some() { "f-body-hint f-body-error" } else { "f-body-hint" }) { (text) }
                    @if let Some(error) = error { p.error #f-body-error { (sentence("Your comment", error)) } }
                }
                button type="submit" { "Post comment" }
            }
        } @else {
            @let next = url::form_urlencoded::Serializer::new(String::new()).append_pair("next", &post_path(post.id)).finish();
            p { a href=(format!("{}?{next}", paths::SIGN_IN)) { "Sign in" } " to comment." }
        }
    }
}

/// The whole page of a post: the post, a page of its comments and the comment form.
async fn post_page(
    state: &AppState,
    visitor: &Visitor,
    post: &PostRow,
    query: &PostQuery,
    form: (&str, &FormErrors),
    status: StatusCode,
) -> Response {
    let params = PageParams {
        limit: Some(COMMENTS_PER_PAGE.to_owned()),
        cursor: optional(&query.comments).map(str::to_owned),
    };
    let (rows, next) = match comments_page(state, post.id, &params).await {
        Ok(found) => found,
        Err(ApiError::Invalid(_)) => return page::not_found_for(visitor),
        Err(err) => return page::failure(visitor, err),
    };
    let caller = visitor.caller();
    let may_edit = caller.act_for(&post.author_id).is_ok();
    let body = ammonia::clean(&post.body_html);
    let main = html! {
        @if post.status == "draft" {
            p.notice role="status" { "This is a draft: only you and the administrators can see it." }
        }
        p.meta {
            "By " a href=(author_link(&post.author_id)) { (post.author_name) }
            " · " (date(post.created_at))
            @if post.updated_at > post.created_at { " · updated " (date(post.updated_at)) }
        }
        (tags(&post.tags))
        @if may_edit { p { a.button.secondary href=(format!("{}/edit", post_path(post.id))) { "Edit" span.skip { " “" (post.title) "”" } } } }
        article.post-body { (PreEscaped(body)) }
        section #comments aria-labelledby="comments-heading" {
            h2 #comments-heading { "Comments (" (post.comment_count) ")" }
            @if optional(&query.deleted).is_some() { p.notice role="status" { "The comment was deleted." } }
            @if rows.is_empty() { p.muted { "No comments yet." } }
            @else {
                ol.comments { @for row in &rows { (comment(visitor, post, row)) } }
            }
            @if let Some(next) = next {
                @let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("comments", &next).finish();
                nav.pager aria-label="Comment pages" { a.button.secondary href=(format!("{}?{query}#comments", post_path(post.id))) rel="next" { "Later comments" } }
            }
            @if optional(&query.comments).is_some() {
                p { a href=(format!("{}#comments", post_path(post.id))) { "First comments" } }
            }
            h2 { "Add a comment" }
            @if !form.1.is_empty() { (form.1.summary()) }
            (comment_form(visitor, post, form.0, form.1))
        }
    };
    page::render(Some(visitor), status, &post.title, main)
}

/// The post `id` as `visitor` may see it, else the answer to give (the 404 page for a
/// missing post or someone else's draft).
async fn visible(state: &AppState, visitor: &Visitor, id: &str) -> Result<PostRow, Response> {
    let found = match parse_id(id) {
        Ok(id) => visible_post(state, &visitor.caller(), id).await,
        Err(err) => Err(err),
    };
    found.map_err(|err| match err {
        ApiError::NotFound => page::not_found_for(visitor),
        err => page::failure(visitor, err),
    })
}

/// `GET /blog/{id}`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    query: Result<Query<PostQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    let post = match visible(&state, &visitor, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    post_page(
        &state,
        &visitor,
        &post,
        &query,
        ("", &FormErrors::none()),
        StatusCode::OK,
    )
    .await
}

/// `POST /blog/{id}/comments`: adds the comment, then 303 back to the comments; or the
/// page again (422) with the text kept and the problem beside it.
pub async fn add(
    State(state): State<AppState>,
    uri: Uri,
    Path(id): Path<String>,
    Posted { visitor, form }: Posted<CommentForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let post = match visible(&state, &visitor, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let input = CommentInput {
        body: form.body.clone(),
    };
    match add_comment(&state, &visitor.caller(), post.id, input).await {
        Ok(_) => see_other(&format!("{}#comments", post_path(post.id))),
        Err(ApiError::NotFound) => page::not_found_for(&visitor),
        Err(err) => match FormErrors::of_error(err, &[]) {
            Ok(errors) => {
                post_page(
                    &state,
                    &visitor,
                    &post,
                    &PostQuery::default(),
                    (&form.body, &errors),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            Err(err) => page::failure(&visitor, err),
        },
    }
}

/// `POST /blog/{id}/comments/{comment}/delete`: deletes the comment (its author, moderators
/// and admins), then 303 back to the comments.
pub async fn delete_comment(
    State(state): State<AppState>,
    uri: Uri,
    Path((id, comment)): Path<(String, String)>,
    Posted { visitor, .. }: Posted<DeleteCommentForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let post = match visible(&state, &visitor, &id).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let found = match parse_id(&comment) {
        Ok(comment) => deletable(&state, &visitor.caller(), comment).await,
        Err(err) => Err(err),
    };
    let row = match found {
        Ok(row) if row.post_id == post.id => row,
        Ok(_) | Err(ApiError::NotFound) => return page::not_found_for(&visitor),
        Err(ApiError::Forbidden(_)) => {
            return page::message(
                Some(&visitor),
                StatusCode::FORBIDDEN,
                "You may not delete this comment",
                "Only its author, moderators and administrators may delete a comment.",
            );
        }
        Err(err) => return page::failure(&visitor, err),
    };
    match basis_store::comments::delete(&state.store, row.id, row.version).await {
        Ok(true) => see_other(&format!("{}?deleted=1#comments", post_path(post.id))),
        // Changed or deleted by someone else in between: show the comments as they are now.
        Ok(false) => see_other(&format!("{}#comments", post_path(post.id))),
        Err(err) => page::failure(&visitor, err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_keeps_the_words_and_drops_markup_and_raw_html() {
        let text = excerpt(
            "# Title\n\nSome **bold** <script>alert(1)</script> [link](javascript:x) `code`.",
        );
        assert_eq!(text, "Title Some bold alert(1) link code.");
    }

    #[test]
    fn a_long_excerpt_is_cut_at_a_word() {
        let long = "word ".repeat(200);
        let text = excerpt(&long);
        assert!(text.ends_with("word…"), "{text}");
        assert!(text.chars().count() <= EXCERPT_CHARS + 1);
    }

    #[test]
    fn list_links_keep_the_filters() {
        let query = BlogQuery {
            tag: Some("rust".into()),
            q: Some("a b".into()),
            ..BlogQuery::default()
        };
        assert_eq!(
            query.link(&[("cursor", "c")]),
            "/blog?q=a+b&tag=rust&cursor=c"
        );
        assert_eq!(BlogQuery::default().link(&[]), "/blog");
    }
}
