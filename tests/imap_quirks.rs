//! The IMAP side against servers that answer the RFC-legal ways SPEC §6 lists (1–8, 11), and
//! against servers that fail — a FETCH that answers nothing, a refused command (9, 10, 12–14) —
//! played by `support::quirk` (no mail stack needed). Each test proves, for its behaviour, that
//! every mail is read exactly once — or that the folder reports an error, the cursor waits, and
//! once the server behaves again the next pass reads every mail.

mod support;

use std::time::Duration;

use hecto_watch::config::Config;
use hecto_watch::imap::{self, ImapEvent, ProgressMode, ScanSummary};
use hecto_watch::ingest::Ingest;
use hecto_watch::merchant::{Change, Stage};
use hecto_watch::store::Store;
use support::quirk::{kst, QuirkServer, INBOX_ONLY, PLAIN, USER};
use support::{
    add_merchant, add_merchant_with_business_no, config, guidance_mail, ingest, mail, message_id, plain_mail,
    start_watch, start_watch_relisting,
};
use tokio_util::sync::CancellationToken;

async fn scan(config: &Config, ingest: &Ingest) -> ScanSummary {
    imap::scan_once(config, ingest, &CancellationToken::new(), ProgressMode::Never).await
}

/// A scan that must have read every folder.
async fn scan_ok(config: &Config, ingest: &Ingest) -> ScanSummary {
    let s = scan(config, ingest).await;
    assert!(s.errors.is_empty(), "scan errors: {:?}", s.errors);
    s
}

/// The stages a merchant's mail moved it to, in order: one entry per mail applied.
fn stages(store: &Store, merchant: &str) -> Vec<Stage> {
    store
        .events(merchant)
        .unwrap()
        .iter()
        .filter_map(|e| match e.change {
            Change::Stage { to, .. } => Some(to),
            _ => None,
        })
        .collect()
}

fn found_in_spam_events(store: &Store, merchant: &str) -> usize {
    store.events(merchant).unwrap().iter().filter(|e| e.change == Change::FoundInSpam).count()
}

/// The last UID the folder's cursor has passed; `None` when it has passed none (no cursor yet, or
/// a first sync's cursor still before the first mail).
fn last_uid(store: &Store, account: &str, folder: &str) -> Option<u32> {
    store.cursor(account, folder).unwrap().map(|c| c.last_uid).filter(|u| *u > 0)
}

fn last_error(store: &Store, account: &str, folder: &str) -> Option<String> {
    store.folder_status(account, folder).unwrap().and_then(|s| s.last_error)
}

fn days_ago(days: i64) -> chrono::DateTime<chrono::FixedOffset> {
    kst(chrono::Utc::now() - chrono::Duration::days(days))
}

/// 1. Courier: no UIDNEXT in EXAMINE, and every UID SEARCH answers an empty `* SEARCH`. The newest
/// UID comes from `UID FETCH * (UID)`; the back-fill's SEARCH SINCE is not believed (it leaves
/// out the newest mail), so every header is read and the window is checked per mail.
#[tokio::test]
async fn courier_without_uidnext_and_with_an_empty_search_reads_every_mail_once() {
    let server = QuirkServer::start(PLAIN).await;
    server.with(|s| {
        s.quirks.no_uidnext = true;
        s.quirks.empty_search = true;
        // The oldest mail arrived before the 60-day back-fill window: SEARCH SINCE is asked.
        s.deliver_at("INBOX", plain_mail(USER, &message_id("c-old")), days_ago(90), &[]);
        s.deliver_at("INBOX", guidance_mail("old@corp.example", &message_id("c-oldg"), &[]), days_ago(80), &[]);
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("c1"), &[]));
        s.deliver("INBOX", plain_mail(USER, &message_id("c-p")));
        s.deliver("INBOX", guidance_mail("m2@corp.example", &message_id("c2"), &[]));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("c", "backfill_days = 60"));
    let (store, ingest) = ingest(&config);
    for m in ["m1", "m2", "old"] {
        add_merchant(&store, m, &format!("{m}@corp.example"));
    }

    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.hecto_mails), (5, 2), "every header read, two mails in the window: {s:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    assert_eq!(stages(&store, "m2"), [Stage::GuidanceReceived]);
    assert_eq!(stages(&store, "old"), [], "the mail from before the window is left alone");
    let commands = server.commands();
    assert!(commands.iter().any(|c| c.starts_with("UID SEARCH SINCE")), "the window was searched: {commands:?}");
    assert!(commands.iter().any(|c| c == "UID FETCH * (UID)"), "newest UID asked without UIDNEXT: {commands:?}");
    assert_eq!(last_uid(&store, "c", "INBOX"), Some(5));

    // New mail: without UIDNEXT the next pass still finds it, and only it.
    server.deliver("INBOX", guidance_mail("m3@corp.example", &message_id("c3"), &[]));
    add_merchant(&store, "m3", "m3@corp.example");
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.hecto_mails), (1, 1), "{s:?}");
    assert_eq!(stages(&store, "m3"), [Stage::GuidanceReceived]);
    let s = scan_ok(&config, &ingest).await;
    assert_eq!(s.mails.mails_seen, 0, "nothing new: {s:?}");
    assert_eq!(store.seen_count(), 3, "three Hecto mails recorded, once each");
}

/// 2. No IDLE (Naver): INBOX is polled, and IDLE is never sent (this server would answer BAD).
#[tokio::test]
async fn without_idle_inbox_is_polled_and_new_mail_is_read_once() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| s.capabilities.retain(|c| c != "IDLE"));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("n", "poll_interval = \"1s\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");

    let mut w = start_watch(&config, &ingest);
    w.wait_for(
        Duration::from_secs(10),
        "INBOX connected, polling",
        |e| matches!(e, ImapEvent::Connected { folder, idle: false, .. } if folder == "INBOX"),
    )
    .await;
    w.synced("INBOX").await;
    server.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("n1"), &[]));
    w.wait_for(
        Duration::from_secs(10),
        "the polled guidance mail",
        |e| matches!(e, ImapEvent::Mail(r) if r.merchant.as_deref() == Some("m1") && r.stage_changed),
    )
    .await;
    // A few more polls, so a second apply would have had its chance.
    for _ in 0..2 {
        w.wait_for(Duration::from_secs(10), "another poll", |e| matches!(e, ImapEvent::Synced { .. })).await;
    }
    w.stop().await;
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    let commands = server.commands();
    assert!(!commands.iter().any(|c| c.eq_ignore_ascii_case("IDLE")), "IDLE sent to a server without it: {commands:?}");
}

