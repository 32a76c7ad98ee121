//! The operations behind the commands, as library calls returning data: the CLI prints what they
//! return, and the running daemon answers the same calls over its control socket, so a command
//! gives the same answer whether or not `run` holds the database.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Seoul;
use serde::{Deserialize, Serialize};

use crate::config::{Config, FolderChoice, Language};
use crate::health::AccountHealth;
use crate::merchant::{self, input, Event, FolderRole, Merchant, Stage};
use crate::schedule::{due, Calendar, StatusRow};
use crate::store::{CheckedMailbox, Delivery, NoticeKind, OutboxEntry, Refused, Store};

/// `merchant add` arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewMerchant {
    pub id: String,
    pub name: String,
    #[serde(alias = "contact", deserialize_with = "merchant::one_or_many")]
    pub contacts: Vec<String>,
    pub business_no: Option<String>,
    pub mids: Vec<String>,
    /// RFC 3339 or `YYYY-MM-DD` (Asia/Seoul); default now.
    pub applied_at: Option<String>,
    #[serde(default)]
    pub language: Option<Language>,
    /// Register even when the business number or a MID is already another merchant's.
    #[serde(default)]
    pub force: bool,
}

fn bad(msg: String) -> anyhow::Error {
    Refused::BadInput(msg).into()
}

/// `2026-11-02` (midnight in Seoul) or an RFC 3339 instant.
pub fn parse_time(raw: &str, what: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        if let Some(t) = Seoul.from_local_datetime(&d.and_time(NaiveTime::MIN)).earliest() {
            return Ok(t.with_timezone(&Utc));
        }
    }
    Err(bad(format!("{what} {raw:?} is not a date like 2026-11-02 or 2026-11-02T10:00:00+09:00")))
}

pub fn merchant_add(store: &Store, new: &NewMerchant, now: DateTime<Utc>) -> anyhow::Result<Merchant> {
    let m = new_merchant(new, now).map_err(bad)?;
    if !new.force {
        if let Some(clash) = identity_clash(&m, &store.merchants()?) {
            return Err(bad(clash));
        }
    }
    store.add_merchant(&m, None, now)?;
    Ok(m)
}

/// The merchant `new` describes, checked by the rules of `merchant add` (one line when not).
pub fn new_merchant(new: &NewMerchant, now: DateTime<Utc>) -> Result<Merchant, String> {
    let id = input::merchant_id(&new.id)?;
    if new.name.trim().is_empty() {
        return Err("merchant name must not be empty".into());
    }
    let contacts = input::contacts(&new.contacts)?;
    let business_no = new.business_no.as_deref().map(input::business_no).transpose()?;
    let mut mids: Vec<String> = new.mids.iter().map(|m| input::mid(m)).collect::<Result<_, _>>()?;
    // Each once, in the order given (`dedup` alone keeps `M1;M2;M1`).
    let mut seen = std::collections::BTreeSet::new();
    mids.retain(|m| seen.insert(m.clone()));
    let name = input::name(&new.name)?;
    let applied_at = match &new.applied_at {
        Some(raw) => {
            input::operator_date(parse_time(raw, "applied_at").map_err(|e| e.to_string())?, now, "applied_at")?
        }
        None => now,
    };
    Ok(Merchant {
        id,
        name,
        contacts,
        language: new.language,
        business_no,
        mids,
        stage: Stage::Applied,
        stage_since: applied_at,
        applied_at,
        found_in_spam: false,
        card_approvals: BTreeMap::new(),
        created_at: now,
        paused: false,
    })
}

/// `merchant edit`: checked as a whole first (so a refusal names the problem, and nothing is
/// half-changed), then applied to the stored record inside the transaction.
pub fn merchant_edit(
    store: &Store,
    id: &str,
    e: &merchant::Edit,
    force: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<Merchant> {
    let m = merchant_get(store, id)?;
    let (new, _) = merchant::edit(&m, e, now).map_err(bad)?;
    if !force {
        // Only what this edit brings in: a number already shared (registered with --force)
        // does not block changing the name.
        let probe = Merchant {
            business_no: new.business_no.clone().filter(|_| new.business_no != m.business_no),
            mids: new.mids.iter().filter(|x| !m.mids.contains(x)).cloned().collect(),
            ..new.clone()
        };
        if let Some(clash) = identity_clash(&probe, &store.merchants()?) {
            return Err(bad(clash));
        }
    }
    store.update_merchant(id, |old| match merchant::edit(old, e, now) {
        Ok((m, event)) => (m, vec![event]),
        // Changed meanwhile so that the edit no longer applies: leave it.
        Err(_) => (old.clone(), Vec::new()),
    })
}

/// One row of `merchant import FILE.csv`, with its line in the file (for the error messages).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRow {
    pub line: u64,
    pub merchant: NewMerchant,
    /// What reading the row already found wrong (an unknown language, a field too many).
    #[serde(default)]
    pub problem: Option<String>,
}

