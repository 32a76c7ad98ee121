//! Hands-off health (issue 11): one account's trouble never silences the others, the operators
//! hear about it once, and the watchdog restarts only a daemon that is itself stuck. The real
//! binary against the real mail stack (Dovecot, Postfix), with a `NOTIFY_SOCKET`.

mod daemon_support;
mod notify_support;
mod support;

use std::time::{Duration, Instant};

use daemon_support::{eventually, Daemon};
use support::{account_toml, fresh_user, guidance_mail, message_id, smtp_deliver, smtp_toml, Tls};

/// A port nothing listens on: connections to it are refused at once.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

fn dead_account(name: &str, port: u16) -> String {
    format!(
        "[[accounts]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"nobody@example.test\"\npassword = {{ value = \"x\" }}\n"
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn health(d: &Daemon) -> (i32, Vec<serde_json::Value>) {
    let o = d.cli(&["--json", "health"]);
    let lines = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (o.status.code().unwrap_or(-1), lines)
}

#[test]
fn one_unreachable_account_holds_back_neither_ready_nor_the_other_accounts_mail_and_reminders() {
    let user = fresh_user("ready-good", false);
    // acme's contact is another mailbox: a guidance mail to `user` must match beta alone.
    let acme_contact = fresh_user("ready-acme", false);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}{}",
        // The daemon's clock runs from 2027-02-15 while the mail is dated today: back-fill far
        // enough that the first sync takes today's mail as recent.
        account_toml("contracts", &user, Tls::Starttls, "poll_interval = \"1s\"\nbackfill_days = 3650"),
        dead_account("dead", closed_port()),
        smtp_toml(&user, &[], "")
    );
    // Monday 2027-02-15 09:30 KST, a business day inside the sending hours; acme applied on
    // Fri 02-05, so its guidance window lapsed on 02-12 and the start-up tick reminds it.
    std::fs::write(dir.path().join("config.toml"), &config).unwrap();
    {
        let store = hecto_watch::store::Store::open(&dir.path().join("state")).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2027-02-05T10:00:00+09:00").unwrap().to_utc();
        for (id, contact, applied) in
            [("acme", &acme_contact, Some("2027-02-05T10:00:00+09:00")), ("beta", &user, None)]
        {
            let m = hecto_watch::ops::NewMerchant {
                id: id.into(),
                name: id.to_uppercase(),
                contacts: vec![contact.clone()],
                applied_at: applied.map(str::to_owned),
                ..Default::default()
            };
            hecto_watch::ops::merchant_add(&store, &m, at).unwrap();
        }
        store.flush_blocking().unwrap();
    }
    let started = Instant::now();
    let d = Daemon::start_at(dir.path(), &config, &[], "2027-02-15T09:30:00+09:00");
    let ready = d.wait_notify("READY=1", Duration::from_secs(60));
    let took = started.elapsed();
    eprintln!("READY with one unreachable account after {} ms", took.as_millis());
    // From the first attempts, not from the 45 s bound.
    assert!(took < Duration::from_secs(40), "READY came from the bound, not the attempts: {took:?}");
    assert!(ready.contains("account \"dead\" unreadable"), "STATUS names the dead account: {ready}");
    assert!(!ready.contains("\"contracts\""), "the good account is readable: {ready}");

    // The good account's guidance mail is processed...
    rt().block_on(smtp_deliver(
        "contract@hectofinancial.co.kr",
        &user,
        &guidance_mail(&user, &message_id("ready"), &[]),
    ));
    eventually(Duration::from_secs(20), "beta's guidance received", || {
        d.json(&["status"]).iter().any(|r| r["id"] == "beta" && r["stage"] == "guidance_received")
    });
    // ...and its merchant's reminder goes out: the schedule did not wait for the dead account.
    let stack = notify_support::Stack::shared();
    let mails = rt().block_on(stack.wait_for(&acme_contact, "INBOX", "acme's reminder", |m| {
        m.x_hecto_watch.as_deref() == Some("reminder/acme/guidance@20270205/001")
    }));
    assert!(mails.iter().any(|m| m.subject.contains("ACME")));

    // `health` through the daemon: exit 1, the dead account down with its trouble, the good one ok.
    let (code, accounts) = health(&d);
    assert_eq!(code, 1, "{accounts:?}");
    let by_name = |n: &str| accounts.iter().find(|a| a["account"] == n).unwrap().clone();
    let (good, dead) = (by_name("contracts"), by_name("dead"));
    assert_eq!((good["state"].as_str(), good["readable"].as_bool()), (Some("ok"), Some(true)), "{good}");
    assert!(good["folders"].as_array().unwrap().iter().any(|f| f["folder"] == "Junk" && f["last_ok"].is_string()));
    assert_eq!((dead["state"].as_str(), dead["trouble"].as_str()), (Some("down"), Some("unreachable")), "{dead}");
    assert!(dead["since"].is_string() && dead["failures"].as_u64() >= Some(1), "{dead}");
    assert!(dead["fix"].as_str().unwrap().contains("127.0.0.1:"), "{dead}");
    assert_eq!(dead["daemon_running"], true);
    let text = String::from_utf8_lossy(&d.cli(&["health"]).stdout).into_owned();
    assert!(text.contains("account dead: UNREADABLE since") && text.contains("1 of 2 accounts not readable"), "{text}");

    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
    // From the stored state with no daemon running: the same verdict.
    let o = daemon_support::cli(
        &dir.path().join("state"),
        &["--config", dir.path().join("config.toml").to_str().unwrap(), "health"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("the daemon is not running"));
}

/// WATCHDOG proves the daemon's own loops run: an account whose server refuses every connection
/// does not stop the pings (a restart cannot fix it), a task wedged on purpose does.
#[test]
fn a_dead_server_keeps_the_watchdog_fed_and_a_wedged_task_stops_it() {
    let every = Duration::from_millis(200);
    let envs = |wedge: Option<&str>| {
        let mut e = vec![("WATCHDOG_USEC", "400000".to_owned())];
        if let Some(w) = wedge {
            e.push(("HECTO_WATCH_TEST_WEDGE", w.to_owned()));
        }
        e
    };
    let config = format!("{}[alerts]\naccount_down_after = \"1h\"\n", dead_account("dead", closed_port()));

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &config, &envs(None));
    d.wait_ready();
    let pings =
        d.notifications_for(Duration::from_secs(6)).into_iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 20, "pings every {every:?} go on with a dead server: {pings} in 6 s");
    // ...because every failed attempt of the dead account's watcher is progress of that task.
    let (_, accounts) = health(&d);
    let tasks = accounts[0]["tasks"].as_array().unwrap();
    let dead = tasks.iter().find(|t| t["task"] == "imap dead").unwrap_or_else(|| panic!("{tasks:?}"));
    assert!(dead["beats"].as_u64() >= Some(3) && dead["wedged"] == false, "{dead}");
    d.terminate();

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &config, &envs(Some("alerts")));
    d.wait_ready();
    let ready_at = Instant::now();
    let seen = d.notifications_for(Duration::from_secs(4));
    let pings: Vec<Duration> =
        seen.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).map(|(t, _)| t.duration_since(ready_at)).collect();
    // The wedged task promised a beat within 1 s of its last: pings stop soon after, for good.
    assert!(pings.iter().all(|t| *t < Duration::from_millis(2500)), "pings after the task wedged: {pings:?}");
    assert!(d.log_text().contains("withholding the watchdog ping"), "{}", d.log_text());
    let text = String::from_utf8_lossy(&d.cli(&["health"]).stdout).into_owned();
    assert!(text.contains("task alerts has not made progress"), "health names the wedged task: {text}");
    d.terminate();
}