/// 3. IDLE that announces new mail only at its own ticks (real servers: every 60 s; here 2 s):
/// each mail is read once when the tick announces it.
#[tokio::test]
async fn idle_that_wakes_only_at_ticks_still_reads_each_mail_once() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| s.quirks.idle_every = Some(Duration::from_secs(2)));
    let dir = tempfile::tempdir().unwrap();
    // Polling so slow that only the IDLE wake-up can explain a read.
    let config = config(dir.path(), &server.account_toml("t", "poll_interval = \"1h\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    add_merchant(&store, "m2", "m2@corp.example");

    let mut w = start_watch(&config, &ingest);
    w.wait_for(
        Duration::from_secs(10),
        "INBOX connected with IDLE",
        |e| matches!(e, ImapEvent::Connected { folder, idle: true, .. } if folder == "INBOX"),
    )
    .await;
    w.synced("INBOX").await;
    for (merchant, id) in [("m1", "t1"), ("m2", "t2")] {
        server.deliver("INBOX", guidance_mail(&format!("{merchant}@corp.example"), &message_id(id), &[]));
        w.wait_for(
            Duration::from_secs(10),
            "the mail announced at the next tick",
            |e| matches!(e, ImapEvent::Mail(r) if r.merchant.as_deref() == Some(merchant)),
        )
        .await;
    }
    w.stop().await;
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    assert_eq!(stages(&store, "m2"), [Stage::GuidanceReceived]);
    assert_eq!(store.seen_count(), 2);
    let commands = server.commands();
    assert!(commands.iter().filter(|c| *c == "DONE").count() >= 2, "woken out of IDLE twice: {commands:?}");
}

/// The common setup of the move tests: a server with neither MOVE nor UIDPLUS, a plain mail and a
/// Hecto guidance mail in Junk, `move_found_in_spam = true`.
async fn no_move_server(other_flags: &[&str]) -> (QuirkServer, tempfile::TempDir, Config, Store, Ingest, Vec<u8>) {
    let server = QuirkServer::start(PLAIN).await;
    let guidance = guidance_mail("m1@corp.example", &message_id("mv"), &[]);
    server.with(|s| {
        s.capabilities.retain(|c| c != "MOVE" && c != "UIDPLUS");
        s.deliver_at("Junk", plain_mail(USER, &message_id("other")), kst(chrono::Utc::now()), other_flags);
        s.deliver("Junk", guidance.clone());
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("mv", "move_found_in_spam = true"));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    (server, dir, config, store, ingest, guidance)
}

/// 4a. Neither MOVE nor UIDPLUS, no other mail `\Deleted`: the Hecto mail leaves Junk by COPY,
/// `\Deleted` and a plain EXPUNGE, and the other mail stays untouched.
#[tokio::test]
async fn without_move_or_uidplus_found_in_spam_mail_is_moved_by_copy_and_expunge() {
    let (server, _dir, config, store, ingest, guidance) = no_move_server(&[]).await;
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.found_in_spam, s.mails.moved_to_inbox), (1, 1), "{s:?}");
    let m = store.merchant("m1").unwrap().unwrap();
    assert_eq!((m.stage, m.found_in_spam), (Stage::GuidanceReceived, true));
    assert_eq!(server.flags("Junk"), [(1, vec![])].into(), "only the other mail is left, unflagged");
    let inbox = server.mails("INBOX");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].raw, guidance, "the Hecto mail arrived in INBOX");
    let commands = server.commands();
    assert!(commands.iter().any(|c| c == "EXPUNGE"), "{commands:?}");
    assert!(!commands.iter().any(|c| c.starts_with("UID MOVE") || c.starts_with("UID EXPUNGE")), "{commands:?}");

    // The moved copy is seen in INBOX at the next scan and recognised, not applied again.
    let again = scan_ok(&config, &ingest).await;
    assert_eq!((again.mails.duplicates, again.mails.stage_changes), (1, 0), "{again:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    assert_eq!(found_in_spam_events(&store, "m1"), 1);
}

/// 4b. Neither MOVE nor UIDPLUS, and another mail in Junk is already `\Deleted`: a plain EXPUNGE
/// would remove it too, so nothing is expunged and the Hecto mail stays where it is.
#[tokio::test]
async fn without_move_or_uidplus_nothing_is_expunged_while_other_mail_is_deleted() {
    let (server, _dir, config, store, ingest, _) = no_move_server(&["\\Deleted"]).await;
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.found_in_spam, s.mails.moved_to_inbox), (1, 0), "{s:?}");
    assert!(store.merchant("m1").unwrap().unwrap().found_in_spam);
    assert_eq!(
        server.flags("Junk"),
        [(1, vec!["\\Deleted".to_owned()]), (2, vec![])].into(),
        "the other mail is still there, still \\Deleted; the Hecto mail stays, unflagged"
    );
    assert!(server.mails("INBOX").is_empty(), "nothing copied");
    let commands = server.commands();
    assert!(!commands.iter().any(|c| c.contains("EXPUNGE") || c.starts_with("UID STORE")), "{commands:?}");
}

/// 4c. Neither MOVE nor UIDPLUS, and another client marks a mail `\Deleted` right after our COPY:
/// the check before the EXPUNGE sees it, the Hecto mail is unflagged again and nothing is
/// expunged (the copy in INBOX is recognised as the same mail later).
#[tokio::test]
async fn without_move_or_uidplus_a_mail_deleted_during_the_move_stops_the_expunge() {
    let (server, _dir, config, store, ingest, _) = no_move_server(&[]).await;
    server.with(|s| s.quirks.after_copy = Some(Box::new(|s| s.flag("Junk", 1, "\\Deleted"))));
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.found_in_spam, s.mails.moved_to_inbox), (1, 0), "{s:?}");
    assert_eq!(server.flags("Junk"), [(1, vec!["\\Deleted".to_owned()]), (2, vec![])].into());
    assert!(!server.commands().iter().any(|c| c.contains("EXPUNGE")), "{:?}", server.commands());
    let again = scan_ok(&config, &ingest).await;
    assert_eq!((again.mails.duplicates, again.mails.stage_changes), (1, 0), "{again:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
}

