//! The real binary killed with SIGKILL in the middle of `scan --once`, then run again: every mail
//! is applied exactly once — none lost (the cursor never passed an uncommitted mail), none doubled.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use hecto_watch::merchant::Evidence;
use hecto_watch::store::Store;
use support::*;

const MERCHANTS: usize = 8;
const HECTO_MAILS: usize = 240;

fn hecto_watch(config: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hecto-watch"));
    c.arg("--config").arg(config).env("RUST_LOG", "hecto_watch=info").env_remove("HECTO_WATCH_CONFIG");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_scan_then_rescan_applies_every_mail_once() {
    let user = fresh_user("crash", false);
    // Hecto mails for eight merchants (each one changes a stage or is recorded as evidence), a few
    // for nobody (unassigned), and unrelated mail between them; most in INBOX, some in Junk.
    let subjects = [
        "[헥토파이낸셜] 전자결제 서비스 계약 안내",
        "[헥토파이낸셜] 계약 구비서류 요청",
        "[헥토파이낸셜] 계약완료 안내",
        "[헥토파이낸셜] 카드사 심사요청 접수",
        "[헥토파이낸셜] 공지사항",
    ];
    let mut inbox = Vec::new();
    let mut junk = Vec::new();
    let mut ids = BTreeSet::new();
    for i in 0..HECTO_MAILS {
        let to =
            if i % 20 == 19 { "nobody@corp.example".to_owned() } else { format!("m{}@corp.example", i % MERCHANTS) };
        let id = message_id(&format!("crash{i}"));
        let raw = mail(
            "\"헥토파이낸셜\" <contract@hectofinancial.co.kr>",
            &to,
            subjects[(i / MERCHANTS) % subjects.len()],
            &id,
            &[],
            "안내드립니다.",
        );
        ids.insert(id);
        if i % 6 == 5 {
            junk.push(raw)
        } else {
            inbox.push(raw)
        }
        inbox.push(plain_mail(&user, &message_id("noise")));
    }
    append_all(&user, "INBOX", &inbox).await;
    append_all(&user, "Junk", &junk).await;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config_path = dir.path().join("config.toml");
    let mut f = std::fs::File::create(&config_path).unwrap();
    write!(f, "[store]\npath = \"{}\"\n{}", state.display(), account_toml("crash", &user, Tls::Starttls, "")).unwrap();
    drop(f);
    {
        let store = Store::open(&state).unwrap();
        for m in 0..MERCHANTS {
            add_merchant(&store, &format!("m{m}"), &format!("m{m}@corp.example"));
        }
        store.flush_blocking().unwrap();
    }

    // Run 1: kill -9 as soon as the scan has applied some Hecto mail.
    let mut child = hecto_watch(&config_path)
        .args(["scan", "--once"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hecto-watch");
    let stderr = child.stderr.take().unwrap();
    let mut logged = 0usize;
    let mut log = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("Hecto mail") {
            logged += 1;
        }
        log.push(line);
        if logged >= 20 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(logged >= 20, "the scan ended before applying 20 Hecto mails:\n{}", log.join("\n"));
    assert!(!status.success(), "killed mid-scan, it must not have finished: {status:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.is_empty(), "no summary from a killed scan: {out}");

    // Run 2: to the end.
    let run2 = hecto_watch(&config_path).args(["scan", "--once"]).output().expect("run hecto-watch");
    assert!(run2.status.success(), "second scan failed: {}", String::from_utf8_lossy(&run2.stderr));

    let store = Store::open(&state).unwrap();
    // Every Hecto mail is known exactly once: as evidence of a merchant's event or as unassigned.
    let mut per_mail: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in 0..MERCHANTS {
        for e in store.events(&format!("m{m}")).unwrap() {
            if let Evidence::Mail { message_id: Some(id), .. } = &e.evidence {
                per_mail.entry(id.clone()).or_default().push(format!("{:?}", e.change));
            }
        }
    }
    for u in store.unassigned().unwrap() {
        per_mail.entry(u.message_id.clone().unwrap_or_default()).or_default().push("unassigned".into());
    }
    let found: BTreeSet<String> = per_mail.keys().cloned().collect();
    assert_eq!(found, ids, "every Hecto mail was applied (none lost)");
    for (id, changes) in &per_mail {
        let unique: BTreeSet<&String> = changes.iter().collect();
        assert_eq!(unique.len(), changes.len(), "{id} applied more than once: {changes:?}");
    }
    assert_eq!(store.seen_count(), HECTO_MAILS, "one seen record per Hecto mail");
    // The cursors reached the ends of both folders.
    let inbox_cursor = store.cursor("crash", "INBOX").unwrap().unwrap();
    assert_eq!(inbox_cursor.last_uid as usize, inbox.len());
    let junk_cursor = store.cursor("crash", "Junk").unwrap().unwrap();
    assert_eq!(junk_cursor.last_uid as usize, junk.len());
}
