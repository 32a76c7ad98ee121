//! Which folders to watch and what they are (SPEC §6): INBOX, the junk folder and the sent folder.
//!
//! Junk and Sent are found by RFC 6154 SPECIAL-USE attributes (`\Junk`, `\Sent`) first, then by
//! name — decoded from modified UTF-7 and matched case-insensitively on the last hierarchy level,
//! with the same word list as [`crate::ingest::role_from_name`] (Junk, Spam, 스팸메일함, 스팸편지함,
//! 정크 메일, [Gmail]/Spam, 보낸메일함, Sent Items, …) — or as configured (`junk = "off"` or a name).
//! Everything here except [`list`] is a pure function of the LIST response, with table tests.

use async_imap::types::NameAttribute;
use futures::TryStreamExt;

use super::connect::{Session, IO_TIMEOUT};
use super::utf7;
use crate::config::{Account, FolderChoice};
use crate::ingest::{role_from_name, FolderRole};

/// RFC 6154 attributes we care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialUse {
    Junk,
    Sent,
    Drafts,
    Trash,
    Archive,
    All,
    Flagged,
}

/// One LIST entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// The name on the wire (modified UTF-7); what SELECT/EXAMINE need.
    pub raw: String,
    /// Decoded for people, logs, cursors and evidence.
    pub name: String,
    pub delimiter: Option<String>,
    pub special_use: Option<SpecialUse>,
    /// `\Noselect` / `\NonExistent` folders are only hierarchy nodes.
    pub selectable: bool,
}

impl FolderInfo {
    /// Build from a wire name and its attributes (as strings such as `\Junk`), for tests and for
    /// servers' responses alike.
    pub fn new(raw: &str, delimiter: Option<&str>, attributes: &[&str]) -> FolderInfo {
        let mut special_use = None;
        let mut selectable = true;
        for a in attributes {
            match a.to_ascii_lowercase().as_str() {
                "\\junk" | "\\spam" => special_use = Some(SpecialUse::Junk),
                "\\sent" => special_use = Some(SpecialUse::Sent),
                "\\drafts" => special_use = Some(SpecialUse::Drafts),
                "\\trash" => special_use = Some(SpecialUse::Trash),
                "\\archive" => special_use = Some(SpecialUse::Archive),
                "\\all" | "\\allmail" => special_use = Some(SpecialUse::All),
                "\\flagged" | "\\starred" => special_use = Some(SpecialUse::Flagged),
                "\\noselect" | "\\nonexistent" => selectable = false,
                _ => {}
            }
        }
        FolderInfo {
            raw: raw.to_owned(),
            name: utf7::decode_lossy(raw),
            delimiter: delimiter.map(str::to_owned),
            special_use,
            selectable,
        }
    }

    pub fn is_inbox(&self) -> bool {
        self.raw.eq_ignore_ascii_case("INBOX")
    }

    /// Hierarchy depth (0 for a top-level folder).
    fn depth(&self) -> usize {
        match &self.delimiter {
            Some(d) if !d.is_empty() => self.name.matches(d.as_str()).count(),
            _ => 0,
        }
    }

    /// The last hierarchy level, lower-cased.
    fn leaf(&self) -> String {
        let lower = self.name.to_lowercase();
        match &self.delimiter {
            Some(d) if !d.is_empty() => lower.rsplit(d.as_str()).next().unwrap_or("").to_owned(),
            _ => lower,
        }
    }
}

