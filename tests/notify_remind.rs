//! `remind --once` through the real Postfix → Dovecot (scripts/mailstack): what is sent, when
//! (Korean business days, the card-review window, repeats and the cap), exactly once, and how it
//! reads in the recipient's mailbox.

mod notify_support;

use notify_support::{expected_message_id, Env, Stack};

#[tokio::test]
async fn remind_once_delivers_the_korean_guidance_reminder_to_contact_and_operator() {
    let stack = Stack::shared();
    let env = Env::new(stack, "guid");
    env.add_merchant("acme", "주식회사 에이씨미", "2027-02-05T10:00:00+09:00");
    let out = env.remind("2027-02-15T09:00:00+09:00", 0);
    let key = "reminder/acme/guidance@20270205/001";
    assert!(out.contains(&format!("sent     {key}")), "{out}");

    let mails = stack.wait_for(&env.contact, "INBOX", "the guidance reminder", |m| m.x_hecto_watch.is_some()).await;
    let m = mails.iter().find(|m| m.x_hecto_watch.as_deref() == Some(key)).unwrap();
    // The Korean subject travelled RFC 2047-encoded and decodes back.
    let raw_subject = m.raw_subject_header();
    assert!(raw_subject.is_ascii() && raw_subject.contains("=?utf-8?b?"), "{raw_subject}");
    assert!(m.subject.contains("헥토파이낸셜 계약 안내 메일을 스팸메일함에서 찾아 주세요"), "{}", m.subject);
    assert!(m.subject.contains("주식회사 에이씨미"), "{}", m.subject);
    assert_eq!(m.to, vec![env.contact.clone()]);
    assert_eq!(m.cc, vec![env.ops.clone()]);
    assert_eq!(m.message_id, expected_message_id(key));
    // Business days since Fri 02-05 up to Mon 02-15, over 설날 (02-08…02-10) and the weekends.
    assert!(m.text.contains("영업일 기준 4일"), "{}", m.text);
    assert!(m.text.contains("스팸으로 분류되는 경우가 많습니다"), "{}", m.text);
    assert!(m.text.contains("Junk"), "names the watched spam folder: {}", m.text);
    assert!(
        m.text.contains("1688-5130") && m.text.contains("info_F@hecto.co.kr") && m.text.contains("cs@portone.io"),
        "{}",
        m.text
    );
    assert!(m.html.contains("<strong>Junk</strong>"), "{}", m.html);

    let ops =
        stack.wait_for(&env.ops, "INBOX", "the operator's copy", |m| m.x_hecto_watch.as_deref() == Some(key)).await;
    assert_eq!(ops.iter().filter(|m| m.message_id == expected_message_id(key)).count(), 1);

    // Our own mail, scanned back (X-Hecto-Watch), is ignored by the ingest.
    let eml = env.dir.path().join("own.eml");
    std::fs::write(&eml, &m.raw).unwrap();
    let line = env.ok(0, &["import-mail", "--json", "--folder", "INBOX", eml.to_str().unwrap()]);
    let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(line["own_mail"], true, "{line}");
    assert_eq!(line["stage_changed"], false, "{line}");
}

