//! The header pass's `UID FETCH`, read without async-imap's per-response parsing.
//!
//! The header pass reads tens of thousands of small responses,
//! `* 12 FETCH (UID 345 BODY[HEADER.FIELDS (FROM TO CC)] {67}` + the header bytes + `)`.
//! async-imap parses each one with nom into owned structures and allocates a fresh zeroed 4 KiB
//! buffer for every response, which made our side, not the server, the bottleneck of a first
//! sync: about 8 µs per mail against the server's 4 (measured with `scripts/bench-scan`). Here the
//! command still goes out through async-imap, so its tag counter stays right, but the responses
//! are framed straight from the socket in one large buffer, and each mail's UID and header bytes
//! reach the caller without a copy.
//!
//! **It never guesses.** The fast parser knows the shape servers normally send; any FETCH it does
//! not take apart (an attribute it cannot skip, odd spacing, a server's own extension) goes to
//! the general parser (imap-proto, what async-imap uses), and only a response neither can read
//! is an error — the pass then fails and the folder reports it, the cursor staying where it was.
//! A FETCH that names a UID but carries no header section is reported as such
//! ([`Item::Mail`] with `None`), so the caller can fetch that mail whole instead of skipping it.
//!
//! Only this one command is read this way. Nothing the server says meanwhile is lost: `EXISTS`
//! or `RECENT` set [`Connection::announced`] (the watcher resyncs on it, as it does for
//! async-imap's unsolicited responses), `* OK [ALERT]` texts are logged (RFC 3501 §7.1: they must
//! reach a person), and bytes that arrived after our tagged completion are handed back to the
//! transport, where async-imap reads them next.

use std::borrow::Cow;
use std::io;

use async_imap::imap_proto::{self, AttributeValue, MessageSection, SectionPath};
use tokio::io::AsyncReadExt;
use tracing::warn;

use super::connect::{Completed, Connection};

/// One response bigger than this is refused: a header section of From, To and Cc never comes
/// near it, and a server sending one must not make us buffer without bound.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Room for the next socket read: large, so that a read carries many responses.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FastFetchError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("the server answered {0}")]
    Refused(String),
    #[error("the server closed the session: {0}")]
    Bye(String),
    #[error("unreadable response from the server ({0}): {1:?}")]
    Protocol(&'static str, String),
}

/// What one response to the header FETCH says.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A mail's UID and its header section; `None` when the FETCH carried none (a flag change
    /// announced meanwhile, or a server that left the section out).
    Mail(u32, Option<Cow<'a, [u8]>>),
    /// `* n EXISTS` or `* n RECENT`: new mail.
    Announce,
    /// `* OK [ALERT] …` (or NO/BAD): the server's words for a person.
    Alert(String),
    /// An untagged `* NO` or `* BAD` (not an ALERT): the server could not do all of the command
    /// (RFC 3501 §7.1.2: "a warning"), e.g. "Some messages could not be FETCHed".
    Warning(String),
    /// Our command's completion: `Ok` with the server's text, `Err` with its refusal.
    Done(Result<String, String>),
    /// Another (pipelined) command's completion, come before ours (RFC 3501 §5.5).
    OtherDone(String, Completed),
    /// `* BYE`: the server is closing the connection.
    Bye(String),
    /// Anything else (a FETCH of flags without a UID, other untagged data): nothing for us.
    Nothing,
}

