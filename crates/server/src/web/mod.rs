//! The web interface: server-rendered pages in the same binary as the API.
//!
//! # Why maud
//!
//! Pages are written with [maud](https://maud.lambda.xyz): HTML as Rust expressions, turned
//! into code by a macro. The compiler checks every page (a misspelt variable or a missing
//! field fails the build, not a request), every value spliced into a page is escaped
//! unless explicitly marked as markup, and a page is plain string building with no
//! template files to find, load or keep in step with the structs they read. Components are
//! ordinary functions ([`forms::Field`]). askama checks its templates at compile time too,
//! but keeps them in separate files whose variables are matched by name; for a handful of
//! small pages beside the code that feeds them, one language and one file read better.
//!
//! # Where this sits
//!
//! Above the resources, beside the API routes: the pages call the same service functions
//! the API handlers do (a link is parsed by [`links::create::parse`] and made by
//! [`links::service::create`], a sign-up goes through [`accounts::users::create_user`], a
//! sign-in through [`accounts::tokens::check_password`] and [`accounts::session::start`]),
//! so a rule holds on both. No resource imports this module. The pages are HTML for people,
//! not API: they are not in the route table that the OpenAPI document describes.
//!
//! - [`page`]: the layout, the CSP with its per-response nonce, message pages, the 404 page;
//! - [`session`]: who is looking ([`session::Visitor`]) and the forms' CSRF tokens;
//! - [`forms`]: fields with their problems beside them;
//! - [`assets`]: the stylesheet and script, under hashed names, cached for a year;
//! - [`account`]: `/signup`, `/signin`, `/signout`; [`home`]: `/`, the shorten form;
//!   [`my_links`]: `/my/links`, with delete behind a confirmation page;
//! - [`blog`]: `/blog`; [`blog_post`]: `/blog/{id}` with its comments and their
//!   moderation, and deleting a post;
//!   [`editor`]: `/blog/new` and `/blog/{id}/edit`, with a preview;
//! - [`bulk_delete`]: `/my/delete-links`, several links at once, confirmed;
//!   [`link_page`]: `/my/links/{code}`, one link with its edit form and [`stats`]
//!   drawn by [`charts`]; [`link_password`]: the password form of a protected link.
//! - [`reset`]: `/reset`, a forgotten password through a mailed link;
//! - [`account_page`]: `/account`, the password, the avatar, signing out everywhere;
//!   [`account_keys`]: API keys; [`account_sessions`]: sessions;
//! - [`mfa_step`]: the sign-in's second step (`/signin/code`) and `/account/two-step`;
//!   [`mfa_enrol`]: `/signin/two-step`, enrolling before anything else when the role
//!   requires it.
//! - [`admin`]: `/admin`, the instance's health, queues, caches and refusals (admins
//!   only; why the pages do not share the JSON API's `/admin/…` paths is written there);
//!   [`admin_users`]: `/admin/users`, roles; [`admin_queues`]: `/admin/job-queues`, dead
//!   letters shown, replayed and purged; [`admin_limits`]: `/admin/rate-limits`;
//!   [`admin_audit`]: `/admin/audit-log`.
//!
//! Every form works without JavaScript: a plain POST answered by a 303 to a page (or by
//! the form again, 422, with each problem beside its field). The only script is the copy
//! button's, and the button stays hidden without it.
//!
//! [`links::create::parse`]: crate::links::create
//! [`links::service::create`]: crate::links::service::create
//! [`accounts::users::create_user`]: crate::accounts::users::create_user
//! [`accounts::tokens::check_password`]: crate::accounts::tokens::check_password
//! [`accounts::session::start`]: crate::accounts::session::start

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler as _;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

pub mod account;
pub mod account_keys;
pub mod account_page;
pub mod account_sessions;
pub mod admin;
pub mod admin_audit;
pub mod admin_limits;
pub mod admin_queues;
pub mod admin_users;
pub mod assets;
pub mod blog;
pub mod blog_post;
pub mod bulk_delete;
pub mod charts;
pub mod editor;
pub mod forms;
pub mod home;
pub mod link_page;
pub mod link_password;
pub mod mfa_enrol;
pub mod mfa_step;
pub mod my_links;
pub mod page;
pub mod reset;
pub mod session;
pub mod stats;

pub use page::{not_found as not_found_page, rate_limited as rate_limited_page};

/// The name of the hidden field that carries a form's CSRF token.
pub const TOKEN_FIELD: &str = "csrf";

