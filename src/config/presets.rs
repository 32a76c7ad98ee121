//! `preset = "gmail" | "outlook" | "naver" | "daum" | "kakao" | "naverworks" | "nate"` (SPEC §8):
//! the provider's hosts, ports, TLS, the likely way to log in, and folder hints, from
//! `../shared/reference/mail-providers.md`. A preset fills only the keys the table leaves out —
//! explicit keys win — and it is applied to the TOML table before it is deserialised, so
//! "left out" really means not written (not "written with the default value").

/// One provider's settings.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub imap_host: &'static str,
    pub imap_port: u16,
    pub imap_tls: &'static str,
    pub smtp_host: &'static str,
    pub smtp_port: u16,
    pub smtp_tls: &'static str,
    /// `false` where the server has no IDLE (poll INBOX instead).
    pub idle: bool,
    /// `auth` when the table does not say: `oauth2` where passwords are refused outright.
    pub auth: &'static str,
    /// The OAuth provider built in for it, if any.
    pub oauth_provider: Option<&'static str>,
    /// What the operator must still do at the provider, for `check-config`.
    pub todo: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "gmail",
        imap_host: "imap.gmail.com",
        imap_port: 993,
        imap_tls: "implicit",
        smtp_host: "smtp.gmail.com",
        smtp_port: 465,
        smtp_tls: "implicit",
        idle: true,
        auth: "password",
        oauth_provider: Some("google"),
        todo: "Google refuses the account password over IMAP: turn on 2-step verification and create an app password (myaccount.google.com/apppasswords), or use auth = \"oauth2\" with a Google OAuth client (provider = \"google\"); Workspace admins must allow IMAP",
    },
    Preset {
        name: "outlook",
        imap_host: "outlook.office365.com",
        imap_port: 993,
        imap_tls: "implicit",
        smtp_host: "smtp.office365.com",
        smtp_port: 587,
        smtp_tls: "starttls",
        idle: true,
        auth: "oauth2",
        oauth_provider: Some("microsoft"),
        todo: "Microsoft 365 and Outlook.com accept only OAuth 2.0 over IMAP: register an app in Microsoft Entra (public client flows / device code on, delegated IMAP.AccessAsUser.All, SMTP.Send, offline_access), put its client_id in [accounts.oauth2], then run `hecto-watch oauth login ACCOUNT`; the tenant's admin may have to allow IMAP and SMTP AUTH for the mailbox",
    },
    Preset {
        name: "naver",
        imap_host: "imap.naver.com",
        imap_port: 993,
        imap_tls: "implicit",
        smtp_host: "smtp.naver.com",
        smtp_port: 587,
        smtp_tls: "starttls",
        // Naver answers IDLE with "BAD … Unknown command".
        idle: false,
        auth: "password",
        oauth_provider: None,
        todo: "Naver: turn IMAP on (메일 환경설정 › POP3/IMAP 설정 › IMAP/SMTP 사용), and with 2-step verification create an application password (애플리케이션 비밀번호) and use it as the password",
    },
    Preset {
        name: "daum",
        imap_host: "imap.daum.net",
        imap_port: 993,
        imap_tls: "implicit",
        smtp_host: "smtp.daum.net",
        smtp_port: 465,
        smtp_tls: "implicit",
        idle: true,
        auth: "password",
        oauth_provider: None,
        todo: "Daum: turn IMAP on (메일 환경설정 › IMAP/POP3), and with 2-step verification use an app password",
    },
    Preset {
        name: "kakao",
        imap_host: "imap.kakao.com",
        imap_port: 993,
        imap_tls: "implicit",
        smtp_host: "smtp.kakao.com",
        smtp_port: 465,
        smtp_tls: "implicit",
        idle: true,
        auth: "password",
        oauth_provider: None,
        todo: "Kakao: turn IMAP on in the mail settings, and with 2-step verification use an app password",
    },
    Preset {
        name: "naverworks",
        imap_host: "imap.worksmobile.com",
        imap_port: 993,
        imap_tls: "implicit",
        smtp_host: "smtp.worksmobile.com",
        smtp_port: 465,
        smtp_tls: "implicit",
        idle: true,
        auth: "password",
        oauth_provider: None,
        todo: "Naver Works: create an external app password (외부 앱 비밀번호) and use it as the password; the admin may restrict IMAP by IP address",
    },
    Preset {
        name: "nate",
        imap_host: "imap.nate.com",
        imap_port: 993,
        imap_tls: "implicit",
        smtp_host: "smtp.mail.nate.com",
        smtp_port: 587,
        smtp_tls: "starttls",
        idle: true,
        auth: "password",
        oauth_provider: None,
        todo: "Nate: turn IMAP on in the mail settings; Nate stops delivering to a mailbox nobody has logged in to for 90 days",
    },
];

/// Why a provider cannot be watched at all.
const REFUSED: &[(&str, &str)] = &[(
    "hiworks",
    "Hiworks (Gabia) offers POP3 and SMTP only, and POP3 cannot see a spam folder — the Hecto mail that lands in spam would never be seen; forward the contact address to a mailbox with IMAP",
)];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The names accepted, for messages.
pub fn names() -> String {
    std::iter::once("none").chain(PRESETS.iter().map(|p| p.name)).collect::<Vec<_>>().join(" | ")
}

/// A host that belongs to a provider that cannot be watched (an account pointed at it by hand).
pub fn refused_host(host: &str) -> Option<&'static str> {
    let host = host.to_ascii_lowercase();
    REFUSED.iter().find(|(name, _)| host.contains(name)).map(|(_, why)| *why)
}

