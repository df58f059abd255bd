//! The security audit log: events recorded without secrets (the admin list is in
//! [`crate::admin`]).

use basis_store::audit::{self, NewEvent};

use crate::http::extract::ClientIp;
use crate::state::AppState;

/// Records an event. A failure to record is logged, not returned: the audit log must not
/// turn a successful login into an error.
pub async fn record(
    state: &AppState,
    kind: &str,
    user_id: Option<&str>,
    ip: &ClientIp,
    detail: Option<&str>,
) {
    let now = state.clock.now_ms();
    let ip = ip.text();
    let event = NewEvent {
        at: now,
        kind,
        user_id,
        ip: Some(&ip),
        detail,
    };
    let result = audit::record(&state.store, &event).await;
    tracing::info!(kind, user_id, ip, detail, "audit");
    if let Err(err) = result {
        tracing::error!(error = %err, kind, "cannot record an audit event");
    }
}
