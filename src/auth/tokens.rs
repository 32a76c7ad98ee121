//! OAuth 2.0 tokens of an account (SPEC §7 `oauth`, §8 `[accounts.oauth2]`): the device
//! authorization grant (RFC 8628) that `oauth login` runs, the refresh token kept in the state
//! directory (`oauth/<account>.json`, mode 0600, replaced atomically — a crash never leaves none),
//! and the access token, refreshed before it expires and once more after a refused login.
//!
//! No token ever reaches a log line, an error or `Debug` output: errors name the account and
//! the fix; the HTTP traffic goes through the `oauth2` crate on reqwest with rustls (ring).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, RefreshToken, Scope,
    StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::config::{OAuth2, OAuthProvider};

/// An access token this close to its expiry is refreshed first.
const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Bound on one request to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("account {account:?} has no OAuth sign-in yet: run `hecto-watch oauth login {account}`")]
    NotLoggedIn { account: String },
    #[error("the OAuth grant of account {account:?} was revoked or has expired ({detail}): run `hecto-watch oauth login {account}` again")]
    Revoked { account: String, detail: String },
    #[error("OAuth settings of account {account:?}: {reason}")]
    Settings { account: String, reason: String },
    #[error("the OAuth provider of account {account:?} could not be reached or refused the request: {reason}")]
    Provider { account: String, reason: String },
    #[error("cannot keep the OAuth tokens of account {account:?} in {path}: {reason}")]
    Storage { account: String, path: String, reason: String },
}

impl AuthError {
    /// A grant that is gone: a new `oauth login` is the only fix.
    pub fn is_revoked(&self) -> bool {
        matches!(self, AuthError::Revoked { .. })
    }

    /// Waiting does not help: the operator must act.
    pub fn is_configuration(&self) -> bool {
        matches!(self, AuthError::NotLoggedIn { .. } | AuthError::Revoked { .. } | AuthError::Settings { .. })
    }
}

/// What is kept on disk per account. Only the refresh token and when things happened.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    account: String,
    refresh_token: String,
    obtained_at: DateTime<Utc>,
    #[serde(default)]
    refreshed_at: Option<DateTime<Utc>>,
    /// Set when the provider answered `invalid_grant`; cleared by a new login.
    #[serde(default)]
    revoked: Option<String>,
}

/// `oauth status` for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenStatus {
    pub account: String,
    /// `signed_in`, `not_signed_in`, `revoked`.
    pub state: &'static str,
    pub obtained_at: Option<DateTime<Utc>>,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub detail: Option<String>,
}

/// The endpoints and default scopes of a provider.
#[derive(Debug)]
pub struct Endpoints {
    pub device: String,
    pub token: String,
    pub scopes: Vec<String>,
}

pub fn endpoints(account: &str, o: &OAuth2) -> Result<Endpoints, AuthError> {
    let settings = |reason: &str| AuthError::Settings { account: account.to_owned(), reason: reason.to_owned() };
    let (device, token, scopes): (String, String, &[&str]) = match o.provider {
        OAuthProvider::Google => (
            "https://oauth2.googleapis.com/device/code".into(),
            "https://oauth2.googleapis.com/token".into(),
            &["https://mail.google.com/"],
        ),
        OAuthProvider::Microsoft => {
            let tenant = o.tenant.as_deref().unwrap_or("common");
            (
                format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"),
                format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
                &[
                    "https://outlook.office.com/IMAP.AccessAsUser.All",
                    "https://outlook.office.com/SMTP.Send",
                    "offline_access",
                ],
            )
        }
        OAuthProvider::Custom => (
            o.device_url.clone().ok_or_else(|| settings("provider = \"custom\" needs device_url"))?,
            o.token_url.clone().ok_or_else(|| settings("provider = \"custom\" needs token_url"))?,
            &[],
        ),
    };
    let scopes = if o.scopes.is_empty() { scopes.iter().map(|s| (*s).to_owned()).collect() } else { o.scopes.clone() };
    Ok(Endpoints {
        device: o.device_url.clone().unwrap_or(device),
        token: o.token_url.clone().unwrap_or(token),
        scopes,
    })
}

type Client = BasicClient<EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(account: &str, o: &OAuth2) -> Result<(Client, Vec<String>), AuthError> {
    let settings = |reason: String| AuthError::Settings { account: account.to_owned(), reason };
    let e = endpoints(account, o)?;
    let mut c = BasicClient::new(ClientId::new(o.client_id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(e.device.clone())
                .map_err(|err| settings(format!("device_url {:?}: {err}", e.device)))?,
        )
        .set_token_uri(
            TokenUrl::new(e.token.clone()).map_err(|err| settings(format!("token_url {:?}: {err}", e.token)))?,
        );
    if let Some(secret) = &o.client_secret {
        let s = secret.reveal().map_err(|err| settings(format!("client_secret: {err:#}")))?;
        c = c.set_client_secret(ClientSecret::new(s));
    }
    Ok((c, e.scopes))
}

fn http(account: &str) -> Result<oauth2::reqwest::Client, AuthError> {
    oauth2::reqwest::ClientBuilder::new()
        // RFC 6749 §3.1: no redirects from the token endpoint (an SSRF guard too).
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| AuthError::Provider { account: account.to_owned(), reason: e.to_string() })
}

