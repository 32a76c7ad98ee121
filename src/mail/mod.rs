//! `mail`: raw RFC 5322 bytes → [`Classified`]. Second stage of the flow (imap → **mail** → merchant).
//!
//! Pure functions of `(bytes, rules)`: no I/O, no clock, no sled, no tokio. Whatever the bytes,
//! [`classify`] returns; a panic inside the parser dependency is caught and reported as an
//! unparseable mail rather than taking the daemon down. Work is capped (the first
//! `MAX_TEXT_PARTS` body parts, `SCAN_LIMIT` bytes of text) so a huge or deeply nested mail costs
//! no more than mail-parser's own pass over it.
//!
//! Inside:
//! - `charset`: rewrites CP949 charset labels mail-parser does not know (`cp949`, `ms949` …);
//! - mail-parser parses (headers `classify` does not read are skipped, not decoded);
//! - [`auth_results`]: `Authentication-Results` (RFC 8601) → `pass` / `fail` / `none`;
//! - `html`: HTML-only bodies → text that keeps table cells apart;
//! - `extract`: 사업자등록번호, MIDs, card companies from subject + body;
//! - `subject`: decorations (`RE:`, `[SPAM]` …) stripped, then the kind rules of SPEC §3.
//!
//! Readings of SPEC §3 made here (see the functions for the reasons):
//! - `card_review_completed` needs a subject naming *no* card company; one or several named is
//!   `card_review_progress`. The progress rule takes the company from the subject, else the body.
//! - `authenticated = fail` when dmarc/dkim/spf fail and no *aligned* pass exists (a `dkim=pass`
//!   for another domain next to `dmarc=fail` is a spoof, not a pass).
//! - `suspicious` follows the SPEC literally, so a merchant's own outgoing mail whose display
//!   name mentions Hecto ("헥토 문의 <pay@merchant>") is suspicious too.

pub mod auth_results;
mod charset;
mod extract;
mod html;
pub mod prefilter;
pub mod rules;
mod subject;

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use mail_parser::{HeaderName, MessageParser, PartType};
use serde::{Deserialize, Serialize};
use sha2::Digest;

pub use extract::valid_business_number;
pub use rules::{Rules, SenderAuth, SubjectWords};

/// The header hecto-watch puts on the mail it sends (`notify` writes it): mail carrying it is
/// our own and never advances a merchant.
pub const SELF_HEADER: &str = "X-Hecto-Watch";

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
    /// Hecto's and PortOne's public test MIDs (`nxca_jt_il`, `portone1`, …): shared by everyone,
    /// they never identify a merchant (SPEC §3).
    pub test_mids: Vec<String>,
    /// Canonical card-company ids (`shinhan`, `kb`, …) named in subject or body, in order of
    /// appearance, unique.
    pub card_companies: Vec<String>,
    /// The card companies named in the subject alone, in order. `card_review_progress` mails
    /// record approvals for these: a body often lists every company ("타 카드사 심사는 진행
    /// 중입니다"), so `card_companies` says which companies a mail *mentions*, this field which
    /// ones it is *about*. Falls back to nothing when the subject names none.
    #[serde(default)]
    pub subject_card_companies: Vec<String>,
    /// The `Date:` header, when present and parseable.
    pub date: Option<DateTime<FixedOffset>>,
    /// Decoded subject + body text (HTML reduced to text), capped in length; used to find a
    /// merchant's company name. Never logged.
    pub text: String,
    /// Hex SHA-256 of the raw bytes: the identity of a mail without a Message-ID, and computed
    /// for such a mail only (empty beside a Message-ID: hashing every mail cost a tenth of
    /// `classify`, measured with `cargo bench --bench classify`).
    pub content_hash: String,
    /// The value of our own `X-Hecto-Watch` header (the outbox key it was sent under): the ingest
    /// ignores the mail, and takes it as proof of delivery (see `Store::confirm_delivered`).
    pub own_key: Option<String>,
    /// The parser could not make sense of the bytes (or panicked); everything else is empty.
    pub unparseable: bool,
}