/// SPEC §5: when the daemon reads the contact's mailbox itself, the guidance reminder says which
/// folders it read — the spam folder by its real name — and that nothing from Hecto is there,
/// instead of sending people to search a spam folder already searched. `health` shows the same.
#[tokio::test]
async fn a_contact_whose_mailbox_is_watched_hears_which_folders_were_checked() {
    let stack = Stack::shared();
    let env = Env::new(stack, "wtch");
    env.add_merchant("acme", "주식회사 에이씨미", "2027-02-05T10:00:00+09:00");
    // Read a minute before the reminder tick (a reminder claims only a fresh read).
    env.ok(0, &["scan", "--once", "--now", "2027-02-15T08:59:00+09:00"]);
    let health = env.ok(0, &["health", "--json"]);
    let h: serde_json::Value = serde_json::from_str(health.trim()).unwrap();
    assert_eq!(
        (h["account"].as_str(), h["state"].as_str(), h["daemon_running"].as_bool()),
        (Some("contracts"), Some("ok"), Some(false)),
        "{h}"
    );
    env.remind("2027-02-15T09:00:00+09:00", 0);
    let key = "reminder/acme/guidance@20270205/001";
    let mails = stack.wait_for(&env.contact, "INBOX", "the guidance reminder", |m| m.x_hecto_watch.is_some()).await;
    let m = mails.iter().find(|m| m.x_hecto_watch.as_deref() == Some(key)).unwrap();
    assert!(m.subject.contains("계약 안내 메일이 아직 오지 않았습니다"), "{}", m.subject);
    assert!(m.text.contains(&env.contact), "names the mailbox read: {}", m.text);
    assert!(m.text.contains("INBOX, Junk"), "lists the folders read: {}", m.text);
    assert!(m.text.contains("스팸메일함(Junk)을 포함해"), "the spam folder by its real name: {}", m.text);
    assert!(m.text.contains("헥토파이낸셜의 메일은 아직 없습니다"), "{}", m.text);
    assert!(!m.text.contains("다음 스팸 폴더를 확인해 주세요"), "{}", m.text);
    assert!(m.text.contains("1688-5130") && m.text.contains("cs@portone.io"), "{}", m.text);
}

#[tokio::test]
async fn english_language_sends_the_english_reminder() {
    let stack = Stack::shared();
    let env = Env::new(stack, "engl");
    env.write_config(&notify_support::ConfigOpts {
        stack,
        operators: vec![env.ops.clone()],
        smtp: None,
        language: "en",
    });
    env.add_merchant("acme", "ACME <Pay> & Co", "2027-02-05T10:00:00+09:00");
    env.remind("2027-02-15T09:00:00+09:00", 0);
    let mails = stack.wait_for(&env.contact, "INBOX", "the reminder", |m| m.x_hecto_watch.is_some()).await;
    let m = &mails[0];
    assert!(m.subject.starts_with("[Action needed] ACME <Pay> & Co"), "{}", m.subject);
    assert!(m.text.contains("4 business days"), "{}", m.text);
    assert!(m.html.contains("ACME &lt;Pay&gt; &amp; Co"), "values are HTML-escaped: {}", m.html);
}

#[tokio::test]
async fn korean_holidays_nothing_due_on_feb_11_2027_due_on_feb_15() {
    let stack = Stack::shared();
    let env = Env::new(stack, "seol");
    env.add_merchant("acme", "에이씨미", "2027-02-05T10:00:00+09:00");
    // Fri 02-05 + 3 business days over 설날 (02-08…02-10 incl. substitute day) → due end of 02-12.
    let out = env.remind("2027-02-11T09:00:00+09:00", 0);
    assert!(out.contains("nothing to send"), "{out}");
    assert!(env.outbox().is_empty(), "nothing enqueued on 02-11");
    let out = env.remind("2027-02-15T09:00:00+09:00", 0);
    assert!(out.contains("sent     reminder/acme/guidance@20270205/001"), "{out}");
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
}

#[tokio::test]
async fn card_review_requested_dec_1_is_due_dec_16_not_dec_14() {
    let stack = Stack::shared();
    let env = Env::new(stack, "card");
    env.add_merchant("acme", "에이씨미", "2026-11-02T10:00:00+09:00");
    env.ok(0, &["merchant", "advance", "acme", "card_review_requested", "--at", "2026-12-01T15:00:00+09:00"]);
    let out = env.remind("2026-12-14T09:00:00+09:00", 0);
    assert!(out.contains("nothing to send"), "{out}");
    let out = env.remind("2026-12-16T09:00:00+09:00", 0);
    let key = "reminder/acme/card_review@20261201/001";
    assert!(out.contains(&format!("sent     {key}")), "{out}");
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m.x_hecto_watch.as_deref(), Some(key));
    assert!(m.subject.contains("카드사 심사 요청 후 15일"), "{}", m.subject);
    assert!(m.text.contains("2026-12-01 (화)"), "says when it was requested: {}", m.text);
    assert!(m.text.contains("약 2주"), "says it takes about two weeks: {}", m.text);
}