/// The pages' paths. Their first segments are reserved aliases (`links::input`).
pub mod paths {
    /// Sign in.
    pub const SIGN_IN: &str = "/signin";
    /// Sign up.
    pub const SIGN_UP: &str = "/signup";
    /// Sign out (POST only).
    pub const SIGN_OUT: &str = "/signout";
    /// The signed-in person's links.
    pub const MY_LINKS: &str = "/my/links";
    /// The blog.
    pub const BLOG: &str = "/blog";
    /// A new post.
    pub const BLOG_NEW: &str = "/blog/new";
    /// Deleting several of the signed-in person's links (not under `/my/links/`, where
    /// any word may be a link's alias).
    pub const DELETE_LINKS: &str = "/my/delete-links";
    /// Ask for a password reset mail.
    pub const RESET: &str = "/reset";
    /// Choose a new password: the page a reset mail links to.
    pub const RESET_NEW: &str = crate::jobs::mail::RESET_PAGE;
    /// The password was reset.
    pub const RESET_DONE: &str = "/reset/done";
    /// The signed-in person's account.
    pub const ACCOUNT: &str = "/account";
    /// Change the password.
    pub const ACCOUNT_PASSWORD: &str = "/account/password";
    /// API keys: list and make (`/account/keys/{id}/revoke` revokes one).
    pub const ACCOUNT_KEYS: &str = "/account/keys";
    /// Sessions.
    pub const ACCOUNT_SESSIONS: &str = "/account/sessions";
    /// End one session (POST only).
    pub const ACCOUNT_SESSIONS_END: &str = "/account/sessions/end";
    /// End every other session (POST only).
    pub const ACCOUNT_SESSIONS_END_OTHERS: &str = "/account/sessions/end-others";
    /// The avatar.
    pub const ACCOUNT_AVATAR: &str = "/account/avatar";
    /// Two-step sign-in: enrol, or turn it off.
    pub const ACCOUNT_MFA: &str = "/account/two-step";
    /// Start enrolling an authenticator app (POST only).
    pub const ACCOUNT_MFA_START: &str = "/account/two-step/start";
    /// The pending enrolment's QR code.
    pub const ACCOUNT_MFA_QR: &str = "/account/two-step/qr.svg";
    /// Confirm the enrolment with a first code (POST only).
    pub const ACCOUNT_MFA_CONFIRM: &str = "/account/two-step/confirm";
    /// Turn two-step sign-in off (POST only).
    pub const ACCOUNT_MFA_DISABLE: &str = "/account/two-step/disable";
    /// The second step of a sign-in: the code (POST only).
    pub const SIGN_IN_CODE: &str = "/signin/code";
    /// Enrol in two-step sign-in before signing in, when the role requires it.
    pub const SIGN_IN_ENROL: &str = "/signin/two-step";
    /// That enrolment's QR code.
    pub const SIGN_IN_ENROL_QR: &str = "/signin/two-step/qr.svg";
    /// Sign out everywhere (POST only).
    pub const ACCOUNT_SIGN_OUT_EVERYWHERE: &str = "/account/sign-out-everywhere";
    /// Every page path, for the reserved-alias check.
    pub const ALL: &[&str] = &[
        super::admin::paths::OVERVIEW,
        super::admin::paths::USERS,
        super::admin::paths::QUEUES,
        super::admin::paths::PURGE,
        super::admin::paths::RATE_LIMITS,
        super::admin::paths::AUDIT,
        "/",
        SIGN_IN,
        SIGN_UP,
        SIGN_OUT,
        MY_LINKS,
        BLOG,
        BLOG_NEW,
        DELETE_LINKS,
        RESET,
        RESET_NEW,
        RESET_DONE,
        ACCOUNT,
        ACCOUNT_PASSWORD,
        ACCOUNT_KEYS,
        ACCOUNT_SESSIONS,
        ACCOUNT_SESSIONS_END,
        ACCOUNT_SESSIONS_END_OTHERS,
        ACCOUNT_AVATAR,
        ACCOUNT_MFA,
        ACCOUNT_SIGN_OUT_EVERYWHERE,
        ACCOUNT_MFA_START,
        ACCOUNT_MFA_QR,
        ACCOUNT_MFA_CONFIRM,
        ACCOUNT_MFA_DISABLE,
        SIGN_IN_CODE,
        SIGN_IN_ENROL,
        SIGN_IN_ENROL_QR,
    ];
}

