//! `merchant`: who the merchants are, where they stand, and what a classified mail does to them.
//! Third stage of the flow (mail → **merchant** → store).
//!
//! Pure functions of `(state, mail, now)`: no sled, no tokio, no clock. The store calls
//! [`apply_mail`] inside its transaction and persists whatever it returns.

pub mod matching;
pub mod stage;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Language;
use crate::mail::{Classified, Direction, MailKind, Rules};
pub use matching::{match_mail, MatchOutcome};
pub use stage::Stage;

/// A merchant being onboarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    /// The contact addresses on the Hecto application, lower-cased; at least one. Matching treats
    /// each the same, reminders go to all of them (SPEC §4). Records written before there could
    /// be several carry one `contact`.
    #[serde(alias = "contact", deserialize_with = "one_or_many")]
    pub contacts: Vec<String>,
    /// The language of this merchant's reminders and notices; `None`: `[reminders] language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    /// 사업자등록번호, 10 digits.
    pub business_no: Option<String>,
    /// MIDs given by the operator or found in Hecto's 계약완료 mail.
    pub mids: Vec<String>,
    pub stage: Stage,
    /// When the current stage was entered (the mail's Date, or the operator's `--at`).
    pub stage_since: DateTime<Utc>,
    /// When the application was made (start of the guidance window).
    pub applied_at: DateTime<Utc>,
    /// A Hecto mail for this merchant has been found in a spam folder.
    pub found_in_spam: bool,
    /// Per-card-company approvals from `card_review_progress` mails: company id → mail date.
    pub card_approvals: BTreeMap<String, DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The operator paused this merchant's reminders (`merchant pause`); mail still moves it.
    #[serde(default)]
    pub paused: bool,
}

/// A string or a list of strings, as a list: the field that held one contact now holds several.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Merchant {
    /// Whether `address` is one of this merchant's contacts.
    pub fn has_contact(&self, address: &str) -> bool {
        self.contacts.iter().any(|c| c.eq_ignore_ascii_case(address.trim()))
    }
}

/// Where a change came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Evidence {
    Operator {
        note: Option<String>,
    },
    Mail {
        account: String,
        folder: String,
        message_id: Option<String>,
        uid: Option<u32>,
        /// The mail's date as used for the stage timestamp.
        date: DateTime<Utc>,
        subject: String,
        /// Which rule matched (`kind=guidance direction=incoming match=business_no`).
        rule: String,
    },
}

/// What happened to a merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    Registered {
        stage: Stage,
    },
    Stage {
        from: Stage,
        to: Stage,
    },
    MidsRecorded {
        mids: Vec<String>,
    },
    CardApproval {
        companies: Vec<String>,
    },
    FoundInSpam,
    /// `merchant edit`: what changed, one line each ("contact added: pay@acme.test").
    Edited {
        changes: Vec<String>,
    },
    /// `merchant pause` / `merchant resume`: reminders stopped or started again.
    RemindersPaused,
    RemindersResumed,
    /// A Hecto mail for this merchant that changed nothing (older than the stage, other_hecto,
    /// refused by `sender_auth`, suspicious); kept so the timeline shows every piece of evidence.
    MailRecorded {
        kind: MailKind,
        reason: String,
    },
}

impl Change {
    /// One line for a timeline (`merchant show`, the status page).
    pub fn describe(&self) -> String {
        match self {
            Change::Registered { stage } => format!("registered ({stage})"),
            Change::Stage { from, to } => format!("{from} → {to}"),
            Change::MidsRecorded { mids } => format!("MIDs recorded: {}", mids.join(", ")),
            Change::CardApproval { companies } => format!("card approval: {}", companies.join(", ")),
            Change::FoundInSpam => "found in spam folder".to_owned(),
            Change::Edited { changes } => format!("edited: {}", changes.join("; ")),
            Change::RemindersPaused => "reminders paused".to_owned(),
            Change::RemindersResumed => "reminders resumed".to_owned(),
            Change::MailRecorded { kind, reason } => format!("{} mail ({reason})", kind.as_str()),
        }
    }
}

