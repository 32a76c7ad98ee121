//! One pass over one folder: from the stored cursor to the newest mail (SPEC §6).
//!
//! 1. `EXAMINE` (read-only: nothing we do can set `\Seen` or delete anything). The newest UID is
//!    UIDNEXT − 1; a server that gives no UIDNEXT is asked `UID FETCH * (UID)` (not `UID SEARCH
//!    UID *`, which Courier answers with an empty SEARCH), then `STATUS (UIDNEXT)`.
//! 2. Compare UIDVALIDITY with the cursor. Same → the UIDs after it, up to UIDNEXT − 1. None yet
//!    or changed → a back-fill of the mail that arrived within `backfill_days` (a changed
//!    UIDVALIDITY means every UID was renumbered; Message-ID de-duplication in the store keeps the
//!    rescan from repeating events): `UID SEARCH SINCE` when the folder's first mail is older than
//!    that, else every UID with the window checked per mail in step 4 (on a Maildir server a
//!    SEARCH SINCE stats every file of the folder). Nothing new → no further command at all.
//! 3. About [`HEADER_BATCH`] mails per command: `UID FETCH a:b (UID BODY.PEEK[HEADER.FIELDS (FROM
//!    TO CC)])`, read by [`fast_fetch`](super::fast_fetch) and pre-classified; only mail that may
//!    be Hecto's (or whose headers could not be read) goes on.
//! 4. For those, in groups of [`BODY_BATCH`]: `UID FETCH set (UID RFC822.SIZE INTERNALDATE
//!    BODY.PEEK[]<0.N>)` — the size, the arrival (the back-fill window on a first sync or rescan:
//!    `backfill_days`, by arrival day as SEARCH SINCE would) and the body, or its first
//!    [`BODY_FIRST_BYTES`], in one round trip; only a mail that the partial read cut short is
//!    fetched again whole (`BODY.PEEK[]`, in groups bounded by RFC822.SIZE). Applied in ascending
//!    UID order — each in one sled transaction that also
//!    advances the cursor — then the cursor moves past the range's other mail. Flush at least
//!    every [`FLUSH_EVERY`] and at the end of the pass. The cursor never passes a mail whose
//!    effects are not committed (same transaction), so a crash at any point re-reads, never loses.
//! 5. A big pass (more than one range ahead: a first sync, a rescan, a long absence) streams the
//!    headers on this connection while a second one fetches the bodies and the ingest applies
//!    them, so the server never waits for our transactions.
//! 6. With `move_found_in_spam`, move the junk folder's Hecto mail for a merchant to INBOX (after
//!    the flush): `UID MOVE`, else `UID COPY` + `\Deleted` + `UID EXPUNGE` of exactly those UIDs,
//!    else (RFC 3501 alone) `UID COPY` + `\Deleted` + `EXPUNGE` only while no other mail of the
//!    folder is `\Deleted` — someone else's deleted mail is never expunged.
//!
//! **Never "nothing there" for "could not read"** (SPEC §6). Every empty answer where the server
//! said there is mail is checked before the cursor moves: a folder with mail whose newest UID no
//! answer gives, a header batch that comes back empty while `UID FETCH set (UID)` lists mail in
//! it, a whole-folder pass that reads no header although EXISTS > 0, a body that does not come
//! for a mail the server still holds, a back-fill `SEARCH SINCE` that leaves out the newest mail
//! although it arrived within the window (then every header is read instead), and a command the
//! server refused (`NO`/`BAD`: every completion is checked, see [`Connection::run_checked`] —
//! async-imap's own streams drop it, so a refusal read like an empty answer). Each is an error
//! of the folder, with the server's answer in it, kept as the folder's status in the store
//! ([`record_outcome`]) for `health` and the alerts; the cursor stays where it was.
//!
//! Cancellation is honoured between mails and during network waits, never inside an apply. What
//! was applied is committed with its cursor; callers flush when they stop (the daemon at
//! shutdown, `scan --once` before it exits).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context};
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn};

use super::connect::{connect, ConnectError, Connection, IO_TIMEOUT};
use super::fast_fetch;
use super::folders::WatchedFolder;
use super::{Hooks, ImapEvent, MailReport};
use crate::config::Account;
use crate::health::Trouble;
use crate::ingest::{FolderRole, Ingest, MailSource};

/// Header fetches per command. Responses are consumed as they stream in (memory does not grow
/// with the batch), so the batch only bounds how much is re-read after a crash; fewer, larger
/// commands keep the server streaming instead of waiting for our next request.
pub const HEADER_BATCH: usize = 5000;
/// Bodies per command, and the byte budget (by RFC822.SIZE) of one group of mails fetched again
/// whole because their first read ([`BODY_FIRST_BYTES`]) cut them short.
pub const BODY_BATCH: usize = 50;
pub const BODY_BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// The first read of a body asks for at most this many bytes (`BODY.PEEK[]<0.N>`), with the
/// mail's size and arrival in the same answer: one round trip per group instead of two (sizes,
/// then bodies). Hecto's mails are far smaller; a bigger one (an attachment) is read again whole.
/// It also bounds what a group in flight can bring: [`BODY_BATCH`] × this.
pub const BODY_FIRST_BYTES: u32 = 128 * 1024;

/// The longest a pass runs without flushing what it committed.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The header fields the pre-classification needs, and no more: SPEC §3 makes a mail Hecto's
/// business only through its direction (From, To, Cc) or a From display name claiming Hecto.
/// Subject, Date and Message-ID are read from the full body of the mails that get fetched; asking
/// for them here too cost ~15 % of the header pass (measured with `scripts/bench-scan`). Our own `X-Hecto-Watch`
/// marker is deliberately not asked for: a header field that (almost) no mail has still costs
/// Dovecot ~20 % more per mail, and our few own mails that look Hecto-ish are simply fetched in
/// full, where the classifier sees the marker and the ingest ignores them.
/// `X-Hecto-Watch` marks our own messages: its value (the outbox key) proves a delivery that a
/// crash left in doubt, without reading the mail.
pub const HEADER_FIELDS: &str = "FROM TO CC X-HECTO-WATCH";

/// Why a folder pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cancelled")]
    Cancelled,
    /// The server or the connection failed: reconnect and retry.
    #[error("{0:#}")]
    Imap(anyhow::Error),
    /// The database failed: retrying may help (disk full is transient), but say it loudly.
    #[error("{0:#}")]
    Store(anyhow::Error),
}

impl SyncError {
    /// The kind of trouble, for `health` and alerts: a connection's own, else the folder's.
    pub fn trouble(&self) -> Trouble {
        match self {
            SyncError::Store(_) => Trouble::Storage,
            SyncError::Imap(e) => trouble_of(e),
            SyncError::Cancelled => Trouble::Folder,
        }
    }
}

/// The trouble of an error that may wrap a [`ConnectError`] (a listing, a reconnect).
pub(super) fn trouble_of(e: &anyhow::Error) -> Trouble {
    e.chain().find_map(|c| c.downcast_ref::<ConnectError>()).map_or(Trouble::Folder, ConnectError::trouble)
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStats {
    /// Mails whose headers were looked at.
    pub mails_seen: u64,
    pub bodies_fetched: u64,
    pub hecto_mails: u64,
    pub stage_changes: u64,
    pub found_in_spam: u64,
    pub unassigned: u64,
    pub duplicates: u64,
    pub moved_to_inbox: u64,
}

impl SyncStats {
    pub fn add(&mut self, o: &SyncStats) {
        self.mails_seen += o.mails_seen;
        self.bodies_fetched += o.bodies_fetched;
        self.hecto_mails += o.hecto_mails;
        self.stage_changes += o.stage_changes;
        self.found_in_spam += o.found_in_spam;
        self.unassigned += o.unassigned;
        self.duplicates += o.duplicates;
        self.moved_to_inbox += o.moved_to_inbox;
    }
}

/// Everything a folder pass needs besides the connection.
pub struct FolderCtx<'a> {
    pub account: &'a Account,
    pub folder: &'a WatchedFolder,
    pub ingest: &'a Ingest,
    pub cancel: &'a CancellationToken,
    pub hooks: &'a Hooks,
    /// The folder's counters as the server gave them moments ago on this pass's connection
    /// (`scan --once`: LIST-STATUS or STATUS), if it did; never stale ones (the daemon's
    /// passes select the folder every time: IDLE needs it selected anyway).
    pub listed: Option<super::folders::FolderCounts>,
}

