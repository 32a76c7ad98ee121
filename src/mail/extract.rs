//! Signals found in a mail's decoded text (part of `mail`, feeding merchant matching, SPEC §4):
//! 사업자등록번호, MIDs and card companies.
//!
//! Must never panic and must stay linear in the text: every pattern is compiled once
//! (`LazyLock`), and the `regex` crate guarantees linear-time matching. A false positive here
//! can attach a mail to the wrong merchant, so each extractor errs on the side of missing a value:
//! phone numbers and digits inside longer runs never become business numbers, and common Korean
//! words that happen to be card-company names (우리 "we", 하나 "one", 현대 "modern") only count
//! as card companies in a card/bank context.

use std::sync::LazyLock;

use regex::Regex;

/// Checks a 사업자등록번호 (10 ASCII digits) against its check digit: weights 1,3,7,1,3,7,1,3,5
/// over the first nine digits, plus ⌊9th digit × 5 / 10⌋; the 10th digit is
/// `(10 − sum mod 10) mod 10`. Anything but exactly ten ASCII digits is invalid.
pub fn valid_business_number(digits: &str) -> bool {
    const WEIGHTS: [u32; 9] = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let b = digits.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let d = |i: usize| u32::from(b[i] - b'0');
    let mut sum: u32 = (0..9).map(|i| d(i) * WEIGHTS[i]).sum();
    sum += d(8) * 5 / 10;
    (10 - sum % 10) % 10 == d(9)
}

/// `123-45-67891` and `123 45 67891` (one separator kind throughout).
static BIZ_SEPARATED: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"[0-9]{3}(?:-[0-9]{2}-|[ \u{a0}][0-9]{2}[ \u{a0}])[0-9]{5}").ok());

/// Ten contiguous digits shortly after a label. The gap may hold punctuation, words such as
/// "등록번호" and markup left by HTML reduction, but no digit (a date or phone number between the
/// label and the number means the number is not the labelled one).
static BIZ_LABELLED: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"사업자(?:\s*등록)?(?:\s*번호)?[^0-9]{0,20}?([0-9]{10})").ok());

fn is_digit_at(text: &str, idx: Option<usize>) -> bool {
    idx.and_then(|i| text.as_bytes().get(i)).is_some_and(u8::is_ascii_digit)
}

/// The byte before `start`, if any (only ASCII matters for the boundary checks).
fn byte_before(text: &str, start: usize) -> Option<u8> {
    start.checked_sub(1).and_then(|i| text.as_bytes().get(i).copied())
}

/// Whether the match `[start, end)` continues a longer number: a digit right next to it, or the
/// same separator followed by a digit (`1-123-45-67891`, `123-45-67891-2`).
fn embedded(text: &str, start: usize, end: usize, sep: Option<u8>) -> bool {
    let b = text.as_bytes();
    if is_digit_at(text, start.checked_sub(1)) || is_digit_at(text, Some(end)) {
        return true;
    }
    if let Some(sep) = sep {
        let before = start >= 2 && b.get(start - 1) == Some(&sep) && is_digit_at(text, Some(start - 2));
        let after = b.get(end) == Some(&sep) && is_digit_at(text, Some(end + 1));
        if before || after {
            return true;
        }
    }
    // `+82 …` and `…-` runs are phone-number shapes whatever follows.
    byte_before(text, start) == Some(b'+')
}

/// Valid business numbers in `text`, as 10 digits, in order of appearance, unique.
pub fn business_numbers(text: &str) -> Vec<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    if let Some(re) = BIZ_SEPARATED.as_ref() {
        for m in re.find_iter(text) {
            let s = m.as_str();
            let sep = s.as_bytes().get(3).copied().filter(|&c| c == b'-' || c == b' ');
            if embedded(text, m.start(), m.end(), sep) {
                continue;
            }
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            found.push((m.start(), digits));
        }
    }
    if let Some(re) = BIZ_LABELLED.as_ref() {
        for c in re.captures_iter(text) {
            if let Some(m) = c.get(1) {
                if !is_digit_at(text, Some(m.end())) {
                    found.push((m.start(), m.as_str().to_owned()));
                }
            }
        }
    }
    found.sort_by_key(|(pos, _)| *pos);
    let mut out: Vec<String> = Vec::new();
    for (_, digits) in found {
        if valid_business_number(&digits) && !out.contains(&digits) {
            out.push(digits);
        }
    }
    out
}

