//! The shop's queue jobs: advancing a saga, and the confirmation mail (sent at most once per
//! order, and never for an order that is not confirmed).

use std::sync::Arc;

use basis_queue::{ClaimedJob, JobError};
use basis_shop::saga::Advance;
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

/// Sends an order's confirmation mail, once.
pub async fn order_mail(ctx: Arc<JobContext>, job: ClaimedJob) -> Result<Option<Value>, JobError> {
    let id = id_of(&job, "orderId")?;
    let Some(shop) = &ctx.shop else {
        return Err(JobError::Retry("this process runs no shop".into()));
    };
    // Claimed before sending: a crash between the two loses this mail rather than sending
    // it twice (the order page still shows the order confirmed).
    let first = shop
        .checkout
        .claim_mail(id)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    if !first {
        return Ok(Some(json!({"skipped": "already sent or not confirmed"})));
    }
    metrics::counter!("shop_mails_total").increment(1);
    let order = shop
        .shop
        .order(id)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    if let Some(mailer) = &ctx.mailer
        && let Some(user) = users::find(&ctx.store, &order.buyer_id)
            .await
            .map_err(|e| JobError::Retry(e.to_string()))?
    {
        let body = format!(
            "Your order {} is confirmed: {} {} (minor units) paid from account {}.\n",
            order.id, order.total, order.currency, order.payment_account
        );
        if let Err(err) = mailer
            .send(&user.email, &format!("Order {} confirmed", order.id), body)
            .await
        {
            tracing::warn!(error = %err, order = id, "confirmation mail not delivered");
        }
    }
    Ok(Some(json!({"sent": true})))
}
