//! `Authentication-Results` (RFC 8601) → [`AuthResults`]. Part of `mail`'s classification
//! (imap → **mail** → merchant): the receiving MX's verdict on SPF, DKIM and DMARC decides whether
//! a mail claiming to be Hecto's is believed.
//!
//! The header is attacker-reachable input (a sender can add its own copy), so this parser must
//! never panic and never trust structure: anything it cannot make sense of is skipped up to the
//! next `;`. Which of several headers is believed is the caller's business
//! ([`evaluate`] takes the topmost trusted one, per SPEC §3).

use std::borrow::Cow;

use super::Authenticated;

/// One parsed `Authentication-Results` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthResults {
    /// The authserv-id (the host that did the checks), lower-cased.
    pub authserv_id: String,
    /// The optional version after the authserv-id (RFC 8601 §2.2), when given.
    pub version: Option<u32>,
    /// The `method=result` statements in header order. `; none` yields no entry.
    pub results: Vec<MethodResult>,
}

/// One `resinfo`: `dkim=pass (comment) reason="…" header.d=example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MethodResult {
    /// Method name, lower-cased, without a `/version` suffix (`dkim`, `spf`, `dmarc`, …).
    pub method: String,
    /// Result, lower-cased (`pass`, `fail`, `none`, `softfail`, `temperror`, …).
    pub result: String,
    /// `reason=` value, if any.
    pub reason: Option<String>,
    /// `ptype.property=value` statements, ptype and property lower-cased, value as written.
    pub props: Vec<Prop>,
}

/// A `ptype.property=value` statement such as `header.d=example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prop {
    pub ptype: String,
    pub property: String,
    pub value: String,
}

impl MethodResult {
    /// The value of `ptype.property` (both compared case-insensitively), first occurrence.
    pub fn prop(&self, ptype: &str, property: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|p| p.ptype.eq_ignore_ascii_case(ptype) && p.property.eq_ignore_ascii_case(property))
            .map(|p| p.value.as_str())
    }
}

/// Cursor over the header value. Works on bytes: every delimiter of the grammar is ASCII, so
/// slicing only ever happens next to an ASCII byte and never inside a UTF-8 sequence (non-ASCII
/// bytes, lossily decoded by the caller, are ordinary token characters).
#[derive(Clone, Copy)]
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// `s[start..self.pos]`; both ends are next to ASCII bytes or at the ends of `s`.
    fn slice(&self, start: usize) -> &'a str {
        self.s.get(start..self.pos).unwrap_or("")
    }

    /// Skips folding white space and (nested, backslash-escaped) comments: RFC 5322 `CFWS`.
    fn skip_cfws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() {
                self.pos += 1;
            } else if c == b'(' {
                self.skip_comment();
            } else {
                break;
            }
        }
    }

    /// Skips one comment starting at `(`; an unterminated comment runs to the end.
    fn skip_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.bump() {
            match c {
                // An escaped byte may be the lead of a UTF-8 sequence; the rest of it is skipped
                // as ordinary bytes, which is harmless inside a comment.
                b'\\' => {
                    self.bump();
                }
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// A quoted string starting at `"`, unescaped; unterminated runs to the end.
    fn quoted(&mut self) -> String {
        let mut out = String::new();
        self.pos += 1;
        let mut run = self.pos;
        while let Some(c) = self.peek() {
            match c {
                b'\\' => {
                    out.push_str(self.slice(run));
                    self.pos += 1;
                    // Keep the escaped character (a whole UTF-8 sequence when non-ASCII).
                    run = self.pos;
                    if let Some(ch) = self.s.get(self.pos..).and_then(|r| r.chars().next()) {
                        self.pos += ch.len_utf8();
                    }
                }
                b'"' => {
                    out.push_str(self.slice(run));
                    self.pos += 1;
                    return out;
                }
                // Folding inside a quoted string is white space (RFC 5322 §3.2.4).
                b'\r' | b'\n' => {
                    out.push_str(self.slice(run));
                    self.pos += 1;
                    run = self.pos;
                }
                _ => self.pos += 1,
            }
        }
        out.push_str(self.slice(run));
        out
    }

    /// A bare token: everything up to white space, `(`, `;` or one of `stops`.
    fn token(&mut self, stops: &[u8]) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || c == b'(' || c == b';' || stops.contains(&c) {
                break;
            }
            self.pos += 1;
        }
        self.slice(start)
    }

    /// A value: a quoted string or a bare token (which may itself contain `=` or `.`, as in
    /// `header.b=AbC/d+e=`).
    fn value(&mut self) -> Cow<'a, str> {
        if self.peek() == Some(b'"') {
            Cow::Owned(self.quoted())
        } else {
            Cow::Borrowed(self.token(b"\""))
        }
    }

    /// Skips to just after the next `;` outside quotes and comments (error recovery), or the end.
    fn skip_past_semicolon(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.quoted();
                }
                b'(' => self.skip_comment(),
                b';' => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
    }
}

