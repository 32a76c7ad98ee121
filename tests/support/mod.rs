//! Shared helpers for tests against the real mail stack (`scripts/mailstack`: Dovecot + Postfix on
//! 127.0.0.1). Each test gets its own fresh IMAP user, so tests never see each other's mail, and
//! its own sled directory in a tempdir.
//!
//! If the stack cannot start, the test fails with the script's own error — nothing is skipped.
#![allow(dead_code)]

pub mod quirk;
pub mod servers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hecto_watch::clock::Clock;
use hecto_watch::config::{Account, Config};
use hecto_watch::imap::{connect, Connection};
use hecto_watch::ingest::Ingest;
use hecto_watch::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What `scripts/mailstack env` prints.
#[derive(Debug, Clone)]
pub struct Stack {
    pub dir: PathBuf,
    pub host: String,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub submission_port: u16,
    pub ca_file: PathBuf,
    pub password: String,
    pub cyrus_imap_port: u16,
    pub cyrus_imaps_port: u16,
}

fn mailstack(args: &[&str]) -> std::process::Output {
    let script = repo_root().join("scripts/mailstack");
    std::process::Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

/// Start the stack once per test process (a no-op when it already runs) and read its settings.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let out = mailstack(&["start"]);
        assert!(
            out.status.success(),
            "scripts/mailstack start failed — these tests need the local Dovecot/Postfix:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        read_env()
    })
}

fn read_env() -> Stack {
    let out = mailstack(&["env"]);
    assert!(out.status.success(), "scripts/mailstack env failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {key}=")))
            .map(|v| v.trim_matches('\'').to_owned())
            .unwrap_or_else(|| panic!("scripts/mailstack env does not print {key}"))
    };
    let port = |key: &str| get(key).parse::<u16>().unwrap_or_else(|e| panic!("{key}: {e}"));
    Stack {
        dir: PathBuf::from(get("MAILSTACK_DIR")),
        host: get("MAILSTACK_HOST"),
        imap_port: port("MAILSTACK_IMAP_PORT"),
        imaps_port: port("MAILSTACK_IMAPS_PORT"),
        smtp_port: port("MAILSTACK_SMTP_PORT"),
        submission_port: port("MAILSTACK_SUBMISSION_PORT"),
        ca_file: PathBuf::from(get("MAILSTACK_CA_FILE")),
        password: get("MAILSTACK_PASSWORD"),
        cyrus_imap_port: port("MAILSTACK_CYRUS_IMAP_PORT"),
        cyrus_imaps_port: port("MAILSTACK_CYRUS_IMAPS_PORT"),
    }
}

