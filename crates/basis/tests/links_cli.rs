//! `basis links import` and `basis links export` as an operator runs them: a file in the
//! wrong format is refused with its line before anything is written; a good one is
//! imported with a progress line and comes back out of the export. And `basis serve`
//! refuses to start on a GeoIP database it cannot use, naming the file.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PASSWORD: &str = "velvet otter juggles nine lanterns";

fn basis(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_basis"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the binary runs")
}

fn create_user(data_dir: &std::path::Path, email: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_basis"))
        .args(["admin", "create-user", "--email", email, "--data-dir"])
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
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("write the password");
    let output = child.wait_with_output().expect("the command ends");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn export(data_dir: &std::path::Path) -> Vec<Value> {
    let output = basis(
        data_dir,
        &[
            "links",
            "export",
            "--owner",
            "ops@example.com",
            "--format",
            "json",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON list")
}

#[test]
fn an_import_refuses_a_wrong_file_whole_and_writes_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    create_user(dir.path(), "ops@example.com");
    let fixtures = format!(
        "{}/../server/tests/fixtures/import",
        env!("CARGO_MANIFEST_DIR")
    );

    // A Kutt file read as YOURLS: refused at the first line that cannot be CSV (its second:
    // the first, `{`, is a one-field record), nothing written.
    let wrong = basis(
        dir.path(),
        &[
            "links",
            "import",
            "--from",
            "yourls",
            &format!("{fixtures}/kutt.json"),
            "--owner",
            "ops@example.com",
        ],
    );
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("line 2"), "{said}");
    assert!(said.contains("nothing was imported"), "{said}");
    assert_eq!(export(dir.path()), Vec::<Value>::new());

    // A row with a bad URL on line 3: refused, nothing written.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "keyword,url\ngood,https://example.com/\nbad,javascript:alert(1)\n",
    )
    .unwrap();
    let refused = basis(
        dir.path(),
        &[
            "links",
            "import",
            "--from",
            "yourls",
            bad.to_str().unwrap(),
            "--owner",
            "ops@example.com",
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 3"));
    assert_eq!(export(dir.path()), Vec::<Value>::new());

    let good = basis(
        dir.path(),
        &[
            "links",
            "import",
            "--from",
            "yourls",
            &format!("{fixtures}/yourls.csv"),
            "--owner",
            "ops@example.com",
        ],
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let report = String::from_utf8_lossy(&good.stdout);
    assert!(
        report.contains("imported 3 links: 2 kept their code, 1 got a new one"),
        "{report}"
    );
    assert!(report.contains("line 3: 1a -> "), "{report}");
    assert!(String::from_utf8_lossy(&good.stderr).contains("imported 3/3 links"));

    let links = export(dir.path());
    assert_eq!(links.len(), 3);
    let ozh = links
        .iter()
        .find(|l| l["shortCode"] == "ozh")
        .expect("ozh kept its code");
    assert_eq!(ozh["longUrl"], "https://example.net/yourls-home");
    assert_eq!(ozh["clicks"], 128);
    assert_eq!(ozh["createdAt"], "2022-06-01T09:00:00Z");
}

#[test]
fn serve_refuses_to_start_on_a_geoip_database_it_cannot_use_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.mmdb");
    let garbage = dir.path().join("GeoLite2-Country.mmdb");
    std::fs::write(&garbage, "a text file, not a MaxMind database").unwrap();
    for (file, says) in [
        (&missing, "cannot read the GeoIP database"),
        (
            &garbage,
            "GeoLite2-Country.mmdb is not a usable GeoIP database",
        ),
    ] {
        let output = basis(
            dir.path(),
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--geoip-db",
                file.to_str().unwrap(),
            ],
        );
        assert!(!output.status.success(), "serve must refuse to start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            stderr.contains(file.file_name().unwrap().to_str().unwrap()),
            "{stderr}"
        );
    }
}
