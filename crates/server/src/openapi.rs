//! The OpenAPI description, served at `/openapi.json`.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::{Modify, OpenApi};

use crate::blog::{comments, posts};
use crate::error::{FieldError, Problem};
use crate::http::routes::Routes;
use crate::links;
use crate::ops;
use crate::state::AppState;
use crate::{accounts, admin, jobs, ledger, shop, webhooks};

/// The API description, assembled from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Basis", description = "URL shortener with analytics, and the rest of the Basis backend."),
    paths(
        links::create::create,
        links::list::list,
        links::bulk::create,
        links::tags::list,
        links::tags::rename,
        links::tags::remove,
        links::manage::read,
        links::manage::update,
        links::manage::remove,
        links::analytics::stats,
        links::redirect::follow,
        links::redirect::follow_with_form,
        links::qr::svg,
        links::qr::png,
        ops::healthz,
        ops::readyz,
        ops::metrics_page,
        openapi_json,
        accounts::tokens::login,
        accounts::tokens::refresh,
        accounts::tokens::logout,
        accounts::tokens::logout_all,
        accounts::tokens::me,
        accounts::session::create,
        accounts::session::read,
        accounts::session::remove,
        accounts::mfa::status,
        accounts::mfa::enrol,
        accounts::mfa::confirm,
        accounts::mfa::disable,
        accounts::mfa::verify,
        accounts::mfa::policy,
        accounts::mfa::set_policy,
        accounts::reset::request,
        accounts::reset::confirm,
        accounts::oidc::start,
        accounts::oidc::callback,
        accounts::users::create,
        accounts::users::list,
        accounts::users::read,
        accounts::users::profile,
        accounts::users::update,
        accounts::users::remove,
        accounts::users::change_password,
        accounts::keys::create,
        accounts::keys::list,
        accounts::keys::revoke,
        admin::audit_log::list,
        admin::queues::stats,
        admin::queues::list,
        admin::queues::show,
        admin::queues::replay,
        admin::queues::purge,
        jobs::status::read,
        accounts::avatar::upload,
        accounts::avatar::read,
        links::exports::create,
        links::exports::download,
        links::visits::list,
        links::dump::export,
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
        ledger::accounts::create, ledger::accounts::list, ledger::accounts::read, ledger::accounts::entries, ledger::accounts::deposit, ledger::transfers::create, ledger::transfers::read, ledger::transfers::post, ledger::transfers::void, ledger::transfers::events, ledger::seats::create, ledger::seats::read, ledger::seats::book,
        shop::products::create, shop::products::list, shop::products::read, shop::products::patch, shop::orders::create, shop::orders::read, shop::sagas::list, shop::sagas::retry, shop::sagas::compensate,
        webhooks::create, webhooks::list, webhooks::read, webhooks::remove, webhooks::deliveries,
    ),
    components(schemas(Problem, FieldError, crate::links::bulk::BulkLinks)),
    modifiers(&RuleSchemas),
    tags(
        (name = "links", description = "Create and manage short links"),
        (name = "redirect", description = "Follow short links"),
        (name = "auth", description = "Sign in and out: tokens, sessions, password reset, OpenID Connect"),
        (name = "users", description = "Accounts, profiles and API keys"),
        (name = "posts", description = "The blog's posts: conditional requests, merge patch, idempotency keys, search"),
        (name = "comments", description = "Comments on posts"),
        (name = "admin", description = "Administration: the audit log and the job queue"),
        (name = "jobs", description = "Background jobs: status of work answered with 202"),
        (name = "ledger", description = "Accounts and transfers in minor units: double entry, pending transfers, idempotency keys, the event feed"),
        (name = "shop", description = "Products, orders paid through the checkout saga, and the sagas for operators"),
        (name = "webhooks", description = "Signed deliveries of link events to the caller's endpoints, retried for a day, with their log"),
        (name = "operations", description = "Health, readiness, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// Adds the schemas of the request rules (`http::schema`) that parameters and fields name.
struct RuleSchemas;

impl Modify for RuleSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // The one rule that holds before any route: the size of the request head.
        let info = openapi.info.description.get_or_insert_with(String::new);
        info.push_str("\n\n");
        info.push_str(crate::http::schema::rules::HEAD_SIZE);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.extend(crate::http::schema::components());
        // A header is absent or has a value, never `null`: an optional header's schema is its
        // value's (else a client would send the text "null").
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.parameter_in == utoipa::openapi::path::ParameterIn::Header
                        && let Some(schema) = parameter.schema.take()
                    {
                        parameter.schema = Some(without_null(schema));
                    }
                }
            }
        }
        // A merge patch takes any subset of the resource's fields and nothing else.
        for (path, resource) in [
            ("/posts/{id}", "PostInput"),
            ("/comments/{id}", "CommentInput"),
        ] {
            let Some(mut schema) = components
                .schemas
                .get(resource)
                .and_then(|s| serde_json::to_value(s).ok())
            else {
                continue;
            };
            if let Some(object) = schema.as_object_mut() {
                object.remove("required");
                object.insert("additionalProperties".into(), false.into());
            }
            let Ok(schema) = serde_json::from_value(schema) else {
                continue;
            };
            let body = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.patch.as_mut())
                .and_then(|operation| operation.request_body.as_mut())
                .and_then(|body| body.content.get_mut(crate::http::rest::MERGE_PATCH));
            if let Some(content) = body {
                content.schema = Some(schema);
            }
        }
        for (rule, operations) in crate::http::schema::DESCRIBED {
            for (method, path) in *operations {
                let operation = openapi
                    .paths
                    .paths
                    .get_mut(*path)
                    .and_then(|item| match *method {
                        "get" => item.get.as_mut(),
                        "post" => item.post.as_mut(),
                        "put" => item.put.as_mut(),
                        "patch" => item.patch.as_mut(),
                        "delete" => item.delete.as_mut(),
                        _ => None,
                    });
                let Some(operation) = operation else {
                    panic!("a described rule names {method} {path}, which the document lacks");
                };
                let description = operation.description.get_or_insert_with(String::new);
                if !description.is_empty() {
                    description.push_str("\n\n");
                }
                description.push_str(rule);
            }
        }
    }
}

