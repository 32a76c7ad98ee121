//! The store on a real sled directory: one transaction per mail, de-duplication, notices queued
//! once, cursors, export/import.

use chrono::{DateTime, Utc};
use hecto_watch::health::Trouble;
use hecto_watch::mail::{self, Authenticated, Classified, Direction, MailKind, Rules};
use hecto_watch::merchant::{FolderRole, MailSource, Merchant, Stage};
use hecto_watch::ops::{self, NewMerchant};
use hecto_watch::store::{Cursor, NoticeKind, Refused, Store};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn add(store: &Store, id: &str, contact: &str, bn: Option<&str>) -> Merchant {
    let m = NewMerchant {
        id: id.into(),
        name: format!("{id} 상사"),
        contacts: vec![contact.into()],
        business_no: bn.map(str::to_owned),
        mids: vec![],
        applied_at: Some("2026-11-02T10:00:00+09:00".into()),
        ..Default::default()
    };
    ops::merchant_add(store, &m, t("2026-11-02T10:00:00+09:00")).unwrap()
}

fn guidance(to: &str, message_id: Option<&str>) -> Classified {
    let mut c = mail::classify(b"", &Rules::default());
    c.unparseable = false;
    c.kind = MailKind::Guidance;
    c.direction = Some(Direction::Incoming);
    c.sender = Some("contract@hectofinancial.co.kr".into());
    c.recipients = vec![to.into()];
    c.subject = "[헥토파이낸셜] 전자결제 서비스 계약 안내".into();
    c.authenticated = Authenticated::Pass;
    c.message_id = message_id.map(str::to_owned);
    c.date = Some(DateTime::parse_from_rfc3339("2026-11-04T11:00:00+09:00").unwrap());
    c
}

fn junk(uid: u32) -> MailSource {
    MailSource {
        account: "contracts".into(),
        folder: "Junk".into(),
        role: FolderRole::Junk,
        uid: Some(uid),
        uid_validity: Some(42),
        internal_date: None,
        move_to_inbox: false,
    }
}

const OPS: &[String] = &[];

#[test]
fn guidance_in_junk_changes_stage_queues_one_spam_notice_and_advances_the_cursor() {
    let (_d, s) = open();
    add(&s, "acme", "pay@acme.test", None);
    let now = t("2026-11-04T12:00:00+09:00");
    let a = s.apply_mail(&guidance("pay@acme.test", Some("g1@hecto")), &junk(5), &Rules::default(), OPS, now).unwrap();
    assert!(a.stage_changed && a.found_in_spam && !a.duplicate);
    assert_eq!(a.enqueued.len(), 1);
    let m = s.merchant("acme").unwrap().unwrap();
    assert_eq!(m.stage, Stage::GuidanceReceived);
    assert!(m.found_in_spam);
    assert_eq!(s.cursor("contracts", "Junk").unwrap(), Some(Cursor::at(42, 5)));
    let notices = s.outbox_entries().unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind, NoticeKind::SpamNotice);
    assert_eq!(notices[0].to, vec!["pay@acme.test"]);

    // A rescan (same Message-ID, e.g. after a UIDVALIDITY change) changes nothing.
    let events_before = s.events("acme").unwrap().len();
    let again =
        s.apply_mail(&guidance("pay@acme.test", Some("g1@hecto")), &junk(1), &Rules::default(), OPS, now).unwrap();
    assert!(again.duplicate && again.enqueued.is_empty());
    assert_eq!(s.events("acme").unwrap().len(), events_before);
    assert_eq!(s.outbox_entries().unwrap().len(), 1);
}

