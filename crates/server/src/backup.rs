//! `basis backup` and `basis restore`: the configuration's database to a file and back
//! (the work is in `basis_store::backup`).

use std::path::Path;

use anyhow::Context as _;
use basis_store::backup::{self, BackupError};
use basis_store::{ConnectOptions, Engine, Store};

use crate::config::Config;

/// Writes a consistent copy of the configured database to `to` (the server may be
/// running).
pub async fn backup(config: &Config, to: &Path) -> anyhow::Result<()> {
    let url = config.database_url();
    let store = Store::connect(&url, &ConnectOptions::default())
        .await
        .context("cannot open the database")?;
    let done = backup::backup(&store, &url, to).await;
    store.close().await;
    done.with_context(|| format!("cannot write the backup {}", to.display()))
}

/// Restores the backup `from` into the configured database, which must be empty, then
/// applies the migrations newer than the backup.
pub async fn restore(config: &Config, from: &Path) -> anyhow::Result<()> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        let file = config.data_dir.join("basis.db");
        if config.database_url.is_some() {
            anyhow::bail!("restore a SQLite backup into --data-dir (without --database-url)");
        }
        backup::restore_sqlite(from, &file)
            .await
            .with_context(|| format!("cannot restore {}", from.display()))?;
    } else {
        let store = Store::connect(&url, &ConnectOptions::default())
            .await
            .context("cannot open the database")?;
        if store.engine() != Engine::Postgres {
            anyhow::bail!("unsupported database for restore");
        }
        let done = backup::restore_postgres(&store, &url, from).await;
        store.close().await;
        done.map_err(|err: BackupError| anyhow::anyhow!(err))
            .with_context(|| format!("cannot restore {}", from.display()))?;
    }
    let store = crate::open_store(config).await?;
    store.close().await;
    Ok(())
}
