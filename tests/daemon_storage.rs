//! A full disk under the running daemon (SPEC §9 Durability), on a real 8 MiB tmpfs holding the
//! state directory. The disk is filled at the worst instant for sending — after the SMTP server
//! has the whole notice and before it answers "250", so the "sent" record is what fails — and a
//! Hecto mail then arrives while it is full, so its scan cannot be recorded either. The daemon
//! must stop sending and advancing, tell the operators once (straight over SMTP), show the fault
//! in `health`, and exit non-zero once there is room; restarted (as systemd would), it processes
//! the mail and every notice reaches the SMTP server exactly once.
//!
//! The SMTP server is scripted here: it is what fills the disk between DATA and its reply, an
//! instant no packaged server can be made to pick. The mail arrives through the real Postfix into
//! the real Dovecot, whose Sieve files it into Junk, and the daemon reads it there over IMAP.

mod daemon_support;
mod disk_support;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use daemon_support::{eventually, Daemon};
use disk_support::Tmpfs;
use support::{account_toml, fresh_user, message_id, smtp_deliver, Tls};

/// One message the scripted server accepted.
#[derive(Debug, Clone)]
struct Received {
    /// `X-Hecto-Watch`: the outbox key, or the alert's tag.
    key: String,
    subject: String,
}

/// A plain-text SMTP server on loopback that accepts everything. `before_first_250` runs once,
/// when the first notice whose key starts with `spam/` has been received in full, before the
/// server answers it.
struct ScriptedSmtp {
    port: u16,
    received: mpsc::Receiver<Received>,
    all: Arc<Mutex<Vec<Received>>>,
}

type Hook = Box<dyn FnOnce() + Send>;

impl ScriptedSmtp {
    fn start(before_first_250: Hook) -> ScriptedSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, received) = mpsc::channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let hook = Arc::new(Mutex::new(Some(before_first_250)));
        let shared = all.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (tx, all, hook) = (tx.clone(), shared.clone(), hook.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &tx, &all, &hook);
                });
            }
        });
        ScriptedSmtp { port, received, all }
    }

    /// Wait (bounded) for a message satisfying `pred`; earlier ones are skipped (all are kept in
    /// `all`).
    fn wait_for(&self, what: &str, within: Duration, pred: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.received.recv_timeout(left) {
                Ok(r) if pred(&r) => return r,
                Ok(_) => {}
                Err(_) => panic!("no {what} within {within:?}; received: {:?}", self.all.lock().unwrap()),
            }
        }
    }

    fn all(&self) -> Vec<Received> {
        self.all.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    tx: &mpsc::Sender<Received>,
    all: &Mutex<Vec<Received>>,
    hook: &Mutex<Option<Hook>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    w.write_all(b"220 scripted.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => w.write_all(b"250-scripted.test\r\n250 8BITMIME\r\n")?,
            "DATA" => {
                w.write_all(b"354 go on\r\n")?;
                let mut raw = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l)? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    raw.extend_from_slice(&l);
                }
                let msg = mail_parser::MessageParser::default().parse(&raw[..]).expect("a parseable message");
                let got = Received {
                    key: msg.header_raw("X-Hecto-Watch").map(|v| v.trim().to_owned()).unwrap_or_default(),
                    subject: msg.subject().unwrap_or_default().to_owned(),
                };
                if got.key.starts_with("spam/") {
                    if let Some(hook) = hook.lock().unwrap().take() {
                        hook();
                    }
                }
                all.lock().unwrap().push(got.clone());
                let _ = tx.send(got);
                w.write_all(b"250 2.0.0 queued\r\n")?;
            }
            "QUIT" => {
                w.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => w.write_all(b"250 ok\r\n")?,
        }
    }
}

/// A valid 사업자등록번호 from nine digits (weights 1,3,7,1,3,7,1,3,5).
fn business_no(first9: u64) -> String {
    let d: Vec<u32> = format!("{first9:09}").chars().map(|c| c.to_digit(10).unwrap()).collect();
    let w = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let sum: u32 = d.iter().zip(w).map(|(a, b)| a * b).sum::<u32>() + d[8] * 5 / 10;
    format!("{first9:09}{}", (10 - sum % 10) % 10)
}

/// Hecto's guidance for the merchant with business number `bn`, marked for Sieve's Junk rule.
fn spam_guidance(user: &str, bn: &str, tag: &str) -> Vec<u8> {
    support::mail(
        "\"헥토파이낸셜 계약팀\" <contract@hectofinancial.co.kr>",
        user,
        "[헥토파이낸셜] 전자결제 서비스 계약 안내",
        &message_id(tag),
        &["X-Test-Spam: yes"],
        &format!("사업자등록번호: {bn}\n계약 안내드립니다."),
    )
}

fn status_of(d: &Daemon) -> BTreeMap<String, serde_json::Value> {
    d.json(&["status"]).into_iter().map(|r| (r["id"].as_str().unwrap().to_owned(), r)).collect()
}

fn occurrences(text: &str, what: &str) -> usize {
    text.matches(what).count()
}