fn attribute_text(a: &NameAttribute<'_>) -> String {
    match a {
        NameAttribute::NoInferiors => "\\Noinferiors".into(),
        NameAttribute::NoSelect => "\\Noselect".into(),
        NameAttribute::Marked => "\\Marked".into(),
        NameAttribute::Unmarked => "\\Unmarked".into(),
        NameAttribute::All => "\\All".into(),
        NameAttribute::Archive => "\\Archive".into(),
        NameAttribute::Drafts => "\\Drafts".into(),
        NameAttribute::Flagged => "\\Flagged".into(),
        NameAttribute::Junk => "\\Junk".into(),
        NameAttribute::Sent => "\\Sent".into(),
        NameAttribute::Trash => "\\Trash".into(),
        NameAttribute::Extension(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

/// `LIST "" "*"`: every folder with its attributes.
pub async fn list(session: &mut Session) -> anyhow::Result<Vec<FolderInfo>> {
    use anyhow::Context;
    let fut = async {
        let names: Vec<_> = session.list(Some(""), Some("*")).await?.try_collect().await?;
        Ok::<_, async_imap::error::Error>(names)
    };
    let names = tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("no answer to LIST within {} s", IO_TIMEOUT.as_secs()))?
        .context("LIST failed")?;
    Ok(names
        .iter()
        .map(|n| {
            let attrs: Vec<String> = n.attributes().iter().map(attribute_text).collect();
            let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
            FolderInfo::new(n.name(), n.delimiter(), &attrs)
        })
        .collect())
}

/// The junk and sent folders found in a listing (indices into it), and what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub junk: Option<usize>,
    pub sent: Option<usize>,
    /// E.g. a configured folder that does not exist. Reported, never fatal.
    pub problems: Vec<String>,
}

/// Names that are unmistakably the folder (ranked before mere substring matches).
const JUNK_NAMES: [&str; 8] =
    ["junk", "spam", "junk e-mail", "junk email", "스팸메일함", "스팸편지함", "스팸", "정크 메일"];
const SENT_NAMES: [&str; 9] = [
    "sent",
    "sent items",
    "sent mail",
    "sent messages",
    "보낸메일함",
    "보낸편지함",
    "보낸 편지함",
    "보낸메일",
    "보낸 메일함",
];

/// Find a folder by its configured name: decoded or wire form; INBOX case-insensitively.
pub fn find_named(list: &[FolderInfo], wanted: &str) -> Option<usize> {
    list.iter().position(|f| f.name == wanted || f.raw == wanted).or_else(|| {
        if wanted.eq_ignore_ascii_case("INBOX") {
            list.iter().position(FolderInfo::is_inbox)
        } else {
            list.iter().position(|f| f.name.to_lowercase() == wanted.to_lowercase())
        }
    })
}

fn pick(
    list: &[FolderInfo],
    use_: SpecialUse,
    role: FolderRole,
    exact: &[&str],
    exclude: Option<usize>,
) -> Option<usize> {
    let eligible = |i: usize, f: &FolderInfo| f.selectable && !f.is_inbox() && Some(i) != exclude;
    // 1. SPECIAL-USE: the server says so. Shallowest first ("Junk" before "Archive/Junk").
    let by_attr = list
        .iter()
        .enumerate()
        .filter(|(i, f)| eligible(*i, f) && f.special_use == Some(use_))
        .min_by_key(|(_, f)| (f.depth(), f.name.len()))
        .map(|(i, _)| i);
    if by_attr.is_some() {
        return by_attr;
    }
    // 2. By name, but never a folder the server marked as something else (a "Sent" that is
    //    \Drafts is not the sent folder). Exact well-known names rank before substrings.
    list.iter()
        .enumerate()
        .filter(|(i, f)| eligible(*i, f) && f.special_use.is_none() && role_from_name(&f.name) == role)
        .min_by_key(|(_, f)| {
            let leaf = f.leaf();
            (!exact.contains(&leaf.as_str()), f.depth(), f.name.len())
        })
        .map(|(i, _)| i)
}

/// Decide the junk and sent folders of one account from its LIST response.
pub fn detect_roles(list: &[FolderInfo], junk: &FolderChoice, sent: &FolderChoice) -> Roles {
    let mut roles = Roles::default();
    roles.junk = match junk {
        FolderChoice::Off => None,
        FolderChoice::Auto => pick(list, SpecialUse::Junk, FolderRole::Junk, &JUNK_NAMES, None),
        FolderChoice::Named(n) => {
            let found = find_named(list, n);
            if found.is_none() {
                roles.problems.push(format!("junk = {n:?}: no such folder on the server (it has: {})", names(list)));
            }
            found
        }
    };
    roles.sent = match sent {
        FolderChoice::Off => None,
        FolderChoice::Auto => pick(list, SpecialUse::Sent, FolderRole::Sent, &SENT_NAMES, roles.junk),
        FolderChoice::Named(n) => {
            let found = find_named(list, n);
            if found.is_none() {
                roles.problems.push(format!("sent = {n:?}: no such folder on the server (it has: {})", names(list)));
            }
            found
        }
    };
    roles
}

fn names(list: &[FolderInfo]) -> String {
    let v: Vec<&str> = list.iter().filter(|f| f.selectable).map(|f| f.name.as_str()).collect();
    v.join(", ")
}

/// A folder the account watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFolder {
    /// Wire name, for EXAMINE/SELECT.
    pub raw: String,
    /// Decoded name: cursors, evidence and logs use it.
    pub name: String,
    pub role: FolderRole,
}

