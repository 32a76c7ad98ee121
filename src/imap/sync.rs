//! One pass over one folder: from the stored cursor to the newest mail (SPEC §6).
//!
//! 1. `EXAMINE` (read-only: nothing we do can set `\Seen` or delete anything).
//! 2. Compare UIDVALIDITY with the cursor. Same → `UID SEARCH UID last+1:*`. None yet or changed →
//!    back-fill with `UID SEARCH SINCE <today − backfill_days>` (a changed UIDVALIDITY means every
//!    UID was renumbered; Message-ID de-duplication in the store keeps the rescan from repeating
//!    events).
//! 3. In batches of [`HEADER_BATCH`] UIDs: `UID FETCH (UID
//!    BODY.PEEK[HEADER.FIELDS (…)])`, classify the header bytes, and fetch `BODY.PEEK[]` only for
//!    mail that may be Hecto's (kind ≠ not_hecto, or headers the classifier could not read).
//! 4. Apply those in ascending UID order — each in one sled transaction that also advances the
//!    cursor — then advance the cursor past the batch's other mail. Flush at least every
//!    [`FLUSH_EVERY`] and at the end of the pass. The cursor never passes a mail whose effects are
//!    not committed (same transaction), so a crash at any point re-reads, never loses.
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

use super::connect::{connect, Connection, IO_TIMEOUT};
use super::folders::WatchedFolder;
use super::{Hooks, ImapEvent, MailReport};
use crate::config::Account;
use crate::ingest::{FolderRole, Ingest, MailSource};

/// Header fetches per command. Responses are consumed as they stream in (memory does not grow
/// with the batch), so the batch only bounds how much is re-read after a crash; fewer, larger
/// commands keep the server streaming instead of waiting for our next request.
pub const HEADER_BATCH: usize = 5000;
/// Full bodies per command, and the byte budget of one such group (by RFC822.SIZE).
pub const BODY_BATCH: usize = 50;
pub const BODY_BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// The longest a pass runs without flushing what it committed.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The header fields the pre-classification needs, and no more: SPEC §3 makes a mail Hecto's
/// business only through its direction (From, To, Cc) or a From display name claiming Hecto.
/// Subject, Date and Message-ID are read from the full body of the mails that get fetched; asking
/// for them here too cost ~15 % of the header pass (measured with `scripts/bench-scan`). Our own `X-Hecto-Watch`
/// marker is deliberately not asked for: a header field that (almost) no mail has still costs
/// Dovecot ~20 % more per mail, and our few own mails that look Hecto-ish are simply fetched in
/// full, where the classifier sees the marker and the ingest ignores them.
pub const HEADER_FIELDS: &str = "FROM TO CC";

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
    /// The folder was (re)scanned from the back-fill date: first sync or UIDVALIDITY change.
    #[serde(skip)]
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
    needs_body: bool,
}

