//! `hecto-watch run` as a child process against the real mail stack (issue 5): spam in Junk
//! within seconds, SIGKILL during a burst, Dovecot restarted underneath, secrets never logged.

mod daemon_support;
mod notify_support;
mod support;

use std::time::Duration;

use daemon_support::{eventually, Daemon};
use support::{account_toml, fresh_user, guidance_mail, message_id, smtp_deliver, stack, Tls};

/// A config watching `user`'s mailbox (Junk polled every second) and sending through the
/// stack's submission port with AUTH.
fn config_for(user: &str, operators: &[&str]) -> String {
    format!(
        "{}\n{}",
        account_toml("contracts", user, Tls::Starttls, "poll_interval = \"1s\""),
        support::smtp_toml(user, operators, "")
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The raw headers of every mail in a folder.
async fn headers(user: &str, folder: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut conn = support::login(user).await;
    conn.session.examine(folder).await.unwrap();
    let fetches: Vec<_> =
        conn.session.uid_fetch("1:*", "(UID BODY.PEEK[HEADER])").await.unwrap().try_collect().await.unwrap();
    let out = fetches.iter().map(|f| String::from_utf8_lossy(f.header().unwrap_or_default()).into_owned()).collect();
    conn.logout().await;
    out
}

#[test]
fn guidance_in_junk_is_seen_within_seconds_and_the_spam_notice_arrives() {
    let user = fresh_user("run-spam", false);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &config_for(&user, &[]), &[]);
    d.wait_ready();
    d.add_merchant("acme", "에이씨미", &user, None);

    rt().block_on(smtp_deliver(
        "contract@hectofinancial.co.kr",
        &user,
        &guidance_mail(&user, &message_id("run-spam"), &["X-Test-Spam: yes"]),
    ));
    eventually(Duration::from_secs(5), "guidance_received with found_in_spam", || {
        let rows = d.json(&["status"]);
        rows[0]["stage"] == "guidance_received" && rows[0]["found_in_spam"] == true
    });
    // The spam notice reaches the contact's INBOX (our own mail, which the ingest ignores).
    rt().block_on(support::wait_for_mail(&user, "INBOX", 1));
    let inbox = rt().block_on(headers(&user, "INBOX"));
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].contains("X-Hecto-Watch: spam/acme/"), "{}", inbox[0]);

    let (code, took) = d.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A valid 사업자등록번호 from nine digits (weights 1,3,7,1,3,7,1,3,5).
fn business_no(first9: u64) -> String {
    let d: Vec<u32> = format!("{first9:09}").chars().map(|c| c.to_digit(10).unwrap()).collect();
    let w = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let sum: u32 = d.iter().zip(w).map(|(a, b)| a * b).sum::<u32>() + d[8] * 5 / 10;
    format!("{first9:09}{}", (10 - sum % 10) % 10)
}

