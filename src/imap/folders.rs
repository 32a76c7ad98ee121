//! Which folders to watch and what they are (SPEC §6): INBOX, the junk folders and the sent folder.
//!
//! **Every junk candidate is watched**, not the likeliest one: each folder with the RFC 6154
//! `\Junk` attribute and each whose decoded name says spam (matched on the last hierarchy level
//! with [`crate::ingest::role_from_name`]: Junk, Spam, 스팸메일함, 스팸편지함, 정크 메일, Junk
//! E-mail, Bulk, …). A server may mark a `Junk` folder and still file Korean spam into an
//! unmarked `스팸메일함` (Cyrus with both, Gmail's `[Gmail]/스팸` beside a Naver-style folder). The
//! sent folder is the one marked `\Sent` (all of them, if several are), else the one whose name
//! says so most clearly. `junk` / `sent` may instead be `off` or name folders (one or a list).
//! Names are decoded from modified UTF-7; `INBOX.`-prefixed personal namespaces (Cyrus, Courier)
//! work with any hierarchy separator. Everything here except [`list`] is a pure function of the
//! LIST response, with table tests.

use std::collections::BTreeMap;

use async_imap::imap_proto::{MailboxDatum, Response};
use async_imap::types::NameAttribute;

use super::connect::{Connection, IO_TIMEOUT};
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

/// `LIST "" "*"`: every folder with its attributes. Its completion is checked: a refused LIST is
/// an error, never an account without junk or sent folders ([`Connection::run_checked`]).
pub async fn list(conn: &mut Connection) -> anyhow::Result<Vec<FolderInfo>> {
    Ok(list_with_counts(conn, false).await?.0)
}

/// A folder's counters, from `STATUS` or `LIST-STATUS`: enough to tell that it holds nothing
/// new without selecting it (a UIDNEXT the cursor already reached, the same UIDVALIDITY).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderCounts {
    pub messages: Option<u32>,
    pub uid_next: Option<u32>,
    pub uid_validity: Option<u32>,
}

/// The counters STATUS is asked for.
pub const STATUS_ITEMS: &str = "(MESSAGES UIDNEXT UIDVALIDITY)";

/// Counters by wire name.
pub type Counts = BTreeMap<String, FolderCounts>;

fn counts_of(status: &[async_imap::imap_proto::StatusAttribute]) -> FolderCounts {
    use async_imap::imap_proto::StatusAttribute as A;
    let mut c = FolderCounts::default();
    for a in status {
        match a {
            A::Messages(n) => c.messages = Some(*n),
            A::UidNext(n) => c.uid_next = Some(*n),
            A::UidValidity(n) => c.uid_validity = Some(*n),
            _ => {}
        }
    }
    c
}

/// [`list`], and with `counts` on a server that has LIST-STATUS (RFC 5819) every folder's
/// counters in the same round trip: `LIST "" * RETURN (STATUS (…))`. A server that refuses that
/// form is listed plainly.
pub async fn list_with_counts(conn: &mut Connection, counts: bool) -> anyhow::Result<(Vec<FolderInfo>, Counts)> {
    use anyhow::Context;
    let with_status = counts && conn.caps.list_status;
    let command = match (with_status, conn.caps.special_use) {
        (false, _) => "LIST \"\" *".to_owned(),
        // RFC 6154 §5.1: a server may leave the special-use attributes to those who ask.
        (true, true) => format!("LIST \"\" * RETURN (SPECIAL-USE STATUS {STATUS_ITEMS})"),
        (true, false) => format!("LIST \"\" * RETURN (STATUS {STATUS_ITEMS})"),
    };
    let mut list: Vec<FolderInfo> = Vec::new();
    let mut found = Counts::new();
    let fut = conn.run_checked(&command, |r| match r {
        Response::MailboxData(MailboxDatum::List(n)) => {
            let attrs: Vec<String> = n.name_attributes.iter().map(attribute_text).collect();
            let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
            list.push(FolderInfo::new(&n.name, n.delimiter.as_deref(), &attrs));
        }
        Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
            found.insert(mailbox.to_string(), counts_of(status));
        }
        _ => {}
    });
    let listed = tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("no answer to LIST within {} s", IO_TIMEOUT.as_secs()))?;
    match listed {
        Err(async_imap::error::Error::Bad(_) | async_imap::error::Error::No(_)) if with_status => {
            // An extended LIST the server announced and does not take: the plain one.
            return Box::pin(list_with_counts(conn, false)).await;
        }
        r => r.context("LIST failed")?,
    }
    // INBOX always exists (RFC 3501 §5.1), but not every server lists it under `*`: a listing
    // without it must not make the account watch nothing. EXAMINE will tell if it is not there.
    if !list.iter().any(FolderInfo::is_inbox) {
        let delimiter = list.iter().find_map(|f| f.delimiter.clone());
        list.insert(0, FolderInfo::new("INBOX", delimiter.as_deref(), &[]));
    }
    Ok((list, found))
}

