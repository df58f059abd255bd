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
    /// Migrations failed to apply.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error: a bug or a corrupted database, never the client's fault.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err),
            other => Error::Database(other),
        }
    }
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