/// Whether the folder's counters (`ctx.listed`) show nothing new: a UIDNEXT the cursor has
/// reached under the same UIDVALIDITY (or, never read, a folder that never held mail). Then the
/// pass needs no command at all. No counters, a missing one, or UIDNEXT 1 beside mail (UIDNEXT
/// exceeds every UID: not believed) → select it.
pub fn nothing_new(ctx: &FolderCtx<'_>) -> bool {
    let Some(counts) = ctx.listed else { return false };
    let (Some(validity), Some(next)) = (counts.uid_validity, counts.uid_next) else { return false };
    if next <= 1 && counts.messages != Some(0) {
        return false;
    }
    // Where the pass would start reading, as `sync_pass` decides it: an empty folder never
    // read has no cursor and nothing to read either.
    let start = match ctx.ingest.cursor(&ctx.account.name, &ctx.folder.name) {
        Ok(Some(c)) if c.uid_validity == validity => c.last_uid.saturating_add(1),
        Ok(_) => 1,
        Err(_) => return false,
    };
    next <= start
}

/// A pass over a folder whose counters show nothing new: no command, the outcome recorded as
/// any pass's is. `None` when the folder has to be looked at.
pub fn pass_unchanged(ctx: &FolderCtx<'_>) -> Option<Result<SyncStats, SyncError>> {
    if !nothing_new(ctx) {
        return None;
    }
    debug!(account = %ctx.account.name, folder = %ctx.folder.name, "Nothing new by its counters");
    let result = Ok(SyncStats::default());
    record_outcome(ctx, &result);
    Some(result)
}

/// Await a network future with the I/O deadline, giving up at once when cancelled.
async fn net<T, E>(
    ctx: &FolderCtx<'_>,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, SyncError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    net_within(ctx, what, IO_TIMEOUT, fut).await
}

async fn net_within<T, E>(
    ctx: &FolderCtx<'_>,
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, SyncError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Err(SyncError::Cancelled),
        r = tokio::time::timeout(limit, fut) => match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SyncError::Imap(anyhow::Error::new(e).context(format!(
                "{what} in {:?}", ctx.folder.name
            )))),
            Err(_) => Err(SyncError::Imap(anyhow!(
                "{what} in {:?}: no answer within {} s", ctx.folder.name, limit.as_secs()
            ))),
        },
    }
}

/// `1:5,7,9:12` from ascending UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end = uids[i + 1];
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// IMAP `date` for SEARCH SINCE (RFC 3501: `27-Sep-2026`; English month names).
pub fn imap_date(t: DateTime<Utc>) -> String {
    t.format("%d-%b-%Y").to_string()
}

/// One mail's header-pass verdict.
struct Seen {
    uid: u32,
    needs_body: bool,
    /// Its header section came (else the whole mail is read to judge it).
    header: bool,
}

/// How long a big pass that could not open a connection of its own waits for the one it was
/// promised (see [`sync_folder_with`]).
pub const PROMISED_HELPER_WAIT: Duration = Duration::from_secs(2);

/// Sync one folder from its cursor to the newest mail.
pub async fn sync_folder(conn: &mut Connection, ctx: &FolderCtx<'_>) -> Result<SyncStats, SyncError> {
    sync_folder_with(conn, ctx, None).await
}

/// [`sync_folder`], where a big pass may use a connection that is still busy elsewhere and
/// promised through `helper` (`scan --once` hands over the connection that scanned the other
/// folders, saving the server a login), instead of opening a second one.
pub async fn sync_folder_with(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    helper: Option<tokio::sync::oneshot::Receiver<Connection>>,
) -> Result<SyncStats, SyncError> {
    let mut helper = helper;
    if let Some(unchanged) = pass_unchanged(ctx) {
        release_promised(helper).await;
        return unchanged;
    }
    // A panic inside the pass (a bug, or a server response the IMAP library cannot take) is
    // this folder's error, recorded like any other, not a task that silently ends.
    let pass = std::panic::AssertUnwindSafe(sync_pass(conn, ctx, &mut helper)).catch_unwind();
    let result = pass.await.unwrap_or_else(|p| {
        Err(SyncError::Imap(anyhow!("reading {:?} failed ({})", ctx.folder.name, super::watch::panic_text(p.as_ref()))))
    });
    // Not needed after all (no big pass, or it failed first).
    release_promised(helper).await;
    // Server alerts and announcements that async-imap set aside during the pass.
    conn.note_unsolicited();
    record_outcome(ctx, &result);
    result
}

/// A connection promised for a big pass that did not need it: refused from now on, and logged
/// out if it came already.
async fn release_promised(helper: Option<tokio::sync::oneshot::Receiver<Connection>>) {
    if let Some(mut rx) = helper {
        rx.close();
        if let Ok(c) = rx.try_recv() {
            c.logout().await;
        }
    }
}

/// Keep the pass's outcome as the folder's status (SPEC §6: a folder that could not be read is
/// an error of that folder, shown by `health` and alerted on).
pub(super) fn record_outcome(ctx: &FolderCtx<'_>, result: &Result<SyncStats, SyncError>) {
    let (account, folder) = (&ctx.account.name, &ctx.folder.name);
    match result {
        Ok(stats) => {
            let now = ctx.ingest.clock().now();
            let recorded = ctx.ingest.store().folder_synced(account, folder, now, stats.mails_seen);
            warn_unrecorded(account, folder, recorded);
        }
        Err(SyncError::Cancelled) => {}
        Err(e) => record_failure(ctx.ingest, account, folder, &e.to_string(), e.trouble()),
    }
}

/// Keep `error` as the folder's last error — also for what fails before a pass can start (no
/// connection, no login, no folder list). Best effort: a database that cannot take it fails the
/// next mail's transaction loudly enough.
pub(super) fn record_failure(ingest: &Ingest, account: &str, folder: &str, error: &str, trouble: Trouble) {
    let recorded = ingest.store().folder_failed(account, folder, ingest.clock().now(), error, trouble);
    warn_unrecorded(account, folder, recorded);
}

fn warn_unrecorded(account: &str, folder: &str, recorded: anyhow::Result<()>) {
    if let Err(e) = recorded {
        warn!(account = %account, folder = %folder, error = %format!("{e:#}"), "Cannot record the folder's sync status");
    }
}

