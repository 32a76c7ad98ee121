//! The real binary's `run` as a child process: systemd notifications, the control socket,
//! signals, and refusal of an invalid configuration.

mod daemon_support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use daemon_support::{bin, Daemon};

#[test]
fn ready_watchdog_and_status_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let d = Daemon::start(
        dir.path(),
        "",
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap().to_owned()), ("WATCHDOG_USEC", "400000".to_owned())],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !(seen.iter().any(|m: &String| m.contains("READY=1")) && seen.iter().any(|m| m.contains("WATCHDOG=1"))) {
        let n = sock.recv(&mut buf).expect("no notification within 20 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=0 merchants, 0 overdue"), "{ready}");
    let (code, took) = d.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let n = sock.recv(&mut buf).unwrap();
    let mut rest = String::from_utf8_lossy(&buf[..n]).into_owned();
    while !rest.contains("STOPPING=1") {
        let n = sock.recv(&mut buf).unwrap();
        rest = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
}

#[test]
fn commands_go_through_the_running_daemon_and_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "", &[]);
    d.wait_ready();
    d.add_merchant("acme", "에이씨미", "pay@acme.test", Some("2027-02-05"));
    let o = d.cli(&["status", "--json", "--now", "2027-02-15T09:00:00+09:00"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let row: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(row["id"], "acme");
    assert_eq!(row["overdue"], true);
    // A refusal through the daemon keeps its exit status and one-line message.
    let o = d.cli(&["merchant", "advance", "acme", "signed"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
    let socket_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.state.join("control.sock")).unwrap().permissions(),
    );
    assert_eq!(socket_mode & 0o777, 0o600);
    let state = d.state.clone();
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
    // After the daemon is gone, the same command opens the database itself and sees the same data.
    let o = daemon_support::cli(&state, &["merchant", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"acme\""));
}

#[test]
fn an_invalid_config_stops_run_and_check_config_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[reminders]\nschedule = \"often\"\nmax_reminders = \"three\"\n[windows]\ncard_review_days = 0\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    for cmd in ["run", "check-config"] {
        let o = Command::new(bin())
            .args(["--config", cfg.to_str().unwrap(), "--state-dir", state.to_str().unwrap(), cmd])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        for key in ["reminders.schedule", "reminders.max_reminders", "windows.card_review_days"] {
            assert!(err.contains(key), "{cmd}: {key} missing in {err}");
        }
    }
    assert!(!state.exists(), "nothing was started, not even the database");
}

#[test]
fn sighup_with_an_invalid_config_keeps_the_old_one_and_logs_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "[windows]\nguidance_business_days = 3\n", &[]);
    d.wait_ready();
    std::fs::write(&d.config, "[windows]\nguidance_business_days = 0\n[reminders]\nschedule = \"hourly\"\n").unwrap();
    daemon_support::signal(d.child.id(), "HUP");
    // systemd's reload protocol: RELOADING=1, then READY=1 when the reload is over.
    d.wait_notify("RELOADING=1", Duration::from_secs(10));
    d.wait_notify("READY=1", Duration::from_secs(10));
    let log = d.log_text();
    assert!(log.contains("windows.guidance_business_days") && log.contains("reminders.schedule"), "{log}");
    assert!(log.contains("keeping the old one"), "{log}");
    // Still running on the old configuration: the guidance window is still 3 business days.
    d.add_merchant("acme", "A", "a@acme.test", Some("2027-02-05"));
    let rows = d.json(&["status"]);
    assert_eq!(rows[0]["deadline"]["due"], "2027-02-12T14:59:59Z");

    // A valid change is taken: 5 business days → the end of Tue 2027-02-16.
    std::fs::write(&d.config, "[windows]\nguidance_business_days = 5\n").unwrap();
    daemon_support::signal(d.child.id(), "HUP");
    d.wait_notify("RELOADING=1", Duration::from_secs(10));
    d.wait_notify("READY=1", Duration::from_secs(10));
    let rows = d.json(&["status"]);
    assert_eq!(rows[0]["deadline"]["due"], "2027-02-16T14:59:59Z");
    assert_eq!(d.terminate().0, Some(0));
}

/// SPEC §9's start race: `status` run just as `run` starts, either one first. The command waits
/// for the daemon's socket while the daemon holds the database, and the daemon waits while a
/// command holds it; neither fails.
#[test]
fn a_command_racing_the_daemons_start_fails_neither() {
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // The database exists (a read-only command refuses a missing one).
        assert_eq!(daemon_support::cli(&state, &["merchant", "list"]).status.code(), Some(2));
        let o = daemon_support::cli(&state, &["merchant", "add", "--id", "a", "--name", "A", "--contact", "a@b.test"]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let status = {
            let state = state.clone();
            std::thread::spawn(move || {
                if round % 2 == 0 {
                    std::thread::yield_now();
                }
                daemon_support::cli(&state, &["status", "--json"])
            })
        };
        let d = Daemon::start(dir.path(), "", &[]);
        let o = status.join().unwrap();
        assert_eq!(o.status.code(), Some(0), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("\"id\":\"a\""));
        d.wait_ready();
        let (code, _) = d.terminate();
        assert_eq!(code, Some(0), "round {round}: the daemon failed:\n{}", d_log(&dir));
    }
}

fn d_log(dir: &tempfile::TempDir) -> String {
    std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}
