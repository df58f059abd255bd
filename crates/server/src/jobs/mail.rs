//! Mail jobs: the password-reset mail and "new comment on your post".
//!
//! Requests only enqueue; a worker writes and sends the mail over SMTP. Each mail job
//! carries its own `mailId`, recorded in `mail_sent` once the SMTP server has accepted the
//! message, so a redelivered job does not send again. (A crash between the SMTP server's
//! acceptance and that record can still send a mail twice: no mail system can make a send
//! and a database write one atomic step. The window is one round trip.)
//!
//! The reset token is made by the worker, not the request: a queue payload is stored in
//! clear, and a reset token in it would be a credential at rest.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use basis_auth::secret::{digest, random_token};
use basis_queue::{ClaimedJob, JobError, NewJob};
use basis_store::{Store, password_resets, users};
use serde::{Deserialize, Serialize};

use super::context::JobContext;
use crate::identity::RESET_TTL_MS;

/// A comment was committed. Carries what a notification needs to look up the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentAdded {
    /// The post commented on.
    pub post_id: i64,
    /// Its author (the one to notify).
    pub post_author_id: String,
    /// The new comment.
    pub comment_id: i64,
    /// Who wrote it (a notifier may skip authors commenting on their own posts).
    pub comment_author_id: String,
}

/// Called once for every comment, after its transaction has committed, before the
/// response is sent. The default ([`NoNotifications`]) does nothing; the job queue plugs
/// in an implementation that enqueues the "new comment on your post" email (set
/// `AppServices::comment_notifier`). It cannot fail the request: the comment is already
/// stored, so an implementation logs its own errors (and should only enqueue, not send).
pub trait CommentNotifier: Send + Sync + fmt::Debug + 'static {
    /// Reacts to a new comment.
    fn comment_added(&self, event: CommentAdded) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The notifier that notifies nobody.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifications;

impl CommentNotifier for NoNotifications {
    fn comment_added(&self, _event: CommentAdded) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// The password-reset mail.
pub const PASSWORD_RESET: &str = "mail.password_reset";
/// "New comment on your post", to the post's author.
pub const NEW_COMMENT: &str = "mail.new_comment";
/// Attempts before a mail job is dead-lettered (about an hour of backoff).
const MAIL_ATTEMPTS: u32 = 10;

/// The payload of a password-reset mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetMail {
    /// This mail's id (idempotency).
    pub mail_id: String,
    /// The account.
    pub user_id: String,
    /// Our public origin when the reset was asked for (the mail links to it).
    pub base_url: String,
}

/// The payload of a new-comment mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentMail {
    /// This mail's id (idempotency): one per comment.
    pub mail_id: String,
    /// The new comment.
    pub comment_id: i64,
    /// Our public origin.
    pub base_url: String,
}

/// The job that sends `user_id` a reset mail.
pub fn reset_job(user_id: &str, base_url: &str) -> NewJob {
    let mail = ResetMail {
        mail_id: super::new_id(),
        user_id: user_id.to_owned(),
        base_url: base_url.to_owned(),
    };
    NewJob {
        max_attempts: MAIL_ATTEMPTS,
        ..NewJob::new(super::MAIL_QUEUE, PASSWORD_RESET, json(&mail))
    }
}

