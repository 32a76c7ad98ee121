//! Outbox entry → subject, plain text and HTML ([`Rendered`]), from the templates of
//! `config/templates/` (built in with `include_str!`, overridable file by file from
//! `[reminders] templates_dir`). Pure: the facts were captured when the entry was enqueued, so a
//! retry days later sends the same words.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, Datelike, Utc, Weekday};
use chrono_tz::Asia::Seoul;
use sha2::Digest;

use super::template::{Escape, Template};
use crate::config::{Language, Reminders};
use crate::store::{NoticeFacts, OutboxEntry, Rendered};

const REMINDER_VARS: &[&str] = &[
    "merchant_name",
    "merchant_id",
    "n",
    "max_reminders",
    "since",
    "due",
    "business_days_waited",
    "days_waited",
    "spam_folders",
    "hecto_contact",
    "portone_contact",
];
/// What the guidance reminder to a contact whose mailbox the daemon reads has besides
/// [`REMINDER_VARS`] (it names the folders read instead of `spam_folders`).
const WATCHED_EXTRA_VARS: &[&str] = &["contact_address", "checked_folders", "checked_spam_folders", "checked_at"];
const ALERT_VARS: &[&str] = &["account", "since", "recovered_at", "last_error", "trouble", "fix", "down_for"];
const SPAM_VARS: &[&str] = &[
    "merchant_name",
    "merchant_id",
    "account",
    "folder",
    "mail_subject",
    "mail_date",
    "mail_message_id",
    "moved_note",
    "hecto_contact",
    "portone_contact",
];
const OPERATOR_VARS: &[&str] =
    &["reason_text", "detail", "account", "folder", "sender", "mail_subject", "kind", "mail_message_id", "candidates"];

/// The built-in templates: (name, language, text, html).
const BUILTIN: &[(&str, &str, &str, &str)] = &[
    (
        "guidance_reminder",
        "ko",
        include_str!("../../config/templates/guidance_reminder.ko.txt"),
        include_str!("../../config/templates/guidance_reminder.ko.html"),
    ),
    (
        "guidance_reminder",
        "en",
        include_str!("../../config/templates/guidance_reminder.en.txt"),
        include_str!("../../config/templates/guidance_reminder.en.html"),
    ),
    (
        "guidance_reminder_watched",
        "ko",
        include_str!("../../config/templates/guidance_reminder_watched.ko.txt"),
        include_str!("../../config/templates/guidance_reminder_watched.ko.html"),
    ),
    (
        "guidance_reminder_watched",
        "en",
        include_str!("../../config/templates/guidance_reminder_watched.en.txt"),
        include_str!("../../config/templates/guidance_reminder_watched.en.html"),
    ),
    (
        "account_down",
        "ko",
        include_str!("../../config/templates/account_down.ko.txt"),
        include_str!("../../config/templates/account_down.ko.html"),
    ),
    (
        "account_down",
        "en",
        include_str!("../../config/templates/account_down.en.txt"),
        include_str!("../../config/templates/account_down.en.html"),
    ),
    (
        "account_up",
        "ko",
        include_str!("../../config/templates/account_up.ko.txt"),
        include_str!("../../config/templates/account_up.ko.html"),
    ),
    (
        "account_up",
        "en",
        include_str!("../../config/templates/account_up.en.txt"),
        include_str!("../../config/templates/account_up.en.html"),
    ),
    (
        "card_review_reminder",
        "ko",
        include_str!("../../config/templates/card_review_reminder.ko.txt"),
        include_str!("../../config/templates/card_review_reminder.ko.html"),
    ),
    (
        "card_review_reminder",
        "en",
        include_str!("../../config/templates/card_review_reminder.en.txt"),
        include_str!("../../config/templates/card_review_reminder.en.html"),
    ),
    (
        "spam_notice",
        "ko",
        include_str!("../../config/templates/spam_notice.ko.txt"),
        include_str!("../../config/templates/spam_notice.ko.html"),
    ),
    (
        "spam_notice",
        "en",
        include_str!("../../config/templates/spam_notice.en.txt"),
        include_str!("../../config/templates/spam_notice.en.html"),
    ),
    (
        "operator_notice",
        "ko",
        include_str!("../../config/templates/operator_notice.ko.txt"),
        include_str!("../../config/templates/operator_notice.ko.html"),
    ),
    (
        "operator_notice",
        "en",
        include_str!("../../config/templates/operator_notice.en.txt"),
        include_str!("../../config/templates/operator_notice.en.html"),
    ),
];