/// What a preset filled into one table, for `check-config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filled {
    pub preset: &'static str,
    pub keys: Vec<String>,
    pub todo: &'static str,
}

fn fill(table: &mut toml::Table, key: &str, value: toml::Value, filled: &mut Vec<String>) {
    if !table.contains_key(key) {
        filled.push(format!("{key} = {value}"));
        table.insert(key.to_owned(), value);
    }
}

/// Apply an `[[accounts]]` table's `preset` (removing the key): `Ok(None)` without one,
/// `Err(problem)` for an unknown or refused name.
pub fn apply_account(table: &mut toml::Table) -> Result<Option<Filled>, String> {
    let Some(p) = take_preset(table)? else { return Ok(None) };
    let mut keys = Vec::new();
    fill(table, "host", p.imap_host.into(), &mut keys);
    fill(table, "port", i64::from(p.imap_port).into(), &mut keys);
    fill(table, "tls", p.imap_tls.into(), &mut keys);
    if !p.idle {
        fill(table, "idle", false.into(), &mut keys);
    }
    fill(table, "auth", p.auth.into(), &mut keys);
    let oauth = table.get("auth").and_then(|v| v.as_str()) == Some("oauth2");
    if let (true, Some(provider)) = (oauth, p.oauth_provider) {
        if let Some(toml::Value::Table(o)) = table.get_mut("oauth2") {
            let mut inner = Vec::new();
            fill(o, "provider", provider.into(), &mut inner);
            keys.extend(inner.into_iter().map(|k| format!("oauth2.{k}")));
        } else if !table.contains_key("oauth2") {
            let mut o = toml::Table::new();
            o.insert("provider".into(), provider.into());
            table.insert("oauth2".into(), toml::Value::Table(o));
            keys.push(format!("oauth2.provider = \"{provider}\""));
        }
    }
    Ok(Some(Filled { preset: p.name, keys, todo: p.todo }))
}

/// Apply `[smtp]`'s `preset` (removing the key).
pub fn apply_smtp(table: &mut toml::Table) -> Result<Option<Filled>, String> {
    let Some(p) = take_preset(table)? else { return Ok(None) };
    let mut keys = Vec::new();
    fill(table, "host", p.smtp_host.into(), &mut keys);
    fill(table, "port", i64::from(p.smtp_port).into(), &mut keys);
    fill(table, "tls", p.smtp_tls.into(), &mut keys);
    Ok(Some(Filled { preset: p.name, keys, todo: p.todo }))
}

fn take_preset(table: &mut toml::Table) -> Result<Option<&'static Preset>, String> {
    let Some(v) = table.remove("preset") else { return Ok(None) };
    let Some(name) = v.as_str() else {
        return Err(format!("must be a string: {}", names()));
    };
    if name == "none" {
        return Ok(None);
    }
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        return Err(format!("{name:?} cannot be watched: {why}"));
    }
    find(name).map(Some).ok_or_else(|| format!("{name:?} is not a preset (known: {})", names()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn a_preset_fills_only_what_the_table_leaves_out() {
        let mut t = table("preset = \"naver\"\nport = 1993\n");
        let filled = apply_account(&mut t).unwrap().unwrap();
        assert_eq!(t["host"].as_str(), Some("imap.naver.com"));
        assert_eq!(t["port"].as_integer(), Some(1993), "explicit keys win");
        assert_eq!(t["idle"].as_bool(), Some(false), "Naver has no IDLE");
        assert!(!t.contains_key("preset"));
        assert!(
            filled.keys.iter().any(|k| k.starts_with("host = ")) && !filled.keys.iter().any(|k| k.starts_with("port"))
        );
        assert!(filled.todo.contains("애플리케이션 비밀번호"));
    }

    #[test]
    fn outlook_means_oauth_with_the_microsoft_provider() {
        let mut t = table("preset = \"outlook\"\n[oauth2]\nclient_id = \"abc\"\n");
        apply_account(&mut t).unwrap();
        assert_eq!(t["auth"].as_str(), Some("oauth2"));
        assert_eq!(t["oauth2"]["provider"].as_str(), Some("microsoft"));
        assert_eq!(t["oauth2"]["client_id"].as_str(), Some("abc"));
        // Told to use a password: no OAuth table is made up.
        let mut t = table("preset = \"gmail\"\n");
        apply_account(&mut t).unwrap();
        assert_eq!(t["auth"].as_str(), Some("password"));
        assert!(!t.contains_key("oauth2"));
    }

    #[test]
    fn unknown_and_refused_presets_are_problems() {
        assert!(apply_account(&mut table("preset = \"yahoo\"\n")).unwrap_err().contains("not a preset"));
        let e = apply_account(&mut table("preset = \"hiworks\"\n")).unwrap_err();
        assert!(e.contains("POP3") && e.contains("spam folder"), "{e}");
        assert!(apply_account(&mut table("preset = \"none\"\n")).unwrap().is_none());
        assert!(refused_host("pop3s.hiworks.com").is_some());
        let mut s = table("preset = \"nate\"\n");
        apply_smtp(&mut s).unwrap();
        assert_eq!(
            (s["host"].as_str(), s["port"].as_integer(), s["tls"].as_str()),
            (Some("smtp.mail.nate.com"), Some(587), Some("starttls"))
        );
    }
}
