//! A scripted IMAP server for what no packaged server shows (STYLE.md, "Test servers of our own").
//!
//! It plays IMAP4rev1 (RFC 3501; IDLE RFC 2177, UIDPLUS RFC 4315, MOVE RFC 6851, SPECIAL-USE RFC
//! 6154) on 127.0.0.1, plain TCP, port 0, and answers the commands hecto-watch sends the way a
//! real server does. Each field of [`Quirks`] bends one answer the way some real server does
//! (SPEC §6), or fails the way a broken one does. A session looks like this:
//!
//! ```text
//! S: * OK [CAPABILITY IMAP4rev1] quirk server ready
//! C: A0001 CAPABILITY                 S: * CAPABILITY IMAP4rev1 IDLE MOVE UIDPLUS SPECIAL-USE
//!                                     S: A0001 OK CAPABILITY completed
//! C: A0002 LOGIN "user" "password"    S: A0002 OK LOGIN completed
//! C: A0004 LIST "" *                  S: * LIST (\Junk) "/" "Junk"   (one per folder)
//! C: A0005 EXAMINE "INBOX"            S: * FLAGS (…)  * 3 EXISTS  * 0 RECENT
//!                                     S: * OK [UIDVALIDITY 1001]  * OK [UIDNEXT 4]
//!                                     S: A0005 OK [READ-ONLY] EXAMINE completed
//! C: A0006 UID FETCH 1:3 (UID BODY.PEEK[HEADER.FIELDS (FROM TO CC)])
//!                                     S: * 1 FETCH (UID 1 BODY[HEADER.FIELDS (FROM TO CC)] {58}
//!                                     S: From: …  To: …  (blank line))
//!                                     S: A0006 OK FETCH completed
//! C: A0009 IDLE                       S: + idling   … later: * 4 EXISTS
//! C: DONE                             S: A0009 OK IDLE terminated
//! ```
//!
//! The state (folders, mails, flags, quirks) is shared behind a mutex: a test changes it while
//! the server runs ([`QuirkServer::with`], [`QuirkServer::deliver`]), which wakes IDLE sessions,
//! and reads it back ([`QuirkServer::flags`], [`QuirkServer::commands`]). Each session keeps its
//! own view of the selected folder (UIDs in sequence order, with flags) and tells the client how
//! the folder changed (`EXPUNGE`, `EXISTS`, `FETCH (FLAGS …)`) where RFC 3501 §7 lets it: at the
//! end of a command, during IDLE, and — the quirk of [`Quirks::during_header_fetch`] — in the
//! middle of a UID FETCH.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The password the server accepts when [`State::password`] is set (the account TOML uses it).
pub const PASSWORD: &str = "quirk-password";
/// The login name of [`QuirkServer::account_toml`].
pub const USER: &str = "contracts@corp.example";

/// The common layout: INBOX, a `\Junk` and a `\Sent` folder.
pub const PLAIN: &[(&str, &[&str])] = &[("INBOX", &[]), ("Junk", &["\\Junk"]), ("Sent", &["\\Sent"])];
/// INBOX alone.
pub const INBOX_ONLY: &[(&str, &[&str])] = &[("INBOX", &[])];

/// A change a quirk makes to the state at its moment (what "another client" does meanwhile).
pub type Hook = Box<dyn FnOnce(&mut State) + Send>;

/// One mail in a folder.
#[derive(Debug, Clone)]
pub struct Mail {
    pub uid: u32,
    pub raw: Vec<u8>,
    pub flags: BTreeSet<String>,
    pub internal_date: DateTime<FixedOffset>,
}

/// One folder, as LIST and SELECT tell it.
#[derive(Debug, Clone)]
pub struct Folder {
    /// The name on the wire (modified UTF-7, RFC 3501 §5.1.3).
    pub wire: String,
    /// LIST attributes (`\Junk`, `\Noselect`, …).
    pub attributes: Vec<String>,
    pub uid_validity: u32,
    pub uid_next: u32,
    /// In UID (= sequence) order.
    pub mails: Vec<Mail>,
}

/// How this server bends or breaks RFC 3501. All off by default.
#[derive(Default)]
pub struct Quirks {
    /// Courier, Winmail: no `OK [UIDNEXT n]` in the SELECT/EXAMINE response.
    pub no_uidnext: bool,
    /// `UID FETCH * …` (the last mail, by UID) answers only its tagged OK.
    pub silent_fetch_star: bool,
    /// STATUS leaves UIDNEXT out of its answer, whatever was asked.
    pub status_without_uidnext: bool,
    /// Courier: every UID SEARCH answers `* SEARCH` with no numbers.
    pub empty_search: bool,
    /// IDLE announces changes only at ticks this far apart (some servers poll their store every
    /// 60 s), instead of at once.
    pub idle_every: Option<Duration>,
    /// Run once after the first response of the next header FETCH; whatever it changes is
    /// announced right there (`* n EXPUNGE`, `* n EXISTS`, `* n FETCH (FLAGS …)` without UID),
    /// which RFC 3501 §7.4.1 allows during a UID FETCH, and the FETCH goes on with the new
    /// sequence numbers.
    pub during_header_fetch: Option<Hook>,
    /// Run once right after the next UID COPY (another client changing the folder meanwhile).
    pub after_copy: Option<Hook>,
    /// FETCH items in reverse order with FLAGS in between, keywords in lower case, header field
    /// names echoed quoted, INTERNALDATE with a space-padded day: all legal (RFC 3501 §7.4.2).
    pub odd_fetch: bool,
    /// `* OK [ALERT] …` after login and in the middle of every FETCH (RFC 3501 §7.1).
    pub alerts: bool,
    /// This many header FETCHes end with the connection closed inside the first literal.
    pub drop_header_fetches: u32,
    /// Broken: the header FETCH answers only its tagged OK, whatever the folder holds.
    pub silent_header_fetch: bool,
    /// Broken: the body FETCH (`BODY.PEEK[]`) answers only its tagged OK.
    pub silent_body_fetch: bool,
    /// A command pipelined before another (more input already waiting) is completed after
    /// that one: its tagged response comes last, as RFC 3501 §5.5 allows a server that runs
    /// pipelined commands at once.
    pub completions_out_of_order: bool,
    /// Broken: a partial body FETCH (`BODY.PEEK[]<0.N>`) is answered with the whole body.
    pub ignore_partial: bool,
    /// Broken: a partial body FETCH brings only half the bytes asked (RFC822.SIZE stays true).
    pub short_partial: bool,
    /// Broken: every `UID FETCH`, whatever it asks, answers only its tagged OK (a FETCH by
    /// sequence number still works).
    pub silent_uid_fetch: bool,
    /// The header FETCH leaves the header section out for these UIDs (`* n FETCH (UID u)`).
    pub header_left_out: BTreeSet<u32>,
    /// Broken for a while: commands starting with one of these (`"UID FETCH"`, `"UID SEARCH"`,
    /// `"LIST"`) are answered `NO [UNAVAILABLE]`, as a server whose backend is down answers.
    pub refuse: Vec<&'static str>,
    /// These LOGINs (counted from 1 over the server's life) answer, before their tagged OK, with
    /// bytes the client's IMAP library cannot take ([`POISON`]).
    pub poisoned_logins: BTreeSet<u32>,
}