fn ops_mail(
    stack: &notify_support::Stack,
    ops: &str,
    what: &str,
    pred: impl Fn(&notify_support::Mail) -> bool,
) -> notify_support::Mail {
    rt().block_on(stack.wait_for(ops, "INBOX", what, |m| pred(m))).into_iter().find(|m| pred(m)).unwrap()
}

fn is_alert(m: &notify_support::Mail, account: &str, what: &str) -> bool {
    m.x_hecto_watch.as_deref().is_some_and(|k| k.starts_with(&format!("alert/{account}/")) && k.ends_with(what))
}

/// SPEC §5: a refused login is told after two tries, once — not once per retry, not again after a
/// restart during the same outage — and once more when the account can be read again.
#[test]
fn a_refused_login_alerts_the_operators_once_and_once_more_when_fixed() {
    let stack = notify_support::Stack::shared();
    let user = fresh_user("alert-login", false);
    let ops = fresh_user("alert-ops", false);
    let good = account_toml("shop", &user, Tls::Starttls, "poll_interval = \"1s\"");
    let wrong = good.replace(&format!("value = \"{}\"", support::stack().password), "value = \"not-the-password\"");
    assert_ne!(good, wrong);
    let rest = smtp_toml(&ops, &[&ops], "[alerts]\naccount_down_after = \"1h\"\n");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let d = Daemon::start(dir.path(), &format!("{wrong}{rest}"), &[]);
    let down = ops_mail(stack, &ops, "the account-down alert", |m| is_alert(m, "shop", "/down"));
    eprintln!("refused-login alert in the operators' INBOX {} ms after the start", started.elapsed().as_millis());
    assert!(down.subject.contains("shop") && down.subject.contains("login refused"), "{}", down.subject);
    assert!(down.text.contains("wrong username or password"), "the likely fix: {}", down.text);
    assert!(
        down.text.contains("AUTHENTICATIONFAILED") || down.text.contains("failed"),
        "the last error: {}",
        down.text
    );

    // A restart during the same outage: it keeps failing (the stored failures grow) and alerts no one.
    d.terminate();
    let d = Daemon::start(dir.path(), &format!("{wrong}{rest}"), &[]);
    d.wait_ready();
    let failures = |d: &Daemon| health(d).1[0]["failures"].as_u64().unwrap_or(0);
    let before = failures(&d);
    eventually(Duration::from_secs(30), "another refused login after the restart", || failures(&d) > before);

    // Fixed and reloaded: one notice that it can be read again.
    std::fs::write(&d.config, format!("{good}{rest}")).unwrap();
    daemon_support::signal(d.child.id(), "HUP");
    let up = ops_mail(stack, &ops, "the account-up notice", |m| is_alert(m, "shop", "/up"));
    assert!(up.subject.contains("can be read again") || up.subject.contains("다시 읽을 수 있습니다"), "{}", up.subject);
    let all = rt().block_on(stack.after_barrier(&ops));
    let downs = all.iter().filter(|m| is_alert(m, "shop", "/down")).count();
    assert_eq!(downs, 1, "one alert for the whole outage, restart included");
    assert_eq!(health(&d).0, 0);
    d.terminate();
}

