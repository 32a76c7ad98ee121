//! The IMAP side against a real Dovecot fed by a real Postfix (`scripts/mailstack`), for what is
//! Dovecot's own here: the Korean folder layout, UIDVALIDITY resets, moving out of junk, TLS modes
//! and connection errors, big Maildir-seeded folders and the back-fill window. What must hold on
//! every server (spam folder, Sent, flags, IDLE and poll pick-up) is in `imap_servers.rs`, run against Dovecot
//! and Cyrus. Each test has its own IMAP user and its own sled directory.

mod support;

use hecto_watch::imap::{self, utf7, ConnectError, FolderRole, ProgressMode};
use hecto_watch::merchant::{Change, Stage};
use support::*;
use tokio_util::sync::CancellationToken;

async fn scan(config: &hecto_watch::config::Config, ingest: &hecto_watch::ingest::Ingest) -> imap::ScanSummary {
    let s = imap::scan_once(config, ingest, &CancellationToken::new(), ProgressMode::Never).await;
    assert!(s.errors.is_empty(), "scan errors: {:?}", s.errors);
    s
}

#[tokio::test]
async fn korean_spam_folder_without_special_use_is_found_by_name() {
    let user = fresh_user("kr", true);
    smtp_deliver(
        "contract@hectofinancial.co.kr",
        &user,
        &guidance_mail(&user, &message_id("gk"), &["X-Test-Spam: yes"]),
    )
    .await;
    let spam_raw = utf7::encode("스팸메일함");
    assert_eq!(spam_raw, "&wqTTOLpUx3zVaA-");
    wait_for_mail(&user, &spam_raw, 1).await;

    // The server marks no folder \Junk at all: detection must go by the decoded name.
    let acct = account("kr", &user, Tls::Implicit, "");
    let folders: Vec<(String, FolderRole)> =
        imap::list_folders(&acct).await.unwrap().into_iter().map(|f| (f.name, f.role)).collect();
    assert!(folders.contains(&("스팸메일함".to_owned(), FolderRole::Junk)), "{folders:?}");
    assert!(folders.contains(&("보낸메일함".to_owned(), FolderRole::Sent)), "{folders:?}");
    assert!(!folders.iter().any(|(n, _)| n == "Junk"), "the Korean layout has no Junk: {folders:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &account_toml("kr", &user, Tls::Implicit, ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-kr", &user);
    let s = scan(&config, &ingest).await;
    assert_eq!((s.mails.hecto_mails, s.mails.found_in_spam), (1, 1), "{s:?}");
    let m = store.merchant("m-kr").unwrap().unwrap();
    assert_eq!(m.stage, Stage::GuidanceReceived);
    assert!(m.found_in_spam);
    // Evidence names the folder decoded, as operators know it.
    let events = store.events("m-kr").unwrap();
    let json = serde_json::to_string(&events).unwrap();
    assert!(json.contains("스팸메일함"), "{json}");
}

#[tokio::test]
async fn uidvalidity_change_rescans_without_duplicate_events() {
    let user = fresh_user("uidv", false);
    let g = guidance_mail(&user, &message_id("uv"), &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &account_toml(
            "u",
            &user,
            Tls::Starttls,
            "folders = [\"INBOX\", \"Contracts\"]\njunk = \"off\"\nsent = \"off\"",
        ),
    );
    {
        let mut c = login(&user).await;
        c.session.create("Contracts").await.unwrap();
        c.session.append("Contracts", None, None, &g).await.unwrap();
        c.logout().await;
    }
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-uv", &user);
    let first = scan(&config, &ingest).await;
    assert_eq!((first.mails.hecto_mails, first.mails.stage_changes), (1, 1), "{first:?}");
    let cursor_before = store.cursor("u", "Contracts").unwrap().unwrap();
    let events_before = store.events("m-uv").unwrap();

    // Delete and recreate the folder with the same mail: a new UIDVALIDITY, UIDs renumbered.
    {
        let mut c = login(&user).await;
        c.session.delete("Contracts").await.unwrap();
        c.session.create("Contracts").await.unwrap();
        c.session.append("Contracts", None, None, &g).await.unwrap();
        c.logout().await;
    }
    let second = scan(&config, &ingest).await;
    let cursor_after = store.cursor("u", "Contracts").unwrap().unwrap();
    assert_ne!(cursor_after.uid_validity, cursor_before.uid_validity, "the server gave a new UIDVALIDITY");
    assert_eq!(second.mails.mails_seen, 1, "the folder was rescanned: {second:?}");
    assert_eq!((second.mails.duplicates, second.mails.stage_changes), (1, 0), "recognised by Message-ID: {second:?}");
    assert_eq!(store.events("m-uv").unwrap(), events_before, "no new events");
}

