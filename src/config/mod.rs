//! `config`: the TOML file (SPEC §8), first stage of the flow. Everything that can be checked is
//! checked when the file loads — cron strings, addresses, ports, TLS choices — and **all** problems
//! are reported at once, each with its key path (`accounts[1].port: …`), so an operator fixes the
//! file in one round. Nothing here opens a socket or the database.

pub mod presets;
mod secret;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};

pub use secret::Secret;

use crate::mail::Rules;

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/hecto-watch/config.toml";

/// A configuration that failed to load: every problem found, one per line.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: Option<PathBuf>,
    pub problems: Vec<String>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        match &self.file {
            Some(p) => write!(f, "{}: {n} problem{}", p.display(), if n == 1 { "" } else { "s" })?,
            None => write!(f, "configuration: {n} problem{}", if n == 1 { "" } else { "s" })?,
        }
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Implicit,
    Starttls,
    None,
}

/// `junk` / `sent`: find the folders, do not watch any, or use these names (SPEC §6: a string
/// or a list of strings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FolderChoice {
    #[default]
    Auto,
    Off,
    Named(Vec<String>),
}

impl<'de> Deserialize<'de> for FolderChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Choice;
        impl<'de> serde::de::Visitor<'de> for Choice {
            type Value = FolderChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\", \"off\", a folder name or a list of folder names")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FolderChoice, E> {
                match s {
                    "auto" => Ok(FolderChoice::Auto),
                    "off" => Ok(FolderChoice::Off),
                    "" => Err(E::custom("an empty folder name; use \"off\" to watch none")),
                    _ => Ok(FolderChoice::Named(vec![s.to_owned()])),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<FolderChoice, A::Error> {
                use serde::de::Error;
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    if name.is_empty() {
                        return Err(A::Error::custom("an empty folder name in the list"));
                    }
                    if name == "auto" || name == "off" {
                        return Err(A::Error::custom(format!(
                            "{name:?} in a list: a list names folders; use \"{name}\" alone, or add the extra folders to `folders`"
                        )));
                    }
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                if names.is_empty() {
                    return Err(A::Error::custom("an empty list; use \"off\" to watch none, \"auto\" to detect"));
                }
                Ok(FolderChoice::Named(names))
            }
        }
        d.deserialize_any(Choice)
    }
}

/// How an account (or `[smtp]`) logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    #[default]
    Password,
    Oauth2,
}

/// The OAuth providers with built-in endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthProvider {
    Google,
    Microsoft,
    Custom,
}

/// The SASL mechanism that carries the access token (RFC 7628, and Google's/Microsoft's XOAUTH2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaslMechanism {
    #[default]
    Xoauth2,
    Oauthbearer,
}

/// `[accounts.oauth2]` (SPEC §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    pub provider: OAuthProvider,
    #[serde(default)]
    pub client_id: String,
    /// Optional for public clients (the device flow usually needs none).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Empty: the provider's defaults.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// Microsoft: the directory (tenant) id or domain; default `common`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `custom`: the token endpoint and the device-authorization endpoint (RFC 8628).
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub device_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
}

fn default_store_path() -> PathBuf {
    PathBuf::from("/var/lib/hecto-watch")
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { path: default_store_path() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    pub host: String,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_insecure: bool,
    pub username: String,
    /// Required with `auth = "password"`; unused with OAuth.
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub auth: AuthMethod,
    /// `[accounts.oauth2]`, with `auth = "oauth2"`.
    #[serde(default)]
    pub oauth2: Option<OAuth2>,
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    #[serde(default)]
    pub junk: FolderChoice,
    #[serde(default)]
    pub sent: FolderChoice,
    #[serde(default = "yes")]
    pub idle: bool,
    #[serde(default = "default_poll", deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    #[serde(default = "default_backfill")]
    pub backfill_days: u32,
    #[serde(default)]
    pub move_found_in_spam: bool,
    /// More addresses this mailbox receives (aliases): a merchant whose contact is one of them,
    /// or the username, has its guidance reminder say which folders the daemon read (SPEC §5).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// With OAuth: where its access tokens come from, for the state directory in use
    /// ([`crate::auth::attach`]); not part of the file.
    #[serde(skip)]
    pub tokens: Option<std::sync::Arc<crate::auth::TokenSource>>,
}

fn default_imap_port() -> u16 {
    993
}
fn default_folders() -> Vec<String> {
    vec!["INBOX".to_owned()]
}
fn yes() -> bool {
    true
}
fn default_poll() -> Duration {
    Duration::from_secs(60)
}
fn default_backfill() -> u32 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_insecure: bool,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    pub from: String,
    /// `oauth2`: AUTH XOAUTH2 with the tokens of account `oauth2_account`.
    #[serde(default)]
    pub auth: AuthMethod,
    #[serde(default)]
    pub oauth2_account: Option<String>,
    /// Bound on one whole SMTP send (connect, AUTH, DATA); lettre's own timeout covers only the connect.
    #[serde(default = "default_smtp_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn default_smtp_port() -> u16 {
    465
}
fn default_smtp_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    Ko,
    En,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Ko => "ko",
            Language::En => "en",
        }
    }
}

