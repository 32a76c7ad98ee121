//! Charset-label repair before parsing (first step of `mail`, right after the raw bytes arrive
//! from imap).
//!
//! mail-parser 0.11.9 (`full_encoding`) decodes `euc-kr`, `ks_c_5601-1987`, `windows-949`,
//! `korean` … with encoding_rs's EUC-KR, which is the WHATWG definition and therefore the whole
//! CP949/UHC repertoire (똠, 햏 and the other 8,822 extension syllables decode). But it does not
//! know the labels `cp949`, `ms949`, `x-windows-949`, `uhc`, `euckr`, `x-euc-kr`, `ks_c_5601`,
//! `ksc5601-1987` (all seen from Java, Python and webmail senders), and silently falls back to
//! lossy UTF-8 for them — every Korean character becomes U+FFFD. Such labels are rewritten to
//! `euc-kr` where they are used as labels (a `charset=` parameter or the start of an RFC 2047
//! encoded word) and the copy is parsed instead. Deciding whether to do so must cost next to
//! nothing for the mail that has none: the common aliases contain "949", found before the parse
//! by a SIMD substring search ([`may_contain_949_alias`]); the rare others are found after it by
//! looking at the few places a label can be ([`has_unknown_cp949_label`]).
//!
//! Must never change anything but those labels, and never be more than linear in the input.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::bytes::Regex;

/// A CP949 alias in label position. Group 1 is the label itself. The parameter name is matched
/// in its three real-world spellings rather than `(?i)`, so that the regex engine can search
/// for the literal prefixes (`=?`, `charset` …) with SIMD instead of running the automaton over
/// every byte of the mail.
static ALIAS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?:(?:charset|Charset|CHARSET)\s*=\s*["']?|=\?)(?i:((?:x-)?(?:cp|ms|windows)[-_]?949|949|(?:x-)?uhc|x-euc-kr|euckr|ks_c_5601|ksc5601-1987))"#,
    )
    .ok()
});

/// Whether `label` is a CP949 alias mail-parser does not know (the set [`ALIAS`] rewrites).
/// Runs on every part of every mail, so it lower-cases into a stack buffer.
pub fn is_unknown_cp949_alias(label: &str) -> bool {
    let label = label.trim().trim_matches('"').as_bytes();
    let mut buf = [0u8; 16];
    let Some(dst) = buf.get_mut(..label.len()) else {
        return false;
    };
    for (d, s) in dst.iter_mut().zip(label) {
        *d = if *s == b'_' { b'-' } else { s.to_ascii_lowercase() };
    }
    let (had_x, bare) = match dst.strip_prefix(b"x-") {
        Some(rest) => (true, rest),
        None => (false, &*dst),
    };
    match bare {
        b"cp949" | b"cp-949" | b"ms949" | b"ms-949" | b"windows949" | b"949" | b"uhc" | b"euckr" | b"ks-c-5601"
        | b"ksc5601-1987" => true,
        // mail-parser knows these two spellings, but not with an `x-` in front.
        b"euc-kr" | b"windows-949" => had_x,
        _ => false,
    }
}

/// Whether a parsed message uses a label [`is_unknown_cp949_alias`] in a part's `charset=` or in
/// an encoded word of the root Subject/From/To/Cc (what classification reads).
pub fn has_unknown_cp949_label(message: &mail_parser::Message<'_>, raw: &[u8]) -> bool {
    let in_parts = message.parts.iter().any(|part| {
        part.headers.iter().any(|h| {
            h.name == mail_parser::HeaderName::ContentType
                && h.value.as_content_type().and_then(|ct| ct.attribute("charset")).is_some_and(is_unknown_cp949_alias)
        })
    });
    in_parts
        || message.parts.first().is_some_and(|root| {
            root.headers.iter().any(|h| {
                use mail_parser::HeaderName as H;
                if !matches!(h.name, H::Subject | H::From | H::To | H::Cc) {
                    return false;
                }
                let value = raw.get(h.offset_start as usize..h.offset_end as usize).unwrap_or_default();
                encoded_word_labels(value).any(|l| is_unknown_cp949_alias(&String::from_utf8_lossy(l)))
            })
        })
}

/// The charset labels of the RFC 2047 encoded words in `value` (without `*lang`).
fn encoded_word_labels(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.windows(2).enumerate().filter(|(_, w)| w == b"=?").filter_map(move |(i, _)| {
        let rest = value.get(i + 2..)?;
        let end = rest.iter().position(|&b| b == b'?' || b == b'*' || b.is_ascii_whitespace())?;
        rest.get(..end)
    })
}

/// Whether `raw` may carry one of the common aliases (`cp949`, `ms949`, `x-windows-949` …): a
/// SIMD substring search. False positives (a phone number) only cost a pass over the mail.
pub fn may_contain_949_alias(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"949").is_some()
}

/// What may follow a label: the end of the parameter or of the encoded-word charset
/// (`*lang` per RFC 2231).
fn ends_label(next: Option<&u8>) -> bool {
    match next {
        None => true,
        Some(b) => matches!(b, b'"' | b'\'' | b'?' | b';' | b'*') || b.is_ascii_whitespace(),
    }
}

