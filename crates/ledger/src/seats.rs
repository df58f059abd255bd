//! Seats: events with a fixed number of seats, booked one at a time. The last seat goes to
//! exactly one buyer: a booking is one transaction whose conditional
//! `UPDATE … SET seats_left = seats_left - 1 WHERE seats_left > 0` either takes a seat or
//! touches no row (sold out), the remedy `basis demo last-seat` shows; the schema's CHECK
//! refuses a negative count should any code try.

use basis_store::Pools;
use serde::Serialize;

use crate::{Error, Ledger, Result};

/// An event with seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SeatEvent {
    /// The event's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Seats it was created with.
    pub seats: i64,
    /// Seats not yet booked.
    pub seats_left: i64,
    /// Unix ms.
    pub created_at: i64,
}

/// One booked seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    /// The booking's id.
    pub id: i64,
    /// The event.
    pub event_id: i64,
    /// Who booked it.
    pub user_id: String,
    /// Unix ms.
    pub created_at: i64,
}

/// Takes a seat of `$event` for `$user` on the open transaction `$tx`.
macro_rules! take_seat {
    ($tx:expr, $event:expr, $user:expr, $now:expr) => {{
        let taken = sqlx::query(
            "UPDATE seat_events SET seats_left = seats_left - 1 WHERE id = $1 AND seats_left > 0",
        )
        .bind($event)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if taken == 0 {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM seat_events WHERE id = $1")
                .bind($event)
                .fetch_optional(&mut *$tx)
                .await?;
            return Err(match exists {
                Some(_) => Error::SoldOut($event),
                None => Error::SeatEventNotFound($event),
            });
        }
        let booking: Booking = sqlx::query_as(
            "INSERT INTO seat_bookings (event_id, user_id, created_at) VALUES ($1, $2, $3) RETURNING *",
        )
        .bind($event)
        .bind($user)
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        booking
    }};
}

impl Ledger {
    /// Creates an event with `seats` seats (at least 1).
    pub async fn create_seat_event(&self, name: &str, seats: i64) -> Result<SeatEvent> {
        if seats < 1 {
            return Err(Error::InvalidAmount);
        }
        let now = self.clock().now_ms();
        Ok(basis_store::on_pool!(self.store(), write, pool => {
            sqlx::query_as(
                "INSERT INTO seat_events (name, seats, seats_left, created_at) VALUES ($1, $2, $2, $3) \
                 RETURNING *",
            )
            .bind(name)
            .bind(seats)
            .bind(now)
            .fetch_one(pool)
            .await
        })?)
    }

    /// An event with its seats left.
    pub async fn seat_event(&self, id: i64) -> Result<SeatEvent> {
        let found: Option<SeatEvent> = basis_store::on_pool!(self.store(), read, pool => {
            sqlx::query_as("SELECT * FROM seat_events WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        found.ok_or(Error::SeatEventNotFound(id))
    }

    /// Books one seat of `event` for `user`: [`Error::SoldOut`] when none is left.
    pub async fn book_seat(&self, event: i64, user: &str) -> Result<Booking> {
        let now = self.clock().now_ms();
        match self.store().pools() {
            Pools::Sqlite { write, .. } => {
                let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let booking = take_seat!(tx, event, user, now);
                tx.commit().await?;
                Ok(booking)
            }
            Pools::Postgres { write, .. } => {
                let mut tx = write.begin().await?;
                let booking = take_seat!(tx, event, user, now);
                tx.commit().await?;
                Ok(booking)
            }
        }
    }
}