/// 5. In the middle of the header FETCH another client expunges a mail (`* 3 EXPUNGE`), new mail
/// arrives (`* 6 EXISTS`) and a flag changes (`* 1 FETCH (FLAGS (\Seen))`, no UID). The batch is
/// read to its end; the announced mail is read right after, without waiting for IDLE (which has
/// nothing left to announce: the session already told the client).
#[tokio::test]
async fn expunge_exists_and_flag_changes_in_the_middle_of_a_header_fetch() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        for (i, m) in ["m1", "m2", "m3"].iter().enumerate() {
            s.deliver("INBOX", plain_mail(USER, &message_id(&format!("x{i}"))));
            s.deliver("INBOX", guidance_mail(&format!("{m}@corp.example"), &message_id(m), &[]));
        }
        s.quirks.during_header_fetch = Some(Box::new(|s| {
            s.expunge("INBOX", 3);
            s.deliver("INBOX", guidance_mail("m4@corp.example", &message_id("m4"), &[]));
            s.flag("INBOX", 1, "\\Seen");
        }));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("x", "poll_interval = \"1h\""));
    let (store, ingest) = ingest(&config);
    for m in ["m1", "m2", "m3", "m4"] {
        add_merchant(&store, m, &format!("{m}@corp.example"));
    }
    let mut w = start_watch(&config, &ingest);
    w.wait_for(
        Duration::from_secs(10),
        "the mail announced mid-FETCH",
        |e| matches!(e, ImapEvent::Mail(r) if r.merchant.as_deref() == Some("m4")),
    )
    .await;
    w.stop().await;
    for m in ["m1", "m2", "m3", "m4"] {
        assert_eq!(stages(&store, m), [Stage::GuidanceReceived], "{m}");
    }
    assert_eq!(store.seen_count(), 4, "each Hecto mail recorded once");
    assert_eq!(last_uid(&store, "x", "INBOX"), Some(7));
    assert_eq!(server.flags("INBOX").keys().copied().collect::<Vec<_>>(), [1, 2, 4, 5, 6, 7]);
}

/// 6. FETCH items in reverse order with FLAGS in between, lower-case keywords, header field names
/// echoed quoted, a space-padded INTERNALDATE, and `* OK [ALERT]` lines after login and in the
/// middle of every FETCH. A To: header folded over two lines still names the merchant.
#[tokio::test]
async fn fetch_items_in_odd_order_quoted_and_lower_case_with_alerts_are_read() {
    let server = QuirkServer::start(PLAIN).await;
    let folded_to = "\"계약 담당\" <someone@corp.example>,\r\n \"가맹점\" <m2@corp.example>";
    server.with(|s| {
        s.quirks.odd_fetch = true;
        s.quirks.alerts = true;
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("o1"), &[]));
        s.deliver("INBOX", plain_mail(USER, &message_id("o2")));
        s.deliver_at("INBOX", guidance_mail(folded_to, &message_id("o3"), &[]), days_ago(3), &[]);
        s.deliver("Junk", guidance_mail("m3@corp.example", &message_id("o4"), &[]));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("o", ""));
    let (store, ingest) = ingest(&config);
    for m in ["m1", "m2", "m3"] {
        add_merchant(&store, m, &format!("{m}@corp.example"));
    }
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.bodies_fetched, s.mails.stage_changes), (4, 3, 3), "{s:?}");
    for m in ["m1", "m2", "m3"] {
        assert_eq!(stages(&store, m), [Stage::GuidanceReceived], "{m}");
    }
    assert!(store.merchant("m3").unwrap().unwrap().found_in_spam);
    assert_eq!((last_uid(&store, "o", "INBOX"), last_uid(&store, "o", "Junk")), (Some(3), Some(1)));
    let again = scan_ok(&config, &ingest).await;
    assert_eq!(again.mails.mails_seen, 0, "{again:?}");
    // Reading changed no flag (BODY.PEEK, EXAMINE).
    assert!(server.flags("INBOX").values().all(Vec::is_empty), "{:?}", server.flags("INBOX"));
}

/// 7. The connection dies in the middle of a header literal: the folder reports the error and its
/// cursor stays; the next scan reads every mail once.
#[tokio::test]
async fn a_connection_dropped_inside_a_literal_fails_the_folder_and_the_next_scan_reads_every_mail() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("d1"), &[]));
        s.deliver("INBOX", plain_mail(USER, &message_id("d2")));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("d", ""));
    let (store, ingest) = ingest(&config);
    for m in ["m1", "m2", "m3"] {
        add_merchant(&store, m, &format!("{m}@corp.example"));
    }
    scan_ok(&config, &ingest).await;
    assert_eq!(last_uid(&store, "d", "INBOX"), Some(2));

    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m2@corp.example", &message_id("d3"), &[]));
        s.deliver("INBOX", plain_mail(USER, &message_id("d4")));
        s.deliver("INBOX", guidance_mail("m3@corp.example", &message_id("d5"), &[]));
        s.quirks.drop_header_fetches = 1;
    });
    let s = scan(&config, &ingest).await;
    assert_eq!(s.errors.len(), 1, "INBOX could not be read: {s:?}");
    assert!(s.errors[0].contains("INBOX"), "{:?}", s.errors);
    assert_eq!(last_uid(&store, "d", "INBOX"), Some(2), "the cursor waits");
    assert!(last_error(&store, "d", "INBOX").is_some(), "the folder's status says so");
    assert_eq!((stages(&store, "m2"), stages(&store, "m3")), (vec![], vec![]));

    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.hecto_mails), (3, 2), "{s:?}");
    for m in ["m1", "m2", "m3"] {
        assert_eq!(stages(&store, m), [Stage::GuidanceReceived], "{m}");
    }
    assert_eq!(last_uid(&store, "d", "INBOX"), Some(5));
    assert_eq!(last_error(&store, "d", "INBOX"), None, "the folder is well again");
}

