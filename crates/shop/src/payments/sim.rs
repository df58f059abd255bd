//! The payment provider simulator: a separate HTTP service (`basis payments-sim`, or
//! in-process on a loopback port) that authorizes, captures and cancels with the ledger's
//! pending transfers, and misbehaves on demand like a provider you do not control.
//!
//! Misbehaviour, per call: an added `latency`; with probability `failure_rate` a 503 before
//! doing anything; with probability `timeout_rate` the work is done and the answer held for
//! `hang` (longer than the client waits), so the caller gives up on a call that took effect.
//! Tests script the same faults exactly with [`Faults`].
//!
//! Every operation is idempotent: authorizations are rows keyed by the idempotency key; a
//! crash between the ledger's transfer and the row's update is repaired by finding the
//! transfer by its reference (`payment:<id>`, `refund:<id>`); a refund is claimed on the row
//! first so two cancellations cannot both pay it back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use basis_ledger::{Currency, Ledger, TransferRequest, TransferStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long an authorization holds the money before the ledger voids it by itself.
pub const AUTHORIZATION_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// How long a cancellation holds the right to refund before another may take over.
const REFUND_CLAIM_MS: i64 = 30_000;

/// How the simulator misbehaves on every call.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Probability (0–1) of answering 503 without doing anything.
    pub failure_rate: f64,
    /// Added before every answer.
    pub latency: Duration,
    /// Probability (0–1) of doing the work and answering only after `hang`.
    pub timeout_rate: f64,
    /// How long a "timed out" answer is held.
    pub hang: Duration,
}

/// One provider operation, for scripted faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `POST /authorizations`.
    Authorize,
    /// `POST /authorizations/{id}/capture`.
    Capture,
    /// `POST /cancellations`.
    Cancel,
}

/// What a scripted fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 before doing anything.
    Fail,
    /// Do the work, answer after `hang`.
    Hang,
    /// 402, as a refusal.
    Decline,
}

/// Faults scripted for the next calls of each operation (tests).
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<HashMap<Op, Vec<Fault>>>>);

impl Faults {
    /// The next `times` calls of `op` meet `fault` (after any already scripted).
    pub fn script(&self, op: Op, fault: Fault, times: usize) {
        // No await while the lock is held.
        let mut map = self.0.lock().expect("the faults lock is never poisoned");
        map.entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Forgets every scripted fault.
    pub fn clear(&self) {
        self.0.lock().expect("never poisoned").clear();
    }

    fn next(&self, op: Op) -> Option<Fault> {
        let mut map = self.0.lock().expect("never poisoned");
        let queue = map.get_mut(&op)?;
        (!queue.is_empty()).then(|| queue.remove(0))
    }
}

/// The simulator's state.
#[derive(Debug, Clone)]
pub struct Simulator {
    ledger: Ledger,
    config: SimConfig,
    /// Scripted faults.
    pub faults: Faults,
}

/// A running in-process simulator.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its scripted faults.
    pub faults: Faults,
    /// Stops it when dropped or sent.
    pub stop: tokio::sync::oneshot::Sender<()>,
}

impl Simulator {
    /// A simulator over `ledger`.
    pub fn new(ledger: Ledger, config: SimConfig) -> Self {
        Self {
            ledger,
            config,
            faults: Faults::default(),
        }
    }

    /// The simulator's routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/authorizations", post(authorize))
            .route("/authorizations/{id}", get(read))
            .route("/authorizations/{id}/capture", post(capture))
            .route("/cancellations", post(cancel))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self)
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Starts on a loopback port, in this process.
    pub async fn spawn_loopback(self) -> std::io::Result<Running> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let faults = self.faults.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(err) = self
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::warn!(error = %err, "the payment simulator stopped");
            }
        });
        Ok(Running { addr, faults, stop })
    }

    /// Latency, then a scripted or random failure (`Some`: answer that instead).
    async fn before(&self, op: Op) -> (Option<Response>, bool) {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let scripted = self.faults.next(op);
        let roll = |p: f64| p > 0.0 && rand::random::<f64>() < p;
        match scripted {
            Some(Fault::Fail) => (
                Some(problem(StatusCode::SERVICE_UNAVAILABLE, "injected failure")),
                false,
            ),
            Some(Fault::Decline) => (
                Some(problem(StatusCode::PAYMENT_REQUIRED, "declined (injected)")),
                false,
            ),
            Some(Fault::Hang) => (None, true),
            None if roll(self.config.failure_rate) => (
                Some(problem(StatusCode::SERVICE_UNAVAILABLE, "random failure")),
                false,
            ),
            None => (None, roll(self.config.timeout_rate)),
        }
    }

    async fn after(&self, hang: bool, response: Response) -> Response {
        if hang {
            metrics::counter!("payments_sim_hung_total").increment(1);
            tokio::time::sleep(self.config.hang.max(Duration::from_millis(1))).await;
        }
        response
    }
}