/// `MID`, `상점아이디`, `상점ID` then separators (spaces, colons, a closing bracket of
/// "MID(상점아이디):", table-cell gaps) then the token. The token's class excludes nothing
/// that could follow it, so the boundary is checked afterwards.
static MID_LABELLED: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:MID|상점\s?아이디|상점\s?ID)[\s:：)\]|\-=]*([A-Za-z0-9_]{4,21})").ok());

/// PortOne issues live Hecto MIDs as `imp_` + exactly 4 alphanumerics: anywhere, as a whole
/// token. (PortOne's payment ids `imp_` + 12 digits and customer codes `imp` + 8 digits are not
/// MIDs: the whole-token check leaves them out.)
static MID_IMP: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"imp_[A-Za-z0-9]{4}").ok());

/// PortOne identifiers that follow a MID-like label in PortOne's own mails but are not MIDs.
fn portone_id(token: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    token.strip_prefix("imp_").is_some_and(|d| digits(d, 12)) || token.strip_prefix("imp").is_some_and(|d| digits(d, 8))
}

/// Hecto's and PortOne's public test MIDs: the `nx??_??_??` family and `portone1`.
pub fn is_test_mid(mid: &str) -> bool {
    let b = mid.as_bytes();
    let family = b.len() == 10
        && mid.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("nx"))
        && b[4] == b'_'
        && b[7] == b'_'
        && [2, 3, 5, 6, 8, 9].iter().all(|&i| b[i].is_ascii_alphabetic());
    family || mid.eq_ignore_ascii_case("portone1")
}

/// `mids` split into the merchant's own and the public test MIDs.
pub fn split_test_mids(mids: Vec<String>) -> (Vec<String>, Vec<String>) {
    mids.into_iter().partition(|m| !is_test_mid(m))
}

fn is_word_byte(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// MIDs in `text`, in order of appearance, unique.
pub fn mids(text: &str) -> Vec<String> {
    let mut found: Vec<(usize, &str)> = Vec::new();
    if let Some(re) = MID_LABELLED.as_ref() {
        for c in re.captures_iter(text) {
            let (Some(all), Some(tok)) = (c.get(0), c.get(1)) else {
                continue;
            };
            // "AMID"/"MIDI" are words, not the label; a 21st token character means the token is
            // longer than a MID can be.
            let label_ok = !byte_before(text, all.start()).is_some_and(|b| b.is_ascii_alphabetic());
            let token_ok = tok.as_str().len() <= 20 && !is_word_byte(text.as_bytes().get(tok.end()).copied());
            // `MIDhecto123` (cells glued together without a separator) is not accepted: with no
            // gap the token may just be the rest of a word such as "MIDDLE".
            let gap = tok.start() > all.start() + label_len(all.as_str());
            if label_ok && token_ok && gap && !portone_id(tok.as_str()) {
                found.push((tok.start(), tok.as_str()));
            }
        }
    }
    if let Some(re) = MID_IMP.as_ref() {
        for m in re.find_iter(text) {
            let boundary =
                !is_word_byte(byte_before(text, m.start())) && !is_word_byte(text.as_bytes().get(m.end()).copied());
            if boundary {
                found.push((m.start(), m.as_str()));
            }
        }
    }
    found.sort_by_key(|(pos, _)| *pos);
    let mut out: Vec<String> = Vec::new();
    for (_, mid) in found {
        if !out.iter().any(|m| m == mid) {
            out.push(mid.to_owned());
        }
    }
    out
}

/// Byte length of the label at the start of a `MID_LABELLED` match.
fn label_len(m: &str) -> usize {
    if m.starts_with("MID") {
        3
    } else {
        // 상점 + optional space + 아이디/ID
        let rest = m.trim_start_matches("상점").trim_start();
        let label = if rest.starts_with("아이디") { "아이디".len() } else { 2 };
        m.len() - rest.len() + label
    }
}

/// How a card-company name must be used to count.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// Distinctive: any occurrence not glued to a preceding Hangul syllable (so 수신한 "received"
    /// is not 신한), except before the listed words (삼성동 is a district, 롯데마트 a merchant).
    Strong(&'static [&'static str]),
    /// Also an ordinary word (우리 "we", 하나 "one", 현대 "modern", 제주 a place …): only followed
    /// by 카드/은행/뱅크 or standing alone as a list item (`신한, 우리, 하나`).
    Weak,
}

