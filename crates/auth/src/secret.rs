//! Opaque secrets: refresh tokens, session ids, API keys, reset tokens, OIDC state.
//!
//! Each is 256 random bits from the thread's CSPRNG (ChaCha, seeded by the OS), base64url without padding. Only the
//! SHA-256 digest is stored: a database leak does not reveal usable secrets, and because
//! the secrets are uniformly random, a fast digest is as good as a slow hash here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// A new random secret: 32 bytes, base64url (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new random identifier: 16 bytes as 32 lowercase hex digits (not a secret, just
/// unguessable, so ids cannot be enumerated).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a secret: its SHA-256 digest in hex.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The prefix every API key starts with, so leaked keys are easy to scan for.
pub const API_KEY_PREFIX: &str = "bsk_";

/// A new API key: the prefix and a random secret.
pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(random_id().len(), 32);
    }

    #[test]
    fn digests_are_stable_and_compare_in_constant_time() {
        assert_eq!(digest("abc"), digest("abc"));
        assert_ne!(digest("abc"), digest("abd"));
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(new_api_key().starts_with(API_KEY_PREFIX));
    }
}