/// `schema` without its `null` alternative (`type: [T, null]` or `oneOf: [null, T]`).
fn without_null(
    schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let Ok(mut value) = serde_json::to_value(&schema) else {
        return schema;
    };
    let is_null = |v: &serde_json::Value| v.get("type").and_then(|t| t.as_str()) == Some("null");
    if let Some(types) = value.get_mut("type").and_then(|t| t.as_array_mut()) {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            value["type"] = only.clone();
        }
    } else if let Some(alternatives) = value.get("oneOf").and_then(|o| o.as_array())
        && alternatives.iter().any(is_null)
        && let Some(kept) = alternatives.iter().find(|v| !is_null(v))
    {
        value = kept.clone();
    }
    serde_json::from_value(value).unwrap_or(schema)
}

/// The route serving the description.
pub fn router() -> Routes<AppState> {
    Routes::new().get("/openapi.json", openapi_json)
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    // The document never changes while the process runs: built and printed once.
    static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
        serde_json::to_vec(&ApiDoc::openapi())
            .expect("the OpenAPI document prints")
            .into()
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use utoipa::OpenApi as _;

    use super::ApiDoc;

    /// The first value of `key` anywhere inside `value` (a property's limits sit beside its
    /// type, or inside the non-null branch of an optional one).
    fn find<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
        match value {
            Value::Object(map) => map
                .get(key)
                .or_else(|| map.values().find_map(|v| find(v, key))),
            Value::Array(items) => items.iter().find_map(|v| find(v, key)),
            _ => None,
        }
    }

    /// The limits the document states are the ones the handlers enforce, so a client that
    /// follows the document is never refused for a limit it could not know.
    #[test]
    fn documented_limits_are_the_enforced_ones() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let limit = |schema: &str, field: &str, key: &str| {
            let property = &doc["components"]["schemas"][schema]["properties"][field];
            // A rule written once (`http::schema`) is a reference to its schema.
            let referred = find(property, "$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .map(|name| &doc["components"]["schemas"][name]);
            find(property, key)
                .or_else(|| referred.and_then(|r| find(r, key)))
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("{schema}.{field} states no {key}: {property}"))
                as usize
        };
        let defaults = crate::Config::with_data_dir("unused");
        for schema in ["CreateLink", "ChangeLink"] {
            assert_eq!(
                limit(schema, "longUrl", "maxLength"),
                defaults.max_url_length
            );
            assert_eq!(
                limit(schema, "password", "maxLength"),
                basis_auth::password::MAX_PASSWORD_BYTES
            );
            assert_eq!(limit(schema, "maxClicks", "minimum"), 1);
            let statuses = crate::links::link::RedirectType::ALL.map(|t| t.status());
            let lowest = *statuses.iter().min().unwrap();
            let highest = *statuses.iter().max().unwrap();
            assert_eq!(
                limit(schema, "redirectType", "minimum"),
                usize::from(lowest)
            );
            assert_eq!(
                limit(schema, "redirectType", "maximum"),
                usize::from(highest)
            );
        }
        use basis_auth::password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
        assert_eq!(
            limit("NewUser", "password", "minLength"),
            MIN_PASSWORD_CHARS
        );
        assert_eq!(
            limit("NewUser", "password", "maxLength"),
            MAX_PASSWORD_CHARS
        );
        use crate::blog::posts::input::{MAX_BODY_BYTES, MAX_TAGS, MAX_TITLE_CHARS};
        assert_eq!(limit("PostInput", "title", "maxLength"), MAX_TITLE_CHARS);
        assert_eq!(limit("PostInput", "body", "maxLength"), MAX_BODY_BYTES);
        assert_eq!(limit("PostInput", "tags", "maxItems"), MAX_TAGS);
        assert_eq!(
            limit("CommentInput", "body", "maxLength"),
            crate::blog::comments::MAX_COMMENT_CHARS
        );
    }

    /// Every parameter is where the handler reads it (lists read `limit` and `cursor` from
    /// the query), and no header may be sent as `null`.
    #[test]
    fn parameters_are_query_or_path_as_read_and_headers_are_never_null() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let name = parameter["name"].as_str().unwrap();
                    let place = parameter["in"].as_str().unwrap();
                    if place == "path" {
                        assert!(
                            path.contains(&format!("{{{name}}}")),
                            "{method} {path}: {name}"
                        );
                    }
                    if place == "header" {
                        let schema = parameter["schema"].to_string();
                        assert!(
                            !schema.contains("\"null\""),
                            "{method} {path}: {name} {schema}"
                        );
                    }
                }
            }
        }
    }

    /// The documented `If-Match` pattern accepts exactly what the server reads as one.
    #[test]
    fn the_documented_if_match_pattern_is_the_server_s_rule() {
        let pattern = regex::Regex::new(crate::http::schema::IF_MATCH_PATTERN).unwrap();
        for value in [
            "*",
            "\"a\"",
            "W/\"a\"",
            "\"\"",
            "\"a\", \"b\"",
            "\"a\",W/\"b\"",
            "W/\"\"\t \t,\t\"I,9&`H0~a&#\"",
            "\"a\",",
            "\"a\" \"b\"",
            "",
            "a",
            "*, \"a\"",
            "\"a\",,\"b\"",
            "\"a b\"",
            "w/\"a\"",
            "\"a\"\"",
        ] {
            assert_eq!(
                pattern.is_match(value),
                crate::http::rest::is_if_match(value),
                "{value:?}"
            );
        }
    }

    /// Each rule no schema can state is in the description of the operations it names.
    #[test]
    fn described_rules_are_in_their_operations() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (rule, operations) in crate::http::schema::DESCRIBED {
            for (method, path) in *operations {
                let description = doc["paths"][path][method]["description"].as_str().unwrap();
                assert!(description.contains(rule), "{method} {path}");
            }
        }
    }

    /// The alias pattern accepts exactly the aliases that parse (reserved names aside).
    #[test]
    fn the_documented_alias_pattern_is_the_parser_s_rule() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let property = &doc["components"]["schemas"]["CreateLink"]["properties"]["customAlias"];
        let pattern = find(property, "pattern").and_then(Value::as_str).unwrap();
        let pattern = regex::Regex::new(pattern).unwrap();
        for alias in [
            "abc",
            "my_link-2",
            &"x".repeat(64),
            "ab",
            &"x".repeat(65),
            "a b!",
            "é-é",
        ] {
            assert_eq!(
                pattern.is_match(alias),
                crate::links::input::Alias::parse(alias).is_ok(),
                "{alias:?}"
            );
        }
    }
}
