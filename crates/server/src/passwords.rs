//! Password hashing with argon2id, off the async workers and with bounded concurrency.
//!
//! Hashing is deliberately expensive (tens of milliseconds of CPU and 19 MiB of memory).
//! Run on the async workers it would stall every other request; run unbounded, a flood of
//! guesses would exhaust memory. So each hash runs on the blocking pool behind a semaphore
//! with one permit per core.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// The longest accepted password, in bytes: enough for any passphrase, short enough that a
/// huge input cannot be used to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// argon2id with OWASP's minimum recommended parameters (m = 19 MiB, t = 2, p = 1).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("constant parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The hashing service; clones share the concurrency bound.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Default for Passwords {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl Passwords {
    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
        })
        .await?
    }

    /// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
    pub async fn verify(&self, hash: String, password: String) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    argon2()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await?;
        Ok(matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let passwords = Passwords::default();
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            passwords
                .verify(hash.clone(), "correct horse".into())
                .await
                .unwrap()
        );
        assert!(!passwords.verify(hash, "wrong horse".into()).await.unwrap());
        assert!(
            !passwords
                .verify("not a hash".into(), "x".into())
                .await
                .unwrap()
        );
    }
}
