//! Backups while serving, and restoring one into an empty place.
//!
//! - SQLite: `VACUUM INTO` writes a consistent, compacted copy of the database from one
//!   read transaction (WAL lets the writer carry on meanwhile); the copy is an ordinary
//!   database file. Restoring checks it (`PRAGMA integrity_check`) and moves it into a
//!   data directory that holds no database yet.
//! - PostgreSQL: `pg_dump` in the custom format (compressed, restorable table by table),
//!   and `pg_restore` into a database with no tables yet. The client tools must be as
//!   new as the server.

use std::path::Path;

use crate::{Pools, Store};

/// What a backup or restore can end in.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database refused or failed.
    #[error(transparent)]
    Database(#[from] crate::Error),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The target is not empty, or the file is not a backup of this engine.
    #[error("{0}")]
    Refused(String),
    /// `pg_dump` or `pg_restore` failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Its error output.
        message: String,
    },
}

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Writes a consistent copy of the database at `url` (served by `store`) to `to`, which
/// must not exist yet.
pub async fn backup(store: &Store, url: &str, to: &Path) -> Result<(), BackupError> {
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists; a backup never overwrites a file",
            to.display()
        )));
    }
    match store.pools() {
        Pools::Sqlite { read, .. } => {
            let path = to
                .to_str()
                .ok_or_else(|| BackupError::Refused("the backup path is not UTF-8".into()))?;
            sqlx::query("VACUUM INTO $1")
                .bind(path)
                .execute(read)
                .await
                .map_err(crate::Error::from)?;
            Ok(())
        }
        Pools::Postgres { .. } => {
            run(
                "pg_dump",
                &[
                    "--format=custom",
                    "--no-owner",
                    "--file",
                    &to.to_string_lossy(),
                    "--dbname",
                    url,
                ],
            )
            .await
        }
    }
}

/// Restores the SQLite backup `from` as the database file `to` (which must not exist).
pub async fn restore_sqlite(from: &Path, to: &Path) -> Result<(), BackupError> {
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists; restore into an empty data directory",
            to.display()
        )));
    }
    let mut header = [0u8; 16];
    let mut file = tokio::fs::File::open(from).await?;
    tokio::io::AsyncReadExt::read_exact(&mut file, &mut header)
        .await
        .map_err(|_| BackupError::Refused(format!("{} is not a SQLite backup", from.display())))?;
    if &header != SQLITE_HEADER {
        return Err(BackupError::Refused(format!(
            "{} is not a SQLite backup",
            from.display()
        )));
    }
    // Copied beside the target and renamed, so a failed copy leaves no half database.
    let partial = to.with_extension("restoring");
    tokio::fs::copy(from, &partial).await?;
    let url = format!("sqlite://{}", partial.display());
    let check = async {
        let store = Store::connect(&url, &crate::ConnectOptions::default()).await?;
        let verdict: String = match store.pools() {
            Pools::Sqlite { read, .. } => sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(read)
                .await
                .map_err(crate::Error::from)?,
            Pools::Postgres { .. } => unreachable!("a sqlite URL opens SQLite"),
        };
        store.close().await;
        Ok::<_, BackupError>(verdict)
    };
    match check.await {
        Ok(verdict) if verdict == "ok" => {}
        Ok(verdict) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(BackupError::Refused(format!(
                "the backup is damaged: {verdict}"
            )));
        }
        Err(err) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err);
        }
    }
    tokio::fs::rename(&partial, to).await?;
    Ok(())
}

/// Restores the PostgreSQL backup `from` into the database at `url` (served by `store`),
/// which must hold no tables yet.
pub async fn restore_postgres(store: &Store, url: &str, from: &Path) -> Result<(), BackupError> {
    let Pools::Postgres { write, .. } = store.pools() else {
        return Err(BackupError::Refused("not a PostgreSQL database".into()));
    };
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(write)
    .await
    .map_err(crate::Error::from)?;
    if tables > 0 {
        return Err(BackupError::Refused(format!(
            "the database holds {tables} tables; restore into an empty database"
        )));
    }
    run(
        "pg_restore",
        &[
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            url,
            &from.to_string_lossy(),
        ],
    )
    .await
}

async fn run(tool: &'static str, args: &[&str]) -> Result<(), BackupError> {
    let output = tokio::process::Command::new(tool)
        .args(args)
        .output()
        .await
        .map_err(|err| BackupError::Tool {
            tool,
            message: format!("cannot run it ({err}); install the PostgreSQL client tools"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BackupError::Tool {
            tool,
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
