//! The confirmation mail goes through the outbox: the saga's last step writes the order's
//! `order.completed` event, and the mail consumer sends it over real SMTP, recording the
//! event as processed only after sending. A redelivered event sends nothing, one that was
//! never recorded (a crash between sending and recording) is sent again, and an event of an
//! order that is not confirmed sends nothing.

use basis_queue::{JobStatus, NewJob};
use basis_server::jobs::SHOP_MAIL_EVENTS_QUEUE;
use basis_shop::saga::{MAIL_CONSUMER, ORDER_COMPLETED, Step};
use serde_json::json;

use crate::helpers::Engine;
use crate::jobs_support::{backend, eventually};
use crate::on_both_engines;
use crate::shop_support::ShopFixture;
use crate::smtp_sink::SmtpSink;

on_both_engines!(a_completed_checkout_mails_its_buyer_at_least_once_and_a_redelivery_never);

/// (requested, sent) of order `id`'s mail row, and the event ids its consumer recorded.
async fn mail_state(f: &ShopFixture, id: i64) -> (Option<(i64, Option<i64>)>, Vec<i64>) {
    let store = &f.app.state.store;
    let row: Option<(i64, Option<i64>)> = basis_store::on_pool!(store, write, pool => {
        sqlx::query_as("SELECT requested_at, sent_at FROM shop_mails WHERE order_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })
    .unwrap();
    let events: Vec<i64> = basis_store::on_pool!(store, write, pool => {
        sqlx::query_scalar("SELECT event_id FROM processed_events WHERE consumer = $1 ORDER BY event_id")
            .bind(MAIL_CONSUMER)
            .fetch_all(pool)
            .await
    })
    .unwrap();
    (row, events)
}

/// Delivers the `order.completed` event `event_id` of order `id` to the mail consumer again,
/// as the relay would after a crash, and waits for it to be handled.
async fn redeliver(f: &ShopFixture, event_id: i64, id: i64) {
    let envelope = json!({
        "id": event_id, "kind": ORDER_COMPLETED, "aggregate": format!("order:{id}"),
        "at": 0, "data": {"orderId": id, "status": "confirmed"},
    });
    let job = backend(&f.app)
        .enqueue(NewJob::new(
            SHOP_MAIL_EVENTS_QUEUE,
            ORDER_COMPLETED,
            envelope,
        ))
        .await
        .unwrap();
    assert_eq!(f.app.backend_job_finished(&job.id).await, JobStatus::Done);
}

async fn a_completed_checkout_mails_its_buyer_at_least_once_and_a_redelivery_never(engine: Engine) {
    let mut sink = SmtpSink::start().await;
    let f = ShopFixture::with_smtp(&engine, 10_000, 3, Some(sink.url())).await;
    let lamp = f.product("Lamp", 2500, 3).await;
    let id = f
        .order("mail-1", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    assert_eq!(f.finished(id).await["status"], "confirmed");

    let mail = sink.next().await;
    assert_eq!(mail.to, vec!["buyer@example.com".to_owned()]);
    assert!(
        mail.data
            .contains(&format!("Subject: Order {id} confirmed")),
        "{}",
        mail.data
    );
    // Recorded after the send: the row's sent_at and one processed event.
    let (row, events) = eventually("the mail recorded as sent", || async {
        let state = mail_state(&f, id).await;
        state
            .0
            .is_some_and(|(_, sent)| sent.is_some())
            .then_some(state)
    })
    .await;
    assert!(row.is_some());
    assert_eq!(events.len(), 1, "one event handled: {events:?}");
    let event = events[0];

    // Delivered again (the relay published twice): no second mail.
    redeliver(&f, event, id).await;
    assert!(sink.mail.try_recv().is_err(), "a redelivery sent a mail");

    // A consumer that crashed after sending but before recording: the event comes back
    // with no record, and the mail goes again (at least once, never lost).
    let store = &f.app.state.store;
    basis_store::on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM processed_events WHERE consumer = $1")
            .bind(MAIL_CONSUMER)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
    .unwrap();
    redeliver(&f, event, id).await;
    let again = sink.next().await;
    assert!(
        again
            .data
            .contains(&format!("Subject: Order {id} confirmed"))
    );
    assert_eq!(mail_state(&f, id).await.1, vec![event]);

    // An order that is not confirmed gets no mail, whatever event arrives for it.
    f.app
        .state
        .shop
        .checkout
        .faults
        .fail_for_good(Step::Capture);
    let cancelled = f
        .order("mail-2", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    assert_eq!(f.finished(cancelled).await["status"], "cancelled");
    assert_eq!(mail_state(&f, cancelled).await.0, None, "no mail requested");
    redeliver(&f, event + 1_000, cancelled).await;
    assert!(
        sink.mail.try_recv().is_err(),
        "a mail for a cancelled order"
    );
}
