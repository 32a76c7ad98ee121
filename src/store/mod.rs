//! `store`: the only module that touches sled (SPEC §2, §4, §5). Fourth stage of the flow.
//!
//! Trees:
//! - `meta`: `schema_version`, `next_seq` (event/unassigned sequence), `merchants_gen` (bumped
//!   whenever who the merchants are changes — add, remove, a changed contact, business number, MID
//!   or name — so a mail matched against a stale list is re-matched, and the in-memory list that
//!   matching uses is reloaded);
//! - `merchants`: id → [`Merchant`];
//! - `events`: `merchant id` 0x00 `seq u64 BE` → [`Event`] (a timeline per merchant, in order);
//! - `seen`: mail identity (Message-ID, else content hash) → [`SeenMail`];
//! - `unassigned`: `seq u64 BE` → [`UnassignedMail`];
//! - `cursors`: `account` 0x00 `folder` → [`Cursor`];
//! - `outbox`: idempotency key → [`OutboxEntry`];
//! - `folders`: account → its folders and their roles; `folder_status`: `account` 0x00 `folder` →
//!   [`FolderStatus`] (last successful sync, last error and since when: see [`folders`]);
//! - `outages`: account → its current [`crate::health::alerts::Outage`] (so an alert is not
//!   repeated after a restart).
//!
//! Applying one mail is one multi-tree transaction whose closure does no I/O and no logging (sled
//! may run it more than once); callers flush before acknowledging work that must survive a crash.

pub mod faults;
pub mod folders;
pub mod outbox;
pub mod removed;
pub mod unassigned;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::mail::{Classified, MailKind, Rules};
use crate::merchant::{self, Change, Event, FolderRole, MailSource, MatchOutcome, Merchant};
pub use folders::FolderStatus;
pub use outbox::{CheckedMailbox, Delivery, NoticeFacts, NoticeKind, OutboxEntry, Rendered};

/// Bumped when the layout of a tree changes; `export`/`import` carry data across.
pub const SCHEMA_VERSION: u64 = 1;

/// Where a folder's sync has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub uid_validity: u32,
    pub last_uid: u32,
    /// While a first sync or rescan is under way: the newest UID it set out to read. Mail up to
    /// it is back-filled (only what arrived within `backfill_days` counts), so a pass that was
    /// interrupted and resumes keeps that window; mail after it is new mail, whatever its date.
    /// Cleared once the cursor reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_to: Option<u32>,
}

impl Cursor {
    pub fn at(uid_validity: u32, last_uid: u32) -> Cursor {
        Cursor { uid_validity, last_uid, backfill_to: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorRecord {
    pub account: String,
    pub folder: String,
    pub cursor: Cursor,
}

/// A mail already processed, so a rescan or a second copy changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenMail {
    pub first_seen: DateTime<Utc>,
    pub account: String,
    pub folder: String,
    pub uid: Option<u32>,
    pub kind: MailKind,
    pub merchant: Option<String>,
}

/// A Hecto mail no single merchant could be found for; operators were told once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnassignedMail {
    pub identity: String,
    pub recorded_at: DateTime<Utc>,
    pub source: MailSource,
    pub message_id: Option<String>,
    pub kind: MailKind,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    pub business_numbers: Vec<String>,
    pub mids: Vec<String>,
    pub candidates: Vec<String>,
    pub reason: String,
    /// The whole classified mail, so `unassigned assign` can apply it as if it had matched
    /// (records from before it was kept are rebuilt from the fields above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Box<Classified>>,
    /// How an operator took it off the list; `None` while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<unassigned::Resolution>,
}

/// What applying one mail did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub kind: Option<MailKind>,
    /// Already seen (same Message-ID or content): nothing changed but the cursor.
    pub duplicate: bool,
    /// Our own reminder/notice (`X-Hecto-Watch`): ignored.
    pub own_mail: bool,
    pub merchant: Option<String>,
    pub stage_changed: bool,
    pub found_in_spam: bool,
    pub unassigned: bool,
    /// Outbox keys enqueued by this mail (spam and operator notices).
    pub enqueued: Vec<String>,
}

impl Applied {
    pub fn is_hecto(&self) -> bool {
        self.kind.is_some_and(MailKind::is_hecto) && !self.own_mail
    }
}