#[tokio::test]
async fn repeats_every_two_business_days_and_a_fourth_tick_after_three_sends_nothing() {
    let stack = Stack::shared();
    let env = Env::new(stack, "caps");
    // Mon 2026-11-02 → due end of Thu 11-05.
    env.add_merchant("acme", "에이씨미", "2026-11-02T10:00:00+09:00");
    let ticks = [
        ("2026-11-06T09:00:00+09:00", Some(1)),
        ("2026-11-09T09:00:00+09:00", None), // one business day after the first: too soon
        ("2026-11-10T09:00:00+09:00", Some(2)),
        ("2026-11-12T09:00:00+09:00", Some(3)),
        ("2026-11-16T09:00:00+09:00", None), // the fourth due tick: the cap
        ("2026-11-30T09:00:00+09:00", None),
    ];
    for (now, n) in ticks {
        let out = env.remind(now, 0);
        match n {
            Some(n) => {
                assert!(out.contains(&format!("sent     reminder/acme/guidance@20261102/{n:03}")), "{now}: {out}")
            }
            None => assert!(out.contains("nothing to send"), "{now}: {out}"),
        }
    }
    let mut subjects: Vec<String> = stack.after_barrier(&env.contact).await.into_iter().map(|m| m.subject).collect();
    subjects.sort();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    for (i, s) in subjects.iter().enumerate() {
        assert!(s.ends_with(&format!("({}/3)", i + 1)), "{s}");
    }
}

#[tokio::test]
async fn remind_once_twice_at_the_same_now_sends_once() {
    let stack = Stack::shared();
    let env = Env::new(stack, "twice");
    env.add_merchant("acme", "에이씨미", "2027-02-05T10:00:00+09:00");
    let first = env.remind("2027-02-15T09:00:00+09:00", 0);
    assert!(first.contains("sent "), "{first}");
    let second = env.remind("2027-02-15T09:00:00+09:00", 0);
    assert!(second.contains("nothing to send"), "{second}");
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let ops = stack.after_barrier(&env.ops).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
}

#[tokio::test]
async fn killed_between_enqueue_and_send_delivers_exactly_once_after_restart() {
    let stack = Stack::shared();
    let env = Env::new(stack, "crash");
    env.add_merchant("acme", "에이씨미", "2027-02-05T10:00:00+09:00");
    let key = "reminder/acme/guidance@20270205/001";
    let now = "2027-02-15T09:00:00+09:00";

    // Dies right after the due reminders were enqueued and flushed, before any send.
    let o = env.hw_env(&["remind", "--once", "--now", now], &[("HECTO_WATCH_TEST_CRASH_AFTER", "enqueue")]);
    assert!(!o.status.success(), "the crash hook must abort: {}", notify_support::stderr(&o));
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["key"], key);
    assert_eq!(outbox[0]["status"], "pending");
    assert_eq!(outbox[0]["attempts"], 0);
    assert!(stack.after_barrier(&env.contact).await.is_empty(), "nothing was sent before the crash");

    // Dies after rendering (stored), before the first send.
    let o = env.hw_env(&["remind", "--once", "--now", now], &[("HECTO_WATCH_TEST_CRASH_AFTER", "render")]);
    assert!(!o.status.success());
    let outbox = env.outbox();
    assert_eq!(outbox[0]["status"], "pending");
    assert_eq!(outbox[0]["rendered"]["message_id"], format!("<{}>", expected_message_id(key)));

    // The restart sends it, once.
    let out = env.remind(now, 0);
    assert!(out.contains(&format!("sent     {key}")), "{out}");
    env.remind(now, 0);
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].message_id, expected_message_id(key));
}