/// `merchant import`: every row checked — by the rules of `merchant add`, against the merchants
/// already there and against the other rows — before anything is written; then all of them in
/// one transaction (`dry_run`: none). A refusal names every bad row with its line.
pub fn merchant_import(
    store: &Store,
    rows: &[ImportRow],
    dry_run: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Merchant>> {
    if rows.is_empty() {
        return Err(bad("no merchants in the file (only a header row?)".into()));
    }
    let existing = store.merchants()?;
    let mut ok: Vec<Merchant> = Vec::new();
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in rows {
        if let Some(p) = &row.problem {
            problems.push(format!("line {}: {p}", row.line));
            continue;
        }
        let m = match new_merchant(&row.merchant, now) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("line {}: {e}", row.line));
                continue;
            }
        };
        if existing.iter().any(|x| x.id == m.id) {
            problems.push(format!("line {}: merchant {} already exists (`merchant edit` changes it)", row.line, m.id));
            continue;
        }
        if let Some(first) = lines.get(&m.id) {
            problems.push(format!("line {}: merchant {} is already on line {first}", row.line, m.id));
            continue;
        }
        if let Some(clash) = identity_clash(&m, &existing).or_else(|| identity_clash(&m, &ok)) {
            problems.push(format!("line {}: {clash}", row.line));
            continue;
        }
        lines.insert(m.id.clone(), row.line);
        ok.push(m);
    }
    if !problems.is_empty() {
        let n = problems.len();
        return Err(bad(format!(
            "{n} bad row{}, nothing was imported:\n  {}",
            if n == 1 { "" } else { "s" },
            problems.join("\n  ")
        )));
    }
    if !dry_run {
        store.add_merchants(&ok, now)?;
    }
    Ok(ok)
}

/// Another merchant with `m`'s business number or one of its MIDs: matching by that signal
/// would be ambiguous, so it needs `--force` (and `merchant list` then shows the clash).
pub fn identity_clash(m: &Merchant, all: &[Merchant]) -> Option<String> {
    for other in all.iter().filter(|o| o.id != m.id) {
        if m.business_no.is_some() && m.business_no == other.business_no {
            return Some(format!(
                "business number {} is already merchant {}'s: two merchants with one number make matching \
                 ambiguous (give --force if they really share it)",
                m.business_no.as_deref().unwrap_or_default(),
                other.id
            ));
        }
        if let Some(mid) = m.mids.iter().find(|x| other.mids.contains(x)) {
            return Some(format!(
                "MID {mid} is already merchant {}'s: two merchants with one MID make matching ambiguous \
                 (give --force if they really share it)",
                other.id
            ));
        }
    }
    None
}

pub fn merchant_get(store: &Store, id: &str) -> anyhow::Result<Merchant> {
    store.merchant(id)?.ok_or_else(|| Refused::UnknownMerchant(id.to_owned()).into())
}

/// `merchant show`: the record and its timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MerchantDetail {
    pub merchant: Merchant,
    pub deadline: Option<due::Deadline>,
    pub events: Vec<Event>,
}

pub fn merchant_show(store: &Store, config: &Config, cal: &Calendar, id: &str) -> anyhow::Result<MerchantDetail> {
    let merchant = merchant_get(store, id)?;
    let deadline = due::deadline(&merchant, &config.windows, cal);
    Ok(MerchantDetail { events: store.events(id)?, deadline, merchant })
}

pub fn merchant_advance(
    store: &Store,
    id: &str,
    stage: &str,
    at: Option<&str>,
    note: Option<String>,
    now: DateTime<Utc>,
) -> anyhow::Result<Merchant> {
    let stage: Stage = stage.parse().map_err(bad)?;
    let at = match at {
        Some(a) => input::operator_date(parse_time(a, "--at")?, now, "--at").map_err(bad)?,
        None => now,
    };
    store.update_merchant(id, |old| {
        let (m, event) = merchant::advance(old, stage, at, note.clone(), now);
        (m, vec![event])
    })
}