/// One whole database, for `export`/`import`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub schema_version: u64,
    pub next_seq: u64,
    pub merchants: Vec<Merchant>,
    pub events: Vec<SeqEvent>,
    pub seen: BTreeMap<String, SeenMail>,
    pub unassigned: Vec<SeqUnassigned>,
    pub cursors: Vec<CursorRecord>,
    pub outbox: Vec<OutboxEntry>,
    /// Folder roles last detected per account.
    #[serde(default)]
    pub folders: BTreeMap<String, Vec<(String, FolderRole)>>,
    /// Merchants removed, with the timeline and outbox entries they had.
    #[serde(default)]
    pub removed: Vec<removed::RemovedMerchant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqEvent {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqUnassigned {
    pub seq: u64,
    #[serde(flatten)]
    pub mail: UnassignedMail,
}

/// A mistake in what the caller asked for (exit status 2), as opposed to a failure (1).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("merchant {0:?} already exists")]
    Duplicate(String),
    #[error("no merchant {0:?} (see `hecto-watch merchant list`)")]
    UnknownMerchant(String),
    #[error("the state directory {0} is not empty; import only into an empty one")]
    NotEmpty(PathBuf),
    #[error("{0}")]
    BadInput(String),
}

/// Handle on the database. Cheap to clone (sled trees are `Arc`s).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    meta: sled::Tree,
    merchants: sled::Tree,
    events: sled::Tree,
    seen: sled::Tree,
    unassigned: sled::Tree,
    cursors: sled::Tree,
    outbox: sled::Tree,
    folders: sled::Tree,
    folder_status: sled::Tree,
    outages: sled::Tree,
    /// Merchants removed, with their events and outbox entries (see [`removed`]).
    removed: sled::Tree,
    /// The merchants as matching sees them, for the `merchants_gen` they were read at: decoding
    /// every merchant for every Hecto mail cost 0.25 s per mail at 100,000 merchants.
    for_matching: Arc<Mutex<Option<MatchingList>>>,
    /// The first storage error this process hit (see [`faults`]).
    fault: faults::FaultCell,
}

/// `merchants_gen` and every merchant as of it.
type MatchingList = (u64, Arc<Vec<Merchant>>);

/// Whether two records of a merchant describe the same merchant for matching (SPEC §4: contact,
/// business number, MIDs, company name); a stage change does not.
fn same_identity(a: &Merchant, b: &Merchant) -> bool {
    a.contacts == b.contacts && a.business_no == b.business_no && a.mids == b.mids && a.name == b.name
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

fn dec<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| format!("corrupt {what} record in the database"))
}

fn u64_be(bytes: Option<sled::IVec>) -> u64 {
    bytes.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok()).map_or(0, u64::from_be_bytes)
}

fn event_key(merchant: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(merchant.len() + 9);
    k.extend_from_slice(merchant.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn cursor_key(account: &str, folder: &str) -> Vec<u8> {
    let mut k = account.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(folder.as_bytes());
    k
}

/// `(account, folder)` of a [`cursor_key`].
fn split_cursor_key(k: &[u8]) -> (String, String) {
    let mut parts = k.splitn(2, |b| *b == 0);
    let account = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let folder = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    (account, folder)
}

/// A short stable name for a mail in outbox keys.
pub fn mail_tag(identity: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(identity.as_bytes())[..8])
}

type TxResult<T> = Result<T, ConflictableTransactionError<anyhow::Error>>;

fn abort<T>(e: anyhow::Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_get<T: DeserializeOwned>(tree: &TransactionalTree, what: &str, key: &[u8]) -> TxResult<Option<T>> {
    match tree.get(key)? {
        Some(v) => match dec(what, &v) {
            Ok(x) => Ok(Some(x)),
            Err(e) => abort(e),
        },
        None => Ok(None),
    }
}

fn tx_next_seq(meta: &TransactionalTree) -> TxResult<u64> {
    let seq = u64_be(meta.get(b"next_seq")?);
    meta.insert(b"next_seq".as_slice(), &(seq + 1).to_be_bytes())?;
    Ok(seq)
}

/// Who the merchants are changed: mails matched before must be re-matched, and matching's
/// in-memory list reloaded.
fn tx_bump_merchants_gen(meta: &TransactionalTree) -> TxResult<()> {
    let gen = u64_be(meta.get(b"merchants_gen")?);
    meta.insert(b"merchants_gen".as_slice(), &(gen + 1).to_be_bytes())?;
    Ok(())
}

fn tx_advance_cursor(cursors: &TransactionalTree, account: &str, folder: &str, to: Cursor) -> TxResult<()> {
    let key = cursor_key(account, folder);
    let current: Option<Cursor> = tx_get(cursors, "cursor", &key)?;
    let mut next = match current {
        // Same UIDVALIDITY: only forward, keeping a back-fill under way. A new UIDVALIDITY
        // replaces the cursor (rescan).
        Some(c) if c.uid_validity == to.uid_validity && c.last_uid >= to.last_uid => return Ok(()),
        Some(c) if c.uid_validity == to.uid_validity => Cursor { backfill_to: to.backfill_to.or(c.backfill_to), ..to },
        _ => to,
    };
    if next.backfill_to.is_some_and(|t| next.last_uid >= t) {
        next.backfill_to = None; // the back-fill is done
    }
    cursors.insert(key, enc(&next))?;
    Ok(())
}

fn flatten_tx_error(e: TransactionError<anyhow::Error>) -> anyhow::Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => anyhow!(e).context("database error"),
    }
}