/// Sync one folder from its cursor to the newest mail.
pub async fn sync_folder(conn: &mut Connection, ctx: &FolderCtx<'_>) -> Result<SyncStats, SyncError> {
    let account = &ctx.account.name;
    let folder = &ctx.folder.name;
    let stats = SyncStats::default();

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
    // More than one batch of new mail ahead (a first sync, a rescan, a long absence): open a
    // second connection for bodies while this one looks — concurrently with the SEARCH below.
    let ahead = match cursor {
        Some(c) if c.uid_validity == uid_validity => newest_uid.saturating_sub(c.last_uid),
        _ => mbox.exists,
    };
    let rescan = !matches!(cursor, Some(c) if c.uid_validity == uid_validity);
    let big = ahead as usize > HEADER_BATCH && !(rescan && ctx.account.backfill_days == 0);
    let mut pass = Pass { uid_validity, stats, to_move: Vec::new(), last_flush: std::time::Instant::now() };
    if big {
        // A big pass (first sync, rescan, long absence): this connection streams headers by UID
        // ranges — no SEARCH needed to start — while a second connection finds the back-fill
        // window (SEARCH SINCE), fetches bodies and the ingest applies them. The server never
        // waits for our sled transactions, nor we for its SEARCH.
        pass.stats.rescanned = rescan;
        if let (true, Some(p)) = (rescan, cursor) {
            warn!(account = %account, folder = %folder, old = p.uid_validity, new = uid_validity,
                "UIDVALIDITY changed; rescanning (duplicates are recognised by Message-ID)");
        }
        let start = match cursor {
            Some(c) if !rescan => c.last_uid.saturating_add(1),
            _ => 1,
        };
        if let Some(bar) = &ctx.hooks.progress {
            bar.inc_length(u64::from(ahead));
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, Vec<Seen>)>(1);
        let producer = async {
            let mut a = start;
            let mut span = HEADER_BATCH as u32;
            while a <= newest_uid {
                if ctx.cancel.is_cancelled() {
                    return Err(SyncError::Cancelled);
                }
                let b = a.saturating_add(span - 1).min(newest_uid);
                let seen = fetch_headers(conn, ctx, &format!("{a}:{b}"), |u| (a..=b).contains(&u)).await?;
                // UIDs can be sparse after years of expunges: widen the range while it finds
                // little, narrow it again where mail is dense.
                if seen.len() < HEADER_BATCH / 2 {
                    span = span.saturating_mul(2).min(1 << 24);
                } else if seen.len() > HEADER_BATCH * 2 {
                    span = (span / 2).max(HEADER_BATCH as u32);
                }
                if tx.send((b, seen)).await.is_err() {
                    break;
                }
                if b == u32::MAX {
                    break;
                }
                a = b + 1;
            }
            drop(tx);
            Ok(())
        };
        let consumer = async {
            let mut helper = open_helper(ctx, uid_validity).await?;
            let result = async {
                let window: Option<std::collections::HashSet<u32>> = if rescan {
                    let since = ctx.ingest.clock().now() - chrono::Duration::days(i64::from(ctx.account.backfill_days));
                    let q = format!("SINCE {}", imap_date(since));
                    Some(net(ctx, "UID SEARCH", helper.session.uid_search(q)).await?)
                } else {
                    None
                };
                while let Some((last, mut seen)) = rx.recv().await {
                    if let Some(w) = &window {
                        seen.retain(|s| w.contains(&s.uid));
                    }
                    apply_batch(&mut helper, ctx, &mut pass, last, seen).await?;
                }
                Ok::<(), SyncError>(())
            }
            .await;
            helper.logout().await;
            result
        };
        let result = tokio::try_join!(producer, consumer);
        if let Err(SyncError::Cancelled) = result {
            ctx.ingest.flush().await.map_err(store_err)?;
        }
        result?;
        if newest_uid < start {
            ctx.ingest.skip(account, folder, uid_validity, newest_uid).map_err(store_err)?;
        }
    } else {
        let mut uids = new_uids(conn, ctx, cursor, uid_validity, newest_uid, &mut pass.stats).await?;
        uids.sort_unstable();
        if let Some(bar) = &ctx.hooks.progress {
            bar.inc_length(uids.len() as u64);
        }
        if !uids.is_empty() {
            debug!(account = %account, folder = %folder, mails = uids.len(), rescan = pass.stats.rescanned, "New mail to look at");
        }
        for batch in uids.chunks(HEADER_BATCH) {
            if ctx.cancel.is_cancelled() {
                ctx.ingest.flush().await.map_err(store_err)?;
                return Err(SyncError::Cancelled);
            }
            let seen = fetch_headers(conn, ctx, &uid_set(batch), |u| batch.binary_search(&u).is_ok()).await?;
            let last = batch.last().copied().unwrap_or(0);
            apply_batch(conn, ctx, &mut pass, last, seen).await?;
        }
    }
    let Pass { mut stats, to_move, .. } = pass;
    // Durable before the pass counts as done (and before anything leaves the junk folder).
    ctx.ingest.flush().await.map_err(store_err)?;

    if !to_move.is_empty() {
        stats.moved_to_inbox = move_to_inbox(conn, ctx, &to_move).await?;
    }
    // Unsolicited responses (EXISTS, EXPUNGE, FETCH FLAGS) stay in the channel: the watcher
    // looks there for mail announced while we synced.
    Ok(stats)
}

/// The UIDs this pass must look at: after the cursor, or the back-fill window on a first sync or
/// after a UIDVALIDITY change.
async fn new_uids(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    cursor: Option<crate::ingest::Cursor>,
    uid_validity: u32,
    newest_uid: u32,
    stats: &mut SyncStats,
) -> Result<Vec<u32>, SyncError> {
    let account = &ctx.account.name;
    let folder = &ctx.folder.name;
    Ok(match cursor {
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
    })
}