/// Read one framed response (see [`response_len`]) of the command tagged `tag`. `Err` only for
/// a response neither the fast nor the general parser can read.
pub fn read_response<'a>(response: &'a [u8], tag: &str) -> Result<Item<'a>, FastFetchError> {
    match response_kind(response, tag) {
        Kind::Tagged(true, text) => Ok(Item::Done(Ok(text))),
        Kind::Tagged(false, text) => Ok(Item::Done(Err(text))),
        Kind::OtherTagged(tag, completed) => Ok(Item::OtherDone(tag, completed)),
        Kind::Announce => Ok(Item::Announce),
        Kind::Bye(text) => Ok(Item::Bye(text)),
        Kind::Fetch => {
            let fetched = match parse_fetch(response) {
                Ok(f) => f,
                Err(_) => match general_fetch(response)? {
                    // What the fast parser could not read, the general one read without finding
                    // a UID in it (imap-proto passes over attributes it does not know): whose
                    // mail this was, and whether it was one we asked for, is unknown.
                    Fetched { uid: None, .. } => return Err(protocol("a FETCH whose UID cannot be read", response)),
                    f => f,
                },
            };
            match fetched {
                Fetched { uid: Some(uid), header } => Ok(Item::Mail(uid, header)),
                Fetched { uid: None, header: None } => Ok(Item::Nothing),
                // A header section without its UID (RFC 3501 §6.4.8 says UID FETCH always
                // returns it): whose mail this is cannot be known, so it is not guessed.
                Fetched { uid: None, header: Some(_) } => Err(protocol("a FETCH with a header but no UID", response)),
            }
        }
        Kind::Other => Ok(match untagged_status(response) {
            Some((_, true, text)) => Item::Alert(text),
            Some((false, false, text)) => Item::Warning(text),
            _ => Item::Nothing,
        }),
    }
}

/// The general parser's reading of a FETCH the fast one did not take apart.
fn general_fetch(response: &[u8]) -> Result<Fetched<'_>, FastFetchError> {
    match imap_proto::Response::parse(response) {
        Ok((b"", imap_proto::Response::Fetch(_, attributes))) => {
            let mut out = Fetched { uid: None, header: None };
            for a in attributes {
                match a {
                    AttributeValue::Uid(u) => out.uid = Some(u),
                    AttributeValue::BodySection {
                        section: Some(SectionPath::Full(MessageSection::Header)),
                        data,
                        ..
                    }
                    | AttributeValue::Rfc822Header(data) => out.header = data,
                    _ => {}
                }
            }
            Ok(out)
        }
        _ => Err(protocol("a FETCH neither parser can read", response)),
    }
}

/// An untagged status response (`* OK|NO|BAD [code] text`): whether it is OK, whether its code
/// is ALERT, and its text (the whole text after the status for a NO/BAD). Read by hand, not by
/// imap-proto: it panics on a response code followed by a non-ASCII byte instead of the space
/// (found by fuzzing this reader).
fn untagged_status(response: &[u8]) -> Option<(bool, bool, String)> {
    let line = response.strip_suffix(b"\n").unwrap_or(response);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"* ")?;
    let (status, rest) = match memchr::memchr(b' ', rest) {
        Some(space) => (&rest[..space], &rest[space + 1..]),
        None => (rest, &b""[..]),
    };
    let ok = status.eq_ignore_ascii_case(b"OK");
    if !ok && !status.eq_ignore_ascii_case(b"NO") && !status.eq_ignore_ascii_case(b"BAD") {
        return None;
    }
    let alert = rest.get(..7).is_some_and(|c| c.eq_ignore_ascii_case(b"[ALERT]"));
    let text = if alert { &rest[7..] } else { rest };
    Some((ok, alert, String::from_utf8_lossy(text).trim().to_owned()))
}

fn protocol(what: &'static str, response: &[u8]) -> FastFetchError {
    let shown = String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned();
    FastFetchError::Protocol(what, shown)
}

/// What the bytes read so far hold for the header FETCH tagged `tag`.
#[derive(Debug)]
pub struct Progress {
    /// Bytes of whole responses taken; the rest waits for more.
    pub consumed: usize,
    /// Set once the command ended: its completion text, or why it failed.
    pub done: Option<Result<String, FastFetchError>>,
    /// An `EXISTS` or `RECENT` came along.
    pub announced: bool,
    /// An untagged NO/BAD came along: the answer may be incomplete.
    pub warning: Option<String>,
    /// Other commands' completions that came before ours, for their own readers.
    pub early: Vec<(String, Completed)>,
}