async fn sync_pass(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    promised: &mut Option<tokio::sync::oneshot::Receiver<Connection>>,
) -> Result<SyncStats, SyncError> {
    let account = &ctx.account.name;
    let folder = &ctx.folder.name;

    // EXAMINE, not SELECT: read-only, so neither we nor a bug of ours can change a flag. A
    // folder never read (no cursor) is back-filled, which starts by asking its first and last
    // mail's arrival: that FETCH goes out with the EXAMINE (pipelined: one round trip for both).
    let cursor = ctx.ingest.cursor(account, folder).map_err(SyncError::Store)?;
    let examine =
        net(ctx, "EXAMINE", conn.send(format!("EXAMINE {}", super::folders::quoted(&ctx.folder.raw)))).await?;
    let ends_tag = match cursor {
        None => Some(net(ctx, "FETCH 1,* (INTERNALDATE)", conn.send(ENDS_FETCH)).await?),
        Some(_) => None,
    };
    let mbox = net(ctx, "EXAMINE", conn.finish_examine(&examine)).await;
    let ends = match ends_tag {
        // An empty folder answers that FETCH with NO or BAD (no mail numbered 1 or *): of no
        // matter, its ends are never asked for.
        Some(tag) => Some(read_ends(conn, ctx, &tag, mbox.as_ref().map_or(0, |m| m.exists)).await),
        None => None,
    };
    let mbox = mbox?;
    let uid_validity = mbox.uid_validity.ok_or_else(|| {
        SyncError::Imap(anyhow!("the server sent no UIDVALIDITY for {folder:?}; cannot keep a cursor"))
    })?;
    let newest_uid = newest_uid(conn, ctx, &mbox).await?;

    let rescan = !matches!(cursor, Some(c) if c.uid_validity == uid_validity);
    let start = match cursor {
        Some(c) if !rescan => c.last_uid.saturating_add(1),
        Some(c) => {
            warn!(account = %account, folder = %folder, old = c.uid_validity, new = uid_validity,
                "UIDVALIDITY changed; rescanning (duplicates are recognised by Message-ID)");
            1
        }
        None => 1,
    };
    if newest_uid < start {
        return Ok(SyncStats::default()); // nothing new: not a single command more (the common poll)
    }
    if mbox.exists == 0 || (rescan && ctx.account.backfill_days == 0) {
        // The server says the folder is empty (its new mail was deleted or moved before we
        // looked; Gmail purges spam after 30 days), or no back-fill is wanted: start watching
        // from here, so the next pass is incremental. An EXISTS announced meanwhile makes the
        // watcher look again.
        ctx.ingest.skip(account, folder, uid_validity, newest_uid).map_err(SyncError::Store)?;
        ctx.ingest.flush().await.map_err(SyncError::Store)?;
        return Ok(SyncStats::default());
    }
    let mut pass = Pass {
        uid_validity,
        stats: SyncStats::default(),
        to_move: Vec::new(),
        last_flush: std::time::Instant::now(),
        window: None,
        cursor_at: 0,
        can_move: None,
        whole_bodies: false,
    };
    let mut batches = Batches::Ranges(UidRanges::new(start, newest_uid));
    let since = ctx.ingest.clock().now() - chrono::Duration::days(i64::from(ctx.account.backfill_days));
    if let Some(to) = cursor.and_then(|c| c.backfill_to).filter(|_| !rescan) {
        // A back-fill that an earlier pass began and did not finish: the same window for the
        // mail it set out to read; what arrived after it began is new mail.
        pass.window = Some((since.date_naive(), to));
    }
    if rescan {
        ctx.ingest.begin_backfill(account, folder, uid_validity, newest_uid).map_err(SyncError::Store)?;
        // The back-fill window (SPEC §6), by arrival day as SEARCH SINCE applies it. SEARCH SINCE
        // makes a Maildir server stat every file of the folder (≈45 ms per 18,000 mails in
        // Dovecot, measured: a third of a whole scan), so it is asked only when the folder's
        // oldest mail arrived before the window, where it spares reading the old mail's headers.
        // Otherwise every header is read, and the window is checked on the few mails that go on
        // to a body fetch. Either way exactly the mails that arrived within the window count.
        pass.window = Some((since.date_naive(), newest_uid));
        let day = since.date_naive();
        let (first, last) = match ends {
            _ if mbox.exists == 0 => (None, None),
            Some(read) => read?,
            None => ends_arrived(conn, ctx, mbox.exists).await?,
        };
        if first.is_some_and(|(_, d)| d < day) {
            let query = format!("SINCE {}", imap_date(since));
            let mut uids = uid_search(conn, ctx, &query).await?;
            uids.retain(|u| (start..=newest_uid).contains(u));
            // A SEARCH that leaves out the newest mail although it arrived within the window
            // is broken (some servers answer SEARCH with nothing: Courier for `UID *`, Kakao
            // for content): read every header instead, never trust it for "nothing there".
            let trusted = match last {
                Some((uid, arrived)) if arrived >= day && uid <= newest_uid => uids.binary_search(&uid).is_ok(),
                Some(_) => true,
                // The last mail did not answer: nothing to check the SEARCH against.
                None => false,
            };
            if trusted {
                batches = Batches::Listed { uids, pos: 0 };
            } else {
                warn!(account = %account, folder = %folder, found = uids.len(),
                    "UID SEARCH SINCE left out mail that arrived within the back-fill window; reading every header instead");
            }
        }
    }

    // The mails ahead, at most: UIDs can have gaps, so the progress bar is trimmed at the end.
    let ahead = match &batches {
        Batches::Ranges(_) => u64::from(newest_uid - start + 1).min(u64::from(mbox.exists)),
        Batches::Listed { uids, .. } => uids.len() as u64,
    };
    if let Some(bar) = &ctx.hooks.progress {
        bar.inc_length(ahead);
    }
    if !rescan || ahead > 0 {
        debug!(account = %account, folder = %folder, uids = %format!("{start}:{newest_uid}"), rescan, "New mail to look at");
    }
    let prefilter = ctx.ingest.prefilter();
    let whole = WholeFolder {
        asked: start == 1 && matches!(batches, Batches::Ranges(_)),
        exists: mbox.exists,
        newest_uid,
        uid_next: mbox.uid_next,
        folder,
    };
    if ahead as usize > HEADER_BATCH {
        // A big pass (first sync, rescan, long absence): this connection streams headers by UID
        // range while a second connection fetches bodies and the ingest applies them, so the
        // server never waits for our sled transactions.
        // Unbounded: the header stream must never wait for the bodies (that stalled it ~10 ms
        // per batch), and a batch waiting here costs 8 bytes per mail.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u32, Vec<Seen>)>();
        // Set when the header stream has ended: a second connection that is not free by then
        // (the other lane still busy) is not waited for; the bodies go on this one.
        let (streamed, mut stream_ended) = tokio::sync::oneshot::channel::<()>();
        // The header FETCHes are pipelined: the next batch's command is on its way while this
        // one's answer is read, so the server streams without waiting a round trip per batch.
        let producer = async {
            let mut headers = 0;
            let mut ahead: Option<HeaderFetch> = None;
            loop {
                if ctx.cancel.is_cancelled() {
                    return Err(SyncError::Cancelled);
                }
                let current = match ahead.take() {
                    Some(f) => f,
                    None => match batches.next() {
                        Some((set, a, b)) => HeaderFetch::send(conn, ctx, set, (a, b)).await?,
                        None => break,
                    },
                };
                if let Some((set, a, b)) = batches.next() {
                    ahead = Some(HeaderFetch::send(conn, ctx, set, (a, b)).await?);
                }
                let (a, b) = current.range;
                let seen = current.finish(conn, ctx, prefilter, &mut ahead).await?;
                debug!(account = %account, folder = %folder, uids = %format!("{a}:{b}"), mails = seen.len(), "Headers read");
                batches.observe(seen.len(), a, b);
                headers += seen.len();
                whole.check(b, headers)?;
                if tx.send((b, seen)).is_err() {
                    break;
                }
            }
            drop(tx);
            drop(streamed);
            Ok(())
        };
        let consumer = async {
            let mut rx = rx;
            let helper = tokio::select! {
                helper = open_helper(ctx, uid_validity, promised.take()) => Some(helper?),
                _ = &mut stream_ended => None,
            };
            let Some(mut helper) = helper else { return Ok(Some(rx)) };
            debug!(account = %account, folder = %folder, "Second connection ready for the bodies");
            let result = apply_queued(&mut helper, ctx, &mut pass, &mut rx).await;
            helper.logout().await;
            result.map(|()| None)
        };
        let ((), left) = tokio::try_join!(producer, consumer)?;
        if let Some(mut rx) = left {
            debug!(account = %account, folder = %folder, "Bodies on this connection: the header stream ended first");
            apply_queued(conn, ctx, &mut pass, &mut rx).await?;
        }
    } else {
        let mut headers = 0;
        while let Some((set, a, b)) = batches.next() {
            if ctx.cancel.is_cancelled() {
                return Err(SyncError::Cancelled);
            }
            let seen = fetch_headers(conn, ctx, prefilter, &set, (a, b)).await?;
            batches.observe(seen.len(), a, b);
            headers += seen.len();
            whole.check(b, headers)?;
            apply_batch(conn, ctx, &mut pass, b, seen).await?;
        }
    }
    if pass.cursor_at < newest_uid {
        // The UIDs a back-fill's SEARCH left out (or none at all): past them too.
        ctx.ingest.skip(account, folder, uid_validity, newest_uid).map_err(SyncError::Store)?;
    }
    let Pass { mut stats, to_move, .. } = pass;
    if let Some(bar) = &ctx.hooks.progress {
        // UID gaps: the folder had fewer mails than its UID range promised.
        let unseen = ahead.saturating_sub(stats.mails_seen);
        bar.set_length(bar.length().unwrap_or(0).saturating_sub(unseen));
    }
    // Durable before the pass counts as done (and before anything leaves the junk folder).
    ctx.ingest.flush().await.map_err(SyncError::Store)?;

    if !to_move.is_empty() {
        stats.moved_to_inbox = move_to_inbox(conn, ctx, uid_validity, &to_move).await?;
    }
    // An EXISTS announced while we synced (in async-imap's channel, or seen by the header
    // reader) sets `conn.announced`: the watcher syncs again at once instead of waiting.
    Ok(stats)
}

/// Apply the header batches `rx` brings, until it closes. Batches that queued up meanwhile go
/// together: one flight of body fetches for all of them instead of one per batch.
async fn apply_queued(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    pass: &mut Pass,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(u32, Vec<Seen>)>,
) -> Result<(), SyncError> {
    while let Some((mut last, mut seen)) = rx.recv().await {
        while let Ok((later, more)) = rx.try_recv() {
            last = later;
            seen.extend(more);
        }
        apply_batch(conn, ctx, pass, last, seen).await?;
    }
    Ok(())
}

/// The check of a pass that asked for every UID of a folder up to the newest: when the last
/// batch is in and no header came although the server says the folder holds mail, the newest UID
/// it gave was wrong, or its FETCH is. That is an error of the folder, raised before the cursor
/// moves past the last batch — never "nothing there".
struct WholeFolder<'a> {
    asked: bool,
    exists: u32,
    newest_uid: u32,
    uid_next: Option<u32>,
    folder: &'a str,
}

