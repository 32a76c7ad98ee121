//! Secrets (IMAP and SMTP passwords): where they come from, never what they are.
//!
//! `Debug` and `Display` are redacted so a secret cannot reach a log line or an error message by
//! accident; only [`Secret::reveal`] returns the value, at the moment a login needs it.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;

/// `password = { file = … } | { env = … } | { credential = … } | { value = … }`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Secret {
    /// A file whose first line is the secret (trailing newline removed).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`).
    Credential(String),
    /// Inline; for tests and demos only.
    Value(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::File(p) => write!(f, "Secret::File({})", p.display()),
            Secret::Env(v) => write!(f, "Secret::Env({v})"),
            Secret::Credential(c) => write!(f, "Secret::Credential({c})"),
            Secret::Value(_) => f.write_str("Secret::Value(<redacted>)"),
        }
    }
}

impl Secret {
    /// Where the secret comes from, for messages (never the secret itself).
    pub fn source(&self) -> String {
        match self {
            Secret::File(p) => format!("file {}", p.display()),
            Secret::Env(v) => format!("environment variable {v}"),
            Secret::Credential(c) => format!("systemd credential {c:?}"),
            Secret::Value(_) => "inline value".to_owned(),
        }
    }

    /// Read the secret now. Errors name the source and the fix, never the content.
    pub fn reveal(&self) -> anyhow::Result<String> {
        let value = match self {
            Secret::File(path) => read_first_line(path)?,
            Secret::Env(var) => std::env::var(var).with_context(|| {
                format!("environment variable {var} is not set — export it or use `password = {{ file = \"…\" }}`")
            })?,
            Secret::Credential(name) => {
                let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                    bail!(
                        "systemd credential {name:?} requested but $CREDENTIALS_DIRECTORY is not set — \
                         add `LoadCredential={name}:/path/to/secret` to the unit, or use `password = {{ file = \"…\" }}` outside systemd"
                    );
                };
                read_first_line(&PathBuf::from(dir).join(name))?
            }
            Secret::Value(v) => v.clone(),
        };
        if value.is_empty() {
            bail!("the secret from {} is empty", self.source());
        }
        Ok(value)
    }
}

fn read_first_line(path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read secret file {} — does it exist and is it readable by this user?", path.display())
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_an_inline_value() {
        let s = Secret::Value("hunter2-very-secret".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.reveal().unwrap(), "hunter2-very-secret");
    }

    #[test]
    fn file_secret_takes_the_first_line_and_errors_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\nignored\n").unwrap();
        assert_eq!(Secret::File(path.clone()).reveal().unwrap(), "s3cret");
        let missing = Secret::File(dir.path().join("nope"));
        let err = format!("{:#}", missing.reveal().unwrap_err());
        assert!(err.contains("nope"), "{err}");
    }
}
