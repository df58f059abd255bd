//! Password hashing for the server: one [`basis_auth::password::Hasher`] shared by account
//! passwords and link passwords, so both draw on the same bounded pool of hashing slots.

use basis_auth::password::Hasher;

pub use basis_auth::password::MAX_PASSWORD_BYTES;

/// The hashing service; clones share the concurrency bound.
#[derive(Debug, Clone)]
pub struct Passwords {
    hasher: Hasher,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            hasher: Hasher::with_defaults(),
        }
    }
}

impl Passwords {
    /// The underlying hasher (argon2id, OWASP parameters, one slot per core).
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        Ok(self.hasher.hash(password).await?)
    }

    /// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
    pub async fn verify(&self, hash: String, password: String) -> anyhow::Result<bool> {
        Ok(self.hasher.verify(Some(hash), password).await?.matched)
    }
}