/// `* OK [ALERT]` with no space after the code and a non-ASCII byte there: imap-proto 0.17 slices
/// the text at byte 1 and panics (found by fuzzing the header pass).
pub const POISON: &[u8] = b"* OK [ALERT]\xcb0}\r\n";

/// Everything the server knows; tests change it through [`QuirkServer::with`].
pub struct State {
    pub delimiter: char,
    pub folders: Vec<Folder>,
    /// Advertised after login (and before, beside IMAP4rev1). No AUTH=PLAIN: the client logs in
    /// with LOGIN.
    pub capabilities: Vec<String>,
    /// `None`: any password is accepted.
    pub password: Option<String>,
    pub quirks: Quirks,
    /// Every command received, without its tag (LOGIN's arguments left out), and `DONE`s.
    pub commands: Vec<String>,
    /// Successful LOGINs so far.
    pub logins: u32,
    /// Completions sent after the next command's answer ([`Quirks::completions_out_of_order`]).
    pub completed_out_of_order: u32,
}

impl State {
    fn new(delimiter: char, layout: &[(&str, &[&str])]) -> State {
        let folders = layout
            .iter()
            .zip(1001..)
            .map(|((wire, attributes), uid_validity)| Folder {
                wire: (*wire).to_owned(),
                attributes: attributes.iter().map(|a| (*a).to_owned()).collect(),
                uid_validity,
                uid_next: 1,
                mails: Vec::new(),
            })
            .collect();
        State {
            delimiter,
            folders,
            capabilities: ["IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"].map(String::from).to_vec(),
            password: Some(PASSWORD.to_owned()),
            quirks: Quirks::default(),
            commands: Vec::new(),
            completed_out_of_order: 0,
            logins: 0,
        }
    }

    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c.eq_ignore_ascii_case(capability))
    }

    /// The folder a client names: exactly, INBOX in any case (RFC 3501 §5.1).
    fn find(&self, name: &str) -> Option<usize> {
        self.folders.iter().position(|f| f.wire == name || (f.wire == "INBOX" && name.eq_ignore_ascii_case("INBOX")))
    }

    pub fn folder(&self, wire: &str) -> &Folder {
        let i = self.find(wire).unwrap_or_else(|| panic!("the quirk server has no folder {wire:?}"));
        &self.folders[i]
    }

    pub fn folder_mut(&mut self, wire: &str) -> &mut Folder {
        let i = self.find(wire).unwrap_or_else(|| panic!("the quirk server has no folder {wire:?}"));
        &mut self.folders[i]
    }

    /// A folder made meanwhile (as a webmail makes its spam folder for the first spam).
    pub fn add_folder(&mut self, wire: &str, attributes: &[&str]) {
        let uid_validity = 1001 + self.folders.len() as u32;
        self.folders.push(Folder {
            wire: wire.to_owned(),
            attributes: attributes.iter().map(|a| (*a).to_owned()).collect(),
            uid_validity,
            uid_next: 1,
            mails: Vec::new(),
        });
    }

    /// A new mail in `folder`, arrived now (in KST); its UID.
    pub fn deliver(&mut self, folder: &str, raw: Vec<u8>) -> u32 {
        self.deliver_at(folder, raw, kst(Utc::now()), &[])
    }

    pub fn deliver_at(&mut self, folder: &str, raw: Vec<u8>, arrived: DateTime<FixedOffset>, flags: &[&str]) -> u32 {
        let f = self.folder_mut(folder);
        let uid = f.uid_next;
        f.uid_next += 1;
        let flags = flags.iter().map(|s| (*s).to_owned()).collect();
        f.mails.push(Mail { uid, raw, flags, internal_date: arrived });
        uid
    }

    /// Another client expunged the mail.
    pub fn expunge(&mut self, folder: &str, uid: u32) {
        self.folder_mut(folder).mails.retain(|m| m.uid != uid);
    }

    /// Another client set a flag.
    pub fn flag(&mut self, folder: &str, uid: u32, flag: &str) {
        if let Some(m) = self.folder_mut(folder).mails.iter_mut().find(|m| m.uid == uid) {
            m.flags.insert(flag.to_owned());
        }
    }
}

/// `t` as a server in Korea writes it.
pub fn kst(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.with_timezone(&FixedOffset::east_opt(9 * 3600).expect("a valid offset"))
}

struct Shared {
    state: Mutex<State>,
    /// Bumped after every change: IDLE sessions wait on it.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A running quirk server; stops (with every session) when dropped.
pub struct QuirkServer {
    pub port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for QuirkServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl QuirkServer {
    /// Folders as `(wire name, LIST attributes)`, `/` as the hierarchy delimiter.
    pub async fn start(layout: &[(&str, &[&str])]) -> QuirkServer {
        QuirkServer::start_with('/', layout).await
    }

    pub async fn start_with(delimiter: char, layout: &[(&str, &[&str])]) -> QuirkServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("the listener's address").port();
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared { state: Mutex::new(State::new(delimiter, layout)), changed });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        QuirkServer { port, shared, accept }
    }

