//! The checkout saga end to end over HTTP, with the payment provider simulator in-process on
//! a loopback port (real HTTP, real timeouts): success, each step failing in turn with its
//! compensations, the provider timing out after taking the money, and a stuck compensation
//! that operators see and retry.

use basis_shop::payments::sim::{Fault, Op};
use basis_shop::saga::Step;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Engine, assert_problem};
use crate::ledger_support::{call, expect};
use crate::on_both_engines;
use crate::shop_support::{ShopFixture, done, steps};

on_both_engines!(
    a_checkout_reserves_authorizes_confirms_captures_and_mails,
    each_step_failing_for_good_runs_the_compensations_in_reverse,
    provider_failures_are_retried_and_refusals_cancel_the_order,
    a_provider_that_times_out_after_taking_the_money_refunds_it,
    a_stuck_compensation_is_listed_for_operators_and_completes_on_retry,
);

async fn a_checkout_reserves_authorizes_confirms_captures_and_mails(engine: Engine) {
    let f = ShopFixture::new(&engine, 10_000, 3).await;
    let lamp = f.product("Lamp", 2500, 3).await;
    let bulb = f.product("Bulb", 300, 10).await;
    let id = f
        .order(
            "checkout-1",
            json!([{"productId": lamp, "quantity": 2}, {"productId": bulb, "quantity": 5}]),
        )
        .await;
    let order = f.finished(id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["sagaStatus"], "completed");
    assert_eq!(order["total"], 6_500);
    assert_eq!(
        done(&order),
        [
            "run:reserve",
            "run:authorize",
            "run:confirm",
            "run:capture",
            "run:mail"
        ]
    );
    assert_eq!((f.stock(lamp).await, f.stock(bulb).await), (1, 5));
    assert_eq!(
        f.wallet().await,
        (3_500, 0),
        "charged once, nothing left reserved"
    );
    // Running the saga again changes nothing (the mail: see shop_mail.rs).
    let checkout = &f.app.state.shop.checkout;
    checkout.advance(id).await.unwrap();
    assert_eq!(f.wallet().await, (3_500, 0));
    assert_eq!(f.get(id).await["steps"].as_array().unwrap().len(), 5);
}

async fn each_step_failing_for_good_runs_the_compensations_in_reverse(engine: Engine) {
    let f = ShopFixture::new(&engine, 100_000, 3).await;
    let lamp = f.product("Lamp", 2500, 50).await;
    let faults = &f.app.state.shop.checkout.faults;
    let cases = [
        (Step::Reserve, vec!["undo:reserve"]),
        (
            Step::Authorize,
            vec!["run:reserve", "undo:authorize", "undo:reserve"],
        ),
        (
            Step::Confirm,
            vec![
                "run:reserve",
                "run:authorize",
                "undo:confirm",
                "undo:authorize",
                "undo:reserve",
            ],
        ),
        (
            Step::Capture,
            vec![
                "run:reserve",
                "run:authorize",
                "run:confirm",
                "undo:capture",
                "undo:confirm",
                "undo:authorize",
                "undo:reserve",
            ],
        ),
    ];
    for (step, expected) in cases {
        faults.fail_for_good(step);
        let id = f
            .order(
                &format!("fail-{}", step.as_str()),
                json!([{"productId": lamp, "quantity": 2}]),
            )
            .await;
        let order = f.finished(id).await;
        assert_eq!(order["status"], "cancelled", "{step:?}: {order}");
        assert_eq!(order["sagaStatus"], "compensated");
        assert_eq!(done(&order), expected, "{step:?}");
        let failed: Vec<_> = steps(&order)
            .into_iter()
            .filter(|(_, _, o)| o == "failed")
            .collect();
        assert_eq!(
            failed,
            [(
                step.as_str().to_owned(),
                "run".to_owned(),
                "failed".to_owned()
            )]
        );
        assert!(
            order["failureReason"]
                .as_str()
                .unwrap()
                .starts_with(step.as_str()),
            "{order}"
        );
        assert_eq!(f.stock(lamp).await, 50, "{step:?}: the stock came back");
        assert_eq!(
            f.wallet().await,
            (100_000, 0),
            "{step:?}: nothing charged or held"
        );
    }
}