/// A second connection on the same folder (EXAMINEd, same UIDVALIDITY) for a big pass.
async fn open_helper(ctx: &FolderCtx<'_>, uid_validity: u32) -> Result<Connection, SyncError> {
    let mut helper = tokio::select! {
        _ = ctx.cancel.cancelled() => return Err(SyncError::Cancelled),
        r = connect(ctx.account) => r.map_err(|e| SyncError::Imap(e.into()))?,
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
    p.stats.mails_seen += n;
    let wanted: Vec<u32> = seen.iter().filter(|s| s.needs_body).map(|s| s.uid).collect();
    // Sizes only for the few mails whose bodies we need (asking for RFC822.SIZE and
    // INTERNALDATE in the header pass costs the server noticeably on every mail).
    let sizes = if wanted.is_empty() { BTreeMap::new() } else { fetch_sizes(conn, ctx, &wanted).await? };
    let size = |uid: &u32| sizes.get(uid).copied().unwrap_or(0);

    // Bodies in groups bounded by count and bytes; applied strictly in UID order.
    let mut start = 0;
    while start < wanted.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < wanted.len()
            && end - start < BODY_BATCH
            && (end == start || bytes + size(&wanted[end]) <= BODY_BATCH_BYTES)
        {
            bytes += size(&wanted[end]);
            end += 1;
        }
        let group = &wanted[start..end];
        start = end;
        if ctx.cancel.is_cancelled() {
            ctx.ingest.flush().await.map_err(store_err)?;
            return Err(SyncError::Cancelled);
        }
        let bodies = fetch_bodies(conn, ctx, group).await?;
        for &uid in group {
            // Safe point: the previous mail is committed; stop here if asked.
            if ctx.cancel.is_cancelled() {
                ctx.ingest.flush().await.map_err(store_err)?;
                return Err(SyncError::Cancelled);
            }
            let Some((raw, internal_date)) = bodies.get(&uid) else {
                // Expunged between the header and the body fetch: nothing to apply.
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
                internal_date: *internal_date,
                move_to_inbox: ctx.folder.role == FolderRole::Junk && ctx.account.move_found_in_spam,
            };
            let (classified, applied) = ctx
                .ingest
                .apply(&source, raw)
                .with_context(|| format!("cannot record mail UID {uid} of {folder:?}"))
                .map_err(store_err)?;
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
            let move_it = ctx.account.move_found_in_spam
                && ctx.folder.role == FolderRole::Junk
                && applied.is_hecto()
                && applied.merchant.is_some()
                && !applied.duplicate;
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
    ctx.ingest.skip(account, folder, uid_validity, last_uid).map_err(store_err)?;
    // Each mail's effects and the cursor share one transaction, so they become durable
    // together whenever sled writes; an explicit flush (an fsync) per batch would cost more
    // than the batch. Flush at least every FLUSH_EVERY during a long pass, and at its end.
    if p.last_flush.elapsed() >= FLUSH_EVERY {
        ctx.ingest.flush().await.map_err(store_err)?;
        p.last_flush = std::time::Instant::now();
    }
    if let Some(bar) = &ctx.hooks.progress {
        bar.inc(n);
    }
    Ok(())
}

/// Headers of the mails in `set` (a UID set), classified; only UIDs for which `keep` holds.
async fn fetch_headers(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    set: &str,
    keep: impl Fn(u32) -> bool,
) -> Result<Vec<Seen>, SyncError> {
    let rules = ctx.ingest.rules();
    let prefilter = Prefilter::new(rules);
    let query = format!("(UID BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])");
    let collect = async {
        let mut out: Vec<Seen> = Vec::new();
        let mut stream = conn.session.uid_fetch(set, &query).await?;
        while let Some(f) = stream.try_next().await? {
            let Some(uid) = f.uid.filter(|u| keep(*u)) else {
                continue; // an unsolicited FETCH (flag change), or outside what was asked
            };
            let header = f.header().unwrap_or_default();
            let needs_body = !prefilter.certainly_not_hecto(header) && {
                let c = crate::mail::classify(header, rules);
                !c.self_sent && (c.kind.is_hecto() || c.unparseable)
            };
            out.push(Seen { uid, needs_body });
        }
        Ok::<_, async_imap::error::Error>(out)
    };
    // The whole batch shares one generous deadline on top of the per-read one.
    let mut seen = net_within(ctx, "UID FETCH (headers)", IO_TIMEOUT * 5, collect).await?;
    seen.sort_unstable_by_key(|s| s.uid);
    seen.dedup_by_key(|s| s.uid);
    Ok(seen)
}

/// A fast, conservative pre-filter over the fetched header fields: `certainly_not_hecto` is
/// `true` only when the classifier could not possibly call the mail Hecto's business, so most
/// of a mailbox is passed over without parsing. SPEC §3 makes a mail Hecto's only through (a) a
/// Hecto domain in From, To or Cc — addresses are literal ASCII (RFC 2047 §5 forbids encoded
/// words in an addr-spec, and folding never splits a domain) — or (b) a From display name
/// containing a Hecto name. So: if no configured Hecto domain or name occurs anywhere in the
/// header bytes (case-insensitively) and the From field is plain ASCII without encoded words
/// (nothing a decoder could turn into 헥토 or 세틀뱅크), the answer is certainly "not Hecto".
/// Anything else goes to the classifier.
pub struct Prefilter {
    /// `None` (no domains or names configured): no shortcut, everything is classified.
    needles: Option<regex::bytes::Regex>,
}

impl Prefilter {
    pub fn new(rules: &crate::mail::Rules) -> Prefilter {
        let alternatives: Vec<String> = rules
            .hecto_domains
            .iter()
            .chain(rules.subject.hecto_names.iter())
            .filter(|n| !n.is_empty())
            .map(|n| regex::escape(n))
            .collect();
        let needles = if alternatives.is_empty() {
            None
        } else {
            regex::bytes::Regex::new(&format!("(?i){}", alternatives.join("|"))).ok()
        };
        Prefilter { needles }
    }

    pub fn certainly_not_hecto(&self, header: &[u8]) -> bool {
        match &self.needles {
            Some(re) => !from_field_needs_decoding(header) && !re.is_match(header),
            None => false,
        }
    }
}

/// Whether any From line (continuations included) has 8-bit bytes or an encoded word.
fn from_field_needs_decoding(header: &[u8]) -> bool {
    let mut inside = false;
    for line in header.split(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            inside = line.len() > 4
                && line[..4].eq_ignore_ascii_case(b"from")
                && line[4..].trim_ascii_start().first() == Some(&b':');
        }
        if inside && (line.iter().any(|b| !b.is_ascii()) || line.windows(2).any(|w| w == b"=?")) {
            return true;
        }
    }
    false
}

type Bodies = BTreeMap<u32, (Vec<u8>, Option<DateTime<Utc>>)>;

async fn fetch_sizes(
    conn: &mut Connection,
    ctx: &FolderCtx<'_>,
    uids: &[u32],
) -> Result<BTreeMap<u32, u64>, SyncError> {
    let set = uid_set(uids);
    let collect = async {
        let mut out = BTreeMap::new();
        let mut stream = conn.session.uid_fetch(&set, "(UID RFC822.SIZE)").await?;
        while let Some(f) = stream.try_next().await? {
            if let (Some(uid), Some(size)) = (f.uid, f.size) {
                out.insert(uid, u64::from(size));
            }
        }
        Ok::<_, async_imap::error::Error>(out)
    };
    net(ctx, "UID FETCH (sizes)", collect).await
}

async fn fetch_bodies(conn: &mut Connection, ctx: &FolderCtx<'_>, uids: &[u32]) -> Result<Bodies, SyncError> {
    let set = uid_set(uids);
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

#[cfg(test)]
mod prefilter_tests {
    use super::*;
    use crate::mail::{classify, Rules};

    #[test]
    fn prefilter_only_skips_what_the_classifier_calls_not_hecto() {
        let rules = Rules::default();
        let p = Prefilter::new(&rules);
        let table: &[(&str, bool)] = &[
            ("From: a@example.org\r\nTo: b@example.com\r\nSubject: =?UTF-8?B?7KCQ7Ius?=\r\n", true),
            ("From: \"Sender 12\" <user12@example3.org>\r\nTo: me@example.test\r\n", true),
            // Hecto domains anywhere, any case, subdomains, Cc.
            ("From: contract@HectoFinancial.co.kr\r\nTo: b@example.com\r\n", false),
            ("From: a@example.org\r\nCc: pg@mail.settlebank.co.kr\r\n", false),
            // Display-name claims: plain, raw UTF-8, encoded (must go to the classifier).
            ("From: Hecto Support <help@phish.example>\r\n", false),
            ("From: \"헥토파이낸셜\" <help@phish.example>\r\n", false),
            ("From: =?UTF-8?B?7Zel7Yag?= <help@phish.example>\r\n", false),
            ("From: =?euc-kr?B?x+XF5A==?=\r\n <help@phish.example>\r\n", false),
            // A folded From whose continuation carries the encoded word.
            ("From: \"x\"\r\n =?UTF-8?B?7Zel7Yag?= <h@p.example>\r\nTo: a@b.example\r\n", false),
        ];
        for (header, skip) in table {
            assert_eq!(p.certainly_not_hecto(header.as_bytes()), *skip, "{header:?}");
            if *skip {
                let c = classify(header.as_bytes(), &rules);
                assert!(!c.kind.is_hecto(), "the classifier agrees: {header:?} → {:?}", c.kind);
            }
        }
        // Every header the classifier calls Hecto's is one the prefilter lets through.
        for (header, _) in table {
            let c = classify(header.as_bytes(), &rules);
            if c.kind.is_hecto() {
                assert!(!p.certainly_not_hecto(header.as_bytes()), "{header:?}");
            }
        }
    }
}
