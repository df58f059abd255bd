//! Following the primary of a PostgreSQL cluster whose leader changes (Patroni, etcd).
//!
//! `--database-url` may list the cluster's nodes the way libpq does:
//! `postgres://user@h1:5432,h2:5432,h3:5432/db?target_session_attrs=read-write`. sqlx
//! connects to a single host, so the list is parsed here ([`ClusterUrl`]) and the store's
//! pool is pointed at whichever node is the primary ([`Leader`]). Basis never elects a
//! leader: Patroni does, and Basis only finds where it went.
//!
//! - A new connection is kept only if its server is not in recovery (checked right after
//!   connecting), so no write can reach a standby.
//! - A background task asks the node in use every [`CHECK_INTERVAL`] whether it is still
//!   the primary. When it is not (down, or demoted), every node is asked in parallel and new
//!   connections go to the one that answers as a primary (`Pool::set_connect_options`); a
//!   node in use that merely missed one check, with no other promoted, keeps its place.
//!   Connections opened before that change are closed instead of reused.
//! - While no node is the primary (the election), new connections fail at once, so a write
//!   is answered 503 straight away instead of waiting out the acquire timeout: sqlx's pool
//!   retries a refused connection until then, where libpq (and a proxy in front of
//!   Patroni) would report it at once. The nodes are asked every [`ELECTION_POLL`] until
//!   one is promoted; writes then resume there, without a restart.
//!
//! Should two nodes answer as primaries at once (a former leader cut off from etcd, in the
//! moment before Patroni demotes it), the node in use is kept if it is one of them, else the
//! first in the URL's order; Patroni's fencing (a leader that cannot renew its key demotes
//! itself; in synchronous mode, a commit needs a standby's acknowledgement) keeps that
//! moment from accepting writes that would be lost.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use tokio::sync::Notify;

use crate::{Error, Result};

/// How often the node in use is asked whether it is still the primary.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How often every node is asked during an election.
pub const ELECTION_POLL: Duration = Duration::from_millis(100);

/// Longest one node may take to answer whether it is the primary.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A database URL naming the nodes of a cluster, of which Basis uses the primary.
#[derive(Debug, Clone)]
pub struct ClusterUrl {
    /// Each node's host and port, in the URL's order.
    nodes: Vec<(String, u16)>,
    /// Everything else the URL says (user, password, database, parameters).
    base: PgConnectOptions,
}

impl ClusterUrl {
    /// Reads a `postgres://` URL. `Ok(None)` when it names a single server without
    /// `target_session_attrs` (the store connects to it directly); a list of hosts, or
    /// `target_session_attrs=read-write` (or `primary`, its newer name), makes a cluster.
    /// A host list is read-write whether the parameter says so or not: Basis writes through
    /// this URL. Anything else that could reach a standby (`any`, `standby`…) is refused.
    pub fn parse(url: &str) -> Result<Option<Self>> {
        let invalid = |why: String| Error::InvalidUrl(why);
        let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        else {
            return Err(invalid("expected a postgres:// URL".into()));
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (user_info, hosts) = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => (Some(user_info), hosts),
            None => (None, authority),
        };
        let nodes = hosts
            .split(',')
            .map(parse_host)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut session_attrs = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("target_session_attrs", value)) => session_attrs = Some(value),
                _ => kept.push(pair),
            }
        }
        match session_attrs {
            None | Some("read-write" | "primary") => {}
            Some(other) => {
                return Err(invalid(format!(
                    "target_session_attrs={other} could send writes to a standby; Basis writes \
                     through this URL, so use read-write (the default for a list of hosts)"
                )));
            }
        }
        if nodes.len() == 1 && session_attrs.is_none() {
            return Ok(None);
        }
        // One host stands in for all while sqlx reads the rest of the URL; each node then
        // gets its own host and port.
        let (host, port) = &nodes[0];
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let user_info = user_info.map(|u| format!("{u}@")).unwrap_or_default();
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let single = format!("postgres://{user_info}{host}:{port}{path}{query}");
        let base = single
            .parse::<PgConnectOptions>()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Some(Self { nodes, base }))
    }

    /// Each node's `host:port`, in the URL's order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect()
    }

    /// Applies `change` to the options of every node (application name, statement logging).
    pub(crate) fn map_options(
        mut self,
        change: impl FnOnce(PgConnectOptions) -> PgConnectOptions,
    ) -> Self {
        self.base = change(self.base);
        self
    }

    /// The options that connect to node `index`.
    fn node(&self, index: usize) -> PgConnectOptions {
        let (host, port) = &self.nodes[index];
        self.base.clone().host(host).port(*port)
    }

    /// Options whose connections fail at once, used while no node is the primary: a Unix
    /// socket in a directory that does not exist (sqlx gives up on that error immediately,
    /// where it would retry a refused connection until the acquire timeout).
    fn nowhere(&self) -> PgConnectOptions {
        self.base
            .clone()
            .socket("/nonexistent/basis/no-primary-elected")
    }
}