/// SPEC §3, raw 8-bit headers (no RFC 2047 encoding, as old Korean mailers send them): UTF-8
/// when the bytes are valid UTF-8, else CP949. mail-parser reads such bytes as UTF-8, so a header
/// line that is not valid UTF-8 is re-encoded from CP949 (encoding_rs's EUC-KR, which is the
/// whole CP949 repertoire) before the parse. Borrowed — and nearly free — when the header block is
/// ASCII or UTF-8, as nearly all mail is.
pub fn utf8_headers(raw: &[u8]) -> Cow<'_, [u8]> {
    // The header block ends at the first `\n\n` or `\r\n\r\n`; one walk over the header's
    // line ends (searching for each separator apart read a CRLF mail's whole body for `\n\n`).
    let end = memchr::memchr_iter(b'\n', raw)
        .find(|&nl| {
            let rest = &raw[nl + 1..];
            rest.first() == Some(&b'\n') || (nl > 0 && raw[nl - 1] == b'\r' && rest.starts_with(b"\r\n"))
        })
        .map_or(raw.len(), |nl| nl + 1);
    let head = &raw[..end];
    if head.is_ascii() || std::str::from_utf8(head).is_ok() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 8);
    for line in head.split_inclusive(|b| *b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(_) => out.extend_from_slice(line),
            Err(_) => out.extend_from_slice(encoding_rs::EUC_KR.decode_without_bom_handling(line).0.as_bytes()),
        }
    }
    out.extend_from_slice(&raw[end..]);
    Cow::Owned(out)
}

/// `raw` with CP949 aliases rewritten to `euc-kr`; borrowed when there is nothing to rewrite.
pub fn normalise_labels(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(alias) = ALIAS.as_ref() else {
        return Cow::Borrowed(raw);
    };
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
    fn raw_8bit_headers_are_utf8_when_valid_else_cp949() {
        let (cp949, _, _) = encoding_rs::EUC_KR.encode("Subject: [헥토파이낸셜] 계약 안내 똠\n");
        let mut raw = b"From: a@b.c\n".to_vec();
        raw.extend_from_slice(&cp949);
        raw.extend_from_slice(b"\nbody \xb0\xa1\n");
        let fixed = utf8_headers(&raw);
        let text = String::from_utf8_lossy(&fixed);
        assert!(text.contains("Subject: [헥토파이낸셜] 계약 안내 똠\n"), "{text}");
        assert!(fixed.ends_with(b"\nbody \xb0\xa1\n"), "the body is left to its own charset");
        let utf8 = "Subject: 계약 안내\n\nx".as_bytes();
        assert!(matches!(utf8_headers(utf8), Cow::Borrowed(_)));

        // CRLF: the header block ends at the first blank line, whatever the body holds later.
        let mut crlf = b"From: a@b.c\r\n".to_vec();
        crlf.extend_from_slice(&cp949[..cp949.len() - 1]);
        crlf.extend_from_slice(b"\r\n\r\nbody \xb0\xa1\r\n\n\xb0\xa1\n");
        let fixed = utf8_headers(&crlf);
        let text = String::from_utf8_lossy(&fixed);
        assert!(text.contains("Subject: [헥토파이낸셜] 계약 안내 똠\r\n\r\n"), "{text}");
        assert!(fixed.ends_with(b"\r\n\r\nbody \xb0\xa1\r\n\n\xb0\xa1\n"), "the body is left to its own charset");
        // A header block that never ends (no blank line): all of it is the header.
        let endless = b"Subject: \xb0\xa1\r\nFrom: a@b.c\r\n";
        assert_eq!(String::from_utf8_lossy(&utf8_headers(endless)), "Subject: 가\r\nFrom: a@b.c\r\n");
    }

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
    fn unknown_aliases_are_recognised_known_labels_are_not() {
        for a in [
            "cp949",
            "CP949",
            "x-windows-949",
            "ms949",
            "uhc",
            "x-uhc",
            "euckr",
            "x-euc-kr",
            "ks_c_5601",
            "ksc5601-1987",
            "\"cp949\"",
        ] {
            assert!(is_unknown_cp949_alias(a), "{a}");
        }
        for k in ["euc-kr", "EUC-KR", "ks_c_5601-1987", "windows-949", "utf-8", "cp9490", "korean"] {
            assert!(!is_unknown_cp949_alias(k), "{k}");
        }
    }

    #[test]
    fn detection_finds_labels_in_parts_and_encoded_words() {
        let part = b"From: a@b.example\nContent-Type: text/plain; charset=CP949\n\nx\n";
        let word = b"From: =?x-windows-949?B?jGM=?= <a@b.example>\nSubject: s\n\nx\n";
        let none = b"From: a@b.example\nSubject: =?ks_c_5601-1987?B?jGM=?= 949\n\ncharset=cp949\n";
        let parse = |raw: &'static [u8]| mail_parser::MessageParser::default().parse(raw);
        assert!(parse(part).is_some_and(|m| has_unknown_cp949_label(&m, part)));
        assert!(parse(word).is_some_and(|m| has_unknown_cp949_label(&m, word)));
        assert!(parse(none).is_some_and(|m| !has_unknown_cp949_label(&m, none)));
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
