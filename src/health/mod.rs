//! `health`: whether each account's mailbox can be read, and if not since when, why and what
//! will likely fix it (SPEC §5, §7 `health`, §9). Pure: the watchers record a [`FolderStatus`]
//! per folder after every pass (the store keeps them), and everything an operator sees — the
//! `health` command, `STATUS=`, `/healthz`, the status page and the alerts — is derived here
//! from those records and the configuration, so all of them say the same thing.

pub mod alerts;
pub mod liveness;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Account, Config};
use crate::merchant::FolderRole;

/// What kind of trouble a failed pass had: decides the likely fix named in `health` and in the
/// operator alert, and whether a refused login is alerted at once (after two tries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trouble {
    /// The server refused the login (wrong password, an app password needed, OAuth only).
    LoginRefused,
    /// The OAuth provider refused the refresh token (revoked, expired).
    OauthRevoked,
    /// The server's certificate is not for the configured host name.
    TlsName,
    /// The server's certificate is not trusted (self-signed, unknown CA, expired).
    TlsTrust,
    /// No TCP connection, no greeting, or the connection broke.
    Unreachable,
    /// The account's own settings prevent a login (clear text refused, a password file missing).
    Configuration,
    /// Logged in, but the folder could not be read to its end.
    Folder,
    /// The database could not take what was read.
    Storage,
    /// A bug of ours (a task panicked); the task was restarted.
    Internal,
}

impl Trouble {
    pub fn as_str(self) -> &'static str {
        match self {
            Trouble::LoginRefused => "login_refused",
            Trouble::OauthRevoked => "oauth_revoked",
            Trouble::TlsName => "tls_name",
            Trouble::TlsTrust => "tls_trust",
            Trouble::Unreachable => "unreachable",
            Trouble::Configuration => "configuration",
            Trouble::Folder => "folder",
            Trouble::Storage => "storage",
            Trouble::Internal => "internal",
        }
    }

    /// A refused login does not get better by waiting: it is alerted after two tries rather than
    /// after `[alerts] account_down_after`.
    pub fn alert_at_once(self) -> bool {
        matches!(self, Trouble::LoginRefused | Trouble::OauthRevoked)
    }
}

/// One watched folder's sync status, as the watchers record it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderStatus {
    /// The end of the last pass that read the folder to its newest mail.
    pub last_ok: Option<DateTime<Utc>>,
    /// Why the last pass failed (the server's words, or ours), while it keeps failing.
    pub last_error: Option<String>,
    /// What kind of failure `last_error` is (absent in records of older versions).
    #[serde(default)]
    pub trouble: Option<Trouble>,
    /// The first failure of the current run of failures.
    pub error_since: Option<DateTime<Utc>>,
    /// Passes failed in a row.
    pub failures: u32,
    /// Mails looked at over all passes.
    pub mails_seen: u64,
}

/// A [`FolderStatus`] with the folder it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderStatusRecord {
    pub account: String,
    pub folder: String,
    #[serde(flatten)]
    pub status: FolderStatus,
}

/// Whether an account can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Every watched folder's last pass read it to its end.
    Ok,
    /// At least one watched folder's last pass failed.
    Down,
    /// Not tried yet: no pass has finished, well or badly.
    Unchecked,
}

/// One folder in [`AccountHealth`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderHealth {
    pub folder: String,
    /// `inbox`, `junk`, `sent`, `other`, as last listed.
    pub role: String,
    #[serde(flatten)]
    pub status: FolderStatus,
}

/// One account's health, what `health --json` prints per account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    pub account: String,
    pub state: AccountState,
    pub readable: bool,
    /// The oldest successful pass over its folders: every folder was read at least this recently.
    pub last_ok: Option<DateTime<Utc>>,
    /// Down since (the earliest failure of the failing folders).
    pub since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub trouble: Option<Trouble>,
    /// What will likely fix it, for an operator.
    pub fix: Option<String>,
    /// The most passes failed in a row by one folder.
    pub failures: u32,
    pub mails_seen: u64,
    pub folders: Vec<FolderHealth>,
}