/// The pages' routes; a browser with a pending enrolment is held on its page
/// ([`mfa_enrol::gate`]).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home::show).post(home::shorten))
        .route(
            paths::SIGN_UP,
            get(account::sign_up_form).post(account::sign_up),
        )
        .route(
            paths::SIGN_IN,
            get(account::sign_in_form).post(account::sign_in),
        )
        .route(paths::SIGN_OUT, post(account::sign_out))
        .route(paths::MY_LINKS, get(my_links::list))
        .route(
            "/my/links/{code}/delete",
            get(my_links::confirm_delete).post(my_links::delete),
        )
        .route("/assets/{name}", get(assets::serve))
        .route(paths::BLOG, get(blog::list))
        .route(paths::BLOG_NEW, get(editor::new_form).post(editor::create))
        .route("/blog/{id}", get(blog_post::show))
        .route("/blog/{id}/comments", post(blog_post::add))
        .route(
            "/blog/{id}/comments/{comment}/delete",
            post(blog_post::delete_comment),
        )
        .route(
            "/blog/{id}/delete",
            get(blog_post::confirm_delete).post(blog_post::delete_post),
        )
        .route(
            "/blog/{id}/edit",
            get(editor::edit_form).post(editor::update),
        )
        .route(
            "/my/links/{code}",
            get(link_page::show).post(link_page::edit),
        )
        .route(
            paths::DELETE_LINKS,
            get(bulk_delete::confirm).post(bulk_delete::delete),
        )
        .route(paths::RESET, get(reset::request_form).post(reset::request))
        .route(
            paths::RESET_NEW,
            get(reset::new_password_form).post(reset::set_new_password),
        )
        .route(paths::RESET_DONE, get(reset::done))
        .route(paths::ACCOUNT, get(account_page::show))
        .route(
            paths::ACCOUNT_PASSWORD,
            get(account_page::password_form).post(account_page::change_password),
        )
        .route(
            paths::ACCOUNT_SIGN_OUT_EVERYWHERE,
            post(account_page::sign_out_everywhere),
        )
        .route(
            paths::ACCOUNT_AVATAR,
            get(account_page::avatar_form).post(
                // Room for the largest image the avatar service takes, and the form around it.
                account_page::upload_avatar.layer(DefaultBodyLimit::max(
                    crate::accounts::avatar::MAX_UPLOAD_BYTES + 64 * 1024,
                )),
            ),
        )
        .route(
            paths::ACCOUNT_KEYS,
            get(account_keys::show).post(account_keys::create),
        )
        .route(
            "/account/keys/{id}/revoke",
            get(account_keys::confirm_revoke).post(account_keys::revoke),
        )
        .route(paths::SIGN_IN_CODE, post(mfa_step::finish))
        .route(paths::ACCOUNT_MFA, get(mfa_step::show))
        .route(paths::ACCOUNT_MFA_START, post(mfa_step::start))
        .route(paths::ACCOUNT_MFA_QR, get(mfa_step::qr))
        .route(paths::ACCOUNT_MFA_CONFIRM, post(mfa_step::confirm))
        .route(paths::ACCOUNT_MFA_DISABLE, post(mfa_step::disable))
        .route(admin::paths::OVERVIEW, get(admin::overview))
        .route(admin::paths::USERS, get(admin_users::list))
        .route("/admin/users/{id}/role", post(admin_users::change_role))
        .route(admin::paths::QUEUES, get(admin_queues::show))
        .route(
            "/admin/job-queues/dead/{id}",
            get(admin_queues::dead_letter),
        )
        .route(
            "/admin/job-queues/dead/{id}/replay",
            post(admin_queues::replay),
        )
        .route(
            admin::paths::PURGE,
            get(admin_queues::confirm_purge).post(admin_queues::purge),
        )
        .route(admin::paths::RATE_LIMITS, get(admin_limits::show))
        .route(admin::paths::AUDIT, get(admin_audit::show))
        .route(paths::ACCOUNT_SESSIONS, get(account_sessions::show))
        .route(paths::ACCOUNT_SESSIONS_END, post(account_sessions::end))
        .route(
            paths::ACCOUNT_SESSIONS_END_OTHERS,
            post(account_sessions::end_others),
        )
        .route(
            paths::SIGN_IN_ENROL,
            get(mfa_enrol::show).post(mfa_enrol::confirm),
        )
        .route(paths::SIGN_IN_ENROL_QR, get(mfa_enrol::qr))
        .route_layer(axum::middleware::from_fn_with_state(state, mfa_enrol::gate))
}

/// A 303 to `location` (a local path): the answer to every successful form.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Sends someone who must sign in to the sign-in page, which sends them back to `uri`.
pub fn sign_in_first(uri: &Uri) -> Response {
    let back = uri.path_and_query().map_or("/", |p| p.as_str());
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", back)
        .finish();
    see_other(&format!("{}?{query}", paths::SIGN_IN))
}

/// `next` if it is a path on this site, for a redirect after sign-in; anything that could
/// leave the site (`//host`, `/\host`, a scheme, control characters) is refused, so the
/// sign-in page cannot be made to send people elsewhere.
pub fn local_path(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    local.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for good in ["/", "/my/links", "/my/links?cursor=abc&q=x%20y"] {
            assert_eq!(local_path(good), Some(good));
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/ /evil.example",
            "",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_page_word_is_a_reserved_alias() {
        for path in paths::ALL {
            let Some(word) = path.trim_start_matches('/').split('/').next() else {
                continue;
            };
            if word.is_empty() {
                continue;
            }
            assert!(
                crate::links::input::RESERVED.contains(&word),
                "{word} is a page's path but not a reserved alias"
            );
        }
    }
}
