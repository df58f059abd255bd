//! Multi-factor sign-in with TOTP (RFC 6238) and one-use recovery codes.
//!
//! - `POST /auth/mfa/totp` starts an enrolment: a secret, its `otpauth://` URI and a QR
//!   code; `POST /auth/mfa/totp/confirm` with a first code turns it on and answers ten
//!   recovery codes, shown once and stored as digests.
//! - With MFA on, `POST /auth/login` and `POST /auth/session` answer 202 with a challenge
//!   instead of tokens or a cookie; `POST /auth/mfa/verify` with the challenge and a code
//!   (or a recovery code) finishes the sign-in. Codes are throttled per account like
//!   passwords, and a code accepted once is refused for the rest of its window.
//! - `POST /auth/mfa/totp/disable` with a code turns it off; `GET /auth/mfa` tells the
//!   state. Admins choose the roles that must use MFA (`GET|PUT /admin/mfa-policy`): a
//!   member of such a role without it is refused at sign-in with 403 and a challenge that
//!   lets them enrol, then sign in again.
//!
//! OpenID Connect sign-ins are not asked for a code: the provider owns that step.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use basis_auth::role::Role;
use basis_auth::secret::{digest, random_token};
use basis_auth::throttle::Action;
use basis_auth::totp;
use basis_store::mfa;
use basis_store::users::{self, UserRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::session::SessionView;
use super::tokens::{TokenPair, issue_pair, parse_role};
use crate::audit;
use crate::error::{ApiError, ApiResult, PROBLEM_JSON};
use crate::http::extract::{ApiJson, ClientIp, OptionalJson};
use crate::http::rest::no_store;
use crate::identity::caller::{Authenticated, Caller};
use crate::state::AppState;

/// A challenge lives this long (ms): time to open the authenticator app.
pub const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// The issuer shown in authenticator apps.
pub const ISSUER: &str = "Basis";

/// What a sign-in whose second step is pending answers (202).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaChallenge {
    /// Always `true`: send the challenge and a code to `POST /auth/mfa/verify`.
    pub mfa_required: bool,
    /// The one-use challenge token.
    pub challenge: String,
    /// Seconds until the challenge expires.
    pub expires_in: i64,
}

/// The 403 of a sign-in whose role requires MFA that the account has not set up: a
/// problem document with a challenge that allows enrolling.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrolmentRequired {
    /// `about:blank`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `Forbidden`.
    pub title: &'static str,
    /// 403.
    pub status: u16,
    /// What to do.
    pub detail: String,
    /// Send this as `challenge` to `POST /auth/mfa/totp` and `/auth/mfa/totp/confirm`.
    pub challenge: String,
    /// Seconds until the challenge expires.
    pub expires_in: i64,
}

/// What a second step finishes: the sign-in that was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /auth/login`: a token pair.
    Token,
    /// `POST /auth/session`: a cookie session.
    Session,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Session => "session",
        }
    }
}

async fn new_challenge(state: &AppState, user_id: &str, kind: &str) -> ApiResult<String> {
    let now = state.clock.now_ms();
    let token = random_token();
    mfa::insert_challenge(
        &state.store,
        &digest(&token),
        user_id,
        kind,
        now + CHALLENGE_TTL_MS,
        now,
    )
    .await?;
    Ok(token)
}

/// After a correct password: the answer that asks for the second step (202 with a
/// challenge), the refusal of an account whose role needs MFA it lacks (403), or `None`
/// when the sign-in may finish now.
pub async fn second_step(
    state: &AppState,
    user: &UserRow,
    kind: Kind,
) -> ApiResult<Option<Response>> {
    match next_step(state, user, kind).await? {
        NextStep::Done => Ok(None),
        NextStep::Code { challenge } => {
            let body = MfaChallenge {
                mfa_required: true,
                challenge,
                expires_in: CHALLENGE_TTL_MS / 1000,
            };
            Ok(Some(no_store(StatusCode::ACCEPTED, body)))
        }
        NextStep::Enrol { challenge } => {
            let body = EnrolmentRequired {
                kind: "about:blank",
                title: "Forbidden",
                status: 403,
                detail: format!(
                    "the {} role requires multi-factor sign-in: enrol with POST /auth/mfa/totp and \
                     /auth/mfa/totp/confirm, sending this challenge, then sign in again",
                    user.role
                ),
                challenge,
                expires_in: CHALLENGE_TTL_MS / 1000,
            };
            let mut response = no_store(StatusCode::FORBIDDEN, body);
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
            Ok(Some(response))
        }
    }
}