impl WholeFolder<'_> {
    fn check(&self, batch_end: u32, headers_so_far: usize) -> Result<(), SyncError> {
        if self.asked && batch_end >= self.newest_uid && headers_so_far == 0 && self.exists > 0 {
            return Err(SyncError::Imap(anyhow!(
                "{:?} holds {} mail(s) (EXISTS), but no mail came back for UIDs 1:{} (UIDNEXT {})",
                self.folder,
                self.exists,
                self.newest_uid,
                self.uid_next.map_or("none".to_owned(), |n| n.to_string())
            )));
        }
        Ok(())
    }
}

/// The header pass's commands: `(UID set, first UID, last UID)` each.
enum Batches {
    Ranges(UidRanges),
    /// UIDs a SEARCH named, ascending, [`HEADER_BATCH`] per command.
    Listed {
        uids: Vec<u32>,
        pos: usize,
    },
}

impl Batches {
    fn next(&mut self) -> Option<(String, u32, u32)> {
        match self {
            Batches::Ranges(r) => r.next().map(|(a, b)| (format!("{a}:{b}"), a, b)),
            Batches::Listed { uids, pos } => {
                let chunk = uids.get(*pos..)?.get(..HEADER_BATCH.min(uids.len() - *pos))?;
                let (&a, &b) = (chunk.first()?, chunk.last()?);
                *pos += chunk.len();
                Some((uid_set(chunk), a, b))
            }
        }
    }

    fn observe(&mut self, found: usize, a: u32, b: u32) {
        if let Batches::Ranges(r) = self {
            r.observe(found, a, b);
        }
    }
}

/// A mail's UID and arrival day (in the server's offset, as SEARCH SINCE compares).
type Arrival = Option<(u32, chrono::NaiveDate)>;

/// The folder's first and last mail (by sequence: normally its oldest and newest), in one
/// command: `FETCH 1,* (UID INTERNALDATE)`; the last is the one numbered `exists`, never the
/// first standing in for it.
async fn ends_arrived(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    exists: u32,
) -> Result<(Arrival, Arrival), SyncError> {
    let tag = net(ctx, "FETCH 1,* (INTERNALDATE)", conn.send(ENDS_FETCH)).await?;
    read_ends(conn, ctx, &tag, exists).await
}

const ENDS_FETCH: &str = "FETCH 1,* (UID INTERNALDATE)";

/// The answer of [`ENDS_FETCH`], sent already.
async fn read_ends(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    tag: &async_imap::imap_proto::RequestId,
    exists: u32,
) -> Result<(Arrival, Arrival), SyncError> {
    let mut by_seq = BTreeMap::new();
    let fetch = conn.finish(tag, |r| {
        if let Response::Fetch(seq, attributes) = r {
            let f = FetchAnswer::from(attributes);
            if let (Some(uid), Some(d)) = (f.uid, f.internal_date) {
                by_seq.insert(*seq, (uid, d.date_naive()));
            }
        }
    });
    net(ctx, "FETCH 1,* (INTERNALDATE)", fetch).await?;
    Ok((by_seq.get(&1).copied(), by_seq.get(&exists).copied()))
}

/// UID ranges `a:b` covering `first..=last` for the header pass, each aiming at
/// [`HEADER_BATCH`] mails. UIDs can be sparse after years of expunges: the span follows the
/// density found so far.
struct UidRanges {
    next: u32,
    last: u32,
    span: u32,
    done: bool,
}

impl UidRanges {
    fn new(first: u32, last: u32) -> UidRanges {
        UidRanges { next: first.max(1), last, span: HEADER_BATCH as u32, done: first.max(1) > last }
    }

    /// `found` mails came back for the range `a..=b`.
    fn observe(&mut self, found: usize, a: u32, b: u32) {
        let used = u64::from(b - a) + 1;
        let span = match found as u64 {
            0 => used.saturating_mul(2),
            n => HEADER_BATCH as u64 * used / n,
        };
        self.span = span.clamp(HEADER_BATCH as u64, 1 << 24) as u32;
    }
}

impl Iterator for UidRanges {
    type Item = (u32, u32);

    fn next(&mut self) -> Option<(u32, u32)> {
        if self.done {
            return None;
        }
        let a = self.next;
        let b = a.saturating_add(self.span - 1).min(self.last);
        self.done = b >= self.last;
        self.next = b.saturating_add(1);
        Some((a, b))
    }
}

/// A new connection, unless cancelled first.
pub(super) async fn connect_or_cancel(account: &Account, cancel: &CancellationToken) -> Result<Connection, SyncError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(SyncError::Cancelled),
        r = connect(account) => r.map_err(|e| SyncError::Imap(e.into())),
    }
}

/// A second connection on the same folder (EXAMINEd, same UIDVALIDITY) for a big pass: the
/// promised one or a new one, whichever is ready first. Over a distant link the other lane may
/// be busy for longer than a login takes, and every batch the bodies wait for lengthens the
/// pass; a promised connection that comes too late is logged out by its lane.
async fn open_helper(
    ctx: &FolderCtx<'_>,
    uid_validity: u32,
    promised: Option<tokio::sync::oneshot::Receiver<Connection>>,
) -> Result<Connection, SyncError> {
    let own = connect_or_cancel(ctx.account, ctx.cancel);
    let mut helper = match promised {
        Some(mut rx) => {
            tokio::pin!(own);
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Err(SyncError::Cancelled),
                Ok(c) = &mut rx => c,
                c = &mut own => match c {
                    Ok(c) => c,
                    // No login of our own (the server's connection limit, say): the promised
                    // one may still come.
                    Err(SyncError::Cancelled) => return Err(SyncError::Cancelled),
                    Err(e) => match tokio::time::timeout(PROMISED_HELPER_WAIT, rx).await {
                        Ok(Ok(c)) => c,
                        _ => return Err(e),
                    },
                },
            }
        }
        None => own.await?,
    };
    let mbox = net(ctx, "EXAMINE", helper.session.examine(&ctx.folder.raw)).await?;
    if mbox.uid_validity != Some(uid_validity) {
        helper.logout().await;
        return Err(SyncError::Imap(anyhow!(
            "UIDVALIDITY of {:?} changed during the pass; starting over",
            ctx.folder.name
        )));
    }
    Ok(helper)
}

/// The state of one folder pass across batches.
struct Pass {
    uid_validity: u32,
    stats: SyncStats,
    to_move: Vec<u32>,
    last_flush: std::time::Instant,
    /// During a back-fill (a first sync or rescan, or the rest of one an earlier pass began):
    /// mail up to the UID given that was received before the day given is left alone.
    window: Option<(chrono::NaiveDate, u32)>,
    /// Where this pass has moved the cursor to.
    cursor_at: u32,
    /// The server answered a partial body read (`BODY.PEEK[]<0.N>`) with more than asked: it
    /// ignores them, so bodies are fetched one at a time (see [`apply_batch`]).
    whole_bodies: bool,
    /// `move_found_in_spam` on a server without MOVE and UIDPLUS: whether the folder held no
    /// other `\Deleted` mail when first asked (see [`move_to_inbox`]).
    can_move: Option<bool>,
}

/// Whether Hecto mail found in this junk folder can be moved to INBOX in this pass: always
/// with MOVE or UIDPLUS; with neither, only a plain EXPUNGE remains, which removes every
/// `\Deleted` mail of the folder — so only when no other mail there is `\Deleted` (asked once
/// per pass). If that cannot be told, the mail stays: moving is optional, reading is not, so the
/// pass goes on either way.
async fn can_move(conn: &mut Connection, ctx: &FolderCtx<'_>, p: &mut Pass) -> Result<bool, SyncError> {
    if conn.caps.move_ || conn.caps.uidplus {
        return Ok(true);
    }
    if let Some(known) = p.can_move {
        return Ok(known);
    }
    let free = match deleted_uids(conn, ctx).await {
        // The folder holds the candidates at least: flags of no mail at all is no answer.
        Ok((0, _)) => {
            warn!(account = %ctx.account.name, folder = %ctx.folder.name,
                "move_found_in_spam: the server listed the flags of no mail; Hecto mail stays where it is");
            false
        }
        Ok((_, deleted)) if deleted.is_empty() => true,
        Ok((_, deleted)) => {
            warn!(
                account = %ctx.account.name,
                folder = %ctx.folder.name,
                others = deleted.len(),
                "move_found_in_spam: the server has neither MOVE nor UIDPLUS, and other mail in the folder is marked \\Deleted; an EXPUNGE would remove it too, so Hecto mail stays where it is"
            );
            false
        }
        // Refused (NO/BAD): the connection is fine, only the answer is missing. Anything else
        // (a timeout, a lost connection) fails the pass like any network error.
        Err(SyncError::Imap(e)) if refused(&e) => {
            warn!(account = %ctx.account.name, folder = %ctx.folder.name, error = %format!("{e:#}"),
                "move_found_in_spam: cannot tell whether other mail is marked \\Deleted; Hecto mail stays where it is");
            false
        }
        Err(e) => return Err(e),
    };
    p.can_move = Some(free);
    Ok(free)
}

