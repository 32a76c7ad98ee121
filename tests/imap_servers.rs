//! The IMAP behaviours that matter, against both real servers of the mail stack: Dovecot (fed by
//! Postfix and Sieve) and Cyrus (`INBOX.`-prefixed namespace, `.` separator, lower-case
//! special-use attributes). Each case is one function taking the server; `on_both_servers!`
//! makes a test of it per server (`dovecot::…`, `cyrus::…`). Each test has its own user and its
//! own sled directory.

mod support;

use std::time::Duration;

use hecto_watch::imap::{self, utf7, FolderRole, ImapEvent, ProgressMode, Why};
use hecto_watch::merchant::{Change, Stage};
use support::servers::Server;
use support::*;
use tokio_util::sync::CancellationToken;

macro_rules! on_both_servers {
    ($($case:ident),* $(,)?) => {
        mod dovecot {
            $( #[tokio::test] async fn $case() { super::$case(super::Server::Dovecot).await } )*
        }
        mod cyrus {
            $( #[tokio::test] async fn $case() { super::$case(super::Server::Cyrus).await } )*
        }
    };
}

on_both_servers!(
    guidance_mail_in_the_spam_folder_is_found_and_a_second_scan_changes_nothing,
    a_spam_named_folder_beside_the_junk_folder_is_watched_too,
    own_card_review_request_in_sent_advances_the_merchant,
    scanning_leaves_every_flag_as_it_was,
    idle_picks_up_new_mail_in_inbox,
    polling_picks_up_new_mail_in_the_junk_folder,
    a_wrong_password_is_kept_as_the_folders_error,
    a_mail_longer_than_the_first_read_is_read_whole_and_stays_unread,
);

async fn scan(config: &hecto_watch::config::Config, ingest: &hecto_watch::ingest::Ingest) -> imap::ScanSummary {
    let s = imap::scan_once(config, ingest, &CancellationToken::new(), ProgressMode::Never).await;
    assert!(s.errors.is_empty(), "scan errors: {:?}", s.errors);
    s
}

async fn guidance_mail_in_the_spam_folder_is_found_and_a_second_scan_changes_nothing(server: Server) {
    let user = server.fresh_user("junk");
    server.deliver_spam(&user, &guidance_mail(&user, &message_id("g"), &["X-Test-Spam: yes"])).await;
    server.deliver("friend@example.org", &user, &plain_mail(&user, &message_id("p"))).await;
    wait_for_inbox(server, &user).await;

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("a", &user, Tls::Implicit, ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", &user);

    let s = scan(&config, &ingest).await;
    assert_eq!(s.folders, 3, "INBOX, the junk and the sent folder are watched: {s:?}");
    assert_eq!(
        (s.mails.mails_seen, s.mails.hecto_mails, s.mails.stage_changes, s.mails.found_in_spam),
        (2, 1, 1, 1),
        "{s:?}"
    );
    let m = store.merchant("m1").unwrap().unwrap();
    assert_eq!(m.stage, Stage::GuidanceReceived);
    assert!(m.found_in_spam);
    let junk = utf7::decode_lossy(server.junk());
    let roles = store.folder_roles().unwrap();
    assert!(roles["a"].contains(&(junk.clone(), FolderRole::Junk)), "{roles:?}");
    // Every watched folder's status says it was read.
    for folder in ["INBOX", junk.as_str(), &utf7::decode_lossy(server.sent())] {
        let st = store.folder_status("a", folder).unwrap().unwrap_or_else(|| panic!("no status for {folder}"));
        assert!(st.last_ok.is_some() && st.last_error.is_none(), "{folder}: {st:?}");
    }

    let again = scan(&config, &ingest).await;
    assert_eq!((again.mails.mails_seen, again.mails.stage_changes, again.mails.found_in_spam), (0, 0, 0), "{again:?}");
    assert_eq!(store.events("m1").unwrap().iter().filter(|e| e.change == Change::FoundInSpam).count(), 1);
}

/// Delivery through Postfix is asynchronous; APPEND is not.
async fn wait_for_inbox(server: Server, user: &str) {
    if server == Server::Dovecot {
        wait_for_mail(user, "INBOX", 1).await;
    }
}

async fn a_spam_named_folder_beside_the_junk_folder_is_watched_too(server: Server) {
    // The server marks its junk folder \Junk, and a Korean spam filter files into 스팸메일함.
    let user = server.fresh_user("twojunk");
    let korean = server.folder(&utf7::encode("스팸메일함"));
    server.create(&user, &korean).await;
    let in_junk = message_id("in-junk");
    let in_korean = message_id("in-korean");
    server.append(&user, server.junk(), &guidance_mail("a@corp.example", &in_junk, &[]), None).await;
    server.append(&user, &korean, &guidance_mail("b@corp.example", &in_korean, &[]), None).await;

    let acct = server.account("k", &user, Tls::Implicit, "");
    let listed = imap::list_folders(&acct).await.unwrap();
    let korean_name = utf7::decode_lossy(&korean);
    let line = |name: &str| listed.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} in {listed:?}"));
    assert_eq!(
        (line(&utf7::decode_lossy(server.junk())).role, line(&utf7::decode_lossy(server.junk())).why),
        (FolderRole::Junk, Some(Why::SpecialUse))
    );
    assert_eq!((line(&korean_name).role, line(&korean_name).why), (FolderRole::Junk, Some(Why::Name)));
    assert!(line(&korean_name).watched);

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("k", &user, Tls::Implicit, ""));
    let (store, ingest) = ingest(&config);
    let s = scan(&config, &ingest).await;
    assert_eq!(s.folders, 4, "INBOX, both junk folders, Sent: {s:?}");
    let mut recorded: Vec<(String, String)> =
        store.unassigned().unwrap().into_iter().map(|u| (u.message_id.unwrap_or_default(), u.source.folder)).collect();
    recorded.sort();
    let mut want = vec![(in_junk, utf7::decode_lossy(server.junk())), (in_korean, korean_name)];
    want.sort();
    assert_eq!(recorded, want, "the Hecto mail of each junk folder, once");
}

async fn own_card_review_request_in_sent_advances_the_merchant(server: Server) {
    let user = server.fresh_user("sent");
    let raw = mail(
        &format!("\"가맹점 담당자\" <{user}>"),
        "pg-contract@hectofinancial.co.kr",
        "[가맹점] 카드사 심사 요청드립니다",
        &message_id("cr"),
        &[],
        "개발이 완료되어 카드사 심사를 요청드립니다.",
    );
    server.append(&user, server.sent(), &raw, Some("(\\Seen)")).await;

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("s", &user, Tls::Starttls, ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-sent", &user);
    let s = scan(&config, &ingest).await;
    assert_eq!((s.mails.hecto_mails, s.mails.stage_changes, s.mails.found_in_spam), (1, 1, 0), "{s:?}");
    assert_eq!(store.merchant("m-sent").unwrap().unwrap().stage, Stage::CardReviewRequested);
}

async fn scanning_leaves_every_flag_as_it_was(server: Server) {
    let user = server.fresh_user("flags");
    // Unread and read mail, Hecto's and not, in INBOX and the junk folder.
    server.append(&user, "INBOX", &guidance_mail(&user, &message_id("f1"), &[]), None).await;
    server.append(&user, "INBOX", &plain_mail(&user, &message_id("f2")), Some("(\\Seen)")).await;
    server.append(&user, "INBOX", &plain_mail(&user, &message_id("f3")), None).await;
    server.append(&user, server.junk(), &guidance_mail(&user, &message_id("f4"), &[]), None).await;
    server.append(&user, server.junk(), &guidance_mail(&user, &message_id("f5"), &[]), Some("(\\Flagged)")).await;
    let before = (server.flags(&user, "INBOX").await, server.flags(&user, server.junk()).await);
    assert_eq!((before.0.len(), before.1.len()), (3, 2));
    assert_eq!(before.0.values().filter(|f| f.iter().any(|x| x.contains("Seen"))).count(), 1, "{before:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("f", &user, Tls::Starttls, ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-flags", &user);
    let s = scan(&config, &ingest).await;
    assert_eq!(s.mails.bodies_fetched, 3, "bodies fetched for the three Hecto mails only: {s:?}");
    let after = (server.flags(&user, "INBOX").await, server.flags(&user, server.junk()).await);
    assert_eq!(before, after, "a scan must not change any flag (no \\Seen from fetching bodies)");
}

async fn idle_picks_up_new_mail_in_inbox(server: Server) {
    let user = server.fresh_user("idle");
    let dir = tempfile::tempdir().unwrap();
    // Polling so slow that only IDLE can explain the pick-up.
    let config = config(dir.path(), &server.account_toml("idle", &user, Tls::Implicit, "poll_interval = \"1h\""));
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

    let id = message_id("idle");
    server.deliver("contract@hectofinancial.co.kr", &user, &guidance_mail(&user, &id, &[])).await;
    w.wait_for(
        Duration::from_secs(30),
        "the guidance mail through IDLE",
        |e| matches!(e, ImapEvent::Mail(r) if r.message_id.as_deref() == Some(id.as_str()) && r.stage_changed),
    )
    .await;
    assert_eq!(store.merchant("m-idle").unwrap().unwrap().stage, Stage::GuidanceReceived);
    w.stop().await;
}

async fn polling_picks_up_new_mail_in_the_junk_folder(server: Server) {
    let user = server.fresh_user("poll");
    let dir = tempfile::tempdir().unwrap();
    let config =
        config(dir.path(), &server.account_toml("poll", &user, Tls::Starttls, "idle = false\npoll_interval = \"1s\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-poll", &user);
    let mut w = start_watch(&config, &ingest);
    w.wait_for(
        Duration::from_secs(30),
        "INBOX connected, polling",
        |e| matches!(e, ImapEvent::Connected { folder, idle: false, .. } if folder == "INBOX"),
    )
    .await;
    let junk = utf7::decode_lossy(server.junk());
    w.synced(&junk).await;
    server.deliver_spam(&user, &guidance_mail(&user, &message_id("poll"), &["X-Test-Spam: yes"])).await;
    let e = w
        .wait_for(
            Duration::from_secs(30),
            "the junk mail's stage change",
            |e| matches!(e, ImapEvent::Mail(r) if r.stage_changed && r.merchant.as_deref() == Some("m-poll")),
        )
        .await;
    let ImapEvent::Mail(r) = e else { unreachable!() };
    assert_eq!(r.folder, junk);
    assert!(r.found_in_spam);
    w.stop().await;
}

async fn a_wrong_password_is_kept_as_the_folders_error(server: Server) {
    let user = server.fresh_user("badpw");
    let dir = tempfile::tempdir().unwrap();
    let toml = server.account_toml("bad", &user, Tls::Starttls, "").replace(&stack().password, "wrong-pw-2718");
    let config = config(dir.path(), &toml);
    let (store, ingest) = ingest(&config);
    let s = imap::scan_once(&config, &ingest, &CancellationToken::new(), ProgressMode::Never).await;
    assert_eq!(s.errors.len(), 1, "{s:?}");
    assert!(s.errors[0].contains(&user), "{:?}", s.errors);
    let st = store.folder_status("bad", "INBOX").unwrap().expect("INBOX's status is kept");
    let error = st.last_error.expect("the login failure is INBOX's error");
    assert!(error.contains("login") && !error.contains("wrong-pw-2718"), "{error}");
    assert_eq!((st.failures, st.last_ok), (1, None));
    assert!(store.cursor("bad", "INBOX").unwrap().is_none(), "no cursor for a folder never read");
}

/// The first body read is partial (`BODY.PEEK[]<0.N>`, answered `BODY[]<0>`); a mail longer
/// than that is read again whole — its business number, past the cut, finds the merchant — and
/// neither read sets `\Seen`.
async fn a_mail_longer_than_the_first_read_is_read_whole_and_stays_unread(server: Server) {
    let user = server.fresh_user("long");
    let body = format!("{}\r\n사업자등록번호: 220-81-62517\r\n", "계약 안내 본문입니다. ".repeat(5_000));
    let from = "\"헥토파이낸셜 계약팀\" <contract@hectofinancial.co.kr>";
    let raw =
        mail(from, "ops@corp.example", "[헥토파이낸셜] 전자결제 서비스 계약 안내", &message_id("long"), &[], &body);
    assert!(raw.len() > imap::sync::BODY_FIRST_BYTES as usize + 40_000);
    server.append(&user, "INBOX", &raw, None).await;

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("l", &user, Tls::Implicit, ""));
    let (store, ingest) = ingest(&config);
    add_merchant_with_business_no(&store, "m-long", "someone-else@corp.example", Some("2208162517"));
    let s = scan(&config, &ingest).await;
    assert_eq!((s.mails.bodies_fetched, s.mails.stage_changes, s.mails.unassigned), (1, 1, 0), "{s:?}");
    assert_eq!(store.merchant("m-long").unwrap().unwrap().stage, Stage::GuidanceReceived);
    let flags = server.flags(&user, "INBOX").await;
    assert!(flags.values().all(|f| !f.iter().any(|x| x.contains("Seen"))), "{flags:?}");
}
