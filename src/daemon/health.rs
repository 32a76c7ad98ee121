//! What the daemon knows about its own health: when each watched folder last synced
//! successfully, and whether every account has completed its first sync. systemd's READY and
//! WATCHDOG messages are derived from it; watchers only report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
struct FolderState {
    last_ok: Option<Instant>,
    last_ok_at: Option<DateTime<Utc>>,
    /// A sync older than this means the folder's watcher is stuck or its connection dead.
    bound: Duration,
}

/// The freshness bound of a folder that synced without being announced by [`Health::watch`].
pub const UNANNOUNCED: Duration = Duration::from_secs(2 * 3600);

#[derive(Debug, Default)]
pub struct Health {
    folders: Mutex<BTreeMap<(String, String), FolderState>>,
    accounts: Mutex<BTreeMap<String, bool>>,
    ready: tokio::sync::Notify,
}

impl Health {
    pub fn new<'a>(accounts: impl IntoIterator<Item = &'a str>) -> Health {
        let h = Health::default();
        if let Ok(mut a) = h.accounts.lock() {
            for name in accounts {
                a.insert(name.to_owned(), false);
            }
        }
        h
    }

    /// A folder is (to be) watched; it must sync within `bound` and then keep doing so. Called
    /// again when its watcher learns more (a connection shows whether the server has IDLE): the
    /// latest bound counts.
    pub fn watch(&self, account: &str, folder: &str, bound: Duration) {
        if let Ok(mut f) = self.folders.lock() {
            f.entry((account.to_owned(), folder.to_owned())).and_modify(|s| s.bound = bound).or_insert(FolderState {
                last_ok: None,
                last_ok_at: None,
                bound,
            });
        }
    }

    /// A folder synced successfully (a poll finished, or IDLE returned or was re-issued). Its
    /// bound stays what [`Health::watch`] said; a folder never announced gets [`UNANNOUNCED`].
    pub fn synced(&self, account: &str, folder: &str) {
        if let Ok(mut f) = self.folders.lock() {
            let e = f.entry((account.to_owned(), folder.to_owned())).or_insert(FolderState {
                last_ok: None,
                last_ok_at: None,
                bound: UNANNOUNCED,
            });
            e.last_ok = Some(Instant::now());
            e.last_ok_at = Some(Utc::now());
        }
    }

    /// An account finished its first full pass over all its folders.
    pub fn account_ready(&self, account: &str) {
        if let Ok(mut a) = self.accounts.lock() {
            a.insert(account.to_owned(), true);
        }
        self.ready.notify_waiters();
    }

    /// Wait until every account has synced once.
    pub async fn wait_ready(&self) {
        loop {
            // Register interest before checking, so a notification in between is not lost.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.all_ready() {
                return;
            }
            notified.await;
        }
    }

    /// Whether every folder the account watches has synced at least once.
    pub fn account_synced(&self, account: &str) -> bool {
        let Ok(f) = self.folders.lock() else { return false };
        let mut folders = f.iter().filter(|((a, _), _)| a == account).peekable();
        folders.peek().is_some() && folders.all(|(_, s)| s.last_ok.is_some())
    }

    /// Every account has synced once (READY=1).
    pub fn all_ready(&self) -> bool {
        self.accounts.lock().map(|a| a.values().all(|r| *r)).unwrap_or(false)
    }

    /// Every watched folder synced within its bound (WATCHDOG=1). Folders not yet synced count
    /// from when the daemon became ready, which the caller guarantees by asking only after READY.
    pub fn fresh(&self, since_ready: Instant) -> bool {
        let Ok(f) = self.folders.lock() else { return false };
        f.values().all(|s| s.last_ok.unwrap_or(since_ready).elapsed() <= s.bound)
    }

    /// The stalest folder, for logs and STATUS.
    pub fn stalest(&self) -> Option<(String, String, Option<DateTime<Utc>>)> {
        let f = self.folders.lock().ok()?;
        f.iter().min_by_key(|(_, s)| s.last_ok).map(|((a, n), s)| (a.clone(), n.clone(), s.last_ok_at))
    }

    /// The most recent successful sync of any folder.
    pub fn last_sync(&self) -> Option<DateTime<Utc>> {
        let f = self.folders.lock().ok()?;
        f.values().filter_map(|s| s.last_ok_at).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_every_account_synced_and_fresh_only_within_bounds() {
        let h = Health::new(["a", "b"]);
        assert!(!h.all_ready());
        h.account_ready("a");
        assert!(!h.all_ready());
        h.account_ready("b");
        assert!(h.all_ready());

        h.watch("a", "INBOX", Duration::from_secs(60));
        h.synced("a", "INBOX");
        assert!(h.fresh(Instant::now()));
        h.watch("b", "Junk", Duration::ZERO);
        h.synced("b", "Junk");
        std::thread::yield_now();
        // A zero bound is exceeded as soon as any time passes: the watchdog must stop.
        let start = Instant::now();
        while start.elapsed() == Duration::ZERO {}
        assert!(!h.fresh(Instant::now()));
    }

    #[test]
    fn an_account_is_synced_only_when_every_planned_folder_has_synced() {
        let h = Health::new(["a"]);
        let bound = Duration::from_secs(60);
        assert!(!h.account_synced("a"), "nothing planned yet");
        h.watch("a", "INBOX", bound);
        h.watch("a", "Junk", bound);
        h.synced("a", "INBOX");
        assert!(!h.account_synced("a"), "Junk has not synced");
        h.synced("a", "Junk");
        assert!(h.account_synced("a"));
    }

    #[test]
    fn the_latest_announced_bound_counts_and_a_sync_keeps_it() {
        let h = Health::new(["a"]);
        // Planned as an IDLE INBOX; the connection then shows the server has no IDLE, so it is
        // polled and must sync far more often.
        h.watch("a", "INBOX", Duration::from_secs(22 * 60));
        h.watch("a", "INBOX", Duration::ZERO);
        h.synced("a", "INBOX");
        let start = Instant::now();
        while start.elapsed() == Duration::ZERO {}
        assert!(!h.fresh(Instant::now()), "the polled folder's bound, not the IDLE guess");
    }
}
