//! The spam notice: a Hecto guidance mail found in Junk produces one notice to the merchant (the
//! operators in Cc), sent by the outbox sender within seconds of the scan — not at the next cron
//! tick — and not one per rescan.

mod notify_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hecto_watch::clock::Clock;
use hecto_watch::config::Config;
use hecto_watch::ingest::{FolderRole, Ingest, MailSource};
use hecto_watch::notify;
use hecto_watch::ops::{self, NewMerchant};
use hecto_watch::store::{Delivery, Store};
use notify_support::{Env, Stack};
use tokio_util::sync::CancellationToken;

/// A guidance mail from Hecto's contract team to `to`, with a Korean RFC 2047 subject.
fn guidance_eml(to: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: =?UTF-8?B?7Zel7Yag7YyM7J2064K47IWcIOqzhOyVve2MgA==?= <contract@hectofinancial.co.kr>\r\n\
         To: {to}\r\n\
         Subject: =?UTF-8?B?W+2Xpe2GoO2MjOydtOuCuOyFnF0g7KCE7J6Q6rKw7KCc7ISc67mE7IqkIOqzhOyVvSDslYjrgrQ=?=\r\n\
         Date: Mon, 08 Feb 2027 11:00:00 +0900\r\n\
         Message-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         안녕하세요. 헥토파이낸셜 계약팀입니다.\r\n\
         전자결제서비스 계약 진행을 위한 구비서류를 안내드립니다.\r\n"
    )
    .into_bytes()
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{n}@hectofinancial.co.kr", std::process::id())
}

#[tokio::test]
async fn guidance_in_junk_imported_twice_produces_one_spam_notice() {
    let stack = Stack::shared();
    let env = Env::new(stack, "spamcli");
    env.add_merchant("acme", "에이씨미", "2027-02-05T10:00:00+09:00");
    let eml = env.dir.path().join("guidance.eml");
    std::fs::write(&eml, guidance_eml(&env.contact, &unique("guid"))).unwrap();
    let eml = eml.to_str().unwrap();
    let now = "2027-02-08T11:00:05+09:00";
    let first = env.ok(0, &["import-mail", "--json", "--now", now, "--folder", "Junk", eml]);
    let first: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(first["kind"], "guidance", "{first}");
    assert_eq!(first["found_in_spam"], true, "{first}");
    // The rescan sees the same mail again.
    let again = env.ok(0, &["import-mail", "--json", "--now", now, "--folder", "Junk", eml]);
    let again: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(again["duplicate"], true, "{again}");

    let out = env.remind(now, 0);
    assert_eq!(out.lines().filter(|l| l.starts_with("sent ")).count(), 1, "{out}");
    assert!(out.contains("sent     spam/acme/"), "{out}");
    let out = env.remind(now, 0);
    assert!(out.contains("nothing to send"), "{out}");

    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert!(m.x_hecto_watch.as_deref().unwrap().starts_with("spam/acme/"));
    assert!(m.subject.contains("[스팸메일함 확인] 에이씨미"), "{}", m.subject);
    assert!(m.text.contains("import / Junk"), "{}", m.text);
    assert!(m.text.contains("[헥토파이낸셜] 전자결제서비스 계약 안내"), "{}", m.text);
    assert_eq!(m.cc, vec![env.ops.clone()]);
}

#[tokio::test]
async fn the_sender_task_sends_the_spam_notice_within_seconds_of_the_scan_and_once_per_mail() {
    let stack = Stack::shared();
    let env = Env::new(stack, "spamtask");
    let config = Config::load(&env.config()).unwrap();
    let store = Store::open(&env.state()).unwrap();
    ops::merchant_add(
        &store,
        &NewMerchant {
            id: "acme".into(),
            name: "에이씨미".into(),
            contacts: vec![env.contact.clone()],
            applied_at: Some("2027-02-05".into()),
            ..NewMerchant::default()
        },
        chrono::Utc::now(),
    )
    .unwrap();
    let ingest = Ingest::new(store.clone(), &config, Clock::System);
    let notifier = Arc::new(notify::smtp_notifier(store.clone(), &config).unwrap());
    let cancel = CancellationToken::new();
    let sender = tokio::spawn(notify::run_sender(
        notifier.clone(),
        Clock::System,
        ingest.outbox_ready(),
        hecto_watch::clock::Heartbeat::none(),
        cancel.clone(),
    ));

    let raw = guidance_eml(&env.contact, &unique("task"));
    let scan = |uid: u32| MailSource {
        account: "contracts".into(),
        folder: "Junk".into(),
        role: FolderRole::Junk,
        uid: Some(uid),
        uid_validity: Some(7),
        internal_date: None,
        move_to_inbox: false,
    };
    let scanned = Instant::now();
    let (_, applied) = ingest.apply(&scan(1), &raw).unwrap();
    assert!(applied.found_in_spam, "{applied:?}");
    assert_eq!(applied.enqueued.len(), 1, "{applied:?}");
    let key = applied.enqueued[0].clone();
    // The same mail seen again (a rescan) queues nothing more.
    let (_, rescan) = ingest.apply(&scan(2), &raw).unwrap();
    assert!(rescan.duplicate && rescan.enqueued.is_empty(), "{rescan:?}");

    // The sender otherwise wakes once a minute and no cron tick runs here: only the ingest's
    // notification can make it this fast.
    loop {
        let e = store.outbox_entry(&key).unwrap().unwrap();
        if e.status == Delivery::Sent {
            break;
        }
        assert!(scanned.elapsed() < Duration::from_secs(10), "spam notice not sent 10 s after the scan: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].x_hecto_watch.as_deref(), Some(key.as_str()));
    assert!(mails[0].text.contains("contracts / Junk"), "{}", mails[0].text);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), sender).await.expect("the sender stops when cancelled").unwrap();
}