impl std::str::FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Language, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ko" => Ok(Language::Ko),
            "en" => Ok(Language::En),
            _ => Err(format!("language {s:?} must be ko or en")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reminders {
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default)]
    pub operators: Vec<String>,
    #[serde(default = "default_repeat")]
    pub repeat_every_business_days: u32,
    #[serde(default = "default_max_reminders")]
    pub max_reminders: u32,
    #[serde(default)]
    pub language: Language,
    /// A folder of template files overriding the built-in ones (`config/templates/`).
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// How the reminder tells people to reach Hecto's contract team and PortOne.
    #[serde(default = "default_hecto_contact")]
    pub hecto_contact: String,
    #[serde(default = "default_portone_contact")]
    pub portone_contact: String,
    /// Reminders go out only on business days inside these hours (Asia/Seoul, SPEC §5); notices
    /// and alerts are not held.
    #[serde(default)]
    pub send_hours: SendHours,
    /// How long a message that was being sent when the daemon stopped waits for its copy to
    /// show up in a watched mailbox before it is resent (SPEC §9 Durability); 1 s to 24 h.
    #[serde(default = "default_in_doubt_wait", deserialize_with = "de_duration")]
    pub in_doubt_wait: Duration,
}

/// `"09:00-18:00"`: from the first time (inclusive) to the second (exclusive), Asia/Seoul.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendHours {
    pub start: chrono::NaiveTime,
    pub end: chrono::NaiveTime,
}

impl Default for SendHours {
    fn default() -> Self {
        SendHours {
            start: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            end: chrono::NaiveTime::from_hms_opt(18, 0, 0).unwrap_or_default(),
        }
    }
}

impl SendHours {
    pub fn contains(&self, t: chrono::NaiveTime) -> bool {
        self.start <= t && t < self.end
    }
}

impl FromStr for SendHours {
    type Err = String;
    fn from_str(s: &str) -> Result<SendHours, String> {
        let bad = || format!("{s:?} is not HH:MM-HH:MM (Asia/Seoul), e.g. \"09:00-18:00\"");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let time = |t: &str| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let hours = SendHours { start: time(a)?, end: time(b)? };
        if hours.start >= hours.end {
            return Err(format!("{s:?}: the end must come after the start on the same day"));
        }
        Ok(hours)
    }
}

impl<'de> Deserialize<'de> for SendHours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

fn default_schedule() -> String {
    "0 0 9 * * Mon-Fri".to_owned()
}
fn default_repeat() -> u32 {
    2
}
fn default_max_reminders() -> u32 {
    3
}
fn default_in_doubt_wait() -> Duration {
    Duration::from_secs(600)
}
fn default_hecto_contact() -> String {
    "가맹점 문의 1688-5130, info_F@hecto.co.kr".to_owned()
}
fn default_portone_contact() -> String {
    "cs@portone.io".to_owned()
}

impl Default for Reminders {
    fn default() -> Self {
        Reminders {
            schedule: default_schedule(),
            operators: Vec::new(),
            repeat_every_business_days: default_repeat(),
            max_reminders: default_max_reminders(),
            language: Language::default(),
            templates_dir: None,
            hecto_contact: default_hecto_contact(),
            portone_contact: default_portone_contact(),
            send_hours: SendHours::default(),
            in_doubt_wait: default_in_doubt_wait(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    #[serde(default = "default_guidance_days")]
    pub guidance_business_days: u32,
    #[serde(default = "default_card_review_days")]
    pub card_review_days: u32,
}

fn default_guidance_days() -> u32 {
    3
}
fn default_card_review_days() -> u32 {
    14
}

impl Default for Windows {
    fn default() -> Self {
        Windows { guidance_business_days: default_guidance_days(), card_review_days: default_card_review_days() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// ISO dates (`"2027-06-09"`) that are not business days, added to the shipped calendar.
    #[serde(default, deserialize_with = "de_dates")]
    pub extra_holidays: Vec<NaiveDate>,
    /// A holiday data file replacing the built-in `config/holidays-kr.toml`.
    #[serde(default)]
    pub holidays_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter; `RUST_LOG` in the environment wins.
    #[serde(default = "default_log_filter")]
    pub filter: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn default_log_filter() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: default_log_filter(), format: LogFormat::default() }
    }
}

/// `[alerts]`: when an unreadable account is told to the operators (SPEC §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    #[serde(default = "default_account_down_after", deserialize_with = "de_duration")]
    pub account_down_after: Duration,
}

fn default_account_down_after() -> Duration {
    Duration::from_secs(30 * 60)
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts { account_down_after: default_account_down_after() }
    }
}

/// `[http]`: the read-only status server (SPEC §9); off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Required when `listen` is not a loopback address: `Authorization: Bearer …` or `?token=`.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// The whole configuration, validated.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub store: StoreConfig,
    pub accounts: Vec<Account>,
    pub smtp: Option<Smtp>,
    pub reminders: Reminders,
    pub windows: Windows,
    pub calendar: CalendarConfig,
    pub rules: Rules,
    pub log: LogConfig,
    pub alerts: Alerts,
    pub http: Http,
    /// What each `preset` filled in (`accounts[0]` / `smtp` → what), for `check-config`.
    pub presets: Vec<(String, presets::Filled)>,
    /// `reminders.schedule`, parsed once at load.
    pub schedule: Option<cron::Schedule>,
    /// The file this came from; `None` for the built-in defaults.
    pub source: Option<PathBuf>,
}

