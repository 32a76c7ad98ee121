//! A daemon that dies while it hands a notice to the SMTP server (SPEC §9 Durability, issue 13
//! item 8). The entry is marked "sending" on disk before DATA, so the next start knows the message
//! may have been delivered. The contact's mailbox is watched here, so the restarted daemon looks
//! for its own copy there (by the X-Hecto-Watch key of the header pass) before resending:
//! - killed after the server accepted it: the copy shows up, the entry is recorded as sent, and the
//!   contact has exactly one copy;
//! - killed before the server saw it: no copy shows up, and once `reminders.in_doubt_wait` has
//!   passed it is resent (same Message-ID), so the contact again has exactly one.
//!
//! The kill is the crash hook (`HECTO_WATCH_TEST_CRASH_AFTER`), which aborts at exactly that
//! instant instead of racing a signal against the sender; real Postfix, real Dovecot. The notice
//! is the spam notice (sent at any hour, so the test runs on the real clock: the copy's arrival
//! date must lie inside the back-fill window the first sync of INBOX reads).

mod daemon_support;
mod notify_support;
mod support;

use std::time::Duration;

use daemon_support::{eventually, Daemon};
use notify_support::{Env, Stack};

/// acme's contact is the watched mailbox; returns the config text with `in_doubt_wait`.
fn setup(env: &Env, in_doubt_wait: &str) -> String {
    env.ok(0, &["merchant", "add", "--id", "acme", "--name", "에이씨미", "--contact", &env.contact]);
    // Junk is polled, not IDLEd: every second here. `[reminders]` is the last table of the file.
    let mut config = std::fs::read_to_string(env.config())
        .unwrap()
        .replace("junk = \"Junk\"\n", "junk = \"Junk\"\npoll_interval = \"1s\"\n");
    assert!(config.contains("poll_interval"));
    config.push_str(&format!("in_doubt_wait = \"{in_doubt_wait}\"\n"));
    config
}

/// acme's spam notice in the outbox.
fn entry(d: &Daemon) -> serde_json::Value {
    let o = d.cli(&["export"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let export: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let outbox = export["outbox"].as_array().unwrap();
    outbox.iter().find(|e| e["key"].as_str().unwrap().starts_with("spam/acme/")).cloned().expect("the spam notice")
}

/// Start with the crash hook at `point`, deliver Hecto's guidance into Junk: the daemon must
/// abort while sending the spam notice, leaving it marked.
async fn crash_at(env: &Env, config: &str, point: &str) -> serde_json::Value {
    let mut d = Daemon::start(env.dir.path(), config, &[("HECTO_WATCH_TEST_CRASH_AFTER", point.into())]);
    d.wait_ready();
    let guidance = support::guidance_mail(&env.contact, &support::message_id("doubt"), &["X-Test-Spam: yes"]);
    support::smtp_deliver("contract@hectofinancial.co.kr", &env.contact, &guidance).await;
    let code = d.wait_exit(Duration::from_secs(60));
    assert_ne!(code, Some(0), "the crash hook aborts: {}", d.log_text());
    assert!(d.log_text().contains(&format!("={point}: aborting")), "{}", d.log_text());
    let e = entry(&d);
    assert_eq!(e["status"], "pending", "{e}");
    assert!(e["sending_since"].is_string(), "marked as being sent before DATA: {e}");
    e
}

/// Our copies of `key` in the contact's INBOX, once everything submitted was delivered.
async fn copies(stack: &Stack, env: &Env, key: &str) -> Vec<notify_support::Mail> {
    let mails = stack.after_barrier(&env.contact).await;
    mails.into_iter().filter(|m| m.x_hecto_watch.as_deref() == Some(key)).collect()
}

#[tokio::test]
async fn killed_after_the_server_accepted_the_copy_in_the_watched_inbox_is_recorded_and_nothing_is_resent() {
    let stack = Stack::shared();
    let env = Env::new(stack, "doubt-acc");
    // Long enough that a resend could only come from a wrong decision, not from the wait ending.
    let config = setup(&env, "10m");
    let marked = crash_at(&env, &config, "accepted").await;
    let key = marked["key"].as_str().unwrap().to_owned();

    let d = Daemon::start(env.dir.path(), &config, &[]);
    d.wait_ready();
    eventually(Duration::from_secs(30), "the entry recorded as sent from its copy in INBOX", || {
        entry(&d)["status"] == "sent"
    });
    assert!(entry(&d)["sending_since"].is_null());
    assert!(d.log_text().contains("is in a watched mailbox; not resending it"), "{}", d.log_text());
    assert!(!d.log_text().contains("Resending"), "never resent: {}", d.log_text());
    assert_eq!(d.terminate().0, Some(0));
    let copies = copies(stack, &env, &key).await;
    assert_eq!(copies.len(), 1, "exactly one copy: {copies:?}");
    assert_eq!(format!("<{}>", copies[0].message_id), marked["rendered"]["message_id"].as_str().unwrap());
}

#[tokio::test]
async fn killed_before_the_server_saw_it_is_resent_with_the_same_message_id_once_the_wait_ends() {
    let stack = Stack::shared();
    let env = Env::new(stack, "doubt-lost");
    let config = setup(&env, "3s");
    let marked = crash_at(&env, &config, "marked").await;
    let key = marked["key"].as_str().unwrap().to_owned();
    assert!(copies(stack, &env, &key).await.is_empty(), "nothing reached the mailbox before the kill");

    let d = Daemon::start(env.dir.path(), &config, &[]);
    d.wait_ready();
    eventually(Duration::from_secs(30), "the entry resent and recorded", || entry(&d)["status"] == "sent");
    assert!(d.log_text().contains("Resending a message that may have been delivered"), "{}", d.log_text());
    assert_eq!(d.terminate().0, Some(0));
    let copies = copies(stack, &env, &key).await;
    assert_eq!(copies.len(), 1, "exactly one copy: {copies:?}");
    assert_eq!(format!("<{}>", copies[0].message_id), marked["rendered"]["message_id"].as_str().unwrap());
}
