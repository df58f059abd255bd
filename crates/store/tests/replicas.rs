//! Reads on streaming replicas, with a real primary and replica started by the test
//! (private clusters: replay is paused and the replica stopped, which the shared server
//! must never see).

use std::sync::Arc;
use std::time::Duration;

use basis_store::replicas::{CallerReads, ReplicaStatus, Replicas, scoped};
use basis_store::{ConnectOptions, Error, Store, on_pool};
use basis_testkit::{PrivatePostgres, eventually};

/// A primary, its replica and a store reading from it; `None` when the tools are missing.
struct Rig {
    store: Store,
    replica: PrivatePostgres,
    primary: PrivatePostgres,
}

impl Rig {
    async fn start(max_lag: Duration) -> Option<Self> {
        let primary = PrivatePostgres::start(0).await?;
        let replica = primary.replica().await?;
        let options = ConnectOptions {
            max_connections: 4,
            replicas: vec![replica.url("postgres")],
            replica_max_lag: max_lag,
            // The test runs each check itself.
            replica_checks: false,
            ..ConnectOptions::default()
        };
        let store = Store::connect(&primary.url("postgres"), &options)
            .await
            .expect("connect with a replica");
        on_pool!(store, write, pool => sqlx::query("CREATE TABLE notes (id BIGINT PRIMARY KEY)").execute(pool).await.map(drop))
            .expect("create the table");
        let rig = Self {
            store,
            replica,
            primary,
        };
        rig.wait_in_rotation(true).await;
        Some(rig)
    }

    fn replicas(&self) -> &Arc<Replicas> {
        self.store.replicas().expect("replicas are configured")
    }

    /// Checks until the replica is (or is not) in rotation, and for `true` until it has
    /// also replayed everything written so far.
    async fn wait_in_rotation(&self, wanted: bool) {
        let target = self.primary.wal_position().await;
        self.wait_for(
            &format!("the replica's rotation becomes {wanted}"),
            |status| status.in_rotation == wanted && (!wanted || status.replayed_lsn >= target),
        )
        .await;
    }

    /// Checks until the replica's status satisfies `wanted`. A single check can take a
    /// replica out for a reason other than the one a test is after (a check that timed out
    /// on a busy machine), so tests name the whole state they wait for.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&ReplicaStatus) -> bool) {
        let reached = eventually(Duration::from_secs(30), || async {
            self.replicas().check().await;
            wanted(&self.replicas().status()[0])
        })
        .await;
        assert!(reached, "{what}: {:?}", self.replicas().status()[0]);
    }

    async fn write(&self, id: i64) {
        on_pool!(self.store, write, pool => sqlx::query("INSERT INTO notes (id) VALUES ($1)").bind(id).execute(pool).await.map(drop))
            .expect("insert a note");
    }

    /// Whether a read sees note `id`.
    async fn sees(&self, id: i64) -> bool {
        let found: Option<i64> = on_pool!(self.store, read, pool => sqlx::query_scalar("SELECT id FROM notes WHERE id = $1").bind(id).fetch_optional(pool).await)
            .expect("read a note");
        found.is_some()
    }

    /// One request of caller `key`: runs `work` in its scope, then records its write.
    async fn request<T>(&self, key: &str, work: impl std::future::Future<Output = T>) -> T {
        let reads: Arc<CallerReads> = self.replicas().caller(Some(key.to_owned())).await;
        let out = scoped(reads.clone(), work).await;
        if reads.wrote() {
            self.replicas()
                .record_write(&[key])
                .await
                .expect("record the write");
        }
        out
    }
}

#[tokio::test]
async fn reads_go_to_a_healthy_replica_which_may_serve_stale_data_to_others() {
    let Some(rig) = Rig::start(Duration::from_secs(60)).await else {
        return;
    };
    rig.write(1).await;
    rig.wait_in_rotation(true).await;
    let before = rig.replicas().read_counts();
    assert!(rig.sees(1).await, "a caught-up replica serves the row");
    let after = rig.replicas().read_counts();
    assert_eq!(
        after.replica,
        before.replica + 1,
        "the read went to the replica"
    );
    assert_eq!(after.primary, before.primary);

    rig.replica.pause_replay().await;
    rig.write(2).await;
    assert!(
        !rig.sees(2).await,
        "an anonymous read is served by the paused replica, which has not replayed the write"
    );
    rig.replica.resume_replay().await;
}