/// The counters of `folders` (wire names) by `STATUS`, pipelined: one round trip for all of
/// them. Each answer is kept under the folder it names, not the command it came before: a
/// server may run pipelined commands at once (Dovecot does) and interleave their answers. A
/// folder whose STATUS is refused has no counters (its pass selects it); a connection that
/// fails is an error.
pub async fn status_counts(conn: &mut Connection, folders: &[&str]) -> anyhow::Result<Counts> {
    let mut tags = Vec::new();
    for raw in folders {
        tags.push((*raw, conn.send(format!("STATUS {} {STATUS_ITEMS}", quoted(raw))).await?));
    }
    let mut found = Counts::new();
    let mut refused = Vec::new();
    for (raw, tag) in tags {
        let fut = conn.finish(&tag, |r| {
            if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = r {
                found.insert(mailbox.to_string(), counts_of(status));
            }
        });
        match tokio::time::timeout(IO_TIMEOUT, fut).await {
            Err(_) => anyhow::bail!("no answer to STATUS within {} s", IO_TIMEOUT.as_secs()),
            Ok(Err(async_imap::error::Error::Bad(_) | async_imap::error::Error::No(_))) => refused.push(raw),
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context("STATUS failed")),
            Ok(Ok(())) => {}
        }
    }
    // Counters beside a refusal are not believed.
    for raw in refused {
        found.remove(raw);
    }
    Ok(found)
}

/// An IMAP quoted string (RFC 3501 §4.3) of a wire name.
pub fn quoted(raw: &str) -> String {
    format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The counters of `folder` among `counts`: by its wire name, INBOX in any case.
pub fn counts_for(counts: &Counts, folder: &WatchedFolder) -> Option<FolderCounts> {
    match counts.get(&folder.raw) {
        Some(c) => Some(*c),
        None if folder.raw.eq_ignore_ascii_case("INBOX") => {
            counts.iter().find(|(name, _)| name.eq_ignore_ascii_case("INBOX")).map(|(_, c)| *c)
        }
        None => None,
    }
}

/// Why a folder has the role it has, for `folders` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// INBOX is INBOX.
    Inbox,
    /// The server marked it (RFC 6154 `\Junk`, `\Sent`).
    SpecialUse,
    /// Its decoded name says so (스팸메일함, Junk E-mail, Sent Messages, …).
    Name,
    /// `junk = …` / `sent = …` names it.
    Configured,
    /// Listed in `folders`; the role comes from its attributes or name, as for `import-mail`.
    Folders,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Inbox => "inbox",
            Why::SpecialUse => "special-use",
            Why::Name => "name",
            Why::Configured => "configured",
            Why::Folders => "folders",
        }
    }
}