#[tokio::test]
async fn a_permanent_5xx_gives_up_after_three_tries_shows_in_failed_and_retry_puts_it_back() {
    let stack = Stack::shared();
    let env = Env::new(stack, "perm");
    // Port 25-style delivery without AUTH: relaying to another domain is refused with 554 5.7.1.
    env.write_config(&notify_support::ConfigOpts {
        stack,
        operators: vec![env.ops.clone()],
        smtp: Some(format!(
            "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Hecto Watch <noreply@example.test>\"\ntimeout = \"20s\"\n",
            stack.port("MAILSTACK_SMTP_PORT")
        )),
        language: "ko",
    });
    env.ok(
        0,
        &[
            "merchant",
            "add",
            "--id",
            "far",
            "--name",
            "원격상사",
            "--contact",
            "pay@elsewhere.invalid",
            "--applied-at",
            "2027-02-05",
        ],
    );
    let key = "reminder/far/guidance@20270205/001";
    let out = env.remind("2027-02-15T09:00:00+09:00", 1);
    assert!(out.contains(&format!("retrying {key}")) && out.contains("554"), "{out}");
    let out = env.remind("2027-02-15T10:00:00+09:00", 1);
    assert!(out.contains(&format!("retrying {key}")), "{out}");
    let out = env.remind("2027-02-15T11:00:00+09:00", 1);
    assert!(out.contains(&format!("failed   {key}")), "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{}", stack.port("MAILSTACK_SMTP_PORT"))),
        "the error names the server: {out}"
    );
    // Given up: later ticks leave it alone.
    let out = env.remind("2027-02-15T15:00:00+09:00", 0);
    assert!(out.contains("nothing to send"), "{out}");
    let failed = env.ok(0, &["reminders", "--failed", "--json"]);
    let line: serde_json::Value = serde_json::from_str(failed.trim()).unwrap();
    assert_eq!(line["key"], key);
    assert_eq!(line["attempts"], 3);
    assert!(line["last_error"].as_str().unwrap().contains("554"), "{line}");

    let out = env.ok(0, &["retry", key]);
    assert!(out.contains(key), "{out}");
    assert!(env.ok(0, &["reminders", "--failed"]).contains("no failed messages"));
    let out = env.remind("2027-02-15T16:00:00+09:00", 1);
    assert!(out.contains(&format!("retrying {key}")), "back in the outbox and tried again: {out}");
    // A key that was never there, and no key at all, are usage errors.
    assert_eq!(env.hw(&["retry", "reminder/nobody/x/001"]).status.code(), Some(2));
    assert_eq!(env.hw(&["retry"]).status.code(), Some(2));
}

#[tokio::test]
async fn reminders_go_only_on_business_days_inside_the_sending_hours() {
    let stack = Stack::shared();
    let env = Env::new(stack, "hours");
    // Mon 2027-02-01 → due end of Thu 02-04; overdue over 설날 (02-06…02-09).
    env.add_merchant("acme", "에이씨미", "2027-02-01T10:00:00+09:00");
    for now in [
        "2027-02-08T09:00:00+09:00", // 설날: a public holiday
        "2027-02-10T03:00:00+09:00", // a business day, but 3 a.m. (a daemon starting at night)
        "2027-02-10T08:59:00+09:00",
    ] {
        let out = env.remind(now, 0);
        assert!(out.contains("nothing to send"), "{now}: {out}");
    }
    let out = env.remind("2027-02-10T09:00:00+09:00", 0);
    let key = "reminder/acme/guidance@20270201/001";
    assert!(out.contains(&format!("sent     {key}")), "{out}");
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "exactly the one reminder, after the holiday: {mails:?}");
    assert_eq!(mails[0].x_hecto_watch.as_deref(), Some(key));
}

