//! What is due at an instant (SPEC §5): each merchant's open window and its deadline, and the
//! reminders that should go out now. Pure: state and `now` in, a list out; the due set is always
//! recomputed from stored state, so a tick missed while the daemon was down is made up at the next
//! one and a tick replayed twice enqueues nothing new (the outbox keys are the same).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::{end_of_day, kst_date, Calendar};
use crate::config::{Reminders, Windows};
use crate::merchant::{Merchant, Stage};
use crate::store::{CheckedMailbox, NoticeFacts, NoticeKind, OutboxEntry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Guidance,
    CardReview,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Guidance => "guidance",
            Window::CardReview => "card_review",
        }
    }
}

/// A merchant's open window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub window: Window,
    /// When the window opened (application, or review request).
    #[serde(skip_serializing, default)]
    pub opened: DateTime<Utc>,
    /// The end of the last day allowed (23:59:59 KST).
    pub due: DateTime<Utc>,
}

impl Deadline {
    /// `guidance@20261102`: one window instance; reopening the window (an operator moving the
    /// merchant back) starts a new one with its own reminder count.
    pub fn instance(&self) -> String {
        window_instance(self.window, self.opened)
    }
}

/// `guidance@20261102`: the window and the KST day it opened.
pub fn window_instance(window: Window, opened: DateTime<Utc>) -> String {
    format!("{}@{}", window.as_str(), kst_date(opened).format("%Y%m%d"))
}

/// Which window a merchant's stage has open, and since when.
pub fn open_window(m: &Merchant) -> Option<(Window, DateTime<Utc>)> {
    match m.stage {
        Stage::Applied => Some((Window::Guidance, m.applied_at)),
        Stage::CardReviewRequested => Some((Window::CardReview, m.stage_since)),
        _ => None,
    }
}

/// The open window of a merchant, if its stage has one.
pub fn deadline(m: &Merchant, windows: &Windows, cal: &Calendar) -> Option<Deadline> {
    let (window, opened) = open_window(m)?;
    let day = match window {
        Window::Guidance => cal.add_business_days(kst_date(opened), windows.guidance_business_days),
        // Checked: a stored date near the end of the calendar must not panic (issue 13).
        Window::CardReview => kst_date(opened)
            .checked_add_days(chrono::Days::new(u64::from(windows.card_review_days)))
            .unwrap_or(chrono::NaiveDate::MAX),
    };
    Some(Deadline { window, opened, due: end_of_day(day) })
}

/// Reminders already enqueued, per (merchant, window instance): their enqueue times in order.
pub type ReminderLog = BTreeMap<(String, String), Vec<DateTime<Utc>>>;

/// Build the log from outbox entries (only reminders count).
pub fn reminder_log<'a>(entries: impl IntoIterator<Item = &'a OutboxEntry>) -> ReminderLog {
    let mut log = ReminderLog::new();
    for e in entries {
        if e.kind == NoticeKind::Reminder {
            if let Some(m) = &e.merchant {
                log.entry((m.clone(), e.window.clone())).or_default().push(e.created_at);
            }
        }
    }
    for times in log.values_mut() {
        times.sort();
    }
    log
}

/// The outbox key of reminder `n` of a window instance.
pub fn reminder_key(merchant: &str, instance: &str, n: u32) -> String {
    format!("reminder/{merchant}/{instance}/{n:03}")
}

/// What the daemon knows of the mailboxes a reminder may point people to.
#[derive(Debug, Clone, Default)]
pub struct Mailboxes {
    /// Every watched spam folder ("contracts: Junk"), for contacts whose mailbox is not watched.
    pub spam_folders: Vec<String>,
    /// The contact addresses (lowercase) whose mailbox the daemon reads, and what it read there.
    pub checked: BTreeMap<String, CheckedMailbox>,
}

/// The reminders due at `now`, addressed and ready to enqueue.
pub fn due_reminders(
    merchants: &[Merchant],
    log: &ReminderLog,
    windows: &Windows,
    reminders: &Reminders,
    mailboxes: &Mailboxes,
    cal: &Calendar,
    now: DateTime<Utc>,
) -> Vec<OutboxEntry> {
    let today = kst_date(now);
    let mut out = Vec::new();
    for m in merchants.iter().filter(|m| !m.paused) {
        let Some(d) = deadline(m, windows, cal) else {
            continue;
        };
        if now <= d.due {
            continue;
        }
        let instance = d.instance();
        let sent = log.get(&(m.id.clone(), instance.clone())).map_or(&[][..], Vec::as_slice);
        let n = sent.len() as u32;
        if n >= reminders.max_reminders {
            continue;
        }
        if let Some(last) = sent.last() {
            let next = cal.add_business_days(kst_date(*last), reminders.repeat_every_business_days);
            if today < next {
                continue;
            }
        }
        let opened = kst_date(d.opened);
        let facts = NoticeFacts::Reminder {
            merchant_name: m.name.clone(),
            window: d.window.as_str().into(),
            since: d.opened,
            due: d.due,
            business_days_waited: cal.business_days_between(opened, today),
            days_waited: u32::try_from((today - opened).num_days().max(0)).unwrap_or(u32::MAX),
            spam_folders: mailboxes.spam_folders.clone(),
            // Only the guidance mail is looked for in the contact's mailbox; the card review's
            // outcome comes from Hecto or the card companies by other ways too.
            checked: (d.window == Window::Guidance)
                .then(|| m.contacts.iter().find_map(|c| mailboxes.checked.get(&c.to_lowercase()).cloned()))
                .flatten(),
        };
        let key = reminder_key(&m.id, &instance, n + 1);
        out.push(
            OutboxEntry::pending(key, NoticeKind::Reminder, Some(m.id.clone()), instance, n + 1, facts, now)
                .to_contacts(&m.contacts, &reminders.operators)
                .in_language(m.language),
        );
    }
    out
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    pub id: String,
    pub name: String,
    pub stage: Stage,
    pub stage_since: DateTime<Utc>,
    pub deadline: Option<Deadline>,
    pub overdue: bool,
    pub found_in_spam: bool,
    /// Its reminders are paused (`merchant pause`).
    #[serde(default)]
    pub paused: bool,
}