/// The job that tells a post's author about comment `comment_id`. The blog calls this
/// when a comment is created; one comment never makes two mails (deduplicated by id).
pub fn new_comment_job(comment_id: i64, base_url: &str) -> NewJob {
    let mail = CommentMail {
        mail_id: format!("comment:{comment_id}"),
        comment_id,
        base_url: base_url.to_owned(),
    };
    NewJob {
        max_attempts: MAIL_ATTEMPTS,
        dedup_key: Some(mail.mail_id.clone()),
        ..NewJob::new(super::MAIL_QUEUE, NEW_COMMENT, json(&mail))
    }
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

fn retry(err: impl std::fmt::Display) -> JobError {
    JobError::Retry(err.to_string())
}

async fn already_sent(store: &Store, mail_id: &str) -> Result<bool, JobError> {
    basis_store::mail::was_sent(store, mail_id)
        .await
        .map_err(retry)
}

async fn mark_sent(store: &Store, mail_id: &str, now: i64) -> Result<(), JobError> {
    basis_store::mail::mark_sent(store, mail_id, now)
        .await
        .map_err(retry)
}

/// Sends `body` unless `mail_id` went out already; records it when the server took it.
async fn send_once(
    ctx: &JobContext,
    mail_id: &str,
    to: &str,
    subject: &str,
    body: String,
) -> Result<Option<serde_json::Value>, JobError> {
    let mailer = ctx.mailer.as_ref().ok_or_else(|| {
        // Dead-lettered at once: an operator can replay it after setting --smtp-url.
        JobError::Fatal("no SMTP server is configured (--smtp-url)".into())
    })?;
    mailer.send(to, subject, body).await.map_err(retry)?;
    mark_sent(&ctx.store, mail_id, ctx.clock.now_ms()).await?;
    metrics::counter!("basis_mail_sent_total").increment(1);
    Ok(Some(serde_json::json!({ "sent": true })))
}

fn skipped(reason: &str) -> Result<Option<serde_json::Value>, JobError> {
    Ok(Some(serde_json::json!({ "sent": false, "reason": reason })))
}

/// Writes and sends a password-reset mail with a fresh single-use token.
pub async fn password_reset(
    ctx: Arc<JobContext>,
    job: ClaimedJob,
) -> Result<Option<serde_json::Value>, JobError> {
    let mail: ResetMail = serde_json::from_value(job.payload).map_err(JobError::bad_payload)?;
    if already_sent(&ctx.store, &mail.mail_id).await? {
        return skipped("already sent");
    }
    let Some(user) = users::find(&ctx.store, &mail.user_id)
        .await
        .map_err(retry)?
    else {
        return skipped("the account no longer exists");
    };
    let now = ctx.clock.now_ms();
    let token = random_token();
    password_resets::insert(
        &ctx.store,
        &digest(&token),
        &user.id,
        now,
        now + RESET_TTL_MS,
    )
    .await
    .map_err(retry)?;
    let link = reset_link(&mail.base_url, &token);
    let body = format!(
        "Someone asked to reset the password of your Basis account.\n\n\
         To choose a new password, open this link within one hour (it works once):\n\n\
         {link}\n\n\
         If it was not you, ignore this mail: your password stays as it is.\n"
    );
    send_once(
        &ctx,
        &mail.mail_id,
        &user.email,
        "Reset your Basis password",
        body,
    )
    .await
}

/// The path of the page a reset mail links to (a web page: `web::paths::RESET_NEW`).
pub const RESET_PAGE: &str = "/reset/new";

/// The page that takes a new password for `token`. The token rides in the query, which
/// the request log leaves out (it records the path only), and the page answers with
/// `Referrer-Policy: no-referrer` so it goes no further.
pub fn reset_link(base_url: &str, token: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    format!("{}{}?{query}", base_url.trim_end_matches('/'), RESET_PAGE)
}

/// Tells a post's author about a new comment (not when they commented themselves).
pub async fn new_comment(
    ctx: Arc<JobContext>,
    job: ClaimedJob,
) -> Result<Option<serde_json::Value>, JobError> {
    let mail: CommentMail = serde_json::from_value(job.payload).map_err(JobError::bad_payload)?;
    if already_sent(&ctx.store, &mail.mail_id).await? {
        return skipped("already sent");
    }
    let row = basis_store::mail::comment_notice(&ctx.store, mail.comment_id)
        .await
        .map_err(retry)?;
    let Some(row) = row else {
        return skipped("the comment no longer exists");
    };
    if row.post_author == row.comment_author {
        return skipped("the author commented on their own post");
    }
    let excerpt: String = row.body.chars().take(500).collect();
    let body = format!(
        "{commenter} commented on your post \"{title}\":\n\n{excerpt}\n\n\
         Read the conversation at {base}/posts/{post}/comments\n",
        commenter = row.commenter,
        title = row.title,
        base = mail.base_url,
        post = row.post_id,
    );
    let title: String = row
        .title
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    let subject = format!("New comment on \"{title}\"");
    send_once(&ctx, &mail.mail_id, &row.author_email, &subject, body).await
}

/// The blog's comment seam, wired to the queue: each new comment on someone else's post
/// enqueues one "new comment" mail job. Enqueueing cannot fail the request (the comment is
/// stored already), so a failure is logged.
#[derive(Debug)]
pub struct QueuedCommentMail {
    /// Where the job goes.
    pub jobs: super::Jobs,
    /// Our public origin, for the link in the mail.
    pub base_url: String,
}

impl CommentNotifier for QueuedCommentMail {
    fn comment_added(
        &self,
        event: CommentAdded,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if event.post_author_id == event.comment_author_id {
                return;
            }
            let job = new_comment_job(event.comment_id, &self.base_url);
            if let Err(err) = self.jobs.enqueue(job).await {
                tracing::error!(error = %err, comment = event.comment_id, "cannot enqueue the new-comment mail");
            }
        })
    }
}
