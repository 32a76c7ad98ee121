//! `status` and `reminders` over 100,000 merchants on a real sled directory (target: < 1 s each),
//! and applying one Hecto mail there (matching among all merchants and its transaction).
//!
//! Run: `cargo bench --bench status`. Prints criterion's figures and a one-line summary per
//! operation (time per call, merchants/s).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use hecto_watch::config::Config;
use hecto_watch::mail::{self, Rules};
use hecto_watch::merchant::{FolderRole, MailSource, Merchant, Stage};
use hecto_watch::ops;
use hecto_watch::schedule::Calendar;
use hecto_watch::store::{Export, Store, SCHEMA_VERSION};

const MERCHANTS: usize = 100_000;

fn seed(store: &Store, now: DateTime<Utc>) {
    let stages = Stage::ALL;
    let merchants: Vec<Merchant> = (0..MERCHANTS)
        .map(|i| {
            let applied = now - Duration::days((i % 60) as i64);
            Merchant {
                id: format!("m{i:06}"),
                name: format!("주식회사 테스트상점{i}"),
                contacts: vec![format!("pay{i}@shop{}.example", i % 5000)],
                language: None,
                business_no: None,
                mids: vec![],
                stage: stages[i % stages.len()],
                stage_since: applied + Duration::days(1),
                applied_at: applied,
                found_in_spam: i % 7 == 0,
                card_approvals: BTreeMap::new(),
                created_at: applied,
                paused: false,
            }
        })
        .collect();
    let data = Export {
        schema_version: SCHEMA_VERSION,
        next_seq: 0,
        merchants,
        events: vec![],
        seen: BTreeMap::new(),
        unassigned: vec![],
        cursors: vec![],
        outbox: vec![],
        folders: BTreeMap::new(),
        removed: vec![],
    };
    store.import(&data).expect("seed");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let now = DateTime::parse_from_rfc3339("2026-11-27T09:00:00+09:00").expect("now").with_timezone(&Utc);
    seed(&store, now);
    let config = Config::builtin();
    let cal = Calendar::builtin();

    let mut group = c.benchmark_group("100k_merchants");
    group.sample_size(10);
    group.bench_function("status", |b| b.iter(|| ops::status(&store, &config, &cal, now).expect("status")));
    group
        .bench_function("reminders", |b| b.iter(|| ops::reminders_due(&store, &config, &cal, now).expect("reminders")));
    group.finish();

    for (name, f) in [
        (
            "status",
            &(|| ops::status(&store, &config, &cal, now).map(|r| r.len())) as &dyn Fn() -> anyhow::Result<usize>,
        ),
        ("reminders", &|| ops::reminders_due(&store, &config, &cal, now).map(|(due, _)| due.len())),
    ] {
        let start = Instant::now();
        let runs = 5;
        let mut n = 0;
        for _ in 0..runs {
            n = f().expect("run");
        }
        let per = start.elapsed().as_secs_f64() / f64::from(runs);
        println!(
            "SUMMARY {name}: {per:.3} s per call over {MERCHANTS} merchants ({:.0} merchants/s), {n} rows",
            MERCHANTS as f64 / per
        );
    }
    apply_mails(&store, now);
}

/// Hecto mails to merchants' contact addresses, each applied in its own transaction as the ingest
/// does. The first one loads the merchants for matching; the figure is the mean over all.
fn apply_mails(store: &Store, now: DateTime<Utc>) {
    let rules = Rules::default();
    let raw = "From: =?UTF-8?B?7Zel7Yag7YyM7J2064K47IWc?= <contract@hectofinancial.co.kr>\r\n\
               To: pay0@shop0.example\r\nSubject: =?UTF-8?B?W+2Xpe2GoO2MjOydtOuCuOyFnF0g6rOE7JW97JmE66OMIOyViOuCtA==?=\r\n\
               Message-ID: <x@hecto>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0900\r\n\r\n계약이 완료되었습니다.\r\n";
    let base = mail::classify(raw.as_bytes(), &rules);
    assert!(base.kind.is_hecto(), "the bench mail must be Hecto's: {:?}", base.kind);
    let source = MailSource {
        account: "bench".into(),
        folder: "INBOX".into(),
        role: FolderRole::Inbox,
        uid: None,
        uid_validity: None,
        internal_date: None,
        move_to_inbox: false,
    };
    let n = 200;
    let start = Instant::now();
    let mut matched = 0;
    for i in 0..n {
        let mut c = base.clone();
        c.recipients = vec![format!("pay{i}@shop{}.example", i % 5000)];
        c.message_id = Some(format!("bench-{i}@hecto"));
        matched += usize::from(store.apply_mail(&c, &source, &rules, &[], now).expect("apply").merchant.is_some());
    }
    let per = start.elapsed().as_secs_f64() / f64::from(n);
    println!(
        "SUMMARY apply: {:.2} ms per Hecto mail over {MERCHANTS} merchants ({matched} of {n} matched)",
        per * 1000.0
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
