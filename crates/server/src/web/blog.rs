//! `/blog`: the published posts, newest first, filtered by tag or author and searched, in
//! cursor pages with Newer and Older links (and, for a signed-in person, their drafts),
//! through the blog API's own list ([`find_page`]: the same parameters, rules and cursors).
//! The pieces a post's page shares with the list (dates, tags, links) are here too; the
//! post's page is [`super::blog_post`].
//!
//! [`find_page`]: crate::blog::posts::api::find_page

use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_store::posts::{BODY_START_CHARS, PostSummaryRow, Sort};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::{Field, FormErrors, optional, sentence};
use super::session::Visitor;
use super::{page, paths, sign_in_first};
use crate::blog::posts::api::find_page;
use crate::blog::posts::list::{PostListParams, post_cursor};
use crate::clock::to_datetime;
use crate::error::ApiError;
use crate::identity::caller::Caller;
use crate::state::AppState;

/// Posts per page.
const PAGE_SIZE: &str = "10";
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
    /// Set after a post was deleted, to say so.
    pub deleted: Option<String>,
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
pub fn author_link(author_id: &str) -> String {
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

pub fn date(ms: i64) -> Markup {
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

pub fn tags(tags: &[String]) -> Markup {
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
        @if optional(&query.deleted).is_some() { p.notice role="status" { "The post was deleted." } }
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