/// The start of a header: authserv-id, optional version, and the statements after them.
fn split_header(value: &str) -> (Cow<'_, str>, Option<u32>, Statements<'_>) {
    let mut cur = Cursor { s: value, pos: 0 };
    cur.skip_cfws();
    let authserv_id = cur.value();
    cur.skip_cfws();
    // Optional authres-version: digits before the first `;`.
    let version = if cur.peek().is_some_and(|c| c.is_ascii_digit()) { cur.token(b"").parse().ok() } else { None };
    // Anything else before the first `;` is not in the grammar; skip it.
    cur.skip_past_semicolon();
    (authserv_id, version, Statements { cur })
}

/// The `method=result …` statements of one header, borrowed from it. Iterating allocates
/// nothing (unless a value is a quoted string with escapes), which matters because every mail
/// has one of these headers.
struct Statements<'a> {
    cur: Cursor<'a>,
}

/// One `method=result` with the cursor just after the result, where its properties start.
struct Statement<'a> {
    /// As written, without a `/version` suffix.
    method: &'a str,
    result: Cow<'a, str>,
    props: Cursor<'a>,
}

impl<'a> Iterator for Statements<'a> {
    type Item = Statement<'a>;

    fn next(&mut self) -> Option<Statement<'a>> {
        while self.cur.peek().is_some() {
            self.cur.skip_cfws();
            let head = statement_head(&mut self.cur);
            let props = self.cur;
            self.cur.skip_past_semicolon();
            if let Some((method, result)) = head {
                return Some(Statement { method, result, props });
            }
        }
        None
    }
}

/// `method=result` at the cursor. `; none` (the RFC 8601 no-result) and garbage give `None`.
fn statement_head<'a>(cur: &mut Cursor<'a>) -> Option<(&'a str, Cow<'a, str>)> {
    let method = cur.token(b"=");
    // `dkim/1`: the method version is irrelevant to us.
    let method = method.split('/').next().unwrap_or("").trim();
    cur.skip_cfws();
    if method.is_empty() || cur.peek() != Some(b'=') {
        return None;
    }
    cur.bump();
    cur.skip_cfws();
    let result = cur.value();
    (!result.is_empty()).then_some((method, result))
}

impl<'a> Statement<'a> {
    /// `(key, value)` pairs up to the statement's end: `reason` and `ptype.property` keys as
    /// written.
    fn items(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
        let mut cur = self.props;
        std::iter::from_fn(move || loop {
            cur.skip_cfws();
            match cur.peek() {
                None | Some(b';') => return None,
                _ => {}
            }
            let key = cur.token(b"=\"");
            cur.skip_cfws();
            if key.is_empty() || cur.peek() != Some(b'=') {
                // Not `key=value`: step over one byte so the loop always advances.
                if key.is_empty() {
                    cur.bump();
                }
                continue;
            }
            cur.bump();
            cur.skip_cfws();
            let value = cur.value();
            return Some((key, value));
        })
    }

