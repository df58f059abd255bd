//! Access tokens: short-lived JWTs verified locally by every instance.
//!
//! The algorithm is pinned to HS256: a token whose header names any other algorithm
//! (`none`, `RS256` in an algorithm-confusion attempt, …) is rejected before its signature
//! is looked at. Keys are selected by the header's `kid`, so keys rotate by adding a new
//! one first in the list (it signs) and keeping the old ones for verification until the
//! tokens they signed have expired (15 minutes).
//!
//! Expiry is checked against the `now` the caller passes (the server's injected clock),
//! not the system time, so tests are exact.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::role::Role;
use crate::{Error, Result};

/// How long an access token is valid, in seconds.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// Shortest accepted signing key, in bytes (HS256 wants at least its output size).
pub const MIN_KEY_BYTES: usize = 32;
/// Clock skew tolerated on `iat` between instances, in seconds.
const LEEWAY_SECONDS: i64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's role when the token was issued.
    pub role: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Issued at, Unix milliseconds: finer than `iat`, so a per-account cutoff refuses
    /// the tokens issued before it and not those issued in the same second after it.
    /// Tokens from before this claim existed carry none (0): `iat` stands in.
    #[serde(default)]
    pub iat_ms: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// Issuer: this installation's public origin.
    pub iss: String,
    /// Audience: this installation's API.
    pub aud: String,
}

/// A verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The user id.
    pub user_id: String,
    /// The role claimed at issue.
    pub role: Role,
    /// The token id.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Issue time, Unix milliseconds.
    pub issued_at_ms: i64,
}

/// Signing and verification keys, by `kid`.
#[derive(Clone)]
pub struct KeySet {
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    /// The encoded header segment our own tokens carry, per key: a token starting with one
    /// of these is known to say HS256 and that `kid` without parsing its header.
    own_headers: HashMap<String, String>,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("signing_kid", &self.signing_kid)
            .field("kids", &self.decoding.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Parses `kid:base64secret[,kid:base64secret…]`; the first key signs, all verify.
    pub fn parse(spec: &str, issuer: &str, audience: &str) -> Result<Self> {
        let mut keys = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, secret) = entry.split_once(':').ok_or_else(|| {
                Error::Config("a JWT key must be written kid:base64secret".into())
            })?;
            let secret = STANDARD
                .decode(secret.trim())
                .map_err(|_| Error::Config(format!("the JWT key {kid:?} is not base64")))?;
            keys.push((kid.trim().to_owned(), secret));
        }
        Self::new(keys, issuer, audience)
    }

    /// A key set from `(kid, secret)` pairs; the first signs.
    pub fn new(keys: Vec<(String, Vec<u8>)>, issuer: &str, audience: &str) -> Result<Self> {
        let Some((signing_kid, signing_secret)) = keys.first().cloned() else {
            return Err(Error::Config("no JWT signing key".into()));
        };
        let mut decoding = HashMap::new();
        let mut own_headers = HashMap::new();
        for (kid, secret) in &keys {
            if kid.is_empty() || secret.len() < MIN_KEY_BYTES {
                return Err(Error::Config(format!(
                    "the JWT key {kid:?} needs a name and at least {MIN_KEY_BYTES} bytes"
                )));
            }
            decoding.insert(kid.clone(), DecodingKey::from_secret(secret));
            own_headers.insert(encoded_header(kid)?, kid.clone());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["sub", "iat", "exp", "iss", "aud"]);
        // Expiry is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Self {
            signing_kid,
            encoding: EncodingKey::from_secret(&signing_secret),
            decoding,
            own_headers,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// A fresh key spec with one random key named `kid` (for development).
    pub fn generate_spec(kid: &str) -> String {
        use rand::RngCore as _;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        format!("{kid}:{}", STANDARD.encode(secret))
    }

    /// The issuer this key set signs and expects.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience this key set signs and expects.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Issues an access token for `user_id` with `role`, valid from `now` (Unix seconds).
    pub fn issue(&self, user_id: &str, role: Role, now: i64) -> Result<(String, Claims)> {
        self.issue_ms(user_id, role, now * 1000)
    }

    /// Issues an access token for `user_id` with `role`, valid from `now_ms` (Unix ms).
    pub fn issue_ms(&self, user_id: &str, role: Role, now_ms: i64) -> Result<(String, Claims)> {
        let now = now_ms.div_euclid(1000);
        let claims = Claims {
            sub: user_id.to_owned(),
            role: role.as_str().to_owned(),
            iat: now,
            iat_ms: now_ms,
            exp: now + ACCESS_TOKEN_SECONDS,
            jti: crate::secret::random_id(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = jsonwebtoken::encode(&header(&self.signing_kid), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing failed: {e}")))?;
        Ok((token, claims))
    }

    /// Verifies `token` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessToken> {
        let key = self.key_for(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Error::InvalidToken(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidAlgorithm => "algorithm not allowed",
                ErrorKind::MissingRequiredClaim(_) => "missing claim",
                _ => "malformed",
            })
        })?;
        let claims = data.claims;
        if now >= claims.exp {
            return Err(Error::InvalidToken("expired"));
        }
        if claims.iat > now + LEEWAY_SECONDS {
            return Err(Error::InvalidToken("issued in the future"));
        }
        let role = claims
            .role
            .parse()
            .map_err(|_| Error::InvalidToken("unknown role"))?;
        let issued_at_ms = if claims.iat_ms > 0 {
            claims.iat_ms
        } else {
            claims.iat.saturating_mul(1000)
        };
        Ok(AccessToken {
            user_id: claims.sub,
            role,
            jti: claims.jti,
            expires_at: claims.exp,
            issued_at_ms,
        })
    }
}