/// Every configured account's health from the stored folder statuses and roles. Statuses of
/// accounts no longer configured are left out; an account with none is [`AccountState::Unchecked`].
pub fn report(
    config: &Config,
    statuses: &[FolderStatusRecord],
    roles: &BTreeMap<String, Vec<(String, FolderRole)>>,
) -> Vec<AccountHealth> {
    config.accounts.iter().map(|a| account_health(a, statuses, roles.get(&a.name))).collect()
}

fn role_word(role: FolderRole) -> &'static str {
    match role {
        FolderRole::Inbox => "inbox",
        FolderRole::Junk => "junk",
        FolderRole::Sent => "sent",
        FolderRole::Other => "other",
    }
}

fn account_health(
    account: &Account,
    statuses: &[FolderStatusRecord],
    roles: Option<&Vec<(String, FolderRole)>>,
) -> AccountHealth {
    let mut folders: Vec<FolderHealth> = statuses
        .iter()
        .filter(|r| r.account == account.name)
        .map(|r| {
            let role = roles
                .and_then(|roles| roles.iter().find(|(n, _)| *n == r.folder))
                .map(|(_, role)| *role)
                .unwrap_or(if r.folder.eq_ignore_ascii_case("INBOX") { FolderRole::Inbox } else { FolderRole::Other });
            FolderHealth { folder: r.folder.clone(), role: role_word(role).to_owned(), status: r.status.clone() }
        })
        .collect();
    // INBOX first, then junk, sent, the rest; by name within a role.
    let rank = |r: &str| ["inbox", "junk", "sent"].iter().position(|x| *x == r).unwrap_or(3);
    folders.sort_by(|a, b| (rank(&a.role), &a.folder).cmp(&(rank(&b.role), &b.folder)));
    let failing: Vec<&FolderHealth> = folders.iter().filter(|f| f.status.last_error.is_some()).collect();
    let state = if !failing.is_empty() {
        AccountState::Down
    } else if folders.is_empty() || folders.iter().any(|f| f.status.last_ok.is_none()) {
        AccountState::Unchecked
    } else {
        AccountState::Ok
    };
    // The error shown is the one that has lasted longest (INBOX first on a tie): usually the
    // login or connection trouble every folder shares.
    let worst = failing.iter().min_by_key(|f| f.status.error_since).copied();
    let trouble = worst.map(|f| f.status.trouble.unwrap_or(Trouble::Folder));
    let last_error = worst.and_then(|f| f.status.last_error.clone());
    let fix = match (trouble, &last_error) {
        (Some(t), Some(e)) => Some(likely_fix(t, account, e, worst.map(|f| f.folder.as_str()).unwrap_or("INBOX"))),
        _ => None,
    };
    AccountHealth {
        account: account.name.clone(),
        state,
        readable: state == AccountState::Ok,
        last_ok: if folders.iter().all(|f| f.status.last_ok.is_some()) {
            folders.iter().filter_map(|f| f.status.last_ok).min()
        } else {
            None
        },
        since: failing.iter().filter_map(|f| f.status.error_since).min(),
        last_error,
        trouble,
        fix,
        failures: folders.iter().map(|f| f.status.failures).max().unwrap_or(0),
        mails_seen: folders.iter().map(|f| f.status.mails_seen).sum(),
        folders,
    }
}

/// The providers that refuse an account's normal password over IMAP and want an app password
/// (../shared/reference/mail-providers.md), by IMAP host suffix.
const APP_PASSWORD_HOSTS: &[(&str, &str)] = &[
    ("gmail.com", "Google: turn on 2-step verification and create an app password at myaccount.google.com/apppasswords (or use auth = \"oauth2\")"),
    ("googlemail.com", "Google: turn on 2-step verification and create an app password at myaccount.google.com/apppasswords (or use auth = \"oauth2\")"),
    ("naver.com", "Naver: 환경설정 › POP3/IMAP 설정 에서 IMAP 사용, 2단계 인증 후 애플리케이션 비밀번호를 만드세요"),
    ("daum.net", "Daum: 환경설정 › IMAP/POP3 에서 IMAP 사용; 2단계 인증을 쓰면 앱 비밀번호가 필요합니다"),
    ("kakao.com", "Kakao: 메일 환경설정에서 IMAP 사용; 2단계 인증을 쓰면 앱 비밀번호가 필요합니다"),
    ("worksmobile.com", "Naver Works: 외부 앱 비밀번호(External app password)가 필요합니다; the admin may also restrict IMAP by IP"),
];