/// The token file of `account` under the state directory.
pub fn token_path(state_dir: &Path, account: &str) -> PathBuf {
    // Hex keeps any account name a safe, distinct file name.
    state_dir.join("oauth").join(format!("{}.json", hex::encode(account.as_bytes())))
}

fn read(path: &Path, account: &str) -> Result<Option<Stored>, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| AuthError::Storage {
            account: account.to_owned(),
            path: path.display().to_string(),
            reason: format!("unreadable ({e}); run `hecto-watch oauth login {account}` again"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuthError::Storage {
            account: account.to_owned(),
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Write atomically: a new file beside it (owner-only from its creation), synced, renamed over
/// the old one, the directory synced — a crash leaves the old file or the new one, never none.
fn write(path: &Path, stored: &Stored) -> Result<(), AuthError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err = |reason: String| AuthError::Storage {
        account: stored.account.clone(),
        path: path.display().to_string(),
        reason,
    };
    let dir = path.parent().ok_or_else(|| err("no directory".into()))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| err(e.to_string()))?;
    // A name of its own per writer, created exclusively: two writers never share a half-file.
    let tmp = dir.join(format!(
        ".{}.{}.{:x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("token"),
        std::process::id(),
        rand::random::<u64>()
    ));
    let bytes = serde_json::to_vec_pretty(stored).map_err(|e| err(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| err(e.to_string()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// An exclusive lock on the account's token file (a `.lock` beside it), held until dropped.
async fn lock(path: &Path, account: &str) -> Result<std::fs::File, AuthError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err =
        |reason: String| AuthError::Storage { account: account.to_owned(), path: path.display().to_string(), reason };
    let dir = path.parent().ok_or_else(|| err("no directory".into()))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| err(e.to_string()))?;
    let lock_path = path.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| err(e.to_string()))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(format!("cannot lock {}: {e}", lock_path.display())))
}

/// What `oauth login` shows the operator.
pub struct DeviceCode {
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    pub expires_in: Duration,
}

/// `oauth login`: start the device grant, show the code (`show`), poll the token endpoint at the
/// interval the provider gives (slowing down when told), and keep the refresh token.
pub async fn device_login(
    state_dir: &Path,
    account: &str,
    o: &OAuth2,
    show: impl FnOnce(&DeviceCode),
) -> Result<DateTime<Utc>, AuthError> {
    let provider = |reason: String| AuthError::Provider { account: account.to_owned(), reason };
    let (client, scopes) = client(account, o)?;
    let http = http(account)?;
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(scopes.into_iter().map(Scope::new))
        .request_async(&http)
        .await
        .map_err(|e| provider(describe(&e)))?;
    show(&DeviceCode {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details.verification_uri_complete().map(|u| u.secret().to_owned()),
        user_code: details.user_code().secret().to_owned(),
        expires_in: details.expires_in(),
    });
    let token = client
        .exchange_device_access_token(&details)
        .request_async(&http, tokio::time::sleep, None)
        .await
        .map_err(|e| provider(describe(&e)))?;
    let Some(refresh) = token.refresh_token() else {
        return Err(provider(
            "the provider granted no refresh token (Microsoft needs the offline_access scope)".into(),
        ));
    };
    let now = Utc::now();
    let path = token_path(state_dir, account);
    let _lock = lock(&path, account).await?;
    let stored = Stored {
        account: account.to_owned(),
        refresh_token: refresh.secret().clone(),
        obtained_at: now,
        refreshed_at: None,
        revoked: None,
    };
    write(&path, &stored)?;
    Ok(now)
}

/// An OAuth error in one line, without any token: the provider's error code and description.
fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: &oauth2::RequestTokenError<RE, T>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => r.to_string(),
        oauth2::RequestTokenError::Request(r) => format!("request failed: {r}"),
        oauth2::RequestTokenError::Parse(p, _) => format!("unreadable answer: {p}"),
        oauth2::RequestTokenError::Other(o) => o.clone(),
    }
}