    /// Change the state (quirks, mails, flags) while the server runs; IDLE sessions notice.
    pub fn with<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let r = change(&mut self.shared.lock());
        self.shared.bump();
        r
    }

    /// A new mail in `folder`, announced to IDLE sessions; its UID.
    pub fn deliver(&self, folder: &str, raw: Vec<u8>) -> u32 {
        self.with(|s| s.deliver(folder, raw))
    }

    /// `UID → flags` of every mail in `folder`.
    pub fn flags(&self, folder: &str) -> BTreeMap<u32, Vec<String>> {
        let s = self.shared.lock();
        s.folder(folder).mails.iter().map(|m| (m.uid, m.flags.iter().cloned().collect())).collect()
    }

    /// The mails of `folder` as they are now.
    pub fn mails(&self, folder: &str) -> Vec<Mail> {
        self.shared.lock().folder(folder).mails.clone()
    }

    /// Every command received so far (see [`State::commands`]).
    pub fn commands(&self) -> Vec<String> {
        self.shared.lock().commands.clone()
    }

    /// An `[[accounts]]` table for this server: plain TCP on loopback (no `allow_insecure`
    /// needed), nothing of the mail stack.
    pub fn account_toml(&self, name: &str, extra: &str) -> String {
        format!(
            "\n[[accounts]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"{USER}\"\npassword = {{ value = \"{PASSWORD}\" }}\n{extra}\n",
            port = self.port
        )
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropped with this task when the server is: every session ends with it.
    let mut sessions = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        sessions.spawn(serve(stream, shared.clone()));
        while sessions.try_join_next().is_some() {}
    }
}

// ---------------------------------------------------------------------------------------------
// A session: read a command line, dispatch it, write the answer.

/// The client's side of the socket, one line at a time. Cancel-safe (IDLE waits on it in a
/// `select!`): a partly read line stays in `buf`.
struct Input {
    reader: BufReader<OwnedReadHalf>,
    buf: Vec<u8>,
}

impl Input {
    async fn line(&mut self) -> Option<String> {
        match self.reader.read_until(b'\n', &mut self.buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let line = String::from_utf8_lossy(&self.buf).trim_end_matches(['\r', '\n']).to_owned();
                self.buf.clear();
                Some(line)
            }
        }
    }
}

/// What a command answers, and whether the connection goes on.
struct Reply {
    bytes: Vec<u8>,
    close: bool,
}

impl From<Out> for Reply {
    fn from(out: Out) -> Reply {
        Reply { bytes: out.0, close: false }
    }
}

/// Response bytes being put together.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn line(&mut self, text: impl AsRef<str>) -> &mut Out {
        self.0.extend_from_slice(text.as_ref().as_bytes());
        self.0.extend_from_slice(b"\r\n");
        self
    }

    fn one(text: impl AsRef<str>) -> Reply {
        let mut out = Out::default();
        out.line(text);
        out.into()
    }
}

/// The folder a session has selected, as the session last told the client about it.
struct Selected {
    wire: String,
    read_only: bool,
    /// `(UID, flags)` in sequence order: sequence number n is `view[n - 1]`.
    view: Vec<(u32, BTreeSet<String>)>,
}

impl Selected {
    fn seq_of(&self, uid: u32) -> Option<usize> {
        self.view.iter().position(|(u, _)| *u == uid).map(|i| i + 1)
    }

    /// Tell the client how the folder changed since it last heard (RFC 3501 §7.4.1 EXPUNGE —
    /// each one renumbers the mails after it —, §7.4.2 FETCH FLAGS, §7.3.1 EXISTS). EXPUNGE is
    /// held back where §7.4.1 forbids it (during a FETCH, STORE or SEARCH by sequence number).
    fn catch_up(&mut self, folder: &Folder, out: &mut Out, expunges: bool) {
        if expunges {
            let mut i = 0;
            while i < self.view.len() {
                if folder.mails.iter().any(|m| m.uid == self.view[i].0) {
                    i += 1;
                } else {
                    out.line(format!("* {} EXPUNGE", i + 1));
                    self.view.remove(i);
                }
            }
        }
        for (i, (uid, flags)) in self.view.iter_mut().enumerate() {
            if let Some(m) = folder.mails.iter().find(|m| m.uid == *uid) {
                if m.flags != *flags {
                    // Without UID: RFC 3501 only promises UID in answers to UID commands.
                    out.line(format!("* {} FETCH (FLAGS ({}))", i + 1, flag_list(&m.flags)));
                    flags.clone_from(&m.flags);
                }
            }
        }
        let newest = self.view.iter().map(|(u, _)| *u).max().unwrap_or(0);
        let before = self.view.len();
        self.view.extend(folder.mails.iter().filter(|m| m.uid > newest).map(|m| (m.uid, m.flags.clone())));
        if self.view.len() > before {
            out.line(format!("* {} EXISTS", self.view.len()));
        }
    }
}

struct Session {
    out: OwnedWriteHalf,
    shared: Arc<Shared>,
    authenticated: bool,
    selected: Option<Selected>,
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut input = Input { reader: BufReader::new(read), buf: Vec::new() };
    let mut session = Session { out: write, shared, authenticated: false, selected: None };
    // RFC 3501 §7.1.1: the greeting.
    if session.send(b"* OK [CAPABILITY IMAP4rev1] quirk server ready\r\n").await.is_err() {
        return;
    }
    // A completion held back until the next command is answered (`completions_out_of_order`).
    let mut held: Option<Vec<u8>> = None;
    while let Some(line) = input.line().await {
        trace("C", &line);
        let mut reply = match line.split_once(' ') {
            Some((tag, command)) => session.dispatch(&mut input, tag, command).await,
            None => Out::one("* BAD a command is a tag, a space and the command"),
        };
        session.shared.bump();
        let hold = held.is_none()
            && !reply.close
            && !input.reader.buffer().is_empty()
            && session.shared.lock().quirks.completions_out_of_order;
        let tail = if hold { split_completion(&mut reply.bytes) } else { None };
        if session.send(&reply.bytes).await.is_err() || reply.close {
            return;
        }
        if let Some(earlier) = held.take() {
            session.shared.lock().completed_out_of_order += 1;
            if session.send(&earlier).await.is_err() {
                return;
            }
        }
        held = tail;
    }
}

/// The tagged completion (the last line) cut off `bytes`, when there is one.
fn split_completion(bytes: &mut Vec<u8>) -> Option<Vec<u8>> {
    let body = bytes.strip_suffix(b"\r\n")?;
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    (!bytes[start..].starts_with(b"* ")).then(|| bytes.split_off(start))
}