/// The server refused the command (a tagged NO or BAD), as opposed to a lost connection.
fn refused(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<async_imap::error::Error>(),
        Some(async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_))
    )
}

/// How many mails' flags the server listed, and the UIDs of those flagged `\Deleted`, from
/// every mail's flags (`UID FETCH 1:* (UID FLAGS)`), not from `UID SEARCH DELETED`: some servers
/// answer SEARCH with nothing (Courier), and an empty answer here would let a plain EXPUNGE
/// delete someone else's mail.
async fn deleted_uids(conn: &mut Connection, ctx: &FolderCtx<'_>) -> Result<(usize, Vec<u32>), SyncError> {
    let (mut listed, mut deleted) = (std::collections::BTreeSet::new(), Vec::new());
    let fetch = each_fetch(conn, "UID FETCH 1:* (UID FLAGS)".to_owned(), |_, f| {
        if let Some(uid) = f.uid {
            // Distinct UIDs: a flag change announced meanwhile repeats a mail.
            listed.insert(uid);
            if f.deleted {
                deleted.push(uid);
            }
        }
    });
    net_within(ctx, "UID FETCH (FLAGS)", IO_TIMEOUT * 5, fetch).await?;
    deleted.sort_unstable();
    deleted.dedup();
    Ok((listed.len(), deleted))
}

/// Bodies for one header batch's candidates, applied in UID order, then the cursor past the
/// batch. `conn` has the folder EXAMINEd.
async fn apply_batch(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    p: &mut Pass,
    last_uid: u32,
    seen: Vec<Seen>,
) -> Result<(), SyncError> {
    let account = &ctx.account.name;
    let folder = &ctx.folder.name;
    let uid_validity = p.uid_validity;
    let n = seen.len() as u64;
    if n == 0 && p.stats.mails_seen == 0 {
        // Empty batches before any mail was seen leave the cursor where it is: should the
        // server be answering nothing to everything, the checks of a later batch fail the pass
        // and these UIDs are asked again next time; a pass that ends well moves past them.
        return Ok(());
    }
    p.stats.mails_seen += n;
    let wanted: Vec<u32> = seen.iter().filter(|s| s.needs_body).map(|s| s.uid).collect();
    // Whether this folder's Hecto mail for a merchant will be moved to INBOX: the spam notice
    // says so, so only when the server can (`move_to_inbox` leaves it in place otherwise).
    let moves = ctx.folder.role == FolderRole::Junk
        && ctx.account.move_found_in_spam
        && !wanted.is_empty()
        && can_move(conn, ctx, p).await?;
    debug!(account = %account, folder = %folder, mails = n, candidates = wanted.len(), "Fetching bodies");
    // Same rule as SEARCH SINCE: the arrival day, in the server's own offset. A mail whose
    // arrival did not come is kept (and looked for by `complete_bodies`).
    let window = p.window;
    let in_window = |uid: u32, f: &Fetched| match window {
        Some((since, to)) => uid > to || f.arrived.is_none_or(|d| d.date_naive() >= since),
        None => true,
    };

    // Groups of BODY_BATCH, applied strictly in UID order. Their FETCHes are pipelined, up to
    // [`BODY_PIPELINE`] in flight (at most BODY_PIPELINE × BODY_BATCH × BODY_FIRST_BYTES): the
    // next are on their way while one is applied (their answers wait in the socket). A server
    // may answer pipelined FETCHes at once, interleaved (Dovecot does), so every answer goes to
    // `got` by UID, for whichever group in flight asked for it: at most the groups in flight
    // are held. A group whose answer lacks a mail, or cut one short, needs further commands, so
    // what is still in flight is read first and no answer is taken for another's.
    // `bounds[k]..bounds[k + 1]` is group k of `wanted`, as sent.
    let mut bounds = vec![0];
    let mut in_flight: std::collections::VecDeque<(usize, async_imap::imap_proto::RequestId)> = Default::default();
    let mut got = Bodies::new();
    let mut g = 0;
    while bounds[g] < wanted.len() {
        if ctx.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        // A server that ignores the partial read sends whole bodies, which nothing bounds but
        // their number: one mail per FETCH and one FETCH in flight from then on.
        let (batch, depth) = if p.whole_bodies { (1, 1) } else { (BODY_BATCH, BODY_PIPELINE) };
        while bounds.last().is_some_and(|&end| end < wanted.len()) && in_flight.len() < depth {
            let start = bounds[bounds.len() - 1];
            let end = (start + batch).min(wanted.len());
            let tag = send_body_fetch(conn, ctx, &wanted[start..end], Some(BODY_FIRST_BYTES)).await?;
            in_flight.push_back((bounds.len() - 1, tag));
            bounds.push(end);
        }
        let asked = &wanted[bounds[g]..bounds[bounds.len() - 1]];
        while in_flight.front().is_some_and(|(h, _)| *h <= g) {
            let Some((_, tag)) = in_flight.pop_front() else { break };
            read_bodies(conn, ctx, &tag, asked, &mut got).await?;
        }
        let group = &wanted[bounds[g]..bounds[g + 1]];
        g += 1;
        let mut bodies: Bodies = group.iter().filter_map(|u| got.remove_entry(u)).collect();
        if bodies.values().any(|f| f.raw.as_ref().is_some_and(|b| b.len() > BODY_FIRST_BYTES as usize)) {
            if !p.whole_bodies {
                warn!(account = %account, folder = %folder, "The server ignores partial FETCH (BODY.PEEK[]<0.N>) and sends whole bodies: fetching them one at a time");
            }
            p.whole_bodies = true;
        }
        // Outside the back-fill window by the arrival the answer gave: not applied, not read
        // again.
        let outside = |bodies: &Bodies, uid: &u32| bodies.get(uid).is_some_and(|f| !in_window(*uid, f));
        let mut group: Vec<u32> = group.iter().copied().filter(|u| !outside(&bodies, u)).collect();
        bodies.retain(|uid, f| in_window(*uid, f));
        if group.iter().any(|u| bodies.get(u).is_none_or(|f| f.unread() || f.cut_short())) {
            for (_, tag) in std::mem::take(&mut in_flight) {
                read_bodies(conn, ctx, &tag, asked, &mut got).await?;
            }
            bodies = complete_bodies(conn, ctx, &group, bodies).await?;
            // The window again, for a mail whose arrival came only with the second read.
            group.retain(|u| !outside(&bodies, u));
            bodies.retain(|uid, f| in_window(*uid, f));
        }
        for &uid in &group {
            // Safe point: the previous mail is committed; stop here if asked.
            if ctx.cancel.is_cancelled() {
                return Err(SyncError::Cancelled);
            }
            let Some(Fetched { raw: Some(raw), arrived, .. }) = bodies.get(&uid) else {
                // Expunged between the header and the body fetch (checked): nothing to apply.
                debug!(account = %account, folder = %folder, uid, "Mail vanished before its body was fetched");
                continue;
            };
            p.stats.bodies_fetched += 1;
            let source = MailSource {
                account: account.clone(),
                folder: folder.clone(),
                role: ctx.folder.role,
                uid: Some(uid),
                uid_validity: Some(uid_validity),
                internal_date: arrived.map(|d| d.with_timezone(&Utc)),
                move_to_inbox: moves,
            };
            let (classified, applied) = ctx
                .ingest
                .apply(&source, raw)
                .with_context(|| format!("cannot record mail UID {uid} of {folder:?}"))
                .map_err(SyncError::Store)?;
            let span = info_span!(
                "mail",
                account = %account,
                folder = %folder,
                uid,
                message_id = %classified.message_id.as_deref().unwrap_or("-"),
            );
            let _enter = span.enter();
            if applied.is_hecto() {
                p.stats.hecto_mails += 1;
                info!(
                    kind = classified.kind.as_str(),
                    merchant = %applied.merchant.as_deref().unwrap_or("-"),
                    stage_changed = applied.stage_changed,
                    found_in_spam = applied.found_in_spam,
                    unassigned = applied.unassigned,
                    duplicate = applied.duplicate,
                    "Hecto mail"
                );
            }
            p.stats.stage_changes += u64::from(applied.stage_changed);
            p.stats.found_in_spam += u64::from(applied.found_in_spam);
            p.stats.unassigned += u64::from(applied.unassigned);
            p.stats.duplicates += u64::from(applied.duplicate);
            let move_it = moves && applied.is_hecto() && applied.merchant.is_some() && !applied.duplicate;
            if move_it {
                p.to_move.push(uid);
            }
            ctx.hooks.emit(ImapEvent::Mail(MailReport {
                account: account.clone(),
                folder: folder.clone(),
                role: ctx.folder.role,
                uid,
                message_id: classified.message_id.clone(),
                kind: classified.kind,
                merchant: applied.merchant.clone(),
                stage_changed: applied.stage_changed,
                found_in_spam: applied.found_in_spam,
                unassigned: applied.unassigned,
                duplicate: applied.duplicate,
                will_move_to_inbox: move_it,
            }));
        }
    }
    // Everything up to the batch's last UID is now handled: the rest needed no body (or
    // vanished meanwhile, or lies outside the back-fill window).
    ctx.ingest.skip(account, folder, uid_validity, last_uid).map_err(SyncError::Store)?;
    p.cursor_at = last_uid;
    // Each mail's effects and the cursor share one transaction, so they become durable
    // together whenever sled writes; an explicit flush (an fsync) per batch would cost more
    // than the batch. Flush at least every FLUSH_EVERY during a long pass, and at its end.
    if p.last_flush.elapsed() >= FLUSH_EVERY {
        ctx.ingest.flush().await.map_err(SyncError::Store)?;
        p.last_flush = std::time::Instant::now();
    }
    if let Some(bar) = &ctx.hooks.progress {
        bar.inc(n);
    }
    Ok(())
}