/// `merchant pause` / `merchant resume`. Pausing a paused merchant (or resuming a running one) is
/// refused, so a script learns that its idea of the merchant was wrong.
pub fn merchant_pause(
    store: &Store,
    id: &str,
    paused: bool,
    note: Option<String>,
    now: DateTime<Utc>,
) -> anyhow::Result<Merchant> {
    let m = merchant_get(store, id)?;
    if m.paused == paused {
        let what = if paused { "already paused (`merchant resume` starts them again)" } else { "not paused" };
        return Err(bad(format!("merchant {id}: its reminders are {what}")));
    }
    store.update_merchant(id, |old| match merchant::set_paused(old, paused, note.clone(), now) {
        Some((m, event)) => (m, vec![event]),
        // Changed meanwhile by another command: nothing more to do.
        None => (old.clone(), Vec::new()),
    })
}

pub fn status(store: &Store, config: &Config, cal: &Calendar, now: DateTime<Utc>) -> anyhow::Result<Vec<StatusRow>> {
    Ok(due::status(&store.merchants()?, &config.windows, cal, now))
}

/// One line of `unassigned list` (SPEC §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnassignedRow {
    pub id: u64,
    pub account: String,
    pub folder: String,
    pub message_id: Option<String>,
    pub date: Option<DateTime<Utc>>,
    pub subject: String,
    pub kind: String,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub candidates: Vec<String>,
    pub business_numbers: Vec<String>,
    pub mids: Vec<String>,
    /// Why no single merchant matched.
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
    /// `open`, `assigned` or `dismissed`.
    pub status: String,
    pub resolution: Option<crate::store::unassigned::Resolution>,
}

impl UnassignedRow {
    fn of(id: u64, u: &crate::store::UnassignedMail) -> UnassignedRow {
        use crate::store::unassigned::Resolution;
        UnassignedRow {
            id,
            account: u.source.account.clone(),
            folder: u.source.folder.clone(),
            message_id: u.message_id.clone(),
            date: u.date,
            subject: u.subject.clone(),
            kind: u.kind.as_str().to_owned(),
            sender: u.sender.clone(),
            recipients: u.recipients.clone(),
            candidates: u.candidates.clone(),
            business_numbers: u.business_numbers.clone(),
            mids: u.mids.clone(),
            reason: u.reason.clone(),
            recorded_at: u.recorded_at,
            status: match &u.resolution {
                None => "open",
                Some(Resolution::Assigned { .. }) => "assigned",
                Some(Resolution::Dismissed { .. }) => "dismissed",
            }
            .to_owned(),
            resolution: u.resolution.clone(),
        }
    }
}

/// `unassigned list [--all]`: the mails waiting (`all`: resolved ones too), oldest first.
pub fn unassigned_list(store: &Store, all: bool) -> anyhow::Result<Vec<UnassignedRow>> {
    Ok(store
        .unassigned_mails()?
        .iter()
        .filter(|(_, u)| all || u.resolution.is_none())
        .map(|(id, u)| UnassignedRow::of(*id, u))
        .collect())
}

/// `unassigned show ID`: the row and the mail's text as classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnassignedDetail {
    #[serde(flatten)]
    pub row: UnassignedRow,
    pub text: String,
}

pub fn unassigned_show(store: &Store, id: u64) -> anyhow::Result<UnassignedDetail> {
    let u = store.unassigned_mail(id)?;
    let text = u.mail.as_ref().map(|m| m.text.clone()).unwrap_or_default();
    Ok(UnassignedDetail { row: UnassignedRow::of(id, &u), text })
}

/// One line of `outbox`: a message sent, waiting or given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRow {
    pub key: String,
    pub kind: String,
    pub merchant: Option<String>,
    pub status: Delivery,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Known once the message has been rendered (at its first try).
    pub message_id: Option<String>,
    pub subject: Option<String>,
}