    fn is(&self, method: &str, result: &str) -> bool {
        self.method.eq_ignore_ascii_case(method) && self.result.eq_ignore_ascii_case(result)
    }

    /// The DKIM signer: `header.d`, else the domain of `header.i`.
    fn signer(&self) -> Option<Cow<'a, str>> {
        let mut i = None;
        for (key, value) in self.items() {
            if key.eq_ignore_ascii_case("header.d") {
                return Some(value);
            }
            if i.is_none() && key.eq_ignore_ascii_case("header.i") {
                i = Some(value);
            }
        }
        i
    }
}

/// Parses one header value (without the `Authentication-Results:` name). Never fails: what cannot
/// be understood is left out.
pub fn parse(value: &str) -> AuthResults {
    let (authserv_id, version, statements) = split_header(value);
    let results = statements
        .map(|st| {
            let mut info = MethodResult {
                method: st.method.to_ascii_lowercase(),
                result: st.result.to_ascii_lowercase(),
                ..MethodResult::default()
            };
            for (key, value) in st.items() {
                if key.eq_ignore_ascii_case("reason") {
                    info.reason = Some(value.into_owned());
                } else if let Some((ptype, property)) = key.split_once('.') {
                    info.props.push(Prop {
                        ptype: ptype.to_ascii_lowercase(),
                        property: property.to_ascii_lowercase(),
                        value: value.into_owned(),
                    });
                }
            }
            info
        })
        .collect();
    AuthResults { authserv_id: authserv_id.to_ascii_lowercase(), version, results }
}

/// Whether `signer` (a DKIM `d=`) is `from_domain` or a parent of it. A bare TLD or a ccTLD
/// second level such as `co.kr` never counts: nobody can hold a key there, so such a `d=` is a
/// forgery of the header itself.
fn aligned(signer: &str, from_domain: &str) -> bool {
    let signer = signer.trim().trim_start_matches('@').trim_end_matches('.');
    let signer = signer.rsplit('@').next().unwrap_or(signer);
    let Some((first, tld)) = signer.split_once('.') else {
        return false;
    };
    const SECOND_LEVEL: &[&str] = &["co", "or", "go", "ne", "re", "pe", "ac", "com", "net", "org", "gov", "edu"];
    if tld.len() == 2 && SECOND_LEVEL.iter().any(|s| s.eq_ignore_ascii_case(first)) {
        return false;
    }
    let from = from_domain.trim_end_matches('.');
    if from.eq_ignore_ascii_case(signer) {
        return true;
    }
    from.len() > signer.len()
        && from.as_bytes().get(from.len() - signer.len() - 1) == Some(&b'.')
        && from.get(from.len() - signer.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(signer))
}

/// Picks the topmost header (the first in `values`, which are in message order) whose
/// authserv-id is trusted — any when `trusted` is empty — and returns its verdict. No such
/// header: `none`.
pub fn evaluate<'v>(
    values: impl IntoIterator<Item = &'v str>,
    trusted: &[String],
    from_domain: Option<&str>,
) -> Authenticated {
    for value in values {
        let (authserv_id, _, statements) = split_header(value);
        let believed = trusted.is_empty() || trusted.iter().any(|t| t.trim().eq_ignore_ascii_case(&authserv_id));
        if believed {
            return verdict_of(statements, from_domain);
        }
    }
    Authenticated::None
}

