//! `POST /products`, `PATCH /products/{id}` (admins), `GET /products`, `GET /products/{id}`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use basis_auth::role::Role;
use basis_ledger::Currency;
use basis_shop::{NewProduct, ProductPatch};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::views::{ProductView, json_response, positive, refusal};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::trimmed_name;
use crate::http::rest::{
    List, Page, body_of, from_document, id_cursor, list_response, merge_patch_body, parse_id,
    parse_json,
};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// The longest product name.
const MAX_NAME_CHARS: usize = 200;
/// The most units of a product in stock.
const MAX_STOCK: i64 = 1_000_000_000;

/// What `POST /products` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Unit price in minor units, at least 1.
    #[schema(value_type = i64, minimum = 1)]
    pub price: Value,
    /// ISO 4217 code, upper case.
    #[schema(schema_with = crate::ledger::service::currency_schema)]
    pub currency: String,
    /// Units in stock, 0 to 1000000000.
    #[schema(value_type = i64, minimum = 0, maximum = 1000000000)]
    pub stock: Value,
}

/// What `PATCH /products/{id}` takes (JSON Merge Patch).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatchBody {
    /// New unit price in minor units (orders placed keep theirs).
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub price: Option<Value>,
    /// New units in stock.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1000000000)]
    pub stock: Option<Value>,
}

fn stock(value: &Value) -> ApiResult<i64> {
    crate::http::rest::json_integer(value)
        .filter(|n| (0..=MAX_STOCK).contains(n))
        .ok_or_else(|| {
            ApiError::unprocessable("stock", format!("must be an integer from 0 to {MAX_STOCK}"))
        })
}

/// Adds a product (admins).
#[utoipa::path(post, path = "/products", tag = "shop", request_body = NewProductBody,
    responses((status = 201, body = ProductView, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let bytes = body_of(&headers, body, "application/json")?;
    let input: NewProductBody = from_document(parse_json(&bytes)?)?;
    let name = trimmed_name("name", &input.name, MAX_NAME_CHARS)?;
    let price = positive("price", &input.price)?;
    let currency = Currency::parse(&input.currency).map_err(|_| {
        ApiError::unprocessable("currency", "must be an ISO 4217 code in upper case")
    })?;
    let stock = stock(&input.stock)?;
    let product = state
        .shop
        .shop
        .create_product(&NewProduct {
            name: name.to_owned(),
            price,
            currency,
            stock,
        })
        .await
        .map_err(refusal)?;
    json_response(
        StatusCode::CREATED,
        Some(format!("/products/{}", product.id)),
        &ProductView::from(&product),
    )
}

/// Products by id, in cursor pages (anyone).
#[utoipa::path(get, path = "/products", tag = "shop", params(Page),
    responses((status = 200, body = List<ProductView>),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let after = id_cursor(page.cursor.as_deref(), 0)?;
    let rows = state
        .shop
        .shop
        .products(after, limit + 1)
        .await
        .map_err(refusal)?;
    let list = List::from_rows(rows, limit, |r| r.id.to_string(), |r| ProductView::from(r));
    Ok(list_response("/products", limit, list))
}

/// A product (anyone).
#[utoipa::path(get, path = "/products/{id}", tag = "shop",
    params(("id" = i64, Path, description = "The product id")),
    responses((status = 200, body = ProductView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn read(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let product = state
        .shop
        .shop
        .product(parse_id(&id)?)
        .await
        .map_err(refusal)?;
    json_response(StatusCode::OK, None, &ProductView::from(&product))
}

/// Changes a product's price or stock (admins; `application/merge-patch+json`).
#[utoipa::path(patch, path = "/products/{id}", tag = "shop",
    request_body(content = ProductPatchBody, content_type = "application/merge-patch+json"),
    params(("id" = i64, Path, description = "The product id")),
    responses((status = 200, body = ProductView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let id = parse_id(&id)?;
    let input: ProductPatchBody = from_document(merge_patch_body(&headers, body, "product")?)?;
    let patch = ProductPatch {
        price: input
            .price
            .as_ref()
            .map(|v| positive("price", v))
            .transpose()?,
        stock: input.stock.as_ref().map(stock).transpose()?,
    };
    let product = state
        .shop
        .shop
        .patch_product(id, &patch)
        .await
        .map_err(refusal)?;
    json_response(StatusCode::OK, None, &ProductView::from(&product))
}