/// 8a. Gmail's `[Gmail]/스팸` flagged `\Junk` beside a Naver-style, unflagged `스팸메일함`: both
/// are watched, and a Hecto mail in each is found in spam.
#[tokio::test]
async fn gmail_spam_flagged_junk_and_an_unflagged_korean_spam_folder_are_both_watched() {
    let layout: &[(&str, &[&str])] = &[
        ("INBOX", &["\\HasNoChildren"]),
        ("[Gmail]", &["\\HasChildren", "\\Noselect"]),
        ("[Gmail]/&wqTTOA-", &["\\HasNoChildren", "\\Junk"]),
        ("[Gmail]/&vPSwuNO4ycDVaA-", &["\\HasNoChildren", "\\Sent"]),
        ("&wqTTOLpUx3zVaA-", &["\\HasNoChildren"]),
    ];
    let server = QuirkServer::start(layout).await;
    server.with(|s| {
        s.deliver("[Gmail]/&wqTTOA-", guidance_mail("gmail@corp.example", &message_id("g"), &[]));
        s.deliver("&wqTTOLpUx3zVaA-", guidance_mail("naver@corp.example", &message_id("n"), &[]));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("k", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "gmail", "gmail@corp.example");
    add_merchant(&store, "naver", "naver@corp.example");
    let s = scan_ok(&config, &ingest).await;
    assert_eq!(s.folders, 4, "INBOX, both spam folders and Sent: {s:?}");
    assert_eq!((s.mails.hecto_mails, s.mails.found_in_spam), (2, 2), "{s:?}");
    for m in ["gmail", "naver"] {
        let merchant = store.merchant(m).unwrap().unwrap();
        assert_eq!((merchant.stage, merchant.found_in_spam), (Stage::GuidanceReceived, true), "{m}");
    }
    assert_eq!(last_uid(&store, "k", "[Gmail]/스팸"), Some(1));
    assert_eq!(last_uid(&store, "k", "스팸메일함"), Some(1));
}

/// 8b. The `INBOX.` personal namespace with `.` as separator: `INBOX.Junk` is the junk folder and
/// `INBOX.Sent` the sent one, marked `\Junk`/`\Sent` (Cyrus) or, without SPECIAL-USE (Courier),
/// found by name.
#[tokio::test]
async fn an_inbox_prefixed_namespace_with_dot_separators_finds_junk_and_sent() {
    let layout: &[(&str, &[&str])] =
        &[("INBOX", &[]), ("INBOX.Junk", &["\\Junk"]), ("INBOX.Sent", &["\\Sent"]), ("INBOX.Trash", &["\\Trash"])];
    for special_use in [true, false] {
        let server = QuirkServer::start_with('.', layout).await;
        let review = mail(
            "\"가맹점 담당자\" <shop@corp.example>",
            "pg-contract@hectofinancial.co.kr",
            "[가맹점] 카드사 심사 요청드립니다",
            &message_id("cr"),
            &[],
            "개발이 완료되어 카드사 심사를 요청드립니다.",
        );
        server.with(|s| {
            if !special_use {
                s.capabilities.retain(|c| c != "SPECIAL-USE");
            }
            s.deliver("INBOX.Junk", guidance_mail("spam@corp.example", &message_id("j"), &[]));
            s.deliver_at("INBOX.Sent", review, kst(chrono::Utc::now()), &["\\Seen"]);
        });
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &server.account_toml("dot", ""));
        let (store, ingest) = ingest(&config);
        add_merchant(&store, "spam", "spam@corp.example");
        add_merchant(&store, "shop", "shop@corp.example");
        let s = scan_ok(&config, &ingest).await;
        assert_eq!(s.folders, 3, "special-use {special_use}: INBOX, INBOX.Junk, INBOX.Sent: {s:?}");
        let spam = store.merchant("spam").unwrap().unwrap();
        assert_eq!((spam.stage, spam.found_in_spam), (Stage::GuidanceReceived, true), "special-use {special_use}");
        let shop = store.merchant("shop").unwrap().unwrap();
        assert_eq!(shop.stage, Stage::CardReviewRequested, "special-use {special_use}");
        assert_eq!(
            (last_uid(&store, "dot", "INBOX.Junk"), last_uid(&store, "dot", "INBOX.Sent")),
            (Some(1), Some(1)),
            "special-use {special_use}"
        );
    }
}

/// 9. Broken: the header FETCH answers only its tagged OK although the folder holds mail — on the
/// first sync and on a later one. Each time the folder reports an error and the cursor does not
/// pass the mail; once the server behaves, the mail is read.
#[tokio::test]
async fn a_header_fetch_answering_nothing_is_an_error_not_an_empty_folder() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("s1"), &[]));
        s.quirks.silent_header_fetch = true;
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("s", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    add_merchant(&store, "m2", "m2@corp.example");

    for (merchant, cursor_before) in [("m1", None), ("m2", Some(1))] {
        let s = scan(&config, &ingest).await;
        assert_eq!(s.errors.len(), 1, "{merchant}: {s:?}");
        assert!(last_error(&store, "s", "INBOX").is_some(), "{merchant}: the folder status has the error");
        assert_eq!(last_uid(&store, "s", "INBOX"), cursor_before, "{merchant}: the cursor waits");
        assert_eq!(stages(&store, merchant), [], "{merchant}");

        server.with(|s| s.quirks.silent_header_fetch = false);
        let s = scan_ok(&config, &ingest).await;
        assert_eq!((s.mails.mails_seen, s.mails.stage_changes), (1, 1), "{merchant}: {s:?}");
        assert_eq!(stages(&store, merchant), [Stage::GuidanceReceived], "{merchant}");
        assert_eq!(last_error(&store, "s", "INBOX"), None);

        server.with(|s| {
            s.deliver("INBOX", guidance_mail("m2@corp.example", &message_id("s2"), &[]));
            s.quirks.silent_header_fetch = true;
        });
    }
}

