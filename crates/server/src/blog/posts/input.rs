//! What clients write about posts: the body of POST and PUT (and of PATCH once merged),
//! checked into the fields the repository stores, with the Markdown rendered and sanitised.

use basis_store::posts::PostFields;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body, in bytes.
pub const MAX_BODY_BYTES: usize = 50_000;
/// Most tags on one post.
pub const MAX_TAGS: usize = 10;
/// Longest category or tag name, in characters.
pub const MAX_LABEL_CHARS: usize = 40;

/// A post's publication status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Visible only to its author and admins.
    #[default]
    Draft,
    /// Visible to everyone.
    Published,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Published => "published",
        }
    }
}

/// The body of `POST /posts` and `PUT /posts/{id}` (PUT replaces every field: an omitted
/// optional field is reset to its default).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostInput {
    /// Plain text, 1–200 characters.
    #[schema(example = "Designing a REST API", value_type = crate::http::schema::Title)]
    pub title: String,
    /// Markdown, 1–50,000 bytes; rendered to sanitised HTML in `bodyHtml`.
    #[schema(
        example = "Resources are *nouns*.",
        min_length = 1,
        max_length = 50000,
        pattern = "\\S"
    )]
    pub body: String,
    /// A category name (letters, digits, `-`; stored lower-case), or `null` for none.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::schema::Label>)]
    pub category: Option<String>,
    /// Up to 10 tag names (same rule as categories); duplicates are dropped.
    #[serde(default)]
    #[schema(max_items = 10, value_type = Vec<crate::http::schema::Label>)]
    pub tags: Vec<String>,
    /// `draft` (the default) or `published`.
    #[serde(default)]
    #[schema(value_type = Option<Status>)]
    pub status: Option<String>,
}

/// A category or tag name in its stored form, or why it is not one.
pub fn label(raw: &str) -> Result<String, String> {
    let name = raw.trim().to_lowercase();
    if name.is_empty() || name.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("must be 1 to {MAX_LABEL_CHARS} characters"));
    }
    if !name.chars().all(|c| c.is_alphanumeric() || c == '-') {
        return Err("may hold only letters, digits and '-'".into());
    }
    Ok(name)
}

impl PostInput {
    /// Checks every field (all problems at once, 422) and renders the body.
    pub fn into_fields(self) -> Result<PostFields, ApiError> {
        let mut errors = Vec::new();
        let title = self.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            errors.push(FieldError::new(
                "title",
                format!("must be 1 to {MAX_TITLE_CHARS} characters"),
            ));
        } else if title.chars().any(char::is_control) {
            errors.push(FieldError::new("title", "may not hold control characters"));
        }
        if self.body.trim().is_empty() || self.body.len() > MAX_BODY_BYTES {
            errors.push(FieldError::new(
                "body",
                format!("must be 1 to {MAX_BODY_BYTES} bytes"),
            ));
        }
        let category = match self.category.as_deref().map(label).transpose() {
            Ok(category) => category,
            Err(message) => {
                errors.push(FieldError::new("category", message));
                None
            }
        };
        // The list as sent is held to the limit the document states (`maxItems`), before
        // duplicates merge.
        if self.tags.len() > MAX_TAGS {
            errors.push(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
        }
        let mut tags = Vec::new();
        for (n, raw) in self.tags.iter().enumerate() {
            match label(raw) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(_) => {}
                Err(message) => errors.push(FieldError::new(format!("tags[{n}]"), message)),
            }
        }
        let status = match self.status.as_deref() {
            None | Some("draft") => Status::Draft,
            Some("published") => Status::Published,
            Some(_) => {
                errors.push(FieldError::new("status", "must be draft or published"));
                Status::Draft
            }
        };
        if !errors.is_empty() {
            return Err(ApiError::UnprocessableFields(errors));
        }
        tags.sort();
        let body_html = render(&self.body);
        Ok(PostFields {
            title,
            body: self.body,
            body_html,
            category,
            tags,
            status: status.as_str().to_owned(),
        })
    }
}

/// Markdown to HTML, then through [`clean`].
pub fn render(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::all());
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    clean(&html)
}

/// HTML through ammonia's allow-list (scripts, event handlers, `javascript:` URLs and raw
/// HTML that is not on the list are removed), then every image given a text alternative:
/// the markdown's alt text when it has one, else its file's name, so no image is silent to
/// a screen reader (and none fails an accessibility check).
pub fn clean(html: &str) -> String {
    with_alt_text(&ammonia::clean(html))
}

