//! Read-your-writes through the HTTP API: a private PostgreSQL primary and its streaming
//! replica started by the test (replay is paused on the replica, which the shared server
//! must never see). A caller that wrote reads its write at once; another caller reads the
//! replica, which has not replayed it yet; with Redis configured, the floor follows the
//! caller to every instance.

use std::sync::Arc;
use std::time::Duration;

use basis_store::replicas::Replicas;
use basis_testkit::{PrivatePostgres, eventually};

use crate::accounts_support::PASSWORD;
use crate::blog_support::post;
use crate::helpers::{Engine, TestApp};

/// A primary and its replica.
struct Rig {
    primary: PrivatePostgres,
    replica: PrivatePostgres,
}

impl Rig {
    async fn start() -> Option<Self> {
        let primary = PrivatePostgres::start(0).await?;
        let replica = primary.replica().await?;
        Some(Self { primary, replica })
    }

    /// An app on a fresh database of the primary reading from the replica, with a lag limit
    /// far above the test's length: a paused replica stays in rotation, so only the read
    /// floors keep writers from reading it. `redis` shares the floors; `database_url`
    /// joins the database of an app started before.
    async fn app(&self, redis: Option<String>, database_url: Option<String>) -> TestApp {
        let engine = Engine::Postgres(self.primary.url("postgres"));
        let replica = &self.replica;
        TestApp::spawn_with(&engine, |config| {
            if let Some(url) = database_url {
                config.database_url = Some(url);
            }
            let url = config.database_url.clone().expect("a PostgreSQL database");
            let name = url.rsplit('/').next().expect("a database name").to_owned();
            config.database_replica_urls = vec![replica.url(&name)];
            config.replica_max_lag_ms = 600_000;
            config.redis_url = redis;
        })
        .await
    }

    /// An app on a fresh database whose URL lists the replica's node before the primary's,
    /// as a Patroni cluster's URL lists its nodes in no particular order.
    async fn app_through_host_list(&self) -> TestApp {
        let engine = Engine::Postgres(self.primary.url("postgres"));
        let address = |server: &PrivatePostgres| {
            let url = server.url("");
            let url = url.trim_start_matches("postgres://postgres@");
            url.trim_end_matches('/').to_owned()
        };
        let nodes = format!("{},{}", address(&self.replica), address(&self.primary));
        TestApp::spawn_with(&engine, |config| {
            let url = config.database_url.clone().expect("a PostgreSQL database");
            let name = url.rsplit('/').next().expect("a database name").to_owned();
            config.database_url = Some(format!("postgres://postgres@{nodes}/{name}"));
        })
        .await
    }

    /// Waits until the replica has replayed everything written so far and `replicas` has
    /// seen it do so.
    async fn caught_up(&self, replicas: &Arc<Replicas>) {
        let target = self.primary.wal_position().await;
        let reached = eventually(Duration::from_secs(30), || async {
            replicas.check().await;
            let status = &replicas.status()[0];
            status.in_rotation && status.replayed_lsn >= target
        })
        .await;
        assert!(reached, "the replica catches up and is in rotation");
    }
}

fn replicas(app: &TestApp) -> Arc<Replicas> {
    app.state
        .store
        .replicas()
        .expect("the app reads from a replica")
        .clone()
}

