//! Password storage and policy.
//!
//! Hashes are argon2id PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so the
//! parameters travel with each hash and can be raised later: [`Verified::needs_rehash`]
//! tells the caller to store a fresh hash after a successful login.
//!
//! Hashing is deliberately expensive (tens of milliseconds of CPU and 19 MiB of memory).
//! On the async workers it would stall every other request; unbounded, a flood of guesses
//! would exhaust memory. So each hash runs on the blocking pool behind a semaphore.

use std::sync::Arc;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::{Error, Result};

/// Shortest accepted password, in characters (OWASP ASVS 2.1.1).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, in characters (ASVS asks that at least 128 be allowed).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Longest accepted password, in bytes: bounds the work a single request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl HashParams {
    /// OWASP's minimum for argon2id: m = 19 MiB, t = 2, p = 1.
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    fn argon2(self) -> Result<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| Error::Config(format!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Whether the password matched.
    pub matched: bool,
    /// The hash matched but was made with other parameters or another algorithm: store a
    /// new hash of the same password.
    pub needs_rehash: bool,
}

/// The hashing service; clones share the concurrency bound.
#[derive(Debug, Clone)]
pub struct Hasher {
    params: HashParams,
    concurrency: usize,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the account is unknown so that
    /// a wrong email costs the same time as a wrong password.
    dummy: Arc<str>,
    /// Argon2 verifications run, the dummy's included.
    checks: Arc<std::sync::atomic::AtomicU64>,
}

impl Hasher {
    /// A hasher with `params`, running at most `concurrency` hashes at once.
    pub fn new(params: HashParams, concurrency: usize) -> Result<Self> {
        params.argon2()?;
        // A well-formed hash with our parameters is all the dummy needs to be: written out
        // rather than computed, it costs start-up nothing (hashing it took a 19 MiB block
        // and most of the server's start-up instructions).
        let salt = SaltString::generate(&mut OsRng);
        let mut output = [0u8; 32];
        OsRng.fill_bytes(&mut output);
        let output =
            Output::new(&output).map_err(|e| Error::Internal(format!("dummy hash output: {e}")))?;
        let dummy = format!(
            "$argon2id$v=19$m={},t={},p={}${}${output}",
            params.memory_kib,
            params.iterations,
            params.parallelism,
            salt.as_str()
        );
        Ok(Self {
            params,
            concurrency: concurrency.max(1),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: dummy.into(),
            checks: Arc::default(),
        })
    }

    /// How many Argon2 verifications this hasher (and its clones) has run.
    pub fn checks(&self) -> u64 {
        self.checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// OWASP parameters, one hash at a time per core.
    pub fn with_defaults() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::new(HashParams::OWASP, cores).expect("the OWASP parameters are valid")
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// How many hashes are running right now (at most the concurrency bound).
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.permits.available_permits()
    }

    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params;
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            params
                .argon2()?
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("hashing failed: {e}")))
        })
        .await
    }

    /// Checks `password` against the PHC string `hash` (`None`: the account does not exist
    /// or has no password; a dummy hash is checked so the time taken is the same).
    /// A malformed stored hash never matches.
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<Verified> {
        let params = self.params;
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        let checks = self.checks.clone();
        self.blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return Ok(Verified {
                    matched: false,
                    needs_rehash: false,
                });
            };
            // Verification uses the parameters stored in the hash, not ours. It runs for the
            // dummy too (`real` is looked at only afterwards): an unknown account must cost
            // the same Argon2 work as a known one.
            let verified = argon2_verify(&checks, &password, &parsed);
            let matched = real && verified;
            let current = parsed.algorithm.as_str() == "argon2id"
                && Params::try_from(&parsed).is_ok_and(|p| {
                    p.m_cost() == params.memory_kib
                        && p.t_cost() == params.iterations
                        && p.p_cost() == params.parallelism
                });
            Ok(Verified {
                matched,
                needs_rehash: matched && !current,
            })
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("the hashing pool is closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?
    }
}

/// Checks a new password against the policy: 12 to 256 characters (any Unicode), at most
/// 1 KiB, and not guessable (zxcvbn score of at least 3, which rejects common and
/// breached-style passwords and ones built from the user's own email or name). No
/// composition rules, as NIST SP 800-63B advises.
pub fn check_policy(password: &str, user_inputs: &[&str]) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::WeakPassword(format!(
            "must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::WeakPassword(format!(
            "must be at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    // zxcvbn's cost grows quickly with length; a long prefix already decides the score.
    let prefix: String = password.chars().take(64).collect();
    let estimate = zxcvbn::zxcvbn(&prefix, user_inputs);
    if u8::from(estimate.score()) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        return Err(Error::WeakPassword(format!(
            "is too easy to guess{hint}; a few unrelated words make a strong password"
        )));
    }
    Ok(())
}

