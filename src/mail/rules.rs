//! The classification rules as data (SPEC §3): Hecto's domains, the sender-authentication policy
//! and the subject word lists. The defaults here are the same as `[rules]` in the shipped
//! `config/hecto-watch.toml` (a test keeps the two in step), so an operator can change them
//! without a rebuild.

use serde::{Deserialize, Serialize};

use super::Authenticated;

/// `sender_auth`: which authentication results may advance a merchant's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SenderAuth {
    /// Only `pass` advances state.
    Require,
    /// Anything but `fail` advances state.
    #[default]
    Prefer,
    /// Authentication is not looked at.
    Off,
}

impl SenderAuth {
    /// Whether a mail with this authentication result may change a merchant's stage.
    pub fn admits(self, auth: Authenticated) -> bool {
        match self {
            SenderAuth::Require => auth == Authenticated::Pass,
            SenderAuth::Prefer => auth != Authenticated::Fail,
            SenderAuth::Off => true,
        }
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// Subject word lists. A kind matches when the normalised subject (decorations removed, all
/// whitespace removed) satisfies its condition; kinds are tried in SPEC §3 order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubjectWords {
    /// Leading reply/forward prefixes removed before matching (case-insensitive, with `:`).
    pub prefixes: Vec<String>,
    /// Spam/external tags removed before matching; their presence also sets `spam_flagged`
    /// unless listed in `non_spam_tags`.
    pub tags: Vec<String>,
    /// Tags that are removed but do not mean "spam" (e.g. `[외부메일]`).
    pub non_spam_tags: Vec<String>,
    /// Display-name words that claim to be Hecto (case-insensitive).
    pub hecto_names: Vec<String>,
    /// `card_review_completed`: any of these, and no single card company named.
    pub card_review_completed: Vec<String>,
    /// `card_review_progress`: one of `review` and one of `progress_outcome`, and a card company.
    pub review: Vec<String>,
    pub progress_outcome: Vec<String>,
    /// `card_review_requested`: any of these.
    pub card_review_requested: Vec<String>,
    /// `contract_completed`: any of these.
    pub contract_completed: Vec<String>,
    /// `documents_request`: any of these.
    pub documents_request: Vec<String>,
    /// `guidance`: one of `guidance` together with one of `guidance_topic`.
    pub guidance: Vec<String>,
    pub guidance_topic: Vec<String>,
}

impl Default for SubjectWords {
    fn default() -> Self {
        SubjectWords {
            prefixes: strings(&["RE", "FW", "FWD", "회신", "전달", "답장"]),
            tags: strings(&["[SPAM]", "***SPAM***", "[스팸]", "[외부메일]", "[광고]"]),
            non_spam_tags: strings(&["[외부메일]"]),
            hecto_names: strings(&["헥토", "hecto", "세틀뱅크", "settlebank"]),
            card_review_completed: strings(&["심사완료"]),
            review: strings(&["심사"]),
            progress_outcome: strings(&["완료", "승인", "결과"]),
            card_review_requested: strings(&["심사요청"]),
            contract_completed: strings(&["계약완료"]),
            documents_request: strings(&["구비서류", "서류보완", "서류요청", "보증보험"]),
            guidance: strings(&["안내"]),
            guidance_topic: strings(&["계약", "가입", "신청"]),
        }
    }
}

/// `[rules]` of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// A mail is from Hecto when its From domain is one of these or a subdomain of one.
    pub hecto_domains: Vec<String>,
    pub sender_auth: SenderAuth,
    /// authserv-ids whose `Authentication-Results` are believed; empty: the topmost one.
    pub trusted_authserv_ids: Vec<String>,
    pub subject: SubjectWords,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            hecto_domains: strings(&["hectofinancial.co.kr", "hecto.co.kr", "settlebank.co.kr"]),
            sender_auth: SenderAuth::default(),
            trusted_authserv_ids: Vec::new(),
            subject: SubjectWords::default(),
        }
    }
}

impl Rules {
    /// Problems with the rules, each prefixed with its key path under `rules.`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.hecto_domains.is_empty() {
            problems.push("rules.hecto_domains: must name at least one domain".to_owned());
        }
        for (i, d) in self.hecto_domains.iter().enumerate() {
            let ok = !d.is_empty()
                && d.contains('.')
                && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                problems.push(format!(
                    "rules.hecto_domains[{i}]: {d:?} is not a domain name like \"hectofinancial.co.kr\""
                ));
            }
        }
        let lists: [(&str, &Vec<String>); 8] = [
            ("card_review_completed", &self.subject.card_review_completed),
            ("review", &self.subject.review),
            ("progress_outcome", &self.subject.progress_outcome),
            ("card_review_requested", &self.subject.card_review_requested),
            ("contract_completed", &self.subject.contract_completed),
            ("documents_request", &self.subject.documents_request),
            ("guidance", &self.subject.guidance),
            ("guidance_topic", &self.subject.guidance_topic),
        ];
        for (name, list) in lists {
            if list.iter().any(|w| w.trim().is_empty()) {
                problems.push(format!("rules.subject.{name}: contains an empty word"));
            }
        }
        problems
    }

    /// Whether `domain` (lower-case) is a Hecto domain or a subdomain of one.
    pub fn is_hecto_domain(&self, domain: &str) -> bool {
        // Called for the sender and every recipient of every mail: compare in place rather
        // than lower-casing copies.
        let domain = domain.trim_end_matches('.').as_bytes();
        self.hecto_domains.iter().any(|h| {
            let h = h.trim_end_matches('.').as_bytes();
            if h.is_empty() || domain.len() < h.len() {
                return false;
            }
            let split = domain.len() - h.len();
            domain[split..].eq_ignore_ascii_case(h) && (split == 0 || domain[split - 1] == b'.')
        })
    }
}
