//! Every query lives in `basis-store`: this fails, naming the file and line, if SQL comes
//! back into the server's source.

use std::path::{Path, PathBuf};

/// What only a query written in place would use.
const FORBIDDEN: [&str; 5] = [
    "sqlx::query",
    "query_as",
    "query_scalar",
    "sqlx::Row",
    "on_pool!",
];

/// Each `path:line: text` of `source` that uses one of [`FORBIDDEN`].
fn offences(path: &Path, source: &str) -> Vec<String> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| FORBIDDEN.iter().any(|word| line.contains(word)))
        .map(|(n, line)| format!("{}:{}: {}", path.display(), n + 1, line.trim()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_server_source_holds_no_sql() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files in {}",
        files.len(),
        src.display()
    );
    let found: Vec<String> = files
        .iter()
        .flat_map(|path| {
            offences(
                path,
                &std::fs::read_to_string(path).expect("read a source file"),
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "SQL belongs in a basis-store repository, not in the server:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_names_the_file_and_line_of_a_query() {
    let source = "fn f() {}\nlet n: i64 = sqlx::query_scalar(\"SELECT 1\");\n";
    assert_eq!(
        offences(Path::new("src/x.rs"), source),
        ["src/x.rs:2: let n: i64 = sqlx::query_scalar(\"SELECT 1\");"]
    );
    assert!(
        offences(
            Path::new("src/y.rs"),
            "basis_store::users::find(&store, id)"
        )
        .is_empty()
    );
}