/// Whether the post list `who` reads (anonymous: `None`) shows a post titled `title`. The
/// list is a read that may go to a replica (a post by id is read from the primary, since
/// conditional updates start from it).
async fn list_shows(app: &TestApp, who: Option<&str>, title: &str) -> bool {
    let mut request = app.client.get(app.url("/posts?limit=50"));
    if let Some(token) = who {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("a response");
    assert_eq!(response.status(), 200);
    let list: serde_json::Value = response.json().await.expect("JSON");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|post| post["title"] == title)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_reads_its_write_at_once_while_others_read_the_lagging_replica() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let app = rig.app(None, None).await;
    let ann = app.account("ann@example.com").await;
    let bob = app.account("bob@example.com").await;
    let replicas = replicas(&app);
    rig.caught_up(&replicas).await;
    let (status, ready) = app.get_json("/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["replicas"][0]["replica"], 1,
        "readiness reports the replica: {ready}"
    );
    assert_eq!(ready["replicas"][0]["inRotation"], true, "{ready}");
    assert!(
        ready.get("primary").is_none(),
        "a single-host URL names no primary: {ready}"
    );
    // Through a host list, readiness says which node takes the writes: the second, the
    // first being a standby.
    let listed = rig.app_through_host_list().await;
    let (status, ready) = listed.get_json("/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["primary"]["node"], 2, "{ready}");
    assert_eq!(ready["primary"]["nodes"], 2, "{ready}");
    assert_eq!(ready["primary"]["leaderChanges"], 0, "{ready}");
    rig.replica.pause_replay().await;

    let title = "Fresh from the primary";
    app.new_post(&ann, post(title)).await;
    let before = replicas.read_counts();
    assert!(
        list_shows(&app, Some(&ann.access), title).await,
        "the writer reads her own post at once"
    );
    let after_ann = replicas.read_counts();
    assert!(
        after_ann.sticky > before.sticky,
        "her read went to the primary because of her floor: {before:?} → {after_ann:?}"
    );
    assert!(
        !list_shows(&app, Some(&bob.access), title).await,
        "another caller reads the replica, which has not replayed the post"
    );
    let after_bob = replicas.read_counts();
    assert!(
        after_bob.replica > after_ann.replica,
        "his read went to the replica: {after_ann:?} → {after_bob:?}"
    );

    rig.replica.resume_replay().await;
    let bob_sees = eventually(Duration::from_secs(30), || async {
        list_shows(&app, Some(&bob.access), title).await
    })
    .await;
    assert!(
        bob_sees,
        "once the replica replays, everyone reads the post"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_with_one_credential_is_read_with_another_of_the_same_account() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let app = rig.app(None, None).await;
    let ann = app.account("ann@example.com").await;
    let replicas = replicas(&app);
    rig.caught_up(&replicas).await;
    rig.replica.pause_replay().await;

    let title = "Written with the first token";
    app.new_post(&ann, post(title)).await;
    // A new sign-in: a token no floor was ever recorded for.
    let tokens = app.login_tokens("ann@example.com", PASSWORD).await;
    let second = tokens["accessToken"].as_str().expect("a token");
    assert!(
        list_shows(&app, Some(second), title).await,
        "the account's floor applies to its new token"
    );
    assert!(
        !list_shows(&app, None, title).await,
        "an anonymous reader reads the paused replica"
    );
    rig.replica.resume_replay().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_floor_follows_the_caller_to_another_instance() {
    let Some(redis) = std::env::var("BASIS_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("skipped: BASIS_TEST_REDIS_URL is not set");
        return;
    };
    let Some(rig) = Rig::start().await else {
        return;
    };
    let first = rig.app(Some(redis.clone()), None).await;
    let second = rig
        .app(Some(redis), first.config.database_url.clone())
        .await;
    // An API key works on both instances (each signs its own access tokens).
    let ann = first.account("ann@example.com").await;
    let created = first
        .bearer(
            reqwest::Method::POST,
            &format!("/users/{}/api-keys", ann.id),
            &ann.access,
        )
        .json(&serde_json::json!({"name": "script", "scopes": ["links:write"]}))
        .send()
        .await
        .expect("a response");
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.expect("JSON");
    let key = created["key"].as_str().expect("the key").to_owned();
    rig.caught_up(&replicas(&first)).await;
    rig.caught_up(&replicas(&second)).await;
    rig.replica.pause_replay().await;

    // Ann writes through the first instance and reads through the second, which never saw
    // her write: only the floor kept in Redis sends her read to the primary.
    let response = first
        .client
        .post(first.url("/shorten"))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"longUrl": "https://example.com/written-on-one"}))
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 201);
    let lists = |app: &TestApp| {
        app.client
            .get(app.url("/links?limit=50"))
            .header("x-api-key", &key)
            .send()
    };
    let listed = lists(&second).await.expect("a response");
    assert_eq!(listed.status(), 200);
    let listed = listed.text().await.expect("a body");
    assert!(
        listed.contains("written-on-one"),
        "the floor reached the other instance: {listed}"
    );
    rig.replica.resume_replay().await;
}