/// One entry of a merchant's timeline, kept forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub merchant: String,
    /// When it happened (mail date or operator time).
    pub at: DateTime<Utc>,
    /// When hecto-watch recorded it.
    pub recorded_at: DateTime<Utc>,
    pub change: Change,
    pub evidence: Evidence,
}

/// The role of the folder a mail was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FolderRole {
    #[default]
    Inbox,
    Junk,
    Sent,
    Other,
}

/// Where one mail was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailSource {
    pub account: String,
    pub folder: String,
    pub role: FolderRole,
    pub uid: Option<u32>,
    pub uid_validity: Option<u32>,
    /// IMAP INTERNALDATE (or file mtime for `import-mail`).
    pub internal_date: Option<DateTime<Utc>>,
    /// A Hecto mail for a merchant found here will be moved to INBOX (`move_found_in_spam` on a
    /// junk folder), so the spam notice can say so.
    #[serde(default)]
    pub move_to_inbox: bool,
}

/// The result of applying one mail to one merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailEffect {
    pub merchant: Merchant,
    pub events: Vec<Event>,
    pub stage_changed: bool,
    /// Found in spam for the first time by this mail: a spam notice is due.
    pub spam_notice: bool,
}

/// The instant a mail's evidence dates from: its `Date:`, unless missing or absurd (in the future
/// beyond a day, or before 2000), then INTERNALDATE, then `now`.
pub fn mail_time(mail: &Classified, source: &MailSource, now: DateTime<Utc>) -> DateTime<Utc> {
    let sane = |t: DateTime<Utc>| t.timestamp() > 946_684_800 && t <= now + chrono::Duration::days(1);
    mail.date
        .map(|d| d.with_timezone(&Utc))
        .filter(|t| sane(*t))
        .or(source.internal_date.filter(|t| sane(*t)))
        .unwrap_or(now)
}

/// What one classified mail does to the merchant it was matched to. Mail only moves forward.
pub fn apply_mail(
    merchant: &Merchant,
    mail: &Classified,
    source: &MailSource,
    rules: &Rules,
    match_rule: &str,
    now: DateTime<Utc>,
) -> MailEffect {
    let at = mail_time(mail, source, now);
    let mut m = merchant.clone();
    let mut events = Vec::new();
    let dir = match mail.direction {
        Some(Direction::Incoming) => "incoming",
        Some(Direction::Outgoing) => "outgoing",
        None => "none",
    };
    let evidence = Evidence::Mail {
        account: source.account.clone(),
        folder: source.folder.clone(),
        message_id: mail.message_id.clone(),
        uid: source.uid,
        date: at,
        subject: mail.subject.clone(),
        rule: format!("kind={} direction={dir} match={match_rule}", mail.kind.as_str()),
    };
    let mut push = |change: Change| {
        events.push(Event { merchant: m.id.clone(), at, recorded_at: now, change, evidence: evidence.clone() });
    };

    let incoming = mail.direction == Some(Direction::Incoming);
    // Our own Sent folder needs no sender authentication; Hecto's mail does.
    let admitted = !incoming || rules.sender_auth.admits(mail.authenticated);
    let mut spam_notice = false;
    let mut stage_changed = false;

    if mail.kind == MailKind::Suspicious {
        push(Change::MailRecorded { kind: mail.kind, reason: "suspicious sender: operators notified".into() });
        return MailEffect { merchant: m, events, stage_changed, spam_notice };
    }
    if !admitted {
        push(Change::MailRecorded {
            kind: mail.kind,
            reason: format!("sender authentication {:?} refused by sender_auth", mail.authenticated).to_lowercase(),
        });
        return MailEffect { merchant: m, events, stage_changed, spam_notice };
    }
    if incoming && source.role == FolderRole::Junk {
        spam_notice = true;
        if !m.found_in_spam {
            m.found_in_spam = true;
            push(Change::FoundInSpam);
        }
    }
    let mut recorded = false;
    match Stage::entered_by(mail.kind, mail.direction) {
        Some(to) if to > m.stage => {
            push(Change::Stage { from: m.stage, to });
            m.stage = to;
            m.stage_since = at;
            stage_changed = true;
            recorded = true;
        }
        Some(to) => {
            push(Change::MailRecorded { kind: mail.kind, reason: format!("already at {} (≥ {to})", m.stage) });
            recorded = true;
        }
        None => {}
    }
    if mail.kind == MailKind::ContractCompleted && incoming {
        let new: Vec<String> = mail.mids.iter().filter(|x| !m.mids.contains(x)).cloned().collect();
        if !new.is_empty() {
            m.mids.extend(new.iter().cloned());
            push(Change::MidsRecorded { mids: new });
        }
    }
    if mail.kind == MailKind::CardReviewProgress && incoming {
        // The subject says which company the mail is about; the body often lists them all
        // ("타 카드사 심사는 진행 중"), so it counts only when the subject names none.
        let about =
            if mail.subject_card_companies.is_empty() { &mail.card_companies } else { &mail.subject_card_companies };
        let new: Vec<String> = about.iter().filter(|c| !m.card_approvals.contains_key(*c)).cloned().collect();
        for c in &new {
            m.card_approvals.insert(c.clone(), at);
        }
        push(Change::CardApproval { companies: if new.is_empty() { about.clone() } else { new } });
        recorded = true;
    }
    if !recorded {
        push(Change::MailRecorded { kind: mail.kind, reason: "no stage change for this kind".into() });
    }
    MailEffect { merchant: m, events, stage_changed, spam_notice }
}

