//! `/account/sessions`: the visitor's live sessions (when each began and was last used,
//! from which browser), ending one, or every one but this. A session is named by the
//! digest of its id, which authenticates nothing; one that is not the visitor's is "not
//! found", and is left alone ([`sessions::delete_owned`]).

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use basis_store::sessions;
use maud::html;
use serde::Deserialize;

use super::account_page::{DoneQuery, done_notice};
use super::forms::token;
use super::session::{Posted, Visitor, csrf_forms};
use super::{page, paths, see_other, sign_in_first};
use crate::clock::to_datetime;
use crate::links::device::browser_of;
use crate::state::AppState;

/// The end-one form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct EndForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The session to end (its id's digest).
    #[serde(default)]
    pub session: String,
}

/// The end-others form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct EndOthersForm {
    /// The CSRF token.
    pub csrf: Option<String>,
}

csrf_forms!(EndForm, EndOthersForm);

fn when(ms: i64) -> String {
    to_datetime(ms).format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `GET /account/sessions`.
pub async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    uri: Uri,
    Query(query): Query<DoneQuery>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    let listed = match sessions::list_for_user(&state.store, &user.user_id).await {
        Ok(listed) => listed,
        Err(err) => return page::failure(&visitor, err.into()),
    };
    let now = state.clock.now_ms();
    let policy = state.identity.sessions;
    let live: Vec<_> = listed
        .into_iter()
        .filter(|s| policy.is_live(s.created_at, s.last_seen_at, now))
        .collect();
    let main = html! {
        (done_notice(&query))
        table {
            caption.skip { "Your sessions" }
            thead { tr { th scope="col" { "Browser" } th scope="col" { "Signed in" } th scope="col" { "Last used" } th scope="col" { span.skip { "Actions" } } } }
            tbody {
                @for session in &live {
                    @let this = session.id_hash == user.session_hash;
                    tr {
                        td {
                            strong { (browser_of(session.user_agent.as_deref())) }
                            @if this { " " span.muted { "(this browser)" } }
                            br;
                            span.muted.agent { (session.user_agent.as_deref().unwrap_or("no user agent given")) }
                        }
                        td { (when(session.created_at)) }
                        td { (when(session.last_seen_at)) }
                        td {
                            @if !this {
                                form method="post" action=(paths::ACCOUNT_SESSIONS_END) {
                                    (token(&visitor.csrf))
                                    input type="hidden" name="session" value=(session.id_hash);
                                    button.secondary type="submit" { "End" span.skip { " the session from " (when(session.created_at)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if live.len() > 1 {
            form.panel method="post" action=(paths::ACCOUNT_SESSIONS_END_OTHERS) {
                (token(&visitor.csrf))
                p { "Signed in somewhere you no longer use, or do not recognise?" }
                button.danger type="submit" { "End every other session" }
            }
        }
        p { a href=(paths::ACCOUNT) { "Back to your account" } }
    };
    page::render(Some(&visitor), StatusCode::OK, "Sessions", main)
}

/// `POST /account/sessions/end`: ends one of the visitor's sessions (this one signs out);
/// 404 for a session that is not theirs.
pub async fn end(
    State(state): State<AppState>,
    uri: Uri,
    Posted { visitor, form }: Posted<EndForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    match sessions::delete_owned(&state.store, &user.user_id, &form.session).await {
        Ok(true) if form.session == user.session_hash => {
            let mut response = see_other("/");
            if let Ok(clear) = HeaderValue::from_str(&basis_auth::session::clear_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, clear);
            }
            response
        }
        Ok(true) => see_other(&format!("{}?done=ended", paths::ACCOUNT_SESSIONS)),
        Ok(false) => page::not_found_for(&visitor),
        Err(err) => page::failure(&visitor, err.into()),
    }
}

/// `POST /account/sessions/end-others`: ends every session of the visitor but this one.
pub async fn end_others(
    State(state): State<AppState>,
    uri: Uri,
    Posted { visitor, .. }: Posted<EndOthersForm>,
) -> Response {
    let Some(user) = &visitor.user else {
        return sign_in_first(&uri);
    };
    match sessions::delete_others(&state.store, &user.user_id, &user.session_hash).await {
        Ok(_) => see_other(&format!("{}?done=others", paths::ACCOUNT_SESSIONS)),
        Err(err) => page::failure(&visitor, err.into()),
    }
}