impl Classified {
    /// Sent by hecto-watch itself (it carries our `X-Hecto-Watch` header).
    pub fn self_sent(&self) -> bool {
        self.own_key.is_some()
    }

    /// The identity used for de-duplication: the Message-ID, else the content hash.
    pub fn identity(&self) -> String {
        match &self.message_id {
            Some(id) if !id.is_empty() => format!("mid:{id}"),
            _ => format!("sha256:{}", self.content_hash),
        }
    }
}

/// One line of `hecto-watch classify --json`: exactly the SPEC §3 fields, in SPEC order.
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
    pub test_mids: Vec<String>,
    pub card_companies: Vec<String>,
}

impl Classified {
    /// The public JSON shape of this classification, for the file `file` (as the user named it).
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
            test_mids: self.test_mids.clone(),
            card_companies: self.card_companies.clone(),
        }
    }

    /// An unparseable mail: only the content hash is known.
    fn unparseable(content_hash: String) -> Classified {
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
            test_mids: Vec::new(),
            card_companies: Vec::new(),
            subject_card_companies: Vec::new(),
            date: None,
            text: String::new(),
            content_hash,
            own_key: None,
            unparseable: true,
        }
    }
}

/// Cap on the `text` field (company-name matching needs the first screens of a mail, not a novel).
pub const TEXT_LIMIT: usize = 64 * 1024;
/// Cap on the body text scanned for business numbers, MIDs and card companies.
const SCAN_LIMIT: usize = 256 * 1024;
/// At most this many body parts are looked at (a mail of 60 nested multiparts is not 60 bodies
/// worth reading).
const MAX_TEXT_PARTS: usize = 8;

/// The parser, built once. Only the headers `classify` reads are parsed into values; the rest
/// (notably `Received`, the costliest) are skipped but still listed with their offsets, which is
/// all we need for `Authentication-Results` and `X-Spam-*`.
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_date(HeaderName::Date)
        .header_text(HeaderName::Subject)
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_address(HeaderName::Cc)
        .header_id(HeaderName::MessageId)
        .default_header_ignore()
});

/// Classify one mail. Never panics, whatever the bytes: a panic inside mail-parser (or here) is
/// caught and the mail reported as unparseable.
pub fn classify(raw: &[u8], rules: &Rules) -> Classified {
    let hash = || hex::encode(sha2::Sha256::digest(raw));
    match catch_unwind(AssertUnwindSafe(|| analyse(raw, rules))) {
        Ok(Some(mut classified)) => {
            if classified.message_id.is_none() {
                classified.content_hash = hash();
            }
            classified
        }
        Ok(None) | Err(_) => Classified::unparseable(hash()),
    }
}

/// The raw value bytes of a header as text (unfolding is left to the consumers, which treat
/// CR/LF as white space).
/// The value of our own `X-Hecto-Watch` header in a header section (`FROM TO CC X-HECTO-WATCH`
/// of the header pass), without parsing the rest: the outbox key the message was sent under.
pub fn own_key(header: &[u8]) -> Option<String> {
    let name = SELF_HEADER.as_bytes();
    header.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.get(name.len()..)?;
        (line[..name.len()].eq_ignore_ascii_case(name) && rest.first() == Some(&b':'))
            .then(|| String::from_utf8_lossy(&rest[1..]).trim().to_owned())
            .filter(|k| !k.is_empty())
    })
}

fn raw_value<'m>(raw: &'m [u8], h: &mail_parser::Header<'_>) -> Cow<'m, str> {
    String::from_utf8_lossy(raw.get(h.offset_start as usize..h.offset_end as usize).unwrap_or_default())
}

fn other_name<'h>(h: &'h mail_parser::Header<'_>) -> Option<&'h str> {
    match &h.name {
        HeaderName::Other(name) => Some(name.as_ref()),
        _ => None,
    }
}

fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.')).filter(|d| !d.is_empty())
}

