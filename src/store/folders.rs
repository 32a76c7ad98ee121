//! What the store knows of each account's folders: their roles as last listed (for `folders`,
//! and for naming the watched spam folders in reminders), and each watched folder's sync status —
//! the last successful pass, and the last error with since when. The status is what `health`
//! and the alerts read when a folder could not be read (SPEC §6: "could not read" is an error of
//! that folder, never "nothing there"); it is not part of `export`, being about this machine's
//! view of the servers rather than about merchants.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};

use sled::Transactional;

use super::{cursor_key, dec, enc, flatten_tx_error, split_cursor_key, OutboxEntry, Store};
use crate::health::alerts::Outage;
use crate::health::Trouble;
pub use crate::health::{FolderStatus, FolderStatusRecord};
use crate::merchant::FolderRole;

impl Store {
    /// Record the folders an account's sync found and their roles (for `folders` output and for
    /// naming the watched spam folder in reminders).
    pub fn set_folder_roles(&self, account: &str, roles: &[(String, FolderRole)]) -> anyhow::Result<()> {
        self.folders.insert(account.as_bytes(), enc(&roles))?;
        Ok(())
    }

    /// Every account's recorded folders and roles.
    pub fn folder_roles(&self) -> anyhow::Result<BTreeMap<String, Vec<(String, FolderRole)>>> {
        self.folders
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), dec("folder roles", &v)?))
            })
            .collect()
    }

    pub fn folder_status(&self, account: &str, folder: &str) -> anyhow::Result<Option<FolderStatus>> {
        self.folder_status.get(cursor_key(account, folder))?.map(|v| dec("folder status", &v)).transpose()
    }

    /// A pass read `folder` to its newest mail: clears any error.
    pub fn folder_synced(&self, account: &str, folder: &str, at: DateTime<Utc>, mails_seen: u64) -> anyhow::Result<()> {
        self.update_folder_status(account, folder, |s| {
            s.last_ok = Some(at);
            s.last_error = None;
            s.trouble = None;
            s.error_since = None;
            s.failures = 0;
            s.mails_seen = s.mails_seen.saturating_add(mails_seen);
        })
    }

    /// A pass over `folder` (or the connection for it) failed with `error`.
    pub fn folder_failed(
        &self,
        account: &str,
        folder: &str,
        at: DateTime<Utc>,
        error: &str,
        trouble: Trouble,
    ) -> anyhow::Result<()> {
        self.update_folder_status(account, folder, |s| {
            s.last_error = Some(error.to_owned());
            s.trouble = Some(trouble);
            s.error_since = s.error_since.or(Some(at));
            s.failures = s.failures.saturating_add(1);
        })
    }

    fn update_folder_status(
        &self,
        account: &str,
        folder: &str,
        change: impl Fn(&mut FolderStatus),
    ) -> anyhow::Result<()> {
        let key = cursor_key(account, folder);
        // fetch_and_update is an atomic read-modify-write (a compare-and-swap loop), so the
        // watcher, the account's listing and a restarted watcher may all record; the update
        // closure tolerates a re-run.
        self.folder_status
            .fetch_and_update(&key, |old| {
                let mut s: FolderStatus = old.and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default();
                change(&mut s);
                Some(enc(&s))
            })
            .with_context(|| format!("cannot record the sync status of {folder:?} of account {account:?}"))?;
        Ok(())
    }

    /// Every folder's status, by account and folder.
    pub fn folder_statuses(&self) -> anyhow::Result<Vec<FolderStatusRecord>> {
        self.folder_status
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let (account, folder) = split_cursor_key(&k);
                Ok(FolderStatusRecord { account, folder, status: dec("folder status", &v)? })
            })
            .collect()
    }

    /// The statuses of `account`'s folders other than `watched` are dropped: a folder no longer
    /// watched (a changed configuration, a folder gone from the listing) must not keep the
    /// account unreadable, nor count as read.
    pub fn retain_folder_statuses(&self, account: &str, watched: &[String]) -> anyhow::Result<()> {
        let prefix = cursor_key(account, "");
        for kv in self.folder_status.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let (_, folder) = split_cursor_key(&k);
            if !watched.contains(&folder) {
                self.folder_status.remove(k)?;
            }
        }
        Ok(())
    }

    /// The folders of `account` that have a status (the ones watched last).
    pub fn status_folders(&self, account: &str) -> anyhow::Result<Vec<String>> {
        let prefix = cursor_key(account, "");
        self.folder_status.scan_prefix(&prefix).keys().map(|k| Ok(split_cursor_key(&k?).1)).collect()
    }

    // ---- outages (health::alerts) ---------------------------------------------------------------

    pub fn outage(&self, account: &str) -> anyhow::Result<Option<Outage>> {
        self.outages.get(account.as_bytes())?.map(|v| dec("outage", &v)).transpose()
    }

    pub fn outages(&self) -> anyhow::Result<BTreeMap<String, Outage>> {
        self.outages
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), dec("outage", &v)?))
            })
            .collect()
    }

    /// Store (`Some`) or forget (`None`) `account`'s outage and enqueue `notice` with it, in one
    /// transaction: an alert is sent exactly when its outage is recorded as alerted. Returns
    /// whether the notice was new.
    pub fn record_outage(
        &self,
        account: &str,
        outage: Option<&Outage>,
        notice: Option<&OutboxEntry>,
    ) -> anyhow::Result<bool> {
        (&self.outages, &self.outbox)
            .transaction(|(outages, outbox)| {
                match outage {
                    Some(o) => {
                        outages.insert(account.as_bytes(), enc(o))?;
                    }
                    None => {
                        outages.remove(account.as_bytes())?;
                    }
                }
                let mut added = false;
                if let Some(n) = notice {
                    if outbox.get(n.key.as_bytes())?.is_none() {
                        outbox.insert(n.key.as_bytes(), enc(n))?;
                        added = true;
                    }
                }
                Ok(added)
            })
            .map_err(flatten_tx_error)
    }
}