/// The junk and sent folders found in a listing, and what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// Index into the listing → the role found and why. Several folders may be junk (SPEC §6:
    /// every candidate is watched) or sent.
    pub found: BTreeMap<usize, (FolderRole, Why)>,
    /// E.g. a configured folder that does not exist. Reported, never fatal.
    pub problems: Vec<String>,
    /// The configured folders (`folders`, `junk`, `sent` by name) the server does not have or
    /// cannot select, each with its problem: a folder that should be read and cannot is that
    /// folder's error (SPEC §6), kept in its status, not only a log line.
    pub missing: Vec<(String, String)>,
}

impl Roles {
    /// The listing indices of the folders with `role`, in listing order.
    pub fn with_role(&self, role: FolderRole) -> Vec<usize> {
        self.found.iter().filter(|(_, (r, _))| *r == role).map(|(i, _)| *i).collect()
    }
}

/// Names that are unmistakably the sent folder (ranked before mere substring matches).
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

/// `name` without a leading personal-namespace prefix (`INBOX.` on Cyrus and Courier,
/// `INBOX/` elsewhere), so `Junk` finds `INBOX.Junk`.
fn without_inbox_prefix<'a>(name: &'a str, delimiter: Option<&str>) -> &'a str {
    match (delimiter, name.get(..5), name.get(5..)) {
        (Some(d), Some(head), Some(rest)) if !d.is_empty() && head.eq_ignore_ascii_case("INBOX") => {
            rest.strip_prefix(d).filter(|r| !r.is_empty()).unwrap_or(name)
        }
        _ => name,
    }
}

/// Find a folder by its configured name: decoded or wire form; INBOX case-insensitively; then
/// case-insensitively, and with or without the `INBOX.` namespace prefix.
pub fn find_named(list: &[FolderInfo], wanted: &str) -> Option<usize> {
    if let Some(i) = list.iter().position(|f| f.name == wanted || f.raw == wanted) {
        return Some(i);
    }
    if wanted.eq_ignore_ascii_case("INBOX") {
        return list.iter().position(FolderInfo::is_inbox);
    }
    let wanted = wanted.to_lowercase();
    list.iter().position(|f| f.name.to_lowercase() == wanted).or_else(|| {
        list.iter().position(|f| {
            without_inbox_prefix(&f.name, f.delimiter.as_deref()).to_lowercase()
                == without_inbox_prefix(&wanted, f.delimiter.as_deref())
        })
    })
}

/// May be given a role of its own: selectable and not INBOX.
fn eligible(f: &FolderInfo) -> bool {
    f.selectable && !f.is_inbox()
}

/// Every junk candidate (SPEC §6): each folder the server marks `\Junk`, and each whose name
/// says spam — a server may mark a `Junk` folder and still file Korean spam into 스팸메일함 —
/// but never one the server marks as something else (a "Spam" that is `\Trash`).
fn junk_candidates(list: &[FolderInfo]) -> Vec<(usize, Why)> {
    list.iter()
        .enumerate()
        .filter(|(_, f)| eligible(f))
        .filter_map(|(i, f)| match f.special_use {
            Some(SpecialUse::Junk) => Some((i, Why::SpecialUse)),
            None if role_from_name(&f.name) == FolderRole::Junk => Some((i, Why::Name)),
            _ => None,
        })
        .collect()
}

/// The sent folders: each one the server marks `\Sent`; without any, the one whose name says so
/// most clearly (exact well-known names before substrings, shallow before deep).
fn sent_candidates(list: &[FolderInfo], taken: &BTreeMap<usize, (FolderRole, Why)>) -> Vec<(usize, Why)> {
    let free = |i: usize, f: &FolderInfo| eligible(f) && !taken.contains_key(&i);
    let marked: Vec<(usize, Why)> = list
        .iter()
        .enumerate()
        .filter(|(i, f)| free(*i, f) && f.special_use == Some(SpecialUse::Sent))
        .map(|(i, _)| (i, Why::SpecialUse))
        .collect();
    if !marked.is_empty() {
        return marked;
    }
    list.iter()
        .enumerate()
        .filter(|(i, f)| free(*i, f) && f.special_use.is_none() && role_from_name(&f.name) == FolderRole::Sent)
        .min_by_key(|(_, f)| (!SENT_NAMES.contains(&f.leaf().as_str()), f.depth(), f.name.len()))
        .map(|(i, _)| (i, Why::Name))
        .into_iter()
        .collect()
}