/// What a sign-in needs after a correct password.
#[derive(Debug)]
pub enum NextStep {
    /// Nothing: it may finish now.
    Done,
    /// A code: the challenge that carries the pending sign-in (never the password).
    Code {
        /// The one-use challenge token.
        challenge: String,
    },
    /// The role requires MFA the account lacks: the challenge lets it enrol.
    Enrol {
        /// The one-use enrolment challenge.
        challenge: String,
    },
}

/// Decides [`NextStep`] for `user` (the API's answer and the sign-in page both follow it).
pub async fn next_step(state: &AppState, user: &UserRow, kind: Kind) -> ApiResult<NextStep> {
    let enrolled = mfa::find(&state.store, &user.id)
        .await?
        .is_some_and(|row| row.confirmed_at.is_some());
    if enrolled {
        let challenge = new_challenge(state, &user.id, kind.as_str()).await?;
        return Ok(NextStep::Code { challenge });
    }
    let required = mfa::required_roles(&state.store).await?;
    if required.contains(&user.role) {
        let challenge = new_challenge(state, &user.id, "enrol").await?;
        return Ok(NextStep::Enrol { challenge });
    }
    Ok(NextStep::Done)
}

fn wrong_code() -> ApiError {
    ApiError::Unauthorized {
        challenge: "Bearer",
        detail: "the code is not correct, expired or already used".into(),
    }
}

fn invalid_challenge() -> ApiError {
    ApiError::Unauthorized {
        challenge: "Bearer",
        detail: "the challenge is not valid or has expired; sign in again".into(),
    }
}

/// Checks a TOTP code or a recovery code of `user_id`'s confirmed enrolment, throttled
/// per account; a TOTP code is spent for its window, a recovery code for good.
async fn check_code(state: &AppState, ip: &ClientIp, user_id: &str, code: &str) -> ApiResult<()> {
    state
        .identity
        .throttle(state.clock.as_ref(), Action::SecondFactor, user_id)
        .await?;
    let now = state.clock.now_ms();
    let row = mfa::find(&state.store, user_id)
        .await?
        .filter(|row| row.confirmed_at.is_some());
    if let Some(row) = row {
        if totp::looks_like_code(code) {
            if let Some(step) = totp::verify(&row.secret, code, now, row.last_step)
                && mfa::accept_step(&state.store, user_id, step).await?
            {
                return Ok(());
            }
        } else if let Some(recovery) = totp::normalise_recovery_code(code)
            && mfa::use_recovery_code(&state.store, user_id, &digest(&recovery), now).await?
        {
            audit::record(state, "mfa.recovery_code_used", Some(user_id), ip, None).await;
            return Ok(());
        }
    }
    audit::record(state, "mfa.failed", Some(user_id), ip, None).await;
    Err(wrong_code())
}

/// Whether `challenge` names a pending sign-in (live, not an enrolment one).
pub async fn pending_sign_in(state: &AppState, challenge: &str) -> ApiResult<bool> {
    let now = state.clock.now_ms();
    Ok(mfa::find_challenge(&state.store, &digest(challenge), now)
        .await?
        .is_some_and(|c| c.kind != "enrol"))
}

/// Finishes the sign-in pending under `challenge` with `code` (a TOTP code or an unused
/// recovery code): the challenge is spent, and the account and what the sign-in was for
/// are answered. A dead challenge or a wrong code is a 401; tries are throttled.
pub async fn finish_challenge(
    state: &AppState,
    ip: &ClientIp,
    challenge: &str,
    code: &str,
) -> ApiResult<(UserRow, Kind)> {
    let now = state.clock.now_ms();
    let hash = digest(challenge);
    let challenge = mfa::find_challenge(&state.store, &hash, now)
        .await?
        .filter(|c| c.kind != "enrol")
        .ok_or_else(invalid_challenge)?;
    check_code(state, ip, &challenge.user_id, code).await?;
    if !mfa::spend_challenge(&state.store, &hash, now).await? {
        return Err(invalid_challenge());
    }
    let user = users::find(&state.store, &challenge.user_id)
        .await?
        .ok_or_else(invalid_challenge)?;
    let kind = if challenge.kind == Kind::Session.as_str() {
        Kind::Session
    } else {
        Kind::Token
    };
    Ok((user, kind))
}