fn analyse(raw: &[u8], rules: &Rules) -> Option<Classified> {
    let headers_fixed = charset::utf8_headers(raw);
    let raw: &[u8] = &headers_fixed;
    // Charset labels mail-parser does not know decode as lossy UTF-8 (see `charset`). The usual
    // ones contain "949": a SIMD substring search decides whether to rewrite before parsing.
    // The rare others (uhc, euckr …) are caught after the parse, at the price of a second parse.
    if charset::may_contain_949_alias(raw) {
        if let Cow::Owned(fixed) = charset::normalise_labels(raw) {
            let message = PARSER.parse(&fixed[..])?;
            return examine(&message, &fixed, rules);
        }
    }
    let message = PARSER.parse(raw)?;
    if charset::has_unknown_cp949_label(&message, raw) {
        if let Cow::Owned(fixed) = charset::normalise_labels(raw) {
            let message = PARSER.parse(&fixed[..])?;
            return examine(&message, &fixed, rules);
        }
    }
    examine(&message, raw, rules)
}

/// Everything after parsing. `raw_msg` is the buffer `message` was parsed from.
fn examine(message: &mail_parser::Message<'_>, raw_msg: &[u8], rules: &Rules) -> Option<Classified> {
    let root = message.parts.first()?;
    if root.headers.is_empty() {
        return None;
    }

    // Headers. Root-part headers only: a forwarded mail's headers are not this mail's.
    let mut from = None;
    let mut recipients: Vec<String> = Vec::new();
    let mut auth_values: Vec<Cow<'_, str>> = Vec::new();
    let mut spam_header = false;
    let mut own_key = None;
    for h in &root.headers {
        match &h.name {
            HeaderName::From if from.is_none() => from = h.value.as_address().and_then(|a| a.first()),
            HeaderName::To | HeaderName::Cc => {
                for addr in h.value.as_address().into_iter().flat_map(|a| a.iter()) {
                    if let Some(a) = addr.address() {
                        let a = a.trim().to_lowercase();
                        if !a.is_empty() && !recipients.contains(&a) {
                            recipients.push(a);
                        }
                    }
                }
            }
            // mail-parser knows this header by name (not `Other`).
            HeaderName::AuthenticationResults => auth_values.push(raw_value(raw_msg, h)),
            _ => {
                let Some(name) = other_name(h) else { continue };
                if name.eq_ignore_ascii_case("X-Spam-Flag") {
                    spam_header |= raw_value(raw_msg, h).trim().eq_ignore_ascii_case("yes");
                } else if name.eq_ignore_ascii_case("X-Spam-Status") {
                    let v = raw_value(raw_msg, h);
                    spam_header |= v.trim_start().get(..3).is_some_and(|p| p.eq_ignore_ascii_case("yes"));
                } else if name.eq_ignore_ascii_case(SELF_HEADER) {
                    own_key = Some(raw_value(raw_msg, h).trim().to_owned());
                }
            }
        }
    }

    let sender = from.and_then(|a| a.address()).map(|a| a.trim().to_lowercase()).filter(|a| !a.is_empty());
    let sender_name = from.and_then(|a| a.name()).map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let from_domain = sender.as_deref().and_then(domain_of);
    let from_hecto = from_domain.is_some_and(|d| rules.is_hecto_domain(d));
    let direction = if from_hecto {
        Some(Direction::Incoming)
    } else if recipients.iter().filter_map(|r| domain_of(r)).any(|d| rules.is_hecto_domain(d)) {
        Some(Direction::Outgoing)
    } else {
        None
    };
    let authenticated =
        auth_results::evaluate(auth_values.iter().map(|v| v.as_ref()), &rules.trusted_authserv_ids, from_domain);

    let subject = message.subject().unwrap_or("").trim().to_owned();
    let spam_flagged = spam_header || subject::has_spam_tag(&subject, &rules.subject);

    // Body text. Always extracted: `classify` must list a mail's numbers faithfully whatever its
    // kind, and the parse has already decoded the parts, so this is a copy and a few scans.
    let mut scan = String::with_capacity(subject.len() + 1 + 4096);
    scan.push_str(&subject);
    scan.push('\n');
    append_body_text(message, &mut scan);

    let subject_card_companies: Vec<String> =
        extract::card_companies(&subject).into_iter().map(str::to_owned).collect();
    let card_companies: Vec<String> = extract::card_companies(&scan).into_iter().map(str::to_owned).collect();
    let business_numbers = extract::business_numbers(&scan);
    let (mids, test_mids) = extract::split_test_mids(extract::mids(&scan));

    let claims_hecto = sender_name
        .as_deref()
        .is_some_and(|name| rules.subject.hecto_names.iter().any(|w| subject::contains_ci(name, w.trim())));
    // `sender_auth = "off"`: authentication is ignored entirely, so it makes nothing suspicious.
    let auth_failed = authenticated == Authenticated::Fail && rules.sender_auth != SenderAuth::Off;
    let kind = if (from_hecto && auth_failed) || (claims_hecto && !from_hecto) {
        MailKind::Suspicious
    } else if direction.is_none() {
        MailKind::NotHecto
    } else {
        let norm = subject::normalise(&subject, &rules.subject);
        let body_names_company = card_companies.len() > subject_card_companies.len();
        subject::kind_from_subject(&norm, &rules.subject, subject_card_companies.len(), body_names_company)
    };

    let mut text = scan;
    truncate_at_char(&mut text, TEXT_LIMIT);

    Some(Classified {
        message_id: message.message_id().map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()),
        kind,
        direction,
        sender,
        sender_name,
        recipients,
        subject,
        authenticated,
        spam_flagged,
        business_numbers,
        mids,
        test_mids,
        card_companies,
        subject_card_companies,
        date: message.date().and_then(to_chrono),
        text,
        // Filled in by `classify` when there is no Message-ID.
        content_hash: String::new(),
        own_key,
        unparseable: false,
    })
}