/// Take the complete responses at the start of `buf`, calling `each(uid, header)` for every
/// FETCH that names a UID, until our command's completion, a failure or the end of the whole
/// responses. Pure (but for logging alerts): the socket loop and the fuzz target share it.
pub fn read_buffered(buf: &[u8], tag: &str, each: &mut impl FnMut(u32, Option<&[u8]>)) -> Progress {
    let mut progress = Progress { consumed: 0, done: None, announced: false, warning: None, early: Vec::new() };
    while let Some(len) = response_len(&buf[progress.consumed..]) {
        let response = &buf[progress.consumed..progress.consumed + len];
        progress.consumed += len;
        match read_response(response, tag) {
            Ok(Item::Mail(uid, header)) => each(uid, header.as_deref()),
            Ok(Item::Announce) => progress.announced = true,
            Ok(Item::Alert(text)) => warn!(alert = %text, "The IMAP server says"),
            Ok(Item::Warning(text)) => progress.warning = Some(text),
            Ok(Item::Nothing) => {}
            Ok(Item::Done(Ok(text))) => progress.done = Some(Ok(text)),
            Ok(Item::Done(Err(text))) => progress.done = Some(Err(FastFetchError::Refused(text))),
            Ok(Item::OtherDone(tag, completed)) => progress.early.push((tag, completed)),
            Ok(Item::Bye(text)) => progress.done = Some(Err(FastFetchError::Bye(text))),
            Err(e) => progress.done = Some(Err(e)),
        }
        if progress.done.is_some() {
            break;
        }
    }
    progress
}

/// How the header FETCH ended well: the server's completion text, and the last untagged NO/BAD
/// warning it gave meanwhile (then some mail may be missing from the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub warning: Option<String>,
}

/// `UID FETCH set (UID BODY.PEEK[HEADER.FIELDS (fields)])`, calling `each(uid, header)` for every
/// FETCH that names a UID, in the order the server sends them (`None`: that FETCH carried no
/// header section, or NIL).
pub async fn uid_fetch_headers(
    conn: &mut Connection,
    set: &str,
    fields: &str,
    each: impl FnMut(u32, Option<&[u8]>),
) -> Result<Completion, FastFetchError> {
    let tag = send_header_fetch(conn, set, fields).await?;
    read_header_fetch(conn, &tag, each).await
}

/// Send the header FETCH without waiting for its answer (pipelining: the next batch's command
/// goes out while this one is read); its tag, for [`read_header_fetch`].
pub async fn send_header_fetch(conn: &mut Connection, set: &str, fields: &str) -> Result<String, FastFetchError> {
    Ok(conn.session.run_command(format!("UID FETCH {set} (UID BODY.PEEK[HEADER.FIELDS ({fields})])")).await?.0)
}

/// Read the answer of the header FETCH tagged `tag`, as [`uid_fetch_headers`] does. Every FETCH
/// before its completion goes to `each`, a later command's too (a server may run pipelined
/// commands at once, RFC 3501 §5.5): the caller tells them apart by UID.
pub async fn read_header_fetch(
    conn: &mut Connection,
    tag: &str,
    mut each: impl FnMut(u32, Option<&[u8]>),
) -> Result<Completion, FastFetchError> {
    let tag = tag.to_owned();
    match conn.take_early(&tag) {
        Some(Completed::Ok(text)) => return Ok(Completion { text, warning: None }),
        Some(Completed::No(text) | Completed::Bad(text) | Completed::Other(text)) => {
            return Err(FastFetchError::Refused(text))
        }
        None => {}
    }
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut announced = false;
    let mut warning = None;
    let result = loop {
        let progress = read_buffered(&buf, &tag, &mut each);
        announced |= progress.announced;
        warning = progress.warning.or(warning);
        for (other, completed) in progress.early {
            conn.keep_early(other, completed);
        }
        if let Some(result) = progress.done {
            // Whatever followed our completion belongs to whoever reads next: async-imap.
            conn.session.get_mut().unread(&buf[progress.consumed..]);
            break result.map(|text| Completion { text, warning });
        }
        buf.drain(..progress.consumed);
        if buf.len() > MAX_RESPONSE {
            break Err(FastFetchError::Protocol("a response of more than 64 MiB", String::new()));
        }
        buf.reserve(READ_CHUNK);
        if conn.session.get_mut().read_buf(&mut buf).await? == 0 {
            break Err(FastFetchError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection in the middle of a FETCH",
            )));
        }
    };
    conn.announced |= announced;
    result
}

