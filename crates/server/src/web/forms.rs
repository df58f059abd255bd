//! What every form shares: the problems found in what was sent, and fields that show
//! them beside the input (with `aria-invalid` and `aria-describedby`, so a screen reader
//! reads the message with the field).

use maud::{Markup, html};

use super::TOKEN_FIELD;
use crate::error::{ApiError, FieldError};

/// The problems of a sent form, by the form's own field names.
#[derive(Debug, Default)]
pub struct FormErrors(Vec<(String, String)>);

impl FormErrors {
    /// No problem.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a problem with `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_owned(), message.into()));
    }

    /// The problems the API's rules found, named as the form names its fields (`names`
    /// maps an API field to a form field; an unnamed one is kept as it is).
    pub fn from_api(errors: Vec<FieldError>, names: &[(&str, &str)]) -> Self {
        let mut found = Self::none();
        for FieldError { field, message } in errors {
            let name = names
                .iter()
                .find(|(api, _)| *api == field)
                .map_or(field.as_str(), |(_, form)| form);
            found.add(name, message);
        }
        found
    }

    /// The field problems of an API error, if it is one (400 or 422 with `errors`).
    pub fn of_error(err: ApiError, names: &[(&str, &str)]) -> Result<Self, ApiError> {
        match err {
            ApiError::Invalid(errors) | ApiError::UnprocessableFields(errors) => {
                Ok(Self::from_api(errors, names))
            }
            other => Err(other),
        }
    }

    /// These problems with every field under `group` (`rules.split[0].url`) shown at the
    /// one input named `group` that holds them all, each saying which part it is about.
    pub fn grouped(self, group: &str) -> Self {
        let inner = format!("{group}.");
        Self(
            self.0
                .into_iter()
                .map(|(name, message)| match name.strip_prefix(&inner) {
                    Some(part) => (group.to_owned(), format!("{part} {message}")),
                    None => (name, message),
                })
                .collect(),
        )
    }

    /// Adds `other`'s problems to these.
    pub fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// The first problem with `field`.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, message)| message.as_str())
    }

    /// Whether there is no problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The summary above a form with problems: a live region, so it is announced.
    pub fn summary(&self) -> Markup {
        html! {
            @if !self.is_empty() {
                div.problem role="alert" {
                    p { "Please correct the " (if self.0.len() == 1 { "field" } else { "fields" }) " marked below." }
                }
            }
        }
    }
}

/// One input with its label, hint and problem.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// The input's name (and, prefixed with `f-`, its id).
    pub name: &'a str,
    /// What the label says.
    pub label: &'a str,
    /// The input's type (`text`, `url`, `email`, `password`, `number`, ...).
    pub kind: &'a str,
    /// The value to show (what was sent, on a re-render).
    pub value: &'a str,
    /// A line of help under the label.
    pub hint: Option<&'a str>,
    /// Whether the browser should insist on a value.
    pub required: bool,
    /// The `autocomplete` token.
    pub autocomplete: Option<&'a str>,
}

impl<'a> Field<'a> {
    /// A text field.
    pub fn new(name: &'a str, label: &'a str, value: &'a str) -> Self {
        Self {
            name,
            label,
            kind: "text",
            value,
            hint: None,
            required: false,
            autocomplete: None,
        }
    }

    /// This field with another input type.
    pub fn kind(self, kind: &'a str) -> Self {
        Self { kind, ..self }
    }

    /// This field with a hint.
    pub fn hint(self, hint: &'a str) -> Self {
        Self {
            hint: Some(hint),
            ..self
        }
    }

    /// This field, required.
    pub fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// This field with an `autocomplete` token.
    pub fn autocomplete(self, token: &'a str) -> Self {
        Self {
            autocomplete: Some(token),
            ..self
        }
    }

