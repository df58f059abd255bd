//! `/my/delete-links`: deleting several links at once. The list's checkboxes send the
//! chosen links here by GET (`?link=code@domain`, repeated), which only asks, listing them;
//! the confirmation's POST deletes them one by one through the API's own delete
//! ([`service::remove`]) and answers with a 303 to the list saying how many went.
//!
//! Every chosen link is looked up first, as the person's own ([`service::managed`] with the
//! write scope): when one is missing or someone else's, nothing is deleted and the page
//! says which, without telling a missing link from another person's.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use basis_auth::role::Scope;
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::token;
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::error::ApiError;
use crate::links::LinkView;
use crate::links::domains::LinkDomain;
use crate::links::service;
use crate::state::AppState;

/// The most links one confirmation may delete (a page of the list holds 20).
pub const MAX_SELECTED: usize = 100;

/// One chosen link: its code and its domain's name, as the checkbox sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chosen {
    code: String,
    domain: String,
}

impl Chosen {
    fn parse(value: &str) -> Option<Self> {
        let (code, domain) = value.trim().rsplit_once('@')?;
        (!code.is_empty() && !domain.is_empty()).then(|| Self {
            code: code.to_owned(),
            domain: domain.to_owned(),
        })
    }

    fn value(&self) -> String {
        format!("{}@{}", self.code, self.domain)
    }
}

/// The chosen links among `values`, each once, in order; `Err` when there are too many.
fn chosen<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<Chosen>, usize> {
    let mut all: Vec<Chosen> = Vec::new();
    let mut seen = 0;
    for value in values {
        seen += 1;
        if let Some(link) = Chosen::parse(value)
            && !all.contains(&link)
        {
            all.push(link);
        }
    }
    if seen > MAX_SELECTED {
        return Err(seen);
    }
    Ok(all)
}

/// The visitor's own links among `chosen`, or the codes of those that are not (missing,
/// someone else's, or on a domain this server does not serve).
async fn own_links(
    state: &AppState,
    visitor: &Visitor,
    chosen: &[Chosen],
) -> Result<Result<Vec<LinkView>, Vec<String>>, ApiError> {
    let caller = visitor.caller();
    let mut found = Vec::new();
    let mut refused = Vec::new();
    for link in chosen {
        let Ok(domain) = state.domains.parse(&link.domain) else {
            refused.push(link.code.clone());
            continue;
        };
        let domain = LinkDomain::named(domain);
        match service::managed(state, &caller, (&link.code, &domain), Scope::LinksWrite).await {
            Ok(counted) => found.push(LinkView::new(state, &counted.row, counted.clicks)),
            Err(ApiError::NotFound | ApiError::Forbidden(_) | ApiError::Unauthorized { .. }) => {
                refused.push(link.code.clone());
            }
            Err(err) => return Err(err),
        }
    }
    Ok(if refused.is_empty() {
        Ok(found)
    } else {
        Err(refused)
    })
}

fn refusal(visitor: &Visitor, status: StatusCode, text: Markup) -> Response {
    page::render(
        Some(visitor),
        status,
        "These links cannot be deleted",
        html! {
            div.problem role="alert" { (text) }
            p { "Nothing was deleted. " a href=(paths::MY_LINKS) { "Back to my links" } }
        },
    )
}

fn not_yours(visitor: &Visitor, codes: &[String]) -> Response {
    refusal(
        visitor,
        StatusCode::NOT_FOUND,
        html! {
            p { "You have no link " (codes.join(", ")) ". It may have been deleted already." }
        },
    )
}

fn too_many(visitor: &Visitor, n: usize) -> Response {
    refusal(
        visitor,
        StatusCode::UNPROCESSABLE_ENTITY,
        html! { p { (n) " links were chosen; at most " (MAX_SELECTED) " can be deleted at once." } },
    )
}