/// One account's access token, from its stored refresh token.
pub struct TokenSource {
    account: String,
    settings: OAuth2,
    path: PathBuf,
    cached: tokio::sync::Mutex<Option<(String, DateTime<Utc>)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("account", &self.account).field("path", &self.path).finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(state_dir: &Path, account: &str, settings: OAuth2) -> TokenSource {
        TokenSource {
            account: account.to_owned(),
            path: token_path(state_dir, account),
            settings,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    pub fn mechanism(&self) -> crate::config::SaslMechanism {
        self.settings.mechanism
    }

    /// A valid access token: the one held while it has more than a minute left, else a new one
    /// from the refresh token. `fresh`: refresh even so (the server refused the held one).
    pub async fn access_token(&self, fresh: bool) -> Result<String, AuthError> {
        let mut cached = self.cached.lock().await;
        if let (false, Some((token, expires))) = (fresh, cached.as_ref()) {
            if *expires - REFRESH_MARGIN > Utc::now() {
                return Ok(token.clone());
            }
        }
        let account = &self.account;
        // Across processes too (the daemon, and `folders` or `check-config --connect` beside it):
        // two refreshes of one rotating refresh token would void each other's, and the loser
        // would take its `invalid_grant` for a revoked grant. The lock is held from reading the
        // refresh token to writing its successor.
        let _lock = lock(&self.path, account).await?;
        let Some(mut stored) = read(&self.path, account)? else {
            return Err(AuthError::NotLoggedIn { account: account.clone() });
        };
        if let Some(detail) = &stored.revoked {
            return Err(AuthError::Revoked { account: account.clone(), detail: detail.clone() });
        }
        let (client, _) = client(account, &self.settings)?;
        let http = http(account)?;
        let answer =
            client.exchange_refresh_token(&RefreshToken::new(stored.refresh_token.clone())).request_async(&http).await;
        let token = match answer {
            Ok(t) => t,
            Err(oauth2::RequestTokenError::ServerResponse(r)) if *r.error() == BasicErrorResponseType::InvalidGrant => {
                let detail = r.to_string();
                // Remembered, so that `oauth status` says so and no retry asks the provider again
                // with a dead token; a new `oauth login` replaces the file (under the same lock).
                stored.revoked = Some(detail.clone());
                write(&self.path, &stored)?;
                *cached = None;
                return Err(AuthError::Revoked { account: account.clone(), detail });
            }
            // The client registration is wrong (an expired secret, a removed app, a scope not
            // granted): waiting will not help, and the fix is at the provider.
            Err(oauth2::RequestTokenError::ServerResponse(r))
                if matches!(
                    r.error(),
                    BasicErrorResponseType::InvalidClient
                        | BasicErrorResponseType::UnauthorizedClient
                        | BasicErrorResponseType::InvalidScope
                ) =>
            {
                return Err(AuthError::Settings {
                    account: account.clone(),
                    reason: format!("the provider refused the OAuth client ({r}): check client_id, client_secret and scopes against the app registered with the provider"),
                });
            }
            Err(e) => return Err(AuthError::Provider { account: account.clone(), reason: describe(&e) }),
        };
        let now = Utc::now();
        // Rotation: the provider may hand out a new refresh token with every refresh; the old
        // one may stop working at once, so the new one is on disk before the access token is used.
        if let Some(rotated) = token.refresh_token() {
            if *rotated.secret() != stored.refresh_token {
                stored.refresh_token = rotated.secret().clone();
            }
        }
        stored.refreshed_at = Some(now);
        write(&self.path, &stored)?;
        let lifetime = token.expires_in().unwrap_or(Duration::from_secs(3600));
        // Checked: an absurd expires_in from the provider must not panic.
        let expires = chrono::TimeDelta::from_std(lifetime)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(now + chrono::TimeDelta::hours(1));
        let access = token.access_token().secret().clone();
        *cached = Some((access.clone(), expires));
        Ok(access)
    }
}

/// `oauth status` from the token file (which a running daemon shares).
pub fn status_of(path: &Path, account: &str) -> TokenStatus {
    let base = TokenStatus {
        account: account.to_owned(),
        state: "not_signed_in",
        obtained_at: None,
        refreshed_at: None,
        detail: None,
    };
    match read(path, account) {
        Ok(None) => base,
        Ok(Some(s)) => TokenStatus {
            state: if s.revoked.is_some() { "revoked" } else { "signed_in" },
            obtained_at: Some(s.obtained_at),
            refreshed_at: s.refreshed_at,
            detail: s.revoked,
            ..base
        },
        Err(e) => TokenStatus { detail: Some(e.to_string()), ..base },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_owner_only_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(dir.path(), "contracts");
        let s = Stored {
            account: "contracts".into(),
            refresh_token: "r1".into(),
            obtained_at: Utc::now(),
            refreshed_at: None,
            revoked: None,
        };
        write(&path, &s).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        write(&path, &Stored { refresh_token: "r2".into(), ..s }).unwrap();
        assert_eq!(read(&path, "contracts").unwrap().unwrap().refresh_token, "r2");
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        assert_eq!(status_of(&path, "contracts").state, "signed_in");
        assert_eq!(status_of(&token_path(dir.path(), "other"), "other").state, "not_signed_in");
    }

    #[test]
    fn provider_defaults_and_custom_endpoints() {
        let o: OAuth2 =
            toml::from_str("provider = \"microsoft\"\nclient_id = \"x\"\ntenant = \"contoso.onmicrosoft.com\"")
                .unwrap();
        let e = endpoints("a", &o).unwrap();
        assert_eq!(e.token, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert!(e.scopes.contains(&"offline_access".to_owned()) && e.scopes.len() == 3);
        let o: OAuth2 = toml::from_str("provider = \"google\"\nclient_id = \"x\"").unwrap();
        assert_eq!(endpoints("a", &o).unwrap().scopes, ["https://mail.google.com/"]);
        let o: OAuth2 = toml::from_str("provider = \"custom\"\nclient_id = \"x\"").unwrap();
        assert!(endpoints("a", &o).unwrap_err().to_string().contains("device_url"));
    }
}