/// The body of `POST /auth/mfa/verify`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The challenge from the sign-in's 202 answer.
    pub challenge: String,
    /// A 6-digit code from the authenticator app, or an unused recovery code.
    pub code: String,
}

/// Finishes a sign-in with a code: a token pair (200) for `POST /auth/login`, a session
/// cookie (201) for `POST /auth/session`.
#[utoipa::path(post, path = "/auth/mfa/verify", tag = "auth", request_body = VerifyRequest,
    responses((status = 200, description = "A token pair (the sign-in was `POST /auth/login`)", body = TokenPair),
        (status = 201, description = "A session (the sign-in was `POST /auth/session`)", body = SessionView),
        (status = 400, description = "Malformed JSON or invalid fields"),
        (status = 401, description = "Wrong, replayed or expired code, or an unknown challenge"),
        (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"),
        (status = 429, description = "Too many codes tried")))]
pub async fn verify(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    let (user, kind) = finish_challenge(&state, &ip, &body.challenge, &body.code).await?;
    if kind == Kind::Session {
        let agent = super::session::user_agent(&headers);
        let (cookie, csrf_token) = super::session::start(&state, &user.id, agent).await?;
        audit::record(
            &state,
            "login.succeeded",
            Some(&user.id),
            &ip,
            Some("session+mfa"),
        )
        .await;
        return super::session::answer(cookie, csrf_token, &user);
    }
    let pair = issue_pair(&state, &user.id, parse_role(&user.role)?).await?;
    audit::record(
        &state,
        "login.succeeded",
        Some(&user.id),
        &ip,
        Some("token+mfa"),
    )
    .await;
    Ok(no_store(StatusCode::OK, pair))
}

/// The body of `POST /auth/mfa/totp`: none (or `{}`) when signed in.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The challenge of a sign-in refused because the role requires MFA (when not signed in).
    pub challenge: Option<String>,
}

/// A new enrolment, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enrolment {
    /// The shared secret, base32, for typing into an app by hand.
    pub secret: String,
    /// The `otpauth://` URI that apps import.
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// The account acting: the signed-in caller, or the holder of an enrolment challenge.
async fn enrolling_user(
    state: &AppState,
    caller: &Caller,
    challenge: Option<&str>,
) -> ApiResult<UserRow> {
    let user_id = match (caller.principal(), challenge) {
        (Some(_), _) => caller.require_account()?.user_id.clone(),
        (None, Some(challenge)) => return enrolment_user(state, challenge).await,
        (None, None) => caller.require()?.user_id.clone(),
    };
    users::find(&state.store, &user_id)
        .await?
        .ok_or_else(invalid_challenge)
}

/// The account whose sign-in was refused under `challenge` because its role requires MFA
/// it lacks (the challenge lets it enrol); 401 when the challenge is dead or of a
/// sign-in's second step.
pub async fn enrolment_user(state: &AppState, challenge: &str) -> ApiResult<UserRow> {
    let now = state.clock.now_ms();
    let user_id = mfa::find_challenge(&state.store, &digest(challenge), now)
        .await?
        .filter(|c| c.kind == "enrol")
        .ok_or_else(invalid_challenge)?
        .user_id;
    users::find(&state.store, &user_id)
        .await?
        .ok_or_else(invalid_challenge)
}

/// Spends an enrolment challenge once it has served (the account is enrolled).
pub async fn spend_enrolment(state: &AppState, challenge: &str) -> ApiResult<()> {
    mfa::spend_challenge(&state.store, &digest(challenge), state.clock.now_ms()).await?;
    Ok(())
}

/// Starts (or restarts) enrolling a TOTP app. Signed in, or with the challenge of a sign-in
/// refused because the role requires MFA.
#[utoipa::path(post, path = "/auth/mfa/totp", tag = "auth", request_body = Option<EnrolRequest>,
    responses((status = 201, body = Enrolment),
        (status = 400, description = "Malformed JSON or invalid fields"),
        (status = 401, description = "Neither signed in nor a valid challenge"),
        (status = 403, description = "An API key or a failed CSRF check"),
        (status = 409, description = "MFA is already on: disable it first"),
        (status = 413, description = "Body too large"), (status = 415, description = "Not JSON")))]
pub async fn enrol(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<Option<EnrolRequest>>,
) -> ApiResult<Response> {
    // `null` is no body, as the document's optional body allows.
    let body = match (caller.principal(), body.flatten()) {
        (_, Some(body)) => body,
        // Signed in, the body may be left out; one that is sent must be valid.
        (Some(_), None) => EnrolRequest::default(),
        (None, None) => {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)".into(),
            ));
        }
    };
    let user = enrolling_user(&state, &caller, body.challenge.as_deref()).await?;
    let enrolment = start_enrolment(&state, &user).await?;
    Ok(no_store(StatusCode::CREATED, enrolment))
}