/// The role of any folder in the listing, given the detected junk/sent.
pub fn role_of(list: &[FolderInfo], roles: &Roles, i: usize) -> FolderRole {
    let f = &list[i];
    if f.is_inbox() {
        FolderRole::Inbox
    } else if Some(i) == roles.junk {
        FolderRole::Junk
    } else if Some(i) == roles.sent {
        FolderRole::Sent
    } else {
        FolderRole::Other
    }
}

/// What to watch: the configured `folders` (INBOX by default), then junk and sent.
pub fn plan(list: &[FolderInfo], account: &Account) -> (Vec<WatchedFolder>, Roles) {
    let mut roles = detect_roles(list, &account.junk, &account.sent);
    let mut out: Vec<WatchedFolder> = Vec::new();
    let add = |i: usize, role: FolderRole, out: &mut Vec<WatchedFolder>| {
        let f = &list[i];
        if !out.iter().any(|w| w.raw == f.raw) {
            out.push(WatchedFolder { raw: f.raw.clone(), name: f.name.clone(), role });
        }
    };
    for wanted in &account.folders {
        match find_named(list, wanted) {
            Some(i) if list[i].selectable => {
                // A configured folder that is the junk/sent folder gets that role; any other is
                // judged by its attributes and name, as `import-mail --folder` does.
                let role = match role_of(list, &roles, i) {
                    FolderRole::Other => match list[i].special_use {
                        Some(SpecialUse::Junk) => FolderRole::Junk,
                        Some(SpecialUse::Sent) => FolderRole::Sent,
                        Some(_) => FolderRole::Other,
                        None => role_from_name(&list[i].name),
                    },
                    r => r,
                };
                add(i, role, &mut out);
            }
            Some(_) => {
                roles.problems.push(format!("folders: {wanted:?} cannot be selected on the server (\\Noselect)"))
            }
            None => roles
                .problems
                .push(format!("folders: {wanted:?}: no such folder on the server (it has: {})", names(list))),
        }
    }
    if let Some(i) = roles.junk {
        add(i, FolderRole::Junk, &mut out);
    }
    if let Some(i) = roles.sent {
        add(i, FolderRole::Sent, &mut out);
    }
    (out, roles)
}

