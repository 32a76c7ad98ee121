//! The real binary: exit statuses, one-line errors, and bad input that leaves the database as it was.

use std::path::Path;
use std::process::{Command, Output};

mod disk_support;

use disk_support::Tmpfs;

fn hw(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("HECTO_WATCH_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `check-config` of the config file `cfg`.
fn check_config(cfg: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
        .args(["--config", cfg.to_str().unwrap(), "check-config"])
        .env_remove("HECTO_WATCH_CONFIG")
        .output()
        .unwrap()
}

fn add_acme(state: &Path) {
    let o = hw(
        state,
        &[
            "merchant",
            "add",
            "--id",
            "acme",
            "--name",
            "주식회사 에이씨미",
            "--contact",
            "pay@acme.test",
            "--business-no",
            "123-45-67891",
            "--applied-at",
            "2027-02-05",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_input_exits_2_with_one_line_and_leaves_the_database_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    add_acme(state);
    let before = stdout(&hw(state, &["export"]));
    let cases: &[&[&str]] = &[
        &["merchant", "add", "--id", "acme", "--name", "x", "--contact", "x@y.test"],
        &["merchant", "add", "--id", "b", "--name", "x", "--contact", "x@y.test", "--business-no", "123-45-6789"],
        &["merchant", "add", "--id", "c", "--name", "x", "--contact", "x@y.test", "--business-no", "123-45-67890"],
        &["merchant", "add", "--id", "d", "--name", "x", "--contact", "x@y.test", "--applied-at", "2027-13-45"],
        &["merchant", "add", "--id", "e", "--name", "x", "--contact", "not-an-address"],
        &["merchant", "advance", "acme", "signed"],
        &["merchant", "advance", "nobody", "live"],
        &["merchant", "advance", "acme", "live", "--at", "someday"],
        &["merchant", "remove", "nobody"],
        &["merchant", "show", "nobody"],
        &["status", "--now", "tomorrow"],
    ];
    for args in cases {
        let o = hw(state, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    assert_eq!(stdout(&hw(state, &["export"])), before);
}

#[test]
fn status_and_reminders_follow_the_korean_calendar_under_now() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    add_acme(state);
    // Applied Fri 2027-02-05; 설날 and its substitute day: due at the end of Fri 2027-02-12.
    let o = hw(state, &["status", "--json", "--now", "2027-02-11T09:00:00+09:00"]);
    let row: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(row["stage"], "applied");
    assert_eq!(row["deadline"]["window"], "guidance");
    assert_eq!(row["deadline"]["due"], "2027-02-12T14:59:59Z");
    assert_eq!(row["overdue"], false);
    assert_eq!(row["found_in_spam"], false);
    let o = hw(state, &["reminders", "--json", "--now", "2027-02-11T09:00:00+09:00"]);
    assert_eq!(stdout(&o).trim(), "");
    let o = hw(state, &["reminders", "--json", "--now", "2027-02-15T09:00:00+09:00"]);
    let item: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(item["merchant"], "acme");
    assert_eq!(item["kind"], "reminder");
    assert_eq!(item["n"], 1);
    assert_eq!(item["to"][0], "pay@acme.test");
    // A dry run sends and stores nothing: asking again gives the same answer.
    let again = hw(state, &["reminders", "--json", "--now", "2027-02-15T09:00:00+09:00"]);
    assert_eq!(stdout(&again), stdout(&o));
}

/// `merchant pause` stops a merchant's reminders (SPEC §5), `resume` starts them again; both are
/// events in the timeline, and pausing twice is refused.
#[test]
fn a_paused_merchant_gets_no_reminder_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    add_acme(state);
    let due = |state: &Path| stdout(&hw(state, &["reminders", "--json", "--now", "2027-02-15T09:00:00+09:00"]));
    assert!(due(state).contains("\"merchant\":\"acme\""), "overdue, so due");
    let o = hw(state, &["merchant", "pause", "acme", "--note", "계약 보류"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(due(state).trim(), "", "paused: nothing due");
    let row: serde_json::Value = serde_json::from_str(stdout(&hw(state, &["status", "--json"])).trim()).unwrap();
    assert_eq!(row["paused"], true);
    let o = hw(state, &["merchant", "pause", "acme"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already paused"), "{}", stderr(&o));
    assert_eq!(hw(state, &["merchant", "resume", "acme"]).status.code(), Some(0));
    assert!(due(state).contains("\"merchant\":\"acme\""), "resumed: due again");
    let show = stdout(&hw(state, &["merchant", "show", "acme"]));
    assert!(show.contains("reminders paused") && show.contains("operator: 계약 보류"), "{show}");
    assert!(show.contains("reminders resumed") && show.contains("reminders:    on"), "{show}");
    assert_eq!(hw(state, &["merchant", "resume", "acme"]).status.code(), Some(2));
    assert_eq!(hw(state, &["merchant", "pause", "nobody"]).status.code(), Some(2));
}

#[test]
fn merchant_show_prints_the_timeline_with_operator_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    add_acme(state);
    let o = hw(state, &["merchant", "advance", "acme", "developing", "--at", "2027-03-02", "--note", "test MID set"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let show = stdout(&hw(state, &["merchant", "show", "acme"]));
    assert!(show.contains("applied → developing"), "{show}");
    assert!(show.contains("operator: test MID set"), "{show}");
    assert!(show.contains("123-45-67891"), "{show}");
}

#[test]
fn an_invalid_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[accounts]]\nname = \"a\"\nhost = \"imap.example.com\"\nport = 143\nusername = \"u\"\npassword = { value = \"x\" }\n\
         [reminders]\nschedule = \"daily\"\nlanguage = \"fr\"\n",
    )
    .unwrap();
    let o = check_config(&cfg);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("3 problems"), "{err}");
    for key in ["accounts[0].port", "reminders.schedule", "reminders.language"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[test]
fn classify_keeps_going_after_an_unreadable_file_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("a.eml");
    std::fs::write(&eml, "From: a@b.test\r\nTo: c@d.test\r\nSubject: hello\r\n\r\nbody\r\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
        .args(["classify", "--json", "/nonexistent/x.eml", eml.to_str().unwrap()])
        .env_remove("HECTO_WATCH_CONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "a missing file is bad input");
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(line["file"], eml.to_str().unwrap());
    assert_eq!(line["kind"], "not_hecto");
}

#[test]
fn import_mail_into_junk_counts_as_found_in_spam() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    add_acme(&state);
    let eml = dir.path().join("guidance.eml");
    std::fs::write(
        &eml,
        "From: =?UTF-8?B?7Zel7Yag7YyM7J2064Sw7IWc?= <contract@hectofinancial.co.kr>\r\n\
         To: pay@acme.test\r\nSubject: =?UTF-8?B?W+2Xpe2GoO2MjOydtOuEjOyFnF0g6rOE7JW9IOyViOuCtA==?=\r\n\
         Message-ID: <guid-1@hectofinancial.co.kr>\r\nDate: Tue, 09 Feb 2027 10:00:00 +0900\r\n\
         Authentication-Results: mx.example.test; dkim=pass header.d=hectofinancial.co.kr\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n계약 안내드립니다.\r\n",
    )
    .unwrap();
    let o = hw(
        &state,
        &["import-mail", "--json", "--now", "2027-02-10T09:00:00+09:00", "--folder", "Junk", eml.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(line["kind"], "guidance", "{line}");
    assert_eq!(line["merchant"], "acme");
    assert_eq!(line["found_in_spam"], true);
    let o = hw(
        &state,
        &["import-mail", "--json", "--now", "2027-02-10T09:00:00+09:00", "--folder", "Junk", eml.to_str().unwrap()],
    );
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(line["duplicate"], true);
    let status: serde_json::Value = serde_json::from_str(stdout(&hw(&state, &["status", "--json"])).trim()).unwrap();
    assert_eq!(status["stage"], "guidance_received");
    assert_eq!(status["found_in_spam"], true);
    assert_eq!(status["stage_since"], "2027-02-09T01:00:00Z");
    let due = stdout(&hw(&state, &["reminders", "--json"]));
    assert_eq!(due.lines().count(), 1, "one spam notice, once: {due}");
    assert!(due.contains("\"spam_notice\""), "{due}");
}

/// `check-config` says what a preset filled in and what is still to do at the provider; Hiworks
/// (POP3 only) is refused with the reason.
#[test]
fn check_config_reports_presets_and_refuses_hiworks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[[accounts]]\nname = \"n\"\npreset = \"naver\"\nusername = \"shop@naver.com\"\npassword = { value = \"x\" }\n",
    )
    .unwrap();
    let o = check_config(&cfg);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("preset \"naver\" filled in: host = \"imap.naver.com\""), "{out}");
    assert!(out.contains("idle = false") && out.contains("애플리케이션 비밀번호"), "{out}");
    std::fs::write(
        &cfg,
        "[[accounts]]\nname = \"h\"\npreset = \"hiworks\"\nusername = \"a@b.c\"\npassword = { value = \"x\" }\n",
    )
    .unwrap();
    let o = check_config(&cfg);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("accounts[0].preset") && stderr(&o).contains("POP3"), "{}", stderr(&o));
}

/// No configuration error repeats a secret, whatever shape it was written in (issue 13): a plain
/// string where a table belongs, a number, a bare word that breaks the TOML, a wrong key inside.
#[test]
fn no_configuration_error_echoes_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let account = "[[accounts]]\nname = \"a\"\nhost = \"imap.example.com\"\nusername = \"u@example.com\"\n";
    let cases = [
        format!("{account}password = \"hunter2-SECRET-inline\"\n"),
        format!("{account}password = 31337999\n"),
        format!("{account}password = hunter2-SECRET-bare\n"),
        format!("{account}password = {{ valu = \"hunter2-SECRET-key\" }}\n"),
        format!("{account}password = {{ value = \"x\" }}\n[smtp]\nhost = \"s\"\nfrom = \"a@b.c\"\nusername = \"u\"\npassword = \"hunter2-SECRET-smtp\"\n"),
        format!("{account}password = {{ value = \"x\" }}\n[http]\nlisten = \"127.0.0.1:1\"\ntoken = \"hunter2-SECRET-token\"\n"),
        format!("{account}auth = \"oauth2\"\n[accounts.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\nclient_secret = \"hunter2-SECRET-client\"\n"),
    ];
    for text in &cases {
        std::fs::write(&cfg, text).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
            .args(["--config", cfg.to_str().unwrap(), "check-config"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{text}\n{}", stderr(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!all.contains("hunter2") && !all.contains("31337999"), "a secret echoed for\n{text}\n{all}");
    }
}

/// Operator input is bounded (issue 13): dates from 2000-01-01 to a year ahead, names of 1–200
/// characters without control characters; and text from mail reaches the terminal with its
/// control characters replaced.
#[test]
fn operator_input_is_bounded_and_mail_text_cannot_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let add = |extra: &[&str]| {
        let mut args = vec!["merchant", "add", "--id", "x", "--contact", "x@y.test"];
        args.extend_from_slice(extra);
        hw(state, &args)
    };
    for (extra, why) in [
        (vec!["--name", "n", "--applied-at", "1900-01-01"], "out of range"),
        (vec!["--name", "n", "--applied-at", "9999-12-31"], "out of range"),
        (vec!["--name", "에이씨미\u{1b}]0;pwned\u{7}"], "control characters"),
        (vec!["--name", "a\r\nb"], "control characters"),
    ] {
        let o = add(&extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{extra:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1);
    }
    let long = "가".repeat(201);
    let o = add(&["--name", &long]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("1–200 characters"), "{}", stderr(&o));

    // A subject with an OSC title sequence, BEL and a clear-screen: printed harmlessly.
    let eml = dir.path().join("evil.eml");
    std::fs::write(
        &eml,
        "From: =?UTF-8?B?7Zel7Yag?= <contract@hectofinancial.co.kr>\r\nTo: a@b.test\r\nSubject: \u{1b}]0;owned\u{7}\u{1b}[2J[헥토파이낸셜] 계약 안내\r\nMessage-ID: <evil@x>\r\n\r\nbody\r\n",
    )
    .unwrap();
    let o = hw(state, &["classify", eml.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.trim_end().chars().any(char::is_control), "{out:?}");
    assert!(out.contains("계약 안내"), "{out}");
    // JSON carries the text, escaped as JSON.
    let o = hw(state, &["classify", "--json", eml.to_str().unwrap()]);
    assert!(stdout(&o).contains("\\u001b"), "{}", stdout(&o));
}

/// SPEC §7: a command that only reads refuses a state directory without a database (no empty one
/// is created, no empty backup written with exit 0); a state "directory" that is a file is named
/// as such; a directory given as a mail file is bad input; a ca_file that is no PEM fails
/// check-config.
#[test]
fn read_only_commands_refuse_a_missing_database_and_paths_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    for args in [&["export"][..], &["status"], &["merchant", "list"], &["reminders"]] {
        let o = hw(&missing, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no database at"), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
    assert!(!missing.exists(), "nothing created");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = hw(&file, &["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));
    let o = hw(dir.path(), &["classify", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a directory is bad input: {}", stderr(&o));
    let o = hw(&dir.path().join("s"), &["import-mail", "--folder", "INBOX", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let cfg = dir.path().join("c.toml");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    std::fs::write(
        &cfg,
        format!("[[accounts]]\nname = \"a\"\nhost = \"imap.example.com\"\nusername = \"u@e.com\"\npassword = {{ value = \"x\" }}\nca_file = \"{}\"\npoll_interval = \"999999h\"\nbackfill_days = 4000000000\n", ca.display()),
    )
    .unwrap();
    let o = check_config(&cfg);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("ca_file") && err.contains("no PEM certificate"), "{err}");
    assert!(
        err.contains("poll_interval: must be from 1s to 24h") && err.contains("backfill_days: at most 3650"),
        "{err}"
    );
}

/// `import` checks every record before writing anything and names the first bad one by its JSON
/// path (SPEC §7); a far-future date — which once made every later `status` panic — is refused.
#[test]
fn import_refuses_a_bad_record_by_its_json_path_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    add_acme(&src);
    let export: serde_json::Value = serde_json::from_str(&stdout(&hw(&src, &["export"]))).unwrap();
    type Change = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Change)> = vec![
        ("merchants[0].id", Box::new(|v| v["merchants"][0]["id"] = "a b/c".into())),
        ("merchants[0].contacts", Box::new(|v| v["merchants"][0]["contacts"] = serde_json::json!(["not-an-address"]))),
        ("merchants[0].business_no", Box::new(|v| v["merchants"][0]["business_no"] = "1234567890".into())),
        ("merchants[0].stage_since", Box::new(|v| v["merchants"][0]["stage_since"] = "+262142-12-31T00:00:00Z".into())),
        ("merchants[0].applied_at", Box::new(|v| v["merchants"][0]["applied_at"] = "1900-01-01T00:00:00Z".into())),
        ("merchants[0].name", Box::new(|v| v["merchants"][0]["name"] = "a\u{1b}[2Jb".into())),
        (
            "merchants[1].id",
            Box::new(|v| {
                let m = v["merchants"][0].clone();
                v["merchants"].as_array_mut().unwrap().push(m);
            }),
        ),
        ("events[0].merchant", Box::new(|v| v["events"][0]["merchant"] = "no such/merchant".into())),
    ];
    for (path, change) in cases {
        let mut v = export.clone();
        change(&mut v);
        let file = dir.path().join("bad.json");
        std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
        let target = dir.path().join(format!("t-{}", path.replace(['[', ']', '.'], "_")));
        let o = hw(&target, &["import", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{path}: {}", stderr(&o));
        assert!(stderr(&o).contains(path) && stderr(&o).contains("nothing was imported"), "{path}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        assert!(!target.join("db").exists(), "{path}: nothing written");
    }
    // The good file imports.
    let file = dir.path().join("good.json");
    std::fs::write(&file, serde_json::to_string(&export).unwrap()).unwrap();
    assert_eq!(hw(&dir.path().join("ok"), &["import", file.to_str().unwrap()]).status.code(), Some(0));
}

/// Every configuration problem in one pass (issue 13): a type error, a semantic one and a
/// password file that does not exist, all reported together, one line each.
#[test]
fn check_config_reports_type_semantic_and_file_problems_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[[accounts]]\nname = \"a\"\nhost = \"imap.example.com\"\nusername = \"u@e.com\"\nidle = \"yes please\"\n\
         password = { file = \"/nonexistent/imap.pw\" }\n[reminders]\noperators = [\"not an address\"]\n",
    )
    .unwrap();
    let o = check_config(&cfg);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("accounts[0].idle"), "the type error: {err}");
    assert!(err.contains("reminders.operators[0]"), "the semantic one: {err}");
    assert!(err.contains("accounts[0].password") && err.contains("/nonexistent/imap.pw"), "the file: {err}");
    assert!(err.lines().skip(1).all(|l| l.starts_with("  ")), "one line each: {err}");
}

// ---- storage faults on a real, small tmpfs (SPEC §9 Durability) -------------------------------
// A full disk during `merchant add` fails that command with exit 1 and loses nothing already
// there, and the database opens again once there is room — including with the empty
// `snap.*.generating` file sled leaves when its snapshot write hits the full disk. Needs root
// (`mount -t tmpfs`), as CI runs.

fn add_shop(state: &Path, id: &str) -> Output {
    hw(state, &["merchant", "add", "--id", id, "--name", "상점", "--contact", &format!("{id}@shop.test")])
}

fn ids(state: &Path) -> Vec<String> {
    let o = hw(state, &["--json", "merchant", "list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_full_disk_during_merchant_add_fails_it_loses_nothing_and_the_database_opens_once_there_is_room() {
    let fs = Tmpfs::mount("8m");
    let state = fs.0.join("state");
    for id in ["m1", "m2", "m3"] {
        assert!(add_shop(&state, id).status.success());
    }
    let fill = fs.fill();
    for id in ["x1", "x2", "x3"] {
        let o = add_shop(&state, id);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "a full disk is a failure, not bad input: {err}");
        assert!(err.contains("No space left on device"), "names the cause: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("hecto-watch:")).collect();
        assert_eq!(errors.len(), 1, "one line: {err}");
    }
    // What sled leaves when its snapshot write hits the full disk (as seen in the field): an
    // empty `.generating` file that sorts after the complete snapshot.
    std::fs::write(state.join("snap.FFFFFFFFFFFFFFFF.generating"), b"").unwrap();
    std::fs::remove_file(fill).unwrap();
    assert_eq!(ids(&state), ["m1", "m2", "m3"], "nothing lost, nothing half-written");
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".generating"))
        .collect();
    assert!(leftovers.is_empty(), "the incomplete snapshots are removed: {leftovers:?}");
    assert!(add_shop(&state, "m4").status.success(), "writable again");
    assert_eq!(ids(&state), ["m1", "m2", "m3", "m4"]);
}
