//! What a store operation can end in, and the mapping of constraint violations to it.

/// The errors a store operation can end in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness constraint refused the write; the payload names the constraint's column.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// A row the write refers to does not exist (a foreign key failed); names the reference.
    #[error("the referenced {0} does not exist")]
    MissingReference(&'static str),
    /// The database URL could not be understood.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// One shard database of the links could not be reached: only what it holds is missing.
    /// Names the database (host, port and name, never a password).
    #[error("the shard database {0} is unavailable, so the links it holds are missing: {1}")]
    ShardUnavailable(String, #[source] sqlx::Error),
    /// A write reached a shard database that a reshard has just moved the link's logical
    /// shard away from (or is moving it): the writer reloads the map and tries again, and
    /// this is what is left when the move did not finish in time.
    #[error("the link's shard is being moved to another database; try again shortly")]
    ShardMoved,
    /// The shard databases given do not match the shard map in the catalog, or the map is
    /// incomplete: refused at start, with what is wrong.
    #[error("the link shards cannot be used: {0}")]
    ShardMap(String),
    /// Migrations failed to apply.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error: a bug or a corrupted database, never the client's fault.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Decode(cause) = &err
            && cause.is::<crate::link_shards::Moved>()
        {
            return Error::ShardMoved;
        }
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err),
            sqlx::Error::Database(ref db)
                if db.code().as_deref().is_some_and(server_unavailable) =>
            {
                Error::Unavailable(err)
            }
            other => Error::Database(other),
        }
    }
}

/// Whether a server's error code says it cannot serve the statement now, rather than that
/// the statement is wrong: a connection failure (class 08), a shutdown or a start in
/// progress (57P01 to 57P03), or a write reaching a server that is no longer the primary
/// (25006, read-only transaction) — what a failover looks like from a connection.
fn server_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

/// Shorthand for store results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a foreign-key violation to [`Error::MissingReference`] naming `what`, and anything
/// else through the usual conversion.
pub(crate) fn on_foreign_key(err: sqlx::Error, what: &'static str) -> Error {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => Error::MissingReference(what),
        _ => err.into(),
    }
}

/// Maps a unique-constraint violation to [`Error::Conflict`] naming `what`, and anything else
/// through the usual conversion.
pub(crate) fn on_unique(err: sqlx::Error, what: &'static str) -> Error {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(what),
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::server_unavailable;

    #[test]
    fn a_failover_s_server_errors_mean_unavailable_and_a_wrong_statement_does_not() {
        // Connection failure, admin shutdown, crash shutdown, starting up, read-only standby.
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "25006"] {
            assert!(server_unavailable(code), "{code}");
        }
        // Unique violation, syntax error, undefined table, serialization failure.
        for code in ["23505", "42601", "42P01", "40001"] {
            assert!(!server_unavailable(code), "{code}");
        }
    }
}
