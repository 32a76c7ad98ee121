//! One pass over one folder: from the stored cursor to the newest mail (SPEC §6).
//!
//! 1. `EXAMINE` (read-only: nothing we do can set `\Seen` or delete anything).
//! 2. Compare UIDVALIDITY with the cursor. Same → `UID SEARCH UID last+1:*`. None yet or changed →
//!    back-fill with `UID SEARCH SINCE <today − backfill_days>` (a changed UIDVALIDITY means every
//!    UID was renumbered; Message-ID de-duplication in the store keeps the rescan from repeating
//!    events).
//! 3. In batches of [`HEADER_BATCH`] UIDs: `UID FETCH (UID INTERNALDATE RFC822.SIZE
//!    BODY.PEEK[HEADER.FIELDS (…)])`, classify the header bytes, and fetch `BODY.PEEK[]` only for
//!    mail that may be Hecto's (kind ≠ not_hecto, or headers the classifier could not read).
//! 4. Apply those in ascending UID order — each in one sled transaction that also advances the
//!    cursor — then advance the cursor past the batch's other mail, then flush. The cursor never
//!    passes a mail whose effects are not committed, so a crash at any point re-reads, never loses.
//! 5. With `move_found_in_spam`, move the junk folder's Hecto mail for a merchant to INBOX (after
//!    the flush): `UID MOVE`, else `UID COPY` + `\Deleted` + `UID EXPUNGE` of exactly those UIDs.
//!
//! Cancellation is honoured between mails and during network waits, never inside an apply.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn};

use super::connect::{Connection, IO_TIMEOUT};
use super::folders::WatchedFolder;
use super::{Hooks, ImapEvent, MailReport};
use crate::config::Account;
use crate::ingest::{FolderRole, Ingest, MailSource};

/// Header fetches per command. Round trips are cheap next to parsing; this bounds memory.
pub const HEADER_BATCH: usize = 1000;
/// Full bodies per command, and the byte budget of one such group (by RFC822.SIZE).
pub const BODY_BATCH: usize = 50;
pub const BODY_BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// The header fields the pre-classification needs (SPEC §3 direction + display-name claim, and
/// our own `X-Hecto-Watch` marker).
pub const HEADER_FIELDS: &str = "FROM TO CC SUBJECT DATE MESSAGE-ID X-HECTO-WATCH";

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

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// The folder was (re)scanned from the back-fill date: first sync or UIDVALIDITY change.
    pub rescanned: bool,
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
        self.rescanned |= o.rescanned;
    }
}

/// Everything a folder pass needs besides the connection.
pub struct FolderCtx<'a> {
    pub account: &'a Account,
    pub folder: &'a WatchedFolder,
    pub ingest: &'a Ingest,
    pub cancel: &'a CancellationToken,
    pub hooks: &'a Hooks,
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

fn store_err(e: anyhow::Error) -> SyncError {
    SyncError::Store(e)
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
    size: u64,
    internal_date: Option<DateTime<Utc>>,
    needs_body: bool,
}