/// Operator sets any stage (forward or back), with a note.
pub fn advance(
    merchant: &Merchant,
    to: Stage,
    at: DateTime<Utc>,
    note: Option<String>,
    now: DateTime<Utc>,
) -> (Merchant, Event) {
    let mut m = merchant.clone();
    let from = m.stage;
    m.stage = to;
    m.stage_since = at;
    if to == Stage::Applied {
        m.applied_at = at;
    }
    let event = Event {
        merchant: m.id.clone(),
        at,
        recorded_at: now,
        change: Change::Stage { from, to },
        evidence: Evidence::Operator { note },
    };
    (m, event)
}

/// What `merchant edit` changes; an empty field leaves that part as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub add_contacts: Vec<String>,
    #[serde(default)]
    pub remove_contacts: Vec<String>,
    #[serde(default)]
    pub business_no: Option<String>,
    #[serde(default)]
    pub add_mids: Vec<String>,
    #[serde(default)]
    pub remove_mids: Vec<String>,
    #[serde(default)]
    pub language: Option<Language>,
    #[serde(default)]
    pub note: Option<String>,
}

/// `merchant edit`: the merchant with `e` applied and the event naming each change. Refused (one
/// line) when a value is invalid, a contact or MID to remove is not there, the last contact would
/// go, or nothing would change.
pub fn edit(merchant: &Merchant, e: &Edit, now: DateTime<Utc>) -> Result<(Merchant, Event), String> {
    let mut m = merchant.clone();
    let mut changes = Vec::new();
    if let Some(name) = &e.name {
        let name = input::name(name)?;
        if name != m.name {
            changes.push(format!("name: {} → {name}", m.name));
            m.name = name;
        }
    }
    for c in &e.remove_contacts {
        let c = input::contact(c)?;
        let Some(i) = m.contacts.iter().position(|x| *x == c) else {
            return Err(format!("{c} is not a contact of merchant {} (it has {})", m.id, m.contacts.join(", ")));
        };
        m.contacts.remove(i);
        changes.push(format!("contact removed: {c}"));
    }
    for c in &e.add_contacts {
        let c = input::contact(c)?;
        if !m.contacts.contains(&c) {
            m.contacts.push(c.clone());
            changes.push(format!("contact added: {c}"));
        }
    }
    if m.contacts.is_empty() {
        return Err(format!("merchant {} must keep at least one contact (add the new one first)", m.id));
    }
    input::contacts(&m.contacts)?;
    if let Some(b) = &e.business_no {
        let b = input::business_no(b)?;
        if m.business_no.as_deref() != Some(b.as_str()) {
            changes.push(format!("business number: {} → {b}", m.business_no.as_deref().unwrap_or("-")));
            m.business_no = Some(b);
        }
    }
    for x in &e.remove_mids {
        if !m.mids.contains(x) {
            return Err(format!("MID {x:?} is not one of merchant {}'s", m.id));
        }
        m.mids.retain(|y| y != x);
        changes.push(format!("MID removed: {x}"));
    }
    for x in &e.add_mids {
        let x = input::mid(x)?;
        if !m.mids.contains(&x) {
            m.mids.push(x.clone());
            changes.push(format!("MID added: {x}"));
        }
    }
    if let Some(l) = e.language {
        if m.language != Some(l) {
            let name = |l: Option<Language>| l.map_or("the configured one", |l| l.code());
            changes.push(format!("language: {} → {}", name(m.language), l.code()));
            m.language = Some(l);
        }
    }
    if changes.is_empty() {
        return Err(format!("merchant {}: nothing to change (it already is so)", m.id));
    }
    let event = Event {
        merchant: m.id.clone(),
        at: now,
        recorded_at: now,
        change: Change::Edited { changes },
        evidence: Evidence::Operator { note: e.note.clone() },
    };
    Ok((m, event))
}

