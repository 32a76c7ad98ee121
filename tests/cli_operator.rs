//! The operator's workflow through the real binary (issue 12): several contacts and a language
//! per merchant, `merchant edit` with its timeline, business numbers and MIDs that two merchants
//! would share, `merchant import FILE.csv`, `outbox`, `reminders --json`'s windows and
//! `calendar` — offline, and through a running daemon.

mod daemon_support;

use std::path::Path;
use std::process::Output;

use daemon_support::{cli, Daemon};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(state: &Path, args: &[&str]) -> String {
    let o = cli(state, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Exit 2 with one `hecto-watch:` line (and, for an import, the bad rows under it).
fn refused(state: &Path, args: &[&str]) -> String {
    let o = cli(state, args);
    assert_eq!(o.status.code(), Some(2), "{args:?} must be refused: {}{}", stdout(&o), stderr(&o));
    stderr(&o)
}

fn merchants(state: &Path) -> Vec<serde_json::Value> {
    ok(state, &["--json", "merchant", "list"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn timeline(state: &Path, id: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(state, &["--json", "merchant", "show", id])).unwrap();
    v["events"].as_array().unwrap().iter().map(|e| e["change"].to_string()).collect()
}

#[test]
fn several_contacts_and_a_language_are_kept_and_reminders_go_to_every_contact() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    ok(
        state,
        &[
            "merchant",
            "add",
            "--id",
            "acme",
            "--name",
            "에이씨미",
            "--contact",
            "Pay@Acme.test",
            "--contact",
            "ops@acme.test",
            "--contact",
            "pay@acme.test",
            "--language",
            "en",
            "--applied-at",
            "2027-02-05",
        ],
    );
    let m = &merchants(state)[0];
    assert_eq!(m["contacts"], serde_json::json!(["pay@acme.test", "ops@acme.test"]), "lower-cased, each once");
    assert_eq!(m["language"], "en");
    let due = ok(state, &["--json", "--now", "2027-02-15T10:00:00+09:00", "reminders"]);
    let r: serde_json::Value = serde_json::from_str(due.lines().next().unwrap()).unwrap();
    assert_eq!(r["to"], serde_json::json!(["pay@acme.test", "ops@acme.test"]), "{r}");
    assert!(refused(
        state,
        &["merchant", "add", "--id", "b", "--name", "b", "--contact", "b@b.test", "--language", "fr"]
    )
    .contains("ko or en"));
}

#[test]
fn merchant_edit_records_each_change_and_refuses_what_cannot_or_would_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    ok(state, &["merchant", "add", "--id", "acme", "--name", "에이씨미", "--contact", "pay@acme.test"]);
    ok(
        state,
        &[
            "merchant",
            "edit",
            "acme",
            "--name",
            "주식회사 에이씨미",
            "--add-contact",
            "new@acme.test",
            "--remove-contact",
            "pay@acme.test",
            "--business-no",
            "220-81-62517",
            "--mid",
            "acme_mid1",
            "--language",
            "en",
            "--note",
            "typo in the application",
        ],
    );
    let m = &merchants(state)[0];
    assert_eq!(m["name"], "주식회사 에이씨미");
    assert_eq!(m["contacts"], serde_json::json!(["new@acme.test"]));
    assert_eq!((m["business_no"].as_str(), m["mids"][0].as_str()), (Some("2208162517"), Some("acme_mid1")));
    let events = timeline(state, "acme");
    assert_eq!(events.len(), 2, "registered, then one edit: {events:?}");
    for change in [
        "name: 에이씨미 → 주식회사 에이씨미",
        "contact removed: pay@acme.test",
        "contact added: new@acme.test",
        "MID added: acme_mid1",
        "language: the configured one → en",
    ] {
        assert!(events[1].contains(change), "{change}: {}", events[1]);
    }
    let text = ok(state, &["merchant", "show", "acme"]);
    assert!(text.contains("typo in the application"), "the note is shown: {text}");

    for (args, why) in [
        (vec!["--name", "주식회사 에이씨미"], "nothing to change"),
        (vec!["--remove-contact", "new@acme.test"], "at least one contact"),
        (vec!["--remove-contact", "nobody@acme.test"], "is not a contact"),
        (vec!["--remove-mid", "zzzz"], "is not one of"),
        (vec!["--business-no", "220-81-62518"], "check digit"),
        (vec!["--add-contact", "not-an-address"], "not a mail address"),
    ] {
        let mut all = vec!["merchant", "edit", "acme"];
        all.extend(&args);
        let err = refused(state, &all);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert_eq!(timeline(state, "acme").len(), 2, "a refused edit records nothing");
    assert!(refused(state, &["merchant", "edit", "nobody", "--name", "x"]).contains("nobody"));
}

#[test]
fn a_business_number_or_mid_another_merchant_has_needs_force_and_is_then_marked_in_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let add = |id: &str, extra: &[&str]| {
        let mut a = vec!["merchant", "add", "--id", id, "--name", id, "--contact", "shared@agency.test"];
        a.extend(extra);
        cli(state, &a)
    };
    assert_eq!(add("acme", &["--business-no", "2208162517", "--mid", "acme_mid1"]).status.code(), Some(0));
    let o = add("beta", &["--business-no", "220-81-62517"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already merchant acme's") && stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = add("beta", &["--mid", "acme_mid1"]);
    assert!(stderr(&o).contains("MID acme_mid1 is already merchant acme's"), "{}", stderr(&o));
    ok(state, &["merchant", "add", "--id", "delta", "--name", "d", "--contact", "d@d.test"]);
    assert!(refused(state, &["merchant", "edit", "delta", "--business-no", "2208162517"])
        .contains("already merchant acme's"));
    assert_eq!(add("beta", &["--business-no", "2208162517", "--force"]).status.code(), Some(0));
    ok(state, &["merchant", "edit", "beta", "--name", "Beta"]);
    let list = ok(state, &["merchant", "list"]);
    let marked: Vec<&str> = list.lines().filter(|l| l.contains("(shared!)")).collect();
    assert_eq!(marked.len(), 2, "both merchants with the shared number are marked:\n{list}");
}

const GOOD_CSV: &str = "id,name,contact,business_no,mid,applied_at,language\n\
    acme,주식회사 에이씨미,pay@acme.test;ops@acme.test,220-81-62517,acme_mid1,2026-11-02,en\n\
    beta,\"Beta, Inc.\",b@beta.test,,,,\n";

#[test]
fn merchant_import_checks_every_row_first_names_each_bad_line_and_writes_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let csv = dir.path().join("merchants.csv");
    ok(&state, &["merchant", "add", "--id", "old", "--name", "old", "--contact", "old@old.test"]);

    std::fs::write(
        &csv,
        "id,name,contact\nacme,에이씨미,pay@acme.test\nbad id,x,x@x.test\nbeta,b,not-an-address\nacme,again,a@a.test\nold,o,o@o.test\n",
    )
    .unwrap();
    let err = refused(&state, &["merchant", "import", csv.to_str().unwrap()]);
    assert!(err.contains("4 bad rows, nothing was imported"), "{err}");
    for line in [
        "line 3: merchant id",
        "line 4: contact",
        "line 5: merchant acme is already on line 2",
        "line 6: merchant old already exists",
    ] {
        assert!(err.contains(line), "{line}: {err}");
    }
    assert_eq!(merchants(&state).len(), 1, "nothing written");

    std::fs::write(&csv, format!("\u{feff}{GOOD_CSV}")).unwrap();
    let o = cli(&state, &["merchant", "import", "--dry-run", csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("would add 2 merchants") && stdout(&o).contains("acme"), "{}", stderr(&o));
    assert_eq!(merchants(&state).len(), 1, "--dry-run writes nothing");
    let o = cli(&state, &["merchant", "import", csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("added 2 merchants"), "{}", stderr(&o));
    let all = merchants(&state);
    let acme = all.iter().find(|m| m["id"] == "acme").unwrap();
    assert_eq!(acme["contacts"], serde_json::json!(["pay@acme.test", "ops@acme.test"]));
    assert_eq!((acme["language"].as_str(), acme["business_no"].as_str()), (Some("en"), Some("2208162517")));
    assert_eq!(acme["applied_at"], "2026-11-01T15:00:00Z", "a date is midnight in Seoul");
    assert_eq!(all.iter().find(|m| m["id"] == "beta").unwrap()["name"], "Beta, Inc.");
    // Importing the same file again: every row exists now.
    assert!(refused(&state, &["merchant", "import", csv.to_str().unwrap()]).contains("2 bad rows"));

    // CP949, as Excel in Korea saves "CSV".
    let (cp949, _, _) = encoding_rs::EUC_KR.encode("id,name,contact\ngamma,감마상점,g@gamma.test\n");
    std::fs::write(&csv, &cp949).unwrap();
    ok(&state, &["merchant", "import", csv.to_str().unwrap()]);
    assert_eq!(merchants(&state).iter().find(|m| m["id"] == "gamma").unwrap()["name"], "감마상점");

    let err = refused(&state, &["merchant", "import", dir.path().join("missing.csv").to_str().unwrap()]);
    assert!(err.contains("cannot read"), "{err}");
    std::fs::write(&csv, "id,name\nx,y\n").unwrap();
    assert!(refused(&state, &["merchant", "import", csv.to_str().unwrap()]).contains("\"contact\" is missing"));
}

#[test]
fn import_and_edit_go_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "", &[]);
    d.wait_ready();
    let csv = dir.path().join("merchants.csv");
    std::fs::write(&csv, GOOD_CSV).unwrap();
    let o = d.cli(&["merchant", "import", csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = d.cli(&["merchant", "edit", "beta", "--add-contact", "b2@beta.test"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = d.json(&["merchant", "list"]);
    assert_eq!(list.len(), 2);
    let beta = list.iter().find(|m| m["id"] == "beta").unwrap();
    assert_eq!(beta["contacts"], serde_json::json!(["b@beta.test", "b2@beta.test"]));
    assert_eq!(d.terminate().0, Some(0));
}

#[test]
fn remove_then_add_with_the_same_id_starts_an_empty_timeline_and_the_old_one_is_kept_in_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    ok(state, &["merchant", "add", "--id", "acme", "--name", "에이씨미", "--contact", "pay@acme.test"]);
    ok(state, &["merchant", "advance", "acme", "guidance_received", "--note", "the first one"]);
    ok(state, &["merchant", "pause", "acme"]);
    assert_eq!(timeline(state, "acme").len(), 3);
    ok(state, &["merchant", "remove", "acme"]);
    ok(state, &["merchant", "add", "--id", "acme", "--name", "에이씨미", "--contact", "new@acme.test"]);
    let events = timeline(state, "acme");
    assert_eq!(events.len(), 1, "only its own registration: {events:?}");
    assert!(events[0].contains("registered"), "{events:?}");
    let export: serde_json::Value = serde_json::from_str(&ok(state, &["export"])).unwrap();
    let removed = export["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["merchant"]["contacts"], serde_json::json!(["pay@acme.test"]));
    assert_eq!(removed[0]["events"].as_array().unwrap().len(), 3, "the old timeline, kept");
    // The export, archive included, imports into a new directory as it was.
    let file = dir.path().join("backup.json");
    std::fs::write(&file, export.to_string()).unwrap();
    let other = dir.path().join("other");
    ok(&other, &["import", file.to_str().unwrap()]);
    let again: serde_json::Value = serde_json::from_str(&ok(&other, &["export"])).unwrap();
    assert_eq!(again["removed"], export["removed"]);
    assert_eq!(timeline(&other, "acme").len(), 1);
}

#[test]
fn reminders_json_names_the_window_and_the_date_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    ok(
        state,
        &[
            "merchant",
            "add",
            "--id",
            "acme",
            "--name",
            "에이씨미",
            "--contact",
            "pay@acme.test",
            "--applied-at",
            "2027-02-05",
        ],
    );
    ok(
        state,
        &[
            "merchant",
            "add",
            "--id",
            "beta",
            "--name",
            "베타",
            "--contact",
            "b@beta.test",
            "--applied-at",
            "2027-01-04",
        ],
    );
    ok(state, &["merchant", "advance", "beta", "card_review_requested", "--at", "2027-01-20"]);
    let due = ok(state, &["--json", "--now", "2027-02-15T10:00:00+09:00", "reminders"]);
    let rows: Vec<serde_json::Value> = due.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |id: &str| rows.iter().find(|r| r["merchant"] == id).unwrap_or_else(|| panic!("{id}: {due}")).clone();
    assert_eq!(
        (of("acme")["window"].as_str(), of("acme")["window_opened"].as_str()),
        (Some("guidance"), Some("2027-02-05"))
    );
    assert_eq!(
        (of("beta")["window"].as_str(), of("beta")["window_opened"].as_str()),
        (Some("card_review"), Some("2027-01-20"))
    );
    assert_eq!(of("acme")["kind"], "reminder");
    let text = ok(state, &["--now", "2027-02-15T10:00:00+09:00", "reminders"]);
    assert!(text.contains("guidance since 2027-02-05"), "{text}");
}

#[test]
fn outbox_lists_what_waits_and_show_renders_a_preview_of_a_message_not_tried_yet() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    ok(state, &["merchant", "add", "--id", "dalbit", "--name", "달빛상점", "--contact", "pay@dalbitshop.co.kr"]);
    let eml = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mail/guidance_euckr_b.eml");
    ok(state, &["import-mail", "--folder", "Junk", eml.to_str().unwrap()]);
    let rows: Vec<serde_json::Value> =
        ok(state, &["--json", "outbox", "--pending"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let key = rows[0]["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("spam/dalbit/"), "{key}");
    assert_eq!(
        (rows[0]["status"].as_str(), rows[0]["to"][0].as_str()),
        (Some("pending"), Some("pay@dalbitshop.co.kr"))
    );
    assert!(rows[0]["message_id"].is_null(), "not rendered before its first try");
    assert_eq!(ok(state, &["--json", "outbox", "--sent"]), "", "nothing sent");
    let text = ok(state, &["outbox"]);
    assert!(text.contains("pending") && text.contains(&key), "{text}");

    let shown = ok(state, &["outbox", "show", &key]);
    assert!(shown.contains("preview") && shown.contains("To: pay@dalbitshop.co.kr"), "{shown}");
    assert!(shown.contains("Subject: ") && shown.contains(&format!("X-Hecto-Watch: {key}")), "{shown}");
    assert!(shown.contains("스팸"), "the Korean notice text: {shown}");
    assert!(refused(state, &["outbox", "show", "nothing/here"]).contains("no outbox entry"));
    assert!(cli(state, &["outbox", "--sent", "--failed"]).status.code() == Some(2), "one filter at a time");
}

#[test]
fn calendar_lists_a_years_holidays_with_names_and_kinds_and_check_config_warns_of_an_uncovered_year() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let text = ok(state, &["calendar", "2027"]);
    assert!(text.contains("the data covers 2024–2027"), "{text}");
    assert!(text.contains("2027-02-09") && text.contains("substitute"), "설날's substitute day: {text}");
    let v: serde_json::Value = serde_json::from_str(&ok(state, &["--json", "calendar", "2026"])).unwrap();
    assert_eq!((v["year"].as_i64(), v["covered"].as_bool()), (Some(2026), Some(true)));
    let days = v["days"].as_array().unwrap();
    let chuseok = days.iter().find(|d| d["date"] == "2026-09-25").expect("추석 2026");
    assert_eq!((chuseok["kind"].as_str(), chuseok["weekday"].as_str()), (Some("public"), Some("Fri")));
    assert!(chuseok["name"].as_str().unwrap().contains("추석"), "{chuseok}");
    let v: serde_json::Value = serde_json::from_str(&ok(state, &["--json", "calendar", "2030"])).unwrap();
    assert_eq!(v["covered"], false);
    assert!(ok(state, &["calendar", "2030"]).contains("NOT COVERED"));
    // The current year by the clock.
    let v: serde_json::Value =
        serde_json::from_str(&ok(state, &["--json", "--now", "2025-03-01T00:00:00+09:00", "calendar"])).unwrap();
    assert_eq!(v["year"], 2025);

    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "").unwrap();
    let check = |now: &str| ok(state, &["--config", cfg.to_str().unwrap(), "--now", now, "check-config"]);
    let now = check("2026-12-01T10:00:00+09:00");
    assert!(!now.contains("warning") && now.contains("ok (0 accounts)"), "{now}");
    let later = check("2027-06-01T10:00:00+09:00");
    assert!(later.contains("warning: the holiday calendar does not cover 2028"), "{later}");
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mail").join(name).to_str().unwrap().to_owned()
}

fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn an_unassigned_mail_is_listed_shown_and_assigned_as_if_it_had_matched_or_dismissed_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // A merchant whose contact is not the mail's recipient: nothing matches either mail.
    ok(state, &["merchant", "add", "--id", "dalbit", "--name", "다른이름", "--contact", "other@dalbit.test"]);
    ok(state, &["import-mail", "--folder", "Junk", &fixture("guidance_euckr_b.eml")]);
    ok(state, &["import-mail", "--folder", "INBOX", &fixture("guidance_cp949_label_qp.eml")]);
    let open = lines(&ok(state, &["--json", "unassigned", "list"]));
    assert_eq!(open.len(), 2, "{open:?}");
    let (spam, inbox) = (&open[0], &open[1]);
    for field in
        ["id", "account", "folder", "message_id", "date", "subject", "kind", "candidates", "business_numbers", "mids"]
    {
        assert!(spam.get(field).is_some(), "{field} in {spam}");
    }
    assert_eq!(
        (spam["folder"].as_str(), spam["kind"].as_str(), spam["status"].as_str()),
        (Some("Junk"), Some("guidance"), Some("open"))
    );
    let (spam_id, inbox_id) = (spam["id"].to_string(), inbox["id"].to_string());
    // The operators' notice names the command that resolves it.
    let export: serde_json::Value = serde_json::from_str(&ok(state, &["export"])).unwrap();
    let notice = export["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "operator_notice" && e["facts"]["folder"] == "Junk")
        .unwrap()
        .clone();
    assert!(
        notice["facts"]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("hecto-watch unassigned assign {spam_id} MERCHANT")),
        "{notice}"
    );
    let shown = ok(state, &["unassigned", "show", &spam_id]);
    assert!(shown.contains("found in:     import: Junk"), "{shown}");
    assert!(shown.contains(&format!("hecto-watch unassigned assign {spam_id} MERCHANT")), "{shown}");

    let out = ok(state, &["unassigned", "assign", &spam_id, "dalbit", "--note", "shared inbox"]);
    assert!(out.contains("guidance_received") && out.contains("queued spam/dalbit/"), "{out}");
    let m = &merchants(state)[0];
    assert_eq!((m["stage"].as_str(), m["found_in_spam"].as_bool()), (Some("guidance_received"), Some(true)));
    let events = timeline(state, "dalbit");
    assert!(events.iter().any(|e| e.contains("guidance_received")), "{events:?}");
    let v: serde_json::Value = serde_json::from_str(&ok(state, &["--json", "merchant", "show", "dalbit"])).unwrap();
    let evidence: Vec<String> = v["events"].as_array().unwrap().iter().map(|e| e["evidence"].to_string()).collect();
    assert!(
        evidence.iter().any(|e| e.contains("assigned by operator") && e.contains("Junk")),
        "the mail's evidence: {evidence:?}"
    );
    assert!(refused(state, &["unassigned", "assign", &spam_id, "dalbit"]).contains("already assigned to dalbit"));
    assert!(refused(state, &["unassigned", "dismiss", &spam_id]).contains("already assigned"));

    ok(state, &["unassigned", "dismiss", &inbox_id, "--note", "a test mail"]);
    assert!(refused(state, &["unassigned", "dismiss", &inbox_id]).contains("already dismissed"));
    assert!(refused(state, &["unassigned", "assign", &inbox_id, "dalbit"]).contains("already dismissed"));
    assert_eq!(ok(state, &["--json", "unassigned", "list"]), "", "both off the list");
    let all = lines(&ok(state, &["--json", "unassigned", "list", "--all"]));
    assert_eq!(all.iter().map(|r| r["status"].as_str().unwrap()).collect::<Vec<_>>(), ["assigned", "dismissed"]);
    assert!(refused(state, &["unassigned", "show", "999"]).contains("no unassigned mail 999"));
    assert!(refused(state, &["unassigned", "assign", "999", "dalbit"]).contains("no unassigned mail 999"));
}

#[test]
fn unassigned_commands_go_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "", &[]);
    d.wait_ready();
    d.add_merchant("dalbit", "다른이름", "other@dalbit.test", None);
    let o = d.cli(&["import-mail", "--folder", "INBOX", &fixture("guidance_euckr_b.eml")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let open = d.json(&["unassigned", "list"]);
    assert_eq!(open.len(), 1);
    let id = open[0]["id"].to_string();
    let o = d.cli(&["unassigned", "assign", &id, "dalbit"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(d.json(&["status"])[0]["stage"], "guidance_received");
    assert!(d.json(&["unassigned", "list"]).is_empty());
    // The operators' notice about it waits in the outbox (no [smtp] here), seen through the daemon.
    let pending = d.json(&["outbox", "--pending"]);
    assert!(pending.iter().any(|r| r["kind"] == "operator_notice"), "{pending:?}");
    let key = pending[0]["key"].as_str().unwrap().to_owned();
    let o = d.cli(&["outbox", "show", &key]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(d.terminate().0, Some(0));
}

fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let o = cli(Path::new("/nonexistent-state"), &all);
    assert_eq!(o.status.code(), Some(0), "{args:?} --help: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn help_teaches_every_command_has_examples_the_stages_are_listed_and_global_options_have_their_heading() {
    let commands: &[&[&str]] = &[
        &["run"],
        &["check-config"],
        &["scan"],
        &["folders"],
        &["health"],
        &["oauth"],
        &["classify"],
        &["merchant"],
        &["merchant", "add"],
        &["merchant", "edit"],
        &["merchant", "import"],
        &["merchant", "advance"],
        &["status"],
        &["reminders"],
        &["remind"],
        &["unassigned"],
        &["outbox"],
        &["retry"],
        &["import-mail"],
        &["export"],
        &["calendar"],
        &["import"],
        &["completions"],
        &["man"],
    ];
    for c in commands {
        let text = help(c);
        assert!(text.contains("Example"), "{c:?} --help has examples:\n{text}");
        assert!(text.contains("Global options:") && text.contains("--state-dir <DIR>"), "{c:?}:\n{text}");
        // Every argument and option is described: its name, then two spaces, then what it is.
        let described = text.split("Example").next().unwrap_or_default();
        for line in described.lines().map(str::trim_start).filter(|l| l.starts_with('-') || l.starts_with('<')) {
            assert!(line.trim_end().contains("  "), "{c:?}: undescribed argument {line:?}");
        }
    }
    let advance = help(&["merchant", "advance"]);
    for stage in ["applied", "guidance_received", "contract_completed", "card_review_requested", "live"] {
        assert!(advance.contains(stage), "{stage} listed:\n{advance}");
    }
    let add = help(&["merchant", "add"]);
    for v in ["--id <ID>", "--contact <EMAIL>", "--applied-at <DATE>", "--business-no <NUMBER>"] {
        assert!(add.contains(v), "{v}:\n{add}");
    }
    assert!(help(&["scan"]).contains("Usage: hecto-watch scan [OPTIONS] --once"), "--once shown as required");
    assert!(help(&["remind"]).contains("--once"), "remind");
    let o = cli(Path::new("/nonexistent-state"), &["--now", "2027-01-01T00:00:00Z", "export"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--now means nothing for `export`"), "{}", stderr(&o));
}

#[test]
fn completions_for_bash_zsh_and_fish_and_a_man_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |shell: &str| ok(dir.path(), &["completions", shell]);
    // bash: the script loads and registers the completion.
    let script = dir.path().join("hw.bash");
    std::fs::write(&script, gen("bash")).unwrap();
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p hecto-watch", script.display()))
        .output()
        .unwrap();
    assert!(o.status.success() && stdout(&o).contains("hecto-watch"), "{}{}", stdout(&o), stderr(&o));
    assert!(gen("zsh").starts_with("#compdef hecto-watch"));
    let fish = gen("fish");
    assert!(fish.contains("complete -c hecto-watch") && fish.contains("unassigned"), "{fish}");
    let man = ok(dir.path(), &["man"]);
    assert!(man.starts_with(".ie") || man.starts_with(".TH"), "roff: {}", &man[..man.len().min(200)]);
    assert!(man.contains(".TH hecto-watch") && man.contains("merchant"), "{}", &man[..man.len().min(400)]);
    assert!(refused(dir.path(), &["completions", "tcsh"]).contains("tcsh"), "an unknown shell is refused");
    let o = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(man.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "groff reads the page without warnings: {}", stderr(&o));
}
