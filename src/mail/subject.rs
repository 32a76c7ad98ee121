//! Subject normalisation and the subject-based kinds of SPEC §3 (part of `mail`, between parsing
//! and the merchant stage machine).
//!
//! The word lists come from [`SubjectWords`] (configuration data, not code). Everything here is a
//! pure string function and must never panic on odd input (every slice index is on a char
//! boundary found by the standard library).

use super::rules::SubjectWords;
use super::MailKind;

/// Removes leading decorations — reply/forward prefixes (`RE:`, `Fwd:`, `RE[2]:`, `회신:` …) and
/// tags (`[SPAM]`, `***SPAM***`, `[외부메일]` …) in any order and any number — and returns the
/// rest, trimmed. Matching is case-insensitive. Whitespace inside the rest is kept.
pub fn strip_decorations<'s>(subject: &'s str, words: &SubjectWords) -> &'s str {
    let mut rest = subject.trim();
    loop {
        let before = rest.len();
        if let Some(r) = strip_prefix_word(rest, &words.prefixes) {
            rest = r.trim_start();
        }
        for tag in &words.tags {
            if let Some(r) = strip_ci(rest, tag) {
                rest = r.trim_start();
            }
        }
        if rest.len() == before {
            return rest;
        }
    }
}

/// The subject as the kind rules see it: decorations stripped, then every whitespace removed
/// (Hecto writes both "심사 완료" and "심사완료"), lower-cased so that operators' ASCII words
/// match regardless of case.
pub fn normalise(subject: &str, words: &SubjectWords) -> String {
    strip_decorations(subject, words).chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// Whether the subject carries a spam tag (a tag not listed in `non_spam_tags`), anywhere.
pub fn has_spam_tag(subject: &str, words: &SubjectWords) -> bool {
    words.tags.iter().any(|tag| {
        let tag = tag.trim();
        !tag.is_empty()
            && !words.non_spam_tags.iter().any(|n| n.trim().eq_ignore_ascii_case(tag))
            && contains_ci(subject, tag)
    })
}

/// `hay` contains `needle`, ASCII letters compared case-insensitively (tags and names are ASCII
/// or Hangul, which has no case). No allocation: this runs on every mail.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    find_ci(hay, needle).is_some()
}

/// Where `needle` first occurs in `hay`, ASCII letters compared case-insensitively; `None` for
/// an empty needle.
pub(super) fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let &first = n.first()?;
    // Only positions starting with the needle's first byte are compared in full.
    h.iter().enumerate().position(|(i, b)| {
        b.eq_ignore_ascii_case(&first) && h.get(i..i + n.len()).is_some_and(|w| w.eq_ignore_ascii_case(n))
    })
}

/// `s` without a leading `prefix` (case-insensitive), if it starts with it.
fn strip_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let prefix = prefix.trim();
    if prefix.is_empty() {
        return None;
    }
    let mut rest = s;
    for p in prefix.chars() {
        let mut it = rest.chars();
        let c = it.next()?;
        if !chars_eq_ci(c, p) {
            return None;
        }
        rest = it.as_str();
    }
    Some(rest)
}

fn chars_eq_ci(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

/// `RE:`, `Re :`, `RE[2]:`, `Re(3):`, `FW：` (full-width colon) — a listed word, an optional
/// bracketed counter, optional spaces, then a colon.
fn strip_prefix_word<'s>(s: &'s str, prefixes: &[String]) -> Option<&'s str> {
    prefixes.iter().find_map(|p| {
        let mut rest = strip_ci(s, p)?;
        let trimmed = rest.trim_start();
        if let Some(inner) = trimmed.strip_prefix('[').or_else(|| trimmed.strip_prefix('(')) {
            let digits = inner.trim_start_matches(|c: char| c.is_ascii_digit());
            if digits.len() < inner.len() {
                if let Some(after) = digits.strip_prefix(']').or_else(|| digits.strip_prefix(')')) {
                    rest = after;
                }
            }
        }
        let rest = rest.trim_start();
        rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))
    })
}

/// Whether the normalised subject contains one of `words` (each compared without whitespace and
/// lower-cased, like the subject).
fn contains_any(norm: &str, words: &[String]) -> bool {
    words.iter().any(|w| {
        let simple = !w.chars().any(|c| c.is_whitespace() || c.is_uppercase());
        if simple {
            !w.is_empty() && norm.contains(w.as_str())
        } else {
            let w: String = w.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
            !w.is_empty() && norm.contains(&w)
        }
    })
}

