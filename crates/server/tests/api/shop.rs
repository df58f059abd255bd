//! The shop over HTTP: products, and what an order is refused for before any saga starts.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Engine, assert_problem};
use crate::ledger_support::{call, expect, open, refused};
use crate::on_both_engines;
use crate::shop_support::ShopFixture;

on_both_engines!(
    products_are_added_by_admins_listed_by_anyone_and_patched,
    orders_are_refused_naming_the_field_before_any_saga_starts,
);

async fn products_are_added_by_admins_listed_by_anyone_and_patched(engine: Engine) {
    let f = ShopFixture::new(&engine, 0, 3).await;
    let (app, admin, buyer) = (&f.app, &f.admin, &f.buyer);
    let body = json!({"name": "Lamp", "price": 2500, "currency": "USD", "stock": 3});
    let denied = call(
        app,
        buyer,
        Method::POST,
        "/products",
        None,
        Some(body.clone()),
    )
    .await;
    assert_problem(denied, 403).await;
    for (bad, field) in [
        (
            json!({"name": "", "price": 1, "currency": "USD", "stock": 1}),
            "name",
        ),
        (
            json!({"name": "x", "price": 0, "currency": "USD", "stock": 1}),
            "price",
        ),
        (
            json!({"name": "x", "price": 1.5, "currency": "USD", "stock": 1}),
            "price",
        ),
        (
            json!({"name": "x", "price": 1, "currency": "usd", "stock": 1}),
            "currency",
        ),
        (
            json!({"name": "x", "price": 1, "currency": "USD", "stock": -1}),
            "stock",
        ),
    ] {
        refused(
            call(app, admin, Method::POST, "/products", None, Some(bad)).await,
            field,
        )
        .await;
    }
    let response = call(app, admin, Method::POST, "/products", None, Some(body)).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let lamp = expect(response, 201).await;
    assert_eq!(location, format!("/products/{}", lamp["id"]));
    for i in 0..4 {
        f.product(&format!("p{i}"), 100 + i, 10).await;
    }
    // Anyone lists, two at a time, following the cursor.
    let mut seen = Vec::new();
    let mut path = "/products?limit=2".to_owned();
    loop {
        let page = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let page: serde_json::Value = page.json().await.unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/products?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["Lamp", "p0", "p1", "p2", "p3"]);
    let bad_cursor = app
        .client
        .get(app.url("/products?cursor=zz"))
        .send()
        .await
        .unwrap();
    assert_problem(bad_cursor, 400).await;

    let id = lamp["id"].as_i64().unwrap();
    let patch = |who: &str, body: serde_json::Value| {
        app.bearer(Method::PATCH, &format!("/products/{id}"), who)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
    };
    assert_problem(
        patch(&buyer.access, json!({"stock": 1})).await.unwrap(),
        403,
    )
    .await;
    refused(
        patch(&admin.access, json!({"stock": -2})).await.unwrap(),
        "stock",
    )
    .await;
    let patched = expect(
        patch(&admin.access, json!({"stock": 7, "price": 2000}))
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        (patched["stock"].as_i64(), patched["price"].as_i64()),
        (Some(7), Some(2000))
    );
    let wrong_type = call(
        app,
        admin,
        Method::PATCH,
        &format!("/products/{id}"),
        None,
        Some(json!({"stock": 1})),
    )
    .await;
    assert_problem(wrong_type, 415).await;
    let unknown = app
        .bearer(Method::PATCH, "/products/999999", &admin.access)
        .header("content-type", "application/merge-patch+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404).await;
}

async fn orders_are_refused_naming_the_field_before_any_saga_starts(engine: Engine) {
    let f = ShopFixture::new(&engine, 10_000, 3).await;
    let (app, admin, buyer) = (&f.app, &f.admin, &f.buyer);
    let lamp = f.product("Lamp", 2500, 3).await;
    let euro = {
        let body = json!({"name": "Vase", "price": 900, "currency": "EUR", "stock": 5});
        expect(
            call(app, admin, Method::POST, "/products", None, Some(body)).await,
            201,
        )
        .await["id"]
            .as_i64()
            .unwrap()
    };
    let other = app.account("other@example.com").await;
    let foreign = open(app, &other, "USD").await;
    let euro_wallet = open(app, buyer, "EUR").await;
    let order = |key: &'static str, items: serde_json::Value, account: i64| {
        call(
            app,
            buyer,
            Method::POST,
            "/orders",
            Some(key),
            Some(json!({"items": items, "paymentAccount": account})),
        )
    };
    let w = f.wallet;
    refused(
        order("k1", json!([{"productId": 999999, "quantity": 1}]), w).await,
        "items[0].productId",
    )
    .await;
    refused(
        order("k2", json!([{"productId": lamp, "quantity": 0}]), w).await,
        "items[0].quantity",
    )
    .await;
    refused(
        order("k3", json!([{"productId": lamp, "quantity": 4}]), w).await,
        "items[0].quantity",
    )
    .await;
    refused(
        order("k4", json!([{"productId": lamp, "quantity": -1}]), w).await,
        "items[0].quantity",
    )
    .await;
    refused(
        order("k5", json!([{"productId": lamp, "quantity": 1}]), foreign).await,
        "paymentAccount",
    )
    .await;
    refused(
        order(
            "k6",
            json!([{"productId": lamp, "quantity": 1}]),
            euro_wallet,
        )
        .await,
        "paymentAccount",
    )
    .await;
    refused(
        order(
            "k7",
            json!([{"productId": lamp, "quantity": 1}, {"productId": euro, "quantity": 1}]),
            w,
        )
        .await,
        "items[1].productId",
    )
    .await;
    refused(order("k8", json!([]), w).await, "items").await;
    refused(
        order(
            "k9",
            json!([{"productId": lamp, "quantity": 1}, {"productId": lamp, "quantity": 1}]),
            w,
        )
        .await,
        "items[1].productId",
    )
    .await;
    // No key: 400.
    let body = json!({"items": [{"productId": lamp, "quantity": 1}], "paymentAccount": w});
    assert_problem(
        call(
            app,
            buyer,
            Method::POST,
            "/orders",
            None,
            Some(body.clone()),
        )
        .await,
        400,
    )
    .await;
    // A key reused with another body: 422; with the same body: the first answer, no new order.
    let first = f
        .order("same", json!([{"productId": lamp, "quantity": 1}]))
        .await;
    let again = expect(
        call(
            app,
            buyer,
            Method::POST,
            "/orders",
            Some("same"),
            Some(body),
        )
        .await,
        202,
    )
    .await;
    assert_eq!(again["id"].as_i64(), Some(first));
    let other_body = json!({"items": [{"productId": lamp, "quantity": 2}], "paymentAccount": w});
    assert_problem(
        call(
            app,
            buyer,
            Method::POST,
            "/orders",
            Some("same"),
            Some(other_body),
        )
        .await,
        422,
    )
    .await;
    // Nothing stored for the refusals: one saga, the one accepted.
    let sagas = expect(
        call(app, admin, Method::GET, "/admin/sagas", None, None).await,
        200,
    )
    .await;
    let ids: Vec<i64> = sagas["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [first]);
    // Someone else's order is not found; an admin sees it.
    let path = format!("/orders/{first}");
    assert_problem(call(app, &other, Method::GET, &path, None, None).await, 404).await;
    expect(call(app, admin, Method::GET, &path, None, None).await, 200).await;
    assert_problem(app.client.get(app.url(&path)).send().await.unwrap(), 401).await;
}
