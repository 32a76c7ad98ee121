//! Storage faults (SPEC §9 Durability): what a full disk leaves behind, and what a process that
//! hit one must remember.
//!
//! - sled writes a snapshot to `snap.<lsn>.generating` and renames it when complete. A full disk
//!   leaves that file empty or short; sled then picks it as the newest snapshot (it sorts after
//!   `snap.<lsn>`) and refuses to open ("Read corrupted data") for ever. A `.generating` file is by
//!   construction incomplete, and the complete snapshots and the log it was made from are still
//!   there, so it is removed before every open.
//! - Once a sled write fails, that `Db` keeps failing (sled keeps the error). The process records
//!   the fault here, stops sending and advancing, and the daemon restarts once the disk has room.
//! - A message the SMTP server accepted but whose "sent" record could not be written is kept in
//!   memory (never resent by this process) and, once there is room, written to
//!   `sent-unrecorded.json` next to the database, which the next open applies.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The file of keys sent but not recorded as sent, applied (then removed) by the next open.
pub const SENT_UNRECORDED: &str = "sent-unrecorded.json";

/// A storage error this process hit; sticky until the process ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub since: DateTime<Utc>,
    pub error: String,
}

/// Shared by every clone of a [`super::Store`].
#[derive(Debug, Default, Clone)]
pub(super) struct FaultCell(Arc<Mutex<Option<Fault>>>, Arc<Mutex<SentUnrecorded>>);

impl FaultCell {
    pub(super) fn remember_sent(&self, key: &str, at: DateTime<Utc>) {
        if let Ok(mut s) = self.1.lock() {
            s.sent.insert(key.to_owned(), at);
        }
    }

    pub(super) fn sent_unrecorded(&self) -> SentUnrecorded {
        self.1.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(super) fn get(&self) -> Option<Fault> {
        self.0.lock().map(|f| f.clone()).unwrap_or(None)
    }

    /// Remember the first storage error; other errors (a refused request, a corrupt record) are
    /// not faults of the storage.
    pub(super) fn note(&self, e: &anyhow::Error) {
        if !is_storage_error(e) {
            return;
        }
        if let Ok(mut f) = self.0.lock() {
            if f.is_none() {
                *f = Some(Fault { since: Utc::now(), error: format!("{e:#}") });
            }
        }
    }
}

/// An error from sled or the file system, as opposed to one about the data.
fn is_storage_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<sled::Error>().is_some() || c.downcast_ref::<std::io::Error>().is_some())
}

/// Remove the incomplete snapshots a failed write left in `dir` (see the module's comment).
pub(super) fn remove_incomplete_snapshots(dir: &Path) -> anyhow::Result<()> {
    // Only when no process holds the database: a running one may be writing its snapshot right
    // now (sled writes `.generating`, then renames it). sled holds an flock on `db` while open;
    // we take the same lock for the time of the clean-up, and open sled only after.
    let Ok(db) = std::fs::File::open(dir.join("db")) else {
        return Ok(()); // no database yet
    };
    if db.try_lock().is_err() {
        return Ok(()); // in use: the opener that follows waits or goes through the daemon
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).with_context(|| {
                format!("cannot remove the incomplete snapshot {} — check permissions", entry.path().display())
            })?;
            tracing::warn!(file = %entry.path().display(), "Removed an incomplete database snapshot (left by a full disk or a crash)");
        }
    }
    Ok(())
}

/// Messages accepted by the SMTP server whose "sent" record could not be written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentUnrecorded {
    /// Outbox key → when the server accepted it.
    pub sent: std::collections::BTreeMap<String, DateTime<Utc>>,
}

pub fn sent_unrecorded_path(dir: &Path) -> PathBuf {
    dir.join(SENT_UNRECORDED)
}

/// Write (merge into) the file, durably: a temporary file, fsync, rename, fsync of the directory.
pub fn write_sent_unrecorded(dir: &Path, sent: &SentUnrecorded) -> anyhow::Result<()> {
    let path = sent_unrecorded_path(dir);
    let mut all = read_sent_unrecorded(dir)?.unwrap_or_default();
    all.sent.extend(sent.sent.iter().map(|(k, t)| (k.clone(), *t)));
    let tmp = dir.join(format!("{SENT_UNRECORDED}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&all).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_sent_unrecorded(dir: &Path) -> anyhow::Result<Option<SentUnrecorded>> {
    let path = sent_unrecorded_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a list of sent messages; remove it after checking", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Whether `dir`'s file system has room again: `bytes` can be written and synced there.
pub fn has_room(dir: &Path, bytes: usize) -> bool {
    let probe = dir.join(".room-probe");
    let ok = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(&vec![0u8; bytes])?;
        f.sync_all()
    })()
    .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
