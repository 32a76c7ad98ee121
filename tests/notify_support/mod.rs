//! Shared by the `notify_*` tests: the project's mail stack (`scripts/mailstack`), fresh users per
//! test, a config file for the real binary, and reading mail back over IMAP.
//!
//! Waiting is on events with a deadline (a mail appears in a mailbox, an outbox entry turns
//! `sent`), never a fixed sleep. "Exactly once" is checked with a barrier: after the action under
//! test, a marker mail is sent to the same mailbox through the same Postfix; once the marker is
//! there, anything submitted before it has been delivered too (Postfix hands mail for one
//! mailbox to LMTP in queue order, and the queue here has nothing else in it).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;

pub const DOMAIN: &str = "example.test";

/// One running mail stack (the shared default one, or a private one for outage tests).
pub struct Stack {
    pub env: BTreeMap<String, String>,
    /// Extra environment for `scripts/mailstack` (a private stack's dir and ports).
    script_env: Vec<(String, String)>,
    private: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack")
}

fn run_script(extra: &[(String, String)], args: &[&str]) -> String {
    // Output goes to files, not pipes: `start` leaves Dovecot and Postfix running, and a daemon
    // that inherited a pipe would keep `output()` waiting for an EOF that never comes.
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let status = Command::new(script())
        .args(args)
        .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .expect("cannot run scripts/mailstack");
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.success(),
        "scripts/mailstack {args:?} failed: {out}{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    out
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

impl Stack {
    /// The shared stack, started once per test binary (`start` is idempotent and locked, so test
    /// binaries running side by side are fine).
    pub fn shared() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(|| {
            run_script(&[], &["start"]);
            Stack { env: parse_env(&run_script(&[], &["env"])), script_env: Vec::new(), private: false }
        })
    }

    /// A stack of its own (own directory and ports) for a test that stops parts of it; stopped
    /// when dropped. Its ports are `offset` above the shared stack's (`MAILSTACK_IMAP_PORT` − 143,
    /// 10000 by default) and its directory beside the shared one's (`MAILSTACK_DIR`), so a second
    /// test run with other `MAILSTACK_*` settings gets other private stacks too.
    pub fn private(name: &str, offset: u16) -> Stack {
        let shared_imap: u16 = std::env::var("MAILSTACK_IMAP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(10143);
        let port_base = shared_imap.saturating_sub(143).saturating_add(offset);
        let shared_dir = std::env::var("MAILSTACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir().join("hecto-mailstack"));
        let dir = PathBuf::from(format!("{}-{name}", shared_dir.display()));
        let extra: Vec<(String, String)> = vec![
            ("MAILSTACK_DIR".into(), dir.display().to_string()),
            ("MAILSTACK_IMAP_PORT".into(), (port_base + 143).to_string()),
            ("MAILSTACK_IMAPS_PORT".into(), (port_base + 993).to_string()),
            ("MAILSTACK_SMTP_PORT".into(), (port_base + 25).to_string()),
            ("MAILSTACK_SUBMISSION_PORT".into(), (port_base + 587).to_string()),
            ("MAILSTACK_SUBMISSIONS_PORT".into(), (port_base + 465).to_string()),
            ("MAILSTACK_LMTP_PORT".into(), (port_base + 24).to_string()),
        ];
        run_script(&extra, &["start"]);
        let env = parse_env(&run_script(&extra, &["env"]));
        Stack { env, script_env: extra, private: true }
    }

    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or_else(|| panic!("scripts/mailstack env has no {key}"))
    }

    pub fn port(&self, key: &str) -> u16 {
        self.get(key).parse().unwrap()
    }

    pub fn password(&self) -> &str {
        self.get("MAILSTACK_PASSWORD")
    }

    pub fn ca_file(&self) -> &str {
        self.get("MAILSTACK_CA_FILE")
    }

    /// Run a `scripts/mailstack` command against this stack.
    pub fn script(&self, args: &[&str]) {
        run_script(&self.script_env, args);
    }

    /// A new mailbox nobody else uses: `<prefix>-<pid>-<n>@example.test`.
    pub fn fresh_user(&self, prefix: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let email = format!("{prefix}-{}-{}-{nanos}@{DOMAIN}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        // add-user returns once Dovecot knows the user (no "User doesn't exist" bounce).
        self.script(&["add-user", &email]);
        email
    }

    /// Fetch every message in `folder` of `user` (`BODY.PEEK[]`, nothing changed).
    pub async fn fetch_all(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(("127.0.0.1", self.port("MAILSTACK_IMAP_PORT"))),
        )
        .await
        .expect("IMAP connect timed out")
        .expect("cannot connect to Dovecot");
        let mut client = async_imap::Client::new(tcp);
        let _greeting = client.read_response().await.unwrap();
        let mut session = client.login(user, self.password()).await.map_err(|(e, _)| e).expect("IMAP login");
        let mailbox = session.select(folder).await.expect("SELECT");
        let mut out = Vec::new();
        if mailbox.exists > 0 {
            let mut fetches = session.fetch("1:*", "BODY.PEEK[]").await.expect("FETCH");
            while let Some(f) = fetches.next().await {
                let f = f.expect("FETCH item");
                if let Some(b) = f.body() {
                    out.push(b.to_vec());
                }
            }
        }
        session.logout().await.ok();
        out
    }

    /// Wait (30 s at most) until `folder` of `user` holds a message satisfying `pred`; return all.
    pub async fn wait_for(&self, user: &str, folder: &str, what: &str, pred: impl Fn(&Mail) -> bool) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mails: Vec<Mail> = self.fetch_all(user, folder).await.into_iter().map(Mail::parse).collect();
            if mails.iter().any(&pred) {
                return mails;
            }
            assert!(Instant::now() < deadline, "{what} did not arrive in {user}/{folder} within 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Send a marker through Postfix to `user` and wait for it: everything submitted before has
    /// been delivered by then. Returns the mailbox without the markers.
    pub async fn after_barrier(&self, user: &str) -> Vec<Mail> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let marker = format!(
            "barrier-{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        );
        let msg = Message::builder()
            .from(format!("barrier@{DOMAIN}").parse().unwrap())
            .to(user.parse().unwrap())
            .subject(marker.clone())
            .body(String::from("barrier"))
            .unwrap();
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.port("MAILSTACK_SMTP_PORT"))
            .build();
        tokio::time::timeout(Duration::from_secs(30), smtp.send(msg))
            .await
            .expect("barrier send timed out")
            .expect("barrier send");
        let all = self.wait_for(user, "INBOX", "the barrier mail", |m| m.subject == marker).await;
        all.into_iter().filter(|m| !m.subject.starts_with("barrier-")).collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.private {
            let _ = Command::new(script())
                .arg("stop")
                .envs(self.script_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .status();
        }
    }
}

/// A message read back, decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub raw: Vec<u8>,
    pub subject: String,
    pub message_id: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub text: String,
    pub html: String,
    pub x_hecto_watch: Option<String>,
}

impl Mail {
    pub fn parse(raw: Vec<u8>) -> Mail {
        let m = mail_parser::MessageParser::default().parse(raw.as_slice()).expect("unparseable mail");
        let addrs = |a: Option<&mail_parser::Address>| -> Vec<String> {
            a.map(|a| a.iter().filter_map(|x| x.address().map(str::to_owned)).collect()).unwrap_or_default()
        };
        let mail = Mail {
            subject: m.subject().unwrap_or_default().to_owned(),
            message_id: m.message_id().unwrap_or_default().to_owned(),
            to: addrs(m.to()),
            cc: addrs(m.cc()),
            text: m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            html: m.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
            x_hecto_watch: m.header_raw("X-Hecto-Watch").map(|v| v.trim().to_owned()),
            raw: Vec::new(),
        };
        Mail { raw, ..mail }
    }

    /// The raw `Subject:` header line as it travelled (RFC 2047 encoded).
    pub fn raw_subject_header(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let mut lines = text.split("\r\n").skip_while(|l| !l.to_ascii_lowercase().starts_with("subject:"));
        let mut out = lines.next().unwrap_or_default().to_owned();
        for l in lines {
            if l.starts_with(' ') || l.starts_with('\t') {
                out.push_str(l);
            } else {
                break;
            }
        }
        out
    }
}

/// A test's own state directory and config file, driving the real binary.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub contact: String,
    pub ops: String,
}