/// The length of the first complete response in `data`, literals included; `None` while more
/// bytes are needed. In a FETCH response, a line ending in `{n}` (or `{n+}`) announces n bytes
/// of literal, after which the response continues (RFC 3501 §4.3, RFC 7888). Other responses
/// (status lines, EXISTS, our completion) carry no literal during a header FETCH: their text may
/// end in `{2}` without swallowing the next response.
pub fn response_len(data: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let nl = pos + memchr::memchr(b'\n', &data[pos..])?;
        if pos == 0 && !is_fetch_line(&data[..nl]) {
            return Some(nl + 1);
        }
        match literal_len(&data[pos..nl]) {
            Some(n) => {
                pos = (nl + 1).checked_add(n)?;
                if pos > data.len() {
                    return None;
                }
            }
            None => return Some(nl + 1),
        }
    }
}

/// `* <number> FETCH …`, any case.
fn is_fetch_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"* ") else { return false };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].get(..6).is_some_and(|w| w.eq_ignore_ascii_case(b" FETCH"))
}

/// `n` when `line` (without its `\n`) ends in a literal announcement `{n}` or `{n+}`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|b| *b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    parse_number(digits)
}

fn parse_number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// Our command's completion: OK or not, and the text after the tag.
    Tagged(bool, String),
    /// Another command's completion.
    OtherTagged(String, Completed),
    Fetch,
    /// `* n EXISTS` or `* n RECENT`: new mail.
    Announce,
    Bye(String),
    Other,
}

/// `tag OK|NO|BAD text` of another command (a tag is an atom, RFC 3501 §9: no `+`, no `*`).
fn other_tagged(line: &[u8]) -> Option<Kind> {
    let mut words = line.splitn(3, |b| *b == b' ');
    let tag = words.next().filter(|t| !t.is_empty() && !t.iter().any(|b| b"+*(){% \"\\".contains(b)))?;
    let status = words.next()?;
    let text = String::from_utf8_lossy(words.next().unwrap_or_default()).into_owned();
    let completed = if status.eq_ignore_ascii_case(b"OK") {
        Completed::Ok(text)
    } else if status.eq_ignore_ascii_case(b"NO") {
        Completed::No(text)
    } else if status.eq_ignore_ascii_case(b"BAD") {
        Completed::Bad(text)
    } else {
        return None;
    };
    Some(Kind::OtherTagged(String::from_utf8_lossy(tag).into_owned(), completed))
}

fn response_kind(response: &[u8], tag: &str) -> Kind {
    let line = response.strip_suffix(b"\r\n").unwrap_or(response);
    if let Some(rest) = line.strip_prefix(tag.as_bytes()).and_then(|r| r.strip_prefix(b" ")) {
        let text = String::from_utf8_lossy(rest).into_owned();
        return Kind::Tagged(rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"OK"), text);
    }
    let Some(rest) = line.strip_prefix(b"* ") else {
        return other_tagged(line).unwrap_or(Kind::Other); // a continuation request, or noise
    };
    let mut words = rest.splitn(3, |b| *b == b' ');
    let first = words.next().unwrap_or_default();
    if first.eq_ignore_ascii_case(b"BYE") {
        return Kind::Bye(String::from_utf8_lossy(rest).into_owned());
    }
    let second = words.next().unwrap_or_default();
    if first.iter().all(u8::is_ascii_digit) && !first.is_empty() {
        if second.eq_ignore_ascii_case(b"FETCH") {
            return Kind::Fetch;
        }
        if second.eq_ignore_ascii_case(b"EXISTS") || second.eq_ignore_ascii_case(b"RECENT") {
            return Kind::Announce;
        }
    }
    Kind::Other
}

/// What the header pass needs from one FETCH response.
#[derive(Debug, PartialEq, Eq)]
pub struct Fetched<'a> {
    pub uid: Option<u32>,
    pub header: Option<Cow<'a, [u8]>>,
}