/// One message's templates.
#[derive(Debug, Clone)]
struct MessageTemplates {
    subject: Template,
    text: Template,
    html: Template,
}

/// Everything needed to render any outbox entry, loaded and checked once.
#[derive(Debug, Clone)]
pub struct Renderer {
    language: Language,
    max_reminders: u32,
    hecto_contact: String,
    portone_contact: String,
    templates: BTreeMap<&'static str, MessageTemplates>,
    /// The same for the other language, for merchants whose own language differs from
    /// `[reminders] language` (`merchant edit --language`).
    other: Option<Box<Renderer>>,
}

fn lang_code(l: Language) -> &'static str {
    match l {
        Language::Ko => "ko",
        Language::En => "en",
    }
}

/// Split `subject: …` off the first line of a `.txt` template.
fn split_subject<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let first = first.trim_end_matches('\r');
    let Some(subject) = first.get(..8).filter(|p| p.eq_ignore_ascii_case("subject:")).map(|_| first[8..].trim()) else {
        return Err(format!("{what}: the first line must be the subject (`subject: …`), found {first:?}"));
    };
    // One blank line separates the subject from the body.
    let body = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')).unwrap_or(rest);
    Ok((subject, body))
}

impl Renderer {
    /// Load the templates of both languages (`[reminders] language` first), overriding built-ins
    /// with files found in `templates_dir`. Reports every broken template at once.
    pub fn new(r: &Reminders) -> anyhow::Result<Renderer> {
        let other = match r.language {
            Language::Ko => Language::En,
            Language::En => Language::Ko,
        };
        let (main, second) = (Renderer::single(r), Renderer::single(&Reminders { language: other, ..r.clone() }));
        match (main, second) {
            (Ok(mut main), Ok(second)) => {
                main.other = Some(Box::new(second));
                Ok(main)
            }
            (Err(a), Err(b)) => bail!("{a:#}; {b:#}"),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// The templates of `r.language` alone.
    fn single(r: &Reminders) -> anyhow::Result<Renderer> {
        let lang = lang_code(r.language);
        let mut problems = Vec::new();
        let mut templates = BTreeMap::new();
        for (name, l, text, html) in BUILTIN {
            if *l != lang {
                continue;
            }
            let watched: Vec<&str>;
            let vars = match *name {
                "spam_notice" => SPAM_VARS,
                "operator_notice" => OPERATOR_VARS,
                "guidance_reminder_watched" => {
                    watched = REMINDER_VARS.iter().chain(WATCHED_EXTRA_VARS).copied().collect();
                    &watched
                }
                "account_down" | "account_up" => ALERT_VARS,
                _ => REMINDER_VARS,
            };
            let load = |ext: &str, builtin: &'static str| -> Result<(String, String), String> {
                let file = format!("{name}.{lang}.{ext}");
                match &r.templates_dir {
                    Some(dir) => read_override(dir, &file).map(|o| match o {
                        Some(text) => (dir.join(&file).display().to_string(), text),
                        None => (format!("built-in {file}"), builtin.to_owned()),
                    }),
                    None => Ok((format!("built-in {file}"), builtin.to_owned())),
                }
            };
            let parsed = load("txt", text)
                .and_then(|(what, txt)| {
                    let (subject, body) = split_subject(&txt, &what)?;
                    Ok((Template::parse(subject, vars, &what)?, Template::parse(body, vars, &what)?))
                })
                .and_then(|(subject, text)| {
                    let (what, h) = load("html", html)?;
                    Ok(MessageTemplates { subject, text, html: Template::parse(&h, vars, &what)? })
                });
            match parsed {
                Ok(t) => {
                    templates.insert(*name, t);
                }
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            bail!("reminders.templates_dir: {}", problems.join("; "));
        }
        Ok(Renderer {
            language: r.language,
            max_reminders: r.max_reminders,
            hecto_contact: r.hecto_contact.clone(),
            portone_contact: r.portone_contact.clone(),
            templates,
            other: None,
        })
    }

    /// Render an entry. `from_domain` is the domain of `[smtp] from`, for the Message-ID.
    pub fn render(&self, entry: &OutboxEntry, from_domain: &str) -> anyhow::Result<Rendered> {
        if let (Some(l), Some(other)) = (entry.language, &self.other) {
            if l != self.language {
                return other.render(entry, from_domain);
            }
        }
        let ko = self.language == Language::Ko;
        let mut v: BTreeMap<&str, String> = BTreeMap::new();
        let merchant_id = entry.merchant.clone().unwrap_or_default();
        let name = match &entry.facts {
            NoticeFacts::Reminder {
                merchant_name,
                window,
                since,
                due,
                business_days_waited,
                days_waited,
                spam_folders,
                checked,
            } => {
                v.insert("merchant_name", merchant_name.clone());
                v.insert("merchant_id", merchant_id);
                v.insert("n", entry.n.to_string());
                v.insert("max_reminders", self.max_reminders.max(entry.n).to_string());
                v.insert("since", self.date(*since));
                v.insert("due", self.date(*due));
                v.insert("business_days_waited", business_days_waited.to_string());
                v.insert("days_waited", days_waited.to_string());
                v.insert("spam_folders", spam_folder_words(spam_folders, ko));
                v.insert("hecto_contact", self.hecto_contact.clone());
                v.insert("portone_contact", self.portone_contact.clone());
                match (window.as_str(), checked) {
                    ("guidance", Some(c)) => {
                        v.insert("contact_address", c.address.clone());
                        v.insert("checked_folders", c.folders.join(", "));
                        v.insert("checked_spam_folders", c.spam_folders.join(", "));
                        v.insert("checked_at", self.time(c.checked_at));
                        "guidance_reminder_watched"
                    }
                    ("guidance", None) => "guidance_reminder",
                    ("card_review", _) => "card_review_reminder",
                    (other, _) => bail!("outbox entry {}: unknown window {other:?}", entry.key),
                }
            }
            NoticeFacts::SpamNotice {
                merchant_name,
                account,
                folder,
                subject,
                mail_date,
                message_id,
                moved_to_inbox,
                ..
            } => {
                v.insert("merchant_name", merchant_name.clone());
                v.insert("merchant_id", merchant_id);
                v.insert("account", account.clone());
                v.insert("folder", folder.clone());
                v.insert("mail_subject", subject.clone());
                v.insert("mail_date", self.time(*mail_date));
                v.insert("mail_message_id", or_dash(message_id.as_deref()));
                let moved = match (moved_to_inbox, ko) {
                    (true, true) => "이 메일은 받은편지함(INBOX)으로 옮겨 두었습니다.",
                    (true, false) => "The mail has been moved to the INBOX.",
                    (false, true) => "메일은 스팸 폴더에 그대로 있습니다.",
                    (false, false) => "The mail is still in the spam folder.",
                };
                v.insert("moved_note", moved.to_owned());
                v.insert("hecto_contact", self.hecto_contact.clone());
                v.insert("portone_contact", self.portone_contact.clone());
                "spam_notice"
            }
            NoticeFacts::OperatorNotice {
                reason,
                detail,
                account,
                folder,
                subject,
                sender,
                message_id,
                kind,
                candidates,
            } => {
                let reason_text = match (reason.as_str(), ko) {
                    ("suspicious", true) => "헥토파이낸셜을 사칭한 의심 메일",
                    ("suspicious", false) => "Suspicious mail claiming to be from Hecto",
                    (_, true) => "가맹점을 정할 수 없는 헥토 메일",
                    (_, false) => "Hecto mail no single merchant could be found for",
                };
                v.insert("reason_text", reason_text.to_owned());
                v.insert("detail", detail.clone());
                v.insert("account", account.clone());
                v.insert("folder", folder.clone());
                v.insert("sender", or_dash(sender.as_deref()));
                v.insert("mail_subject", subject.clone());
                v.insert("kind", kind.clone());
                v.insert("mail_message_id", or_dash(message_id.as_deref()));
                v.insert("candidates", if candidates.is_empty() { "-".to_owned() } else { candidates.join(", ") });
                "operator_notice"
            }
            NoticeFacts::AccountAlert { account, since, recovered_at, last_error, trouble, fix } => {
                v.insert("account", account.clone());
                v.insert("since", self.time(*since));
                v.insert("recovered_at", recovered_at.map(|t| self.time(t)).unwrap_or_else(|| "-".into()));
                v.insert("last_error", last_error.clone());
                v.insert("trouble", trouble.replace('_', " "));
                v.insert("fix", fix.clone());
                let until = recovered_at.unwrap_or(entry.created_at);
                v.insert("down_for", duration_words((until - *since).num_seconds().max(0), ko));
                if recovered_at.is_some() {
                    "account_up"
                } else {
                    "account_down"
                }
            }
        };
        let Some(t) = self.templates.get(name) else {
            bail!("no template {name} loaded");
        };
        // A subject is one line: a value with a line break must not start a new header.
        let subject = t
            .subject
            .render(&v, Escape::None)
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Rendered {
            subject,
            text: t.text.render(&v, Escape::None),
            html: t.html.render(&v, Escape::Html),
            message_id: message_id(&entry.key, from_domain),
        })
    }

    /// `2027-02-05 (금)` / `Fri 2027-02-05`, in Asia/Seoul.
    fn date(&self, t: DateTime<Utc>) -> String {
        let d = t.with_timezone(&Seoul).date_naive();
        match self.language {
            Language::Ko => format!("{} ({})", d.format("%Y-%m-%d"), weekday_ko(d.weekday())),
            Language::En => d.format("%a %Y-%m-%d").to_string(),
        }
    }

    /// `2027-02-05 (금) 10:00 KST`.
    fn time(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&Seoul);
        format!("{} {} KST", self.date(t), local.format("%H:%M"))
    }
}

