//! The OpenAPI description, served at `/openapi.json`.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use crate::error::{FieldError, Problem};
use crate::links;
use crate::ops;
use crate::state::AppState;
use crate::{admin, auth, comments, jobs, posts, users};

/// The API description, assembled from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Basis", description = "URL shortener with analytics, and the rest of the Basis backend."),
    paths(
        links::api::create,
        links::api::read,
        links::api::update,
        links::api::remove,
        links::api::stats,
        links::redirect::follow,
        links::redirect::follow_with_form,
        ops::healthz,
        ops::readyz,
        ops::metrics_page,
        openapi_json,
        auth::tokens::login,
        auth::tokens::refresh,
        auth::tokens::logout,
        auth::tokens::me,
        auth::session::create,
        auth::session::read,
        auth::session::remove,
        auth::reset::request,
        auth::reset::confirm,
        auth::oidc::start,
        auth::oidc::callback,
        users::api::create,
        users::api::list,
        users::api::read,
        users::api::profile,
        users::api::update,
        users::api::remove,
        users::api::change_password,
        users::keys::create,
        users::keys::list,
        users::keys::revoke,
        admin::audit::list,
        admin::queues::stats,
        admin::queues::list,
        admin::queues::show,
        admin::queues::replay,
        admin::queues::purge,
        jobs::status::read,
        users::avatar::upload,
        users::avatar::read,
        links::exports::create,
        links::exports::download,
        posts::api::list,
        posts::api::create,
        posts::api::read,
        posts::api::replace,
        posts::api::patch,
        posts::api::remove,
        posts::api::by_author,
        comments::api::list,
        comments::api::create,
        comments::api::read,
        comments::api::replace,
        comments::api::patch,
        comments::api::remove,
        posts::options_posts,
        posts::options_post,
        posts::options_author_posts,
        comments::options_comments,
        comments::options_comment,
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "links", description = "Create and manage short links"),
        (name = "redirect", description = "Follow short links"),
        (name = "auth", description = "Sign in and out: tokens, sessions, password reset, OpenID Connect"),
        (name = "users", description = "Accounts, profiles and API keys"),
        (name = "posts", description = "The blog's posts: conditional requests, merge patch, idempotency keys, search"),
        (name = "comments", description = "Comments on posts"),
        (name = "admin", description = "Administration: the audit log and the job queue"),
        (name = "jobs", description = "Background jobs: status of work answered with 202"),
        (name = "operations", description = "Health, readiness, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// The route serving the description.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
