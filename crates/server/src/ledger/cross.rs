//! Transfers to and from another bank's ledger over HTTP: `POST /transfers` with
//! `"to": "remote:42"` (the participant's name, a colon, the account's id there), or with
//! `"from": "remote:42"` for the caller's own account at the other bank (its owner id there
//! is the caller's user id) to an account of this bank. The coordination itself
//! (two-phase commit or saga, the decision log, recovery) lives in
//! `basis_ledger::{cross, twopc}`; this file holds its flags, the refusals and the
//! recovery loop.
//!
//! Statuses: 201 when both banks committed; 422 naming the field when a reference names no
//! configured participant or both name another bank, and when this server's ledger is on SQLite (cross-bank transfers
//! need PostgreSQL on both sides: 422, not 409, because no later state of the server makes
//! the same request succeed); 404 for an unknown remote account, and for a debited one
//! the caller does not own (at either bank); 422 for the ledger's own
//! refusals (funds, currency); 409 when recovery aborted it first or it is still running.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::response::Response;
use basis_ledger::{
    AccountRef, CrossError, CrossLedger, CrossRequest, CrossTransfer, Currency, Direction, Ledger,
    Mode,
};
use basis_store::{ConnectOptions, Pools, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::service::{self, is_admin, json_response, refusal};
use crate::clock::{Clock, to_datetime};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ClientIp;
use crate::identity::caller::Principal;
use crate::state::AppState;

/// Flags of transfers to another bank's ledger.
#[derive(Debug, Clone, clap::Args)]
pub struct CrossConfig {
    /// A second PostgreSQL database holding another bank's ledger (migrated here): its
    /// accounts are named `<remote name>:<id>` in `POST /transfers`.
    #[arg(long, env = "BASIS_LEDGER_REMOTE_URL")]
    pub ledger_remote_url: Option<String>,

    /// This ledger's name in global transaction ids (`basis:<name>.<transfer>:…`); two
    /// coordinators sharing a participant need different names.
    #[arg(long, env = "BASIS_LEDGER_NAME", default_value = "home")]
    pub ledger_name: String,

    /// The remote ledger's name, as written in account references.
    #[arg(long, env = "BASIS_LEDGER_REMOTE_NAME", default_value = "remote")]
    pub ledger_remote_name: String,

    /// How a transfer between the two ledgers is made: `2pc` (prepare both, log the
    /// decision, commit both; needs max_prepared_transactions > 0 on both databases) or
    /// `saga` (reserve, credit remotely, post or void).
    #[arg(long, env = "BASIS_CROSS_LEDGER", default_value = "2pc")]
    pub cross_ledger: Mode,

    /// How often in-doubt cross-ledger transfers are settled, in milliseconds: none
    /// outlives twice this.
    #[arg(long, env = "BASIS_LEDGER_RECOVERY_MS", default_value_t = 10_000)]
    pub ledger_recovery_ms: u64,
}

impl Default for CrossConfig {
    fn default() -> Self {
        Self {
            ledger_remote_url: None,
            ledger_name: "home".into(),
            ledger_remote_name: "remote".into(),
            cross_ledger: Mode::TwoPhase,
            ledger_recovery_ms: 10_000,
        }
    }
}

impl CrossConfig {
    /// The recovery interval.
    pub fn recovery_interval(&self) -> Duration {
        Duration::from_millis(self.ledger_recovery_ms.max(10))
    }
}

/// Connects the remote ledger named by `config`, if any: `None` without a remote URL, and
/// also (with a warning) when the home ledger is on SQLite, where cross-bank transfers are
/// refused per request. Refuses to start when 2PC cannot prepare transactions on either
/// database, and settles what a previous run left in doubt.
pub async fn connect(
    config: &CrossConfig,
    slow_statement: Option<std::time::Duration>,
    home: &Ledger,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<CrossLedger>> {
    let Some(url) = config
        .ledger_remote_url
        .as_deref()
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    if matches!(home.store().pools(), Pools::Sqlite { .. }) {
        tracing::warn!(
            "--ledger-remote-url is ignored: this server's ledger is on SQLite, and cross-bank \
             transfers need PostgreSQL for both ledgers (they are refused with 422)"
        );
        return Ok(None);
    }
    if !url.starts_with("postgres") {
        anyhow::bail!("--ledger-remote-url must be a postgres:// URL (the other bank's database)");
    }
    let options = ConnectOptions {
        max_connections: 8,
        slow_statement,
        ..ConnectOptions::default()
    };
    let store = Store::connect(url, &options)
        .await
        .context("cannot open the remote ledger's database (--ledger-remote-url)")?;
    let remote = Ledger::new(store, clock);
    let cross = CrossLedger::new(
        home.clone(),
        &config.ledger_name,
        remote,
        &config.ledger_remote_name,
        config.cross_ledger,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot set up cross-ledger transfers: {e}"))?;
    if config.cross_ledger == Mode::TwoPhase {
        cross
            .check_prepared_capacity()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // Prepared halves are settled by 2PC recovery in either mode: a restart in saga mode
    // after a 2PC run must not leave them holding locks.
    let settled = cross
        .recover(Duration::ZERO)
        .await
        .map_err(|e| anyhow::anyhow!("cannot settle in-doubt cross-ledger transfers: {e}"))?;
    tracing::info!(
        ?settled,
        mode = config.cross_ledger.as_str(),
        "cross-ledger transfers ready"
    );
    Ok(Some(cross))
}

/// Settles in-doubt cross-ledger transfers every `interval` (each pass spares what is
/// younger than `interval`, so none outlives two), until told to stop.
pub async fn recover_periodically(
    state: AppState,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let Some(cross) = state.ledger.cross.clone() else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        match cross.recover(interval).await {
            Ok(report) if report.committed + report.rolled_back + report.settled > 0 => {
                tracing::info!(?report, "settled in-doubt cross-ledger transfers");
                state.ledger.written();
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "cross-ledger recovery failed; will retry"),
        }
    }
}

/// A transfer to another bank.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossTransferView {
    /// The transfer's number in this bank's coordinator log.
    pub id: i64,
    /// `2pc` or `saga`.
    pub mode: String,
    /// The account debited (`participant:id` when it is at the other bank).
    pub from: String,
    /// The account credited (`participant:id` when it is at the other bank).
    pub to: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `committed` (both banks), `aborted` (neither) or `started`.
    pub status: String,
    /// The half in this bank's ledger (`GET /transfers/{id}`).
    pub local_transfer_id: Option<i64>,
    /// The half in the remote bank's ledger.
    pub remote_transfer_id: Option<i64>,
    /// The caller's reference.
    pub reference: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl From<&CrossTransfer> for CrossTransferView {
    fn from(t: &CrossTransfer) -> Self {
        let remote = |id: i64| format!("{}:{id}", t.participant);
        let (from, to) = if t.direction == Direction::Incoming.as_str() {
            (remote(t.from_account), t.to_account.to_string())
        } else {
            (t.from_account.to_string(), remote(t.to_account))
        };
        Self {
            id: t.id,
            mode: t.mode.clone(),
            from,
            to,
            amount: t.amount,
            currency: t.currency.clone(),
            status: t.status.clone(),
            local_transfer_id: t.local_transfer_id,
            remote_transfer_id: t.remote_transfer_id,
            reference: t.reference.clone(),
            created_at: to_datetime(t.created_at),
        }
    }
}

/// What a cross-bank `POST /transfers` carries once parsed.
pub struct CrossInput {
    /// The account debited: at this bank or the other.
    pub from: AccountRef,
    /// The account credited: at this bank or the other.
    pub to: AccountRef,
    /// Minor units.
    pub amount: i64,
    /// The currency.
    pub currency: Currency,
    /// Asked for a pending transfer.
    pub pending: bool,
    /// Free text.
    pub reference: Option<String>,
    /// The caller-scoped idempotency key.
    pub request_key: Option<String>,
}

/// Makes a cross-bank transfer and answers for it.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    ip: &ClientIp,
    input: CrossInput,
) -> ApiResult<Response> {
    let (field, remote_ref, direction) = match (&input.from.participant, &input.to.participant) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable(
                "from",
                "names another bank's account, and so does `to`: one side of a transfer must \
                 be an account of this bank",
            ));
        }
        (Some(_), None) => ("from", &input.from, Direction::Incoming),
        _ => ("to", &input.to, Direction::Outgoing),
    };
    let participant = remote_ref.participant.as_deref().unwrap_or_default();
    if matches!(state.store.pools(), Pools::Sqlite { .. }) {
        return Err(ApiError::unprocessable(
            field,
            format!(
                "names an account of another bank ({participant}); transfers between banks \
                 need PostgreSQL for both ledgers, and this server's ledger is on SQLite"
            ),
        ));
    }
    let Some(cross) = state
        .ledger
        .cross
        .as_ref()
        .filter(|c| c.remote_name() == participant)
    else {
        return Err(ApiError::unprocessable(
            field,
            format!("no ledger named {participant:?} is configured (--ledger-remote-url)"),
        ));
    };
    if input.pending {
        return Err(ApiError::unprocessable(
            "pending",
            "transfers between banks are posted at once",
        ));
    }
    let remote = cross
        .remote()
        .account(remote_ref.id)
        .await
        .map_err(refusal)?;
    let (from, to) = match direction {
        Direction::Outgoing => {
            let from = super::transfers::debitable(state, principal, input.from.id).await?;
            // The other bank's funding account is its own business.
            if remote.is_funding {
                return Err(ApiError::NotFound);
            }
            (from.id, remote.id)
        }
        Direction::Incoming => {
            // Money leaves an account of the other bank only at its owner's request.
            if remote.is_funding || remote.owner_id.as_deref() != Some(principal.user_id.as_str()) {
                return Err(ApiError::NotFound);
            }
            let to = state
                .ledger
                .ledger
                .account(input.to.id)
                .await
                .map_err(refusal)?;
            if to.is_funding && !is_admin(principal) {
                return Err(ApiError::NotFound);
            }
            (remote.id, to.id)
        }
    };
    let request = CrossRequest {
        direction,
        from,
        to,
        amount: input.amount,
        currency: input.currency,
        reference: input.reference,
        request_key: input.request_key,
    };
    let t = cross.transfer(&request).await.map_err(cross_refusal)?;
    if t.status != "committed" {
        return Err(ApiError::Conflict(format!(
            "cross-bank transfer {} is {}; retry with a new Idempotency-Key",
            t.id, t.status
        )));
    }
    state.ledger.written();
    let view = CrossTransferView::from(&t);
    let detail = format!(
        "cross-bank transfer {} ({}) {} {} from account {} to {}",
        t.id, t.mode, t.amount, t.currency, view.from, view.to
    );
    crate::audit::record(
        state,
        "ledger.transfer.cross",
        Some(&principal.user_id),
        ip,
        Some(&detail),
    )
    .await;
    json_response(
        StatusCode::CREATED,
        t.local_transfer_id.map(|id| format!("/transfers/{id}")),
        &view,
    )
}

/// The status of each cross-ledger refusal.
fn cross_refusal(err: CrossError) -> ApiError {
    match err {
        CrossError::Ledger(err) => service::refusal(err),
        CrossError::RequestKeyReused(_) => {
            ApiError::Unprocessable("this Idempotency-Key already made a different transfer".into())
        }
        CrossError::Unsupported(why) => ApiError::unprocessable("to", why),
        CrossError::Aborted(_) => {
            ApiError::Conflict(format!("{err}; retry with a new Idempotency-Key"))
        }
        CrossError::NoPreparedTransactions(_) => ApiError::Unavailable(err.to_string()),
        CrossError::Crashed(_) => ApiError::Internal(anyhow::anyhow!("{err}")),
    }
}
