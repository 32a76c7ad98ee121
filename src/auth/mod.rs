//! `auth`: signing in with OAuth 2.0 (SPEC §7 `oauth`, §8 `auth`, `[accounts.oauth2]`): the SASL
//! messages that carry a token ([`sasl`]) and the tokens themselves ([`tokens`]): the device
//! grant of `oauth login`, the refresh token kept in the state directory, the access token
//! refreshed before it expires. [`attach`] gives each OAuth account of a configuration its
//! [`tokens::TokenSource`] for a state directory, so `imap` and `notify` just ask it for a token.

pub mod sasl;
pub mod tokens;

use std::path::Path;
use std::sync::Arc;

use crate::config::{AuthMethod, Config};
pub use tokens::{AuthError, TokenSource, TokenStatus};

/// Give every `auth = "oauth2"` account of `config` its token source in `state_dir`.
pub fn attach(config: &mut Config, state_dir: &Path) {
    for a in &mut config.accounts {
        a.tokens = match (&a.auth, &a.oauth2) {
            (AuthMethod::Oauth2, Some(o)) => Some(Arc::new(TokenSource::new(state_dir, &a.name, o.clone()))),
            _ => None,
        };
    }
}