async fn provider_failures_are_retried_and_refusals_cancel_the_order(engine: Engine) {
    let f = ShopFixture::new(&engine, 10_000, 4).await;
    let lamp = f.product("Lamp", 2500, 10).await;
    let sim = f
        .app
        .state
        .shop
        .sim_faults
        .clone()
        .expect("the in-process simulator");
    // Two 503s, then success: retried with the same key, charged once.
    sim.script(Op::Authorize, Fault::Fail, 2);
    sim.script(Op::Capture, Fault::Fail, 1);
    let id = f
        .order("flaky", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    let order = f.finished(id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let retries: Vec<_> = steps(&order)
        .into_iter()
        .filter(|(_, _, o)| o == "retry")
        .map(|(s, _, _)| s)
        .collect();
    assert_eq!(retries, ["authorize", "authorize", "capture"]);
    assert_eq!(f.wallet().await, (7_500, 0));
    // A refusal is not retried.
    sim.script(Op::Authorize, Fault::Decline, 1);
    let id = f
        .order("declined", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    let order = f.finished(id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert!(
        order["failureReason"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{order}"
    );
    // Not enough money: the provider's ledger refuses; the order is cancelled, stock back.
    let id = f
        .order("too-dear", json!([{"productId": lamp, "quantity": 4}]))
        .await;
    let order = f.finished(id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(f.stock(lamp).await, 9);
    // A provider that never answers: attempts run out, the order is cancelled.
    sim.script(Op::Authorize, Fault::Fail, 4);
    let id = f
        .order("down", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    let order = f.finished(id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(f.wallet().await, (7_500, 0));
    assert_eq!(f.stock(lamp).await, 9);
}

async fn a_provider_that_times_out_after_taking_the_money_refunds_it(engine: Engine) {
    let f = ShopFixture::new(&engine, 10_000, 2).await;
    let lamp = f.product("Lamp", 2500, 10).await;
    let sim = f
        .app
        .state
        .shop
        .sim_faults
        .clone()
        .expect("the in-process simulator");
    // The capture goes through, but every answer comes after the client gave up.
    sim.script(Op::Capture, Fault::Hang, 2);
    let id = f
        .order("hung", json!([{"productId": lamp, "quantity": 2}]))
        .await;
    let order = f.finished(id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    let undo: Vec<_> = order["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "compensate" && s["step"] == "capture")
        .map(|s| s["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(undo, ["payment refunded"], "{order}");
    assert_eq!(f.wallet().await, (10_000, 0), "the money came back");
    assert_eq!(f.stock(lamp).await, 10);
}

async fn a_stuck_compensation_is_listed_for_operators_and_completes_on_retry(engine: Engine) {
    let f = ShopFixture::new(&engine, 10_000, 2).await;
    let (app, admin, buyer) = (&f.app, &f.admin, &f.buyer);
    let lamp = f.product("Lamp", 2500, 10).await;
    let faults = &app.state.shop.checkout.faults;
    faults.fail_for_good(Step::Capture);
    faults.fail_compensation(Step::Capture, 1_000);
    let id = f
        .order("stuck", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    let order = f.finished(id).await;
    assert_eq!(
        (order["status"].as_str(), order["sagaStatus"].as_str()),
        (Some("failed"), Some("stuck"))
    );
    assert_eq!(f.wallet().await, (10_000, 2_500), "still held while stuck");
    assert_problem(
        call(
            app,
            buyer,
            Method::GET,
            "/admin/sagas?status=stuck",
            None,
            None,
        )
        .await,
        403,
    )
    .await;
    assert_problem(
        call(
            app,
            admin,
            Method::GET,
            "/admin/sagas?status=lost",
            None,
            None,
        )
        .await,
        400,
    )
    .await;
    let stuck = expect(
        call(
            app,
            admin,
            Method::GET,
            "/admin/sagas?status=stuck",
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(stuck["items"][0]["id"].as_i64(), Some(id), "{stuck}");
    assert_eq!(stuck["items"][0]["step"], "capture");
    let running = expect(
        call(
            app,
            admin,
            Method::GET,
            "/admin/sagas?status=running",
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(running["items"].as_array().unwrap().len(), 0);

    faults.clear();
    let retry = format!("/admin/sagas/{id}/retry");
    let resumed = expect(
        call(app, admin, Method::POST, &retry, None, None).await,
        200,
    )
    .await;
    assert_eq!(resumed["status"], "compensating");
    let order = f.finished(id).await;
    assert_eq!(
        (order["status"].as_str(), order["sagaStatus"].as_str()),
        (Some("cancelled"), Some("compensated"))
    );
    assert_eq!(f.wallet().await, (10_000, 0));
    assert_eq!(f.stock(lamp).await, 10);
    // Finished: neither retried nor compensated again.
    assert_problem(
        call(app, admin, Method::POST, &retry, None, None).await,
        409,
    )
    .await;
    let compensate = format!("/admin/sagas/{id}/compensate");
    assert_problem(
        call(app, admin, Method::POST, &compensate, None, None).await,
        409,
    )
    .await;
    assert_problem(
        call(
            app,
            admin,
            Method::POST,
            "/admin/sagas/99999/retry",
            None,
            None,
        )
        .await,
        404,
    )
    .await;

    // An operator compensates a confirmed, completed order? No: 409. A running one: yes.
    let ok = f
        .order("fine", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    assert_eq!(f.finished(ok).await["status"], "confirmed");
    let path = format!("/admin/sagas/{ok}/compensate");
    assert_problem(call(app, admin, Method::POST, &path, None, None).await, 409).await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shop_compensations_total"),
        "metrics list compensations"
    );
}
