//! The password form of a protected link, for people in a browser.
//!
//! `GET /{code}` of a protected link answers API clients with a 401 problem document; a
//! browser gets this page instead ([`crate::links::redirect`] asks for it through
//! [`PasswordPages`]). Its form posts the password, with the page's token, to
//! `POST /{code}`, the API's own form path: the right password redirects (303) to the
//! target and counts the click as the API does; a wrong one shows this form again with 422
//! and a message beside the field.

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use maud::html;

use super::forms::{Field, FormErrors, token};
use super::page;
use super::session::Visitor;
use crate::links::redirect::{PageFuture, PasswordAsk, PasswordPages};
use crate::state::AppState;

/// The web interface's password pages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pages;

/// Who is asking, from the request's headers.
async fn visitor_of(state: &AppState, headers: &HeaderMap) -> Result<Visitor, Response> {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.headers = headers.clone();
    Visitor::from_request_parts(&mut parts, state).await
}

impl PasswordPages for Pages {
    fn ask<'a>(&'a self, state: &'a AppState, ask: PasswordAsk<'a>) -> PageFuture<'a, Response> {
        Box::pin(async move {
            let visitor = match visitor_of(state, ask.headers).await {
                Ok(visitor) => visitor,
                Err(page) => return page,
            };
            let mut errors = FormErrors::none();
            if ask.wrong {
                errors.add(
                    "password",
                    "That password is not right. Check it and try again.",
                );
            }
            let status = if ask.wrong {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            let action = format!("/{}", ask.code);
            let main = html! {
                (errors.summary())
                form.panel method="post" action=(action) novalidate {
                    p { "The owner of " strong { (ask.short_url) } " protects it with a password. Type it to follow the link." }
                    (token(&visitor.csrf))
                    (Field::new("password", "Password", "").kind("password").required()
                        .autocomplete("off").render(&errors))
                    button type="submit" { "Follow the link" }
                }
            };
            let mut response =
                page::render(Some(&visitor), status, "This link needs a password", main);
            // The form's answer is a redirect to the link's target, on another site, which
            // a browser checks against `form-action` too: this page's form may lead to any
            // web address (it posts only here; the redirect is what leaves).
            if let Some(policy) = response
                .headers()
                .get(header::CONTENT_SECURITY_POLICY)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.replace("form-action 'self'", "form-action 'self' https: http:"))
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, policy);
            }
            response
        })
    }

    fn check<'a>(
        &'a self,
        state: &'a AppState,
        headers: &'a HeaderMap,
        presented: Option<&'a str>,
    ) -> PageFuture<'a, Result<(), Response>> {
        Box::pin(async move {
            let visitor = visitor_of(state, headers).await?;
            visitor.check_form(presented, headers, state)
        })
    }
}
