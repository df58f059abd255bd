//! Owners stored as the server's text ids, and the last seat, on both engines.

mod common;

use basis_ledger::{Error, NewAccount};

use common::{engines, usd};

#[tokio::test]
async fn owners_are_kept_as_text_even_when_they_look_like_numbers() {
    for bench in engines().await {
        // An INTEGER column would turn these into a REAL and lose them.
        for owner in [
            "12345678901234567890123456789012",
            "1e345678901234567890123456789012",
        ] {
            let opened = bench
                .ledger
                .open_account(&NewAccount {
                    currency: usd(),
                    name: None,
                    owner_id: Some(owner.into()),
                    allow_overdraft: false,
                })
                .await
                .expect("open");
            let listed = bench.ledger.accounts_of(owner, 0, 10).await.expect("list");
            assert_eq!(listed, [opened], "{}", bench.name);
            assert_eq!(listed[0].owner_id.as_deref(), Some(owner), "{}", bench.name);
        }
    }
}

#[tokio::test]
async fn the_last_seat_goes_to_one_buyer_and_the_schema_refuses_overbooking() {
    for bench in engines().await {
        let ledger = &bench.ledger;
        assert!(matches!(
            ledger.create_seat_event("none", 0).await,
            Err(Error::InvalidAmount)
        ));
        let event = ledger
            .create_seat_event("concert", 1)
            .await
            .expect("create");
        let buyers = (0..20).map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.book_seat(event.id, &format!("buyer-{i}")).await })
        });
        let mut won = 0;
        let mut sold_out = 0;
        for buyer in buyers.collect::<Vec<_>>() {
            match buyer.await.expect("no panic") {
                Ok(_) => won += 1,
                Err(Error::SoldOut(id)) if id == event.id => sold_out += 1,
                Err(other) => panic!("{}: {other}", bench.name),
            }
        }
        assert_eq!((won, sold_out), (1, 19), "{}", bench.name);
        assert_eq!(
            ledger.seat_event(event.id).await.expect("read").seats_left,
            0
        );
        assert!(matches!(
            ledger.book_seat(999_999, "x").await,
            Err(Error::SeatEventNotFound(_))
        ));
        let overbook: Result<u64, sqlx::Error> = basis_store::on_pool!(ledger.store(), write, pool => {
            sqlx::query("UPDATE seat_events SET seats_left = seats_left - 1")
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        assert!(
            overbook.is_err(),
            "{}: the CHECK must refuse a negative count",
            bench.name
        );
    }
}