/// 9b. Broken worse: every `UID FETCH` answers only its tagged OK — the header batches and the
/// `UID FETCH set (UID)` check alike — over a first sync of more than one header batch. The last
/// mail by sequence number (`FETCH *`) shows the folder is not empty: the folder reports an
/// error, the cursor stays before the first mail (not past the batches that came back empty),
/// and once the server behaves every mail is read once.
#[tokio::test]
async fn uid_fetches_answering_nothing_over_several_batches_move_no_cursor() {
    let n = imap::sync::HEADER_BATCH + 700;
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        for i in 0..n {
            let raw = if i == 10 {
                guidance_mail("m1@corp.example", &message_id("first"), &[])
            } else {
                plain_mail(USER, &message_id("many"))
            };
            s.deliver("INBOX", raw);
        }
        s.quirks.silent_uid_fetch = true;
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("w", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    for _ in 0..2 {
        let s = scan(&config, &ingest).await;
        assert_eq!(s.errors.len(), 1, "{s:?}");
        let error = last_error(&store, "w", "INBOX").expect("the folder's error");
        assert!(error.contains("last mail has UID"), "{error}");
        assert_eq!(last_uid(&store, "w", "INBOX"), None, "the cursor does not move past unread mail");
    }
    server.with(|s| s.quirks.silent_uid_fetch = false);
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.stage_changes), (n as u64, 1), "{s:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
}

/// 10. Broken: the body FETCH (`BODY.PEEK[]`) answers nothing for a mail the header pass saw: the
/// folder reports an error and the cursor stays before the mail; once the server behaves, it
/// is read.
#[tokio::test]
async fn a_body_fetch_answering_nothing_is_an_error_and_the_cursor_waits() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.deliver("INBOX", plain_mail(USER, &message_id("b0")));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("b", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    scan_ok(&config, &ingest).await;
    assert_eq!(last_uid(&store, "b", "INBOX"), Some(1));

    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("b1"), &[]));
        s.quirks.silent_body_fetch = true;
    });
    let s = scan(&config, &ingest).await;
    assert_eq!(s.errors.len(), 1, "{s:?}");
    assert!(s.errors[0].contains("UID 2"), "the error names the mail: {:?}", s.errors);
    assert_eq!(last_uid(&store, "b", "INBOX"), Some(1), "the cursor does not pass the unread mail");
    assert!(last_error(&store, "b", "INBOX").is_some());
    assert_eq!(stages(&store, "m1"), []);

    server.with(|s| s.quirks.silent_body_fetch = false);
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.bodies_fetched, s.mails.stage_changes), (1, 1, 1), "{s:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    assert_eq!(last_uid(&store, "b", "INBOX"), Some(2));
}

/// 11. A FETCH that carries the UID but leaves the header section out (`* 2 FETCH (UID 2)`): that
/// mail is fetched whole and read, not skipped.
#[tokio::test]
async fn a_fetch_without_the_header_section_fetches_the_mail_whole() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        s.deliver("INBOX", plain_mail(USER, &message_id("h1")));
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("h2"), &[]));
        s.deliver("INBOX", plain_mail(USER, &message_id("h3")));
        s.quirks.header_left_out = [2].into();
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("h", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.bodies_fetched, s.mails.stage_changes), (3, 1, 1), "{s:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    assert_eq!(last_uid(&store, "h", "INBOX"), Some(3));
}

/// 12. Broken: right after the header pass the server starts refusing FETCH (`NO [UNAVAILABLE]`,
/// its backend went away). The mail whose header was read was not read: the folder reports an
/// error and the cursor stays before it; once the server behaves, it is read.
#[tokio::test]
async fn a_refused_body_fetch_is_an_error_and_the_cursor_waits() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.deliver("INBOX", plain_mail(USER, &message_id("r0")));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("r", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    scan_ok(&config, &ingest).await;

    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("r1"), &[]));
        s.quirks.during_header_fetch = Some(Box::new(|s| s.quirks.refuse = vec!["UID FETCH", "FETCH"]));
    });
    let s = scan(&config, &ingest).await;
    assert_eq!(s.errors.len(), 1, "{s:?}");
    assert_eq!(last_uid(&store, "r", "INBOX"), Some(1), "the cursor does not pass the unread mail");
    assert!(last_error(&store, "r", "INBOX").is_some());
    assert_eq!(stages(&store, "m1"), []);

    server.with(|s| s.quirks.refuse.clear());
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.bodies_fetched, s.mails.stage_changes), (1, 1), "{s:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
}

/// 13. Neither MOVE nor UIDPLUS, another mail in Junk is `\Deleted`, and the server's SEARCH
/// answers nothing (Courier) — `UID SEARCH DELETED` would say "none": whether other mail is
/// `\Deleted` is read from every mail's FLAGS instead, so nothing is expunged. And when even
/// the flag listing is refused, the mail is still read (moving is optional, reading is not),
/// and stays where it is.
#[tokio::test]
async fn without_move_or_uidplus_an_empty_search_or_a_refused_flag_listing_expunges_nothing() {
    let (server, _dir, config, store, ingest, _) = no_move_server(&["\\Deleted"]).await;
    let untouched = [(1, vec!["\\Deleted".to_owned()]), (2, vec![])].into();
    server.with(|s| s.quirks.empty_search = true);
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.found_in_spam, s.mails.moved_to_inbox), (1, 0), "{s:?}");
    assert_eq!(server.flags("Junk"), untouched, "{:?}", server.commands());
    assert!(server.mails("INBOX").is_empty(), "nothing copied");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);

    let (server, _dir, config, store, ingest, _) = no_move_server(&[]).await;
    server.with(|s| s.quirks.refuse = vec!["UID FETCH 1:* (UID FLAGS)"]);
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.found_in_spam, s.mails.moved_to_inbox), (1, 0), "{s:?}");
    assert_eq!(server.flags("Junk"), [(1, vec![]), (2, vec![])].into(), "{:?}", server.commands());
    assert!(server.mails("INBOX").is_empty(), "nothing copied");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
}