/// Run a mailstack subcommand (e.g. `restart-dovecot`) and insist it worked.
pub fn mailstack_ok(args: &[&str]) {
    let out = mailstack(args);
    assert!(
        out.status.success(),
        "scripts/mailstack {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new user nobody else uses. `korean`: the layout with 스팸메일함/보낸메일함 and no \Junk/\Sent.
pub fn fresh_user(tag: &str, korean: bool) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let user = format!("{tag}-{}-{n}-{nanos}@example.test", std::process::id());
    let mut args = vec!["add-user", user.as_str()];
    if korean {
        args.push("--korean");
    }
    stack();
    mailstack_ok(&args);
    user
}

#[derive(Debug, Clone, Copy)]
pub enum Tls {
    Implicit,
    Starttls,
    None,
}

/// The `[[accounts]]` TOML for a user of the stack.
pub fn account_toml(name: &str, user: &str, tls: Tls, extra: &str) -> String {
    let s = stack();
    let (mode, port) = match tls {
        Tls::Implicit => ("implicit", s.imaps_port),
        Tls::Starttls => ("starttls", s.imap_port),
        Tls::None => ("none", s.imap_port),
    };
    format!(
        r#"
[[accounts]]
name = "{name}"
host = "{host}"
port = {port}
tls = "{mode}"
ca_file = "{ca}"
username = "{user}"
password = {{ value = "{pw}" }}
{extra}
"#,
        host = s.host,
        ca = s.ca_file.display(),
        pw = s.password,
    )
}

/// `[smtp]` through the stack's submission port (STARTTLS, AUTH as `from`) and `[reminders]` with
/// `operators`, then `extra` (more tables).
pub fn smtp_toml(from: &str, operators: &[&str], extra: &str) -> String {
    let s = stack();
    let ops: Vec<String> = operators.iter().map(|o| format!("\"{o}\"")).collect();
    format!(
        "[smtp]\nhost = \"{host}\"\nport = {port}\ntls = \"starttls\"\nca_file = \"{ca}\"\n\
         username = \"{from}\"\npassword = {{ value = \"{pw}\" }}\nfrom = \"Hecto Watch <{from}>\"\n\
         [reminders]\noperators = [{ops}]\n{extra}",
        host = s.host,
        port = s.submission_port,
        ca = s.ca_file.display(),
        pw = s.password,
        ops = ops.join(", "),
    )
}

/// A configuration with the given account tables, the store in `state`.
pub fn config(state: &Path, accounts_toml: &str) -> Config {
    let text = format!("[store]\npath = \"{}\"\n{accounts_toml}", state.display());
    Config::parse(&text).unwrap_or_else(|e| panic!("test config does not parse: {e}\n{text}"))
}

pub fn account(name: &str, user: &str, tls: Tls, extra: &str) -> Account {
    let dir = std::env::temp_dir();
    let c = config(&dir, &account_toml(name, user, tls, extra));
    c.accounts.into_iter().next().expect("one account")
}

/// Open a store and an ingest over it.
pub fn ingest(config: &Config) -> (Store, Ingest) {
    let store = Store::open(&config.store.path).expect("open store");
    let ingest = Ingest::new(store.clone(), config, Clock::System);
    (store, ingest)
}

/// Register a merchant whose contact is `contact`, applied two days ago.
pub fn add_merchant(store: &Store, id: &str, contact: &str) {
    add_merchant_with_business_no(store, id, contact, None);
}

/// [`add_merchant`] with a business number (ten digits), which a mail may name instead of the
/// contact.
pub fn add_merchant_with_business_no(store: &Store, id: &str, contact: &str, business_no: Option<&str>) {
    let now = chrono::Utc::now();
    let new = hecto_watch::ops::NewMerchant {
        id: id.to_owned(),
        name: format!("{id} 주식회사"),
        contacts: vec![contact.to_owned()],
        business_no: business_no.map(str::to_owned),
        mids: Vec::new(),
        applied_at: Some((now - chrono::Duration::days(2)).to_rfc3339()),
        ..Default::default()
    };
    hecto_watch::ops::merchant_add(store, &new, now).expect("merchant add");
}

static MAIL_N: AtomicU32 = AtomicU32::new(0);

/// A unique Message-ID.
pub fn message_id(tag: &str) -> String {
    let n = MAIL_N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}.{}.{n}.{nanos}@test.hecto-watch", std::process::id())
}

/// Standard base64 (RFC 4648), for building mail and recognising SASL messages.
pub fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// A raw RFC 5322 mail (UTF-8 subject as RFC 2047 base64, CRLF line ends).
pub fn mail(from: &str, to: &str, subject: &str, message_id: &str, extra_headers: &[&str], body: &str) -> Vec<u8> {
    use std::fmt::Write as _;
    let b64 = |s: &str| b64(s.as_bytes());
    let mut m = String::new();
    let _ = write!(m, "From: {from}\r\nTo: {to}\r\nSubject: =?UTF-8?B?{}?=\r\n", b64(subject));
    let _ =
        write!(m, "Date: {}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n", chrono::Utc::now().to_rfc2822());
    for h in extra_headers {
        let _ = write!(m, "{h}\r\n");
    }
    let _ = write!(
        m,
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(body)
    );
    m.into_bytes()
}