/// Every selectable folder with its role, for `folders` and `Store::set_folder_roles`.
pub fn listing(list: &[FolderInfo], roles: &Roles) -> Vec<(String, FolderRole)> {
    list.iter()
        .enumerate()
        .filter(|(_, f)| f.selectable)
        .map(|(i, f)| (f.name.clone(), role_of(list, roles, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(raw: &str, attrs: &[&str]) -> FolderInfo {
        FolderInfo::new(raw, Some("/"), attrs)
    }

    fn detect(list: &[FolderInfo]) -> (Option<String>, Option<String>) {
        let r = detect_roles(list, &FolderChoice::Auto, &FolderChoice::Auto);
        (r.junk.map(|i| list[i].name.clone()), r.sent.map(|i| list[i].name.clone()))
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_owned())
    }

    #[test]
    fn special_use_wins_over_names() {
        // Dovecot default layout, plus a decoy named "Spam" with no attribute.
        let list = [
            f("INBOX", &[]),
            f("Spam", &[]),
            f("Bulk", &["\\Junk"]),
            f("Sent", &["\\Drafts"]),
            f("Outgoing", &["\\Sent"]),
        ];
        assert_eq!(detect(&list), (s("Bulk"), s("Outgoing")));
    }

    #[test]
    fn names_are_found_without_special_use() {
        let table: &[(&[&str], Option<&str>, Option<&str>)] = &[
            (&["INBOX", "Junk", "Sent"], Some("Junk"), Some("Sent")),
            (&["INBOX", "Spam", "Sent Items"], Some("Spam"), Some("Sent Items")),
            // Korean webmail (Daum/Naver style), on the wire in modified UTF-7.
            (&["INBOX", "&wqTTOLpUx3zVaA-", "&vPSwuLpUx3zVaA-"], Some("스팸메일함"), Some("보낸메일함")),
            (&["INBOX", "&wqTTONO4ycDVaA-", "&vPSwuNO4ycDVaA-"], Some("스팸편지함"), Some("보낸편지함")),
            (&["INBOX", "&wqTTOA-"], Some("스팸"), None),
            (&["INBOX", "&yBXQbA- &ulTHfA-"], Some("정크 메일"), None),
            (&["INBOX", "[Gmail]/Spam", "[Gmail]/Sent Mail"], Some("[Gmail]/Spam"), Some("[Gmail]/Sent Mail")),
            (&["INBOX", "JUNK", "SENT"], Some("JUNK"), Some("SENT")),
            (&["INBOX", "Archive", "Drafts"], None, None),
            // An exact name beats a substring, and shallower beats deeper.
            (&["INBOX", "Spam reports", "Projects/Spam", "Spam"], Some("Spam"), None),
        ];
        for (names, junk, sent) in table {
            let list: Vec<FolderInfo> = names.iter().map(|n| f(n, &[])).collect();
            assert_eq!(detect(&list), (junk.map(str::to_owned), sent.map(str::to_owned)), "{names:?}");
        }
    }

    #[test]
    fn inbox_and_noselect_are_never_junk_or_sent() {
        let list = [f("INBOX", &["\\Junk"]), f("[Gmail]", &["\\Noselect"]), f("Spam", &["\\NonExistent"])];
        assert_eq!(detect(&list), (None, None));
    }

    #[test]
    fn configured_choices() {
        let list = [f("INBOX", &[]), f("Junk", &["\\Junk"]), f("&wqTTOLpUx3zVaA-", &[]), f("Sent", &["\\Sent"])];
        let r = detect_roles(&list, &FolderChoice::Named("스팸메일함".into()), &FolderChoice::Off);
        assert_eq!((r.junk, r.sent), (Some(2), None));
        assert!(r.problems.is_empty());
        // The wire form works too.
        let r = detect_roles(&list, &FolderChoice::Named("&wqTTOLpUx3zVaA-".into()), &FolderChoice::Auto);
        assert_eq!((r.junk, r.sent), (Some(2), Some(3)));
        let r = detect_roles(&list, &FolderChoice::Named("Nope".into()), &FolderChoice::Auto);
        assert_eq!(r.junk, None);
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].contains("Nope"), "{:?}", r.problems);
        assert!(r.problems[0].contains("스팸메일함"), "lists decoded names: {:?}", r.problems);
    }

    #[test]
    fn sent_is_never_the_junk_folder() {
        let list = [f("INBOX", &[]), f("Sent Spam", &[])];
        let r = detect_roles(&list, &FolderChoice::Auto, &FolderChoice::Auto);
        assert_eq!(r.junk, Some(1));
        assert_eq!(r.sent, None);
    }
}