#[tokio::test]
async fn hecto_mail_in_junk_is_moved_to_inbox_when_configured() {
    let user = fresh_user("move", false);
    append(&user, "Junk", &plain_mail(&user, &message_id("keep")), None).await;
    append(&user, "Junk", &guidance_mail(&user, &message_id("mv"), &[]), None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &account_toml("mv", &user, Tls::Starttls, "move_found_in_spam = true"));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-mv", &user);
    let s = scan(&config, &ingest).await;
    assert_eq!((s.mails.found_in_spam, s.mails.moved_to_inbox), (1, 1), "{s:?}");
    let mut c = login(&user).await;
    assert_eq!(count(&mut c, "Junk").await, 1, "only the Hecto mail left Junk");
    assert_eq!(count(&mut c, "INBOX").await, 1, "and arrived in INBOX");
    c.logout().await;
    // The moved copy is seen in INBOX at the next scan and recognised, not applied again.
    let again = scan(&config, &ingest).await;
    assert_eq!((again.mails.duplicates, again.mails.stage_changes), (1, 0), "{again:?}");
    let spam_events = store.events("m-mv").unwrap().iter().filter(|e| e.change == Change::FoundInSpam).count();
    assert_eq!(spam_events, 1);
}

#[tokio::test]
async fn every_tls_mode_logs_in_and_mistakes_get_advice() {
    let user = fresh_user("tls", false);
    for tls in [Tls::Implicit, Tls::Starttls, Tls::None] {
        let a = account("t", &user, tls, "");
        let c = imap::connect(&a).await.unwrap_or_else(|e| panic!("{tls:?}: {e}"));
        assert!(c.caps.idle && c.caps.move_ && c.caps.uidplus && c.caps.special_use, "{:?}", c.caps);
        c.logout().await;
    }
    let s = stack();

    // Implicit TLS against the plain IMAP port: the classic mix-up.
    let mut a = account("t", &user, Tls::Implicit, "");
    a.port = s.imap_port;
    let e = imap::connect(&a).await.err().expect("must fail");
    let text = e.to_string();
    assert!(matches!(e, ConnectError::Tls { .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", s.imap_port)) && text.contains("starttls"), "{text}");

    // No ca_file: the stack's CA is not a public root.
    let mut a = account("t", &user, Tls::Implicit, "");
    a.ca_file = None;
    let text = imap::connect(&a).await.err().expect("must fail").to_string();
    assert!(text.contains("ca_file"), "{text}");

    // Wrong password: named as such, and the password itself never appears.
    let a = hecto_watch::config::Config::parse(
        &account_toml("t", &user, Tls::Starttls, "").replace(&s.password, "wrong-pw-3141"),
    )
    .unwrap()
    .accounts
    .remove(0);
    let e = imap::connect(&a).await.err().expect("must fail");
    let text = e.to_string();
    assert!(matches!(e, ConnectError::Auth { .. }) && e.is_configuration(), "{text}");
    assert!(text.contains(&user) && !text.contains("wrong-pw-3141"), "{text}");

    // Nothing listens: refused, with the port named.
    let mut a = account("t", &user, Tls::Starttls, "");
    a.port = 1;
    let text = imap::connect(&a).await.err().expect("must fail").to_string();
    assert!(text.contains("127.0.0.1:1") && text.contains("refused"), "{text}");
}

#[tokio::test]
async fn folders_lists_roles_from_special_use() {
    let user = fresh_user("list", false);
    let acct = account("l", &user, Tls::Starttls, "");
    let folders: Vec<(String, FolderRole)> =
        imap::list_folders(&acct).await.unwrap().into_iter().map(|f| (f.name, f.role)).collect();
    for want in [("INBOX", FolderRole::Inbox), ("Junk", FolderRole::Junk), ("Sent", FolderRole::Sent)] {
        assert!(folders.contains(&(want.0.to_owned(), want.1)), "{want:?} in {folders:?}");
    }
    assert!(folders.contains(&("Trash".to_owned(), FolderRole::Other)), "{folders:?}");
    // A configured folder that does not exist is reported, not fatal.
    let acct = account("l", &user, Tls::Starttls, "folders = [\"INBOX\", \"Nope\"]");
    let (plan, problems) = imap::plan_folders(&acct).await.unwrap();
    assert_eq!(plan.len(), 3, "{plan:?}");
    assert!(problems.iter().any(|p| p.contains("Nope")), "{problems:?}");
}

#[tokio::test]
async fn a_first_scan_bigger_than_one_header_batch_applies_every_mail_once() {
    let user = fresh_user("big", false);
    // More than two header batches: the pass streams headers on one connection while another
    // fetches bodies (in `scan --once`, the connection that scanned Junk and Sent).
    let n = 2 * imap::sync::HEADER_BATCH + 1_500;
    let now = std::time::SystemTime::now();
    let mut mails = Vec::new();
    let mut hecto = 0;
    for i in 0..n {
        let received = now - std::time::Duration::from_secs(i as u64);
        let raw = if i % 450 == 3 {
            hecto += 1;
            guidance_mail(&format!("unknown{i}@corp.example"), &message_id("big-h"), &[])
        } else {
            plain_mail(&user, &message_id("big-p"))
        };
        mails.push((raw, received));
    }
    mails.push((guidance_mail("m1@corp.example", &message_id("big-m1"), &[]), now));
    seed_maildir(&user, "", &mails).await;
    seed_maildir(&user, ".Junk", &[(plain_mail(&user, &message_id("big-j")), now)]).await;

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &account_toml("a", &user, Tls::Implicit, ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m1", "m1@corp.example");

    let s = scan(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.hecto_mails), (n as u64 + 2, hecto + 1), "{s:?}");
    assert_eq!(store.unassigned().unwrap().len() as u64, hecto, "every unassigned Hecto mail recorded once");
    assert_eq!(store.merchant("m1").unwrap().unwrap().stage, Stage::GuidanceReceived);
    let again = scan(&config, &ingest).await;
    assert_eq!((again.mails.mails_seen, again.mails.hecto_mails), (0, 0), "{again:?}");
}

/// Two mails appended with the arrival dates given (IMAP date-time), in this order.
async fn append_arrived(user: &str, mails: &[(Vec<u8>, String)]) {
    let mut conn = login(user).await;
    for (raw, arrived) in mails {
        let quoted = format!("\"{arrived}\"");
        conn.session.append("INBOX", None, Some(&quoted), raw).await.expect("APPEND with a date");
    }
    conn.logout().await;
}

fn imap_datetime(days_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days_ago)).format("%d-%b-%Y %H:%M:%S +0000").to_string()
}

fn recorded_ids(store: &hecto_watch::store::Store) -> Vec<String> {
    let mut ids: Vec<_> = store.unassigned().unwrap().into_iter().filter_map(|u| u.message_id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn the_first_scan_back_fills_backfill_days_by_arrival_later_scans_take_everything_new() {
    // Both orders: oldest mail first (the folder reaches back past the window: SEARCH SINCE picks
    // the mails), and a recent mail first (every header is read, the window checked per mail).
    for old_first in [true, false] {
        let user = fresh_user("backfill", false);
        let old = message_id("old");
        let recent = message_id("recent");
        let mut mails = vec![
            (guidance_mail("a@corp.example", &old, &[]), imap_datetime(90)),
            (guidance_mail("b@corp.example", &recent, &[]), imap_datetime(10)),
        ];
        if !old_first {
            mails.reverse();
        }
        append_arrived(&user, &mails).await;

        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &account_toml("a", &user, Tls::Implicit, "backfill_days = 60"));
        let (store, ingest) = ingest(&config);
        let s = scan(&config, &ingest).await;
        assert_eq!(s.mails.hecto_mails, 1, "old first: {old_first}: {s:?}");
        assert_eq!(recorded_ids(&store), vec![recent.clone()], "only the mail that arrived within 60 days");

        // Mail that turns up after the first sync is new mail, whatever date it carries.
        let late = message_id("late");
        append_arrived(&user, &[(guidance_mail("c@corp.example", &late, &[]), imap_datetime(90))]).await;
        let s = scan(&config, &ingest).await;
        assert_eq!((s.mails.mails_seen, s.mails.hecto_mails), (1, 1), "{s:?}");
        let mut want = vec![recent, late];
        want.sort();
        assert_eq!(recorded_ids(&store), want);
    }
}