impl OutboxRow {
    fn of(e: &OutboxEntry) -> OutboxRow {
        OutboxRow {
            key: e.key.clone(),
            kind: e.kind.as_str().to_owned(),
            merchant: e.merchant.clone(),
            status: e.status,
            to: e.to.clone(),
            cc: e.cc.clone(),
            created_at: e.created_at,
            sent_at: e.sent_at,
            attempts: e.attempts,
            last_error: e.last_error.clone(),
            next_attempt_at: e.next_attempt_at,
            message_id: e.rendered.as_ref().map(|r| r.message_id.clone()),
            subject: e.rendered.as_ref().map(|r| r.subject.clone()),
        }
    }
}

/// `outbox [--pending|--sent|--failed]`: oldest first.
pub fn outbox(store: &Store, status: Option<Delivery>) -> anyhow::Result<Vec<OutboxRow>> {
    let mut entries: Vec<OutboxEntry> =
        store.outbox_entries()?.into_iter().filter(|e| status.is_none_or(|s| e.status == s)).collect();
    entries.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
    Ok(entries.iter().map(OutboxRow::of).collect())
}

/// `outbox show KEY`: the message as sent (or as it will be: rendered now as a preview when it
/// has not been tried yet — the real one is rendered and kept at its first try).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    #[serde(flatten)]
    pub row: OutboxRow,
    pub from: Option<String>,
    pub text: String,
    pub preview: bool,
}

pub fn outbox_show(store: &Store, config: &Config, key: &str) -> anyhow::Result<OutboxMessage> {
    let Some(entry) = store.outbox_entry(key)? else {
        return Err(bad(format!("no outbox entry {key:?} (see `hecto-watch outbox`)")));
    };
    let from = config.smtp.as_ref().map(|s| s.from.clone());
    let (rendered, preview) = match &entry.rendered {
        Some(r) => (r.clone(), false),
        None => {
            let domain = from
                .as_deref()
                .and_then(|f| f.parse::<lettre::message::Mailbox>().ok())
                .map_or_else(|| "hecto-watch.invalid".to_owned(), |m| m.email.domain().to_ascii_lowercase());
            let renderer = crate::notify::render::Renderer::new(&config.reminders)?;
            (renderer.render(&entry, &domain)?, true)
        }
    };
    let mut row = OutboxRow::of(&entry);
    row.message_id = Some(rendered.message_id.clone());
    row.subject = Some(rendered.subject.clone());
    Ok(OutboxMessage { row, from, text: rendered.text, preview })
}

/// One line of `reminders`: something that would be sent now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueItem {
    pub merchant: Option<String>,
    /// `guidance` or `card_review` for a reminder; what the notice is about otherwise (`spam`,
    /// `unassigned`, `suspicious`, an account).
    pub window: String,
    /// The date (Asia/Seoul) the reminder's window opened; `None` for a notice.
    pub window_opened: Option<NaiveDate>,
    pub kind: String,
    pub n: u32,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub key: String,
    /// `due` for a reminder computed now, `pending`/`retrying` for what waits in the outbox.
    pub state: String,
}

impl DueItem {
    fn from_entry(e: &OutboxEntry, state: &str) -> DueItem {
        // An entry's window is its instance: `guidance@20261102`.
        let (window, opened) = match e.window.split_once('@') {
            Some((w, d)) => (w.to_owned(), NaiveDate::parse_from_str(d, "%Y%m%d").ok()),
            None => (e.window.clone(), None),
        };
        DueItem {
            merchant: e.merchant.clone(),
            window,
            window_opened: opened,
            kind: e.kind.as_str().to_owned(),
            n: e.n,
            to: e.to.clone(),
            cc: e.cc.clone(),
            key: e.key.clone(),
            state: state.to_owned(),
        }
    }
}

