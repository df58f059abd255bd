//! `POST /orders` (202 + `Location`; the checkout saga runs in the background) and
//! `GET /orders/{id}` (the buyer or an admin).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use basis_auth::role::Role;
use basis_shop::OrderRequest;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::views::{OrderView, json_response, positive, refusal};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::idempotency;
use crate::http::rest::{body_of, from_document, parse_id, parse_json};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// One line of `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemBody {
    /// The product.
    #[schema(value_type = i64, minimum = 1)]
    pub product_id: Value,
    /// Units, from 1 to the units in stock (at most 1000).
    #[schema(value_type = i64, minimum = 1, maximum = 1000)]
    pub quantity: Value,
}

/// What `POST /orders` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderBody {
    /// 1 to 50 lines, each product once.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<ItemBody>,
    /// One of the caller's ledger accounts, in the products' currency.
    #[schema(value_type = i64, minimum = 1)]
    pub payment_account: Value,
}

/// Places an order: checked at once (422 naming the field, nothing stored), then paid and
/// confirmed by the checkout saga in the background. Needs an `Idempotency-Key`; follow the
/// order at `Location`.
#[utoipa::path(post, path = "/orders", tag = "shop", request_body = OrderBody,
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = "Required; a retry with the same key and body returns the first response, another body is 422")),
    responses((status = 202, body = OrderView, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same key is still running", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let bytes = body_of(&headers, body, "application/json")?;
    idempotency::required(&state, &principal.user_id, &headers, "/orders", &bytes, || async {
        let input: OrderBody = from_document(parse_json(&bytes)?)?;
        let mut items = Vec::with_capacity(input.items.len());
        for (i, item) in input.items.iter().enumerate() {
            let product = positive(&format!("items[{i}].productId"), &item.product_id)?;
            let quantity = crate::http::rest::json_integer(&item.quantity)
                .ok_or_else(|| ApiError::unprocessable(&format!("items[{i}].quantity"), "must be an integer"))?;
            items.push((product, quantity));
        }
        let payment_account = positive("paymentAccount", &input.payment_account)?;
        let shop = &state.shop;
        let order = shop
            .shop
            .place_order(&OrderRequest {
                buyer_id: principal.user_id.clone(),
                payment_account,
                items,
            })
            .await
            .map_err(refusal)?;
        // If this fails (or the process dies first), the sweeper hands the saga to the queue.
        if let Err(err) = shop.nudge(order.id, order.created_at, 0).await {
            tracing::warn!(error = %err, order = order.id, "could not enqueue a new saga; the sweeper will");
        }
        let lines = shop.shop.order_items(order.id).await.map_err(refusal)?;
        let saga = shop.checkout.saga(order.id).await.map_err(refusal)?;
        json_response(
            StatusCode::ACCEPTED,
            Some(format!("/orders/{}", order.id)),
            &OrderView::new(&order, &lines, Some(&saga), &[]),
        )
    })
    .await
}

/// An order, its lines and every step its checkout took (the buyer or an admin; others 404).
#[utoipa::path(get, path = "/orders/{id}", tag = "shop",
    params(("id" = i64, Path, description = "The order id")),
    responses((status = 200, body = OrderView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let shop = &state.shop;
    let id = parse_id(&id)?;
    // The saga and its log first: the order's final status commits with the saga's, so
    // the order read after can only be as new or newer.
    let saga = shop.checkout.saga(id).await.ok();
    let log = shop.checkout.log(id).await.map_err(refusal)?;
    let order = shop.shop.order(id).await.map_err(refusal)?;
    if order.buyer_id != principal.user_id && !principal.role.at_least(Role::Admin) {
        return Err(ApiError::NotFound);
    }
    let lines = shop.shop.order_items(order.id).await.map_err(refusal)?;
    json_response(
        StatusCode::OK,
        None,
        &OrderView::new(&order, &lines, saga.as_ref(), &log),
    )
}