pub fn status(merchants: &[Merchant], windows: &Windows, cal: &Calendar, now: DateTime<Utc>) -> Vec<StatusRow> {
    merchants
        .iter()
        .map(|m| {
            let deadline = deadline(m, windows, cal);
            StatusRow {
                id: m.id.clone(),
                name: m.name.clone(),
                stage: m.stage,
                stage_since: m.stage_since,
                overdue: deadline.is_some_and(|d| now > d.due),
                deadline,
                found_in_spam: m.found_in_spam,
                paused: m.paused,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merchant::tests::{merchant, t};

    fn applied(at: &str) -> Merchant {
        let mut m = merchant("acme", "pay@acme.test");
        m.applied_at = t(at);
        m.stage_since = t(at);
        m
    }

    fn due_now(m: &Merchant, log: &ReminderLog, now: &str) -> Vec<OutboxEntry> {
        let r = Reminders { operators: vec!["ops@example.test".into()], ..Reminders::default() };
        due_reminders(
            std::slice::from_ref(m),
            log,
            &Windows::default(),
            &r,
            &Mailboxes::default(),
            &Calendar::builtin(),
            t(now),
        )
    }

    #[test]
    fn dates_at_the_end_of_the_calendar_do_not_panic() {
        let mut m = merchant("acme", "pay@acme.test");
        m.stage = Stage::CardReviewRequested;
        m.stage_since = DateTime::<Utc>::MAX_UTC - chrono::Duration::days(400);
        let d = deadline(&m, &Windows::default(), &Calendar::builtin()).unwrap();
        assert!(d.due >= m.stage_since - chrono::Duration::days(1));
        let rows = status(&[m], &Windows::default(), &Calendar::builtin(), t("2027-02-15T09:00:00+09:00"));
        assert!(!rows[0].overdue);
    }

    #[test]
    fn a_paused_merchant_is_not_reminded() {
        let mut m = applied("2027-02-05T10:00:00+09:00");
        assert_eq!(due_now(&m, &ReminderLog::new(), "2027-02-15T09:00:00+09:00").len(), 1);
        m.paused = true;
        assert!(due_now(&m, &ReminderLog::new(), "2027-02-15T09:00:00+09:00").is_empty());
    }

    #[test]
    fn guidance_over_2027_seollal_is_due_after_friday_the_12th() {
        let m = applied("2027-02-05T10:00:00+09:00");
        let d = deadline(&m, &Windows::default(), &Calendar::builtin()).unwrap();
        assert_eq!(d.due, t("2027-02-12T23:59:59+09:00"));
        assert!(due_now(&m, &ReminderLog::new(), "2027-02-11T09:00:00+09:00").is_empty());
        assert!(due_now(&m, &ReminderLog::new(), "2027-02-12T09:00:00+09:00").is_empty());
        let due = due_now(&m, &ReminderLog::new(), "2027-02-15T09:00:00+09:00");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, "reminder/acme/guidance@20270205/001");
        assert_eq!(due[0].to, vec!["pay@acme.test"]);
        assert_eq!(due[0].cc, vec!["ops@example.test"]);
    }

    #[test]
    fn card_review_is_due_after_fourteen_calendar_days() {
        let mut m = applied("2026-11-02T10:00:00+09:00");
        m.stage = Stage::CardReviewRequested;
        m.stage_since = t("2026-12-01T15:00:00+09:00");
        assert!(due_now(&m, &ReminderLog::new(), "2026-12-14T09:00:00+09:00").is_empty());
        assert!(due_now(&m, &ReminderLog::new(), "2026-12-15T09:00:00+09:00").is_empty());
        let due = due_now(&m, &ReminderLog::new(), "2026-12-16T09:00:00+09:00");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].window, "card_review@20261201");
    }

    #[test]
    fn repeats_every_two_business_days_up_to_the_cap() {
        let m = applied("2026-11-02T10:00:00+09:00"); // Mon → due end of Thu 11-05
        let mut log = ReminderLog::new();
        let key = ("acme".to_string(), "guidance@20261102".to_string());
        // Reminder 1 went out Fri 11-06 09:00.
        log.insert(key.clone(), vec![t("2026-11-06T09:00:00+09:00")]);
        assert!(due_now(&m, &log, "2026-11-09T09:00:00+09:00").is_empty(), "Mon is only 1 business day later");
        let second = due_now(&m, &log, "2026-11-10T09:00:00+09:00");
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].n, 2);
        log.get_mut(&key).unwrap().push(t("2026-11-10T09:00:00+09:00"));
        log.get_mut(&key).unwrap().push(t("2026-11-12T09:00:00+09:00"));
        assert!(due_now(&m, &log, "2026-11-20T09:00:00+09:00").is_empty(), "three sent: the cap");
    }

    #[test]
    fn stages_without_a_window_have_no_deadline() {
        let mut m = applied("2026-11-02T10:00:00+09:00");
        m.stage = Stage::Contracting;
        assert!(deadline(&m, &Windows::default(), &Calendar::builtin()).is_none());
        let rows = status(&[m], &Windows::default(), &Calendar::builtin(), t("2027-01-01T00:00:00Z"));
        assert!(!rows[0].overdue);
    }
}