/// What will likely fix `trouble` on `account`, in one sentence an operator can act on.
pub fn likely_fix(trouble: Trouble, account: &Account, error: &str, folder: &str) -> String {
    let host = account.host.to_ascii_lowercase();
    let name = &account.name;
    match trouble {
        Trouble::LoginRefused => {
            let lower = error.to_ascii_lowercase();
            if account.auth == crate::config::AuthMethod::Oauth2 {
                format!("the server refused a freshly refreshed OAuth token: check that the mailbox may use IMAP (the provider's admin settings), that the OAuth client has the IMAP scope, and that `username` is the signed-in mailbox; `hecto-watch oauth login {name}` signs in again")
            } else if host.ends_with("office365.com") || host.ends_with("outlook.com") {
                format!("Microsoft 365 / Outlook.com accept only OAuth 2.0 for IMAP: set auth = \"oauth2\" for account {name:?} and run `hecto-watch oauth login {name}`")
            } else if let Some((_, how)) = APP_PASSWORD_HOSTS.iter().find(|(h, _)| host == *h || host.ends_with(&format!(".{h}"))) {
                format!("wrong password, or an app password is needed — {how}; put it where `password` of account {name:?} points")
            } else if lower.contains("application-specific password") || lower.contains("app password") {
                format!("the server wants an app password: create one with the provider and put it where `password` of account {name:?} points")
            } else {
                format!("wrong username or password: check `username` and the password `password` of account {name:?} points to")
            }
        }
        Trouble::OauthRevoked => {
            format!("the OAuth grant was revoked or has expired: run `hecto-watch oauth login {name}` again")
        }
        Trouble::TlsName => format!(
            "the server's certificate is not for {:?}: set `host` of account {name:?} to a name the certificate carries",
            account.host
        ),
        Trouble::TlsTrust => format!(
            "the server's certificate is not trusted: if it is self-signed or from a private CA, give that CA in `ca_file` of account {name:?}"
        ),
        Trouble::Unreachable => format!(
            "the server {}:{} cannot be reached: check `host`, `port` and `tls` of account {name:?} and the network; the daemon keeps retrying",
            account.host, account.port
        ),
        Trouble::Configuration => format!("fix the settings of account {name:?} as the error says, then reload (systemctl reload hecto-watch)"),
        Trouble::Folder => format!(
            "the server would not let folder {folder:?} be read to its end: check it still exists and is readable (`hecto-watch folders`); the daemon keeps retrying"
        ),
        Trouble::Storage => "the database could not be written: check free space and permissions of the state directory".to_owned(),
        Trouble::Internal => "a bug in hecto-watch (a task failed and was restarted): please report it with the journal".to_owned(),
    }
}

/// Every account readable: `health` exits 0, `/healthz` answers 200.
pub fn all_readable(report: &[AccountHealth]) -> bool {
    report.iter().all(|a| a.readable)
}

