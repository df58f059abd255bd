//! The checkout saga: a state machine stored in `shop_sagas`, advanced by whoever calls
//! [`Checkout::advance`] (the server's queue jobs), one step at a time.
//!
//! ```text
//! reserve stock → authorize payment → confirm order → capture payment → mail (outbox)
//!       ↓ a step fails for good, runs out of attempts, or the deadline passes (before capture)
//! compensate from the failed step back to the first, in reverse:
//!   capture → cancel payment (refund) · confirm → un-confirm · authorize → cancel payment
//!   (void) · reserve → release stock;  then the order is `cancelled`
//!       ↓ a compensation runs out of attempts
//! `stuck` (order `failed`), listed for operators, who retry or compensate it
//! ```
//!
//! # Why it survives a crash anywhere
//!
//! - A runner first takes the saga's lease (`lease_until`, `lease_token + 1`) with a
//!   conditional update; every later write is fenced by that token, so a runner that lost
//!   its lease (it stalled, or an operator took over) writes nothing.
//! - The failed step itself is compensated too: a step whose call timed out may have taken
//!   effect, and every compensation is a no-op when its step never happened.
//! - Local steps (reserve, confirm) re-check the fence inside their own transaction, and are
//!   idempotent by their rows (a reservation exists; the order is already confirmed).
//! - Remote steps send a per-step idempotency key that stays the same across attempts
//!   (`order:<id>:authorize`), so a retry after a timeout finds the first attempt's result.
//! - Nothing is kept in memory between steps: after a crash the next runner reads the row and
//!   carries on from `step`, `attempt` and `status`.
//!
//! Every attempt is logged in `shop_saga_log`; `GET /orders/{id}` shows it as `steps`. In a
//! trace, every attempt is a `saga <step> run|compensate` span, a child of the queue job
//! that advanced the saga, with its outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::Instrument as _;

use crate::model::{Error, LogEntry, Order, Saga};
use crate::payments::{PayError, PaymentsClient};
use crate::{Result, Shop, in_tx};

/// Renews the saga's fence in transaction `$tx`: false when another worker holds its lease or
/// it no longer runs. It also locks the saga row until commit (PostgreSQL), so a step's writes
/// and its fence stand or fall together.
macro_rules! fenced {
    ($tx:ident, $saga:expr, $now:expr) => {
        sqlx::query(
            "UPDATE shop_sagas SET updated_at = $3 WHERE id = $1 AND lease_token = $2 \
             AND status = 'running'",
        )
        .bind($saga.id)
        .bind($saga.lease_token)
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            != 0
    };
}

/// How long the steps before capture may take in all before the saga compensates.
pub const DEADLINE_MS: i64 = 10 * 60 * 1000;

/// The forward steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Take the items out of stock.
    Reserve,
    /// Ask the provider to reserve the total on the buyer's account.
    Authorize,
    /// Mark the order confirmed.
    Confirm,
    /// Ask the provider to take the reserved money.
    Capture,
    /// Write the order's `order.completed` event to the outbox, once; the mail consumer
    /// sends the confirmation from it (eventually consistent; never compensated).
    Mail,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [
        Step::Reserve,
        Step::Authorize,
        Step::Confirm,
        Step::Capture,
        Step::Mail,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reserve => "reserve",
            Step::Authorize => "authorize",
            Step::Confirm => "confirm",
            Step::Capture => "capture",
            Step::Mail => "mail",
        }
    }

    /// The step named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The idempotency key of this step of `order` (the same on every attempt).
    pub fn key(self, order: i64) -> String {
        format!("order:{order}:{}", self.as_str())
    }

    /// The idempotency key of this step's compensation.
    pub fn undo_key(self, order: i64) -> String {
        format!("order:{order}:undo-{}", self.as_str())
    }

    fn next(self) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s > self)
    }

    fn prev(self) -> Option<Self> {
        Self::ALL.into_iter().rev().find(|s| *s < self)
    }
}

/// Timing and limits of the saga.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// Backoff before the second attempt (doubling, with jitter, up to `backoff_cap_ms`).
    pub backoff_base_ms: i64,
    /// The longest backoff.
    pub backoff_cap_ms: i64,
    /// Attempts of a forward step before the saga compensates (the mail step retries forever).
    pub max_attempts: i64,
    /// Attempts of a compensation before the saga is parked as `stuck`.
    pub max_compensation_attempts: i64,
    /// How long a runner holds a saga.
    pub lease_ms: i64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            backoff_base_ms: 500,
            backoff_cap_ms: 60_000,
            max_attempts: 6,
            max_compensation_attempts: 8,
            lease_ms: 60_000,
        }
    }
}