/// Appends the readable body to `out`: the text/plain parts mail-parser chose as the body, HTML
/// reduced to text where a part is HTML only. At most [`MAX_TEXT_PARTS`] parts and
/// [`SCAN_LIMIT`] bytes.
fn append_body_text(message: &mail_parser::Message<'_>, out: &mut String) {
    let start = out.len();
    for &id in message.text_body.iter().take(MAX_TEXT_PARTS) {
        let room = SCAN_LIMIT.saturating_sub(out.len() - start);
        if room == 0 {
            break;
        }
        match message.parts.get(id as usize).map(|p| &p.body) {
            Some(PartType::Text(text)) => {
                let t: &str = text.as_ref();
                out.push_str(&t[..floor_char_boundary(t, room)]);
            }
            Some(PartType::Html(h)) => out.push_str(&html::to_text(h, room)),
            _ => continue,
        }
        out.push('\n');
    }
}

fn truncate_at_char(s: &mut String, limit: usize) {
    s.truncate(floor_char_boundary(s, limit));
}

/// The largest char boundary of `s` at or below `i` (`str::floor_char_boundary` is unstable).
fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    (0..=i).rev().find(|&c| s.is_char_boundary(c)).unwrap_or(0)
}

/// mail-parser's date → chrono, `None` for impossible dates and offsets (the caller then falls
/// back to INTERNALDATE, SPEC §2).
fn to_chrono(d: &mail_parser::DateTime) -> Option<DateTime<FixedOffset>> {
    let offset_secs = i32::from(d.tz_hour) * 3600 + i32::from(d.tz_minute) * 60;
    let offset = FixedOffset::east_opt(if d.tz_before_gmt { -offset_secs } else { offset_secs })?;
    let naive = NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))?.and_hms_opt(
        u32::from(d.hour),
        u32::from(d.minute),
        u32::from(d.second),
    )?;
    offset.from_local_datetime(&naive).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HECTO_MAIL: &str = "From: =?utf-8?B?7Zel7Yag7YyM7J2064K47IWc?= <Contract@HectoFinancial.co.kr>\n\
To: a@merchant.example, \"B\" <B@Merchant.example>\nCc: a@merchant.example, c@other.example\n\
Subject: =?utf-8?B?W+2Xpe2GoO2MjOydtOuCuOyFnF0g6rOE7JW97JmE66OMIOyViOuCtA==?=\n\
Date: Tue, 14 May 2024 10:21:03 +0900\nMessage-ID: < id-1@hectofinancial.co.kr >\n\
X-Hecto-Watch: reminder\nContent-Type: text/plain; charset=utf-8\n\nMID: shop_0001\n";

    #[test]
    fn classify_fills_internal_fields() {
        let c = classify(HECTO_MAIL.as_bytes(), &Rules::default());
        assert!(!c.unparseable);
        assert_eq!(c.kind, MailKind::ContractCompleted);
        assert_eq!(c.sender.as_deref(), Some("contract@hectofinancial.co.kr"));
        assert_eq!(c.sender_name.as_deref(), Some("헥토파이낸셜"));
        assert_eq!(c.recipients, vec!["a@merchant.example", "b@merchant.example", "c@other.example"]);
        assert_eq!(c.message_id.as_deref(), Some("id-1@hectofinancial.co.kr"));
        assert!(c.self_sent());
        assert_eq!(c.own_key.as_deref(), Some("reminder"));
        assert_eq!(c.date.map(|d| d.to_rfc3339()).as_deref(), Some("2024-05-14T10:21:03+09:00"));
        assert_eq!(c.text, "[헥토파이낸셜] 계약완료 안내\nMID: shop_0001\n\n");
        assert_eq!(c.content_hash, "", "a mail with a Message-ID is not hashed");
        assert_eq!(c.identity(), "mid:id-1@hectofinancial.co.kr");
        let without = HECTO_MAIL.replace("Message-ID: < id-1@hectofinancial.co.kr >\n", "");
        assert_ne!(without, HECTO_MAIL);
        let c = classify(without.as_bytes(), &Rules::default());
        assert_eq!(c.content_hash, hex::encode(sha2::Sha256::digest(without.as_bytes())));
        assert_eq!(c.identity(), format!("sha256:{}", c.content_hash));
    }

    #[test]
    fn own_key_reads_our_header_from_the_header_pass_and_nothing_else() {
        let h = b"From: a@b.test\r\nx-hecto-watch:  spam/acme/00aa \r\nTo: c@d.test\r\n\r\n";
        assert_eq!(own_key(h).as_deref(), Some("spam/acme/00aa"));
        assert_eq!(own_key(b"X-Hecto-Watcher: x\r\nFrom: a@b.test\r\n"), None, "another header");
        assert_eq!(own_key(b"From: a@b.test\r\nX-Hecto-Watch:\r\n"), None, "empty");
        assert_eq!(own_key(b"From: X-Hecto-Watch: k\r\n"), None, "not at a line's start");
    }

    #[test]
    fn report_has_spec_fields_in_spec_order_with_nulls() {
        let c = classify(b"", &Rules::default());
        assert!(c.unparseable);
        let json = serde_json::to_string(&c.report("x.eml")).unwrap_or_default();
        assert_eq!(
            json,
            "{\"file\":\"x.eml\",\"message_id\":null,\"kind\":\"not_hecto\",\"direction\":null,\
             \"sender\":null,\"recipients\":[],\"subject\":\"\",\"authenticated\":\"none\",\
             \"spam_flagged\":false,\"business_numbers\":[],\"mids\":[],\"test_mids\":[],\"card_companies\":[]}"
        );
        assert!(c.identity().starts_with("sha256:"));
    }

    #[test]
    fn hecto_domain_check_rejects_lookalikes() {
        let r = Rules::default();
        for ok in [
            "hectofinancial.co.kr",
            "HECTOFINANCIAL.CO.KR",
            "mail.hectofinancial.co.kr",
            "hecto.co.kr",
            "settlebank.co.kr",
            "hectofinancial.co.kr.",
        ] {
            assert!(r.is_hecto_domain(ok), "{ok}");
        }
        for bad in [
            "hectofinancial-co.kr",
            "hectofinancial.co.kr.example.net",
            "hectofinancial.com",
            "xhectofinancial.co.kr",
            "co.kr",
            "",
        ] {
            assert!(!r.is_hecto_domain(bad), "{bad}");
        }
    }

    #[test]
    fn outgoing_needs_a_hecto_recipient_and_a_non_hecto_sender() {
        let r = Rules::default();
        let out = classify(b"From: a@merchant.example\nTo: x@y.example\nCc: contract@hecto.co.kr\nSubject: RE: \xea\xb5\xac\xeb\xb9\x84\xec\x84\x9c\xeb\xa5\x98\n\nhi\n", &r);
        assert_eq!(out.direction, Some(Direction::Outgoing));
        assert_eq!(out.kind, MailKind::DocumentsRequest);
        let none = classify(b"From: a@merchant.example\nTo: x@y.example\nSubject: hi\n\nhi\n", &r);
        assert_eq!(none.direction, None);
        assert_eq!(none.kind, MailKind::NotHecto);
    }

    #[test]
    fn operator_domains_and_trusted_authserv_ids_apply() {
        let r = Rules {
            hecto_domains: vec!["pg.example".to_owned()],
            trusted_authserv_ids: vec!["mx.ours.example".to_owned()],
            ..Rules::default()
        };
        let raw = b"Authentication-Results: evil.example; dmarc=pass\nAuthentication-Results: mx.ours.example; dkim=fail\nFrom: x@pg.example\nTo: m@m.example\nSubject: hi\n\nbody\n";
        let c = classify(raw, &r);
        assert_eq!(c.direction, Some(Direction::Incoming));
        assert_eq!(c.authenticated, Authenticated::Fail);
        assert_eq!(c.kind, MailKind::Suspicious);
    }

    #[test]
    fn sender_auth_off_ignores_authentication_and_spf_alone_never_fails() {
        let raw = b"Authentication-Results: mx.example; dmarc=fail header.from=hectofinancial.co.kr\nFrom: contract@hectofinancial.co.kr\nTo: m@m.example\nSubject: =?UTF-8?B?6rOE7JW9IOyViOuCtA==?=\n\nbody\n";
        let prefer = classify(raw, &Rules::default());
        assert_eq!(prefer.kind, MailKind::Suspicious);
        let off = classify(raw, &Rules { sender_auth: SenderAuth::Off, ..Rules::default() });
        assert_ne!(off.kind, MailKind::Suspicious, "off: authentication is ignored entirely");
        let spf = b"Authentication-Results: mx.example; spf=fail smtp.mailfrom=contract@hectofinancial.co.kr\nFrom: contract@hectofinancial.co.kr\nTo: m@m.example\nSubject: hi\n\nbody\n";
        let c = classify(spf, &Rules::default());
        assert_eq!((c.authenticated, c.kind), (Authenticated::None, MailKind::OtherHecto), "forwarding breaks SPF");
    }

    #[test]
    fn spam_headers_set_spam_flagged() {
        let r = Rules::default();
        let yes = classify(b"X-Spam-Status: Yes, score=9\nFrom: a@b.example\nSubject: s\n\nb\n", &r);
        assert!(yes.spam_flagged);
        let flag = classify(b"X-Spam-Flag: yes\nFrom: a@b.example\nSubject: s\n\nb\n", &r);
        assert!(flag.spam_flagged);
        let no = classify(b"X-Spam-Status: No, score=1\nX-Spam-Flag: NO\nFrom: a@b.example\nSubject: s\n\nb\n", &r);
        assert!(!no.spam_flagged);
    }

    #[test]
    fn absurd_date_is_none() {
        let c =
            classify(b"From: a@b.example\nDate: Thu, 31 Feb 2024 99:99:99 +9999\nSubject: s\n\nb\n", &Rules::default());
        assert_eq!(c.date, None);
    }
}