impl Store {
    /// Open (or create) the database in `dir`.
    /// [`Store::open`], waiting up to `within` while another process holds the database — a
    /// command that reads for a moment, or a daemon starting up (SPEC §9's start race).
    pub fn open_waiting(dir: &Path, within: std::time::Duration) -> anyhow::Result<Store> {
        let deadline = std::time::Instant::now() + within;
        loop {
            match Store::open(dir) {
                Err(e) if e.is::<InUse>() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => return other,
            }
        }
    }

    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot create the state directory {} — check --state-dir and permissions", dir.display())
        })?;
        faults::remove_incomplete_snapshots(dir)?;
        let db = sled::Config::new().path(dir).open().map_err(|e| match &e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                anyhow::Error::new(InUse(dir.display().to_string()))
            }
            _ => anyhow!(e).context(format!("cannot open the database in {}", dir.display())),
        })?;
        let open = |name: &str| db.open_tree(name).with_context(|| format!("cannot open tree {name}"));
        let store = Store {
            meta: open("meta")?,
            merchants: open("merchants")?,
            events: open("events")?,
            seen: open("seen")?,
            unassigned: open("unassigned")?,
            cursors: open("cursors")?,
            outbox: open("outbox")?,
            folders: open("folders")?,
            folder_status: open("folder_status")?,
            outages: open("outages")?,
            removed: open("removed")?,
            path: dir.to_owned(),
            db,
            for_matching: Arc::default(),
            fault: faults::FaultCell::default(),
        };
        match store.meta.get(b"schema_version")? {
            None => {
                store.meta.insert(b"schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = u64_be(Some(v));
                if found > SCHEMA_VERSION {
                    bail!(
                        "the database in {} has schema version {found}, newer than this hecto-watch ({SCHEMA_VERSION}); \
                         upgrade hecto-watch or import an export into a new directory",
                        dir.display()
                    );
                }
            }
        }
        store.apply_sent_unrecorded()?;
        Ok(store)
    }

    /// Mark as sent what an earlier process sent but could not record (see [`faults`]), then
    /// remove the file.
    fn apply_sent_unrecorded(&self) -> anyhow::Result<()> {
        let Some(file) = faults::read_sent_unrecorded(&self.path)? else {
            return Ok(());
        };
        for (key, at) in &file.sent {
            if let Some(mut e) = self.outbox_entry(key)? {
                e.status = Delivery::Sent;
                e.sent_at = Some(*at);
                e.sending_since = None;
                e.next_attempt_at = None;
                e.last_error = None;
                self.outbox.insert(key.as_bytes(), enc(&e))?;
            }
        }
        self.db.flush().context("cannot flush the database to disk")?;
        let path = faults::sent_unrecorded_path(&self.path);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        tracing::info!(
            messages = file.sent.len(),
            "Recorded as sent what the previous run sent during a storage fault"
        );
        Ok(())
    }

    /// The storage error this process hit, if any: from then on nothing is sent or advanced
    /// (SPEC §9 Durability).
    pub fn fault(&self) -> Option<faults::Fault> {
        self.fault.get()
    }

    /// A message the SMTP server accepted whose "sent" record could not be written: never sent
    /// again by this process, and written for the next by [`Store::save_sent_unrecorded`].
    pub fn remember_sent_unrecorded(&self, key: &str, at: DateTime<Utc>) {
        self.fault.remember_sent(key, at);
    }

    pub fn sent_unrecorded(&self) -> faults::SentUnrecorded {
        self.fault.sent_unrecorded()
    }

    /// Write what [`Store::remember_sent_unrecorded`] holds next to the database, for the next
    /// open to apply. Needs a little room on the disk.
    pub fn save_sent_unrecorded(&self) -> anyhow::Result<usize> {
        let sent = self.sent_unrecorded();
        if !sent.sent.is_empty() {
            faults::write_sent_unrecorded(&self.path, &sent)?;
        }
        Ok(sent.sent.len())
    }

    /// Our own message `key` (its `X-Hecto-Watch` value), read back from a watched mailbox: the
    /// proof that a message in doubt (handed to the server when the last run ended, see
    /// [`OutboxEntry::sending_since`]) was delivered, so it is recorded as sent instead of being
    /// resent. Returns whether it was in doubt.
    pub fn confirm_delivered(&self, key: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let Some(mut e) = self.outbox_entry(key)? else {
            return Ok(false);
        };
        let Some(since) = e.sending_since.filter(|_| e.status == Delivery::Pending) else {
            return Ok(false);
        };
        e.status = Delivery::Sent;
        e.sent_at = Some(since.min(now));
        e.sending_since = None;
        e.next_attempt_at = None;
        self.put_outbox(&e)?;
        tracing::info!(
            key,
            "A message that may have been delivered before the last stop is in a watched mailbox; not resending it"
        );
        Ok(true)
    }

    /// `r`, remembering a storage error in it.
    fn noted<T>(&self, r: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Err(e) = &r {
            self.fault.note(e);
        }
        r
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn flush(&self) -> anyhow::Result<()> {
        let r = self.db.flush_async().await.context("cannot flush the database to disk");
        self.noted(r).map(drop)
    }

    pub fn flush_blocking(&self) -> anyhow::Result<()> {
        let r = self.db.flush().context("cannot flush the database to disk");
        self.noted(r).map(drop)
    }

    fn is_empty(&self) -> bool {
        [&self.merchants, &self.events, &self.seen, &self.unassigned, &self.cursors, &self.outbox, &self.removed]
            .iter()
            .all(|t| t.is_empty())
    }

    // ---- merchants --------------------------------------------------------------------------

    pub fn merchant(&self, id: &str) -> anyhow::Result<Option<Merchant>> {
        self.merchants.get(id.as_bytes())?.map(|v| dec("merchant", &v)).transpose()
    }

    pub fn merchants(&self) -> anyhow::Result<Vec<Merchant>> {
        self.merchants.iter().values().map(|v| dec("merchant", &v?)).collect()
    }

    /// Register a merchant with its `Registered` event. Refuses a duplicate id.
    pub fn add_merchant(&self, m: &Merchant, note: Option<String>, now: DateTime<Utc>) -> anyhow::Result<()> {
        let event = Event {
            merchant: m.id.clone(),
            at: m.applied_at,
            recorded_at: now,
            change: Change::Registered { stage: m.stage },
            evidence: merchant::Evidence::Operator { note },
        };
        (&self.meta, &self.merchants, &self.events)
            .transaction(|(meta, merchants, events)| {
                if merchants.get(m.id.as_bytes())?.is_some() {
                    return abort(Refused::Duplicate(m.id.clone()).into());
                }
                merchants.insert(m.id.as_bytes(), enc(m))?;
                let seq = tx_next_seq(meta)?;
                events.insert(event_key(&m.id, seq), enc(&event))?;
                tx_bump_merchants_gen(meta)?;
                Ok(())
            })
            .map_err(flatten_tx_error)
    }

    /// Register several merchants in one transaction (`merchant import`): all or none.
    pub fn add_merchants(&self, list: &[Merchant], now: DateTime<Utc>) -> anyhow::Result<()> {
        (&self.meta, &self.merchants, &self.events)
            .transaction(|(meta, merchants, events)| {
                for m in list {
                    if merchants.get(m.id.as_bytes())?.is_some() {
                        return abort(Refused::Duplicate(m.id.clone()).into());
                    }
                    merchants.insert(m.id.as_bytes(), enc(m))?;
                    let event = Event {
                        merchant: m.id.clone(),
                        at: m.applied_at,
                        recorded_at: now,
                        change: Change::Registered { stage: m.stage },
                        evidence: merchant::Evidence::Operator { note: Some("merchant import".into()) },
                    };
                    let seq = tx_next_seq(meta)?;
                    events.insert(event_key(&m.id, seq), enc(&event))?;
                }
                tx_bump_merchants_gen(meta)?;
                Ok(())
            })
            .map_err(flatten_tx_error)
    }

    /// Change a merchant record and append events, in one transaction (operator changes).
    /// `change` gets the record as stored inside the transaction, so a mail applied meanwhile is
    /// not overwritten; it must be pure (sled may run it more than once). Returns the new record.
    pub fn update_merchant(
        &self,
        id: &str,
        change: impl Fn(&Merchant) -> (Merchant, Vec<Event>),
    ) -> anyhow::Result<Merchant> {
        (&self.meta, &self.merchants, &self.events)
            .transaction(|(meta, merchants, events)| {
                let Some(old) = tx_get::<Merchant>(merchants, "merchant", id.as_bytes())? else {
                    return abort(Refused::UnknownMerchant(id.to_owned()).into());
                };
                let (m, new_events) = change(&old);
                if !same_identity(&old, &m) {
                    tx_bump_merchants_gen(meta)?;
                }
                merchants.insert(id.as_bytes(), enc(&m))?;
                for e in &new_events {
                    let seq = tx_next_seq(meta)?;
                    events.insert(event_key(id, seq), enc(e))?;
                }
                Ok(m)
            })
            .map_err(flatten_tx_error)
    }

    pub fn events(&self, merchant: &str) -> anyhow::Result<Vec<Event>> {
        let mut prefix = merchant.as_bytes().to_vec();
        prefix.push(0);
        self.events.scan_prefix(prefix).values().map(|v| dec("event", &v?)).collect()
    }

    /// The unassigned mails still waiting for an operator (not assigned or dismissed).
    pub fn unassigned(&self) -> anyhow::Result<Vec<UnassignedMail>> {
        let all: Vec<UnassignedMail> =
            self.unassigned.iter().values().map(|v| dec("unassigned mail", &v?)).collect::<anyhow::Result<_>>()?;
        Ok(all.into_iter().filter(|u| u.resolution.is_none()).collect())
    }

    pub fn seen_count(&self) -> usize {
        self.seen.len()
    }

    // ---- cursors ------------------------------------------------------------------------------

    pub fn cursor(&self, account: &str, folder: &str) -> anyhow::Result<Option<Cursor>> {
        self.cursors.get(cursor_key(account, folder))?.map(|v| dec("cursor", &v)).transpose()
    }

    pub fn cursors(&self) -> anyhow::Result<Vec<CursorRecord>> {
        self.cursors
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let (account, folder) = split_cursor_key(&k);
                Ok(CursorRecord { account, folder, cursor: dec("cursor", &v)? })
            })
            .collect()
    }

    /// Move a folder's cursor past mail that needed no processing (forward only within one
    /// UIDVALIDITY; a new UIDVALIDITY replaces it).
    pub fn advance_cursor(&self, account: &str, folder: &str, to: Cursor) -> anyhow::Result<()> {
        let r = self.cursors.transaction(|cursors| tx_advance_cursor(cursors, account, folder, to));
        self.noted(r.map_err(flatten_tx_error))
    }

    /// Every merchant, as of `gen`: from memory while `merchants_gen` has not moved.
    fn merchants_for_matching(&self, gen: u64) -> anyhow::Result<Arc<Vec<Merchant>>> {
        let mut cached = self.for_matching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((g, all)) = cached.as_ref() {
            if *g == gen {
                return Ok(Arc::clone(all));
            }
        }
        let all = Arc::new(self.merchants()?);
        *cached = Some((gen, Arc::clone(&all)));
        Ok(all)
    }

    // ---- one mail -----------------------------------------------------------------------------

    /// Apply one classified mail: match it, change the merchant, record events and evidence,
    /// queue spam/operator notices and advance the folder's cursor — all in one transaction.
    pub fn apply_mail(
        &self,
        mail: &Classified,
        source: &MailSource,
        rules: &Rules,
        operators: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Applied> {
        let cursor = match (source.uid_validity, source.uid) {
            (Some(v), Some(u)) => Some(Cursor::at(v, u)),
            _ => None,
        };
        let identity = mail.identity();
        let relevant = mail.kind.is_hecto() && !mail.self_sent() && !mail.unparseable;
        // Matching needs every merchant, and sled transactions cannot iterate, so match against a
        // snapshot and let the transaction check that no merchant was added/removed meanwhile.
        let (gen, outcome) = if relevant {
            loop {
                let gen = u64_be(self.meta.get(b"merchants_gen")?);
                let all = self.merchants_for_matching(gen)?;
                let outcome = merchant::match_mail(mail, all.iter());
                if u64_be(self.meta.get(b"merchants_gen")?) == gen {
                    break (gen, Some(outcome));
                }
            }
        } else {
            (0, None)
        };

        let trees =
            (&self.meta, &self.merchants, &self.events, &self.seen, &self.unassigned, &self.cursors, &self.outbox);
        let result = trees.transaction(|(meta, merchants, events, seen, unassigned, cursors, outbox)| {
            let mut applied = Applied { kind: Some(mail.kind), own_mail: mail.self_sent(), ..Applied::default() };
            if let Some(c) = cursor {
                tx_advance_cursor(cursors, &source.account, &source.folder, c)?;
            }
            let Some(outcome) = &outcome else {
                return Ok(applied);
            };
            if seen.get(identity.as_bytes())?.is_some() {
                applied.duplicate = true;
                return Ok(applied);
            }
            if u64_be(meta.get(b"merchants_gen")?) != gen {
                // A merchant was added or removed since we matched: retry from the top.
                return abort(anyhow!(StaleMatch));
            }
            let tag = mail_tag(&identity);
            let mut seen_merchant = None;
            match outcome {
                MatchOutcome::Matched { id, rule } => {
                    let Some(m) = tx_get::<Merchant>(merchants, "merchant", id.as_bytes())? else {
                        return abort(anyhow!(StaleMatch));
                    };
                    let effect = merchant::apply_mail(&m, mail, source, rules, rule, now);
                    if !same_identity(&m, &effect.merchant) {
                        // A contract-completed mail brings the merchant's MIDs.
                        tx_bump_merchants_gen(meta)?;
                    }
                    merchants.insert(id.as_bytes(), enc(&effect.merchant))?;
                    for e in &effect.events {
                        let seq = tx_next_seq(meta)?;
                        events.insert(event_key(id, seq), enc(e))?;
                    }
                    applied.merchant = Some(id.clone());
                    applied.stage_changed = effect.stage_changed;
                    applied.found_in_spam = effect.spam_notice;
                    seen_merchant = Some(id.clone());
                    if effect.spam_notice {
                        applied.enqueued.extend(tx_spam_notice(
                            outbox,
                            &effect.merchant,
                            mail,
                            source,
                            &tag,
                            operators,
                            now,
                        )?);
                    }
                    if mail.kind == MailKind::Suspicious {
                        let key = operator_notice(
                            outbox,
                            mail,
                            source,
                            "suspicious",
                            &tag,
                            format!("for merchant {id}"),
                            vec![id.clone()],
                            operators,
                            now,
                        )?;
                        applied.enqueued.extend(key);
                    }
                }
                MatchOutcome::Unassigned { candidates, reason } => {
                    applied.unassigned = true;
                    let seq = tx_next_seq(meta)?;
                    let resolve = format!(
                        "{reason} — `hecto-watch unassigned assign {seq} MERCHANT` applies it to a merchant, \
                         `hecto-watch unassigned dismiss {seq}` sets it aside"
                    );
                    let record = UnassignedMail {
                        identity: identity.clone(),
                        recorded_at: now,
                        source: source.clone(),
                        message_id: mail.message_id.clone(),
                        kind: mail.kind,
                        sender: mail.sender.clone(),
                        recipients: mail.recipients.clone(),
                        subject: mail.subject.clone(),
                        date: mail.date.map(|d| d.with_timezone(&Utc)),
                        business_numbers: mail.business_numbers.clone(),
                        mids: mail.mids.clone(),
                        candidates: candidates.clone(),
                        reason: reason.clone(),
                        mail: Some(Box::new(mail.clone())),
                        resolution: None,
                    };
                    unassigned.insert(&seq.to_be_bytes(), enc(&record))?;
                    let why = if mail.kind == MailKind::Suspicious { "suspicious" } else { "unassigned" };
                    let key =
                        operator_notice(outbox, mail, source, why, &tag, resolve, candidates.clone(), operators, now)?;
                    applied.enqueued.extend(key);
                }
            }
            let record = SeenMail {
                first_seen: now,
                account: source.account.clone(),
                folder: source.folder.clone(),
                uid: source.uid,
                kind: mail.kind,
                merchant: seen_merchant,
            };
            seen.insert(identity.as_bytes(), enc(&record))?;
            Ok(applied)
        });
        match result {
            Ok(a) => {
                if let Some(key) = &mail.own_key {
                    self.confirm_delivered(key, now)?;
                }
                Ok(a)
            }
            Err(TransactionError::Abort(e)) if e.is::<StaleMatch>() => {
                self.apply_mail(mail, source, rules, operators, now)
            }
            Err(e) => self.noted(Err(flatten_tx_error(e))),
        }
    }

    // ---- outbox -------------------------------------------------------------------------------

    pub fn outbox_entries(&self) -> anyhow::Result<Vec<OutboxEntry>> {
        self.outbox.iter().values().map(|v| dec("outbox entry", &v?)).collect()
    }

    pub fn outbox_entry(&self, key: &str) -> anyhow::Result<Option<OutboxEntry>> {
        self.outbox.get(key.as_bytes())?.map(|v| dec("outbox entry", &v)).transpose()
    }

    /// Insert entries whose key is not there yet; returns the keys inserted. One transaction.
    pub fn enqueue(&self, entries: &[OutboxEntry]) -> anyhow::Result<Vec<String>> {
        let r = self
            .outbox
            .transaction(|outbox| {
                let mut added = Vec::new();
                for e in entries {
                    if outbox.get(e.key.as_bytes())?.is_none() {
                        outbox.insert(e.key.as_bytes(), enc(e))?;
                        added.push(e.key.clone());
                    }
                }
                Ok(added)
            })
            .map_err(flatten_tx_error);
        self.noted(r)
    }

    /// Replace an existing outbox entry (delivery state, rendering).
    pub fn put_outbox(&self, entry: &OutboxEntry) -> anyhow::Result<()> {
        let r = self.outbox.insert(entry.key.as_bytes(), enc(entry)).map_err(anyhow::Error::from);
        self.noted(r).map(drop)
    }

    /// Write `entry` only if its key is still in the outbox (the sender's updates): a merchant
    /// removed while its message was being sent has had its entries archived, and writing one
    /// back would revive a key the re-added merchant's reminders need. Returns whether it was.
    pub fn update_outbox(&self, entry: &OutboxEntry) -> anyhow::Result<bool> {
        let key = entry.key.as_bytes();
        let new = enc(entry);
        let r = (|| loop {
            let Some(current) = self.outbox.get(key)? else { return Ok(false) };
            if self.outbox.compare_and_swap(key, Some(current), Some(new.clone()))?.is_ok() {
                return Ok(true);
            }
        })();
        self.noted(r)
    }

    // ---- export / import ----------------------------------------------------------------------

    pub fn export(&self) -> anyhow::Result<Export> {
        // The daemon may apply mail meanwhile, and sled has no snapshot across trees. So: the
        // cursors first, then `seen`, then what a mail changes. A mail in `seen` then has its
        // effects in the copy too, and one the cursors do not cover is rescanned after an import;
        // the other order could keep a mail as seen whose events were never copied.
        let cursors = self.cursors()?;
        let seen = self
            .seen
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), dec("seen", &v)?))
            })
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
        let events = self
            .events
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let seq = k.len().checked_sub(8).map_or(0, |i| u64_be(Some(sled::IVec::from(&k[i..]))));
                Ok(SeqEvent { seq, event: dec("event", &v)? })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let unassigned = self
            .unassigned
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok(SeqUnassigned { seq: u64_be(Some(k)), mail: dec("unassigned mail", &v)? })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Export {
            schema_version: SCHEMA_VERSION,
            next_seq: u64_be(self.meta.get(b"next_seq")?),
            merchants: self.merchants()?,
            events,
            seen,
            unassigned,
            cursors,
            outbox: self.outbox_entries()?,
            folders: self.folder_roles()?,
            removed: self.removed_merchants()?,
        })
    }

    /// Load an export into this (empty) database.
    pub fn import(&self, data: &Export) -> anyhow::Result<()> {
        if data.schema_version > SCHEMA_VERSION {
            return Err(Refused::BadInput(format!(
                "the export has schema version {}, newer than this hecto-watch ({SCHEMA_VERSION})",
                data.schema_version
            ))
            .into());
        }
        if !self.is_empty() {
            return Err(Refused::NotEmpty(self.path.clone()).into());
        }
        let trees =
            (&self.meta, &self.merchants, &self.events, &self.seen, &self.unassigned, &self.cursors, &self.outbox);
        trees
            .transaction(|(meta, merchants, events, seen, unassigned, cursors, outbox)| {
                for m in &data.merchants {
                    merchants.insert(m.id.as_bytes(), enc(m))?;
                }
                let mut max_seq = data.next_seq;
                for e in &data.events {
                    events.insert(event_key(&e.event.merchant, e.seq), enc(&e.event))?;
                    max_seq = max_seq.max(e.seq + 1);
                }
                for (k, v) in &data.seen {
                    seen.insert(k.as_bytes(), enc(v))?;
                }
                for u in &data.unassigned {
                    unassigned.insert(&u.seq.to_be_bytes(), enc(&u.mail))?;
                    max_seq = max_seq.max(u.seq + 1);
                }
                for c in &data.cursors {
                    cursors.insert(cursor_key(&c.account, &c.folder), enc(&c.cursor))?;
                }
                for o in &data.outbox {
                    outbox.insert(o.key.as_bytes(), enc(o))?;
                }
                meta.insert(b"next_seq".as_slice(), &max_seq.to_be_bytes())?;
                tx_bump_merchants_gen(meta)?;
                Ok(())
            })
            .map_err(flatten_tx_error)?;
        for (account, roles) in &data.folders {
            self.set_folder_roles(account, roles)?;
        }
        for r in &data.removed {
            self.removed.insert(removed::removed_key(&r.merchant.id, r.removed_at), enc(r))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("merchant list changed while matching")]
struct StaleMatch;

/// Another process holds the database (sled admits one).
#[derive(Debug, thiserror::Error)]
#[error(
    "the database in {0} is in use by another process (is `hecto-watch run` running? then the command goes through it)"
)]
pub struct InUse(pub String);