/// Decide the junk and sent folders of one account from its LIST response.
pub fn detect_roles(list: &[FolderInfo], junk: &FolderChoice, sent: &FolderChoice) -> Roles {
    let mut roles = Roles::default();
    let assign = |roles: &mut Roles, choice: &FolderChoice, role: FolderRole, key: &str| {
        let chosen = match choice {
            FolderChoice::Off => Vec::new(),
            FolderChoice::Auto if role == FolderRole::Junk => junk_candidates(list),
            FolderChoice::Auto => sent_candidates(list, &roles.found),
            FolderChoice::Named(names) => names
                .iter()
                .filter_map(|n| {
                    let found = find_named(list, n).filter(|i| list[*i].selectable);
                    if found.is_none() {
                        let problem =
                            format!("{key} = {n:?}: no such folder on the server (it has: {})", names_of(list));
                        roles.missing.push((n.clone(), problem.clone()));
                        roles.problems.push(problem);
                    }
                    found.map(|i| (i, Why::Configured))
                })
                .collect(),
        };
        for (i, why) in chosen {
            roles.found.entry(i).or_insert((role, why));
        }
    };
    assign(&mut roles, junk, FolderRole::Junk, "junk");
    assign(&mut roles, sent, FolderRole::Sent, "sent");
    roles
}

fn names_of(list: &[FolderInfo]) -> String {
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
    pub why: Why,
}

/// The role of any folder in the listing, given the detected junk/sent, and why.
pub fn role_of(list: &[FolderInfo], roles: &Roles, i: usize) -> (FolderRole, Option<Why>) {
    if list[i].is_inbox() {
        return (FolderRole::Inbox, Some(Why::Inbox));
    }
    match roles.found.get(&i) {
        Some((role, why)) => (*role, Some(*why)),
        None => (FolderRole::Other, None),
    }
}

/// What to watch: the configured `folders` (INBOX by default), then every junk and sent folder.
pub fn plan(list: &[FolderInfo], account: &Account) -> (Vec<WatchedFolder>, Roles) {
    let mut roles = detect_roles(list, &account.junk, &account.sent);
    let mut out: Vec<WatchedFolder> = Vec::new();
    let add = |i: usize, role: FolderRole, why: Why, out: &mut Vec<WatchedFolder>| {
        let f = &list[i];
        if !out.iter().any(|w| w.raw == f.raw) {
            out.push(WatchedFolder { raw: f.raw.clone(), name: f.name.clone(), role, why });
        }
    };
    for wanted in &account.folders {
        match find_named(list, wanted) {
            Some(i) if list[i].selectable => {
                // A configured folder that is a junk/sent folder gets that role; any other is
                // judged by its attributes and name, as `import-mail --folder` does.
                let (role, why) = match role_of(list, &roles, i) {
                    (FolderRole::Other, _) => (
                        match list[i].special_use {
                            Some(SpecialUse::Junk) => FolderRole::Junk,
                            Some(SpecialUse::Sent) => FolderRole::Sent,
                            Some(_) => FolderRole::Other,
                            None => role_from_name(&list[i].name),
                        },
                        Why::Folders,
                    ),
                    (r, why) => (r, why.unwrap_or(Why::Folders)),
                };
                add(i, role, why, &mut out);
            }
            found => {
                let problem = match found {
                    Some(_) => format!("folders: {wanted:?} cannot be selected on the server (\\Noselect)"),
                    None => format!("folders: {wanted:?}: no such folder on the server (it has: {})", names_of(list)),
                };
                roles.missing.push((wanted.clone(), problem.clone()));
                roles.problems.push(problem);
            }
        }
    }
    for (i, (role, why)) in &roles.found {
        add(*i, *role, *why, &mut out);
    }
    if account.junk == FolderChoice::Auto && roles.with_role(FolderRole::Junk).is_empty() {
        roles.problems.push(format!(
            "junk = \"auto\": no folder is marked \\Junk or named like a spam folder (it has: {}); if the server files spam elsewhere, name it with junk = \"…\"",
            names_of(list)
        ));
    }
    (out, roles)
}