/// Reads one `host[:port]` of a host list (an IPv6 address in brackets).
fn parse_host(text: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("the host {text:?} opens a bracket it does not close"))?;
        (host, after.strip_prefix(':'))
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!(
            "the host list has an empty entry ({text:?}); write host:port,host:port"
        ));
    }
    let port = match port {
        None => 5432,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("the port of {host:?} is not a port number: {port:?}"))?,
    };
    Ok((host.to_owned(), port))
}

/// What a node answered when asked whether it is the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Primary,
    Standby,
    Down,
}

/// The node the store's pool follows, and the task that keeps it the primary.
#[derive(Debug)]
pub struct Leader {
    url: ClusterUrl,
    pool: PgPool,
    /// The node new connections go to; `None` during an election.
    current: Mutex<Option<usize>>,
    /// When new connections last changed node: connections opened before are not reused.
    changed_at: Arc<Mutex<Instant>>,
    /// Wakes the checking task early (a new connection found a standby).
    wake: Arc<Notify>,
    /// How many times the pool moved to another node.
    changes: AtomicU64,
    /// Checks in a row in which the node in use did not answer.
    misses: AtomicU32,
}

impl Leader {
    /// Finds the cluster's primary (asking until `acquire_timeout` passes, so a start during
    /// an election waits for it), opens the pool on it and starts following the leader.
    pub(crate) async fn connect(
        url: ClusterUrl,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<(PgPool, Arc<Self>)> {
        let deadline = Instant::now() + acquire_timeout;
        let first = loop {
            if let Some(node) = find_primary(&url, None).await {
                break node;
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(sqlx::Error::Io(std::io::Error::other(
                    format!(
                        "none of the nodes {} answers as a primary",
                        url.node_names().join(", ")
                    ),
                ))));
            }
            tokio::time::sleep(ELECTION_POLL).await;
        };
        let changed_at = Arc::new(Mutex::new(Instant::now()));
        let wake = Arc::new(Notify::new());
        let pool = {
            let changed_at = changed_at.clone();
            let wake = wake.clone();
            PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .after_connect(move |conn, _| {
                    let wake = wake.clone();
                    Box::pin(async move {
                        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                            .fetch_one(&mut *conn)
                            .await?;
                        if in_recovery {
                            wake.notify_one();
                            return Err(sqlx::Error::Protocol(
                                "the node is in recovery, not the primary".into(),
                            ));
                        }
                        Ok(())
                    })
                })
                .before_acquire(move |_, meta| {
                    let opened = Instant::now().checked_sub(meta.age);
                    let changed = *lock(&changed_at);
                    Box::pin(async move { Ok(opened.is_some_and(|at| at >= changed)) })
                })
                .connect_lazy_with(url.node(first))
        };
        let leader = Arc::new(Self {
            url,
            pool: pool.clone(),
            current: Mutex::new(Some(first)),
            changed_at,
            wake,
            changes: AtomicU64::new(0),
            misses: AtomicU32::new(0),
        });
        tracing::info!(node = %leader.url.node_names()[first], "following the cluster's primary");
        metrics::gauge!("basis_db_primary_known").set(1.0);
        leader.spawn_checks();
        // Like a single server's connect: fail now if the primary does not take a query.
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .map_err(Error::Unavailable)?;
        Ok((pool, leader))
    }

    /// The node new connections go to (`host:port`), or `None` during an election.
    pub fn current(&self) -> Option<String> {
        lock(&self.current).map(|index| self.url.node_names()[index].clone())
    }

    /// The position in the URL's host list (from 0) of the node new connections go to, or
    /// `None` during an election.
    pub fn current_index(&self) -> Option<usize> {
        *lock(&self.current)
    }

    /// How many nodes the URL lists.
    pub fn node_count(&self) -> usize {
        self.url.nodes.len()
    }

    /// How many times the pool moved to another node since the store connected.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Checks the node in use, and looks for the primary if it is no longer one.
    pub async fn check(&self) {
        let current = *lock(&self.current);
        let answer = match current {
            Some(index) => probe(self.url.node(index)).await,
            None => Answer::Down,
        };
        if answer == Answer::Primary {
            self.misses.store(0, Ordering::Relaxed);
            return;
        }
        let found = find_primary(&self.url, current).await;
        // A primary that missed one check (a slow answer, a full connection table) with no
        // other node promoted is given a second one before writes are refused.
        if found.is_none()
            && answer == Answer::Down
            && current.is_some()
            && self.misses.fetch_add(1, Ordering::Relaxed) == 0
        {
            return;
        }
        self.misses.store(0, Ordering::Relaxed);
        if found == current {
            return;
        }
        let names = self.url.node_names();
        match found {
            Some(index) => {
                self.pool.set_connect_options(self.url.node(index));
                self.changes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("basis_db_leader_changes_total").increment(1);
                tracing::warn!(node = %names[index], "following the new primary");
            }
            None => {
                self.pool.set_connect_options(self.url.nowhere());
                tracing::warn!(
                    was = %current.map_or("", |index| names[index].as_str()),
                    "no node is the primary (an election?): writes fail until one is promoted"
                );
            }
        }
        *lock(&self.changed_at) = Instant::now();
        *lock(&self.current) = found;
        metrics::gauge!("basis_db_primary_known").set(if found.is_some() { 1.0 } else { 0.0 });
    }