/// `QUIRK_TRACE=1` prints the transcript on stderr (`cargo test -- --nocapture` shows it).
fn trace(who: &str, text: &str) {
    if std::env::var_os("QUIRK_TRACE").is_some() {
        for line in text.lines() {
            eprintln!("{who}: {line}");
        }
    }
}

impl Session {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        trace("S", &String::from_utf8_lossy(bytes));
        self.out.write_all(bytes).await?;
        self.out.flush().await
    }

    /// One command (its tag stripped): the answer, tagged response included.
    async fn dispatch(&mut self, input: &mut Input, tag: &str, command: &str) -> Reply {
        let mut args = Args(command);
        let verb = args.atom().to_ascii_uppercase();
        let logged = if verb == "LOGIN" { "LOGIN …".to_owned() } else { command.to_owned() };
        let refused = {
            let mut s = self.shared.lock();
            s.commands.push(logged);
            s.quirks.refuse.iter().any(|r| command.to_ascii_uppercase().starts_with(r))
        };
        if refused {
            return Out::one(format!(
                "{tag} NO [UNAVAILABLE] Internal error occurred. Refer to server log for more information."
            ));
        }
        match verb.as_str() {
            "CAPABILITY" => self.capability(tag),
            "NOOP" => self.noop(tag),
            "LOGOUT" => {
                let mut out = Out::default();
                out.line("* BYE quirk server logging out").line(format!("{tag} OK LOGOUT completed"));
                Reply { bytes: out.0, close: true }
            }
            "LOGIN" => self.login(tag, &mut args),
            _ if !self.authenticated => Out::one(format!("{tag} BAD log in first")),
            "LIST" => self.list(tag, &mut args),
            "SELECT" => self.select(tag, &mut args, false),
            "EXAMINE" => self.select(tag, &mut args, true),
            "STATUS" => self.status(tag, &mut args),
            "IDLE" => self.idle(input, tag).await,
            _ if self.selected.is_none() => Out::one(format!("{tag} BAD no folder selected")),
            "FETCH" => self.fetch(tag, &mut args, false),
            "EXPUNGE" => self.expunge(tag, None),
            "CLOSE" => self.close(tag),
            "UID" => self.uid(tag, &mut args),
            _ => Out::one(format!("{tag} BAD unknown command {verb}")),
        }
    }

    /// `UID FETCH | SEARCH | COPY | MOVE | STORE | EXPUNGE` (RFC 3501 §6.4.8, RFC 6851, RFC 4315).
    fn uid(&mut self, tag: &str, args: &mut Args) -> Reply {
        let verb = args.atom().to_ascii_uppercase();
        let (has_move, has_uidplus) = {
            let s = self.shared.lock();
            (s.has("MOVE"), s.has("UIDPLUS"))
        };
        match verb.as_str() {
            "FETCH" => self.fetch(tag, args, true),
            "SEARCH" => self.search(tag, args),
            "COPY" => self.copy(tag, args, false),
            "MOVE" if has_move => self.copy(tag, args, true),
            "STORE" => self.store(tag, args),
            "EXPUNGE" if has_uidplus => {
                let set = args.atom();
                self.expunge(tag, Some(&set))
            }
            _ => Out::one(format!("{tag} BAD UID {verb} is not supported here")),
        }
    }

    /// RFC 3501 §6.1.1.
    fn capability(&mut self, tag: &str) -> Reply {
        let s = self.shared.lock();
        let list = if self.authenticated { s.capabilities.join(" ") } else { String::new() };
        let mut out = Out::default();
        out.line(format!("* CAPABILITY IMAP4rev1 {list}").trim_end()).line(format!("{tag} OK CAPABILITY completed"));
        out.into()
    }

    /// RFC 3501 §6.1.2: nothing, but the session hears what changed.
    fn noop(&mut self, tag: &str) -> Reply {
        let mut out = Out::default();
        self.catch_up(&mut out, true);
        out.line(format!("{tag} OK NOOP completed"));
        out.into()
    }

    /// RFC 3501 §6.2.3.
    fn login(&mut self, tag: &str, args: &mut Args) -> Reply {
        let (_user, password) = (args.string(), args.string());
        let mut s = self.shared.lock();
        if s.password.as_ref().is_some_and(|p| password.as_ref() != Some(p)) {
            return Out::one(format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed."));
        }
        self.authenticated = true;
        let mut out = Out::default();
        s.logins += 1;
        if s.quirks.poisoned_logins.contains(&s.logins) {
            out.0.extend_from_slice(POISON);
        }
        if s.quirks.alerts {
            out.line("* OK [ALERT] Your mailbox is 95% full; delete some mail.");
        }
        out.line(format!("{tag} OK LOGIN completed"));
        out.into()
    }

    /// `LIST "" *` (RFC 3501 §6.3.8, §7.2.2): every folder with its attributes. SPECIAL-USE
    /// attributes (RFC 6154) only from a server that advertises SPECIAL-USE.
    fn list(&mut self, tag: &str, args: &mut Args) -> Reply {
        let (_reference, pattern) = (args.string(), args.string());
        if pattern.as_deref() != Some("*") {
            return Out::one(format!("{tag} BAD this server lists only \"\" *"));
        }
        let s = self.shared.lock();
        let special = s.has("SPECIAL-USE");
        let mut out = Out::default();
        for f in &s.folders {
            let attributes: Vec<&str> =
                f.attributes.iter().map(String::as_str).filter(|a| special || !is_special_use(a)).collect();
            out.line(format!(
                "* LIST ({}) {} {}",
                attributes.join(" "),
                quote(&s.delimiter.to_string()),
                quote(&f.wire)
            ));
        }
        out.line(format!("{tag} OK LIST completed"));
        out.into()
    }

    /// SELECT / EXAMINE (RFC 3501 §6.3.1, §6.3.2): FLAGS, EXISTS, RECENT, then the OK response
    /// codes, then the tagged OK saying READ-WRITE or READ-ONLY.
    fn select(&mut self, tag: &str, args: &mut Args, read_only: bool) -> Reply {
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let name = args.string().unwrap_or_default();
        let s = self.shared.lock();
        self.selected = None;
        let Some(i) = s.find(&name) else {
            return Out::one(format!("{tag} NO [NONEXISTENT] Mailbox doesn't exist: {name}"));
        };
        let f = &s.folders[i];
        let view: Vec<(u32, BTreeSet<String>)> = f.mails.iter().map(|m| (m.uid, m.flags.clone())).collect();
        let mut out = Out::default();
        out.line("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
            .line(format!("* {} EXISTS", view.len()))
            .line("* 0 RECENT");
        if read_only {
            out.line("* OK [PERMANENTFLAGS ()] Read-only mailbox.");
        } else {
            out.line("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.");
        }
        out.line(format!("* OK [UIDVALIDITY {}] UIDs valid", f.uid_validity));
        if !s.quirks.no_uidnext {
            out.line(format!("* OK [UIDNEXT {}] Predicted next UID", f.uid_next));
        }
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        out.line(format!("{tag} OK [{mode}] {verb} completed"));
        self.selected = Some(Selected { wire: f.wire.clone(), read_only, view });
        out.into()
    }

    /// `STATUS "name" (UIDNEXT MESSAGES)` (RFC 3501 §6.3.10, §7.2.4), items in the order asked.
    fn status(&mut self, tag: &str, args: &mut Args) -> Reply {
        let name = args.string().unwrap_or_default();
        let s = self.shared.lock();
        let Some(i) = s.find(&name) else {
            return Out::one(format!("{tag} NO [NONEXISTENT] Mailbox doesn't exist: {name}"));
        };
        let f = &s.folders[i];
        let mut items = Vec::new();
        for item in args.rest().trim_matches(['(', ')']).split_whitespace() {
            let value = match item.to_ascii_uppercase().as_str() {
                "MESSAGES" => f.mails.len() as u32,
                "UIDNEXT" if s.quirks.status_without_uidnext => continue,
                "UIDNEXT" => f.uid_next,
                "UIDVALIDITY" => f.uid_validity,
                "RECENT" => 0,
                "UNSEEN" => f.mails.iter().filter(|m| !m.flags.contains("\\Seen")).count() as u32,
                other => return Out::one(format!("{tag} BAD unknown STATUS item {other}")),
            };
            items.push(format!("{} {value}", item.to_ascii_uppercase()));
        }
        let mut out = Out::default();
        out.line(format!("* STATUS {} ({})", quote(&f.wire), items.join(" ")))
            .line(format!("{tag} OK STATUS completed"));
        out.into()
    }

    /// The selected folder's changes, told to the client (see [`Selected::catch_up`]).
    fn catch_up(&mut self, out: &mut Out, expunges: bool) {
        let s = self.shared.lock();
        if let Some(sel) = self.selected.as_mut() {
            if let Some(i) = s.find(&sel.wire) {
                sel.catch_up(&s.folders[i], out, expunges);
            }
        }
    }

    /// IDLE (RFC 2177): `+ idling`, then changes as they happen (or only at the ticks of
    /// [`Quirks::idle_every`]) until the client sends DONE. BAD without the IDLE capability.
    async fn idle(&mut self, input: &mut Input, tag: &str) -> Reply {
        let (has_idle, every) = {
            let s = self.shared.lock();
            (s.has("IDLE"), s.quirks.idle_every)
        };
        if !has_idle {
            return Out::one(format!("{tag} BAD unknown command IDLE"));
        }
        let mut changes = self.shared.changed.subscribe();
        let mut out = Out::default();
        out.line("+ idling");
        if every.is_none() {
            self.catch_up(&mut out, true); // what changed since the last command
        }
        let mut tick = every.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
        loop {
            if self.send(&std::mem::take(&mut out).0).await.is_err() {
                return Reply { bytes: Vec::new(), close: true };
            }
            tokio::select! {
                line = input.line() => match line {
                    Some(l) if l.trim().eq_ignore_ascii_case("DONE") => break,
                    Some(_) => return Out::one(format!("{tag} BAD expected DONE")),
                    None => return Reply { bytes: Vec::new(), close: true },
                },
                _ = changes.changed(), if every.is_none() => self.catch_up(&mut out, true),
                _ = next_tick(&mut tick) => self.catch_up(&mut out, true),
            }
        }
        self.shared.lock().commands.push("DONE".to_owned());
        Out::one(format!("{tag} OK IDLE terminated"))
    }

    /// FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8, §7.4.2), for the item lists hecto-watch
    /// sends, with the quirks that bend or break the answer.
    fn fetch(&mut self, tag: &str, args: &mut Args, by_uid: bool) -> Reply {
        let set = args.atom();
        let items = match parse_items(args.rest()) {
            Ok(items) => items,
            Err(e) => return Out::one(format!("{tag} BAD {e}")),
        };
        let header_pass = items.iter().any(|i| matches!(i, Item::HeaderFields(_)));
        let body_pass = items.iter().any(|i| matches!(i, Item::Body { .. }));
        let shared = self.shared.clone();
        let mut s = shared.lock();
        let Some(sel) = self.selected.as_mut() else {
            return Out::one(format!("{tag} BAD no folder selected"));
        };
        let Some(targets) = addressed(sel, &set, by_uid) else {
            return Out::one(format!("{tag} BAD invalid message set {set}"));
        };
        let done = format!("{tag} OK FETCH completed");
        if (header_pass && s.quirks.silent_header_fetch)
            || (body_pass && s.quirks.silent_body_fetch)
            || (by_uid && s.quirks.silent_uid_fetch)
            || (by_uid && set == "*" && s.quirks.silent_fetch_star)
        {
            return Out::one(done);
        }
        let drop_inside = header_pass && s.quirks.drop_header_fetches > 0;
        s.quirks.drop_header_fetches -= u32::from(drop_inside);
        let style = Style {
            odd: s.quirks.odd_fetch,
            by_uid,
            ignore_partial: s.quirks.ignore_partial,
            short_partial: s.quirks.short_partial,
        };
        let mut out = Out::default();
        for (k, uid) in targets.into_iter().enumerate() {
            let left_out = header_pass && s.quirks.header_left_out.contains(&uid);
            // A mail expunged meanwhile (by a hook) is no longer there to answer for.
            let Some(response) = answer_for(&mut s, sel, uid, &items, style, left_out) else { continue };
            if drop_inside {
                return Reply { bytes: cut_inside_literal(response), close: true };
            }
            out.0.extend_from_slice(&response);
            if k == 0 {
                mid_fetch(&mut s, sel, &mut out, header_pass, by_uid);
            }
        }
        sel.catch_up(s.folder(&sel.wire), &mut out, by_uid);
        out.line(done);
        out.into()
    }

    /// `UID SEARCH` (RFC 3501 §6.4.4) with the keys hecto-watch uses: `SINCE date`, `DELETED`,
    /// `UID set`, `ALL`, ANDed. Answers UIDs.
    fn search(&mut self, tag: &str, args: &mut Args) -> Reply {
        let s = self.shared.lock();
        let Some(sel) = self.selected.as_ref() else {
            return Out::one(format!("{tag} BAD no folder selected"));
        };
        let folder = s.folder(&sel.wire);
        let mut keys = Vec::new();
        while let Some(word) = args.string() {
            let key = match word.to_ascii_uppercase().as_str() {
                "ALL" => Key::All,
                "DELETED" => Key::Deleted,
                "SINCE" => match args.string().and_then(|d| NaiveDate::parse_from_str(&d, "%d-%b-%Y").ok()) {
                    Some(d) => Key::Since(d),
                    None => return Out::one(format!("{tag} BAD SINCE needs a date like 07-Sep-2026")),
                },
                "UID" => {
                    let star = folder.mails.last().map_or(0, |m| m.uid);
                    match parse_set(&args.atom(), star) {
                        Some(set) => Key::Uid(set),
                        None => return Out::one(format!("{tag} BAD invalid UID set")),
                    }
                }
                other => return Out::one(format!("{tag} BAD unsupported SEARCH key {other}")),
            };
            keys.push(key);
        }
        let found: Vec<String> = if s.quirks.empty_search {
            Vec::new()
        } else {
            folder.mails.iter().filter(|m| keys.iter().all(|k| k.matches(m))).map(|m| m.uid.to_string()).collect()
        };
        let mut out = Out::default();
        out.line(format!("* SEARCH {}", found.join(" ")).trim_end()).line(format!("{tag} OK SEARCH completed"));
        out.into()
    }

    /// `UID COPY set "target"` (RFC 3501 §6.4.7) and `UID MOVE` (RFC 6851 §3: the copy, then an
    /// EXPUNGE of each moved mail). COPYUID (RFC 4315) when the server has UIDPLUS.
    fn copy(&mut self, tag: &str, args: &mut Args, moving: bool) -> Reply {
        let verb = if moving { "MOVE" } else { "COPY" };
        let set = args.atom();
        let target = args.string().unwrap_or_default();
        let shared = self.shared.clone();
        let mut s = shared.lock();
        let Some(sel) = self.selected.as_mut() else {
            return Out::one(format!("{tag} BAD no folder selected"));
        };
        if moving && sel.read_only {
            return Out::one(format!("{tag} NO [READ-ONLY] the folder is open read-only"));
        }
        let Some(ti) = s.find(&target) else {
            return Out::one(format!("{tag} NO [TRYCREATE] no folder {target}"));
        };
        let Some(uids) = addressed(sel, &set, true) else {
            return Out::one(format!("{tag} BAD invalid UID set {set}"));
        };
        let source: Vec<Mail> = s.folder(&sel.wire).mails.iter().filter(|m| uids.contains(&m.uid)).cloned().collect();
        let (mut from, mut to) = (Vec::new(), Vec::new());
        for m in source {
            from.push(m.uid.to_string());
            let t = &mut s.folders[ti];
            let uid = t.uid_next;
            t.uid_next += 1;
            t.mails.push(Mail { uid, ..m });
            to.push(uid.to_string());
        }
        let code = if s.has("UIDPLUS") && !from.is_empty() {
            format!("[COPYUID {} {} {}] ", s.folders[ti].uid_validity, from.join(","), to.join(","))
        } else {
            String::new()
        };
        let mut out = Out::default();
        if moving {
            out.line(format!("* OK {code}Moved"));
            s.folder_mut(&sel.wire).mails.retain(|m| !uids.contains(&m.uid));
            sel.catch_up(s.folder(&sel.wire), &mut out, true);
            out.line(format!("{tag} OK {verb} completed"));
        } else {
            out.line(format!("{tag} OK {code}{verb} completed"));
            if let Some(hook) = s.quirks.after_copy.take() {
                hook(&mut s);
            }
        }
        out.into()
    }

    /// `UID STORE set ±FLAGS[.SILENT] (flags)` (RFC 3501 §6.4.6). Refused in a folder opened
    /// with EXAMINE.
    fn store(&mut self, tag: &str, args: &mut Args) -> Reply {
        let set = args.atom();
        let action = args.atom().to_ascii_uppercase();
        let flags: BTreeSet<String> =
            args.rest().trim_matches(['(', ')']).split_whitespace().map(String::from).collect();
        let shared = self.shared.clone();
        let mut s = shared.lock();
        let Some(sel) = self.selected.as_mut() else {
            return Out::one(format!("{tag} BAD no folder selected"));
        };
        if sel.read_only {
            return Out::one(format!("{tag} NO [READ-ONLY] the folder is open read-only"));
        }
        let silent = action.ends_with(".SILENT");
        let change = action.trim_end_matches(".SILENT").to_owned();
        if !["+FLAGS", "-FLAGS", "FLAGS"].contains(&change.as_str()) {
            return Out::one(format!("{tag} BAD unknown STORE item {action}"));
        }
        let Some(uids) = addressed(sel, &set, true) else {
            return Out::one(format!("{tag} BAD invalid UID set {set}"));
        };
        let mut out = Out::default();
        for m in s.folder_mut(&sel.wire).mails.iter_mut().filter(|m| uids.contains(&m.uid)) {
            match change.as_str() {
                "+FLAGS" => m.flags.extend(flags.iter().cloned()),
                "-FLAGS" => m.flags.retain(|f| !flags.contains(f)),
                _ => m.flags.clone_from(&flags),
            }
            let seq = sel.seq_of(m.uid).expect("an addressed mail is in the view");
            sel.view[seq - 1].1.clone_from(&m.flags);
            if !silent {
                out.line(format!("* {seq} FETCH (UID {} FLAGS ({}))", m.uid, flag_list(&m.flags)));
            }
        }
        out.line(format!("{tag} OK STORE completed"));
        out.into()
    }

    /// EXPUNGE (RFC 3501 §6.4.3): every `\Deleted` mail; UID EXPUNGE (RFC 4315 §2.1): only
    /// those in the set. Each is announced with `* n EXPUNGE`.
    fn expunge(&mut self, tag: &str, set: Option<&str>) -> Reply {
        let shared = self.shared.clone();
        let mut s = shared.lock();
        let Some(sel) = self.selected.as_mut() else {
            return Out::one(format!("{tag} BAD no folder selected"));
        };
        if sel.read_only {
            return Out::one(format!("{tag} NO [READ-ONLY] the folder is open read-only"));
        }
        let only = match set {
            Some(set) => match addressed(sel, set, true) {
                Some(uids) => Some(uids),
                None => return Out::one(format!("{tag} BAD invalid UID set {set}")),
            },
            None => None,
        };
        s.folder_mut(&sel.wire)
            .mails
            .retain(|m| !m.flags.contains("\\Deleted") || only.as_ref().is_some_and(|u| !u.contains(&m.uid)));
        let mut out = Out::default();
        sel.catch_up(s.folder(&sel.wire), &mut out, true);
        out.line(format!("{tag} OK EXPUNGE completed"));
        out.into()
    }

    /// CLOSE (RFC 3501 §6.4.2): expunge silently unless read-only, then no folder is selected.
    fn close(&mut self, tag: &str) -> Reply {
        let shared = self.shared.clone();
        let mut s = shared.lock();
        if let Some(sel) = self.selected.take() {
            if !sel.read_only {
                s.folder_mut(&sel.wire).mails.retain(|m| !m.flags.contains("\\Deleted"));
            }
        }
        Out::one(format!("{tag} OK CLOSE completed"))
    }
}

/// The next tick of [`Quirks::idle_every`]; never without one.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// FETCH responses.

/// The FETCH response for one mail of the selected folder (`None`: no longer there). BODY[], not
/// BODY.PEEK[], sets `\Seen` in a folder opened read-write (RFC 3501 §6.4.5).
fn answer_for(
    s: &mut State,
    sel: &Selected,
    uid: u32,
    items: &[Item],
    style: Style,
    left_out: bool,
) -> Option<Vec<u8>> {
    let seq = sel.seq_of(uid)?;
    let mail = s.folder_mut(&sel.wire).mails.iter_mut().find(|m| m.uid == uid)?;
    if !sel.read_only && items.iter().any(|i| matches!(i, Item::Body { peek: false, .. })) {
        mail.flags.insert("\\Seen".to_owned());
    }
    Some(fetch_response(seq, mail, items, style, left_out))
}

/// What happens after the first response of a FETCH: the hook of [`Quirks::during_header_fetch`]
/// and its announcements (EXPUNGE only in a UID FETCH, RFC 3501 §7.4.1), and the ALERT of
/// [`Quirks::alerts`].
fn mid_fetch(s: &mut State, sel: &mut Selected, out: &mut Out, header_pass: bool, by_uid: bool) {
    if let Some(hook) = header_pass.then(|| s.quirks.during_header_fetch.take()).flatten() {
        hook(s);
        sel.catch_up(s.folder(&sel.wire), out, by_uid);
    }
    if s.quirks.alerts {
        out.line("* OK [ALERT] System maintenance tonight at 02:00 KST.");
    }
}

/// A response cut halfway through its first literal: what a dying connection leaves.
fn cut_inside_literal(mut response: Vec<u8>) -> Vec<u8> {
    let start = find(&response, b"}\r\n").map_or(0, |i| i + 3);
    response.truncate(start + (response.len() - start) / 2);
    response
}

/// A FETCH data item hecto-watch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    /// `BODY.PEEK[HEADER.FIELDS (…)]`: the field names as asked.
    HeaderFields(Vec<String>),
    /// `BODY[]` / `BODY.PEEK[]`, whole or `<origin.length>` of it (RFC 3501 §6.4.5).
    Body {
        peek: bool,
        partial: Option<(usize, usize)>,
    },
}