/// Verifies `password` against `parsed` with the parameters stored in it, counting the run.
fn argon2_verify(
    checks: &std::sync::atomic::AtomicU64,
    password: &str,
    parsed: &PasswordHash<'_>,
) -> bool {
    checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Argon2::default()
        .verify_password(password.as_bytes(), parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashParams {
        HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn an_unknown_account_costs_one_argon2_verification_like_a_known_one() {
        let hasher = Hasher::new(cheap(), 1).unwrap();
        let stored = hasher.hash("correct horse".into()).await.unwrap();
        let known = hasher.verify(Some(stored), "wrong".into()).await.unwrap();
        assert!(!known.matched);
        assert_eq!(hasher.checks(), 1);
        let unknown = hasher.verify(None, "correct horse".into()).await.unwrap();
        assert!(!unknown.matched, "the dummy never matches");
        assert_eq!(
            hasher.checks(),
            2,
            "the dummy hash was verified, not skipped"
        );
    }

    #[test]
    fn the_dummy_hash_is_a_phc_string_of_the_hashers_parameters() {
        let params = cheap();
        let hasher = Hasher::new(params, 1).unwrap();
        let parsed = PasswordHash::new(&hasher.dummy).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert_eq!(parsed.version, Some(0x13));
        let stored = Params::try_from(&parsed).unwrap();
        assert_eq!(
            (stored.m_cost(), stored.t_cost(), stored.p_cost()),
            (params.memory_kib, params.iterations, params.parallelism)
        );
        assert_eq!(parsed.hash.map(|output| output.len()), Some(32));
        // Each hasher draws its own.
        assert_ne!(hasher.dummy, Hasher::new(params, 1).unwrap().dummy);
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = Hasher::with_defaults();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let ok = hasher
            .verify(Some(hash.clone()), "correct horse".into())
            .await
            .unwrap();
        assert_eq!(
            ok,
            Verified {
                matched: true,
                needs_rehash: false
            }
        );
        assert!(
            !hasher
                .verify(Some(hash), "wrong".into())
                .await
                .unwrap()
                .matched
        );
        assert!(
            !hasher
                .verify(Some("not a hash".into()), "x".into())
                .await
                .unwrap()
                .matched
        );
        assert!(!hasher.verify(None, "x".into()).await.unwrap().matched);
    }

    #[tokio::test]
    async fn a_hash_with_old_parameters_asks_for_a_rehash() {
        let old = Hasher::new(cheap(), 1).unwrap();
        let hash = old.hash("correct horse".into()).await.unwrap();
        let current = Hasher::with_defaults();
        let verified = current
            .verify(Some(hash), "correct horse".into())
            .await
            .unwrap();
        assert!(verified.matched && verified.needs_rehash);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_the_bound() {
        let hasher = Hasher::new(cheap(), 2).unwrap();
        let jobs: Vec<_> = (0..12)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(format!("password {i}")).await })
            })
            .collect();
        let mut most = 0;
        while jobs.iter().any(|job| !job.is_finished()) {
            most = most.max(hasher.in_flight());
            tokio::task::yield_now().await;
        }
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert!(most <= 2, "{most} hashes ran at once");
        assert_eq!(hasher.in_flight(), 0);
    }

    #[test]
    fn the_policy_rejects_short_long_and_common_passwords_and_accepts_passphrases() {
        assert!(check_policy("short", &[]).is_err());
        assert!(check_policy("password1234", &[]).is_err());
        assert!(check_policy("qwertyuiop123", &[]).is_err());
        assert!(check_policy("alice@example.com1", &["alice@example.com"]).is_err());
        assert!(check_policy(&"x".repeat(MAX_PASSWORD_CHARS + 1), &[]).is_err());
        assert!(check_policy("velvet otter juggles nine lanterns", &[]).is_ok());
        assert!(check_policy("ünïcødé pässwörds sînd erlaubt", &[]).is_ok());
        let long = "river stone maple harbor lantern violet quiet engine orchard \
                    copper falcon meadow silent thunder paper garden winter ocean sailing";
        assert!(long.chars().count() >= 128 && check_policy(long, &[]).is_ok());
    }
}
