//! The JSON shapes of the shop, and the status each shop error gets.

use basis_shop::{LogEntry, Order, OrderItem, Product, Saga};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::error::{ApiError, FieldError};

/// A product.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    /// The product's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Unit price in minor units.
    pub price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units that can still be ordered.
    pub stock: i64,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            price: p.price,
            currency: p.currency.clone(),
            stock: p.stock,
            created_at: to_datetime(p.created_at),
            updated_at: to_datetime(p.updated_at),
        }
    }
}

/// One line of an order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    /// The product.
    pub product_id: i64,
    /// Units.
    pub quantity: i64,
    /// The price per unit when ordered.
    pub unit_price: i64,
}

impl From<&OrderItem> for ItemView {
    fn from(i: &OrderItem) -> Self {
        Self {
            product_id: i.product_id,
            quantity: i.quantity,
            unit_price: i.unit_price,
        }
    }
}

/// One attempt of one step (or compensation) of the checkout saga.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    /// `reserve`, `authorize`, `confirm`, `capture` or `mail`.
    pub step: String,
    /// `run` or `compensate`.
    pub action: String,
    /// `done`, `retry` or `failed`.
    pub outcome: String,
    /// Which attempt (0: an operator's action).
    pub attempt: i64,
    /// What happened.
    pub detail: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<&LogEntry> for StepView {
    fn from(e: &LogEntry) -> Self {
        Self {
            step: e.step.clone(),
            action: e.action.clone(),
            outcome: e.outcome.clone(),
            attempt: e.attempt,
            detail: e.detail.clone(),
            at: to_datetime(e.at),
        }
    }
}

/// An order and its checkout so far.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// The order's id (and its saga's).
    pub id: i64,
    /// `pending`, `confirmed`, `cancelled` or `failed` (a compensation is stuck).
    pub status: String,
    /// Sum of the lines, in minor units.
    pub total: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The buyer's ledger account that pays.
    pub payment_account: i64,
    /// The lines.
    pub items: Vec<ItemView>,
    /// Every attempt of every step and compensation, in order.
    pub steps: Vec<StepView>,
    /// The saga: `running`, `compensating`, `completed`, `compensated` or `stuck`.
    pub saga_status: Option<String>,
    /// Why the order was cancelled or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
}

impl OrderView {
    /// The view of `order` with its lines, saga and history.
    pub fn new(order: &Order, items: &[OrderItem], saga: Option<&Saga>, log: &[LogEntry]) -> Self {
        Self {
            id: order.id,
            status: order.status.clone(),
            total: order.total,
            currency: order.currency.clone(),
            payment_account: order.payment_account,
            items: items.iter().map(ItemView::from).collect(),
            steps: log.iter().map(StepView::from).collect(),
            saga_status: saga.map(|s| s.status.clone()),
            failure_reason: order.failure_reason.clone(),
            created_at: to_datetime(order.created_at),
        }
    }
}

/// A saga as operators see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaView {
    /// The saga's id (its order's).
    pub id: i64,
    /// `running`, `compensating`, `completed`, `compensated` or `stuck`.
    pub status: String,
    /// The step it is at (or compensating).
    pub step: String,
    /// Attempts made at that step.
    pub attempt: i64,
    /// The idempotency key that step sends.
    pub step_key: String,
    /// Steps completed, in order.
    pub done_steps: Vec<String>,
    /// Compensations completed.
    pub compensations: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it will next run.
    pub next_run_at: DateTime<Utc>,
    /// When the steps before capture give up.
    pub deadline: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&Saga> for SagaView {
    fn from(s: &Saga) -> Self {
        Self {
            id: s.id,
            status: s.status.clone(),
            step: s.step.clone(),
            attempt: s.attempt,
            step_key: s.step_key.clone(),
            done_steps: s
                .done_steps
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
            compensations: s.compensations,
            last_error: s.last_error.clone(),
            next_run_at: to_datetime(s.next_run_at),
            deadline: to_datetime(s.deadline),
            updated_at: to_datetime(s.updated_at),
        }
    }
}

/// The status of each shop refusal.
pub fn refusal(err: basis_shop::Error) -> ApiError {
    match err {
        basis_shop::Error::Invalid { field, message } => {
            ApiError::UnprocessableFields(vec![FieldError::new(&field, message)])
        }
        basis_shop::Error::ProductNotFound(_) | basis_shop::Error::OrderNotFound(_) => {
            ApiError::NotFound
        }
        basis_shop::Error::SagaFinished(id) => ApiError::Conflict(format!(
            "saga {id} has finished; there is nothing to retry or undo"
        )),
        basis_shop::Error::Ledger(basis_ledger::Error::InvalidCurrency(c)) => {
            ApiError::UnprocessableFields(vec![FieldError::new(
                "currency",
                format!("{c} is not an ISO 4217 code"),
            )])
        }
        basis_shop::Error::Ledger(basis_ledger::Error::Store(e)) | basis_shop::Error::Store(e) => {
            e.into()
        }
        basis_shop::Error::Ledger(other) => ApiError::Internal(other.into()),
    }
}

pub use crate::http::rest::json_response;

/// A positive 64-bit integer from JSON, or a 422 naming `field`.
pub fn positive(field: &str, value: &serde_json::Value) -> Result<i64, ApiError> {
    crate::http::rest::json_integer(value)
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ApiError::unprocessable(field, "must be an integer from 1 to 9223372036854775807")
        })
}