/// Starts (or restarts) `user`'s enrolment: a new secret, pending until confirmed; 409
/// when MFA is already on.
pub async fn start_enrolment(state: &AppState, user: &UserRow) -> ApiResult<Enrolment> {
    let secret = totp::new_secret();
    if !mfa::start_enrolment(&state.store, &user.id, &secret, state.clock.now_ms()).await? {
        return Err(ApiError::Conflict(
            "multi-factor sign-in is already on; disable it first to enrol another app".into(),
        ));
    }
    let otpauth_uri = totp::otpauth_uri(&secret, ISSUER, &user.email);
    let qr_svg = totp::qr_svg(&otpauth_uri)?;
    Ok(Enrolment {
        secret,
        otpauth_uri,
        qr_svg,
    })
}

/// The `otpauth://` URI of `user`'s pending enrolment, if one is pending.
pub async fn pending_uri(state: &AppState, user: &UserRow) -> ApiResult<Option<String>> {
    Ok(mfa::find(&state.store, &user.id)
        .await?
        .filter(|row| row.confirmed_at.is_none())
        .map(|row| totp::otpauth_uri(&row.secret, ISSUER, &user.email)))
}

/// The body of `POST /auth/mfa/totp/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// The app's current 6-digit code.
    pub code: String,
    /// The enrolment challenge, when not signed in.
    #[serde(default)]
    pub challenge: Option<String>,
}

/// Recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodes {
    /// Ten one-use codes that stand in for the app; keep them somewhere safe.
    pub recovery_codes: Vec<String>,
}

/// Turns MFA on with the app's first code; answers the recovery codes.
#[utoipa::path(post, path = "/auth/mfa/totp/confirm", tag = "auth", request_body = ConfirmRequest,
    responses((status = 200, body = RecoveryCodes),
        (status = 400, description = "Malformed JSON or invalid fields"),
        (status = 401, description = "Wrong code, or neither signed in nor a valid challenge"),
        (status = 403, description = "An API key or a failed CSRF check"),
        (status = 409, description = "No enrolment is pending"),
        (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"),
        (status = 429, description = "Too many codes tried")))]
pub async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    ip: ClientIp,
    ApiJson(body): ApiJson<ConfirmRequest>,
) -> ApiResult<Response> {
    let user = enrolling_user(&state, &caller, body.challenge.as_deref()).await?;
    let codes = confirm_enrolment(&state, &ip, &user.id, &body.code).await?;
    if caller.principal().is_none()
        && let Some(challenge) = &body.challenge
    {
        // Enrolled: the challenge has served; the next sign-in asks for a code.
        spend_enrolment(&state, challenge).await?;
    }
    Ok(no_store(
        StatusCode::OK,
        RecoveryCodes {
            recovery_codes: codes,
        },
    ))
}

/// Turns `user_id`'s pending enrolment on with the app's first code (throttled; a wrong
/// one is a 401, none pending a 409); answers the recovery codes, shown once.
pub async fn confirm_enrolment(
    state: &AppState,
    ip: &ClientIp,
    user_id: &str,
    code: &str,
) -> ApiResult<Vec<String>> {
    state
        .identity
        .throttle(state.clock.as_ref(), Action::SecondFactor, user_id)
        .await?;
    let pending = mfa::find(&state.store, user_id)
        .await?
        .filter(|row| row.confirmed_at.is_none())
        .ok_or_else(|| ApiError::Conflict("no enrolment is pending; start one first".into()))?;
    let now = state.clock.now_ms();
    let step =
        totp::verify(&pending.secret, code, now, pending.last_step).ok_or_else(wrong_code)?;
    let codes: Vec<String> = (0..totp::RECOVERY_CODES)
        .map(|_| totp::new_recovery_code())
        .collect();
    let hashes: Vec<String> = codes
        .iter()
        .filter_map(|code| totp::normalise_recovery_code(code))
        .map(|code| digest(&code))
        .collect();
    if !mfa::confirm(&state.store, user_id, step, &hashes, now).await? {
        return Err(ApiError::Conflict(
            "no enrolment is pending; start one first".into(),
        ));
    }
    audit::record(state, "mfa.enrolled", Some(user_id), ip, None).await;
    Ok(codes)
}

