//! `basis admin create-user`: the way to make the first admin. The password is read from
//! standard input, never from a flag.

use std::io::Write as _;
use std::process::{Command, Stdio};

use basis_server::{Config, Server};
use serde_json::{Value, json};

const PASSWORD: &str = "velvet otter juggles nine lanterns";

fn create_user(
    data_dir: &std::path::Path,
    email: &str,
    role: &str,
    password: &str,
) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_basis"))
        .args([
            "admin",
            "create-user",
            "--email",
            email,
            "--role",
            role,
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("the command ends")
}

#[tokio::test]
async fn create_user_makes_an_admin_who_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let output = create_user(dir.path(), "Root@Example.com", "admin", PASSWORD);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 32);
    assert!(!String::from_utf8_lossy(&output.stderr).contains(PASSWORD));

    let again = create_user(dir.path(), "root@example.com", "admin", PASSWORD);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let weak = create_user(dir.path(), "weak@example.com", "user", "password1234");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    let bad_role = create_user(dir.path(), "x@example.com", "root", PASSWORD);
    assert!(!bad_role.status.success());

    let mut config = Config::with_data_dir(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = Server::build(config).await.expect("the app starts");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("http://{addr}/auth/login"))
        .json(&json!({"email": "root@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().expect("a token");
    let users = client
        .get(format!("http://{addr}/users"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200, "the admin lists users");
    let users: Value = users.json().await.unwrap();
    assert_eq!(users["items"][0]["id"], id.as_str());
    assert_eq!(users["items"][0]["role"], "admin");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
