//! What the daemon knows of its own progress (SPEC §9), for systemd:
//! - **READY** once every account has had its first sync *attempt* — each planned folder synced
//!   or failed, or the account could not even be listed — or once [`READY_WITHIN`] has passed,
//!   whichever is first. One unreachable account must not keep the others (and every reminder)
//!   from starting.
//! - **WATCHDOG** while every task keeps making progress: each one beats (a sync, a failed
//!   connection attempt, an IDLE refresh, a reminder-loop wake) within the bound it declared. A
//!   remote outage keeps the beats coming (every retry is one), so it does not restart the
//!   service; a task stuck in a future that never ends does.
//!
//! Whether the mailboxes can be *read* is the rest of [`crate::health`], from what the watchers
//! store; this is whether the daemon itself is alive. `health` run through the daemon shows the
//! tasks and their last beats too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Heartbeat;

/// READY comes at the latest this long after the start, well under the unit's
/// `TimeoutStartSec=` (5 min) and systemd's default (90 s): an account whose server takes longer
/// to answer a first attempt is reported as not checked yet, not waited for.
pub const READY_WITHIN: Duration = Duration::from_secs(45);

/// The task watching one folder of an account.
pub fn folder_task(account: &str, folder: &str) -> String {
    format!("imap {account}/{folder}")
}

/// The task listing an account's folders (until its folder watchers take over).
pub fn account_task(account: &str) -> String {
    format!("imap {account}")
}

/// Whether `task` is one of `account`'s watcher tasks.
pub fn is_account_task(task: &str, account: &str) -> bool {
    task.strip_prefix("imap ")
        .and_then(|t| t.strip_prefix(account))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[derive(Debug, Clone, Copy)]
struct Beat {
    last: Instant,
    bound: Duration,
    beats: u64,
}

/// One task as `health --json` shows it (through the running daemon).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskBeat {
    pub task: String,
    /// Milliseconds since its last beat.
    pub last_beat_ms_ago: u64,
    /// It must beat again within this.
    pub bound_s: u64,
    /// Beats since it started.
    pub beats: u64,
    pub wedged: bool,
}

/// An account's first attempt: which planned folders have been tried.
#[derive(Debug, Default)]
struct FirstAttempt {
    planned: Option<BTreeSet<String>>,
    tried: BTreeSet<String>,
    /// Listed and tried every planned folder, or failed to list.
    done: bool,
}

#[derive(Debug, Default)]
pub struct Liveness {
    tasks: Mutex<BTreeMap<String, Beat>>,
    accounts: Mutex<BTreeMap<String, FirstAttempt>>,
    ready: AtomicBool,
    ready_notify: tokio::sync::Notify,
}

