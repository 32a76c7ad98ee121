//! The shipped unit file passes `systemd-analyze verify` and rates "OK" (≤ 2.0) in
//! `systemd-analyze security --offline=yes`.

use std::path::Path;
use std::process::Command;

/// The unit with its binary path pointing at the binary under test (verify checks it exists).
fn unit_for_test(dir: &Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hecto-watch.service")).unwrap();
    assert!(text.contains("/usr/local/bin/hecto-watch"), "the unit runs /usr/local/bin/hecto-watch");
    let unit = dir.join("hecto-watch.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/hecto-watch", env!("CARGO_BIN_EXE_hecto-watch"))).unwrap();
    unit
}

#[test]
fn the_unit_verifies_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let o = Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("systemd-analyze is installed");
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && all.trim().is_empty(), "systemd-analyze verify:\n{all}");
}

#[test]
fn the_unit_is_rated_ok_by_systemd_analyze_security() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is installed");
    let out = String::from_utf8_lossy(&o.stdout);
    let line =
        out.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("no rating:\n{out}"));
    let score: f64 =
        line.split_whitespace().find_map(|w| w.parse().ok()).unwrap_or_else(|| panic!("no number in {line:?}"));
    assert!(score <= 2.0, "{line}");
    for setting in [
        "Type=notify",
        "ExecStartPre=",
        "check-config",
        "StateDirectory=",
        "LoadCredential=",
        "WatchdogSec=",
        "Restart=on-failure",
        "DynamicUser=yes",
    ] {
        assert!(std::fs::read_to_string(&unit).unwrap().contains(setting), "{setting} missing");
    }
}