#[test]
fn sigkill_during_a_burst_of_200_deliveries_applies_every_mail_and_notice_once() {
    const N: usize = 200;
    let user = fresh_user("run-burst", false);
    let dir = tempfile::tempdir().unwrap();

    let cfg = config_for(&user, &[]);
    // 200 merchants share one contract mailbox; each mail names its merchant's business number.
    {
        std::fs::write(dir.path().join("config.toml"), &cfg).unwrap();
        let store = hecto_watch::store::Store::open(&dir.path().join("state")).unwrap();
        for i in 0..N {
            let m = hecto_watch::ops::NewMerchant {
                id: format!("m{i:03}"),
                name: format!("상점{i:03}"),
                contacts: vec![user.clone()],
                business_no: Some(business_no(220_810_000 + i as u64)),
                mids: vec![],
                // Applied now: no guidance reminder is due, so every X-Hecto-Watch mail is a spam notice.
                applied_at: None,
                ..Default::default()
            };
            hecto_watch::ops::merchant_add(&store, &m, chrono::Utc::now()).unwrap();
        }
        store.flush_blocking().unwrap();
    }
    let d = Daemon::start(dir.path(), &cfg, &[]);
    d.wait_ready();

    let mail_for = |i: usize| {
        let spam: &[&str] = if i.is_multiple_of(2) { &["X-Test-Spam: yes"] } else { &[] };
        support::mail(
            "\"헥토파이낸셜 계약팀\" <contract@hectofinancial.co.kr>",
            &user,
            "[헥토파이낸셜] 전자결제 서비스 계약 안내",
            &format!("burst-{i}-{}", message_id("b")),
            spam,
            &format!("사업자등록번호: {}\n계약 안내드립니다.", business_no(220_810_000 + i as u64)),
        )
    };
    let rt = rt();
    for i in 0..N / 3 {
        rt.block_on(smtp_deliver("contract@hectofinancial.co.kr", &user, &mail_for(i)));
    }
    // Kill it mid-stream: some mails applied, some notices sent, some in flight.
    eventually(Duration::from_secs(30), "the daemon applies some of the burst", || {
        d.json(&["status"]).iter().filter(|r| r["stage"] == "guidance_received").count() >= 10
    });
    let d2 = {
        d.kill();
        for i in N / 3..N {
            rt.block_on(smtp_deliver("contract@hectofinancial.co.kr", &user, &mail_for(i)));
        }
        Daemon::start(dir.path(), &cfg, &[])
    };
    d2.wait_ready();
    eventually(Duration::from_secs(90), "every merchant reaches guidance_received", || {
        d2.json(&["status"]).iter().filter(|r| r["stage"] == "guidance_received").count() == N
    });
    eventually(Duration::from_secs(60), "every spam notice sent", || d2.json(&["reminders"]).is_empty());

    let export: serde_json::Value = serde_json::from_slice(&d2.cli(&["export"]).stdout).unwrap();
    let stage_events = export["events"].as_array().unwrap().iter().filter(|e| e["change"]["type"] == "stage").count();
    assert_eq!(stage_events, N, "one stage change per mail");
    assert_eq!(export["seen"].as_object().unwrap().len(), N);
    let spam_entries: Vec<&serde_json::Value> =
        export["outbox"].as_array().unwrap().iter().filter(|e| e["kind"] == "spam_notice").collect();
    assert_eq!(spam_entries.len(), N / 2);
    assert!(spam_entries.iter().all(|e| e["status"] == "sent"));

    // In the mailbox: 100 guidance mails that were not spam plus exactly one notice per spam mail.
    // Read after a barrier mail, so a duplicate notice still in Postfix's queue is counted too.
    let inbox = rt.block_on(notify_support::Stack::shared().after_barrier(&user));
    let mut keys: Vec<&str> = inbox.iter().filter_map(|m| m.x_hecto_watch.as_deref()).collect();
    assert_eq!(keys.len(), N / 2, "each spam notice exactly once");
    assert_eq!(inbox.len() - keys.len(), N / 2, "the guidance mails that were not spam");
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), N / 2);
    assert_eq!(d2.terminate().0, Some(0));
}

#[test]
fn secrets_never_appear_in_logs_or_errors() {
    let user = fresh_user("run-secret", false);
    let dir = tempfile::tempdir().unwrap();
    let secret = stack().password.clone();
    let d = Daemon::start(dir.path(), &config_for(&user, &[]), &[("RUST_LOG", "trace".into())]);
    d.wait_ready();
    let o = d.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0));
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
    let logs: String = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    // "Logged in" is a debug event, logged right after the password was sent: trace logging
    // was on where the password passes through.
    assert!(logs.contains("Logged in"), "the trace log was captured:\n{logs}");
    assert!(!logs.contains(&secret), "the IMAP/SMTP password appears in the daemon's log");

    // A wrong password: the login error names the account, never the password tried.
    let wrong = "Wr0ng-S3cret-Never-Logged-7731";
    let bad = config_for(&user, &[]).replace(&format!("value = \"{secret}\""), &format!("value = \"{wrong}\""));
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, bad).unwrap();
    let o = std::process::Command::new(daemon_support::bin())
        .args(["--config", cfg.to_str().unwrap(), "check-config", "--connect"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(all.contains("accounts[0]"), "{all}");
    assert!(!all.contains(wrong), "the wrong password appears in: {all}");
}

#[test]
fn remind_once_and_reminders_go_through_the_running_daemon() {
    let user = fresh_user("run-remind", false);
    let ops = fresh_user("run-remind-ops", false);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &config_for(&user, &[&ops]), &[]);
    d.wait_ready();
    // Applied Fri 2027-02-05: over 설날 the guidance is due at the end of Fri 2027-02-12.
    d.add_merchant("acme", "에이씨미", &user, Some("2027-02-05"));
    assert!(d.json(&["reminders", "--now", "2027-02-11T09:00:00+09:00"]).is_empty());
    let due = d.json(&["reminders", "--now", "2027-02-15T09:00:00+09:00"]);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0]["kind"], "reminder");

    let sent = d.json(&["remind", "--once", "--now", "2027-02-15T09:00:00+09:00"]);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["result"], "sent");
    assert_eq!(sent[0]["key"], "reminder/acme/guidance@20270205/001");
    // The same tick again sends nothing: the key is already in the outbox.
    let again = d.json(&["remind", "--once", "--now", "2027-02-15T09:00:00+09:00"]);
    assert!(again.is_empty(), "{again:?}");

    rt().block_on(support::wait_for_mail(&ops, "INBOX", 1));
    let cc = rt().block_on(headers(&ops, "INBOX"));
    assert_eq!(cc.len(), 1);
    assert!(cc[0].contains("X-Hecto-Watch: reminder/acme/guidance@20270205/001"), "{}", cc[0]);
    assert_eq!(d.terminate().0, Some(0));
}
