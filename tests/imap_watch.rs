//! Watching: IDLE on INBOX delivers a stage change in under 2 s; without IDLE, polling does it.

mod support;

use std::time::{Duration, Instant};

use hecto_watch::imap::ImapEvent;
use hecto_watch::merchant::Stage;
use support::*;

#[tokio::test]
async fn idle_delivery_changes_stage_in_under_two_seconds() {
    let user = fresh_user("idle", false);
    let dir = tempfile::tempdir().unwrap();
    // Polling so slow that only IDLE can explain a quick reaction.
    let config = config(dir.path(), &account_toml("idle", &user, Tls::Implicit, "poll_interval = \"1h\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-idle", &user);

    let mut w = start_watch(&config, &ingest);
    w.wait_for(
        Duration::from_secs(30),
        "INBOX connected with IDLE",
        |e| matches!(e, ImapEvent::Connected { folder, idle: true, .. } if folder == "INBOX"),
    )
    .await;
    w.synced("INBOX").await;

    smtp_deliver("contract@hectofinancial.co.kr", &user, &guidance_mail(&user, &message_id("idle"), &[])).await;
    let accepted = Instant::now();
    w.wait_for(
        Duration::from_secs(30),
        "the guidance mail's stage change",
        |e| matches!(e, ImapEvent::Mail(r) if r.stage_changed && r.merchant.as_deref() == Some("m-idle")),
    )
    .await;
    let took = accepted.elapsed();
    assert!(took < Duration::from_secs(2), "SMTP accept → stage change took {took:?}");
    assert_eq!(store.merchant("m-idle").unwrap().unwrap().stage, Stage::GuidanceReceived);
    w.stop().await;
}

#[tokio::test]
async fn without_idle_polling_picks_up_new_mail() {
    let user = fresh_user("poll", false);
    let dir = tempfile::tempdir().unwrap();
    let config =
        config(dir.path(), &account_toml("poll", &user, Tls::Starttls, "idle = false\npoll_interval = \"1s\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-poll", &user);
    let mut w = start_watch(&config, &ingest);
    w.wait_for(
        Duration::from_secs(30),
        "INBOX connected, polling",
        |e| matches!(e, ImapEvent::Connected { folder, idle: false, .. } if folder == "INBOX"),
    )
    .await;
    w.synced("INBOX").await;
    // Into Junk by Sieve: the junk folder is polled too.
    smtp_deliver(
        "contract@hectofinancial.co.kr",
        &user,
        &guidance_mail(&user, &message_id("poll"), &["X-Test-Spam: yes"]),
    )
    .await;
    let e = w
        .wait_for(
            Duration::from_secs(30),
            "the junk mail's stage change",
            |e| matches!(e, ImapEvent::Mail(r) if r.stage_changed && r.merchant.as_deref() == Some("m-poll")),
        )
        .await;
    let ImapEvent::Mail(r) = e else { unreachable!() };
    assert_eq!(r.folder, "Junk");
    assert!(r.found_in_spam);
    w.stop().await;
}
