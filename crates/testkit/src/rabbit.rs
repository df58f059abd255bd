//! A RabbitMQ node of the test's own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, stable_port};

/// Debian's launcher that runs the broker as the calling user (the one in `/usr/sbin` switches
/// to the `rabbitmq` user and that user's files).
const LAUNCHER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A RabbitMQ node with its own name, ports and data directory (so the shared broker on 5672
/// is never touched), killed when dropped. Its queues live in its data directory, so they
/// outlast [`Self::kill`] and [`Self::start_again`], as on a real broker.
#[derive(Debug)]
pub struct PrivateRabbit {
    child: Option<Child>,
    port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRabbit {
    /// Starts a node and waits (at most 60 s) until it accepts AMQP connections. `None`
    /// (with one visible `skipped:` line) when RabbitMQ is not installed.
    pub async fn start() -> Option<Self> {
        if !std::path::Path::new(LAUNCHER).exists() {
            println!("skipped: RabbitMQ is not installed ({LAUNCHER}), no private broker");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("basis-rabbit-")
            .tempdir()
            .expect("a temporary directory");
        // No plugins (the management plugin would want port 15672) and none of the system
        // node's environment file (its node name).
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("write plugins");
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").expect("write env file");
        let mut node = Self {
            child: None,
            port: stable_port(),
            dist_port: stable_port(),
            dir,
        };
        node.start_again().await;
        Some(node)
    }

    /// The AMQP URL of the node's default virtual host, as `guest` (allowed on loopback).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the (killed) node again on its ports and data, and waits until it accepts
    /// connections.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the node is stopped first");
        let path = |name: &str| -> PathBuf { self.dir.path().join(name) };
        let child = Command::new(LAUNCHER)
            .env("RABBITMQ_NODENAME", format!("basis{}@localhost", self.port))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            // Erlang keeps its cookie in $HOME.
            .env("HOME", self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rabbitmq-server");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        // A restart replays the node's message store; on a machine busy with builds that has
        // taken over two minutes (the 30-minute drill saw it), so the wait is generous.
        let up = eventually(Duration::from_secs(300), || async {
            tokio::net::TcpStream::connect(&address).await.is_ok()
        })
        .await;
        if !up {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = std::fs::read_dir(self.dir.path().join("log"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
                .collect::<String>();
            let tail: String = log
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "private RabbitMQ on {address} does not accept connections (exited: {exited:?}); its log ends:\n{tail}"
            );
        }
    }

    /// Kills the node with SIGKILL (no chance to close anything) and waits for it to go.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The launcher execs into the Erlang VM, whose pid the node also writes down; kill
        // both in case a shell stayed in between.
        let mut pids = vec![child.id().to_string()];
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid")) {
            pids.push(pid.trim().to_owned());
        }
        let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        let _ = child.wait();
        let _ = std::fs::remove_file(self.dir.path().join("pid"));
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.kill();
    }
}
