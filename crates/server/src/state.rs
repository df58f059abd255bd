//! The state every handler shares: cheap clones of long-lived services.

use std::sync::Arc;

use basis_store::Store;
use basis_store::ids::IdBlocks;
use metrics_exporter_prometheus::PrometheusHandle;
use url::Url;

use crate::clock::Clock;
use crate::links::cache::LinkCache;
use crate::links::code::CodeBook;
use crate::links::input::UrlPolicy;
use crate::links::recorder::ClickRecorder;
use crate::passwords::Passwords;

/// Shared application state. Handlers receive a clone per request, so it is one `Arc`:
/// cloning costs a single atomic increment however many services it holds.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppServices>);

impl AppState {
    /// Shares `services` between all handlers.
    pub fn new(services: AppServices) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppServices;

    fn deref(&self) -> &AppServices {
        &self.0
    }
}

/// The long-lived services behind [`AppState`].
#[derive(Debug)]
pub struct AppServices {
    /// The database.
    pub store: Store,
    /// The source of the current time.
    pub clock: Arc<dyn Clock>,
    /// Unique ids for new links, leased in blocks.
    pub ids: Arc<IdBlocks>,
    /// The id ↔ code permutation.
    pub codes: Arc<CodeBook>,
    /// Which target URLs are accepted.
    pub url_policy: Arc<UrlPolicy>,
    /// The public origin, without a trailing slash, that short URLs start with.
    pub base_url: Arc<str>,
    /// The domains short links live on.
    pub domains: Arc<crate::links::domains::Domains>,
    /// The proxies whose forwarding headers name the client (the rate-limit rules'
    /// `trusted_proxies`): who a visitor is for the visit log and country targeting.
    pub trusted_proxies: Arc<[basis_ratelimit::http::IpNet]>,
    /// The rate-limit rules in force and the requests they recently refused (the admin's
    /// rate-limit page).
    pub rate_limits: Arc<crate::admin::rate_limits::RateLimits>,
    /// Visitors' countries (`--geoip-db`); `None` when no database was given.
    pub geoip: Option<Arc<crate::links::geoip::GeoIp>>,
    /// In-memory click counters, flushed in batches.
    pub clicks: Arc<ClickRecorder>,
    /// The code → link lookup cache.
    pub link_cache: LinkCache,
    /// Public views of accounts by id, on the two-tier cache.
    pub user_views: basis_cache::Cache<String, crate::identity::views::UserView>,
    /// argon2id hashing with bounded concurrency.
    pub passwords: Passwords,
    /// Accounts and sign-in: keys, throttle, sessions, mail, OIDC.
    pub identity: Arc<crate::identity::Identity>,
    /// Renders the Prometheus metrics page.
    pub metrics: PrometheusHandle,
    /// The job queue: background work and its status.
    pub jobs: crate::jobs::Jobs,
    /// Told about every new comment (the "new comment on your post" mail); a no-op until
    /// the queue provides one.
    pub comment_notifier: Arc<dyn crate::jobs::mail::CommentNotifier>,
    /// The ledger (accounts, transfers), its read models and their runner's bell.
    pub ledger: crate::ledger::handle::LedgerHandle,
    /// How long a request may run (ms): an unfinished money request's idempotency claim
    /// older than twice this was left by a process that died, and may be taken over.
    pub request_timeout_ms: i64,
    /// The shop, its checkout saga runner and the payment provider it talks to.
    pub shop: crate::shop::handle::ShopHandle,
    /// Webhook delivery settings and the queue delivery jobs go to.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The password form a browser gets on a protected link (the web interface's); `None`
    /// answers every client with the API's 401.
    pub password_pages: Option<Arc<dyn crate::links::redirect::PasswordPages>>,
}

impl AppServices {
    /// The public URL of a short code.
    pub fn short_url(&self, code: &str) -> String {
        format!("{}/{code}", self.base_url)
    }

    /// The public origin as a URL.
    pub fn base_url(&self) -> Url {
        Url::parse(&self.base_url).expect("the base URL was validated at start")
    }
}