/// The spam folders named in reminders: what the daemon detected, else what is configured.
pub fn spam_folders(store: &Store, config: &Config) -> anyhow::Result<Vec<String>> {
    let detected = store.folder_roles()?;
    let mut out = Vec::new();
    for a in &config.accounts {
        let found: Vec<&String> = detected
            .get(&a.name)
            .map(|roles| roles.iter().filter(|(_, r)| *r == FolderRole::Junk).map(|(n, _)| n).collect())
            .unwrap_or_default();
        match (&a.junk, found.as_slice()) {
            (FolderChoice::Off, _) => {}
            (FolderChoice::Named(names), _) => out.extend(names.iter().cloned()),
            (FolderChoice::Auto, []) => {}
            (FolderChoice::Auto, names) => out.extend(names.iter().map(|n| (*n).clone())),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `import` (SPEC §7): every record checked by the rules of the commands that create it, before
/// anything is written; the first bad one is named by its JSON path. Dates must lie between
/// 2000-01-01 and a year from `now`: anything else is a corrupt or hostile file, and would break
/// the business-day arithmetic of every later command.
pub fn check_import(data: &crate::store::Export, now: DateTime<Utc>) -> Result<(), String> {
    use std::collections::BTreeSet;
    let date = |path: String, t: DateTime<Utc>| -> Result<(), String> {
        input::operator_date(t, now, "date").map(|_| ()).map_err(|e| format!("{path}: {e}"))
    };
    let mut ids = BTreeSet::new();
    for (i, m) in data.merchants.iter().enumerate() {
        let p = format!("merchants[{i}]");
        input::merchant_id(&m.id).map_err(|e| format!("{p}.id: {e}"))?;
        if !ids.insert(m.id.as_str()) {
            return Err(format!("{p}.id: {:?} appears twice", m.id));
        }
        input::name(&m.name).map_err(|e| format!("{p}.name: {e}"))?;
        let contacts = input::contacts(&m.contacts).map_err(|e| format!("{p}.contacts: {e}"))?;
        if contacts != m.contacts {
            return Err(format!(
                "{p}.contacts: {:?} must be written as {contacts:?} (trimmed, lower-case, each once)",
                m.contacts
            ));
        }
        if let Some(b) = &m.business_no {
            if input::business_no(b).ok().as_deref() != Some(b.as_str()) {
                return Err(format!("{p}.business_no: {b:?} is not 10 digits with a valid check digit"));
            }
        }
        for (j, mid) in m.mids.iter().enumerate() {
            input::mid(mid).map_err(|e| format!("{p}.mids[{j}]: {e}"))?;
        }
        date(format!("{p}.applied_at"), m.applied_at)?;
        date(format!("{p}.stage_since"), m.stage_since)?;
        date(format!("{p}.created_at"), m.created_at)?;
        for (c, t) in &m.card_approvals {
            date(format!("{p}.card_approvals.{c}"), *t)?;
        }
    }
    let mut seqs = BTreeSet::new();
    for (i, e) in data.events.iter().enumerate() {
        let p = format!("events[{i}]");
        if !ids.contains(e.event.merchant.as_str()) && input::merchant_id(&e.event.merchant).is_err() {
            return Err(format!("{p}.merchant: {:?} is not a merchant id", e.event.merchant));
        }
        if !seqs.insert(e.seq) {
            return Err(format!("{p}.seq: {} appears twice", e.seq));
        }
        date(format!("{p}.at"), e.event.at)?;
        date(format!("{p}.recorded_at"), e.event.recorded_at)?;
    }
    for (i, u) in data.unassigned.iter().enumerate() {
        let p = format!("unassigned[{i}]");
        if !seqs.insert(u.seq) {
            return Err(format!("{p}.seq: {} is used twice (sequence numbers are shared with events)", u.seq));
        }
        date(format!("{p}.recorded_at"), u.mail.recorded_at)?;
    }
    let mut keys = BTreeSet::new();
    for (i, o) in data.outbox.iter().enumerate() {
        let p = format!("outbox[{i}]");
        if o.key.is_empty() || !keys.insert(o.key.as_str()) {
            return Err(format!("{p}.key: {:?} is empty or appears twice", o.key));
        }
        if let Some(m) = &o.merchant {
            input::merchant_id(m).map_err(|e| format!("{p}.merchant: {e}"))?;
        }
        date(format!("{p}.created_at"), o.created_at)?;
    }
    for (i, c) in data.cursors.iter().enumerate() {
        if c.account.is_empty() || c.folder.is_empty() {
            return Err(format!("cursors[{i}]: account and folder must not be empty"));
        }
    }
    for (k, v) in &data.seen {
        if k.is_empty() {
            return Err("seen: an empty mail identity".into());
        }
        date(format!("seen[{k:?}].first_seen"), v.first_seen)?;
    }
    Ok(())
}

/// Every configured account's health (SPEC §7 `health`), from what the watchers recorded.
pub fn health(store: &Store, config: &Config) -> anyhow::Result<Vec<AccountHealth>> {
    Ok(crate::health::report(config, &store.folder_statuses()?, &store.folder_roles()?))
}

/// How recent the last read of every folder of a contact's mailbox must be for a reminder to say
/// it was checked: a daemon that runs reads each folder every minute or so (INBOX at least every
/// IDLE refresh); an older record is no proof that nothing came since.
pub const CHECKED_FRESH_WITHIN: chrono::Duration = chrono::Duration::hours(1);

/// What reminders may say about the contacts' mailboxes: the watched spam folders, and the
/// contact addresses whose mailbox the daemon reads — only while it can read all of it, spam
/// folder included, read it within [`CHECKED_FRESH_WITHIN`], and holds no Hecto mail there that
/// no merchant was matched to (the guidance could be that very mail), since "nothing from Hecto
/// is there yet" must be true.
pub fn mailboxes(store: &Store, config: &Config, now: DateTime<Utc>) -> anyhow::Result<due::Mailboxes> {
    let spam_folders = spam_folders(store, config)?;
    let health = health(store, config)?;
    let unassigned: Vec<String> = store.unassigned()?.into_iter().map(|u| u.source.account).collect();
    let mut checked = BTreeMap::new();
    for (account, h) in config.accounts.iter().zip(&health) {
        let (true, Some(checked_at)) = (h.readable, h.last_ok) else { continue };
        if now - checked_at > CHECKED_FRESH_WITHIN || unassigned.contains(&account.name) {
            continue;
        }
        let spam: Vec<String> = h.folders.iter().filter(|f| f.role == "junk").map(|f| f.folder.clone()).collect();
        if spam.is_empty() {
            continue;
        }
        for address in std::iter::once(&account.username).chain(&account.addresses) {
            let address = address.trim().to_lowercase();
            if !address.contains('@') {
                continue;
            }
            checked.entry(address.clone()).or_insert_with(|| CheckedMailbox {
                account: account.name.clone(),
                address,
                folders: h.folders.iter().map(|f| f.folder.clone()).collect(),
                spam_folders: spam.clone(),
                checked_at,
            });
        }
    }
    Ok(due::Mailboxes { spam_folders, checked })
}

/// What the reminder schedule would enqueue now, plus what already waits in the outbox.
pub fn reminders_due(
    store: &Store,
    config: &Config,
    cal: &Calendar,
    now: DateTime<Utc>,
) -> anyhow::Result<(Vec<OutboxEntry>, Vec<DueItem>)> {
    let merchants = store.merchants()?;
    // One read of the outbox serves both the reminder log and the list of what waits in it.
    let outbox = store.outbox_entries()?;
    let log = due::reminder_log(outbox.iter());
    let mailboxes = mailboxes(store, config, now)?;
    let new = due::due_reminders(&merchants, &log, &config.windows, &config.reminders, &mailboxes, cal, now);
    let mut items: Vec<DueItem> = new.iter().map(|e| DueItem::from_entry(e, "due")).collect();
    for e in &outbox {
        if e.status == Delivery::Pending {
            let state = if e.attempts > 0 { "retrying" } else { "pending" };
            items.push(DueItem::from_entry(e, state));
        }
    }
    items.sort_by(|a, b| (kind_order(&a.kind), &a.merchant, &a.key).cmp(&(kind_order(&b.kind), &b.merchant, &b.key)));
    Ok((new, items))
}

fn kind_order(kind: &str) -> u8 {
    match kind {
        k if k == NoticeKind::SpamNotice.as_str() => 0,
        k if k == NoticeKind::Reminder.as_str() => 1,
        _ => 2,
    }
}

/// Outbox entries that gave up (`reminders --failed`).
pub fn failed(store: &Store) -> anyhow::Result<Vec<OutboxEntry>> {
    Ok(store.outbox_entries()?.into_iter().filter(|e| e.status == Delivery::Failed).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    fn now() -> DateTime<Utc> {
        parse_time("2026-11-27T09:00:00+09:00", "now").unwrap()
    }

    fn acme() -> NewMerchant {
        NewMerchant {
            id: "acme".into(),
            name: "주식회사 에이씨미".into(),
            contacts: vec!["Pay@Acme.test".into()],
            business_no: Some("123-45-67891".into()),
            mids: vec![],
            applied_at: Some("2026-11-23".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_contacts_mailbox_counts_as_checked_only_while_it_and_a_spam_folder_are_readable() {
        let (_d, s) = store();
        let config = Config::parse(
            "[[accounts]]\nname = \"c\"\nhost = \"imap.example.com\"\nusername = \"contracts@shop.test\"\n\
             addresses = [\"Pay@Acme.test\"]\npassword = { value = \"x\" }\n\
             [[accounts]]\nname = \"nojunk\"\nhost = \"imap.example.com\"\nusername = \"other@shop.test\"\npassword = { value = \"x\" }\n",
        )
        .unwrap();
        s.set_folder_roles("c", &[("INBOX".into(), FolderRole::Inbox), ("스팸메일함".into(), FolderRole::Junk)])
            .unwrap();
        s.folder_synced("c", "INBOX", now(), 1).unwrap();
        s.folder_synced("c", "스팸메일함", now(), 1).unwrap();
        // An account that watches no spam folder cannot say the spam folder was checked.
        s.folder_synced("nojunk", "INBOX", now(), 1).unwrap();
        let m = mailboxes(&s, &config, now()).unwrap();
        let keys: Vec<&str> = m.checked.keys().map(String::as_str).collect();
        assert_eq!(keys, ["contracts@shop.test", "pay@acme.test"], "username and aliases, lowercase");
        let c = &m.checked["pay@acme.test"];
        assert_eq!(
            (c.folders.clone(), c.spam_folders.clone()),
            (vec!["INBOX".to_owned(), "스팸메일함".to_owned()], vec!["스팸메일함".to_owned()])
        );
        // Read more than an hour ago: no proof that nothing came since.
        let later = now() + CHECKED_FRESH_WITHIN + chrono::Duration::seconds(1);
        assert!(mailboxes(&s, &config, later).unwrap().checked.is_empty());
        // Unreadable now: the reminder must not claim the folders were checked.
        s.folder_failed("c", "스팸메일함", now(), "EXAMINE failed", crate::health::Trouble::Folder).unwrap();
        assert!(mailboxes(&s, &config, now()).unwrap().checked.is_empty());
    }

    #[test]
    fn bad_input_is_refused_and_leaves_the_database_unchanged() {
        let (_d, s) = store();
        merchant_add(&s, &acme(), now()).unwrap();
        let before = s.export().unwrap();
        let cases: Vec<(&str, anyhow::Error)> = vec![
            ("duplicate id", merchant_add(&s, &acme(), now()).unwrap_err()),
            (
                "bad check digit",
                merchant_add(
                    &s,
                    &NewMerchant { id: "b".into(), business_no: Some("123-45-67890".into()), ..acme() },
                    now(),
                )
                .unwrap_err(),
            ),
            (
                "wrong length",
                merchant_add(&s, &NewMerchant { id: "c".into(), business_no: Some("12345".into()), ..acme() }, now())
                    .unwrap_err(),
            ),
            (
                "bad date",
                merchant_add(
                    &s,
                    &NewMerchant { id: "d".into(), applied_at: Some("yesterday".into()), ..acme() },
                    now(),
                )
                .unwrap_err(),
            ),
            ("unknown stage", merchant_advance(&s, "acme", "signed", None, None, now()).unwrap_err()),
            ("unknown merchant", merchant_advance(&s, "nobody", "live", None, None, now()).unwrap_err()),
        ];
        for (what, err) in cases {
            assert!(err.downcast_ref::<Refused>().is_some(), "{what}: {err:#} should be a refusal (exit 2)");
        }
        assert_eq!(s.export().unwrap(), before);
    }

    #[test]
    fn advance_records_an_operator_event_and_status_shows_the_deadline() {
        let (_d, s) = store();
        merchant_add(&s, &acme(), now()).unwrap();
        let cal = Calendar::builtin();
        let cfg = Config::builtin();
        let rows = status(&s, &cfg, &cal, now()).unwrap();
        assert_eq!(rows[0].deadline.unwrap().due, parse_time("2026-11-26T23:59:59+09:00", "").unwrap());
        assert!(rows[0].overdue);
        merchant_advance(&s, "acme", "channel_configured", Some("2026-11-25"), Some("set in console".into()), now())
            .unwrap();
        let detail = merchant_show(&s, &cfg, &cal, "acme").unwrap();
        assert_eq!(detail.merchant.stage, Stage::ChannelConfigured);
        assert_eq!(detail.events.len(), 2);
        assert!(detail.deadline.is_none());
    }
}
