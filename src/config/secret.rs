//! Secrets (IMAP and SMTP passwords): where they come from, never what they are.
//!
//! `Debug` and `Display` are redacted so a secret cannot reach a log line or an error message by
//! accident; only [`Secret::reveal`] returns the value, at the moment a login needs it.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// `password = { file = … } | { env = … } | { credential = … } | { value = … }`.
#[derive(Clone, PartialEq, Eq)]
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

/// What a secret must look like; said instead of echoing what was written, which may be the
/// password itself (`password = "hunter2"` is a mistake people make).
const SHAPE: &str = "must be a table: { file = \"/path\" }, { env = \"VAR\" }, { credential = \"name\" } or { value = \"…\" } (what is written here is not shown: it may be the secret)";

/// By hand, so that no error message ever contains the value written (serde's derived errors
/// quote it: ``unknown variant `hunter2` ``).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(SHAPE)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
                let mut found: Option<Secret> = None;
                while let Some(key) = map.next_key::<String>()? {
                    // Only strings are taken, and a wrong type is reported without its value.
                    let value: String = map
                        .next_value::<toml::Value>()
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .ok_or_else(|| de::Error::custom(format!("{key}: must be a string ({SHAPE})")))?;
                    let secret = match key.as_str() {
                        "file" => Secret::File(PathBuf::from(value)),
                        "env" => Secret::Env(value),
                        "credential" => Secret::Credential(value),
                        "value" => Secret::Value(value),
                        _ => return Err(de::Error::custom(SHAPE)),
                    };
                    if found.replace(secret).is_some() {
                        return Err(de::Error::custom(format!(
                            "give one of file, env, credential or value, not several ({SHAPE})"
                        )));
                    }
                }
                found.ok_or_else(|| de::Error::custom(SHAPE))
            }
            // Every other shape: a string, a number, a boolean, an array — said without its value.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Secret, E> {
                Err(E::custom(SHAPE))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(SHAPE))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(SHAPE))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(SHAPE))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(SHAPE))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(de::Error::custom(SHAPE))
            }
        }
        d.deserialize_any(V)
    }
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
mod secret_shape_tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct T {
        password: Secret,
    }

    #[test]
    fn no_shape_of_a_mistake_echoes_the_secret() {
        for text in [
            "password = \"hunter2-SECRET-inline\"",
            "password = 424242424242",
            "password = { value = 424242424242 }",
            "password = { hunter2-SECRET-key = \"x\" }",
            "password = [\"hunter2-SECRET-inline\"]",
            "password = { value = \"hunter2-SECRET-inline\", file = \"/x\" }",
        ] {
            // As Config::parse does: from the parsed table (its errors carry no source snippet).
            let v = toml::Value::Table(text.parse::<toml::Table>().unwrap());
            let e = T::deserialize(v).unwrap_err().to_string();
            assert!(!e.contains("hunter2") && !e.contains("424242"), "{text}: {e}");
            assert!(e.contains("must be") || e.contains("give one of"), "{text}: {e}");
        }
        let v = toml::Value::Table("password = { value = \"ok\" }".parse::<toml::Table>().unwrap());
        assert!(matches!(T::deserialize(v).unwrap().password, Secret::Value(_)));
    }
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