/// 14. Broken: the server refuses LIST (`NO`). Which junk folders there are is unknown: that is
/// an error of the account, never "no junk folder".
#[tokio::test]
async fn a_refused_list_is_an_error_not_an_account_without_junk() {
    let server = QuirkServer::start(PLAIN).await;
    server.with(|s| {
        s.deliver("Junk", guidance_mail("m1@corp.example", &message_id("l1"), &[]));
        s.quirks.refuse = vec!["LIST"];
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("l", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    let s = scan(&config, &ingest).await;
    assert!(!s.errors.is_empty(), "a folder list that could not be read passed for one without junk: {s:?}");
    server.with(|s| s.quirks.refuse.clear());
    let s = scan_ok(&config, &ingest).await;
    assert_eq!(s.mails.found_in_spam, 1, "{s:?}");
}

/// The quirk server itself answers as RFC 3501 says where the tests above lean on it: `n:*`
/// includes the last mail even when n is larger than any UID (§6.4.8), HEADER.FIELDS returns the
/// named fields with their folded lines and the blank line (§6.4.5), and a folder opened with
/// EXAMINE refuses STORE.
#[tokio::test]
async fn the_quirk_server_answers_as_rfc_3501_says() {
    use futures::TryStreamExt;
    let server = QuirkServer::start(INBOX_ONLY).await;
    let folded_to = "\"A\" <a@corp.example>,\r\n \"B\" <b@corp.example>";
    server.with(|s| {
        s.deliver("INBOX", plain_mail(USER, &message_id("q1")));
        s.deliver("INBOX", guidance_mail(folded_to, &message_id("q2"), &["Cc: c@corp.example"]));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("q", ""));
    let mut conn = imap::connect(&config.accounts[0]).await.unwrap();
    conn.session.examine("INBOX").await.unwrap();
    let fetched: Vec<_> = conn.session.uid_fetch("9:*", "(UID)").await.unwrap().try_collect().await.unwrap();
    assert_eq!(fetched.iter().filter_map(|f| f.uid).collect::<Vec<_>>(), [2]);
    let fetched: Vec<_> = conn
        .session
        .uid_fetch("2", "(UID BODY.PEEK[HEADER.FIELDS (TO CC)])")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let header = fetched[0].header().map(String::from_utf8_lossy);
    assert_eq!(header.as_deref(), Some(format!("To: {folded_to}\r\nCc: c@corp.example\r\n\r\n").as_str()));
    let refused = conn.run_checked("UID STORE 1 +FLAGS (\\Seen)", |_| {}).await;
    assert!(matches!(refused, Err(async_imap::error::Error::No(_))), "{refused:?}");
    conn.logout().await;
    assert!(server.flags("INBOX").values().all(Vec::is_empty));
}

/// 15. A response that makes the IMAP library itself panic (imap-proto on `* OK [ALERT]` followed
/// by a non-ASCII byte, found by fuzzing): in `scan --once` it is that account's error, not a
/// crash; in the daemon the folder's watcher is reported and restarted, and reads the mail once
/// the server answers sanely — never a folder left unwatched without a word.
#[tokio::test]
async fn a_response_the_imap_library_panics_on_is_an_error_and_the_watcher_is_restarted() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    let first = message_id("p1");
    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &first, &[]));
        s.quirks.poisoned_logins = [1, 2].into(); // both of scan --once's connections
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("p", "poll_interval = \"1s\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    let s = scan(&config, &ingest).await;
    assert_eq!(s.errors.len(), 1, "{s:?}");
    assert!(s.errors[0].contains("not a char boundary"), "the panic's own words: {:?}", s.errors);
    assert!(last_error(&store, "p", "INBOX").is_some(), "kept as INBOX's error");
    assert!(stages(&store, "m1").is_empty());

    // The daemon: its folder listing (login 3) fails that way, is retried (4: fine), and then
    // INBOX's own watcher fails (5) and is restarted (6: fine).
    server.with(|s| s.quirks.poisoned_logins = [3, 5].into());
    let mut w = start_watch(&config, &ingest);
    w.wait_for(Duration::from_secs(30), "the failed listing reported", |e| {
        matches!(e, ImapEvent::Disconnected { folder: None, error, .. } if error.contains("listing the folders failed"))
    })
    .await;
    let e = w
        .wait_for(Duration::from_secs(30), "the failed watcher reported", |e| {
            matches!(e, ImapEvent::Disconnected { folder: Some(f), error, .. } if f == "INBOX" && error.contains("restarting"))
        })
        .await;
    let ImapEvent::Disconnected { error, .. } = e else { unreachable!() };
    assert!(last_error(&store, "p", "INBOX").is_some_and(|e| e.contains("restarting")), "{error}");
    w.wait_for(
        Duration::from_secs(30),
        "the mail read by the restarted watcher",
        |e| matches!(e, ImapEvent::Mail(r) if r.message_id.as_deref() == Some(first.as_str())),
    )
    .await;
    w.stop().await;
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    assert!(last_error(&store, "p", "INBOX").is_none(), "cleared by the next good pass");
}

/// 4d. Neither MOVE nor UIDPLUS and the EXPUNGE is refused after our COPY and `\Deleted`: the
/// flag is taken off again, so no mail of ours is left `\Deleted` in Junk (a later plain
/// EXPUNGE by anyone would delete it, and every later move would see "other deleted mail");
/// the failure is the folder's error.
#[tokio::test]
async fn without_move_or_uidplus_a_refused_expunge_leaves_no_mail_deleted() {
    let (server, _dir, config, store, ingest, _) = no_move_server(&[]).await;
    server.with(|s| s.quirks.refuse = vec!["EXPUNGE"]);
    let s = scan(&config, &ingest).await;
    assert_eq!(s.errors.len(), 1, "{s:?}");
    assert!(last_error(&store, "mv", "Junk").is_some_and(|e| e.contains("EXPUNGE")), "{:?}", server.commands());
    assert_eq!(server.flags("Junk"), [(1, vec![]), (2, vec![])].into(), "{:?}", server.commands());
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived], "read and applied all the same");
}

