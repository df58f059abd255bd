//! Identity configuration (flattened into [`crate::Config`]) and secret loading.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use basis_auth::jwt::KeySet;

/// Deployment environment: production refuses unsafe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    /// Local work: generated secrets are allowed.
    Development,
    /// Real traffic.
    Production,
}

/// Identity settings. Secrets come from the environment or a `*_FILE` path only, and
/// `Debug` never prints them.
#[derive(Clone, Default, clap::Args)]
pub struct AuthConfig {
    /// JWT signing keys, `kid:base64secret[,kid:base64secret…]` (first signs, all verify).
    /// Development generates one in the data directory when neither this nor the file is set.
    #[arg(
        long = "jwt-keys",
        env = "BASIS_JWT_KEYS",
        hide_env_values = true,
        hide = true
    )]
    pub jwt_keys: Option<String>,

    /// A file holding the JWT signing keys (same format as `BASIS_JWT_KEYS`).
    #[arg(long, env = "BASIS_JWT_KEYS_FILE")]
    pub jwt_keys_file: Option<PathBuf>,

    /// Refuse `POST /shorten` without authentication.
    #[arg(long, env = "BASIS_REQUIRE_AUTH_FOR_LINKS")]
    pub require_auth_for_links: bool,

    /// Where password reset mail goes out (`smtp://host:port`, `smtps://…`).
    #[arg(long, env = "BASIS_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The sender of outgoing mail.
    #[arg(
        long,
        env = "BASIS_MAIL_FROM",
        default_value = "Basis <no-reply@localhost>"
    )]
    pub mail_from: String,

    /// The OpenID provider's issuer URL (enables `/auth/oidc/*`).
    #[arg(long, env = "BASIS_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// Our client id at the OpenID provider.
    #[arg(long, env = "BASIS_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// Our client secret at the OpenID provider.
    #[arg(
        long,
        env = "BASIS_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        hide = true
    )]
    pub oidc_client_secret: Option<String>,

    /// A file holding the OIDC client secret.
    #[arg(long, env = "BASIS_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// Where the browser may be sent after an OIDC login: origins or URL prefixes,
    /// comma-separated (relative paths on our own origin are always allowed).
    #[arg(long, env = "BASIS_OIDC_REDIRECT_ALLOWLIST", value_delimiter = ',')]
    pub oidc_redirect_allowlist: Vec<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |set: bool| if set { "<redacted>" } else { "<unset>" };
        f.debug_struct("AuthConfig")
            .field("jwt_keys", &redacted(self.jwt_keys.is_some()))
            .field("jwt_keys_file", &self.jwt_keys_file)
            .field("require_auth_for_links", &self.require_auth_for_links)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("oidc_issuer", &self.oidc_issuer)
            .field("oidc_client_id", &self.oidc_client_id)
            .field(
                "oidc_client_secret",
                &redacted(self.oidc_client_secret.is_some()),
            )
            .field("oidc_client_secret_file", &self.oidc_client_secret_file)
            .field("oidc_redirect_allowlist", &self.oidc_redirect_allowlist)
            .finish()
    }
}

/// A URL without its password (SMTP URLs may carry credentials).
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl AuthConfig {
    /// The JWT key spec: the variable, the file, or (development only) a key generated
    /// once and kept in `data_dir/secrets/jwt-keys` with mode 0600.
    pub fn jwt_key_spec(
        &self,
        environment: Environment,
        data_dir: &Path,
    ) -> anyhow::Result<String> {
        if let Some(spec) = self.jwt_keys.as_deref().filter(|s| !s.trim().is_empty()) {
            return Ok(spec.to_owned());
        }
        if let Some(path) = &self.jwt_keys_file {
            return read_secret(path);
        }
        if environment == Environment::Production {
            anyhow::bail!(
                "production needs real JWT keys: set BASIS_JWT_KEYS or BASIS_JWT_KEYS_FILE \
                 (kid:base64secret, at least 32 bytes)"
            );
        }
        let path = data_dir.join("secrets").join("jwt-keys");
        if path.exists() {
            return read_secret(&path);
        }
        let spec = KeySet::generate_spec("dev-1");
        write_private(&path, &spec)?;
        tracing::warn!(path = %path.display(), "generated a development JWT key; production refuses this");
        Ok(spec)
    }

    /// The OIDC client secret from the variable or its file.
    pub fn oidc_secret(&self) -> anyhow::Result<Option<String>> {
        match (&self.oidc_client_secret, &self.oidc_client_secret_file) {
            (Some(secret), _) => Ok(Some(secret.clone())),
            (None, Some(path)) => read_secret(path).map(Some),
            (None, None) => Ok(None),
        }
    }
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// Writes a secret readable by the owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the secret file {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::AuthConfig;

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = AuthConfig {
            jwt_keys: Some("k1:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==".into()),
            oidc_client_secret: Some("client-secret-value".into()),
            smtp_url: Some("smtp://user:mail-password@mail.example:587".into()),
            ..AuthConfig::default()
        };
        let text = format!("{config:?}");
        for secret in ["c2VjcmV0", "client-secret-value", "mail-password"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