/// Headers of the mails in `set` (a UID set within `first..=last`), classified.
async fn fetch_headers(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    prefilter: &crate::mail::prefilter::Prefilter,
    set: &str,
    range: (u32, u32),
) -> Result<Vec<Seen>, SyncError> {
    HeaderFetch::send(conn, ctx, set.to_owned(), range).await?.finish(conn, ctx, prefilter, &mut None).await
}

/// One header batch's FETCH (`UID FETCH set (UID BODY.PEEK[HEADER.FIELDS (…)])`, read by
/// [`fast_fetch`]), sent, and once read, its verdicts.
///
/// Never "nothing there" for "could not read": a FETCH that names a mail but carries no header
/// section — or NIL, or one without the From line every mail has (RFC 5322 §3.6) — sends that
/// mail on to a full fetch (where the classifier sees all of it). A batch that comes back empty
/// is checked twice: `UID FETCH set (UID)` must list no mail there, and the folder's last mail
/// (`FETCH * (UID)`, by sequence number — another path through the server) must lie outside
/// the batch. A batch answered with an untagged NO ("some messages could not be fetched") must
/// hold every mail the server lists there. Otherwise the pass fails with the server's answer
/// instead of moving the cursor past mail it never read.
struct HeaderFetch {
    set: String,
    range: (u32, u32),
    tag: String,
    seen: Vec<Seen>,
    /// Outbox keys of our own messages (`X-Hecto-Watch`) found among them.
    own: Vec<String>,
    /// Set once its answer has been read.
    completion: Option<fast_fetch::Completion>,
}

impl HeaderFetch {
    async fn send(
        conn: &mut Connection,
        ctx: &FolderCtx<'_>,
        set: String,
        range: (u32, u32),
    ) -> Result<HeaderFetch, SyncError> {
        let tag = net(ctx, "UID FETCH (headers)", fast_fetch::send_header_fetch(conn, &set, HEADER_FIELDS)).await?;
        Ok(HeaderFetch { set, range, tag, seen: Vec::new(), own: Vec::new(), completion: None })
    }

    fn holds(&self, uid: u32) -> bool {
        (self.range.0..=self.range.1).contains(&uid)
    }

    /// Read this FETCH's answer. A mail of the FETCH sent after it (`ahead`), should the server
    /// answer the two at once, is that one's; a mail of neither was never asked for.
    async fn read(
        &mut self,
        conn: &mut Connection,
        ctx: &FolderCtx<'_>,
        prefilter: &crate::mail::prefilter::Prefilter,
        mut ahead: Option<&mut HeaderFetch>,
    ) -> Result<(), SyncError> {
        let rules = ctx.ingest.rules();
        let tag = self.tag.clone();
        let collect = fast_fetch::read_header_fetch(conn, &tag, |uid, header| {
            let batch = match ahead.as_deref_mut() {
                _ if self.holds(uid) => &mut *self,
                Some(next) if next.holds(uid) => next,
                _ => return, // a mail outside the range: never asked for
            };
            let needs_body = match header.filter(|h| has_from(h)) {
                Some(header) => match crate::mail::own_key(header) {
                    Some(key) => {
                        batch.own.push(key);
                        false
                    }
                    None => {
                        !prefilter.certainly_not_hecto(header) && {
                            let c = crate::mail::classify(header, rules);
                            !c.self_sent() && (c.kind.is_hecto() || c.unparseable)
                        }
                    }
                },
                // A flag change announced meanwhile, or a server that left the section out or
                // gave it without a From: if no header for this UID comes at all, the whole mail
                // is read.
                None => true,
            };
            batch.seen.push(Seen { uid, needs_body, header: header.is_some() });
        });
        // The whole batch shares one generous deadline on top of the per-read one.
        self.completion = Some(net_within(ctx, "UID FETCH (headers)", IO_TIMEOUT * 5, collect).await?);
        Ok(())
    }

    /// The batch's verdicts, its answer read and checked. Checking sends commands of its own, so
    /// a FETCH still in flight (`ahead`) is read first: no answer is taken for another's.
    async fn finish(
        mut self,
        conn: &mut Connection,
        ctx: &FolderCtx<'_>,
        prefilter: &crate::mail::prefilter::Prefilter,
        ahead: &mut Option<HeaderFetch>,
    ) -> Result<Vec<Seen>, SyncError> {
        if self.completion.is_none() {
            self.read(conn, ctx, prefilter, ahead.as_mut()).await?;
        }
        let completion =
            self.completion.take().unwrap_or_else(|| fast_fetch::Completion { text: String::new(), warning: None });
        ctx.ingest.confirm_delivered(&self.own).map_err(SyncError::Store)?;
        let mut seen = std::mem::take(&mut self.seen);
        let (set, keep) = (&self.set, |uid: u32| self.holds(uid));
        // One verdict per UID; one with a header wins over a header-less one.
        seen.sort_unstable_by_key(|s| (s.uid, !s.header));
        seen.dedup_by_key(|s| s.uid);
        let answer = match &completion.warning {
            Some(w) => format!("{} after \"* NO {w}\"", completion.text.trim()),
            None => completion.text.trim().to_owned(),
        };
        if !(seen.is_empty() || completion.warning.is_some()) {
            return Ok(seen);
        }
        if let Some(next) = ahead.as_mut().filter(|n| n.completion.is_none()) {
            next.read(conn, ctx, prefilter, None).await?;
        }
        let present = present_uids(conn, ctx, set, keep).await?;
        let missing: Vec<u32> =
            present.into_iter().filter(|u| seen.binary_search_by_key(u, |s| s.uid).is_err()).collect();
        if let (Some(a), Some(b)) = (missing.first(), missing.last()) {
            return Err(SyncError::Imap(anyhow!(
                "{:?} holds {} mail(s) in UIDs {a}:{b} that the header FETCH of {set} did not return ({answer})",
                ctx.folder.name,
                missing.len(),
            )));
        }
        if seen.is_empty() {
            match last_mail_uid(conn, ctx).await? {
                Some(uid) if !keep(uid) => {}
                found => {
                    return Err(SyncError::Imap(anyhow!(
                        "the server answered the header FETCH of {set} in {:?} with no mail ({answer}), but {}",
                        ctx.folder.name,
                        match found {
                            Some(uid) => format!("its last mail has UID {uid}"),
                            None => "FETCH * (UID) names no last mail either".to_owned(),
                        }
                    )));
                }
            }
        }
        Ok(seen)
    }
}

/// A header section with a From field (at the start of a line, any case).
fn has_from(header: &[u8]) -> bool {
    header.len() >= 5
        && (header[..5].eq_ignore_ascii_case(b"from:")
            || memchr::memmem::find_iter(header, b"\n")
                .any(|i| header.get(i + 1..i + 6).is_some_and(|f| f.eq_ignore_ascii_case(b"from:"))))
}

/// The UID of the folder's last mail by sequence number (`FETCH * (UID)`); `None` when the
/// server names none (an empty folder — or a server that does not answer).
async fn last_mail_uid(conn: &mut Connection, ctx: &FolderCtx<'_>) -> Result<Option<u32>, SyncError> {
    let mut last = None;
    let fetch = each_fetch(conn, "FETCH * (UID)".to_owned(), |seq, f| {
        if let Some(uid) = f.uid {
            if last.is_none_or(|(s, _)| seq >= s) {
                last = Some((seq, uid));
            }
        }
    });
    net(ctx, "FETCH * (UID)", fetch).await?;
    Ok(last.map(|(_, uid)| uid))
}