impl Config {
    /// The built-in defaults: what the offline commands use when there is no config file.
    pub fn builtin() -> Config {
        let mut c = Config::default();
        c.schedule = cron::Schedule::from_str(&c.reminders.schedule).ok();
        c
    }

    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: Some(path.to_owned()),
            problems: vec![format!("cannot read the configuration file: {e}")],
        })?;
        let mut config = Config::parse(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// [`Config::load`], and when the file has problems, what of it could be read anyway — so
    /// `check-config` can also check its password files, credentials and templates, and report
    /// every problem in one pass.
    pub fn load_partial(path: &Path) -> Option<Config> {
        let text = std::fs::read_to_string(path).ok()?;
        Config::parse_partial(&text).map(|(mut c, _)| {
            c.source = Some(path.to_owned());
            c
        })
    }

    /// Parse and validate TOML text, collecting every problem.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        match Config::parse_partial(text) {
            Some((config, problems)) if problems.is_empty() => Ok(config),
            Some((_, problems)) => Err(ConfigErrors { file: None, problems }),
            None => Err(ConfigErrors { file: None, problems: vec![Config::toml_problem(text)] }),
        }
    }

    /// The TOML syntax error of `text`: position and message, never the line itself (it may
    /// hold a password written without quotes).
    fn toml_problem(text: &str) -> String {
        match text.parse::<toml::Table>() {
            Ok(_) => "not valid TOML".to_owned(),
            Err(e) => {
                let at = e.span().map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!(" at line {line}, column {column}")
                });
                format!("not valid TOML{}: {}", at.unwrap_or_default(), e.message().trim().replace('\n', " "))
            }
        }
    }

    /// Everything that could be read, and every problem; `None` when the text is not TOML.
    fn parse_partial(text: &str) -> Option<(Config, Vec<String>)> {
        let mut problems = Vec::new();
        let table: toml::Table = text.parse().ok()?;
        let mut config = Config::builtin();
        for (key, value) in table {
            match key.as_str() {
                "store" => section(&key, value, &mut problems, &mut config.store),
                "smtp" => {
                    let mut smtp = None;
                    let value = with_preset(&key, value, presets::apply_smtp, &mut config.presets, &mut problems);
                    if let Some(s) = deserialize_collecting::<Smtp>(&key, value, &mut problems) {
                        smtp = Some(s);
                    }
                    config.smtp = smtp;
                }
                "reminders" => section(&key, value, &mut problems, &mut config.reminders),
                "windows" => section(&key, value, &mut problems, &mut config.windows),
                "calendar" => section(&key, value, &mut problems, &mut config.calendar),
                "rules" => section(&key, value, &mut problems, &mut config.rules),
                "log" => section(&key, value, &mut problems, &mut config.log),
                "alerts" => section(&key, value, &mut problems, &mut config.alerts),
                "http" => section(&key, value, &mut problems, &mut config.http),
                "accounts" => match value {
                    toml::Value::Array(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            let path = format!("accounts[{i}]");
                            let item = with_preset(&path, item, presets::apply_account, &mut config.presets, &mut problems);
                            if let Some(a) = deserialize_collecting::<Account>(&path, item, &mut problems) {
                                config.accounts.push(a);
                            }
                        }
                    }
                    _ => problems.push("accounts: must be an array of tables ([[accounts]])".to_owned()),
                },
                other => problems.push(format!(
                    "{other}: unknown section (known: store, accounts, smtp, reminders, windows, calendar, rules, log, alerts, http)"
                )),
            }
        }
        config.validate(&mut problems);
        // One line per problem, whatever a library's message looks like: the journal shows one
        // entry per line, and a line break inside a problem would let a file forge the next.
        for p in &mut problems {
            if p.contains(['\n', '\r']) {
                *p = p.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
            }
        }
        Some((config, problems))
    }

    /// Semantic checks on values that deserialised.
    fn validate(&mut self, problems: &mut Vec<String>) {
        let mut names = BTreeSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            let p = format!("accounts[{i}]");
            if a.name.trim().is_empty() {
                problems.push(format!("{p}.name: must not be empty"));
            } else if !names.insert(a.name.clone()) {
                problems.push(format!("{p}.name: {:?} is used by another account; names must be unique", a.name));
            }
            if a.host.trim().is_empty() {
                problems.push(format!("{p}.host: must not be empty"));
            }
            if a.port == 0 {
                problems.push(format!("{p}.port: 0 is not a port; IMAPS is 993, IMAP with STARTTLS 143"));
            }
            check_tls(&p, a.tls, a.port, &a.host, a.allow_insecure, (993, 143), problems);
            check_ca(&p, &a.ca_file, problems);
            if a.folders.is_empty() && a.junk == FolderChoice::Off && a.sent == FolderChoice::Off {
                problems.push(format!("{p}.folders: nothing to watch (no folders, junk and sent off)"));
            }
            if a.poll_interval < Duration::from_secs(1) || a.poll_interval > Duration::from_secs(24 * 3600) {
                problems.push(format!("{p}.poll_interval: must be from 1s to 24h"));
            }
            if a.backfill_days > 3650 {
                problems.push(format!("{p}.backfill_days: at most 3650 (ten years)"));
            }
            match (a.auth, &a.password, &a.oauth2) {
                (AuthMethod::Password, None, _) => problems.push(format!(
                    "{p}.password: required with auth = \"password\" (or set auth = \"oauth2\" and [accounts.oauth2])"
                )),
                (AuthMethod::Oauth2, _, None) => problems.push(format!(
                    "{p}.oauth2: auth = \"oauth2\" needs an [accounts.oauth2] table with provider and client_id"
                )),
                (AuthMethod::Oauth2, Some(_), Some(_)) => problems
                    .push(format!("{p}.password: not used with auth = \"oauth2\" (the access token is); remove it")),
                (AuthMethod::Password, _, Some(_)) => problems.push(format!(
                    "{p}.oauth2: only used with auth = \"oauth2\"; set auth = \"oauth2\" or remove the table"
                )),
                (AuthMethod::Oauth2, None, Some(o)) => {
                    for (key, url) in [("token_url", &o.token_url), ("device_url", &o.device_url)] {
                        if let Some(u) = url {
                            let host = u.strip_prefix("http://").map(|r| r.split(['/', ':']).next().unwrap_or(""));
                            if let Some(h) = host.filter(|h| !is_loopback(h)) {
                                problems.push(format!(
                                    "{p}.oauth2.{key}: {u:?} would send tokens in clear to {h}; use https://"
                                ));
                            } else if !u.starts_with("https://") && !u.starts_with("http://") {
                                problems.push(format!("{p}.oauth2.{key}: {u:?} is not an http(s) URL"));
                            }
                        }
                    }
                    if o.client_id.trim().is_empty() {
                        problems.push(format!(
                            "{p}.oauth2.client_id: required (the OAuth client registered with the provider)"
                        ));
                    }
                    if o.provider == OAuthProvider::Custom && (o.token_url.is_none() || o.device_url.is_none()) {
                        problems.push(format!("{p}.oauth2: provider = \"custom\" needs token_url and device_url"));
                    }
                }
                _ => {}
            }
            if let Some(why) = presets::refused_host(&a.host) {
                problems.push(format!("{p}.host: {:?} cannot be watched: {why}", a.host));
            }
            for (j, addr) in a.addresses.iter().enumerate() {
                if addr.parse::<lettre::Address>().is_err() {
                    problems.push(format!("{p}.addresses[{j}]: {addr:?} is not a mail address"));
                }
            }
            if a.username.is_empty() {
                problems.push(format!("{p}.username: must not be empty"));
            }
        }
        if let Some(s) = &self.smtp {
            let p = "smtp";
            if s.host.trim().is_empty() {
                problems.push(format!("{p}.host: must not be empty"));
            }
            if s.port == 0 {
                problems.push(format!("{p}.port: 0 is not a port; SMTPS is 465, submission with STARTTLS 587"));
            }
            check_tls(p, s.tls, s.port, &s.host, s.allow_insecure, (465, 587), problems);
            check_ca(p, &s.ca_file, problems);
            if s.from.parse::<lettre::message::Mailbox>().is_err() {
                problems.push(format!(
                    "{p}.from: {:?} is not a mail address like \"Hecto Watch <noreply@example.com>\"",
                    s.from
                ));
            }
            if s.auth == AuthMethod::Oauth2 {
                let named = s.oauth2_account.as_ref().and_then(|n| self.accounts.iter().find(|a| &a.name == n));
                match named {
                    Some(a) if a.auth == AuthMethod::Oauth2 => {}
                    _ => problems.push(format!(
                        "{p}.oauth2_account: with smtp.auth = \"oauth2\", name an account with auth = \"oauth2\" whose tokens AUTH XOAUTH2 uses"
                    )),
                }
                if s.username.is_none() {
                    problems.push(format!("{p}.username: the mailbox to AUTH XOAUTH2 as is needed"));
                }
                if s.password.is_some() {
                    problems.push(format!("{p}.password: not used with smtp.auth = \"oauth2\"; remove it"));
                }
            } else if s.oauth2_account.is_some() {
                problems.push(format!("{p}.oauth2_account: only used with smtp.auth = \"oauth2\""));
            }
            if s.password.is_some() && s.username.is_none() {
                problems.push(format!("{p}.username: a password is set but no username; AUTH needs both"));
            }
            if s.timeout < Duration::from_secs(1) || s.timeout > Duration::from_secs(600) {
                problems.push(format!("{p}.timeout: must be from 1s to 10m"));
            }
        }
        match cron::Schedule::from_str(&self.reminders.schedule) {
            Ok(s) => self.schedule = Some(s),
            Err(e) => {
                self.schedule = None;
                // The cron crate draws a caret diagram over several lines; its last line says what
                // is wrong.
                let e = e.to_string();
                let e = e.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default().to_owned();
                problems.push(format!(
                    "reminders.schedule: {:?} is not a cron expression with seconds (like \"0 0 9 * * Mon-Fri\"): {e}",
                    self.reminders.schedule
                ));
            }
        }
        for (i, op) in self.reminders.operators.iter().enumerate() {
            if op.parse::<lettre::Address>().is_err() {
                problems.push(format!("reminders.operators[{i}]: {op:?} is not a mail address"));
            }
        }
        if self.reminders.max_reminders > 100 {
            problems.push("reminders.max_reminders: more than 100 reminders is surely a mistake".to_owned());
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.reminders.in_doubt_wait) {
            problems.push("reminders.in_doubt_wait: must be between 1s and 24h".to_owned());
        }
        if self.reminders.repeat_every_business_days == 0 {
            problems.push("reminders.repeat_every_business_days: must be at least 1".to_owned());
        }
        if self.windows.guidance_business_days == 0 || self.windows.guidance_business_days > 60 {
            problems.push("windows.guidance_business_days: must be between 1 and 60".to_owned());
        }
        if self.windows.card_review_days == 0 || self.windows.card_review_days > 365 {
            problems.push("windows.card_review_days: must be between 1 and 365".to_owned());
        }
        if let Some(f) = &self.calendar.holidays_file {
            if !f.is_file() {
                problems.push(format!("calendar.holidays_file: {} does not exist", f.display()));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problems.push(format!(
                "log.filter: {:?} is not a tracing filter (like \"info\" or \"hecto_watch=debug\"): {e}",
                self.log.filter
            ));
        }
        if self.alerts.account_down_after < Duration::from_secs(1)
            || self.alerts.account_down_after > Duration::from_secs(7 * 86_400)
        {
            problems.push("alerts.account_down_after: must be from 1s to 7 days".to_owned());
        }
        if let Some(addr) = self.http.listen {
            if !addr.ip().is_loopback() && self.http.token.is_none() {
                problems.push(format!(
                    "http.token: required when http.listen ({addr}) is not a loopback address — the status page shows merchants' names and mail; set token = {{ credential = \"http-token\" }}"
                ));
            }
        }
        problems.extend(self.rules.validate());
    }
}

