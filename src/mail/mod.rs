//! `mail`: raw RFC 5322 bytes → [`Classified`]. Second stage of the flow (imap → **mail** → merchant).
//!
//! Pure functions of `(bytes, rules)`: no I/O, no clock, no sled, no tokio. Whatever the bytes,
//! [`classify`] returns; a panic inside the parser dependency is caught and reported as an
//! unparseable mail rather than taking the daemon down.

pub mod rules;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

pub use rules::{Rules, SenderAuth};

/// What a mail is, per SPEC §3 ("first match wins").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    Suspicious,
    NotHecto,
    CardReviewCompleted,
    CardReviewProgress,
    CardReviewRequested,
    ContractCompleted,
    DocumentsRequest,
    Guidance,
    OtherHecto,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Suspicious => "suspicious",
            MailKind::NotHecto => "not_hecto",
            MailKind::CardReviewCompleted => "card_review_completed",
            MailKind::CardReviewProgress => "card_review_progress",
            MailKind::CardReviewRequested => "card_review_requested",
            MailKind::ContractCompleted => "contract_completed",
            MailKind::DocumentsRequest => "documents_request",
            MailKind::Guidance => "guidance",
            MailKind::OtherHecto => "other_hecto",
        }
    }

    /// A mail that is Hecto's business (in either direction), as opposed to unrelated mail.
    pub fn is_hecto(self) -> bool {
        !matches!(self, MailKind::NotHecto)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a Hecto domain.
    Incoming,
    /// Not from Hecto, with a Hecto address among To/Cc.
    Outgoing,
}

/// Sender authentication from the topmost trusted `Authentication-Results` (RFC 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Authenticated {
    Pass,
    Fail,
    #[default]
    None,
}

/// Everything the later stages need to know about one mail.
///
/// The public JSON of `classify` is [`Classified::report`]; the other fields are internal
/// (matching needs the text, the store needs the date and a content hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classified {
    /// `Message-ID` without angle brackets, if present.
    pub message_id: Option<String>,
    pub kind: MailKind,
    pub direction: Option<Direction>,
    /// Lower-cased From address.
    pub sender: Option<String>,
    /// From display name, decoded.
    pub sender_name: Option<String>,
    /// Lower-cased To + Cc addresses, in header order, unique.
    pub recipients: Vec<String>,
    /// Decoded subject as written (decorations kept).
    pub subject: String,
    pub authenticated: Authenticated,
    pub spam_flagged: bool,
    /// Valid 사업자등록번호 as 10 digits, in order of appearance, unique.
    pub business_numbers: Vec<String>,
    pub mids: Vec<String>,
    /// Canonical card-company ids (`shinhan`, `kb`, …), in order of appearance, unique.
    pub card_companies: Vec<String>,
    /// The `Date:` header, when present and parseable.
    pub date: Option<DateTime<FixedOffset>>,
    /// Decoded subject + body text (HTML reduced to text), capped in length; used to find a
    /// merchant's company name. Never logged.
    pub text: String,
    /// Hex SHA-256 of the raw bytes: the identity of a mail without a Message-ID.
    pub content_hash: String,
    /// The mail carries our own `X-Hecto-Watch` header: the ingest ignores it.
    pub self_sent: bool,
    /// The parser could not make sense of the bytes (or panicked); everything else is empty.
    pub unparseable: bool,
}

impl Classified {
    /// The identity used for de-duplication: the Message-ID, else the content hash.
    pub fn identity(&self) -> String {
        match &self.message_id {
            Some(id) if !id.is_empty() => format!("mid:{id}"),
            _ => format!("sha256:{}", self.content_hash),
        }
    }
}

/// Classify one mail. Never panics, whatever the bytes.
pub fn classify(raw: &[u8], rules: &Rules) -> Classified {
    // Placeholder until the classifier lands: everything is "unparseable".
    let _ = rules;
    use sha2::Digest;
    Classified {
        message_id: None,
        kind: MailKind::NotHecto,
        direction: None,
        sender: None,
        sender_name: None,
        recipients: Vec::new(),
        subject: String::new(),
        authenticated: Authenticated::None,
        spam_flagged: false,
        business_numbers: Vec::new(),
        mids: Vec::new(),
        card_companies: Vec::new(),
        date: None,
        text: String::new(),
        content_hash: hex::encode(sha2::Sha256::digest(raw)),
        self_sent: false,
        unparseable: true,
    }
}

/// Placeholder until the classifier lands (see the `mail` branch).
pub fn valid_business_number(digits: &str) -> bool {
    let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 10 || digits.len() != 10 {
        return false;
    }
    let w = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let mut sum: u32 = d.iter().zip(w).map(|(a, b)| a * b).sum();
    sum += d[8] * 5 / 10;
    (10 - sum % 10) % 10 == d[9]
}

/// The public JSON of `classify` (SPEC §3), fields in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyReport {
    pub file: String,
    pub message_id: Option<String>,
    pub kind: MailKind,
    pub direction: Option<Direction>,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub subject: String,
    pub authenticated: Authenticated,
    pub spam_flagged: bool,
    pub business_numbers: Vec<String>,
    pub mids: Vec<String>,
    pub card_companies: Vec<String>,
}

impl Classified {
    pub fn report(&self, file: &str) -> ClassifyReport {
        ClassifyReport {
            file: file.to_owned(),
            message_id: self.message_id.clone(),
            kind: self.kind,
            direction: self.direction,
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            subject: self.subject.clone(),
            authenticated: self.authenticated,
            spam_flagged: self.spam_flagged,
            business_numbers: self.business_numbers.clone(),
            mids: self.mids.clone(),
            card_companies: self.card_companies.clone(),
        }
    }
}