/// `2시간 5분` / `2 h 5 min` (seconds below a minute shown as such).
fn duration_words(secs: i64, ko: bool) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let units: [(i64, &str, &str); 4] = [(d, "일", " d"), (h, "시간", " h"), (m, "분", " min"), (s, "초", " s")];
    let parts: Vec<String> = units
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .take(2)
        .map(|(n, k, e)| if ko { format!("{n}{k}") } else { format!("{n}{e}") })
        .collect();
    if parts.is_empty() {
        if ko {
            "0초".into()
        } else {
            "0 s".into()
        }
    } else {
        parts.join(" ")
    }
}

fn read_override(dir: &Path, file: &str) -> Result<Option<String>, String> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

fn weekday_ko(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "월",
        Weekday::Tue => "화",
        Weekday::Wed => "수",
        Weekday::Thu => "목",
        Weekday::Fri => "금",
        Weekday::Sat => "토",
        Weekday::Sun => "일",
    }
}

/// The spam folders the daemon watches, or a generic wording when it knows none.
pub fn spam_folder_words(folders: &[String], ko: bool) -> String {
    if folders.is_empty() {
        if ko {
            "스팸메일함 (Junk)".to_owned()
        } else {
            "your spam folder (Junk)".to_owned()
        }
    } else {
        folders.join(", ")
    }
}

