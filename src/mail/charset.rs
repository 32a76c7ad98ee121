//! Charset-label repair before parsing (first step of `mail`, right after the raw bytes arrive
//! from imap).
//!
//! mail-parser 0.11.9 (`full_encoding`) decodes `euc-kr`, `ks_c_5601-1987`, `windows-949`,
//! `korean` … with encoding_rs's EUC-KR, which is the WHATWG definition and therefore the whole
//! CP949/UHC repertoire (똠, 햏 and the other 8,822 extension syllables decode). But it does not
//! know the labels `cp949`, `ms949`, `x-windows-949`, `uhc`, `euckr`, `x-euc-kr`, `ks_c_5601`,
//! `ksc5601-1987` (all seen from Java, Python and webmail senders), and silently falls back to
//! lossy UTF-8 for them — every Korean character becomes U+FFFD. We rewrite exactly those labels
//! to `euc-kr` where they are used as labels (a `charset=` parameter or the start of an RFC 2047
//! encoded word) and parse the rewritten copy. The copy is only made when such a label occurs.
//!
//! Must never change anything but those labels, and never be more than linear in the input.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::bytes::Regex;

/// A CP949 alias in label position. Group 1 is the label itself.
static ALIAS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:charset\s*=\s*["']?|=\?)((?:x-)?(?:cp|ms|windows)[-_]?949|949|(?:x-)?uhc|x-euc-kr|euckr|ks_c_5601|ksc5601-1987)"#,
    )
    .ok()
});

/// Cheap pre-check: every alias contains one of these (case-insensitively). Most mail has none,
/// and this lets us skip the label regex entirely.
static HINT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"949|(?i:uhc|euckr|x-euc-kr|ks_c_5601[^-]|ksc5601-1987)").ok());

/// What may follow a label: the end of the parameter or of the encoded-word charset
/// (`*lang` per RFC 2231).
fn ends_label(next: Option<&u8>) -> bool {
    match next {
        None => true,
        Some(b) => matches!(b, b'"' | b'\'' | b'?' | b';' | b'*') || b.is_ascii_whitespace(),
    }
}

/// `raw` with CP949 aliases rewritten to `euc-kr`; borrowed when there is nothing to rewrite.
pub fn normalise_labels(raw: &[u8]) -> Cow<'_, [u8]> {
    let (Some(hint), Some(alias)) = (HINT.as_ref(), ALIAS.as_ref()) else {
        return Cow::Borrowed(raw);
    };
    if !hint.is_match(raw) {
        return Cow::Borrowed(raw);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for caps in alias.captures_iter(raw) {
        let Some(label) = caps.get(1) else { continue };
        if !ends_label(raw.get(label.end())) {
            continue;
        }
        let buf = out.get_or_insert_with(|| Vec::with_capacity(raw.len() + 16));
        buf.extend_from_slice(raw.get(copied..label.start()).unwrap_or_default());
        buf.extend_from_slice(b"euc-kr");
        copied = label.end();
    }
    match out {
        None => Cow::Borrowed(raw),
        Some(mut buf) => {
            buf.extend_from_slice(raw.get(copied..).unwrap_or_default());
            Cow::Owned(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_aliases_in_label_positions_only() {
        let raw = b"Subject: =?CP949?B?jGM=?= =?x-windows-949*ko?Q?x?=\nContent-Type: text/plain; charset=\"ms949\"\n\ncp949 is a charset; charset=uhc\n";
        let out = normalise_labels(raw);
        assert_eq!(
            out.as_ref(),
            &b"Subject: =?euc-kr?B?jGM=?= =?euc-kr*ko?Q?x?=\nContent-Type: text/plain; charset=\"euc-kr\"\n\ncp949 is a charset; charset=euc-kr\n"[..]
        );
    }

    #[test]
    fn leaves_known_labels_and_lookalikes_alone() {
        for raw in [
            &b"Content-Type: text/plain; charset=ks_c_5601-1987\n\nx"[..],
            b"Content-Type: text/plain; charset=euc-kr\n\nx",
            b"Content-Type: text/plain; charset=cp9490\n\nx",
            b"Subject: tel 02-949-1234\n\nx",
        ] {
            assert!(matches!(normalise_labels(raw), Cow::Borrowed(_)), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn mail_parser_decodes_cp949_extension_syllables_after_rewrite() {
        // 똠 is 0x8C 0x63 in CP949 and does not exist in KS X 1001 (plain EUC-KR).
        let raw = b"From: a@example.com\nSubject: =?cp949?B?jGM=?= =?ks_c_5601-1987?Q?=8Cc?=\nContent-Type: text/plain; charset=cp949\n\n\x8c\x63\xc7\xd1\n";
        let fixed = normalise_labels(raw);
        let msg = mail_parser::MessageParser::default().parse(fixed.as_ref());
        let msg = msg.as_ref();
        assert_eq!(msg.and_then(|m| m.subject()), Some("똠똠"));
        assert_eq!(msg.and_then(|m| m.body_text(0)).as_deref(), Some("똠한\n"));
    }
}