/// The subject rules of SPEC §3 step 3, in order, for a mail already known to be Hecto business
/// (incoming or outgoing, not suspicious).
///
/// `subject_companies` is how many distinct card companies the subject names;
/// `body_names_company` whether the body names any. Decisions the SPEC leaves open:
/// - "names no single card company" is read literally: the subject names *none* (a subject naming
///   one or several companies reports those companies' progress, not the end of the whole review,
///   and moving a merchant to `live` too early is the costlier mistake);
/// - for `card_review_progress` the company is looked for in the subject first and, when the
///   subject names none ("카드사 심사 결과 안내"), in the body.
pub fn kind_from_subject(
    norm: &str,
    words: &SubjectWords,
    subject_companies: usize,
    body_names_company: bool,
) -> MailKind {
    if contains_any(norm, &words.card_review_completed) && subject_companies == 0 {
        return MailKind::CardReviewCompleted;
    }
    if contains_any(norm, &words.review)
        && contains_any(norm, &words.progress_outcome)
        && (subject_companies > 0 || body_names_company)
    {
        return MailKind::CardReviewProgress;
    }
    if contains_any(norm, &words.card_review_requested) {
        return MailKind::CardReviewRequested;
    }
    if contains_any(norm, &words.contract_completed) {
        return MailKind::ContractCompleted;
    }
    if contains_any(norm, &words.documents_request) {
        return MailKind::DocumentsRequest;
    }
    if contains_any(norm, &words.guidance) && contains_any(norm, &words.guidance_topic) {
        return MailKind::Guidance;
    }
    MailKind::OtherHecto
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> SubjectWords {
        SubjectWords::default()
    }

    #[test]
    fn strips_reply_and_forward_prefixes_repeatedly() {
        let words = w();
        assert_eq!(strip_decorations("RE: Fwd: 회신: 전달: 계약 안내", &words), "계약 안내");
        assert_eq!(strip_decorations("re[2]: FW : 안내", &words), "안내");
        assert_eq!(strip_decorations("Re(3)：안내", &words), "안내");
        // A word that merely starts like a prefix is not one.
        assert_eq!(strip_decorations("Reply 안내", &words), "Reply 안내");
        assert_eq!(strip_decorations("FWD안내", &words), "FWD안내");
    }

    #[test]
    fn strips_tags_interleaved_with_prefixes() {
        let words = w();
        assert_eq!(
            strip_decorations("[외부메일] RE: [SPAM] ***SPAM*** [스팸] 회신: [헥토파이낸셜] 안내", &words),
            "[헥토파이낸셜] 안내"
        );
        assert_eq!(strip_decorations("[spam]Re:안내", &words), "안내");
    }

    #[test]
    fn normalise_removes_all_whitespace_and_lowercases() {
        assert_eq!(normalise("RE: 카드사  심사\t완료 안내 ABC", &w()), "카드사심사완료안내abc");
    }

    #[test]
    fn spam_tag_detection_ignores_non_spam_tags() {
        let words = w();
        assert!(has_spam_tag("[SPAM] 안내", &words));
        assert!(has_spam_tag("RE: ***spam*** 안내", &words));
        assert!(has_spam_tag("[스팸] 안내", &words));
        assert!(!has_spam_tag("[외부메일] 안내", &words));
        assert!(!has_spam_tag("스팸 아님", &words));
    }

    fn kind(subject: &str, companies: usize, body: bool) -> MailKind {
        let words = w();
        kind_from_subject(&normalise(subject, &words), &words, companies, body)
    }

    #[test]
    fn kinds_follow_spec_order() {
        assert_eq!(kind("[헥토파이낸셜] 카드사 심사 완료 안내", 0, true), MailKind::CardReviewCompleted);
        assert_eq!(kind("[헥토파이낸셜] 신한카드 심사완료 안내", 1, false), MailKind::CardReviewProgress);
        assert_eq!(kind("신한카드 심사 승인 안내", 1, false), MailKind::CardReviewProgress);
        assert_eq!(kind("카드사 심사 결과 안내", 0, true), MailKind::CardReviewProgress);
        assert_eq!(kind("카드사 심사 결과 안내", 0, false), MailKind::OtherHecto);
        assert_eq!(kind("카드사 심사 요청 접수", 0, false), MailKind::CardReviewRequested);
        assert_eq!(kind("계약완료 안내 및 MID 발급", 0, false), MailKind::ContractCompleted);
        assert_eq!(kind("구비서류 요청", 0, false), MailKind::DocumentsRequest);
        assert_eq!(kind("보증보험 증권 제출 요청", 0, false), MailKind::DocumentsRequest);
        assert_eq!(kind("[헥토파이낸셜] 전자결제 서비스 계약 안내", 0, false), MailKind::Guidance);
        assert_eq!(kind("가입 신청 안내", 0, false), MailKind::Guidance);
        assert_eq!(kind("정산 안내", 0, false), MailKind::OtherHecto);
    }

    #[test]
    fn operator_words_with_case_and_spaces_match() {
        let mut words = w();
        words.contract_completed = vec!["Contract Done".to_owned()];
        let norm = normalise("RE: contract done!", &words);
        assert_eq!(kind_from_subject(&norm, &words, 0, false), MailKind::ContractCompleted);
    }
}
