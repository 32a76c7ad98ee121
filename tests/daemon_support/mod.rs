//! Running the real `hecto-watch run` as a child process, for the daemon tests: its own config
//! and state directory, a notify socket to await READY on, the CLI against the same state.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hecto-watch")
}

pub struct Daemon {
    pub child: Child,
    pub state: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    notify: UnixDatagram,
}

impl Daemon {
    /// Start `run` with `config` (TOML text) in `dir`; `envs` are extra environment variables.
    pub fn start(dir: &Path, config: &str, envs: &[(&str, String)]) -> Daemon {
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        Daemon::start_with(dir, &cfg, envs, None)
    }

    /// [`Daemon::start`] with its clock starting at `now` (RFC 3339, `run --now`).
    pub fn start_at(dir: &Path, config: &str, envs: &[(&str, String)], now: &str) -> Daemon {
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        Daemon::start_with(dir, &cfg, envs, Some(now))
    }

    fn start_with(dir: &Path, cfg: &Path, envs: &[(&str, String)], now: Option<&str>) -> Daemon {
        let state = dir.join("state");
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let sock_path = dir.join(format!("notify-{}-{start}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock_path);
        let notify = UnixDatagram::bind(&sock_path).unwrap();
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("daemon-{n}.log"));
        let mut cmd = Command::new(bin());
        cmd.args(["--config", cfg.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
        if let Some(now) = now {
            cmd.args(["--now", now]);
        }
        cmd.arg("run")
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("HECTO_WATCH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Daemon { child, state, config: cfg.to_owned(), log, notify }
    }

    /// Wait for a notification containing `what` (e.g. `READY=1`); returns it.
    pub fn wait_notify(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {what} from the daemon within {within:?}; log:\n{}", self.log_text());
            self.notify.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.contains(what) {
                    return msg;
                }
            }
        }
    }

    /// Every notification that arrives within `within`, with when it arrived.
    pub fn notifications_for(&self, within: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            self.notify.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                out.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
    }

    pub fn wait_ready(&self) {
        self.wait_notify("READY=1", Duration::from_secs(60));
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.state, args)
    }

    /// `merchant add` through the CLI (so through the daemon); it must succeed.
    pub fn add_merchant(&self, id: &str, name: &str, contact: &str, applied_at: Option<&str>) {
        let mut args = vec!["merchant", "add", "--id", id, "--name", name, "--contact", contact];
        if let Some(at) = applied_at {
            args.extend(["--applied-at", at]);
        }
        let o = self.cli(&args);
        assert_eq!(o.status.code(), Some(0), "merchant add {id}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// The CLI's JSON lines.
    pub fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let o = self.cli(&all);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// SIGTERM, then wait (bounded) for the exit; returns the exit code and how long it took.
    pub fn terminate(mut self) -> (Option<i32>, Duration) {
        let start = Instant::now();
        signal(self.child.id(), "TERM");
        let deadline = start + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (None, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (bounded) for the daemon to exit on its own; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the daemon did not exit within {within:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
}

pub fn cli(state: &Path, args: &[&str]) -> Output {
    Command::new(bin()).arg("--state-dir").arg(state).args(args).env_remove("HECTO_WATCH_CONFIG").output().unwrap()
}

/// Poll a condition on the daemon's answers until it holds (bounded); the daemon has no event
/// for "this merchant changed", so the test asks it, as an operator would.
pub fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
