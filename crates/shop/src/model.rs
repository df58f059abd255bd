//! The shop's values: products, orders, sagas and their history, and the errors.

use serde::Serialize;

/// A product for sale. `stock` is what can still be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Product {
    /// The product's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Unit price in minor units of `currency`.
    pub price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units not reserved by any order.
    pub stock: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// What [`crate::Shop::create_product`] needs (already validated by the caller's parser).
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// 1 to 200 characters.
    pub name: String,
    /// At least 1.
    pub price: i64,
    /// The currency.
    pub currency: basis_ledger::Currency,
    /// At least 0.
    pub stock: i64,
}

/// A change to a product: a new price and/or a new stock level.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    /// New unit price (orders already placed keep theirs).
    pub price: Option<i64>,
    /// New units in stock.
    pub stock: Option<i64>,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// The saga is working on it.
    Pending,
    /// Stock reserved, payment authorized and then captured.
    Confirmed,
    /// A step failed or timed out and every compensation ran: nothing held, nothing charged.
    Cancelled,
    /// A compensation kept failing: the saga is parked as `stuck` for an operator.
    Failed,
}

impl OrderStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Order {
    /// The order's id (and its saga's).
    pub id: i64,
    /// The user who placed it.
    pub buyer_id: String,
    /// The buyer's ledger account it is paid from.
    pub payment_account: i64,
    /// ISO 4217 code of every item.
    pub currency: String,
    /// Sum of quantity × unit price.
    pub total: i64,
    /// `pending`, `confirmed`, `cancelled` or `failed`.
    pub status: String,
    /// Why it was cancelled or failed.
    pub failure_reason: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrderItem {
    /// The order.
    pub order_id: i64,
    /// The product.
    pub product_id: i64,
    /// Units, at least 1.
    pub quantity: i64,
    /// The product's price when the order was placed.
    pub unit_price: i64,
}

/// What a buyer asks for: items and the account that pays.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    /// The buyer's user id.
    pub buyer_id: String,
    /// A ledger account of the buyer, in the products' currency.
    pub payment_account: i64,
    /// (product id, quantity) pairs; a product appears once.
    pub items: Vec<(i64, i64)>,
}

/// The checkout saga's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Saga {
    /// The saga's id, which is its order's id.
    pub id: i64,
    /// `running`, `compensating`, `completed`, `compensated` or `stuck`.
    pub status: String,
    /// The step running (or compensating) now.
    pub step: String,
    /// Attempts made at `step` so far.
    pub attempt: i64,
    /// The idempotency key the step sends to whoever it calls (stable across attempts).
    pub step_key: String,
    /// When the forward steps before capture give up (Unix ms).
    pub deadline: i64,
    /// When a runner should next advance it (Unix ms).
    pub next_run_at: i64,
    /// Until when the runner holding it may work on it (Unix ms).
    pub lease_until: i64,
    /// Bumped by every lease: a runner whose token is stale writes nothing.
    pub lease_token: i64,
    /// The payment provider's authorization, once known.
    pub authorization_id: Option<i64>,
    /// Comma-separated forward steps completed, in order.
    pub done_steps: String,
    /// The last failure.
    pub last_error: Option<String>,
    /// Compensations completed.
    pub compensations: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// One attempt of one step or compensation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LogEntry {
    /// Order of the history.
    pub id: i64,
    /// The saga.
    pub saga_id: i64,
    /// The step.
    pub step: String,
    /// `run` or `compensate`.
    pub action: String,
    /// `done`, `retry` or `failed`.
    pub outcome: String,
    /// Which attempt.
    pub attempt: i64,
    /// What happened.
    pub detail: Option<String>,
    /// Unix milliseconds.
    pub at: i64,
}

/// The errors of the shop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such product.
    #[error("product {0} not found")]
    ProductNotFound(i64),
    /// No such order.
    #[error("order {0} not found")]
    OrderNotFound(i64),
    /// Input refused, naming the field (nothing was stored).
    #[error("{field}: {message}")]
    Invalid {
        /// The request member at fault (`items[0].quantity`, `paymentAccount`…).
        field: String,
        /// Why.
        message: String,
    },
    /// The saga has finished; it can be neither retried nor compensated.
    #[error("saga {0} has finished")]
    SagaFinished(i64),
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] basis_ledger::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] basis_store::Error),
}

impl Error {
    /// A refusal naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}
