//! The OpenID Connect relying party: authorization code flow with PKCE (S256), `state`
//! and `nonce`, the provider found by discovery from its issuer URL.
//!
//! [`Provider::begin`] returns the URL to send the browser to and the secrets the server
//! must keep until the callback ([`Pending`]); [`Provider::finish`] exchanges the code,
//! verifies the ID token (signature, issuer, audience, expiry, nonce) and returns who
//! signed in.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};

use crate::{Error, Result};

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A discovered OpenID provider and our registration with it.
#[derive(Debug, Clone)]
pub struct Provider {
    client: Client,
    http: reqwest::Client,
    issuer: String,
}

/// What the server keeps between sending the browser away and the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The `state` parameter (also the key the server stores this under).
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier whose S256 challenge went to the provider.
    pub pkce_verifier: String,
}

/// Who signed in at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's issuer URL.
    pub issuer: String,
    /// The provider's stable id for the user.
    pub subject: String,
    /// The email, if the provider shared it.
    pub email: Option<String>,
    /// Whether the provider asserts it verified that email.
    pub email_verified: bool,
    /// The display name, if shared.
    pub name: Option<String>,
}

impl Provider {
    /// Discovers the provider at `issuer` and registers our client credentials and the
    /// callback URL.
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        client_secret: Option<&str>,
        redirect_url: &str,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            // Following redirects from the token endpoint would open SSRF paths.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Oidc(format!("HTTP client: {e}")))?;
        let issuer_url =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| Error::Config(format!("issuer: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| Error::Oidc(format!("discovery failed: {e}")))?;
        let redirect = RedirectUrl::new(redirect_url.to_owned())
            .map_err(|e| Error::Config(format!("redirect URL: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_owned()),
            client_secret.map(|s| ClientSecret::new(s.to_owned())),
        )
        .set_redirect_uri(redirect);
        Ok(Self {
            client,
            http,
            issuer: issuer.to_owned(),
        })
    }

    /// The provider's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The authorization URL to redirect the browser to, and what to keep until the
    /// callback. `login_hint` is passed through to the provider when given.
    pub fn begin(&self, login_hint: Option<&str>) -> (String, Pending) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state, nonce) = request.url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        };
        (url.to_string(), pending)
    }

    /// Exchanges `code` for tokens and verifies the ID token against `pending`'s nonce.
    pub async fn finish(&self, code: &str, pending: &Pending) -> Result<Identity> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| Error::Oidc(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| Error::Oidc(format!("code exchange failed: {e}")))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| Error::Oidc("the provider returned no ID token".into()))?;
        let claims = id_token
            .claims(
                &self.client.id_token_verifier(),
                &Nonce::new(pending.nonce.clone()),
            )
            .map_err(|e| Error::Oidc(format!("ID token rejected: {e}")))?;
        Ok(Identity {
            issuer: self.issuer.clone(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
        })
    }
}