#[tokio::test]
async fn a_merchant_with_two_contacts_and_its_own_language_gets_one_reminder_in_that_language_at_both() {
    let stack = Stack::shared();
    let env = Env::new(stack, "multi"); // [reminders] language = "ko"
    let second = stack.fresh_user("multi-2");
    env.ok(
        0,
        &[
            "merchant",
            "add",
            "--id",
            "acme",
            "--name",
            "에이씨미",
            "--contact",
            &env.contact,
            "--contact",
            &second,
            "--language",
            "en",
            "--applied-at",
            "2027-02-05T10:00:00+09:00",
        ],
    );
    let out = env.remind("2027-02-15T09:00:00+09:00", 0);
    assert!(out.contains("sent     reminder/acme/guidance@20270205/001"), "{out}");
    for user in [&env.contact, &second] {
        let mails = stack.after_barrier(user).await;
        assert_eq!(mails.len(), 1, "one message, at each contact: {mails:?}");
        let m = &mails[0];
        assert_eq!(m.to, vec![env.contact.clone(), second.clone()]);
        assert!(m.subject.starts_with("[Action needed] 에이씨미"), "the merchant's language: {}", m.subject);
        assert!(!m.text.contains("헥토파이낸셜 계약 안내"), "{}", m.text);
    }
}

#[tokio::test]
async fn remind_once_over_implicit_tls_submission_delivers_and_check_config_connects_there() {
    // Port 465 in the wild (Naver, Daum, Kakao, Gmail): TLS from the first byte, then AUTH.
    let stack = Stack::shared();
    let env = Env::new(stack, "smtps");
    env.write_config(&notify_support::ConfigOpts {
        stack,
        operators: vec![env.ops.clone()],
        smtp: Some(format!(
            "host = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nca_file = \"{}\"\nusername = \"ops@{d}\"\n\
             password = {{ value = \"{}\" }}\nfrom = \"Hecto Watch <noreply@{d}>\"\ntimeout = \"20s\"\n",
            stack.port("MAILSTACK_SUBMISSIONS_PORT"),
            stack.ca_file(),
            stack.password(),
            d = notify_support::DOMAIN,
        )),
        language: "ko",
    });
    env.add_merchant("acme", "에이씨미", "2027-02-05T10:00:00+09:00");
    let key = "reminder/acme/guidance@20270205/001";
    let out = env.remind("2027-02-15T09:00:00+09:00", 0);
    assert!(out.contains(&format!("sent     {key}")), "{out}");
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].message_id, expected_message_id(key));
    let checked = env.ok(0, &["check-config", "--connect"]);
    let port = stack.port("MAILSTACK_SUBMISSIONS_PORT");
    assert!(checked.contains(&format!("smtp: connected to 127.0.0.1:{port}")), "{checked}");
}

#[tokio::test]
async fn outbox_shows_what_was_sent_when_and_with_which_message_id() {
    let stack = Stack::shared();
    let env = Env::new(stack, "obx");
    env.add_merchant("acme", "에이씨미", "2027-02-05T10:00:00+09:00");
    let key = "reminder/acme/guidance@20270205/001";
    env.remind("2027-02-15T09:00:00+09:00", 0);
    let rows: Vec<serde_json::Value> =
        env.ok(0, &["--json", "outbox", "--sent"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["key"], key);
    assert_eq!(rows[0]["message_id"], format!("<{}>", expected_message_id(key)));
    assert!(rows[0]["sent_at"].is_string() && rows[0]["attempts"] == 1, "{}", rows[0]);
    let shown = env.ok(0, &["outbox", "show", key]);
    assert!(!shown.contains("preview"), "as sent: {shown}");
    let mails = stack.after_barrier(&env.contact).await;
    assert!(shown.contains(&format!("Subject: {}", mails[0].subject)), "the subject as received: {shown}");
    assert!(shown.contains(&format!("Message-ID: <{}>", mails[0].message_id)), "{shown}");
}
