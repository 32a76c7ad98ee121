//! HTML → plain text for HTML-only mails (part of `mail`, between parsing and extraction).
//!
//! We do not use mail-parser's `html_to_text` because it glues table cells together
//! (`<td>MID</td><td>hecto1</td>` → `MIDhecto1`), and Hecto's contract mails are tables. Here
//! block-level tags become line breaks, cells become tabs and other tags vanish, which keeps
//! labels and values apart without splitting words marked up inline (`신한<b>카드</b>`).
//!
//! Single pass, output capped at `limit` bytes; never panics on malformed markup (an unclosed
//! `<` or comment swallows the rest, like a browser would).

/// Reduces `html` to text of at most about `limit` bytes.
pub fn to_text(html: &str, limit: usize) -> String {
    let mut out = String::with_capacity(html.len().min(limit) / 2);
    let mut rest = html;
    let mut pending_space = false;
    while !rest.is_empty() && out.len() < limit {
        // Byte searches (memchr): both are ASCII, so the index is a char boundary.
        let Some(lt) = memchr::memchr2(b'<', b'&', rest.as_bytes()) else {
            push_text(&mut out, rest, &mut pending_space);
            break;
        };
        push_text(&mut out, rest.get(..lt).unwrap_or(""), &mut pending_space);
        rest = rest.get(lt..).unwrap_or("");
        if rest.starts_with('&') {
            let (decoded, used) = entity(rest);
            match decoded {
                Some(c) => push_text(&mut out, c.encode_utf8(&mut [0; 4]), &mut pending_space),
                None => push_text(&mut out, "&", &mut pending_space),
            }
            rest = rest.get(used..).unwrap_or("");
            continue;
        }
        // A tag, comment or declaration.
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").and_then(|end| after.get(end + 3..)).unwrap_or("");
            continue;
        }
        let end = memchr::memchr(b'>', rest.as_bytes()).map_or(rest.len(), |i| i + 1);
        let tag = rest.get(1..end).unwrap_or("");
        rest = rest.get(end..).unwrap_or("");
        let name = tag_name(tag);
        let closing = tag.starts_with('/');
        if !closing && (name.eq_ignore_ascii_case("script") || name.eq_ignore_ascii_case("style")) {
            // Skip to the matching close tag; its content is not text.
            let close = format!("</{}", name.to_ascii_lowercase());
            rest = find_ci(rest, &close)
                .and_then(|i| rest.get(i..))
                .and_then(|r| r.find('>').and_then(|j| r.get(j + 1..)))
                .unwrap_or("");
            continue;
        }
        match separator(name) {
            Sep::None => {}
            Sep::Space => pending_space = true,
            Sep::Cell => push_sep(&mut out, '\t', &mut pending_space),
            Sep::Line => push_sep(&mut out, '\n', &mut pending_space),
        }
    }
    super::truncate_at_char(&mut out, limit);
    out
}

enum Sep {
    None,
    Space,
    Cell,
    Line,
}

fn separator(name: &str) -> Sep {
    // Tag names are short; lower-case into a stack buffer and match, no allocation.
    let mut buf = [0u8; 10];
    let Some(dst) = buf.get_mut(..name.len()) else {
        return Sep::Space;
    };
    dst.copy_from_slice(name.as_bytes());
    dst.make_ascii_lowercase();
    match &*dst {
        b"a" | b"b" | b"i" | b"u" | b"s" | b"em" | b"strong" | b"span" | b"font" | b"small" | b"big" | b"sub"
        | b"sup" | b"mark" | b"code" | b"abbr" => Sep::None,
        b"td" | b"th" => Sep::Cell,
        b"br" | b"p" | b"div" | b"tr" | b"li" | b"ul" | b"ol" | b"table" | b"tbody" | b"thead" | b"h1" | b"h2"
        | b"h3" | b"h4" | b"h5" | b"h6" | b"blockquote" | b"pre" | b"hr" | b"dt" | b"dd" | b"section" | b"article"
        | b"header" | b"footer" | b"title" | b"center" => Sep::Line,
        _ => Sep::Space,
    }
}