#[tokio::test]
async fn a_caller_reads_its_own_writes_while_others_read_the_replica() {
    let Some(rig) = Rig::start(Duration::from_secs(60)).await else {
        return;
    };
    rig.replica.pause_replay().await;

    // Within the request that wrote, later reads see the write.
    let seen_in_request = rig
        .request("writer", async {
            rig.write(10).await;
            rig.sees(10).await
        })
        .await;
    assert!(seen_in_request, "the writing request reads its own write");

    // In the writer's next request, the replica has not replayed the write: the read is
    // sticky to the primary.
    let before = rig.replicas().read_counts();
    assert!(rig.request("writer", rig.sees(10)).await);
    let after = rig.replicas().read_counts();
    assert_eq!(
        after.sticky,
        before.sticky + 1,
        "the writer's read is sticky"
    );
    assert_eq!(after.primary, before.primary + 1);

    // Another caller reads from the replica, stale.
    assert!(
        !rig.request("other", rig.sees(10)).await,
        "another caller's read is served by the replica, which has not replayed the write"
    );
    assert_eq!(rig.replicas().read_counts().replica, after.replica + 1);

    // Once the replica has replayed the write, the writer reads from it again.
    rig.replica.resume_replay().await;
    rig.wait_in_rotation(true).await;
    let before = rig.replicas().read_counts();
    assert!(rig.request("writer", rig.sees(10)).await);
    let after = rig.replicas().read_counts();
    assert_eq!(
        after.replica,
        before.replica + 1,
        "the writer is back on the replica"
    );
    assert_eq!(after.sticky, before.sticky);
}

#[tokio::test]
async fn a_lagging_or_stopped_replica_leaves_the_rotation_and_returns_when_caught_up() {
    let Some(mut rig) = Rig::start(Duration::from_millis(100)).await else {
        return;
    };
    // Lagging past the limit.
    rig.replica.pause_replay().await;
    rig.write(20).await;
    rig.wait_for("the replica leaves the rotation for its lag", |status| {
        !status.in_rotation && status.lag > Duration::from_millis(100)
    })
    .await;
    let before = rig.replicas().read_counts();
    assert!(rig.sees(20).await, "reads keep succeeding, on the primary");
    assert_eq!(rig.replicas().read_counts().primary, before.primary + 1);
    rig.replica.resume_replay().await;
    rig.wait_in_rotation(true).await;
    let before = rig.replicas().read_counts();
    assert!(rig.sees(20).await);
    assert_eq!(rig.replicas().read_counts().replica, before.replica + 1);

    // Stopped.
    rig.replica.crash();
    rig.wait_in_rotation(false).await;
    rig.write(21).await;
    assert!(rig.sees(21).await, "reads keep succeeding, on the primary");
    rig.replica.start_again().await;
    rig.wait_in_rotation(true).await;
    let before = rig.replicas().read_counts();
    assert!(rig.sees(21).await);
    assert_eq!(rig.replicas().read_counts().replica, before.replica + 1);
}

#[tokio::test]
async fn a_replica_url_that_is_a_primary_or_not_postgres_is_refused() {
    let Some(primary) = PrivatePostgres::start(0).await else {
        return;
    };
    let options = ConnectOptions {
        replicas: vec![primary.url("postgres")],
        replica_checks: false,
        ..ConnectOptions::default()
    };
    let err = Store::connect(&primary.url("postgres"), &options)
        .await
        .expect_err("a primary is no replica");
    assert!(
        matches!(&err, Error::InvalidUrl(message) if message.contains("not in recovery")),
        "{err}"
    );
    let options = ConnectOptions {
        replicas: vec!["mysql://127.0.0.1/basis".to_owned()],
        replica_checks: false,
        ..ConnectOptions::default()
    };
    let err = Store::connect(&primary.url("postgres"), &options)
        .await
        .expect_err("not a PostgreSQL URL");
    assert!(matches!(err, Error::InvalidUrl(_)), "{err}");
}