#[test]
fn a_disk_filled_while_a_notice_is_sent_and_during_a_scan_stops_everything_alerts_once_and_the_restart_catches_up_sending_nothing_twice(
) {
    let fs = Tmpfs::mount("8m");
    let dir = tempfile::tempdir().unwrap();
    // The daemon's state on the small disk; its config and log stay on the big one.
    std::fs::create_dir(fs.path().join("state")).unwrap();
    std::os::unix::fs::symlink(fs.path().join("state"), dir.path().join("state")).unwrap();
    let fill_file: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let smtp = ScriptedSmtp::start({
        let (mount, fill_file) = (fs.path().to_owned(), fill_file.clone());
        Box::new(move || *fill_file.lock().unwrap() = Some(disk_support::fill(&mount)))
    });
    let user = fresh_user("disk-full", false);
    let config = format!(
        "{}\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Hecto Watch <noreply@example.test>\"\n\
         [reminders]\noperators = [\"ops@example.test\"]\n",
        account_toml("contracts", &user, Tls::Starttls, "poll_interval = \"1s\""),
        smtp.port,
    );
    let (bn1, bn2) = (business_no(220_811_001), business_no(220_811_002));

    let mut d = Daemon::start(dir.path(), &config, &[]);
    d.wait_ready();
    for (id, bn) in [("m1", &bn1), ("m2", &bn2)] {
        let o = d.cli(&["merchant", "add", "--id", id, "--name", "상점", "--contact", &user, "--business-no", bn]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // 1. m1's guidance lands in Junk; its spam notice fills the disk as it is accepted.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(smtp_deliver("contract@hectofinancial.co.kr", &user, &spam_guidance(&user, &bn1, "disk-m1")));
    let notice = smtp.wait_for("m1's spam notice", Duration::from_secs(30), |r| r.key.starts_with("spam/m1/"));
    assert!(fill_file.lock().unwrap().is_some(), "the disk was filled as {notice:?} was accepted");
    let alert =
        smtp.wait_for("the operators' alert", Duration::from_secs(30), |r| r.subject.contains("cannot be written"));
    assert!(alert.key.starts_with("alert/storage/"), "{alert:?}");
    let health = d.cli(&["health"]);
    assert_eq!(health.status.code(), Some(1), "a storage fault is unhealthy");
    let text = String::from_utf8_lossy(&health.stdout);
    assert!(text.contains("DATABASE CANNOT BE WRITTEN") && text.contains("No space left"), "{text}");
    assert_eq!(status_of(&d)["m1"]["stage"], "guidance_received", "applied before the disk filled");

    // 2. m2's guidance arrives while the disk is full: its scan cannot record it.
    let failed_before = occurrences(&d.log_text(), "Sync failed (database)");
    rt.block_on(smtp_deliver("contract@hectofinancial.co.kr", &user, &spam_guidance(&user, &bn2, "disk-m2")));
    eventually(Duration::from_secs(30), "the scan of Junk fails on the full disk", || {
        occurrences(&d.log_text(), "Sync failed (database)") > failed_before
    });

    // 3. Room again: the daemon ends with an error, for systemd to start it again.
    let fill = fill_file.lock().unwrap().take().unwrap();
    std::fs::remove_file(fill).unwrap();
    let code = d.wait_exit(Duration::from_secs(30));
    assert!(matches!(code, Some(c) if c != 0), "exit non-zero so Restart=on-failure restarts it: {code:?}");
    assert!(d.log_text().contains("restarting on it now that there is room"), "{}", d.log_text());

    // 4. Restarted: m2's mail is processed, its notice sent; m1's, already sent, is not again.
    let d = Daemon::start(dir.path(), &config, &[]);
    d.wait_ready();
    eventually(Duration::from_secs(30), "m2 advanced from the mail read while the disk was full", || {
        let s = status_of(&d);
        s["m2"]["stage"] == "guidance_received" && s["m2"]["found_in_spam"] == true
    });
    eventually(Duration::from_secs(30), "every outbox entry recorded as sent", || {
        let o = d.cli(&["export"]);
        let export: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let outbox = export["outbox"].as_array().unwrap();
        outbox.iter().any(|e| e["key"].as_str().unwrap().starts_with("spam/m2/"))
            && outbox.iter().all(|e| e["status"] == "sent")
    });
    let health = d.cli(&["health"]);
    assert!(!String::from_utf8_lossy(&health.stdout).contains("CANNOT BE WRITTEN"), "the fault is gone");
    assert_eq!(d.terminate().0, Some(0));

    let all = smtp.all();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &all {
        *per_key.entry(r.key.as_str()).or_default() += 1;
    }
    assert!(per_key.keys().any(|k| k.starts_with("spam/m1/")) && per_key.keys().any(|k| k.starts_with("spam/m2/")));
    assert!(per_key.values().all(|&n| n == 1), "every key sent exactly once: {per_key:?}");
    assert_eq!(per_key.keys().filter(|k| k.starts_with("alert/storage/")).count(), 1, "one alert: {per_key:?}");
    assert!(!Path::new(&fs.path().join("state/sent-unrecorded.json")).exists(), "applied at the restart");
}