impl SagaConfig {
    /// Backoff after failed attempt `attempt` (1-based): between half and all of
    /// `base × 2^(attempt−1)`, capped.
    pub fn backoff_ms(&self, attempt: i64) -> i64 {
        let ceiling = self
            .backoff_base_ms
            .saturating_mul(1_i64 << (attempt - 1).clamp(0, 30))
            .min(self.backoff_cap_ms);
        if ceiling <= 1 {
            return ceiling.max(0);
        }
        ceiling / 2 + rand::random_range(0..=ceiling / 2)
    }
}

/// Failures injected into steps and compensations (tests, drills).
#[derive(Debug, Clone, Default)]
pub struct StepFaults(Arc<Mutex<HashMap<FaultAt, Fault>>>);

/// Where a failure is injected: a step, and whether it is the step's compensation.
type FaultAt = (Step, bool);
/// How many attempts still fail, and whether they fail for good.
type Fault = (u32, bool);

impl StepFaults {
    /// The next `times` attempts of `step` fail with a retryable error.
    pub fn fail(&self, step: Step, times: u32) {
        self.set(step, false, times, false);
    }

    /// The next attempt of `step` fails for good.
    pub fn fail_for_good(&self, step: Step) {
        self.set(step, false, 1, true);
    }

    /// The next `times` attempts of `step`'s compensation fail.
    pub fn fail_compensation(&self, step: Step, times: u32) {
        self.set(step, true, times, false);
    }

    /// Forgets every injected failure.
    pub fn clear(&self) {
        self.0.lock().expect("never poisoned").clear();
    }

    fn set(&self, step: Step, undo: bool, times: u32, fatal: bool) {
        // No await while the lock is held.
        self.0
            .lock()
            .expect("never poisoned")
            .insert((step, undo), (times, fatal));
    }

    fn take(&self, step: Step, undo: bool) -> Option<StepError> {
        let mut map = self.0.lock().expect("never poisoned");
        let (times, fatal) = map.get_mut(&(step, undo))?;
        if *times == 0 {
            return None;
        }
        *times -= 1;
        let msg = format!("injected failure of {}", step.as_str());
        Some(if *fatal {
            StepError::Fail(msg)
        } else {
            StepError::Retry(msg)
        })
    }
}

/// What an advance ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Completed, compensated or stuck: nothing more to do until an operator acts.
    Finished,
    /// Advance it again at `at` (Unix ms): a backoff, or another runner's lease. `token` is
    /// the saga's lease token now; with the saga id it names this wake-up (a deduplication
    /// key), since the next runner's lease will make a new one.
    WaitUntil {
        /// When.
        at: i64,
        /// The lease token the saga holds now.
        token: i64,
    },
}

#[derive(Debug)]
enum StepError {
    Retry(String),
    Fail(String),
    /// The fence failed: this runner no longer holds the saga.
    LeaseLost,
}

