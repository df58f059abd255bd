//! The shop's queue jobs: advancing a saga, and the confirmation mail, sent from the outbox's
//! `order.completed` event (at least once, deduplicated by event id, and never for an order
//! that is not confirmed).

use std::sync::Arc;

use basis_queue::{ClaimedJob, JobError};
use basis_shop::saga::{Advance, ORDER_COMPLETED};
use basis_store::users;
use serde_json::{Value, json};

use crate::jobs::context::JobContext;

fn id_of(job: &ClaimedJob, member: &str) -> Result<i64, JobError> {
    job.payload[member]
        .as_i64()
        .ok_or_else(|| JobError::bad_payload(format!("no integer {member}")))
}

/// Advances one saga as far as it goes now, then enqueues its next wake-up.
pub async fn advance(ctx: Arc<JobContext>, job: ClaimedJob) -> Result<Option<Value>, JobError> {
    let id = id_of(&job, "sagaId")?;
    let Some(shop) = &ctx.shop else {
        return Err(JobError::Retry("this process runs no shop".into()));
    };
    match shop.checkout.advance(id).await {
        Ok(Advance::Finished) => Ok(Some(json!({"finished": true}))),
        Ok(Advance::WaitUntil { at, token }) => {
            shop.nudge(id, at, token)
                .await
                .map_err(|e| JobError::Retry(e.to_string()))?;
            Ok(Some(json!({"next": at})))
        }
        Err(basis_shop::Error::OrderNotFound(_)) => Err(JobError::Fatal(format!("no saga {id}"))),
        Err(err) => Err(JobError::Retry(err.to_string())),
    }
}

/// The `events` topic's group whose queue the confirmation mail is sent from.
pub const MAIL_GROUP: &str = "shop-mail";

/// The event kinds [`MAIL_GROUP`] subscribes to: the ones [`order_mail`] acts on.
pub const MAIL_KINDS: &[&str] = &[ORDER_COMPLETED];

/// The mail consumer: an `order.completed` event becomes the order's confirmation mail
/// (other kinds are not for it). At least once: the event is recorded as processed only
/// after the mail went out, so a crash in between sends it again, and a failed send is
/// retried by the queue; a redelivered event that was recorded sends nothing.
pub async fn order_mail(ctx: Arc<JobContext>, job: ClaimedJob) -> Result<Option<Value>, JobError> {
    let event = crate::outbox::envelope(&job.payload)
        .ok_or_else(|| JobError::bad_payload("not an outbox event"))?;
    if event.kind != ORDER_COMPLETED {
        return Ok(None);
    }
    let id = event.data["orderId"]
        .as_i64()
        .ok_or_else(|| JobError::bad_payload("no integer orderId"))?;
    let Some(shop) = &ctx.shop else {
        return Err(JobError::Retry("this process runs no shop".into()));
    };
    let retry = |e: basis_shop::Error| JobError::Retry(e.to_string());
    let Some(order) = shop
        .checkout
        .mail_to_send(event.id, id)
        .await
        .map_err(retry)?
    else {
        return Ok(Some(json!({"skipped": "already sent or not confirmed"})));
    };
    if let Some(mailer) = &ctx.mailer
        && let Some(user) = users::find(&ctx.store, &order.buyer_id)
            .await
            .map_err(|e| JobError::Retry(e.to_string()))?
    {
        let body = format!(
            "Your order {} is confirmed: {} {} (minor units) paid from account {}.\n",
            order.id, order.total, order.currency, order.payment_account
        );
        mailer
            .send(&user.email, &format!("Order {} confirmed", order.id), body)
            .await
            .map_err(|e| JobError::Retry(format!("confirmation mail not delivered: {e}")))?;
    }
    if shop
        .checkout
        .mail_sent(event.id, order.id)
        .await
        .map_err(retry)?
    {
        metrics::counter!("shop_mails_total").increment(1);
    }
    Ok(Some(json!({"sent": true})))
}

/// A mail job queued before mails went through the outbox: writes the order's
/// `order.completed` event if it has none, and the mail consumer takes it from there.
pub async fn legacy_order_mail(
    ctx: Arc<JobContext>,
    job: ClaimedJob,
) -> Result<Option<Value>, JobError> {
    let id = id_of(&job, "orderId")?;
    let Some(shop) = &ctx.shop else {
        return Err(JobError::Retry("this process runs no shop".into()));
    };
    let wrote = shop
        .checkout
        .request_mail_once(id)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    Ok(Some(json!({"requested": wrote})))
}