const NONE: &[&str] = &[];

/// Every surface form, longest first where one contains another (`KB국민` before `KB`,
/// `NH농협` before `NH`), with its canonical id (SPEC §3).
const CARD_NAMES: &[(&str, &str, Strength)] = &[
    ("KB국민", "kb", Strength::Strong(NONE)),
    ("NH농협", "nh", Strength::Strong(NONE)),
    ("카카오뱅크", "kakaobank", Strength::Strong(NONE)),
    ("케이뱅크", "kbank", Strength::Strong(NONE)),
    ("신한", "shinhan", Strength::Strong(NONE)),
    (
        "삼성",
        "samsung",
        Strength::Strong(&["동", "로", "역", "전자", "생명", "화재", "물산", "증권", "중공업", "바이오", "SDS"]),
    ),
    (
        "롯데",
        "lotte",
        Strength::Strong(&[
            "백화점",
            "마트",
            "월드",
            "호텔",
            "리아",
            "제과",
            "칠성",
            "하이마트",
            "쇼핑",
            "홈쇼핑",
            "타워",
            "시네마",
            "ON",
            "온",
        ]),
    ),
    ("비씨", "bc", Strength::Strong(NONE)),
    ("농협", "nh", Strength::Strong(NONE)),
    ("씨티", "citi", Strength::Strong(NONE)),
    ("수협", "suhyup", Strength::Strong(NONE)),
    ("KB", "kb", Strength::Strong(NONE)),
    ("BC", "bc", Strength::Strong(NONE)),
    ("NH", "nh", Strength::Strong(NONE)),
    ("현대", "hyundai", Strength::Weak),
    ("국민", "kb", Strength::Weak),
    ("하나", "hana", Strength::Weak),
    ("외환", "hana", Strength::Weak),
    ("우리", "woori", Strength::Weak),
    ("제주", "jeju", Strength::Weak),
    ("광주", "gwangju", Strength::Weak),
    ("전북", "jeonbuk", Strength::Weak),
];

/// The Hangul names. Kept apart from the ASCII ones so that every literal is at least one whole
/// syllable (3 bytes): the regex engine's SIMD prefilter then looks for exact first syllables
/// instead of two-byte fingerprints that match half of all Hangul text (measured 2–3x faster
/// than one combined regex or a hand-written byte loop).
static HANGUL_NAMES: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let names: Vec<&str> = CARD_NAMES
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|n| !n.is_ascii() && !n.starts_with(|c: char| c.is_ascii()))
        .collect();
    Regex::new(&names.join("|")).ok()
});

/// Starts of the names that begin with ASCII (`KB`, `KB국민`, `BC`, `NH`, `NH농협`).
static ASCII_NAMES: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new("KB|BC|NH").ok());