fn check_tls(
    p: &str,
    tls: TlsMode,
    port: u16,
    host: &str,
    allow_insecure: bool,
    ports: (u16, u16),
    problems: &mut Vec<String>,
) {
    let (implicit_port, starttls_port) = ports;
    match tls {
        TlsMode::None if !allow_insecure && !is_loopback(host) => problems.push(format!(
            "{p}.tls: \"none\" sends the password in clear to {host}; use \"starttls\" or \"implicit\", or set {p}.allow_insecure = true"
        )),
        TlsMode::Implicit if port == starttls_port => problems.push(format!(
            "{p}.port: {port} is the STARTTLS port but tls = \"implicit\" — did you mean tls = \"starttls\" (or port {implicit_port})?"
        )),
        TlsMode::Starttls if port == implicit_port => problems.push(format!(
            "{p}.port: {port} is the implicit-TLS port but tls = \"starttls\" — did you mean tls = \"implicit\" (or port {starttls_port})?"
        )),
        _ => {}
    }
}

/// The file exists and holds at least one PEM certificate (a key, a DER file or junk would fail
/// every connection later, with a less clear error).
fn check_ca(p: &str, ca: &Option<PathBuf>, problems: &mut Vec<String>) {
    let Some(f) = ca else { return };
    if !f.is_file() {
        problems.push(format!("{p}.ca_file: {} does not exist", f.display()));
        return;
    }
    match std::fs::read(f) {
        Ok(pem) => {
            let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
            if certs.is_empty() || certs.iter().any(Result::is_err) {
                problems.push(format!(
                    "{p}.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    f.display()
                ));
            }
        }
        Err(e) => problems.push(format!("{p}.ca_file: cannot read {}: {e}", f.display())),
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`: where plain text cannot be overheard.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Deserialise one section into `target`, keeping the defaults when it fails.
fn section<T: serde::de::DeserializeOwned>(key: &str, value: toml::Value, problems: &mut Vec<String>, target: &mut T) {
    if let Some(v) = deserialize_collecting(key, value, problems) {
        *target = v;
    }
}

/// Deserialise a table, reporting every bad or unknown key: after each error the offending key is
/// removed and the table tried again, so one typo does not hide the next.
/// Apply a table's `preset` before it is deserialised (so explicit keys win), noting what it
/// filled in; a bad preset is a problem at `path.preset`.
fn with_preset(
    path: &str,
    value: toml::Value,
    apply: fn(&mut toml::Table) -> Result<Option<presets::Filled>, String>,
    filled: &mut Vec<(String, presets::Filled)>,
    problems: &mut Vec<String>,
) -> toml::Value {
    let toml::Value::Table(mut table) = value else { return value };
    match apply(&mut table) {
        Ok(Some(f)) => filled.push((path.to_owned(), f)),
        Ok(None) => {}
        Err(e) => problems.push(format!("{path}.preset: {e}")),
    }
    toml::Value::Table(table)
}

fn deserialize_collecting<T: serde::de::DeserializeOwned>(
    path: &str,
    value: toml::Value,
    problems: &mut Vec<String>,
) -> Option<T> {
    let toml::Value::Table(mut table) = value else {
        problems.push(format!("{path}: must be a table"));
        return None;
    };
    let mut removed = BTreeSet::new();
    for _ in 0..64 {
        let attempt = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, T>(attempt) {
            Ok(v) => return Some(v),
            Err(e) => {
                let inner = e.inner().to_string();
                let field = e.path().iter().next().map(|s| s.to_string()).filter(|s| s != "?");
                // An unknown key is reported by serde at the table itself; find its name.
                let unknown =
                    inner.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()).map(str::to_owned);
                let key = unknown.clone().or(field);
                let full = match (&key, e.path().to_string().as_str()) {
                    (Some(_), p) if p != "." && unknown.is_none() => format!("{path}.{p}"),
                    (Some(k), _) => format!("{path}.{k}"),
                    (None, _) => path.to_owned(),
                };
                let missing_after_removal = inner
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next())
                    .is_some_and(|k| removed.contains(k));
                if !missing_after_removal {
                    // One line per problem: the toml crate appends "\nin `key`", which the key
                    // path already says.
                    let first = inner.lines().next().unwrap_or_default().trim().to_owned();
                    let msg = if unknown.is_some() { format!("unknown key ({first})") } else { first };
                    problems.push(format!("{full}: {msg}"));
                }
                match key {
                    Some(k) if table.remove(&k).is_some() => {
                        removed.insert(k);
                    }
                    _ => return None,
                }
            }
        }
    }
    None
}

/// `"60s"`, `"5m"`, `"1h"`, `"500ms"`, or a bare integer of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like \"60s\", \"5m\" or \"1h\""))?;
    let d = match unit.trim() {
        "" | "s" | "sec" | "secs" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" | "mins" => Duration::from_secs(n.checked_mul(60).ok_or_else(|| format!("{s:?} is too long"))?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(|| format!("{s:?} is too long"))?),
        _ => return Err(format!("{s:?} has an unknown unit; use ms, s, m or h")),
    };
    Ok(d)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a duration like \"60s\", \"5m\" or a number of seconds")]
    enum Raw {
        Int(u64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(Duration::from_secs(n)),
        Raw::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

fn de_dates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDate>, D::Error> {
    // TOML has native dates (2027-06-09) and operators also write strings ("2027-06-09").
    // Every bad date is named, in one line, not only the first.
    let raw = Vec::<toml::Value>::deserialize(d)?;
    let mut dates = Vec::new();
    let mut bad = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let s = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Datetime(dt) => dt.to_string(),
            other => other.to_string(),
        };
        match NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            Ok(d) => dates.push(d),
            Err(_) => bad.push(format!("[{i}] {s:?}")),
        }
    }
    if bad.is_empty() {
        Ok(dates)
    } else {
        Err(serde::de::Error::custom(format!("not dates like \"2027-06-09\": {}", bad.join(", "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_config_is_valid_and_its_rules_are_the_builtin_defaults() {
        let text = include_str!("../../config/hecto-watch.toml");
        let c = Config::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rules, Rules::default(), "config/hecto-watch.toml [rules] must equal Rules::default()");
        assert_eq!(c.accounts.len(), 4);
        assert!(c.smtp.is_some());
        // The examples: Gmail and Naver by preset with app passwords, Microsoft 365 by OAuth.
        let by = |n: &str| c.accounts.iter().find(|a| a.name == n).unwrap();
        assert_eq!(
            (by("gmail-contact").host.as_str(), by("gmail-contact").auth),
            ("imap.gmail.com", AuthMethod::Password)
        );
        let m365 = by("m365-contact");
        assert_eq!((m365.host.as_str(), m365.auth), ("outlook.office365.com", AuthMethod::Oauth2));
        assert_eq!(m365.oauth2.as_ref().map(|o| o.provider), Some(OAuthProvider::Microsoft));
        assert!(!by("naver-contact").idle, "Naver has no IDLE");
        assert_eq!(c.presets.len(), 3);
    }

    #[test]
    fn every_bad_holiday_date_is_named() {
        let e = Config::parse("[calendar]\nextra_holidays = [\"2027-13-01\", 2027-06-09, \"soon\", 7]\n").unwrap_err();
        let p = e.problems.join("\n");
        assert!(p.contains("[0] \"2027-13-01\"") && p.contains("[2] \"soon\"") && p.contains("[3] \"7\""), "{p}");
        assert!(!p.contains("[1]"), "{p}");
        assert_eq!(e.problems.len(), 1, "one line: {p}");
    }

    #[test]
    fn oauth_settings_that_contradict_each_other_are_problems() {
        let base = "[[accounts]]\nname = \"a\"\nhost = \"imap.example.com\"\nusername = \"u@example.com\"\n";
        let problems =
            |extra: &str| Config::parse(&format!("{base}{extra}")).err().map(|e| e.problems).unwrap_or_default();
        assert!(problems("auth = \"oauth2\"\npassword = { value = \"x\" }\n[accounts.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\n")[0].contains("password: not used"));
        assert!(problems(
            "password = { value = \"x\" }\n[accounts.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\n"
        )[0]
        .contains("oauth2: only used"));
        assert!(problems("auth = \"oauth2\"\n")[0].contains("needs an [accounts.oauth2]"));
        let p = problems("auth = \"oauth2\"\n[accounts.oauth2]\nprovider = \"custom\"\nclient_id = \"c\"\ntoken_url = \"http://idp.example.com/t\"\ndevice_url = \"http://127.0.0.1:1/d\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("token_url") && p[0].contains("in clear"), "{p:?}");
        assert!(problems("auth = \"oauth2\"\n[accounts.oauth2]\nprovider = \"microsoft\"\n")[0]
            .contains("client_id: required"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
[[accounts]]
name = "a"
host = "imap.example.com"
username = "u"
password = { value = "x" }

[[accounts]]
name = "b"
host = "imap.example.com"
port = "nine"
username = "u"
password = { value = "x" }
colour = "blue"

[reminders]
schedule = "every morning"
operators = ["not an address"]

[log]
filter = "hecto_watch=loudest"

[bogus]
x = 1
"#;
        let err = Config::parse(text).unwrap_err();
        let all = err.problems.join("\n");
        assert!(all.contains("accounts[1].port"), "{all}");
        assert!(all.contains("accounts[1].colour"), "{all}");
        assert!(all.contains("reminders.schedule"), "{all}");
        assert!(all.contains("reminders.operators[0]"), "{all}");
        assert!(all.contains("bogus"), "{all}");
        assert!(all.contains("log.filter"), "{all}");
        assert_eq!(err.problems.len(), 6, "{all}");
    }

    #[test]
    fn plain_text_is_refused_unless_loopback_or_allowed() {
        let acc = |host: &str, allow: bool| {
            format!(
                "[[accounts]]\nname=\"a\"\nhost=\"{host}\"\nport=143\ntls=\"none\"\nallow_insecure={allow}\nusername=\"u\"\npassword={{ value = \"x\" }}\n"
            )
        };
        assert!(Config::parse(&acc("127.0.0.1", false)).is_ok());
        assert!(Config::parse(&acc("localhost", false)).is_ok());
        assert!(Config::parse(&acc("imap.example.com", true)).is_ok());
        let err = Config::parse(&acc("imap.example.com", false)).unwrap_err();
        assert!(err.problems[0].starts_with("accounts[0].tls"), "{err}");
    }

    #[test]
    fn implicit_tls_on_the_starttls_port_gets_advice() {
        let t = "[[accounts]]\nname=\"a\"\nhost=\"imap.example.com\"\nport=143\nusername=\"u\"\npassword={ value = \"x\" }\n";
        let err = Config::parse(t).unwrap_err();
        assert!(err.problems[0].contains("did you mean tls = \"starttls\""), "{err}");
    }

    #[test]
    fn durations_and_dates_parse_in_their_documented_forms() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        // Too long to count in seconds: an error, not an overflow.
        assert!(parse_duration("999999999999999999h").unwrap_err().contains("too long"));
        assert!(parse_duration("999999999999999999m").unwrap_err().contains("too long"));
        let c = Config::parse("[calendar]\nextra_holidays = [\"2027-06-09\", 2027-06-10]\n").unwrap();
        assert_eq!(c.calendar.extra_holidays.len(), 2);
        assert!(Config::parse("[calendar]\nextra_holidays = [\"June 9\"]\n").is_err());
    }

    #[test]
    fn junk_and_sent_take_auto_off_a_name_or_a_list() {
        let acc = |extra: &str| {
            Config::parse(&format!(
                "[[accounts]]\nname=\"a\"\nhost=\"127.0.0.1\"\nport=993\nusername=\"u\"\npassword={{ value = \"x\" }}\n{extra}"
            ))
        };
        let junk = |extra: &str| acc(extra).map(|mut c| c.accounts.remove(0).junk);
        assert_eq!(junk("").unwrap(), FolderChoice::Auto);
        assert_eq!(junk("junk = \"off\"").unwrap(), FolderChoice::Off);
        assert_eq!(junk("junk = \"스팸메일함\"").unwrap(), FolderChoice::Named(vec!["스팸메일함".into()]));
        assert_eq!(
            junk("junk = [\"스팸메일함\", \"INBOX.Junk\", \"스팸메일함\"]").unwrap(),
            FolderChoice::Named(vec!["스팸메일함".into(), "INBOX.Junk".into()])
        );
        let sent = acc("sent = [\"Sent Messages\"]").unwrap().accounts.remove(0).sent;
        assert_eq!(sent, FolderChoice::Named(vec!["Sent Messages".into()]));
        for bad in
            ["junk = []", "junk = \"\"", "junk = 3", "sent = [\"\"]", "sent = [1]", "junk = [\"auto\", \"스팸\"]"]
        {
            let e = acc(bad).err().unwrap_or_else(|| panic!("{bad} must be refused")).to_string();
            assert!(e.contains("junk") || e.contains("sent"), "{bad}: {e}");
        }
    }

    #[test]
    fn send_hours_parse_as_a_same_day_range_in_seoul() {
        let h: SendHours = "09:00-18:00".parse().unwrap();
        assert_eq!(h, SendHours::default());
        let at = |t: &str| chrono::NaiveTime::parse_from_str(t, "%H:%M").unwrap();
        assert!(h.contains(at("09:00")) && h.contains(at("17:59")));
        assert!(!h.contains(at("08:59")) && !h.contains(at("18:00")) && !h.contains(at("03:00")));
        assert_eq!(" 10:30 - 12:00 ".parse::<SendHours>().unwrap().start, at("10:30"));
        for bad in ["", "9-18", "09:00", "18:00-09:00", "09:00-09:00", "25:00-26:00"] {
            assert!(bad.parse::<SendHours>().is_err(), "{bad:?}");
        }
        let e = Config::parse("[reminders]\nsend_hours = \"18:00-09:00\"\n").err().unwrap().to_string();
        assert!(e.contains("reminders.send_hours"), "{e}");
    }

    #[test]
    fn a_bad_cron_schedule_is_one_line_naming_what_is_wrong() {
        // Found by the `config` fuzz target: the cron crate's caret diagram spans three lines.
        let e = Config::parse("[reminders]\nschedule = \"0 0 9 * * M2n-Fri\"\n").err().unwrap();
        assert_eq!(e.problems.len(), 1);
        let p = &e.problems[0];
        assert!(
            !p.contains('\n') && p.contains("reminders.schedule") && p.contains("not a valid day of the week"),
            "{p}"
        );
    }

    #[test]
    fn in_doubt_wait_defaults_to_ten_minutes_and_is_bounded() {
        assert_eq!(Config::parse("").unwrap().reminders.in_doubt_wait, Duration::from_secs(600));
        let c = Config::parse("[reminders]\nin_doubt_wait = \"5s\"\n").unwrap();
        assert_eq!(c.reminders.in_doubt_wait, Duration::from_secs(5));
        for bad in ["0s", "500ms", "25h"] {
            let e = Config::parse(&format!("[reminders]\nin_doubt_wait = \"{bad}\"\n")).err().unwrap().to_string();
            assert!(e.contains("reminders.in_doubt_wait"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_empty_file_is_the_builtin_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.windows.guidance_business_days, 3);
        assert_eq!(c.reminders.max_reminders, 3);
        assert!(c.schedule.is_some());
    }
}
