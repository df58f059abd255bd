//! The payment provider: the client the saga uses ([`PaymentsClient`]) and the simulator
//! ([`sim`]) that plays the provider.
//!
//! The provider's API (JSON; every POST takes an `Idempotency-Key`):
//!
//! | route | does | answers |
//! |---|---|---|
//! | `POST /authorizations` `{account, payee, amount, currency}` | a pending ledger transfer from `account` to `payee` | 201 `{id, status, transferId}`; the same key again gives the same authorization; 402 declined (funds, currency); 409 the key was cancelled |
//! | `POST /authorizations/{id}/capture` | posts the transfer | 200 `{id, status}`; 409 voided or refunded |
//! | `POST /cancellations` `{key}` | undoes whatever the authorization made with `key` did: voids a pending transfer, refunds a captured one with a reverse transfer, or leaves a tombstone so a late authorize with that key is refused | 200 `{status}` |
//! | `GET /authorizations/{id}` | | 200 `{id, status, transferId}` |
//!
//! Every failure the client cannot tell apart from "maybe it happened" (a timeout, a 5xx, a
//! refused connection) is [`PayError::Unavailable`]: the saga retries with the same key. A
//! refusal is [`PayError::Declined`]: retrying cannot help.

pub mod sim;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument as _;

/// How a call to the provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    /// The provider refused; the same call will be refused again.
    #[error("declined: {0}")]
    Declined(String),
    /// No answer, or a failure that may have happened after the work was done: retry with
    /// the same idempotency key.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// An authorization as the provider reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The provider's id.
    pub id: i64,
    /// `authorized`, `captured`, `voided`, `refunded`, …
    pub status: String,
    /// The ledger transfer behind it.
    pub transfer_id: Option<i64>,
}

/// The W3C `traceparent` of the current span, when spans are exported: given by the
/// process that wires tracing up, so this crate needs no tracing backend of its own.
#[derive(Clone)]
pub struct TraceContext(pub Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceContext")
    }
}

/// The provider over HTTP, with a timeout on every call. Each call is a client span and,
/// with a [`TraceContext`], carries `traceparent`, so the provider's side of a payment
/// joins the trace of the order.
#[derive(Debug, Clone)]
pub struct PaymentsClient {
    base: String,
    http: reqwest::Client,
    trace: Option<TraceContext>,
}

impl PaymentsClient {
    /// A client of the provider at `base` (`http://host:port`), giving up on a call after
    /// `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("a reqwest client with only timeouts set always builds");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            trace: None,
        }
    }

    /// The same client, sending the trace context `trace` gives with every call.
    pub fn with_trace_context(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Where the provider is.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Reserves `amount` from `account` for `payee`.
    pub async fn authorize(
        &self,
        key: &str,
        account: i64,
        payee: i64,
        amount: i64,
        currency: &str,
    ) -> Result<Authorization, PayError> {
        let body =
            json!({"account": account, "payee": payee, "amount": amount, "currency": currency});
        let value = self.post("/authorizations", key, &body).await?;
        serde_json::from_value(value).map_err(|e| PayError::Unavailable(e.to_string()))
    }

    /// Takes the money an authorization reserved.
    pub async fn capture(&self, key: &str, authorization: i64) -> Result<(), PayError> {
        let path = format!("/authorizations/{authorization}/capture");
        self.post(&path, key, &json!({})).await.map(drop)
    }

    /// Undoes whatever the authorization made with `authorization_key` did (nothing, a
    /// reservation, or a capture); returns the authorization's final status.
    pub async fn cancel(&self, key: &str, authorization_key: &str) -> Result<String, PayError> {
        let value = self
            .post("/cancellations", key, &json!({"key": authorization_key}))
            .await?;
        Ok(value["status"].as_str().unwrap_or_default().to_owned())
    }

    async fn post(&self, path: &str, key: &str, body: &Value) -> Result<Value, PayError> {
        let span = tracing::debug_span!(
            target: "basis_shop::payments",
            "payment call",
            otel.name = %format_args!("POST {path}"),
            otel.kind = "client",
            http.request.method = "POST",
            url.path = path,
            http.response.status_code = tracing::field::Empty,
        );
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("idempotency-key", key)
            .json(body);
        if let Some(parent) = self.trace.as_ref().and_then(|t| span.in_scope(|| (t.0)())) {
            request = request.header("traceparent", parent);
        }
        let response = request
            .send()
            .instrument(span.clone())
            .await
            .map_err(|e| PayError::Unavailable(e.to_string()))?;
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        let value: Value = response.json().await.unwrap_or(Value::Null);
        let detail = || {
            value["detail"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_owned)
        };
        if status.is_success() {
            Ok(value)
        } else if status.is_server_error() || status.as_u16() == 429 {
            Err(PayError::Unavailable(detail()))
        } else {
            Err(PayError::Declined(detail()))
        }
    }
}