/// 16. A first sync that was interrupted (its cursor part-way, remembering the back-fill it set
/// out on: `backfill_to`) resumes with the same back-fill window: old mail up to where the
/// back-fill was to end is left alone, recent mail is read, and mail that arrived after the
/// back-fill began is new mail whatever its date. The back-fill is over once the cursor is there.
#[tokio::test]
async fn an_interrupted_back_fill_resumes_with_its_window() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    let (old, recent, late) = (message_id("old"), message_id("recent"), message_id("late"));
    let uid_validity = server.with(|s| {
        s.deliver_at("INBOX", plain_mail(USER, &message_id("read")), days_ago(200), &[]);
        s.deliver_at("INBOX", guidance_mail("a@corp.example", &old, &[]), days_ago(90), &[]);
        s.deliver_at("INBOX", guidance_mail("b@corp.example", &recent, &[]), days_ago(5), &[]);
        // Arrived after the back-fill began (its UID is past backfill_to), dated long ago.
        s.deliver_at("INBOX", guidance_mail("c@corp.example", &late, &[]), days_ago(90), &[]);
        s.folders[0].uid_validity
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("b", "backfill_days = 60"));
    let (store, ingest) = ingest(&config);
    let interrupted = hecto_watch::store::Cursor { uid_validity, last_uid: 1, backfill_to: Some(3) };
    store.advance_cursor("b", "INBOX", interrupted).unwrap();

    let s = scan_ok(&config, &ingest).await;
    assert_eq!(s.mails.mails_seen, 3, "{s:?}");
    let mut recorded: Vec<String> = store.unassigned().unwrap().into_iter().filter_map(|u| u.message_id).collect();
    recorded.sort();
    let mut want = vec![recent, late];
    want.sort();
    assert_eq!(recorded, want, "the old mail below backfill_to stays outside the window");
    let cursor = store.cursor("b", "INBOX").unwrap().unwrap();
    assert_eq!((cursor.last_uid, cursor.backfill_to), (4, None), "the back-fill is over");
}

/// 17. A spam folder the server makes while the daemon watches (a webmail making 스팸메일함 for
/// the first spam) is found when the folder list is read again, and its mail is read: every junk
/// candidate is watched, not only those there at start-up.
#[tokio::test]
async fn a_spam_folder_made_while_watching_is_watched_too() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("n", "poll_interval = \"1s\""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    let mut w = start_watch_relisting(&config, &ingest, Some(Duration::from_millis(500)));
    w.synced("INBOX").await;

    let id = message_id("new-folder");
    server.with(|s| {
        s.add_folder("&wqTTOLpUx3zVaA-", &[]);
        s.deliver("&wqTTOLpUx3zVaA-", guidance_mail("m1@corp.example", &id, &[]));
    });
    let e = w
        .wait_for(
            Duration::from_secs(30),
            "the mail of the new spam folder",
            |e| matches!(e, ImapEvent::Mail(r) if r.message_id.as_deref() == Some(id.as_str())),
        )
        .await;
    let ImapEvent::Mail(r) = e else { unreachable!() };
    assert_eq!((r.folder.as_str(), r.found_in_spam), ("스팸메일함", true));
    w.stop().await;
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
}

/// 1b. No UIDNEXT and `UID FETCH * (UID)` answering nothing: the newest UID comes from
/// `STATUS (UIDNEXT)`, and every mail is read once. With no UIDNEXT in STATUS either, no answer
/// names a UID: the folder reports an error naming each answer, and the cursor does not move.
#[tokio::test]
async fn without_uidnext_and_uid_fetch_star_status_gives_the_newest_uid_or_the_folder_errs() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("st"), &[]));
        s.deliver("INBOX", plain_mail(USER, &message_id("st2")));
        s.quirks.no_uidnext = true;
        s.quirks.silent_fetch_star = true;
        s.quirks.status_without_uidnext = true;
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("st", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    let s = scan(&config, &ingest).await;
    assert_eq!(s.errors.len(), 1, "{s:?}");
    let error = last_error(&store, "st", "INBOX").expect("the folder's error");
    assert!(
        error.contains("UID FETCH * (UID) answered nothing") && error.contains("STATUS gave UIDNEXT none"),
        "{error}"
    );
    assert_eq!(last_uid(&store, "st", "INBOX"), None);

    server.with(|s| s.quirks.status_without_uidnext = false);
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.stage_changes), (2, 1), "{s:?}");
    assert!(server.commands().iter().any(|c| c.starts_with("STATUS")), "{:?}", server.commands());
    assert_eq!(last_uid(&store, "st", "INBOX"), Some(2));
}

/// 18. Legitimately nothing there: a folder whose mail was all deleted before we looked (EXISTS
/// 0, UIDNEXT past the cursor: Gmail's spam after its 30-day purge) is read as empty — the
/// cursor moves to the end, no error — and so is a 0-byte mail (RFC822.SIZE 0), which is read,
/// not taken for a body the server withheld.
#[tokio::test]
async fn an_emptied_folder_and_a_zero_byte_mail_are_read_not_errors() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("gone1"), &[]));
        s.deliver("INBOX", plain_mail(USER, &message_id("gone2")));
        s.folder_mut("INBOX").mails.clear();
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("e", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    for _ in 0..2 {
        let s = scan_ok(&config, &ingest).await;
        assert_eq!(s.mails.mails_seen, 0, "{s:?}");
        assert_eq!(last_uid(&store, "e", "INBOX"), Some(2), "past the deleted mail");
        assert_eq!(last_error(&store, "e", "INBOX"), None);
    }

    let id = message_id("after-empty");
    server.with(|s| {
        s.deliver("INBOX", Vec::new());
        s.deliver("INBOX", guidance_mail("m1@corp.example", &id, &[]));
    });
    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.stage_changes), (2, 1), "{s:?}");
    assert_eq!(last_uid(&store, "e", "INBOX"), Some(4));
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
}