/// SPEC §3 verdict for one header: `pass` when `dmarc=pass` or an aligned `dkim=pass`; `fail` when
/// `dmarc=fail`, or a `dkim=fail` for the From domain, and nothing *passed in that sense* — a
/// `dkim=pass` for some other domain beside `dmarc=fail` is exactly what a spoof looks like, so it
/// does not rescue the mail; `none` otherwise. **SPF alone never fails a mail**: forwarding breaks
/// SPF (RFC 7208 §1.2), and merchants forward their contact mailboxes.
fn verdict_of(statements: Statements<'_>, from_domain: Option<&str>) -> Authenticated {
    let mut failed = false;
    for st in statements {
        let pass = st.is("dmarc", "pass")
            || (st.is("dkim", "pass")
                && from_domain.is_some_and(|from| st.signer().is_some_and(|d| aligned(&d, from))));
        if pass {
            return Authenticated::Pass;
        }
        // A failed signature without its domain is taken as the From domain's: nothing says
        // otherwise, and a failed signature on Hecto's name must not pass for a neutral one.
        failed |= st.is("dmarc", "fail")
            || (st.is("dkim", "fail") && st.signer().is_none_or(|d| from_domain.is_some_and(|from| aligned(&d, from))));
    }
    if failed {
        Authenticated::Fail
    } else {
        Authenticated::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gmail_style_header_with_comments_and_folding() {
        let v = "mx.google.com;\r\n       dkim=pass header.i=@hectofinancial.co.kr header.s=s1 header.b=Ab+c/d=;\r\n       spf=pass (google.com: domain of contract@hectofinancial.co.kr designates 1.2.3.4 as permitted sender) smtp.mailfrom=contract@hectofinancial.co.kr;\r\n       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=hectofinancial.co.kr";
        let r = parse(v);
        assert_eq!(r.authserv_id, "mx.google.com");
        assert_eq!(r.results.len(), 3);
        assert_eq!(r.results[0].method, "dkim");
        assert_eq!(r.results[0].result, "pass");
        assert_eq!(r.results[0].prop("header", "i"), Some("@hectofinancial.co.kr"));
        assert_eq!(r.results[0].prop("header", "b"), Some("Ab+c/d="));
        assert_eq!(r.results[1].method, "spf");
        assert_eq!(r.results[1].prop("smtp", "mailfrom"), Some("contract@hectofinancial.co.kr"));
        assert_eq!(r.results[2].prop("header", "from"), Some("hectofinancial.co.kr"));
    }

    #[test]
    fn parses_version_none_and_case() {
        let r = parse("Example.ORG 1; none");
        assert_eq!(r.authserv_id, "example.org");
        assert_eq!(r.version, Some(1));
        assert!(r.results.is_empty());

        let r = parse("mx.example.net; DKIM/1=PASS Header.D=Example.COM; SPF = Fail");
        assert_eq!(r.results[0].method, "dkim");
        assert_eq!(r.results[0].result, "pass");
        assert_eq!(r.results[0].prop("header", "d"), Some("Example.COM"));
        assert_eq!(r.results[1].method, "spf");
        assert_eq!(r.results[1].result, "fail");
    }

    #[test]
    fn semicolons_inside_quotes_and_comments_do_not_split() {
        let r = parse("mx.example.net; dkim=fail reason=\"bad; signature\" (x; y) header.d=a.example; spf=none");
        assert_eq!(r.results.len(), 2);
        assert_eq!(r.results[0].reason.as_deref(), Some("bad; signature"));
        assert_eq!(r.results[0].prop("header", "d"), Some("a.example"));
        assert_eq!(r.results[1].method, "spf");
    }

    #[test]
    fn quoted_authserv_id_and_nested_comments() {
        let r = parse("(lead (nested) comment) \"mx.example.net\" (c); dmarc=pass (a (b) c) header.from=x.example");
        assert_eq!(r.authserv_id, "mx.example.net");
        assert_eq!(r.results[0].method, "dmarc");
        assert_eq!(r.results[0].prop("header", "from"), Some("x.example"));
    }

    #[test]
    fn garbage_never_panics_and_yields_nothing_useful() {
        for v in ["", ";", ";;;=", "(((", "\"", "a; =pass", "a; dkim=", "a; dkim=pass header.d", "é; ü=ß ö.x=\u{fffd}"]
        {
            let r = parse(v);
            assert!(r.results.iter().all(|m| !m.method.is_empty() && !m.result.is_empty()), "{v:?}");
        }
    }

    fn v(s: &str) -> Authenticated {
        evaluate([s], &[], Some("mail.hectofinancial.co.kr"))
    }

    #[test]
    fn verdict_pass_by_dmarc_or_aligned_dkim() {
        assert_eq!(v("mx; dmarc=pass header.from=mail.hectofinancial.co.kr"), Authenticated::Pass);
        assert_eq!(v("mx; dkim=pass header.d=hectofinancial.co.kr; spf=fail"), Authenticated::Pass);
        assert_eq!(v("mx; dkim=pass header.d=mail.hectofinancial.co.kr"), Authenticated::Pass);
    }

    #[test]
    fn verdict_unaligned_dkim_pass_does_not_rescue_a_failure() {
        assert_eq!(v("mx; dkim=pass header.d=evil.example; dmarc=fail"), Authenticated::Fail);
        // SPF alone never fails a mail (forwarding breaks it): an unaligned signature beside it
        // is no verdict either way.
        assert_eq!(v("mx; dkim=pass header.d=co.kr; spf=fail"), Authenticated::None);
        assert_eq!(v("mx; dkim=pass header.d=kr; spf=fail"), Authenticated::None);
        assert_eq!(v("mx; dkim=pass header.d=ectofinancial.co.kr"), Authenticated::None);
    }

    #[test]
    fn verdict_fail_and_none() {
        assert_eq!(v("mx; dkim=fail header.d=hectofinancial.co.kr"), Authenticated::Fail);
        assert_eq!(v("mx; spf=fail smtp.mailfrom=x@y.z"), Authenticated::None, "SPF alone never fails");
        assert_eq!(v("mx; dkim=fail header.d=other.example"), Authenticated::None, "not the From domain's");
        assert_eq!(v("mx; spf=softfail; dkim=neutral"), Authenticated::None);
        assert_eq!(v("mx; none"), Authenticated::None);
    }

    #[test]
    fn verdicts_by_signer_alignment_and_failures() {
        use Authenticated::{Fail, Pass};
        const NONE: Authenticated = Authenticated::None;
        let (hecto, sub) = (Some("hectofinancial.co.kr"), Some("mail.hectofinancial.co.kr"));
        // (header, [From hectofinancial.co.kr, From mail.hectofinancial.co.kr, no From])
        let table = [
            ("mx; dmarc=pass", [Pass, Pass, Pass]),
            ("mx; DKIM=Pass header.i=@mail.hectofinancial.co.kr", [NONE, Pass, NONE]),
            ("mx; dkim=pass header.i=@x.example header.d=hectofinancial.co.kr", [Pass, Pass, NONE]),
            ("mx; dkim=pass header.d=x.example header.i=@hectofinancial.co.kr", [NONE, NONE, NONE]),
            ("mx; spf=fail; dkim=pass header.d=\"hectofinancial.co.kr\"", [Pass, Pass, NONE]),
            ("mx; spf=FAIL", [NONE, NONE, NONE]),
            ("mx; dmarc=fail", [Fail, Fail, Fail]),
            ("mx; none", [NONE, NONE, NONE]),
            ("mx; arc=fail", [NONE, NONE, NONE]),
            ("", [NONE, NONE, NONE]),
        ];
        for (h, want) in table {
            for (from, want) in [hecto, sub, None].into_iter().zip(want) {
                assert_eq!(evaluate([h], &[], from), want, "{h:?} {from:?}");
            }
        }
    }

    #[test]
    fn evaluate_takes_topmost_trusted_header() {
        let headers = [
            "evil.example; dmarc=pass",
            "mx.ours.example; dkim=fail header.d=hectofinancial.co.kr",
            "mx.ours.example; dmarc=pass",
        ];
        assert_eq!(evaluate(headers, &[], Some("hectofinancial.co.kr")), Authenticated::Pass);
        let trusted = vec!["MX.OURS.EXAMPLE".to_owned()];
        assert_eq!(evaluate(headers, &trusted, Some("hectofinancial.co.kr")), Authenticated::Fail);
        let nobody = vec!["other.example".to_owned()];
        assert_eq!(evaluate(headers, &nobody, Some("hectofinancial.co.kr")), Authenticated::None);
    }
}