/// One line of `folders`: a selectable folder, its role, why, and whether it is watched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedFolder {
    pub name: String,
    pub role: FolderRole,
    /// `None` for a folder with no role (`other`) that is not watched.
    pub why: Option<Why>,
    pub watched: bool,
}

/// Every selectable folder with its role and why (as watched, when `plan` has it), for
/// `folders`.
pub fn listing_with_reasons(list: &[FolderInfo], roles: &Roles, plan: &[WatchedFolder]) -> Vec<ListedFolder> {
    list.iter()
        .enumerate()
        .filter(|(_, f)| f.selectable)
        .map(|(i, f)| match plan.iter().find(|w| w.raw == f.raw) {
            Some(w) => ListedFolder { name: f.name.clone(), role: w.role, why: Some(w.why), watched: true },
            None => {
                let (role, why) = role_of(list, roles, i);
                ListedFolder { name: f.name.clone(), role, why, watched: false }
            }
        })
        .collect()
}

/// Every selectable folder with its role, for `Store::set_folder_roles`.
pub fn listing(list: &[FolderInfo], roles: &Roles) -> Vec<(String, FolderRole)> {
    list.iter()
        .enumerate()
        .filter(|(_, f)| f.selectable)
        .map(|(i, f)| (f.name.clone(), role_of(list, roles, i).0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(raw: &str, attrs: &[&str]) -> FolderInfo {
        FolderInfo::new(raw, Some("/"), attrs)
    }

    /// The junk folders and the sent folders found, by decoded name.
    fn detect(list: &[FolderInfo]) -> (Vec<String>, Vec<String>) {
        let r = detect_roles(list, &FolderChoice::Auto, &FolderChoice::Auto);
        let names = |role| r.with_role(role).into_iter().map(|i| list[i].name.clone()).collect();
        (names(FolderRole::Junk), names(FolderRole::Sent))
    }

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn every_junk_candidate_special_use_or_name_is_found() {
        // A \Junk folder, an unmarked spam-named one beside it (the Cyrus report), and a decoy
        // the server marks as something else.
        let list = [
            f("INBOX", &[]),
            f("Spam", &[]),
            f("Bulk", &["\\Junk"]),
            f("&wqTTOLpUx3zVaA-", &[]),
            f("Old Junk", &["\\Trash"]),
            f("Sent", &["\\Drafts"]),
            f("Outgoing", &["\\Sent"]),
        ];
        assert_eq!(detect(&list), (v(&["Spam", "Bulk", "스팸메일함"]), v(&["Outgoing"])));
        let r = detect_roles(&list, &FolderChoice::Auto, &FolderChoice::Auto);
        assert_eq!(r.found[&2], (FolderRole::Junk, Why::SpecialUse));
        assert_eq!(r.found[&3], (FolderRole::Junk, Why::Name));
        assert_eq!(r.found[&6], (FolderRole::Sent, Why::SpecialUse));
    }

    #[test]
    fn gmail_spam_and_a_naver_style_folder_are_both_junk() {
        let list = [
            f("INBOX", &[]),
            f("[Gmail]", &["\\Noselect"]),
            f("[Gmail]/&wqTTOA-", &["\\Junk"]),
            f("[Gmail]/&vPSwuNO4ycDVaA-", &["\\Sent"]),
            f("&wqTTOLpUx3zVaA-", &[]),
        ];
        assert_eq!(detect(&list), (v(&["[Gmail]/스팸", "스팸메일함"]), v(&["[Gmail]/보낸편지함"])));
    }

    #[test]
    fn names_are_found_without_special_use() {
        let table: &[(&[&str], &[&str], &[&str])] = &[
            (&["INBOX", "Junk", "Sent"], &["Junk"], &["Sent"]),
            (&["INBOX", "Spam", "Sent Items"], &["Spam"], &["Sent Items"]),
            (&["INBOX", "Junk Email", "Sent Items"], &["Junk Email"], &["Sent Items"]),
            // Korean webmail (Daum/Naver style), on the wire in modified UTF-7.
            (&["INBOX", "&wqTTOLpUx3zVaA-", "&vPSwuLpUx3zVaA-"], &["스팸메일함"], &["보낸메일함"]),
            (&["INBOX", "&wqTTONO4ycDVaA-", "&vPSwuNO4ycDVaA-"], &["스팸편지함"], &["보낸편지함"]),
            (&["INBOX", "&wqTTOA-"], &["스팸"], &[]),
            (&["INBOX", "&yBXQbA- &ulTHfA-"], &["정크 메일"], &[]),
            (&["INBOX", "[Gmail]/Spam", "[Gmail]/Sent Mail"], &["[Gmail]/Spam"], &["[Gmail]/Sent Mail"]),
            (&["INBOX", "JUNK", "SENT"], &["JUNK"], &["SENT"]),
            (&["INBOX", "Archive", "Drafts"], &[], &[]),
            // Every spam-named folder is a candidate; of the sent ones, the clearest name.
            (&["INBOX", "Spam reports", "Projects/Spam", "Spam"], &["Spam reports", "Projects/Spam", "Spam"], &[]),
            (&["INBOX", "Sent to clients", "Sent Messages"], &[], &["Sent Messages"]),
        ];
        for (names, junk, sent) in table {
            let list: Vec<FolderInfo> = names.iter().map(|n| f(n, &[])).collect();
            assert_eq!(detect(&list), (v(junk), v(sent)), "{names:?}");
        }
    }

    #[test]
    fn cyrus_and_courier_namespaces_with_dot_separators() {
        let list = [
            FolderInfo::new("INBOX", Some("."), &[]),
            FolderInfo::new("INBOX.Junk", Some("."), &["\\Junk"]),
            FolderInfo::new("INBOX.&wqTTOLpUx3zVaA-", Some("."), &[]),
            FolderInfo::new("INBOX.Sent", Some("."), &["\\Sent"]),
            FolderInfo::new("INBOX.Archive.2024", Some("."), &[]),
        ];
        assert_eq!(detect(&list), (v(&["INBOX.Junk", "INBOX.스팸메일함"]), v(&["INBOX.Sent"])));
        // Without any special-use: by the last level of the name.
        let bare: Vec<FolderInfo> = ["INBOX", "INBOX.Trash", "INBOX.Spam", "INBOX.Sent Messages"]
            .iter()
            .map(|n| FolderInfo::new(n, Some("."), &[]))
            .collect();
        assert_eq!(detect(&bare), (v(&["INBOX.Spam"]), v(&["INBOX.Sent Messages"])));
        // A configured name finds the folder with or without the INBOX. prefix.
        assert_eq!(find_named(&list, "Junk"), Some(1));
        assert_eq!(find_named(&list, "inbox.junk"), Some(1));
        assert_eq!(find_named(&list, "스팸메일함"), Some(2));
        assert_eq!(find_named(&list, "Archive.2024"), Some(4));
        assert_eq!(find_named(&list, "Nope"), None);
    }

    #[test]
    fn inbox_and_noselect_are_never_junk_or_sent() {
        let list = [f("INBOX", &["\\Junk"]), f("[Gmail]", &["\\Noselect"]), f("Spam", &["\\NonExistent"])];
        assert_eq!(detect(&list), (v(&[]), v(&[])));
    }

    #[test]
    fn configured_choices_one_name_or_a_list() {
        let list = [f("INBOX", &[]), f("Junk", &["\\Junk"]), f("&wqTTOLpUx3zVaA-", &[]), f("Sent", &["\\Sent"])];
        let named = |n: &[&str]| FolderChoice::Named(v(n));
        let r = detect_roles(&list, &named(&["스팸메일함"]), &FolderChoice::Off);
        assert_eq!((r.with_role(FolderRole::Junk), r.with_role(FolderRole::Sent)), (vec![2], vec![]));
        assert_eq!(r.found[&2].1, Why::Configured);
        assert!(r.problems.is_empty());
        // The wire form works too, and a list names several.
        let r = detect_roles(&list, &named(&["&wqTTOLpUx3zVaA-", "Junk"]), &FolderChoice::Auto);
        assert_eq!((r.with_role(FolderRole::Junk), r.with_role(FolderRole::Sent)), (vec![1, 2], vec![3]));
        let r = detect_roles(&list, &named(&["Nope", "Junk"]), &FolderChoice::Auto);
        assert_eq!(r.with_role(FolderRole::Junk), vec![1]);
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].contains("Nope"), "{:?}", r.problems);
        assert!(r.problems[0].contains("스팸메일함"), "lists decoded names: {:?}", r.problems);
    }

    fn account(extra: &str) -> Account {
        let text = format!(
            "[[accounts]]\nname = \"a\"\nhost = \"127.0.0.1\"\nport = 993\nusername = \"u\"\npassword = {{ value = \"p\" }}\n{extra}"
        );
        match crate::config::Config::parse(&text) {
            Ok(mut c) => c.accounts.remove(0),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn plan_watches_configured_folders_then_junk_and_sent() {
        let list = [
            f("INBOX", &[]),
            f("Junk", &["\\Junk"]),
            f("Sent", &["\\Sent"]),
            f("Contracts", &[]),
            f("Old Spam", &["\\Archive"]),
            f("Spam", &[]),
        ];
        let (plan, roles) = plan(&list, &account("folders = [\"INBOX\", \"Contracts\", \"Old Spam\", \"Gone\"]"));
        let got: Vec<(&str, FolderRole, Why)> = plan.iter().map(|w| (w.name.as_str(), w.role, w.why)).collect();
        assert_eq!(
            got,
            [
                ("INBOX", FolderRole::Inbox, Why::Inbox),
                ("Contracts", FolderRole::Other, Why::Folders),
                // Watched because configured; the server marks it \Archive, so it is no junk folder.
                ("Old Spam", FolderRole::Other, Why::Folders),
                ("Junk", FolderRole::Junk, Why::SpecialUse),
                ("Sent", FolderRole::Sent, Why::SpecialUse),
                ("Spam", FolderRole::Junk, Why::Name),
            ]
        );
        assert_eq!(roles.problems.len(), 1, "{:?}", roles.problems);
        assert!(roles.problems[0].contains("Gone"));

        let (plan, _) = plan_for_off(&list);
        assert_eq!(plan.len(), 1, "junk = off, sent = off: INBOX only: {plan:?}");
    }

    #[test]
    fn an_account_without_any_junk_candidate_is_told_so() {
        let list = [f("INBOX", &[]), f("Sent", &["\\Sent"]), f("광고", &[])];
        let (plan, roles) = plan(&list, &account(""));
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert_eq!(roles.problems.len(), 1, "{:?}", roles.problems);
        assert!(roles.problems[0].contains("junk = ") && roles.problems[0].contains("광고"), "{:?}", roles.problems);
        // Not when junk is off or named.
        assert!(plan_for_off(&list).1.problems.is_empty());
    }

    fn plan_for_off(list: &[FolderInfo]) -> (Vec<WatchedFolder>, Roles) {
        plan(list, &account("junk = \"off\"\nsent = \"off\""))
    }

    #[test]
    fn sent_is_never_the_junk_folder() {
        let list = [f("INBOX", &[]), f("Sent Spam", &[])];
        assert_eq!(detect(&list), (v(&["Sent Spam"]), v(&[])));
    }
}