/// A payment row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Payment {
    id: i64,
    account: Option<i64>,
    payee: Option<i64>,
    amount: Option<i64>,
    status: String,
    transfer_id: Option<i64>,
    refund_transfer_id: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentView {
    id: i64,
    status: String,
    transfer_id: Option<i64>,
    refund_transfer_id: Option<i64>,
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> Self {
        Self {
            id: p.id,
            status: p.status.clone(),
            transfer_id: p.transfer_id,
            refund_transfer_id: p.refund_transfer_id,
        }
    }
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({"type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": detail.into()});
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Internal failures answer 503 (the caller retries with the same key; every operation is
/// idempotent).
fn unavailable(err: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %err, "payment simulator failed a call");
    problem(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
}

/// The request's Idempotency-Key (1 to 255 characters), if it has one.
fn key_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .map(str::to_owned)
}

fn missing_key() -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "an Idempotency-Key header is required",
    )
}

impl Simulator {
    async fn by_key(&self, key: &str) -> Result<Option<Payment>, sqlx::Error> {
        basis_store::on_pool!(self.ledger.store(), write, pool => {
            sqlx::query_as("SELECT * FROM shop_payments WHERE idem_key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
        })
    }

    async fn by_id(&self, id: i64) -> Result<Option<Payment>, sqlx::Error> {
        basis_store::on_pool!(self.ledger.store(), write, pool => {
            sqlx::query_as("SELECT * FROM shop_payments WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })
    }

    /// `UPDATE shop_payments SET <set> WHERE id = $1 AND <cond>`: whether it matched.
    async fn update(
        &self,
        id: i64,
        status: &str,
        transfer: Option<i64>,
        refund: Option<i64>,
        from: &[&str],
    ) -> Result<bool, sqlx::Error> {
        let now = self.ledger.clock().now_ms();
        let list = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE shop_payments SET status = $2, transfer_id = COALESCE($3, transfer_id), \
             refund_transfer_id = COALESCE($4, refund_transfer_id), updated_at = $5 \
             WHERE id = $1 AND status IN ({list})"
        );
        let done = basis_store::on_pool!(self.ledger.store(), write, pool => {
            sqlx::query(&sql)
                .bind(id)
                .bind(status)
                .bind(transfer)
                .bind(refund)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Authorizes under `key`; `Err` is the answer to give.
    async fn do_authorize(&self, key: &str, req: &AuthorizeBody) -> Result<Payment, Response> {
        let currency = Currency::parse(&req.currency)
            .map_err(|e| problem(StatusCode::PAYMENT_REQUIRED, e.to_string()))?;
        let now = self.ledger.clock().now_ms();
        basis_store::on_pool!(self.ledger.store(), write, pool => {
            sqlx::query(
                "INSERT INTO shop_payments (idem_key, account, payee, amount, currency, status, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'authorizing', $6, $6) \
                 ON CONFLICT (idem_key) DO NOTHING",
            )
            .bind(key)
            .bind(req.account)
            .bind(req.payee)
            .bind(req.amount)
            .bind(currency.as_str())
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(unavailable)?;
        let row = self
            .by_key(key)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unavailable("row vanished"))?;
        if row.status == "cancelled" {
            return Err(problem(
                StatusCode::CONFLICT,
                "this authorization was cancelled",
            ));
        }
        if row.account != Some(req.account)
            || row.amount != Some(req.amount)
            || row.payee != Some(req.payee)
        {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used for another payment",
            ));
        }
        if row.transfer_id.is_some() {
            return Ok(row);
        }
        // A crashed earlier attempt may have made the transfer without recording it.
        let reference = format!("payment:{}", row.id);
        let transfer = match self
            .ledger
            .transfer_by_reference(&reference)
            .await
            .map_err(unavailable)?
        {
            Some(t) => t,
            None => {
                let mut request =
                    TransferRequest::posted(req.account, req.payee, req.amount, &currency)
                        .pending(Some(AUTHORIZATION_TTL_MS));
                request.reference = Some(reference);
                match self.ledger.transfer(&request).await {
                    Ok(t) => t,
                    Err(
                        e @ (basis_ledger::Error::Store(_) | basis_ledger::Error::Invariant(_)),
                    ) => {
                        return Err(unavailable(e));
                    }
                    Err(refused) => {
                        // A refusal is final for this key.
                        let _ = self
                            .update(row.id, "cancelled", None, None, &["authorizing"])
                            .await;
                        return Err(problem(StatusCode::PAYMENT_REQUIRED, refused.to_string()));
                    }
                }
            }
        };
        if self
            .update(
                row.id,
                "authorized",
                Some(transfer.id),
                None,
                &["authorizing"],
            )
            .await
            .map_err(unavailable)?
        {
            metrics::counter!("payments_sim_total", "op" => "authorize").increment(1);
            return self
                .by_id(row.id)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| unavailable("row vanished"));
        }
        // Cancelled (or authorized by a twin request) meanwhile.
        let now_row = self
            .by_id(row.id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unavailable("row vanished"))?;
        if now_row.transfer_id == Some(transfer.id) {
            return Ok(now_row);
        }
        let _ = self.ledger.void(transfer.id).await;
        match now_row.transfer_id {
            Some(_) => Ok(now_row),
            None => Err(problem(
                StatusCode::CONFLICT,
                "this authorization was cancelled",
            )),
        }
    }

    async fn do_capture(&self, id: i64) -> Result<Payment, Response> {
        let row = self
            .by_id(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| problem(StatusCode::NOT_FOUND, "no such authorization"))?;
        match row.status.as_str() {
            "captured" => return Ok(row),
            "authorized" => {}
            other => {
                return Err(problem(
                    StatusCode::CONFLICT,
                    format!("the authorization is {other}"),
                ));
            }
        }
        let transfer = row
            .transfer_id
            .ok_or_else(|| unavailable("authorized without a transfer"))?;
        match self.ledger.post(transfer, None).await {
            Ok(_) => {}
            Err(basis_ledger::Error::NotPending { .. } | basis_ledger::Error::Expired(_)) => {
                let t = self
                    .ledger
                    .transfer_by_id(transfer)
                    .await
                    .map_err(unavailable)?;
                if t.status != TransferStatus::Posted {
                    return Err(problem(
                        StatusCode::CONFLICT,
                        "the authorization was voided",
                    ));
                }
            }
            Err(e) => return Err(unavailable(e)),
        }
        self.update(id, "captured", None, None, &["authorized"])
            .await
            .map_err(unavailable)?;
        metrics::counter!("payments_sim_total", "op" => "capture").increment(1);
        let row = self
            .by_id(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unavailable("row vanished"))?;
        if row.status == "captured" {
            Ok(row)
        } else {
            Err(problem(
                StatusCode::CONFLICT,
                format!("the authorization is {}", row.status),
            ))
        }
    }

    /// Undoes what the authorization under `key` did. Loops because every branch may race
    /// with an authorize or capture in flight; each pass makes progress or returns.
    async fn do_cancel(&self, key: &str) -> Result<Payment, Response> {
        for _ in 0..8 {
            let now = self.ledger.clock().now_ms();
            let Some(row) = self.by_key(key).await.map_err(unavailable)? else {
                basis_store::on_pool!(self.ledger.store(), write, pool => {
                    sqlx::query(
                        "INSERT INTO shop_payments (idem_key, status, created_at, updated_at) \
                         VALUES ($1, 'cancelled', $2, $2) ON CONFLICT (idem_key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                })
                .map_err(unavailable)?;
                continue;
            };
            match row.status.as_str() {
                "cancelled" | "voided" | "refunded" => return Ok(row),
                "authorizing" => {
                    let reference = format!("payment:{}", row.id);
                    if let Some(t) = self
                        .ledger
                        .transfer_by_reference(&reference)
                        .await
                        .map_err(unavailable)?
                    {
                        self.update(row.id, "authorized", Some(t.id), None, &["authorizing"])
                            .await
                            .map_err(unavailable)?;
                    } else {
                        self.update(row.id, "cancelled", None, None, &["authorizing"])
                            .await
                            .map_err(unavailable)?;
                    }
                }
                "authorized" => {
                    let transfer = row
                        .transfer_id
                        .ok_or_else(|| unavailable("authorized without a transfer"))?;
                    let t = self
                        .ledger
                        .transfer_by_id(transfer)
                        .await
                        .map_err(unavailable)?;
                    match t.status {
                        TransferStatus::Pending => match self.ledger.void(transfer).await {
                            Ok(_) | Err(basis_ledger::Error::NotPending { .. }) => {}
                            Err(e) => return Err(unavailable(e)),
                        },
                        TransferStatus::Voided => {
                            self.update(row.id, "voided", None, None, &["authorized"])
                                .await
                                .map_err(unavailable)?;
                        }
                        TransferStatus::Posted => self.refund(&row, now).await?,
                    }
                }
                "captured" | "refunding" => self.refund(&row, now).await?,
                other => return Err(unavailable(format!("unknown status {other}"))),
            }
        }
        Err(unavailable("cancellation raced too long"))
    }

    /// Pays a posted authorization back, once.
    async fn refund(&self, row: &Payment, now: i64) -> Result<(), Response> {
        let claimed = basis_store::on_pool!(self.ledger.store(), write, pool => {
            sqlx::query(
                "UPDATE shop_payments SET status = 'refunding', claim_until = $2, updated_at = $3 \
                 WHERE id = $1 AND (status IN ('authorized', 'captured') \
                 OR (status = 'refunding' AND claim_until <= $3))",
            )
            .bind(row.id)
            .bind(now + REFUND_CLAIM_MS)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(unavailable)?;
        if claimed == 0 {
            let again = self.by_id(row.id).await.map_err(unavailable)?;
            return match again.map(|r| r.status) {
                Some(s) if s == "refunding" => Err(unavailable("a refund is in progress")),
                _ => Ok(()),
            };
        }
        let reference = format!("refund:{}", row.id);
        let refund = match self
            .ledger
            .transfer_by_reference(&reference)
            .await
            .map_err(unavailable)?
        {
            Some(t) => t,
            None => {
                let original = self
                    .ledger
                    .transfer_by_id(row.transfer_id.unwrap_or_default())
                    .await
                    .map_err(unavailable)?;
                let currency = Currency::parse(&original.currency).map_err(unavailable)?;
                let mut request = TransferRequest::posted(
                    original.credit_account_id,
                    original.debit_account_id,
                    original.posted_amount.unwrap_or(original.amount),
                    &currency,
                );
                request.reference = Some(reference);
                self.ledger.transfer(&request).await.map_err(unavailable)?
            }
        };
        self.update(row.id, "refunded", None, Some(refund.id), &["refunding"])
            .await
            .map_err(unavailable)?;
        metrics::counter!("payments_sim_total", "op" => "refund").increment(1);
        Ok(())
    }
}

/// What `POST /authorizations` takes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizeBody {
    account: i64,
    payee: i64,
    amount: i64,
    currency: String,
}

async fn authorize(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Option<Json<AuthorizeBody>>,
) -> Response {
    let (early, hang) = sim.before(Op::Authorize).await;
    if let Some(response) = early {
        return response;
    }
    let Some(key) = key_of(&headers) else {
        return missing_key();
    };
    let Some(Json(body)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "a JSON body {account, payee, amount, currency} is required",
        );
    };
    let response = match sim.do_authorize(&key, &body).await {
        Ok(p) => (StatusCode::CREATED, Json(PaymentView::from(&p))).into_response(),
        Err(r) => r,
    };
    sim.after(hang, response).await
}

async fn capture(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let (early, hang) = sim.before(Op::Capture).await;
    if let Some(response) = early {
        return response;
    }
    if key_of(&headers).is_none() {
        return missing_key();
    }
    let response = match sim.do_capture(id).await {
        Ok(p) => Json(PaymentView::from(&p)).into_response(),
        Err(r) => r,
    };
    sim.after(hang, response).await
}

/// What `POST /cancellations` takes.
#[derive(Debug, Deserialize)]
struct CancelBody {
    key: String,
}

async fn cancel(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Option<Json<CancelBody>>,
) -> Response {
    let (early, hang) = sim.before(Op::Cancel).await;
    if let Some(response) = early {
        return response;
    }
    if key_of(&headers).is_none() {
        return missing_key();
    }
    let Some(Json(body)) = body else {
        return problem(StatusCode::BAD_REQUEST, "a JSON body {key} is required");
    };
    let response = match sim.do_cancel(&body.key).await {
        Ok(p) => Json(PaymentView::from(&p)).into_response(),
        Err(r) => r,
    };
    sim.after(hang, response).await
}

async fn read(State(sim): State<Simulator>, Path(id): Path<i64>) -> Response {
    match sim.by_id(id).await {
        Ok(Some(p)) => Json(PaymentView::from(&p)).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "no such authorization"),
        Err(e) => unavailable(e),
    }
}