/// `merchant pause` (`paused`) or `merchant resume`: the merchant with its reminders stopped or
/// started again, and the event; `None` when it already is so.
pub fn set_paused(
    merchant: &Merchant,
    paused: bool,
    note: Option<String>,
    now: DateTime<Utc>,
) -> Option<(Merchant, Event)> {
    if merchant.paused == paused {
        return None;
    }
    let mut m = merchant.clone();
    m.paused = paused;
    let change = if paused { Change::RemindersPaused } else { Change::RemindersResumed };
    let event =
        Event { merchant: m.id.clone(), at: now, recorded_at: now, change, evidence: Evidence::Operator { note } };
    Some((m, event))
}

/// Checks on operator input; each error is one line that says what is wrong and what is expected.
pub mod input {
    /// `[A-Za-z0-9_.-]{1,64}`: ids appear in sled keys and in Message-IDs.
    pub fn merchant_id(id: &str) -> Result<String, String> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(id.to_owned())
        } else {
            Err(format!("merchant id {id:?} must be 1–64 characters of A–Z, a–z, 0–9, '_', '-', '.'"))
        }
    }

    /// A 사업자등록번호 with a valid check digit, as 10 digits.
    pub fn business_no(raw: &str) -> Result<String, String> {
        let digits: String = raw.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
        if digits.len() != 10 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("business number {raw:?} must have 10 digits, like 123-45-67891"));
        }
        if !crate::mail::valid_business_number(&digits) {
            return Err(format!("business number {raw:?} has a wrong check digit — is it typed correctly?"));
        }
        Ok(digits)
    }

    /// A merchant's name: 1–200 characters, no control characters (it is printed in tables and
    /// mail subjects).
    pub fn name(raw: &str) -> Result<String, String> {
        let name = raw.trim();
        let n = name.chars().count();
        if n == 0 || n > 200 {
            return Err(format!("name must be 1–200 characters (got {n})"));
        }
        if name.chars().any(char::is_control) {
            return Err("name must not contain control characters (line breaks, ESC, …)".into());
        }
        Ok(name.to_owned())
    }

    /// An operator's date (`--applied-at`, `--at`): from 2000-01-01 to one year after `now` —
    /// anything else is a typo, and far dates break the business-day arithmetic.
    pub fn operator_date(
        t: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
        what: &str,
    ) -> Result<chrono::DateTime<chrono::Utc>, String> {
        let earliest =
            chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00+09:00").map(|d| d.to_utc()).unwrap_or(t);
        let latest = now + chrono::TimeDelta::days(366);
        if t < earliest || t > latest {
            return Err(format!(
                "{what} {} is out of range: give a date from 2000-01-01 to {}",
                t.format("%Y-%m-%d"),
                latest.format("%Y-%m-%d")
            ));
        }
        Ok(t)
    }

    /// A merchant's contacts: 1–10 addresses, each checked as [`contact`], each once.
    pub fn contacts(raw: &[String]) -> Result<Vec<String>, String> {
        if raw.is_empty() || raw.len() > 10 {
            return Err(format!("a merchant has 1–10 contact addresses (got {})", raw.len()));
        }
        let mut out: Vec<String> = Vec::new();
        for c in raw {
            let c = contact(c)?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub fn contact(raw: &str) -> Result<String, String> {
        let addr = raw.trim().to_lowercase();
        match addr.parse::<lettre::Address>() {
            Ok(_) => Ok(addr),
            Err(_) => Err(format!("contact {raw:?} is not a mail address like contact@example.com")),
        }
    }

    pub fn mid(raw: &str) -> Result<String, String> {
        let ok = (4..=20).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(raw.to_owned())
        } else {
            Err(format!("MID {raw:?} must be 4–20 characters of A–Z, a–z, 0–9, '_'"))
        }
    }
}

