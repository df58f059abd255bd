//! Failover on a real Patroni cluster: three PostgreSQL nodes and an etcd of the test's own
//! (`scripts/pg-cluster`, in a temporary directory on free ports), a store on the cluster's
//! multi-host URL, and the leader killed under a steady stream of writes.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basis_store::{ConnectOptions, Error, Store, on_pool};
use basis_testkit::eventually;

/// The longest a write may take before it counts as hanging.
const HANG: Duration = Duration::from_secs(10);

/// A cluster started by `scripts/pg-cluster up`, stopped (and its directory removed) when
/// dropped.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// Starts a cluster with synchronous replication; `None` (with a visible `skipped:`
    /// line) when Patroni is not installed.
    fn start_synchronous() -> Option<Self> {
        if Command::new("patroni").arg("--version").output().is_err() {
            println!(
                "skipped: patroni is not installed (scripts/test, or scripts/pg-cluster install, installs it)"
            );
            return None;
        }
        let cluster = Self {
            dir: std::env::temp_dir().join(format!("basis-failover-{}", std::process::id())),
            port: free_port_block(),
        };
        let out = cluster.script(&["up", "--sync"]);
        assert!(
            out.status.success(),
            "scripts/pg-cluster up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(cluster)
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster");
        Command::new(script)
            .args(args)
            .env("BASIS_PG_CLUSTER_DIR", &self.dir)
            .env("BASIS_PG_CLUSTER_PORT", self.port.to_string())
            .output()
            .expect("run scripts/pg-cluster")
    }

    fn line(&self, args: &[&str]) -> String {
        let out = self.script(args);
        assert!(out.status.success(), "scripts/pg-cluster {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The node holding Patroni's leader key (`node1`…), if any.
    fn leader(&self) -> Option<String> {
        Some(self.line(&["leader"])).filter(|name| !name.is_empty())
    }

    /// The PostgreSQL address of `node` (`node2` → `127.0.0.1:<port+1>`).
    fn address(&self, node: &str) -> String {
        let n: u16 = node
            .trim_start_matches("node")
            .parse()
            .expect("a node name");
        format!("127.0.0.1:{}", self.port + n - 1)
    }

    /// SIGKILLs `node`'s Patroni, its postmaster and the postmaster's children in one
    /// `kill`: the node's machine as good as gone. (A backend listed may have ended before
    /// the signal: `kill` then fails for it alone, which is no error here.)
    fn kill(&self, node: &str) {
        let pids = self.line(&["pid", node]);
        assert!(
            pids.lines().count() >= 2,
            "{node} runs Patroni and PostgreSQL"
        );
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.lines())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run kill");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}

/// A base port whose block (PostgreSQL on +0..+2, Patroni on +100..+102, etcd on +200 and
/// +201) is free now, below the ephemeral range.
fn free_port_block() -> u16 {
    let offsets = [0, 1, 2, 100, 101, 102, 200, 201];
    (0..100)
        .map(|_| basis_testkit::stable_port())
        .find(|base| {
            offsets.iter().all(|offset| {
                base.checked_add(*offset)
                    .is_some_and(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
            })
        })
        .expect("a free block of ports")
}

/// What a writer saw: acknowledged ids, and each failure with when it ended, how long the
/// write took and what it was.
#[derive(Default)]
struct Writes {
    acknowledged: Vec<i64>,
    failures: Vec<(Instant, Duration, String)>,
    last_ack: Option<Instant>,
}

/// One client writing one row at a time, each write bounded by [`HANG`]: what a client of
/// the API would do.
struct Writer {
    writes: Arc<Mutex<Writes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Inserts ids from `first` on, until stopped.
    fn start(store: &Store, first: i64) -> Self {
        let writes = Arc::new(Mutex::new(Writes::default()));
        let (store, seen) = (store.clone(), writes.clone());
        let task = tokio::spawn(async move {
            for id in first.. {
                let started = Instant::now();
                let failure = match tokio::time::timeout(HANG, insert(&store, id)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(Error::Unavailable(_))) => Some("unavailable".to_owned()),
                    Ok(Err(other)) => Some(other.to_string()),
                    Err(_) => Some("hung".to_owned()),
                };
                let failed = failure.is_some();
                {
                    let mut seen = seen.lock().unwrap();
                    match failure {
                        None => {
                            seen.acknowledged.push(id);
                            seen.last_ack = Some(Instant::now());
                        }
                        Some(what) => seen
                            .failures
                            .push((Instant::now(), started.elapsed(), what)),
                    }
                }
                // Pace retries during an outage as a client would; no pause while it works.
                if failed {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Self { writes, task }
    }

    /// Waits (at most `limit`) until `n` writes are acknowledged.
    async fn acknowledges(&self, n: usize, limit: Duration) -> bool {
        eventually(limit, || async {
            self.writes.lock().unwrap().acknowledged.len() >= n
        })
        .await
    }

    /// Waits (at most a minute) until a write is acknowledged a second after `since`.
    async fn resumes_after(&self, since: Instant) -> bool {
        eventually(Duration::from_secs(60), || async {
            self.writes
                .lock()
                .unwrap()
                .last_ack
                .is_some_and(|at| at > since + Duration::from_secs(1))
        })
        .await
    }

    fn stop(self) -> Writes {
        self.task.abort();
        std::mem::take(&mut *self.writes.lock().unwrap())
    }
}

async fn insert(store: &Store, id: i64) -> basis_store::Result<()> {
    on_pool!(store, write, pool => sqlx::query("INSERT INTO notes (id) VALUES ($1)").bind(id).execute(pool).await.map(drop))?;
    Ok(())
}

/// Checks what the writer saw across a change of leader at `since`: some writes failed,
/// each as `Unavailable` and quickly, and every acknowledged write is on the new leader.
async fn check_writes_across(store: &Store, writes: &Writes, since: Instant, what: &str) {
    let failures: Vec<_> = writes.failures.iter().filter(|f| f.0 > since).collect();
    println!(
        "{what}: {} writes acknowledged; {} failed, the slowest in {:?}",
        writes.acknowledged.len(),
        failures.len(),
        failures.iter().map(|f| f.1).max().unwrap_or_default(),
    );
    assert!(
        !failures.is_empty(),
        "{what}: writes fail while no node is the primary"
    );
    for (_, took, error) in &failures {
        assert_eq!(
            error, "unavailable",
            "{what}: a failed write is Unavailable (503), never another error, never a hang"
        );
        assert!(
            *took < HANG,
            "{what}: a failed write does not hang ({took:?})"
        );
    }
    let basis_store::Pools::Postgres { write, .. } = store.pools() else {
        unreachable!("a postgres:// URL opens PostgreSQL");
    };
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE id = ANY($1)")
        .bind(&writes.acknowledged)
        .fetch_one(write)
        .await
        .expect("count on the new leader");
    assert_eq!(
        found,
        writes.acknowledged.len() as i64,
        "{what}: no acknowledged write is lost (synchronous replication)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_dies_or_is_switched_over_writes_fail_fast_as_unavailable_and_resume_on_the_new_leader_losing_none()
 {
    let Some(cluster) = Cluster::start_synchronous() else {
        return;
    };
    let old = cluster.leader().expect("a leader after up");
    // The leader last in the host list: the store must pass over the standbys to find it.
    let mut hosts: Vec<String> = ["node1", "node2", "node3"]
        .into_iter()
        .filter(|node| *node != old)
        .map(|node| cluster.address(node))
        .collect();
    hosts.push(cluster.address(&old));
    let url = format!(
        "postgres://postgres@{}/postgres?target_session_attrs=read-write",
        hosts.join(",")
    );
    let options = ConnectOptions {
        max_connections: 4,
        // Longer than a write may take (HANG): a write that waited for the election to end
        // instead of failing at once would count as hanging.
        acquire_timeout: Duration::from_secs(30),
        ..ConnectOptions::default()
    };
    let store = Store::connect(&url, &options)
        .await
        .expect("connect through the multi-host URL");
    let leader = store.leader().expect("the URL names a cluster");
    assert_eq!(
        leader.current(),
        Some(cluster.address(&old)),
        "the store follows Patroni's leader"
    );
    on_pool!(store, write, pool => sqlx::query("CREATE TABLE notes (id BIGINT PRIMARY KEY)").execute(pool).await.map(drop))
        .expect("create the table");

    // The leader's machine dies: Patroni and PostgreSQL SIGKILLed.
    let writer = Writer::start(&store, 1);
    assert!(
        writer.acknowledges(50, Duration::from_secs(10)).await,
        "writes are acknowledged before the failover"
    );
    cluster.kill(&old);
    let killed = Instant::now();
    let resumed = writer.resumes_after(killed).await;
    let writes = writer.stop();
    assert!(resumed, "writes resume after the leader is killed");
    let new = cluster.leader().expect("Patroni elected a new leader");
    assert_ne!(new, old, "another node leads");
    assert_eq!(
        leader.current(),
        Some(cluster.address(&new)),
        "the store followed it"
    );
    check_writes_across(&store, &writes, killed, "failover").await;

    // The old leader, started again, rejoins as a replica of the new one.
    let out = cluster.script(&["start", &old]);
    assert!(
        out.status.success(),
        "{old} rejoins: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_url = format!("postgres://postgres@{}/postgres", cluster.address(&old));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&old_url)
        .await
        .expect("connect to the old leader");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await
        .expect("ask the old leader");
    assert!(in_recovery, "the old leader is a replica now");
    assert_eq!(
        cluster.leader().as_ref(),
        Some(&new),
        "the leader stays where it went"
    );

    // A planned switchover: the leader is demoted and stays up as a replica (its sessions
    // end with an administrator's shutdown); the store moves to the node promoted instead.
    let writer = Writer::start(&store, 1_000_000);
    assert!(writer.acknowledges(50, Duration::from_secs(10)).await);
    let switched = Instant::now();
    let out = cluster.script(&["switchover"]);
    assert!(
        out.status.success(),
        "switchover: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let resumed = writer.resumes_after(switched).await;
    let writes = writer.stop();
    assert!(resumed, "writes resume after the switchover");
    let third = cluster.leader().expect("a leader after the switchover");
    assert_ne!(third, new, "the switchover moved the leader");
    assert_eq!(
        leader.current(),
        Some(cluster.address(&third)),
        "the store followed it"
    );
    assert!(leader.changes() >= 2);
    check_writes_across(&store, &writes, switched, "switchover").await;
    store.close().await;
}