    /// Checks every [`CHECK_INTERVAL`] (every [`ELECTION_POLL`] during an election, or at
    /// once when woken) for as long as the store is in use.
    fn spawn_checks(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                let interval = match weak.upgrade() {
                    Some(leader) if lock(&leader.current).is_some() => CHECK_INTERVAL,
                    Some(_) => ELECTION_POLL,
                    None => return,
                };
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = wake.notified() => {}
                }
                let Some(leader) = weak.upgrade() else {
                    return;
                };
                if leader.pool.is_closed() {
                    return;
                }
                leader.check().await;
            }
        });
    }
}

/// Asks every node of `url` at once; returns the primary (`prefer` if it is one of several).
async fn find_primary(url: &ClusterUrl, prefer: Option<usize>) -> Option<usize> {
    let mut probes = tokio::task::JoinSet::new();
    for index in 0..url.nodes.len() {
        let options = url.node(index);
        probes.spawn(async move { (index, probe(options).await) });
    }
    let mut primaries: Vec<usize> = probes
        .join_all()
        .await
        .into_iter()
        .filter(|(_, answer)| *answer == Answer::Primary)
        .map(|(index, _)| index)
        .collect();
    primaries.sort_unstable();
    match prefer {
        Some(index) if primaries.contains(&index) => Some(index),
        _ => primaries.first().copied(),
    }
}

/// Asks one node, on a connection of its own, whether it is the primary.
async fn probe(options: PgConnectOptions) -> Answer {
    let options = options.disable_statement_logging();
    let asked = tokio::time::timeout(PROBE_TIMEOUT, async move {
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(in_recovery)
    })
    .await;
    match asked {
        Ok(Ok(false)) => Answer::Primary,
        Ok(Ok(true)) => Answer::Standby,
        Ok(Err(_)) | Err(_) => Answer::Down,
    }
}

/// Locks `mutex`, taking over a poisoned one (the values are plain; no `.await` happens
/// under these locks).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(url: &str) -> ClusterUrl {
        ClusterUrl::parse(url)
            .expect("a valid URL")
            .expect("a cluster URL")
    }

    #[test]
    fn a_host_list_becomes_one_node_per_host_with_the_rest_of_the_url_shared() {
        let url = cluster(
            "postgres://app:secret@10.0.0.1:5433,db2,[::1]:6000/shop?target_session_attrs=read-write&sslmode=disable",
        );
        assert_eq!(url.node_names(), ["10.0.0.1:5433", "db2:5432", "::1:6000"]);
        let second = url.node(1);
        assert_eq!(second.get_host(), "db2");
        assert_eq!(second.get_port(), 5432);
        assert_eq!(second.get_username(), "app");
        assert_eq!(second.get_database(), Some("shop"));
        assert_eq!(url.node(2).get_host(), "::1");
    }

    #[test]
    fn a_host_list_is_read_write_without_the_parameter_and_a_single_host_is_not_a_cluster() {
        assert_eq!(
            cluster("postgresql://h1:1,h2:2/db").node_names(),
            ["h1:1", "h2:2"]
        );
        assert!(
            ClusterUrl::parse("postgres://u@h1:5432/db?sslmode=disable")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            cluster("postgres://h1/db?target_session_attrs=primary").node_names(),
            ["h1:5432"]
        );
    }

    #[test]
    fn bad_host_lists_and_session_attributes_are_refused_with_the_reason() {
        let refusal = |url: &str| match ClusterUrl::parse(url) {
            Err(Error::InvalidUrl(why)) => why,
            other => panic!("{url} should be refused, got {other:?}"),
        };
        assert!(refusal("postgres://h1:5432,,h3/db").contains("empty entry"));
        assert!(refusal("postgres://h1:5432,h2:port/db").contains("not a port number"));
        assert!(refusal("postgres://h1:5432,h2:0/db").contains("not a port number"));
        assert!(refusal("postgres://h1,h2:70000/db").contains("not a port number"));
        assert!(refusal("postgres://[::1:5432,h2/db").contains("bracket"));
        assert!(refusal("postgres://h1,h2/db?target_session_attrs=any").contains("read-write"));
        assert!(refusal("postgres://h1/db?target_session_attrs=standby").contains("standby"));
        assert!(refusal("mysql://h1,h2/db").contains("postgres://"));
    }
}