    /// The field, showing `errors`' problem with it.
    pub fn render(self, errors: &FormErrors) -> Markup {
        let id = format!("f-{}", self.name);
        let hint_id = format!("{id}-hint");
        let error_id = format!("{id}-error");
        let error = errors.get(self.name);
        let described: Vec<&str> = [
            self.hint.map(|_| hint_id.as_str()),
            error.map(|_| error_id.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let described = (!described.is_empty()).then(|| described.join(" "));
        html! {
            div.field {
                label for=(id) { (self.label) }
                @if let Some(hint) = self.hint { p.hint id=(hint_id) { (hint) } }
                input id=(id) name=(self.name) type=(self.kind) value=(self.value)
                    required[self.required] autocomplete=[self.autocomplete]
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[described];
                @if let Some(error) = error { p.error id=(error_id) { (sentence(self.label, error)) } }
            }
        }
    }
}

/// A problem as a sentence under its field: the API words its problems as the rest of a
/// sentence about the field ("must be at least 1"), so the field's label starts it.
pub fn sentence(label: &str, message: &str) -> String {
    const PREDICATES: [&str; 7] = [
        "is ", "must ", "may ", "appears ", "points ", "has ", "applies ",
    ];
    if PREDICATES.iter().any(|p| message.starts_with(p)) {
        format!("{label} {message}.")
    } else {
        message.to_owned()
    }
}

/// The link forms' fields the API does not read as text (the shorten form's and a link's
/// edit form's): each answers the value, or `None` with its problem beside the field.
pub mod link_fields {
    use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

    use super::FormErrors;

    /// `expires`: a `datetime-local` input's value (`2030-01-31T12:00`, seconds optional),
    /// read as UTC.
    pub fn expiry(text: &str, errors: &mut FormErrors) -> Option<DateTime<Utc>> {
        let parsed = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"));
        match parsed {
            Ok(at) => Some(Utc.from_utc_datetime(&at)),
            Err(_) => {
                errors.add(
                    "expires",
                    "must be a date and time, such as 2030-01-31T12:00",
                );
                None
            }
        }
    }

    /// `max_clicks`: a whole number (the API judges its range).
    pub fn click_limit(text: &str, errors: &mut FormErrors) -> Option<i64> {
        text.parse()
            .map_err(|_| errors.add("max_clicks", "must be a whole number"))
            .ok()
    }

    /// `redirect`: the redirect status (the API judges which ones it takes).
    pub fn redirect_status(text: &str, errors: &mut FormErrors) -> Option<u16> {
        text.parse()
            .map_err(|_| errors.add("redirect", "must be 301, 302, 307 or 308"))
            .ok()
    }
}

/// The hidden field with the form's CSRF token.
pub fn token(csrf: &str) -> Markup {
    html! { input type="hidden" name=(TOKEN_FIELD) value=(csrf); }
}

/// An optional form value: absent or blank is `None`, else the value trimmed.
pub fn optional(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_with_a_problem_is_marked_invalid_and_described_by_it() {
        let mut errors = FormErrors::none();
        errors.add("url", "must be an absolute URL");
        let html = Field::new("url", "Long URL", "<script>x</script>")
            .hint("http or https")
            .render(&errors)
            .into_string();
        assert!(html.contains(r#"aria-invalid="true""#), "{html}");
        assert!(
            html.contains(r#"aria-describedby="f-url-hint f-url-error""#),
            "{html}"
        );
        assert!(html.contains("Long URL must be an absolute URL."), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let clean = Field::new("alias", "Alias", "")
            .render(&errors)
            .into_string();
        assert!(!clean.contains("aria-invalid"), "{clean}");
    }

    #[test]
    fn problems_worded_as_predicates_get_their_fields_label() {
        assert_eq!(
            sentence("Click limit", "must be at least 1"),
            "Click limit must be at least 1."
        );
        assert_eq!(
            sentence("Custom alias", "the alias 'x' is already taken"),
            "the alias 'x' is already taken"
        );
    }

    #[test]
    fn api_field_names_become_the_forms() {
        let errors = FormErrors::from_api(
            vec![
                FieldError::new("longUrl", "bad"),
                FieldError::new("other", "worse"),
            ],
            &[("longUrl", "url")],
        );
        assert_eq!(errors.get("url"), Some("bad"));
        assert_eq!(errors.get("other"), Some("worse"));
    }
}
