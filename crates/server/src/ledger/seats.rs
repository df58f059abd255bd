//! `POST /events` (admins), `GET /events/{id}` and `POST /events/{id}/bookings`: the last
//! seat goes to exactly one buyer; the others get 409 "sold out".

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use basis_auth::role::Role;
use basis_ledger::seats::{Booking, SeatEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::service::{self, json_response, refusal};
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::trimmed_name;
use crate::http::rest::{body_of, from_document, parse_id, parse_json};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// The most seats one event may have.
const MAX_SEATS: i64 = 1_000_000;
/// The longest event name.
const MAX_NAME_CHARS: usize = 200;

/// What `POST /events` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSeatEvent {
    /// The event's name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// How many seats it has.
    #[schema(value_type = i64, minimum = 1, maximum = 1000000)]
    pub seats: Value,
}

/// An event with seats.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatEventView {
    /// The event's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Seats it has.
    pub seats: i64,
    /// Seats not yet booked.
    pub seats_left: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<&SeatEvent> for SeatEventView {
    fn from(e: &SeatEvent) -> Self {
        Self {
            id: e.id,
            name: e.name.clone(),
            seats: e.seats,
            seats_left: e.seats_left,
            created_at: to_datetime(e.created_at),
        }
    }
}

/// A booked seat.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingView {
    /// The booking's id.
    pub id: i64,
    /// The event.
    pub event_id: i64,
    /// When it was booked.
    pub created_at: DateTime<Utc>,
}

impl From<&Booking> for BookingView {
    fn from(b: &Booking) -> Self {
        Self {
            id: b.id,
            event_id: b.event_id,
            created_at: to_datetime(b.created_at),
        }
    }
}

/// Creates an event with seats (admins).
#[utoipa::path(post, path = "/events", tag = "ledger", request_body = NewSeatEvent,
    responses((status = 201, body = SeatEventView, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let bytes = body_of(&headers, body, "application/json")?;
    let input: NewSeatEvent = from_document(parse_json(&bytes)?)?;
    let name = trimmed_name("name", &input.name, MAX_NAME_CHARS)?;
    let seats = service::amount("seats", &input.seats)?;
    if seats > MAX_SEATS {
        return Err(ApiError::unprocessable(
            "seats",
            format!("must be at most {MAX_SEATS}"),
        ));
    }
    let event = state
        .ledger
        .ledger
        .create_seat_event(name, seats)
        .await
        .map_err(refusal)?;
    let location = format!("/events/{}", event.id);
    json_response(
        StatusCode::CREATED,
        Some(location),
        &SeatEventView::from(&event),
    )
}

/// An event and its seats left (anyone signed in).
#[utoipa::path(get, path = "/events/{id}", tag = "ledger", params(("id" = i64, Path, description = "The event id")),
    responses((status = 200, body = SeatEventView), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require_account()?;
    let event = state
        .ledger
        .ledger
        .seat_event(parse_id(&id)?)
        .await
        .map_err(refusal)?;
    json_response(StatusCode::OK, None, &SeatEventView::from(&event))
}

/// Books one seat for the caller: 201, or 409 when sold out.
#[utoipa::path(post, path = "/events/{id}/bookings", tag = "ledger", params(("id" = i64, Path, description = "The event id")),
    responses((status = 201, body = BookingView, headers(("Location" = String))), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, description = "Sold out", body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn book(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let id = parse_id(&id)?;
    let booking = state
        .ledger
        .ledger
        .book_seat(id, &principal.user_id)
        .await
        .map_err(refusal)?;
    json_response(
        StatusCode::CREATED,
        Some(format!("/events/{id}")),
        &BookingView::from(&booking),
    )
}
