//! Operations endpoints: liveness, readiness and Prometheus metrics, served by `basis serve`
//! beside the API and by `basis worker` on its own port ([`serve_worker_ops`]).

use crate::http::routes::Routes;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use basis_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the operations endpoints read: the database they check and the metrics they render.
#[derive(Debug, Clone)]
pub struct Ops {
    /// The database readiness pings and whose pool usage is reported.
    pub store: Store,
    /// The process's Prometheus recorder.
    pub metrics: PrometheusHandle,
}

impl FromRef<AppState> for Ops {
    fn from_ref(state: &AppState) -> Self {
        Self {
            store: state.store.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

/// The operations routes, on any state they can be read from.
pub fn router<S>() -> Routes<S>
where
    Ops: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Routes::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics_page)
}

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready` (dependencies reachable).
    pub status: &'static str,
    /// With read replicas configured (readiness only): each replica's state at its last
    /// check, in configuration order. Replicas never make an instance unready: without one
    /// in rotation, reads go to the primary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaHealth>,
    /// With a `--database-url` listing a cluster's nodes (readiness only): the node that
    /// takes writes now, as the store follows it through failovers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<PrimaryHealth>,
    /// With links sharded (`--shard-url`, readiness only): each shard database of the map,
    /// in map order, and whether it answered. A shard database down never makes an
    /// instance unready: it fails only the requests that need its links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardHealth>,
}

/// A shard database of the links as readiness reports it: by its number in the map, not
/// its address, as for replicas and the primary (the answer is public).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardHealth {
    /// Its number in the shard map, from 0.
    pub database: usize,
    /// Whether it answered a ping in time.
    pub up: bool,
}

/// The primary of a multi-host database URL as readiness reports it: by its position in the
/// URL's host list, not its address, as for replicas (the answer is public; the operator
/// holding the URL knows the address, and the admin overview shows it).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryHealth {
    /// Its position in `--database-url`'s host list, from 1; `null` while no node is the
    /// primary (an election).
    #[schema(minimum = 1)]
    pub node: Option<usize>,
    /// How many nodes the URL lists.
    #[schema(minimum = 1)]
    pub nodes: usize,
    /// How many times this instance moved its writes to another node since it started.
    pub leader_changes: u64,
}

/// A read replica as readiness reports it (by position, not address: the answer is public).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaHealth {
    /// Its position in `--database-replica-url`, from 1.
    pub replica: usize,
    /// Whether it takes reads.
    pub in_rotation: bool,
    /// How far behind the primary it was, in milliseconds.
    pub lag_ms: u64,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        replicas: Vec::new(),
        primary: None,
        shards: Vec::new(),
    })
}

/// Readiness: the database answers. Also reports the read replicas' state, with a
/// multi-host database URL which node is the primary, and with links sharded whether each
/// shard database answers.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<Ops>) -> Result<Json<Health>, ApiError> {
    check_store(&state.store).await?;
    let replicas = state.store.replicas().map_or_else(Vec::new, |replicas| {
        replicas
            .status()
            .into_iter()
            .enumerate()
            .map(|(i, replica)| ReplicaHealth {
                replica: i + 1,
                in_rotation: replica.in_rotation,
                lag_ms: u64::try_from(replica.lag.as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    });
    let primary = state.store.leader().map(|leader| PrimaryHealth {
        node: leader.current_index().map(|index| index + 1),
        nodes: leader.node_count(),
        leader_changes: leader.changes(),
    });
    let shards = check_shards(&state.store).await;
    Ok(Json(Health {
        status: "ready",
        replicas,
        primary,
        shards,
    }))
}

/// Pings every shard database of the links at once, each within [`READY_TIMEOUT`] (none
/// without sharding).
async fn check_shards(store: &Store) -> Vec<ShardHealth> {
    let Some(shards) = store.link_shards() else {
        return Vec::new();
    };
    let layout = shards.layout();
    let pings = layout
        .databases
        .iter()
        .enumerate()
        .map(|(number, database)| async move {
            ShardHealth {
                database: number,
                up: check_store(&database.store).await.is_ok(),
            }
        });
    futures_util::future::join_all(pings).await
}

/// Whether the database answers a ping within [`READY_TIMEOUT`]: what readiness checks,
/// and what the admin overview shows for the store.
pub async fn check_store(store: &Store) -> Result<(), ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(ApiError::Unavailable(err.to_string())),
        Err(_) => Err(ApiError::Unavailable(
            "the database did not answer in time".into(),
        )),
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
pub async fn metrics_page(State(state): State<Ops>) -> Response {
    let usage = state.store.pool_usage();
    for (pool, size, idle) in [
        ("read", usage.read_size, usage.read_idle),
        ("write", usage.write_size, usage.write_idle),
    ] {
        metrics::gauge!("basis_db_pool_connections", "pool" => pool, "state" => "open")
            .set(f64::from(size));
        metrics::gauge!("basis_db_pool_connections", "pool" => pool, "state" => "idle")
            .set(f64::from(idle));
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Serves the operations routes of a `basis worker` on `listener` until `stop` resolves:
/// what a process supervisor probes and Prometheus scrapes, without the API.
pub async fn serve_worker_ops(
    listener: tokio::net::TcpListener,
    ops: Ops,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Request metrics, request ids and problem bodies, as on the API port.
    let app = router()
        .into_router()
        .layer(crate::http::ObserveLayer::default())
        .with_state(ops);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}
