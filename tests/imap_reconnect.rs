//! Dovecot stopped and started again while watching: mail delivered meanwhile (queued by Postfix,
//! delivered once Dovecot is back) is picked up after the reconnect — nothing lost, nothing
//! doubled; and the same for Cyrus. Alone in their test binary because they restart the shared
//! servers (each test a different one).

mod support;

use std::time::Duration;

use hecto_watch::imap::ImapEvent;
use hecto_watch::merchant::{Change, Stage};
use support::*;

/// Hecto's documents request (kind `documents_request`) to `user`.
fn documents_request(user: &str, id: &str) -> Vec<u8> {
    mail(
        "\"헥토파이낸셜\" <contract@hectofinancial.co.kr>",
        user,
        "[헥토파이낸셜] 계약 구비서류 안내",
        id,
        &[],
        "구비서류를 보내 주세요.",
    )
}

/// The guidance mail and the documents request of a restart test, each applied exactly once.
fn assert_each_mail_applied_once(store: &hecto_watch::store::Store) {
    let stages: Vec<Stage> = store
        .events("m-r")
        .unwrap()
        .iter()
        .filter_map(|e| match e.change {
            Change::Stage { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(stages, [Stage::GuidanceReceived, Stage::Contracting], "each mail applied exactly once");
    assert_eq!(store.seen_count(), 2, "two Hecto mails recorded, once each");
}

#[tokio::test]
async fn dovecot_restart_while_watching_loses_and_doubles_nothing() {
    let user = fresh_user("restart", false);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &account_toml("r", &user, Tls::Starttls, "poll_interval = \"2s\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-r", &user);
    let mut w = start_watch(&config, &ingest);
    w.synced("INBOX").await;

    mailstack_ok(&["stop-dovecot"]);
    w.wait_for(
        Duration::from_secs(30),
        "the watcher noticing the lost connection",
        |e| matches!(e, ImapEvent::Disconnected { folder: Some(f), .. } if f == "INBOX"),
    )
    .await;
    // Postfix accepts and queues while LMTP is down.
    let guidance = message_id("r-guidance");
    smtp_deliver("contract@hectofinancial.co.kr", &user, &guidance_mail(&user, &guidance, &[])).await;
    smtp_deliver("friend@example.org", &user, &plain_mail(&user, &message_id("r-plain"))).await;
    mailstack_ok(&["start-dovecot"]);

    w.wait_for(
        Duration::from_secs(90),
        "the queued guidance mail after reconnecting",
        |e| matches!(e, ImapEvent::Mail(r) if r.message_id.as_deref() == Some(guidance.as_str())),
    )
    .await;
    assert_eq!(store.merchant("m-r").unwrap().unwrap().stage, Stage::GuidanceReceived);

    // Once more after the reconnect, so a doubled apply would have had its chance.
    let docs = message_id("r-docs");
    let raw = documents_request(&user, &docs);
    smtp_deliver("contract@hectofinancial.co.kr", &user, &raw).await;
    w.wait_for(
        Duration::from_secs(30),
        "the documents request",
        |e| matches!(e, ImapEvent::Mail(r) if r.message_id.as_deref() == Some(docs.as_str())),
    )
    .await;
    w.stop().await;

    assert_each_mail_applied_once(&store);
}

#[tokio::test]
async fn cyrus_restart_while_watching_loses_and_doubles_nothing() {
    use support::servers::Server;
    let server = Server::Cyrus;
    let user = server.fresh_user("restart");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("r", &user, Tls::Implicit, "poll_interval = \"2s\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-r", &user);
    let mut w = start_watch(&config, &ingest);
    w.synced("INBOX").await;

    server.stop();
    w.wait_for(
        Duration::from_secs(30),
        "the watcher noticing the lost connection",
        |e| matches!(e, ImapEvent::Disconnected { folder: Some(f), .. } if f == "INBOX"),
    )
    .await;
    server.start();
    // No MTA queues for Cyrus here: the mail arrives once the server is back.
    let guidance = message_id("r-guidance");
    server.append(&user, "INBOX", &guidance_mail(&user, &guidance, &[]), None).await;
    w.wait_for(
        Duration::from_secs(90),
        "the guidance mail after reconnecting",
        |e| matches!(e, ImapEvent::Mail(r) if r.message_id.as_deref() == Some(guidance.as_str())),
    )
    .await;

    let docs = message_id("r-docs");
    let raw = documents_request(&user, &docs);
    server.append(&user, "INBOX", &raw, None).await;
    w.wait_for(
        Duration::from_secs(30),
        "the documents request",
        |e| matches!(e, ImapEvent::Mail(r) if r.message_id.as_deref() == Some(docs.as_str())),
    )
    .await;
    w.stop().await;

    assert_each_mail_applied_once(&store);
}
