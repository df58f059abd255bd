//! The ledger's HTTP rules: who may see and move what, how amounts are read, which status
//! each ledger refusal gets, and the audit record of every money movement. Handlers parse,
//! call these, and answer.

use basis_auth::role::Role;
use basis_ledger::{Account, Error, Transfer};
use serde_json::Value;

use crate::error::ApiError;
use crate::http::extract::ClientIp;
use crate::identity::caller::Principal;
use crate::state::AppState;

/// The OpenAPI schema of a currency in a request: one of the ISO 4217 codes the ledger
/// knows, so a client's tooling can check it before sending.
pub fn currency_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("ISO 4217 code, upper case"))
        .enum_values(Some(basis_ledger::Currency::known()))
        .build()
}

/// An amount in minor units: a JSON integer from 1 to 2⁶³−1 (`5.0` is 5, as JSON Schema
/// counts it). Fractions, strings, zero, negatives, inexact floats and anything past 64 bits
/// are refused by name, never rounded or wrapped.
pub fn amount(field: &str, value: &Value) -> Result<i64, ApiError> {
    let refuse = || {
        ApiError::unprocessable(
            field,
            "must be an integer number of minor units from 1 to 9223372036854775807",
        )
    };
    match value {
        Value::Number(_) => crate::http::rest::json_integer(value)
            .filter(|a| *a >= 1)
            .ok_or_else(refuse),
        _ => Err(refuse()),
    }
}

/// Whether `principal` is an admin.
pub fn is_admin(principal: &Principal) -> bool {
    principal.role.at_least(Role::Admin)
}

/// Whether `principal` may see `account`: its owner or an admin.
pub fn may_see(principal: &Principal, account: &Account) -> bool {
    account.owner_id.as_deref() == Some(principal.user_id.as_str()) || is_admin(principal)
}

/// The account `id` if `principal` may see it; unknown and foreign accounts are both 404,
/// so ids of other people's accounts cannot be probed.
pub async fn visible_account(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<Account, ApiError> {
    let account = state.ledger.ledger.account(id).await.map_err(refusal)?;
    if may_see(principal, &account) {
        Ok(account)
    } else {
        Err(ApiError::NotFound)
    }
}

/// The transfer `id` if `principal` owns either side of it or is an admin (else 404).
pub async fn visible_transfer(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<Transfer, ApiError> {
    let ledger = &state.ledger.ledger;
    let t = ledger.transfer_by_id(id).await.map_err(refusal)?;
    if is_admin(principal) {
        return Ok(t);
    }
    for side in [t.debit_account_id, t.credit_account_id] {
        if may_see(principal, &ledger.account(side).await.map_err(refusal)?) {
            return Ok(t);
        }
    }
    Err(ApiError::NotFound)
}

/// The status and field of each ledger refusal.
pub fn refusal(err: Error) -> ApiError {
    match err {
        Error::InvalidCurrency(_) | Error::CurrencyMismatch { .. } => {
            ApiError::unprocessable("currency", err.to_string())
        }
        Error::InvalidAmount
        | Error::InsufficientFunds { .. }
        | Error::Overflow
        | Error::PostExceedsPending { .. } => ApiError::unprocessable("amount", err.to_string()),
        Error::InvalidTimeout => ApiError::unprocessable("timeoutSeconds", err.to_string()),
        Error::SameAccount => ApiError::unprocessable("to", err.to_string()),
        Error::AccountNotFound(_) | Error::TransferNotFound(_) | Error::SeatEventNotFound(_) => {
            ApiError::NotFound
        }
        Error::SoldOut(_) => ApiError::Conflict(err.to_string()),
        Error::RequestKeyReused(_) => {
            ApiError::Unprocessable("this Idempotency-Key already made a different transfer".into())
        }
        Error::NotPending { .. } | Error::Expired(_) | Error::VersionConflict { .. } => {
            ApiError::Conflict(err.to_string())
        }
        Error::Invariant(_) => ApiError::Internal(anyhow::anyhow!("{err}")),
        Error::Store(store) => store.into(),
    }
}

pub use crate::http::rest::json_response;

/// Records a money movement made by `principal` in the audit log, and wakes the projector.
pub async fn moved(
    state: &AppState,
    principal: &Principal,
    ip: &ClientIp,
    kind: &str,
    t: &Transfer,
) {
    state.ledger.written();
    let detail = format!(
        "transfer {} {} {} {} from account {} to {} ({})",
        t.id,
        t.status,
        t.posted_amount.unwrap_or(t.amount),
        t.currency,
        t.debit_account_id,
        t.credit_account_id,
        t.reference.as_deref().unwrap_or("no reference"),
    );
    crate::audit::record(state, kind, Some(&principal.user_id), ip, Some(&detail)).await;
}

/// Records what the system did by itself (timeouts) in the audit log.
pub async fn audit_system(state: &AppState, kind: &str, detail: &str) {
    crate::audit::record(state, kind, None, &ClientIp(None), Some(detail)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_positive_64_bit_integers_only() {
        assert_eq!(amount("amount", &json!(1)).ok(), Some(1));
        assert_eq!(amount("amount", &json!(i64::MAX)).ok(), Some(i64::MAX));
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!(1e30),
            json!("10"),
            json!(null),
            json!(9_223_372_036_854_775_808u64),
        ] {
            assert!(amount("amount", &bad).is_err(), "{bad}");
        }
    }
}
