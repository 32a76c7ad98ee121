//! The outbox's records: every reminder and notice, written before it is sent (SPEC §5).
//! Keys are the idempotency keys, so a second enqueue of the same key is a no-op.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Reminder,
    SpamNotice,
    OperatorNotice,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Reminder => "reminder",
            NoticeKind::SpamNotice => "spam_notice",
            NoticeKind::OperatorNotice => "operator_notice",
        }
    }
}

/// The facts a message is rendered from, captured when it is enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NoticeFacts {
    Reminder {
        merchant_name: String,
        /// `guidance` or `card_review`.
        window: String,
        /// When the window opened (application date / review request date).
        since: DateTime<Utc>,
        due: DateTime<Utc>,
        /// Business days since the window opened, at enqueue time.
        business_days_waited: u32,
        /// Calendar days since the window opened, at enqueue time.
        days_waited: u32,
        /// Spam folders watched for this merchant's mail ("contracts: Junk").
        spam_folders: Vec<String>,
        /// When the daemon itself reads the contact's mailbox (SPEC §5): which folders it read,
        /// so the reminder says so instead of sending people to a spam folder already searched.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checked: Option<CheckedMailbox>,
    },
    SpamNotice {
        merchant_name: String,
        account: String,
        folder: String,
        subject: String,
        mail_date: DateTime<Utc>,
        message_id: Option<String>,
        kind: String,
        moved_to_inbox: bool,
    },
    OperatorNotice {
        /// `unassigned` or `suspicious`.
        reason: String,
        detail: String,
        account: String,
        folder: String,
        subject: String,
        sender: Option<String>,
        message_id: Option<String>,
        kind: String,
        candidates: Vec<String>,
    },
    /// An account that cannot be read (`recovered_at` absent), or can be again (SPEC §5).
    AccountAlert {
        account: String,
        since: DateTime<Utc>,
        recovered_at: Option<DateTime<Utc>>,
        last_error: String,
        /// [`crate::health::Trouble`] as a word.
        trouble: String,
        fix: String,
    },
}

/// A contact's mailbox the daemon watches, as a guidance reminder reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedMailbox {
    /// The watched account, and the contact address it receives.
    pub account: String,
    pub address: String,
    /// Every folder read, by its real name (INBOX, the spam folders, Sent).
    pub folders: Vec<String>,
    /// The spam folders among them.
    pub spam_folders: Vec<String>,
    /// Every one of them was read to its end at least this recently.
    pub checked_at: DateTime<Utc>,
}

/// Rendered once, stored, then sent: a retry sends exactly the same bytes' content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Pending,
    Sent,
    /// Gave up (permanent SMTP rejection after a few tries); `retry` puts it back to pending.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The idempotency key: `reminder/<merchant>/<window>@<opened>/<n>`, `spam/<merchant>/<mail>`,
    /// `operator/<reason>/<mail>`, `alert/<account>/<since>/{down,up}`.
    pub key: String,
    pub kind: NoticeKind,
    pub merchant: Option<String>,
    /// `guidance@20261102`, `card_review@20261201`, `spam`, `unassigned`, `suspicious`.
    pub window: String,
    pub n: u32,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub facts: NoticeFacts,
    pub rendered: Option<Rendered>,
    pub status: Delivery,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Set (and on disk) just before the message is handed to the SMTP server, cleared with the
    /// outcome: an entry still carrying it after a restart may have been delivered (a crash
    /// between the server's "250" and the "sent" record), see [`crate::notify::outbox`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_since: Option<DateTime<Utc>>,
    /// The merchant's own language, when it has one; rendering falls back to `[reminders]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<crate::config::Language>,
}

impl OutboxEntry {
    /// A pending entry for `key`, not yet rendered or tried.
    pub fn pending(
        key: String,
        kind: NoticeKind,
        merchant: Option<String>,
        window: String,
        n: u32,
        facts: NoticeFacts,
        now: DateTime<Utc>,
    ) -> Self {
        OutboxEntry {
            key,
            kind,
            merchant,
            window,
            n,
            to: Vec::new(),
            cc: Vec::new(),
            created_at: now,
            facts,
            rendered: None,
            status: Delivery::Pending,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            sent_at: None,
            sending_since: None,
            language: None,
        }
    }

    /// Addressed to the merchant's contact with the operators in Cc (SPEC §5).
    /// To the merchant's contacts, the operators in copy (unless one of them is a contact).
    pub fn to_contacts(mut self, contacts: &[String], operators: &[String]) -> Self {
        self.to = contacts.to_vec();
        self.cc = operators.iter().filter(|o| !contacts.iter().any(|c| c.eq_ignore_ascii_case(o))).cloned().collect();
        self
    }

    /// Rendered in the merchant's own language (`None`: `[reminders] language`).
    pub fn in_language(mut self, language: Option<crate::config::Language>) -> Self {
        self.language = language;
        self
    }

    /// Operator notices go to the operators only.
    pub fn to_operators(mut self, operators: &[String]) -> Self {
        self.to = operators.to_vec();
        self
    }
}