/// `* 12 FETCH (UID 345 BODY[HEADER.FIELDS (FROM TO CC)] {67}\r\n…)` → UID and header bytes.
/// Other attributes (FLAGS, MODSEQ, …) are skipped, whatever their shape.
pub fn parse_fetch(response: &[u8]) -> Result<Fetched<'_>, &'static str> {
    let mut p = Parser { b: response, i: 0 };
    p.expect(b"* ")?;
    p.number()?;
    p.expect(b" ")?;
    let word = p.atom();
    if !word.eq_ignore_ascii_case(b"FETCH") {
        return Err("not a FETCH");
    }
    p.expect(b" (")?;
    let mut out = Fetched { uid: None, header: None };
    loop {
        p.skip_spaces();
        match p.peek() {
            Some(b')') => return Ok(out),
            None => return Err("FETCH without its closing parenthesis"),
            _ => {}
        }
        let name = p.attribute_name()?;
        p.expect(b" ")?;
        if name.eq_ignore_ascii_case(b"UID") {
            let uid = p.number()?;
            out.uid = Some(u32::try_from(uid).map_err(|_| "UID out of range")?);
        } else if is_header_section(name) {
            // NIL: the server has no header to give for it, which is not an empty header.
            out.header = p.nstring()?;
        } else {
            p.skip_value()?;
        }
    }
}