impl Liveness {
    pub fn new<'a>(accounts: impl IntoIterator<Item = &'a str>) -> Liveness {
        let l = Liveness::default();
        if let Ok(mut a) = l.accounts.lock() {
            for name in accounts {
                a.insert(name.to_owned(), FirstAttempt::default());
            }
        }
        l
    }

    /// `task` made progress and promises to again within `bound`.
    pub fn beat(&self, task: &str, bound: Duration) {
        if let Ok(mut t) = self.tasks.lock() {
            let beats = t.get(task).map_or(0, |b| b.beats) + 1;
            t.insert(task.to_owned(), Beat { last: Instant::now(), bound, beats });
        }
    }

    /// Every task and its last beat.
    pub fn tasks(&self) -> Vec<TaskBeat> {
        let Ok(t) = self.tasks.lock() else { return Vec::new() };
        t.iter()
            .map(|(task, b)| {
                let since = b.last.elapsed();
                TaskBeat {
                    task: task.clone(),
                    last_beat_ms_ago: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
                    bound_s: b.bound.as_secs(),
                    beats: b.beats,
                    wedged: since > b.bound,
                }
            })
            .collect()
    }

    /// `task` has ended on purpose (or handed over to others): it is no longer waited for.
    pub fn forget(&self, task: &str) {
        if let Ok(mut t) = self.tasks.lock() {
            t.remove(task);
        }
    }

    /// A [`Heartbeat`] for a task that beats from inside its own loop.
    pub fn heartbeat(self: &Arc<Self>, task: &str, bound: Duration) -> Heartbeat {
        let (me, task) = (self.clone(), task.to_owned());
        self.beat(&task, bound);
        Heartbeat::new(move || me.beat(&task, bound))
    }

    /// The task most overdue past its bound, and how long since it last beat; `None` when every
    /// task is within its bound.
    pub fn wedged(&self) -> Option<(String, Duration)> {
        let t = self.tasks.lock().ok()?;
        t.iter()
            .map(|(name, b)| (name, b.last.elapsed(), b.bound))
            .filter(|(_, since, bound)| since > bound)
            .max_by_key(|(_, since, bound)| *since - *bound)
            .map(|(name, since, _)| (name.clone(), since))
    }

    /// The folders `account` will watch are known; its first attempt ends when each was tried.
    pub fn planned(&self, account: &str, folders: &[String]) {
        if let Ok(mut a) = self.accounts.lock() {
            let first = a.entry(account.to_owned()).or_default();
            if first.planned.is_none() {
                first.planned = Some(folders.iter().cloned().collect());
                first.done = first.planned.as_ref().is_some_and(|p| p.is_subset(&first.tried));
            }
        }
        self.wake_if_attempted();
    }

    /// A pass over `folder` ended, well or badly.
    pub fn folder_tried(&self, account: &str, folder: &str) {
        if let Ok(mut a) = self.accounts.lock() {
            let first = a.entry(account.to_owned()).or_default();
            first.tried.insert(folder.to_owned());
            first.done |= first.planned.as_ref().is_some_and(|p| p.is_subset(&first.tried));
        }
        self.wake_if_attempted();
    }

    /// The account could not be listed (no connection, a refused login): its first attempt is over.
    pub fn listing_failed(&self, account: &str) {
        if let Ok(mut a) = self.accounts.lock() {
            a.entry(account.to_owned()).or_default().done = true;
        }
        self.wake_if_attempted();
    }

    fn wake_if_attempted(&self) {
        if self.all_attempted() {
            self.ready_notify.notify_waiters();
        }
    }

    /// Every account has had its first attempt.
    pub fn all_attempted(&self) -> bool {
        self.accounts.lock().map(|a| a.values().all(|f| f.done)).unwrap_or(false)
    }

    /// The accounts whose first attempt has not ended.
    pub fn unattempted(&self) -> Vec<String> {
        self.accounts
            .lock()
            .map(|a| a.iter().filter(|(_, f)| !f.done).map(|(n, _)| n.clone()).collect())
            .unwrap_or_default()
    }

    /// Wait until every account has had its first attempt (the caller bounds the wait).
    pub async fn wait_attempted(&self) {
        self.wait_until(Liveness::all_attempted).await;
    }

    /// Wait until `cond` holds; it is looked at again whenever an attempt ends or READY is set.
    async fn wait_until(&self, cond: impl Fn(&Liveness) -> bool) {
        loop {
            // Register interest before checking, so a notification in between is not lost.
            let notified = self.ready_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return;
            }
            notified.await;
        }
    }

    /// READY was sent: what waits for it may start.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.ready_notify.notify_waiters();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Wait until READY.
    pub async fn wait_ready(&self) {
        self.wait_until(Liveness::is_ready).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempt_ends_when_every_planned_folder_was_tried_or_the_listing_failed() {
        let l = Liveness::new(["good", "dead"]);
        assert!(!l.all_attempted());
        l.folder_tried("good", "INBOX"); // before the plan is known: remembered
        l.planned("good", &["INBOX".to_owned(), "Junk".to_owned()]);
        assert!(!l.all_attempted(), "Junk not tried");
        l.folder_tried("good", "Junk");
        assert_eq!(l.unattempted(), ["dead"]);
        l.listing_failed("dead");
        assert!(l.all_attempted());
    }

    #[test]
    fn a_task_past_its_bound_is_wedged_and_a_beat_revives_it() {
        let l = Liveness::new([]);
        l.beat("imap a/INBOX", Duration::from_secs(3600));
        l.beat("schedule", Duration::ZERO);
        let start = Instant::now();
        while start.elapsed() == Duration::ZERO {}
        assert_eq!(l.wedged().map(|(t, _)| t), Some("schedule".to_owned()));
        l.forget("schedule");
        assert_eq!(l.wedged(), None);
        let beat = Arc::new(Liveness::new([]));
        let hb = beat.heartbeat("sender", Duration::from_secs(60));
        hb.beat();
        assert_eq!(beat.wedged(), None);
    }

    #[tokio::test]
    async fn waiting_for_ready_returns_once_set() {
        let l = Arc::new(Liveness::new(["a"]));
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.wait_ready().await }
        });
        l.set_ready();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