/// `html` (ammonia's output: well-formed, every `<` of text escaped, every attribute value
/// double-quoted with its quotes escaped) with an `alt` on each `<img>` that has none or an
/// empty one. Tags are found by walking the whole text, so a `<img` written inside another
/// tag's attribute value (which keeps its `<` as is) is never taken for one.
fn with_alt_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 32);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let (text, tag_start) = rest.split_at(open);
        out.push_str(text);
        // The tag's end: the first `>` outside a quoted value.
        let mut quoted = false;
        let end = tag_start
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == '>' && !quoted
            })
            .map_or(tag_start.len(), |(i, _)| i + 1);
        let (tag, after) = tag_start.split_at(end);
        out.push_str(&tag_with_alt(tag));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The value of attribute `name` in one serialised tag, as written (still escaped).
fn attribute<'t>(tag: &'t str, name: &str) -> Option<&'t str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// One `<img …>` tag with a non-empty `alt`.
fn tag_with_alt(tag: &str) -> String {
    if !tag.starts_with("<img ") && !tag.starts_with("<img>") {
        return tag.to_owned();
    }
    if attribute(tag, "alt").is_some_and(|alt| !alt.trim().is_empty()) {
        return tag.to_owned();
    }
    // The value is already escaped for a double-quoted attribute, being one.
    let name = attribute(tag, "src")
        .map(|src| src.split(['?', '#']).next().unwrap_or_default())
        .and_then(|path| path.trim_end_matches('/').rsplit('/').next())
        .filter(|name| !name.is_empty())
        .unwrap_or("image");
    let without_alt = tag.replacen(" alt=\"\"", "", 1);
    let body = without_alt.trim_start_matches("<img");
    format!("<img alt=\"{name}\"{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_keeps_formatting_and_drops_scripts() {
        let html = render(
            "**bold** <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>",
        );
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
    }

    #[test]
    fn every_image_gets_its_alt_text_or_its_files_name() {
        assert_eq!(
            render("![A red fox](https://img.example/fox.png)"),
            "<p><img src=\"https://img.example/fox.png\" alt=\"A red fox\"></p>\n"
        );
        assert_eq!(
            render("![](https://img.example/a/fox.png?size=2#top)"),
            "<p><img alt=\"fox.png\" src=\"https://img.example/a/fox.png?size=2#top\"></p>\n"
        );
        // Raw HTML without alt, with a tricky value before the source.
        let html = render(r#"<img title="a > b" src="/pics/owl.jpg"> and <img>"#);
        assert!(
            html.starts_with(r#"<p><img alt="owl.jpg" title="a "#),
            "{html}"
        );
        assert!(html.contains(r#" src="/pics/owl.jpg">"#), "{html}");
        assert!(html.contains(r#"<img alt="image">"#), "{html}");
        // An image tag written inside another tag's value is text, left as it is.
        let html = render(r#"<a title="<img src=x onclick=y>" href="/z">z</a>"#);
        assert!(!html.contains("alt="), "{html}");
        // A name that needs escaping stays escaped.
        let html = render(r#"![](/x/%22a%22&amp;b.png)"#);
        assert!(html.contains(r#"alt="%22a%22&amp;b.png""#), "{html}");
        assert_eq!(clean("<p>no images</p>"), "<p>no images</p>");
    }

    #[test]
    fn at_most_ten_tags_as_sent_and_duplicates_merge() {
        let post = |tags: Vec<String>| PostInput {
            title: "T".into(),
            body: "B".into(),
            category: None,
            tags,
            status: None,
        };
        let fields = post(vec!["Rust".into(), "rust".into(), "db".into()])
            .into_fields()
            .unwrap();
        assert_eq!(fields.tags, ["db", "rust"]);
        // The document's `maxItems` counts the list as sent, duplicates too.
        let Err(ApiError::UnprocessableFields(errors)) =
            post(vec!["same".into(); 11]).into_fields()
        else {
            panic!("eleven tags were accepted");
        };
        assert_eq!(errors[0].field, "tags");
        assert!(post(vec!["same".into(); 10]).into_fields().is_ok());
    }

    #[test]
    fn labels_are_lower_case_words() {
        assert_eq!(label(" Rust-Lang ").as_deref(), Ok("rust-lang"));
        assert!(label("a b").is_err());
        assert!(label("").is_err());
        assert!(label("admin' OR '1'='1").is_err());
    }
}
