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
        let mut tags = Vec::new();
        for (n, raw) in self.tags.iter().enumerate() {
            match label(raw) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(_) => {}
                Err(message) => errors.push(FieldError::new(format!("tags[{n}]"), message)),
            }
        }
        if tags.len() > MAX_TAGS {
            errors.push(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
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

/// Markdown to HTML, then through ammonia's allow-list: scripts, event handlers,
/// `javascript:` URLs and raw HTML that is not on the list are removed.
pub fn render(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::all());
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    ammonia::clean(&html)
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
    fn labels_are_lower_case_words() {
        assert_eq!(label(" Rust-Lang ").as_deref(), Ok("rust-lang"));
        assert!(label("a b").is_err());
        assert!(label("").is_err());
        assert!(label("admin' OR '1'='1").is_err());
    }
}