/// The deterministic Message-ID of an outbox key (RFC 5322 §3.6.4), so a retry or a resend after a
/// crash carries the same id and the recipient's client can de-duplicate:
/// `<{sha256(key) hex, 32 chars}@hecto-watch.{from domain}>`.
pub fn message_id(key: &str, from_domain: &str) -> String {
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let domain = if from_domain.is_empty() { "localhost" } else { from_domain };
    format!("<{}@hecto-watch.{domain}>", &hash[..32])
}

/// Parse-check the templates of a configuration (`check-config`).
pub fn check(r: &Reminders) -> anyhow::Result<()> {
    Renderer::new(r).map(|_| ()).context("templates")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NoticeKind, OutboxEntry};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn guidance(spam: &[&str]) -> OutboxEntry {
        OutboxEntry::pending(
            "reminder/acme/guidance@20270205/001".into(),
            NoticeKind::Reminder,
            Some("acme".into()),
            "guidance@20270205".into(),
            1,
            NoticeFacts::Reminder {
                merchant_name: "주식회사 <에이씨미> & Co".into(),
                window: "guidance".into(),
                since: t("2027-02-05T10:00:00+09:00"),
                due: t("2027-02-12T23:59:59+09:00"),
                business_days_waited: 4,
                days_waited: 10,
                spam_folders: spam.iter().map(|s| (*s).to_owned()).collect(),
                checked: None,
            },
            t("2027-02-15T09:00:00+09:00"),
        )
        .to_contacts(&["pay@acme.test".into()], &["ops@example.test".into()])
    }

    fn card_review() -> OutboxEntry {
        let mut e = guidance(&[]);
        e.key = "reminder/acme/card_review@20261201/001".into();
        e.facts = NoticeFacts::Reminder {
            merchant_name: "에이씨미".into(),
            window: "card_review".into(),
            since: t("2026-12-01T15:00:00+09:00"),
            due: t("2026-12-15T23:59:59+09:00"),
            business_days_waited: 11,
            days_waited: 15,
            spam_folders: vec![],
            checked: None,
        };
        e
    }

    fn renderer(lang: Language) -> Renderer {
        Renderer::new(&Reminders { language: lang, ..Reminders::default() }).unwrap()
    }

    fn watched_guidance() -> OutboxEntry {
        let mut e = guidance(&["contracts: Junk"]);
        if let NoticeFacts::Reminder { checked, .. } = &mut e.facts {
            *checked = Some(crate::store::CheckedMailbox {
                account: "contracts".into(),
                address: "pay@acme.test".into(),
                folders: vec!["INBOX".into(), "스팸메일함".into(), "Sent Messages".into()],
                spam_folders: vec!["스팸메일함".into()],
                checked_at: t("2027-02-15T08:59:00+09:00"),
            });
        }
        e
    }

    #[test]
    fn a_watched_mailbox_gets_what_was_checked_not_a_request_to_search_the_spam_folder() {
        for lang in [Language::Ko, Language::En] {
            let r = renderer(lang).render(&watched_guidance(), "example.test").unwrap();
            let ko = lang == Language::Ko;
            assert!(r.text.contains("INBOX, 스팸메일함, Sent Messages"), "{}", r.text);
            assert!(r.text.contains("스팸메일함"), "{}", r.text);
            assert!(r.text.contains("pay@acme.test"), "{}", r.text);
            assert!(r.text.contains("08:59 KST"), "when it was checked: {}", r.text);
            // It says nothing from Hecto is there and that nobody needs to search the spam folder.
            if ko {
                assert!(r.text.contains("헥토파이낸셜의 메일은 아직 없습니다"), "{}", r.text);
                assert!(r.text.contains("스팸메일함을 따로 찾아보실 필요는 없습니다"), "{}", r.text);
                assert!(!r.subject.contains("찾아 주세요"), "{}", r.subject);
            } else {
                assert!(r.text.contains("nothing from Hecto\nFinancial is there yet"), "{}", r.text);
                assert!(!r.subject.contains("look for"), "{}", r.subject);
            }
            // The contact facts of SPEC §5 by default.
            assert!(r.text.contains("1688-5130") && r.text.contains("info_F@hecto.co.kr"), "{}", r.text);
            assert!(r.text.contains("cs@portone.io"), "{}", r.text);
            assert!(r.html.contains("스팸메일함"), "{}", r.html);
        }
        // Not watched: the spam-folder request, with the same contacts.
        let r = renderer(Language::Ko).render(&guidance(&["contracts: Junk"]), "example.test").unwrap();
        assert!(r.text.contains("다음 스팸 폴더를 확인해 주세요"), "{}", r.text);
        assert!(r.text.contains("1688-5130"), "{}", r.text);
    }

    #[test]
    fn an_account_alert_names_the_account_since_the_error_and_the_fix() {
        let since = t("2027-02-10T09:00:00+09:00");
        let mut e = OutboxEntry::pending(
            "alert/shop/20270210T000000Z/down".into(),
            NoticeKind::OperatorNotice,
            None,
            "account_down".into(),
            1,
            NoticeFacts::AccountAlert {
                account: "shop".into(),
                since,
                recovered_at: None,
                last_error: "login as \"u\" failed: NO [AUTHENTICATIONFAILED]".into(),
                trouble: "login_refused".into(),
                fix: "wrong username or password".into(),
            },
            t("2027-02-10T11:05:00+09:00"),
        );
        let r = renderer(Language::Ko).render(&e, "example.test").unwrap();
        assert!(r.subject.contains("shop") && r.subject.contains("login refused"), "{}", r.subject);
        assert!(r.text.contains("2027-02-10 (수) 09:00 KST"), "{}", r.text);
        assert!(r.text.contains("2시간 5분째"), "{}", r.text);
        assert!(r.text.contains("AUTHENTICATIONFAILED") && r.text.contains("wrong username or password"), "{}", r.text);
        if let NoticeFacts::AccountAlert { recovered_at, .. } = &mut e.facts {
            *recovered_at = Some(t("2027-02-10T11:30:00+09:00"));
        }
        let r = renderer(Language::En).render(&e, "example.test").unwrap();
        assert!(r.subject.contains("can be read again"), "{}", r.subject);
        assert!(r.text.contains("2 h 30 min"), "{}", r.text);
    }

    #[test]
    fn korean_guidance_reminder_names_days_spam_folders_and_contacts() {
        let r = renderer(Language::Ko).render(&guidance(&["Junk", "스팸메일함"]), "example.test");
        let r = r.unwrap();
        assert!(r.subject.contains("헥토파이낸셜 계약 안내"), "{}", r.subject);
        assert!(r.subject.contains("주식회사 <에이씨미> & Co"), "{}", r.subject);
        assert!(r.subject.contains("(1/3)"), "{}", r.subject);
        assert!(!r.subject.contains('\n'));
        assert!(r.text.contains("영업일 기준 4일"), "{}", r.text);
        assert!(r.text.contains("Junk, 스팸메일함"), "{}", r.text);
        assert!(r.text.contains("2027-02-05 (금)"), "{}", r.text);
        assert!(r.text.contains("1688-5130, info_F@hecto.co.kr"), "{}", r.text);
        assert!(r.text.contains("PortOne: cs@portone.io"), "{}", r.text);
        assert!(r.html.contains("영업일 기준 4일"));
        assert!(r.html.contains("Junk, 스팸메일함"));
    }

    #[test]
    fn an_unknown_spam_folder_falls_back_to_the_generic_wording() {
        let ko = renderer(Language::Ko).render(&guidance(&[]), "example.test").unwrap();
        assert!(ko.text.contains("스팸메일함 (Junk)"), "{}", ko.text);
        let en = renderer(Language::En).render(&guidance(&[]), "example.test").unwrap();
        assert!(en.text.contains("your spam folder (Junk)"), "{}", en.text);
    }

    #[test]
    fn english_guidance_reminder_is_english() {
        let r = renderer(Language::En).render(&guidance(&["Junk"]), "example.test").unwrap();
        assert!(r.subject.starts_with("[Action needed]"), "{}", r.subject);
        assert!(r.text.contains("4 business days"), "{}", r.text);
        assert!(r.text.contains("Fri 2027-02-05"), "{}", r.text);
        assert!(!r.text.contains("영업일"), "{}", r.text);
    }

    #[test]
    fn html_alternative_escapes_values_but_text_does_not() {
        let r = renderer(Language::Ko).render(&guidance(&[]), "example.test").unwrap();
        assert!(r.html.contains("주식회사 &lt;에이씨미&gt; &amp; Co"), "{}", r.html);
        assert!(!r.html.contains("<에이씨미>"));
        assert!(r.html.starts_with("<!DOCTYPE html>"));
        assert!(r.text.contains("주식회사 <에이씨미> & Co"));
    }

    #[test]
    fn card_review_reminder_says_when_and_about_two_weeks() {
        let ko = renderer(Language::Ko).render(&card_review(), "example.test").unwrap();
        assert!(ko.text.contains("2026-12-01 (화)"), "{}", ko.text);
        assert!(ko.text.contains("약 2주"), "{}", ko.text);
        assert!(ko.subject.contains("15일"), "{}", ko.subject);
        let en = renderer(Language::En).render(&card_review(), "example.test").unwrap();
        assert!(en.text.contains("about two weeks"), "{}", en.text);
        assert!(en.text.contains("Tue 2026-12-01"), "{}", en.text);
    }

    #[test]
    fn spam_and_operator_notices_render_their_facts() {
        let spam = OutboxEntry::pending(
            "spam/acme/0011223344556677".into(),
            NoticeKind::SpamNotice,
            Some("acme".into()),
            "spam".into(),
            1,
            NoticeFacts::SpamNotice {
                merchant_name: "에이씨미".into(),
                account: "contracts".into(),
                folder: "Junk".into(),
                subject: "[헥토파이낸셜] 계약 안내\r\nBcc: evil@example.net".into(),
                mail_date: t("2027-02-08T11:00:00+09:00"),
                message_id: Some("abc@hectofinancial.co.kr".into()),
                kind: "guidance".into(),
                moved_to_inbox: false,
            },
            t("2027-02-08T11:00:05+09:00"),
        );
        let r = renderer(Language::Ko).render(&spam, "example.test").unwrap();
        assert!(r.subject.contains("스팸"), "{}", r.subject);
        assert!(r.text.contains("contracts / Junk"), "{}", r.text);
        assert!(r.text.contains("2027-02-08 (월) 11:00 KST"), "{}", r.text);
        assert!(r.text.contains("[헥토파이낸셜] 계약 안내"), "the mail's subject: {}", r.text);
        assert!(r.text.contains("에이씨미"), "the merchant: {}", r.text);
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'), "a subject stays one line: {:?}", r.subject);
        let op = OutboxEntry::pending(
            "operator/suspicious/0011".into(),
            NoticeKind::OperatorNotice,
            None,
            "suspicious".into(),
            1,
            NoticeFacts::OperatorNotice {
                reason: "suspicious".into(),
                detail: "display name claims Hecto".into(),
                account: "contracts".into(),
                folder: "INBOX".into(),
                subject: "계약 안내\nBcc: evil@example.net".into(),
                sender: Some("x@hectofinancial-co.kr".into()),
                message_id: None,
                kind: "suspicious".into(),
                candidates: vec![],
            },
            t("2027-02-08T11:00:05+09:00"),
        );
        let r = renderer(Language::En).render(&op, "example.test").unwrap();
        assert!(r.subject.starts_with("[hecto-watch] Suspicious"), "{}", r.subject);
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'), "a subject stays one line: {:?}", r.subject);
        assert!(r.text.contains("x@hectofinancial-co.kr"));
    }

    #[test]
    fn message_id_is_deterministic_per_key() {
        let a = message_id("reminder/acme/guidance@20270205/001", "example.test");
        assert_eq!(a, message_id("reminder/acme/guidance@20270205/001", "example.test"));
        assert_ne!(a, message_id("reminder/acme/guidance@20270205/002", "example.test"));
        assert!(a.starts_with('<') && a.ends_with("@hecto-watch.example.test>"), "{a}");
        assert_eq!(a.len(), 1 + 32 + "@hecto-watch.example.test>".len());
        let r = renderer(Language::Ko).render(&guidance(&[]), "example.test").unwrap();
        assert_eq!(r.message_id, a);
    }

    #[test]
    fn templates_dir_overrides_single_files_and_bad_placeholders_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("guidance_reminder.ko.txt"),
            "subject: 확인해 주세요 {{merchant_name}}\n\n{{business_days_waited}}일 지남\n",
        )
        .unwrap();
        let r =
            Renderer::new(&Reminders { templates_dir: Some(dir.path().to_owned()), ..Reminders::default() }).unwrap();
        let out = r.render(&guidance(&[]), "example.test").unwrap();
        assert_eq!(out.subject, "확인해 주세요 주식회사 <에이씨미> & Co");
        assert_eq!(out.text, "4일 지남\n");
        assert!(out.html.contains("영업일 기준 4일"), "html stays built in");

        std::fs::write(dir.path().join("spam_notice.ko.html"), "<p>{{merchant_nam}}</p>").unwrap();
        std::fs::write(dir.path().join("operator_notice.ko.txt"), "no subject line\n").unwrap();
        let err = format!(
            "{:#}",
            Renderer::new(&Reminders { templates_dir: Some(dir.path().to_owned()), ..Reminders::default() })
                .unwrap_err()
        );
        assert!(err.contains("merchant_nam"), "{err}");
        assert!(err.contains("operator_notice.ko.txt"), "{err}");
    }
}