/// `GET /my/delete-links?link=…`: the chosen links, and a button that deletes them.
pub async fn confirm(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let values = pairs
        .iter()
        .filter(|(name, _)| name == "link")
        .map(|(_, value)| value.as_str());
    let chosen = match chosen(values) {
        Ok(chosen) => chosen,
        Err(n) => return too_many(&visitor, n),
    };
    if chosen.is_empty() {
        return page::render(
            Some(&visitor),
            StatusCode::UNPROCESSABLE_ENTITY,
            "No link chosen",
            html! {
                div.problem role="alert" { p { "Choose the links to delete with their checkboxes, then press “Delete selected”." } }
                p { a href=(paths::MY_LINKS) { "Back to my links" } }
            },
        );
    }
    let links = match own_links(&state, &visitor, &chosen).await {
        Ok(Ok(links)) => links,
        Ok(Err(codes)) => return not_yours(&visitor, &codes),
        Err(err) => return page::failure(&visitor, err),
    };
    let all: Vec<String> = chosen.iter().map(Chosen::value).collect();
    let title = if links.len() == 1 {
        "Delete this link?".to_owned()
    } else {
        format!("Delete these {} links?", links.len())
    };
    let main = html! {
        div.panel {
            ul.chosen {
                @for link in &links {
                    li { strong { (link.short_url) } " → " span.url { (link.long_url) } }
                }
            }
            p { "Anyone who follows them afterwards gets “not found”. Their statistics are deleted with them. This cannot be undone." }
            form method="post" action=(paths::DELETE_LINKS) {
                (token(&visitor.csrf))
                input type="hidden" name="links" value=(all.join(" "));
                div.actions {
                    button.danger type="submit" { "Delete " (links.len()) @if links.len() == 1 { " link" } @else { " links" } }
                    a.button.secondary href=(paths::MY_LINKS) { "Cancel" }
                }
            }
        }
    };
    page::render(Some(&visitor), StatusCode::OK, &title, main)
}

csrf_forms!(DeleteLinksForm);

/// The confirmation's form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteLinksForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The chosen links, `code@domain`, separated by spaces.
    #[serde(default)]
    pub links: String,
}

/// `POST /my/delete-links`: deletes the chosen links when every one is the visitor's, then
/// 303 to the list.
pub async fn delete(
    State(state): State<AppState>,
    uri: Uri,
    Posted { visitor, form }: Posted<DeleteLinksForm>,
) -> Response {
    if visitor.user.is_none() {
        return sign_in_first(&uri);
    }
    let chosen = match chosen(form.links.split_whitespace()) {
        Ok(chosen) if !chosen.is_empty() => chosen,
        Ok(_) => return see_other(paths::MY_LINKS),
        Err(n) => return too_many(&visitor, n),
    };
    match own_links(&state, &visitor, &chosen).await {
        Ok(Ok(_)) => {}
        Ok(Err(codes)) => return not_yours(&visitor, &codes),
        Err(err) => return page::failure(&visitor, err),
    }
    let caller = visitor.caller();
    let mut removed = 0;
    for link in &chosen {
        let domain = match state.domains.parse(&link.domain) {
            Ok(domain) => LinkDomain::named(domain),
            Err(_) => continue,
        };
        match service::remove(&state, &caller, (&link.code, &domain)).await {
            Ok(()) => removed += 1,
            // Deleted meanwhile (another tab): gone all the same, not counted here.
            Err(ApiError::NotFound) => {}
            Err(err) => return page::failure(&visitor, err),
        }
    }
    see_other(&format!("{}?removed={removed}", paths::MY_LINKS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_names_a_code_and_a_domain_once_each() {
        let got = chosen(
            [
                "abc@s.example",
                "abc@s.example",
                "junk",
                "@x",
                "d-e@o.example",
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(
            got.iter().map(Chosen::value).collect::<Vec<_>>(),
            ["abc@s.example", "d-e@o.example"]
        );
        let many: Vec<String> = (0..=MAX_SELECTED)
            .map(|i| format!("c{i}@s.example"))
            .collect();
        assert_eq!(
            chosen(many.iter().map(String::as_str)),
            Err(MAX_SELECTED + 1)
        );
    }
}