/// `"/td class=x"` → `"td"`.
fn tag_name(tag: &str) -> &str {
    let t = tag.trim_start_matches('/');
    let end = t.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(t.len());
    t.get(..end).unwrap_or("")
}

use super::subject::find_ci;

/// Source white space (ASCII, as HTML defines it) collapses to one space, as in a browser.
/// Runs without white space are copied in one go.
fn push_text(out: &mut String, text: &str, pending_space: &mut bool) {
    // Split by bytes: ASCII white space is one byte, never inside a UTF-8 sequence, so every
    // split point is a char boundary.
    let bytes = text.as_bytes();
    let mut start = 0;
    loop {
        let end = bytes[start..].iter().position(u8::is_ascii_whitespace).map_or(bytes.len(), |i| start + i);
        let word = text.get(start..end).unwrap_or("");
        if !word.is_empty() {
            if *pending_space && !out.is_empty() && !out.ends_with(['\n', '\t', ' ']) {
                out.push(' ');
            }
            *pending_space = false;
            out.push_str(word);
        }
        if end == bytes.len() {
            return;
        }
        *pending_space = true;
        start = end + 1;
    }
}

fn push_sep(out: &mut String, sep: char, pending_space: &mut bool) {
    *pending_space = false;
    while out.ends_with([' ', '\t']) && sep == '\n' {
        out.pop();
    }
    if !out.is_empty() && !out.ends_with(['\n', sep]) {
        out.push(sep);
    }
}

/// Decodes the entity at the start of `s` (which starts with `&`). Returns the character, if
/// recognised, and the bytes consumed (1 when not an entity, so `&` is kept literally).
fn entity(s: &str) -> (Option<char>, usize) {
    let body_end =
        s.get(1..).and_then(|r| r.find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))).map_or(s.len(), |i| i + 1);
    let name = s.get(1..body_end).unwrap_or("");
    let used = if s.get(body_end..body_end + 1) == Some(";") { body_end + 1 } else { body_end };
    let c = if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => num.parse().ok(),
        };
        code.and_then(char::from_u32)
    } else {
        match name {
            "nbsp" | "ensp" | "emsp" | "thinsp" => Some(' '),
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "middot" => Some('·'),
            _ => None,
        }
    };
    match c {
        Some(c) => (Some(c), used),
        None => (None, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_stay_apart() {
        let html =
            "<table><tr><td>MID</td><td>hecto12345</td></tr>\n<tr><th>사업자번호</th><td>1234567891</td></tr></table>";
        assert_eq!(to_text(html, 1000), "MID\thecto12345\n사업자번호\t1234567891\n");
    }

    #[test]
    fn inline_markup_does_not_split_words_and_entities_decode() {
        assert_eq!(
            to_text("<p>신한<b>카드</b>&nbsp;심사&amp;승인 &#54620;&#xD55C; &bogus; a&b</p>", 1000),
            "신한카드 심사&승인 한한 &bogus; a&b\n"
        );
    }

    #[test]
    fn scripts_styles_and_comments_are_not_text() {
        let html = "<html><head><style>p{x:1}</style><script>var a='<p>';</script></head><body><!-- 숨김 -->보임</body></html>";
        assert_eq!(to_text(html, 1000), "보임");
    }

    #[test]
    fn malformed_markup_and_limit_never_panic() {
        assert_eq!(to_text("abc <unclosed", 1000), "abc");
        assert_eq!(to_text("<!-- never closed", 1000), "");
        assert_eq!(to_text("&#xFFFFFFFF; &#; &", 1000), "&#xFFFFFFFF; &#; &");
        let long = "가".repeat(1000);
        let t = to_text(&long, 100);
        assert!(t.len() <= 100 && t.chars().all(|c| c == '가'));
    }
}