/// 19. One body FETCH brings each candidate's size, arrival and first bytes (`BODY.PEEK[]<0.N>`);
/// only a mail that partial read cut short is fetched again, whole and alone — here a guidance
/// mail to a shared address whose business number stands past the cut, so it is matched only if
/// it was read whole. A long mail outside the back-fill window is not fetched again.
#[tokio::test]
async fn a_mail_longer_than_the_first_read_is_fetched_again_whole_and_alone() {
    use hecto_watch::imap::sync::BODY_FIRST_BYTES;
    let server = QuirkServer::start(INBOX_ONLY).await;
    let long = long_guidance;
    assert!(long("probe").len() > BODY_FIRST_BYTES as usize + 40_000);
    server.with(|s| {
        s.deliver_at("INBOX", guidance_mail("m1@corp.example", &message_id("short"), &[]), days_ago(3), &[]);
        s.deliver_at("INBOX", long("long"), days_ago(2), &[]);
        // Appended later from an archive: outside the window by its arrival, not by its UID.
        s.deliver_at("INBOX", long("archived"), days_ago(400), &[]);
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("l", "backfill_days = 60"));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    add_m2_by_business_number(&store);

    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.bodies_fetched, s.mails.stage_changes), (3, 2, 2), "{s:?}");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    assert_eq!(stages(&store, "m2"), [Stage::GuidanceReceived], "matched by the business number past the cut");
    let body_fetches: Vec<String> = server.commands().into_iter().filter(|c| c.contains("BODY.PEEK[]")).collect();
    assert_eq!(
        body_fetches,
        [
            format!("UID FETCH 1:3 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[]<0.{BODY_FIRST_BYTES}>)"),
            "UID FETCH 2 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])".to_owned(),
        ],
        "one partial FETCH for all, the long mail in the window again whole"
    );
}

/// A guidance mail to a shared address, longer than the first body read, whose business number
/// (m2's, 123-45-67891) stands at its end: it finds m2 only if it was read whole.
fn long_guidance(id: &str) -> Vec<u8> {
    let body = format!("{}\r\n사업자등록번호: 123-45-67891\r\n", "계약 안내 본문입니다. ".repeat(5_000));
    let from = "\"헥토파이낸셜 계약팀\" <contract@hectofinancial.co.kr>";
    mail(from, "ops@corp.example", "[헥토파이낸셜] 전자결제 서비스 계약 안내", &message_id(id), &[], &body)
}

fn add_m2_by_business_number(store: &Store) {
    add_merchant_with_business_no(store, "m2", "m2@corp.example", Some("1234567891"));
}

/// 20. A server that ignores the partial body read and sends whole bodies: every mail is read
/// (the long one whole, not read twice), and once that shows, the bodies are fetched one per
/// FETCH with one in flight, so what arrives unasked-for stays bounded.
#[tokio::test]
async fn a_server_ignoring_partial_reads_is_read_whole_one_mail_at_a_time() {
    use hecto_watch::imap::sync::{BODY_BATCH, BODY_PIPELINE};
    let server = QuirkServer::start(INBOX_ONLY).await;
    let candidates = BODY_PIPELINE * BODY_BATCH + 11;
    server.with(|s| {
        s.quirks.ignore_partial = true;
        s.deliver("INBOX", long_guidance("whole"));
        for i in 1..candidates {
            s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id(&format!("w{i}")), &[]));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("w", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    add_m2_by_business_number(&store);

    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.bodies_fetched), (candidates as u64, candidates as u64), "{s:?}");
    assert_eq!(stages(&store, "m2"), [Stage::GuidanceReceived], "the long mail read whole");
    assert_eq!(stages(&store, "m1"), [Stage::GuidanceReceived]);
    let sets: Vec<String> = server
        .commands()
        .into_iter()
        .filter(|c| c.contains("BODY.PEEK[]"))
        .map(|c| c.split(' ').nth(2).unwrap_or_default().to_owned())
        .collect();
    let first: Vec<String> =
        (0..BODY_PIPELINE).map(|k| format!("{}:{}", k * BODY_BATCH + 1, (k + 1) * BODY_BATCH)).collect();
    let one_by_one: Vec<String> = (BODY_PIPELINE * BODY_BATCH + 1..=candidates).map(|u| u.to_string()).collect();
    assert_eq!(sets, [first, one_by_one].concat(), "the groups already in flight, then one mail per FETCH");
}

/// 21. A server whose partial read brings fewer bytes than asked although RFC822.SIZE says the
/// mail is longer: the mail is read again whole, not applied cut short.
#[tokio::test]
async fn a_partial_read_shorter_than_the_mail_is_read_again_whole() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        s.quirks.short_partial = true;
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("s1"), &[]));
        s.deliver("INBOX", long_guidance("short"));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("s", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    add_m2_by_business_number(&store);

    let s = scan_ok(&config, &ingest).await;
    assert_eq!((s.mails.bodies_fetched, s.mails.stage_changes, s.mails.unassigned), (2, 2, 0), "{s:?}");
    assert_eq!(stages(&store, "m2"), [Stage::GuidanceReceived]);
    let whole: Vec<String> = server.commands().into_iter().filter(|c| c.ends_with("BODY.PEEK[])")).collect();
    assert_eq!(whole, ["UID FETCH 2 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"], "only the long mail again");
}

/// 22. A server that completes pipelined commands out of order (RFC 3501 §5.5 allows it when it
/// runs them at once): EXAMINE completed after the FETCH sent with it, each body FETCH after
/// the next. Every completion reaches its own command, and every mail is read once.
#[tokio::test]
async fn completions_out_of_order_each_reach_their_own_command() {
    use hecto_watch::imap::sync::BODY_BATCH;
    let server = QuirkServer::start(INBOX_ONLY).await;
    let candidates = 3 * BODY_BATCH + 7;
    server.with(|s| {
        s.quirks.completions_out_of_order = true;
        for i in 0..candidates {
            s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id(&format!("o{i}")), &[]));
            s.deliver("INBOX", plain_mail(USER, &message_id(&format!("p{i}"))));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("q", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");
    let s = scan_ok(&config, &ingest).await;
    // EXAMINE before its FETCH 1,*, and body FETCHes before the next ones.
    let swapped = server.with(|s| s.completed_out_of_order);
    assert!(swapped >= 2, "completions sent out of order: {swapped}");
    assert_eq!((s.mails.mails_seen, s.mails.bodies_fetched), (2 * candidates as u64, candidates as u64), "{s:?}");
    assert_eq!(store.seen_count(), candidates, "each Hecto mail recorded once");
    assert_eq!(last_uid(&store, "q", "INBOX"), Some(2 * candidates as u32));
    let again = scan_ok(&config, &ingest).await;
    assert_eq!(again.mails.mails_seen, 0, "{again:?}");
}