#[test]
fn the_spam_notice_says_whether_the_mail_is_moved_to_inbox() {
    let (_d, s) = open();
    add(&s, "acme", "pay@acme.test", None);
    let now = t("2026-11-04T12:00:00+09:00");
    let moving = MailSource { move_to_inbox: true, ..junk(3) };
    s.apply_mail(&guidance("pay@acme.test", Some("g-move")), &moving, &Rules::default(), OPS, now).unwrap();
    s.apply_mail(&guidance("pay@acme.test", Some("g-stay")), &junk(4), &Rules::default(), OPS, now).unwrap();
    let moved: Vec<bool> = s
        .outbox_entries()
        .unwrap()
        .iter()
        .map(|e| match &e.facts {
            hecto_watch::store::NoticeFacts::SpamNotice { message_id, moved_to_inbox, .. } => {
                assert_eq!(*moved_to_inbox, message_id.as_deref() == Some("g-move"), "{message_id:?}");
                *moved_to_inbox
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(moved.iter().filter(|m| **m).count(), 1);
    assert_eq!(moved.len(), 2);
}

#[test]
fn mail_without_message_id_is_deduplicated_by_content_hash() {
    let (_d, s) = open();
    add(&s, "acme", "pay@acme.test", None);
    let now = t("2026-11-04T12:00:00+09:00");
    let mut c = guidance("pay@acme.test", None);
    c.content_hash = "ab".repeat(32);
    assert!(!s.apply_mail(&c, &junk(1), &Rules::default(), OPS, now).unwrap().duplicate);
    assert!(s.apply_mail(&c, &junk(2), &Rules::default(), OPS, now).unwrap().duplicate);
}

#[test]
fn unassigned_mail_is_kept_and_operators_are_told_once() {
    let (_d, s) = open();
    add(&s, "alpha", "shared@agency.test", None);
    add(&s, "beta", "shared@agency.test", None);
    let ops_list = vec!["ops@example.test".to_string()];
    let now = t("2026-11-04T12:00:00+09:00");
    let c = guidance("shared@agency.test", Some("u1@hecto"));
    let a = s.apply_mail(&c, &junk(1), &Rules::default(), &ops_list, now).unwrap();
    assert!(a.unassigned);
    let un = s.unassigned().unwrap();
    assert_eq!(un.len(), 1);
    assert_eq!(un[0].candidates, vec!["alpha", "beta"]);
    let notices = s.outbox_entries().unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind, NoticeKind::OperatorNotice);
    assert_eq!(notices[0].to, ops_list);
    assert!(s.apply_mail(&c, &junk(1), &Rules::default(), &ops_list, now).unwrap().duplicate);
    assert_eq!(s.outbox_entries().unwrap().len(), 1);
    assert_eq!(s.merchant("alpha").unwrap().unwrap().stage, Stage::Applied);
}

#[test]
fn matching_sees_merchants_added_removed_and_changed_since_the_last_mail() {
    let (_d, s) = open();
    let now = t("2026-11-04T12:00:00+09:00");
    let apply = |to: &str, id: &str, uid: u32| {
        s.apply_mail(&guidance(to, Some(id)), &junk(uid), &Rules::default(), OPS, now).unwrap()
    };
    // The first mail loads the merchants for matching; the later ones must not match a stale list.
    assert!(apply("new@corp.test", "k1@hecto", 1).unassigned);
    add(&s, "alpha", "new@corp.test", None);
    assert_eq!(apply("new@corp.test", "k2@hecto", 2).merchant.as_deref(), Some("alpha"));
    // A changed contact address (same merchant, other identity).
    s.update_merchant("alpha", |old| {
        let mut m = old.clone();
        m.contacts = vec!["moved@corp.test".into()];
        (m, vec![])
    })
    .unwrap();
    assert!(apply("new@corp.test", "k3@hecto", 3).unassigned);
    assert_eq!(apply("moved@corp.test", "k4@hecto", 4).merchant.as_deref(), Some("alpha"));
    s.remove_merchant("alpha", chrono::Utc::now()).unwrap();
    assert!(apply("moved@corp.test", "k5@hecto", 5).unassigned);
}

#[test]
fn a_mid_recorded_from_a_mail_matches_the_next_mail() {
    let (_d, s) = open();
    let now = t("2026-11-04T12:00:00+09:00");
    add(&s, "alpha", "pay@alpha.test", None);
    // 계약완료 to the contact address, carrying the merchant's MID: recorded on the merchant.
    let mut done = guidance("pay@alpha.test", Some("done@hecto"));
    done.kind = MailKind::ContractCompleted;
    done.mids = vec!["alpha0001".into()];
    assert_eq!(s.apply_mail(&done, &junk(1), &Rules::default(), OPS, now).unwrap().merchant.as_deref(), Some("alpha"));
    assert_eq!(s.merchant("alpha").unwrap().unwrap().mids, vec!["alpha0001".to_string()]);
    // A later mail to another address names only that MID: matching knows it now.
    let mut later = guidance("settlement@elsewhere.test", Some("later@hecto"));
    later.mids = vec!["alpha0001".into()];
    let a = s.apply_mail(&later, &junk(2), &Rules::default(), OPS, now).unwrap();
    assert_eq!((a.merchant.as_deref(), a.unassigned), (Some("alpha"), false));
}

#[test]
fn not_hecto_mail_only_moves_the_cursor() {
    let (_d, s) = open();
    add(&s, "acme", "pay@acme.test", None);
    let c = mail::classify(b"From: a@b.test\r\nSubject: hi\r\n\r\nhello", &Rules::default());
    let a = s.apply_mail(&c, &junk(9), &Rules::default(), OPS, t("2026-11-04T12:00:00+09:00")).unwrap();
    assert!(!a.is_hecto() && a.merchant.is_none());
    assert_eq!(s.seen_count(), 0);
    assert_eq!(s.cursor("contracts", "Junk").unwrap().unwrap().last_uid, 9);
}

#[test]
fn cursors_move_forward_within_a_uidvalidity_and_reset_on_a_new_one() {
    let (_d, s) = open();
    s.advance_cursor("a", "INBOX", Cursor::at(1, 10)).unwrap();
    s.advance_cursor("a", "INBOX", Cursor::at(1, 3)).unwrap();
    assert_eq!(s.cursor("a", "INBOX").unwrap().unwrap().last_uid, 10);
    s.advance_cursor("a", "INBOX", Cursor::at(2, 1)).unwrap();
    assert_eq!(s.cursor("a", "INBOX").unwrap(), Some(Cursor::at(2, 1)));
    // A back-fill under way is kept while the cursor moves, and ends when it gets there.
    s.advance_cursor("a", "INBOX", Cursor { uid_validity: 3, last_uid: 0, backfill_to: Some(9) }).unwrap();
    s.advance_cursor("a", "INBOX", Cursor::at(3, 5)).unwrap();
    assert_eq!(s.cursor("a", "INBOX").unwrap().unwrap().backfill_to, Some(9));
    s.advance_cursor("a", "INBOX", Cursor::at(3, 9)).unwrap();
    assert_eq!(s.cursor("a", "INBOX").unwrap(), Some(Cursor::at(3, 9)));
}

#[test]
fn export_then_import_into_an_empty_directory_round_trips_exactly() {
    let (_d, s) = open();
    add(&s, "acme", "pay@acme.test", Some("1234567891"));
    add(&s, "alpha", "shared@agency.test", None);
    add(&s, "beta", "shared@agency.test", None);
    let now = t("2026-11-04T12:00:00+09:00");
    s.apply_mail(&guidance("pay@acme.test", Some("g1")), &junk(1), &Rules::default(), OPS, now).unwrap();
    s.apply_mail(&guidance("shared@agency.test", Some("g2")), &junk(2), &Rules::default(), OPS, now).unwrap();
    s.set_folder_roles("contracts", &[("Junk".into(), FolderRole::Junk)]).unwrap();
    let exported = s.export().unwrap();
    let text = serde_json::to_string(&exported).unwrap();

    let (_d2, fresh) = open();
    fresh.import(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(serde_json::to_string(&fresh.export().unwrap()).unwrap(), text);

    // New events after an import continue the sequence instead of overwriting imported ones.
    let before = fresh.events("acme").unwrap().len();
    ops::merchant_advance(&fresh, "acme", "contracting", None, None, now).unwrap();
    assert_eq!(fresh.events("acme").unwrap().len(), before + 1);

    // Importing into a database that has data is refused.
    let err = fresh.import(&exported).unwrap_err();
    assert!(matches!(err.downcast_ref::<Refused>(), Some(Refused::NotEmpty(_))), "{err:#}");
}

#[test]
fn a_second_process_gets_a_clear_error_instead_of_a_corrupt_database() {
    let (d, _s) = open();
    // sled locks the directory per process; within one process a second open of the same path
    // shares the cache, so check the error path through a child process instead.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
        .args(["--state-dir", d.path().to_str().unwrap(), "status"])
        .env_remove("HECTO_WATCH_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_folders_status_keeps_the_first_failure_of_a_run_and_a_good_pass_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let at = |h: u32| chrono::DateTime::parse_from_rfc3339(&format!("2027-02-10T{h:02}:00:00+09:00")).unwrap().to_utc();
    s.folder_synced("a", "INBOX", at(9), 3).unwrap();
    s.folder_failed("a", "INBOX", at(10), "login refused", Trouble::LoginRefused).unwrap();
    s.folder_failed("a", "INBOX", at(11), "no answer within 60 s", Trouble::Unreachable).unwrap();
    let st = s.folder_status("a", "INBOX").unwrap().unwrap();
    assert_eq!(st.last_ok, Some(at(9)));
    assert_eq!(
        (st.last_error.as_deref(), st.trouble, st.error_since, st.failures),
        (Some("no answer within 60 s"), Some(Trouble::Unreachable), Some(at(10)), 2)
    );
    s.folder_failed("a", "스팸메일함", at(11), "EXAMINE failed", Trouble::Folder).unwrap();
    s.folder_synced("a", "INBOX", at(12), 2).unwrap();
    let all = s.folder_statuses().unwrap();
    let folders: Vec<(&str, &str, bool)> =
        all.iter().map(|r| (r.account.as_str(), r.folder.as_str(), r.status.last_error.is_some())).collect();
    assert_eq!(folders, [("a", "INBOX", false), ("a", "스팸메일함", true)]);
    let inbox = &all[0].status;
    assert_eq!((inbox.last_ok, inbox.error_since, inbox.failures, inbox.mails_seen), (Some(at(12)), None, 0, 5));
    assert_eq!(inbox.trouble, None, "a good pass clears the trouble too");
    // A new plan without the spam folder drops its status: it no longer keeps the account down.
    s.retain_folder_statuses("a", &["INBOX".to_owned()]).unwrap();
    assert_eq!(s.status_folders("a").unwrap(), ["INBOX"]);
}

#[test]
fn an_outage_and_its_alert_are_recorded_together_and_the_alert_only_once() {
    use hecto_watch::health::alerts::{notice, Outage};
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let since = chrono::DateTime::parse_from_rfc3339("2027-02-10T09:00:00+09:00").unwrap().to_utc();
    let outage = Outage { since, alerted_at: Some(since), last_error: "boom".into(), trouble: Trouble::Unreachable };
    let n = notice("shop", &outage, "fix", None, &["ops@example.test".to_owned()], since);
    assert!(s.record_outage("shop", Some(&outage), Some(&n)).unwrap());
    assert!(!s.record_outage("shop", Some(&outage), Some(&n)).unwrap(), "the same alert is not queued twice");
    assert_eq!(s.outage("shop").unwrap(), Some(outage));
    drop(s);
    // After a restart the outage is still known.
    let s = Store::open(dir.path()).unwrap();
    assert!(s.outage("shop").unwrap().is_some());
    assert_eq!(s.outbox_entries().unwrap().len(), 1);
    s.record_outage("shop", None, None).unwrap();
    assert_eq!(s.outage("shop").unwrap(), None);
}