pub struct ConfigOpts<'a> {
    pub stack: &'a Stack,
    pub operators: Vec<String>,
    /// `[smtp]` table lines; default: submission with STARTTLS, AUTH, the stack's CA.
    pub smtp: Option<String>,
    pub language: &'a str,
}

impl Env {
    pub fn new(stack: &Stack, prefix: &str) -> Env {
        let contact = stack.fresh_user(&format!("{prefix}-m"));
        let ops = stack.fresh_user(&format!("{prefix}-ops"));
        let env = Env { dir: tempfile::tempdir().unwrap(), contact, ops };
        env.write_config(&ConfigOpts { stack, operators: vec![env.ops.clone()], smtp: None, language: "ko" });
        env
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn write_config(&self, o: &ConfigOpts) {
        let s = o.stack;
        let smtp = o.smtp.clone().unwrap_or_else(|| {
            format!(
                "host = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"ops@{DOMAIN}\"\npassword = {{ value = \"{}\" }}\nfrom = \"Hecto Watch <noreply@{DOMAIN}>\"\ntimeout = \"20s\"\n",
                s.port("MAILSTACK_SUBMISSION_PORT"),
                s.ca_file(),
                s.password()
            )
        });
        let ops: Vec<String> = o.operators.iter().map(|x| format!("\"{x}\"")).collect();
        let text = format!(
            r#"[store]
path = "{state}"

[[accounts]]
name = "contracts"
host = "127.0.0.1"
port = {imaps}
tls = "implicit"
ca_file = "{ca}"
username = "{contact}"
password = {{ value = "{pw}" }}
junk = "Junk"

[smtp]
{smtp}
[reminders]
operators = [{ops}]
language = "{lang}"
"#,
            state = self.state().display(),
            imaps = s.port("MAILSTACK_IMAPS_PORT"),
            ca = s.ca_file(),
            contact = self.contact,
            pw = s.password(),
            ops = ops.join(", "),
            lang = o.language,
        );
        std::fs::write(self.config(), text).unwrap();
    }

    /// Run the real binary with this config and state directory.
    pub fn hw(&self, args: &[&str]) -> Output {
        self.hw_env(args, &[])
    }

    pub fn hw_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
            .arg("--config")
            .arg(self.config())
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env_remove("HECTO_WATCH_CONFIG")
            .env_remove("HECTO_WATCH_TEST_CRASH_AFTER")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// Run and insist on exit status `code`.
    pub fn ok(&self, code: i32, args: &[&str]) -> String {
        let o = self.hw(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}\nstdout: {}\nstderr: {}", stdout(&o), stderr(&o));
        stdout(&o)
    }

    pub fn add_merchant(&self, id: &str, name: &str, applied_at: &str) {
        self.ok(
            0,
            &["merchant", "add", "--id", id, "--name", name, "--contact", &self.contact, "--applied-at", applied_at],
        );
    }

    /// `remind --once --now NOW`, expecting exit status `code`; returns stdout.
    pub fn remind(&self, now: &str, code: i32) -> String {
        self.ok(code, &["remind", "--once", "--now", now])
    }

    /// The outbox as the export shows it.
    pub fn outbox(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&self.ok(0, &["export"])).unwrap();
        v["outbox"].as_array().cloned().unwrap_or_default()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Message-ID hecto-watch gives a key, without angle brackets (as mail-parser returns it).
pub fn expected_message_id(key: &str) -> String {
    hecto_watch::notify::render::message_id(key, DOMAIN).trim_matches(['<', '>']).to_owned()
}