/// Company name for matching: without 주식회사, (주), ㈜ and whitespace, lower-cased.
pub fn normalise_company(name: &str) -> String {
    let mut s = name.replace("주식회사", "").replace("(주)", "").replace("㈜", "").replace("（주）", "");
    s.retain(|c| !c.is_whitespace());
    s.to_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mail::Authenticated;
    use chrono::TimeZone;

    pub fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    pub fn merchant(id: &str, contact: &str) -> Merchant {
        let at = t("2026-11-02T10:00:00+09:00");
        Merchant {
            id: id.into(),
            name: format!("{id} 주식회사"),
            contacts: vec![contact.into()],
            language: None,
            business_no: None,
            mids: vec![],
            stage: Stage::Applied,
            stage_since: at,
            applied_at: at,
            found_in_spam: false,
            card_approvals: BTreeMap::new(),
            created_at: at,
            paused: false,
        }
    }

    pub fn mail(kind: MailKind, direction: Option<Direction>, date: &str) -> Classified {
        let mut c = crate::mail::classify(b"", &Rules::default());
        c.unparseable = false;
        c.kind = kind;
        c.direction = direction;
        c.date = Some(DateTime::parse_from_rfc3339(date).unwrap());
        c.message_id = Some("m1@hectofinancial.co.kr".into());
        c.subject = "[헥토파이낸셜] 계약 안내".into();
        c
    }

    pub fn source(role: FolderRole) -> MailSource {
        MailSource {
            account: "contracts".into(),
            folder: if role == FolderRole::Junk { "Junk".into() } else { "INBOX".into() },
            role,
            uid: Some(7),
            uid_validity: Some(1),
            internal_date: None,
            move_to_inbox: false,
        }
    }

    #[test]
    fn guidance_in_junk_advances_and_flags_spam_once() {
        let m = merchant("acme", "pay@acme.test");
        let mail = mail(MailKind::Guidance, Some(Direction::Incoming), "2026-11-04T11:00:00+09:00");
        let now = t("2026-11-04T12:00:00+09:00");
        let e = apply_mail(&m, &mail, &source(FolderRole::Junk), &Rules::default(), "contact", now);
        assert!(e.stage_changed && e.spam_notice);
        assert_eq!(e.merchant.stage, Stage::GuidanceReceived);
        assert_eq!(e.merchant.stage_since, t("2026-11-04T11:00:00+09:00"));
        assert!(e.merchant.found_in_spam);
        assert!(e.events.iter().any(|ev| ev.change == Change::FoundInSpam));
        // A second Hecto mail in Junk: a notice for that mail too, but no second FoundInSpam event.
        let again = apply_mail(&e.merchant, &mail, &source(FolderRole::Junk), &Rules::default(), "contact", now);
        assert!(again.spam_notice && !again.stage_changed);
        assert!(!again.events.iter().any(|ev| ev.change == Change::FoundInSpam));
    }

    #[test]
    fn an_old_mail_found_late_never_regresses_the_stage() {
        let mut m = merchant("acme", "pay@acme.test");
        m.stage = Stage::ContractCompleted;
        let mail = mail(MailKind::Guidance, Some(Direction::Incoming), "2026-11-04T11:00:00+09:00");
        let e =
            apply_mail(&m, &mail, &source(FolderRole::Inbox), &Rules::default(), "contact", t("2026-11-20T00:00:00Z"));
        assert_eq!(e.merchant.stage, Stage::ContractCompleted);
        assert!(!e.stage_changed);
        assert!(matches!(e.events[0].change, Change::MailRecorded { .. }));
    }

    #[test]
    fn contract_completed_records_new_mids_and_progress_records_approvals_without_stage_change() {
        let m = merchant("acme", "pay@acme.test");
        let mut done = mail(MailKind::ContractCompleted, Some(Direction::Incoming), "2026-11-10T09:00:00+09:00");
        done.mids = vec!["acme0001".into()];
        let e =
            apply_mail(&m, &done, &source(FolderRole::Inbox), &Rules::default(), "mid", t("2026-11-10T10:00:00+09:00"));
        assert_eq!(e.merchant.stage, Stage::ContractCompleted);
        assert_eq!(e.merchant.mids, vec!["acme0001".to_string()]);
        let mut progress = mail(MailKind::CardReviewProgress, Some(Direction::Incoming), "2026-11-20T09:00:00+09:00");
        progress.card_companies = vec!["shinhan".into()];
        let p = apply_mail(
            &e.merchant,
            &progress,
            &source(FolderRole::Inbox),
            &Rules::default(),
            "mid",
            t("2026-11-20T10:00:00+09:00"),
        );
        assert_eq!(p.merchant.stage, Stage::ContractCompleted);
        assert!(p.merchant.card_approvals.contains_key("shinhan"));
    }

    #[test]
    fn sender_auth_require_holds_back_unauthenticated_incoming_mail_but_not_our_sent_mail() {
        let rules = Rules { sender_auth: crate::mail::SenderAuth::Require, ..Rules::default() };
        let m = merchant("acme", "pay@acme.test");
        let mut g = mail(MailKind::Guidance, Some(Direction::Incoming), "2026-11-04T11:00:00+09:00");
        g.authenticated = Authenticated::None;
        let e = apply_mail(&m, &g, &source(FolderRole::Inbox), &rules, "contact", t("2026-11-05T00:00:00Z"));
        assert_eq!(e.merchant.stage, Stage::Applied);
        let mut req = mail(MailKind::CardReviewRequested, Some(Direction::Outgoing), "2026-11-04T11:00:00+09:00");
        req.authenticated = Authenticated::None;
        let e = apply_mail(&m, &req, &source(FolderRole::Sent), &rules, "contact", t("2026-11-05T00:00:00Z"));
        assert_eq!(e.merchant.stage, Stage::CardReviewRequested);
    }

    #[test]
    fn absurd_dates_fall_back_to_internaldate() {
        let mut g = mail(MailKind::Guidance, Some(Direction::Incoming), "2099-01-01T00:00:00+09:00");
        let mut src = source(FolderRole::Inbox);
        src.internal_date = Some(Utc.with_ymd_and_hms(2026, 11, 4, 2, 0, 0).unwrap());
        let now = t("2026-11-05T00:00:00Z");
        assert_eq!(mail_time(&g, &src, now), src.internal_date.unwrap());
        g.date = None;
        src.internal_date = None;
        assert_eq!(mail_time(&g, &src, now), now);
    }

    #[test]
    fn operator_input_is_checked() {
        assert!(input::merchant_id("acme-01").is_ok());
        assert!(input::merchant_id("acme/01").is_err());
        assert!(input::business_no("123-45-6789").is_err());
        assert!(input::contact("not-an-address").is_err());
        assert_eq!(input::contact(" Pay@Acme.TEST ").unwrap(), "pay@acme.test");
        assert!(input::mid("ab").is_err());
    }

    #[test]
    fn company_names_normalise_without_legal_suffixes() {
        assert_eq!(normalise_company("주식회사 에이씨엠이"), "에이씨엠이");
        assert_eq!(normalise_company("(주) 에이씨 엠이"), "에이씨엠이");
        assert_eq!(normalise_company("㈜에이씨엠이"), "에이씨엠이");
    }
}