/// The body of `POST /auth/mfa/totp/disable`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DisableRequest {
    /// A current code or an unused recovery code.
    pub code: String,
}

/// Turns MFA off; needs a current code or a recovery code.
#[utoipa::path(post, path = "/auth/mfa/totp/disable", tag = "auth", request_body = DisableRequest,
    responses((status = 204, description = "MFA is off"),
        (status = 400, description = "Malformed JSON or invalid fields"),
        (status = 401, description = "Not signed in, or a wrong code"),
        (status = 403, description = "An API key or a failed CSRF check"),
        (status = 413, description = "Body too large"), (status = 415, description = "Not JSON"),
        (status = 429, description = "Too many codes tried")))]
pub async fn disable(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<DisableRequest>,
) -> ApiResult<StatusCode> {
    let user_id = caller.require_account()?.user_id.clone();
    disable_for(&state, &ip, &user_id, &body.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns `user_id`'s MFA off with a current code or an unused recovery code (a wrong one
/// is a 401; tries are throttled).
pub async fn disable_for(
    state: &AppState,
    ip: &ClientIp,
    user_id: &str,
    code: &str,
) -> ApiResult<()> {
    check_code(state, ip, user_id, code).await?;
    mfa::disable(&state.store, user_id).await?;
    audit::record(state, "mfa.disabled", Some(user_id), ip, None).await;
    Ok(())
}

/// Whether the caller signs in with a second factor.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    /// A confirmed TOTP app is required at sign-in.
    pub enabled: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
    /// The caller's role must use MFA.
    pub required_for_role: bool,
}

/// The caller's MFA state.
#[utoipa::path(get, path = "/auth/mfa", tag = "auth",
    responses((status = 200, body = MfaStatus),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "An API key")))]
pub async fn status(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Response> {
    let principal = caller.require_account()?;
    let enabled = mfa::find(&state.store, &principal.user_id)
        .await?
        .is_some_and(|row| row.confirmed_at.is_some());
    let left = mfa::recovery_codes_left(&state.store, &principal.user_id).await?;
    let required = mfa::required_roles(&state.store).await?;
    Ok(no_store(
        StatusCode::OK,
        MfaStatus {
            enabled,
            recovery_codes_left: if enabled { left } else { 0 },
            required_for_role: required.iter().any(|r| r == principal.role.as_str()),
        },
    ))
}

/// The roles whose members must sign in with MFA.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaPolicy {
    /// Role names: `user`, `moderator`, `admin`.
    #[schema(value_type = Vec<crate::http::schema::RoleName>)]
    pub required_roles: Vec<String>,
}

/// Which roles must use MFA (admins only).
#[utoipa::path(get, path = "/admin/mfa-policy", tag = "admin",
    responses((status = 200, body = MfaPolicy),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Not an admin")))]
pub async fn policy(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let required_roles = mfa::required_roles(&state.store).await?;
    Ok(no_store(StatusCode::OK, MfaPolicy { required_roles }))
}

/// Sets the roles that must use MFA (admins only). Their members without it are refused
/// at their next sign-in and asked to enrol; tokens already issued are not touched.
#[utoipa::path(put, path = "/admin/mfa-policy", tag = "admin", request_body = MfaPolicy,
    responses((status = 200, body = MfaPolicy),
        (status = 400, description = "Malformed JSON or an unknown role"),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Not an admin, or a failed CSRF check"),
        (status = 413, description = "Body too large"), (status = 415, description = "Not JSON")))]
pub async fn set_policy(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ip: ClientIp,
    body: Result<ApiJson<MfaPolicy>, ApiError>,
) -> ApiResult<Response> {
    let admin = caller.require_role(Role::Admin)?.user_id.clone();
    let ApiJson(body) = body?;
    let mut roles = Vec::new();
    for name in &body.required_roles {
        let role: Role = name
            .parse()
            .map_err(|_| ApiError::field("requiredRoles", format!("{name:?} is not a role")))?;
        if !roles.contains(&role.as_str()) {
            roles.push(role.as_str());
        }
    }
    mfa::set_required_roles(&state.store, &roles).await?;
    audit::record(
        &state,
        "mfa.policy_changed",
        Some(&admin),
        &ip,
        Some(roles.join(",").as_str()),
    )
    .await;
    let required_roles = mfa::required_roles(&state.store).await?;
    Ok(no_store(StatusCode::OK, MfaPolicy { required_roles }))
}
