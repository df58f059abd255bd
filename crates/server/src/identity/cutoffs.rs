//! Access tokens that die at once: a per-account "valid after" time.
//!
//! An access token is checked locally (signature, expiry), so by itself it lives until it
//! expires even when its account is deleted, demoted, signed out everywhere or given a new
//! password. Each of those raises the account's cutoff; a token issued before it is refused
//! on its next request.
//!
//! - The check is a read of an in-memory map (tens of nanoseconds; `benches/auth_overhead.rs`).
//! - The database is the source of truth (`basis_store::token_cutoffs`); only cutoffs
//!   younger than the token lifetime matter, so the map stays as small as the recent
//!   changes.
//! - Other instances learn a change through Redis pub/sub when Redis is configured (one
//!   delivery, sub-millisecond), and in any case from the periodic reload of the recent
//!   cutoffs ([`RELOAD_EVERY`]), which also covers messages missed while disconnected.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use basis_auth::jwt::ACCESS_TOKEN_SECONDS;
use basis_store::Store;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::clock::Clock;

/// The Redis channel that carries new cutoffs (`<user id> <valid after ms>`).
const CHANNEL: &str = "basis:token-cutoffs";
/// How often every instance reloads the recent cutoffs from the database.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// A token lives this long (ms): older cutoffs can refuse nothing.
const TOKEN_LIFETIME_MS: i64 = ACCESS_TOKEN_SECONDS * 1000;

/// The cutoffs of one instance.
#[derive(Debug, Default)]
pub struct TokenCutoffs {
    /// User id → valid after (Unix ms). A std lock: never held across an `.await`.
    by_user: RwLock<HashMap<Box<str>, i64>>,
    /// Where changes are announced, when Redis is configured.
    redis: Option<redis::Client>,
}

impl TokenCutoffs {
    /// Cutoffs announced through Redis at `redis_url`, when set.
    pub fn new(redis_url: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            by_user: RwLock::default(),
            redis: redis_url.map(redis::Client::open).transpose()?,
        })
    }

    /// Whether a token of `user_id` issued at `issued_at_ms` is refused.
    pub fn refuses(&self, user_id: &str, issued_at_ms: i64) -> bool {
        let by_user = self.by_user.read().unwrap_or_else(|e| e.into_inner());
        by_user
            .get(user_id)
            .is_some_and(|&valid_after| issued_at_ms < valid_after)
    }

    /// Notes a cutoff (keeping the later of two).
    fn note(&self, user_id: &str, valid_after: i64) {
        let mut by_user = self.by_user.write().unwrap_or_else(|e| e.into_inner());
        let slot = by_user.entry(user_id.into()).or_insert(valid_after);
        *slot = (*slot).max(valid_after);
    }

    /// Refuses every token of `user_id` issued before `now` (Unix ms): stores the cutoff,
    /// applies it here, and announces it to the other instances.
    pub async fn cut(&self, store: &Store, user_id: &str, now: i64) -> basis_store::Result<()> {
        basis_store::token_cutoffs::raise(store, user_id, now).await?;
        self.applied(user_id, now).await;
        Ok(())
    }

    /// Applies a cutoff already stored (by a transaction that did more) and announces it.
    pub async fn applied(&self, user_id: &str, now: i64) {
        self.note(user_id, now);
        if let Some(client) = &self.redis {
            let announce = async {
                let mut connection = client.get_multiplexed_async_connection().await?;
                redis::AsyncCommands::publish::<_, _, i64>(
                    &mut connection,
                    CHANNEL,
                    format!("{user_id} {now}"),
                )
                .await
            };
            // The stored cutoff reaches the others by the periodic reload in any case.
            match tokio::time::timeout(Duration::from_secs(2), announce).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot announce a token cutoff"),
                Err(_) => tracing::warn!("announcing a token cutoff timed out"),
            }
        }
    }

    /// Loads the cutoffs that can still refuse a token at `now`, dropping older ones.
    pub async fn reload(&self, store: &Store, now: i64) -> basis_store::Result<()> {
        let horizon = now - TOKEN_LIFETIME_MS;
        let recent = basis_store::token_cutoffs::since(store, horizon).await?;
        let mut by_user = self.by_user.write().unwrap_or_else(|e| e.into_inner());
        by_user.retain(|_, valid_after| *valid_after > horizon);
        for (user_id, valid_after) in recent {
            let slot = by_user.entry(user_id.into()).or_insert(valid_after);
            *slot = (*slot).max(valid_after);
        }
        Ok(())
    }

    /// Keeps this instance's cutoffs current until `stop`: periodic reloads, the Redis
    /// subscription when configured, and removal of expired rows.
    pub async fn follow(
        &self,
        store: Store,
        clock: std::sync::Arc<dyn Clock>,
        mut stop: watch::Receiver<bool>,
    ) {
        let subscription = async {
            let Some(client) = &self.redis else {
                return std::future::pending().await;
            };
            loop {
                if let Err(err) = self.listen(client, &store, &*clock).await {
                    tracing::debug!(error = %err, "token cutoff subscription lost");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let reloads = async {
            let mut ticks = tokio::time::interval(RELOAD_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let now = clock.now_ms();
                if let Err(err) = self.reload(&store, now).await {
                    tracing::warn!(error = %err, "cannot reload token cutoffs");
                }
                let _ = basis_store::token_cutoffs::purge(&store, now - TOKEN_LIFETIME_MS).await;
            }
        };
        tokio::select! {
            () = subscription => {}
            () = reloads => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }

    /// Applies announced cutoffs until the connection fails; reloads first, so nothing
    /// announced while unsubscribed is missed.
    async fn listen(
        &self,
        client: &redis::Client,
        store: &Store,
        clock: &dyn Clock,
    ) -> anyhow::Result<()> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        self.reload(store, clock.now_ms()).await?;
        let (_sink, mut messages) = pubsub.split();
        while let Some(message) = messages.next().await {
            let payload = message.get_payload_bytes();
            let parsed = std::str::from_utf8(payload)
                .ok()
                .and_then(|text| text.split_once(' '))
                .and_then(|(user, at)| Some((user, at.parse::<i64>().ok()?)));
            if let Some((user_id, valid_after)) = parsed {
                self.note(user_id, valid_after);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issued_before_the_cutoff_are_refused_and_later_ones_are_not() {
        let cutoffs = TokenCutoffs::default();
        assert!(!cutoffs.refuses("u1", 1_000));
        cutoffs.note("u1", 5_000);
        assert!(cutoffs.refuses("u1", 4_999));
        assert!(!cutoffs.refuses("u1", 5_000));
        assert!(
            !cutoffs.refuses("u2", 1_000),
            "other accounts are untouched"
        );
        cutoffs.note("u1", 3_000);
        assert!(cutoffs.refuses("u1", 4_000), "a cutoff never moves back");
    }
}