/// `BODY[HEADER.FIELDS (…)]`, possibly with a partial `<origin>`.
fn is_header_section(name: &[u8]) -> bool {
    name.len() > 5 && name[..5].eq_ignore_ascii_case(b"BODY[") && {
        let inner = &name[5..];
        inner.len() >= 6 && inner[..6].eq_ignore_ascii_case(b"HEADER")
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, s: &[u8]) -> Result<(), &'static str> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Ok(())
        } else {
            Err("unexpected byte")
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn number(&mut self) -> Result<u64, &'static str> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        parse_number(digits).map(|n| n as u64).ok_or("expected a number")
    }

    /// An atom: up to a space, a parenthesis, or the end of the line.
    fn atom(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(|b| !matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n')) {
            self.i += 1;
        }
        &self.b[start..self.i]
    }

    /// `UID`, `FLAGS`, `BODY[HEADER.FIELDS (FROM TO)]<0>`: spaces inside brackets belong to it.
    fn attribute_name(&mut self) -> Result<&'a [u8], &'static str> {
        let start = self.i;
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'[' => depth += 1,
                b']' => depth = depth.checked_sub(1).ok_or("unbalanced ]")?,
                b' ' | b')' if depth == 0 => break,
                b'\r' | b'\n' => return Err("attribute name runs to the end of the line"),
                _ => {}
            }
            self.i += 1;
        }
        if self.i == start {
            return Err("empty attribute name");
        }
        Ok(&self.b[start..self.i])
    }

    /// A literal, a quoted string or NIL.
    fn nstring(&mut self) -> Result<Option<Cow<'a, [u8]>>, &'static str> {
        match self.peek() {
            Some(b'{') => self.literal().map(|l| Some(Cow::Borrowed(l))),
            Some(b'"') => self.quoted().map(Some),
            _ if self.b[self.i..].len() >= 3 && self.b[self.i..self.i + 3].eq_ignore_ascii_case(b"NIL") => {
                self.i += 3;
                Ok(None)
            }
            _ => Err("expected a string"),
        }
    }

    /// `{n}\r\n` + n bytes (`{n+}` too).
    fn literal(&mut self) -> Result<&'a [u8], &'static str> {
        self.expect(b"{")?;
        let n = self.number()? as usize;
        if self.peek() == Some(b'+') {
            self.i += 1;
        }
        self.expect(b"}\r\n")?;
        let end = self.i.checked_add(n).filter(|e| *e <= self.b.len()).ok_or("literal longer than the response")?;
        let bytes = &self.b[self.i..end];
        self.i = end;
        Ok(bytes)
    }

    /// `"…"` with `\\` and `\"` escapes.
    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, &'static str> {
        self.expect(b"\"")?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.peek().ok_or("unterminated quoted string")? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                b'\r' | b'\n' => return Err("unterminated quoted string"),
                _ => self.i += 1,
            }
        }
        let raw = self.b.get(start..self.i).ok_or("unterminated quoted string")?;
        self.i += 1;
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut it = raw.iter();
        while let Some(&b) = it.next() {
            out.push(if b == b'\\' { it.next().copied().unwrap_or(b'\\') } else { b });
        }
        Ok(Cow::Owned(out))
    }

    /// Any value: a parenthesised list (nested, with strings and literals inside), a string, a
    /// number or an atom.
    fn skip_value(&mut self) -> Result<(), &'static str> {
        let mut depth = 0usize;
        loop {
            match self.peek().ok_or("value runs past the response")? {
                b'(' => {
                    depth += 1;
                    self.i += 1;
                }
                b')' if depth > 0 => {
                    depth -= 1;
                    self.i += 1;
                }
                b'{' => {
                    self.literal()?;
                }
                b'"' => {
                    self.quoted()?;
                }
                b' ' if depth > 0 => self.i += 1,
                b'\r' | b'\n' => return Err("value runs to the end of the line"),
                _ => {
                    if self.atom().is_empty() {
                        return Err("unexpected byte in a value");
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_commands_completion_before_ours_is_kept_for_its_reader() {
        let buf = b"A3 NO [UNAVAILABLE] later\r\n* 1 FETCH (UID 4 BODY[HEADER.FIELDS (FROM)] {9}\r\nFrom: a\r\n)\r\nA4 OK fine\r\n+ go on\r\nA2 OK done\r\n";
        let mut uids = Vec::new();
        let progress = read_buffered(buf, "A2", &mut |uid, _| uids.push(uid));
        assert_eq!(uids, [4]);
        assert_eq!(
            progress.early,
            [
                ("A3".to_owned(), Completed::No("[UNAVAILABLE] later".into())),
                ("A4".to_owned(), Completed::Ok("fine".into()))
            ]
        );
        assert!(matches!(progress.done, Some(Ok(ref text)) if text == "OK done"), "{progress:?}");
    }

    #[test]
    fn a_response_ends_at_its_line_end_after_any_literals() {
        let one = b"* 1 FETCH (UID 7 BODY[HEADER.FIELDS (FROM)] {12}\r\nFrom: a\r\n\r\n)\r\n";
        let mut data = one.to_vec();
        data.extend_from_slice(b"* 2 EXISTS\r\n");
        assert_eq!(response_len(&data), Some(one.len()));
        assert_eq!(response_len(&data[one.len()..]), Some(12));
        // Incomplete: inside the literal, and before the final line end.
        assert_eq!(response_len(&one[..40]), None);
        assert_eq!(response_len(&one[..one.len() - 1]), None);
        // A literal whose bytes contain what looks like a line end with a literal marker.
        let tricky = b"* 1 FETCH (BODY[HEADER] {9}\r\nX: {99}\r\n)\r\n";
        assert_eq!(response_len(tricky), Some(tricky.len()));
        // Non-synchronising literal (RFC 7888).
        let plus = b"* 1 FETCH (BODY[HEADER] {2+}\r\nab)\r\n";
        assert_eq!(response_len(plus), Some(plus.len()));
        // Only a FETCH carries literals here: status text ending in "{2}" is one line.
        let alert = b"* OK [ALERT] see {2}\r\n* 1 FETCH (UID 1)\r\n";
        assert_eq!(response_len(alert), Some(22));
        assert_eq!(response_len(b"A1 OK done {3}\r\nabc"), Some(16));
    }

    #[test]
    fn the_uid_and_header_come_out_of_a_fetch_whatever_else_it_carries() {
        let r = b"* 12 FETCH (FLAGS (\\Seen $Label \"x\") UID 345 MODSEQ (12) BODY[HEADER.FIELDS (FROM TO CC)] {19}\r\nFrom: a@b.example\r\n)\r\n";
        let f = parse_fetch(r).unwrap();
        assert_eq!(f.uid, Some(345));
        assert_eq!(f.header.as_deref(), Some(&b"From: a@b.example\r\n"[..]));
        // Attribute order is the server's choice; lower case is legal.
        let r = b"* 3 fetch (body[header.fields (from)]<0> {3}\r\nabc uid 9)\r\n";
        let f = parse_fetch(r).unwrap();
        assert_eq!((f.uid, f.header.as_deref()), (Some(9), Some(&b"abc"[..])));
        // A quoted header section with escapes, and NIL.
        let r = b"* 3 FETCH (UID 4 BODY[HEADER.FIELDS (FROM)] \"From: \\\"x\\\"\")\r\n";
        assert_eq!(parse_fetch(r).unwrap().header.as_deref(), Some(&b"From: \"x\""[..]));
        let r = b"* 3 FETCH (UID 4 BODY[HEADER.FIELDS (FROM)] NIL)\r\n";
        assert_eq!(parse_fetch(r).unwrap().header.as_deref(), None, "NIL is no header, not an empty one");
        // A flag change announced meanwhile: a FETCH without a header section.
        let r = b"* 5 FETCH (UID 8 FLAGS (\\Deleted))\r\n";
        assert_eq!(parse_fetch(r).unwrap(), Fetched { uid: Some(8), header: None });
        // A list holding a literal (an ENVELOPE, say) is skipped whole.
        let r = b"* 5 FETCH (ENVELOPE (NIL {3}\r\n)()) UID 2 BODY[HEADER.FIELDS (TO)] {0}\r\n)\r\n";
        assert_eq!(parse_fetch(r).unwrap(), Fetched { uid: Some(2), header: Some(Cow::Borrowed(b"")) });
    }

    #[test]
    fn broken_fetches_are_errors_not_panics() {
        for r in [
            &b"* 1 FETCH (UID"[..],
            b"* 1 FETCH (UID x)\r\n",
            b"* 1 FETCH (BODY[HEADER] {50}\r\nshort)\r\n",
            b"* 1 FETCH (BODY[HEADER] \"open\r\n",
            b"* 1 FETCH (FLAGS (\\Seen\r\n",
            b"* 1 FETCH (UID 99999999999)\r\n",
            b"* 1 FETCH (BODY[[HEADER] {1}\r\na)\r\n",
            b"* x FETCH ()\r\n",
        ] {
            assert!(parse_fetch(r).is_err(), "{:?}", String::from_utf8_lossy(r));
        }
    }

    #[test]
    fn the_fast_and_the_general_parser_agree_on_every_known_shape() {
        let shapes: &[&[u8]] = &[
            b"* 12 FETCH (UID 345 BODY[HEADER.FIELDS (FROM TO CC)] {19}\r\nFrom: a@b.example\r\n)\r\n",
            // Items in another order, quoted field names (Cyrus, Courier echo them), FLAGS between.
            b"* 1 FETCH (BODY[HEADER.FIELDS (\"FROM\" \"TO\" \"CC\")] {3}\r\nabc FLAGS (\\Seen) UID 9)\r\n",
            b"* 3 fetch (body[header.fields (from)] {3}\r\nabc uid 9)\r\n",
            b"* 5 FETCH (UID 8 FLAGS (\\Deleted))\r\n",
            b"* 5 FETCH (FLAGS (\\Seen))\r\n",
            b"* 3 FETCH (UID 4 BODY[HEADER.FIELDS (FROM)] NIL)\r\n",
            b"* 3 FETCH (UID 4 MODSEQ (12) BODY[HEADER.FIELDS (FROM)] \"From: x\")\r\n",
        ];
        for r in shapes {
            let fast = parse_fetch(r).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(r)));
            let general = general_fetch(r).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(r)));
            assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(r));
        }
    }

    #[test]
    fn what_the_fast_parser_rejects_the_general_one_reads_or_it_is_an_error() {
        // A UID with more leading zeros than the fast parser takes: read by imap-proto.
        let odd = b"* 1 FETCH (UID 0000000000007 BODY[HEADER.FIELDS (FROM)] {3}\r\nabc)\r\n";
        assert!(parse_fetch(odd).is_err());
        assert_eq!(read_response(odd, "A1").unwrap(), Item::Mail(7, Some(Cow::Borrowed(&b"abc"[..]))));
        // An extension attribute the fast parser cannot skip (a literal8, RFC 3516): imap-proto
        // passes over it and still finds the UID and the header.
        let odd = b"* 1 FETCH (UID 7 BODY[HEADER.FIELDS (FROM)] {3}\r\nabc X-ODD ~{2}\r\nzz)\r\n";
        assert!(parse_fetch(odd).is_err());
        assert_eq!(read_response(odd, "A1").unwrap(), Item::Mail(7, Some(Cow::Borrowed(&b"abc"[..]))));
        // A header without its UID names nobody's mail: an error, never a guess.
        let r = b"* 1 FETCH (BODY[HEADER.FIELDS (FROM)] {3}\r\nabc)\r\n";
        assert!(matches!(read_response(r, "A1"), Err(FastFetchError::Protocol(..))));
        // Garbage in a FETCH: an error naming it.
        let r = b"* 1 FETCH (UID \x01\x02)\r\n";
        match read_response(r, "A1") {
            Err(e @ FastFetchError::Protocol(..)) => assert!(e.to_string().contains("FETCH"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_response_becomes_an_item() {
        let r = b"* 2 FETCH (UID 5 BODY[HEADER.FIELDS (FROM)] {3}\r\nabc)\r\n";
        assert_eq!(read_response(r, "A1").unwrap(), Item::Mail(5, Some(Cow::Borrowed(&b"abc"[..]))));
        // A FETCH naming a UID without a header section: reported, so the caller reads it whole.
        assert_eq!(read_response(b"* 2 FETCH (UID 5 FLAGS ())\r\n", "A1").unwrap(), Item::Mail(5, None));
        assert_eq!(read_response(b"* 2 FETCH (FLAGS ())\r\n", "A1").unwrap(), Item::Nothing);
        assert_eq!(read_response(b"* 9 EXISTS\r\n", "A1").unwrap(), Item::Announce);
        assert_eq!(read_response(b"* 9 EXPUNGE\r\n", "A1").unwrap(), Item::Nothing);
        assert_eq!(
            read_response(b"* OK [ALERT] Mailbox is at 95% of quota\r\n", "A1").unwrap(),
            Item::Alert("Mailbox is at 95% of quota".into())
        );
        assert_eq!(read_response(b"* OK still here\r\n", "A1").unwrap(), Item::Nothing);
        assert_eq!(read_response(b"* no [alert] x\r\n", "A1").unwrap(), Item::Alert("x".into()));
        assert_eq!(read_response(b"* OK [ALERTS] x\r\n", "A1").unwrap(), Item::Nothing);
        assert_eq!(
            read_response(b"* NO Some messages could not be FETCHed\r\n", "A1").unwrap(),
            Item::Warning("Some messages could not be FETCHed".into())
        );
        assert_eq!(read_response(b"* BAD\r\n", "A1").unwrap(), Item::Warning(String::new()));
        // Found by fuzzing: a response code followed by a non-ASCII byte made imap-proto panic.
        assert_eq!(read_response(b"* OK [ALERT]\xcb0}\r\n", "A1").unwrap(), Item::Alert("\u{FFFD}0}".into()));
        assert_eq!(read_response(b"A1 OK done\r\n", "A1").unwrap(), Item::Done(Ok("OK done".into())));
        assert_eq!(
            read_response(b"A1 NO [SERVERBUG] x\r\n", "A1").unwrap(),
            Item::Done(Err("NO [SERVERBUG] x".into()))
        );
        assert_eq!(read_response(b"* BYE bye\r\n", "A1").unwrap(), Item::Bye("BYE bye".into()));
    }

    #[test]
    fn responses_are_told_apart() {
        assert_eq!(
            response_kind(b"A0007 OK Fetch completed.\r\n", "A0007"),
            Kind::Tagged(true, "OK Fetch completed.".into())
        );
        assert_eq!(
            response_kind(b"A0007 NO [SERVERBUG] x\r\n", "A0007"),
            Kind::Tagged(false, "NO [SERVERBUG] x".into())
        );
        // Another tag that merely starts like ours is not our completion: another command's.
        assert_eq!(
            response_kind(b"A00071 OK x\r\n", "A0007"),
            Kind::OtherTagged("A00071".into(), Completed::Ok("x".into()))
        );
        assert_eq!(response_kind(b"+ go ahead\r\n", "A1"), Kind::Other);
        assert_eq!(response_kind(b"* 12 FETCH (UID 1)\r\n", "A1"), Kind::Fetch);
        assert_eq!(response_kind(b"* 13 EXISTS\r\n", "A1"), Kind::Announce);
        assert_eq!(response_kind(b"* 2 RECENT\r\n", "A1"), Kind::Announce);
        assert_eq!(response_kind(b"* 4 EXPUNGE\r\n", "A1"), Kind::Other);
        assert_eq!(response_kind(b"* BYE shutting down\r\n", "A1"), Kind::Bye("BYE shutting down".into()));
        assert_eq!(response_kind(b"* OK [ALERT] hi\r\n", "A1"), Kind::Other);
    }
}