/// The spam notice for `merchant`'s mail found in a spam folder, queued once per mail (the key
/// holds the mail's tag); returns its key when it was queued now.
fn tx_spam_notice(
    outbox: &TransactionalTree,
    merchant: &Merchant,
    mail: &Classified,
    source: &MailSource,
    tag: &str,
    operators: &[String],
    now: DateTime<Utc>,
) -> TxResult<Option<String>> {
    let key = format!("spam/{}/{tag}", merchant.id);
    if outbox.get(key.as_bytes())?.is_some() {
        return Ok(None);
    }
    let entry = OutboxEntry::pending(
        key.clone(),
        NoticeKind::SpamNotice,
        Some(merchant.id.clone()),
        "spam".into(),
        1,
        NoticeFacts::SpamNotice {
            merchant_name: merchant.name.clone(),
            account: source.account.clone(),
            folder: source.folder.clone(),
            subject: mail.subject.clone(),
            mail_date: merchant::mail_time(mail, source, now),
            message_id: mail.message_id.clone(),
            kind: mail.kind.as_str().into(),
            moved_to_inbox: source.move_to_inbox,
        },
        now,
    )
    .to_contacts(&merchant.contacts, operators)
    .in_language(merchant.language);
    outbox.insert(key.as_bytes(), enc(&entry))?;
    Ok(Some(key))
}