/// `(UID BODY.PEEK[HEADER.FIELDS (FROM TO CC)])`, `(UID)`, `UID`, …
fn parse_items(text: &str) -> Result<Vec<Item>, String> {
    let text = text.trim();
    let inner = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')).unwrap_or(text);
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    let mut words = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 => {
                words.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    words.push(&inner[start..]);
    for word in words.into_iter().filter(|w| !w.is_empty()) {
        let upper = word.to_ascii_uppercase();
        let item = match upper.as_str() {
            "UID" => Item::Uid,
            "FLAGS" => Item::Flags,
            "INTERNALDATE" => Item::InternalDate,
            "RFC822.SIZE" => Item::Size,
            "BODY.PEEK[]" => Item::Body { peek: true, partial: None },
            "BODY[]" => Item::Body { peek: false, partial: None },
            _ if upper.starts_with("BODY.PEEK[]<") || upper.starts_with("BODY[]<") => {
                let (name, range) = upper.split_once('<').unwrap_or_default();
                let (origin, length) = range
                    .strip_suffix('>')
                    .and_then(|r| r.split_once('.'))
                    .and_then(|(o, n)| Some((o.parse().ok()?, n.parse().ok()?)))
                    .ok_or_else(|| format!("bad partial FETCH item {word}"))?;
                Item::Body { peek: name == "BODY.PEEK[]", partial: Some((origin, length)) }
            }
            _ => {
                let fields = upper
                    .strip_prefix("BODY.PEEK[HEADER.FIELDS (")
                    .and_then(|f| f.strip_suffix(")]"))
                    .ok_or_else(|| format!("unsupported FETCH item {word}"))?;
                Item::HeaderFields(fields.split_whitespace().map(|f| f.trim_matches('"').to_owned()).collect())
            }
        };
        items.push(item);
    }
    Ok(items)
}

#[derive(Clone, Copy)]
struct Style {
    /// [`Quirks::odd_fetch`].
    odd: bool,
    /// A UID FETCH: UID is always in the answer (RFC 3501 §6.4.8).
    by_uid: bool,
    /// [`Quirks::ignore_partial`], [`Quirks::short_partial`].
    ignore_partial: bool,
    short_partial: bool,
}

/// `* seq FETCH (…)\r\n` for one mail (RFC 3501 §7.4.2).
fn fetch_response(seq: usize, mail: &Mail, items: &[Item], style: Style, leave_header_out: bool) -> Vec<u8> {
    let mut items: Vec<Item> = items.to_vec();
    if style.by_uid && !items.contains(&Item::Uid) {
        items.insert(0, Item::Uid);
    }
    if leave_header_out {
        items.retain(|i| !matches!(i, Item::HeaderFields(_)));
    }
    if style.odd {
        items.reverse();
        if !items.contains(&Item::Flags) {
            items.insert(items.len() / 2, Item::Flags);
        }
    }
    let keyword = |k: &str| if style.odd { k.to_ascii_lowercase() } else { k.to_owned() };
    let mut out = format!("* {seq} {} (", keyword("FETCH")).into_bytes();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        match item {
            Item::Uid => out.extend_from_slice(format!("{} {}", keyword("UID"), mail.uid).as_bytes()),
            Item::Flags => {
                out.extend_from_slice(format!("{} ({})", keyword("FLAGS"), flag_list(&mail.flags)).as_bytes())
            }
            Item::Size => out.extend_from_slice(format!("{} {}", keyword("RFC822.SIZE"), mail.raw.len()).as_bytes()),
            Item::InternalDate => {
                // date-day-fixed is `(SP DIGIT) / 2DIGIT`: the odd server pads with a space.
                let pattern = if style.odd { "%e-%b-%Y %H:%M:%S %z" } else { "%d-%b-%Y %H:%M:%S %z" };
                let date = mail.internal_date.format(pattern);
                out.extend_from_slice(format!("{} \"{date}\"", keyword("INTERNALDATE")).as_bytes());
            }
            Item::HeaderFields(names) => {
                let shown: Vec<String> =
                    names.iter().map(|n| if style.odd { format!("\"{n}\"") } else { n.clone() }).collect();
                let name = format!("{}[{} ({})]", keyword("BODY"), keyword("HEADER.FIELDS"), shown.join(" "));
                literal(&mut out, &name, &header_fields(&mail.raw, names));
            }
            Item::Body { partial: None, .. } => literal(&mut out, &keyword("BODY[]"), &mail.raw),
            Item::Body { partial: Some(_), .. } if style.ignore_partial => {
                literal(&mut out, &keyword("BODY[]"), &mail.raw)
            }
            Item::Body { partial: Some((origin, length)), .. } => {
                let length = if style.short_partial { length / 2 } else { *length };
                let length = &length;
                let from = (*origin).min(mail.raw.len());
                let to = origin.saturating_add(*length).min(mail.raw.len());
                literal(&mut out, &format!("{}<{origin}>", keyword("BODY[]")), &mail.raw[from..to])
            }
        }
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// `name {n}\r\n` + the n bytes (RFC 3501 §4.3).
fn literal(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    out.extend_from_slice(format!("{name} {{{}}}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// What `BODY[HEADER.FIELDS (names)]` returns (RFC 3501 §6.4.5): each header field whose name
/// is one of `names` (case-insensitively), folded continuation lines included, in the mail's
/// order, then the blank line that ends a header.
fn header_fields(raw: &[u8], names: &[String]) -> Vec<u8> {
    let end = find(raw, b"\r\n\r\n").map_or(raw.len(), |i| i + 2);
    let mut out = Vec::new();
    let mut keep = false;
    for line in raw[..end].split_inclusive(|b| *b == b'\n') {
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            keep = line.contains(&b':') && names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name.trim_ascii()));
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn flag_list(flags: &BTreeSet<String>) -> String {
    flags.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

fn is_special_use(attribute: &str) -> bool {
    ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(attribute))
}

// ---------------------------------------------------------------------------------------------
// Sets, search keys and arguments.

/// RFC 3501 §9 `sequence-set`: numbers, `a:b` ranges (either way round), `*`, comma lists. `*`
/// is the largest number in use, so `n:*` always includes the last mail, even when n is larger
/// (RFC 3501 §6.4.8, RFC 9051 §6.4.9).
fn parse_set(set: &str, star: u32) -> Option<Vec<(u32, u32)>> {
    let number = |s: &str| if s == "*" { Some(star) } else { s.parse::<u32>().ok().filter(|n| *n > 0) };
    set.split(',')
        .map(|part| match part.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                Some((a.min(b), a.max(b)))
            }
            None => number(part).map(|n| (n, n)),
        })
        .collect()
}

fn in_set(set: &[(u32, u32)], n: u32) -> bool {
    set.iter().any(|(lo, hi)| (*lo..=*hi).contains(&n))
}

/// The UIDs a UID set (or sequence set) addresses in the session's view, in sequence order.
fn addressed(sel: &Selected, set: &str, by_uid: bool) -> Option<Vec<u32>> {
    if by_uid {
        let star = sel.view.iter().map(|(u, _)| *u).max().unwrap_or(0);
        let set = parse_set(set, star)?;
        Some(sel.view.iter().map(|(u, _)| *u).filter(|u| in_set(&set, *u)).collect())
    } else {
        let set = parse_set(set, sel.view.len() as u32)?;
        Some(sel.view.iter().enumerate().filter(|(i, _)| in_set(&set, *i as u32 + 1)).map(|(_, (u, _))| *u).collect())
    }
}

enum Key {
    All,
    Deleted,
    /// RFC 3501 §6.4.4: by internal date, disregarding time and timezone.
    Since(NaiveDate),
    Uid(Vec<(u32, u32)>),
}

impl Key {
    fn matches(&self, m: &Mail) -> bool {
        match self {
            Key::All => true,
            Key::Deleted => m.flags.contains("\\Deleted"),
            Key::Since(d) => m.internal_date.date_naive() >= *d,
            Key::Uid(set) => in_set(set, m.uid),
        }
    }
}

/// A command's arguments, read left to right.
struct Args<'a>(&'a str);

impl Args<'_> {
    /// Up to the next space.
    fn atom(&mut self) -> String {
        let rest = self.0.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        self.0 = &rest[end..];
        rest[..end].to_owned()
    }

    /// A quoted string (RFC 3501 §4.3, `\\` and `\"` escaped) or an atom; `None` at the end.
    fn string(&mut self) -> Option<String> {
        let rest = self.0.trim_start();
        let Some(quoted) = rest.strip_prefix('"') else {
            return Some(self.atom()).filter(|a| !a.is_empty());
        };
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '"' => {
                    self.0 = &quoted[i + 1..];
                    return Some(value);
                }
                c => value.push(c),
            }
        }
        self.0 = "";
        Some(value)
    }

    fn rest(&mut self) -> &str {
        std::mem::take(&mut self.0).trim()
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