/// Sync one folder from its cursor to the newest mail.
pub async fn sync_folder(conn: &mut Connection, ctx: &FolderCtx<'_>) -> Result<SyncStats, SyncError> {
    let account = &ctx.account.name;
    let folder = &ctx.folder.name;
    let mut stats = SyncStats::default();

    // EXAMINE, not SELECT: read-only, so neither we nor a bug of ours can change a flag.
    let mbox = net(ctx, "EXAMINE", conn.session.examine(&ctx.folder.raw)).await?;
    let uid_validity = mbox.uid_validity.ok_or_else(|| {
        SyncError::Imap(anyhow!("the server sent no UIDVALIDITY for {folder:?}; cannot keep a cursor"))
    })?;
    // Some servers (Winmail Pro, per Delta Chat) omit UIDNEXT; ask for the newest UID instead.
    let newest_uid = match mbox.uid_next {
        Some(n) => n.saturating_sub(1),
        None if mbox.exists == 0 => 0,
        None => {
            let uids = net(ctx, "UID SEARCH", conn.session.uid_search("UID *")).await?;
            uids.into_iter().max().unwrap_or(0)
        }
    };

    let cursor = ctx.ingest.cursor(account, folder).map_err(store_err)?;
    let mut uids: Vec<u32> = match cursor {
        Some(c) if c.uid_validity == uid_validity => {
            if newest_uid <= c.last_uid {
                Vec::new() // nothing new: no SEARCH at all (the common poll)
            } else {
                let found =
                    net(ctx, "UID SEARCH", conn.session.uid_search(format!("UID {}:*", c.last_uid + 1))).await?;
                // `n:*` with n past the last UID still matches the last mail (RFC 3501 §6.4.8).
                found.into_iter().filter(|u| *u > c.last_uid).collect()
            }
        }
        previous => {
            stats.rescanned = true;
            if let Some(p) = previous {
                warn!(
                    account = %account,
                    folder = %folder,
                    old = p.uid_validity,
                    new = uid_validity,
                    "UIDVALIDITY changed; rescanning (duplicates are recognised by Message-ID)"
                );
            }
            let found = if ctx.account.backfill_days == 0 {
                Vec::new()
            } else {
                let since = ctx.ingest.clock().now() - chrono::Duration::days(i64::from(ctx.account.backfill_days));
                let query = format!("SINCE {}", imap_date(since));
                net(ctx, "UID SEARCH", conn.session.uid_search(query)).await?.into_iter().collect()
            };
            if found.is_empty() {
                // Start watching from here: record the position so the next pass is incremental.
                ctx.ingest.skip(account, folder, uid_validity, newest_uid).map_err(store_err)?;
                ctx.ingest.flush().await.map_err(store_err)?;
            }
            found
        }
    };
    uids.sort_unstable();
    if let Some(bar) = &ctx.hooks.progress {
        bar.inc_length(uids.len() as u64);
    }
    if !uids.is_empty() {
        debug!(account = %account, folder = %folder, mails = uids.len(), rescan = stats.rescanned, "New mail to look at");
    }

    let mut to_move: Vec<u32> = Vec::new();
    for batch in uids.chunks(HEADER_BATCH) {
        if ctx.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        let seen = fetch_headers(conn, ctx, batch).await?;
        stats.mails_seen += seen.len() as u64;
        let wanted: Vec<&Seen> = seen.iter().filter(|s| s.needs_body).collect();

        // Bodies in groups bounded by count and bytes; applied strictly in UID order.
        let mut start = 0;
        while start < wanted.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < wanted.len()
                && end - start < BODY_BATCH
                && (end == start || bytes + wanted[end].size <= BODY_BATCH_BYTES)
            {
                bytes += wanted[end].size;
                end += 1;
            }
            let group = &wanted[start..end];
            start = end;
            if ctx.cancel.is_cancelled() {
                ctx.ingest.flush().await.map_err(store_err)?;
                return Err(SyncError::Cancelled);
            }
            let bodies = fetch_bodies(conn, ctx, group).await?;
            for s in group {
                // Safe point: the previous mail is committed; stop here if asked.
                if ctx.cancel.is_cancelled() {
                    ctx.ingest.flush().await.map_err(store_err)?;
                    return Err(SyncError::Cancelled);
                }
                let Some((raw, fetched_date)) = bodies.get(&s.uid) else {
                    // Expunged between the header and the body fetch: nothing to apply.
                    debug!(account = %account, folder = %folder, uid = s.uid, "Mail vanished before its body was fetched");
                    continue;
                };
                stats.bodies_fetched += 1;
                let source = MailSource {
                    account: account.clone(),
                    folder: folder.clone(),
                    role: ctx.folder.role,
                    uid: Some(s.uid),
                    uid_validity: Some(uid_validity),
                    internal_date: fetched_date.or(s.internal_date),
                };
                let (classified, applied) = ctx
                    .ingest
                    .apply(&source, raw)
                    .with_context(|| format!("cannot record mail UID {} of {folder:?}", s.uid))
                    .map_err(store_err)?;
                let span = info_span!(
                    "mail",
                    account = %account,
                    folder = %folder,
                    uid = s.uid,
                    message_id = %classified.message_id.as_deref().unwrap_or("-"),
                );
                let _enter = span.enter();
                if applied.is_hecto() {
                    stats.hecto_mails += 1;
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
                stats.stage_changes += u64::from(applied.stage_changed);
                stats.found_in_spam += u64::from(applied.found_in_spam);
                stats.unassigned += u64::from(applied.unassigned);
                stats.duplicates += u64::from(applied.duplicate);
                let move_it = ctx.account.move_found_in_spam
                    && ctx.folder.role == FolderRole::Junk
                    && applied.is_hecto()
                    && applied.merchant.is_some()
                    && !applied.duplicate;
                if move_it {
                    to_move.push(s.uid);
                }
                ctx.hooks.emit(ImapEvent::Mail(MailReport {
                    account: account.clone(),
                    folder: folder.clone(),
                    role: ctx.folder.role,
                    uid: s.uid,
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
        // Everything up to the batch's last UID is now handled: the rest needed no body.
        if let Some(s) = seen.last() {
            ctx.ingest.skip(account, folder, uid_validity, s.uid).map_err(store_err)?;
        } else if let Some(&last) = batch.last() {
            // All of the batch vanished meanwhile.
            ctx.ingest.skip(account, folder, uid_validity, last).map_err(store_err)?;
        }
        ctx.ingest.flush().await.map_err(store_err)?;
        if let Some(bar) = &ctx.hooks.progress {
            bar.inc(batch.len() as u64);
        }
    }

    if !to_move.is_empty() {
        stats.moved_to_inbox = move_to_inbox(conn, ctx, &to_move).await?;
    }
    // Drop what the server told us on the side (EXISTS, EXPUNGE, FETCH FLAGS): the next pass
    // asks afresh, and the channel must not fill up.
    while conn.session.unsolicited_responses.try_recv().is_ok() {}
    Ok(stats)
}

async fn fetch_headers(conn: &mut Connection, ctx: &FolderCtx<'_>, batch: &[u32]) -> Result<Vec<Seen>, SyncError> {
    let rules = ctx.ingest.rules();
    let query = format!("(UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])");
    let set = uid_set(batch);
    let collect = async {
        let mut out: Vec<Seen> = Vec::with_capacity(batch.len());
        let mut stream = conn.session.uid_fetch(&set, &query).await?;
        while let Some(f) = stream.try_next().await? {
            let Some(uid) = f.uid else {
                continue; // an unsolicited FETCH (flag change) without UID
            };
            let header = f.header().unwrap_or_default();
            let c = crate::mail::classify(header, rules);
            let needs_body = !c.self_sent && (c.kind.is_hecto() || c.unparseable);
            out.push(Seen {
                uid,
                size: u64::from(f.size.unwrap_or(0)),
                internal_date: f.internal_date().map(|d| d.with_timezone(&Utc)),
                needs_body,
            });
        }
        Ok::<_, async_imap::error::Error>(out)
    };
    // The whole batch shares one generous deadline on top of the per-read one.
    let mut seen = net_within(ctx, "UID FETCH (headers)", IO_TIMEOUT * 5, collect).await?;
    seen.retain(|s| batch.binary_search(&s.uid).is_ok());
    seen.sort_unstable_by_key(|s| s.uid);
    seen.dedup_by_key(|s| s.uid);
    Ok(seen)
}

type Bodies = BTreeMap<u32, (Vec<u8>, Option<DateTime<Utc>>)>;

async fn fetch_bodies(conn: &mut Connection, ctx: &FolderCtx<'_>, group: &[&Seen]) -> Result<Bodies, SyncError> {
    let uids: Vec<u32> = group.iter().map(|s| s.uid).collect();
    let set = uid_set(&uids);
    let collect = async {
        let mut out = Bodies::new();
        let mut stream = conn.session.uid_fetch(&set, "(UID INTERNALDATE BODY.PEEK[])").await?;
        while let Some(f) = stream.try_next().await? {
            let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                continue;
            };
            if uids.binary_search(&uid).is_ok() {
                out.insert(uid, (body.to_vec(), f.internal_date().map(|d| d.with_timezone(&Utc))));
            }
        }
        Ok::<_, async_imap::error::Error>(out)
    };
    net_within(ctx, "UID FETCH (bodies)", IO_TIMEOUT * 5, collect).await
}

/// Move mail from the junk folder to INBOX. Called after the mails' effects are flushed, so a
/// failure here loses nothing (the mail simply stays in junk, already recorded).
async fn move_to_inbox(conn: &mut Connection, ctx: &FolderCtx<'_>, uids: &[u32]) -> Result<u64, SyncError> {
    let set = uid_set(uids);
    // MOVE/STORE need a read-write selection; EXAMINE was read-only.
    net(ctx, "SELECT", conn.session.select(&ctx.folder.raw)).await?;
    let result = if conn.caps.move_ {
        net(ctx, "UID MOVE", conn.session.uid_mv(&set, "INBOX")).await
    } else if conn.caps.uidplus {
        // RFC 4315: expunge exactly these UIDs, never a plain EXPUNGE that would also remove
        // whatever else someone flagged \Deleted.
        net(ctx, "UID COPY", conn.session.uid_copy(&set, "INBOX")).await?;
        let store = async {
            let s = conn.session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)").await?;
            let _: Vec<_> = s.try_collect().await?;
            Ok::<_, async_imap::error::Error>(())
        };
        net(ctx, "UID STORE", store).await?;
        let expunge = async {
            let s = conn.session.uid_expunge(&set).await?;
            let _: Vec<_> = s.try_collect().await?;
            Ok::<_, async_imap::error::Error>(())
        };
        net(ctx, "UID EXPUNGE", expunge).await
    } else {
        warn!(
            account = %ctx.account.name,
            folder = %ctx.folder.name,
            "move_found_in_spam: the server has neither MOVE nor UIDPLUS; copying would leave a duplicate and a plain EXPUNGE could delete other mail, so the mail stays where it is"
        );
        return Ok(0);
    };
    // Back to read-only for whatever comes next on this connection.
    net(ctx, "EXAMINE", conn.session.examine(&ctx.folder.raw)).await?;
    match result {
        Ok(()) => {
            info!(account = %ctx.account.name, folder = %ctx.folder.name, uids = %set, "Moved Hecto mail found in spam to INBOX");
            Ok(uids.len() as u64)
        }
        Err(e) => Err(e),
    }
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
    fn imap_dates_use_english_months() {
        let t = DateTime::parse_from_rfc3339("2026-09-07T23:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(imap_date(t), "07-Sep-2026");
    }
}
