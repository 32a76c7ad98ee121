//! A rendered outbox entry → a lettre [`Message`]: From, To, Cc, the deterministic Message-ID, the
//! `X-Hecto-Watch: <key>` header (so our own scan recognises and ignores it), and a
//! `multipart/alternative` body (plain text first, HTML second, RFC 2046 §5.1.4). lettre encodes a
//! non-ASCII subject as RFC 2047 UTF-8 words.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};

use crate::store::{OutboxEntry, Rendered};

/// The header that marks mail sent by hecto-watch; its value is the outbox key. The classifier
/// reads the same constant.
pub const HEADER: &str = crate::mail::SELF_HEADER;

/// Why a message could not be built (a permanent problem of the entry, not of the server).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no recipients (operator notices go to [reminders] operators — is that list empty?)")]
    NoRecipients,
    #[error("{0:?} is not a mail address")]
    BadAddress(String),
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// Build the message for `entry` as rendered.
pub fn build(entry: &OutboxEntry, rendered: &Rendered, from: &Mailbox) -> Result<Message, BuildError> {
    if entry.to.is_empty() {
        return Err(BuildError::NoRecipients);
    }
    let mailbox = |a: &String| -> Result<Mailbox, BuildError> {
        a.parse::<Mailbox>().map_err(|_| BuildError::BadAddress(a.clone()))
    };
    let mut b = Message::builder()
        .from(from.clone())
        .subject(rendered.subject.clone())
        .message_id(Some(rendered.message_id.clone()))
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(HEADER), entry.key.clone()));
    for to in &entry.to {
        b = b.to(mailbox(to)?);
    }
    for cc in &entry.cc {
        b = b.cc(mailbox(cc)?);
    }
    b.multipart(MultiPart::alternative_plain_html(rendered.text.clone(), rendered.html.clone()))
        .map_err(|e| BuildError::Build(e.to_string()))
}

/// A plain-text message that is not in the outbox: the one alert sent while the database cannot
/// be written (SPEC §9 Durability). Marked as ours like every other.
pub fn direct(from: &Mailbox, to: &[String], tag: &str, subject: &str, text: &str) -> Result<Message, BuildError> {
    if to.is_empty() {
        return Err(BuildError::NoRecipients);
    }
    let mut b = Message::builder()
        .from(from.clone())
        .subject(subject)
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(HEADER), tag.to_owned()));
    for a in to {
        b = b.to(a.parse::<Mailbox>().map_err(|_| BuildError::BadAddress(a.clone()))?);
    }
    b.body(text.to_owned()).map_err(|e| BuildError::Build(e.to_string()))
}

/// The domain of the From address (for the Message-ID).
pub fn domain(from: &Mailbox) -> String {
    from.email.domain().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NoticeFacts, NoticeKind};
    use chrono::Utc;

    fn entry() -> OutboxEntry {
        OutboxEntry::pending(
            "reminder/acme/guidance@20270205/001".into(),
            NoticeKind::Reminder,
            Some("acme".into()),
            "guidance@20270205".into(),
            1,
            NoticeFacts::Reminder {
                merchant_name: "에이씨미".into(),
                window: "guidance".into(),
                since: Utc::now(),
                due: Utc::now(),
                business_days_waited: 4,
                days_waited: 10,
                spam_folders: vec![],
                checked: None,
            },
            Utc::now(),
        )
        .to_contacts(&["pay@acme.test".into()], &["ops@example.test".into()])
    }

    fn rendered() -> Rendered {
        Rendered {
            subject: "[확인 요청] 에이씨미 — 계약 안내 메일".into(),
            text: "본문".into(),
            html: "<p>본문</p>".into(),
            message_id: "<0123@hecto-watch.example.test>".into(),
        }
    }

    #[test]
    fn message_carries_key_header_message_id_cc_and_an_encoded_korean_subject() {
        let from: Mailbox = "Hecto Watch <noreply@example.test>".parse().unwrap();
        let m = build(&entry(), &rendered(), &from).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("X-Hecto-Watch: reminder/acme/guidance@20270205/001\r\n"), "{raw}");
        assert!(raw.contains("Message-ID: <0123@hecto-watch.example.test>\r\n"), "{raw}");
        assert!(raw.contains("Cc: ops@example.test\r\n"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        let subject = raw.lines().find(|l| l.starts_with("Subject: ")).unwrap();
        assert!(subject.is_ascii() && subject.contains("=?utf-8?b?"), "{subject}");
        let bytes = m.formatted();
        let parsed = mail_parser::MessageParser::default().parse(bytes.as_slice()).unwrap();
        assert_eq!(parsed.subject(), Some(rendered().subject.as_str()));
        assert_eq!(parsed.body_text(0).as_deref(), Some("본문"));
        assert_eq!(parsed.body_html(0).as_deref(), Some("<p>본문</p>"));
    }

    #[test]
    fn empty_recipients_and_bad_addresses_are_refused() {
        let from: Mailbox = "noreply@example.test".parse().unwrap();
        let mut e = entry();
        e.to.clear();
        assert!(matches!(build(&e, &rendered(), &from), Err(BuildError::NoRecipients)));
        let mut e = entry();
        e.cc = vec!["not an address".into()];
        assert!(matches!(build(&e, &rendered(), &from), Err(BuildError::BadAddress(_))));
    }
}