/// The accounts that are not readable, in one line for `STATUS=` and `/healthz`:
/// `account "shop" unreadable since 09:12 KST: login refused` — empty when all are readable.
pub fn trouble_line(report: &[AccountHealth]) -> String {
    let mut parts = Vec::new();
    for a in report.iter().filter(|a| !a.readable) {
        let part = match a.state {
            AccountState::Unchecked => format!("account {:?} not checked yet", a.account),
            _ => {
                let since = a
                    .since
                    .map(|t| format!(" since {}", t.with_timezone(&chrono_tz::Asia::Seoul).format("%m-%d %H:%M KST")))
                    .unwrap_or_default();
                let what = a.trouble.map(|t| t.as_str().replace('_', " ")).unwrap_or_else(|| "failing".into());
                format!("account {:?} unreadable{since}: {what}", a.account)
            }
        };
        parts.push(part);
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn config(accounts: &[(&str, &str)]) -> Config {
        let mut text = String::new();
        for (name, host) in accounts {
            text.push_str(&format!(
                "[[accounts]]\nname = \"{name}\"\nhost = \"{host}\"\nusername = \"u@{host}\"\npassword = {{ value = \"x\" }}\n"
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    fn ok(account: &str, folder: &str, at: &str) -> FolderStatusRecord {
        FolderStatusRecord {
            account: account.into(),
            folder: folder.into(),
            status: FolderStatus { last_ok: Some(t(at)), mails_seen: 10, ..Default::default() },
        }
    }

    fn failing(account: &str, folder: &str, since: &str, trouble: Trouble, error: &str) -> FolderStatusRecord {
        FolderStatusRecord {
            account: account.into(),
            folder: folder.into(),
            status: FolderStatus {
                last_error: Some(error.into()),
                trouble: Some(trouble),
                error_since: Some(t(since)),
                failures: 3,
                ..Default::default()
            },
        }
    }

    #[test]
    fn an_account_is_readable_only_when_every_folder_read_to_its_end() {
        let c = config(&[("good", "imap.example.com"), ("bad", "imap.example.com"), ("new", "imap.example.com")]);
        let statuses = vec![
            ok("good", "INBOX", "2027-02-10T09:00:00+09:00"),
            ok("good", "Junk", "2027-02-10T08:59:00+09:00"),
            ok("bad", "INBOX", "2027-02-10T09:00:00+09:00"),
            failing("bad", "Junk", "2027-02-10T07:00:00+09:00", Trouble::Folder, "EXAMINE Junk: NO"),
            ok("gone", "INBOX", "2027-02-10T09:00:00+09:00"),
        ];
        let roles = BTreeMap::from([("good".to_owned(), vec![("Junk".to_owned(), FolderRole::Junk)])]);
        let r = report(&c, &statuses, &roles);
        assert_eq!(
            r.iter().map(|a| (a.account.as_str(), a.state)).collect::<Vec<_>>(),
            [("good", AccountState::Ok), ("bad", AccountState::Down), ("new", AccountState::Unchecked)]
        );
        assert_eq!(r[0].last_ok, Some(t("2027-02-10T08:59:00+09:00")), "the oldest folder's pass");
        assert_eq!(r[0].folders[1].role, "junk");
        assert_eq!(r[0].mails_seen, 20);
        assert_eq!(r[1].since, Some(t("2027-02-10T07:00:00+09:00")));
        assert_eq!(r[1].trouble, Some(Trouble::Folder));
        assert!(r[1].fix.as_deref().unwrap().contains("\"Junk\""), "{:?}", r[1].fix);
        assert!(!all_readable(&r));
        let line = trouble_line(&r);
        assert_eq!(line, "account \"bad\" unreadable since 02-10 07:00 KST: folder; account \"new\" not checked yet");
        assert!(all_readable(&r[..1]));
    }

    #[test]
    fn the_likely_fix_names_the_provider_rule() {
        let c = config(&[("m365", "outlook.office365.com"), ("naver", "imap.naver.com"), ("own", "mail.shop.example")]);
        let fix = |i: usize, t: Trouble, e: &str| likely_fix(t, &c.accounts[i], e, "INBOX");
        assert!(fix(0, Trouble::LoginRefused, "AUTHENTICATE failed").contains("OAuth 2.0"));
        assert!(fix(1, Trouble::LoginRefused, "NO login failed").contains("애플리케이션 비밀번호"));
        assert!(
            fix(2, Trouble::LoginRefused, "[ALERT] Application-specific password required").contains("app password")
        );
        assert!(fix(2, Trouble::LoginRefused, "[AUTHENTICATIONFAILED] Invalid credentials")
            .contains("wrong username or password"));
        assert!(fix(2, Trouble::TlsName, "").contains("\"mail.shop.example\""));
        assert!(fix(2, Trouble::OauthRevoked, "").contains("hecto-watch oauth login own"));
        assert!(fix(2, Trouble::Unreachable, "").contains("mail.shop.example:993"));
    }
}