/// The UIDs of `set` the server says it holds, for which `keep` holds (`UID FETCH set (UID)`,
/// read by the general parser): the check behind every empty answer.
async fn present_uids(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    set: &str,
    keep: impl Fn(u32) -> bool,
) -> Result<Vec<u32>, SyncError> {
    let mut uids = Vec::new();
    let collect = each_fetch(conn, format!("UID FETCH {set} (UID)"), |_, f| {
        uids.extend(f.uid.filter(|u| keep(*u)));
    });
    net(ctx, "UID FETCH (UID)", collect).await?;
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}

/// The newest UID of the EXAMINEd folder (SPEC §6): UIDNEXT − 1 when the server gave UIDNEXT;
/// else the UID of its last mail (`UID FETCH * (UID)`); else `STATUS (UIDNEXT)`. A folder that
/// holds mail but whose newest UID no answer gives is an error of that folder, never "nothing
/// new".
async fn newest_uid(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    mbox: &async_imap::types::Mailbox,
) -> Result<u32, SyncError> {
    // UIDNEXT exceeds every UID, so UIDNEXT 1 beside mail is not believed either.
    match mbox.uid_next {
        Some(n) if n > 1 || mbox.exists == 0 => return Ok(n.saturating_sub(1)),
        _ if mbox.exists == 0 => return Ok(0),
        _ => {}
    }
    // Some servers omit UIDNEXT (Winmail Pro, per Delta Chat); Courier answers `UID SEARCH UID *`
    // with an empty SEARCH, so the last mail is asked for its UID instead.
    if let Some(&uid) = present_uids(conn, ctx, "*", |_| true).await?.last() {
        return Ok(uid);
    }
    let status = net(ctx, "STATUS (UIDNEXT)", conn.session.status(&ctx.folder.raw, "(UIDNEXT MESSAGES)")).await?;
    if let Some(n) = status.uid_next.filter(|n| *n > 1) {
        return Ok(n - 1);
    }
    Err(SyncError::Imap(anyhow!(
        "{:?} holds {} mail(s), but the server tells the UID of none: EXAMINE gave UIDNEXT {}, UID FETCH * (UID) answered nothing, STATUS gave UIDNEXT {}",
        ctx.folder.name,
        mbox.exists,
        mbox.uid_next.map_or("none".to_owned(), |n| n.to_string()),
        status.uid_next.map_or("none".to_owned(), |n| n.to_string()),
    )))
}

/// What the body FETCH answered for one mail. A server may split one mail's items over several
/// FETCH responses (RFC 3501 §7.4.2), so each is filled in as its item comes.
#[derive(Default)]
struct Fetched {
    /// The body, whole or its first bytes (see [`Fetched::cut_short`]).
    raw: Option<Vec<u8>>,
    size: Option<u64>,
    /// INTERNALDATE as the server wrote it, with its offset.
    arrived: Option<DateTime<chrono::FixedOffset>>,
}

impl Fetched {
    /// No body came. An empty body counts as none unless the mail's RFC822.SIZE is 0 too: a
    /// server that cannot render a mail may answer `BODY[] ""`, but a 0-byte message is a
    /// 0-byte message. The size is asked in the same FETCH; an answer that leaves it out gets
    /// no benefit of the doubt (the mail is asked again, then looked for).
    fn unread(&self) -> bool {
        self.raw.as_ref().is_none_or(|b| b.is_empty() && self.size != Some(0))
    }

    /// The partial first read ([`BODY_FIRST_BYTES`]) may have cut the mail short: it brought as
    /// many bytes as asked, or fewer while RFC822.SIZE says the mail is longer than that. Chiefly
    /// by the bytes: some servers count RFC822.SIZE differently from what they send, and a mail
    /// of exactly that length, or one whose size is overstated, is merely read twice. A body
    /// longer than asked (a server that ignores the partial read) is whole.
    fn cut_short(&self) -> bool {
        let first = BODY_FIRST_BYTES as usize;
        self.raw.as_ref().is_some_and(|b| {
            b.len() == first || (b.len() < first && self.size.is_some_and(|s| s > u64::from(BODY_FIRST_BYTES)))
        })
    }
}

type Bodies = BTreeMap<u32, Fetched>;

/// Send the body FETCH of `uids`, of each mail at most `first` bytes (`None`: whole), with its
/// size and arrival; its answer is read by [`read_bodies`].
async fn send_body_fetch(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    uids: &[u32],
    first: Option<u32>,
) -> Result<async_imap::imap_proto::RequestId, SyncError> {
    let partial = first.map(|n| format!("<0.{n}>")).unwrap_or_default();
    let command = format!("UID FETCH {} (UID RFC822.SIZE INTERNALDATE BODY.PEEK[]{partial})", uid_set(uids));
    net(ctx, "UID FETCH (bodies)", conn.send(command)).await
}

/// Read the answer of a body FETCH ([`send_body_fetch`]) into `out`: what came before its
/// completion for `uids` (ascending: those of every FETCH in flight). A response without a
/// body (a flag change announced meanwhile) adds what it says and blanks out nothing.
async fn read_bodies(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    tag: &async_imap::imap_proto::RequestId,
    uids: &[u32],
    out: &mut Bodies,
) -> Result<(), SyncError> {
    let collect = conn.finish(tag, |r| {
        if let Response::Fetch(_, attributes) = r {
            let f = FetchAnswer::from(attributes);
            if let Some(uid) = f.uid.filter(|u| uids.binary_search(u).is_ok()) {
                if f.body.is_none() && f.size.is_none() && f.internal_date.is_none() {
                    return;
                }
                let entry = out.entry(uid).or_default();
                if let Some(body) = f.body {
                    entry.raw = Some(body.to_vec());
                }
                entry.size = f.size.map(u64::from).or(entry.size);
                entry.arrived = f.internal_date.or(entry.arrived);
            }
        }
    });
    net_within(ctx, "UID FETCH (bodies)", IO_TIMEOUT * 5, collect).await
}

/// Body FETCHes in flight at once (see [`apply_batch`]).
pub const BODY_PIPELINE: usize = 4;

/// `bodies` of `uids` made whole. A mail the first read cut short, or that did not come back,
/// is fetched again whole (in groups bounded by RFC822.SIZE). One that still does not come is
/// looked for (`UID FETCH (UID)`): gone (expunged meanwhile) is fine, but if the server still
/// holds it the pass fails — the cursor never moves past a mail whose body the header pass
/// promised and the server withheld. No other command may be in flight.
async fn complete_bodies(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    uids: &[u32],
    mut bodies: Bodies,
) -> Result<Bodies, SyncError> {
    let again: Vec<(u32, u64)> = uids
        .iter()
        .filter(|u| bodies.get(u).is_none_or(|f| f.unread() || f.cut_short()))
        .map(|u| (*u, bodies.get(u).and_then(|f| f.size).unwrap_or(0)))
        .collect();
    let mut still = Vec::new();
    let mut rest = &again[..];
    while !rest.is_empty() {
        let mut end = 1;
        let mut bytes = rest[0].1;
        while end < rest.len() && end < BODY_BATCH && bytes + rest[end].1 <= BODY_BATCH_BYTES {
            bytes += rest[end].1;
            end += 1;
        }
        let group: Vec<u32> = rest[..end].iter().map(|(u, _)| *u).collect();
        rest = &rest[end..];
        let tag = send_body_fetch(conn, ctx, &group, None).await?;
        let mut whole = Bodies::new();
        read_bodies(conn, ctx, &tag, &group, &mut whole).await?;
        for uid in group {
            match whole.remove(&uid).filter(|f| !f.unread()) {
                Some(f) => {
                    bodies.insert(uid, f);
                }
                None => {
                    bodies.remove(&uid);
                    still.push(uid);
                }
            }
        }
    }
    if still.is_empty() {
        return Ok(bodies);
    }
    let present = present_uids(conn, ctx, &uid_set(&still), |u| still.binary_search(&u).is_ok()).await?;
    if let Some(uid) = present.first() {
        return Err(SyncError::Imap(anyhow!(
            "the server holds mail UID {uid} in {:?} but returned no body for it, asked for its first bytes and again whole (UID FETCH {uid} BODY.PEEK[])",
            ctx.folder.name
        )));
    }
    Ok(bodies)
}

/// What a FETCH response says about a mail (RFC 3501 §7.4.2), among the items we ask for.
#[derive(Default)]
struct FetchAnswer<'a> {
    uid: Option<u32>,
    size: Option<u32>,
    internal_date: Option<DateTime<chrono::FixedOffset>>,
    body: Option<&'a [u8]>,
    /// FLAGS names `\Deleted`.
    deleted: bool,
}

/// RFC 3501 `date-time`; chrono also takes the space-padded day (`" 7-Sep-2026 …"`).
const INTERNALDATE: &str = "%d-%b-%Y %H:%M:%S %z";