/// The checkout saga's runner.
#[derive(Clone)]
pub struct Checkout {
    shop: Shop,
    payments: PaymentsClient,
    config: SagaConfig,
    /// Injected failures.
    pub faults: StepFaults,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("payments", &self.payments.base())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A change to a saga row, persisted with one log line (and maybe the order's status).
struct Transition {
    saga: Saga,
    step: String,
    action: &'static str,
    outcome: &'static str,
    attempt: i64,
    detail: Option<String>,
    order: Option<(&'static str, Option<String>)>,
}

/// The span of one attempt at `step` of `saga` (run or compensation), for the trace
/// exporter; at DEBUG level, so never built without one.
fn step_span(saga: &Saga, step: Step, attempt: i64) -> tracing::Span {
    let action = if saga.status == "compensating" {
        "compensate"
    } else {
        "run"
    };
    tracing::debug_span!(
        target: "basis_shop::saga",
        "saga.step",
        otel.name = %format_args!("saga {} {action}", step.as_str()),
        saga.id = saga.id,
        saga.step = step.as_str(),
        saga.action = action,
        saga.attempt = attempt,
        saga.outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records how a step's attempt ended; a failure marks the span failed.
fn record_step(span: &tracing::Span, outcome: &'static str) {
    if span.is_disabled() {
        return;
    }
    span.record("saga.outcome", outcome);
    if outcome != "done" {
        span.record("otel.status_code", "ERROR");
    }
}

impl Checkout {
    /// A runner of `shop`'s sagas that pays through `payments`.
    pub fn new(shop: Shop, payments: PaymentsClient, config: SagaConfig) -> Self {
        Self {
            shop,
            payments,
            config,
            faults: StepFaults::default(),
        }
    }

    /// The shop.
    pub fn shop(&self) -> &Shop {
        &self.shop
    }

    /// Runs saga `id` as far as it can go now.
    pub async fn advance(&self, id: i64) -> Result<Advance> {
        let now = self.shop.clock.now_ms();
        let Some(mut saga) = self.lease(id, now).await? else {
            let saga = self.saga(id).await?;
            return Ok(match saga.status.as_str() {
                "running" | "compensating" => Advance::WaitUntil {
                    at: saga.next_run_at.max(saga.lease_until),
                    token: saga.lease_token,
                },
                _ => Advance::Finished,
            });
        };
        loop {
            let now = self.shop.clock.now_ms();
            let step = Step::parse(&saga.step)
                .ok_or_else(|| Error::invalid("step", format!("unknown step {}", saga.step)))?;
            let attempt = saga.attempt + 1;
            let mut next = saga.clone();
            next.attempt = attempt;
            let span = step_span(&saga, step, attempt);
            let transition = match saga.status.as_str() {
                "running" => {
                    let outcome = if step < Step::Capture && now > saga.deadline {
                        Err(StepError::Fail("the checkout's deadline passed".into()))
                    } else {
                        self.run_step(&saga, step).instrument(span.clone()).await
                    };
                    match outcome {
                        Ok(authorization) => {
                            next.done_steps.push_str(step.as_str());
                            next.done_steps.push(',');
                            next.authorization_id = authorization.or(saga.authorization_id);
                            next.last_error = None;
                            match step.next() {
                                Some(following) => {
                                    next.step = following.as_str().into();
                                    next.step_key = following.key(saga.id);
                                    next.attempt = 0;
                                }
                                None => next.status = "completed".into(),
                            }
                            Transition::new(next, step, "run", "done", attempt, None)
                        }
                        Err(StepError::LeaseLost) => return self.wait(saga.id).await,
                        Err(StepError::Retry(e))
                            if step == Step::Mail || attempt < self.config.max_attempts =>
                        {
                            next.next_run_at = now + self.config.backoff_ms(attempt);
                            next.lease_until = 0;
                            next.last_error = Some(e.clone());
                            Transition::new(next, step, "run", "retry", attempt, Some(e))
                        }
                        Err(StepError::Retry(e) | StepError::Fail(e)) => {
                            // Compensate from the failed step itself: it may have taken effect.
                            next.status = "compensating".into();
                            next.step_key = step.undo_key(saga.id);
                            next.attempt = 0;
                            next.last_error = Some(e.clone());
                            let reason = format!("{} failed: {e}", step.as_str());
                            let mut t =
                                Transition::new(next, step, "run", "failed", attempt, Some(e));
                            t.order = Some(("pending", Some(reason)));
                            t
                        }
                    }
                }
                "compensating" => match self
                    .compensate_step(&saga, step)
                    .instrument(span.clone())
                    .await
                {
                    Ok(detail) => {
                        next.compensations += 1;
                        metrics::counter!("shop_compensations_total", "step" => step.as_str())
                            .increment(1);
                        let mut t = match step.prev() {
                            Some(prev) => {
                                next.step = prev.as_str().into();
                                next.step_key = prev.undo_key(saga.id);
                                next.attempt = 0;
                                Transition::new(next, step, "compensate", "done", attempt, detail)
                            }
                            None => {
                                next.status = "compensated".into();
                                Transition::new(next, step, "compensate", "done", attempt, detail)
                            }
                        };
                        if t.saga.status == "compensated" {
                            t.order = Some(("cancelled", None));
                        }
                        t
                    }
                    Err(e) if attempt < self.config.max_compensation_attempts => {
                        next.next_run_at = now + self.config.backoff_ms(attempt);
                        next.lease_until = 0;
                        next.last_error = Some(e.clone());
                        Transition::new(next, step, "compensate", "retry", attempt, Some(e))
                    }
                    Err(e) => {
                        next.status = "stuck".into();
                        next.lease_until = 0;
                        next.last_error = Some(e.clone());
                        let mut t =
                            Transition::new(next, step, "compensate", "failed", attempt, Some(e));
                        t.order = Some(("failed", None));
                        t
                    }
                },
                _ => return Ok(Advance::Finished),
            };
            metrics::counter!("shop_saga_steps_total", "step" => step.as_str(),
                "action" => transition.action, "outcome" => transition.outcome)
            .increment(1);
            record_step(&span, transition.outcome);
            drop(span);
            if !self.persist(&transition, saga.lease_token, now).await? {
                return self.wait(saga.id).await;
            }
            saga = transition.saga;
            match saga.status.as_str() {
                "completed" | "compensated" | "stuck" => {
                    metrics::counter!("shop_sagas_total", "outcome" => saga.status.clone())
                        .increment(1);
                    // Let the lease go, so an operator's retry need not wait for it.
                    self.release(saga.id, saga.lease_token).await?;
                    return Ok(Advance::Finished);
                }
                _ if saga.lease_until == 0 => {
                    return Ok(Advance::WaitUntil {
                        at: saga.next_run_at,
                        token: saga.lease_token,
                    });
                }
                _ => {}
            }
        }
    }

    /// When saga `id`, which another runner took over, should be looked at again.
    async fn wait(&self, id: i64) -> Result<Advance> {
        let saga = self.saga(id).await?;
        Ok(match saga.status.as_str() {
            "running" | "compensating" => Advance::WaitUntil {
                at: saga.next_run_at.max(saga.lease_until),
                token: saga.lease_token,
            },
            _ => Advance::Finished,
        })
    }

    /// Takes saga `id`'s lease if it is due and free.
    async fn lease(&self, id: i64, now: i64) -> Result<Option<Saga>> {
        Ok(basis_store::on_pool!(self.shop.store, write, pool => {
            sqlx::query_as(
                "UPDATE shop_sagas SET lease_until = $2, lease_token = lease_token + 1 \
                 WHERE id = $1 AND status IN ('running', 'compensating') \
                 AND next_run_at <= $3 AND lease_until <= $3 RETURNING *",
            )
            .bind(id)
            .bind(now + self.config.lease_ms)
            .bind(now)
            .fetch_optional(pool)
            .await
        })?)
    }

    async fn release(&self, id: i64, token: i64) -> Result<()> {
        basis_store::on_pool!(self.shop.store, write, pool => {
            sqlx::query("UPDATE shop_sagas SET lease_until = 0 WHERE id = $1 AND lease_token = $2")
                .bind(id)
                .bind(token)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Writes `t` if this runner still holds the saga (`false` otherwise).
    async fn persist(&self, t: &Transition, token: i64, now: i64) -> Result<bool> {
        let s = &t.saga;
        let held = in_tx!(self.shop.store, tx => {
            let updated = sqlx::query(
                "UPDATE shop_sagas SET status = $3, step = $4, attempt = $5, step_key = $6, \
                 next_run_at = $7, lease_until = $8, done_steps = $9, authorization_id = $10, \
                 last_error = $11, compensations = $12, updated_at = $13 \
                 WHERE id = $1 AND lease_token = $2",
            )
            .bind(s.id)
            .bind(token)
            .bind(&s.status)
            .bind(&s.step)
            .bind(s.attempt)
            .bind(&s.step_key)
            .bind(s.next_run_at)
            .bind(s.lease_until)
            .bind(&s.done_steps)
            .bind(s.authorization_id)
            .bind(&s.last_error)
            .bind(s.compensations)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO shop_saga_log (saga_id, step, action, outcome, attempt, detail, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(s.id)
            .bind(&t.step)
            .bind(t.action)
            .bind(t.outcome)
            .bind(t.attempt)
            .bind(&t.detail)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if let Some((status, reason)) = &t.order {
                let before: String =
                    sqlx::query_scalar("SELECT status FROM shop_orders WHERE id = $1")
                        .bind(s.id)
                        .fetch_one(&mut *tx)
                        .await?;
                if *status == "cancelled" && before != "cancelled" {
                    let event = order_event(ORDER_CANCELLED, s.id, now);
                    basis_store::outbox::append(&mut *tx, &event).await?;
                }
                sqlx::query(
                    "UPDATE shop_orders SET status = $2, \
                     failure_reason = COALESCE($3, failure_reason), updated_at = $4 WHERE id = $1",
                )
                .bind(s.id)
                .bind(*status)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            true
        });
        Ok(held)
    }

    async fn run_step(&self, saga: &Saga, step: Step) -> Result<Option<i64>, StepError> {
        if let Some(injected) = self.faults.take(step, false) {
            return Err(injected);
        }
        let order = self.shop.order(saga.id).await.map_err(retry)?;
        match step {
            Step::Reserve => self.reserve(saga).await.map_err(retry)?.map(|()| None),
            Step::Authorize => {
                let currency = basis_ledger::Currency::parse(&order.currency).map_err(fail)?;
                let payee = self.shop.shop_account(&currency).await.map_err(retry)?;
                let auth = self
                    .payments
                    .authorize(
                        &saga.step_key,
                        order.payment_account,
                        payee,
                        order.total,
                        &order.currency,
                    )
                    .await
                    .map_err(pay)?;
                Ok(Some(auth.id))
            }
            Step::Confirm => self.confirm(saga).await.map_err(retry)?.map(|()| None),
            Step::Capture => {
                let auth = saga
                    .authorization_id
                    .ok_or_else(|| StepError::Fail("no authorization to capture".into()))?;
                self.payments
                    .capture(&saga.step_key, auth)
                    .await
                    .map_err(pay)?;
                Ok(None)
            }
            Step::Mail => self.request_mail(saga).await.map_err(retry)?.map(|()| None),
        }
    }

    /// Takes the items out of stock, all or none, once per order.
    async fn reserve(&self, saga: &Saga) -> Result<Result<(), StepError>> {
        let now = self.shop.clock.now_ms();
        let items = self.shop.order_items(saga.id).await?;
        Ok(in_tx!(self.shop.store, tx => {
            // The fence, first.
            if !fenced!(tx, saga, now) {
                return Ok(Err(StepError::LeaseLost));
            }
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM shop_reservations WHERE order_id = $1",
            )
            .bind(saga.id)
            .fetch_one(&mut *tx)
            .await?;
            if held == 0 {
                for item in &items {
                    let taken = sqlx::query(
                        "UPDATE shop_products SET stock = stock - $2, updated_at = $3 \
                         WHERE id = $1 AND stock >= $2",
                    )
                    .bind(item.product_id)
                    .bind(item.quantity)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if taken.rows_affected() == 0 {
                        // Dropping the transaction puts back what earlier items took.
                        return Ok(Err(StepError::Fail(format!(
                            "product {} is out of stock",
                            item.product_id
                        ))));
                    }
                    sqlx::query(
                        "INSERT INTO shop_reservations (order_id, product_id, quantity) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(saga.id)
                    .bind(item.product_id)
                    .bind(item.quantity)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            Ok(())
        }))
    }

    async fn confirm(&self, saga: &Saga) -> Result<Result<(), StepError>> {
        let now = self.shop.clock.now_ms();
        Ok(in_tx!(self.shop.store, tx => {
            if !fenced!(tx, saga, now) {
                return Ok(Err(StepError::LeaseLost));
            }
            let status: String = sqlx::query_scalar("SELECT status FROM shop_orders WHERE id = $1")
                .bind(saga.id)
                .fetch_one(&mut *tx)
                .await?;
            match status.as_str() {
                "pending" => {
                    sqlx::query(
                        "UPDATE shop_orders SET status = 'confirmed', updated_at = $2 WHERE id = $1",
                    )
                    .bind(saga.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    basis_store::outbox::append(&mut *tx, &order_event(ORDER_CONFIRMED, saga.id, now))
                        .await?;
                }
                "confirmed" => {}
                other => return Ok(Err(StepError::Fail(format!("the order is {other}")))),
            }
            Ok(())
        }))
    }

    /// The mail step: writes the order's `order.completed` event to the outbox with its
    /// `shop_mails` row, in one transaction fenced by the lease. A second run (a crash before
    /// the step was recorded) finds the row and writes nothing.
    async fn request_mail(&self, saga: &Saga) -> Result<Result<(), StepError>> {
        let now = self.shop.clock.now_ms();
        Ok(in_tx!(self.shop.store, tx => {
            if !fenced!(tx, saga, now) {
                return Ok(Err(StepError::LeaseLost));
            }
            let order: Order = sqlx::query_as("SELECT * FROM shop_orders WHERE id = $1")
                .bind(saga.id)
                .fetch_one(&mut *tx)
                .await?;
            if order.status != "confirmed" {
                return Ok(Err(StepError::Retry(format!("the order is {}", order.status))));
            }
            let inserted = sqlx::query(
                "INSERT INTO shop_mails (order_id, requested_at) VALUES ($1, $2) \
                 ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                basis_store::outbox::append(&mut *tx, &completed_event(&order, now)).await?;
            }
            Ok(())
        }))
    }

    /// Undoes `step` of `saga` (a no-op when the step never took effect).
    async fn compensate_step(&self, saga: &Saga, step: Step) -> Result<Option<String>, String> {
        if let Some(injected) = self.faults.take(step, true) {
            return Err(match injected {
                StepError::Retry(e) | StepError::Fail(e) => e,
                StepError::LeaseLost => "lease lost".into(),
            });
        }
        match step {
            Step::Reserve => {
                let released = self
                    .release_stock(saga.id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some(format!("released {released} units")))
            }
            Step::Authorize | Step::Capture => {
                let status = self
                    .payments
                    .cancel(&saga.step_key, &Step::Authorize.key(saga.id))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some(format!("payment {status}")))
            }
            Step::Confirm => {
                let now = self.shop.clock.now_ms();
                let cancelled: Result<()> = async {
                    in_tx!(self.shop.store, tx => {
                        let done = sqlx::query(
                            "UPDATE shop_orders SET status = 'cancelled', updated_at = $2 \
                             WHERE id = $1 AND status = 'confirmed'",
                        )
                        .bind(saga.id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        if done.rows_affected() == 1 {
                            let event = order_event(ORDER_CANCELLED, saga.id, now);
                            basis_store::outbox::append(&mut *tx, &event).await?;
                        }
                    });
                    Ok(())
                }
                .await;
                cancelled.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Step::Mail => Ok(None),
        }
    }

    /// Puts back what order `id` reserved, once; returns the units released now.
    async fn release_stock(&self, id: i64) -> Result<i64> {
        let now = self.shop.clock.now_ms();
        Ok(in_tx!(self.shop.store, tx => {
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT product_id, quantity FROM shop_reservations \
                 WHERE order_id = $1 AND released_at IS NULL",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let mut released = 0;
            for (product, quantity) in rows {
                let marked = sqlx::query(
                    "UPDATE shop_reservations SET released_at = $3 \
                     WHERE order_id = $1 AND product_id = $2 AND released_at IS NULL",
                )
                .bind(id)
                .bind(product)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if marked.rows_affected() == 1 {
                    sqlx::query("UPDATE shop_products SET stock = stock + $2 WHERE id = $1")
                        .bind(product)
                        .bind(quantity)
                        .execute(&mut *tx)
                        .await?;
                    released += quantity;
                }
            }
            released
        }))
    }

    /// The saga of order `id`.
    pub async fn saga(&self, id: i64) -> Result<Saga> {
        let found: Option<Saga> = basis_store::on_pool!(self.shop.store, write, pool => {
            sqlx::query_as("SELECT * FROM shop_sagas WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        found.ok_or(Error::OrderNotFound(id))
    }

    /// Every attempt of saga `id`, in order.
    pub async fn log(&self, id: i64) -> Result<Vec<LogEntry>> {
        Ok(basis_store::on_pool!(self.shop.store, write, pool => {
            sqlx::query_as("SELECT * FROM shop_saga_log WHERE saga_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(pool)
                .await
        })?)
    }

    /// Sagas in `status` (any when `None`) with ids after `after`, at most `limit`.
    pub async fn list(&self, status: Option<&str>, after: i64, limit: i64) -> Result<Vec<Saga>> {
        Ok(basis_store::on_pool!(self.shop.store, read, pool => {
            sqlx::query_as(
                "SELECT * FROM shop_sagas WHERE ($1 IS NULL OR status = $1) AND id > $2 \
                 ORDER BY id LIMIT $3",
            )
            .bind(status)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Sagas due now whose runner's lease (if any) ran out, with their due time and lease
    /// token (see [`Advance::WaitUntil`]): what a
    /// sweeper hands to the queue when a job was lost (a crash between commit and enqueue).
    pub async fn due(&self, limit: i64) -> Result<Vec<(i64, i64, i64)>> {
        let now = self.shop.clock.now_ms();
        Ok(basis_store::on_pool!(self.shop.store, write, pool => {
            sqlx::query_as(
                "SELECT id, next_run_at, lease_token FROM shop_sagas WHERE status IN ('running', 'compensating') \
                 AND next_run_at <= $1 AND lease_until <= $1 ORDER BY next_run_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?)
    }

    /// An operator's retry: a `stuck`, running or compensating saga runs its current step (or
    /// compensation) again now, with a fresh attempt count. 409 on a finished one.
    pub async fn retry(&self, id: i64) -> Result<Saga> {
        self.operator(
            id,
            "CASE WHEN status = 'stuck' THEN 'compensating' ELSE status END",
            "retried by an operator",
        )
        .await
    }

    /// An operator's compensate: the saga stops going forward and undoes what it did, from
    /// its current step back. 409 on a finished one.
    pub async fn compensate(&self, id: i64) -> Result<Saga> {
        self.operator(
            id,
            "'compensating'",
            "compensation requested by an operator",
        )
        .await
    }

    async fn operator(&self, id: i64, status_sql: &str, note: &str) -> Result<Saga> {
        let now = self.shop.clock.now_ms();
        // The new token fences out any runner working on it now.
        let sql = format!(
            "UPDATE shop_sagas SET status = {status_sql}, attempt = 0, next_run_at = $2, \
             lease_until = 0, lease_token = lease_token + 1, \
             step_key = CASE WHEN {status_sql} = 'compensating' \
                 THEN 'order:' || id || ':undo-' || step ELSE step_key END, \
             last_error = $3, updated_at = $2 \
             WHERE id = $1 AND status IN ('running', 'compensating', 'stuck') RETURNING *"
        );
        let updated: Option<Saga> = basis_store::on_pool!(self.shop.store, write, pool => {
            sqlx::query_as(&sql)
                .bind(id)
                .bind(now)
                .bind(note)
                .fetch_optional(pool)
                .await
        })?;
        match updated {
            Some(saga) => {
                basis_store::on_pool!(self.shop.store, write, pool => {
                    sqlx::query(
                        "INSERT INTO shop_saga_log (saga_id, step, action, outcome, attempt, detail, at) \
                         VALUES ($1, $2, 'run', 'retry', 0, $3, $4)",
                    )
                    .bind(id)
                    .bind(&saga.step)
                    .bind(note)
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                })?;
                Ok(saga)
            }
            None => {
                self.saga(id).await?;
                Err(Error::SagaFinished(id))
            }
        }
    }

    /// Sets the gauge `shop_sagas{status, step}` from the table.
    pub async fn refresh_gauges(&self) -> Result<()> {
        let rows: Vec<(String, String, i64)> = basis_store::on_pool!(self.shop.store, read, pool => {
            sqlx::query_as("SELECT status, step, COUNT(*) FROM shop_sagas GROUP BY status, step")
                .fetch_all(pool)
                .await
        })?;
        for status in [
            "running",
            "compensating",
            "completed",
            "compensated",
            "stuck",
        ] {
            for step in Step::ALL {
                let n = rows
                    .iter()
                    .find(|(s, p, _)| s == status && p == step.as_str())
                    .map_or(0, |r| r.2);
                metrics::gauge!("shop_sagas", "status" => status, "step" => step.as_str())
                    .set(n as f64);
            }
        }
        Ok(())
    }

    /// The order to mail for event `event_id` of order `id` (an `order.completed` event),
    /// or `None` when the mail consumer already sent it or the order is not confirmed.
    pub async fn mail_to_send(&self, event_id: i64, id: i64) -> Result<Option<Order>> {
        if basis_store::outbox::was_processed(&self.shop.store, MAIL_CONSUMER, event_id).await? {
            return Ok(None);
        }
        let order: Order = self.shop.order(id).await?;
        Ok((order.status == "confirmed").then_some(order))
    }

    /// Records that the mail of event `event_id` (order `id`) went out: the event as
    /// processed by [`MAIL_CONSUMER`] and the order's `sent_at`, in one transaction. Called
    /// after sending, so a crash in between sends it again (at least once); a redelivered
    /// event finds the record and sends nothing. False when it was recorded already.
    pub async fn mail_sent(&self, event_id: i64, id: i64) -> Result<bool> {
        let now = self.shop.clock.now_ms();
        Ok(in_tx!(self.shop.store, tx => {
            use basis_store::outbox::OutboxConn as _;
            let first = (*tx).mark_processed(MAIL_CONSUMER, event_id, now).await?;
            sqlx::query("UPDATE shop_mails SET sent_at = COALESCE(sent_at, $2) WHERE order_id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            first
        }))
    }

    /// Writes the `order.completed` event of a confirmed order that has none (a mail job
    /// queued before mails went through the outbox); true when it wrote one.
    pub async fn request_mail_once(&self, id: i64) -> Result<bool> {
        let now = self.shop.clock.now_ms();
        Ok(in_tx!(self.shop.store, tx => {
            let order: Option<Order> =
                sqlx::query_as("SELECT * FROM shop_orders WHERE id = $1 AND status = 'confirmed'")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let mut wrote = false;
            if let Some(order) = order {
                let inserted = sqlx::query(
                    "INSERT INTO shop_mails (order_id, requested_at) VALUES ($1, $2) \
                     ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 {
                    basis_store::outbox::append(&mut *tx, &completed_event(&order, now)).await?;
                    wrote = true;
                }
            }
            wrote
        }))
    }
}

impl Transition {
    fn new(
        saga: Saga,
        step: Step,
        action: &'static str,
        outcome: &'static str,
        attempt: i64,
        detail: Option<String>,
    ) -> Self {
        Self {
            saga,
            step: step.as_str().into(),
            action,
            outcome,
            attempt,
            detail,
            order: None,
        }
    }
}

/// The event kind announcing a confirmed order.
pub const ORDER_CONFIRMED: &str = "order.confirmed";
/// The event kind announcing a cancelled order.
pub const ORDER_CANCELLED: &str = "order.cancelled";
/// The event kind announcing an order paid and confirmed for good (the saga's last step);
/// the confirmation mail is sent from it.
pub const ORDER_COMPLETED: &str = "order.completed";
/// The name under which the mail consumer records the events it handled.
pub const MAIL_CONSUMER: &str = "shop-mail";

/// The outbox event of an order's status change, written in the transaction that makes it
/// (the saga's lease or the order row is locked by then, so one order's events keep their
/// order; see `basis_store::outbox`).
fn order_event(kind: &'static str, order: i64, now: i64) -> basis_store::outbox::NewEvent {
    basis_store::outbox::NewEvent {
        kind,
        aggregate: format!("order:{order}"),
        payload: serde_json::json!({ "orderId": order, "status": kind.trim_start_matches("order.") }),
        at: now,
    }
}

/// The `order.completed` event: what the confirmation mail needs to be addressed.
fn completed_event(order: &Order, now: i64) -> basis_store::outbox::NewEvent {
    basis_store::outbox::NewEvent {
        kind: ORDER_COMPLETED,
        aggregate: format!("order:{}", order.id),
        payload: serde_json::json!({
            "orderId": order.id,
            "status": "confirmed",
            "total": order.total,
            "currency": order.currency,
        }),
        at: now,
    }
}

fn retry(e: impl std::fmt::Display) -> StepError {
    StepError::Retry(e.to_string())
}

fn fail(e: impl std::fmt::Display) -> StepError {
    StepError::Fail(e.to_string())
}

fn pay(e: PayError) -> StepError {
    match e {
        PayError::Declined(d) => StepError::Fail(format!("declined: {d}")),
        PayError::Unavailable(d) => StepError::Retry(format!("provider unavailable: {d}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_order_and_compensate_in_reverse() {
        assert_eq!(Step::Reserve.next(), Some(Step::Authorize));
        assert_eq!(Step::Capture.next(), Some(Step::Mail));
        assert_eq!(Step::Mail.next(), None);
        assert_eq!(Step::Capture.prev(), Some(Step::Confirm));
        assert_eq!(Step::Reserve.prev(), None);
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let c = SagaConfig {
            backoff_base_ms: 100,
            backoff_cap_ms: 1_000,
            ..SagaConfig::default()
        };
        for _ in 0..50 {
            assert!((50..=100).contains(&c.backoff_ms(1)));
            assert!((200..=400).contains(&c.backoff_ms(3)));
            assert!((500..=1_000).contains(&c.backoff_ms(40)));
        }
        let zero = SagaConfig {
            backoff_base_ms: 0,
            ..c
        };
        assert_eq!(zero.backoff_ms(5), 0);
    }
}