/// An unreachable server is told after `[alerts] account_down_after`, with the likely fix.
#[test]
fn an_unreachable_account_alerts_after_account_down_after() {
    let stack = notify_support::Stack::shared();
    let ops = fresh_user("alert-net-ops", false);
    let port = closed_port();
    let config =
        format!("{}{}", dead_account("far", port), smtp_toml(&ops, &[&ops], "[alerts]\naccount_down_after = \"2s\"\n"));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let d = Daemon::start(dir.path(), &config, &[]);
    let m = ops_mail(stack, &ops, "the unreachable alert", |m| is_alert(m, "far", "/down"));
    eprintln!(
        "unreachable-account alert (account_down_after = 2s) {} ms after the start",
        started.elapsed().as_millis()
    );
    assert!(m.subject.contains("unreachable"), "{}", m.subject);
    assert!(m.text.contains(&format!("127.0.0.1:{port}")), "the fix names the server: {}", m.text);
    d.terminate();
}

/// A server that greets and then never answers (a hung server) holds a first attempt until the
/// I/O timeout (60 s): READY comes at its 45 s bound anyway, the account reported as not checked
/// yet, and the schedule and outbox start.
#[test]
fn a_server_that_hangs_after_its_greeting_delays_ready_only_to_the_bound() {
    use std::io::Write as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Greet, then hold every connection without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"* OK [CAPABILITY IMAP4rev1] hung server ready\r\n");
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let d = Daemon::start(dir.path(), &dead_account("mute", port), &[]);
    let ready = d.wait_notify("READY=1", Duration::from_secs(90));
    let took = started.elapsed();
    eprintln!("READY with a hung server after {} ms", took.as_millis());
    assert!(took >= Duration::from_secs(40) && took < Duration::from_secs(60), "READY at the 45 s bound: {took:?}");
    // The login's own 45 s deadline ends at about the same instant: READY then reports the
    // account either as not checked yet or as unreadable — never as fine.
    if ready.contains("account \"mute\" not checked yet") {
        assert!(d.log_text().contains("Ready without the first attempt of some accounts"), "{}", d.log_text());
    } else {
        assert!(ready.contains("account \"mute\" unreadable since") && ready.contains("unreachable"), "{ready}");
    }
    d.terminate();
}
