//! Storage faults on a real, small tmpfs (SPEC §9 Durability): a full disk during `merchant add`
//! fails that command with exit 1 and loses nothing already there, and the database opens again
//! once there is room — including with the empty `snap.*.generating` file a full disk leaves
//! when sled's snapshot write fails. Needs root (`mount -t tmpfs`), as CI runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount -t tmpfs needs root (CI runs as root)");
        Tmpfs(dir)
    }

    /// Fill the file system to the last byte.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("fill");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn hw(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("HECTO_WATCH_CONFIG")
        .output()
        .unwrap()
}

fn add(state: &Path, id: &str) -> Output {
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
        assert!(add(&state, id).status.success());
    }
    let fill = fs.fill();
    for id in ["x1", "x2", "x3"] {
        let o = add(&state, id);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "a full disk is a failure, not bad input: {err}");
        assert!(err.contains("No space left on device"), "names the cause: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("hecto-watch:")).collect();
        assert_eq!(errors.len(), 1, "one line: {err}");
    }
    // What sled leaves when its snapshot write hits the full disk (as seen in the field): an
    // empty `.generating` file that sorts after the complete snapshot.
    std::fs::write(state.join("snap.FFFFFFFFFFFFFFFF.generating"), b"").unwrap_or(());
    std::fs::remove_file(fill).unwrap();
    assert_eq!(ids(&state), ["m1", "m2", "m3"], "nothing lost, nothing half-written");
    assert!(!state.join("snap.FFFFFFFFFFFFFFFF.generating").exists(), "the incomplete snapshot is removed");
    assert!(add(&state, "m4").status.success(), "writable again");
    assert_eq!(ids(&state), ["m1", "m2", "m3", "m4"]);
}