/// Hecto's contract guidance mail to `to` (kind `guidance`).
pub fn guidance_mail(to: &str, message_id: &str, extra_headers: &[&str]) -> Vec<u8> {
    mail(
        "\"헥토파이낸셜 계약팀\" <contract@hectofinancial.co.kr>",
        to,
        "[헥토파이낸셜] 전자결제 서비스 계약 안내",
        message_id,
        extra_headers,
        "안녕하세요, 헥토파이낸셜 계약담당입니다. 아래 안내에 따라 계약을 진행해 주시기 바랍니다.",
    )
}

/// A mail that is none of Hecto's business.
pub fn plain_mail(to: &str, message_id: &str) -> Vec<u8> {
    mail("friend@example.org", to, "점심 약속", message_id, &[], "내일 12시에 봬요.")
}

/// Deliver through Postfix's SMTP port (no auth needed for example.test), as a real MTA would:
/// LMTP into Dovecot, where Sieve files spam into the junk folder.
pub async fn smtp_deliver(from: &str, to: &str, raw: &[u8]) {
    let s = stack();
    let stream = tokio::net::TcpStream::connect((s.host.as_str(), s.smtp_port)).await.expect("connect to SMTP");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    async fn expect(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, code: &str) {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line))
                .await
                .expect("SMTP answer in time")
                .expect("read SMTP");
            assert!(n > 0, "SMTP server closed the connection");
            assert!(line.starts_with(code), "SMTP: expected {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }
    expect(&mut r, "220").await;
    for (cmd, code) in [
        ("EHLO test.local".to_owned(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.expect("write SMTP");
        expect(&mut r, code).await;
    }
    w.write_all(b"DATA\r\n").await.expect("write");
    expect(&mut r, "354").await;
    // Dot-stuffing (RFC 5321 §4.5.2).
    let mut data = Vec::with_capacity(raw.len() + 16);
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    w.write_all(&data).await.expect("write");
    expect(&mut r, "250").await;
    w.write_all(b"QUIT\r\n").await.expect("write");
}

/// Log in as a test user of Dovecot (STARTTLS on the IMAP port).
pub async fn login(user: &str) -> Connection {
    servers::Server::Dovecot.login(user).await
}

/// Message count of a folder (wire name).
pub async fn count(conn: &mut Connection, folder_raw: &str) -> u32 {
    let mbox = conn.session.status(folder_raw, "(MESSAGES)").await.expect("STATUS");
    mbox.exists
}

/// Wait (bounded) until `folder_raw` of `user` holds at least `n` mails: delivery through
/// Postfix → LMTP is asynchronous. Fails with the stack's logs when it does not happen.
pub async fn wait_for_mail(user: &str, folder_raw: &str, n: u32) {
    let mut conn = login(user).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if count(&mut conn, folder_raw).await >= n {
            conn.logout().await;
            return;
        }
        if Instant::now() > deadline {
            let s = stack();
            let tail = |p: PathBuf| {
                std::fs::read_to_string(&p)
                    .map(|t| t.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            };
            panic!(
                "{user}: {folder_raw} did not reach {n} mails in 30 s.\npostfix log (newest first):\n{}\ndovecot log:\n{}",
                tail(s.dir.join("postfix/postfix.log")),
                tail(s.dir.join("dovecot/dovecot.log"))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// APPEND a mail to a Dovecot folder (wire name), with optional flags like `(\Seen)`.
pub async fn append(user: &str, folder_raw: &str, raw: &[u8], flags: Option<&str>) {
    servers::Server::Dovecot.append(user, folder_raw, raw, flags).await
}

/// `UID → flags` of every mail in a Dovecot folder (via EXAMINE, so looking changes nothing).
pub async fn flags(user: &str, folder_raw: &str) -> std::collections::BTreeMap<u32, Vec<String>> {
    servers::Server::Dovecot.flags(user, folder_raw).await
}

/// A running `imap::watch` with its event stream.
pub struct Watching {
    pub cancel: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub events: tokio::sync::broadcast::Receiver<hecto_watch::imap::ImapEvent>,
}

/// Start watching every account of `config` (subscribed to events before anything happens).
pub fn start_watch(config: &Config, ingest: &Ingest) -> Watching {
    start_watch_relisting(config, ingest, None)
}

/// [`start_watch`], reading the folder lists again every `relist_every` (default: 15 min).
pub fn start_watch_relisting(config: &Config, ingest: &Ingest, relist_every: Option<Duration>) -> Watching {
    let (mut hooks, tx) = hecto_watch::imap::Hooks::with_events(4096);
    hooks.relist_every = relist_every;
    let events = tx.subscribe();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (config, ingest, c) = (config.clone(), ingest.clone(), cancel.clone());
    let task = tokio::spawn(async move { hecto_watch::imap::watch(&config, ingest, c, hooks).await });
    Watching { cancel, task, events }
}

impl Watching {
    /// The next event satisfying `pred`, within `within` (panics with what was seen otherwise).
    pub async fn wait_for(
        &mut self,
        within: Duration,
        what: &str,
        mut pred: impl FnMut(&hecto_watch::imap::ImapEvent) -> bool,
    ) -> hecto_watch::imap::ImapEvent {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(e)) => {
                    if pred(&e) {
                        return e;
                    }
                    seen.push(format!("{e:?}"));
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => seen.push(format!("(lagged {n})")),
                Ok(Err(e)) => panic!("event channel closed while waiting for {what}: {e}"),
                Err(_) => panic!("no {what} within {within:?}; events seen:\n{}", seen.join("\n")),
            }
        }
    }

    /// Wait until the first pass over `folder` completed.
    pub async fn synced(&mut self, folder: &str) {
        let f = folder.to_owned();
        self.wait_for(
            Duration::from_secs(30),
            &format!("first sync of {folder}"),
            |e| matches!(e, hecto_watch::imap::ImapEvent::Synced { folder, .. } if *folder == f),
        )
        .await;
    }

    /// Cancel and insist the watcher stops promptly.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the watcher stops within 15 s of cancellation")
            .expect("the watcher task does not panic");
    }
}

/// APPEND many mails to one folder over one connection.
pub async fn append_all(user: &str, folder_raw: &str, mails: &[Vec<u8>]) {
    let mut conn = login(user).await;
    for raw in mails {
        conn.session.append(folder_raw, None, None, raw).await.expect("APPEND");
    }
    conn.logout().await;
}

/// Write mails straight into a user's Maildir folder (`""` for INBOX, `".Junk"`, `".Sent"`), as
/// `scripts/bench-scan` does: APPEND manages ~80 mails/s here, files ~11,000/s. `received` becomes
/// the mail's INTERNALDATE (a Maildir's is the file's mtime).
pub async fn seed_maildir(user: &str, folder_dir: &str, mails: &[(Vec<u8>, std::time::SystemTime)]) {
    use std::os::unix::fs::MetadataExt;
    // Dovecot creates its auto-created folders on disk lazily: open them once.
    let mut conn = login(user).await;
    for folder in ["INBOX", "Junk", "Sent"] {
        conn.session.examine(folder).await.unwrap_or_else(|e| panic!("EXAMINE {folder}: {e}"));
    }
    conn.logout().await;
    let (local, domain) = user.split_once('@').expect("user@domain");
    let root = stack().dir.join("mail").join(domain).join(local).join("Maildir");
    let owner = std::fs::metadata(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let cur = root.join(folder_dir).join("cur");
    for (raw, received) in mails {
        let secs = received.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let n = MAIL_N.fetch_add(1, Ordering::SeqCst);
        let path = cur.join(format!("{secs}.M{n}P{}.seed,S={}:2,", std::process::id(), raw.len()));
        std::fs::write(&path, raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).expect("chown to the mail user");
        let file = std::fs::File::options().write(true).open(&path).expect("reopen");
        file.set_modified(*received).expect("set the arrival time");
    }
}