impl KeySet {
    /// The verification key for `token`'s `kid`, refusing any algorithm but HS256.
    fn key_for(&self, token: &str) -> Result<&DecodingKey> {
        // Fast path: our own header, byte for byte (a string compare, no parsing).
        let segment = token.split('.').next().unwrap_or_default();
        if let Some(kid) = self.own_headers.get(segment) {
            return self
                .decoding
                .get(kid)
                .ok_or(Error::InvalidToken("unknown key"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken("malformed"))?;
        if header.alg != Algorithm::HS256 {
            return Err(Error::InvalidToken("algorithm not allowed"));
        }
        header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(Error::InvalidToken("unknown key"))
    }
}

/// The header of tokens signed with `kid`.
fn header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    header
}

/// The header segment `jsonwebtoken::encode` writes for `kid`.
fn encoded_header(kid: &str) -> Result<String> {
    let json = serde_json::to_vec(&header(kid))
        .map_err(|e| Error::Internal(format!("header encoding: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: &str) -> KeySet {
        KeySet::parse(spec, "https://basis.test", "basis").unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let set = keys(&KeySet::generate_spec("k1"));
        let (token, claims) = set.issue("u1", Role::Admin, 1_000).unwrap();
        assert_eq!(claims.exp, 1_000 + 900);
        let verified = set.verify(&token, 1_899).unwrap();
        assert_eq!(verified.user_id, "u1");
        assert_eq!(verified.role, Role::Admin);
        assert!(matches!(
            set.verify(&token, 1_900),
            Err(Error::InvalidToken("expired"))
        ));
    }

    #[test]
    fn old_keys_still_verify_after_rotation_and_unknown_keys_do_not() {
        let old = KeySet::generate_spec("old");
        let new = KeySet::generate_spec("new");
        let (token, _) = keys(&old).issue("u1", Role::User, 0).unwrap();
        assert!(keys(&format!("{new},{old}")).verify(&token, 1).is_ok());
        assert!(keys(&new).verify(&token, 1).is_err());
    }

    #[test]
    fn our_tokens_take_the_header_fast_path_and_others_are_still_checked() {
        let set = keys(&KeySet::generate_spec("k1"));
        let (token, _) = set.issue("u1", Role::User, 0).unwrap();
        let segment = token.split('.').next().unwrap();
        assert_eq!(set.own_headers.get(segment).map(String::as_str), Some("k1"));
        // The same claims and signature under a hand-written header take the slow path.
        let hs384 = format!(
            "{}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"HS384","kid":"k1"}"#),
            token.split_once('.').unwrap().1
        );
        assert!(matches!(
            set.verify(&hs384, 1),
            Err(Error::InvalidToken("algorithm not allowed"))
        ));
    }

    #[test]
    fn short_or_missing_keys_are_refused() {
        assert!(KeySet::parse("", "i", "a").is_err());
        assert!(KeySet::parse("k:c2hvcnQ=", "i", "a").is_err());
        assert!(KeySet::parse("nokid", "i", "a").is_err());
    }
}
