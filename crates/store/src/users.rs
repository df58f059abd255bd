//! Accounts: the row, its lookups, the admin list, profile changes, password changes and
//! deletion with everything the account owns.

use crate::{Result, Store, on_pool, on_unique};

/// Sets the password hash of account `$id` and revokes its credentials (every session but
/// `$keep`, every refresh family) inside the transaction `$tx`; evaluates to whether the
/// account exists. A macro, so it serves either engine's transaction and the password reset.
macro_rules! replace_password {
    ($tx:expr, $id:expr, $hash:expr, $keep:expr, $now:expr) => {
        async {
            let changed =
                sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                    .bind($id)
                    .bind($hash)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected();
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
                .bind($id)
                .bind($keep.unwrap_or(""))
                .execute(&mut *$tx)
                .await?;
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = $2 \
                 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind($id)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
            Ok::<_, sqlx::Error>(changed == 1)
        }
        .await
    };
}
pub(crate) use replace_password;

/// The columns every user query returns.
const USER_COLUMNS: &str = "id, email, name, password_hash, role, settings, created_at, updated_at";

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    /// Random id (32 hex digits).
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// argon2id PHC string; `None` for accounts that sign in only through OIDC.
    pub password_hash: Option<String>,
    /// `user`, `moderator` or `admin`.
    pub role: String,
    /// The owner's settings, a JSON object.
    pub settings: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// Inserts `user`. A taken email is `Error::Conflict("email")`.
pub async fn insert(store: &Store, user: &UserRow) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, role, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(&user.role)
        .bind(&user.settings)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(pool)
        .await
        .map(drop)
    })
    .map_err(|e| on_unique(e, "email"))
}

/// The user with this id.
pub async fn find(store: &Store, id: &str) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(pool).await
    })?)
}

/// The user with this (normalised) email.
pub async fn find_by_email(store: &Store, email: &str) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as::<_, UserRow>(&sql).bind(email).fetch_optional(pool).await
    })?)
}

/// Up to `limit` users with ids after `after`, in id order.
pub async fn list(store: &Store, after: &str, limit: i64) -> Result<Vec<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2");
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, UserRow>(&sql).bind(after).bind(limit).fetch_all(pool).await
    })?)
}

/// Up to `limit` users with ids after `after` whose name or email contains `text` (any
/// case for ASCII letters), in id order.
pub async fn search(store: &Store, text: &str, after: &str, limit: i64) -> Result<Vec<UserRow>> {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id > $1 \
         AND (LOWER(name) LIKE $2 ESCAPE '\\' OR LOWER(email) LIKE $2 ESCAPE '\\') \
         ORDER BY id LIMIT $3"
    );
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(after)
            .bind(&pattern)
            .bind(limit)
            .fetch_all(pool)
            .await
    })?)
}

/// Writes the mutable fields of `user` (name, email, role, settings, updated_at). Returns
/// `false` when the account is gone; a taken email is `Error::Conflict("email")`.
pub async fn update(store: &Store, user: &UserRow) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE users SET email = $2, name = $3, role = $4, settings = $5, updated_at = $6 \
             WHERE id = $1",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.role)
        .bind(&user.settings)
        .bind(user.updated_at)
        .execute(pool)
        .await
        .map(|d| d.rows_affected())
    })
    .map_err(|e| on_unique(e, "email"))?;
    Ok(done == 1)
}

/// Stores a new password hash (a rehash with current parameters: nothing else changes).
pub async fn set_password_hash(store: &Store, id: &str, hash: &str, now: i64) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// Changes the password and, in the same transaction, deletes every session of the account
/// except the one whose id digest is `keep_session` and revokes every refresh family: after
/// a password change no credential made with the old one lives on. Returns `false` (and
/// changes nothing) when the account is gone.
pub async fn change_password(
    store: &Store,
    id: &str,
    hash: &str,
    keep_session: Option<&str>,
    now: i64,
) -> Result<bool> {
    let changed = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            let changed = replace_password!(tx, id, hash, keep_session, now)?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(changed)
        }
        .await
    })?;
    Ok(changed)
}

/// A link deleted with its owner: the caller drops it from caches by its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedLink {
    /// The link's id (a link without an alias is reached by the code generated from it).
    pub id: i64,
    /// Its alias, if it has one.
    pub alias: Option<String>,
    /// Its domain (`None`: the default one).
    pub domain: Option<String>,
}

/// Deletes the links of `owner` from one database: `(id, alias, domain)` of each.
async fn delete_links_of(
    store: &Store,
    owner: &str,
) -> Result<Vec<(i64, Option<String>, Option<String>)>> {
    let links = on_pool!(store, write, pool => {
        sqlx::query_as("DELETE FROM links WHERE owner_id = $1 RETURNING id, alias, domain")
            .bind(owner)
            .fetch_all(pool)
            .await
    })?;
    Ok(links)
}

/// Deletes the account; sessions, refresh tokens, keys, identities, avatars and jobs go with
/// it (foreign keys), and so do the links it owns, in one transaction. Returns the deleted
/// links, or `None` when there was no such account.
///
/// When links are sharded, the account's links are deleted from every shard database
/// first (their aliases released), then the account: a failure in between leaves an account
/// with fewer links, and deleting it again finishes the job.
pub async fn delete(store: &Store, id: &str) -> Result<Option<Vec<DeletedLink>>> {
    let mut sharded_links = Vec::new();
    if store.link_shards().is_some() {
        if find(store, id).await?.is_none() {
            return Ok(None);
        }
        let parts = store
            .on_each_link_database(|home| async move { delete_links_of(&home, id).await })
            .await?;
        sharded_links = parts.into_iter().flatten().collect();
        crate::links::release_aliases(store, &sharded_links).await?;
    }
    let links = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            let links: Vec<(i64, Option<String>, Option<String>)> =
                sqlx::query_as("DELETE FROM links WHERE owner_id = $1 RETURNING id, alias, domain")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            let gone = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>((gone == 1).then_some(links))
        }
        .await
    })?;
    let links = links.map(|mut links| {
        links.extend(sharded_links);
        links
    });
    Ok(links.map(|links| {
        links
            .into_iter()
            .map(|(id, alias, domain)| DeletedLink { id, alias, domain })
            .collect()
    }))
}