fn is_hangul_syllable(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// Canonical card-company ids named in `text`, in order of appearance, unique.
pub fn card_companies(text: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    for re in [HANGUL_NAMES.as_ref(), ASCII_NAMES.as_ref()].into_iter().flatten() {
        starts.extend(re.find_iter(text).map(|m| m.start()));
    }
    if starts.is_empty() {
        return out;
    }
    starts.sort_unstable();
    // Matches do not overlap: the search resumes after a name (as one regex would), so the
    // 국민 inside KB국민 is not seen twice.
    let mut resume = 0;
    for start in starts {
        if start < resume {
            continue;
        }
        let rest = text.get(start..).unwrap_or("");
        // The first listed name that matches here (longer forms are listed first).
        let Some(&(name, id, strength)) = CARD_NAMES.iter().find(|(n, _, _)| rest.starts_with(n)) else {
            continue;
        };
        let end = start + name.len();
        resume = end;
        let before = text.get(..start).and_then(|s| s.chars().next_back());
        let after_str = text.get(end..).unwrap_or("");
        let after = after_str.chars().next();
        // ASCII ids are words of their own: not "KBank", "ABC", "NHN".
        if name.is_ascii() {
            if before.is_some_and(|c| c.is_ascii_alphanumeric()) || after.is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
        } else if before.is_some_and(is_hangul_syllable) {
            continue;
        }
        let counts = match strength {
            Strength::Strong(deny) => !deny.iter().any(|d| after_str.starts_with(d)),
            Strength::Weak => weak_context(after_str),
        };
        if counts && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// What may follow a weak name for it to mean the card company: 카드/은행/뱅크 (a space allowed),
/// or a list separator / end of text.
fn weak_context(after: &str) -> bool {
    let trimmed = after.trim_start_matches([' ', '\u{a0}']);
    if ["카드", "은행", "뱅크", "BC", "비씨"].iter().any(|w| trimmed.starts_with(w)) {
        return true;
    }
    match after.chars().next() {
        None => true,
        Some(c) => matches!(c, ',' | '·' | '/' | ')' | '、' | '，' | '|' | '\n' | '\r'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_number_check_digit() {
        assert!(valid_business_number("1234567891"));
        assert!(valid_business_number("2208162517"));
        assert!(!valid_business_number("1234567890"));
        assert!(!valid_business_number("123456789"));
        assert!(!valid_business_number("12345678910"));
        assert!(!valid_business_number("12345a7891"));
        assert!(!valid_business_number("１２３４５６７８９１"));
    }

    #[test]
    fn business_numbers_hyphenated_spaced_and_labelled() {
        let text = "사업자등록번호: 123-45-67891\n다른 번호 220 81 62517 그리고 사업자번호 (2148630918)";
        assert_eq!(business_numbers(text), vec!["1234567891", "2208162517", "2148630918"]);
    }

    #[test]
    fn business_numbers_reject_bad_check_digit_and_unlabelled_runs() {
        assert!(business_numbers("사업자등록번호 123-45-67890").is_empty());
        // Ten bare digits without a label are not taken (could be anything).
        assert!(business_numbers("주문번호 1234567891").is_empty());
    }

    #[test]
    fn business_numbers_never_match_phone_numbers_or_embedded_digits() {
        let text = "전화 010-1234-5678, 02-123-4567, 1588-1234, +82-10-1234-5678, \
                    +82 123 45 67891, 1123-45-67891, 123-45-678912, 9-123-45-67891, \
                    123-45-67891-1, 계좌 110 123 45 67891";
        assert_eq!(business_numbers(text), Vec::<String>::new());
        // Digits between the label and the number: the number is not the labelled one.
        assert!(business_numbers("사업자 신청일 2024 1234567891").is_empty());
        assert!(business_numbers("사업자번호 12345678911").is_empty());
    }

    #[test]
    fn business_numbers_unique_in_order() {
        let text = "220-81-62517 / 123-45-67891 / 사업자번호 2208162517";
        assert_eq!(business_numbers(text), vec!["2208162517", "1234567891"]);
    }

    #[test]
    fn mids_after_labels_and_imp_tokens() {
        let text = "MID: hecto12345\n상점아이디 : nxca_jt_il\n상점ID：T_test_0001\n\
                    PortOne imp_12345678 and imp_ab12, MID hecto12345";
        // imp_ + exactly 4 alphanumerics is a PortOne-issued MID; imp_12345678 is not.
        assert_eq!(mids(text), vec!["hecto12345", "nxca_jt_il", "T_test_0001", "imp_ab12"]);
        let (own, test) = split_test_mids(mids(text));
        assert_eq!(
            (own, test),
            (vec!["hecto12345".to_owned(), "T_test_0001".into(), "imp_ab12".into()], vec!["nxca_jt_il".to_owned()])
        );
    }

    #[test]
    fn portone_payment_ids_and_customer_codes_are_not_mids() {
        assert!(mids("결제번호 imp_123456789012 (imp_uid)").is_empty());
        assert!(mids("MID: imp_123456789012").is_empty());
        assert!(mids("가맹점 식별코드 imp74312345, MID: imp74312345").is_empty());
        for t in ["nxca_jt_il", "nxca_jt_bi", "nxva_sb_il", "nxhp_sb_ma", "nxpt_kt_il", "portone1", "PORTONE1"] {
            assert!(is_test_mid(t), "{t}");
        }
        for t in ["nxca_jt_il2", "nxcajtil", "hecto12345", "nx12_ab_cd"] {
            assert!(!is_test_mid(t), "{t}");
        }
    }

    #[test]
    fn mids_in_table_cells_and_brackets() {
        assert_eq!(mids("MID \t hecto99999 \n"), vec!["hecto99999"]);
        assert_eq!(mids("MID(상점아이디): shop_0042"), vec!["shop_0042"]);
    }

    #[test]
    fn mids_reject_words_long_tokens_and_glued_labels() {
        assert!(mids("AMID: abcdef").is_empty());
        assert!(mids("MIDDLE name").is_empty());
        assert!(mids("MID: abc").is_empty());
        assert!(mids("MID: abcdefghijklmnopqrstuvwxyz").is_empty());
        assert!(mids("MID 발급 예정").is_empty());
        assert!(mids("ximp_12345 imp_12").is_empty());
    }

    #[test]
    fn card_companies_canonical_ids_in_order() {
        let text = "신한카드, 삼성카드, 현대카드, KB국민카드, 롯데카드, 하나카드, 우리카드, BC카드, \
                    NH농협카드, 씨티카드, 카카오뱅크, 케이뱅크, 제주은행, 광주은행, 전북은행, 수협은행";
        assert_eq!(
            card_companies(text),
            vec![
                "shinhan",
                "samsung",
                "hyundai",
                "kb",
                "lotte",
                "hana",
                "woori",
                "bc",
                "nh",
                "citi",
                "kakaobank",
                "kbank",
                "jeju",
                "gwangju",
                "jeonbuk",
                "suhyup"
            ]
        );
    }

    #[test]
    fn card_companies_alias_forms() {
        assert_eq!(card_companies("외환카드 / 비씨카드 / 농협카드 / 국민카드"), vec!["hana", "bc", "nh", "kb"]);
        assert_eq!(card_companies("신한, 우리, 하나"), vec!["shinhan", "woori", "hana"]);
        assert_eq!(card_companies("KB 심사"), vec!["kb"]);
    }

    #[test]
    fn card_companies_ignore_ordinary_words_and_embedded_ascii() {
        let text = "우리 회사는 하나의 현대적인 KBank ABC NHN 서비스를 제주도에서 운영하며 \
                    수신한 메일을 국민연금과 현대백화점, 삼성동 롯데마트에 전달합니다";
        assert_eq!(card_companies(text), Vec::<&str>::new());
    }

    #[test]
    fn card_companies_kakaobank_and_kbank_are_not_kb() {
        assert_eq!(card_companies("카카오뱅크 케이뱅크"), vec!["kakaobank", "kbank"]);
    }
}