#[allow(clippy::too_many_arguments)]
fn operator_notice(
    outbox: &TransactionalTree,
    mail: &Classified,
    source: &MailSource,
    reason: &str,
    tag: &str,
    detail: String,
    candidates: Vec<String>,
    operators: &[String],
    now: DateTime<Utc>,
) -> TxResult<Option<String>> {
    let key = format!("operator/{reason}/{tag}");
    if outbox.get(key.as_bytes())?.is_some() {
        return Ok(None);
    }
    let entry = OutboxEntry::pending(
        key.clone(),
        NoticeKind::OperatorNotice,
        None,
        reason.into(),
        1,
        NoticeFacts::OperatorNotice {
            reason: reason.into(),
            detail,
            account: source.account.clone(),
            folder: source.folder.clone(),
            subject: mail.subject.clone(),
            sender: mail.sender.clone(),
            message_id: mail.message_id.clone(),
            kind: mail.kind.as_str().into(),
            candidates,
        },
        now,
    )
    .to_operators(operators);
    outbox.insert(key.as_bytes(), enc(&entry))?;
    Ok(Some(key))
}

/// `FolderRole` as a word, for evidence and messages.
pub fn role_name(role: FolderRole) -> &'static str {
    match role {
        FolderRole::Inbox => "inbox",
        FolderRole::Junk => "junk",
        FolderRole::Sent => "sent",
        FolderRole::Other => "other",
    }
}
