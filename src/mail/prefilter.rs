//! The header pass's shortcut: which mails the classifier could not possibly call Hecto's, from
//! their From, To and Cc fields alone, so most of a mailbox is never fetched in full.

use super::Rules;

/// A fast, conservative pre-filter over the fetched header fields: `certainly_not_hecto` is
/// `true` only when the classifier could not possibly call the mail Hecto's business, so most
/// of a mailbox is passed over without parsing. SPEC §3 makes a mail Hecto's only through (a) a
/// Hecto domain in From, To or Cc — addresses are literal ASCII (RFC 2047 §5 forbids encoded
/// words in an addr-spec, and folding never splits a domain) — or (b) a From display name
/// containing a Hecto name. So: if no configured Hecto domain or name occurs anywhere in the
/// header bytes (case-insensitively) and the From field is plain ASCII without encoded words
/// (nothing a decoder could turn into 헥토 or 세틀뱅크), the answer is certainly "not Hecto".
/// Anything else goes to the classifier.
pub struct Prefilter {
    /// `None` (no domains or names configured): no shortcut, everything is classified.
    needles: Option<regex::bytes::Regex>,
}

impl Prefilter {
    pub fn new(rules: &Rules) -> Prefilter {
        let alternatives: Vec<String> = rules
            .hecto_domains
            .iter()
            .chain(rules.subject.hecto_names.iter())
            .filter(|n| !n.is_empty())
            .map(|n| regex::escape(n))
            .collect();
        let needles = if alternatives.is_empty() {
            None
        } else {
            regex::bytes::Regex::new(&format!("(?i){}", alternatives.join("|"))).ok()
        };
        Prefilter { needles }
    }

    pub fn certainly_not_hecto(&self, header: &[u8]) -> bool {
        match &self.needles {
            Some(re) => !from_field_needs_decoding(header) && !re.is_match(header),
            None => false,
        }
    }
}

/// Whether any From line (continuations included) has 8-bit bytes or an encoded word.
fn from_field_needs_decoding(header: &[u8]) -> bool {
    let mut inside = false;
    for line in header.split(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            inside = line.len() > 4
                && line[..4].eq_ignore_ascii_case(b"from")
                && line[4..].trim_ascii_start().first() == Some(&b':');
        }
        if inside && (line.iter().any(|b| !b.is_ascii()) || line.windows(2).any(|w| w == b"=?")) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{classify, Rules};

    #[test]
    fn prefilter_only_skips_what_the_classifier_calls_not_hecto() {
        let rules = Rules::default();
        let p = Prefilter::new(&rules);
        let table: &[(&str, bool)] = &[
            ("From: a@example.org\r\nTo: b@example.com\r\nSubject: =?UTF-8?B?7KCQ7Ius?=\r\n", true),
            ("From: \"Sender 12\" <user12@example3.org>\r\nTo: me@example.test\r\n", true),
            // Hecto domains anywhere, any case, subdomains, Cc.
            ("From: contract@HectoFinancial.co.kr\r\nTo: b@example.com\r\n", false),
            ("From: a@example.org\r\nCc: pg@mail.settlebank.co.kr\r\n", false),
            // Display-name claims: plain, raw UTF-8, encoded (must go to the classifier).
            ("From: Hecto Support <help@phish.example>\r\n", false),
            ("From: \"헥토파이낸셜\" <help@phish.example>\r\n", false),
            ("From: =?UTF-8?B?7Zel7Yag?= <help@phish.example>\r\n", false),
            ("From: =?euc-kr?B?x+XF5A==?=\r\n <help@phish.example>\r\n", false),
            // A folded From whose continuation carries the encoded word.
            ("From: \"x\"\r\n =?UTF-8?B?7Zel7Yag?= <h@p.example>\r\nTo: a@b.example\r\n", false),
        ];
        for (header, skip) in table {
            assert_eq!(p.certainly_not_hecto(header.as_bytes()), *skip, "{header:?}");
            if *skip {
                let c = classify(header.as_bytes(), &rules);
                assert!(!c.kind.is_hecto(), "the classifier agrees: {header:?} → {:?}", c.kind);
            }
        }
    }

    /// What `BODY.PEEK[HEADER.FIELDS (FROM TO CC)]` returns for a raw mail: those fields,
    /// continuation lines included.
    fn from_to_cc(raw: &[u8]) -> Vec<u8> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| raw.windows(2).position(|w| w == b"\n\n"));
        let head = &raw[..end.unwrap_or(raw.len())];
        let mut out = Vec::new();
        let mut keep = false;
        for line in head.split_inclusive(|b| *b == b'\n') {
            if !line.starts_with(b" ") && !line.starts_with(b"\t") {
                let name = line.split(|b| *b == b':').next().unwrap_or_default().trim_ascii();
                keep = [&b"from"[..], b"to", b"cc"].iter().any(|n| name.eq_ignore_ascii_case(n));
            }
            if keep {
                out.extend_from_slice(line);
            }
        }
        out
    }

    #[test]
    fn every_fixture_the_classifier_calls_hecto_passes_the_prefilter() {
        let rules = Rules::default();
        let p = Prefilter::new(&rules);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mail");
        let mut hecto = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let raw = std::fs::read(&path).unwrap();
            if classify(&raw, &rules).kind.is_hecto() {
                hecto += 1;
                assert!(!p.certainly_not_hecto(&from_to_cc(&raw)), "{} would never be fetched", path.display());
            }
        }
        assert!(hecto >= 20, "the corpus has Hecto mail to check: {hecto}");
    }
}