impl<'a> FetchAnswer<'a> {
    fn from(attributes: &'a [AttributeValue<'a>]) -> FetchAnswer<'a> {
        let mut f = FetchAnswer::default();
        for a in attributes {
            match a {
                AttributeValue::Uid(u) => f.uid = Some(*u),
                AttributeValue::Rfc822Size(n) => f.size = Some(*n),
                AttributeValue::Flags(flags) => f.deleted = flags.iter().any(|x| x.eq_ignore_ascii_case("\\Deleted")),
                AttributeValue::InternalDate(d) => f.internal_date = DateTime::parse_from_str(d, INTERNALDATE).ok(),
                AttributeValue::BodySection { section: None, data: Some(body), .. }
                | AttributeValue::Rfc822(Some(body)) => f.body = Some(body),
                _ => {}
            }
        }
        f
    }
}

/// `command`'s FETCH responses (sequence number, what it says), its completion checked: a NO is
/// an error, never an answer with no mail in it ([`Connection::run_checked`]).
async fn each_fetch(
    conn: &mut Connection,
    command: String,
    mut each: impl FnMut(u32, FetchAnswer<'_>),
) -> Result<(), async_imap::error::Error> {
    conn.run_checked(command, |r| {
        if let Response::Fetch(seq, attributes) = r {
            each(*seq, FetchAnswer::from(attributes));
        }
    })
    .await
}

/// `UID SEARCH query`, ascending, its completion checked: a refused SEARCH is an error, never
/// "no such mail".
async fn uid_search(conn: &mut Connection, ctx: &FolderCtx<'_>, query: &str) -> Result<Vec<u32>, SyncError> {
    let mut uids = Vec::new();
    let search = conn.run_checked(format!("UID SEARCH {query}"), |r| {
        if let Response::MailboxData(MailboxDatum::Search(found)) = r {
            uids.extend_from_slice(found);
        }
    });
    net(ctx, "UID SEARCH", search).await?;
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}

/// Move mail from the junk folder to INBOX. Called after the mails' effects are flushed, so a
/// failure here loses nothing (the mail simply stays in junk, already recorded).
async fn move_to_inbox(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    uid_validity: u32,
    uids: &[u32],
) -> Result<u64, SyncError> {
    let set = uid_set(uids);
    // MOVE/STORE need a read-write selection; EXAMINE was read-only. Same UIDVALIDITY, or the
    // UIDs name other mail now (a folder deleted and re-created meanwhile): nothing is touched.
    let selected = net(ctx, "SELECT", conn.session.select(&ctx.folder.raw)).await?;
    if selected.uid_validity != Some(uid_validity) {
        net(ctx, "EXAMINE", conn.session.examine(&ctx.folder.raw)).await?;
        return Err(SyncError::Imap(anyhow!(
            "UIDVALIDITY of {:?} changed before its Hecto mail could be moved to INBOX; nothing moved",
            ctx.folder.name
        )));
    }
    let all = uids.len() as u64;
    let result = if conn.caps.move_ {
        net(ctx, "UID MOVE", conn.session.uid_mv(&set, "INBOX")).await.map(|()| all)
    } else {
        // Copied, then flagged \Deleted: from here on, whatever fails, the flags are put back
        // (below), so no mail of ours stays \Deleted in the junk folder.
        net(ctx, "UID COPY", conn.session.uid_copy(&set, "INBOX")).await?;
        let expunged = match store_flags(conn, ctx, &set, "+FLAGS.SILENT (\\Deleted)").await {
            Ok(()) => expunge_ours(conn, ctx, uids, &set, selected.exists).await,
            // The flag may have been set all the same (a timeout after the server's OK).
            Err(e) => Err(e),
        };
        if !matches!(expunged, Ok(n) if n > 0) {
            // Not cancellable, but bounded: a \Deleted of ours left behind would be expunged by
            // the next client that expunges, and would block every later move here.
            let restore = conn.run_checked(format!("UID STORE {set} -FLAGS.SILENT (\\Deleted)"), |_| {});
            match tokio::time::timeout(IO_TIMEOUT, restore).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(account = %ctx.account.name, folder = %ctx.folder.name, uids = %set, error = %e,
                    "move_found_in_spam: cannot take the \\Deleted flag off the copied Hecto mail again"),
                Err(_) => warn!(account = %ctx.account.name, folder = %ctx.folder.name, uids = %set,
                    "move_found_in_spam: no answer when taking the \\Deleted flag off the copied Hecto mail again"),
            }
        }
        expunged
    };
    // Back to read-only for whatever comes next on this connection.
    net(ctx, "EXAMINE", conn.session.examine(&ctx.folder.raw)).await?;
    let moved = result?;
    if moved > 0 {
        info!(account = %ctx.account.name, folder = %ctx.folder.name, uids = %set, "Moved Hecto mail found in spam to INBOX");
    }
    Ok(moved)
}

/// After COPY and `\Deleted`: `UID EXPUNGE` of exactly these UIDs (RFC 4315); without UIDPLUS
/// (RFC 3501 alone) a plain EXPUNGE, which removes every `\Deleted` mail of the folder — so
/// only when the flags of every mail (as many as SELECT counted) show ours and no other as
/// `\Deleted`. `Ok(0)`: left in place (someone else's deleted mail has appeared since
/// `can_move` looked).
async fn expunge_ours(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    uids: &[u32],
    set: &str,
    exists: u32,
) -> Result<u64, SyncError> {
    let all = uids.len() as u64;
    if conn.caps.uidplus {
        let expunge = conn.run_checked(format!("UID EXPUNGE {set}"), |_| {});
        return net(ctx, "UID EXPUNGE", expunge).await.map(|()| all);
    }
    let (listed, deleted) = deleted_uids(conn, ctx).await?;
    let only_ours = deleted.iter().all(|u| uids.contains(u)) && uids.iter().all(|u| deleted.binary_search(u).is_ok());
    if only_ours && listed >= exists as usize {
        let expunge = conn.run_checked("EXPUNGE", |_| {});
        return net(ctx, "EXPUNGE", expunge).await.map(|()| all);
    }
    warn!(
        account = %ctx.account.name,
        folder = %ctx.folder.name,
        uids = %set,
        "move_found_in_spam: other mail in the folder is marked \\Deleted (or not every mail's flags could be read); an EXPUNGE would remove it too, so the Hecto mail was copied to INBOX but stays here as well"
    );
    Ok(0)
}

async fn store_flags(conn: &mut Connection, ctx: &FolderCtx<'_>, set: &str, change: &str) -> Result<(), SyncError> {
    let store = conn.run_checked(format!("UID STORE {set} {change}"), |_| {});
    net(ctx, "UID STORE", store).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8, 9, 12]), "1:3,5,7:9,12");
        assert_eq!(uid_set(&[4294967294, 4294967295]), "4294967294:4294967295");
    }

    #[test]
    fn uid_ranges_cover_everything_once() {
        let mut r = UidRanges::new(1, 20_000);
        let mut covered = Vec::new();
        while let Some((a, b)) = r.next() {
            covered.push((a, b));
            r.observe((b - a + 1) as usize, a, b); // dense: every UID is a mail
        }
        assert_eq!(covered[0], (1, HEADER_BATCH as u32));
        assert!(covered.iter().all(|(a, b)| b - a < HEADER_BATCH as u32));
        assert!(covered.windows(2).all(|w| w[1].0 == w[0].1 + 1), "{covered:?}");
        assert_eq!(covered.last().unwrap().1, 20_000);
        // A range at the top of the UID space ends without overflowing.
        let all: Vec<_> = UidRanges::new(u32::MAX - 3, u32::MAX).collect();
        assert_eq!(all, vec![(u32::MAX - 3, u32::MAX)]);
        assert_eq!(UidRanges::new(5, 4).next(), None);
        assert_eq!(UidRanges::new(0, 0).next(), None);
    }

    #[test]
    fn uid_ranges_widen_where_uids_are_sparse() {
        let mut r = UidRanges::new(1, 10_000_000);
        let (a, b) = r.next().unwrap();
        r.observe(50, a, b); // 1 % of the UIDs still exist
        let (a, b) = r.next().unwrap();
        assert_eq!(b - a + 1, 500_000, "aims at HEADER_BATCH mails at the density found");
        r.observe(0, a, b);
        let (a2, b2) = r.next().unwrap();
        assert_eq!((a2, b2 - a2 + 1), (b + 1, 1_000_000), "nothing found: twice as wide");
    }

    #[test]
    fn imap_dates_use_english_months() {
        let t = DateTime::parse_from_rfc3339("2026-09-07T23:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(imap_date(t), "07-Sep-2026");
    }
}
